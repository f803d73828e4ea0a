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
"""A TintriDriver wired to a running simulator, without root.

The only thing mocked is os-brick's NFS mount (there is no NFS client
here): it is replaced by a symlink from the mount point os-brick computes
to the simulator's datastore directory for the share, so every file the
driver writes lands where the simulated array sees it.
"""

import os
import shutil
import tempfile
from unittest import mock
import uuid

from cinder import context
from cinder.privsep import sys_admin_pctxt
from cinder.tests.unit import test
from cinder.tests.unit import utils as test_utils
from cinder.volume import configuration
from cinder.volume import driver as base_driver
from os_brick.remotefs import remotefs as remotefs_brick
from oslo_utils import units

from cinder_tintri import driver as tdriver
from cinder_tintri.simulator import VMstoreSimulator

BACKEND = 'tintri_backend'
HOST = 'cinder-host@%s' % BACKEND


def share_for(sim, sub='cinder'):
    return '127.0.0.1:/tintri/%s' % sub


class DriverTestCase(test.TestCase):
    """Starts a simulator and a driver; ``self.drv`` is set up."""

    SUBMOUNTS = ('cinder',)
    SIM_KWARGS = {}

    def setUp(self):
        super().setUp()
        self.ctxt = context.get_admin_context()
        self.tmp = tempfile.mkdtemp(prefix='tintri-test-')
        self.addCleanup(_rmtree, self.tmp)
        # Never a word such as the simulator's default 'tintri': clients
        # mask their passwords in every text they raise or log.
        kwargs = dict({'password': 'Sim-%s' % uuid.uuid4().hex[:12]},
                      **self.SIM_KWARGS)
        self.sim = VMstoreSimulator(**kwargs)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.shares = []
        for sub in self.SUBMOUNTS:
            os.makedirs(os.path.join(self.sim.datastore, sub), exist_ok=True)
            self.shares.append(share_for(self.sim, sub))
        self.share = self.shares[0]
        self.mount_base = os.path.join(self.tmp, 'mnt')
        os.makedirs(self.mount_base)
        shares_file = os.path.join(self.tmp, 'shares')
        with open(shares_file, 'w') as f:
            f.write('\n'.join(self.shares) + '\n')
        # privsep cannot start its sudo helper here; run in-process.
        sys_admin_pctxt.set_client_mode(False)
        self.addCleanup(sys_admin_pctxt.set_client_mode, True)
        self.mount_patch = mock.patch.object(
            remotefs_brick.RemoteFsClient, 'mount', autospec=True,
            side_effect=self._fake_mount)
        self.mount_patch.start()
        self.addCleanup(self.mount_patch.stop)
        self.flags = self.driver_flags(shares_file)
        self.drv = self.make_driver(self.flags)

    def driver_flags(self, shares_file):
        return {
            'nfs_shares_config': shares_file,
            'nfs_mount_point_base': self.mount_base,
            'nas_secure_file_operations': 'true',
            'nas_secure_file_permissions': 'true',
            'tintri_server_hostname': self.sim.host,
            'tintri_server_port': self.sim.port,
            'tintri_server_username': self.sim.username,
            'tintri_server_password': self.sim.password,
            'driver_ssl_cert_path': self.sim.ca_path,
            'tintri_connect_timeout': 2.0,
            'tintri_read_timeout': 5.0,
            'tintri_api_retries': 2,
            'tintri_api_retry_deadline': 10.0,
            'volume_backend_name': 'tintri',
            'tintri_luks_iter_time': 10,
        }

    def make_driver(self, flags, setup=True):
        # Register every option in the backend group and set the values
        # before the driver is built: its __init__ reads some of them.
        conf = configuration.Configuration(
            base_driver.volume_opts
            + tdriver.TintriDriver.get_driver_options(),
            config_group=BACKEND)
        for key, value in flags.items():
            self.override_config(key, value, group=BACKEND)
        drv = tdriver.TintriDriver(configuration=conf, host=HOST)
        if setup:
            drv.do_setup(self.ctxt)
            drv.check_for_setup_error()
            self.addCleanup(drv._client.close)
        return drv

    def _fake_mount(self, client, share, flags=None):
        mount_point = client.get_mount_point(share)
        if os.path.islink(mount_point):
            return
        sub = share.split(':/tintri/', 1)[1]
        os.symlink(os.path.join(self.sim.datastore, sub), mount_point)

    # -- helpers --------------------------------------------------------

    def create_volume(self, size=1, share=None, **kwargs):
        share = share or self.share
        vol = test_utils.create_volume(
            self.ctxt, host='%s#%s' % (HOST, share), size=size,
            provider_location=share, **kwargs)
        return vol

    def new_volume(self, size=1, **kwargs):
        """A volume created through the driver."""
        vol = self.create_volume(size=size, **kwargs)
        vol.update(self.drv.create_volume(vol))
        vol.save()
        return vol

    def create_snapshot(self, vol):
        snap = test_utils.create_snapshot(self.ctxt, vol.id,
                                          volume_size=vol.size)
        snap.update(self.drv.create_snapshot(snap))
        snap.save()
        return snap

    def path_of(self, vol, share=None):
        sub = (share or vol.provider_location).split(':/tintri/', 1)[1]
        return os.path.join(self.sim.datastore, sub, vol.name)

    def write(self, vol, data, offset=0):
        with open(self.path_of(vol), 'r+b') as f:
            f.seek(offset)
            f.write(data)

    def read(self, vol, length, offset=0):
        with open(self.path_of(vol), 'rb') as f:
            f.seek(offset)
            return f.read(length)

    def assertSizeGiB(self, vol, size):
        self.assertEqual(size * units.Gi, os.stat(self.path_of(vol)).st_size)

    def share_entries(self, share=None):
        sub = (share or self.share).split(':/tintri/', 1)[1]
        return sorted(os.listdir(os.path.join(self.sim.datastore, sub)))

    def snapshot_uuids(self):
        return sorted(s['uuid']['uuid']
                      for s in self.sim.inventory()['snapshots'])


def _rmtree(path):
    shutil.rmtree(path, ignore_errors=True)
