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
"""Multiattach, migration and retype through cinder's API.

The set-up is tests/functional/harness.py (the real API, scheduler and
volume manager with TintriDriver, the VMstore simulator over HTTPS, shares
bind-mounted on a loopback XFS with reflink); the migration tests use two
shares, two submounts of the simulator's one datastore, hence two pools
of one backend.

"No byte through the host" is shown by what did the work: the volume
manager's generic migration (which creates a second volume and copies into
it with ``volume_utils.copy_volume``) is never entered, no second volume
record appears, and the array made exactly one clone (and one helper
snapshot).  (Cinder's generic path cannot run in this harness: its local
attach needs os-brick's privileged daemon.  The benchmark's migration axis
runs the generic copy beside ours and measures the bytes each writes.)
"""

import os
import time
from unittest import mock

from cinder.compute import nova
from cinder.tests.functional.api import client
from cinder.volume import manager as volume_manager
from cinder.volume import volume_utils
from oslo_utils import units

from tests.functional import fixtures as tfixtures
from tests.functional import harness
from tests import leak_check

MiB = units.Mi
GiB = units.Gi
DEADLINE = harness.DEADLINE
CLONE = 'POST /api/v310/cinder/clone'
HOST_ATTR = 'os-vol-host-attr:host'


def _connector(host):
    return {'host': host, 'ip': '127.0.0.1', 'initiator': None,
            'multipath': False, 'platform': 'x86_64', 'os_type': 'linux',
            'do_local_attach': False}


class _Base(harness.ApiTestCase):

    def _type(self, name, extra_specs=None):
        body = {'name': name}
        if extra_specs:
            body['extra_specs'] = extra_specs
        return self.api.api_post('/types', {'volume_type': body})[
            'volume_type']

    def _file(self, vol_id):
        """The one file of the volume on any share (asserted unique)."""
        found = [os.path.join(d, 'volume-%s' % vol_id)
                 for d in self.env.share_dirs
                 if os.path.lexists(os.path.join(d, 'volume-%s' % vol_id))]
        self.assertEqual(1, len(found), found)
        return found[0]

    def _put(self, vol_id, data, offset=0):
        with open(self._file(vol_id), 'r+b') as f:
            f.seek(offset)
            f.write(data)

    def _get(self, vol_id, length, offset=0):
        with open(self._file(vol_id), 'rb') as f:
            f.seek(offset)
            return f.read(length)

    def _snapshot(self, vol_id):
        snap = self.api.post_snapshot({'snapshot': {'volume_id': vol_id}})
        return self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')

    def _assert_no_leaks(self):
        report = leak_check.find_leaks(self.env.sim)
        self.assertFalse(bool(report), str(report))

    def _delete_all(self, vol_ids, snap_ids=()):
        for snap_id in snap_ids:
            self.api.delete_snapshot(snap_id)
        for snap_id in snap_ids:
            self._wait_gone(self.api.get_snapshot, snap_id)
        for vol_id in vol_ids:
            self.api.delete_volume(vol_id)
        for vol_id in vol_ids:
            self._wait_gone(self.api.get_volume, vol_id)
        # A snapshot that had clones may be pending deletion until the
        # periodic task retries it (cinder_tintri.snapshot_deletion).
        deadline = time.monotonic() + DEADLINE
        while self.env.sim.inventory()['snapshots'] and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        self.assertEqual([], self.env.sim.inventory()['snapshots'])
        # The array dropped the snapshot with its last clone; its pending
        # record goes at the next periodic retry (the stats update).
        self.volume.manager.driver._update_volume_stats()
        for share_dir in self.env.share_dirs:
            self.assertEqual([], os.listdir(share_dir))


