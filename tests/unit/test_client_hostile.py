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
"""The REST client behind a hostile proxy (issue 18 items 2, 8-11).

A real simulator, a real HTTPS proxy in front of it (tests/hostile_proxy)
that echoes requests into error pages, answers HTML or garbage, drips
answers one byte at a time or rejects logins as after a password rotation.
Everything is checked on outcomes: exceptions, log lines, the requests the
proxy saw, the snapshots the simulator holds.
"""

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from urllib import parse as urlparse

import fixtures
import testtools
from testtools import content

from cinder_tintri import client
from cinder_tintri.simulator import VMstoreSimulator
from tests import hostile_proxy

SNAP_CREATE = 'POST /api/v310/cinder/snapshot'
LOGIN = 'POST /api/v310/session/login'
STATS = 'GET /api/v310/datastore/default/statsRealtime'
# Generous: the machine is shared; bounds, never exact times.
MARGIN = 5.0


def error_body(status, code, message, cause=''):
    return hostile_proxy.tintri_error_body(status, code, message, cause)


class HostileTestBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.TClient.backoff_base', 0.02))
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.TClient.backoff_cap', 0.2))
        # Characters that URL-encoding and JSON escaping change.
        self.password = 'pw-%s"\\/&=+ %%' % os.urandom(8).hex()
        self.sim = VMstoreSimulator(password=self.password)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.proxy = self.useFixture(
            hostile_proxy.ProxyFixture(self.sim)).proxy
        self.logs = self.useFixture(fixtures.FakeLogger(
            name='cinder_tintri', level=logging.DEBUG,
            format='%(levelname)s %(name)s %(message)s'))
        os.makedirs(os.path.join(self.sim.datastore, 'cinder'))
        self.volume('volume-1')

    def volume(self, name, size=1024 * 1024):
        path = os.path.join(self.sim.datastore, 'cinder', name)
        with open(path, 'wb') as f:
            f.truncate(size)
        return path

    def make_client(self, **kwargs):
        kwargs.setdefault('port', self.proxy.port)
        kwargs.setdefault('ca_path', self.sim.ca_path)
        kwargs.setdefault('connect_timeout', 5.0)
        kwargs.setdefault('read_timeout', 10.0)
        kwargs.setdefault('retry_deadline', 20.0)
        kwargs.setdefault('retries', 2)
        password = kwargs.pop('password', self.password)
        cl = client.TClient('127.0.0.1', self.sim.username, password,
                            **kwargs)
        self.addCleanup(cl.close)
        return cl

    def snapshot(self, cl, name, **kwargs):
        return cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  name, **kwargs)

    def secrets(self):
        """Every form of every secret that must never show."""
        out = []
        for secret in [self.password] + self.proxy.session_ids:
            out += [secret, secret.lower(), secret.upper(),
                    urlparse.quote(secret, safe=''),
                    urlparse.quote_plus(secret),
                    json.dumps(secret)[1:-1]]
        return [s for s in set(out) if len(s) >= 4]

    def assertNoSecret(self, text, what=''):
        for secret in self.secrets():
            self.assertNotIn(secret, text, what)

    def assertErrorClean(self, err):
        for text in (str(err), repr(err), ' '.join(map(str, err.args)),
                     err.message, err.cause_details):
            self.assertNoSecret(text, 'in %r' % type(err).__name__)


