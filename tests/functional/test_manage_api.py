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
"""Manage and unmanage through cinder's API, scheduler and volume manager.

The set-up is tests/functional/harness.py: cinder's in-process harness
with TintriDriver talking to the VMstore simulator over HTTPS, on a share
bind-mounted where os-brick expects the NFS mount.
"""

import os
import subprocess
import time
from urllib import parse

from oslo_utils import units

from tests.functional import fixtures as tfixtures
from tests.functional import harness

MiB = units.Mi
GiB = units.Gi
SHARE = harness.SHARE
DEADLINE = harness.DEADLINE


@tfixtures.skip_unless_root
class ManageApiTest(harness.ApiTestCase):

    _osapi_version = '3.8'   # /manageable_volumes and _snapshots
    USE_XFS = False

    def _pool(self):
        """'host@backend#share' as the scheduler reports it."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            pools = self.api.api_get('/scheduler-stats/get_pools')['pools']
            names = [p['name'] for p in pools if p['name'].endswith(SHARE)]
            if names:
                return names[0]
            time.sleep(0.2)
        self.fail('no pool for %s after %ss' % (SHARE, DEADLINE))

    def _listing(self, kind, **params):
        params.setdefault('host', self._pool().split('#')[0])
        return self.api.api_get('/manageable_%s/detail?%s' % (
            kind, parse.urlencode(params)))['manageable-%s' % kind]

    def _by_ref(self, entries, key='source-name'):
        return {e['reference'][key]: e for e in entries}

    def _put(self, name, size, data=b''):
        path = os.path.join(self.env.share_dir, name)
        with open(path, 'wb') as f:
            f.write(data)
            f.truncate(size)
        return path

    def _share_state(self):
        out = {}
        for name in os.listdir(self.env.share_dir):
            st = os.lstat(os.path.join(self.env.share_dir, name))
            out[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def _manage_volume(self, ref, pool):
        vol = self.api.api_post('/manageable_volumes', {'volume': {
            'host': pool, 'ref': ref, 'name': 'managed'}})['volume']
        return vol['id']

    # -- the tests ------------------------------------------------------

    def test_manage_volume_and_snapshot_end_to_end(self):
        sim = self.env.sim
        pool = self._pool()
        src = '%s/legacy.img' % SHARE
        self._put('legacy.img', GiB + MiB, b'L' * MiB)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2',
                        os.path.join(self.env.share_dir, 'disk.qcow2'),
                        '1G'], check=True, timeout=60)

        # The listing offers the raw file, not the qcow2 one.
        listing = self._by_ref(self._listing('volumes'))
        self.assertTrue(listing[src]['safe_to_manage'])
        self.assertEqual(2, listing[src]['size'])
        qcow2 = listing['%s/disk.qcow2' % SHARE]
        self.assertFalse(qcow2['safe_to_manage'])
        self.assertIn('raw volumes only', qcow2['reason_not_safe'])

        # Manage it: renamed to the volume's name, size rounded up.
        vol_id = self._manage_volume({'source-name': src}, pool)
        vol = self._wait(self.api.get_volume, vol_id, ('creating',),
                         'available')
        self.assertEqual(2, vol['size'])
        path = os.path.join(self.env.share_dir, 'volume-%s' % vol_id)
        self.assertFalse(os.path.exists(
            os.path.join(self.env.share_dir, 'legacy.img')))
        self.assertEqual(2 * GiB, os.stat(path).st_size)
        with open(path, 'rb') as f:
            self.assertEqual(b'L' * MiB, f.read(MiB))
        listing = self._by_ref(self._listing('volumes'))
        managed = listing['%s/volume-%s' % (SHARE, vol_id)]
        self.assertEqual(vol_id, managed['cinder_id'])
        self.assertFalse(managed['safe_to_manage'])

        # A snapshot of the managed volume is an array snapshot ...
        snap = self.api.post_snapshot({'snapshot': {'volume_id': vol_id,
                                                    'name': 's1'}})
        snap = self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')
        [array_snap] = sim.inventory()['snapshots']
        snap_uuid = array_snap['uuid']['uuid']
        snaps = self._by_ref(self._listing('snapshots'), 'source-id')
        self.assertEqual(snap['id'], snaps[snap_uuid]['cinder_id'])
        # ... unmanaging it leaves the array snapshot ...
        self.api.api_post('/snapshots/%s/action' % snap['id'],
                          {'os-unmanage': None})
        self._wait_gone(self.api.get_snapshot, snap['id'])
        self.assertEqual([snap_uuid], [s['uuid']['uuid'] for s in
                                       sim.inventory()['snapshots']])
        snaps = self._by_ref(self._listing('snapshots'), 'source-id')
        self.assertTrue(snaps[snap_uuid]['safe_to_manage'])
        self.assertEqual({'source-id': vol_id},
                         snaps[snap_uuid]['source_reference'])
        # ... and it can be managed again, by UUID, and then deleted.
        again = self.api.api_post('/manageable_snapshots', {'snapshot': {
            'volume_id': vol_id, 'ref': {'source-id': snap_uuid}}})
        again = self._wait(self.api.get_snapshot, again['snapshot']['id'],
                           ('creating',), 'available')
        self.assertEqual(2, again['size'])
        self.api.delete_snapshot(again['id'])
        self._wait_gone(self.api.get_snapshot, again['id'])
        self.assertEqual([], sim.inventory()['snapshots'])

        # Unmanage the volume: the file stays, and can be managed again.
        before = self._share_state()
        self.api.api_post('/volumes/%s/action' % vol_id,
                          {'os-unmanage': None})
        self._wait_gone(self.api.get_volume, vol_id)
        self.assertEqual(before, self._share_state())
        listing = self._by_ref(self._listing('volumes'))
        self.assertTrue(listing['%s/volume-%s' % (SHARE, vol_id)]
                        ['safe_to_manage'])
        vol2_id = self._manage_volume({'source-name': 'volume-%s' % vol_id},
                                      pool)
        self._wait(self.api.get_volume, vol2_id, ('creating',), 'available')
        self.assertEqual(sorted(['disk.qcow2', 'volume-%s' % vol2_id]),
                         sorted(os.listdir(self.env.share_dir)))
        self.api.delete_volume(vol2_id)
        self._wait_gone(self.api.get_volume, vol2_id)
        self.assertEqual(['disk.qcow2'], os.listdir(self.env.share_dir))
        self.assertEqual([], sim.inventory()['snapshots'])

    def test_bad_references_fail_cleanly(self):
        pool = self._pool()
        self._put('keep.img', GiB)
        outside = os.path.join(self.env.tmp, 'outside.img')
        with open(outside, 'wb') as f:
            f.truncate(GiB)
        os.symlink(outside, os.path.join(self.env.share_dir, 'escape'))
        before = self._share_state()
        for ref in ({'source-name': '../../outside.img'},
                    {'source-name': 'escape'},
                    {'source-name': '10.0.0.9:/tintri/cinder/keep.img'},
                    {'source-name': 'missing.img'}):
            vol_id = self._manage_volume(ref, pool)
            self._wait(self.api.get_volume, vol_id, ('creating',), 'error')
            self.assertEqual(before, self._share_state(), ref)
            self.api.delete_volume(vol_id)
            self._wait_gone(self.api.get_volume, vol_id)
            self.assertEqual(before, self._share_state(), ref)
        self.assertTrue(os.path.isfile(outside))
        # A snapshot reference that is not the volume's is refused too.
        vol = self.api.post_volume({'volume': {'size': 1}})
        vol = self._wait(self.api.get_volume, vol['id'], ('creating',),
                         'available')
        snap = self.api.api_post('/manageable_snapshots', {'snapshot': {
            'volume_id': vol['id'], 'ref': {'source-id': 'no-such-uuid'}}})
        snap_id = snap['snapshot']['id']
        self._wait(self.api.get_snapshot, snap_id, ('creating',), 'error')
        self.api.delete_snapshot(snap_id)
        self._wait_gone(self.api.get_snapshot, snap_id)
        self.api.delete_volume(vol['id'])
        self._wait_gone(self.api.get_volume, vol['id'])
        self.assertEqual([], self.env.sim.inventory()['snapshots'])
        self.assertEqual(before, self._share_state())
