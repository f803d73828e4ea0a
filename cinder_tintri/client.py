#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.
"""REST client for the Tintri VMstore v310 API.

The client owns everything HTTP: one ``requests.Session`` per client, a
single login reused across calls, threads and greenthreads, transparent
re-login on 401, per-request connect/read timeouts, bounded retries with
capped exponential backoff and jitter, ``next`` based pagination with a hard
page cap, and mapping of TintriError bodies to :class:`TintriError`.

Retry rules (see :meth:`TClient._call`):

* connection failures, timeouts, 502/503/504 and 429 are retried, bounded
  both by ``retries`` and by the total ``retry_deadline``;
* GET, PUT, DELETE and login/logout are resent blindly;
* a POST is resent blindly only when the array certainly did not process
  it: the TCP connection was never established, or the answer was 503/429;
* a POST whose response was lost (connection dropped or read timeout after
  the request was sent, 502/504) is *reconciled* instead: ``cinder/snapshot``
  looks the snapshot up by its (unique) description before resending, and a
  resent ``cinder/clone`` that answers 409 "already exists" for the same
  destination counts as success, because the first attempt created it.
  Any other POST with a lost response fails with
  :class:`TintriConnectionError` rather than risk doing the work twice.

Secrets: neither the password nor the session id is ever logged. Request
bodies are logged at DEBUG with password-like fields replaced by ``***``;
headers and cookies are never logged.

The module deliberately imports no Cinder code.
"""

import datetime
import http.cookiejar
import http.cookies
import json
import random
import threading
import time
from urllib import parse as urlparse

from oslo_log import log as logging
from oslo_utils import netutils
import requests
from urllib3 import exceptions as urllib3_exc

LOG = logging.getLogger(__name__)

SESSION_COOKIE = 'JSESSIONID'
CREDENTIALS_TYPE = 'com.tintri.api.rest.vcommon.dto.rbac.RestApiCredentials'
REQUEST_TYPE = 'com.tintri.api.rest.v310.dto.Request'
SNAPSHOT_TYPE = 'com.tintri.api.rest.v310.dto.domain.beans.snapshot.Snapshot'
CINDER_BEANS = 'com.tintri.api.rest.v310.dto.domain.beans.cinder.'
SNAPSHOT_SPEC_TYPE = CINDER_BEANS + 'CinderSnapshotSpec'
CLONE_SPEC_TYPE = CINDER_BEANS + 'CinderCloneSpec'
HOST_REFRESH_TYPE = CINDER_BEANS + 'OpenStackHostRefreshSpec'
SNAPSHOT_CREATOR = 'cinder-tintri'
EXPORT_ROOT = '/tintri'

# HTTP statuses meaning "the server did not process the request, try again".
_RETRY_SAFE_STATUSES = frozenset([429, 503])
# Statuses from a gateway: the request may or may not have been processed.
_RETRY_AMBIGUOUS_STATUSES = frozenset([502, 504])
_IDEMPOTENT_METHODS = frozenset(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])
_SECRET_KEYS = ('password', 'passphrase', 'secret', 'token')
_MASK = '***'
_NOT_FOUND_TEXT = ('does not exist', 'failed to lookup')
_HAS_CLONES_TEXT = ('vm is still present', 'still has clone',
                    'has clones')
_EXISTS_TEXT = ('already exist',)


class TintriError(Exception):
    """A VMstore API call failed.

    Carries the HTTP ``status`` (None when no response was received), the
    TintriError ``code`` (e.g. ``ERR-API-8001``), ``message``,
    ``cause_details`` and the ``method`` and ``path`` of the call.
    """

    def __init__(self, message=None, status=None, code=None,
                 cause_details=None, method=None, path=None):
        self.status = status
        self.code = code
        self.message = message or ''
        self.cause_details = cause_details or ''
        self.method = method
        self.path = path
        super().__init__(self._format())

    def _format(self):
        if self.method or self.path:
            text = 'VMstore API %s %s failed' % (
                self.method or '', self.path or '')
        else:
            text = 'VMstore API call failed'
        detail = []
        if self.status is not None:
            detail.append('HTTP %s' % self.status)
        if self.code:
            detail.append(self.code)
        head = ' '.join(detail)
        text += ': ' + head + (': ' if head else '') + (
            self.message or 'no error message')
        if self.cause_details:
            text += ' (%s)' % self.cause_details
        return text

    def __str__(self):
        return self._format()

    def text(self):
        """Lower-cased message, cause and code, for substring matching."""
        return ' '.join([self.code or '', self.message or '',
                         self.cause_details or '']).lower()


