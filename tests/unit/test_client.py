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
import json
import logging
import threading

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
