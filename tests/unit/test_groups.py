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
"""cinder_tintri.groups against the simulator, on both array generations.

The collaborator works through the driver's own member operations; a
member failure is a real array refusal (the simulator's fault injection,
armed just before the chosen member's request).  Outcomes are read from
the simulator: its snapshots, the files on the share, the requests made.
"""

import os

from cinder import exception
from cinder.objects import fields
from cinder.tests.unit import utils as test_utils
from cinder.volume import group_types
from oslo_utils import units

from cinder_tintri import groups
from tests import leak_check
from tests.unit import driver_base

MiB = units.Mi
SNAP = 'POST /api/v310/cinder/snapshot'
CLONE = 'POST /api/v310/cinder/clone'


class FailingMember(groups.MemberOperations):
    """The driver, with an array fault before one member's call.

    The fault is armed before the n-th call (from 0) of ``method``.
    """

    def __init__(self, drv, sim, method, nth, endpoint, **fault):
        self.drv = drv
        self.sim = sim
        self.method = method
        self.nth = nth
        self.endpoint = endpoint
        # More than the client's retries: this member fails.
        self.fault = fault or dict(count=20, mode='error', status=500,
                                   code='ERR-API-3106',
                                   message='injected failure')
        self.calls = 0

    def _maybe_arm(self, method):
        if method != self.method:
            return
        if self.calls == self.nth:
            self.sim.inject_fault(self.endpoint, **self.fault)
        else:
            self.sim.clear_faults()
        self.calls += 1

    def create_snapshot(self, snapshot):
        self._maybe_arm('create_snapshot')
        return self.drv.create_snapshot(snapshot)

    def delete_snapshot(self, snapshot):
        self.sim.clear_faults()
        return self.drv.delete_snapshot(snapshot)

    def create_volume_from_snapshot(self, volume, snapshot):
        self._maybe_arm('create_volume_from_snapshot')
        return self.drv.create_volume_from_snapshot(volume, snapshot)

    def create_cloned_volume(self, volume, src_vref):
        self._maybe_arm('create_cloned_volume')
        return self.drv.create_cloned_volume(volume, src_vref)

    def delete_volume(self, volume):
        self.sim.clear_faults()
        return self.drv.delete_volume(volume)


class GroupsBase(driver_base.DriverTestCase):

    SIM_KWARGS = {'profile': 'vmstore4'}
    MEMBERS = 3
    # Snapshot requests the driver's protocol choice costs once (auto
    # mode: the direct form, refused by an array that needs inventory).
    PROTOCOL_PROBES = 0

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        flags['tintri_openstack_hostname'] = 'keystone.test'
        flags['tintri_inventory_timeout'] = 5.0
        return flags

    def setUp(self):
        super().setUp()
        self.gtype = group_types.create(self.ctxt, 'generic')
        self.vtype = test_utils.create_volume_type(self.ctxt, name='vt')
        self.groups = self.drv._groups

    # -- Cinder objects -------------------------------------------------

    def new_group(self, gtype=None):
        return test_utils.create_group(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            group_type_id=(gtype or self.gtype)['id'],
            volume_type_ids=[self.vtype.id])

    def group_with_volumes(self):
        grp = self.new_group()
        self.assertEqual({'status': 'available'},
                         self.groups.create_group(self.ctxt, grp))
        vols = []
        for i in range(self.MEMBERS):
            vol = self.new_volume(group_id=grp.id)
            self.write(vol, bytes([65 + i]) * MiB)
            vols.append(vol)
        return grp, vols

    def snapshot_objects(self, grp, vols):
        gsnap = test_utils.create_group_snapshot(
            self.ctxt, grp.id, group_type_id=grp.group_type_id)
        snaps = [test_utils.create_snapshot(self.ctxt, v.id,
                                            group_snapshot_id=gsnap.id)
                 for v in vols]
        return gsnap, snaps

    def apply(self, objs, updates):
        by_id = {o.id: o for o in objs}
        for update in updates:
            update = dict(update)
            obj = by_id[update.pop('id')]
            obj.update(update)
            obj.save()

    def targets(self, grp, sources, key):
        """New (empty) volume objects, one per source, on the share."""
        out = []
        for src in sources:
            out.append(test_utils.create_volume(
                self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
                size=1, group_id=grp.id, **{key: src.id}))
        return out

    def live_snapshots(self):
        return [s for s in self.sim.inventory()['snapshots']
                if not s.get('isDeleted')]

    def assert_only(self, files, snapshot_uuids):
        self.assertEqual(sorted(files), self.share_entries())
        self.assertEqual(sorted(snapshot_uuids),
                         sorted(s['uuid']['uuid']
                                for s in self.live_snapshots()))
        leak_check.assert_no_leaks(self, self.sim, context=self.ctxt)