class TintriConnectionError(TintriError):
    """No usable response: network failure or timeout (after retries)."""


class TintriAuthError(TintriError):
    """The VMstore rejected the credentials (or the session, repeatedly)."""


class SnapshotHasClones(TintriError):
    """DELETE refused because the snapshot still has clones."""


class _ResponseLost(TintriConnectionError):
    """A non-idempotent request was sent but its outcome is unknown.

    ``still_running`` is set when the array may still be working on it
    (read timeout, 504), as opposed to a dropped connection.
    """

    still_running = False


def mask_secrets(obj):
    """Return a copy of a JSON-able object with secret values masked."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if (isinstance(key, str) and
                    any(s in key.lower() for s in _SECRET_KEYS)):
                out[key] = _MASK
            else:
                out[key] = mask_secrets(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [mask_secrets(v) for v in obj]
    return obj


def format_host(hostname):
    """Host part of a URL: IPv6 literals get brackets, once."""
    host = (hostname or '').strip()
    if not host:
        raise ValueError('VMstore hostname is empty')
    if host.startswith('[') and host.endswith(']'):
        host = host[1:-1]
    if netutils.is_valid_ipv6(host.split('%')[0]):
        return '[%s]' % host
    return host


def export_relative(path):
    """Path relative to the /tintri export: '/tintri/cinder/x' -> 'cinder/x'.

    Accepts an already relative path ('cinder/x') and a share string
    ('host:/tintri/cinder').
    """
    path = path or ''
    if ':/' in path and not path.startswith('/'):
        path = path.split(':', 1)[1]
    path = path.strip()
    if path == EXPORT_ROOT or path.startswith(EXPORT_ROOT + '/'):
        path = path[len(EXPORT_ROOT):]
    return path.strip('/')


def parse_error(response):
    """(code, message, cause_details) from an error response, never raises."""
    code = message = cause = None
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        code = data.get('code')
        message = data.get('message') or data.get('title')
        cause = data.get('causeDetails')
        nested = data.get('errors')
        if not message and isinstance(nested, list) and nested:
            first = nested[0] if isinstance(nested[0], dict) else {}
            message = first.get('message')
            cause = cause or first.get('causeDetails')
    elif isinstance(data, str):
        message = data
    if message is None and data is None:
        text = (getattr(response, 'text', '') or '').strip()
        if text:
            message = ' '.join(text.split())[:200]
        else:
            message = getattr(response, 'reason', None) or 'empty response'
    return (str(code) if code is not None else None,
            str(message) if message is not None else None,
            str(cause) if cause else None)


def backoff_delay(attempt, base, cap):
    """Capped exponential backoff with jitter for retry number ``attempt``.

    attempt 0 is the first retry. The result is in [d/2, d] where
    d = min(cap, base * 2**attempt).
    """
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return random.uniform(ceiling / 2.0, ceiling)


def _sent_before_failure(exc):
    """True unless the error proves the request never left this host."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, urllib3_exc.MaxRetryError):
            reason = reason.reason
        if isinstance(reason, (urllib3_exc.NewConnectionError,
                               urllib3_exc.ConnectTimeoutError)):
            return False
    return True


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep the session cookie out of the shared jar; we send it by hand."""

    def set_ok(self, cookie, request):
        return False


class TClient(object):
    """Client for one VMstore. Thread- and greenthread-safe.

    Usable as a context manager; leaving it logs out.
    """

    # Backoff parameters (seconds); class attributes so tests can shrink.
    backoff_base = 0.5
    backoff_cap = 15.0
    POOL_SIZE = 32

    def __init__(self, hostname, username, password, api_version='v310',
                 port=443, use_https=True, verify=True, ca_path=None,
                 connect_timeout=10.0, read_timeout=60.0, retries=5,
                 retry_deadline=120.0, page_size=500, max_pages=1000,
                 client_id='cinder-tintri'):
        self.hostname = hostname
        self.username = username
        self._password = password
        version = (api_version or 'v310').strip('/')
        # 'v310.191' selects the minor version at login; URLs use 'v310'.
        self.api_family = version.split('.')[0]
        self._full_api_version = version if '.' in version else None
        self.api_version = self.api_family
        self.port = int(port)
        scheme = 'https' if use_https else 'http'
        self.base_url = '%s://%s:%d' % (scheme, format_host(hostname),
                                        self.port)
        self.api_prefix = '/api/%s/' % self.api_family
        self.verify = ca_path if (verify and ca_path) else bool(verify)
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.retries = max(0, int(retries))
        self.retry_deadline = float(retry_deadline)
        self.page_size = int(page_size)
        self.max_pages = int(max_pages)
        self.client_id = client_id

        self._session = requests.Session()
        self._session.cookies.set_policy(_NoCookies())
        # Retries are ours; a pool large enough for concurrent greenthreads.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=self.POOL_SIZE, max_retries=0)
        self._session.mount('https://', adapter)
        self._session.mount('http://', adapter)
        self._session.headers.update({
            'Content-Type': 'application/json',
            'Accept': 'application/json',
            'Tintri-Api-Client': client_id,
        })
        self._session_id = None
        self._login_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._request_counts = {}
        self._logins = 0
        self._api_info = None
        if use_https and not verify:
            LOG.warning('TLS certificate verification of VMstore %s is '
                        'disabled; the API password can be intercepted.',
                        hostname)
        elif not use_https:
            LOG.warning('VMstore %s is accessed over plain HTTP; the API '
                        'password is sent in clear.', hostname)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.close()
        return False

    def __repr__(self):
        # Never include the password or the session id.
        return '<TClient %s@%s>' % (self.username, self.base_url)

    @property
    def request_counts(self):
        """Copy of {'METHOD /api/v310/template': attempts sent}."""
        with self._counts_lock:
            return dict(self._request_counts)

    @property
    def logins(self):
        return self._logins

    @property
    def logged_in(self):
        return self._session_id is not None

    def reset_counts(self):
        with self._counts_lock:
            self._request_counts.clear()

    def login(self):
        """Log in (again) now. Raises TintriAuthError on bad credentials.

        A session this client held before is logged out afterwards, so
        repeated calls do not pile up sessions on the array.
        """
        with self._login_lock:
            previous = self._session_id
            self._login_locked()
        if previous is not None:
            self._logout_session(previous)

    def logout(self):
        """Log out if logged in. Best effort: failures are logged only."""
        with self._login_lock:
            session_id, self._session_id = self._session_id, None
        if session_id is not None:
            self._logout_session(session_id)

    def _logout_session(self, session_id):
        try:
            self._call('POST', 'session/logout', auth=False,
                       session_id=session_id, idempotent=True,
                       max_retries=1)
        except TintriError as e:
            LOG.debug('VMstore logout failed (ignored): %s', e)

    def close(self):
        """Log out and release the connection pool.

        The client stays usable: a later call logs in again.
        """
        try:
            self.logout()
        finally:
            self._session.close()

    def _login_locked(self):
        if self._full_api_version is None and self._api_info is None:
            try:
                self.api_info(max_retries=0)
            except TintriError as e:
                LOG.debug('GET /api/info failed, logging in without '
                          'fullApiVersion: %s', e)
        body = {'typeId': CREDENTIALS_TYPE,
                'username': self.username,
                'password': self._password}
        full = self._full_api_version or (self._api_info or {}).get(
            'preferredVersion')
        if full:
            body['fullApiVersion'] = full
        self._session_id = None
        try:
            response = self._call('POST', 'session/login', body=body,
                                  auth=False, idempotent=True, raw=True)
        except TintriError as e:
            if e.status in (400, 401, 403):
                raise TintriAuthError(e.message, status=e.status,
                                      code=e.code,
                                      cause_details=e.cause_details,
                                      method=e.method, path=e.path)
            raise
        session_id = response.cookies.get(SESSION_COOKIE)
        if not session_id:
            session_id = self._cookie_from_headers(response)
        if not session_id:
            raise TintriAuthError(
                'login answered HTTP %s without a %s cookie'
                % (response.status_code, SESSION_COOKIE),
                status=response.status_code, method='POST',
                path=self.api_prefix + 'session/login')
        self._session_id = session_id
        self._logins += 1
        LOG.debug('Logged in to VMstore %s as %s (login #%d).',
                  self.hostname, self.username, self._logins)

    @staticmethod
    def _cookie_from_headers(response):
        raw = getattr(response, 'raw', None)
        headers = getattr(raw, 'headers', None)
        values = []
        if headers is not None and hasattr(headers, 'getlist'):
            values = headers.getlist('Set-Cookie')
        elif response.headers.get('Set-Cookie'):
            values = [response.headers['Set-Cookie']]
        for value in values:
            jar = http.cookies.SimpleCookie()
            try:
                jar.load(value)
            except http.cookies.CookieError:
                continue
            if SESSION_COOKIE in jar:
                return jar[SESSION_COOKIE].value
        return None

    def _current_session(self):
        session_id = self._session_id
        if session_id is not None:
            return session_id
        with self._login_lock:
            if self._session_id is None:
                self._login_locked()
            return self._session_id

    def _relogin(self, stale_session_id):
        """Replace an expired session; other callers may have done it."""
        with self._login_lock:
            if self._session_id is None or self._session_id == \
                    stale_session_id:
                LOG.debug('VMstore session expired, logging in again.')
                self._login_locked()
            return self._session_id

    # ------------------------------------------------------------ transport

    def _url(self, path):
        if path.startswith('http://') or path.startswith('https://'):
            parts = urlparse.urlsplit(path)
            path = parts.path + ('?' + parts.query if parts.query else '')
        if path.startswith('/'):
            return self.base_url + path, path.split('?', 1)[0]
        full = self.api_prefix + path
        return self.base_url + full, full.split('?', 1)[0]

    def _count(self, key):
        with self._counts_lock:
            self._request_counts[key] = self._request_counts.get(key, 0) + 1

    def _send_once(self, method, url, path, key, params, body, session_id):
        headers = {}
        if session_id:
            headers['Cookie'] = '%s=%s' % (SESSION_COOKIE, session_id)
        data = None
        if body is not None:
            data = json.dumps(body)
            if LOG.isEnabledFor(logging.DEBUG):
                LOG.debug('VMstore API %s %s body: %s', method, path,
                          json.dumps(mask_secrets(body))[:2048])
        self._count(key)
        start = time.monotonic()
        try:
            response = self._session.request(
                method, url, params=params, data=data, headers=headers,
                timeout=self.timeout, verify=self.verify,
                allow_redirects=False)
        except requests.exceptions.RequestException as e:
            LOG.debug('VMstore API %(m)s %(p)s failed after %(t).3fs: '
                      '%(e)s', {'m': method, 'p': path,
                                'e': type(e).__name__,
                                't': time.monotonic() - start})
            raise
        LOG.debug('VMstore API %(m)s %(p)s -> %(s)s in %(t).3fs',
                  {'m': method, 'p': path, 's': response.status_code,
                   't': time.monotonic() - start})
        return response

    def _error_from_response(self, method, path, response):
        code, message, cause = parse_error(response)
        cls = TintriError
        err = TintriError(message, status=response.status_code, code=code,
                          cause_details=cause, method=method, path=path)
        if method == 'DELETE' and any(t in err.text()
                                      for t in _HAS_CLONES_TEXT):
            cls = SnapshotHasClones
        if cls is not TintriError:
            err = cls(message, status=response.status_code, code=code,
                      cause_details=cause, method=method, path=path)
        return err

    @staticmethod
    def _retry_after(response):
        value = response.headers.get('Retry-After')
        try:
            return max(0.0, float(value)) if value else None
        except ValueError:
            return None

    def _call(self, method, path, params=None, body=None, template=None,
              auth=True, idempotent=None, reconcile=None,
              resend_if_running=True, resend_ok_statuses=(), raw=False,
              session_id=None, max_retries=None):
        """Send one logical request, with retries and re-login.

        :param template: endpoint template for request counting, relative
            like ``path`` (e.g. 'snapshot/{uuid}'); defaults to the path.
        :param idempotent: resend blindly after a lost response; default by
            HTTP method (POST is not).
        :param reconcile: for non-idempotent calls, called after a lost
            response; returns a value to use as the result, or None to
            resend.
        :param resend_if_running: when False, a request that may still be
            running on the array (read timeout, 504) is never resent; the
            reconcile lookup is repeated until it succeeds or the retry
            budget is spent.
        :param resend_ok_statuses: statuses that mean success when they
            answer a resend of a request whose response was lost.
        :param raw: return the requests.Response instead of decoded JSON.
        :returns: decoded JSON (None for an empty body), or the response.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        url, full_path = self._url(path)
        if template is None:
            key_path = full_path
        else:
            key_path = self._url(template)[1]
        key = '%s %s' % (method, key_path)
        retries = self.retries if max_retries is None else min(
            self.retries, max_retries)
        deadline = time.monotonic() + self.retry_deadline
        attempt = 0
        relogged = False
        lost_before = False

        while True:
            sid = session_id
            if auth and sid is None:
                sid = self._current_session()
            error = None
            response = None
            wait_hint = None
            try:
                response = self._send_once(method, url, full_path, key,
                                           params, body, sid)
            except requests.exceptions.SSLError as e:
                # Certificate problems do not heal by retrying.
                raise TintriConnectionError(
                    'TLS error: %s' % e, method=method, path=full_path)
            except (requests.exceptions.ConnectionError,
                    requests.exceptions.Timeout) as e:
                kind = ('timed out' if isinstance(
                    e, requests.exceptions.Timeout) else 'connection error')
                if idempotent or not _sent_before_failure(e):
                    error = TintriConnectionError(
                        '%s: %s' % (kind, e), method=method, path=full_path)
                else:
                    error = _ResponseLost(
                        '%s after the request was sent: %s' % (kind, e),
                        method=method, path=full_path)
                    error.still_running = isinstance(
                        e, requests.exceptions.Timeout)
            except requests.exceptions.RequestException as e:
                raise TintriConnectionError(str(e), method=method,
                                            path=full_path)
            except OSError as e:
                # e.g. requests' "Could not find a suitable TLS CA
                # certificate bundle" for a wrong ca_path.
                raise TintriConnectionError(
                    'TLS setup error: %s' % e, method=method, path=full_path)

            if response is not None:
                status = response.status_code
                if 200 <= status < 300:
                    return self._decode(response, raw)
                if status in resend_ok_statuses and lost_before:
                    LOG.info('VMstore API %s %s answered HTTP %s to a resend '
                             'after a lost response; the first attempt '
                             'succeeded.', method, full_path, status)
                    return None if not raw else response
                if status == 401 and auth and not relogged:
                    relogged = True
                    self._relogin(sid)
                    continue
                error = self._error_from_response(method, full_path,
                                                  response)
                if status == 401 and auth:
                    raise TintriAuthError(
                        error.message, status=401, code=error.code,
                        cause_details=error.cause_details, method=method,
                        path=full_path)
                if status in _RETRY_SAFE_STATUSES:
                    wait_hint = self._retry_after(response)
                elif status in _RETRY_AMBIGUOUS_STATUSES:
                    if not idempotent:
                        error = _ResponseLost(
                            error.message, status=status, code=error.code,
                            cause_details=error.cause_details,
                            method=method, path=full_path)
                        error.still_running = status == 504
                else:
                    raise error

            # A retryable failure.
            delay, out_of = self._next_delay(attempt, retries, deadline,
                                             wait_hint)
            if isinstance(error, _ResponseLost):
                lost_before = True
                if reconcile is None:
                    raise TintriConnectionError(
                        '%s; not resent because %s is not idempotent'
                        % (error.message, method), status=error.status,
                        code=error.code, cause_details=error.cause_details,
                        method=method, path=full_path)
                # Give the array time to finish the lost request, then look
                # for its effect. Resend only when nothing is found and the
                # first request cannot still be running; while it may be,
                # keep looking instead (within the same retry budget).
                while True:
                    if out_of is None:
                        LOG.debug('VMstore API %s %s: response lost (%s); '
                                  'looking for its effect in %.2fs', method,
                                  full_path, error.message, delay)
                        time.sleep(delay)
                    found = reconcile()
                    if found is not None:
                        LOG.info('VMstore API %s %s: response lost, but the '
                                 'request had taken effect.', method,
                                 full_path)
                        return found
                    if out_of is not None:
                        raise self._give_up(error, attempt,
                                            deadline=(out_of == 'deadline'))
                    attempt += 1
                    if not (error.still_running and not resend_if_running):
                        break
                    delay, out_of = self._next_delay(attempt, retries,
                                                     deadline, None)
                LOG.debug('VMstore API %s %s: resending (attempt %d)',
                          method, full_path, attempt + 1)
                continue
            if out_of is not None:
                raise self._give_up(error, attempt,
                                    deadline=(out_of == 'deadline'))
            LOG.debug('VMstore API %s %s: retry %d/%d in %.2fs (%s)',
                      method, full_path, attempt + 1, retries, delay,
                      error.message if error.status is None else
                      'HTTP %s %s' % (error.status, error.code or ''))
            time.sleep(delay)
            attempt += 1

    def _next_delay(self, attempt, retries, deadline, wait_hint):
        """(delay, None) before the next attempt, or (None, why) if none."""
        if attempt >= retries:
            return None, 'retries'
        delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
        if wait_hint is not None:
            delay = max(delay, min(wait_hint, self.backoff_cap))
        if time.monotonic() + delay > deadline:
            return None, 'deadline'
        return delay, None

    @staticmethod
    def _give_up(error, attempt, deadline=False):
        cls = type(error)
        if cls is _ResponseLost:
            cls = TintriConnectionError
        if attempt or deadline:
            why = ('retry deadline reached' if deadline else
                   'no retry left')
            message = '%s (%d attempt(s), %s)' % (error.message, attempt + 1,
                                                  why)
        else:
            message = error.message
        if isinstance(error, _ResponseLost) and error.still_running:
            message += '; not resent as the array may still complete it'
        return cls(message, status=error.status, code=error.code,
                   cause_details=error.cause_details, method=error.method,
                   path=error.path)

    @staticmethod
    def _decode(response, raw):
        if raw:
            return response
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # ------------------------------------------------------------ generic

    def get(self, path, params=None, template=None):
        """GET a resource; returns the decoded JSON body."""
        return self._call('GET', path, params=params, template=template)

    def get_query(self, path, params, template=None):
        """GET with query parameters (old TClient name)."""
        return self._call('GET', path, params=params, template=template)

    def post(self, path, body, idempotent=False, template=None):
        """POST a JSON body.

        Not resent after a lost response unless ``idempotent`` says so.
        """
        return self._call('POST', path, body=body, idempotent=idempotent,
                          template=template)

    def put(self, path, body, template=None):
        return self._call('PUT', path, body=body, template=template)

    def delete(self, path, template=None):
        """DELETE a resource; not-found counts as success (returns None)."""
        try:
            return self._call('DELETE', path, template=template)
        except SnapshotHasClones:
            raise
        except TintriError as e:
            if _is_not_found(e):
                LOG.debug('VMstore API DELETE %s: already gone.', e.path)
                return None
            raise

    def iter_items(self, path, params=None, template=None):
        """Iterate over every item of a Page listing, following ``next``.

        Plain JSON arrays are yielded as they are. Fails with TintriError
        after ``max_pages`` pages, or when the server repeats a page
        position, instead of looping forever. Items seen twice (offset
        paging over a list that changes underneath) are yielded once.
        """
        params = dict(params or {})
        params.setdefault('limit', self.page_size)
        base_path = path.split('?', 1)[0]
        if template is None:
            template = base_path
        request_path, request_params = path, params
        seen_next = set()
        seen_ids = set()
        pages = 0
        while True:
            pages += 1
            if pages > self.max_pages:
                raise TintriError(
                    'listing exceeds the page cap of %d pages'
                    % self.max_pages, method='GET',
                    path=self._url(base_path)[1])
            page = self._call('GET', request_path, params=request_params,
                              template=template)
            if isinstance(page, list):
                items, nxt = page, None
            elif isinstance(page, dict):
                items = page.get('items') or []
                nxt = page.get('next')
            elif page is None:
                return
            else:
                raise TintriError('unexpected listing response %r'
                                  % type(page).__name__, method='GET',
                                  path=self._url(base_path)[1])
            for item in items:
                item_id = _uuid_of(item)
                if item_id is not None:
                    if item_id in seen_ids:
                        continue
                    seen_ids.add(item_id)
                yield item
            if not nxt:
                return
            query = self._next_query(nxt, params)
            if query in seen_next:
                raise TintriError('listing repeats page position %r'
                                  % query, method='GET',
                                  path=self._url(base_path)[1])
            seen_next.add(query)
            request_path, request_params = base_path + '?' + query, None

    @staticmethod
    def _next_query(nxt, params):
        """Query string of the next page, keeping the original filters.

        ``next`` is a query string without '?'; full URLs are tolerated.
        Filters the server did not echo are added back.
        """
        nxt = str(nxt)
        if '?' in nxt:
            nxt = nxt.split('?', 1)[1]
        pairs = urlparse.parse_qsl(nxt, keep_blank_values=True)
        present = {k for k, _ in pairs}
        for k, v in params.items():
            if k in present or v is None:
                continue
            if isinstance(v, (list, tuple)):
                pairs.extend((k, str(x)) for x in v)
            else:
                pairs.append((k, str(v)))
        return urlparse.urlencode(pairs)

    # ------------------------------------------------------------ info

    def api_info(self, max_retries=None):
        """GET /api/info (no authentication); also cached for login."""
        info = self._call('GET', '/api/info', auth=False,
                          max_retries=max_retries)
        if isinstance(info, dict):
            self._api_info = info
        return info

    def get_appliance_info(self):
        """ApplianceInfo of the VMstore (modelName, osVersion, ...)."""
        info = self._call('GET', 'appliance/default/info',
                          template='appliance/{id}/info')
        if isinstance(info, list):
            info = info[0] if info else {}
        return info or {}

    def get_datastore_stats(self):
        """Capacity of the default datastore in GiB.

        Returns total_gib, free_gib, used_gib, provisioned_gib (floats) and
        'raw' (the DatastoreStat).
        """
        path = 'datastore/default/statsRealtime'
        page = self._call('GET', path, template='datastore/{id}/statsRealtime')
        try:
            items = page['items'] if isinstance(page, dict) else page
            stat = items[0]['sortedStats'][0]
        except (KeyError, IndexError, TypeError):
            raise TintriError('no datastore statistics in the response',
                              method='GET', path=self._url(path)[1])

        def gib(name, default=None):
            value = stat.get(name)
            if value is None:
                if default is None:
                    raise TintriError('datastore statistics lack %s' % name,
                                      method='GET', path=self._url(path)[1])
                return default
            return float(value)

        total = gib('spaceTotalGiB')
        free = gib('spaceRemainingPhysicalGiB')
        used = gib('spaceUsedPhysicalGiB', max(0.0, total - free))
        provisioned = gib('spaceProvisionedGiB', 0.0)
        return {'total_gib': total, 'free_gib': free, 'used_gib': used,
                'provisioned_gib': provisioned, 'raw': stat}

    # ------------------------------------------------------------ snapshots

    def create_snapshot(self, volume_path, volume_name, volume_id,
                        snapshot_name, deletion_policy=None, vm_name=None):
        """Snapshot the volume file; returns the snapshot UUID.

        ``snapshot_name`` becomes the description and must be unique: it is
        how a POST whose response was lost is reconciled without creating
        a duplicate. After a dropped connection the snapshot is looked up
        and the POST resent only if it is not there; after a read timeout
        (the array may still be working) it is only looked up again, within
        the retry budget, and never resent.
        """
        rel = export_relative(volume_path)
        spec = {
            'typeId': SNAPSHOT_SPEC_TYPE,
            'file': '%s/%s' % (rel, volume_name) if rel else volume_name,
            'vmName': vm_name or volume_name,
            'description': snapshot_name,
            'vmTintriUuid': volume_id,
            'instanceId': volume_id,
            'snapshotCreator': SNAPSHOT_CREATOR,
        }
        if deletion_policy:
            spec['deletionPolicy'] = deletion_policy

        def reconcile():
            found = self.find_snapshot_by_description(snapshot_name,
                                                      vm_uuid=volume_id)
            return _Found(found) if found else None

        result = self._call('POST', 'cinder/snapshot', body=spec,
                            reconcile=reconcile, resend_if_running=False)
        if isinstance(result, _Found):
            return _uuid_of(result.value)
        uuid = _first_uuid(result)
        if uuid:
            return uuid
        # Unknown response shape: look the snapshot up.
        found = self.find_snapshot_by_description(snapshot_name,
                                                  vm_uuid=volume_id)
        if found and _uuid_of(found):
            return _uuid_of(found)
        raise TintriError('snapshot created but no UUID returned or found',
                          method='POST', path=self._url('cinder/snapshot')[1])

    def get_snapshot(self, uuid):
        """The Snapshot object, or None when it does not exist."""
        try:
            snap = self._call('GET', 'snapshot/%s' % _q(uuid),
                              template='snapshot/{uuid}')
        except TintriError as e:
            if _is_not_found(e):
                return None
            raise
        if isinstance(snap, list):
            snap = snap[0] if snap else None
        if isinstance(snap, dict) and 'items' in snap:
            items = snap.get('items') or []
            snap = items[0] if items else None
        return snap

    def find_snapshots(self, **filters):
        """Iterator over all snapshots matching SnapshotFilterSpec filters."""
        filters = {k: v for k, v in filters.items() if v is not None}
        return self.iter_items('snapshot', filters)

    def find_snapshot_by_description(self, description, vm_uuid=None):
        """The snapshot whose description is exactly ``description``."""
        matches = [s for s in self.find_snapshots(contain=description,
                                                  vmUuid=vm_uuid)
                   if s.get('description') == description]
        if len(matches) > 1:
            LOG.warning('%d VMstore snapshots share the description %s; '
                        'using %s.', len(matches), description,
                        _uuid_of(matches[0]))
        return matches[0] if matches else None

    def delete_snapshot(self, uuid):
        """Delete a snapshot; already gone is success.

        Raises SnapshotHasClones when the array refuses because clones of
        the snapshot still exist.
        """
        self.delete('snapshot/%s' % _q(uuid), template='snapshot/{uuid}')

    def set_snapshot_deletion_policy(self, uuid, policy):
        body = {
            'typeId': REQUEST_TYPE,
            'objectsWithNewValues': [{'typeId': SNAPSHOT_TYPE,
                                      'deletionPolicy': policy}],
            'propertiesToBeUpdated': ['deletionPolicy'],
        }
        return self.put('snapshot/%s' % _q(uuid), body,
                        template='snapshot/{uuid}')

    def get_image_snapshots_to_date(self, date):
        """Image-cache snapshots created before ``date`` without clones.

        All pages are read before the first item is returned, so the caller
        may delete snapshots while iterating without shifting the pages.
        """
        if isinstance(date, datetime.datetime):
            if date.tzinfo is not None:
                date = date.astimezone(datetime.timezone.utc).replace(
                    tzinfo=None)
            until = date.strftime('%Y-%m-%dT%H:%M:%S')
        else:
            until = str(date)
        filters = {
            'sortedBy': 'createTime',
            'sortOrder': 'DESC',
            'target': 'SNAPSHOT',
            'consistency': 'CRASH_CONSISTENT',
            'hasClone': 'No',
            'type': 'CINDER_GENERATED_SNAPSHOT',
            'contain': 'image-',
            'since': '1970-01-01T00:00:00',
            'until': until,
        }
        snaps = [s for s in self.find_snapshots(**filters)
                 if not s.get('cloneReferenceCount')]
        return iter(snaps)

    # ------------------------------------------------------------ clones

    def clone_volume(self, snapshot_uuid, volume_path):
        """Clone a snapshot into the directory ``volume_path``.

        The array creates the directory ``volume_path`` (e.g.
        '/tintri/cinder/tmp-xyz') holding the clone under the source file's
        base name. When the response to the POST is lost it is resent; a
        409 "already exists" answering that resend means the first attempt
        created the clone and counts as success.
        """
        spec = {
            'typeId': CLONE_SPEC_TYPE,
            'tintriSnapshotUuid': snapshot_uuid,
            'destinationPaths': [export_relative(volume_path)],
        }
        return self._call('POST', 'cinder/clone', body=spec,
                          reconcile=lambda: None,
                          resend_ok_statuses=(409,))

    def host_refresh(self, hostname, volume_file_path, region=None,
                     volume_id=None):
        """Ask the VMstore to rediscover the OpenStack host (optional)."""
        spec = {
            'typeId': HOST_REFRESH_TYPE,
            'hostname': hostname,
            'volumeFilePath': export_relative(volume_file_path),
        }
        if region:
            spec['region'] = region
        if volume_id:
            spec['volumeId'] = volume_id
        # A refresh is safe to repeat.
        return self._call('POST', 'cinder/host/refresh', body=spec,
                          idempotent=True)


class _Found(object):
    """Result of a reconciliation, distinct from any JSON value."""

    def __init__(self, value):
        self.value = value


def _q(value):
    return urlparse.quote(str(value), safe='')


def _uuid_of(item):
    if not isinstance(item, dict):
        return None
    uuid = item.get('uuid')
    if isinstance(uuid, dict):
        uuid = uuid.get('uuid')
    return uuid if isinstance(uuid, str) else None


def _first_uuid(result):
    """UUID from a create response: ['uuid'], {'items': [...]}, [{uuid}]."""
    if isinstance(result, dict):
        result = result.get('items', [result])
    if isinstance(result, str):
        return result or None
    if isinstance(result, list) and result:
        first = result[0]
        if isinstance(first, str):
            return first or None
        return _uuid_of(first)
    return None


def _is_not_found(error):
    if error.status == 404 or error.code == 'ERR-API-8001':
        return True
    return any(t in error.text() for t in _NOT_FOUND_TEXT)
