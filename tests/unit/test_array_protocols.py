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
"""Both VMstore generations (issue 17, items 1 to 3 and 6).

The driver runs against the simulator's ``vmstore4`` profile (the removed
driver's protocol) and its strict ``vmstore6`` profile (inventory before a
snapshot, the 128-snapshot limit, the three behaviours of deleting a
snapshot that has clones).  Outcomes are read from the simulator: requests
made, snapshots and their VMs, records on the share.
"""

import os
import re
import time

from cinder import exception
from cinder.tests.unit import utils as test_utils
from oslo_utils import units

from cinder_tintri import inventory
from cinder_tintri import snapshot_deletion
from tests.unit import driver_base

MiB = units.Mi
SNAP = 'POST /api/v310/cinder/snapshot'
REFRESH = 'POST /api/v310/cinder/host/refresh'
VDISK = 'GET /api/v310/virtualDisk'
DELETE = 'DELETE /api/v310/snapshot/{uuid}'
PUT = 'PUT /api/v310/snapshot/{uuid}'
VIM = re.compile(r'-VIM-[0-9A-F]{16}$')


class ProtocolBase(driver_base.DriverTestCase):

    MODE = 'auto'
    HOSTNAME = 'keystone.example.org'

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        flags['tintri_inventory_mode'] = self.MODE
        flags['tintri_inventory_timeout'] = 5.0
        if self.HOSTNAME:
            flags['tintri_openstack_hostname'] = self.HOSTNAME
        return flags

    def counts(self):
        return self.sim.request_counts()

    def snap_of(self, uuid):
        for s in self.sim.inventory()['snapshots']:
            if s['uuid']['uuid'] == uuid:
                return s
        return None

    def live_snapshots(self):
        return [s for s in self.sim.inventory()['snapshots']
                if not s.get('isDeleted')]