class GroupsTestMixin(object):

    def test_group_snapshot_one_array_snapshot_per_member(self):
        grp, vols = self.group_with_volumes()
        gsnap, snaps = self.snapshot_objects(grp, vols)
        self.sim.reset_counts()
        model, updates = self.groups.create_group_snapshot(self.ctxt, gsnap,
                                                           snaps)
        self.assertEqual('available', model['status'])
        self.assertEqual(self.MEMBERS + self.PROTOCOL_PROBES,
                         self.sim.request_counts()[SNAP])
        array = {s['uuid']['uuid']: s for s in self.live_snapshots()}
        self.assertEqual(self.MEMBERS, len(array))
        for snap, vol, update in zip(snaps, vols, updates):
            self.assertEqual(snap.id, update['id'])
            self.assertEqual('available', update['status'])
            rec = array[update['provider_id']]
            # Mapped to its own member: its name, its volume's file.
            self.assertEqual(snap.name, rec['description'])
            self.assertEqual('cinder/%s' % vol.name, rec['file'])
        self.apply(snaps, updates)
        leak_check.assert_no_leaks(self, self.sim, context=self.ctxt)

    def test_group_from_group_snapshot_has_each_members_data(self):
        grp, vols = self.group_with_volumes()
        gsnap, snaps = self.snapshot_objects(grp, vols)
        _m, updates = self.groups.create_group_snapshot(self.ctxt, gsnap,
                                                        snaps)
        self.apply(snaps, updates)
        for vol in vols:     # later writes are not in the snapshot
            self.write(vol, b'z' * MiB)
        new = self.new_group()
        targets = self.targets(new, snaps, 'snapshot_id')
        # The manager sorts the sources; matching is by id regardless.
        model, vol_updates = self.groups.create_group_from_src(
            self.ctxt, new, targets, gsnap, list(reversed(snaps)))
        self.assertEqual('available', model['status'])
        self.apply(targets, vol_updates)
        for i, target in enumerate(targets):
            self.assertEqual(self.share, target.provider_location)
            self.assertEqual(bytes([65 + i]) * MiB, self.read(target, MiB))
            self.assertSizeGiB(target, 1)
        leak_check.assert_no_leaks(self, self.sim, context=self.ctxt)

    def test_group_from_group_clones_current_data(self):
        grp, vols = self.group_with_volumes()
        new = self.new_group()
        targets = self.targets(new, vols, 'source_volid')
        model, vol_updates = self.groups.create_group_from_src(
            self.ctxt, new, targets, source_group=grp, source_vols=vols)
        self.assertEqual('available', model['status'])
        self.apply(targets, vol_updates)
        for i, target in enumerate(targets):
            self.assertEqual(bytes([65 + i]) * MiB, self.read(target, MiB))
        # Independent copies.
        self.write(targets[0], b'n' * MiB)
        self.assertEqual(b'A' * MiB, self.read(vols[0], MiB))
        leak_check.assert_no_leaks(self, self.sim, context=self.ctxt)

    def test_delete_group_snapshot_and_group_leave_nothing(self):
        grp, vols = self.group_with_volumes()
        gsnap, snaps = self.snapshot_objects(grp, vols)
        _m, updates = self.groups.create_group_snapshot(self.ctxt, gsnap,
                                                        snaps)
        self.apply(snaps, updates)
        model, snap_updates = self.groups.delete_group_snapshot(
            self.ctxt, gsnap, snaps)
        self.assertEqual('deleted', model['status'])
        self.assertEqual(['deleted'] * self.MEMBERS,
                         [u['status'] for u in snap_updates])
        self.assertEqual([], self.live_snapshots())
        for snap in snaps:
            snap.destroy()
        model, vol_updates = self.groups.delete_group(self.ctxt, grp, vols)
        self.assertEqual('deleted', model['status'])
        self.assertEqual(sorted(v.id for v in vols),
                         sorted(u['id'] for u in vol_updates))
        self.assertEqual({'deleted'}, {u['status'] for u in vol_updates})
        self.assertEqual([], self.share_entries())

    def test_update_group_changes_nothing_on_the_array(self):
        grp, vols = self.group_with_volumes()
        self.sim.reset_counts()
        self.assertEqual((None, None, None), self.groups.update_group(
            self.ctxt, grp, add_volumes=[], remove_volumes=vols[:1]))
        self.assertEqual({}, self.sim.request_counts())

    def test_failed_member_in_the_middle_leaves_no_snapshot(self):
        grp, vols = self.group_with_volumes()
        gsnap, snaps = self.snapshot_objects(grp, vols)
        ops = FailingMember(self.drv, self.sim, 'create_snapshot', 1, SNAP)
        self.sim.reset_counts()
        model, updates = groups.Groups(ops).create_group_snapshot(
            self.ctxt, gsnap, snaps)
        self.assertEqual('error', model['status'])
        self.assertEqual([('error', None)] * self.MEMBERS,
                         [(u['status'], u['provider_id']) for u in updates])
        # The third member was never asked for; the first was deleted.
        self.assertEqual(2, ops.calls)
        self.assertEqual([], [s for s in self.sim.inventory()['snapshots']
                              if s['description'] == snaps[2].name])
        self.apply(snaps, updates)
        self.assert_only([v.name for v in vols], [])

    def test_failed_clone_in_the_middle_leaves_no_file(self):
        grp, vols = self.group_with_volumes()
        gsnap, snaps = self.snapshot_objects(grp, vols)
        _m, updates = self.groups.create_group_snapshot(self.ctxt, gsnap,
                                                        snaps)
        self.apply(snaps, updates)
        kept = [s.provider_id for s in snaps]
        new = self.new_group()
        targets = self.targets(new, snaps, 'snapshot_id')
        ops = FailingMember(self.drv, self.sim,
                            'create_volume_from_snapshot', 1, CLONE)
        self.assertRaises(exception.VolumeBackendAPIException,
                          groups.Groups(ops).create_group_from_src,
                          self.ctxt, new, targets, gsnap, snaps)
        self.assertEqual(2, ops.calls)
        self.assertEqual([None] * self.MEMBERS,
                         [t.provider_location for t in targets])
        self.assert_only([v.name for v in vols], kept)

    def test_failed_clone_of_a_group_leaves_no_file_or_helper(self):
        grp, vols = self.group_with_volumes()
        new = self.new_group()
        targets = self.targets(new, vols, 'source_volid')
        ops = FailingMember(self.drv, self.sim, 'create_cloned_volume', 2,
                            CLONE)
        self.assertRaises(exception.VolumeBackendAPIException,
                          groups.Groups(ops).create_group_from_src,
                          self.ctxt, new, targets, source_group=grp,
                          source_vols=vols)
        self.assertEqual(3, ops.calls)
        # No clone, no helper snapshot (except those a clone of an
        # unchanged volume may reuse: none were made here).
        self.assertEqual(sorted(v.name for v in vols), self.share_entries())
        leak_check.assert_no_leaks(self, self.sim, context=self.ctxt)
        self.assertEqual([], [s for s in self.live_snapshots()
                              if not s.get('cloneReferenceCount')])

    def test_sources_that_do_not_pair_up_create_nothing(self):
        grp, vols = self.group_with_volumes()
        new = self.new_group()
        targets = self.targets(new, vols[:2], 'source_volid')
        self.sim.reset_counts()
        self.assertRaises(exception.InvalidInput,
                          self.groups.create_group_from_src, self.ctxt, new,
                          targets, source_group=grp, source_vols=vols)
        self.assertEqual({}, {k: v for k, v in
                              self.sim.request_counts().items()
                              if k.startswith('POST')})
        self.assertEqual(sorted(v.name for v in vols), self.share_entries())

    def test_consistent_group_type_is_refused(self):
        cg_type = group_types.create(
            self.ctxt, 'cg',
            {'consistent_group_snapshot_enabled': '<is> True'})
        grp = self.new_group(cg_type)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.groups.create_group, self.ctxt, grp)
        vol = self.new_volume(group_id=grp.id)
        gsnap, snaps = self.snapshot_objects(grp, [vol])
        self.sim.reset_counts()
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.groups.create_group_snapshot, self.ctxt,
                          gsnap, snaps)
        self.assertEqual(0, self.sim.request_counts().get(SNAP, 0))

    def test_every_pool_reports_no_consistent_group_snapshots(self):
        stats = self.drv.get_volume_stats(refresh=True)
        self.assertNotEqual([], stats['pools'])
        for pool in stats['pools']:
            self.assertIs(False, pool['consistent_group_snapshot_enabled'])


