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
"""Cross-array clone (issue 13 item 3): the collaborator, two simulators.

Array A (127.0.0.1) holds the snapshot; array B (127.0.0.2) gets the
volume.  Each array's share is its simulator's datastore directory, so
what a remote copy or a host copy lands is what the arrays see.
"""

import os
import time
import uuid

from cinder import exception
from cinder.tests.unit import test
from cinder.volume import configuration
from cinder.volume import driver as base_driver
from cinder.volume import manager as volume_manager
import fixtures

from cinder_tintri import client as tclient
from cinder_tintri import cross_array
from cinder_tintri import driver as tdriver
from cinder_tintri import inventory
from cinder_tintri.simulator import VMstoreSimulator
from cinder_tintri import temporaries

SHARE_A = '127.0.0.1:/tintri/cinder'
SHARE_B = '127.0.0.2:/tintri/cinder'
MiB = 1024 * 1024
SIZE = 8 * MiB
SECRET = 'Hunter2-%s' % uuid.uuid4().hex[:8]


class TwoArrays(test.TestCase):

    PROFILE = 'vmstore6'

    def setUp(self):
        super().setUp()
        self.a = self._sim('127.0.0.1')
        self.b = self._sim('127.0.0.2')
        self.dir_a = os.path.join(self.a.datastore, 'cinder')
        self.dir_b = os.path.join(self.b.datastore, 'cinder')
        os.makedirs(self.dir_a)
        os.makedirs(self.dir_b)
        self.ca = self._client(self.a)
        self.cb = self._client(self.b)
        self.temps = temporaries.TemporaryDirs('cinder-host@backend_b')
        self.peer = cross_array.Peer('backend_a', self.ca, self._mount_a)
        # The source volume on A, with data at both ends and a hole.
        self.data = os.urandom(64 * 1024)
        with open(os.path.join(self.dir_a, 'volume-src'), 'wb') as f:
            f.write(self.data)
            f.seek(SIZE - len(self.data))
            f.write(self.data[::-1])
        inv = inventory.Inventory(self.ca, mode='auto',
                                  hostname='keystone.test',
                                  region='RegionOne', timeout=10)
        self.snap = inv.snapshot('/tintri/cinder', 'volume-src', 'VOL-SRC',
                                 'snapshot-1')
        # The source changes after the snapshot: the copy is the snapshot.
        with open(os.path.join(self.dir_a, 'volume-src'), 'r+b') as f:
            f.write(b'\0' * len(self.data))
        self.a.reset_counts()

    def _sim(self, host):
        sim = VMstoreSimulator(host=host, profile=self.PROFILE,
                               password='Sim-%s' % uuid.uuid4().hex[:12])
        sim.start()
        self.addCleanup(sim.stop)
        return sim

    def _client(self, sim):
        cl = tclient.TClient(sim.host, sim.username, sim.password,
                             port=sim.port, ca_path=sim.ca_path,
                             retries=1, read_timeout=5.0,
                             retry_deadline=5.0)
        self.addCleanup(cl.close)
        return cl

    def _mount_a(self, share):
        self.assertEqual(SHARE_A, share)
        return self.dir_a

    def copier(self, mode='auto', timeout=30.0):
        return cross_array.CrossArrayCopy(self.cb, self.temps, self.b.host,
                                          mode=mode, timeout=timeout,
                                          poll_interval=0.05)

    def copy(self, copier=None, target='volume-new'):
        copier = copier or self.copier()
        return copier.copy_snapshot(self.peer, self.snap, 'volume-src',
                                    SHARE_A, SHARE_B, self.dir_b, target)

    def assertIsSnapshotData(self, path):
        st = os.stat(path)
        self.assertEqual(SIZE, st.st_size)
        with open(path, 'rb') as f:
            self.assertEqual(self.data, f.read(len(self.data)))
            f.seek(SIZE - len(self.data))
            self.assertEqual(self.data[::-1], f.read())

    def counts(self, sim, key):
        return sim.request_counts().get(key, 0)

    def states(self):
        self.assertTrue(self.a.wait_tasks(10))
        return [t['state'] for t in self.a.tasks()]


