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
"""The volume lifecycle through cinder's API, scheduler and volume manager.

See tests/functional/harness.py for the set-up: the real API, scheduler and
volume manager with TintriDriver, the VMstore simulator over HTTPS, a share
bind-mounted where os-brick expects it, on a loopback XFS with reflink.
"""

import os

from oslo_utils import units

from tests.functional import harness

MiB = units.Mi
SHARE = harness.SHARE
DEADLINE = harness.DEADLINE


class LifecycleTest(harness.ApiTestCase):

    def test_full_lifecycle_leaves_nothing(self):
        sim = self.env.sim
        vol = self._volume(size=1, name='orig')
        self.assertEqual(units.Gi, self._size(vol))
        self._write(vol, b'A' * MiB)

        snap = self.api.post_snapshot({'snapshot': {'volume_id': vol['id'],
                                                    'name': 'snap1'}})
        snap = self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')
        self.assertEqual(1, len(sim.inventory()['snapshots']))
        self._write(vol, b'B' * MiB)

        from_snap = self._volume(size=2, snapshot_id=snap['id'])
        self.assertEqual(b'A' * MiB, self._read(from_snap, MiB))
        self.assertEqual(2 * units.Gi, self._size(from_snap))

        clone = self._volume(size=3, source_volid=vol['id'])
        self.assertEqual(b'B' * MiB, self._read(clone, MiB))
        self.assertEqual(3 * units.Gi, self._size(clone))

        sim.reset_counts()
        self._action(vol['id'], {'revert': {'snapshot_id': snap['id']}})
        self._wait(self.api.get_volume, vol['id'], ('reverting',),
                   'available')
        self.assertEqual(b'A' * MiB, self._read(vol, MiB))
        self.assertEqual(1, sim.request_counts().get(
            'POST /api/v310/cinder/clone'))

        self._action(vol['id'], {'os-extend': {'new_size': 2}})
        self._wait(self.api.get_volume, vol['id'], ('extending',),
                   'available')
        self.assertEqual(2 * units.Gi, self._size(vol))
        self.assertEqual(b'A' * MiB, self._read(vol, MiB))

        self.api.delete_snapshot(snap['id'])
        self._wait_gone(self.api.get_snapshot, snap['id'])
        for v in (from_snap, clone, vol):
            self.api.delete_volume(v['id'])
        for v in (from_snap, clone, vol):
            self._wait_gone(self.api.get_volume, v['id'])

        inventory = sim.inventory()
        self.assertEqual([], inventory['snapshots'])
        self.assertEqual([], [f for f in inventory['files']
                              if not f.startswith('.')
                              and f != 'cinder/'])
        self.assertEqual([], os.listdir(self.env.share_dir))
        self.assertEqual(1, inventory['logins'])


# The lifecycle on every array generation and delete behaviour.
class LifecycleVmstore6AcceptTest(LifecycleTest):
    SIM_KWARGS = {'profile': 'vmstore6', 'delete_with_clones': 'accept'}


class LifecycleVmstore6RefusePutTest(LifecycleTest):
    SIM_KWARGS = {'profile': 'vmstore6', 'delete_with_clones': 'refuse_put'}


class LifecycleVmstore4Test(LifecycleTest):
    SIM_KWARGS = {'profile': 'vmstore4'}


class LifecycleVmstore4AcceptTest(LifecycleTest):
    SIM_KWARGS = {'profile': 'vmstore4', 'delete_with_clones': 'accept'}


class LifecycleVmstore4RefuseTest(LifecycleTest):
    SIM_KWARGS = {'profile': 'vmstore4', 'delete_with_clones': 'refuse'}