class SecretsEchoTest(HostileTestBase):
    """Item 1: an array that echoes the request leaks nothing."""

    CALLS = [
        ('GET', r'/snapshot/[^/]+$',
         lambda t, cl: cl.get_snapshot(t.uuid)),
        ('GET', r'/snapshot$', lambda t, cl: list(cl.find_snapshots())),
        ('POST', r'/cinder/snapshot$',
         lambda t, cl: t.snapshot(cl, 'snap-echo')),
        ('POST', r'/cinder/clone$',
         lambda t, cl: cl.clone_volume(t.uuid, '/tintri/cinder/tmp-echo')),
        ('DELETE', r'/snapshot/', lambda t, cl: cl.delete_snapshot(t.uuid)),
        ('PUT', r'/snapshot/', lambda t, cl: cl.set_snapshot_deletion_policy(
            t.uuid, 'DELETE_ON_ZERO_CLONE_REFERENCES')),
        ('GET', r'/statsRealtime$', lambda t, cl: cl.get_datastore_stats()),
        ('GET', r'/appliance/default/info$',
         lambda t, cl: cl.get_appliance_info()),
        ('GET', r'/virtualDisk$',
         lambda t, cl: cl.find_virtual_disk(uuid='VOL-1')),
        ('GET', r'/fileDirInfo/',
         lambda t, cl: cl.get_file_info('/tintri/cinder/volume-1')),
        ('POST', r'/cinder/host/refresh$',
         lambda t, cl: cl.host_refresh('compute-1',
                                       '/tintri/cinder/volume-1')),
        ('GET', r'^/api/info$', lambda t, cl: cl.api_info()),
    ]

    def test_echoed_requests_never_reach_errors_or_logs(self):
        cl = self.make_client(auth_retry_interval=0)
        self.uuid = self.snapshot(cl, 'snap-base')
        seen = 0
        for style in ('tintri', 'text', 'html'):
            for status in (500, 503, 400):
                for method, path, call in self.CALLS:
                    self.proxy.clear()
                    self.proxy.echo(method, path, status=status, style=style)
                    try:
                        call(self, cl)
                    except client.TintriError as e:
                        seen += 1
                        self.assertErrorClean(e)
        # The echoes did reach the client: errors quote the request line.
        self.assertGreater(seen, 80)
        self.proxy.clear()
        # A login echoed by the array: the body holds the password.
        for style in ('tintri', 'text', 'html'):
            self.proxy.echo('POST', r'/session/login$', status=403,
                            style=style)
            cl.logout()
            e = self.assertRaises(client.TintriError, cl.get_appliance_info)
            self.assertErrorClean(e)
            self.assertIn('rejected the credentials', str(e))
            self.proxy.clear()
        # Echo, then retry, then success: the retry log lines are clean.
        self.proxy.echo('GET', r'/statsRealtime$', status=503, count=1)
        cl.get_datastore_stats()
        log = self.logs.output
        self.assertIn('retry 1/', log)
        self.assertIn('DEBUG cinder_tintri.client VMstore API', log)
        self.assertIn('"password": "***"', log)
        self.assertNoSecret(log, 'in the DEBUG log')
        self.assertGreaterEqual(len(self.proxy.session_ids), 2)
        # The echoes held the session cookie and the password.
        bodies = ' '.join(b.decode('utf-8', 'replace')
                          for _m, _p, b in self.proxy.bodies)
        self.assertIn(json.dumps(self.password)[1:-1], bodies)

    def test_masked_before_truncation(self):
        # The password just past the 200 characters a text body is cut to:
        # no prefix of it may survive.
        cl = self.make_client(retries=0)
        self.uuid = self.snapshot(cl, 'snap-base')
        body = 'x' * 195 + self.password
        self.proxy.replace('GET', r'/snapshot/', body, 'text/plain',
                           status=500)
        e = self.assertRaises(client.TintriError, cl.get_snapshot,
                              self.uuid)
        self.assertNotIn(self.password[:5], str(e))
        self.assertIn('***', str(e))