@tfixtures.skip_unless_root
class MultiattachApiTest(_Base):

    _osapi_version = '3.50'   # multiattach through the attachments API

    def setUp(self):
        super().setUp()
        # Nova stand-in: the instance no longer has the volume (Nova
        # detached it, then deletes its attachment), which is when Cinder
        # lets a user delete an attachment (bug #2004555).
        patcher = mock.patch.object(
            nova.API, 'get_server_volume',
            side_effect=nova.API.NotFound('detached'))
        patcher.start()
        self.addCleanup(patcher.stop)

    def _attach(self, vol_id, instance, host):
        att = self.api.api_post('/attachments', {'attachment': {
            'volume_uuid': vol_id, 'instance_uuid': instance,
            'connector': _connector(host)}})['attachment']
        self.assertEqual('nfs', att['connection_info'].get(
            'driver_volume_type'), att)
        self.api.api_post('/attachments/%s/action' % att['id'],
                          {'os-complete': {}},
                          check_response_status=[204])
        return att

    def test_two_instances_then_snapshot_clone_extend_delete(self):
        mtype = self._type('multi', {'multiattach': '<is> True'})
        vol = self._volume(size=1, volume_type=mtype['name'])
        self.assertTrue(vol['multiattach'])
        self._put(vol['id'], b'S' * MiB)
        a1 = self._attach(vol['id'], 'a4c5a8b6-0000-4000-8000-000000000001',
                          'compute-1')
        a2 = self._attach(vol['id'], 'a4c5a8b6-0000-4000-8000-000000000002',
                          'compute-2')
        vol = self.api.get_volume(vol['id'])
        self.assertEqual('in-use', vol['status'])
        self.assertEqual(2, len(vol['attachments']))
        self.assertEqual({'compute-1', 'compute-2'},
                         {a['host_name'] for a in vol['attachments']})
        # Both connectors get the same file on the same share.
        self.assertEqual(a1['connection_info']['export'],
                         a2['connection_info']['export'])
        self.assertEqual(a1['connection_info']['name'],
                         a2['connection_info']['name'])
        # Attached: no extend (no online extend for NFS: the scheduler
        # refuses the pool that reports online_extend_support False).
        self._action(vol['id'], {'os-extend': {'new_size': 2}})
        vol = self._wait(self.api.get_volume, vol['id'], ('extending',),
                         'in-use')
        self.assertEqual(1, vol['size'])
        self.assertEqual(GiB, os.stat(self._file(vol['id'])).st_size)
        # ... retype to a non-multiattach type of an in-use volume: refused
        plain = self._type('plain')
        self.assertRaises(client.OpenStackApiException, self._action,
                          vol['id'], {'os-retype': {
                              'new_type': plain['name'],
                              'migration_policy': 'never'}})
        snap_in_use = self.api.post_snapshot({'snapshot': {
            'volume_id': vol['id'], 'force': True}})
        snap_in_use = self._wait(self.api.get_snapshot, snap_in_use['id'],
                                 ('creating',), 'available')

        self.api.api_delete('/attachments/%s' % a1['id'])
        vol = self._wait(self.api.get_volume, vol['id'], ('detaching',),
                         'in-use')
        self.assertEqual(1, len(vol['attachments']))
        self.api.api_delete('/attachments/%s' % a2['id'])
        vol = self._wait(self.api.get_volume, vol['id'], ('detaching',),
                         'available')
        self.assertEqual([], vol['attachments'])

        clone = self._volume(size=1, source_volid=vol['id'])
        self.assertEqual(b'S' * MiB, self._get(clone['id'], MiB))
        from_snap = self._volume(size=1, snapshot_id=snap_in_use['id'])
        self.assertEqual(b'S' * MiB, self._get(from_snap['id'], MiB))
        self._action(vol['id'], {'os-extend': {'new_size': 2}})
        vol = self._wait(self.api.get_volume, vol['id'], ('extending',),
                         'available')
        self.assertEqual(2 * GiB, os.stat(self._file(vol['id'])).st_size)
        self.assertEqual(b'S' * MiB, self._get(vol['id'], MiB))
        # Detached: retype from multiattach to a plain type is allowed.
        self._action(vol['id'], {'os-retype': {'new_type': plain['name'],
                                               'migration_policy': 'never'}})
        vol = self._wait(self.api.get_volume, vol['id'], ('retyping',),
                         'available')
        self.assertFalse(vol['multiattach'])
        self.assertEqual(plain['name'], vol['volume_type'])
        # ... and back again.
        self._action(vol['id'], {'os-retype': {'new_type': mtype['name'],
                                               'migration_policy': 'never'}})
        vol = self._wait(self.api.get_volume, vol['id'], ('retyping',),
                         'available')
        self.assertTrue(vol['multiattach'])
        self._assert_no_leaks()
        self._delete_all([from_snap['id'], clone['id'], vol['id']],
                         [snap_in_use['id']])

    def test_plain_volume_is_not_attached_twice(self):
        vol = self._volume(size=1)
        self.assertFalse(vol['multiattach'])
        self._attach(vol['id'], 'a4c5a8b6-0000-4000-8000-000000000003',
                     'compute-1')
        self.assertRaises(client.OpenStackApiException, self._attach,
                          vol['id'], 'a4c5a8b6-0000-4000-8000-000000000004',
                          'compute-2')
        vol = self.api.get_volume(vol['id'])
        [att] = vol['attachments']
        self.api.api_delete('/attachments/%s' % att['attachment_id'])
        self._wait(self.api.get_volume, vol['id'], ('detaching',),
                   'available')
        self._delete_all([vol['id']])


