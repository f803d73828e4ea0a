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

The set-up follows test_lifecycle: cinder's in-process functional harness
with TintriDriver talking to the VMstore simulator over HTTPS, on a share
bind-mounted where os-brick expects the NFS mount.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from urllib import parse

from cinder.privsep import sys_admin_pctxt
from cinder import service
from cinder.tests.functional.api import client
from cinder.tests.functional import functional_helpers
from cinder.volume import configuration
from oslo_config import cfg
from oslo_utils import units

# Imported before setUp so the driver's options are registered.
from cinder_tintri import driver as tdriver  # noqa: F401
from cinder_tintri.simulator import VMstoreSimulator
from tests.functional import fixtures as tfixtures

CONF = cfg.CONF
MiB = units.Mi
GiB = units.Gi
SHARE = '127.0.0.1:/tintri/cinder'
DEADLINE = 60.0


class _Env(object):
    """Simulator + share, prepared before the cinder services start."""

    def __init__(self, test):
        self.tmp = tempfile.mkdtemp(prefix='tintri-manage-')
        test.addCleanup(_rmtree, self.tmp)
        self.sim = VMstoreSimulator(root=os.path.join(self.tmp, 'array'))
        self.sim.start()
        test.addCleanup(self.sim.stop)
        self.share_dir = os.path.join(self.sim.datastore, 'cinder')
        os.makedirs(self.share_dir, exist_ok=True)
        self.mount_base = os.path.join(self.tmp, 'mnt')
        os.makedirs(self.mount_base)
        test.useFixture(tfixtures.ShareFixture(SHARE, self.share_dir,
                                               self.mount_base))
        self.shares_file = os.path.join(self.tmp, 'shares')
        with open(self.shares_file, 'w') as f:
            f.write(SHARE + '\n')


@tfixtures.skip_unless_root
class ManageApiTest(functional_helpers._FunctionalTestBase):

    _osapi_version = '3.8'   # /manageable_volumes and _snapshots

    def setUp(self):
        self.env = None
        sys_admin_pctxt.set_client_mode(False)
        self.addCleanup(sys_admin_pctxt.set_client_mode, True)
        super().setUp()

    def _get_flags(self):
        f = super()._get_flags()
        self.env = _Env(self)
        group = configuration.SHARED_CONF_GROUP
        sim = self.env.sim
        for key, value in {
                'volume_driver': 'cinder_tintri.driver.TintriDriver',
                'volume_backend_name': 'tintri',
                'nfs_shares_config': self.env.shares_file,
                'nfs_mount_point_base': self.env.mount_base,
                'nas_secure_file_operations': 'false',
                'nas_secure_file_permissions': 'false',
                'tintri_server_hostname': sim.host,
                'tintri_server_port': sim.port,
                'tintri_server_username': sim.username,
                'tintri_server_password': sim.password,
                'driver_ssl_cert_path': sim.ca_path}.items():
            f[key] = {'v': value, 'g': group}
        f['scheduler_driver_init_wait_time'] = {'v': 10}
        f['resource_query_filters_file'] = {
            'v': os.path.join(sys.prefix, 'etc/cinder/resource_filters.json')}
        return f

    def _start_api_service(self):
        CONF.api_paste_config = os.path.join(sys.prefix,
                                             'etc/cinder/api-paste.ini')
        self.osapi = service.WSGIService('osapi_volume')
        self.osapi.start()
        self.auth_url = 'http://%s:%s/v%s' % (
            self.osapi.host, self.osapi.port, self.osapi_version_major)

    # -- helpers --------------------------------------------------------

    def _wait(self, getter, res_id, busy, want):
        deadline = time.monotonic() + DEADLINE
        while True:
            res = getter(res_id)
            if res['status'] not in busy:
                self.assertEqual(want, res['status'], res)
                return res
            if time.monotonic() > deadline:
                self.fail('%s still %s after %ss' % (res_id, res['status'],
                                                     DEADLINE))
            time.sleep(0.2)

    def _wait_gone(self, getter, res_id):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                res = getter(res_id)
            except client.OpenStackApiException404:
                return
            self.assertNotIn('error', res['status'])
            time.sleep(0.2)
        self.fail('%s not deleted after %ss' % (res_id, DEADLINE))

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


def _rmtree(path):
    shutil.rmtree(path, ignore_errors=True)
