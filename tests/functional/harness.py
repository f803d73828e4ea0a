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
"""cinder's API, scheduler and volume manager with TintriDriver.

cinder's in-process functional harness runs the real API, scheduler and
volume manager; the volume manager loads TintriDriver, which talks to the
VMstore simulator over HTTPS and works on a share bind-mounted where
os-brick expects the NFS mount (on a loopback XFS with reflink when
``USE_XFS``).  Subclasses add tests; :class:`ApiTestCase` adds none.
"""

import os
import shutil
import sys
import tempfile
import time
import uuid

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
SHARE = '127.0.0.1:/tintri/cinder'
DEADLINE = 60.0


class Env(object):
    """Simulator + shares, prepared before the cinder services start.

    ``submounts`` are the directories of the simulator's one datastore
    made shares (``127.0.0.1:/tintri/<sub>``, each bind-mounted at its
    os-brick mount point); the first is ``share``/``share_dir``, every one
    is in ``shares``/``share_dirs`` and in the shares file.
    """

    def __init__(self, test, use_xfs=True, sim_kwargs=None, xfs_mb=4096,
                 submounts=('cinder',)):
        self.tmp = tempfile.mkdtemp(prefix='tintri-func-')
        test.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        root = self.tmp
        if use_xfs:
            root = test.useFixture(tfixtures.XfsFixture(size_mb=xfs_mb)).path
        kwargs = dict({'password': 'Sim-%s' % uuid.uuid4().hex[:12]},
                      **(sim_kwargs or {}))
        self.sim = VMstoreSimulator(root=os.path.join(root, 'array'),
                                    **kwargs)
        self.sim.start()
        test.addCleanup(self.sim.stop)
        self.mount_base = os.path.join(self.tmp, 'mnt')
        os.makedirs(self.mount_base)
        self.shares = ['127.0.0.1:/tintri/%s' % sub for sub in submounts]
        self.share_dirs = [os.path.join(self.sim.datastore, sub)
                           for sub in submounts]
        for share, share_dir in zip(self.shares, self.share_dirs):
            os.makedirs(share_dir, exist_ok=True)
            test.useFixture(tfixtures.ShareFixture(share, share_dir,
                                                   self.mount_base))
        self.share, self.share_dir = self.shares[0], self.share_dirs[0]
        self.shares_file = os.path.join(self.tmp, 'shares')
        with open(self.shares_file, 'w') as f:
            f.write('\n'.join(self.shares) + '\n')


@tfixtures.skip_unless_root
class ApiTestCase(functional_helpers._FunctionalTestBase):

    _osapi_version = '3.40'   # revert needs 3.40
    USE_XFS = True
    # Size of the loopback XFS (a sparse image file).
    XFS_MB = 4096
    # The strict VMstore >= 6 array by default (issue 17: the lifecycle
    # runs on every profile and delete behaviour, the rest on vmstore6).
    SIM_KWARGS = {'profile': 'vmstore6'}
    # Submounts of the datastore made shares (pools); SHARE is the first.
    SUBMOUNTS = ('cinder',)

    def setUp(self):
        self.env = None
        sys_admin_pctxt.set_client_mode(False)
        self.addCleanup(sys_admin_pctxt.set_client_mode, True)
        super().setUp()

    def _get_flags(self):
        f = super()._get_flags()
        # _get_flags runs in setUp after the base TestCase set-up, so
        # fixtures work here.
        self.env = Env(self, use_xfs=self.USE_XFS,
                       sim_kwargs=self.SIM_KWARGS, xfs_mb=self.XFS_MB,
                       submounts=self.SUBMOUNTS)
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
                'tintri_openstack_hostname': 'keystone.test',
                # LUKS headers that open in milliseconds, not seconds.
                'tintri_luks_iter_time': 10,
                'driver_ssl_cert_path': sim.ca_path}.items():
            f[key] = {'v': value, 'g': group}
        # cinder's Service keeps the id of its service record in a class
        # attribute, so with several services in one process only the last
        # one started (the scheduler) heartbeats its own record: the volume
        # service looks down to the scheduler a minute after it started.
        f['service_down_time'] = {'v': 3600}
        # Fail fast rather than wait a minute if no pool gets reported.
        f['scheduler_driver_init_wait_time'] = {'v': 10}
        f['resource_query_filters_file'] = {
            'v': os.path.join(sys.prefix, 'etc/cinder/resource_filters.json')}
        return f

    def _start_api_service(self):
        # The harness points at a paste file next to the package; the
        # wheel installs it under <venv>/etc/cinder.  Same mechanism as
        # the harness (an attribute read by oslo.service's loader).
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

    def _pools(self):
        """[host@backend#share, ...] in the order of env.shares."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            # (names only: cinder 29's detailed listing fails on the
            # scheduler's read-only capabilities)
            names = [p['name'] for p in self.api.api_get(
                '/scheduler-stats/get_pools')['pools']]
            by_share = {n.split('#', 1)[1]: n for n in names if '#' in n}
            if all(s in by_share for s in self.env.shares):
                return [by_share[s] for s in self.env.shares]
            time.sleep(0.2)
        self.fail('no pools for %s after %ss' % (self.env.shares, DEADLINE))

    def _volume(self, **body):
        vol = self.api.post_volume({'volume': body})
        return self._wait(self.api.get_volume, vol['id'],
                          ('creating', 'downloading'), 'available')

    def _path(self, vol):
        return os.path.join(self.env.share_dir, 'volume-%s' % vol['id'])

    def _write(self, vol, data, offset=0):
        with open(self._path(vol), 'r+b') as f:
            f.seek(offset)
            f.write(data)

    def _read(self, vol, length, offset=0):
        with open(self._path(vol), 'rb') as f:
            f.seek(offset)
            return f.read(length)

    def _size(self, vol):
        return os.stat(self._path(vol)).st_size

    def _action(self, vol_id, body):
        self.api.api_post('/volumes/%s/action' % vol_id, body)
