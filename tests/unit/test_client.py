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
"""Unit tests of the REST client's pure logic, with a faked transport.

End-to-end behaviour against the VMstore simulator is in
test_client_sim.py.
"""

import datetime
import html
import json
import logging
import threading
from urllib import parse as urlparse

import fixtures
import requests
import testtools
from urllib3 import exceptions as urllib3_exc

from cinder_tintri import client


PASSWORD = 'Pa55-s3cret!'
SESSION = 'SESSION-0123456789abcdef'
FS = 'C218198C-9CE4-E5FD-00B3-EE96D2B3270F'


def snap_uuid(n):
    return '%s-SST-%016X' % (FS, n)


def vm_uuid(n):
    return '%s-VIM-%016X' % (FS, n)


S1, S2, S9 = snap_uuid(1), snap_uuid(2), snap_uuid(9)


def make_response(status, body=None, cookies=None, text=None,
                  headers=None, content_type=None):
    resp = requests.Response()
    resp.status_code = status
    if text is not None:
        resp._content = text.encode()
        resp.headers['Content-Type'] = content_type or 'text/plain'
    elif body is not None:
        resp._content = json.dumps(body).encode()
        resp.headers['Content-Type'] = content_type or 'application/json'
    else:
        resp._content = b''
    resp.headers.update(headers or {})
    if cookies:
        resp.cookies = requests.cookies.cookiejar_from_dict(cookies)
    resp.reason = {200: 'OK', 204: 'No Content'}.get(status, 'Error')
    return resp


def tintri_error(status, code, message, cause=''):
    return make_response(status, {
        'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.TintriError',
        'code': code, 'message': message, 'causeDetails': cause})


class FakeTransport(object):
    """Stands in for requests.Session.request.

    ``script`` maps 'METHOD /path' to a list of responses or exceptions
    consumed in order; the last one repeats. Login and /api/info answer by
    default.
    """

    def __init__(self, script=None):
        self.script = dict(script or {})
        self.calls = []

    def __call__(self, method, url, **kwargs):
        path = requests.utils.urlparse(url).path
        key = '%s %s' % (method, path)
        self.calls.append((key, kwargs))
        steps = self.script.get(key)
        if steps is None:
            if key == 'GET /api/info':
                return make_response(200, {'preferredVersion': 'v310.191'})
            if key == 'POST /api/v310/session/login':
                return make_response(200, 'ADMIN',
                                     cookies={'JSESSIONID': SESSION})
            if key == 'POST /api/v310/session/logout':
                return make_response(204)
            raise AssertionError('unexpected request %s' % key)
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if callable(step) and not isinstance(step, requests.Response):
            step = step(method, url, **kwargs)
        if isinstance(step, BaseException):
            raise step
        return step

    def keys(self):
        return [k for k, _ in self.calls]


def conn_reset():
    return requests.exceptions.ConnectionError(
        urllib3_exc.ProtocolError('Connection aborted.',
                                  ConnectionResetError(104, 'reset')))


def conn_refused():
    return requests.exceptions.ConnectionError(urllib3_exc.MaxRetryError(
        None, '/x', urllib3_exc.NewConnectionError(None, 'refused')))


class ClientTestBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Keep retries fast and deterministic.
        self.sleeps = []
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.time.sleep', self.sleeps.append))

    def make_client(self, script=None, **kwargs):
        kwargs.setdefault('connect_timeout', 3.0)
        kwargs.setdefault('read_timeout', 7.0)
        cl = client.TClient('vmstore.example', 'admin', PASSWORD, **kwargs)
        transport = FakeTransport(script)
        cl._session.request = transport
        return cl, transport

    def declare(self, method, template):
        """Add a test-only row to the client's endpoint table."""
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.ENDPOINTS', client.ENDPOINTS + (
                client.Endpoint(method, template, 'test'),)))


class ErrorTest(testtools.TestCase):

    def test_str_full(self):
        e = client.TintriError('Resource not found', status=404,
                               code='ERR-API-8001',
                               cause_details='Failed to lookup X',
                               method='GET', path='/api/v310/snapshot/X')
        self.assertEqual('VMstore API GET /api/v310/snapshot/X failed: '
                         'HTTP 404 ERR-API-8001: Resource not found '
                         '(Failed to lookup X)', str(e))
        self.assertEqual(404, e.status)
        self.assertEqual('ERR-API-8001', e.code)
        self.assertEqual('Failed to lookup X', e.cause_details)

    def test_str_minimal(self):
        e = client.TintriConnectionError('timed out', method='POST',
                                         path='/api/v310/cinder/clone')
        self.assertEqual('VMstore API POST /api/v310/cinder/clone failed: '
                         'timed out', str(e))
        self.assertIsNone(e.status)
        self.assertIsInstance(e, client.TintriError)

    def test_hierarchy(self):
        for cls in (client.TintriConnectionError, client.TintriAuthError,
                    client.SnapshotHasClones):
            self.assertTrue(issubclass(cls, client.TintriError))

    def test_parse_json_error(self):
        resp = tintri_error(503, 'ERR-API-9013', 'Snapshot inventory busy',
                            'try later')
        self.assertEqual(('ERR-API-9013', 'Snapshot inventory busy',
                          'try later'), client.parse_error(resp))

    def test_parse_error_missing_fields(self):
        resp = make_response(500, {'title': 'Internal'})
        self.assertEqual((None, 'Internal', None), client.parse_error(resp))

    def test_parse_error_nested(self):
        resp = make_response(400, {'code': 'ERR-API-0008', 'errors': [
            {'message': 'first', 'causeDetails': 'why'}]})
        self.assertEqual(('ERR-API-0008', 'first', 'why'),
                         client.parse_error(resp))

    def test_parse_non_json(self):
        resp = make_response(502, text='<html><body>Bad\n gateway'
                                       '</body></html>')
        code, message, cause = client.parse_error(resp)
        self.assertIsNone(code)
        self.assertEqual('<html><body>Bad gateway</body></html>', message)

    def test_parse_empty(self):
        resp = make_response(500)
        self.assertEqual((None, 'Error', None), client.parse_error(resp))

    def test_parse_long_non_json_truncated(self):
        resp = make_response(500, text='x' * 5000)
        self.assertEqual(200, len(client.parse_error(resp)[1]))


