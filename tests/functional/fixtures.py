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
"""Fixtures that make a VMstore share real on a machine without NFS.

* ``XfsFixture``: a loopback XFS with reflink (O(1) clones like the array).
* ``ShareFixture``: bind-mounts a directory where os-brick expects the NFS
  mount of a share (``<mount_point_base>/<md5(share)>``), so the real
  NfsDriver code paths run unchanged.

Both need root and undo everything they did on cleanup, also on failure.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

import fixtures
import testtools

CMD_TIMEOUT = 60


def is_root():
    return os.geteuid() == 0


def have(cmd):
    return (shutil.which(cmd) or os.path.exists('/sbin/' + cmd)
            or os.path.exists('/usr/sbin/' + cmd))


def skip_unless_root(test):
    """Decorator: skip a test that needs mounts when not root."""
    return testtools.skipUnless(is_root(), 'needs root for mounts')(test)


def _run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          timeout=CMD_TIMEOUT).stdout


def mounted(path):
    path = os.path.realpath(path)
    with open('/proc/self/mounts') as f:
        return any(line.split()[1] == path for line in f)


def umount(path):
    """Unmount ``path`` if mounted; lazy unmount as a last resort."""
    if not mounted(path):
        return
    try:
        _run('umount', path)
    except subprocess.SubprocessError:
        _run('umount', '-l', path)


def share_mount_point(mount_point_base, share):
    """Where os-brick's RemotefsClient mounts ``share``."""
    digest = hashlib.md5(share.encode('utf-8'),
                         usedforsecurity=False).hexdigest()
    return os.path.join(mount_point_base, digest)


class XfsFixture(fixtures.Fixture):
    """A loopback XFS made with ``-m reflink=1``; ``.path`` is its root."""

    def __init__(self, size_mb=2048, parent=None):
        super().__init__()
        self.size_mb = size_mb
        self.parent = parent

    def _setUp(self):
        if not is_root():
            raise testtools.TestCase.skipException('loopback XFS needs root')
        if not have('mkfs.xfs'):
            raise testtools.TestCase.skipException('mkfs.xfs missing '
                                                   '(Debian xfsprogs)')
        work = tempfile.mkdtemp(prefix='tintri-xfs-', dir=self.parent)
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        image = os.path.join(work, 'disk.img')
        with open(image, 'wb') as f:
            f.truncate(self.size_mb * 1024 * 1024)
        _run('mkfs.xfs', '-q', '-m', 'reflink=1', image)
        self.path = os.path.join(work, 'mnt')
        os.mkdir(self.path)
        _run('mount', '-o', 'loop', image, self.path)
        self.addCleanup(umount, self.path)


class ShareFixture(fixtures.Fixture):
    """Make ``share`` look NFS-mounted at os-brick's mount point.

    :param share: the share string as in nfs_shares_config,
                  e.g. ``127.0.0.1:/tintri/cinder``
    :param source_dir: the directory that holds the share's files (for the
                       simulator: ``<sim.datastore>/<submount>``)
    :param mount_point_base: ``nfs_mount_point_base`` of the driver
    """

    def __init__(self, share, source_dir, mount_point_base):
        super().__init__()
        self.share = share
        self.source_dir = source_dir
        self.mount_point_base = mount_point_base

    def _setUp(self):
        if not is_root():
            raise testtools.TestCase.skipException('bind mounts need root')
        os.makedirs(self.source_dir, exist_ok=True)
        self.mount_point = share_mount_point(self.mount_point_base,
                                             self.share)
        created = not os.path.isdir(self.mount_point)
        os.makedirs(self.mount_point, exist_ok=True)
        if created:
            self.addCleanup(os.rmdir, self.mount_point)
        _run('mount', '--bind', self.source_dir, self.mount_point)
        self.addCleanup(umount, self.mount_point)