class Vmstore4GroupsTest(GroupsTestMixin, GroupsBase):
    SIM_KWARGS = {'profile': 'vmstore4'}


class Vmstore6GroupsTest(GroupsTestMixin, GroupsBase):
    SIM_KWARGS = {'profile': 'vmstore6'}
    PROTOCOL_PROBES = 1


class ModelUpdateTest(GroupsBase):
    """What the volume manager is told when a deletion fails."""

    def test_undeletable_snapshot_stays_recorded(self):
        grp, vols = self.group_with_volumes()
        gsnap, snaps = self.snapshot_objects(grp, vols)

        class NoDelete(FailingMember):
            def delete_snapshot(inner, snapshot):
                if snapshot.provider_id:
                    raise exception.VolumeBackendAPIException(data='no')
                return super().delete_snapshot(snapshot)

        ops = NoDelete(self.drv, self.sim, 'create_snapshot', 2, SNAP)
        model, updates = groups.Groups(ops).create_group_snapshot(
            self.ctxt, gsnap, snaps)
        self.assertEqual('error', model['status'])
        live = sorted(s['uuid']['uuid'] for s in self.live_snapshots())
        self.assertEqual(2, len(live))
        self.assertEqual(live, sorted(u['provider_id'] for u in updates
                                      if u['provider_id']))
        self.assertEqual({'error'}, {u['status'] for u in updates})
        # Recorded, so the manager's later delete removes them.
        self.apply(snaps, updates)
        self.sim.clear_faults()
        _m, _u = self.groups.delete_group_snapshot(self.ctxt, gsnap, snaps)
        self.assertEqual([], self.live_snapshots())

    def test_delete_group_reports_a_member_it_cannot_delete(self):
        grp, vols = self.group_with_volumes()
        bad = vols[1]
        # A directory where the volume file should be: refused, kept.
        os.unlink(self.path_of(bad))
        os.mkdir(self.path_of(bad))
        model, updates = self.groups.delete_group(self.ctxt, grp, vols)
        self.assertEqual(fields.GroupStatus.ERROR_DELETING, model['status'])
        self.assertEqual({vols[0].id: 'deleted', bad.id: 'error_deleting',
                          vols[2].id: 'deleted'},
                         {u['id']: u['status'] for u in updates})
        self.assertEqual([bad.name], self.share_entries())
        os.rmdir(self.path_of(bad))


