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
"""Pool statistics whose cost does not grow with the files on the shares.

Provisioned space comes from the datastore's ``spaceProvisionedGiB``
(official DatastoreStat); the shares are walked only when the array does
not report it.  The driver runs against the simulator; the files are real
(sparse) files on the simulated shares.
"""

import os
from unittest import mock

from oslo_utils import units

from tests.unit import driver_base

GiB = units.Gi
STATS = 'GET /api/v310/datastore/{id}/statsRealtime'


class PoolStatsTest(driver_base.DriverTestCase):

    SUBMOUNTS = ('cinder', 'cinder2')

    def plant(self, sub, name, size):
        path = os.path.join(self.sim.datastore, sub, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.truncate(size)
        return path

    def stats_touching(self):
        """Pools, and how many entries under the driver's mounts it read."""
        mounts = [os.path.realpath(self.drv._get_mount_point_for_share(s))
                  for s in self.shares]
        mount_points = [self.drv._get_mount_point_for_share(s)
                        for s in self.shares]
        seen = []
        real_lstat, real_walk = os.lstat, os.walk

        def lstat(path, *args, **kwargs):
            # files on the shares (the mount points themselves are checked
            # to see whether they are mounted)
            if any(str(path).startswith(m + os.sep) for m in mount_points):
                seen.append(path)
            return real_lstat(path, *args, **kwargs)

        def walk(top, *args, **kwargs):
            if any(str(top).startswith(m) for m in mount_points + mounts):
                seen.append(top)
            return real_walk(top, *args, **kwargs)

        self.sim.reset_counts()
        with mock.patch('os.lstat', side_effect=lstat), \
                mock.patch('os.walk', side_effect=walk):
            stats = self.drv.get_volume_stats(refresh=True)
        return {p['pool_name']: p for p in stats['pools']}, seen

    def test_provisioned_space_is_the_datastores_without_a_walk(self):
        self.new_volume(size=3)
        self.new_volume(size=1, share=self.shares[1])
        for i in range(50):
            self.plant('cinder', 'volume-planted-%d' % i, GiB // 2)
        # a non-Cinder VM on the same datastore takes space too
        self.plant('vmware', 'vm1/disk.vmdk', 10 * GiB)
        pools, seen = self.stats_touching()
        self.assertEqual([], seen)
        self.assertEqual(1, self.sim.request_counts().get(STATS))
        expected = 3 + 1 + 25 + 10
        for share in self.shares:
            self.assertEqual(float(expected),
                             pools[share]['provisioned_capacity_gb'])
        ds = self.sim._state.datastore_stat()
        self.assertAlmostEqual(ds['spaceProvisionedGiB'],
                               pools[self.share]['provisioned_capacity_gb'],
                               places=1)

    def test_walks_each_share_when_the_array_does_not_say(self):
        self.sim.omit_stat_fields(['spaceProvisionedGiB'])
        self.new_volume(size=3)
        self.new_volume(size=1, share=self.shares[1])
        self.plant('vmware', 'vm1/disk.vmdk', 10 * GiB)
        pools, seen = self.stats_touching()
        self.assertNotEqual([], seen)
        self.assertEqual(3.0, pools[self.shares[0]]['provisioned_capacity_gb'])
        self.assertEqual(1.0, pools[self.shares[1]]['provisioned_capacity_gb'])

    def test_garbled_provisioned_space_falls_back_to_the_shares(self):
        self.new_volume(size=2)
        real = self.sim._state._datastore_stat

        def garbled():
            stat = real()
            stat['spaceProvisionedGiB'] = -5
            return stat

        with mock.patch.object(self.sim._state, '_datastore_stat',
                               side_effect=garbled):
            pools, seen = self.stats_touching()
        self.assertNotEqual([], seen)
        self.assertEqual(2.0, pools[self.share]['provisioned_capacity_gb'])
