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
"""cinder_tintri.takeover against the simulator.

The other drivers' array snapshots are made over REST with the bodies
those drivers send (the in-tree driver's ``create_snapshot`` and the
removed driver's ``TClient.create_snapshot``; see the module docstring of
cinder_tintri.takeover for the sources).
"""

import os
import time
import types
import uuid

from cinder.tests.unit import test as cinder_test
import fixtures

from cinder_tintri import image_cache
from cinder_tintri import takeover
from cinder_tintri import temporaries
from tests.unit import test_client_sim

SNAP_LIST = test_client_sim.SNAP_LIST
VDISK_LIST = 'GET /api/v310/virtualDisk'
SPEC = 'com.tintri.api.rest.v310.dto.domain.beans.cinder.CinderSnapshotSpec'
SHARE = '127.0.0.1:/tintri/cinder'


def volume(provider_id=None):
    vid = str(uuid.uuid4())
    return types.SimpleNamespace(id=vid, name_id=vid, name='volume-' + vid,
                                 provider_location=SHARE,
                                 provider_id=provider_id)


def snapshot(vol, display_name=None, provider_id=None):
    sid = str(uuid.uuid4())
    return types.SimpleNamespace(id=sid, name='snapshot-' + sid,
                                 display_name=display_name,
                                 volume_id=vol.id, volume=vol,
                                 provider_id=provider_id)