class HelpersTest(testtools.TestCase):

    def test_backoff_bounds(self):
        for attempt in range(40):
            ceiling = min(15.0, 0.5 * 2 ** attempt)
            for _ in range(20):
                d = client.backoff_delay(attempt, 0.5, 15.0)
                self.assertGreaterEqual(d, ceiling / 2)
                self.assertLessEqual(d, ceiling)

    def test_backoff_jitter(self):
        delays = {client.backoff_delay(3, 0.5, 15.0) for _ in range(20)}
        self.assertGreater(len(delays), 1)

    def test_format_host(self):
        self.assertEqual('[::1]', client.format_host('::1'))
        self.assertEqual('[::1]', client.format_host('[::1]'))
        self.assertEqual('[fd00:1::5]', client.format_host(' fd00:1::5 '))
        self.assertEqual('10.1.2.3', client.format_host('10.1.2.3'))
        self.assertEqual('vmstore.example',
                         client.format_host('vmstore.example'))
        self.assertRaises(ValueError, client.format_host, '')

    def test_urls(self):
        cl = client.TClient('::1', 'u', 'p', port=8443)
        self.assertEqual('https://[::1]:8443', cl.base_url)
        self.assertEqual(('https://[::1]:8443/api/v310/snapshot',
                          '/api/v310/snapshot'), cl._url('snapshot'))
        self.assertEqual(('https://[::1]:8443/api/info', '/api/info'),
                         cl._url('/api/info'))
        cl = client.TClient('[::1]', 'u', 'p', use_https=False, port=80)
        self.assertEqual('http://[::1]:80', cl.base_url)

    def test_api_version_with_minor(self):
        cl = client.TClient('h', 'u', 'p', api_version='v310.191')
        self.assertEqual('/api/v310/', cl.api_prefix)
        self.assertEqual('v310.191', cl._full_api_version)

    def test_verify(self):
        self.assertEqual('/ca.pem', client.TClient(
            'h', 'u', 'p', ca_path='/ca.pem').verify)
        self.assertIs(True, client.TClient('h', 'u', 'p').verify)
        self.assertIs(False, client.TClient(
            'h', 'u', 'p', verify=False, ca_path='/ca.pem').verify)

    def test_export_relative(self):
        self.assertEqual('cinder/tmp-x',
                         client.export_relative('/tintri/cinder/tmp-x'))
        self.assertEqual('cinder', client.export_relative('cinder'))
        self.assertEqual('cinder', client.export_relative('/tintri/cinder/'))
        self.assertEqual('', client.export_relative('/tintri'))
        self.assertEqual('cinder',
                         client.export_relative('10.0.0.1:/tintri/cinder'))
        self.assertEqual('tintrix/a', client.export_relative('/tintrix/a'))

    def test_mask_secrets(self):
        body = {'username': 'u', 'password': 'p', 'nested': [
            {'newPassword': 'q', 'destinationPassphrase': 'r', 'x': 1}]}
        self.assertEqual({'username': 'u', 'password': '***', 'nested': [
            {'newPassword': '***', 'destinationPassphrase': '***',
             'x': 1}]}, client.mask_secrets(body))
        self.assertEqual('p', body['password'])

    def test_next_query_keeps_filters(self):
        q = client.TClient._next_query(
            'offset=500&limit=500', {'contain': 'image-', 'limit': 500,
                                     'type': ['A', 'B'], 'x': None})
        self.assertEqual('offset=500&limit=500&contain=image-&type=A&type=B',
                         q)
        q = client.TClient._next_query(
            '/api/v310/snapshot?offset=2&contain=a', {'contain': 'b'})
        self.assertEqual('offset=2&contain=a', q)

    def test_sent_before_failure(self):
        self.assertFalse(client._sent_before_failure(conn_refused()))
        self.assertFalse(client._sent_before_failure(
            requests.exceptions.ConnectTimeout()))
        self.assertTrue(client._sent_before_failure(conn_reset()))
        self.assertTrue(client._sent_before_failure(
            requests.exceptions.ReadTimeout()))

    def test_repr_has_no_secret(self):
        cl = client.TClient('h', 'admin', PASSWORD)
        cl._session_id = SESSION
        self.assertNotIn(PASSWORD, repr(cl))
        self.assertNotIn(SESSION, repr(cl))


