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
"""TintriDriver against the VMstore simulator: success and failure paths.

Assertions are on outcomes: files and bytes on the share, snapshots in the
simulator's inventory, REST calls counted by the simulator.
"""

import os
import socket

from cinder import exception
from cinder.interface import volume_driver
from cinder.interface import volume_manageable_driver
from cinder.interface import volume_snapshot_revert
from cinder.objects import fields
from oslo_utils import units

from cinder_tintri import driver as tdriver
from cinder_tintri import options
from tests.unit import driver_base

MiB = units.Mi
CLONE = 'POST /api/v310/cinder/clone'
SNAP = 'POST /api/v310/cinder/snapshot'
LIST = 'GET /api/v310/snapshot'
LOGIN = 'POST /api/v310/session/login'


class DriverSetupTestCase(driver_base.DriverTestCase):

    def test_interface_compliance(self):
        for iface in (volume_driver.VolumeDriverCore,
                      volume_manageable_driver.VolumeManagementDriver,
                      volume_snapshot_revert.VolumeSnapshotRevertDriver):
            self.assertTrue(issubclass(tdriver.TintriDriver, iface), iface)
        self.assertEqual('Tintri', tdriver.TintriDriver.VENDOR)

    def test_driver_options_cover_ours(self):
        names = {o.name for o in tdriver.TintriDriver.get_driver_options()}
        for opt in options.tintri_opts:
            self.assertIn(opt.name, names)
        for name in ('nfs_shares_config', 'nas_host', 'nas_share_path',
                     'nfs_mount_options', 'driver_ssl_cert_path'):
            self.assertIn(name, names)

    def test_setup_logs_in_once(self):
        self.assertEqual(1, self.sim.request_counts().get(LOGIN))
        self.assertEqual([self.share], self.drv._mounted_shares)

    def _setup_error(self, exc_class, **changes):
        flags = dict(self.flags, **changes)
        drv = self.make_driver(flags, setup=False)
        self.addCleanup(lambda: drv._client and drv._client.close())
        err = self.assertRaises(exc_class, drv.do_setup, self.ctxt)
        return str(err)

    def test_missing_option_named(self):
        for name in tdriver.TintriDriver.REQUIRED_OPTIONS:
            msg = self._setup_error(exception.InvalidConfigurationValue,
                                    **{name: None})
            self.assertIn(name, msg)

    def test_unsupported_api_version(self):
        msg = self._setup_error(exception.InvalidConfigurationValue,
                                tintri_api_version='v200')
        self.assertIn('v200', msg)

    def test_unreachable_vmstore(self):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        msg = self._setup_error(exception.VolumeBackendAPIException,
                                tintri_server_port=port,
                                tintri_api_retries=0)
        self.assertIn('Cannot reach', msg)

    def test_rejected_credentials(self):
        msg = self._setup_error(exception.VolumeBackendAPIException,
                                tintri_server_password='wrong-secret')
        self.assertIn('rejected the credentials', msg)
        self.assertNotIn('wrong-secret', msg)

    def test_tls_verification_on_by_default(self):
        # Without the simulator's CA the self-signed array is refused.
        msg = self._setup_error(exception.VolumeBackendAPIException,
                                driver_ssl_cert_path='')
        self.assertIn('Cannot reach', msg)

    def test_share_outside_tintri_export_refused(self):
        shares_file = os.path.join(self.tmp, 'bad-shares')
        with open(shares_file, 'w') as f:
            f.write('127.0.0.1:/export/cinder\n')
        msg = self._setup_error(exception.InvalidConfigurationValue,
                                nfs_shares_config=shares_file)
        self.assertIn('/export/cinder', msg)

    def test_no_shares_mounted(self):
        shares_file = os.path.join(self.tmp, 'empty-shares')
        open(shares_file, 'w').close()
        self._setup_error(exception.NfsNoSharesMounted,
                          nfs_shares_config=shares_file)

    def test_stale_temporaries_removed_at_start(self):
        stale = os.path.join(self.sim.datastore, 'cinder',
                             tdriver.TMP_PREFIX + 'volume-x-123')
        os.makedirs(stale)
        self.make_driver(self.flags)
        self.assertFalse(os.path.exists(stale))