class TakeoverTest(test_client_sim.SimulatorTestBase):

    PROFILE = {'profile': 'vmstore4'}

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim(**self.PROFILE)
        self.share_dir = os.path.join(self.sim.datastore, 'cinder')
        os.makedirs(self.share_dir, exist_ok=True)
        self.client = self.make_client(self.sim)
        self.takeover = takeover.Takeover(self.client)

    def _file(self, vol):
        with open(os.path.join(self.share_dir, vol.name), 'wb') as f:
            f.truncate(1 << 20)

    def _intree_snapshot(self, vol, description, vm_name=None):
        """POST cinder/snapshot as the in-tree driver's create_snapshot."""
        vm = self.client.find_virtual_disk(path='cinder/' + vol.name)
        return self.client.post('cinder/snapshot', {
            'typeId': SPEC, 'file': 'cinder/' + vol.name,
            'vmName': vm_name or vm['vm_name'], 'description': description,
            'vmTintriUuid': vm['vm_uuid'], 'instanceId': vm['instance_uuid'],
            'snapshotCreator': 'Vmstore cinder driver',
            'deletionPolicy': 'DELETE_ON_EXPIRATION'})[0]

    def _removed_snapshot(self, file_name, vm_name, key_id, name):
        """POST cinder/snapshot as the removed driver's TClient."""
        return self.client.post('cinder/snapshot', {
            'typeId': SPEC, 'file': 'cinder/' + file_name,
            'vmName': vm_name, 'description': '%s (%s)' % (name, key_id),
            'vmTintriUuid': key_id, 'instanceId': key_id,
            'snapshotCreator': 'Cinder', 'deletionPolicy': None})[0]

    def test_one_listing_fills_every_snapshot(self):
        vols = [volume() for _i in range(3)]
        snaps, expected = [], {}
        for vol in vols:
            self._file(vol)
            for _i in range(10):
                snap = snapshot(vol)
                expected[snap.id] = self._intree_snapshot(vol, snap.name)
                snaps.append(snap)
        done = snapshot(vols[0], provider_id='kept')
        self.sim.reset_counts()
        vol_updates, updates = self.takeover.provider_info(
            vols, snaps + [done])
        self.assertIsNone(vol_updates)
        self.assertEqual(expected, {u['id']: u['provider_id']
                                    for u in updates})
        self.assertEqual({SNAP_LIST: 1}, self.sim.request_counts())

    def test_nothing_missing_costs_nothing(self):
        vol = volume()
        self.sim.reset_counts()
        self.assertEqual((None, None), self.takeover.provider_info(
            [vol], [snapshot(vol, provider_id='x')]))
        self.assertEqual({}, self.sim.request_counts())

    def test_another_volumes_snapshot_is_not_taken(self):
        mine, other = volume(), volume()
        self._file(mine)
        self._file(other)
        snap = snapshot(mine)
        # Same description, other file: a copy of the name elsewhere.
        self._intree_snapshot(other, snap.name)
        _v, updates = self.takeover.provider_info([mine], [snap])
        self.assertEqual([{'id': snap.id, 'provider_id': None}], updates)

    def test_newest_of_duplicates(self):
        vol = volume()
        self._file(vol)
        snap = snapshot(vol)
        self._intree_snapshot(vol, snap.name)
        time.sleep(0.01)
        newest = self._intree_snapshot(vol, snap.name)
        _v, updates = self.takeover.provider_info([vol], [snap])
        self.assertEqual(newest, updates[0]['provider_id'])

    def test_removed_driver_description(self):
        # '<name> (<volume id>)' filed under the volume id.  (It recorded
        # provider_id, so only a snapshot whose update was lost needs
        # this; one it named after a display name is not looked for.)
        vol = volume()
        self._file(vol)
        snap = snapshot(vol)
        made = self._removed_snapshot(vol.name, vol.name, vol.id, snap.name)
        _v, updates = self.takeover.provider_info([vol], [snap])
        self.assertEqual([{'id': snap.id, 'provider_id': made}], updates)

    def test_listing_failure_changes_nothing(self):
        vol = volume()
        self.sim.inject_fault(SNAP_LIST, count=100, status=500)
        self.assertEqual((None, None), self.takeover.provider_info(
            [vol], [snapshot(vol)]))

    def test_find_one(self):
        vol = volume()
        self._file(vol)
        snap = snapshot(vol)
        made = self._intree_snapshot(vol, snap.name)
        self.assertEqual(made, self.takeover.find(snap))
        self.assertIsNone(self.takeover.find(snapshot(vol)))

    def test_abandoned_intree_clone_helpers(self):
        vol = volume()
        self._file(vol)
        old = int((time.time() - 2 * takeover.HELPER_IDLE) * 1000)
        zero = takeover.ZERO_REFS

        def helper(**fields):
            fields.setdefault('description',
                              'clone-volume-%s' % uuid.uuid4())
            return self.sim.seed_snapshots(1, file='cinder/' + vol.name,
                                           **fields)[0]
        abandoned = helper(deletionPolicy=zero, createTime=old)
        kept = [helper(deletionPolicy=zero),              # in use now
                helper(createTime=old),                   # other policy
                helper(deletionPolicy=zero, createTime=old,
                       description='clone-volume-%s-x' % uuid.uuid4())]
        cloned = helper(deletionPolicy=zero, createTime=old)
        self.client.clone_volume(cloned, '/tintri/cinder/clone-dir')
        kept.append(cloned)
        self.sim.reset_counts()
        self.assertEqual([abandoned], self.takeover.remove_abandoned_helpers())
        self.assertEqual(1, self.sim.request_counts()[SNAP_LIST])
        left = set(s['uuid']['uuid'] for s in self.client.find_snapshots())
        self.assertEqual(set(kept), left)


class TakeoverStrictFieldsTest(TakeoverTest):
    """No ``file`` in the listing: proven by vmName or the virtual disk."""

    PROFILE = {'profile': 'vmstore4', 'strict_fields': True}

    def test_vm_proven_by_virtual_disk_once_per_volume(self):
        vol = volume()
        self._file(vol)
        snaps = [snapshot(vol) for _i in range(3)]
        for snap in snaps:
            # A VM name that is not the file's: only its VM proves it.
            self._intree_snapshot(vol, snap.name, vm_name='vm-of-%s' % vol.id)
        self.sim.reset_counts()
        _v, updates = self.takeover.provider_info([vol], snaps)
        self.assertTrue(all(u['provider_id'] for u in updates), updates)
        self.assertEqual({SNAP_LIST: 1, VDISK_LIST: 1},
                         self.sim.request_counts())

    def test_virtual_disk_lookups_are_bounded(self):
        self.takeover.max_disk_lookups = 2
        vols = [volume() for _i in range(4)]
        snaps = []
        for vol in vols:
            self._file(vol)
            snap = snapshot(vol)
            self._intree_snapshot(vol, snap.name, vm_name='vm')
            snaps.append(snap)
        self.sim.reset_counts()
        _v, updates = self.takeover.provider_info(vols, snaps)
        self.assertEqual(2, sum(1 for u in updates if u['provider_id']))
        self.assertEqual(2, self.sim.request_counts()[VDISK_LIST])


