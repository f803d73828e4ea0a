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
"""A raw Glance image written once, straight into the image cache file.

On a cache miss cinder's volume manager downloads an image into a
temporary file under ``image_conversion_dir`` and ``qemu-img convert``
writes it into the volume: two writes of the whole image.  For an image
Glance calls ``raw`` in a ``bare`` container there is nothing to
convert, so :func:`raw_writer` downloads it into the file that becomes
the array's cache snapshot, and then runs on that file the checks
cinder's ``fetch_to_volume_format`` runs on its temporary file: the
format inspector must find raw data with no backing file (a qcow2 or
vmdk labelled raw is refused), the virtual size must fit the volume, and
the bytes received must be the size Glance recorded.

Declined (cinder's own path runs instead): other formats and containers,
and images that carry signature properties, whose verification the
volume manager owns (``verify_glance_signatures``).
"""

import errno
import os

from cinder import exception
from cinder.i18n import _
from cinder.image import image_utils
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

SIGNATURE_PROPERTIES = ('img_signature', 'img_signature_hash_method',
                        'img_signature_certificate_uuid',
                        'img_signature_key_type')


def why_not(image_meta):
    """None when ``image_meta`` may be written once; else the reason."""
    meta = image_meta or {}
    if meta.get('disk_format') != 'raw':
        return 'disk_format is %s, not raw' % meta.get('disk_format')
    if meta.get('container_format') not in ('bare', None):
        return 'container_format is %s' % meta.get('container_format')
    props = meta.get('properties') or {}
    if any(props.get(k) is not None for k in SIGNATURE_PROPERTIES):
        return 'the image is signed (the volume manager verifies it)'
    size = meta.get('size')
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return 'Glance records no size for it'
    return None


def raw_writer(context, image_service, image_id, image_meta, volume_size,
               run_as_root):
    """``produce(dest)`` for the image cache: download, then check.

    Raises ImageUnacceptable (cinder's own checks) when the data is not a
    plain raw image that fits ``volume_size`` GiB; the caller removes
    ``dest`` on any failure.
    """
    expected = image_meta['size']

    def produce(dest):
        try:
            image_utils.fetch(context, image_service, image_id, dest, None,
                              None)
        except exception.ImageTooBig:
            # fetch's words blame image_conversion_dir: it is the share.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dest)
        got = os.stat(dest).st_size
        if got != expected:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('received %(got)d bytes, Glance records '
                         '%(want)d') % {'got': got, 'want': expected})
        # As fetch_to_volume_format does on its temporary file: the
        # format inspector decides the format, never the file's name or
        # Glance's label.
        data = image_utils.qemu_img_info(dest, run_as_root=run_as_root)
        image_utils.check_virtual_size(data.virtual_size, volume_size,
                                       image_id)
        if data.backing_file is not None:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('fmt=%(fmt)s backed by:%(backing_file)s')
                % {'fmt': data.file_format,
                   'backing_file': data.backing_file})
        image_utils.check_image_format(dest, 'raw', image_id, data,
                                       run_as_root)
        LOG.debug('Image %(image)s written once into %(dest)s '
                  '(%(size)d bytes).',
                  {'image': image_id, 'dest': dest, 'size': got})

    return produce
