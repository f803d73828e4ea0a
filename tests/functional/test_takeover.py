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
"""Taking over a deployment of cinder 29's in-tree VMstore driver.

The objects are made by the real in-tree driver
(``cinder.volume.drivers.vmstore.nfs.VmstoreNfsDriver`` 3.0.3, installed
with cinder) running in cinder's volume manager against the simulator.
Then the volume service is restarted, on the same host, database, share
and simulator, with ``volume_driver = cinder_tintri.driver.TintriDriver``
(what an operator does), and every operation runs on the taken-over
volumes and snapshots.  At the end nothing is left on the array or the
share.
"""

import os
import time
import uuid

from cinder import context
from cinder import objects
import fixtures
from oslo_utils import units

from cinder_tintri import client as tclient
from tests.functional import harness
from tests.functional import test_boot_storm

MiB = units.Mi
INTREE = 'cinder.volume.drivers.vmstore.nfs.VmstoreNfsDriver'
TINTRI = 'cinder_tintri.driver.TintriDriver'
GROUP = 'backend_defaults'


class TakeoverFromInTreeTest(harness.ApiTestCase):
    """In-tree VMstore driver -> TintriDriver, same deployment."""

    SIM_KWARGS = {'profile': 'vmstore6'}
    # The in-tree driver reports the share's free space less the
    # apparent size of its (sparse) files, thick: room for them all.
    XFS_MB = 16384

    def _get_flags(self):
        # Registers the in-tree driver's options.
        from cinder.volume.drivers.vmstore import options  # noqa: F401
        # requests lets REQUESTS_CA_BUNDLE override a session's verify
        # (the in-tree driver sets only the session's): without this the
        # simulator's CA would be ignored.
        for var in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
            self.useFixture(fixtures.EnvironmentVariable(var))
        f = super()._get_flags()
        sim = self.env.sim
        share_host, share_path = harness.SHARE.split(':', 1)
        for key, value in {
                'volume_driver': INTREE,
                'nas_host': share_host,
                'nas_share_path': share_path,
                'nfs_mount_options': 'vers=3',
                'vmstore_rest_address': sim.host,
                'vmstore_rest_port': sim.port,
                'vmstore_user': sim.username,
                'vmstore_password': sim.password,
                'vmstore_openstack_hostname': 'keystone.test',
                'vmstore_mount_point_base': self.env.mount_base,
                'driver_ssl_cert_verify': True,
                'vmstore_rest_retry_count': 1,
                'vmstore_rest_backoff_factor': 0.1}.items():
            f[key] = {'v': value, 'g': GROUP}
        return f

    # -- helpers --------------------------------------------------------

    def _switch_driver(self):
        """Restart cinder-volume on the same host with TintriDriver."""
        host = self.volume.host
        self.volume.stop()
        self.volume.wait()
        self.override_config('volume_driver', TINTRI, GROUP)
        self.volume = self.start_service('volume', host=host)
        deadline = time.monotonic() + harness.DEADLINE
        while not self.volume.manager.is_working():
            if time.monotonic() > deadline:
                self.fail('TintriDriver did not initialise')
            time.sleep(0.2)
        self.assertEqual('TintriDriver',
                         type(self.volume.manager.driver).__name__)

    def _snapshot(self, vol_id, name):
        snap = self.api.post_snapshot({'snapshot': {'volume_id': vol_id,
                                                    'name': name}})
        return self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')

    @staticmethod
    def _db_snapshot(snap_id):
        return objects.Snapshot.get_by_id(context.get_admin_context(),
                                          snap_id)

    def _plant_intree_temporary(self, name, age):
        """A temporary clone dir as the in-tree driver leaves it on a crash.

        ``create_volume_from_snapshot`` clones into ``<share>/<snapshot
        name>/`` and ``create_cloned_volume`` into ``<share>/clone-<source
        volume name>/``, each holding the clone under the source file's
        name, then renames it out.  A crash between the two leaves it.
        """
        path = os.path.join(self.env.share_dir, name)
        os.mkdir(path)
        inner = os.path.join(path, 'volume-%s' % uuid.uuid4())
        with open(inner, 'wb') as f:
            f.truncate(MiB)
        then = time.time() - age
        os.utime(inner, (then, then))
        os.utime(path, (then, then))
        return path

    # -- the test -------------------------------------------------------

    def test_takeover_from_intree_driver(self):
        sim = self.env.sim
        self.assertEqual('VmstoreNfsDriver',
                         type(self.volume.manager.driver).__name__)
        # Made by the in-tree driver.
        vol = self._volume(size=1, name='orig')
        self._write(vol, b'A' * MiB)
        snap = self._snapshot(vol['id'], 'snap1')
        self._write(vol, b'B' * MiB)
        from_snap = self._volume(size=1, snapshot_id=snap['id'])
        self.assertEqual(b'A' * MiB, self._read(from_snap, MiB))
        clone = self._volume(size=1, source_volid=vol['id'])
        self.assertEqual(b'B' * MiB, self._read(clone, MiB))
        # The in-tree driver records no provider_id for its snapshots.
        self.assertIsNone(self._db_snapshot(snap['id']).provider_id)
        intree = [s for s in sim.inventory()['snapshots']
                  if s['description'] == 'snapshot-%s' % snap['id']]
        self.assertEqual(1, len(intree), sim.inventory()['snapshots'])
        # Leftovers of in-tree operations that crashed an hour ago, and
        # one of an operation of the in-tree driver still running.
        stale = self._plant_intree_temporary(
            'snapshot-%s' % uuid.uuid4(), age=7200)
        stale_clone = self._plant_intree_temporary(
            'clone-volume-%s' % uuid.uuid4(), age=7200)
        live = self._plant_intree_temporary(
            'clone-volume-%s' % uuid.uuid4(), age=0)

        sim.reset_counts()
        self._switch_driver()
        listings = sim.request_counts().get('GET /api/v310/snapshot', 0)

        # update_provider_info filled the snapshot's provider_id with the
        # in-tree driver's array snapshot.  Start-up listed snapshots
        # twice: once for that, once for abandoned in-tree clone helpers.
        self.assertEqual(intree[0]['uuid']['uuid'],
                         self._db_snapshot(snap['id']).provider_id)
        self.assertEqual(2, listings)
        self.assertFalse(os.path.exists(stale))
        self.assertFalse(os.path.exists(stale_clone))
        self.assertTrue(os.path.exists(live))

        # Every operation on the taken-over objects.
        sim.reset_counts()
        self._action(vol['id'], {'revert': {'snapshot_id': snap['id']}})
        self._wait(self.api.get_volume, vol['id'], ('reverting',),
                   'available')
        self.assertEqual(b'A' * MiB, self._read(vol, MiB))
        # By provider_id: no lookup of the snapshot by its name.
        self.assertNotIn('GET /api/v310/snapshot', sim.request_counts())

        from_snap2 = self._volume(size=2, snapshot_id=snap['id'])
        self.assertEqual(b'A' * MiB, self._read(from_snap2, MiB))
        self.assertEqual(2 * units.Gi, self._size(from_snap2))

        clone2 = self._volume(size=2, source_volid=clone['id'])
        self.assertEqual(b'B' * MiB, self._read(clone2, MiB))
        self.assertEqual(2 * units.Gi, self._size(clone2))

        self._action(from_snap['id'], {'os-extend': {'new_size': 2}})
        self._wait(self.api.get_volume, from_snap['id'], ('extending',),
                   'available')
        self.assertEqual(2 * units.Gi, self._size(from_snap))
        self.assertEqual(b'A' * MiB, self._read(from_snap, MiB))

        snap2 = self._snapshot(clone['id'], 'snap-of-intree-clone')
        self.assertIsNotNone(self._db_snapshot(snap2['id']).provider_id)

        for s in (snap2, snap):
            self.api.delete_snapshot(s['id'])
        for s in (snap2, snap):
            self._wait_gone(self.api.get_snapshot, s['id'])
        vols = (clone2, from_snap2, from_snap, clone, vol)
        for v in vols:
            self.api.delete_volume(v['id'])
        for v in vols:
            self._wait_gone(self.api.get_volume, v['id'])
        # What a refused delete left pending goes with the next stats run.
        self.volume.manager._report_driver_status(
            context.get_admin_context())

        inventory = sim.inventory()
        self.assertEqual([], inventory['snapshots'])
        self.assertEqual([os.path.basename(live)],
                         os.listdir(self.env.share_dir))


