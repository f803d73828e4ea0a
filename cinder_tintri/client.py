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
re-login on 401, bounded retries with capped exponential backoff and
jitter, ``next`` based pagination with a hard page cap, and mapping of
TintriError bodies to :class:`TintriError`.  It trusts nothing the array (or
whatever answers in its place) sends back.

Retry rules (see :meth:`TClient._call`):

* connection failures, timeouts, 502/503/504 and 429 are retried, bounded
  both by ``retries`` and by the total ``retry_deadline`` of the operation
  (which also bounds the first attempt, and every nested call such as the
  login or a reconciliation lookup);
* GET, PUT, DELETE and login/logout are resent blindly;
* a POST is resent blindly only when the array certainly did not process
  it: the TCP connection was never established, or the answer was 503/429
  (503 ERR-API-9013 "snapshot inventory busy" included);
* a POST whose response was lost (connection dropped, read timeout or
  total deadline after the request was sent, 502/504, or a 2xx answer that
  is not a valid VMstore response) is *reconciled* instead:
  ``cinder/snapshot`` looks the snapshot up by its (unique) description
  and is never resent once the array may be working on it, and a resent
  ``cinder/clone`` that answers 409 "already exists" for the same
  destination counts as success, because the first attempt created it.
  Any other POST with a lost response fails with
  :class:`TintriConnectionError` rather than risk doing the work twice.

Timeouts.  ``connect_timeout`` bounds establishing the TCP connection and
each blocking step of the TLS handshake; ``read_timeout`` bounds each wait
for data once the request is sent (it is a per-read timeout: a server that
sends a byte every so often never trips it).  ``request_timeout`` is the
TOTAL time one attempt may take - connect, send, status line, headers and
the whole body - and is further capped by what is left of the operation's
``retry_deadline``.  ``requests`` has no total timeout, so it is enforced by
a watchdog: every attempt arms a ``threading.Timer`` (a greenthread when
eventlet has monkey-patched ``threading``, as in cinder-volume; a thread
otherwise).  The connection pool is a urllib3 pool subclass whose
connections attach themselves to the attempt's watchdog (found through a
``contextvars.ContextVar``, which is per thread and per greenlet) when they
connect or send, and detach when the pool takes them back.  On expiry the
watchdog shuts down (``shutdown(SHUT_RDWR)`` on a duplicate of the file
descriptor, so no Python socket or SSL object is touched from another
thread and a descriptor number can never be confused with a reused one)
the socket of every connection still attached; the blocked read returns at
once and the attempt fails as "no complete response within N s".  The
alternative, a socket wrapper whose per-recv timeout shrinks, would have to
reach into http.client and ssl internals on every read; the watchdog needs
only three small overrides and costs one timer per attempt.

Secrets.  Neither the password nor a session id is ever logged, raised or
printed.  Every :class:`TintriError` masks, when it is constructed, the
password of every live client (also URL-encoded, JSON-escaped and
HTML-escaped), the current and previous session ids, password-like fields
(``password``, ``passphrase``, ``token``, ``secret``; JSON, form and
``key: value`` forms), ``JSESSIONID=...`` and ``Cookie:`` /
``Set-Cookie:`` / ``Authorization:`` header text - so an error page that
echoes the request cannot leak them.  Error bodies are masked before they
are parsed and truncated.  Request bodies are logged at DEBUG with
password-like fields replaced by ``***``; headers and cookies are never
logged.  :meth:`TClient.mask` applies the same masking to any other text.

Validation.  Every response the client acts on is checked: a 2xx answer
must be JSON with a JSON content type where JSON is expected, and is never
an HTML page; ``/api/info`` must be a RestApi object
(:class:`TintriNotVMstoreError` otherwise); snapshot UUIDs must look like
``<uuid>-SST-<16 hex>`` and VM UUIDs like ``<uuid>-VIM-<16 hex>``; Page
objects must hold a list of objects; datastore statistics must be finite,
non-negative numbers.  Malformed answers raise
:class:`TintriInvalidResponse`.

Endpoints.  The client calls only the (method, path template) pairs in
:data:`ENDPOINTS`, each marked ``official`` (in the v310 index),
``cinder`` (the undocumented Cinder endpoints) or ``fallback:<test>`` (an
endpoint outside the index whose absence is handled, and the test proving
it); :meth:`TClient._call` refuses anything else with
:class:`UndeclaredEndpoint`.

Credentials.  After the array rejected the credentials at login (401, 403,
ERR-API-0124, or a login answer without a session cookie) the client does
not log in again until ``auth_retry_interval`` seconds have passed or
:meth:`TClient.set_credentials` is called; meanwhile calls fail at once
with :class:`TintriAuthError` without any request, so a rotated password
cannot lock the account out.

The module deliberately imports no Cinder code.
"""

import _socket
import collections
import contextvars
import datetime
import functools
import html
import http.cookiejar
import http.cookies
import json
import math
import os
import random
import re
import socket
import threading
import time
from urllib import parse as urlparse
import weakref

from oslo_log import log as logging
from oslo_utils import netutils
import requests
from urllib3 import connection as urllib3_connection
from urllib3 import connectionpool as urllib3_pool
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
VM_CLONE_SPEC_TYPE = ('com.tintri.api.rest.v310.dto.domain.beans.vm.'
                      'VirtualMachineCloneSpec')
# Not in the official DTO extract: the nested-class form the samples use
# (vmstore-rest-api.md 5.2, DDN 3.0.10).
REMOTE_COPY_INFO_TYPE = VM_CLONE_SPEC_TYPE + '$RemoteCopyInfo'
QOS_CONFIG_TYPE = ('com.tintri.api.rest.v310.dto.domain.beans.vm.'
                   'VirtualMachineQoSConfig')
SNAPSHOT_CREATOR = 'cinder-tintri'
EXPORT_ROOT = '/tintri'

DEFAULT_REQUEST_TIMEOUT = 90.0
DEFAULT_AUTH_RETRY_INTERVAL = 300.0

# HTTP statuses meaning "the server did not process the request, try again".
_RETRY_SAFE_STATUSES = frozenset([429, 503])
# Statuses from a gateway: the request may or may not have been processed.
_RETRY_AMBIGUOUS_STATUSES = frozenset([502, 504])
_IDEMPOTENT_METHODS = frozenset(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])
_SECRET_KEYS = ('password', 'passphrase', 'secret', 'token', 'cookie',
                'jsessionid', 'sessionid', 'authorization')
_MASK = '***'
_NOT_FOUND_TEXT = ('does not exist', 'failed to lookup')
_HAS_CLONES_TEXT = ('vm is still present', 'still has clone',
                    'has clones')
_EXISTS_TEXT = ('already exist',)
# Array-provided message and cause are cut to this length (after masking).
_MAX_TEXT = 1000
_EXCERPT = 120
# Literal password masking needs a few characters, or it would mask
# ordinary words; the field and header patterns apply regardless.
_MIN_LITERAL = 4

_HEX = '[0-9a-f]'
_FS_UUID = '%s{8}-%s{4}-%s{4}-%s{4}-%s{12}' % ((_HEX,) * 5)
SNAPSHOT_UUID_RE = re.compile(r'^%s-SST-%s{16}$' % (_FS_UUID, _HEX), re.I)
VM_UUID_RE = re.compile(r'^%s-VIM-%s{16}$' % (_FS_UUID, _HEX), re.I)


# ---------------------------------------------------------------- endpoints

Endpoint = collections.namedtuple('Endpoint', ['method', 'template',
                                               'source'])

#: Every (method, path template) the client can call.  Templates are
#: relative to /api/<family>/ unless they start with '/'.  ``source`` is
#: 'official' (listed in the v310 endpoint index), 'cinder' (the Cinder
#: endpoints, absent from the index) or 'fallback:<test id>' (outside the
#: index; the named test proves the client copes when the array lacks it).
ENDPOINTS = (
    Endpoint('GET', '/api/info',
             'fallback:tests.unit.test_client_hostile.NotVMstoreTest.'
             'test_strict_array_falls_back_to_appliance_info'),
    Endpoint('POST', 'session/login', 'official'),
    Endpoint('POST', 'session/logout', 'official'),
    Endpoint('GET', 'appliance/{id}/info', 'official'),
    Endpoint('GET', 'appliance/{id}/fileDirInfo/{path}', 'official'),
    Endpoint('GET', 'datastore/{id}/statsRealtime', 'official'),
    Endpoint('GET', 'snapshot', 'official'),
    Endpoint('GET', 'snapshot/{uuid}', 'official'),
    Endpoint('DELETE', 'snapshot/{uuid}', 'official'),
    Endpoint('PUT', 'snapshot/{uuid}',
             'fallback:tests.unit.test_client_hostile.NotSupportedTest.'
             'test_put_snapshot_unsupported_raises_not_supported'),
    Endpoint('GET', 'virtualDisk', 'official'),
    Endpoint('PUT', 'vm/{id}/qosConfig', 'official'),
    Endpoint('POST', 'cinder/snapshot', 'cinder'),
    Endpoint('POST', 'cinder/clone', 'cinder'),
    Endpoint('POST', 'cinder/host/refresh', 'cinder'),
    # Cross-array clone (remote copy through a replication path).
    Endpoint('GET', 'appliance/{id}/ips', 'official'),
    Endpoint('GET', 'datastore/{id}/replicationPath', 'official'),
    Endpoint('POST', 'vm', 'official'),
    Endpoint('GET', 'task/{id}', 'official'),
    Endpoint('DELETE', 'task/{id}', 'official'),
)


@functools.lru_cache(maxsize=128)
def template_regex(template):
    """Regex matching the paths of a template ('{path}' may hold '/')."""
    out = []
    for part in re.split(r'(\{[^}]*\})', template):
        if part == '{path}':
            out.append('.+')
        elif part.startswith('{') and part.endswith('}'):
            out.append('[^/]+')
        else:
            out.append(re.escape(part))
    return re.compile('^' + ''.join(out) + '$')


def find_endpoint(method, path):
    """The ENDPOINTS row for a method and a relative path/template."""
    method = method.upper()
    for row in ENDPOINTS:
        if row.method != method:
            continue
        if row.template == path or template_regex(row.template).match(path):
            return row
    return None


# ---------------------------------------------------------------- errors

class TintriError(Exception):
    """A VMstore API call failed.

    Carries the HTTP ``status`` (None when no response was received), the
    TintriError ``code`` (e.g. ``ERR-API-8001``), ``message``,
    ``cause_details`` and the ``method`` and ``path`` of the call.  Message
    and cause are masked (see :func:`mask_text`) when the error is built,
    so ``str()``, ``repr()`` and ``args`` never hold a secret.
    """

    def __init__(self, message=None, status=None, code=None,
                 cause_details=None, method=None, path=None):
        self.status = status
        self.code = mask_text(code) if code else code
        self.message = mask_text(message or '')
        self.cause_details = mask_text(cause_details or '')
        self.method = method
        self.path = path
        # What the error body was: 'tintri' (a TintriError object), 'json',
        # 'html', 'text', 'empty'; None when no response was received.
        self.body_kind = None
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


class TintriInvalidResponse(TintriError):
    """The answer is not a valid VMstore response (shape, type, format)."""


class TintriNotVMstoreError(TintriError):
    """The server at the configured address is not a Tintri VMstore."""

    def _format(self):
        return self.message


class TintriNotSupported(TintriError):
    """The array does not support this call (e.g. PUT snapshot/{uuid})."""


class TintriInvalidInput(TintriError, ValueError):
    """A client method was called with an unusable argument."""


class SnapshotHasClones(TintriError):
    """DELETE refused because the snapshot still has clones."""


class TintriTaskFailed(TintriError):
    """An array task ended FAILED or CANCELLED (masked array text)."""


class TintriTaskTimeout(TintriError):
    """An array task did not end before the caller's deadline."""


