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
"""A volume from a snapshot of another backend's VMstore, through cinder.

Two Tintri backends (``enabled_backends = backend_a, backend_b``), each
with its own simulator (127.0.0.1 and 127.0.0.2) and its own share
bind-mounted where os-brick expects it, both on one loopback XFS.  Two
volume services run in the process, as ``cinder-volume`` runs them for
enabled_backends.  With ``snapshot_same_host = False`` and each backend in
its own availability zone (``cloned_volume_same_az = False``), a volume
created from a snapshot of a backend_a volume in zone az-b is placed by
the scheduler on backend_b, whose driver copies the snapshot from array A.
"""

import os
import sys
import uuid

# Register snapshot_same_host, cloned_volume_same_az and
# scheduler_max_attempts.
from cinder.scheduler import driver as sched_driver  # noqa: F401
from cinder.volume import api as volume_api  # noqa: F401
from cinder.volume import configuration
from cinder.volume import driver as base_driver
from cinder.volume import manager as volume_manager
import fixtures
from oslo_utils import units

from cinder_tintri import driver as tdriver
from cinder_tintri.simulator import VMstoreSimulator
from tests.functional import fixtures as tfixtures
from tests.functional import harness

MiB = units.Mi
SECTIONS = ('backend_a', 'backend_b')
ADDRESSES = {'backend_a': '127.0.0.1', 'backend_b': '127.0.0.2'}
HOST = 'cinder-func'


class _Backend(object):
    """One backend's simulator, share and options."""

    def __init__(self, test, section, root):
        self.section = section
        self.share = '%s:/tintri/cinder' % ADDRESSES[section]
        self.sim = VMstoreSimulator(
            root=os.path.join(root, section), host=ADDRESSES[section],
            profile='vmstore6', password='Sim-%s' % uuid.uuid4().hex[:12])
        self.sim.start()
        test.addCleanup(self.sim.stop)
        self.share_dir = os.path.join(self.sim.datastore, 'cinder')
        os.makedirs(self.share_dir, exist_ok=True)
        tmp = test.useFixture(fixtures.TempDir()).path
        self.mount_base = os.path.join(tmp, 'mnt')
        os.makedirs(self.mount_base)
        test.useFixture(tfixtures.ShareFixture(self.share, self.share_dir,
                                               self.mount_base))
        self.shares_file = os.path.join(tmp, 'shares')
        with open(self.shares_file, 'w') as f:
            f.write(self.share + '\n')

    def flags(self):
        sim = self.sim
        return {
            'volume_driver': 'cinder_tintri.driver.TintriDriver',
            'volume_backend_name': 'tintri',
            'backend_availability_zone': 'az-%s' % self.section[-1],
            'nfs_shares_config': self.shares_file,
            'nfs_mount_point_base': self.mount_base,
            'nas_secure_file_operations': 'false',
            'nas_secure_file_permissions': 'false',
            'tintri_server_hostname': sim.host,
            'tintri_server_port': sim.port,
            'tintri_server_username': sim.username,
            'tintri_server_password': sim.password,
            'tintri_openstack_hostname': 'keystone.test',
            'tintri_task_poll_interval': 0.1,
            'driver_ssl_cert_path': sim.ca_path,
        }