class NotVMstoreTest(HostileTestBase):
    """Item 2: a server that is not a VMstore gets a clear error."""

    CASES = [
        ('<html><head><title>Welcome to nginx!</title></head></html>',
         'text/html', 200, 'an HTML page (text/html)'),
        ('[1, 2, 3]', 'application/json', 200, 'a JSON list'),
        ('{"preferredVersion": "v310.', 'application/json', 200,
         'invalid JSON'),
        ('{"status": "ok", "version": 3}', 'application/json', 200,
         'without the RestApi fields'),
        ('{"productName": 42}', 'application/json', 200,
         'productName is a JSON number'),
        ('{"productName": "Tintri VMstore"}', 'text/plain', 200,
         'content type text/plain'),
        ('{"productName": "Tintri Global Center", "preferredVersion": '
         '"v310.51"}', 'application/json', 200, 'Global Center'),
        ('', 'text/html', 200, 'an empty body'),
        ('<html><body>Not Found</body></html>', 'text/html', 404,
         'HTTP 404 with an HTML page'),
    ]

    def test_not_a_vmstore(self):
        for body, ctype, status, needle in self.CASES:
            self.proxy.clear()
            self.proxy.replace('*', '.*', body, ctype, status=status)
            cl = self.make_client()
            e = self.assertRaises(client.TintriNotVMstoreError, cl.api_info)
            expected = 'not a VMstore at 127.0.0.1:%d: /api/info answered' \
                % self.proxy.port
            self.assertTrue(str(e).startswith(expected), str(e))
            self.assertIn(needle, str(e))
            self.assertLessEqual(len(str(e)), 240)
            self.assertIsInstance(e, client.TintriError)
            # The password is never sent to it, not even by login().
            self.assertRaises(client.TintriNotVMstoreError, cl.login)
            self.assertEqual(0, self.proxy.logins, needle)

    def test_html_page_quoting_the_password_is_masked(self):
        self.proxy.echo('GET', r'^/api/info$', status=200, style='html')
        e = self.assertRaises(client.TintriNotVMstoreError,
                              self.make_client().api_info)
        self.assertIn('an HTML page', str(e))
        self.assertErrorClean(e)

    def test_strict_array_falls_back_to_appliance_info(self):
        # A strict array: no /api/info (404 TintriError), the official
        # appliance/default/info identifies it after a login.
        self.proxy.replace('GET', r'^/api/info$',
                           error_body(404, 'ERR-API-8001',
                                      'Resource not found.'),
                           'application/json', status=404)
        cl = self.make_client()
        info = cl.api_info()
        self.assertEqual('Tintri VMstore', info['productName'])
        self.assertEqual('v310', info['preferredVersion'])
        self.assertEqual(['v310'], info['supportedVersionSet'])
        self.assertEqual('T7080', info['modelName'])
        self.assertTrue(info['osVersion'].startswith('5.'))
        self.assertEqual('/api/v310/appliance/default/info',
                         info['identifiedBy'])
        logins = [json.loads(b) for m, p, b in self.proxy.bodies
                  if p.endswith('/session/login')]
        self.assertEqual(1, len(logins))
        self.assertNotIn('fullApiVersion', logins[0])
        # The client works normally afterwards, /api/info is not asked
        # again (not even by a later login).
        uuid = self.snapshot(cl, 'snap-strict')
        self.assertTrue(client.is_snapshot_uuid(uuid))
        cl.login()
        self.assertEqual(info, cl.api_info())
        self.assertEqual(1, self.proxy.counts()['GET /api/info'])

    def test_strict_array_fallback_with_garbage_appliance_info(self):
        self.proxy.replace('GET', r'^/api/info$',
                           error_body(404, 'ERR-API-8001', 'not found'),
                           'application/json', status=404)
        self.proxy.replace('GET', r'/appliance/default/info$',
                           '{"hello": "world"}', 'application/json')
        e = self.assertRaises(client.TintriNotVMstoreError,
                              self.make_client().api_info)
        self.assertIn('ApplianceInfo', str(e))
        self.assertIn('not a VMstore at', str(e))

    def test_strict_array_fallback_wrong_password(self):
        self.proxy.replace('GET', r'^/api/info$',
                           error_body(404, 'ERR-API-8001', 'not found'),
                           'application/json', status=404)
        cl = self.make_client(password='wrong-password')
        e = self.assertRaises(client.TintriAuthError, cl.api_info)
        self.assertIn('rejected the credentials', str(e))

    def test_gateway_error_page_is_not_a_verdict(self):
        # A load balancer's 503 page: the array may be fine behind it.
        self.proxy.replace('GET', r'^/api/info$', '<html>busy</html>',
                           'text/html', status=503)
        e = self.assertRaises(client.TintriError,
                              self.make_client(retries=1).api_info)
        self.assertNotIsInstance(e, client.TintriNotVMstoreError)
        self.assertEqual(503, e.status)