class DriverVolumeTestCase(driver_base.DriverTestCase):

    def test_create_volume_sparse_raw(self):
        vol = self.new_volume(size=2)
        self.assertEqual(self.share, vol.provider_location)
        st = os.stat(self.path_of(vol))
        self.assertEqual(2 * units.Gi, st.st_size)
        self.assertLess(st.st_blocks * 512, MiB)
        self.assertEqual('raw', vol.admin_metadata['format'])

    def test_delete_volume_idempotent(self):
        vol = self.new_volume()
        self.drv.delete_volume(vol)
        self.assertFalse(os.path.exists(self.path_of(vol)))
        self.drv.delete_volume(vol)
        self.assertEqual([], self.share_entries())

    def test_extend_detached(self):
        vol = self.new_volume(size=1)
        self.write(vol, b'keep')
        self.drv.extend_volume(vol, 3)
        self.assertSizeGiB(vol, 3)
        self.assertEqual(b'keep', self.read(vol, 4))

    def test_extend_attached_refused(self):
        vol = self.new_volume(size=1)
        vol.attach_status = fields.VolumeAttachStatus.ATTACHED
        self.assertRaises(exception.ExtendVolumeError,
                          self.drv.extend_volume, vol, 2)
        self.assertSizeGiB(vol, 1)

    def test_stats_pool_per_share(self):
        self.new_volume(size=3)
        stats = self.drv.get_volume_stats(refresh=True)
        self.assertEqual('tintri', stats['volume_backend_name'])
        self.assertEqual('nfs', stats['storage_protocol'].lower())
        self.assertEqual(1, len(stats['pools']))
        pool = stats['pools'][0]
        self.assertEqual(self.share, pool['pool_name'])
        ds = self.sim_stats()
        self.assertAlmostEqual(ds['spaceTotalGiB'],
                               pool['total_capacity_gb'], places=1)
        self.assertEqual(3.0, pool['provisioned_capacity_gb'])
        self.assertTrue(pool['thin_provisioning_support'])
        self.assertFalse(pool['online_extend_support'])
        self.assertFalse(pool['QoS_support'])
        for key in ('reserved_percentage', 'max_over_subscription_ratio',
                    'multiattach', 'free_capacity_gb'):
            self.assertIn(key, pool)

    def sim_stats(self):
        with self.drv._make_client() as c:
            page = c.get('datastore/default/statsRealtime')
        return page['items'][0]['sortedStats'][0]

    def test_initialize_connection(self):
        vol = self.new_volume()
        conn = self.drv.initialize_connection(vol, {'host': 'compute'})
        self.assertEqual('nfs', conn['driver_volume_type'])
        self.assertEqual(self.share, conn['data']['export'])
        self.assertEqual(vol.name, conn['data']['name'])
        self.assertEqual('raw', conn['data']['format'])

    def test_retype_and_get_pool(self):
        vol = self.new_volume()
        self.assertEqual((True, None),
                         self.drv.retype(self.ctxt, vol, {}, {}, {}))
        self.assertEqual(self.share, self.drv.get_pool(vol))


class DriverSnapshotTestCase(driver_base.DriverTestCase):

    def test_snapshot_is_one_request_and_recorded(self):
        vol = self.new_volume()
        self.sim.reset_counts()
        snap = self.create_snapshot(vol)
        counts = self.sim.request_counts()
        self.assertEqual(1, counts.get(SNAP))
        self.assertEqual(1, sum(counts.values()))
        self.assertIn(snap.provider_id, self.snapshot_uuids())

    def test_snapshot_of_missing_file_fails_cleanly(self):
        vol = self.new_volume()
        os.unlink(self.path_of(vol))
        snap = driver_base.test_utils.create_snapshot(self.ctxt, vol.id)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_snapshot, snap)
        self.assertEqual([], self.snapshot_uuids())

    def test_delete_snapshot_idempotent(self):
        vol = self.new_volume()
        snap = self.create_snapshot(vol)
        self.sim.reset_counts()
        self.drv.delete_snapshot(snap)
        self.assertEqual([], self.snapshot_uuids())
        self.drv.delete_snapshot(snap)
        self.assertEqual(0, self.sim.request_counts().get(LIST, 0))

    def test_volume_from_snapshot_larger_keeps_point_in_time_data(self):
        vol = self.new_volume(size=1)
        self.write(vol, b'A' * MiB)
        snap = self.create_snapshot(vol)
        self.write(vol, b'B' * MiB)
        new = self.create_volume(size=2)
        self.sim.reset_counts()
        new.update(self.drv.create_volume_from_snapshot(new, snap))
        self.assertEqual({CLONE: 1}, self.sim.request_counts())
        self.assertEqual(b'A' * MiB, self.read(new, MiB))
        self.assertSizeGiB(new, 2)
        self.assertEqual(b'B' * MiB, self.read(vol, MiB))
        # Only the two volume files remain: no temporary directory.
        self.assertEqual(sorted([vol.name, new.name]), self.share_entries())

    def test_delete_snapshot_with_clone_deferred_to_array(self):
        vol = self.new_volume()
        snap = self.create_snapshot(vol)
        new = self.create_volume()
        self.drv.create_volume_from_snapshot(new, snap)
        self.drv.delete_snapshot(snap)  # has a clone: deferred, no error
        snaps = self.sim.inventory()['snapshots']
        self.assertEqual([snap.provider_id], [s['uuid']['uuid']
                                              for s in snaps])
        self.assertEqual(tdriver.DELETE_ON_ZERO_CLONES,
                         snaps[0]['deletionPolicy'])
        self.drv.delete_volume(new)
        self.assertEqual([], self.snapshot_uuids())

    def test_clone_failure_leaves_nothing(self):
        vol = self.new_volume()
        snap = self.create_snapshot(vol)
        new = self.create_volume(size=1)
        self.sim.inject_fault(CLONE, count=1, status=500,
                              code='ERR-API-3206')
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_volume_from_snapshot, new, snap)
        self.assertEqual([vol.name], self.share_entries())

    def test_missing_array_snapshot_fails_fast(self):
        vol = self.new_volume()
        snap = self.create_snapshot(vol)
        self.drv.delete_snapshot(snap)
        new = self.create_volume()
        self.sim.reset_counts()
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_volume_from_snapshot, new, snap)
        self.assertLessEqual(sum(self.sim.request_counts().values()), 2)
        self.assertEqual([vol.name], self.share_entries())