class RemoteCopyTest(TwoArrays):

    def setUp(self):
        super().setUp()
        self.path_id = self.a.add_replication_path(self.b)

    def test_task_success_lands_the_snapshot_on_b(self):
        path = self.copy()
        self.assertEqual(os.path.join(self.dir_b, 'volume-new'), path)
        self.assertIsSnapshotData(path)
        self.assertEqual(['volume-new'], os.listdir(self.dir_b))
        self.assertEqual(['volume-src'], os.listdir(self.dir_a))
        self.assertEqual(['SUCCESS'], self.states())
        self.assertEqual(1, self.counts(self.a, 'POST /api/v310/vm'))
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/cinder/clone'))

    def test_task_failure_leaves_nothing_and_masks_the_text(self):
        self.a.set_remote_copy(fail=True, fail_message='disk full, '
                               'passphrase=%s' % SECRET)
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy)
        self.assertIn('failed on the array', str(e))
        self.assertIn('disk full', str(e))
        self.assertNotIn(SECRET, str(e))
        self.assertEqual(['FAILED'], self.states())
        self.assertEqual([], os.listdir(self.dir_b))
        # A failure of the array is not retried by a host copy.
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/cinder/clone'))

    def test_deadline_cancels_the_task_and_cleans_up(self):
        self.a.set_remote_copy(delay=30)
        started = time.monotonic()
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy,
                              self.copier(timeout=1.0))
        self.assertLess(time.monotonic() - started, 15)
        self.assertIn('tintri_cross_array_timeout', str(e))
        self.assertEqual(['CANCELLED'], self.states())
        self.assertEqual(1, self.counts(self.a, 'DELETE /api/v310/task/{id}'))
        self.assertEqual([], os.listdir(self.dir_b))

    def test_copy_landing_at_directory_name_is_taken(self):
        # The other reading of directoryName: the copy's own path.
        self.a.set_remote_copy(land_elsewhere=True)
        self.assertIsSnapshotData(self.copy())
        self.assertEqual(['volume-new'], os.listdir(self.dir_b))

    def test_refused_request_falls_back_to_a_host_copy(self):
        self.a.inject_fault('POST /api/v310/vm', status=400,
                            code='ERR-API-3205', message='Invalid clone')
        self.assertIsSnapshotData(self.copy())
        self.assertEqual(1, self.counts(self.a, 'POST /api/v310/cinder/clone'))
        self.assertEqual(['volume-new'], os.listdir(self.dir_b))
        self.assertEqual(['volume-src'], os.listdir(self.dir_a))

    def test_refused_request_fails_in_replication_mode(self):
        self.a.inject_fault('POST /api/v310/vm', status=400,
                            code='ERR-API-3205', message='Invalid clone')
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy,
                              self.copier(mode='replication'))
        self.assertIn('refused', str(e))
        self.assertEqual([], os.listdir(self.dir_b))
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/cinder/clone'))

    def test_lost_response_fails_and_late_copy_is_swept(self):
        self.a.inject_fault('POST /api/v310/vm', mode='lose_response')
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy)
        self.assertIn('lost', str(e))
        # Not replaced by a host copy while the lost copy may run.
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/cinder/clone'))
        self.assertEqual(['SUCCESS'], self.states())
        # The late copy re-created its temporary on B; nothing owns it.
        self.assertFalse(os.path.exists(os.path.join(self.dir_b,
                                                     'volume-new')))
        self.temps.sweep([self.dir_b])
        self.assertEqual([], os.listdir(self.dir_b))

    def test_existing_target_is_not_overwritten(self):
        with open(os.path.join(self.dir_b, 'volume-new'), 'wb') as f:
            f.write(b'keep')
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy)
        self.assertIn('refusing to overwrite', str(e))
        with open(os.path.join(self.dir_b, 'volume-new'), 'rb') as f:
            self.assertEqual(b'keep', f.read())
        self.assertEqual(['volume-new'], os.listdir(self.dir_b))


class RemoteCopyVmstore4Test(RemoteCopyTest):
    """The same on the lenient VMstore 4 profile."""

    PROFILE = 'vmstore4'


class HostCopyTest(TwoArrays):

    def test_no_replication_path_copies_on_the_host(self):
        path = self.copy()
        self.assertIsSnapshotData(path)
        # Sparse: the hole in the middle is not written.
        st = os.stat(path)
        self.assertLess(st.st_blocks * 512, SIZE // 2)
        self.assertEqual(['volume-new'], os.listdir(self.dir_b))
        self.assertEqual(['volume-src'], os.listdir(self.dir_a))
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/vm'))
        self.assertEqual(1, self.counts(self.a, 'POST /api/v310/cinder/clone'))

    def test_path_to_another_array_is_not_used(self):
        self.a.add_replication_path(self.b, destination_ip='127.0.0.9')
        self.assertIsSnapshotData(self.copy())
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/vm'))

    def test_host_copy_mode_skips_replication(self):
        self.a.add_replication_path(self.b)
        self.assertIsSnapshotData(self.copy(self.copier(mode='host_copy')))
        self.assertEqual(0, self.counts(
            self.a, 'GET /api/v310/datastore/{id}/replicationPath'))
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/vm'))

    def test_replication_mode_without_path_fails(self):
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy,
                              self.copier(mode='replication'))
        self.assertIn('no replication path', str(e))
        self.assertEqual([], os.listdir(self.dir_b))

    def test_disabled_mode_refuses(self):
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy,
                              self.copier(mode='disabled'))
        self.assertIn('disabled', str(e))
        self.assertEqual(0, self.a.total_requests())

    def test_source_clone_failure_leaves_nothing(self):
        self.a.inject_fault('POST /api/v310/cinder/clone', status=500,
                            code='ERR-API-3206', message='Clone failed')
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy)
        self.assertIn('clone on the source array failed', str(e))
        self.assertEqual([], os.listdir(self.dir_b))
        self.assertEqual(['volume-src'], os.listdir(self.dir_a))

    def test_deadline_of_the_host_copy(self):
        # A deadline that has passed when the copy starts.
        copier = self.copier(mode='host_copy', timeout=-1.0)
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy,
                              copier)
        self.assertIn('did not finish', str(e))
        self.assertEqual([], os.listdir(self.dir_b))
        self.assertEqual(['volume-src'], os.listdir(self.dir_a))

    def test_unmounted_source_share_is_a_clear_error(self):
        base = self.useFixture(fixtures.TempDir()).path
        self.peer.mount_of = cross_array.Peers._mounted('backend_a', base)
        e = self.assertRaises(exception.VolumeBackendAPIException, self.copy)
        self.assertIn('is not mounted on this host', str(e))
        self.assertEqual([], os.listdir(self.dir_b))
        self.assertEqual(0, self.counts(self.a, 'POST /api/v310/cinder/clone'))