class UndeclaredEndpoint(RuntimeError):
    """A programming error: the endpoint is not in :data:`ENDPOINTS`."""


class _ResponseLost(TintriConnectionError):
    """A non-idempotent request was sent but its outcome is unknown.

    ``still_running`` is set when the array may still be working on it
    (read timeout, total deadline, 504, an invalid answer), as opposed to a
    dropped connection.  ``final_cls`` is the class raised when giving up.
    """

    still_running = False
    final_cls = TintriConnectionError


class _DeadlineExceeded(Exception):
    """The watchdog ended an attempt; ``sent`` if the request went out."""

    def __init__(self, seconds, sent):
        super().__init__('no complete response within %.1fs' % seconds)
        self.seconds = seconds
        self.sent = sent


# ---------------------------------------------------------------- masking

_LIVE_CLIENTS = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()

_HEADER_RE = re.compile(
    r'(?P<name>\b(?:set-)?cookie2?|\b(?:proxy-)?authorization)'
    r'(?P<sep>\s*:\s*)(?P<val>[^\r\n"\\]*)', re.I)
_KEYWORD_RE = re.compile(
    r'password|passwd|passphrase|secret|token|jsessionid|session_?id', re.I)
# Bounded prefix and separators, so that the scan stays linear; a quoted
# value may lack its closing quote (an echo cut short by the array): then
# everything after the opening quote is masked.
_AFTER_KEYWORD_RE = re.compile(
    r'[\w.-]{0,64}(?:\\?["\'])?(?P<sep>\s{0,8}[:=]\s{0,8})'
    r'(?P<val>\\"(?:(?!\\").)*(?:\\")?|"(?:[^"\\]|\\.)*"?|'
    r'\'[^\']*\'?|[^\s&,;"\'}<>\\]+)', re.I | re.S)


def _mask_fields(text):
    """Mask the values of password-like fields, in linear time."""
    out = []
    pos = 0
    for m in _KEYWORD_RE.finditer(text):
        if m.start() < pos:
            continue
        after = _AFTER_KEYWORD_RE.match(text, m.end())
        if after is None:
            continue
        val = after.group('val')
        new = _MASK
        for quote in ('\\"', '"', "'"):
            if val.startswith(quote):
                closed = len(val) >= 2 * len(quote) and val.endswith(quote)
                new = quote + _MASK + (quote if closed else '')
                break
        out.append(text[pos:after.start('val')])
        out.append(new)
        pos = after.end('val')
    out.append(text[pos:])
    return ''.join(out)


def _header_repl(m):
    return m.group('name') + m.group('sep') + _MASK


@functools.lru_cache(maxsize=64)
def _literal_regex(secrets):
    variants = set()
    for secret in secrets:
        for v in (secret, urlparse.quote(secret, safe=''),
                  urlparse.quote_plus(secret), json.dumps(secret)[1:-1],
                  json.dumps(secret, ensure_ascii=False)[1:-1],
                  json.dumps(json.dumps(secret)[1:-1])[1:-1],
                  html.escape(secret)):
            if v:
                variants.add(v)
    if not variants:
        return None
    ordered = sorted(variants, key=len, reverse=True)
    return re.compile('|'.join(re.escape(v) for v in ordered), re.I)


def _known_secrets():
    with _LIVE_LOCK:
        clients = list(_LIVE_CLIENTS)
    out = set()
    for cl in clients:
        out.update(cl._secret_values())
    return out


def mask_text(text, secrets=()):
    """``text`` with secrets replaced by ``***``.

    Masks the literal ``secrets`` given, the passwords and session ids of
    every live :class:`TClient`, password-like fields and cookie and
    authorization headers.  Never raises; None becomes ''.
    """
    if text is None:
        return ''
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception:
            return _MASK
    if not text:
        return text
    literals = set(s for s in secrets if isinstance(s, str) and s)
    literals.update(_known_secrets())
    regex = _literal_regex(frozenset(
        s for s in literals if len(s) >= _MIN_LITERAL))
    if regex is not None:
        text = regex.sub(_MASK, text)
    text = _HEADER_RE.sub(_header_repl, text)
    return _mask_fields(text)


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


def _cut(text, limit=_MAX_TEXT):
    text = text or ''
    return text if len(text) <= limit else text[:limit - 3] + '...'


# ---------------------------------------------------------------- helpers

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


def is_snapshot_uuid(value):
    """True for a VMstore snapshot UUID, ``<uuid>-SST-<16 hex>``."""
    return isinstance(value, str) and bool(SNAPSHOT_UUID_RE.match(value))


def is_vm_uuid(value):
    """True for a VMstore VM UUID, ``<uuid>-VIM-<16 hex>``."""
    return isinstance(value, str) and bool(VM_UUID_RE.match(value))


def _media_type(response):
    headers = getattr(response, 'headers', None) or {}
    value = headers.get('Content-Type') or ''
    return value.split(';', 1)[0].strip().lower()


def _looks_html(text):
    head = (text or '').lstrip()[:512].lower()
    return head.startswith('<!doctype html') or head.startswith('<html') \
        or ('<html' in head and head.startswith('<'))


def _response_text(response):
    try:
        return response.text or ''
    except Exception:
        return ''


def _json_kind(data):
    if isinstance(data, dict):
        return 'a JSON object'
    if isinstance(data, list):
        return 'a JSON list'
    if isinstance(data, str):
        return 'a JSON string'
    if isinstance(data, bool):
        return 'a JSON boolean'
    if isinstance(data, (int, float)):
        return 'a JSON number'
    return 'JSON null'


def parse_error(response, mask=None):
    """(code, message, cause_details) from an error response, never raises.

    The body is masked (``mask``, default :func:`mask_text`) before it is
    parsed or truncated, so a cut never leaves part of a secret behind.
    """
    return _parse_error(response, mask)[:3]


def _parse_error(response, mask=None):
    """parse_error plus the body kind ('tintri', 'json', 'html', ...)."""
    mask = mask or mask_text
    code = message = cause = None
    raw = _response_text(response)
    text = mask(raw)
    kind = 'empty' if not raw.strip() else 'text'
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
        if _looks_html(text) or _media_type(response) in (
                'text/html', 'application/xhtml+xml'):
            kind = 'html'
    else:
        if data is not None:
            kind = 'json'
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        type_id = data.get('typeId')
        if (isinstance(type_id, str) and type_id.endswith('TintriError')) \
                or (isinstance(data.get('code'), str)
                    and data['code'].startswith('ERR-')):
            kind = 'tintri'
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
        if text.strip():
            message = ' '.join(text.split())[:200]
        else:
            message = getattr(response, 'reason', None) or 'empty response'
    return (_cut(mask(str(code)), 64) if code is not None else None,
            _cut(mask(str(message))) if message is not None else None,
            _cut(mask(str(cause))) if cause else None,
            kind)


