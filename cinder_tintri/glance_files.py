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
"""Glance image files on the VMstore's image shares, found safely.

A volume can be cloned from an image on the array itself when Glance keeps
the image as a file on an NFS share of this VMstore.  Which file is an
image's is tenant-reachable input, so :class:`GlanceImageFiles` only
accepts a file when all of these hold:

* **Who said where.** The location comes from Glance itself: the image's
  ``direct_url`` and ``locations`` as the image API returns them
  (including a location's ``share_location``/``mount_point`` metadata,
  which Glance's NFS store writes).  An image's ``provider_location``
  property is set by the image's owner and is ignored unless the operator
  trusts every image owner (``tintri_image_trust_provider_location``).
* **Where.** The URL names a share listed in ``tintri_image_shares_config``
  on the same host.  Volume shares are never image sources: an image
  share that is a volume share, lies inside one or holds one is skipped,
  and so is a path that would reach into a volume share's export.
* **What.** The path is resolved component by component from the share's
  mount point without following any symbolic link (``O_NOFOLLOW`` on
  every component); the file must be a regular file with one link (a hard
  link could be another file's name) and exactly the image's ``size``
  bytes.  An image without a size is not cloned from a share.

The file is kept open while the caller inspects it: :attr:`ImageFile.path`
names the open descriptor (``/proc/<pid>/fd/<n>``), so what qemu-img and
cinder's format inspector read is the file that was checked, even if the
name is replaced meanwhile.

Anything that does not qualify yields None: Cinder then downloads the image
from Glance, which is always safe.
"""

import errno
import os
import socket
import stat
import urllib.parse

from oslo_log import log as logging

from cinder_tintri.client import EXPORT_ROOT

LOG = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class ImageFile(object):
    """An image file on an image share, checked and held open."""

    def __init__(self, share, rel, fd, size):
        self.share = share
        self.rel = rel
        self.fd = fd
        self.size = size

    @property
    def name(self):
        return self.rel.rsplit('/', 1)[-1]

    @property
    def directory(self):
        """The file's directory relative to the share ('' at its root)."""
        return self.rel.rsplit('/', 1)[0] if '/' in self.rel else ''

    @property
    def path(self):
        """A path naming the open file (readable by child processes)."""
        return '/proc/%d/fd/%d' % (os.getpid(), self.fd)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _export(share):
    """('host', '/export') of 'host:/export', or None."""
    if not share or ':' not in share:
        return None
    host, export = share.rsplit(':', 1)
    host = host.strip('[]')
    export = '/' + export.strip('/')
    if not host:
        return None
    return host, export


def _within(path, export):
    return path == export or path.startswith(export.rstrip('/') + '/')


