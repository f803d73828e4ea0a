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
"""The REST client against the VMstore simulator (issue 4 done-when)."""

import datetime
import logging
import os
import threading
import time

import fixtures
import testtools

from cinder_tintri import client
from cinder_tintri.simulator import VMstoreSimulator


LOGIN = 'POST /api/v310/session/login'
SNAP_LIST = 'GET /api/v310/snapshot'
SNAP_CREATE = 'POST /api/v310/cinder/snapshot'
CLONE = 'POST /api/v310/cinder/clone'
PASSWORD = 'Sim-Pa55w0rd-7f3c'
STATS = 'GET /api/v310/datastore/{id}/statsRealtime'


class SimulatorTestBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Fast backoff so retry tests stay short; bounds are still real.
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.TClient.backoff_base', 0.02))
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.TClient.backoff_cap', 0.2))

    def start_sim(self, **kwargs):
        kwargs.setdefault('tls', True)
        kwargs.setdefault('password', PASSWORD)
        sim = VMstoreSimulator(**kwargs)
        sim.__enter__()
        self.addCleanup(sim.__exit__, None, None, None)
        return sim

    def make_client(self, sim, **kwargs):
        kwargs.setdefault('port', sim.port)
        kwargs.setdefault('ca_path', sim.ca_path)
        kwargs.setdefault('connect_timeout', 5.0)
        kwargs.setdefault('read_timeout', 10.0)
        kwargs.setdefault('retry_deadline', 20.0)
        cl = client.TClient(sim.host, sim.username, sim.password, **kwargs)
        self.addCleanup(cl.close)
        return cl

    def make_volume(self, sim, name='volume-1', size=1024 * 1024):
        directory = os.path.join(sim.datastore, 'cinder')
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, 'wb') as f:
            f.truncate(size)
        return path

    def snapshots_described(self, sim, description):
        return [s for s in sim.inventory()['snapshots']
                if s.get('description') == description]


class SessionTest(SimulatorTestBase):

    def test_one_login_for_many_operations(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        self.assertEqual('Tintri VMstore', cl.api_info()['productName'])
        self.assertTrue(cl.get_appliance_info())
        stats = cl.get_datastore_stats()
        for key in ('total_gib', 'free_gib', 'used_gib', 'provisioned_gib'):
            self.assertIsInstance(stats[key], float)
        uuids = [cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                    'snap-%d' % i) for i in range(5)]
        for uuid in uuids:
            self.assertEqual(uuid, client._uuid_of(cl.get_snapshot(uuid)))
        self.assertEqual(sorted(uuids), sorted(
            client._uuid_of(s) for s in cl.find_snapshots(vmUuid='VOL-1')))
        for uuid in uuids:
            cl.delete_snapshot(uuid)
            self.assertIsNone(cl.get_snapshot(uuid))
        self.assertEqual(1, cl.logins)
        self.assertEqual(1, sim.request_counts()[LOGIN])
        self.assertEqual(1, sim.inventory()['logins'])
        self.assertEqual(1, sim.inventory()['sessions'])
        cl.close()
        self.assertEqual(0, sim.inventory()['sessions'])

    def test_relogin_after_forced_expiry(self):
        sim = self.start_sim()
        cl = self.make_client(sim)
        cl.get_appliance_info()
        sim.expire_sessions()
        self.assertTrue(cl.get_appliance_info())
        self.assertEqual(2, cl.logins)
        self.assertEqual(2, sim.request_counts()[LOGIN])
        cl.get_appliance_info()
        self.assertEqual(2, sim.request_counts()[LOGIN])

    def test_explicit_relogin_does_not_leak_sessions(self):
        sim = self.start_sim()
        cl = self.make_client(sim)
        for _ in range(3):
            cl.login()
        self.assertEqual(3, cl.logins)
        self.assertEqual(1, sim.inventory()['sessions'])
        self.assertTrue(cl.get_appliance_info())

    def test_wrong_password(self):
        sim = self.start_sim()
        cl = client.TClient(sim.host, sim.username, 'wrong', port=sim.port,
                            ca_path=sim.ca_path)
        self.addCleanup(cl.close)
        e = self.assertRaises(client.TintriAuthError, cl.get_appliance_info)
        self.assertIn(e.status, (401, 403))
        self.assertEqual(1, sim.request_counts()[LOGIN])

    def _run_concurrently(self, n, func):
        barrier = threading.Barrier(n, timeout=10)
        errors = []

        def worker():
            try:
                barrier.wait()
                func()
            except Exception as e:
                errors.append(e)
        # Under the tests' eventlet monkey patching these are greenthreads.
        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads))
        self.assertEqual([], errors)

    def test_concurrent_relogin_after_expiry_happens_once(self):
        sim = self.start_sim()
        cl = self.make_client(sim)
        cl.get_appliance_info()
        sim.expire_sessions()
        self._run_concurrently(6, cl.get_appliance_info)
        self.assertEqual(2, cl.logins)
        self.assertEqual(2, sim.request_counts()[LOGIN])

    def test_concurrent_callers_share_one_login(self):
        sim = self.start_sim()
        cl = self.make_client(sim)

        def work():
            for _ in range(3):
                cl.get_appliance_info()
        self._run_concurrently(6, work)
        self.assertEqual(1, sim.request_counts()[LOGIN])
        self.assertEqual(18, cl.request_counts['GET /api/v310/appliance/'
                                               '{id}/info'])


