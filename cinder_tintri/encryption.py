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
"""Encrypted (LUKS) volumes on the VMstore shares.

An encrypted volume is a raw file of exactly its size in GiB holding a
LUKS1 container, as an encrypted volume is on a block backend: the LUKS
header takes the first ~2 MiB, the payload the rest.  Nova opens it with
QEMU's native LUKS support (connection format ``raw``, encryption
provider ``luks``), Cinder treats it as ``raw`` (``image_utils`` reports
the payload as its virtual size).

QEMU's LUKS1 payload runs from the header's payload offset to the end of
the file: growing the file grows the payload, and the existing sectors
decrypt as before (the IVs count from the payload start).  So array
clones (byte copies; Cinder gives a clone or a volume from a snapshot a
copy of the source's key, the same passphrase), reverts and extends need
nothing beyond the driver's sparse grow.  What differs:

* creation writes a LUKS header with the volume's key
  (``qemu-img create -f luks``) and grows the file to the volume size;
* a plain image is written through the decrypted view of that container
  (Cinder's generic path would run os-brick's front-end encryptor on the
  share file, which replaces the file by a link to ``/dev/mapper``);
* an image uploaded from an encrypted volume (it carries
  ``cinder_encryption_key_id``) is copied byte for byte and grown;
* only provider ``luks`` (LUKS1) is accepted, as in Cinder's NFS driver;
* a migration or retype that changes the encryption is refused: Cinder's
  generic copy runs the same front-end encryptor on the share file.

The passphrase is ``hexlify(key bytes)`` of the key manager's key, as in
Cinder and os-brick; it reaches qemu-img only through a 0600 temporary
file, never a command line or a log line.
"""

import binascii
import contextlib
import os
import tempfile

from castellan import key_manager
from cinder import exception
from cinder.i18n import _
from cinder.image import image_utils
from cinder import objects
from cinder.volume import volume_types
from cinder.volume import volume_utils
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

LUKS_MAGIC = b'LUKS\xba\xbe'
QCOW2_MAGIC = b'QFI\xfb'
# qemu-img's PBKDF calibration fails now and then on a loaded host with
# this message; the next attempt calibrates again.
_CALIBRATION_ERROR = 'Unable to get accurate CPU usage'
_CREATE_ATTEMPTS = 5
SECRET_ID = 'tintri_luks'


def is_encrypted(volume):
    return bool(getattr(volume, 'encryption_key_id', None))


def _image_opt(value):
    """A value inside qemu's key=value,... option syntax."""
    return str(value).replace(',', ',,')


