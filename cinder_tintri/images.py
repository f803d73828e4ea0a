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
"""Volumes from Glance images through the VMstore image cache.

The cache lives on the array: an image is cached as a VMstore snapshot of a
raw file holding the image data, with description ``image-<image id>``,
``vmTintriUuid`` = the image id and ``vmName`` = the base name of the
snapshotted file (the name the array gives a clone of it).  Looking an
image up is one REST request; a volume from a cached image is one array
clone, grown to the requested size.

How an image gets into the cache:

* ``copy_image_to_volume`` (Cinder downloaded the image because
  ``clone_image`` declined): the image is converted to raw into a temporary
  file ``image-<id>`` on the volume's share, snapshotted, and renamed into
  place as the volume.  The snapshot thus holds exactly the image (its
  virtual size), not the first volume's size.
* ``clone_image`` when Glance keeps the image as a file on one of this
  VMstore's image shares (``tintri_image_shares_config``, never a volume
  share) and says so itself (``direct_url``, or a location with ``type:
  nfs`` metadata; the owner-set ``provider_location`` property only with
  ``tintri_image_trust_provider_location``).  The file is found without
  following links and must have the image's size
  (:mod:`cinder_tintri.glance_files`); a raw file is snapshotted in place,
  any other format is inspected, converted locally to raw and cached like
  a download.

Both paths run under the coordination lock ``tintri-image-<image id>`` and
look the cache up again once they hold it, so N simultaneous requests for
an uncached image - on one host or several sharing a tooz backend -
create exactly one image snapshot; the others clone it.  Waiting is
bounded by ``tintri_image_lock_timeout``; after that a request downloads
on its own without caching.

Image data is inspected with cinder's ``image_utils`` (format inspector,
``qemu-img info``, format and virtual-size checks) before it is used: a
qcow2 with a backing file or an external data file, or data whose format
differs from the image's ``disk_format``, is refused with
``ImageUnacceptable`` and nothing is left behind.

Every use of a cached image touches ``<share>/.tintri-image-cache/<id>``
(never through a symbolic link); the cleanup
(:mod:`cinder_tintri.image_cache`) takes the newest of those and the
snapshot's creation time as the image's last use.
"""

import contextlib
import errno
import os
import re
import shutil
import stat
import threading
import weakref

from cinder import coordination
from cinder import exception
from cinder.i18n import _
from cinder.image import image_utils
from cinder.volume import volume_utils
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import units

from cinder_tintri import client as tclient
from cinder_tintri import glance_files
from cinder_tintri import image_cache
from cinder_tintri import image_download
from cinder_tintri import share_files
from cinder_tintri import takeover

LOG = logging.getLogger(__name__)

IMAGE_PREFIX = image_cache.IMAGE_PREFIX
# Directory on each share holding one last-use marker file per image.
MARKER_DIR = '.tintri-image-cache'
IMAGE_LOCK = 'tintri-image-%s'
CLEANUP_LOCK = 'tintri-image-cache-cleanup-%s'
# Image ids become file names and snapshot descriptions (fullmatch: no
# trailing newline slips through).
_SAFE_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,127}')
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors meaning "this image must not be used": raised, never swallowed.
_REFUSALS = (exception.ImageUnacceptable,
             exception.ImageConversionNotAllowed,
             exception.ImageTooBig)