class RetryTest(SimulatorTestBase):

    def test_retries_injected_503(self):
        sim = self.start_sim()
        cl = self.make_client(sim)
        cl.login()
        sim.inject_fault(STATS, count=2, mode='error', status=503,
                         code='ERR-API-9013')
        self.assertIn('total_gib', cl.get_datastore_stats())
        self.assertEqual(3, sim.request_counts()[STATS])
        self.assertEqual(3, cl.request_counts[STATS])

    def test_retries_injected_connection_drop(self):
        sim = self.start_sim()
        cl = self.make_client(sim)
        cl.login()
        sim.inject_fault(STATS, count=2, mode='drop')
        self.assertIn('total_gib', cl.get_datastore_stats())
        self.assertEqual(3, cl.request_counts[STATS])

    def test_retries_bounded_by_deadline(self):
        sim = self.start_sim()
        cl = self.make_client(sim, retries=1000, retry_deadline=1.0)
        cl.login()
        sim.inject_fault(STATS, count=100000, mode='error', status=503)
        start = time.monotonic()
        e = self.assertRaises(client.TintriError, cl.get_datastore_stats)
        elapsed = time.monotonic() - start
        self.assertEqual(503, e.status)
        self.assertIn('retry deadline reached', str(e))
        self.assertLess(elapsed, 10.0)
        self.assertLess(cl.request_counts[STATS], 1000)

    def test_retries_bounded_by_count(self):
        sim = self.start_sim()
        cl = self.make_client(sim, retries=2)
        cl.login()
        sim.inject_fault(STATS, count=10, mode='drop')
        self.assertRaises(client.TintriConnectionError,
                          cl.get_datastore_stats)
        self.assertEqual(3, cl.request_counts[STATS])

    def test_read_timeout_honoured(self):
        sim = self.start_sim()
        cl = self.make_client(sim, read_timeout=0.5, retries=0)
        cl.login()
        sim.inject_fault(STATS, count=1, mode='delay', delay=4.0)
        start = time.monotonic()
        e = self.assertRaises(client.TintriConnectionError,
                              cl.get_datastore_stats)
        self.assertLess(time.monotonic() - start, 3.0)
        self.assertIsNone(e.status)
        self.assertIn('timed out', str(e))

    def test_read_timeout_then_retry_succeeds(self):
        sim = self.start_sim()
        cl = self.make_client(sim, read_timeout=0.5, retries=2)
        cl.login()
        sim.inject_fault(STATS, count=1, mode='delay', delay=3.0)
        self.assertIn('total_gib', cl.get_datastore_stats())
        self.assertEqual(2, cl.request_counts[STATS])