class TransportTest(ClientTestBase):

    def test_login_once_and_cookie_header(self):
        cl, t = self.make_client({'GET /api/v310/appliance/default/info': [
            make_response(200, {'modelName': 'T540'})]})
        for _ in range(3):
            self.assertEqual({'modelName': 'T540'}, cl.get_appliance_info())
        self.assertEqual(1, cl.logins)
        self.assertEqual(['GET /api/info', 'POST /api/v310/session/login'] +
                         ['GET /api/v310/appliance/default/info'] * 3,
                         t.keys())
        login_body = json.loads(t.calls[1][1]['data'])
        self.assertEqual({'typeId': client.CREDENTIALS_TYPE,
                          'username': 'admin', 'password': PASSWORD,
                          'fullApiVersion': 'v310.191'}, login_body)
        for key, kwargs in t.calls:
            # Timeouts and TLS settings on every single request.
            self.assertEqual((3.0, 7.0), kwargs['timeout'])
            self.assertIs(True, kwargs['verify'])
        self.assertNotIn('Cookie', t.calls[1][1]['headers'])
        self.assertEqual('JSESSIONID=' + SESSION,
                         t.calls[2][1]['headers']['Cookie'])
        # The shared cookie jar never holds the session.
        self.assertEqual(0, len(cl._session.cookies))
        self.assertEqual({'GET /api/info': 1,
                          'POST /api/v310/session/login': 1,
                          'GET /api/v310/appliance/{id}/info': 3},
                         cl.request_counts)

    def test_cookie_from_set_cookie_header(self):
        resp = make_response(200, 'ADMIN', headers={
            'Set-Cookie': 'JSESSIONID=abc; Path=/; Secure; HttpOnly'})
        self.assertEqual('abc', client.TClient._cookie_from_headers(resp))

    def test_login_without_cookie_fails(self):
        cl, t = self.make_client({'POST /api/v310/session/login': [
            make_response(200, 'ADMIN')]})
        self.assertRaises(client.TintriAuthError, cl.login)

    def test_login_rejected(self):
        cl, t = self.make_client({'POST /api/v310/session/login': [
            tintri_error(403, 'ERR-API-0100', 'Invalid credentials')]})
        e = self.assertRaises(client.TintriAuthError, cl.get, 'snapshot')
        self.assertEqual(403, e.status)
        self.assertNotIn(PASSWORD, str(e))
        # No retry of rejected credentials.
        self.assertEqual(1, cl.request_counts[
            'POST /api/v310/session/login'])

    def test_relogin_once_on_401(self):
        expired = tintri_error(401, 'ERR-API-0104', 'Session expired')
        cl, t = self.make_client({'GET /api/v310/snapshot/' + S1: [
            expired, make_response(200, {'uuid': {'uuid': S1}})]})
        self.assertEqual({'uuid': {'uuid': S1}}, cl.get_snapshot(S1))
        self.assertEqual(2, cl.logins)

    def test_persistent_401_raises_auth_error(self):
        expired = tintri_error(401, 'ERR-API-0104', 'Session expired')
        cl, t = self.make_client({'GET /api/v310/snapshot/S': [expired]})
        self.assertRaises(client.TintriAuthError, cl.get_snapshot, 'S')
        self.assertEqual(2, cl.logins)
        self.assertEqual(2, cl.request_counts[
            'GET /api/v310/snapshot/{uuid}'])

    def test_retry_503_then_success(self):
        busy = tintri_error(503, 'ERR-API-9013', 'busy')
        cl, t = self.make_client({'GET /api/v310/snapshot/' + S1: [
            busy, busy, make_response(200, {'uuid': {'uuid': S1}})]})
        cl.get_snapshot(S1)
        self.assertEqual(3, cl.request_counts[
            'GET /api/v310/snapshot/{uuid}'])
        self.assertEqual(2, len(self.sleeps))
        self.assertLessEqual(self.sleeps[0], cl.backoff_base)
        self.assertLessEqual(self.sleeps[1], cl.backoff_base * 2)

    def test_retry_after_header_honoured_up_to_cap(self):
        busy = make_response(429, {'code': 'ERR-API-5021'},
                             headers={'Retry-After': '4'})
        cl, t = self.make_client({'GET /api/v310/snapshot/' + S1: [
            busy, make_response(200, {'uuid': {'uuid': S1}})]})
        cl.get_snapshot(S1)
        self.assertEqual([4.0], self.sleeps)

    def test_retries_bounded_by_count(self):
        busy = tintri_error(503, 'ERR-API-9013', 'busy')
        cl, t = self.make_client({'GET /api/v310/snapshot/S': [busy]},
                                 retries=2)
        e = self.assertRaises(client.TintriError, cl.get_snapshot, 'S')
        self.assertEqual(503, e.status)
        self.assertEqual('ERR-API-9013', e.code)
        self.assertIn('3 attempt(s)', str(e))
        self.assertEqual(3, cl.request_counts[
            'GET /api/v310/snapshot/{uuid}'])

    def test_retries_bounded_by_deadline(self):
        now = [1000.0]
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.time.monotonic', lambda: now[0]))

        def sleep(d):
            now[0] += d
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.time.sleep', sleep))
        cl, t = self.make_client(
            {'GET /api/v310/snapshot/S': [conn_reset()]},
            retries=100, retry_deadline=20.0)
        e = self.assertRaises(client.TintriConnectionError,
                              cl.get_snapshot, 'S')
        self.assertIn('retry deadline reached', str(e))
        self.assertLessEqual(now[0] - 1000.0, 20.0)
        self.assertLess(cl.request_counts['GET /api/v310/snapshot/{uuid}'],
                        100)

    def test_tls_error_not_retried(self):
        cl, t = self.make_client({'GET /api/info': [
            requests.exceptions.SSLError('certificate verify failed')],
            'POST /api/v310/session/login': [
            requests.exceptions.SSLError('certificate verify failed')]})
        e = self.assertRaises(client.TintriConnectionError, cl.login)
        self.assertIn('certificate verify failed', str(e))
        self.assertEqual(1, cl.request_counts[
            'POST /api/v310/session/login'])

    def test_other_4xx_not_retried(self):
        cl, t = self.make_client({'PUT /api/v310/snapshot/S': [
            tintri_error(400, 'ERR-API-0020', 'Invalid input data')]})
        e = self.assertRaises(client.TintriError,
                              cl.set_snapshot_deletion_policy, 'S', 'X')
        self.assertEqual(400, e.status)
        self.assertEqual(1, cl.request_counts[
            'PUT /api/v310/snapshot/{uuid}'])

    def test_delete_not_found_is_success(self):
        for resp in (tintri_error(404, 'ERR-API-8001', 'Resource not found',
                                  'Failed to lookup'),
                     tintri_error(400, 'ERR-X', 'Snapshot does not exist'),
                     make_response(404, text='Not Found')):
            cl, t = self.make_client({'DELETE /api/v310/snapshot/S': [resp]})
            self.assertIsNone(cl.delete_snapshot('S'))

    def test_delete_with_clones(self):
        cl, t = self.make_client({'DELETE /api/v310/snapshot/S': [
            tintri_error(500, 'ERR-API-3107', 'Delete snapshot failed.',
                         'live VM is still present')]})
        e = self.assertRaises(client.SnapshotHasClones, cl.delete_snapshot,
                              'S')
        self.assertEqual('ERR-API-3107', e.code)

    def test_delete_other_error_raised(self):
        cl, t = self.make_client({'DELETE /api/v310/snapshot/S': [
            tintri_error(500, 'ERR-API-3107', 'Delete snapshot failed.')]})
        self.assertRaises(client.TintriError, cl.delete_snapshot, 'S')

    def test_get_snapshot_not_found(self):
        cl, t = self.make_client({'GET /api/v310/snapshot/S%2F1': [
            tintri_error(404, 'ERR-API-8001', 'Resource not found')]})
        self.assertIsNone(cl.get_snapshot('S/1'))

    def test_generic_post_lost_response_not_resent(self):
        self.declare('POST', 'vm')
        cl, t = self.make_client({'POST /api/v310/vm': [conn_reset()]})
        e = self.assertRaises(client.TintriConnectionError, cl.post, 'vm',
                              {'a': 1})
        self.assertIn('not idempotent', str(e))
        self.assertEqual(1, cl.request_counts['POST /api/v310/vm'])

    def test_post_resent_when_never_sent_or_503(self):
        self.declare('POST', 'vm')
        cl, t = self.make_client({'POST /api/v310/vm': [
            conn_refused(), tintri_error(503, 'ERR-API-9013', 'busy'),
            make_response(200, ['X'])]})
        self.assertEqual(['X'], cl.post('vm', {'a': 1}))
        self.assertEqual(3, cl.request_counts['POST /api/v310/vm'])

    def test_post_502_not_resent(self):
        self.declare('POST', 'vm')
        cl, t = self.make_client({'POST /api/v310/vm': [
            make_response(502, text='bad gateway')]})
        e = self.assertRaises(client.TintriConnectionError, cl.post, 'vm',
                              {})
        self.assertEqual(502, e.status)
        self.assertEqual(1, cl.request_counts['POST /api/v310/vm'])

    def test_close_logs_out(self):
        self.declare('GET', 'x')
        cl, t = self.make_client({'GET /api/v310/x': [make_response(204)]})
        with cl as c:
            self.assertIs(cl, c)
            self.assertIsNone(c.get('x'))
        self.assertEqual('POST /api/v310/session/logout', t.keys()[-1])
        self.assertEqual('JSESSIONID=' + SESSION,
                         t.calls[-1][1]['headers']['Cookie'])
        self.assertFalse(cl.logged_in)
        cl.close()  # idempotent, no second logout
        self.assertEqual(1, t.keys().count('POST /api/v310/session/logout'))

    def test_logout_failure_ignored(self):
        cl, t = self.make_client({'POST /api/v310/session/logout': [
            conn_reset()]})
        cl.login()
        cl.close()
        self.assertFalse(cl.logged_in)

    def test_no_secrets_in_debug_log(self):
        logger = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        expired = tintri_error(401, 'ERR-API-0104', 'Session expired')
        cl, t = self.make_client({
            'GET /api/v310/snapshot/' + S1: [
                expired, conn_reset(),
                make_response(200, {'uuid': {'uuid': S1}})],
            'POST /api/v310/session/login': [
                tintri_error(503, 'ERR-API-9013', 'busy'),
                make_response(200, 'ADMIN', cookies={'JSESSIONID': SESSION})],
        })
        cl.get_snapshot(S1)
        cl.close()
        self.assertIn('POST /api/v310/session/login', logger.output)
        self.assertIn('"password": "***"', logger.output)
        self.assertNotIn(PASSWORD, logger.output)
        self.assertNotIn(SESSION, logger.output)


