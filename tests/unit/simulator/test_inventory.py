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
"""Inventory before snapshot, and the per-VM snapshot limit."""

import os
import time

from tests.unit.simulator import base

VOL = 'cinder/volume-1111'
VOL_ID = '1111'


class InventoryTest(base.SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim(profile='vmstore6')
        self.s = self.session(self.sim)
        self.make_file(self.sim, VOL, b'v1', size=1 << 20)

    def post_snapshot(self, rel, **extra):
        body = {'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.'
                          'cinder.CinderSnapshotSpec',
                'file': rel, 'description': 'd', 'snapshotCreator': 't'}
        body.update(extra)
        return self.call(self.s, self.sim, 'POST', '/cinder/snapshot',
                         json=body)

    def assertNothingSnapshotted(self):
        self.assertEqual([], self.sim.inventory()['snapshots'])
        self.assertEqual([], os.listdir(os.path.join(self.sim.root,
                                                     '.snapshots')))

    def test_lag_then_lookup_by_id_and_path(self):
        sim = self.start_sim(profile='vmstore6', inventory_lag=3.0)
        s = self.session(sim)
        self.make_file(sim, VOL, b'v1')
        # not inventoried before any refresh, although the file exists
        self.assertEqual([], self.vdisks(s, sim, uuid=VOL_ID))
        self.assertEqual(0, self.call(s, sim, 'GET', '/vm').json()[
            'filteredTotal'])
        self.assertEqual([], sim.inventoried())
        start = time.monotonic()
        self.assertEqual(200, self.refresh(s, sim, VOL).status_code)
        # within the lag: still nothing (3 s is generous for one request)
        self.assertEqual([], self.vdisks(s, sim, uuid=VOL_ID))
        self.assertEqual([VOL], sim.inventory()['refreshed'])
        vd = self.wait_vdisk(s, sim, deadline=30, uuid=VOL_ID)
        self.assertGreaterEqual(time.monotonic() - start, 3.0)
        self.assertEqual([VOL], sim.inventoried())
        self.assertEqual([VOL], sim.inventory()['inventoried'])
        self.assertEqual('com.tintri.api.rest.v310.dto.domain.VirtualDisk',
                         vd['typeId'])
        self.assertRegex(vd['vmUuid']['uuid'],
                         r'^[0-9A-F-]{36}-VIM-[0-9A-F]{16}$')
        self.assertEqual('volume-1111', vd['vmName'])
        self.assertEqual(VOL_ID, vd['instanceUuid'])
        self.assertEqual(VOL, vd['path'])
        self.assertEqual({'uuid': sim._state.datastore_uuid},
                         vd['datastoreUuid'])
        self.assertIn('spaceUsedGiB', vd['stat'])
        self.assertEqual(vd, self.vdisks(s, sim, path=VOL)[0])
        self.assertEqual(vd, self.vdisks(s, sim, path='/' + VOL)[0])
        vm = self.call(s, sim, 'GET', '/vm').json()['items']
        self.assertEqual([vd['vmUuid']['uuid']],
                         [v['uuid']['uuid'] for v in vm])

    def test_volume_id_of_the_refresh(self):
        self.make_file(self.sim, 'cinder/disk.img', b'x')
        self.refresh(self.s, self.sim, '/cinder/disk.img', volumeId='v-42')
        vd = self.wait_vdisk(self.s, self.sim, uuid='v-42')
        self.assertEqual('cinder/disk.img', vd['path'])
        self.assertEqual('v-42', vd['instanceUuid'])

    def test_second_refresh_does_not_delay(self):
        sim = self.start_sim(profile='vmstore6', inventory_lag=1.0)
        s = self.session(sim)
        self.make_file(sim, VOL, b'v1')
        start = time.monotonic()
        self.refresh(s, sim, VOL)
        # a refresh storm (the in-tree driver refreshes between lookups)
        while not self.vdisks(s, sim, uuid=VOL_ID):
            self.refresh(s, sim, VOL)
            self.assertLess(time.monotonic() - start, 30,
                            'refreshes kept postponing the inventory')
            time.sleep(0.05)

    def test_refresh_without_path(self):
        r = self.call(self.s, self.sim, 'POST', '/cinder/host/refresh',
                      json={'hostname': 'h', 'volumeId': VOL_ID})
        self.assertError(r, 400, 'ERR-API-0020', 'volumeFilePath')
        self.assertEqual([], self.sim.inventory()['refreshed'])

    def test_snapshot_refused_until_inventoried(self):
        r = self.post_snapshot(VOL, vmTintriUuid='X-VIM-1')
        body = self.assertError(r, 404, 'ERR-API-8001', VOL)
        self.assertIn('not in the inventory', body['causeDetails'])
        self.assertNothingSnapshotted()
        self.refresh(self.s, self.sim, VOL)
        vd = self.wait_vdisk(self.s, self.sim, path=VOL)
        vm = vd['vmUuid']['uuid']
        # inventoried, but the VM uuid is missing
        body = self.assertError(self.post_snapshot(VOL), 404,
                                'ERR-API-8001', 'not in the inventory')
        self.assertIn(VOL, body['causeDetails'])
        # ... unknown
        self.assertError(self.post_snapshot(VOL, vmTintriUuid=VOL_ID),
                         404, 'ERR-API-8001', 'not in the inventory')
        # ... another file's VM
        self.make_file(self.sim, 'cinder/volume-2222', b'v2')
        self.refresh(self.s, self.sim, 'cinder/volume-2222')
        other = self.wait_vdisk(self.s, self.sim, uuid='2222')
        body = self.assertError(
            self.post_snapshot(VOL, vmTintriUuid=other['vmUuid']['uuid']),
            404, 'ERR-API-8001', 'not in the inventory')
        self.assertIn(VOL, body['causeDetails'])
        self.assertNothingSnapshotted()
        # the right VM: accepted; records that VM and the disk's vmName
        r = self.post_snapshot(VOL, vmTintriUuid=vm, vmName='ignored')
        self.assertEqual(200, r.status_code, r.text)
        snap = self.get_snap(self.s, self.sim, r.json()[0])
        self.assertEqual({'uuid': vm}, snap['vmUuid'])
        self.assertEqual(vd['vmName'], snap['vmName'])
        page = self.call(self.s, self.sim, 'GET', '/snapshot',
                         params={'vmUuid': vm}).json()
        self.assertEqual(1, page['filteredTotal'])

    def test_missing_file_is_not_in_the_inventory(self):
        self.refresh(self.s, self.sim, 'cinder/volume-gone')
        self.assertError(self.post_snapshot('cinder/volume-gone',
                                            vmTintriUuid='x'),
                         404, 'ERR-API-8001', 'cinder/volume-gone')
        self.assertEqual([], self.sim.inventoried())

    def test_renamed_file_needs_a_new_refresh(self):
        self.refresh(self.s, self.sim, VOL)
        vd = self.wait_vdisk(self.s, self.sim, path=VOL)
        new = 'cinder/volume-3333'
        os.rename(os.path.join(self.sim.datastore, VOL),
                  os.path.join(self.sim.datastore, new))
        self.assertEqual([], self.vdisks(self.s, self.sim, path=new))
        self.assertEqual([], self.vdisks(self.s, self.sim, path=VOL))
        self.assertEqual([], self.sim.inventoried())
        self.assertError(self.post_snapshot(
            new, vmTintriUuid=vd['vmUuid']['uuid']), 404, 'ERR-API-8001',
            new)
        self.refresh(self.s, self.sim, new)
        vd2 = self.wait_vdisk(self.s, self.sim, uuid='3333')
        self.assertEqual(new, vd2['path'])
        self.assertNotEqual(vd['vmUuid'], vd2['vmUuid'])
        self.assertEqual([new], self.sim.inventoried())
        r = self.post_snapshot(new, vmTintriUuid=vd2['vmUuid']['uuid'])
        self.assertEqual(200, r.status_code, r.text)

    def test_relaxed_inventory_in_vmstore6(self):
        sim = self.start_sim(profile='vmstore6', require_inventory=False)
        s = self.session(sim)
        self.make_file(sim, VOL, b'v1')
        self.assertEqual(1, len(self.vdisks(s, sim, path=VOL)))
        self.snapshot(s, sim, VOL)

    def test_vmstore4_needs_no_inventory(self):
        sim = self.start_sim()
        s = self.session(sim)
        self.make_file(sim, VOL, b'v1')
        self.make_file(sim, 'cinder/other', b'o')
        # every file is a virtual disk; only the id lookup needs a refresh
        self.assertEqual(2, len(self.vdisks(s, sim)))
        self.assertEqual([], self.vdisks(s, sim, uuid=VOL_ID))
        snap = self.get_snap(s, sim, self.snapshot(
            s, sim, VOL, vmTintriUuid='anything'))
        self.assertEqual({'uuid': 'anything'}, snap['vmUuid'])
        self.refresh(s, sim, VOL)
        self.assertEqual(1, len(self.vdisks(s, sim, uuid=VOL_ID)))
        self.assertEqual([VOL], sim.inventoried())


class SnapshotLimitTest(base.SimTestCase):

    def _fill(self, sim, s, rel, n):
        self.make_file(sim, rel, b'x')
        if sim.require_inventory:
            first = self.inventory_snapshot(s, sim, rel)
            vm = self.get_snap(s, sim, first)['vmUuid']['uuid']
            extra = {'vmTintriUuid': vm}
            n -= 1
        else:
            extra = {}
        for i in range(n):
            self.snapshot(s, sim, rel, description='s%d' % i, **extra)
        return extra

    def _over(self, sim, s, rel, extra):
        return self.call(s, sim, 'POST', '/cinder/snapshot', json=dict(
            {'file': rel, 'description': 'over'}, **extra))

    def test_small_limit_vmstore6(self):
        sim = self.start_sim(profile='vmstore6', snapshot_limit=3,
                             inventory_lag=0)
        s = self.session(sim)
        extra = self._fill(sim, s, VOL, 3)
        body = self.assertError(self._over(sim, s, VOL, extra), 400,
                                'ERR-API-3105', extra['vmTintriUuid'])
        self.assertEqual('Invalid create snapshot request.', body['message'])
        self.assertIn('3', body['causeDetails'])
        self.assertEqual(3, len(sim.inventory()['snapshots']))
        self.assertEqual(3, len(os.listdir(os.path.join(sim.root,
                                                        '.snapshots'))))
        # another VM is not affected
        self._fill(sim, s, 'cinder/volume-2222', 1)
        # deleting one makes room
        victim = sim.inventory()['snapshots'][0]['uuid']['uuid']
        self.assertEqual(200, self.call(s, sim, 'DELETE',
                                        '/snapshot/' + victim).status_code)
        self.assertEqual(200, self._over(sim, s, VOL, extra).status_code)
        self.assertError(self._over(sim, s, VOL, extra), 400,
                         'ERR-API-3105')

    def test_limit_option_in_vmstore4(self):
        sim = self.start_sim(snapshot_limit=2)
        s = self.session(sim)
        self._fill(sim, s, VOL, 2)
        body = self.assertError(self._over(sim, s, VOL, {}), 400,
                                'ERR-API-3105')
        self.assertIn(sim._state.vm_uuid(VOL), body['causeDetails'])
        # the limit is per recorded VM: another vmTintriUuid is another VM
        self.assertEqual(200, self._over(
            sim, s, VOL, {'vmTintriUuid': 'image-1'}).status_code)

    def test_vmstore4_has_no_limit(self):
        sim = self.start_sim()
        s = self.session(sim)
        self.make_file(sim, VOL, b'x')
        # seeded snapshots of a file are its VM's
        sim.seed_snapshots(200, file=VOL)
        self.assertEqual(200, self._over(sim, s, VOL, {}).status_code)
        self.assertEqual(201, len(sim.inventory()['snapshots']))

    def test_real_limit_128(self):
        sim = self.start_sim(profile='vmstore6', inventory_lag=0)
        self.assertEqual(128, sim.snapshot_limit)
        s = self.session(sim)
        extra = self._fill(sim, s, VOL, 128)
        page = self.call(s, sim, 'GET', '/snapshot', params={
            'vmUuid': extra['vmTintriUuid']}).json()
        self.assertEqual(128, page['filteredTotal'])
        body = self.assertError(self._over(sim, s, VOL, extra), 400,
                                'ERR-API-3105', '128')
        self.assertIn(extra['vmTintriUuid'], body['causeDetails'])
        self.assertEqual(128, len(sim.inventory()['snapshots']))