class InvalidResponseTest(HostileTestBase):
    """Item 3: responses taken on trust."""

    HTML = ('<html><head><title>503 Service Temporarily Unavailable'
            '</title></head><body>try later</body></html>')

    def sim_snapshots(self, description):
        return [s for s in self.sim.inventory()['snapshots']
                if s['description'] == description]

    def test_create_html_200_after_the_array_made_it(self):
        self.proxy.replace('POST', r'/cinder/snapshot$', self.HTML,
                           'text/html', forward=True)
        cl = self.make_client()
        uuid = self.snapshot(cl, 'snap-html')
        made = self.sim_snapshots('snap-html')
        self.assertEqual(1, len(made))
        # The Cinder snapshot points at the real one: deleting it
        # deletes the array snapshot, nothing leaks.
        self.assertEqual(made[0]['uuid']['uuid'], uuid)
        self.assertEqual(1, self.proxy.counts()[SNAP_CREATE])
        cl.delete_snapshot(uuid)
        self.assertEqual([], self.sim.inventory()['snapshots'])

    def test_create_html_200_when_nothing_was_made(self):
        self.proxy.replace('POST', r'/cinder/snapshot$', self.HTML,
                           'text/html')
        cl = self.make_client(retries=2)
        e = self.assertRaises(client.TintriInvalidResponse, self.snapshot,
                              cl, 'snap-none')
        self.assertIn('not a valid response', str(e))
        self.assertIn('HTML page', str(e))
        self.assertIn('not resent', str(e))
        # Never resent (it might still appear), nothing made.
        self.assertEqual(1, self.proxy.counts()[SNAP_CREATE])
        self.assertEqual([], self.sim.inventory()['snapshots'])

    def test_create_bare_json_string_or_bad_uuid(self):
        cl = self.make_client(retries=1)
        for i, body in enumerate(['"garbage"', '["not-a-uuid"]', '[]',
                                  '{"items": [{"uuid": 5}]}', '17']):
            self.proxy.clear()
            self.proxy.replace('POST', r'/cinder/snapshot$', body,
                               'application/json', forward=True)
            uuid = self.snapshot(cl, 'snap-garbage-%d' % i)
            self.assertEqual(
                self.sim_snapshots('snap-garbage-%d' % i)[0]['uuid']['uuid'],
                uuid)
            self.proxy.clear()
            self.proxy.replace('POST', r'/cinder/snapshot$', body,
                               'application/json')
            e = self.assertRaises(client.TintriInvalidResponse,
                                  self.snapshot, cl, 'snap-lost-%d' % i)
            self.assertIn('not a valid response', str(e))
            self.assertEqual([], self.sim_snapshots('snap-lost-%d' % i))

    def test_reconcile_ignores_a_match_with_a_malformed_uuid(self):
        cl = self.make_client(retries=1)
        self.proxy.replace('POST', r'/cinder/snapshot$', self.HTML,
                           'text/html')
        page = {'typeId': 'com.tintri.api.rest.v310.dto.Page', 'items': [
            {'uuid': {'uuid': 'bogus'}, 'description': 'snap-bad'}]}
        self.proxy.replace('GET', r'/snapshot$', json.dumps(page),
                           'application/json')
        self.assertRaises(client.TintriInvalidResponse, self.snapshot, cl,
                          'snap-bad')
        self.assertIn('skipped 1 malformed item', self.logs.output)

    def test_vm_uuid_and_instance_id_are_sent_and_used_to_reconcile(self):
        cl = self.make_client()
        vm = '05AA7A2B-0463-F458-2024-1522128E4E8D-VIM-0000000000000024'
        self.proxy.replace('POST', r'/cinder/snapshot$', self.HTML,
                           'text/html', forward=True)
        uuid = self.snapshot(cl, 'snap-vm', vm_uuid=vm,
                             instance_id='INSTANCE-7')
        spec = [json.loads(b) for m, p, b in self.proxy.bodies
                if p.endswith('/cinder/snapshot')][0]
        self.assertEqual(vm, spec['vmTintriUuid'])
        self.assertEqual('INSTANCE-7', spec['instanceId'])
        made = self.sim_snapshots('snap-vm')[0]
        self.assertEqual(uuid, made['uuid']['uuid'])
        self.assertEqual(vm, made['vmUuid']['uuid'])

    def test_json_with_a_text_content_type_is_not_valid(self):
        cl = self.make_client()
        uuid = self.snapshot(cl, 'snap-ct')
        self.proxy.replace('GET', r'/snapshot/', json.dumps(
            {'uuid': {'uuid': uuid}}), 'text/plain')
        e = self.assertRaises(client.TintriInvalidResponse, cl.get_snapshot,
                              uuid)
        self.assertIn('not a valid response', str(e))
        self.assertIn('text/plain', str(e))
        # An HTML page is never "not found".
        self.proxy.clear()
        self.proxy.replace('GET', r'/snapshot/', '<html>snapshot does not '
                           'exist</html>', 'text/html')
        self.assertRaises(client.TintriInvalidResponse, cl.get_snapshot,
                          uuid)
        self.proxy.replace('DELETE', r'/snapshot/', '<html>deleted</html>',
                           'text/html')
        self.assertRaises(client.TintriInvalidResponse, cl.delete_snapshot,
                          uuid)

    def test_get_snapshot_must_be_the_one_asked_for(self):
        cl = self.make_client()
        a = self.snapshot(cl, 'snap-a')
        b = self.snapshot(cl, 'snap-b')
        self.proxy.replace('GET', r'/snapshot/', json.dumps(
            {'uuid': {'uuid': b}}), 'application/json')
        e = self.assertRaises(client.TintriInvalidResponse, cl.get_snapshot,
                              a)
        self.assertIn('instead of', str(e))

    def test_listing_items_validated(self):
        cl = self.make_client()
        good = self.snapshot(cl, 'snap-good')
        page = {'items': [{'uuid': {'uuid': good}}, {'uuid': {'uuid': 'X'}},
                          {'description': 'no uuid'}]}
        self.proxy.replace('GET', r'/snapshot$', json.dumps(page),
                           'application/json')
        self.assertEqual([good], [s['uuid']['uuid']
                                  for s in cl.find_snapshots()])
        for bad in ({'items': ['a string']}, {'items': 'nope'},
                    {'items': [], 'next': 7}, '"a string"'):
            self.proxy.clear()
            self.proxy.replace('GET', r'/snapshot$', json.dumps(bad),
                               'application/json')
            self.assertRaises(client.TintriInvalidResponse, list,
                              cl.find_snapshots())

    def test_datastore_stats_must_be_finite_non_negative_numbers(self):
        cl = self.make_client()
        for value in ('NaN', 'Infinity', '-1', '"12"', 'true', 'null'):
            text = ('{"items": [{"sortedStats": [{"spaceTotalGiB": %s, '
                    '"spaceRemainingPhysicalGiB": 1}]}]}' % value)
            self.proxy.clear()
            self.proxy.replace('GET', r'/statsRealtime$', text,
                               'application/json')
            self.assertRaises(client.TintriInvalidResponse,
                              cl.get_datastore_stats)
        self.proxy.clear()
        self.assertGreater(cl.get_datastore_stats()['total_gib'], 0)

    def test_clone_html_200_is_resent_and_409_means_done(self):
        cl = self.make_client()
        uuid = self.snapshot(cl, 'snap-clone')
        self.proxy.replace('POST', r'/cinder/clone$', self.HTML, 'text/html',
                           forward=True, count=1)
        cl.clone_volume(uuid, '/tintri/cinder/tmp-clone')
        self.assertEqual(2, self.proxy.counts()['POST /api/v310/cinder/'
                                                'clone'])
        self.assertIn('cinder/tmp-clone/volume-1',
                      self.sim.inventory()['files'])

    def test_login_html_200_is_invalid_not_a_rejection(self):
        self.proxy.replace('POST', r'/session/login$', self.HTML,
                           'text/html', count=1)
        cl = self.make_client()
        e = self.assertRaises(client.TintriInvalidResponse, cl.login)
        self.assertNotIsInstance(e, client.TintriAuthError)
        cl.login()  # no back-off was started
        self.assertEqual(0, cl.failed_logins)