class LuksVolumes(object):
    """LUKS containers in volume files; see the module docstring.

    ``execute`` runs a command (the driver's ``_execute``),
    ``run_as_root()`` says whether file commands run as root, ``grow``
    grows a file to a size in GiB (the driver's sparse ``_resize_to``) and
    ``iter_time()`` gives qemu's LUKS iter-time in milliseconds.
    """

    def __init__(self, execute, run_as_root, grow, iter_time=None):
        self._execute = execute
        self._run_as_root = run_as_root
        self._grow = grow
        self._iter_time = iter_time or (lambda: None)

    # -- keys and specs -------------------------------------------------

    @staticmethod
    def spec(volume, context=None):
        """The volume's encryption spec; only LUKS1 is supported."""
        context = context or volume.obj_context
        try:
            return volume_utils.check_encryption_provider(volume, context)
        except exception.VolumeDriverException as e:
            msg = (_('Volume %(id)s: the Tintri driver supports encryption '
                     'provider "luks" (LUKS1, opened by QEMU natively) '
                     'with a cipher and key size only: %(err)s')
                   % {'id': volume.id, 'err': e.msg})
            raise exception.VolumeDriverException(message=msg)

    @staticmethod
    def _passphrase(context, key_id):
        keymgr = key_manager.API(CONF)
        key = keymgr.get(context, key_id)
        return binascii.hexlify(key.get_encoded()).decode('utf-8')

    @contextlib.contextmanager
    def _secret(self, context, key_id):
        """A --object argument for the key's passphrase, in a 0600 file."""
        passphrase = self._passphrase(context, key_id)
        with tempfile.NamedTemporaryFile(
                prefix='luks_', dir=volume_utils.image_conversion_dir(),
                mode='w') as f:
            f.write(passphrase)
            f.flush()
            del passphrase
            yield 'secret,id=%s,format=raw,file=%s' % (SECRET_ID,
                                                       _image_opt(f.name))

    # -- containers -------------------------------------------------------

    def create(self, volume, path):
        """A LUKS1 container with the volume's key, ``volume.size`` GiB.

        qemu-img writes the header only (an empty payload); the file is
        then grown sparsely to the volume size.
        """
        spec = self.spec(volume)
        cipher = image_utils.decode_cipher(spec['cipher'], spec['key_size'])
        opts = ('key-secret=%s,cipher-alg=%s,cipher-mode=%s,ivgen-alg=%s'
                % (SECRET_ID, cipher['cipher_alg'], cipher['cipher_mode'],
                   cipher['ivgen_alg']))
        if self._iter_time():
            opts += ',iter-time=%d' % self._iter_time()
        with self._secret(volume.obj_context, volume.encryption_key_id) as s:
            for attempt in range(1, _CREATE_ATTEMPTS + 1):
                try:
                    self._execute('qemu-img', 'create', '-q', '-f', 'luks',
                                  '--object', s, '-o', opts, path, '0',
                                  run_as_root=self._run_as_root())
                    break
                except processutils.ProcessExecutionError as e:
                    if (_CALIBRATION_ERROR not in (e.stderr or '')
                            or attempt == _CREATE_ATTEMPTS):
                        raise
                    LOG.info('qemu-img could not calibrate the LUKS key '
                             'derivation for volume %s; trying again.',
                             volume.id)
        self._grow(path, volume.size)

    @staticmethod
    def check_container(volume, path, error):
        """Refuse (``error(msg)``) a file that is not a LUKS container."""
        try:
            with open(path, 'rb') as f:
                magic = f.read(len(LUKS_MAGIC))
        except OSError as e:
            raise error(_('Volume %(id)s: cannot read %(path)s: %(err)s')
                        % {'id': volume.id, 'path': path, 'err': e})
        if magic == LUKS_MAGIC:
            return
        if magic.startswith(QCOW2_MAGIC):
            what = _('a qcow2 file (encrypted qcow2 is not this driver\'s '
                     'format)')
        else:
            what = _('not a LUKS container')
        raise error(_('Encrypted volume %(id)s: %(path)s is %(what)s; '
                      'refusing to resize or fill it.')
                    % {'id': volume.id, 'path': path, 'what': what})

    def payload_size(self, path):
        """Bytes of the decrypted view of the container at ``path``."""
        info = image_utils.qemu_img_info(path, run_as_root=self._run_as_root(),
                                         force_share=True)
        return int(info.virtual_size)

    # -- images -----------------------------------------------------------

    def copy_plain_image(self, context, volume, path, image_service,
                         image_id, blocksize, disable_sparse=False):
        """Write a plain image through the volume's decrypted view.

        The image is fetched to a raw temporary file under
        ``image_conversion_dir`` and converted into the existing container
        (``qemu-img convert -n`` with the LUKS driver on the target).  An
        image larger than the payload (the volume size less the LUKS
        header) is refused with ImageTooBig.
        """
        self.check_container(volume, path,
                             lambda m: exception.ImageCopyFailure(reason=m))
        with tempfile.NamedTemporaryFile(
                prefix='tintri-image-',
                dir=volume_utils.image_conversion_dir()) as tmp:
            image_utils.fetch_to_raw(context, image_service, image_id,
                                     tmp.name, blocksize, size=volume.size,
                                     run_as_root=self._run_as_root(),
                                     disable_sparse=disable_sparse)
            need = os.stat(tmp.name).st_size
            have = self.payload_size(path)
            if need > have:
                reason = (_('the image needs %(need)d bytes; encrypted '
                            'volume %(id)s holds %(have)d (%(size)d GiB less '
                            'the LUKS header): create it at least 1 GiB '
                            'larger than the image')
                          % {'need': need, 'id': volume.id, 'have': have,
                             'size': volume.size})
                raise exception.ImageTooBig(image_id=image_id, reason=reason)
            with self._secret(volume.obj_context,
                              volume.encryption_key_id) as s:
                self._execute(
                    'qemu-img', 'convert', '-n', '-f', 'raw', tmp.name,
                    '--object', s, '--target-image-opts',
                    'driver=luks,key-secret=%s,file.filename=%s'
                    % (SECRET_ID, _image_opt(path)),
                    run_as_root=self._run_as_root())

    def copy_encrypted_image(self, context, volume, path, image_service,
                             image_id, blocksize, disable_sparse=False):
        """Copy an image of an encrypted volume, byte for byte, and grow.

        Such an image (``cinder_encryption_key_id`` in its properties) is
        the raw LUKS container of the volume it was uploaded from; Cinder
        gave this volume a copy of that key.
        """
        image_utils.fetch_to_raw(context, image_service, image_id, path,
                                 blocksize, size=volume.size,
                                 run_as_root=self._run_as_root(),
                                 disable_sparse=disable_sparse)
        self.check_container(
            volume, path,
            lambda m: exception.ImageUnacceptable(image_id=image_id,
                                                  reason=m))
        size = os.stat(path).st_size
        if size > volume.size * units.Gi:
            reason = (_('the encrypted image is %(have)d bytes, more than '
                        'volume %(id)s (%(size)d GiB)')
                      % {'have': size, 'id': volume.id,
                         'size': volume.size})
            raise exception.ImageTooBig(image_id=image_id, reason=reason)
        self._grow(path, volume.size)

    # -- migrations -------------------------------------------------------

    @staticmethod
    def refuse_encryption_change(context, src_vol, dest_vol):
        """Refuse a generic copy that changes the encryption.

        Cinder copies such a volume through os-brick's front-end
        encryptor, which on an NFS file replaces the file with a link to
        its ``/dev/mapper`` device.
        """
        if not volume_types.volume_types_encryption_changed(
                context, src_vol.volume_type_id, dest_vol.volume_type_id):
            return
        msg = (_('Volume %(src)s -> %(dest)s: the Tintri driver cannot '
                 'change a volume between encrypted and unencrypted (or '
                 'differently encrypted) volume types; copy the data into '
                 'a new volume of the wanted type instead.')
               % {'src': src_vol.id, 'dest': dest_vol.id})
        raise exception.VolumeDriverException(message=msg)

    def refuse_migration_target(self, volume):
        """As above, for a new volume that is a migration's destination."""
        status = getattr(volume, 'migration_status', None) or ''
        if not status.startswith('target:'):
            return
        ctx = volume.obj_context.elevated()
        src = objects.Volume.get_by_id(ctx, status[len('target:'):])
        self.refuse_encryption_change(ctx, src, volume)