def describe_body(response, mask=None):
    """What a response body is, for error messages (masked, short)."""
    mask = mask or mask_text
    raw = _response_text(response)
    ctype = _media_type(response) or 'no content type'
    if not raw.strip():
        return 'an empty body (%s)' % ctype
    text = mask(raw)
    excerpt = ' '.join(text.split())[:_EXCERPT]
    if _looks_html(text) or ctype in ('text/html', 'application/xhtml+xml'):
        return 'an HTML page (%s): %r' % (ctype, excerpt)
    try:
        data = json.loads(text)
    except ValueError:
        if 'json' in ctype:
            return 'invalid JSON (%s): %r' % (ctype, excerpt)
        return 'a %s body: %r' % (ctype, excerpt)
    what = _json_kind(data)
    if 'json' not in ctype:
        return '%s with content type %s' % (what, ctype)
    if isinstance(data, dict):
        keys = ', '.join(sorted(str(k) for k in data)[:8])
        return '%s with keys %s' % (what, keys or '(none)')
    return '%s: %r' % (what, excerpt)


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


# ---------------------------------------------------------------- watchdog

_CURRENT_WATCH = contextvars.ContextVar('tintri_attempt_watch',
                                        default=None)
_OPERATION_DEADLINE = contextvars.ContextVar('tintri_operation_deadline',
                                             default=None)


def _dup_socket(sock):
    """A private socket object on a duplicate of ``sock``'s descriptor."""
    try:
        fd = sock.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    if fd is None or fd < 0:
        return None
    try:
        return _socket.socket(fileno=os.dup(fd))
    except OSError:
        return None


def _shutdown_quietly(dup):
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close_quietly(dup):
    try:
        dup.close()
    except OSError:
        pass


class _AttemptWatch(object):
    """The total deadline of one HTTP attempt (see the module docstring)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.expired = False
        self.sent = False
        self._done = False
        self._lock = threading.Lock()
        self._held = {}
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self):
        self._timer.start()

    def attach(self, conn):
        """Watch the socket ``conn`` uses now (called by the connection)."""
        dup = _dup_socket(getattr(conn, 'sock', None))
        if dup is None:
            return
        with self._lock:
            if self._done:
                _close_quietly(dup)
                return
            old = self._held.pop(id(conn), None)
            if old is not None:
                _close_quietly(old)
            self._held[id(conn)] = dup
            conn._tintri_watch = self
            if self.expired:
                _shutdown_quietly(dup)

    def detach(self, conn):
        with self._lock:
            dup = self._held.pop(id(conn), None)
        if dup is not None:
            _close_quietly(dup)

    def _fire(self):
        with self._lock:
            if self._done:
                return
            self.expired = True
            for dup in self._held.values():
                _shutdown_quietly(dup)

    def finish(self):
        self._timer.cancel()
        with self._lock:
            self._done = True
            held, self._held = list(self._held.values()), {}
        for dup in held:
            _close_quietly(dup)


def _release(conn):
    watch = conn.__dict__.pop('_tintri_watch', None) if conn else None
    if watch is not None:
        watch.detach(conn)


class _WatchedConnectionMixin(object):
    """Attach the connection to the attempt's watchdog while it is used."""

    def connect(self):
        watch = _CURRENT_WATCH.get()
        if watch is not None and watch.expired:
            raise socket.timeout('total request deadline passed')
        super().connect()
        if watch is not None:
            watch.attach(self)
            if watch.expired:
                raise socket.timeout('total request deadline passed')

    def request(self, *args, **kwargs):
        watch = _CURRENT_WATCH.get()
        if watch is not None:
            if self.sock is None:
                self.connect()
            else:
                watch.attach(self)
            watch.sent = True
        return super().request(*args, **kwargs)