class ReconcileTest(SimulatorTestBase):

    def test_no_duplicate_snapshot_after_lost_response(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        cl.login()
        sim.inject_fault(SNAP_CREATE, count=1, mode='lose_response')
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-lost-1')
        snaps = self.snapshots_described(sim, 'snapshot-lost-1')
        self.assertEqual([uuid], [client._uuid_of(s) for s in snaps])
        self.assertEqual(1, sim.request_counts()[SNAP_CREATE])

    def test_no_duplicate_snapshot_after_read_timeout(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim, read_timeout=0.5, retries=40)
        cl.login()
        # The simulator sleeps, then creates the snapshot: the client must
        # keep looking for it instead of resending.
        sim.inject_fault(SNAP_CREATE, count=1, mode='delay', delay=2.0)
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-slow-1')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            snaps = self.snapshots_described(sim, 'snapshot-slow-1')
            if snaps:
                break
            time.sleep(0.1)
        self.assertEqual([uuid], [client._uuid_of(s) for s in snaps])

    def test_snapshot_resent_when_lost_before_processing(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        cl.login()
        sim.inject_fault(SNAP_CREATE, count=1, mode='drop')
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-drop-1')
        snaps = self.snapshots_described(sim, 'snapshot-drop-1')
        self.assertEqual([uuid], [client._uuid_of(s) for s in snaps])

    def test_snapshot_503_resent(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        cl.login()
        sim.inject_fault(SNAP_CREATE, count=2, mode='error', status=503)
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-busy-1')
        snaps = self.snapshots_described(sim, 'snapshot-busy-1')
        self.assertEqual([uuid], [client._uuid_of(s) for s in snaps])
        self.assertEqual(3, sim.request_counts()[SNAP_CREATE])

    def test_clone_after_lost_response(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-clone-src')
        sim.inject_fault(CLONE, count=1, mode='lose_response')
        cl.clone_volume(uuid, '/tintri/cinder/tmp-clone-1')
        self.assertTrue(os.path.isfile(os.path.join(
            sim.datastore, 'cinder', 'tmp-clone-1', 'volume-1')))

    def test_clone_creates_directory(self):
        sim = self.start_sim()
        self.make_volume(sim, size=4096)
        cl = self.make_client(sim)
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-clone-2')
        cl.clone_volume(uuid, '/tintri/cinder/tmp-clone-2')
        path = os.path.join(sim.datastore, 'cinder', 'tmp-clone-2',
                            'volume-1')
        self.assertEqual(4096, os.path.getsize(path))

    def test_delete_snapshot_with_clones_refused(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-with-clone')
        cl.clone_volume(uuid, '/tintri/cinder/tmp-clone-3')
        self.assertRaises(client.SnapshotHasClones, cl.delete_snapshot,
                          uuid)
        self.assertIsNotNone(cl.get_snapshot(uuid))

    def test_delete_missing_snapshot_is_success(self):
        sim = self.start_sim()
        cl = self.make_client(sim)
        self.assertIsNone(cl.delete_snapshot(
            'C218198C-9CE4-E5FD-00B3-EE96D2B3270F-SST-00000000000000FF'))

    def test_deletion_policy_update(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-policy', deletion_policy=(
                                      'DELETE_ON_ZERO_CLONE_REFERENCES'))
        self.assertEqual('DELETE_ON_ZERO_CLONE_REFERENCES',
                         cl.get_snapshot(uuid)['deletionPolicy'])
        cl.set_snapshot_deletion_policy(uuid, 'DELETE_ON_EXPIRATION')
        self.assertEqual('DELETE_ON_EXPIRATION',
                         cl.get_snapshot(uuid)['deletionPolicy'])


class PagingTest(SimulatorTestBase):

    def test_all_pages_of_thousands_of_snapshots(self):
        sim = self.start_sim(page_size=500)
        sim.seed_snapshots(3000)
        cl = self.make_client(sim, page_size=500)
        cl.login()
        sim.reset_counts()
        uuids = [client._uuid_of(s) for s in cl.find_snapshots()]
        self.assertEqual(3000, len(uuids))
        self.assertEqual(3000, len(set(uuids)))
        self.assertEqual(6, sim.request_counts()[SNAP_LIST])

    def test_page_cap_enforced(self):
        sim = self.start_sim(page_size=500)
        sim.seed_snapshots(3000)
        cl = self.make_client(sim, page_size=500, max_pages=5)
        e = self.assertRaises(client.TintriError, list, cl.find_snapshots())
        self.assertIn('page cap', str(e))
        self.assertEqual(5, cl.request_counts[SNAP_LIST])

    def test_find_by_description_across_pages(self):
        sim = self.start_sim(page_size=50)
        self.make_volume(sim)
        cl = self.make_client(sim, page_size=50)
        uuids = [cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                    'snap-%03d' % i) for i in range(120)]
        found = cl.find_snapshot_by_description('snap-117', vm_uuid='VOL-1')
        self.assertEqual(uuids[117], client._uuid_of(found))
        self.assertIsNone(cl.find_snapshot_by_description('snap-999'))

    def test_image_snapshots_to_date(self):
        sim = self.start_sim(page_size=10)
        self.make_volume(sim, name='image-abc')
        cl = self.make_client(sim, page_size=10)
        uuids = {cl.create_snapshot('/tintri/cinder', 'image-abc',
                                    'IMG-%d' % i, 'image-abc-%d' % i)
                 for i in range(25)}
        later = datetime.datetime.utcnow() + datetime.timedelta(days=1)
        found = {client._uuid_of(s)
                 for s in cl.get_image_snapshots_to_date(later)}
        self.assertEqual(uuids, found)
        earlier = datetime.datetime.utcnow() - datetime.timedelta(days=1)
        self.assertEqual([], list(cl.get_image_snapshots_to_date(earlier)))


class TLSTest(SimulatorTestBase):

    def test_wrong_ca_fails_right_ca_passes(self):
        sim = self.start_sim()
        other = self.start_sim()
        wrong = self.make_client(sim, ca_path=other.ca_path, retries=3)
        e = self.assertRaises(client.TintriConnectionError,
                              wrong.get_appliance_info)
        self.assertIn('TLS', str(e))
        # Certificate failures are not retried.
        self.assertEqual(1, wrong.request_counts[LOGIN])
        self.assertNotIn(LOGIN, sim.request_counts())
        right = self.make_client(sim)
        self.assertTrue(right.get_appliance_info())

    def test_missing_ca_file(self):
        sim = self.start_sim()
        cl = self.make_client(sim, ca_path='/nonexistent/ca.pem', retries=3)
        e = self.assertRaises(client.TintriConnectionError, cl.login)
        self.assertIn('/nonexistent/ca.pem', str(e))
        self.assertEqual(1, cl.request_counts[LOGIN])

    def test_system_trust_store_rejects_private_ca(self):
        sim = self.start_sim()
        cl = self.make_client(sim, ca_path=None)
        self.assertRaises(client.TintriConnectionError, cl.login)

    def test_verification_can_be_disabled(self):
        sim = self.start_sim()
        cl = self.make_client(sim, verify=False)
        self.assertTrue(cl.get_appliance_info())


class SecretsTest(SimulatorTestBase):

    def test_no_secret_in_debug_logs(self):
        logger = self.useFixture(fixtures.FakeLogger(
            level=logging.DEBUG, format='%(name)s %(message)s'))
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim)
        sessions = []
        uuid = cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                  'snapshot-secret')
        sessions.append(cl._session_id)
        sim.expire_sessions()
        sim.inject_fault(STATS, count=1, mode='error', status=503)
        cl.get_datastore_stats()
        sessions.append(cl._session_id)
        sim.inject_fault(SNAP_CREATE, count=1, mode='lose_response')
        cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                           'snapshot-secret-2')
        cl.delete_snapshot(uuid)
        cl.close()
        bad = client.TClient(sim.host, sim.username, 'not-' + sim.password,
                             port=sim.port, ca_path=sim.ca_path)
        self.assertRaises(client.TintriAuthError, bad.login)
        output = logger.output
        self.assertIn('session/login', output)
        self.assertIn('"password": "***"', output)
        self.assertNotIn(sim.password, output)
        self.assertEqual(2, len(set(sessions)))
        for sid in sessions:
            self.assertTrue(sid)
            self.assertNotIn(sid, output)


