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
* ``clone_image`` when the image file lives on an NFS share of this VMstore
  (``tintri_image_shares_config``, or one of the volume shares) and Glance
  tells where (image ``provider_location`` property, ``direct_url``, or a
  location with ``type: nfs`` metadata): a raw image file is snapshotted
  in place; any other format is inspected, converted locally to raw and
  cached like a download.

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

Every use of a cached image touches ``<share>/.tintri-image-cache/<id>``;
the cleanup (:mod:`cinder_tintri.image_cache`) takes the newest of those
and the snapshot's creation time as the image's last use.
"""

import contextlib
import os
import re
import shutil
import socket
import threading
import urllib.parse
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
from cinder_tintri import image_cache

LOG = logging.getLogger(__name__)

IMAGE_PREFIX = image_cache.IMAGE_PREFIX
# Directory on each share holding one last-use marker file per image.
MARKER_DIR = '.tintri-image-cache'
IMAGE_LOCK = 'tintri-image-%s'
CLEANUP_LOCK = 'tintri-image-cache-cleanup-%s'
# Image ids become file names and snapshot descriptions.
_SAFE_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')
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
                    LOG.debug('Image %s is neither cached on the VMstore nor '
                              'on a VMstore image share; Cinder downloads '
                              'it.', image_id)
                    return None, False
                with self._image_lock(image_id) as locked:
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

    def copy_volume_to_image(self, context, volume, image_service,
                             image_meta):
        """Upload the raw volume file (no snapshot chains to flatten)."""
        volume_utils.upload_volume(context, image_service, image_meta,
                                   self.local_path(volume), volume,
                                   run_as_root=self._execute_as_root)

    # ------------------------------------------------------------------
    # Cache lookup and clones
    # ------------------------------------------------------------------

    @staticmethod
    def _image_id_ok(image_id):
        return bool(image_id) and bool(_SAFE_ID.match(str(image_id)))

    def _image_find_snapshot(self, image_id):
        """The image's cache snapshot (one REST request), or None."""
        # By its unique description alone: the VM it is filed under is the
        # image id (direct protocol) or the array's VM (refresh protocol).
        snap = self._client.find_snapshot_by_description(
            IMAGE_PREFIX + image_id)
        if snap is not None and image_cache.image_id_of(snap) != image_id:
            return None
        return snap

    def _image_cloned(self, volume, share, image_id):
        self._image_touch(share, image_id)
        LOG.info('Created volume %(vol)s from image %(image)s with a '
                 'VMstore clone.', {'vol': volume.id, 'image': image_id})
        return {'provider_location': share, 'bootable': True}, True

    def _image_clone_snapshot(self, snap, image_id, share, volume,
                              replace=False):
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
        self._image_finish(path, volume, image_id)
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

    def _image_finish(self, path, volume, image_id):
        """Check the image fits, grow to the volume size, set permissions.

        The file at ``path`` is removed when this fails.
        """
        try:
            size = os.stat(path).st_size
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
        mount = self._get_mount_point_for_share(share)
        tmp_name = self._tmp_dir_name_for(volume.name)
        tmp_dir = os.path.join(mount, tmp_name)
        source_name = IMAGE_PREFIX + image_id
        target = os.path.join(mount, volume.name)
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
            os.rename(dest, target)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            # The name is owned (locked) while in use so that no sweep, of
            # this or another service, removes it; release it.
            self._tmp_release(tmp_name)
        self._image_finish(target, volume, image_id)
        self._image_touch(share, image_id)
        return target

    def _image_from_glance_file(self, volume, share, image_id, image_meta,
                                source):
        """Cache an image file found on a VMstore share, clone the volume."""
        src_share, rel, path = source
        data = self._image_inspect(path, image_id, image_meta, volume)
        if data.file_format == 'raw':
            directory, name = os.path.split(rel)
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
            self._image_clone_snapshot(snap, image_id, share, volume)
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
        """(share, relative path, local path) of the image file, or None.

        Only files on a share of this VMstore (an image share or a volume
        share) qualify; the path must stay inside the share, be a regular
        file and have the image's size.
        """
        for url in self._image_candidate_urls(image_location, image_meta):
            parsed = self._image_parse_nfs_url(url)
            if parsed is None:
                continue
            host, path = parsed
            for share, flags in self._image_known_shares():
                rel = self._image_relative(share, host, path)
                if rel is None:
                    continue
                found = self._image_local_file(share, flags, rel, image_meta)
                if found:
                    return share, rel, found
        return None

    @staticmethod
    def _image_candidate_urls(image_location, image_meta):
        urls = []
        props = image_meta.get('properties') or {}
        for value in (image_meta.get('provider_location'),
                      props.get('provider_location')):
            if value:
                urls.append(value)
        direct_url, locations = None, None
        if isinstance(image_location, (tuple, list)) and \
                len(image_location) == 2:
            direct_url, locations = image_location
        elif isinstance(image_location, str):
            direct_url = image_location
        for loc in locations or []:
            if not isinstance(loc, dict):
                continue
            url = loc.get('url')
            meta = loc.get('metadata') or {}
            share_location = meta.get('share_location')
            mount_point = meta.get('mount_point')
            if url and str(meta.get('type', '')).lower() == 'nfs' and \
                    share_location and mount_point:
                local = urllib.parse.urlparse(url).path
                rel = os.path.relpath(local, mount_point)
                if not rel.startswith('..'):
                    urls.append('%s/%s' % (share_location.rstrip('/'), rel))
            if url:
                urls.append(url)
        if direct_url:
            urls.append(direct_url)
        return urls

    @staticmethod
    def _image_parse_nfs_url(url):
        try:
            parsed = urllib.parse.urlparse(str(url))
        except ValueError:
            return None
        if parsed.scheme.lower() != 'nfs' or not parsed.hostname:
            return None
        return parsed.hostname, urllib.parse.unquote(parsed.path)

    def _image_known_shares(self):
        """Image shares from tintri_image_shares_config, then our shares."""
        shares = list(self._image_shares_from_config())
        for share in getattr(self, '_mounted_shares', None) or []:
            flags = (self.shares.get(share) or '').split()
            shares.append((share, flags))
        return shares

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

    def _image_relative(self, share, host, path):
        """``path`` relative to ``share`` if it is on that share."""
        if ':' not in share:
            return None
        share_host, export = share.rsplit(':', 1)
        export = export.rstrip('/')
        if not export.startswith(tclient.EXPORT_ROOT):
            return None   # not a VMstore export: the array cannot clone it
        if not path.startswith(export + '/'):
            return None
        if not self._image_same_host(share_host.strip('[]'), host):
            return None
        parts = path[len(export) + 1:].split('/')
        if not parts or any(p in ('', '.', '..') for p in parts):
            return None
        return '/'.join(parts)

    @staticmethod
    def _image_same_host(a, b):
        if a.lower() == b.lower():
            return True
        try:
            ips_a = {i[4][0] for i in socket.getaddrinfo(a, None)}
            ips_b = {i[4][0] for i in socket.getaddrinfo(b, None)}
        except (OSError, UnicodeError):
            return False
        return bool(ips_a & ips_b)

    def _image_local_file(self, share, flags, rel, image_meta):
        if share not in (getattr(self, '_mounted_shares', None) or []):
            try:
                self._remotefsclient.mount(share, flags)
            except Exception as e:
                LOG.warning('Cannot mount image share %(share)s: %(err)s',
                            {'share': share, 'err': e})
                return None
        mount = os.path.realpath(self._get_mount_point_for_share(share))
        path = os.path.realpath(os.path.join(mount, rel))
        if not path.startswith(mount + os.sep) or not os.path.isfile(path):
            return None
        expected = image_meta.get('size')
        if expected and os.stat(path).st_size != int(expected):
            LOG.info('File %(path)s on %(share)s does not have the size of '
                     'image %(image)s; not cloning it.',
                     {'path': rel, 'share': share,
                      'image': image_meta.get('id')})
            return None
        return path

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

    def _image_markers(self, image_id):
        for share in getattr(self, '_mounted_shares', None) or []:
            yield share, os.path.join(self._get_mount_point_for_share(share),
                                      MARKER_DIR, image_id)

    def _image_touch(self, share, image_id):
        """Record a use of the cached image (marker file mtime)."""
        directory = os.path.join(self._get_mount_point_for_share(share),
                                 MARKER_DIR)
        marker = os.path.join(directory, image_id)
        try:
            os.makedirs(directory, exist_ok=True)
            with open(marker, 'a'):
                pass
            os.utime(marker, None)
        except OSError as e:
            LOG.debug('Cannot record the use of image %s: %s', image_id, e)

    def _image_last_used(self, image_id):
        newest = None
        for _share, marker in self._image_markers(image_id):
            try:
                mtime = os.stat(marker).st_mtime
            except OSError:
                continue
            newest = mtime if newest is None else max(newest, mtime)
        return newest

    def _image_forget(self, image_id):
        for _share, marker in self._image_markers(image_id):
            try:
                os.unlink(marker)
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