class _WatchedHTTPConnection(_WatchedConnectionMixin,
                             urllib3_connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin,
                              urllib3_connection.HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3_pool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn):
        _release(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(urllib3_pool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn):
        _release(conn)
        super()._put_conn(conn)


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose pools report connections to the watchdog."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            'http': _WatchedHTTPPool, 'https': _WatchedHTTPSPool}


# ---------------------------------------------------------------- client

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
                 client_id='cinder-tintri', request_timeout=None,
                 auth_retry_interval=DEFAULT_AUTH_RETRY_INTERVAL):
        self.hostname = hostname
        self.username = username
        self._password = password
        self._old_passwords = collections.deque(maxlen=4)
        self._session_ids = collections.deque(maxlen=16)
        version = (api_version or 'v310').strip('/')
        # 'v310.191' selects the minor version at login; URLs use 'v310'.
        self.api_family = version.split('.')[0]
        self._full_api_version = version if '.' in version else None
        self.api_version = self.api_family
        self.port = int(port)
        scheme = 'https' if use_https else 'http'
        self.host_port = '%s:%d' % (format_host(hostname), self.port)
        self.base_url = '%s://%s' % (scheme, self.host_port)
        self.api_prefix = '/api/%s/' % self.api_family
        self.verify = ca_path if (verify and ca_path) else bool(verify)
        self.timeout = (float(connect_timeout), float(read_timeout))
        if request_timeout is None:
            request_timeout = float(connect_timeout) + float(read_timeout)
        self.request_timeout = float(request_timeout)
        if self.request_timeout <= 0:
            raise ValueError('request_timeout must be positive')
        self.retries = max(0, int(retries))
        self.retry_deadline = float(retry_deadline)
        self.page_size = int(page_size)
        self.max_pages = int(max_pages)
        self.client_id = client_id
        self.auth_retry_interval = max(0.0, float(auth_retry_interval or 0))

        self._session = requests.Session()
        self._session.cookies.set_policy(_NoCookies())
        # Retries are ours; a pool large enough for concurrent greenthreads.
        adapter = _WatchedAdapter(
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
        self._failed_logins = 0
        self._api_info = None
        self._no_api_info = False
        self._identity = None
        self._auth_block = None
        with _LIVE_LOCK:
            _LIVE_CLIENTS.add(self)
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
        """Successful logins so far."""
        return self._logins

    @property
    def failed_logins(self):
        """Logins the array rejected so far."""
        return self._failed_logins

    @property
    def logged_in(self):
        return self._session_id is not None

    def reset_counts(self):
        with self._counts_lock:
            self._request_counts.clear()

    def _secret_values(self):
        for _ in range(3):
            try:
                values = [self._password] + list(self._old_passwords)
                values += list(self._session_ids)
                break
            except RuntimeError:  # a deque changed while being copied
                continue
        else:
            values = [self._password]
        if self._session_id:
            values.append(self._session_id)
        return [v for v in values if isinstance(v, str) and v]

    def mask(self, text):
        """``text`` with this client's (and every client's) secrets masked."""
        return mask_text(text, self._secret_values())

    def _err(self, cls, message, **kwargs):
        return cls(self.mask(message), **kwargs)

    def set_credentials(self, username, password):
        """Use new credentials from now on (e.g. after a rotation).

        Ends the back-off after a rejected login; when the credentials
        differ, the current session is dropped so that the next call logs
        in with the new ones.
        """
        with self._login_lock:
            changed = ((username, password)
                       != (self.username, self._password))
            previous = None
            if changed:
                if self._password:
                    self._old_passwords.append(self._password)
                self.username, self._password = username, password
                previous, self._session_id = self._session_id, None
            self._auth_block = None
        if previous is not None:
            self._logout_session(previous)

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
                       max_retries=1, expect='any')
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

    # ------------------------------------------------------------ login

    def _check_auth_block(self):
        block = self._auth_block
        if block is None:
            return
        if time.monotonic() >= block['until']:
            self._auth_block = None
            return
        raise TintriAuthError(
            self.mask('VMstore %s rejected the credentials of user %s; not '
                      'retrying the login before %s (tintri_auth_retry_'
                      'interval=%gs, or until the credentials change; the '
                      'array answered: %s)'
                      % (self.hostname, self.username, block['when'],
                         self.auth_retry_interval, block['reason'])),
            status=block['status'], code=block['code'], method='POST',
            path=self.api_prefix + 'session/login')

    def _reject_login(self, error):
        """Record a rejected login; start a back-off episode."""
        self._failed_logins += 1
        reason = error.message or 'rejected'
        if error.status is not None:
            reason = 'HTTP %s %s%s' % (error.status,
                                       (error.code + ' ') if error.code
                                       else '', reason)
        if self.auth_retry_interval > 0:
            until_wall = time.time() + self.auth_retry_interval
            when = time.strftime('%Y-%m-%d %H:%M:%S UTC',
                                 time.gmtime(until_wall))
            self._auth_block = {
                'until': time.monotonic() + self.auth_retry_interval,
                'when': when, 'reason': reason, 'status': error.status,
                'code': error.code}
            LOG.warning('VMstore %(host)s rejected the credentials of user '
                        '%(user)s (%(reason)s); no new login is tried '
                        'before %(when)s (tintri_auth_retry_interval) or '
                        'until the credentials change.',
                        {'host': self.hostname, 'user': self.username,
                         'reason': reason, 'when': when})
            suffix = '; not retrying the login before %s' % when
        else:
            LOG.warning('VMstore %(host)s rejected the credentials of user '
                        '%(user)s (%(reason)s).',
                        {'host': self.hostname, 'user': self.username,
                         'reason': reason})
            suffix = ''
        return TintriAuthError(
            self.mask('VMstore %s rejected the credentials of user %s: %s%s'
                      % (self.hostname, self.username, reason, suffix)),
            status=error.status, code=error.code, method='POST',
            path=self.api_prefix + 'session/login')

    def _login_locked(self):
        self._check_auth_block()
        if (self._full_api_version is None and self._api_info is None
                and not self._no_api_info):
            try:
                self._fetch_api_info(max_retries=0)
            except TintriNotVMstoreError:
                # Never send the password to something that is not a
                # VMstore.
                raise
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
        path = self.api_prefix + 'session/login'
        try:
            response = self._call('POST', 'session/login', body=body,
                                  auth=False, idempotent=True, raw=True)
        except TintriError as e:
            if e.status in (401, 403) or e.code == 'ERR-API-0124':
                raise self._reject_login(e)
            if e.status == 400:
                raise TintriAuthError(e.message, status=e.status,
                                      code=e.code,
                                      cause_details=e.cause_details,
                                      method=e.method, path=e.path)
            raise
        text = _response_text(response)
        if _looks_html(text) or _media_type(response) in (
                'text/html', 'application/xhtml+xml'):
            raise TintriInvalidResponse(
                'not a valid response: login answered HTTP %s with %s'
                % (response.status_code, describe_body(response, self.mask)),
                status=response.status_code, method='POST', path=path)
        session_id = response.cookies.get(SESSION_COOKIE)
        if not session_id:
            session_id = self._cookie_from_headers(response)
        if not session_id:
            raise self._reject_login(TintriAuthError(
                'login answered HTTP %s without a %s cookie'
                % (response.status_code, SESSION_COOKIE),
                status=response.status_code, method='POST', path=path))
        self._session_ids.append(session_id)
        self._session_id = session_id
        self._auth_block = None
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

    def _endpoint(self, method, full_path, template):
        """The ENDPOINTS row of a call; UndeclaredEndpoint when none."""
        if template is not None:
            rel = template
            if rel.startswith(self.api_prefix):
                rel = rel[len(self.api_prefix):]
            for row in ENDPOINTS:
                if row.method == method and row.template == rel:
                    return row
        else:
            rel = full_path
            if rel.startswith(self.api_prefix):
                rel = rel[len(self.api_prefix):]
            row = find_endpoint(method, rel)
            if row is not None:
                return row
        raise UndeclaredEndpoint(
            '%s %s is not declared in cinder_tintri.client.ENDPOINTS'
            % (method, template or full_path))

    def _count(self, key):
        with self._counts_lock:
            self._request_counts[key] = self._request_counts.get(key, 0) + 1

    def _send_once(self, method, url, path, key, params, body, session_id,
                   budget):
        headers = {}
        if session_id:
            headers['Cookie'] = '%s=%s' % (SESSION_COOKIE, session_id)
        data = None
        if body is not None:
            data = json.dumps(body)
            if LOG.isEnabledFor(logging.DEBUG):
                LOG.debug('VMstore API %s %s body: %s', method, path,
                          self.mask(json.dumps(mask_secrets(body))[:2048]))
        self._count(key)
        start = time.monotonic()
        timeout = (min(self.timeout[0], budget),
                   min(self.timeout[1], budget))
        watch = _AttemptWatch(budget)
        token = _CURRENT_WATCH.set(watch)
        watch.start()
        try:
            response = self._session.request(
                method, url, params=params, data=data, headers=headers,
                timeout=timeout, verify=self.verify,
                allow_redirects=False)
        except Exception as e:
            if watch.expired:
                LOG.debug('VMstore API %(m)s %(p)s: no complete response '
                          'within %(b).2fs (total request deadline)',
                          {'m': method, 'p': path, 'b': budget})
                raise _DeadlineExceeded(budget, watch.sent)
            if isinstance(e, requests.exceptions.RequestException):
                LOG.debug('VMstore API %(m)s %(p)s failed after %(t).3fs: '
                          '%(e)s', {'m': method, 'p': path,
                                    'e': type(e).__name__,
                                    't': time.monotonic() - start})
            raise
        finally:
            watch.finish()
            _CURRENT_WATCH.reset(token)
        if watch.expired:
            # The socket was shut down under the reader: whatever came
            # back (e.g. a status line and part of the headers, read as a
            # complete answer) cannot be trusted.
            LOG.debug('VMstore API %(m)s %(p)s: answer cut off at the total '
                      'request deadline (%(b).2fs)',
                      {'m': method, 'p': path, 'b': budget})
            response.close()
            raise _DeadlineExceeded(budget, watch.sent)
        LOG.debug('VMstore API %(m)s %(p)s -> %(s)s in %(t).3fs',
                  {'m': method, 'p': path, 's': response.status_code,
                   't': time.monotonic() - start})
        return response

    def _error_from_response(self, method, path, response):
        code, message, cause, kind = _parse_error(response, self.mask)
        cls = TintriError
        err = TintriError(message, status=response.status_code, code=code,
                          cause_details=cause, method=method, path=path)
        if method == 'DELETE' and any(t in err.text()
                                      for t in _HAS_CLONES_TEXT):
            cls = SnapshotHasClones
        if cls is not TintriError:
            err = cls(message, status=response.status_code, code=code,
                      cause_details=cause, method=method, path=path)
        err.body_kind = kind
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
              session_id=None, max_retries=None, expect='json',
              validate=None):
        """Send one logical request, with retries and re-login.

        :param template: endpoint template for request counting, relative
            like ``path`` (e.g. 'snapshot/{uuid}'); by default the
            :data:`ENDPOINTS` row matching the path.  A call outside
            ENDPOINTS raises :class:`UndeclaredEndpoint`.
        :param idempotent: resend blindly after a lost response; default by
            HTTP method (POST is not).
        :param reconcile: for non-idempotent calls, called after a lost
            response; returns a value to use as the result, or None to
            resend.
        :param resend_if_running: when False, a request that may still be
            running on the array (read timeout, total deadline, 504, an
            invalid answer) is never resent; the reconcile lookup is
            repeated until it succeeds or the retry budget is spent.
        :param resend_ok_statuses: statuses that mean success when they
            answer a resend of a request whose response was lost.
        :param raw: return the requests.Response instead of decoded JSON.
        :param expect: 'json' (a 2xx body must be JSON) or 'any'.
        :param validate: called with the decoded body; returns the result
            or raises :class:`TintriInvalidResponse`.
        :returns: decoded JSON (None for an empty body), or the response.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        url, full_path = self._url(path)
        row = self._endpoint(method, full_path, template)
        key = '%s %s' % (method, self._url(row.template)[1])
        retries = self.retries if max_retries is None else min(
            self.retries, max_retries)
        deadline = time.monotonic() + self.retry_deadline
        outer = _OPERATION_DEADLINE.get()
        if outer is not None:
            deadline = min(deadline, outer)
        token = _OPERATION_DEADLINE.set(deadline)
        try:
            return self._call_loop(
                method, url, full_path, key, params, body, auth, idempotent,
                reconcile, resend_if_running, resend_ok_statuses, raw,
                session_id, retries, deadline, expect, validate)
        finally:
            _OPERATION_DEADLINE.reset(token)

    def _call_loop(self, method, url, full_path, key, params, body, auth,
                   idempotent, reconcile, resend_if_running,
                   resend_ok_statuses, raw, session_id, retries, deadline,
                   expect, validate):
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
            budget = min(self.request_timeout, deadline - time.monotonic())
            if budget <= 0:
                raise self._err(
                    TintriConnectionError,
                    'retry deadline of %.1fs reached before attempt %d'
                    % (self.retry_deadline, attempt + 1), method=method,
                    path=full_path)
            try:
                response = self._send_once(method, url, full_path, key,
                                           params, body, sid, budget)
            except _DeadlineExceeded as e:
                text = ('no complete response within %.1fs (total request '
                        'deadline: tintri_request_timeout=%gs, capped by '
                        'the retry deadline)' % (e.seconds,
                                                 self.request_timeout))
                if idempotent or not e.sent:
                    error = self._err(TintriConnectionError, text,
                                      method=method, path=full_path)
                else:
                    error = self._err(_ResponseLost,
                                      text + ' after the request was sent',
                                      method=method, path=full_path)
                    error.still_running = True
            except requests.exceptions.SSLError as e:
                # Certificate problems do not heal by retrying.
                raise self._err(TintriConnectionError, 'TLS error: %s' % e,
                                method=method, path=full_path)
            except (requests.exceptions.ConnectionError,
                    requests.exceptions.Timeout) as e:
                kind = ('timed out' if isinstance(
                    e, requests.exceptions.Timeout) else 'connection error')
                if idempotent or not _sent_before_failure(e):
                    error = self._err(TintriConnectionError,
                                      '%s: %s' % (kind, e), method=method,
                                      path=full_path)
                else:
                    error = self._err(
                        _ResponseLost,
                        '%s after the request was sent: %s' % (kind, e),
                        method=method, path=full_path)
                    error.still_running = isinstance(
                        e, requests.exceptions.Timeout)
            except requests.exceptions.RequestException as e:
                raise self._err(TintriConnectionError, str(e),
                                method=method, path=full_path)
            except OSError as e:
                # e.g. requests' "Could not find a suitable TLS CA
                # certificate bundle" for a wrong ca_path.
                raise self._err(TintriConnectionError,
                                'TLS setup error: %s' % e, method=method,
                                path=full_path)

            if response is not None:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        result = self._decode(response, raw, expect, method,
                                              full_path)
                        if validate is not None and not raw:
                            result = validate(result)
                        return result
                    except TintriInvalidResponse as e:
                        if idempotent or reconcile is None:
                            raise
                        # The array may or may not have done the work.
                        error = _ResponseLost(
                            e.message, status=status, method=method,
                            path=full_path)
                        error.still_running = True
                        error.final_cls = TintriInvalidResponse
                elif status in resend_ok_statuses and lost_before:
                    LOG.info('VMstore API %s %s answered HTTP %s to a resend '
                             'after a lost response; the first attempt '
                             'succeeded.', method, full_path, status)
                    return None if not raw else response
                elif status == 401 and auth and not relogged:
                    relogged = True
                    self._relogin(sid)
                    continue
                else:
                    error = self._error_from_response(method, full_path,
                                                      response)
                    if status == 401 and auth:
                        raise TintriAuthError(
                            error.message, status=401, code=error.code,
                            cause_details=error.cause_details,
                            method=method, path=full_path)
                    if status in _RETRY_SAFE_STATUSES:
                        wait_hint = self._retry_after(response)
                    elif status in _RETRY_AMBIGUOUS_STATUSES:
                        if not idempotent:
                            error = _ResponseLost(
                                error.message, status=status,
                                code=error.code,
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
                    if time.monotonic() >= deadline:
                        # No time left for a lookup.
                        raise self._give_up(error, attempt, deadline=True)
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
        if time.monotonic() + delay >= deadline:
            return None, 'deadline'
        return delay, None

    @staticmethod
    def _give_up(error, attempt, deadline=False):
        cls = type(error)
        if isinstance(error, _ResponseLost):
            cls = error.final_cls
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

    def _invalid(self, method, path, what, status=200):
        return self._err(TintriInvalidResponse,
                         'not a valid response: %s' % what, status=status,
                         method=method, path=path)

    def _decode(self, response, raw, expect, method, path):
        if raw:
            return response
        if response.status_code == 204 or not response.content:
            return None
        ctype = _media_type(response)
        text = _response_text(response)
        what = None
        if _looks_html(text) or ctype in ('text/html',
                                          'application/xhtml+xml'):
            what = describe_body(response, self.mask)
        elif 'json' in ctype or (not ctype and expect == 'json'):
            try:
                return json.loads(text)
            except ValueError:
                what = describe_body(response, self.mask)
        elif expect == 'json':
            what = describe_body(response, self.mask)
        else:
            return self.mask(text)
        raise self._invalid(method, path, 'HTTP %s with %s'
                            % (response.status_code, what),
                            status=response.status_code)

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
        return self._call('PUT', path, body=body, template=template,
                          expect='any')

    def delete(self, path, template=None):
        """DELETE a resource; not-found counts as success (returns None)."""
        try:
            return self._call('DELETE', path, template=template,
                              expect='any')
        except SnapshotHasClones:
            raise
        except TintriError as e:
            if _is_not_found(e):
                LOG.debug('VMstore API DELETE %s: already gone.', e.path)
                return None
            raise

    def iter_items(self, path, params=None, template=None, item_check=None):
        """Iterate over every item of a Page listing, following ``next``.

        Plain JSON arrays are yielded as they are. Every item must be a
        JSON object and ``next`` a string (TintriInvalidResponse
        otherwise). ``item_check(item)`` may reject items: they are skipped
        and counted in one warning per listing. Fails with TintriError
        after ``max_pages`` pages, or when the server repeats a page
        position, instead of looping forever. Items seen twice (offset
        paging over a list that changes underneath) are yielded once.
        """
        params = dict(params or {})
        params.setdefault('limit', self.page_size)
        base_path = path.split('?', 1)[0]
        if template is None:
            template = base_path
        api_path = self._url(base_path)[1]
        request_path, request_params = path, params
        seen_next = set()
        seen_ids = set()
        pages = 0
        skipped = []
        try:
            while True:
                pages += 1
                if pages > self.max_pages:
                    raise TintriError(
                        'listing exceeds the page cap of %d pages'
                        % self.max_pages, method='GET', path=api_path)
                page = self._call('GET', request_path, params=request_params,
                                  template=template)
                if isinstance(page, list):
                    items, nxt = page, None
                elif isinstance(page, dict):
                    items = page.get('items')
                    if items is None:
                        items = []
                    nxt = page.get('next')
                    if not isinstance(items, list):
                        raise self._invalid('GET', api_path,
                                            'Page items is %s, not a list'
                                            % _json_kind(items))
                    if nxt is not None and not isinstance(nxt, str):
                        raise self._invalid('GET', api_path,
                                            'Page next is %s, not a string'
                                            % _json_kind(nxt))
                elif page is None:
                    return
                else:
                    raise self._invalid('GET', api_path,
                                        'a listing that is %s'
                                        % _json_kind(page))
                for item in items:
                    if not isinstance(item, dict):
                        raise self._invalid('GET', api_path,
                                            'a listing item that is %s, '
                                            'not an object'
                                            % _json_kind(item))
                    if item_check is not None and not item_check(item):
                        skipped.append(item)
                        continue
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
                                      % query, method='GET', path=api_path)
                seen_next.add(query)
                request_path, request_params = base_path + '?' + query, None
        finally:
            if skipped:
                LOG.warning('VMstore listing GET %(p)s: skipped %(n)d '
                            'malformed item(s), e.g. %(e)s',
                            {'p': api_path, 'n': len(skipped),
                             'e': self.mask(_cut(json.dumps(
                                 mask_secrets(skipped[0]),
                                 default=str), 200))})

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

    def _not_vmstore(self, what, status=None, path='/api/info'):
        return self._err(
            TintriNotVMstoreError,
            _cut('not a VMstore at %s: %s answered %s'
                 % (self.host_port, path, what), 240),
            status=status, method='GET', path=path)

    def _fetch_api_info(self, max_retries=None):
        """GET /api/info, validated; None on a strict array (404)."""
        try:
            response = self._call('GET', '/api/info', auth=False,
                                  max_retries=max_retries, raw=True)
        except TintriError as e:
            if e.status is None or e.body_kind is None or \
                    e.status in _RETRY_AMBIGUOUS_STATUSES | \
                    _RETRY_SAFE_STATUSES:
                # No answer, or a gateway/busy page: not a verdict.
                raise
            if e.body_kind == 'tintri':
                if e.status == 404:
                    LOG.info('VMstore %s has no /api/info (HTTP 404 '
                             'TintriError); identifying it by '
                             'appliance/default/info instead.',
                             self.hostname)
                    self._no_api_info = True
                    return None
                raise
            kinds = {'html': 'an HTML page', 'json': 'a JSON error body',
                     'text': 'a plain-text error', 'empty': 'an empty body'}
            raise self._not_vmstore('HTTP %s with %s' % (
                e.status, kinds.get(e.body_kind, e.body_kind)),
                status=e.status)
        info = self._validate_rest_api(response)
        self._api_info = info
        return info

    def _validate_rest_api(self, response):
        ctype = _media_type(response)
        text = _response_text(response)
        if _looks_html(text) or ctype in ('text/html',
                                          'application/xhtml+xml'):
            raise self._not_vmstore(describe_body(response, self.mask))
        try:
            data = json.loads(text)
        except ValueError:
            raise self._not_vmstore(describe_body(response, self.mask))
        if ctype and 'json' not in ctype:
            raise self._not_vmstore(describe_body(response, self.mask))
        if not isinstance(data, dict):
            raise self._not_vmstore(_json_kind(data) + ', not a RestApi '
                                    'object')
        product = data.get('productName')
        preferred = data.get('preferredVersion')
        versions = data.get('supportedVersionSet')
        problems = []
        if product is not None and not isinstance(product, str):
            problems.append('productName is %s' % _json_kind(product))
        if preferred is not None and not isinstance(preferred, str):
            problems.append('preferredVersion is %s' % _json_kind(preferred))
        if versions is not None and not (
                isinstance(versions, list)
                and all(isinstance(v, str) for v in versions)):
            problems.append('supportedVersionSet is not a list of strings')
        if problems:
            raise self._not_vmstore('a RestApi object whose %s'
                                    % ', '.join(problems))
        if isinstance(product, str) and 'global center' in product.lower():
            raise self._not_vmstore('productName %r (a Tintri Global '
                                    'Center, not a VMstore)'
                                    % _cut(product, 60))
        if not (isinstance(product, str) and 'vmstore' in product.lower()) \
                and preferred is None and versions is None:
            raise self._not_vmstore(
                'a JSON object without the RestApi fields (productName, '
                'preferredVersion, supportedVersionSet): keys %s'
                % (', '.join(sorted(str(k) for k in data)[:8]) or '(none)'))
        return data

    def api_info(self, max_retries=None):
        """The array's RestApi object (GET /api/info, no authentication).

        Validated: raises :class:`TintriNotVMstoreError` when the answer is
        not a VMstore's.  A strict array that answers /api/info with a 404
        TintriError is identified instead by the official
        ``GET /v310/appliance/default/info`` (this logs in, without
        fullApiVersion); the result then has ``productName``
        'Tintri VMstore', ``preferredVersion`` and ``supportedVersionSet``
        of the API family in use, the ApplianceInfo ``modelName`` and
        ``osVersion``, and ``identifiedBy`` naming that endpoint.
        """
        if not self._no_api_info:
            info = self._fetch_api_info(max_retries=max_retries)
            if info is not None:
                return info
        if self._identity is not None:
            return dict(self._identity)
        path = self._url('appliance/default/info')[1]
        try:
            appliance = self.get_appliance_info()
        except TintriInvalidResponse as e:
            raise self._not_vmstore('HTTP 404, and %s answered %s'
                                    % (path, e.message), status=e.status)
        model = appliance.get('modelName')
        version = appliance.get('osVersion')
        if not (isinstance(model, str) or isinstance(version, str)) or \
                (model is not None and not isinstance(model, str)) or \
                (version is not None and not isinstance(version, str)):
            raise self._not_vmstore(
                'HTTP 404, and %s answered an object without the '
                'ApplianceInfo fields modelName/osVersion' % path)
        full = self._full_api_version or self.api_family
        self._identity = {
            'productName': 'Tintri VMstore',
            'preferredVersion': full,
            'supportedVersionSet': [full],
            'modelName': model,
            'osVersion': version,
            'identifiedBy': path,
        }
        return dict(self._identity)

    def get_appliance_info(self):
        """ApplianceInfo of the VMstore (modelName, osVersion, ...)."""
        path = 'appliance/default/info'
        info = self._call('GET', path, template='appliance/{id}/info')
        if isinstance(info, list):
            info = info[0] if info else {}
        if info is None:
            info = {}
        if not isinstance(info, dict):
            raise self._invalid('GET', self._url(path)[1],
                                'ApplianceInfo is %s' % _json_kind(info))
        return info

    def get_datastore_stats(self):
        """Capacity of the default datastore in GiB.

        Returns total_gib, free_gib, used_gib, provisioned_gib (floats;
        provisioned_gib is None when the array does not report
        ``spaceProvisionedGiB``) and 'raw' (the DatastoreStat). Every value
        must be a finite, non-negative number (TintriInvalidResponse
        otherwise).
        """
        path = 'datastore/default/statsRealtime'
        api_path = self._url(path)[1]
        page = self._call('GET', path, template='datastore/{id}/statsRealtime')
        try:
            items = page['items'] if isinstance(page, dict) else page
            stat = items[0]['sortedStats'][0]
        except (KeyError, IndexError, TypeError):
            raise self._invalid('GET', api_path,
                                'no datastore statistics in the response')
        if not isinstance(stat, dict):
            raise self._invalid('GET', api_path, 'DatastoreStat is %s'
                                % _json_kind(stat))

        required = object()

        def gib(name, default=required):
            value = stat.get(name)
            if value is None:
                if default is required:
                    raise self._invalid('GET', api_path,
                                        'datastore statistics lack %s'
                                        % name)
                return default
            if not _is_number(value) or value < 0:
                raise self._invalid('GET', api_path, '%s is %s, not a '
                                    'finite non-negative number'
                                    % (name, _cut(repr(value), 40)))
            return float(value)

        total = gib('spaceTotalGiB')
        free = gib('spaceRemainingPhysicalGiB')
        used = gib('spaceUsedPhysicalGiB', max(0.0, total - free))
        provisioned = gib('spaceProvisionedGiB', None)
        return {'total_gib': total, 'free_gib': free, 'used_gib': used,
                'provisioned_gib': provisioned, 'raw': stat}

    def get_file_info(self, path):
        """FileSystemInfo of a file on the datastore, or None on 404.

        ``path`` is a datastore path ('/tintri/cinder/volume-x' or
        'cinder/volume-x'). Returns {'is_dir', 'path', 'size', 'raw'}.
        Note that an array without this endpoint also answers 404.
        """
        rel = _checked_relative(path, 'path')
        quoted = '/'.join(_q(part) for part in rel.split('/'))
        req = 'appliance/default/fileDirInfo/%s' % quoted
        api_path = self._url(req)[1]
        try:
            info = self._call('GET', req,
                              template='appliance/{id}/fileDirInfo/{path}')
        except TintriError as e:
            if e.status == 404:
                return None
            raise
        if not isinstance(info, dict):
            raise self._invalid('GET', api_path, 'FileSystemInfo is %s'
                                % _json_kind(info))
        is_dir = info.get('isDir')
        size = info.get('sizeInBytes')
        got_path = info.get('path')
        if not isinstance(is_dir, bool):
            raise self._invalid('GET', api_path, 'FileSystemInfo isDir is '
                                'not a boolean')
        if size is not None and (not _is_number(size) or size < 0):
            raise self._invalid('GET', api_path, 'FileSystemInfo '
                                'sizeInBytes is not a non-negative number')
        if got_path is not None and not isinstance(got_path, str):
            raise self._invalid('GET', api_path, 'FileSystemInfo path is '
                                'not a string')
        return {'is_dir': is_dir, 'path': got_path if got_path else rel,
                'size': int(size) if size is not None else None,
                'raw': info}

    # ------------------------------------------------------------ disks

    def find_virtual_disk(self, uuid=None, path=None):
        """The virtual disk with this uuid and/or path, or None.

        GET /v310/virtualDisk?uuid=...&path=... (VirtualDiskFilterSpec).
        Returns the first acceptable item as {'vm_uuid', 'vm_name',
        'instance_uuid', 'path', 'uuid', 'raw'}. Items are rejected
        (skipped, logged) when their vmUuid is not a well-formed VIM id;
        when ``path`` was asked for and the item's path is missing or
        differs from it; when only ``uuid`` was asked for and the item
        names neither that uuid (as its uuid or instanceUuid) nor a path
        containing it - e.g. an array that ignored the filter.
        """
        if uuid is None and path is None:
            raise TintriInvalidInput('find_virtual_disk needs uuid or path')
        params = {}
        if uuid is not None:
            if not isinstance(uuid, str) or not uuid.strip():
                raise TintriInvalidInput('find_virtual_disk: uuid %r is not '
                                         'a non-empty string' % (uuid,))
            params['uuid'] = uuid
        expected = None
        if path is not None:
            expected = _checked_relative(path, 'path')
            params['path'] = expected
        wanted = uuid.lower() if uuid is not None else None

        def acceptable(item):
            vm_uuid = _uuid_of(item, 'vmUuid')
            if not is_vm_uuid(vm_uuid):
                return False
            item_path = item.get('path')
            if item_path is not None and not isinstance(item_path, str):
                return False
            rel = export_relative(item_path) if item_path else None
            if expected is not None:
                return rel == expected
            ids = [(_uuid_of(item) or '').lower(),
                   str(item.get('instanceUuid') or '').lower()]
            if wanted in ids:
                return True
            # Or the file is named after it ('volume-<uuid>'), as a whole
            # token, not as any substring.
            base = rel.rsplit('/', 1)[-1].lower() if rel else ''
            return bool(re.search(r'(?<![0-9a-z])%s(?![0-9a-z])'
                                  % re.escape(wanted), base))

        for item in self.iter_items('virtualDisk', params,
                                    item_check=acceptable):
            return {
                'vm_uuid': _uuid_of(item, 'vmUuid'),
                'vm_name': item.get('vmName'),
                'instance_uuid': item.get('instanceUuid'),
                'path': item.get('path'),
                'uuid': _uuid_of(item),
                'raw': item,
            }
        return None

    # ------------------------------------------------------------ snapshots

    def _created_snapshot_uuid(self, result):
        """The new snapshot's UUID from a cinder/snapshot answer."""
        api_path = self._url('cinder/snapshot')[1]
        items = result
        if isinstance(result, dict):
            items = result.get('items') if 'items' in result else [result]
        if not isinstance(items, list):
            raise self._invalid('POST', api_path, 'a create answer that is '
                                '%s' % _json_kind(result))
        if not items:
            raise self._invalid('POST', api_path, 'a create answer without '
                                'any snapshot UUID')
        first = items[0]
        uuid = first if isinstance(first, str) else _uuid_of(first)
        if not is_snapshot_uuid(uuid):
            raise self._invalid(
                'POST', api_path, 'a create answer whose first item %s is '
                'not a snapshot UUID (<uuid>-SST-<16 hex>)'
                % _cut(repr(first), 80))
        return uuid

    def _find_created_snapshot(self, description, vm_uuid):
        """The snapshot a lost or garbled create made, if any."""
        matches = [s for s in self.find_snapshots(contain=description)
                   if s.get('description') == description]
        if not matches:
            return None
        if vm_uuid:
            own = [s for s in matches if str(
                _uuid_of(s, 'vmUuid') or '').lower() == vm_uuid.lower()]
            matches = own or matches
        if len(matches) > 1:
            LOG.warning('%d VMstore snapshots share the description %s; '
                        'using %s.', len(matches), description,
                        _uuid_of(matches[0]))
        return matches[0]

    def create_snapshot(self, volume_path, volume_name, volume_id,
                        snapshot_name, deletion_policy=None, vm_name=None,
                        vm_uuid=None, instance_id=None):
        """Snapshot the volume file; returns the snapshot UUID.

        ``vm_uuid`` and ``instance_id`` override the CinderSnapshotSpec
        vmTintriUuid and instanceId (both default to ``volume_id``).
        ``snapshot_name`` becomes the description and must be unique: it is
        how a POST whose response was lost or garbled is reconciled
        without creating a duplicate. After a dropped connection the
        snapshot is looked up (by description, preferring the vmTintriUuid
        sent) and the POST resent only if it is not there; after a read
        timeout, the total deadline or an answer that is not a valid
        snapshot UUID (the array may still be working or may have made it)
        it is only looked up again, within the retry budget, and never
        resent. A found snapshot is used only if its UUID is well formed.
        """
        rel = export_relative(volume_path)
        sent_vm_uuid = vm_uuid or volume_id
        spec = {
            'typeId': SNAPSHOT_SPEC_TYPE,
            'file': '%s/%s' % (rel, volume_name) if rel else volume_name,
            'vmName': vm_name or volume_name,
            'description': snapshot_name,
            'vmTintriUuid': sent_vm_uuid,
            'instanceId': instance_id or volume_id,
            'snapshotCreator': SNAPSHOT_CREATOR,
        }
        if deletion_policy:
            spec['deletionPolicy'] = deletion_policy

        def reconcile():
            found = self._find_created_snapshot(snapshot_name, sent_vm_uuid)
            return _Found(found) if found else None

        result = self._call('POST', 'cinder/snapshot', body=spec,
                            reconcile=reconcile, resend_if_running=False,
                            validate=self._created_snapshot_uuid)
        if isinstance(result, _Found):
            return _uuid_of(result.value)
        return result

    def _valid_snapshot(self, item):
        return is_snapshot_uuid(_uuid_of(item))

    def get_snapshot(self, uuid):
        """The Snapshot object, or None when it does not exist.

        The answer must be a Snapshot whose UUID is well formed and is the
        one asked for (TintriInvalidResponse otherwise).
        """
        api_path = self._url('snapshot/%s' % _q(uuid))[1]
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
            if not isinstance(items, list):
                raise self._invalid('GET', api_path, 'Page items is not a '
                                    'list')
            snap = items[0] if items else None
        if snap is None:
            return None
        if not isinstance(snap, dict):
            raise self._invalid('GET', api_path, 'a snapshot that is %s'
                                % _json_kind(snap))
        got = _uuid_of(snap)
        if not is_snapshot_uuid(got):
            raise self._invalid('GET', api_path, 'a snapshot whose uuid %s '
                                'is not <uuid>-SST-<16 hex>'
                                % _cut(repr(got), 80))
        if got.lower() != str(uuid).lower():
            raise self._invalid('GET', api_path, 'snapshot %s instead of %s'
                                % (got, uuid))
        return snap

    def find_snapshots(self, **filters):
        """Iterator over all snapshots matching SnapshotFilterSpec filters.

        Items without a well-formed snapshot UUID are skipped (logged).
        """
        filters = {k: v for k, v in filters.items() if v is not None}
        return self.iter_items('snapshot', filters,
                               item_check=self._valid_snapshot)

    def count_snapshots(self, **filters):
        """How many snapshots match the SnapshotFilterSpec filters.

        One request (limit=1) reading the Page's ``filteredTotal``; when
        the Page lacks it (or is a plain list), the listing is counted
        page by page instead.
        """
        params = {k: v for k, v in filters.items() if v is not None}
        params['limit'] = 1
        api_path = self._url('snapshot')[1]
        page = self._call('GET', 'snapshot', params=params)
        if isinstance(page, dict):
            total = page.get('filteredTotal')
            if _is_count(total):
                return int(total)
            items = page.get('items')
            if items is not None and not isinstance(items, list):
                raise self._invalid('GET', api_path, 'Page items is %s, not '
                                    'a list' % _json_kind(items))
        elif page is not None and not isinstance(page, list):
            raise self._invalid('GET', api_path, 'a listing that is %s'
                                % _json_kind(page))
        LOG.debug('VMstore GET %s: no filteredTotal; counting the listing.',
                  api_path)
        return sum(1 for _ in self.find_snapshots(**filters))

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
        """PUT snapshot/{uuid} with a new deletionPolicy.

        Not in the official v310 index (which has only GET and DELETE for
        that path). Raises :class:`TintriNotSupported` when the array
        answers 405 or 501, or 400/404 whose body does not say that the
        snapshot is missing. "Says the snapshot is missing" means: the
        text names the snapshot (its UUID or the word 'snapshot'), has a
        not-found phrase ('not found', 'does not exist', 'failed to
        lookup', 'no such') and no 'no resource'/'not supported'/
        'method'. Otherwise (snapshot missing, other errors) the
        TintriError is raised as it is. A caller can tell "snapshot gone"
        from "PUT unsupported" for sure with :meth:`get_snapshot`.
        """
        body = {
            'typeId': REQUEST_TYPE,
            'objectsWithNewValues': [{'typeId': SNAPSHOT_TYPE,
                                      'deletionPolicy': policy}],
            'propertiesToBeUpdated': ['deletionPolicy'],
        }
        try:
            return self.put('snapshot/%s' % _q(uuid), body,
                            template='snapshot/{uuid}')
        except TintriNotSupported:
            raise
        except TintriError as e:
            if e.status in (405, 501) or (
                    e.status in (400, 404)
                    and not _says_snapshot_missing(e, uuid)):
                raise TintriNotSupported(
                    'the array does not support changing the deletion '
                    'policy of snapshot %s: %s' % (uuid, e.message),
                    status=e.status, code=e.code,
                    cause_details=e.cause_details, method=e.method,
                    path=e.path)
            raise

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

    def clone_volume(self, snapshot_uuid, volume_path, landed=None):
        """Clone a snapshot into the directory ``volume_path``.

        The array creates the directory ``volume_path`` (e.g.
        '/tintri/cinder/tmp-xyz') holding the clone under the source file's
        base name. When the response to the POST is lost (or is not a
        valid answer), ``landed()`` (the caller can see the share) is
        asked whether the clone is there; if not the POST is resent, and
        a 409 "already exists" answering that resend means the first
        attempt created the clone and counts as success.
        """
        spec = {
            'typeId': CLONE_SPEC_TYPE,
            'tintriSnapshotUuid': snapshot_uuid,
            'destinationPaths': [export_relative(volume_path)],
        }

        def reconcile():
            if landed is not None and landed():
                return {}
            return None
        return self._call('POST', 'cinder/clone', body=spec,
                          reconcile=reconcile,
                          resend_ok_statuses=(409,), expect='any')

    def host_refresh(self, hostname, volume_file_path, region=None,
                     volume_id=None):
        """Ask the VMstore to rediscover the OpenStack host (optional).

        Idempotent (safe to repeat). Bad arguments raise
        :class:`TintriInvalidInput` before anything is sent.
        """
        if not isinstance(hostname, str) or not hostname.strip() or \
                any(c.isspace() or ord(c) < 32 for c in hostname.strip()):
            raise TintriInvalidInput('host_refresh: hostname %r is not a '
                                     'host name' % (hostname,))
        rel = _checked_relative(volume_file_path, 'volume_file_path')
        for name, value in (('region', region), ('volume_id', volume_id)):
            if value is not None and (not isinstance(value, str)
                                      or any(ord(c) < 32 for c in value)):
                raise TintriInvalidInput('host_refresh: %s %r is not a '
                                         'string' % (name, value))
        spec = {
            'typeId': HOST_REFRESH_TYPE,
            'hostname': hostname.strip(),
            'volumeFilePath': rel,
        }
        if region:
            spec['region'] = region
        if volume_id:
            spec['volumeId'] = volume_id
        # A refresh is safe to repeat.
        return self._call('POST', 'cinder/host/refresh', body=spec,
                          idempotent=True, expect='any')

    # ------------------------------------------------------------ remote copy
    # Cross-array clone (cinder_tintri.cross_array): a snapshot of this
    # array copied to another VMstore through a replication path.  The
    # endpoints are in the official index; the RemoteCopyInfo fields and
    # the DatastoreReplicationPath fields are not (SDK and DDN 3.0.10
    # only), so every answer is checked and the caller falls back to a
    # host copy when the array does not do what is assumed.

    def get_appliance_ips(self):
        """The data addresses of the appliance (``ip`` and ``ipCidr``)."""
        path = 'appliance/default/ips'
        items = self._call('GET', path, template='appliance/{id}/ips')
        if isinstance(items, dict) and 'items' in items:
            items = items.get('items')
        if items is None:
            return set()
        if not isinstance(items, list):
            raise self._invalid('GET', self._url(path)[1],
                                'ApplianceIp list is %s' % _json_kind(items))
        found = set()
        for item in items:
            if not isinstance(item, dict):
                continue
            for key in ('ip', 'ipCidr'):
                value = item.get(key)
                if isinstance(value, str) and value.strip():
                    found.add(value.strip().split('/', 1)[0].lower())
        return found

    def list_replication_paths(self):
        """Replication paths of the default datastore: [{id, destination}].

        A path without a usable ``id`` (a flat string, or a Uuid object)
        or ``destinationIp`` is skipped.  An array that has no replication
        (the endpoint missing, 404/501) has none: [].
        """
        path = 'datastore/default/replicationPath'
        try:
            items = self._call('GET', path,
                               template='datastore/{id}/replicationPath')
        except (TintriConnectionError, TintriAuthError):
            raise
        except TintriError as e:
            if e.status in (404, 405, 501) or isinstance(
                    e, TintriNotSupported):
                LOG.info('VMstore has no replication paths: %s', e)
                return []
            raise
        if isinstance(items, dict) and 'items' in items:
            items = items.get('items')
        if items is None:
            return []
        if not isinstance(items, list):
            raise self._invalid('GET', self._url(path)[1],
                                'replication paths are %s'
                                % _json_kind(items))
        paths = []
        for item in items:
            ident = item.get('id') if isinstance(item, dict) else None
            if isinstance(ident, dict):
                ident = ident.get('uuid')
            dest = item.get('destinationIp') if isinstance(
                item, dict) else None
            if not (_is_token(ident) and isinstance(dest, str)
                    and dest.strip()):
                LOG.warning('Ignoring a replication path without a usable '
                            'id and destinationIp: %s',
                            _cut(self.mask(repr(item)), _EXCERPT))
                continue
            paths.append({'id': ident,
                          'destination': dest.strip().lower()})
        return paths

    def remote_copy(self, snapshot_uuid, replication_path_id, directory):
        """Ask the array to copy a snapshot to a peer; returns the task id.

        ``directory`` is the destination directory on the peer's
        datastore (relative to /tintri), where the copy lands under the
        snapshotted file's name.  A lost response is not resent (the copy
        may be running): the caller cleans up and reports it.
        """
        rel = _checked_relative(directory, 'directory')
        if not _is_token(replication_path_id):
            raise TintriInvalidInput('remote_copy: replication path %r'
                                     % (replication_path_id,))
        spec = {
            'typeId': VM_CLONE_SPEC_TYPE,
            'snapshotId': snapshot_uuid,
            'count': 1,
            'remoteCopyInfo': {
                'typeId': REMOTE_COPY_INFO_TYPE,
                'replicationPathId': replication_path_id,
                'directoryName': rel,
            },
        }
        task = self._call('POST', 'vm', body=spec, resend_if_running=False)
        api_path = self._url('vm')[1]
        # A Task (the index); tolerate a list or a Page of one.
        if isinstance(task, dict) and 'items' in task:
            task = task.get('items')
        if isinstance(task, list):
            task = task[0] if len(task) == 1 else None
        ident = _uuid_of(task)
        if not _is_token(ident):
            raise self._invalid('POST', api_path, 'a Task without a usable '
                                'uuid: %s' % _cut(self.mask(repr(task)),
                                                  _EXCERPT))
        return ident

    def get_task(self, task_id):
        """The Task object (TintriInvalidResponse if it is not one)."""
        rel = 'task/%s' % _q(task_id)
        task = self._call('GET', rel, template='task/{id}')
        if isinstance(task, dict) and 'items' in task:
            items = task.get('items')
            task = items[0] if isinstance(items, list) and items else None
        if not isinstance(task, dict):
            raise self._invalid('GET', self._url(rel)[1],
                                'a Task that is %s' % _json_kind(task))
        return task

    def wait_task(self, task_id, deadline, poll_interval=2.0,
                  sleep=time.sleep):
        """Poll a task until it ends; return it when it succeeded.

        Raises :class:`TintriTaskFailed` (with the array's masked error
        text) when it ended FAILED or CANCELLED, or reported an error, and
        :class:`TintriTaskTimeout` at ``deadline`` (time.monotonic()).
        Every poll's retries are bounded by the deadline too.
        """
        poll_interval = max(0.05, float(poll_interval))
        path = self._url('task/%s' % _q(task_id))[1]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._err(TintriTaskTimeout, 'task %s did not end '
                                'in time' % task_id, method='GET', path=path)
            token = _OPERATION_DEADLINE.set(deadline)
            try:
                task = self.get_task(task_id)
            except TintriConnectionError:
                if time.monotonic() >= deadline:
                    raise self._err(TintriTaskTimeout, 'task %s did not '
                                    'end in time' % task_id, method='GET',
                                    path=path)
                raise
            finally:
                _OPERATION_DEADLINE.reset(token)
            outcome = task_outcome(task)
            if outcome == 'success':
                return task
            if outcome == 'failed':
                raise self._err(TintriTaskFailed,
                                'task %s ended %s: %s' % (
                                    task_id, task.get('state') or 'failed',
                                    _task_error_text(task)),
                                method='GET', path=path)
            sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    def cancel_task(self, task_id):
        """Cancel a task (DELETE task/{id}); failures are only logged."""
        try:
            self._call('DELETE', 'task/%s' % _q(task_id),
                       template='task/{id}', expect='any', max_retries=1)
            return True
        except TintriError as e:
            LOG.warning('Could not cancel VMstore task %(id)s: %(err)s',
                        {'id': task_id, 'err': e})
            return False

    # ------------------------------------------------------------ QoS (VM)
    # PUT /v310/vm/{vmId}/qosConfig with a Request<VirtualMachineQoSConfig>
    # (official index; errors 3109/3110/3112/3113 (400) and 8001 (404)).
    # 0 means "the system default": no explicit floor or ceiling.

    def set_vm_qos(self, vm_uuid, min_iops, max_iops):
        """Set a VM's minimum and maximum normalized IOPS (0: default).

        Bad arguments raise :class:`TintriInvalidInput` before anything is
        sent.  The array's refusals are raised as :class:`VmNotLive`
        (ERR-API-3110, "can't update QoS for non-live VMs"),
        :class:`VmNotFound` (404 / ERR-API-8001) or :class:`QosRefused`
        (3109/3112/3113: the values or the request); other errors as they
        are.  Idempotent: the same values may be sent again.
        """
        if not is_vm_uuid(vm_uuid):
            raise TintriInvalidInput('set_vm_qos: %r is not a VMstore VM '
                                     'uuid' % (vm_uuid,))
        for name, value in (('min_iops', min_iops), ('max_iops', max_iops)):
            if not _is_count(value):
                raise TintriInvalidInput('set_vm_qos: %s %r is not an '
                                         'integer >= 0' % (name, value))
        if min_iops and max_iops and min_iops > max_iops:
            raise TintriInvalidInput('set_vm_qos: min_iops %s is above '
                                     'max_iops %s' % (min_iops, max_iops))
        body = {
            'typeId': REQUEST_TYPE,
            'objectsWithNewValues': [{
                'typeId': QOS_CONFIG_TYPE,
                'minNormalizedIops': int(min_iops),
                'maxNormalizedIops': int(max_iops),
            }],
            'propertiesToBeUpdated': ['minNormalizedIops',
                                      'maxNormalizedIops'],
        }
        try:
            return self._call('PUT', 'vm/%s/qosConfig' % _q(vm_uuid),
                              body=body, template='vm/{id}/qosConfig',
                              idempotent=True, expect='any')
        except (TintriConnectionError, TintriAuthError,
                TintriInvalidResponse):
            raise
        except TintriError as e:
            cls = _qos_error_class(e)
            if cls is None:
                raise
            err = cls(e.message, status=e.status, code=e.code,
                      cause_details=e.cause_details, method=e.method,
                      path=e.path)
            err.body_kind = e.body_kind
            raise err from e