class OperationsTest(ClientTestBase):

    def test_create_snapshot_body(self):
        cl, t = self.make_client({'POST /api/v310/cinder/snapshot': [
            make_response(200, [S1])]})
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VID',
                                  'snap-a', deletion_policy='DEL')
        self.assertEqual(S1, uuid)
        body = json.loads(t.calls[-1][1]['data'])
        self.assertEqual({
            'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.cinder.'
                      'CinderSnapshotSpec',
            'file': 'cinder/volume-1', 'vmName': 'volume-1',
            'description': 'snap-a', 'vmTintriUuid': 'VID',
            'instanceId': 'VID', 'snapshotCreator': 'cinder-tintri',
            'deletionPolicy': 'DEL'}, body)

    def test_create_snapshot_no_policy_vm_name(self):
        cl, t = self.make_client({'POST /api/v310/cinder/snapshot': [
            make_response(200, {'items': [{'uuid': {'uuid': S2}}]})]})
        self.assertEqual(S2, cl.create_snapshot(
            'cinder', 'volume-1', 'VID', 'snap-a', vm_name='vm'))
        body = json.loads(t.calls[-1][1]['data'])
        self.assertNotIn('deletionPolicy', body)
        self.assertEqual('vm', body['vmName'])
        self.assertEqual('cinder/volume-1', body['file'])

    def _snap_page(self, *snaps):
        return make_response(200, {'typeId': 'com.tintri.api.rest.v310.dto.'
                                   'Page', 'items': list(snaps)})

    def test_create_snapshot_lost_response_reconciled(self):
        snap = {'uuid': {'uuid': S1}, 'description': 'snap-a'}
        other = {'uuid': {'uuid': S2}, 'description': 'snap-a-2'}
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [
                requests.exceptions.ReadTimeout('read timed out')],
            'GET /api/v310/snapshot': [self._snap_page(other, snap)],
        })
        self.assertEqual(S1, cl.create_snapshot('/tintri/cinder', 'v',
                                                'VID', 'snap-a'))
        self.assertEqual(1, cl.request_counts[
            'POST /api/v310/cinder/snapshot'])
        params = t.calls[-1][1]['params']
        # By description alone: the array may not keep vmTintriUuid.
        self.assertEqual('snap-a', params['contain'])
        self.assertNotIn('vmUuid', params)

    def test_create_snapshot_lost_reconciled_without_retries(self):
        snap = {'uuid': {'uuid': S1}, 'description': 'snap-a'}
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [conn_reset()],
            'GET /api/v310/snapshot': [self._snap_page(snap)],
        }, retries=0)
        self.assertEqual(S1, cl.create_snapshot('/tintri/cinder', 'v',
                                                'VID', 'snap-a'))

    def test_create_snapshot_lost_waits_before_lookup(self):
        order = []
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.time.sleep',
            lambda d: order.append('sleep')))

        def lookup(method, url, **kwargs):
            order.append('lookup')
            return self._snap_page()
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [
                conn_reset(), make_response(200, [S9])],
            'GET /api/v310/snapshot': [lookup],
        })
        cl.create_snapshot('/tintri/cinder', 'v', 'VID', 'snap-a')
        self.assertEqual(['sleep', 'lookup'], order)

    def test_create_snapshot_read_timeout_polls_never_resends(self):
        snap = {'uuid': {'uuid': S1}, 'description': 'snap-a'}
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [
                requests.exceptions.ReadTimeout('read timed out'),
                AssertionError('resent')],
            'GET /api/v310/snapshot': [self._snap_page(), self._snap_page(),
                                       self._snap_page(snap)],
        })
        self.assertEqual(S1, cl.create_snapshot('/tintri/cinder', 'v',
                                                'VID', 'snap-a'))
        self.assertEqual(1, cl.request_counts[
            'POST /api/v310/cinder/snapshot'])
        self.assertEqual(3, cl.request_counts['GET /api/v310/snapshot'])

    def test_create_snapshot_read_timeout_gives_up_without_resend(self):
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [
                requests.exceptions.ReadTimeout('read timed out')],
            'GET /api/v310/snapshot': [self._snap_page()],
        }, retries=3)
        e = self.assertRaises(client.TintriConnectionError,
                              cl.create_snapshot, '/tintri/cinder', 'v',
                              'VID', 'snap-a')
        self.assertIn('may still complete it', str(e))
        self.assertEqual(1, cl.request_counts[
            'POST /api/v310/cinder/snapshot'])
        self.assertEqual(4, cl.request_counts['GET /api/v310/snapshot'])

    def test_create_snapshot_lost_then_resent(self):
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [
                conn_reset(), make_response(200, [S9])],
            'GET /api/v310/snapshot': [self._snap_page()],
        })
        self.assertEqual(S9, cl.create_snapshot('/tintri/cinder', 'v',
                                                'VID', 'snap-a'))
        self.assertEqual(['POST /api/v310/cinder/snapshot',
                          'GET /api/v310/snapshot',
                          'POST /api/v310/cinder/snapshot'], t.keys()[2:])

    def test_create_snapshot_lookup_failure_does_not_resend(self):
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [conn_reset()],
            'GET /api/v310/snapshot': [conn_reset()],
        }, retries=1)
        self.assertRaises(client.TintriConnectionError, cl.create_snapshot,
                          '/tintri/cinder', 'v', 'VID', 'snap-a')
        self.assertEqual(1, cl.request_counts[
            'POST /api/v310/cinder/snapshot'])

    def test_clone_body(self):
        cl, t = self.make_client({'POST /api/v310/cinder/clone': [
            make_response(204)]})
        cl.clone_volume('SNAP', '/tintri/cinder/tmp-xyz')
        body = json.loads(t.calls[-1][1]['data'])
        self.assertEqual({
            'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.cinder.'
                      'CinderCloneSpec',
            'tintriSnapshotUuid': 'SNAP',
            'destinationPaths': ['cinder/tmp-xyz']}, body)

    def test_clone_lost_response_409_on_resend_is_success(self):
        cl, t = self.make_client({'POST /api/v310/cinder/clone': [
            conn_reset(), tintri_error(409, 'ERR-API-3206', 'already exists')
        ]})
        cl.clone_volume('SNAP', '/tintri/cinder/tmp-xyz')
        self.assertEqual(2, cl.request_counts['POST /api/v310/cinder/clone'])

    def test_clone_409_first_time_is_error(self):
        cl, t = self.make_client({'POST /api/v310/cinder/clone': [
            tintri_error(409, 'ERR-API-3206', 'already exists')]})
        e = self.assertRaises(client.TintriError, cl.clone_volume, 'SNAP',
                              '/tintri/cinder/tmp-xyz')
        self.assertEqual(409, e.status)

    def test_set_deletion_policy_body(self):
        cl, t = self.make_client({'PUT /api/v310/snapshot/S': [
            make_response(204)]})
        cl.set_snapshot_deletion_policy('S', 'DELETE_ON_ZERO_CLONE_'
                                             'REFERENCES')
        self.assertEqual({
            'typeId': 'com.tintri.api.rest.v310.dto.Request',
            'objectsWithNewValues': [{
                'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.'
                          'snapshot.Snapshot',
                'deletionPolicy': 'DELETE_ON_ZERO_CLONE_REFERENCES'}],
            'propertiesToBeUpdated': ['deletionPolicy']},
            json.loads(t.calls[-1][1]['data']))

    def test_datastore_stats(self):
        stat = {'spaceTotalGiB': 1000.0, 'spaceRemainingPhysicalGiB': 600.5,
                'spaceUsedPhysicalGiB': 399.5, 'spaceProvisionedGiB': 2000}
        cl, t = self.make_client({
            'GET /api/v310/datastore/default/statsRealtime': [
                make_response(200, {'items': [{'sortedStats': [stat]}],
                                    'filteredTotal': 1})]})
        stats = cl.get_datastore_stats()
        self.assertEqual({'total_gib': 1000.0, 'free_gib': 600.5,
                          'used_gib': 399.5, 'provisioned_gib': 2000.0},
                         {k: v for k, v in stats.items() if k != 'raw'})

    def test_datastore_stats_empty(self):
        cl, t = self.make_client({
            'GET /api/v310/datastore/default/statsRealtime': [
                make_response(200, {'items': [], 'filteredTotal': 0})]})
        self.assertRaises(client.TintriError, cl.get_datastore_stats)

    def test_image_snapshots_query(self):
        snaps = [{'uuid': {'uuid': S1}, 'cloneReferenceCount': 0},
                 {'uuid': {'uuid': S2}, 'cloneReferenceCount': 2}]
        cl, t = self.make_client({'GET /api/v310/snapshot': [
            self._snap_page(*snaps)]})
        date = datetime.datetime(2024, 5, 6, 7, 8, 9)
        got = list(cl.get_image_snapshots_to_date(date))
        self.assertEqual([S1], [s['uuid']['uuid'] for s in got])
        params = t.calls[-1][1]['params']
        self.assertEqual('2024-05-06T07:08:09', params['until'])
        self.assertEqual('CINDER_GENERATED_SNAPSHOT', params['type'])
        self.assertEqual('CRASH_CONSISTENT', params['consistency'])
        self.assertEqual('No', params['hasClone'])
        self.assertEqual('image-', params['contain'])
        self.assertEqual(500, params['limit'])

    def test_iter_items_plain_list_and_pages(self):
        page1 = make_response(200, {'items': [{'uuid': {'uuid': 'a'}}],
                                    'next': 'offset=1&limit=1'})
        page2 = make_response(200, {'items': [{'uuid': {'uuid': 'a'}},
                                              {'uuid': {'uuid': 'b'}}]})
        cl, t = self.make_client({'GET /api/v310/snapshot': [
            page1, page2, make_response(200, [{'n': 1}])]})
        self.assertEqual(['a', 'b'], [i['uuid']['uuid'] for i in
                                      cl.iter_items('snapshot',
                                                    {'vmUuid': 'V'})])
        url = t.calls[-1][0]
        self.assertEqual('GET /api/v310/snapshot', url)
        self.assertEqual([{'n': 1}], list(cl.iter_items('snapshot')))

    def test_iter_items_repeating_next(self):
        page = make_response(200, {'items': [], 'next': 'offset=0&limit=1'})
        cl, t = self.make_client({'GET /api/v310/snapshot': [page]})
        e = self.assertRaises(client.TintriError, list,
                              cl.iter_items('snapshot'))
        self.assertIn('repeats', str(e))

    def test_host_refresh(self):
        cl, t = self.make_client({'POST /api/v310/cinder/host/refresh': [
            conn_reset(), make_response(200, {})]})
        cl.host_refresh('compute-1', '/tintri/cinder/volume-1',
                        region='R1', volume_id='VID')
        self.assertEqual({
            'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.cinder.'
                      'OpenStackHostRefreshSpec',
            'hostname': 'compute-1', 'volumeFilePath': 'cinder/volume-1',
            'region': 'R1', 'volumeId': 'VID'},
            json.loads(t.calls[-1][1]['data']))

    def test_concurrent_first_calls_log_in_once(self):
        self.declare('GET', 'x')
        cl, t = self.make_client({'GET /api/v310/x': [make_response(204)]})
        barrier = threading.Barrier(8, timeout=10)
        errors = []

        def worker():
            try:
                barrier.wait()
                cl.get('x')
            except Exception as e:  # pragma: no cover
                errors.append(e)
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        self.assertEqual([], errors)
        self.assertEqual(1, cl.logins)
        self.assertEqual(8, cl.request_counts['GET /api/v310/x'])