class LateSnapshotTest(GroupsBase):
    """A member whose snapshot the array makes after the driver gave up."""

    READ_TIMEOUT = 1.0
    STALL = 6.0          # well beyond the client's whole retry budget

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        flags.update(tintri_read_timeout=self.READ_TIMEOUT,
                     tintri_api_retries=2, tintri_api_retry_deadline=3.0)
        return flags

    def test_late_snapshot_of_a_failed_member_goes_with_the_group(self):
        grp, vols = self.group_with_volumes()
        gsnap, snaps = self.snapshot_objects(grp, vols)
        ops = FailingMember(self.drv, self.sim, 'create_snapshot', 1, SNAP,
                            count=20, mode='delay', delay=self.STALL)
        model, updates = groups.Groups(ops).create_group_snapshot(
            self.ctxt, gsnap, snaps)
        self.assertEqual('error', model['status'])
        self.assertEqual(2, ops.calls)
        self.sim.clear_faults()
        self.assertTrue(self.sim.wait_idle(self.STALL + 5.0))
        # What landed late belongs to the failed member's Cinder snapshot
        # (its description); the first member's snapshot is gone.
        late = self.live_snapshots()
        self.assertEqual([snaps[1].name],
                         [s['description'] for s in late])
        self.apply(snaps, updates)
        leak_check.assert_no_leaks(self, self.sim, context=self.ctxt)
        # Deleting the errored group snapshot removes it.
        model, snap_updates = self.groups.delete_group_snapshot(
            self.ctxt, gsnap, snaps)
        self.assertEqual('deleted', model['status'])
        self.assertEqual([], self.live_snapshots())
