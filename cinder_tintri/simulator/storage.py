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
"""File-level helpers: point-in-time copies and clone tagging.

A VMstore snapshot or clone costs O(1) on the array.  The simulator gets
the same property from reflinks (``ioctl(FICLONE)``) when the filesystem
holding its root supports them (XFS with ``reflink=1``, btrfs), and falls
back to a sparse-aware copy (``SEEK_DATA``/``SEEK_HOLE``) elsewhere.
"""

import errno
import fcntl
import os

FICLONE = 0x40049409
CHUNK = 1024 * 1024

# Extended attribute put on every file a clone creates, naming the snapshot
# it came from.  Lets the simulator tell its clone from an unrelated file
# that later reuses the inode number.
CLONE_XATTR = 'user.tintri_sim.clone_of'

_NO_REFLINK = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL,
               errno.ENOSYS, errno.EBADF, errno.EPERM)


def reflink(src, dst):
    """Clone ``src`` into a new file ``dst`` with FICLONE; raise OSError."""
    with open(src, 'rb') as fsrc:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.ioctl(fd, FICLONE, fsrc.fileno())
        except OSError:
            os.close(fd)
            os.unlink(dst)
            raise
        os.close(fd)


def _copy_range(sfd, dfd, start, end):
    pos = start
    while pos < end:
        data = os.pread(sfd, min(CHUNK, end - pos), pos)
        if not data:
            break
        os.pwrite(dfd, data, pos)
        pos += len(data)


def sparse_copy(src, dst):
    """Copy ``src`` to a new file ``dst`` preserving holes."""
    with open(src, 'rb') as fsrc:
        sfd = fsrc.fileno()
        size = os.fstat(sfd).st_size
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            pos = 0
            while pos < size:
                try:
                    data = os.lseek(sfd, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:
                        break  # only a hole up to EOF
                    if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                        _copy_range(sfd, dfd, pos, size)  # no hole support
                        break
                    raise
                hole = os.lseek(sfd, data, os.SEEK_HOLE)
                _copy_range(sfd, dfd, data, hole)
                pos = hole
            os.ftruncate(dfd, size)
        except BaseException:
            os.close(dfd)
            os.unlink(dst)
            raise
        os.close(dfd)


def copy_file(src, dst, use_reflink=True):
    """Point-in-time copy of ``src`` to the new file ``dst``.

    Returns ``'reflink'`` or ``'copy'`` (the method that was used).
    """
    if use_reflink:
        try:
            reflink(src, dst)
            return 'reflink'
        except OSError as exc:
            if exc.errno not in _NO_REFLINK:
                raise
    sparse_copy(src, dst)
    return 'copy'


def allocated_bytes(st):
    return st.st_blocks * 512


def tag(path, value):
    """Set the clone tag; return False when xattrs are unsupported."""
    try:
        os.setxattr(path, CLONE_XATTR, value.encode('utf-8'),
                    follow_symlinks=False)
        return True
    except OSError:
        return False


def tag_matches(path, value):
    try:
        found = os.getxattr(path, CLONE_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return True  # cannot tell; trust the inode
        return False
    return found == value.encode('utf-8')
