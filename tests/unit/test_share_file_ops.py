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
"""File work on the share done in process, and its root-helper fallback.

Creating a volume file, setting its mode and removing it are system
calls on a descriptor opened without following links (issue 15.1: each
``truncate``/``chmod``/``rm`` subprocess cost 5 to 25 ms).  Where this
process is denied, the driver falls back to cinder's root helper.  The
denial is real: an unprivileged child process (setuid nobody) against
root's files, and, for the driver as root, files made immutable with
``chattr +i`` (EPERM even for root).
"""

import errno
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import tempfile

from cinder import exception
from oslo_concurrency import processutils
from oslo_utils import units
import testtools

from cinder_tintri import share_files
from tests.unit import driver_base

GiB = units.Gi


def _in_child(fn):
    """fn() in a forked child (its limits and identity stay there)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            out = json.dumps(fn())
        except BaseException as e:
            out = json.dumps('child failed: %r' % e)
        os.write(wfd, out.encode())
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, 'rb') as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data.decode())


class ShareFileOpsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='tintri-fileops-')
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_create_sparse(self):
        p = self.path('volume-a')
        self.assertTrue(share_files.create_sparse(p, 3 * GiB))
        st = os.lstat(p)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(3 * GiB, st.st_size)
        self.assertLess(st.st_blocks * 512, 1024 * 1024)   # sparse

    def test_create_refuses_what_exists(self):
        target = self.path('other-tenant')
        with open(target, 'wb') as f:
            f.write(b'SECRET')
        os.symlink(target, self.path('volume-link'))
        with open(self.path('volume-file'), 'wb') as f:
            f.write(b'KEEP')
        for name in ('volume-link', 'volume-file'):
            exc = self.assertRaises(share_files.ShareFileError,
                                    share_files.create_sparse,
                                    self.path(name), GiB)
            self.assertIn('already exists', exc.reason)
        with open(target, 'rb') as f:
            self.assertEqual(b'SECRET', f.read())
        self.assertEqual(6, os.stat(target).st_size)
        with open(self.path('volume-file'), 'rb') as f:
            self.assertEqual(b'KEEP', f.read())

    def test_create_that_fails_leaves_nothing(self):
        """ftruncate refused (EFBIG past the file size limit): no file."""
        def child():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (GiB, GiB))
            try:
                share_files.create_sparse(self.path('volume-big'), 2 * GiB)
            except OSError as e:
                return errno.errorcode[e.errno]
            return 'created'

        self.assertEqual('EFBIG', _in_child(child))
        self.assertEqual([], os.listdir(self.dir))

    def test_permissions(self):
        p = self.path('volume-a')
        share_files.create_sparse(p, GiB)
        os.chmod(p, 0o600)
        self.assertTrue(share_files.set_rw_permissions(p, secure=False))
        self.assertEqual(0o666, stat.S_IMODE(os.stat(p).st_mode))
        os.chmod(p, 0o4755)
        self.assertTrue(share_files.set_rw_permissions(p, secure=True))
        self.assertEqual(0o660, stat.S_IMODE(os.stat(p).st_mode))

    def test_permissions_never_through_a_link_or_on_a_fifo(self):
        target = self.path('other-tenant')
        with open(target, 'wb') as f:
            f.write(b'SECRET')
        os.chmod(target, 0o600)
        os.symlink(target, self.path('volume-link'))
        os.mkfifo(self.path('volume-fifo'))
        for name in ('volume-link', 'volume-fifo'):
            self.assertRaises(share_files.ShareFileError,
                              share_files.set_rw_permissions,
                              self.path(name), False)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(target).st_mode))

    def test_remove(self):
        target = self.path('other-tenant')
        with open(target, 'wb') as f:
            f.write(b'SECRET')
        os.symlink(target, self.path('volume-link'))
        self.assertTrue(share_files.remove(self.path('volume-link')))
        self.assertTrue(share_files.remove(self.path('volume-missing')))
        self.assertEqual(['other-tenant'], os.listdir(self.dir))
        os.mkdir(self.path('volume-dir'))
        self.assertRaises(OSError, share_files.remove,
                          self.path('volume-dir'))

    def test_unprivileged_process_is_told_to_use_the_helper(self):
        """As cinder runs: not root, the share's files are root's."""
        if os.geteuid() != 0:
            self.skipTest('needs root to make root-owned files and setuid')
        share = self.path('share')
        os.mkdir(share, 0o755)
        os.chmod(self.dir, 0o755)
        owned = os.path.join(share, 'volume-root')
        with open(owned, 'wb') as f:
            f.write(b'ROOT')
        os.chmod(owned, 0o644)

        def child():
            os.setgid(65534)
            os.setuid(65534)
            new = os.path.join(share, 'volume-new')
            return [share_files.create_sparse(new, GiB),
                    share_files.set_rw_permissions(owned, False),
                    share_files.remove(owned)]

        self.assertEqual([False, False, False], _in_child(child))
        self.assertEqual(['volume-root'], os.listdir(share))
        self.assertEqual(0o644, stat.S_IMODE(os.stat(owned).st_mode))


class DriverFileOpsTest(driver_base.DriverTestCase):
    """The driver's create/delete run no subprocess unless denied."""

    def setUp(self):
        super().setUp()
        self.commands = []
        real = self.drv._execute

        def recording(*cmd, **kwargs):
            self.commands.append(cmd[0])
            return real(*cmd, **kwargs)

        self.drv._execute = recording

    def test_create_and_delete_run_no_subprocess(self):
        vol = self.new_volume(size=2)
        st = os.lstat(self.path_of(vol))
        self.assertEqual(2 * GiB, st.st_size)
        self.assertEqual(0o660, stat.S_IMODE(st.st_mode))   # secure: true
        self.drv.delete_volume(vol)
        self.assertNotIn(vol.name, self.share_entries())
        self.assertEqual([], self.commands)

    def _immutable(self, path):
        if os.geteuid() != 0:
            self.skipTest('chattr +i needs root')
        subprocess.run(['chattr', '+i', path], check=True, timeout=30)
        self.addCleanup(subprocess.run, ['chattr', '-i', path],
                        timeout=30)

    def test_denied_falls_back_to_the_root_helper(self):
        vol = self.new_volume(size=1)
        path = self.path_of(vol)
        os.chmod(path, 0o600)
        self._immutable(path)
        # EPERM in process, then cinder's helper: chmod, denied as well.
        exc = self.assertRaises(processutils.ProcessExecutionError,
                                self.drv._set_rw_permissions, path)
        self.assertIn('not permitted', exc.stderr)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.delete_volume, vol)
        self.assertIn('not permitted', str(exc))
        self.assertEqual(['chmod', 'rm'], self.commands)
        self.assertEqual(0o600, stat.S_IMODE(os.lstat(path).st_mode))
        self.assertIn(vol.name, self.share_entries())

    def test_create_in_a_denied_directory_uses_the_helper(self):
        share_dir = os.path.dirname(self.path_of(self.create_volume()))
        self._immutable(share_dir)
        vol = self.create_volume(size=1)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_volume, vol)
        self.assertEqual(['truncate'], self.commands)
        self.assertEqual([], self.share_entries())