class DripTest(HostileTestBase):
    """Item 4: a slow drip cannot defeat the timeouts."""

    def dripped(self, cl, call, phase, interval=0.3):
        self.proxy.clear()
        self.proxy.drip('*', r'/statsRealtime$|/cinder/snapshot$',
                        interval=interval, phase=phase)
        start = time.monotonic()
        e = self.assertRaises(client.TintriError, call)
        return time.monotonic() - start, e

    def test_every_phase_bounded_by_the_request_timeout(self):
        # A byte every 0.3 s never trips the 1 s read timeout.
        cl = self.make_client(read_timeout=1.0, request_timeout=1.5,
                              retries=0)
        cl.login()
        walls = {}
        for phase in hostile_proxy.PHASES:
            wall, e = self.dripped(cl, cl.get_datastore_stats, phase)
            walls[phase] = wall
            self.assertIsInstance(e, client.TintriConnectionError)
            self.assertIn('no complete response within 1.5s', str(e))
            self.assertLess(wall, 1.5 + MARGIN, phase)
        self.addDetail('wall-times', content.text_content(
            json.dumps(walls)))
        # Nothing was left behind: the next call works.
        self.proxy.clear()
        self.assertGreater(cl.get_datastore_stats()['total_gib'], 0)

    def test_retries_share_the_retry_deadline(self):
        cl = self.make_client(read_timeout=1.0, request_timeout=30.0,
                              retries=5, retry_deadline=2.0)
        cl.login()
        wall, e = self.dripped(cl, cl.get_datastore_stats, 'body')
        self.assertIn('no complete response within', str(e))
        self.assertLess(wall, 2.0 + MARGIN)
        # Every attempt ended in time: none started past the deadline.
        self.assertLess(self.proxy.counts()[STATS], 6)

    def test_dripped_snapshot_is_looked_up_never_resent(self):
        cl = self.make_client(read_timeout=1.0, request_timeout=1.5,
                              retries=3, retry_deadline=10.0)
        cl.login()
        self.proxy.drip('POST', r'/cinder/snapshot$', interval=0.3,
                        phase='headers')
        uuid = self.snapshot(cl, 'snap-drip')
        self.assertEqual(1, self.proxy.counts()[SNAP_CREATE])
        made = [s for s in self.sim.inventory()['snapshots']
                if s['description'] == 'snap-drip']
        self.assertEqual([uuid], [s['uuid']['uuid'] for s in made])

    def test_no_descriptor_or_thread_leak(self):
        import threading
        cl = self.make_client(read_timeout=1.0, request_timeout=0.8,
                              retries=0)
        cl.login()
        self.dripped(cl, cl.get_datastore_stats, 'body')
        self.proxy.clear()
        cl.get_datastore_stats()
        fds = len(os.listdir('/proc/self/fd'))
        for _ in range(5):
            self.dripped(cl, cl.get_datastore_stats, 'body', interval=0.2)
        self.proxy.clear()
        for _ in range(20):
            cl.get_datastore_stats()
        # The proxy's side of the cut connections ends on its next write;
        # wait for that, within a deadline.
        deadline = time.monotonic() + 10
        while (len(os.listdir('/proc/self/fd')) > fds + 2
               and time.monotonic() < deadline):
            time.sleep(0.1)
        self.assertLessEqual(len(os.listdir('/proc/self/fd')), fds + 2)
        self.assertLess(threading.active_count(), 50)

    def test_native_threads_without_eventlet(self):
        # cinder-tintri (the CLI) runs without eventlet: the watchdog is a
        # real thread there. The client runs in a fresh interpreter.
        self.proxy.drip('GET', r'/statsRealtime$', interval=0.3,
                        phase='headers')
        script = textwrap.dedent('''
            import json, sys, time
            from cinder_tintri import client
            assert 'eventlet' not in sys.modules
            port, ca, password = sys.argv[1], sys.argv[2], sys.argv[3]
            cl = client.TClient('127.0.0.1', 'admin', password,
                                port=int(port), ca_path=ca, retries=0,
                                read_timeout=1.0, request_timeout=1.5)
            start = time.monotonic()
            try:
                cl.get_datastore_stats()
                out = 'no error'
            except client.TintriError as e:
                out = str(e)
            print(json.dumps({'wall': time.monotonic() - start,
                              'error': out,
                              'eventlet': 'eventlet' in sys.modules}))
        ''')
        proc = subprocess.run(
            [sys.executable, '-c', script, str(self.proxy.port),
             self.sim.ca_path, self.password],
            capture_output=True, text=True, timeout=60,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__)))))
        self.assertEqual(0, proc.returncode, proc.stderr)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        self.assertFalse(result['eventlet'])
        self.assertIn('no complete response within 1.5s', result['error'])
        self.assertLess(result['wall'], 1.5 + MARGIN)


