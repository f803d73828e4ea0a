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
"""Encrypted (LUKS) volumes through cinder's API, scheduler and manager.

An encrypted volume type (provider luks, aes-xts-plain64, 256 bits,
front-end) and cinder's ConfKeyManager with a fixed key, as cinder's own
tests use it.  Every volume is checked on the share with qemu-img (a LUKS
container, the file exactly its size in GiB, the payload that less the
header) and by decrypting it with the passphrase derived from the key
manager's key (hexlify of the key bytes, as cinder and os-brick do):
qemu-io reads back the patterns written through the decrypted view, and
fails on any mismatch.
"""

import binascii
import json
import logging
import os
import subprocess
import tempfile

# [key_manager] fixed_key with its help, before any volume manager runs:
# castellan's key migration registers a bare fixed_key when it finds none,
# and a later import of conf_key_mgr then fails with DuplicateOptError.
import cinder.keymgr  # noqa: F401,I100  (registers [key_manager])
import cinder.keymgr.conf_key_mgr  # noqa: F401
from cinder.tests.functional.api import client
import fixtures
from oslo_utils import units

from tests.functional import harness
from tests.unit import test_images

MiB = units.Mi
Gi = units.Gi
FIXED_KEY = '0123456789abcdef' * 4     # 256 bits, hex
ENCRYPTION = {'provider': 'luks', 'cipher': 'aes-xts-plain64',
              'key_size': 256, 'control_location': 'front-end'}