@tfixtures.skip_unless_root
class CrossArrayTest(harness.ApiTestCase):

    def _get_flags(self):
        f = super(harness.ApiTestCase, self)._get_flags()
        root = self.useFixture(tfixtures.XfsFixture(size_mb=2048)).path
        self.backends = {s: _Backend(self, s, root) for s in SECTIONS}
        for section, backend in self.backends.items():
            # Registered before the services start, so the values can be
            # set (cinder-volume registers them when it loads the driver).
            configuration.Configuration(
                base_driver.volume_opts + volume_manager.volume_backend_opts
                + tdriver.TintriDriver.get_driver_options(),
                config_group=section)
            # Set here: the flags dict is keyed by option name alone.
            for key, value in backend.flags().items():
                self.override_config(key, value, group=section)
        f['enabled_backends'] = {'v': list(SECTIONS)}
        f['snapshot_same_host'] = {'v': False}
        f['cloned_volume_same_az'] = {'v': False}
        # A failed create is not rescheduled (to the same backend).
        f['scheduler_max_attempts'] = {'v': 1}
        f['scheduler_driver_init_wait_time'] = {'v': 10}
        f['resource_query_filters_file'] = {
            'v': os.path.join(sys.prefix, 'etc/cinder/resource_filters.json')}
        return f

    def start_service(self, name, host=None, **kwargs):
        if name != 'volume' or 'service_name' in kwargs:
            return super().start_service(name, host=host, **kwargs)
        # One volume service per backend, as cinder-volume starts them.
        services = [super(CrossArrayTest, self).start_service(
            'volume', host='%s@%s' % (HOST, section), service_name=section)
            for section in SECTIONS]
        return services[0]

    # -- helpers --------------------------------------------------------

    def path(self, vol):
        section = vol['os-vol-host-attr:host'].split('@')[1].split('#')[0]
        return os.path.join(self.backends[section].share_dir,
                            'volume-%s' % vol['id'])

    def write(self, vol, data, offset):
        with open(self.path(vol), 'r+b') as f:
            f.seek(offset)
            f.write(data)

    def read(self, vol, length, offset):
        with open(self.path(vol), 'rb') as f:
            f.seek(offset)
            return f.read(length)

    def source_snapshot(self):
        src = self._volume(size=1, name='src', availability_zone='az-a')
        src = self.api.get_volume(src['id'])
        self.assertIn('@backend_a#', src['os-vol-host-attr:host'])
        self.write(src, b'A' * MiB, 0)
        self.write(src, b'Z' * MiB, 700 * MiB)
        snap = self.api.post_snapshot({'snapshot': {'volume_id': src['id'],
                                                    'name': 'snap'}})
        snap = self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')
        self.write(src, b'B' * MiB, 0)   # after the snapshot
        return src, snap

    def volume_on_b(self, snap, size=2):
        vol = self._volume(size=size, snapshot_id=snap['id'],
                           availability_zone='az-b')
        vol = self.api.get_volume(vol['id'])
        self.assertIn('@backend_b#', vol['os-vol-host-attr:host'])
        return vol

    def assertSnapshotData(self, vol, size):
        self.assertEqual(b'A' * MiB, self.read(vol, MiB, 0))
        self.assertEqual(b'Z' * MiB, self.read(vol, MiB, 700 * MiB))
        self.assertEqual(size * units.Gi, os.stat(self.path(vol)).st_size)

    def entries(self, section):
        return sorted(os.listdir(self.backends[section].share_dir))

    # -- tests ----------------------------------------------------------

    def test_through_the_replication_path(self):
        sim_a = self.backends['backend_a'].sim
        sim_a.add_replication_path(self.backends['backend_b'].sim)
        src, snap = self.source_snapshot()
        vol = self.volume_on_b(snap)
        self.assertSnapshotData(vol, 2)
        self.assertEqual(['SUCCESS'], [t['state'] for t in sim_a.tasks()])
        self.assertEqual(0, sim_a.request_counts().get(
            'POST /api/v310/cinder/clone', 0))
        self.assertEqual(['volume-%s' % vol['id']], self.entries('backend_b'))
        self.assertEqual(['volume-%s' % src['id']], self.entries('backend_a'))
        # The new volume is an ordinary backend_b volume.
        self.api.delete_volume(vol['id'])
        self._wait_gone(self.api.get_volume, vol['id'])
        self.assertEqual([], self.entries('backend_b'))

    def test_host_copy_without_replication_path(self):
        sim_a = self.backends['backend_a'].sim
        src, snap = self.source_snapshot()
        sim_a.reset_counts()
        vol = self.volume_on_b(snap, size=1)
        self.assertSnapshotData(vol, 1)
        counts = sim_a.request_counts()
        self.assertEqual(1, counts.get('POST /api/v310/cinder/clone'))
        self.assertEqual(0, counts.get('POST /api/v310/vm', 0))
        self.assertEqual(['volume-%s' % vol['id']], self.entries('backend_b'))
        self.assertEqual(['volume-%s' % src['id']], self.entries('backend_a'))

    def test_failed_task_leaves_an_error_volume_and_nothing_on_b(self):
        sim_a = self.backends['backend_a'].sim
        sim_a.add_replication_path(self.backends['backend_b'].sim)
        sim_a.set_remote_copy(fail=True, fail_message='replica disk full')
        _src, snap = self.source_snapshot()
        vol = self.api.post_volume({'volume': {
            'size': 1, 'snapshot_id': snap['id'],
            'availability_zone': 'az-b'}})
        self._wait(self.api.get_volume, vol['id'], ('creating',), 'error')
        self.assertEqual(['FAILED'], [t['state'] for t in sim_a.tasks()])
        self.assertEqual([], self.entries('backend_b'))
