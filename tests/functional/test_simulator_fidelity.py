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
"""Fidelity check: cinder 29's in-tree VMstore driver runs on the simulator.

``cinder.volume.drivers.vmstore.nfs.VmstoreNfsDriver`` (DDN, written
against real arrays) is used unmodified: create_volume, create_snapshot,
create_volume_from_snapshot, create_cloned_volume, delete_snapshot and
delete_volume talk HTTPS to the simulator (CA verification on) and work on
the share bind-mounted where os-brick expects the NFS mount, on a loopback
XFS with reflink.

Only its sleeps are replaced by a recorder: after delete_volume the driver
polls ``virtualDisk?uuid=`` for the deleted file with sleeps of 1, 3, 5 ...
29 seconds (225 s) before giving up with a warning, and it sleeps between
retries of failed calls.  The recorded sleeps and the simulator's request
counts show that amplification instead.
"""

import os
import shutil
import tempfile
import time
from unittest import mock

from cinder import context
from cinder.privsep import sys_admin_pctxt
from cinder.tests.unit import test
from cinder.tests.unit import utils as test_utils
from cinder.volume import configuration
from cinder.volume import driver as base_driver
from cinder.volume.drivers import nfs as nfs_driver
from cinder.volume.drivers import remotefs
from cinder.volume.drivers.vmstore import api as vmstore_api
from cinder.volume.drivers.vmstore import nfs as vmstore_nfs
from cinder.volume.drivers.vmstore import options as vmstore_options
import fixtures
from oslo_utils import units
from testtools import content

from cinder_tintri.simulator import VMstoreSimulator
from tests.functional import fixtures as tfixtures

BACKEND = 'vmstore_fidelity'
SHARE = '127.0.0.1:/tintri/cinder'
HOST = 'fidelity@%s#%s' % (BACKEND, SHARE)
MiB = units.Mi
CLONE = 'POST /api/v310/cinder/clone'
SNAP_CREATE = 'POST /api/v310/cinder/snapshot'
SNAP_DELETE = 'DELETE /api/v310/snapshot/{uuid}'


class _Sleeps(object):
    """Stands in for the ``time`` module of the driver: records sleeps.

    It really sleeps at most ``cap`` seconds (default: not at all), so an
    array whose inventory lags sees time pass during the driver's waits.
    """

    def __init__(self, cap=0.0):
        self.calls = []
        self.cap = cap

    def sleep(self, seconds):
        self.calls.append(seconds)
        if self.cap > 0:
            time.sleep(min(seconds, self.cap))