class InventoryBusyTest(SimulatorTestBase):
    """503 ERR-API-9013 "snapshot inventory busy" is retried (17.3)."""

    GET_ONE = 'GET /api/v310/snapshot/{uuid}'

    def test_each_snapshot_endpoint_retried(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim, retries=3)
        cl.login()
        state = {}

        def create():
            state['uuid'] = cl.create_snapshot('/tintri/cinder', 'volume-1',
                                               'VOL-1', 'snap-busy')
            return state['uuid']
        calls = [(SNAP_CREATE, create),
                 (SNAP_LIST, lambda: list(cl.find_snapshots())),
                 (self.GET_ONE, lambda: cl.get_snapshot(state['uuid']))]
        for endpoint, call in calls:
            sim.inject_fault(endpoint, count=2, mode='error', status=503,
                             code='ERR-API-9013')
            before = sim.request_counts().get(endpoint, 0)
            self.assertTrue(call())
            self.assertEqual(before + 3, sim.request_counts()[endpoint],
                             endpoint)
        # The POST was resent twice (503: not processed) yet made one.
        self.assertEqual(1, len(self.snapshots_described(sim, 'snap-busy')))

    def test_bounded_by_retries(self):
        sim = self.start_sim()
        self.make_volume(sim)
        cl = self.make_client(sim, retries=2)
        cl.login()
        sim.inject_fault(SNAP_CREATE, count=10, mode='error', status=503,
                         code='ERR-API-9013')
        e = self.assertRaises(client.TintriError, cl.create_snapshot,
                              '/tintri/cinder', 'volume-1', 'VOL-1', 'snap')
        self.assertEqual((503, 'ERR-API-9013'), (e.status, e.code))
        self.assertIn('3 attempt(s)', str(e))
        self.assertEqual(3, sim.request_counts()[SNAP_CREATE])
        self.assertEqual([], sim.inventory()['snapshots'])