class EncryptionTest(harness.ApiTestCase):

    def _get_flags(self):
        # Imported here: importing cinder.image.glance before cinder's
        # volume manager is a circular import.
        from cinder.image import glance

        f = super()._get_flags()
        f['backend'] = {'v': 'cinder.keymgr.conf_key_mgr.ConfKeyManager',
                        'g': 'key_manager'}
        f['fixed_key'] = {'v': FIXED_KEY, 'g': 'key_manager'}
        self.glance = test_images.ImageService()
        self.mock_object(glance, 'get_remote_image_service',
                         lambda ctx, href: (self.glance, href))
        self.mock_object(glance, 'get_default_image_service',
                         return_value=self.glance)
        return f

    def setUp(self):
        # Cinder attaches an encrypted clone to its own host to see
        # whether its connector can be rekeyed (only iSCSI and FC); os-brick
        # reads the host's initiator as root: in-process here (root).
        from os_brick import privileged
        privileged.default.set_client_mode(False)
        self.addCleanup(privileged.default.set_client_mode, True)
        super().setUp()
        self.luks_type = self._encrypted_type('luks', ENCRYPTION)
        self.plain_type = self.api.create_type('plain')

    def _encrypted_type(self, name, encryption):
        vtype = self.api.create_type(name)
        self.api.api_post('/types/%s/encryption' % vtype['id'],
                          {'encryption': encryption})
        return vtype

    # -- the key and the decrypted view ---------------------------------

    def _passphrase(self, vol):
        from castellan import key_manager
        from cinder import context
        from cinder import objects
        from oslo_config import cfg
        ctx = context.get_admin_context()
        key_id = objects.Volume.get_by_id(ctx, vol['id']).encryption_key_id
        self.assertIsNotNone(key_id)
        key = key_manager.API(cfg.CONF).get(ctx, key_id)
        return binascii.hexlify(key.get_encoded()).decode('utf-8')

    def _secret_file(self, passphrase):
        fd, path = tempfile.mkstemp(dir=self.env.tmp, prefix='pass-')
        with os.fdopen(fd, 'w') as f:
            f.write(passphrase)
        return path

    def _qemu_io(self, path, passphrase, commands):
        """Run qemu-io commands on the decrypted view; fail on an error."""
        args = ['qemu-io', '--object',
                'secret,id=s0,file=%s' % self._secret_file(passphrase),
                '--image-opts',
                'driver=luks,key-secret=s0,file.filename=%s' % path]
        for c in commands:
            args += ['-c', c]
        res = subprocess.run(args, capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(0, res.returncode, res.stdout + res.stderr)
        self.assertNotIn('failed', res.stdout + res.stderr)

    def _write_plain(self, vol, pattern, offset, length=MiB):
        self._qemu_io(self._path(vol), self._passphrase(vol),
                      ['write -P 0x%02x %d %d' % (pattern, offset, length)])

    def _check_plain(self, vol, patterns):
        """``patterns``: (byte, offset, length) read through the key."""
        self._qemu_io(self._path(vol), self._passphrase(vol),
                      ['read -P 0x%02x %d %d' % p for p in patterns])

    def _luks_info(self, vol, size_gib):
        """qemu-img's view: a LUKS file of size_gib GiB; its payload."""
        path = self._path(vol)
        self.assertEqual(size_gib * Gi, os.stat(path).st_size)
        out = subprocess.run(['qemu-img', 'info', '--output=json', path],
                             check=True, capture_output=True, text=True,
                             timeout=60).stdout
        info = json.loads(out)
        self.assertEqual('luks', info['format'])
        self.assertTrue(info.get('encrypted'))
        data = info['format-specific']['data']
        self.assertEqual('aes-256', data['cipher-alg'])
        self.assertEqual('xts', data['cipher-mode'])
        self.assertEqual('plain64', data['ivgen-alg'])
        offset = data['payload-offset']
        self.assertGreater(offset, 0)
        self.assertLess(offset, 16 * MiB)
        self.assertEqual(size_gib * Gi - offset, info['virtual-size'])
        return info['virtual-size']

    def _encrypted(self, size=1, **body):
        return self._volume(size=size, volume_type=self.luks_type['id'],
                            **body)

    def _snapshot(self, vol):
        snap = self.api.post_snapshot({'snapshot': {'volume_id': vol['id'],
                                                    'name': 'snap'}})
        return self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')

    def _failed_volume(self, **body):
        vol = self.api.post_volume({'volume': body})
        return self._wait(self.api.get_volume, vol['id'],
                          ('creating', 'downloading'), 'error')

    def _share_files(self):
        return sorted(n for n in os.listdir(self.env.share_dir)
                      if not n.startswith('.'))

    # -- tests ----------------------------------------------------------

    def _no_secret_in_logs(self, log, passphrase):
        # The commands that used the key were logged, the passphrase not.
        self.assertIn('qemu-img', log.output)
        self.assertIn('secret,id=', log.output)
        self.assertNotIn(passphrase, log.output)
        self.assertNotIn(FIXED_KEY, log.output)

    def test_encrypted_lifecycle(self):
        log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        sim = self.env.sim
        vol = self._encrypted(size=1)
        passphrase = self._passphrase(vol)
        payload1 = self._luks_info(vol, 1)
        end1 = payload1 - MiB
        self._write_plain(vol, 0xa1, 0)
        self._write_plain(vol, 0xa2, end1)
        # Encrypted at rest: the payload's ciphertext is not the data.
        with open(self._path(vol), 'rb') as f:
            f.seek(1 * Gi - payload1)
            self.assertNotEqual(b'\xa1' * MiB, f.read(MiB))

        snap = self._snapshot(vol)
        self._write_plain(vol, 0xb1, 0)
        sim.reset_counts()

        # Volumes from the snapshot: an array clone (a byte copy, same
        # passphrase through the cloned key) and, larger, a grown payload.
        same = self._encrypted(size=1, snapshot_id=snap['id'])
        self.assertEqual(payload1, self._luks_info(same, 1))
        self._check_plain(same, [(0xa1, 0, MiB), (0xa2, end1, MiB)])
        big = self._encrypted(size=2, snapshot_id=snap['id'])
        payload2 = self._luks_info(big, 2)
        self.assertEqual(payload1 + Gi, payload2)
        self._check_plain(big, [(0xa1, 0, MiB), (0xa2, end1, MiB)])
        self._write_plain(big, 0xc1, payload2 - MiB)
        self._check_plain(big, [(0xc1, payload2 - MiB, MiB),
                                (0xa1, 0, MiB)])

        # Clones of the changed volume, same size and larger.
        clone = self._encrypted(size=1, source_volid=vol['id'])
        self._luks_info(clone, 1)
        self._check_plain(clone, [(0xb1, 0, MiB), (0xa2, end1, MiB)])
        bigclone = self._encrypted(size=3, source_volid=vol['id'])
        payload3 = self._luks_info(bigclone, 3)
        self._check_plain(bigclone, [(0xb1, 0, MiB), (0xa2, end1, MiB)])
        self._write_plain(bigclone, 0xc3, payload3 - MiB)
        self._check_plain(bigclone, [(0xc3, payload3 - MiB, MiB)])
        # All four are array clones, none a copy through the host.
        self.assertEqual(4, sim.request_counts().get(
            'POST /api/v310/cinder/clone'))

        # Revert on the array.
        self._action(vol['id'], {'revert': {'snapshot_id': snap['id']}})
        self._wait(self.api.get_volume, vol['id'], ('reverting',),
                   'available')
        self._luks_info(vol, 1)
        self._check_plain(vol, [(0xa1, 0, MiB), (0xa2, end1, MiB)])

        # Extend: the payload grows with the file, old data intact.
        self._action(vol['id'], {'os-extend': {'new_size': 2}})
        self._wait(self.api.get_volume, vol['id'], ('extending',),
                   'available')
        self.assertEqual(payload2, self._luks_info(vol, 2))
        self._write_plain(vol, 0xd1, payload2 - MiB)
        self._check_plain(vol, [(0xa1, 0, MiB), (0xa2, end1, MiB),
                                (0xd1, payload2 - MiB, MiB)])

        self.api.delete_snapshot(snap['id'])
        self._wait_gone(self.api.get_snapshot, snap['id'])
        vols = (same, big, clone, bigclone, vol)
        for v in vols:
            self.api.delete_volume(v['id'])
        for v in vols:
            self._wait_gone(self.api.get_volume, v['id'])
        self.assertEqual([], self._share_files())
        self.assertEqual([], sim.inventory()['snapshots'])
        self._no_secret_in_logs(log, passphrase)

    def test_volume_from_plain_image(self):
        log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        path = os.path.join(self.env.tmp, 'image.raw')
        with open(path, 'wb') as f:
            f.write(b'\x5a' * MiB + b'\0' * MiB + b'\xa5' * MiB)
        meta = self.glance.add(path, 'raw', min_disk=0, min_ram=0)
        vol = self._encrypted(size=1, imageRef=meta['id'])
        self.assertEqual('true', vol['bootable'])
        payload = self._luks_info(vol, 1)
        self._check_plain(vol, [(0x5a, 0, MiB), (0, MiB, MiB),
                                (0xa5, 2 * MiB, MiB)])
        self._write_plain(vol, 0x77, payload - MiB)
        self.assertEqual(1, self.glance.downloads)
        # Not cached on the array: no image file, no image snapshot.
        self.assertEqual(['volume-%s' % vol['id']], self._share_files())
        self.assertEqual([], self.env.sim.inventory()['snapshots'])

        # A clone of it, larger: the image data and the written end.
        clone = self._encrypted(size=2, source_volid=vol['id'])
        self._luks_info(clone, 2)
        self._check_plain(clone, [(0x5a, 0, MiB), (0, MiB, MiB),
                                  (0xa5, 2 * MiB, MiB),
                                  (0x77, payload - MiB, MiB)])
        self._no_secret_in_logs(log, self._passphrase(vol))

    def test_image_larger_than_payload_is_refused(self):
        # A qcow2 image of exactly 1 GiB does not fit into the payload of
        # a 1 GiB encrypted volume (the LUKS header takes ~2 MiB of it).
        log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        path = os.path.join(self.env.tmp, 'big.qcow2')
        test_images.qemu_img('create', '-f', 'qcow2', path, '1G')
        meta = self.glance.add(path, 'qcow2', min_disk=0, min_ram=0)
        vol = self._failed_volume(size=1, imageRef=meta['id'],
                                  volume_type=self.luks_type['id'])
        self.assertRegex(log.output, r'ImageTooBig: Image %s size exceeded '
                         r'.*create it at least 1 GiB larger' % meta['id'])
        self.api.delete_volume(vol['id'])
        self._wait_gone(self.api.get_volume, vol['id'])
        self.assertEqual([], self._share_files())

    def test_volume_from_encrypted_image(self):
        # An image uploaded from an encrypted volume is its raw LUKS
        # container, with the volume's key id as cinder_encryption_key_id.
        # Made here as cinder's upload would, with the fixed key.
        from castellan import key_manager
        from cinder import context
        from cinder.volume import volume_utils
        from oslo_config import cfg
        ctx = context.get_admin_context()
        keymgr = key_manager.API(cfg.CONF)
        key_id = volume_utils.create_encryption_key(
            ctx, keymgr, self.luks_type['id'])
        passphrase = binascii.hexlify(
            keymgr.get(ctx, key_id).get_encoded()).decode('utf-8')
        path = os.path.join(self.env.tmp, 'enc.luks')
        secret = self._secret_file(passphrase)
        cmd = ('qemu-img', 'create', '-q', '-f', 'luks', '--object',
               'secret,id=s0,file=%s' % secret, '-o',
               'key-secret=s0,cipher-alg=aes-256,cipher-mode=xts,'
               'ivgen-alg=plain64,iter-time=10', path, '8M')
        # qemu-img's key-derivation calibration fails now and then on a
        # loaded machine; the driver retries it too (encryption.py).
        for attempt in range(5):
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=120)
            if proc.returncode == 0 or 'accurate CPU' not in proc.stderr:
                break
        self.assertEqual(0, proc.returncode, proc.stderr)
        self._qemu_io(path, passphrase, ['write -P 0x3c 0 1M',
                                         'write -P 0x3d 7M 1M'])
        meta = self.glance.add(path, 'raw', min_disk=0, min_ram=0,
                               cinder_encryption_key_id=key_id)
        meta['properties']['cinder_encryption_key_id'] = key_id
        self.glance.images[meta['id']]['properties'] = dict(
            meta['properties'])
        vol = self._encrypted(size=1, imageRef=meta['id'])
        payload = self._luks_info(vol, 1)
        self._check_plain(vol, [(0x3c, 0, MiB), (0x3d, 7 * MiB, MiB)])
        self._write_plain(vol, 0x3e, payload - MiB)
        self._check_plain(vol, [(0x3e, payload - MiB, MiB)])

    def test_unsupported_provider_is_refused(self):
        luks2 = self._encrypted_type('luks2', dict(ENCRYPTION,
                                                   provider='luks2'))
        vol = self._failed_volume(size=1, volume_type=luks2['id'])
        self.assertEqual([], self._share_files())
        self.api.delete_volume(vol['id'])
        self._wait_gone(self.api.get_volume, vol['id'])

    def test_retype_changing_encryption_is_refused(self):
        log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        enc = self._encrypted(size=1)
        self._write_plain(enc, 0xe1, 0)
        plain = self._volume(size=1, volume_type=self.plain_type['id'])
        with open(self._path(plain), 'r+b') as f:
            f.write(b'P' * MiB)
        for vol, old_type, new_type in (
                (enc, self.luks_type, self.plain_type),
                (plain, self.plain_type, self.luks_type)):
            self._action(vol['id'], {'os-retype': {
                'new_type': new_type['id'],
                'migration_policy': 'on-demand'}})
            got = self._wait(self.api.get_volume, vol['id'],
                             ('retyping',), 'available')
            self.assertEqual(old_type['name'], got['volume_type'])
            self.assertEqual('error', got['migration_status'])
            self.assertEqual(2, len(self.api.get_volumes()))  # no target
        # Refused by the driver, not by something failing later: the new
        # volume of the migration (on this backend too) is not created.
        # (before_volume_copy refuses when the destination is another
        # backend: tests/unit/test_encryption.py.)
        for vol in (enc, plain):
            self.assertRegex(log.output,
                             'Volume %s -> [-0-9a-f]+: the Tintri driver '
                             'cannot change a volume between encrypted'
                             % vol['id'])
        # Both files untouched, regular files, nothing else on the share.
        self.assertFalse(os.path.islink(self._path(enc)))
        self._luks_info(enc, 1)
        self._check_plain(enc, [(0xe1, 0, MiB)])
        self.assertEqual(b'P' * MiB, self._read(plain, MiB))
        self.assertEqual(sorted(['volume-%s' % enc['id'],
                                 'volume-%s' % plain['id']]),
                         self._share_files())

    def test_encrypted_volume_from_plain_sources_is_refused(self):
        # Cinder's API refuses these before the driver sees them (the
        # driver would refuse the clone as no LUKS container: unit tests).
        plain = self._volume(size=1, volume_type=self.plain_type['id'])
        with open(self._path(plain), 'r+b') as f:
            f.write(b'P' * MiB)
        snap = self._snapshot(plain)
        for source in ({'snapshot_id': snap['id']},
                       {'source_volid': plain['id']}):
            self.assertRaises(client.OpenStackApiException400,
                              self.api.post_volume,
                              {'volume': dict(
                                  size=1, volume_type=self.luks_type['id'],
                                  **source)})
        self.assertEqual(1, len(self.api.get_volumes()))
        self.assertEqual(['volume-%s' % plain['id']], self._share_files())
        self.assertEqual(b'P' * MiB, self._read(plain, MiB))