class RotationTest(HostileTestBase):
    """Item 5: a rotated password does not lock the account out."""

    def test_one_failed_login_per_interval(self):
        interval = 1.5
        cl = self.make_client(auth_retry_interval=interval)
        self.snapshot(cl, 'snap-before')
        self.proxy.rotate_password('rotated-' + os.urandom(4).hex())
        before = self.proxy.total_requests()
        errors = []
        for i in range(10):
            errors.append(self.assertRaises(
                client.TintriAuthError, self.snapshot, cl, 'snap-%d' % i))
        for _ in range(5):
            errors.append(self.assertRaises(client.TintriAuthError,
                                            cl.get_datastore_stats))
        self.assertEqual(1, self.proxy.rejected_logins)
        # The first call's 401 and its one re-login; then nothing at all.
        self.assertEqual(2, self.proxy.total_requests() - before)
        self.assertEqual(1, cl.failed_logins)
        for e in errors[1:]:
            self.assertIn('VMstore 127.0.0.1 rejected the credentials of '
                          'user admin; not retrying the login before', str(e))
            self.assertErrorClean(e)
        warnings = [ln for ln in self.logs.output.splitlines()
                    if ln.startswith('WARNING') and 'rejected' in ln]
        self.assertEqual(1, len(warnings), warnings)
        # After the interval: exactly one more login is tried.
        time.sleep(interval + 0.3)
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertEqual(2, self.proxy.rejected_logins)
        self.addDetail('rotation', content.text_content(json.dumps(
            {'calls': 15, 'failed_logins_first_interval': 1,
             'failed_logins_after_interval': 2,
             'requests_while_blocked': 0})))

    def test_new_credentials_end_the_back_off(self):
        cl = self.make_client()
        cl.login()
        new = 'rotated-' + os.urandom(4).hex()
        self.proxy.rotate_password(new)
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertEqual(1, self.proxy.rejected_logins)
        cl.set_credentials(self.sim.username, new)
        self.assertGreater(cl.get_datastore_stats()['total_gib'], 0)
        uuid = self.snapshot(cl, 'snap-after')
        self.assertTrue(client.is_snapshot_uuid(uuid))
        self.assertEqual(1, self.proxy.rejected_logins)
        # The new password is masked too, and so is the old one.
        self.proxy.echo('GET', r'/statsRealtime$', status=500)
        e = self.assertRaises(client.TintriError, cl.get_datastore_stats)
        self.assertNotIn(new, str(e))
        self.assertErrorClean(e)

    def test_new_client_starts_fresh_and_zero_retries_every_time(self):
        self.proxy.reject_logins()
        cl = self.make_client(auth_retry_interval=300)
        self.assertRaises(client.TintriAuthError, cl.login)
        self.assertRaises(client.TintriAuthError, cl.login)
        self.assertEqual(1, self.proxy.rejected_logins)
        fresh = self.make_client(auth_retry_interval=300)
        self.assertRaises(client.TintriAuthError, fresh.login)
        self.assertEqual(2, self.proxy.rejected_logins)
        eager = self.make_client(auth_retry_interval=0)
        for _ in range(3):
            self.assertRaises(client.TintriAuthError, eager.login)
        self.assertEqual(5, self.proxy.rejected_logins)

    def test_login_without_cookie_is_a_rejection(self):
        self.proxy.replace('POST', r'/session/login$', '"ADMIN"',
                           'application/json')
        cl = self.make_client()
        e = self.assertRaises(client.TintriAuthError, cl.login)
        self.assertIn('without a JSESSIONID cookie', str(e))
        self.assertRaises(client.TintriAuthError, cl.get_datastore_stats)
        self.assertEqual(1, self.proxy.counts()[LOGIN])


