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
"""Files on a share, treated as untrusted input.

A volume's file is ``<mount>/<volume name>``.  What is found there is
checked before anything is done to it: it must be a regular file, not a
symbolic link (to another volume or out of the share), a directory, a
FIFO or a device, and it is never looked at through a link.  Failures of
the share itself (read-only, full, permission denied, stale handles) are
described in words an operator can act on.

Nothing here knows Cinder's exceptions: callers turn :class:`ShareFileError`
into the exception their operation raises.
"""

import errno
import os
import stat

# errno -> words an operator understands.
_ERRNO_WORDS = {
    errno.EROFS: 'the share is read-only',
    errno.ENOSPC: 'the share is full',
    errno.EDQUOT: 'the share is over quota',
    errno.EACCES: 'permission denied on the share',
    errno.EPERM: 'operation not permitted on the share',
    errno.ESTALE: 'stale NFS file handle',
    errno.EIO: 'I/O error on the share',
    errno.ENOENT: 'no such file',
    errno.EISDIR: 'is a directory',
    errno.ENOTDIR: 'a path component is not a directory',
    errno.ELOOP: 'is a symbolic link',
}


class ShareFileError(Exception):
    """A file on a share cannot be used; ``reason`` says why."""

    def __init__(self, reason, errno_=None):
        self.reason = reason
        self.errno = errno_
        super().__init__(reason)


def describe(err):
    """'the share is full (ENOSPC)' for an OSError."""
    code = getattr(err, 'errno', None)
    name = errno.errorcode.get(code, str(code)) if code else None
    words = _ERRNO_WORDS.get(code) or (getattr(err, 'strerror', None)
                                       or str(err))
    return '%s (%s)' % (words, name) if name else words


def kind_of(mode):
    """What a file mode is, in words."""
    if stat.S_ISLNK(mode):
        return 'a symbolic link'
    if stat.S_ISDIR(mode):
        return 'a directory'
    if stat.S_ISFIFO(mode):
        return 'a FIFO'
    if stat.S_ISSOCK(mode):
        return 'a socket'
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return 'a device'
    if stat.S_ISREG(mode):
        return 'a regular file'
    return 'not a regular file'


def check_name(name):
    """A file name of one component, no '..', no NUL."""
    if (not name or name in ('.', '..') or '/' in name or '\0' in name):
        raise ShareFileError('%r is not a plain file name' % (name,))
    return name


def lstat_regular(path, missing_ok=False):
    """lstat of ``path`` if it is a regular file; never follows links.

    Returns None for a missing file when ``missing_ok``.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError as e:
        if missing_ok:
            return None
        raise ShareFileError('%s is missing' % path, e.errno)
    except OSError as e:
        raise ShareFileError('%s: %s' % (path, describe(e)), e.errno)
    if not stat.S_ISREG(st.st_mode):
        what = kind_of(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            try:
                what += ' to %s' % os.readlink(path)
            except OSError:
                pass
        raise ShareFileError('%s is %s, not a regular file' % (path, what))
    return st


def fresh_stat(path):
    """fstat of the regular file ``path``, opened without following links.

    Opening makes an NFS client revalidate its cached attributes
    (close-to-open consistency), so the mtime and size are the server's,
    not what an lstat may answer from the attribute cache.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC)
    except OSError as e:
        raise ShareFileError('%s: %s' % (path, describe(e)), e.errno)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ShareFileError('%s is %s, not a regular file'
                             % (path, kind_of(st.st_mode)))
    return st


def grow(path, size):
    """Grow the regular file ``path`` to ``size`` bytes (sparse).

    Opened without following links and checked on the open descriptor,
    so a file swapped for a link after a check is never written through.
    Raises ShareFileError; PermissionError is re-raised as such so a
    caller may retry with privileges.
    """
    fd, st = _open_regular(path, os.O_WRONLY)
    try:
        if st.st_size < size:
            try:
                os.ftruncate(fd, size)
            except OSError as e:
                raise ShareFileError('cannot grow %s: %s'
                                     % (path, describe(e)), e.errno)
    finally:
        os.close(fd)


def landed_file(directory, name):
    """The regular file an array copy or clone left in ``directory``.

    Returns ``(path or None, entries)``, ``entries`` being what the
    directory holds.  The array names the file after its source; a
    ``name`` that is not a plain file name is not used as a path.  When
    that name is not there, the one regular file of the directory is
    taken.  Links are never followed.
    """
    candidates = []
    try:
        candidates.append(os.path.join(directory, check_name(name)))
    except ShareFileError:
        pass
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        entries = []
    if len(entries) == 1:
        candidates.append(os.path.join(directory, entries[0]))
    for path in candidates:
        try:
            if lstat_regular(path, missing_ok=True):
                return path, entries
        except ShareFileError:
            continue
    return None, entries


def _open_regular(path, flags):
    """Descriptor of the regular file ``path``, opened without links.

    PermissionError is re-raised as such (the caller may retry with
    privileges); other failures become ShareFileError.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC)
    except PermissionError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ShareFileError('%s is a symbolic link, not a regular '
                                 'file' % path, e.errno)
        raise ShareFileError('%s: %s' % (path, describe(e)), e.errno)
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise ShareFileError('%s: %s' % (path, describe(e)), e.errno)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ShareFileError('%s is %s, not a regular file'
                             % (path, kind_of(st.st_mode)))
    return fd, st


def create_sparse(path, size):
    """Create ``path`` as a new sparse file of ``size`` bytes.

    Nothing may exist at ``path`` (O_EXCL: a planted link or file is
    never followed or reused).  Returns False, having done nothing, when
    this process may not create files there (the caller falls back to
    its root helper); raises ShareFileError when something exists at
    ``path`` and OSError for other failures, after removing the file it
    made.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except PermissionError:
        return False
    except FileExistsError as e:
        raise ShareFileError('%s already exists; refusing to reuse it'
                             % path, e.errno)
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    os.close(fd)
    return True


def set_rw_permissions(path, secure):
    """chmod 660 (``secure``) or ugo+rw, on the file, never a link.

    Returns False when this process may not change the mode (not the
    owner): the caller falls back to its root helper.  Raises
    ShareFileError when ``path`` is not a regular file.
    """
    try:
        fd, st = _open_regular(path, os.O_RDONLY)
    except PermissionError:
        return False
    try:
        mode = 0o660 if secure else stat.S_IMODE(st.st_mode) | 0o666
        os.fchmod(fd, mode)
    except PermissionError:
        return False
    finally:
        os.close(fd)
    return True


def remove(path):
    """``rm -f path`` in this process: a missing file is success.

    Returns False when this process may not remove it (the caller falls
    back to its root helper); other failures raise OSError.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        return False
    return True


def read_only(mount):
    """True when the file system mounted at ``mount`` is read-only."""
    try:
        return bool(os.statvfs(mount).f_flag & os.ST_RDONLY)
    except OSError:
        return False