class TintriImageMixin(object):
    """Image methods of :class:`cinder_tintri.driver.TintriDriver`."""

    # ------------------------------------------------------------------
    # Driver interface
    # ------------------------------------------------------------------

    def clone_image(self, context, volume, image_location, image_meta,
                    image_service):
        """Create the volume from the array image cache or a Glance share.

        Returns ``({'provider_location': share, 'bootable': True}, True)``
        when the volume was created, ``(None, False)`` when Cinder should
        download the image instead.  Unsafe images raise
        ``ImageUnacceptable``.
        """
        image_id = (image_meta or {}).get('id')
        if not self._image_id_ok(image_id) or volume.encryption_key_id:
            return None, False
        try:
            share = self._find_share(volume)
            snap = self._image_find_snapshot(image_id)
            if snap is None:
                source = self._image_glance_file(image_location, image_meta)
                if source is None:
                    return self._image_download_once(
                        context, volume, share, image_id, image_meta,
                        image_service)
                with source, self._image_lock(image_id) as locked:
                    if not locked:
                        return None, False
                    snap = self._image_find_snapshot(image_id)
                    if snap is None:
                        self._image_from_glance_file(
                            volume, share, image_id, image_meta, source)
                        return self._image_cloned(volume, share, image_id)
            self._image_clone_snapshot(snap, image_id, share, volume)
            return self._image_cloned(volume, share, image_id)
        except _REFUSALS:
            raise
        except Exception as e:
            LOG.info('Image %(image)s could not be cloned on the VMstore, '
                     'Cinder downloads it instead: %(err)s',
                     {'image': image_id, 'err': e})
            return None, False

    def _image_download_once(self, context, volume, share, image_id,
                             image_meta, image_service):
        """A cache miss of a raw image: one write, into the cache file.

        Under the image lock (another request may have cached it
        meanwhile: then a clone); cinder's download path when the image
        does not qualify (cinder_tintri.image_download) or the lock is
        not had in time.
        """
        why = image_download.why_not(image_meta)
        if not self.configuration.tintri_image_write_once:
            why = 'tintri_image_write_once is off'
        if why is not None or image_service is None:
            LOG.debug('Image %(image)s is not cached on the VMstore and '
                      'is not written once (%(why)s); Cinder downloads it.',
                      {'image': image_id, 'why': why or 'no image service'})
            return None, False
        self._image_writable_mount(share, image_id, volume)
        with self._image_lock(image_id) as locked:
            if not locked:
                return None, False
            snap = self._image_find_snapshot(image_id)
            if snap is not None:
                self._image_clone_snapshot(snap, image_id, share, volume)
                return self._image_cloned(volume, share, image_id)
            self._image_fill(share, volume, image_id,
                             image_download.raw_writer(
                                 context, image_service, image_id,
                                 image_meta, volume.size,
                                 self._execute_as_root))
        LOG.info('Downloaded image %(image)s once into its VMstore cache '
                 'and cloned volume %(vol)s from it.',
                 {'image': image_id, 'vol': volume.id})
        return self._image_cloned(volume, share, image_id)

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        """Download the image into the volume and cache it on the array.

        The volume file exists (``create_volume``).  Under the image lock
        the cache is checked again: if another request cached the image
        meanwhile, the volume becomes a clone of it; otherwise the image is
        downloaded into a temporary ``image-<id>`` file, snapshotted as the
        cache entry and renamed into place as the volume.
        """
        if volume.encryption_key_id or not self._image_id_ok(image_id):
            return super().copy_image_to_volume(
                context, volume, image_service, image_id,
                disable_sparse=disable_sparse)
        share = self._share_of(volume)
        self._image_writable_mount(share, image_id, volume)
        with self._image_lock(image_id) as locked:
            if locked:
                if self._image_clone_if_cached(image_id, share, volume):
                    return

                def produce(dest):
                    image_utils.fetch_to_raw(
                        context, image_service, image_id, dest,
                        self.configuration.volume_dd_blocksize,
                        size=volume.size, run_as_root=self._execute_as_root,
                        disable_sparse=disable_sparse)

                self._image_fill(share, volume, image_id, produce)
                LOG.info('Copied image %(image)s to volume %(vol)s and '
                         'cached it on the VMstore.',
                         {'image': image_id, 'vol': volume.id})
                return
        LOG.warning('Timed out waiting for another request caching image '
                    '%(image)s; downloading it into volume %(vol)s without '
                    'caching.', {'image': image_id, 'vol': volume.id})
        try:
            super().copy_image_to_volume(context, volume, image_service,
                                         image_id,
                                         disable_sparse=disable_sparse)
        except exception.Invalid as e:
            self._image_reraise_unsafe(image_id, e)
            raise
        except (OSError, processutils.ProcessExecutionError) as e:
            raise self._image_write_fault(image_id, volume, share, e)

    def copy_volume_to_image(self, context, volume, image_service,
                             image_meta):
        """Upload the raw volume file (no snapshot chains to flatten)."""
        path, _st = self._volume_file(volume)
        volume_utils.upload_volume(context, image_service, image_meta,
                                   path, volume,
                                   run_as_root=self._execute_as_root)

    # ------------------------------------------------------------------
    # Cache lookup and clones
    # ------------------------------------------------------------------

    @staticmethod
    def _image_id_ok(image_id):
        return (isinstance(image_id, str)
                and _SAFE_ID.fullmatch(image_id) is not None)

    def _image_find_snapshot(self, image_id):
        """The image's cache snapshot (one REST request), or None.

        Ours (``image-<id>``) first; else one the removed Tintri driver
        cached (``image-<id> (<id>)``, see :mod:`cinder_tintri.takeover`),
        which is reused as it is.
        """
        # By its description alone: the VM it is filed under is the image
        # id (direct protocol) or the array's VM (refresh protocol).
        description = IMAGE_PREFIX + image_id
        ours, legacy = [], []
        for snap in self._client.find_snapshots(contain=description):
            if snap.get('isDeleted'):
                continue
            if snap.get('description') == description:
                if image_cache.image_id_of(snap) == image_id:
                    ours.append(snap)
            elif takeover.image_snapshot_id(snap) == image_id:
                legacy.append(snap)
        if len(ours) > 1:
            LOG.warning('%d VMstore snapshots share the description %s; '
                        'using %s.', len(ours), description,
                        ours[0]['uuid']['uuid'])
        if ours:
            return ours[0]
        if legacy:
            LOG.info('Image %(image)s: reusing the cache snapshot %(uuid)s '
                     'of the removed Tintri driver.',
                     {'image': image_id, 'uuid': legacy[0]['uuid']['uuid']})
            return legacy[0]
        return None

    def _image_cloned(self, volume, share, image_id):
        self._image_touch(share, image_id)
        LOG.info('Created volume %(vol)s from image %(image)s with a '
                 'VMstore clone.', {'vol': volume.id, 'image': image_id})
        return {'provider_location': share, 'bootable': True}, True

    def _image_clone_snapshot(self, snap, image_id, share, volume,
                              replace=False, expected_size=None):
        """Clone a cache snapshot to the volume, sized to the request."""
        snap_uuid = snap['uuid']['uuid']
        source_name = snap.get('vmName') or IMAGE_PREFIX + image_id
        try:
            path = self._clone_into_share(snap_uuid, source_name, share,
                                          volume.name, replace=replace)
        except tclient.TintriError as e:
            raise self._api_error(
                _('Cloning image %(image)s to volume %(vol)s')
                % {'image': image_id, 'vol': volume.id}, e)
        self._image_finish(path, volume, image_id, expected_size)
        return path

    def _image_clone_if_cached(self, image_id, share, volume):
        """Under the image lock: clone a snapshot cached meanwhile."""
        try:
            snap = self._image_find_snapshot(image_id)
            if snap is None:
                return False
            self._image_clone_snapshot(snap, image_id, share, volume,
                                       replace=True)
        except _REFUSALS:
            raise
        except Exception as e:
            LOG.warning('Cannot use the cached image %(image)s for volume '
                        '%(vol)s, downloading it: %(err)s',
                        {'image': image_id, 'vol': volume.id, 'err': e})
            return False
        self._image_touch(share, image_id)
        LOG.info('Image %(image)s was cached by another request; volume '
                 '%(vol)s is a VMstore clone of it.',
                 {'image': image_id, 'vol': volume.id})
        return True

    def _image_finish(self, path, volume, image_id, expected_size=None):
        """Check the image fits, grow to the volume size, set permissions.

        ``expected_size``: the bytes the clone must have before it grows
        (the checked source file's size).  The file at ``path`` is removed
        when this fails.
        """
        try:
            try:
                size = share_files.lstat_regular(path).st_size
            except share_files.ShareFileError as e:
                raise exception.VolumeBackendAPIException(data=e.reason)
            if expected_size is not None and size != expected_size:
                raise exception.ImageUnacceptable(
                    image_id=image_id,
                    reason=_('the VMstore clone has %(found)d bytes, the '
                             'image file had %(expected)d')
                    % {'found': size, 'expected': expected_size})
            if size > volume.size * units.Gi:
                image_utils.check_virtual_size(size, volume.size, image_id)
            self._resize_to(path, volume.size)
            self._set_rw_permissions(path)
            if os.stat(path).st_size != volume.size * units.Gi:
                raise exception.ImageUnacceptable(
                    image_id=image_id,
                    reason=_('expected a volume of %d GiB') % volume.size)
        except Exception:
            with excutils.save_and_reraise_exception():
                self._delete(path)

    # ------------------------------------------------------------------
    # Filling the cache
    # ------------------------------------------------------------------

    def _image_fill(self, share, volume, image_id, produce):
        """Write the image into ``image-<id>``, cache it, make it the volume.

        ``produce(dest)`` writes the raw image to the new file ``dest`` in
        a temporary directory on ``share``.  That file is snapshotted as
        the cache entry (a failure there only costs the caching) and then
        renamed over the volume file.  The temporary directory goes in
        every case.
        """
        mount = self._image_writable_mount(share, image_id, volume)
        tmp_name = self._tmp_dir_name_for(volume.name)
        tmp_dir = os.path.join(mount, tmp_name)
        source_name = IMAGE_PREFIX + image_id
        target = os.path.join(mount, volume.name)
        snap_uuid = None
        try:
            os.mkdir(tmp_dir)
            dest = os.path.join(tmp_dir, source_name)
            try:
                produce(dest)
            except exception.Invalid as e:
                self._image_reraise_unsafe(image_id, e)
                raise
            try:
                snap_uuid = self._snapshot_file(
                    share, source_name, image_id, IMAGE_PREFIX + image_id,
                    export='%s/%s' % (self._export_path(share), tmp_name))
                LOG.info('Cached image %(image)s on the VMstore as snapshot '
                         '%(uuid)s.', {'image': image_id, 'uuid': snap_uuid})
            except (tclient.TintriError,
                    exception.VolumeBackendAPIException) as e:
                LOG.warning('Could not cache image %(image)s on the VMstore '
                            '(the volume is fine): %(err)s',
                            {'image': image_id, 'err': e})
            try:
                existing = share_files.lstat_regular(target, missing_ok=True)
            except share_files.ShareFileError as e:
                raise exception.VolumeBackendAPIException(
                    data=_('Refusing to replace %(target)s: %(reason)s')
                    % {'target': target, 'reason': e.reason})
            if existing is not None and existing.st_nlink > 1:
                raise exception.VolumeBackendAPIException(
                    data=_('Refusing to replace %s: it has more than one '
                           'hard link.') % target)
            os.rename(dest, target)
        except (OSError, processutils.ProcessExecutionError) as e:
            self._image_drop_snapshot(snap_uuid, image_id)
            raise self._image_write_fault(image_id, volume, share, e)
        except Exception:
            with excutils.save_and_reraise_exception():
                self._image_drop_snapshot(snap_uuid, image_id)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            # The name is owned (locked) while in use so that no sweep, of
            # this or another service, removes it; release it.
            self._tmp_release(tmp_name)
        self._image_finish(target, volume, image_id)
        self._image_touch(share, image_id)
        return target

    def _image_writable_mount(self, share, image_id, volume):
        """The share's mount point; a read-only share is refused."""
        mount = self._mount(share)
        self._check_writable(
            share, mount, _('Copying image %(image)s to volume %(vol)s')
            % {'image': image_id, 'vol': volume.id})
        return mount

    def _image_drop_snapshot(self, snap_uuid, image_id):
        """A failed fill leaves no cache snapshot behind."""
        if not snap_uuid:
            return
        try:
            self._client.delete_snapshot(snap_uuid)
        except tclient.TintriError as e:
            LOG.warning('Could not delete snapshot %(uuid)s of image '
                        '%(image)s after a failed copy; the image cache '
                        'cleanup removes it: %(err)s',
                        {'uuid': snap_uuid, 'image': image_id, 'err': e})

    @staticmethod
    def _image_write_fault(image_id, volume, share, err):
        """A share fault while writing an image, in words."""
        if isinstance(err, processutils.ProcessExecutionError):
            detail = (err.stderr or err.description or str(err)).strip()
            if 'No space left' in detail:
                detail = share_files.describe(OSError(errno.ENOSPC, detail))
            elif 'Read-only file system' in detail:
                detail = share_files.describe(OSError(errno.EROFS, detail))
        else:
            detail = share_files.describe(err)
        msg = (_('Copying image %(image)s to volume %(vol)s failed on share '
                 '%(share)s: %(err)s')
               % {'image': image_id, 'vol': volume.id, 'share': share,
                  'err': detail})
        LOG.error(msg)
        return exception.VolumeBackendAPIException(data=msg)

    def _image_from_glance_file(self, volume, share, image_id, image_meta,
                                source):
        """Cache an image file found on an image share, clone the volume.

        ``source`` is a :class:`cinder_tintri.glance_files.ImageFile`, held
        open: what is inspected is the file that was checked.
        """
        src_share, path = source.share, source.path
        data = self._image_inspect(path, image_id, image_meta, volume)
        virtual = image_meta.get('virtual_size')
        if virtual and data.virtual_size != virtual:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('the file on image share %(share)s has a virtual '
                         'size of %(found)s bytes, the image record says '
                         '%(expected)s') % {'share': src_share,
                                            'found': data.virtual_size,
                                            'expected': virtual})
        if data.file_format == 'raw':
            directory, name = source.directory, source.name
            export = self._export_path(src_share)
            if directory:
                export = '%s/%s' % (export, directory)
            try:
                snap_uuid = self._snapshot_file(
                    src_share, name, image_id, IMAGE_PREFIX + image_id,
                    export=export)
            except tclient.TintriError as e:
                raise self._api_error(
                    _('Caching image %s from its Glance share') % image_id, e)
            LOG.info('Cached raw image %(image)s from %(share)s as VMstore '
                     'snapshot %(uuid)s.',
                     {'image': image_id, 'share': src_share,
                      'uuid': snap_uuid})
            snap = {'uuid': {'uuid': snap_uuid}, 'vmName': name}
            self._image_clone_snapshot(snap, image_id, share, volume,
                                       expected_size=source.size)
            return
        disk_format = image_utils.fixup_disk_format(image_meta['disk_format'])

        def produce(dest):
            image_utils.convert_image(path, dest, 'raw',
                                      src_format=disk_format,
                                      run_as_root=self._execute_as_root,
                                      image_id=image_id, data=data)

        LOG.info('Converting %(fmt)s image %(image)s from %(share)s to raw '
                 'for the VMstore image cache.',
                 {'fmt': data.file_format, 'image': image_id,
                  'share': src_share})
        self._image_fill(share, volume, image_id, produce)

    def _image_inspect(self, path, image_id, image_meta, volume):
        """cinder's safety checks on an image file; QemuImgInfo if safe."""
        disk_format = image_meta.get('disk_format')
        if not disk_format:
            raise exception.ImageUnacceptable(
                image_id=image_id, reason=_('the image has no disk_format'))
        try:
            data = image_utils.qemu_img_info(
                path, run_as_root=self._execute_as_root)
        except exception.Invalid as e:
            self._image_reraise_unsafe(image_id, e)
            raise
        except processutils.ProcessExecutionError as e:
            raise self._image_unsafe(image_id, e)
        if data.backing_file is not None:
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('fmt=%(fmt)s backed by: %(backing)s')
                % {'fmt': data.file_format, 'backing': data.backing_file})
        image_utils.check_image_format(
            path, src_format=image_utils.fixup_disk_format(disk_format),
            image_id=image_id, data=data, run_as_root=self._execute_as_root)
        image_utils.check_image_conversion_disable(disk_format, 'raw',
                                                   image_id)
        image_utils.check_virtual_size(data.virtual_size, volume.size,
                                       image_id)
        return data

    @classmethod
    def _image_reraise_unsafe(cls, image_id, err):
        """image_utils signals a failed safety check with a bare Invalid."""
        if type(err) is exception.Invalid:
            raise cls._image_unsafe(image_id, err) from err

    @staticmethod
    def _image_unsafe(image_id, err):
        LOG.warning('Refusing image %(image)s: %(err)s',
                    {'image': image_id, 'err': err})
        return exception.ImageUnacceptable(
            image_id=image_id,
            reason=_('the image data failed the safety check (for example '
                     'a qcow2 image with a backing file or external data '
                     'file, or a format other than the declared one): %s')
            % err)

    # ------------------------------------------------------------------
    # Glance images on VMstore NFS shares
    # ------------------------------------------------------------------

    def _image_glance_file(self, image_location, image_meta):
        """The image's checked, open file on an image share, or None.

        See :mod:`cinder_tintri.glance_files` for what qualifies.
        """
        finder = glance_files.GlanceImageFiles(
            self._image_shares_from_config, self._image_volume_shares,
            self._image_mount_share,
            trust_provider_location=self.configuration.safe_get(
                'tintri_image_trust_provider_location'))
        return finder.find(image_location, image_meta)

    def _image_volume_shares(self):
        """(share, mount point) of every volume share of the backend."""
        shares = set(getattr(self, 'shares', None) or {})
        shares.update(getattr(self, '_mounted_shares', None) or [])
        return [(share, self._get_mount_point_for_share(share))
                for share in sorted(shares)]

    def _image_mount_share(self, share, flags):
        self._remotefsclient.mount(share, flags)
        return os.path.realpath(self._get_mount_point_for_share(share))

    def _image_shares_from_config(self):
        path = self.configuration.safe_get('tintri_image_shares_config')
        if not path:
            return []
        cached = getattr(self, '_image_shares_cache', None)
        if cached is not None and cached[0] == path:
            return cached[1]
        shares = []
        try:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith('#'):
                        continue
                    parts = line.split()
                    shares.append((parts[0], parts[1:]))
        except OSError as e:
            LOG.warning('Cannot read tintri_image_shares_config %(path)s: '
                        '%(err)s', {'path': path, 'err': e})
            return []
        self._image_shares_cache = (path, shares)
        return shares

    # ------------------------------------------------------------------
    # Locks and last-use markers
    # ------------------------------------------------------------------

    @contextlib.contextmanager
    def _image_lock(self, image_id, timeout=None):
        """Hold ``tintri-image-<id>``; yields False after ``timeout``."""
        if timeout is None:
            timeout = self.configuration.tintri_image_lock_timeout
        lock = coordination.COORDINATOR.get_lock(IMAGE_LOCK % image_id)
        acquired = lock.acquire(blocking=float(timeout) if timeout else False)
        try:
            yield bool(acquired)
        finally:
            if acquired:
                try:
                    lock.release()
                except Exception as e:
                    LOG.warning('Could not release the lock of image %s: '
                                '%s', image_id, e)

    def _image_try_lock(self, image_id):
        return self._image_lock(image_id, timeout=0)

    def _image_marker_dir(self, share, create=False):
        """A descriptor of ``<share>/.tintri-image-cache``, or None.

        Opened without following a link: a marker directory replaced by a
        symbolic link is never written through (a file would appear at the
        link's target on this host).
        """
        mount = self._get_mount_point_for_share(share)
        directory = os.path.join(mount, MARKER_DIR)
        if create:
            try:
                os.mkdir(directory)
            except FileExistsError:
                pass
        try:
            return os.open(directory, _DIR_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            LOG.warning('Image marker directory %(dir)s cannot be used '
                        '(%(err)s); image uses are not recorded on %(share)s.',
                        {'dir': directory, 'err': share_files.describe(e),
                         'share': share})
            return None

    def _image_touch(self, share, image_id):
        """Record a use of the cached image (marker file mtime)."""
        try:
            dfd = self._image_marker_dir(share, create=True)
        except OSError as e:
            LOG.debug('Cannot record the use of image %s: %s', image_id, e)
            return
        if dfd is None:
            return
        try:
            fd = os.open(image_id, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=dfd)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.utime(fd)
            finally:
                os.close(fd)
        except OSError as e:
            LOG.warning('Cannot record the use of image %(image)s on '
                        '%(share)s: the marker %(marker)s: %(err)s',
                        {'image': image_id, 'share': share,
                         'marker': os.path.join(MARKER_DIR, image_id),
                         'err': share_files.describe(e)})
        finally:
            os.close(dfd)

    def _image_marker_dirs(self):
        """A descriptor of each mounted share's marker directory.

        Each is closed when the caller moves on to the next one.
        """
        for share in list(getattr(self, '_mounted_shares', None) or []):
            dfd = self._image_marker_dir(share)
            if dfd is None:
                continue
            try:
                yield dfd
            finally:
                os.close(dfd)

    def _image_last_used(self, image_id):
        times = []
        for dfd in self._image_marker_dirs():
            try:
                st = os.stat(image_id, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                times.append(st.st_mtime)
        return max(times) if times else None

    def _image_forget(self, image_id):
        for dfd in self._image_marker_dirs():
            try:
                os.unlink(image_id, dir_fd=dfd)
            except OSError:
                pass

    # ------------------------------------------------------------------
    # Periodic cleanup
    # ------------------------------------------------------------------

    def _image_cache_cleaner(self):
        conf = self.configuration
        return image_cache.ImageCacheCleaner(
            self._client,
            expiry_days=conf.tintri_image_cache_expiry_days,
            free_space_start=conf.tintri_image_cache_free_space_start,
            free_space_stop=conf.tintri_image_cache_free_space_stop,
            timeout=conf.tintri_image_cache_cleanup_timeout,
            last_used=self._image_last_used,
            try_lock=self._image_try_lock)

    def _image_cache_cleanup(self):
        """One cleanup run, unless another host runs one right now."""
        name = CLEANUP_LOCK % self.configuration.tintri_server_hostname
        lock = coordination.COORDINATOR.get_lock(name)
        if not lock.acquire(blocking=False):
            LOG.debug('Another image cache cleanup is running.')
            return []
        try:
            deleted = self._image_cache_cleaner().run_once()
        finally:
            lock.release()
        for entry in deleted:
            self._image_forget(entry['image_id'])
        return deleted

    def _image_cache_start(self):
        """Start the periodic cleanup (idempotent; 0 disables it).

        A (green, under cinder-volume's eventlet) daemon thread waits on an
        event between runs, so it never blocks volume operations, and
        holds the driver only weakly: it ends when the driver goes away
        or on :meth:`_image_cache_stop`.
        """
        interval = self.configuration.tintri_image_cache_cleanup_interval
        thread = getattr(self, '_image_cache_thread', None)
        if not interval or (thread is not None and thread.is_alive()):
            return
        stop = threading.Event()
        thread = threading.Thread(
            target=_cleanup_loop, args=(weakref.ref(self), stop, interval),
            name='tintri-image-cache-cleanup', daemon=True)
        weakref.finalize(self, stop.set)
        self._image_cache_stop_event = stop
        self._image_cache_thread = thread
        thread.start()
        LOG.info('Image cache cleanup runs every %s seconds.', interval)

    def _image_cache_stop(self, timeout=10.0):
        stop = getattr(self, '_image_cache_stop_event', None)
        thread = getattr(self, '_image_cache_thread', None)
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._image_cache_thread = None


def _cleanup_loop(driver_ref, stop, interval):
    while not stop.wait(interval):
        driver = driver_ref()
        if driver is None:
            return
        try:
            driver._image_cache_cleanup()
        except Exception:
            LOG.exception('Image cache cleanup failed; retrying in %s '
                          'seconds.', interval)
        del driver