class GlanceImageFiles(object):
    """Finds an image's file on an image share; see the module doc.

    :param image_shares: ``f() -> [(share, mount flags)]``, the configured
        image shares.
    :param volume_shares: ``f() -> [(share, mount point or None)]``, the
        backend's volume shares.
    :param mount: ``f(share, flags) -> mount point`` mounting the share if
        needed; raising means the share cannot be used.
    :param trust_provider_location: also consider the image owner's
        ``provider_location`` property.
    """

    def __init__(self, image_shares, volume_shares, mount,
                 trust_provider_location=False, resolve=socket.getaddrinfo):
        self._image_shares = image_shares
        self._volume_shares = volume_shares
        self._mount = mount
        self._trust_property = trust_provider_location
        self._resolve = resolve

    # ------------------------------------------------------------------

    def find(self, image_location, image_meta):
        """The image's :class:`ImageFile` (open; close it), or None."""
        image_id = image_meta.get('id')
        expected = image_meta.get('size')
        try:
            expected = int(expected)
        except (TypeError, ValueError):
            expected = 0
        if expected <= 0:
            LOG.debug('Image %s has no size; not cloning it from a share.',
                      image_id)
            return None
        urls = [p for p in map(parse_nfs_url,
                               self.candidate_urls(image_location, image_meta))
                if p is not None]
        if not urls:
            return None
        # The shares are looked at once per image, not once per URL.
        volumes = list(self._volume_shares())
        shares = list(self._usable_image_shares(volumes))
        for host, path in urls:
            for share, flags in shares:
                rel = self._relative(share, host, path, volumes)
                if rel is None:
                    continue
                found = self._open(share, flags, rel, expected, image_id,
                                   volumes)
                if found is not None:
                    return found
        return None

    def candidate_urls(self, image_location, image_meta):
        """nfs URLs Glance gives for the image, most specific first."""
        urls = []
        if self._trust_property:
            props = image_meta.get('properties') or {}
            for value in (image_meta.get('provider_location'),
                          props.get('provider_location')):
                if value and isinstance(value, str):
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
            if not isinstance(url, str):
                continue
            meta = loc.get('metadata')
            meta = meta if isinstance(meta, dict) else {}
            share_location = meta.get('share_location')
            mount_point = meta.get('mount_point')
            if (str(meta.get('type', '')).lower() == 'nfs'
                    and isinstance(share_location, str)
                    and isinstance(mount_point, str)):
                local = urllib.parse.urlparse(url).path
                mount_point = '/' + mount_point.strip('/')
                if _within(local, mount_point) and local != mount_point:
                    rel = local[len(mount_point.rstrip('/')) + 1:]
                    urls.append('%s/%s' % (share_location.rstrip('/'), rel))
            urls.append(url)
        if isinstance(direct_url, str):
            urls.append(direct_url)
        return urls

    # ------------------------------------------------------------------

    def _usable_image_shares(self, volumes):
        """Configured image shares that are not (near) a volume share."""
        exports = [_export(s) for s, _m in volumes]
        for share, flags in self._image_shares():
            image = _export(share)
            if image is None:
                continue
            clash = [s for (s, _m), e in zip(volumes, exports)
                     if e and self.same_host(e[0], image[0])
                     and (_within(e[1], image[1]) or _within(image[1], e[1]))]
            if clash:
                LOG.warning('Image share %(share)s is, holds or lies inside '
                            'the volume share %(vol)s; volumes are never '
                            'cloned from it.',
                            {'share': share, 'vol': clash[0]})
                continue
            yield share, flags

    def _relative(self, share, host, path, volumes):
        """``path`` relative to ``share`` if it is a file on that share."""
        image = _export(share)
        if image is None or not _within(image[1], EXPORT_ROOT):
            return None    # not a VMstore export: the array cannot clone it
        if not path.startswith(image[1].rstrip('/') + '/'):
            return None
        if not self.same_host(image[0], host):
            return None
        parts = path[len(image[1].rstrip('/')) + 1:].split('/')
        if any(p in ('', '.', '..') or '\0' in p for p in parts):
            return None
        # Never a file of a volume share, whatever the share layout.
        for vol_share, _mount in volumes:
            vol = _export(vol_share)
            if vol and self.same_host(vol[0], host) and _within(path, vol[1]):
                return None
        return '/'.join(parts)

    def same_host(self, a, b):
        if a.lower() == b.lower():
            return True
        try:
            ips_a = {i[4][0] for i in self._resolve(a, None)}
            ips_b = {i[4][0] for i in self._resolve(b, None)}
        except (OSError, UnicodeError):
            return False
        return bool(ips_a & ips_b)

    def _open(self, share, flags, rel, expected, image_id, volumes):
        try:
            mount = self._mount(share, flags)
        except Exception as e:
            LOG.warning('Cannot mount image share %(share)s: %(err)s',
                        {'share': share, 'err': e})
            return None
        if self._is_volume_mount(mount, volumes):
            LOG.warning('Image share %s is mounted where a volume share is; '
                        'not cloning from it.', share)
            return None
        try:
            fd = open_beneath(mount, rel)
        except OSError as e:
            why = ('a path component is a symbolic link'
                   if e.errno in (errno.ELOOP, errno.ENOTDIR)
                   else os.strerror(e.errno or 0))
            LOG.info('Not cloning image %(image)s from %(share)s/%(rel)s: '
                     '%(why)s.', {'image': image_id, 'share': share,
                                  'rel': rel, 'why': why})
            return None
        try:
            st = os.fstat(fd)
            reason = None
            if not stat.S_ISREG(st.st_mode):
                reason = 'not a regular file'
            elif st.st_nlink != 1:
                reason = 'the file has %d hard links' % st.st_nlink
            elif st.st_size != expected:
                reason = ('%d bytes, the image has %d'
                          % (st.st_size, expected))
            if reason:
                LOG.info('Not cloning image %(image)s from %(share)s/%(rel)s:'
                         ' %(why)s.', {'image': image_id, 'share': share,
                                       'rel': rel, 'why': reason})
                os.close(fd)
                return None
        except Exception:
            os.close(fd)
            raise
        return ImageFile(share, rel, fd, st.st_size)

    def _is_volume_mount(self, mount, volumes):
        try:
            here = os.stat(mount)
        except OSError:
            return True
        for _share, vol_mount in volumes:
            if not vol_mount:
                continue
            try:
                st = os.stat(vol_mount)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino):
                return True
        return False


def parse_nfs_url(url):
    """(host, path) of an ``nfs://host/path`` URL, else None."""
    try:
        parsed = urllib.parse.urlparse(str(url))
        host = parsed.hostname
    except ValueError:
        return None
    if parsed.scheme.lower() != 'nfs' or not host:
        return None
    return host, urllib.parse.unquote(parsed.path)


def open_beneath(mount, rel):
    """Open ``mount/rel`` read-only, following no symbolic link on the way.

    Every directory component is opened relative to the previous one with
    O_NOFOLLOW, and so is the file (non-blocking, so a FIFO cannot hang
    the caller).  Raises OSError (ELOOP or ENOTDIR for a link).
    """
    parts = rel.split('/')
    dfd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=dfd)
    finally:
        os.close(dfd)