class LegacyImageCacheTest(test_client_sim.SimulatorTestBase):

    def test_removed_driver_image_snapshot_is_recognised_and_expires(self):
        sim = self.start_sim(profile='vmstore4')
        client = self.make_client(sim)
        image_id = str(uuid.uuid4())
        old = int((time.time() - 40 * 86400) * 1000)
        legacy, = sim.seed_snapshots(
            1, vmName='image-' + image_id, instanceId=image_id,
            vmUuid=image_id, createTime=old,
            description=takeover.legacy_image_description(image_id))
        # Not filed under the image: not a cache snapshot, never touched.
        other, = sim.seed_snapshots(
            1, instanceId='x', vmUuid='y', createTime=old,
            description=takeover.legacy_image_description(image_id))
        snaps = {s['uuid']['uuid']: s for s in client.find_snapshots()}
        self.assertEqual(image_id, image_cache.image_id_of(snaps[legacy]))
        self.assertIsNone(image_cache.image_id_of(snaps[other]))
        image_cache.ImageCacheCleaner(client, expiry_days=30,
                                      free_space_start=0).run_once()
        left = [s['uuid']['uuid'] for s in client.find_snapshots()]
        self.assertEqual([other], left)


class ForeignTemporariesTest(cinder_test.TestCase):

    def _dir(self, root, name, age, entries=('volume-x',)):
        path = os.path.join(root, name)
        os.mkdir(path)
        for entry in entries:
            if entry.endswith('/'):
                os.mkdir(os.path.join(path, entry))
            else:
                open(os.path.join(path, entry), 'wb').close()
        then = time.time() - age
        for entry in entries:
            os.utime(os.path.join(path, entry.rstrip('/')), (then, then))
        os.utime(path, (then, then))
        return path

    def test_names(self):
        u = str(uuid.uuid4())
        for name in ('snapshot-' + u, 'clone-volume-' + u,
                     'volume-%s-d' % u):
            self.assertIsNotNone(takeover.foreign_temporary(name), name)
        for name in ('volume-' + u, 'snapshot-x', 'clone-volume-' + u + 'x',
                     '.tintri-tmp-volume-' + u, 'image-' + u):
            self.assertIsNone(takeover.foreign_temporary(name), name)

    def test_sweep_removes_only_abandoned_ones(self):
        root = self.useFixture(fixtures.TempDir()).path
        u = lambda: str(uuid.uuid4())   # noqa: E731
        old = [self._dir(root, 'snapshot-' + u(), 7200),
               self._dir(root, 'clone-volume-' + u(), 7200),
               self._dir(root, 'volume-%s-d' % u(), 7200, entries=())]
        kept = [self._dir(root, 'clone-volume-' + u(), 10),   # running
                self._dir(root, 'snapshot-' + u(), 7200,
                          entries=('volume-x', 'sub/')),      # not a clone
                os.path.join(root, 'volume-%s' % u())]        # a volume
        open(kept[-1], 'wb').close()
        link = os.path.join(root, 'snapshot-' + u())
        os.symlink(kept[0], link)
        kept.append(link)
        temps = temporaries.TemporaryDirs('host@backend')
        removed = temps.sweep([root], startup=True)
        self.assertEqual(sorted(old), sorted(removed))
        for path in old:
            self.assertFalse(os.path.lexists(path), path)
        for path in kept:
            self.assertTrue(os.path.lexists(path), path)