# ---------------------------------------------------------------- QoS errors

class VmNotLive(TintriError):
    """ERR-API-3110: the array updates QoS only of live VMs."""


class VmNotFound(TintriError):
    """The array has no such VM (404 / ERR-API-8001)."""


class QosRefused(TintriError):
    """The array refused the QoS values (ERR-API-3109/3112/3113)."""


def _qos_error_class(error):
    code = (error.code or '').upper()
    if code.endswith('3110'):
        return VmNotLive
    if error.status == 404 or code.endswith('8001'):
        return VmNotFound
    if code.endswith(('3109', '3112', '3113')):
        return QosRefused
    return None


class _Found(object):
    """Result of a reconciliation, distinct from any JSON value."""

    def __init__(self, value):
        self.value = value


def _q(value):
    return urlparse.quote(str(value), safe='')


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_count(value):
    return _is_number(value) and value >= 0 and float(value).is_integer()


_TASK_RUNNING = frozenset(['QUEUED', 'RUNNING', 'CANCEL_PENDING'])
_TASK_FAILED = frozenset(['FAILED', 'CANCELLED'])
_TOKEN_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$')


def _is_token(value):
    """An id that is safe in a path segment and a log line."""
    return isinstance(value, str) and bool(_TOKEN_RE.match(value))