class HostCopyVmstore4Test(HostCopyTest):

    PROFILE = 'vmstore4'


class LandedFileTest(test.TestCase):
    """What a copy left in a temporary; never through a planted link."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.tmp = os.path.join(self.root, '.tintri-tmp-x')

    def test_file_inside_or_at_the_directory(self):
        os.mkdir(self.tmp)
        path = os.path.join(self.tmp, 'volume-src')
        open(path, 'wb').close()
        self.assertEqual(path, cross_array._landed_file(self.tmp,
                                                        'volume-src'))
        os.unlink(path)
        os.rmdir(self.tmp)
        open(self.tmp, 'wb').close()
        self.assertEqual(self.tmp, cross_array._landed_file(self.tmp,
                                                            'volume-src'))

    def test_linked_directory_is_not_followed(self):
        outside = os.path.join(self.root, 'outside')
        os.mkdir(outside)
        open(os.path.join(outside, 'volume-src'), 'wb').close()
        os.symlink(outside, self.tmp)
        self.assertIsNone(cross_array._landed_file(self.tmp, 'volume-src'))
        os.unlink(self.tmp)
        os.mkdir(self.tmp)
        os.symlink(os.path.join(outside, 'volume-src'),
                   os.path.join(self.tmp, 'volume-src'))
        self.assertIsNone(cross_array._landed_file(self.tmp, 'volume-src'))


class PeersTest(test.TestCase):
    """Which backend holds a snapshot, and how this service reaches it."""

    def setUp(self):
        super().setUp()
        self.made = []
        self.own = self._section('backend_b', hostname='vmstore-b.test')

    def _section(self, name, driver=cross_array.DRIVER_PATH, **values):
        conf = configuration.Configuration(
            base_driver.volume_opts + volume_manager.volume_backend_opts
            + tdriver.TintriDriver.get_driver_options(), config_group=name)
        self.override_config('volume_driver', driver, group=name)
        for key, value in values.items():
            self.override_config('tintri_server_' + key, value, group=name)
        return conf

    def peers(self):
        def make(conf):
            self.made.append(conf.tintri_server_hostname)
            return tclient.TClient(conf.tintri_server_hostname, 'u', 'p')
        p = cross_array.Peers(self.own, 'cinder-host@backend_b', make)
        self.addCleanup(p.close)
        return p

    def test_own_backend_is_no_peer(self):
        peers = self.peers()
        self.assertIsNone(peers.peer_for('other-host@backend_b#pool'))
        self.assertIsNone(peers.peer_for(None))
        self.assertEqual([], self.made)

    def test_other_section_on_the_same_array_is_no_peer(self):
        self._section('backend_c', hostname='VMSTORE-B.test')
        self.assertIsNone(self.peers().peer_for('h@backend_c#127.0.0.1:/x'))
        self.assertEqual([], self.made)

    def test_other_array_is_a_peer_made_once(self):
        self._section('backend_a', hostname='vmstore-a.test')
        peers = self.peers()
        peer = peers.peer_for('h@backend_a#127.0.0.1:/tintri/cinder')
        self.assertEqual('backend_a', peer.section)
        self.assertIs(peer, peers.peer_for('h2@backend_a'))
        self.assertEqual(['vmstore-a.test'], self.made)

    def test_non_tintri_section_is_refused(self):
        self._section('lvm', hostname='x',
                      driver='cinder.volume.drivers.lvm.LVMVolumeDriver')
        e = self.assertRaises(exception.VolumeBackendAPIException,
                              self.peers().peer_for, 'h@lvm#pool')
        self.assertIn('not a Tintri backend', str(e))

    def test_section_without_hostname_is_refused(self):
        self._section('backend_x')
        e = self.assertRaises(exception.VolumeBackendAPIException,
                              self.peers().peer_for, 'h@backend_x#pool')
        self.assertIn('tintri_server_hostname', str(e))