class NotSupportedTest(HostileTestBase):
    """Item 7: PUT snapshot/{uuid} is outside the official index."""

    def test_put_snapshot_unsupported_raises_not_supported(self):
        cl = self.make_client()
        uuid = self.snapshot(cl, 'snap-put')
        answers = [
            (405, error_body(405, 'ERR-API-0005', 'Method PUT is not '
                                                  'supported here')),
            (404, error_body(404, 'ERR-API-8001', 'Resource not found.',
                             'No resource at /api/v310/snapshot/' + uuid)),
            (400, error_body(400, 'ERR-API-0020', 'Invalid input data.')),
            (501, '<html>Not Implemented</html>'),
        ]
        for status, body in answers:
            self.proxy.clear()
            self.proxy.replace('PUT', r'/snapshot/', body,
                               'application/json', status=status)
            e = self.assertRaises(client.TintriNotSupported,
                                  cl.set_snapshot_deletion_policy, uuid,
                                  'DELETE_ON_ZERO_CLONE_REFERENCES')
            self.assertEqual(status, e.status)
            self.assertIn('does not support', str(e))
            # The caller can tell: the snapshot is still there.
            self.assertEqual(uuid, client._uuid_of(cl.get_snapshot(uuid)))
        # A snapshot that is really gone is not "unsupported".
        self.proxy.clear()
        cl.delete_snapshot(uuid)
        e = self.assertRaises(client.TintriError,
                              cl.set_snapshot_deletion_policy, uuid,
                              'DELETE_ON_ZERO_CLONE_REFERENCES')
        self.assertNotIsInstance(e, client.TintriNotSupported)
        self.assertEqual(404, e.status)
        self.assertIsNone(cl.get_snapshot(uuid))