def task_outcome(task):
    """'success', 'failed' or 'running' for a Task object.

    ``state`` decides (SUCCESS; FAILED/CANCELLED; QUEUED/RUNNING/
    CANCEL_PENDING).  Without a known state, ``jobDone`` does: done with
    ``progressError`` or an ``error`` is a failure, done otherwise a
    success (the caller still checks that the copy landed).
    """
    state = task.get('state')
    state = state.upper() if isinstance(state, str) else None
    if state == 'SUCCESS':
        return 'success'
    if state in _TASK_FAILED:
        return 'failed'
    if state in _TASK_RUNNING:
        return 'running'
    if task.get('jobDone') is True:
        if task.get('progressError') is True or task.get('error'):
            return 'failed'
        return 'success'
    return 'running'


def _task_error_text(task):
    """The failure text of a Task (masked by the error built from it)."""
    parts = []
    err = task.get('error')
    if isinstance(err, dict):
        for key in ('code', 'message', 'causeDetails'):
            value = err.get(key)
            if isinstance(value, str) and value.strip():
                parts.append(value.strip())
    desc = task.get('progressDescription')
    if isinstance(desc, str) and desc.strip():
        parts.append(desc.strip())
    text = '; '.join(parts) or 'no error text'
    return _cut(''.join(c if c.isprintable() else ' ' for c in text))


