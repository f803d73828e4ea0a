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
"""Encrypted volumes: the driver with the simulator and real qemu-img.

cinder's ConfKeyManager holds the key; the LUKS containers are made and
checked with the real qemu-img.  The end-to-end proof (decrypting every
volume through the API) is tests/functional/test_encryption.py.
"""

import json
import shutil
import subprocess
import uuid

from castellan import key_manager
from cinder.db import api as db
from cinder import exception
from cinder.volume import volume_types
from cinder.volume import volume_utils
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_utils import units

from cinder_tintri import encryption
from tests.unit import driver_base

CONF = cfg.CONF
FIXED_KEY = 'fedcba9876543210' * 4


def _info(path):
    out = subprocess.run(['qemu-img', 'info', '--output=json', path],
                         check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return json.loads(out)


class EncryptedVolumeTest(driver_base.DriverTestCase):

    def setUp(self):
        if not shutil.which('qemu-img'):
            self.skipTest('qemu-img is not installed')
        import cinder.keymgr  # noqa: F401
        import cinder.keymgr.conf_key_mgr  # noqa: F401
        super().setUp()
        self.override_config(
            'backend', 'cinder.keymgr.conf_key_mgr.ConfKeyManager',
            group='key_manager')
        self.override_config('fixed_key', FIXED_KEY, group='key_manager')
        self.luks = self._type('luks', {'provider': 'luks'})
        self.plain = volume_types.create(self.ctxt, 'plain-%s'
                                         % uuid.uuid4().hex[:6])

    def _type(self, name, enc):
        vtype = volume_types.create(self.ctxt,
                                    '%s-%s' % (name, uuid.uuid4().hex[:6]))
        db.volume_type_encryption_create(self.ctxt, vtype['id'], dict(
            {'cipher': 'aes-xts-plain64', 'key_size': 256,
             'control_location': 'front-end'}, **enc))
        return vtype

    def _encrypted(self, size=1, vtype=None, create=True):
        vtype = vtype or self.luks
        key_id = volume_utils.create_encryption_key(
            self.ctxt, key_manager.API(CONF), vtype['id'])
        make = self.new_volume if create else self.create_volume
        return make(size=size, volume_type_id=vtype['id'],
                    encryption_key_id=key_id)

    def test_created_as_raw_luks_of_the_volume_size(self):
        vol = self._encrypted(size=1)
        info = _info(self.path_of(vol))
        self.assertEqual('luks', info['format'])
        self.assertSizeGiB(vol, 1)
        data = info['format-specific']['data']
        self.assertEqual(('aes-256', 'xts', 'plain64'),
                         (data['cipher-alg'], data['cipher-mode'],
                          data['ivgen-alg']))
        self.assertEqual(units.Gi - data['payload-offset'],
                         info['virtual-size'])
        self.assertEqual('raw', vol.admin_metadata['format'])
        conn = self.drv.initialize_connection(vol, {})
        self.assertEqual('raw', conn['data']['format'])

    def test_clone_grows_the_payload(self):
        vol = self._encrypted(size=1)
        snap = self.create_snapshot(vol)
        new = self._encrypted(size=3, create=False)
        new.update(self.drv.create_volume_from_snapshot(new, snap))
        info = _info(self.path_of(new))
        self.assertSizeGiB(new, 3)
        self.assertEqual(
            3 * units.Gi - info['format-specific']['data']['payload-offset'],
            info['virtual-size'])

    def test_extend_refuses_a_file_that_is_not_luks(self):
        vol = self._encrypted(size=1)
        self.write(vol, b'QFI\xfb\0\0\0\3')       # a qcow2 header
        e = self.assertRaises(exception.ExtendVolumeError,
                              self.drv.extend_volume, vol, 2)
        self.assertIn('qcow2', str(e))
        self.assertSizeGiB(vol, 1)

    def test_unsupported_provider_leaves_nothing(self):
        luks2 = self._type('luks2', {'provider': 'luks2'})
        vol = self._encrypted(vtype=luks2, create=False)
        e = self.assertRaises(exception.VolumeDriverException,
                              self.drv.create_volume, vol)
        self.assertIn('luks', str(e))
        self.assertEqual([], [n for n in self.share_entries()
                              if not n.startswith('.')])

    def test_calibration_failure_is_retried(self):
        real = self.drv._execute
        calls = []

        def flaky(*args, **kwargs):
            calls.append(args[:2])
            if args[:2] == ('qemu-img', 'create') and len(calls) == 1:
                raise processutils.ProcessExecutionError(
                    stderr='qemu-img: x: Unable to get accurate CPU usage')
            return real(*args, **kwargs)

        self.drv._execute = flaky
        vol = self._encrypted(size=1)
        self.assertEqual(2, calls.count(('qemu-img', 'create')))
        self.assertEqual('luks', _info(self.path_of(vol))['format'])

    def test_failed_create_leaves_nothing(self):
        def failing(*args, **kwargs):
            raise processutils.ProcessExecutionError(stderr='no space')

        self.drv._execute = failing
        vol = self._encrypted(create=False)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_volume, vol)
        self.assertEqual([], [n for n in self.share_entries()
                              if not n.startswith('.')])

    def test_encryption_change_is_refused(self):
        enc = self._encrypted(create=False)
        plain = self.create_volume(volume_type_id=self.plain['id'])
        other = self.create_volume(volume_type_id=self.luks['id'])
        for src, dest in ((enc, plain), (plain, enc)):
            self.assertRaises(exception.VolumeDriverException,
                              self.drv.before_volume_copy, self.ctxt, src,
                              dest)
        self.drv.before_volume_copy(self.ctxt, enc, other)   # unchanged
        target = self.create_volume(volume_type_id=self.plain['id'],
                                    migration_status='target:%s' % enc.id)
        self.assertRaises(exception.VolumeDriverException,
                          self.drv.create_volume, target)
        self.assertEqual([], [n for n in self.share_entries()
                              if not n.startswith('.')])

    def test_check_container(self):
        vol = self._encrypted(size=1)
        path = self.path_of(vol)
        encryption.LuksVolumes.check_container(
            vol, path, exception.VolumeBackendAPIException)
        self.write(vol, b'\0' * 8)
        self.assertRaises(exception.VolumeBackendAPIException,
                          encryption.LuksVolumes.check_container, vol, path,
                          lambda m: exception.VolumeBackendAPIException(
                              data=m))

    def test_clone_of_a_plain_volume_is_refused_and_removed(self):
        plain = self.new_volume(size=1, volume_type_id=self.plain['id'])
        snap = self.create_snapshot(plain)
        new = self._encrypted(size=2, create=False)
        e = self.assertRaises(exception.VolumeBackendAPIException,
                              self.drv.create_volume_from_snapshot, new, snap)
        self.assertIn('not a LUKS container', str(e))
        self.assertEqual([plain.name], [n for n in self.share_entries()
                                        if not n.startswith('.')])