class NewEndpointsTest(HostileTestBase):
    """Item 7: count_snapshots fallback and get_file_info shapes."""

    def test_count_snapshots_without_filtered_total(self):
        cl = self.make_client()
        for i in range(3):
            self.snapshot(cl, 'snap-count-%d' % i)
        self.assertEqual(3, cl.count_snapshots(contain='snap-count'))
        self.assertEqual(1, self.proxy.counts()['GET /api/v310/snapshot'])
        # A Page without filteredTotal: counted page by page.
        self.proxy.clear()
        self.proxy.add('GET', r'/snapshot$', 'pass')
        cl = self.make_client(page_size=1)
        real_forward = self.proxy._forward

        def strip_total(handler, method, body):
            status, reason, headers, data = real_forward(handler, method,
                                                         body)
            if handler.path.split('?')[0].endswith('/snapshot'):
                page = json.loads(data)
                page.pop('filteredTotal', None)
                data = json.dumps(page).encode()
            return status, reason, headers, data
        self.proxy._forward = strip_total
        self.addCleanup(setattr, self.proxy, '_forward', real_forward)
        before = self.proxy.counts().get('GET /api/v310/snapshot', 0)
        self.assertEqual(3, cl.count_snapshots(contain='snap-count'))
        # One request for the count, then the three pages of one.
        self.assertEqual(before + 4,
                         self.proxy.counts()['GET /api/v310/snapshot'])

    def test_get_file_info(self):
        cl = self.make_client()
        # The simulator serves the official endpoint: the real file; a
        # missing one is 404, None.
        info = cl.get_file_info('/tintri/cinder/volume-1')
        self.assertEqual(
            (False, 'cinder/volume-1', os.stat(os.path.join(
                self.sim.datastore, 'cinder', 'volume-1')).st_size),
            (info['is_dir'], info['path'], info['size']))
        self.assertIsNone(cl.get_file_info('/tintri/cinder/no-such-file'))
        self.proxy.replace('GET', r'/fileDirInfo/cinder/volume-1$', json.dumps(
            {'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.'
                       'filesystem.FileSystemInfo', 'isDir': False,
             'path': 'cinder/volume-1', 'sizeInBytes': 1048576}),
            'application/json')
        info = cl.get_file_info('/tintri/cinder/volume-1')
        self.assertEqual({'is_dir': False, 'path': 'cinder/volume-1',
                          'size': 1048576},
                         {k: v for k, v in info.items() if k != 'raw'})
        for bad in ('{"isDir": "no"}', '{"isDir": true, "sizeInBytes": -1}',
                    '[]', '"x"'):
            self.proxy.clear()
            self.proxy.replace('GET', r'/fileDirInfo/', bad,
                               'application/json')
            self.assertRaises(client.TintriInvalidResponse, cl.get_file_info,
                              'cinder/volume-1')
        for bad in ('', '/tintri', 'cinder/../../etc/passwd', None):
            self.assertRaises(client.TintriInvalidInput, cl.get_file_info,
                              bad)