def _checked_relative(path, name):
    """A datastore path relative to /tintri; TintriInvalidInput if bad."""
    if not isinstance(path, str) or not path.strip():
        raise TintriInvalidInput('%s %r is not a datastore path'
                                 % (name, path))
    rel = export_relative(path)
    parts = rel.split('/')
    if not rel or any(p in ('', '.', '..') for p in parts) or any(
            ord(c) < 32 for c in rel):
        raise TintriInvalidInput('%s %r is not a file path under %s'
                                 % (name, path, EXPORT_ROOT))
    return rel


def _uuid_of(item, key='uuid'):
    if not isinstance(item, dict):
        return None
    uuid = item.get(key)
    if isinstance(uuid, dict):
        uuid = uuid.get('uuid')
    return uuid if isinstance(uuid, str) else None


def _is_not_found(error):
    if isinstance(error, TintriInvalidResponse):
        return False
    if error.status == 404 or error.code == 'ERR-API-8001':
        return True
    return any(t in error.text() for t in _NOT_FOUND_TEXT)


def _says_snapshot_missing(error, uuid):
    text = error.text()
    names_it = str(uuid).lower() in text or 'snapshot' in text
    not_found = any(t in text for t in _NOT_FOUND_TEXT + (
        'not found', 'no such'))
    other = any(t in text for t in ('no resource', 'not supported',
                                    'unsupported', 'method'))
    return names_it and not_found and not other