class _FidelityBase(test.TestCase):
    """Simulator on loopback XFS, bind-mounted share, in-tree driver."""

    MOCK_TOOZ = False   # take the driver's real coordination locks
    SIM_KWARGS = {}
    SLEEP_CAP = 0.0     # seconds the driver's sleeps really last, at most

    def setUp(self):
        super().setUp()
        # requests lets these override Session.verify (the CA path).
        self.useFixture(fixtures.EnvironmentVariable('REQUESTS_CA_BUNDLE'))
        self.useFixture(fixtures.EnvironmentVariable('CURL_CA_BUNDLE'))
        sys_admin_pctxt.set_client_mode(False)
        self.addCleanup(sys_admin_pctxt.set_client_mode, True)
        self.sleeps = _Sleeps(self.SLEEP_CAP)
        for module in (vmstore_nfs, vmstore_api):
            patcher = mock.patch.object(module, 'time', self.sleeps)
            patcher.start()
            self.addCleanup(patcher.stop)

        self.ctxt = context.get_admin_context()
        self.tmp = tempfile.mkdtemp(prefix='tintri-fidelity-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        xfs = self.useFixture(tfixtures.XfsFixture(size_mb=1024))
        self.sim = VMstoreSimulator(root=os.path.join(xfs.path, 'array'),
                                    host='127.0.0.1', **self.SIM_KWARGS)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.share_dir = os.path.join(self.sim.datastore, 'cinder')
        mount_base = os.path.join(self.tmp, 'mnt')
        os.makedirs(mount_base)
        self.share = self.useFixture(tfixtures.ShareFixture(
            SHARE, self.share_dir, mount_base))
        self.drv = self._driver(mount_base)

    def _driver(self, mount_base):
        conf = configuration.Configuration(
            base_driver.volume_opts + nfs_driver.nfs_opts
            + remotefs.nas_opts + vmstore_options.VMSTORE_NFS_OPTS,
            config_group=BACKEND)
        sim = self.sim
        for key, value in {
                'volume_backend_name': BACKEND,
                'nas_host': '127.0.0.1',
                'nas_share_path': '/tintri/cinder',
                # the driver appends its options to this string; unset
                # (None) it crashes in __init__
                'nfs_mount_options': 'vers=3',
                'nas_secure_file_operations': 'false',
                'nas_secure_file_permissions': 'false',
                'vmstore_mount_point_base': mount_base,
                'vmstore_rest_protocol': 'https',
                'vmstore_rest_address': sim.host,
                'vmstore_rest_port': sim.port,
                'vmstore_user': sim.username,
                'vmstore_password': sim.password,
                'vmstore_openstack_hostname': 'controller',
                'vmstore_rest_connect_timeout': 5,
                'vmstore_rest_read_timeout': 30,
                'driver_ssl_cert_verify': True,
                'driver_ssl_cert_path': sim.ca_path}.items():
            self.override_config(key, value, group=BACKEND)
        drv = vmstore_nfs.VmstoreNfsDriver(configuration=conf,
                                           host=HOST.split('#')[0])
        drv.do_setup(self.ctxt)
        drv.check_for_setup_error()
        self.addCleanup(drv.vmstore.session.close)
        return drv

    # -- helpers ----------------------------------------------------------

    def _new_volume(self, size=1):
        return test_utils.create_volume(self.ctxt, host=HOST, size=size)

    def _path(self, vol):
        return os.path.join(self.share.mount_point, vol.name)

    def _write(self, vol, data, offset=0):
        with open(self._path(vol), 'r+b') as f:
            f.seek(offset)
            f.write(data)

    def _read(self, vol, length, offset=0):
        with open(self._path(vol), 'rb') as f:
            f.seek(offset)
            return f.read(length)

    def _snapshots(self):
        return self.sim.inventory()['snapshots']

    def _apply(self, vol, update):
        vol.update(update or {})
        vol.save()
        return vol

    def _by_desc(self, description):
        found = [s for s in self._snapshots()
                 if s['description'] == description]
        self.assertLessEqual(len(found), 1)
        return found[0] if found else None

    def _volume_with_snapshot(self):
        vol = self._new_volume()
        self._apply(vol, self.drv.create_volume(vol))
        snap = test_utils.create_snapshot(self.ctxt, vol.id,
                                          volume_size=vol.size)
        self.drv.create_snapshot(snap)
        return vol, snap


@tfixtures.skip_unless_root
class InTreeDriverFidelityTest(_FidelityBase):

    def test_in_tree_driver_lifecycle(self):
        sim = self.sim
        counts = sim.request_counts()
        self.assertGreaterEqual(counts['POST /api/v310/session/login'], 1)
        self.assertGreaterEqual(counts['GET /api/v310/appliance'], 2)

        # create_volume: sparse file on the share + hypervisor refresh
        src = self._new_volume()
        self._apply(src, self.drv.create_volume(src))
        self.assertEqual(units.Gi, os.stat(self._path(src)).st_size)
        self.assertIn('cinder/' + src.name, sim.inventory()['files'])
        self.assertEqual(SHARE, src.provider_location)
        self._write(src, b'A' * MiB)

        # create_snapshot: virtualDisk lookup by id, then cinder/snapshot
        snap = test_utils.create_snapshot(self.ctxt, src.id,
                                          volume_size=src.size)
        self.drv.create_snapshot(snap)
        snaps = self._snapshots()
        self.assertEqual([snap.name], [s['description'] for s in snaps])
        self.assertEqual('DELETE_ON_EXPIRATION', snaps[0]['deletionPolicy'])
        self.assertEqual('cinder/' + src.name, snaps[0]['file'])
        self._write(src, b'B' * MiB)

        # create_volume_from_snapshot: cinder/clone into a directory,
        # renamed into place by the driver
        from_snap = self._new_volume()
        self._apply(from_snap,
                    self.drv.create_volume_from_snapshot(from_snap, snap))
        self.assertEqual(b'A' * MiB, self._read(from_snap, MiB))
        self.assertEqual(1, sim.request_counts()[CLONE])
        self.assertEqual(1, self._by_desc(snap.name)['cloneReferenceCount'])

        # create_cloned_volume: temporary zero-reference snapshot + clone
        clone = self._new_volume()
        self._apply(clone, self.drv.create_cloned_volume(clone, src))
        self.assertEqual(b'B' * MiB, self._read(clone, MiB))
        tmp_snap = self._by_desc('clone-%s' % src.name)
        self.assertEqual('DELETE_ON_ZERO_CLONE_REFERENCES',
                         tmp_snap['deletionPolicy'])
        self.assertEqual(1, tmp_snap['cloneReferenceCount'])
        self.assertEqual(sorted(['cinder/', 'cinder/' + clone.name,
                                 'cinder/' + from_snap.name,
                                 'cinder/' + src.name]),
                         sim.inventory()['files'])
        self.assertEqual(2, sim.request_counts()[CLONE])

        # the clones are reflinks on this XFS
        self.assertEqual(0, sim.inventory()['copies']['copy'])

        # delete_snapshot while a volume cloned from it exists: the array
        # refuses ("live VM is still present"); the driver sleeps through
        # its retry loop without resending, then only logs it
        self.assertEqual(2, sim.request_counts()[SNAP_CREATE])
        self.sleeps.calls = []
        self.drv.delete_snapshot(snap)
        self.assertIsNotNone(self._by_desc(snap.name))
        self.assertEqual(1, sim.request_counts()[SNAP_DELETE])
        self.assertEqual(5, len(self.sleeps.calls))

        # delete_volume of that clone drops the reference ...
        sim.reset_counts()
        self.sleeps.calls = []
        self.drv.delete_volume(from_snap)
        # ... after polling for the deleted file's virtual disk: 16
        # refreshes and lookups, sleeping 1 + 3 + ... + 29 = 225 s
        self.assertEqual(list(range(1, 31, 2)), self.sleeps.calls)
        self.assertEqual(16, sim.request_counts()[
            'POST /api/v310/cinder/host/refresh'])
        self.assertEqual(16, sim.request_counts()[
            'GET /api/v310/virtualDisk'])
        self.assertFalse(os.path.exists(self._path(from_snap)))
        self.assertEqual(0, self._by_desc(snap.name)['cloneReferenceCount'])
        # ... and now the snapshot deletes
        self.drv.delete_snapshot(snap)
        self.assertIsNone(self._by_desc(snap.name))

        # deleting the cloned volume frees the temporary snapshot, which
        # the array deletes by itself (DELETE_ON_ZERO_CLONE_REFERENCES)
        self.drv.delete_volume(clone)
        self.assertEqual([], self._snapshots())

        self.drv.delete_volume(src)
        self.assertEqual(['cinder/'], sim.inventory()['files'])
        self.assertEqual([], os.listdir(os.path.join(sim.root,
                                                     '.snapshots')))

        counts = sim.request_counts()
        self.assertEqual(0, counts.get(SNAP_CREATE, 0))
        self.assertEqual(1, counts[SNAP_DELETE])
        self.addDetail('request-counts', _text(sorted(counts.items())))
        self.addDetail('driver-sleeps', _text(self.sleeps.calls))

    def test_session_expiry_relogin(self):
        vol = self._new_volume()
        self._apply(vol, self.drv.create_volume(vol))
        logins = self.sim.request_counts()['POST /api/v310/session/login']
        self.sim.expire_sessions()
        snap = test_utils.create_snapshot(self.ctxt, vol.id,
                                          volume_size=vol.size)
        self.drv.create_snapshot(snap)
        self.assertEqual(logins + 1, self.sim.request_counts()[
            'POST /api/v310/session/login'])
        self.assertEqual([snap.name],
                         [s['description'] for s in self._snapshots()])

    def test_default_names_leave_snapshots(self):
        """delete_volume leaves the volume's snapshots behind by default.

        The driver deletes snapshots whose ``vmName`` equals the Cinder
        volume id; by default the simulator names a file's VM after the
        file (``volume-<id>``).  See simulator.rst.
        """
        vol, snap = self._volume_with_snapshot()
        self.assertEqual(vol.name, self._snapshots()[0]['vmName'])
        self.drv.delete_volume(vol)
        self.assertEqual([snap.name],
                         [s['description'] for s in self._snapshots()])


@tfixtures.skip_unless_root
class InTreeDriverVolumeIdNamesTest(_FidelityBase):
    """With ``vm_name_style='volume_id'`` the driver's cleanup works."""

    SIM_KWARGS = {'vm_name_style': 'volume_id'}

    def test_delete_volume_removes_its_snapshots(self):
        vol, _snap = self._volume_with_snapshot()
        self.assertEqual(vol.name_id, self._snapshots()[0]['vmName'])
        self.drv.delete_volume(vol)
        self.assertEqual([], self._snapshots())


def _text(value):
    return content.text_content(repr(value))


@tfixtures.skip_unless_root
class InTreeDriverVmstore6FidelityTest(InTreeDriverFidelityTest):
    """The same lifecycle on the strict ``vmstore6`` profile.

    Official endpoints and fields only, snapshots only of inventoried
    files with their VM uuid, ``inventory_lag`` 0.2 s, delete refused
    while clones exist and no snapshot PUT.  The driver's sleeps last up
    to 0.25 s here, so its first wait after a refresh outlasts the
    inventory lag as its 1 s sleep would on a real array.
    """

    SIM_KWARGS = {'profile': 'vmstore6'}
    SLEEP_CAP = 0.25

    def test_profile_is_strict(self):
        self.assertEqual('vmstore6', self.sim.profile)
        self.assertTrue(self.sim.strict_endpoints)
        self.assertTrue(self.sim.strict_fields)
        self.assertTrue(self.sim.require_inventory)
        self.assertEqual('refuse', self.sim.delete_with_clones)

    def test_inventory_after_create_volume(self):
        """create_volume waits once for the inventory, then finds it."""
        sim = self.sim
        sim.reset_counts()
        vol = self._new_volume()
        self._apply(vol, self.drv.create_volume(vol))
        counts = sim.request_counts()
        # refresh, lookup (not yet), sleep, refresh, lookup (found)
        self.assertEqual([1], self.sleeps.calls)
        self.assertEqual(2, counts['POST /api/v310/cinder/host/refresh'])
        self.assertEqual(2, counts['GET /api/v310/virtualDisk'])
        self.assertEqual(['cinder/' + vol.name], sim.inventoried())
        # the snapshot carries the inventoried VM's uuid and name
        self.sleeps.calls = []
        sim.reset_counts()
        snap = test_utils.create_snapshot(self.ctxt, vol.id,
                                          volume_size=vol.size)
        self.drv.create_snapshot(snap)
        self.assertEqual([], self.sleeps.calls)
        self.assertEqual({'GET /api/v310/virtualDisk': 1,
                          SNAP_CREATE: 1}, sim.request_counts())
        vd = [v for v in sim._state.entities()
              if v['rel'] == 'cinder/' + vol.name][0]
        found = self._by_desc(snap.name)
        self.assertEqual({'uuid': vd['vm_uuid']}, found['vmUuid'])
        self.assertEqual(vd['vm_name'], found['vmName'])