class MaskingTest(testtools.TestCase):

    def test_password_in_every_encoding(self):
        pw = 'P@ss w/"rd\\é&=+'
        cl = client.TClient('h', 'admin', pw)
        forms = [pw, urlparse.quote(pw, safe=''), urlparse.quote_plus(pw),
                 json.dumps(pw)[1:-1], json.dumps(pw, ensure_ascii=False)[
                     1:-1], html.escape(pw), pw.upper()]
        for form in forms:
            masked = cl.mask('before %s after' % form)
            self.assertEqual('before *** after', masked, form)
            # Any TintriError, built anywhere, is masked too.
            self.assertNotIn(form, str(client.TintriError(form)))

    def test_fields_and_headers(self):
        cases = {
            '{"password": "x1", "u": 1}': '{"password": "***", "u": 1}',
            '{\\"newPassword\\":\\"x1\\"}': '{\\"newPassword\\":\\"***\\"}',
            "{'passphrase': 'x 1'}": "{'passphrase': '***'}",
            'a=1&password=x1&b=2': 'a=1&password=***&b=2',
            'token: abc def': 'token: *** def',
            'apiSecret=s3; x': 'apiSecret=***; x',
            'Cookie: JSESSIONID=ABC; other=1\nHost: h':
                'Cookie: ***\nHost: h',
            'Set-Cookie: JSESSIONID=ABC; Path=/': 'Set-Cookie: ***',
            'authorization: Basic dTpw\n': 'authorization: ***\n',
            'see JSESSIONID=ABCDEF&x': 'see JSESSIONID=***&x',
            'invalid user name or password': 'invalid user name or password',
        }
        for text, expected in cases.items():
            self.assertEqual(expected, client.mask_text(text))

    def test_current_and_previous_session_ids(self):
        cl = client.TClient('h', 'admin', PASSWORD)
        cl._session_ids.extend(['OLD-SESSION-1234', 'CUR-SESSION-5678'])
        cl._session_id = 'CUR-SESSION-5678'
        self.assertEqual('*** ***', cl.mask(
            'old-session-1234 CUR-SESSION-5678'))
        cl.set_credentials('admin', 'new-password-1')
        # After new credentials the old password is still a secret.
        self.assertEqual('*** ***', cl.mask('%s new-password-1' % PASSWORD))
        self.assertNotIn('CUR-SESSION-5678', str(client.TintriError(
            'sid CUR-SESSION-5678')))

    def test_error_message_cause_str_repr_args(self):
        cl = client.TClient('h', 'admin', PASSWORD)
        cl._session_ids.append(SESSION)
        e = client.TintriError('bad %s' % PASSWORD, status=500,
                               code='ERR-API-0007',
                               cause_details='Cookie: JSESSIONID=%s'
                               % SESSION, method='GET', path='/x')
        for text in (e.message, e.cause_details, str(e), repr(e),
                     ' '.join(e.args)):
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn(SESSION, text)
        self.assertIn('bad ***', str(e))
        del cl

    def test_short_password_masked_in_fields_only(self):
        # Literal masking needs 4 characters or it would mask words.
        client.TClient('h', 'admin', 'abc')
        self.assertEqual('abcd {"password": "***"}', client.mask_text(
            'abcd {"password": "abc"}'))

    def test_parse_error_masks_before_truncating(self):
        cl = client.TClient('h', 'admin', PASSWORD)
        resp = make_response(500, text='y' * 197 + PASSWORD)
        code, message, cause = client.parse_error(resp, cl.mask)
        self.assertEqual(200, len(message))
        self.assertNotIn(PASSWORD[:3], message[190:])
        self.assertTrue(message.endswith('***'))

    def test_echo_cut_inside_a_secret(self):
        # The array truncated its echo in the middle of the value.
        for text, expected in (
                ('{"password": "Sup3r-S', '{"password": "***'),
                ('{\\"password\\": \\"Sup3r-S', '{\\"password\\": \\"***'),
                ("password='Sup3r-S", "password='***"),
                ('x password=Sup3r-S', 'x password=***')):
            self.assertEqual(expected, client.mask_text(text))

    def test_hostile_bodies_stay_linear(self):
        # Repeated keywords without separators, long unterminated values:
        # these would be quadratic with an unbounded prefix.
        for text in ('password' * 100000, 'password=' * 50000,
                     '"token": "' + 'x' * 500000,
                     ('password' + ' ' * 50) * 5000):
            masked = client.mask_text(text)
            self.assertLessEqual(len(masked), len(text) + 3)
        self.assertEqual('"token": "***', client.mask_text(
            '"token": "' + 'x' * 500000))


