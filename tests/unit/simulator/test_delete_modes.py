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
"""Deleting a snapshot that still has clones: accept | refuse_put | refuse.

Each mode runs on both profiles: snapshot, clone, delete, list, get, the
clone goes, the data goes.
"""

import os
import time

from tests.unit.simulator import base

VOL = 'cinder/volume-1'
ZERO = 'DELETE_ON_ZERO_CLONE_REFERENCES'


class _ModeBase(base.SimTestCase):

    PROFILE = 'vmstore4'

    def setUp(self):
        super().setUp()
        self.made = []

    def start(self, mode, **kwargs):
        sim = self.start_sim(profile=self.PROFILE, delete_with_clones=mode,
                             inventory_lag=0, **kwargs)
        s = self.session(sim)
        self.make_file(sim, VOL, b'data', size=1 << 20)
        return sim, s

    def snap(self, sim, s, **extra):
        if sim.require_inventory:
            return self.inventory_snapshot(s, sim, VOL, **extra)
        return self.snapshot(s, sim, VOL, **extra)

    def clone_to(self, sim, s, snap_uuid, name):
        r = self.clone(s, sim, snap_uuid, 'cinder/' + name)
        self.assertEqual(200, r.status_code, r.text)
        return os.path.join(sim.datastore, 'cinder', name, 'volume-1')

    def blobs(self, sim):
        return os.listdir(os.path.join(sim.root, '.snapshots'))

    def delete(self, sim, s, snap_uuid):
        return self.call(s, sim, 'DELETE', '/snapshot/' + snap_uuid)

    def listing(self, sim, s, **params):
        return self.call(s, sim, 'GET', '/snapshot', params=params).json()

    def put_policy(self, sim, s, snap_uuid, policy=ZERO):
        return self.call(s, sim, 'PUT', '/snapshot/' + snap_uuid, json={
            'typeId': 'com.tintri.api.rest.v310.dto.Request',
            'objectsWithNewValues': [{
                'typeId': 'com.tintri.api.rest.v310.dto.domain.Snapshot',
                'deletionPolicy': policy}],
            'propertiesToBeUpdated': ['deletionPolicy']})

    # -- the modes ------------------------------------------------------

    def test_accept(self):
        sim, s = self.start('accept', snapshot_limit=1)
        u = self.snap(sim, s)
        clone = self.clone_to(sim, s, u, 'c1')
        before = int(time.time() * 1000)
        r = self.delete(sim, s, u)
        self.assertEqual(200, r.status_code, r.text)
        self.assertIsInstance(r.json(), str)
        # GET still returns it, flagged deleted
        snap = self.get_snap(s, sim, u)
        self.assertTrue(snap['isDeleted'])
        self.assertGreaterEqual(snap['timeDeleted'], before)
        self.assertEqual(1, snap['cloneReferenceCount'])
        # out of listings unless asked for
        page = self.listing(sim, s)
        self.assertEqual([], page['items'])
        self.assertEqual(0, page['total'])
        self.assertEqual(1, page['absoluteTotal'])
        for deleted in ('TRUE', 'BOTH'):
            items = self.listing(sim, s, deleted=deleted)['items']
            self.assertEqual([u], [i['uuid']['uuid'] for i in items])
        inv = sim.inventory()['snapshots']
        self.assertEqual([(u, True)],
                         [(i['uuid']['uuid'], i['isDeleted']) for i in inv])
        # no longer counts toward the limit (1 here)
        u2 = self.snap(sim, s)
        self.assertEqual([u2], [i['uuid']['uuid']
                                for i in self.listing(sim, s)['items']])
        self.assertEqual([u], [i['uuid']['uuid'] for i in
                               self.listing(sim, s, deleted='TRUE')['items']])
        # cannot be cloned or deleted again
        self.assertError(self.clone(s, sim, u, 'cinder/c9'), 404,
                         'ERR-API-3214')
        self.assertError(self.delete(sim, s, u), 404, 'ERR-API-8001',
                         'Failed to lookup')
        self.assertEqual(2, len(self.blobs(sim)))
        # the last clone goes: the snapshot and its data go
        os.unlink(clone)
        self.assertIsNone(self.get_snap(s, sim, u))
        self.assertEqual([], self.listing(sim, s, deleted='TRUE')['items'])
        self.assertEqual(1, len(self.blobs(sim)))
        self.assertEqual([u2], [i['uuid']['uuid']
                                for i in sim.inventory()['snapshots']])

    def test_accept_without_clones_deletes_at_once(self):
        sim, s = self.start('accept')
        u = self.snap(sim, s)
        self.assertEqual(200, self.delete(sim, s, u).status_code)
        self.assertIsNone(self.get_snap(s, sim, u))
        self.assertEqual([], self.listing(sim, s, deleted='BOTH')['items'])
        self.assertEqual([], self.blobs(sim))

    def test_refuse_put(self):
        sim, s = self.start('refuse_put')
        u = self.snap(sim, s)
        clone = self.clone_to(sim, s, u, 'c1')
        self.assertError(self.delete(sim, s, u), 500, 'ERR-API-3107',
                         'a live VM is still present')
        snap = self.get_snap(s, sim, u)
        self.assertFalse(snap['isDeleted'])
        self.assertEqual(1, len(self.listing(sim, s)['items']))
        # the workaround: change the policy, the clone going deletes it
        self.assertEqual(204, self.put_policy(sim, s, u).status_code)
        self.assertEqual(ZERO, self.get_snap(s, sim, u)['deletionPolicy'])
        os.unlink(clone)
        self.assertIsNone(self.get_snap(s, sim, u))
        self.assertEqual([], self.blobs(sim))

    def test_refuse(self):
        sim, s = self.start('refuse')
        u = self.snap(sim, s)
        clone = self.clone_to(sim, s, u, 'c1')
        self.assertError(self.delete(sim, s, u), 500, 'ERR-API-3107',
                         'a live VM is still present')
        r = self.put_policy(sim, s, u)
        if sim.strict_endpoints:
            self.assertError(r, 404, 'ERR-API-8001')
        else:
            self.assertError(r, 405, 'ERR-API-0005')
            self.assertNotIn('PUT', r.headers['Allow'])
        self.assertEqual('DELETE_ON_EXPIRATION',
                         self.get_snap(s, sim, u)['deletionPolicy'])
        # once the clone is gone, DELETE works
        os.unlink(clone)
        self.assertEqual(0, self.get_snap(s, sim, u)['cloneReferenceCount'])
        self.assertEqual(200, self.delete(sim, s, u).status_code)
        self.assertIsNone(self.get_snap(s, sim, u))
        self.assertEqual([], self.blobs(sim))

    def test_zero_refs_policy_vanishes_in_every_mode(self):
        for mode in ('accept', 'refuse_put', 'refuse'):
            sim, s = self.start(mode)
            u = self.snap(sim, s, deletionPolicy=ZERO)
            clone = self.clone_to(sim, s, u, 'c1')
            self.assertEqual(1, self.get_snap(s, sim, u)[
                'cloneReferenceCount'])
            os.unlink(clone)
            self.assertIsNone(self.get_snap(s, sim, u), mode)
            self.assertEqual([], self.blobs(sim), mode)


class VMstore4ModesTest(_ModeBase):
    PROFILE = 'vmstore4'


class VMstore6ModesTest(_ModeBase):
    PROFILE = 'vmstore6'

    def test_defaults(self):
        self.assertEqual('refuse', self.start_sim(
            profile='vmstore6').delete_with_clones)
        self.assertEqual('refuse_put', self.start_sim().delete_with_clones)
