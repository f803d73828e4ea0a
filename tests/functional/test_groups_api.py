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
"""Generic volume groups through cinder's API, scheduler and volume manager.

The set-up is tests/functional/harness.py (TintriDriver against the
VMstore simulator, a share bind-mounted on a loopback XFS with reflink).
A group type and a volume type are created through the API; the group
calls reach the driver's group methods (cinder_tintri.groups).
"""

import os

from cinder import context
from cinder import objects
from cinder.tests.functional.api import client
from oslo_utils import units

from tests.functional import fixtures as tfixtures
from tests.functional import harness

MiB = units.Mi
SNAP = 'POST /api/v310/cinder/snapshot'
CLONE = 'POST /api/v310/cinder/clone'
MEMBERS = 3


@tfixtures.skip_unless_root
class GroupsApiTest(harness.ApiTestCase):
    """On the strict VMstore >= 6 profile (the harness default)."""

    def setUp(self):
        super().setUp()
        # (The harness client's create_type sends extra specs outside the
        # volume type, which the API refuses.)
        self.vtype = self.api.create_type('tintri-vt')
        self.api.create_volume_type_extra_specs(
            self.vtype['id'], {'volume_backend_name': 'tintri'})
        self.gtype = self.api.create_group_type('tintri-generic')

    # -- helpers --------------------------------------------------------

    def _group(self, **body):
        body.setdefault('group_type', self.gtype['id'])
        body.setdefault('volume_types', [self.vtype['id']])
        grp = self.api.post_group({'group': body})
        return self._wait(self.api.get_group, grp['id'], ('creating',),
                          'available')

    def _from_src(self, **body):
        grp = self.api.post_group_from_src({'create-from-src': body})
        return self._wait(self.api.get_group, grp['id'], ('creating',),
                          'available')

    def _members(self, group_id):
        return [v for v in self.api.get_volumes()
                if v.get('group_id') == group_id]

    def _delete_group(self, group_id):
        self.api.delete_group(group_id, {'delete': {'delete-volumes': True}})
        self._wait_gone(self.api.get_group, group_id)

    def _snapshots(self):
        return self.api.api_get('/snapshots/detail')['snapshots']

    def _live_snapshots(self):
        return [s for s in self.env.sim.inventory()['snapshots']
                if not s.get('isDeleted')]

    # -- the tests ------------------------------------------------------

    def test_group_lifecycle_with_data_leaves_nothing(self):
        sim = self.env.sim
        g1 = self._group(name='g1')
        vols = [self._volume(size=1, name='m%d' % i, group_id=g1['id'],
                             volume_type=self.vtype['id'])
                for i in range(MEMBERS)]
        first = {}
        for i, vol in enumerate(vols):
            first[vol['id']] = bytes([ord('a') + i]) * MiB
            self._write(vol, first[vol['id']])
        self.assertEqual(sorted(v['id'] for v in vols),
                         sorted(v['id'] for v in self._members(g1['id'])))

        # Group snapshot: one array snapshot per member, each recorded.
        sim.reset_counts()
        gs = self.api.post_group_snapshot(
            {'group_snapshot': {'group_id': g1['id'], 'name': 'gs1'}})
        gs = self._wait(self.api.get_group_snapshot, gs['id'],
                        ('creating',), 'available')
        snaps = [s for s in self._snapshots()
                 if s.get('group_snapshot_id') == gs['id']]
        self.assertEqual(MEMBERS, len(snaps))
        self.assertEqual({'available'}, {s['status'] for s in snaps})
        by_desc = {s['description']: s for s in self._live_snapshots()}
        for snap in snaps:
            rec = by_desc['snapshot-%s' % snap['id']]
            self.assertEqual('cinder/volume-%s' % snap['volume_id'],
                             rec['file'])
        self.assertEqual(MEMBERS, len(self._live_snapshots()))

        # Later writes are not in the group snapshot.
        second = {}
        for i, vol in enumerate(vols):
            second[vol['id']] = bytes([ord('A') + i]) * MiB
            self._write(vol, second[vol['id']])

        # A group from the group snapshot: each member's first data.
        snap_vol = {s['id']: s['volume_id'] for s in snaps}
        g2 = self._from_src(group_snapshot_id=gs['id'], name='g2')
        g2_vols = self._members(g2['id'])
        self.assertEqual(MEMBERS, len(g2_vols))
        for vol in g2_vols:
            self.assertEqual('available', vol['status'])
            self.assertEqual(first[snap_vol[vol['snapshot_id']]],
                             self._read(vol, MiB))

        # A group from the group: each member's current data.
        g3 = self._from_src(source_group_id=g1['id'], name='g3')
        g3_vols = self._members(g3['id'])
        self.assertEqual(MEMBERS, len(g3_vols))
        for vol in g3_vols:
            self.assertEqual('available', vol['status'])
            self.assertEqual(second[vol['source_volid']],
                             self._read(vol, MiB))
        # Independent of their sources.
        self._write(g3_vols[0], b'x' * MiB)
        self.assertEqual(second[g3_vols[0]['source_volid']],
                         self._read({'id': g3_vols[0]['source_volid']}, MiB))

        # Delete the group snapshot (its clones in g2 still exist), then
        # every group with its volumes.
        self.api.delete_group_snapshot(gs['id'])
        self._wait_gone(self.api.get_group_snapshot, gs['id'])
        for grp in (g2, g3, g1):
            self._delete_group(grp['id'])
        self.assertEqual([], self.api.get_volumes())
        # One periodic stats update retries deletions an array refused
        # while clones existed.
        self.volume.manager.driver.get_volume_stats(refresh=True)

        self.assertEqual([], self._live_snapshots())
        self.assertEqual([], os.listdir(self.env.share_dir))
        self.assertEqual([], [f for f in sim.inventory()['files']
                              if not f.startswith('.') and f != 'cinder/'])

    def test_consistent_group_type_gets_no_group_here(self):
        cg = self.api.create_group_type('tintri-cg')
        self.api.create_group_type_specs(
            cg['id'], {'consistent_group_snapshot_enabled': '<is> True'})
        grp = self.api.post_group({'group': {
            'group_type': cg['id'], 'volume_types': [self.vtype['id']]}})
        self._wait(self.api.get_group, grp['id'], ('creating',), 'error')
        # cinder 29's scheduler does not match group specs against pool
        # capabilities: the group reached this backend, whose driver
        # refused it.
        group = objects.Group.get_by_id(context.get_admin_context(),
                                        grp['id'])
        self.assertIn('#%s' % harness.SHARE, group.host or '')
        self.assertEqual([], self._live_snapshots())

    def test_pools_report_no_consistent_group_snapshots(self):
        # What the volume service reports to the scheduler (the API's
        # detailed pool listing fails in cinder 29: ReadOnlyDict.copy).
        pools = self.volume.manager.driver.get_volume_stats()['pools']
        mine = [p for p in pools if p['pool_name'] == harness.SHARE]
        self.assertEqual(1, len(mine))
        self.assertIs(False, mine[0]['consistent_group_snapshot_enabled'])

    def _failed_group_snapshot(self, g1, vols, break_it, mend_it):
        break_it()
        gs = self.api.post_group_snapshot(
            {'group_snapshot': {'group_id': g1['id']}})
        self._wait(self.api.get_group_snapshot, gs['id'], ('creating',),
                   'error')
        mend_it()
        snaps = [s for s in self._snapshots()
                 if s.get('group_snapshot_id') == gs['id']]
        self.assertEqual(len(vols), len(snaps))
        self.assertEqual({'error'}, {s['status'] for s in snaps})
        self.assertEqual([], self._live_snapshots())
        # The errored group snapshot deletes cleanly.
        self.api.delete_group_snapshot(gs['id'])
        self._wait_gone(self.api.get_group_snapshot, gs['id'])

    def test_failed_members_leave_nothing_and_report_error(self):
        sim = self.env.sim
        g1 = self._group(name='g1')
        vols = [self._volume(size=1, group_id=g1['id'],
                             volume_type=self.vtype['id'])
                for _i in range(MEMBERS)]

        # The array refuses every snapshot.
        self._failed_group_snapshot(
            g1, vols,
            lambda: sim.inject_fault(SNAP, count=50, mode='error',
                                     status=500, code='ERR-API-3106',
                                     message='injected'),
            sim.clear_faults)

        # The share refuses one member (a link planted at its name):
        # whatever its position, the others' snapshots are deleted.
        path = self._path(vols[1])
        aside = path + '.aside'

        def plant():
            os.rename(path, aside)
            os.symlink(self._path(vols[0]), path)

        def mend():
            os.unlink(path)
            os.rename(aside, path)
        self._failed_group_snapshot(g1, vols, plant, mend)

        self._delete_group(g1['id'])
        for vol in vols:
            self.assertRaises(client.OpenStackApiException404,
                              self.api.get_volume, vol['id'])
        self.assertEqual([], os.listdir(self.env.share_dir))
        self.assertEqual([], self._live_snapshots())


class Vmstore4GroupsApiTest(GroupsApiTest):
    SIM_KWARGS = {'profile': 'vmstore4'}