class ValidationTest(ClientTestBase):

    def get(self, response):
        cl, t = self.make_client({'GET /api/v310/appliance/default/info': [
            response]})
        return cl.get_appliance_info()

    def test_html_200_is_not_valid(self):
        for ctype in ('text/html', 'application/json', None):
            e = self.assertRaises(
                client.TintriInvalidResponse, self.get,
                make_response(200, text='<html><title>Service temporarily '
                                        'unavailable</title></html>',
                              content_type=ctype or ''))
            self.assertIn('not a valid response', str(e))
            self.assertIn('HTML page', str(e))

    def test_json_needs_a_json_content_type(self):
        e = self.assertRaises(client.TintriInvalidResponse, self.get,
                              make_response(200, {'modelName': 'T'},
                                            content_type='text/plain'))
        self.assertIn('text/plain', str(e))
        # A missing Content-Type is tolerated when the body is JSON.
        resp = make_response(200, {'modelName': 'T'})
        del resp.headers['Content-Type']
        self.assertEqual({'modelName': 'T'}, self.get(resp))
        self.assertEqual({'modelName': 'T'}, self.get(make_response(
            200, {'modelName': 'T'},
            content_type='application/json; charset=UTF-8')))

    def test_truncated_json(self):
        e = self.assertRaises(client.TintriInvalidResponse, self.get,
                              make_response(200, text='{"modelName": "T',
                                            content_type='application/json'))
        self.assertIn('invalid JSON', str(e))

    def test_create_snapshot_answer_shapes(self):
        lower = snap_uuid(7).lower()
        for answer in ([S1], [{'uuid': {'uuid': S1}}], [{'uuid': S1}],
                       {'items': [S1]}, {'uuid': {'uuid': S1}}):
            cl, t = self.make_client({'POST /api/v310/cinder/snapshot': [
                make_response(200, answer)]})
            self.assertEqual(S1, cl.create_snapshot('c', 'v', 'V', 's'))
        cl, t = self.make_client({'POST /api/v310/cinder/snapshot': [
            make_response(200, [lower])]})
        self.assertEqual(lower, cl.create_snapshot('c', 'v', 'V', 's'))

    def test_create_garbage_reconciled_by_description(self):
        page = make_response(200, {'items': [
            {'uuid': {'uuid': 'junk'}, 'description': 's'},
            {'uuid': {'uuid': S2}, 'description': 's',
             'vmUuid': {'uuid': 'OTHER'}},
            {'uuid': {'uuid': S1}, 'description': 's',
             'vmUuid': {'uuid': 'v'}}]})
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [make_response(200, 'ok')],
            'GET /api/v310/snapshot': [page]})
        # The match whose vmUuid is the one sent wins.
        self.assertEqual(S1, cl.create_snapshot('c', 'v', 'V', 's',
                                                vm_uuid='V'))
        self.assertEqual(1, cl.request_counts[
            'POST /api/v310/cinder/snapshot'])

    def test_uuid_formats(self):
        self.assertTrue(client.is_snapshot_uuid(S1))
        self.assertTrue(client.is_snapshot_uuid(S1.lower()))
        self.assertFalse(client.is_snapshot_uuid(vm_uuid(1)))
        self.assertFalse(client.is_snapshot_uuid(S1 + '0'))
        self.assertFalse(client.is_snapshot_uuid(None))
        self.assertFalse(client.is_snapshot_uuid({'uuid': S1}))
        self.assertTrue(client.is_vm_uuid(vm_uuid(3)))
        self.assertFalse(client.is_vm_uuid('VOL-1'))

    def test_get_snapshot_validated(self):
        for answer in ({'uuid': {'uuid': 'S'}}, {'uuid': {'uuid': S2}},
                       'text', [1]):
            cl, t = self.make_client({'GET /api/v310/snapshot/' + S1: [
                make_response(200, answer)]})
            self.assertRaises(client.TintriInvalidResponse,
                              cl.get_snapshot, S1)
        cl, t = self.make_client({'GET /api/v310/snapshot/' + S1: [
            make_response(200, {'items': []})]})
        self.assertIsNone(cl.get_snapshot(S1))