class DriverCloneRevertTestCase(driver_base.DriverTestCase):

    def test_cloned_volume_larger_no_helper_left(self):
        src = self.new_volume(size=1)
        self.write(src, b'S' * MiB)
        new = self.create_volume(size=3)
        self.sim.reset_counts()
        self.drv.create_cloned_volume(new, src)
        counts = self.sim.request_counts()
        self.assertEqual(1, counts.get(SNAP))
        self.assertEqual(1, counts.get(CLONE))
        self.assertEqual(b'S' * MiB, self.read(new, MiB))
        self.assertSizeGiB(new, 3)
        self.assertEqual(sorted([src.name, new.name]), self.share_entries())
        # The helper snapshot lives only as long as the clone.
        helper = self.sim.inventory()['snapshots']
        self.assertEqual(1, len(helper))
        self.assertEqual(tdriver.DELETE_ON_ZERO_CLONES,
                         helper[0]['deletionPolicy'])
        self.drv.delete_volume(new)
        self.assertEqual([], self.snapshot_uuids())

    def test_clone_failure_deletes_helper_snapshot(self):
        src = self.new_volume()
        new = self.create_volume()
        self.sim.inject_fault(CLONE, count=1, status=500,
                              code='ERR-API-3206')
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_cloned_volume, new, src)
        self.assertEqual([], self.snapshot_uuids())
        self.assertEqual([src.name], self.share_entries())

    def test_revert_on_array(self):
        vol = self.new_volume(size=1)
        self.write(vol, b'A' * MiB)
        snap = self.create_snapshot(vol)
        self.write(vol, b'B' * MiB)
        self.write(vol, b'C', offset=units.Gi - 1)
        self.sim.reset_counts()
        self.drv.revert_to_snapshot(self.ctxt, vol, snap)
        self.assertEqual({CLONE: 1}, self.sim.request_counts())
        self.assertEqual(b'A' * MiB, self.read(vol, MiB))
        self.assertEqual(b'\0', self.read(vol, 1, offset=units.Gi - 1))
        self.assertSizeGiB(vol, 1)
        self.assertEqual([vol.name], self.share_entries())
        self.assertFalse(self.drv.snapshot_revert_use_temp_snapshot())

    def test_revert_failure_keeps_volume(self):
        vol = self.new_volume(size=1)
        snap = self.create_snapshot(vol)
        self.write(vol, b'B' * MiB)
        self.sim.inject_fault(CLONE, count=1, status=500,
                              code='ERR-API-3206')
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.revert_to_snapshot, self.ctxt, vol, snap)
        self.assertEqual(b'B' * MiB, self.read(vol, MiB))
        self.assertEqual([vol.name], self.share_entries())


class DriverPoolsTestCase(driver_base.DriverTestCase):

    SUBMOUNTS = ('gold', 'silver')

    def test_two_shares_two_pools(self):
        stats = self.drv.get_volume_stats(refresh=True)
        self.assertEqual(sorted(self.shares),
                         sorted(p['pool_name'] for p in stats['pools']))

    def test_volume_lands_in_its_pool_and_clones_across(self):
        gold, silver = self.shares
        vol = self.new_volume(share=silver)
        self.assertTrue(os.path.exists(self.path_of(vol)))
        self.write(vol, b'X' * 10)
        snap = self.create_snapshot(vol)
        new = self.create_volume(share=gold)
        self.drv.create_volume_from_snapshot(new, snap)
        self.assertEqual(b'X' * 10, self.read(new, 10))
        self.assertEqual([new.name], self.share_entries(gold))

    def test_unknown_pool_refused(self):
        vol = self.create_volume()
        vol.host = '%s#127.0.0.1:/tintri/bronze' % driver_base.HOST
        self.assertRaises(exception.InvalidHost, self.drv.create_volume, vol)