class TakeoverFromInTreeVmstore4Test(TakeoverFromInTreeTest):
    SIM_KWARGS = {'profile': 'vmstore4'}


class TakeoverRemovedDriverImageCacheTest(test_boot_storm._ImageTestBase):
    """The removed Tintri driver's image cache is reused, not refilled.

    The removed driver (2.x, VMstore 4.x era: the vmstore4 profile)
    cannot run on cinder 29, so its cache snapshot is made on the
    simulator with the body its ``copy_image_to_volume`` ->
    ``_create_image_snapshot`` -> ``TClient.create_snapshot`` sent (see
    cinder_tintri.takeover): of the first volume made from the image,
    description ``image-<id> (<id>)``, filed under the image id.
    """

    SIM_KWARGS = {'profile': 'vmstore4'}

    def _removed_driver_cache(self, image_id):
        sim = self.env.sim
        first = 'volume-%s' % uuid.uuid4()
        with open(os.path.join(self.env.share_dir, first), 'wb') as f:
            f.write(self.data)
        cl = tclient.TClient(sim.host, sim.username, sim.password,
                             port=sim.port, ca_path=sim.ca_path)
        self.addCleanup(cl.close)
        snap_uuid = cl.post('cinder/snapshot', {
            'typeId': ('com.tintri.api.rest.v310.dto.domain.beans.cinder.'
                       'CinderSnapshotSpec'),
            'file': 'cinder/' + first, 'vmName': 'image-' + image_id,
            'description': 'image-%s (%s)' % (image_id, image_id),
            'vmTintriUuid': image_id, 'instanceId': image_id,
            'snapshotCreator': 'Cinder', 'deletionPolicy': None})[0]
        # That first volume was deleted since; the snapshot stays.
        os.unlink(os.path.join(self.env.share_dir, first))
        return snap_uuid

    def test_image_cache_snapshot_of_removed_driver_is_reused(self):
        sim = self.env.sim
        drv = self.volume.manager.driver
        self.addCleanup(drv._image_cache_stop)
        meta = self._image()
        legacy = self._removed_driver_cache(meta['id'])
        sim.reset_counts()
        vol = self._volume(size=1, imageRef=meta['id'])
        self._check(vol, 1)
        self.assertEqual(0, self.glance.downloads)
        counts = sim.request_counts()
        self.assertEqual(1, counts.get(test_boot_storm.CLONE))
        self.assertNotIn(test_boot_storm.SNAP, counts)
        self.api.delete_volume(vol['id'])
        self._wait_gone(self.api.get_volume, vol['id'])
        # Only the cache snapshot stays, and no file but the marker.
        self.assertEqual([legacy], [s['uuid']['uuid'] for s in
                                    sim.inventory()['snapshots']])
        self.assertEqual([], [f for f in os.listdir(self.env.share_dir)
                              if f != '.tintri-image-cache'])