class AuthBackoffTest(ClientTestBase):

    def setUp(self):
        super().setUp()
        self.now = [5000.0]
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.time.monotonic', lambda: self.now[0]))
        self.logger = self.useFixture(fixtures.FakeLogger(
            name='cinder_tintri', level=logging.WARNING))

    def rotated(self, **kwargs):
        expired = tintri_error(401, 'ERR-API-0104', 'Session expired')
        rejected = tintri_error(403, 'ERR-API-0124', 'Invalid credentials')
        logins = [make_response(200, 'ADMIN',
                                cookies={'JSESSIONID': SESSION})] + \
            [rejected] * 10
        return self.make_client({
            'POST /api/v310/session/login': logins,
            'POST /api/v310/cinder/snapshot': [make_response(200, [S1]),
                                               expired],
            'GET /api/v310/datastore/default/statsRealtime': [expired],
        }, **kwargs)

    def logins(self, t):
        return t.keys().count('POST /api/v310/session/login')

    def test_one_failed_login_per_interval(self):
        cl, t = self.rotated(auth_retry_interval=300)
        cl.create_snapshot('c', 'v', 'V', 'ok')
        sent = len(t.calls)
        for i in range(10):
            self.assertRaises(client.TintriAuthError, cl.create_snapshot,
                              'c', 'v', 'V', 's%d' % i)
        for _ in range(5):
            e = self.assertRaises(client.TintriAuthError,
                                  cl.get_datastore_stats)
        self.assertEqual(2, self.logins(t))      # 1 good + 1 rejected
        self.assertEqual(sent + 2, len(t.calls))  # the 401 and the login
        self.assertEqual(1, cl.failed_logins)
        self.assertIn('not retrying the login before', str(e))
        self.assertIn('tintri_auth_retry_interval=300s', str(e))
        self.assertIn('ERR-API-0124', str(e))
        self.assertEqual(1, self.logger.output.count('rejected the '
                                                     'credentials'))
        self.now[0] += 299
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertEqual(2, self.logins(t))
        self.now[0] += 2
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertEqual(3, self.logins(t))
        self.assertEqual(2, self.logger.output.count('rejected the '
                                                     'credentials'))

    def test_zero_interval_retries_every_call(self):
        cl, t = self.rotated(auth_retry_interval=0)
        cl.create_snapshot('c', 'v', 'V', 'ok')
        for _ in range(3):
            self.assertRaises(client.TintriAuthError,
                              cl.get_datastore_stats)
        self.assertEqual(4, self.logins(t))

    def test_set_credentials_ends_the_back_off(self):
        cl, t = self.rotated()
        cl.create_snapshot('c', 'v', 'V', 'ok')
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertEqual(2, self.logins(t))
        t.script['POST /api/v310/session/login'] = [make_response(
            200, 'ADMIN', cookies={'JSESSIONID': 'NEW-SESSION-0001'})]
        t.script['GET /api/v310/datastore/default/statsRealtime'] = [
            make_response(200, {'items': [{'sortedStats': [
                {'spaceTotalGiB': 1, 'spaceRemainingPhysicalGiB': 1}]}]})]
        cl.set_credentials('admin', 'new-password')
        self.assertEqual(1.0, cl.get_datastore_stats()['total_gib'])
        login = [json.loads(k['data']) for key, k in t.calls
                 if key == 'POST /api/v310/session/login'][-1]
        self.assertEqual('new-password', login['password'])

    def test_other_400_is_not_a_rejection(self):
        cl, t = self.make_client({'POST /api/v310/session/login': [
            tintri_error(400, 'ERR-API-0020', "'typeId' is required")]})
        self.assertRaises(client.TintriAuthError, cl.login)
        self.assertRaises(client.TintriAuthError, cl.login)
        self.assertEqual(2, t.keys().count('POST /api/v310/session/login'))
        self.assertEqual(0, cl.failed_logins)


class DeadlineTest(ClientTestBase):

    def setUp(self):
        super().setUp()
        self.now = [1000.0]
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.time.monotonic', lambda: self.now[0]))

        def sleep(d):
            self.now[0] += d
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.time.sleep', sleep))

    def slow(self, seconds, response):
        def step(method, url, **kwargs):
            self.now[0] += seconds
            return response
        return step

    def test_attempt_timeouts_capped_by_what_is_left(self):
        busy = tintri_error(503, 'ERR-API-9013', 'busy')
        cl, t = self.make_client(
            {'GET /api/v310/snapshot/' + S1: [self.slow(17.0, busy)]},
            connect_timeout=10, read_timeout=60, request_timeout=100,
            retry_deadline=20, retries=5)
        self.assertRaises(client.TintriError, cl.get_snapshot, S1)
        timeouts = [k['timeout'] for key, k in t.calls
                    if key.startswith('GET /api/v310/snapshot/')]
        self.assertEqual((10.0, 20.0), timeouts[0])
        self.assertEqual(2, len(timeouts))
        self.assertLess(timeouts[1][1], 3.0)
        self.assertLessEqual(timeouts[1][0], timeouts[1][1])

    def test_request_timeout_caps_read_timeout(self):
        cl, t = self.make_client(
            {'GET /api/v310/appliance/default/info': [make_response(
                200, {})]}, connect_timeout=10, read_timeout=60,
            request_timeout=5)
        cl.get_appliance_info()
        self.assertEqual((5.0, 5.0), t.calls[-1][1]['timeout'])
        self.assertEqual(70.0, client.TClient('h', 'u', 'p').request_timeout)

    def test_nested_lookups_share_the_operation_deadline(self):
        cl, t = self.make_client({
            'POST /api/v310/cinder/snapshot': [
                self.slow(8.0, make_response(200, 'garbage'))],
            'GET /api/v310/snapshot': [self.slow(
                3.0, make_response(200, {'items': []}))],
        }, retry_deadline=20, retries=50)
        self.assertRaises(client.TintriInvalidResponse, cl.create_snapshot,
                          'c', 'v', 'V', 's')
        # Lookups stop with the POST's deadline, not 20 s per lookup.
        self.assertLessEqual(self.now[0] - 1000.0, 20.0 + 3.0)
        for key, kwargs in t.calls[2:]:
            self.assertLessEqual(kwargs['timeout'][1], 20.0)