@tfixtures.skip_unless_root
class MigrationApiTest(_Base):

    SUBMOUNTS = ('cinder', 'cinder2')

    def setUp(self):
        super().setUp()
        self.pools = self._pools()
        self.types = [
            self._type('on-%d' % i, {'pool_name': share})
            for i, share in enumerate(self.env.shares)]

    def _on_pool(self, i, data):
        vol = self._volume(size=1, volume_type=self.types[i]['name'])
        self.assertEqual(self.pools[i], vol[HOST_ATTR])
        self._put(vol['id'], data, 3 * MiB)
        return vol

    def _untyped(self, data):
        """(volume of the default type, index of its pool, the other)."""
        vol = self._volume(size=1)
        self._put(vol['id'], data, 3 * MiB)
        src = self.pools.index(vol[HOST_ATTR])
        return vol, src, 1 - src

    def _wait_migrated(self, vol_id):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            vol = self.api.get_volume(vol_id)
            if vol.get('migration_status') in ('success', 'error') and \
                    vol['status'] not in ('retyping', 'maintenance'):
                self.assertEqual('success', vol['migration_status'], vol)
                return vol
            time.sleep(0.2)
        self.fail('volume %s still migrating' % vol_id)

    def _volume_ids(self):
        return sorted(v['id'] for v in self.api.get_volumes(detail=False))

    def _spies(self):
        self._ids0 = self._volume_ids()
        generic = mock.patch.object(
            volume_manager.VolumeManager, '_migrate_volume_generic',
            autospec=True,
            side_effect=volume_manager.VolumeManager._migrate_volume_generic)
        copy = mock.patch.object(volume_utils, 'copy_volume',
                                 wraps=volume_utils.copy_volume)
        spies = (generic.start(), copy.start())
        self.addCleanup(generic.stop)
        self.addCleanup(copy.stop)
        return spies

    def _assert_moved_by_the_array(self, vol_id, dest_dir, spies, clones0):
        generic, copy = spies
        generic.assert_not_called()
        copy.assert_not_called()
        self.assertEqual(1, self.env.sim.request_counts().get(CLONE))
        copies = self.env.sim.inventory()['copies']
        self.assertEqual(clones0 + 2, sum(copies.values()))
        path = self._file(vol_id)
        self.assertEqual(dest_dir, os.path.dirname(path))
        # no temporary migration volume was made
        self.assertEqual(self._ids0, self._volume_ids())

    def test_os_migrate_volume_to_the_other_pool(self):
        vol, _src, dest = self._untyped(b'M' * MiB)
        spies = self._spies()
        self.env.sim.reset_counts()
        clones0 = sum(self.env.sim.inventory()['copies'].values())
        self._action(vol['id'], {'os-migrate_volume': {
            'host': self.pools[dest], 'force_host_copy': False}})
        vol = self._wait_migrated(vol['id'])
        self.assertEqual(self.pools[dest], vol[HOST_ATTR])
        self.assertEqual('available', vol['status'])
        self._assert_moved_by_the_array(vol['id'],
                                        self.env.share_dirs[dest],
                                        spies, clones0)
        self.assertEqual(b'M' * MiB, self._get(vol['id'], MiB, 3 * MiB))
        self._assert_no_leaks()
        # The moved volume works: snapshot, clone, extend.
        snap = self._snapshot(vol['id'])
        clone = self._volume(size=1, source_volid=vol['id'])
        self.assertEqual(b'M' * MiB, self._get(clone['id'], MiB, 3 * MiB))
        self._action(vol['id'], {'os-extend': {'new_size': 2}})
        self._wait(self.api.get_volume, vol['id'], ('extending',),
                   'available')
        self.assertEqual(2 * GiB, os.stat(self._file(vol['id'])).st_size)
        self._delete_all([clone['id'], vol['id']], [snap['id']])

    def test_retype_on_demand_to_a_type_on_the_other_pool(self):
        vol = self._on_pool(0, b'A' * MiB)
        snap = self._snapshot(vol['id'])
        self._put(vol['id'], b'B' * MiB, 3 * MiB)
        spies = self._spies()
        self.env.sim.reset_counts()
        clones0 = sum(self.env.sim.inventory()['copies'].values())
        self._action(vol['id'], {'os-retype': {
            'new_type': self.types[1]['name'],
            'migration_policy': 'on-demand'}})
        vol = self._wait(self.api.get_volume, vol['id'], ('retyping',),
                         'available')
        self.assertEqual(self.types[1]['name'], vol['volume_type'])
        self.assertEqual(self.pools[1], vol[HOST_ATTR])
        self._assert_moved_by_the_array(vol['id'], self.env.share_dirs[1],
                                        spies, clones0)
        self.assertEqual(b'B' * MiB, self._get(vol['id'], MiB, 3 * MiB))
        self._assert_no_leaks()
        # The snapshot taken on the old pool stays valid.
        from_snap = self._volume(size=1, snapshot_id=snap['id'])
        self.assertEqual(b'A' * MiB, self._get(from_snap['id'], MiB,
                                               3 * MiB))
        self._action(vol['id'], {'revert': {'snapshot_id': snap['id']}})
        self._wait(self.api.get_volume, vol['id'], ('reverting',),
                   'available')
        self.assertEqual(b'A' * MiB, self._get(vol['id'], MiB, 3 * MiB))
        self.assertEqual(self.env.share_dirs[1],
                         os.path.dirname(self._file(vol['id'])))
        self._delete_all([from_snap['id'], vol['id']], [snap['id']])