class DiskAndCountTest(SimulatorTestBase):
    """find_virtual_disk, host_refresh, count_snapshots (issue 17)."""

    def test_find_virtual_disk_after_host_refresh(self):
        sim = self.start_sim()
        vol = '5b1c8a4e-3f7d-4c2b-9a61-0d2e8f7c6b5a'
        self.make_volume(sim, name='volume-' + vol)
        cl = self.make_client(sim)
        self.assertIsNone(cl.find_virtual_disk(uuid=vol))
        for _ in range(2):  # idempotent
            cl.host_refresh('compute-1', '/tintri/cinder/volume-' + vol,
                            region='RegionOne', volume_id=vol)
        self.assertEqual(['cinder/volume-' + vol],
                         sim.inventory()['refreshed'])
        disk = cl.find_virtual_disk(uuid=vol)
        self.assertTrue(client.is_vm_uuid(disk['vm_uuid']), disk)
        self.assertEqual('cinder/volume-' + vol, disk['path'])
        self.assertEqual(vol, disk['instance_uuid'])
        by_path = cl.find_virtual_disk(path='/tintri/cinder/volume-' + vol)
        self.assertEqual(disk['vm_uuid'], by_path['vm_uuid'])
        self.assertIsNone(cl.find_virtual_disk(
            uuid=vol, path='/tintri/cinder/volume-other'))

    def test_count_snapshots_in_one_request(self):
        sim = self.start_sim(page_size=100)
        sim.seed_snapshots(250, vm_name='many')
        self.make_volume(sim)
        cl = self.make_client(sim)
        for i in range(3):
            cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                               'snap-%d' % i)
        sim.reset_counts()
        self.assertEqual(253, cl.count_snapshots())
        self.assertEqual(3, cl.count_snapshots(vmUuid='VOL-1'))
        self.assertEqual(0, cl.count_snapshots(contain='nothing-like-it'))
        self.assertEqual(3, sim.request_counts()[SNAP_LIST])