class BusyRetryTest(ClientTestBase):
    """503 ERR-API-9013 "snapshot inventory busy" is retried (17.3)."""

    BUSY = tintri_error(503, 'ERR-API-9013', 'Snapshot inventory is busy, '
                        'please retry later.')

    def test_get_listing_get_one_and_create_retried(self):
        page = make_response(200, {'items': [{'uuid': {'uuid': S1}}]})
        cl, t = self.make_client({
            'GET /api/v310/snapshot': [self.BUSY, self.BUSY, page],
            'GET /api/v310/snapshot/' + S1: [self.BUSY, make_response(
                200, {'uuid': {'uuid': S1}})],
            'POST /api/v310/cinder/snapshot': [self.BUSY, self.BUSY,
                                               make_response(200, [S2])],
        })
        self.assertEqual(1, len(list(cl.find_snapshots())))
        self.assertIsNotNone(cl.get_snapshot(S1))
        self.assertEqual(S2, cl.create_snapshot('c', 'v', 'V', 's'))
        self.assertEqual({'GET /api/v310/snapshot': 3,
                          'GET /api/v310/snapshot/{uuid}': 2,
                          'POST /api/v310/cinder/snapshot': 3},
                         {k: v for k, v in cl.request_counts.items()
                          if 'snapshot' in k})
        self.assertEqual(5, len(self.sleeps))

    def test_bounded_by_retries(self):
        cl, t = self.make_client({'POST /api/v310/cinder/snapshot': [
            self.BUSY]}, retries=2)
        e = self.assertRaises(client.TintriError, cl.create_snapshot, 'c',
                              'v', 'V', 's')
        self.assertEqual('ERR-API-9013', e.code)
        self.assertEqual(3, cl.request_counts[
            'POST /api/v310/cinder/snapshot'])


class NewMethodsTest(ClientTestBase):

    def vdisk(self, **overrides):
        item = {'uuid': {'uuid': 'VD-1'}, 'vmUuid': {'uuid': vm_uuid(4)},
                'vmName': 'volume-VOL', 'instanceUuid': 'VOL',
                'path': 'cinder/volume-VOL'}
        item.update(overrides)
        return item

    def find(self, items, **kwargs):
        cl, t = self.make_client({'GET /api/v310/virtualDisk': [
            make_response(200, {'items': items})]})
        return cl.find_virtual_disk(**kwargs), t

    def test_find_virtual_disk(self):
        found, t = self.find([self.vdisk()], uuid='VOL')
        self.assertEqual({'vm_uuid': vm_uuid(4), 'vm_name': 'volume-VOL',
                          'instance_uuid': 'VOL',
                          'path': 'cinder/volume-VOL', 'uuid': 'VD-1'},
                         {k: v for k, v in found.items() if k != 'raw'})
        self.assertEqual('VOL', t.calls[-1][1]['params']['uuid'])
        found, t = self.find([self.vdisk()],
                             path='/tintri/cinder/volume-VOL')
        self.assertEqual('cinder/volume-VOL',
                         t.calls[-1][1]['params']['path'])
        self.assertEqual(vm_uuid(4), found['vm_uuid'])
        self.assertIsNone(self.find([], uuid='VOL')[0])

    def test_find_virtual_disk_rejects(self):
        bad_vm = self.vdisk(vmUuid={'uuid': 'VOL'})
        other = self.vdisk(uuid={'uuid': 'VD-2'}, instanceUuid='X',
                           path='cinder/volume-OTHER')
        good = self.vdisk(uuid={'uuid': 'VD-3'})
        found, t = self.find([bad_vm, other, good], uuid='VOL')
        self.assertEqual('VD-3', found['uuid'])
        found, t = self.find([self.vdisk(path='cinder/volume-X'),
                              self.vdisk(path=None)],
                             uuid='VOL', path='cinder/volume-VOL')
        self.assertIsNone(found)
        self.assertRaises(client.TintriInvalidInput,
                          client.TClient('h', 'u', 'p').find_virtual_disk)

    def test_count_snapshots(self):
        cl, t = self.make_client({'GET /api/v310/snapshot': [
            make_response(200, {'items': [{'uuid': {'uuid': S1}}],
                                'filteredTotal': 4321})]})
        self.assertEqual(4321, cl.count_snapshots(vmUuid='V', type=None))
        self.assertEqual({'vmUuid': 'V', 'limit': 1},
                         t.calls[-1][1]['params'])
        self.assertEqual(1, cl.request_counts['GET /api/v310/snapshot'])
        # Without filteredTotal (or with garbage in it): counted.
        for total in (None, -1, 'many', True):
            body = {'items': [{'uuid': {'uuid': S1}}]}
            if total is not None:
                body['filteredTotal'] = total
            cl, t = self.make_client({'GET /api/v310/snapshot': [
                make_response(200, body), make_response(200, {'items': [
                    {'uuid': {'uuid': S1}}, {'uuid': {'uuid': S2}}]})]})
            self.assertEqual(2, cl.count_snapshots())
            self.assertEqual(2, cl.request_counts['GET /api/v310/snapshot'])

    def test_host_refresh_inputs(self):
        cl, t = self.make_client()
        for args in ((None, 'cinder/v'), ('', 'cinder/v'),
                     ('a b', 'cinder/v'), ('h', ''), ('h', '/tintri'),
                     ('h', 'cinder/../x'), ('h', None)):
            e = self.assertRaises(client.TintriInvalidInput,
                                  cl.host_refresh, *args)
            self.assertIsInstance(e, ValueError)
        self.assertRaises(client.TintriInvalidInput, cl.host_refresh, 'h',
                          'cinder/v', region=5)
        self.assertEqual([], t.calls)

    def test_deletion_policy_not_supported_rules(self):
        cases = [
            (tintri_error(405, 'ERR-API-0005', 'Method not allowed'), True),
            (tintri_error(404, 'ERR-API-8001', 'Resource not found.',
                          'No resource at /api/v310/snapshot/X'), True),
            (make_response(404, text='Not Found'), True),
            (tintri_error(400, 'ERR-API-0020', 'Invalid input data.'), True),
            (tintri_error(404, 'ERR-API-8001', 'Resource not found.',
                          'Snapshot %s not found' % S1), False),
            (tintri_error(400, 'ERR-X', 'Snapshot does not exist'), False),
            (tintri_error(500, 'ERR-API-0103', 'Error modifying'), False),
        ]
        for response, unsupported in cases:
            cl, t = self.make_client({'PUT /api/v310/snapshot/' + S1: [
                response]})
            e = self.assertRaises(client.TintriError,
                                  cl.set_snapshot_deletion_policy, S1, 'P')
            self.assertEqual(unsupported,
                             isinstance(e, client.TintriNotSupported),
                             str(e))