class Vmstore4AutoTest(ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore4'}

    def test_direct_protocol_needs_no_inventory(self):
        vol = self.new_volume()
        self.sim.reset_counts()
        snap = self.create_snapshot(vol)
        self.assertEqual({SNAP: 1}, {k: v for k, v in self.counts().items()
                                     if k in (SNAP, REFRESH, VDISK)})
        self.assertEqual(vol.id, self.snap_of(snap.provider_id)
                         ['vmUuid']['uuid'])
        self.assertIsNone(self.drv._inventory.mode)


class Vmstore6AutoTest(ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6'}

    def test_switches_to_refresh_once_and_remembers(self):
        vol = self.new_volume()
        self.write(vol, b'A' * MiB)
        self.sim.reset_counts()
        snap = self.create_snapshot(vol)
        counts = self.counts()
        # direct refused, then refresh + lookup + snapshot
        self.assertEqual(2, counts[SNAP])
        self.assertEqual(1, counts[REFRESH])
        self.assertEqual('refresh', self.drv._inventory.mode)
        array_snap = self.snap_of(snap.provider_id)
        vm = array_snap['vmUuid']['uuid']
        self.assertRegex(vm, VIM)
        vol.refresh()
        self.assertEqual(vm, vol.provider_id)
        # Another snapshot of the same volume: no refresh, no lookup.
        self.sim.reset_counts()
        self.create_snapshot(vol)
        self.assertEqual({SNAP: 1}, {k: v for k, v in self.counts().items()
                                     if k in (SNAP, REFRESH, VDISK)})
        # Another volume: the refresh protocol straight away.
        other = self.new_volume()
        self.sim.reset_counts()
        self.create_snapshot(other)
        self.assertEqual(1, self.counts()[SNAP])
        self.assertEqual(1, self.counts()[REFRESH])

    def test_every_operation_works(self):
        vol = self.new_volume()
        self.write(vol, b'A' * MiB)
        snap = self.create_snapshot(vol)
        self.write(vol, b'B' * MiB)
        from_snap = self.create_volume(size=2)
        from_snap.update(self.drv.create_volume_from_snapshot(from_snap,
                                                              snap))
        self.assertEqual(b'A' * MiB, self.read(from_snap, MiB))
        clone = self.create_volume(size=3)
        clone.update(self.drv.create_cloned_volume(clone, vol))
        self.assertEqual(b'B' * MiB, self.read(clone, MiB))
        self.drv.revert_to_snapshot(self.ctxt, vol, snap)
        self.assertEqual(b'A' * MiB, self.read(vol, MiB))
        # A snapshot after the revert (the file was swapped).
        again = self.create_snapshot(vol)
        self.assertIsNotNone(self.snap_of(again.provider_id))
        self.drv.extend_volume(vol, 2)
        self.assertSizeGiB(vol, 2)

    def test_snapshot_found_by_name_without_provider_id(self):
        vol = self.new_volume()
        snap = self.create_snapshot(vol)
        uuid = snap.provider_id
        snap.provider_id = None
        snap.save()
        self.assertEqual(uuid, self.drv._find_snapshot_uuid(snap))


class Vmstore6DirectTest(ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6'}
    MODE = 'direct'

    def test_direct_only_fails_clearly(self):
        vol = self.new_volume()
        snap = test_utils.create_snapshot(self.ctxt, vol.id)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.create_snapshot, snap)
        self.assertIn('inventory', str(exc))
        self.assertEqual(0, self.counts().get(REFRESH, 0))
        self.assertEqual([], self.live_snapshots())


class Vmstore6RefreshTest(ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6', 'inventory_lag': 1.0}
    MODE = 'refresh'

    def test_waits_for_the_inventory_lag(self):
        vol = self.new_volume()
        self.sim.reset_counts()
        start = time.monotonic()
        snap = self.create_snapshot(vol)
        self.assertGreaterEqual(time.monotonic() - start, 1.0)
        self.assertEqual(1, self.counts()[SNAP])
        self.assertEqual(1, self.counts()[REFRESH])
        self.assertGreater(self.counts()[VDISK], 1)
        self.assertIsNotNone(self.snap_of(snap.provider_id))


class Vmstore6SlowInventoryTest(ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6', 'inventory_lag': 3600.0}
    MODE = 'refresh'

    def test_bounded_wait_then_clear_error(self):
        self.drv._inventory.timeout = 1.0
        vol = self.new_volume()
        snap = test_utils.create_snapshot(self.ctxt, vol.id)
        self.sim.reset_counts()
        start = time.monotonic()
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.create_snapshot, snap)
        elapsed = time.monotonic() - start
        self.assertIn('virtual disk', str(exc))
        self.assertLess(elapsed, 30.0)
        # One refresh, one more at half time, and a bounded poll.
        self.assertEqual(2, self.counts()[REFRESH])
        self.assertLess(self.counts()[VDISK], 20)
        self.assertEqual(0, self.counts().get(SNAP, 0))


class Vmstore6NoHostnameTest(ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6'}
    HOSTNAME = None

    def test_refresh_without_hostname_names_the_option(self):
        vol = self.new_volume()
        snap = test_utils.create_snapshot(self.ctxt, vol.id)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.create_snapshot, snap)
        self.assertIn('tintri_openstack_hostname', str(exc))


class LimitBase(ProtocolBase):
    """The 128-snapshot limit; clones do not spend it."""

    def fill(self, vol, n):
        snaps = []
        for _ in range(n):
            snaps.append(self.create_snapshot(vol))
        return snaps

    def check_limit(self):
        vol = self.new_volume()
        self.write(vol, b'L' * MiB)
        self.fill(vol, inventory.SNAPSHOT_LIMIT - 1)
        # Clones of the unchanged volume use its newest snapshot.
        before = len(self.live_snapshots())
        clones = []
        for _ in range(3):
            clone = self.create_volume(size=1)
            clone.update(self.drv.create_cloned_volume(clone, vol))
            clone.save()
            clones.append(clone)
            self.assertEqual(b'L' * MiB, self.read(clone, MiB))
        self.assertEqual(before, len(self.live_snapshots()))
        # The 128th user snapshot still fits, the 129th is refused.
        self.create_snapshot(vol)
        snap = test_utils.create_snapshot(self.ctxt, vol.id)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.create_snapshot, snap)
        self.assertIn('at most %d' % inventory.SNAPSHOT_LIMIT, str(exc))
        self.assertEqual(inventory.SNAPSHOT_LIMIT, len(self.live_snapshots()))
        # A changed volume needs a helper: none is left, and the clone
        # fails naming the limit, leaving nothing behind.
        self.write(vol, b'M' * MiB)
        clone = self.create_volume(size=1)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.create_cloned_volume, clone, vol)
        self.assertIn('at most', str(exc))
        self.assertNotIn(clone.name, self.share_entries())
        return vol, clones


class Vmstore6LimitTest(LimitBase):
    SIM_KWARGS = {'profile': 'vmstore6'}

    def test_limit(self):
        self.check_limit()


class Vmstore6HelpersAcceptTest(ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6', 'delete_with_clones': 'accept'}

    def test_helper_deleted_when_the_clone_lands(self):
        vol = self.new_volume()
        self.write(vol, b'H' * MiB)
        for _ in range(3):
            self.write(vol, os.urandom(16))    # changed: a helper each
            clone = self.create_volume(size=1)
            clone.update(self.drv.create_cloned_volume(clone, vol))
        self.assertEqual([], self.live_snapshots())


class DeleteModesMixin(object):
    """Deleting a Cinder snapshot whose array snapshot has clones."""

    EXPECT = None

    def test_delete_snapshot_with_clones(self):
        vol = self.new_volume()
        self.write(vol, b'D' * MiB)
        snap = self.create_snapshot(vol)
        clone = self.create_volume(size=1)
        clone.update(self.drv.create_volume_from_snapshot(clone, snap))
        clone.save()
        start = time.monotonic()
        self.drv.delete_snapshot(snap)
        self.assertLess(time.monotonic() - start, 10.0)
        mount = os.path.join(self.sim.datastore, 'cinder')
        pending = snapshot_deletion.pending(mount)
        array = self.snap_of(snap.provider_id)
        if self.EXPECT == 'accept':
            self.assertTrue(array['isDeleted'])
            self.assertEqual([], pending)
        elif self.EXPECT == 'refuse_put':
            self.assertEqual(snapshot_deletion.ZERO_REFS,
                             array['deletionPolicy'])
            self.assertEqual([], pending)
        else:
            self.assertEqual([snap.provider_id],
                             [p['snapshot_uuid'] for p in pending])
            self.assertEqual(snap.id, pending[0]['snapshot_id'])
            # The retry runs with the stats; the clone still holds it.
            self.drv.get_volume_stats(refresh=True)
            self.assertIsNotNone(self.snap_of(snap.provider_id))
            # A restarted service (or another of the cluster) sees it.
            self.drv = self.make_driver(self.flags)
        self.assertEqual(b'D' * MiB, self.read(clone, MiB))
        self.drv.delete_volume(clone)
        self.drv.get_volume_stats(refresh=True)
        self.assertIsNone(self.snap_of(snap.provider_id))
        self.assertEqual([], snapshot_deletion.pending(mount))
        self.assertEqual([vol.name], self.share_entries())


class Vmstore6AcceptTest(DeleteModesMixin, ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6', 'delete_with_clones': 'accept'}
    EXPECT = 'accept'


class Vmstore6RefusePutTest(DeleteModesMixin, ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6', 'delete_with_clones': 'refuse_put'}
    EXPECT = 'refuse_put'


class Vmstore6RefuseTest(DeleteModesMixin, ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore6', 'delete_with_clones': 'refuse'}
    EXPECT = 'refuse'


class Vmstore4RefuseTest(DeleteModesMixin, ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore4', 'delete_with_clones': 'refuse'}
    EXPECT = 'refuse'


class Vmstore4DefaultTest(DeleteModesMixin, ProtocolBase):
    SIM_KWARGS = {'profile': 'vmstore4'}
    EXPECT = 'refuse_put'
