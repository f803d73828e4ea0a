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
"""Shares that do not behave (issue 18, items 3 to 7 and 12).

A share's mount that is gone, volume files that are links or directories,
read-only and full shares, stale handles, a peer's sweep during a long
operation, a manage interrupted after its rename.  The driver runs
against the simulator (tests.unit.driver_base); the share is a directory
the simulator serves.  Where the fault cannot be made real here (ENOSPC,
EACCES, a stale NFS handle) the one failing os call is injected.
"""

import errno
import os
import subprocess
import tempfile
import time
from unittest import mock

from cinder import exception
from cinder.tests.unit import utils as test_utils
from oslo_utils import units

from cinder_tintri import driver as tdriver
from cinder_tintri import manage as tmanage
from cinder_tintri import pool_stats
from cinder_tintri import temporaries
from tests.unit import driver_base
from tests.unit import test_images

MiB = units.Mi
GiB = units.Gi
SNAP = 'POST /api/v310/cinder/snapshot'
CLONE = 'POST /api/v310/cinder/clone'


def _in_mount_table(path):
    with open('/proc/self/mounts') as f:
        return any(line.split()[1] == path for line in f)


class HostileShareBase(driver_base.DriverTestCase):

    def mount_point(self, share=None):
        return self.drv._get_mount_point_for_share(share or self.share)

    mount_down = False

    def _fake_mount(self, client, share, flags=None):
        if self.mount_down:
            raise OSError(errno.EHOSTDOWN, 'NFS server down')
        mount_point = client.get_mount_point(share)
        if _in_mount_table(mount_point):
            return
        if (os.path.isdir(mount_point) and not os.path.islink(mount_point)
                and not os.listdir(mount_point)):
            os.rmdir(mount_point)   # an empty mount point: mount over it
        super()._fake_mount(client, share, flags)

    def lose_mount(self, remountable=False):
        """The share's mount is gone; it comes back only if remountable."""
        os.unlink(self.mount_point())
        os.mkdir(self.mount_point())   # the empty mount point directory
        self.mount_down = not remountable

    def restore_mount(self):
        self.mount_down = False

    def snapshots_of(self, vol):
        return [s for s in self.sim.inventory()['snapshots']
                if s['vmUuid']['uuid'] == vol.id]

    def tmp_entries(self):
        return [e for e in self.share_entries()
                if e.startswith(tdriver.TMP_PREFIX)]


class UnmountedShareTest(HostileShareBase):
    """18.3: nothing is done to an empty mount point."""

    def setUp(self):
        super().setUp()
        self.vol = self.new_volume(size=1)
        self.write(self.vol, b'V' * MiB)
        self.snap = self.create_snapshot(self.vol)

    def test_delete_fails_and_keeps_the_file(self):
        self.lose_mount()
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.delete_volume, self.vol)
        self.assertIn('cannot be mounted', str(exc))
        self.assertIn(self.share, str(exc))
        self.assertTrue(os.path.exists(self.path_of(self.vol)))
        # Once the share is back the retried delete removes the file.
        self.restore_mount()
        self.drv.delete_volume(self.vol)
        self.assertFalse(os.path.exists(self.path_of(self.vol)))

    def test_delete_remounts_a_lost_mount(self):
        self.lose_mount(remountable=True)
        self.drv.delete_volume(self.vol)
        self.assertFalse(os.path.exists(self.path_of(self.vol)))

    def test_delete_of_failed_create_fails_when_a_share_is_down(self):
        failed = test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=1, provider_location=None)
        self.lose_mount()
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.delete_volume, failed)

    def test_extend_fails_cleanly(self):
        self.lose_mount()
        exc = self.assertRaises(exception.ExtendVolumeError,
                                self.drv.extend_volume, self.vol, 3)
        self.assertIn('cannot be mounted', str(exc))
        self.restore_mount()
        self.assertSizeGiB(self.vol, 1)

    def test_snapshot_fails_without_array_work(self):
        self.lose_mount()
        self.sim.reset_counts()
        snap = test_utils.create_snapshot(self.ctxt, self.vol.id)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_snapshot, snap)
        self.assertEqual(0, self.sim.request_counts().get(SNAP, 0))
        self.assertEqual(1, len(self.snapshots_of(self.vol)))

    def test_revert_fails_without_array_work(self):
        self.write(self.vol, b'W' * MiB)
        self.lose_mount()
        self.sim.reset_counts()
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.revert_to_snapshot, self.ctxt, self.vol,
                          self.snap)
        self.assertEqual(0, self.sim.request_counts().get(CLONE, 0))
        self.restore_mount()
        self.assertEqual(b'W' * MiB, self.read(self.vol, MiB))

    def test_clone_source_on_unmounted_share(self):
        self.lose_mount()
        new = self.create_volume(size=1)
        self.sim.reset_counts()
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_cloned_volume, new, self.vol)
        self.assertEqual(0, self.sim.request_counts().get(SNAP, 0))

    def test_manage_on_unmounted_share(self):
        name = 'user-disk.img'
        with open(os.path.join(self.sim.datastore, 'cinder', name),
                  'wb') as f:
            f.truncate(GiB)
        self.lose_mount()
        vol = test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=0, status='managing')
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.manage_existing_get_size, vol,
                                {'source-name': name})
        self.assertIn('cannot be mounted', str(exc))
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.manage_existing, vol,
                          {'source-name': name})
        self.assertTrue(os.path.exists(os.path.join(
            self.sim.datastore, 'cinder', name)))


class NotARegularFileTest(HostileShareBase):
    """18.4: links and directories at a volume's name are refused."""

    def setUp(self):
        super().setUp()
        self.victim = self.new_volume(size=1)
        self.write(self.victim, b'VICTIM' * 1000)
        self.vol = self.new_volume(size=1)
        self.snap = self.create_snapshot(self.vol)
        self.outside = tempfile.NamedTemporaryFile(delete=False)
        self.outside.write(b'OUTSIDE')
        self.outside.close()
        self.addCleanup(os.unlink, self.outside.name)

    def replace_with(self, kind):
        path = self.path_of(self.vol)
        os.unlink(path)
        if kind == 'link-to-volume':
            os.symlink(self.path_of(self.victim), path)
        elif kind == 'link-out':
            os.symlink(self.outside.name, path)
        elif kind == 'directory':
            os.mkdir(path)
            with open(os.path.join(path, 'x'), 'wb') as f:
                f.write(b'x')
        elif kind == 'fifo':
            os.mkfifo(path)
        return path

    def state(self):
        st = os.stat(self.path_of(self.victim))
        with open(self.path_of(self.victim), 'rb') as f:
            data = f.read(6000)
        return (st.st_size, data, os.stat(self.outside.name).st_size,
                sorted(s['uuid']['uuid']
                       for s in self.sim.inventory()['snapshots']),
                self.share_entries())

    def _check_all(self, kind):
        glance = test_images.ImageService()
        path = self.replace_with(kind)
        before = self.state()
        ops = [
            ('extend', exception.ExtendVolumeError,
             lambda: self.drv.extend_volume(self.vol, 4)),
            ('snapshot', exception.VolumeBackendAPIException,
             lambda: self.drv.create_snapshot(test_utils.create_snapshot(
                 self.ctxt, self.vol.id))),
            ('revert', exception.VolumeBackendAPIException,
             lambda: self.drv.revert_to_snapshot(self.ctxt, self.vol,
                                                 self.snap)),
            ('clone', exception.VolumeBackendAPIException,
             lambda: self.drv.create_cloned_volume(
                 self.create_volume(size=1), self.vol)),
            ('delete', exception.VolumeBackendAPIException,
             lambda: self.drv.delete_volume(self.vol)),
            # a volume's data leaves the share: to Glance, to an attacher
            ('upload', exception.VolumeBackendAPIException,
             lambda: self.drv.copy_volume_to_image(
                 self.ctxt, self.vol, glance,
                 glance.add(self.outside.name, 'raw'))),
            ('attach', exception.VolumeBackendAPIException,
             lambda: self.drv.initialize_connection(
                 self.vol, {'host': 'compute-1'})),
        ]
        for what, exc_class, op in ops:
            exc = self.assertRaises(exc_class, op)
            self.assertIn(self.vol.id, str(exc), what)
            self.assertIn('not a regular file', str(exc), what)
            self.assertEqual(before, self.state(), what)
            self.assertTrue(os.path.lexists(path), what)
        self.assertEqual({}, glance.uploaded)

    def test_symlink_to_another_volume(self):
        self._check_all('link-to-volume')

    def test_symlink_out_of_the_share(self):
        self._check_all('link-out')

    def test_directory(self):
        self._check_all('directory')

    def test_fifo(self):
        self._check_all('fifo')

    def test_new_volume_refuses_a_planted_link(self):
        new = self.create_volume(size=1)
        os.symlink(self.path_of(self.victim), self.path_of(new))
        before = self.state()
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_volume, new)
        self.assertEqual(before, self.state())

    def test_extend_grows_sparsely_without_qemu_img(self):
        with mock.patch('cinder.image.image_utils.resize_image') as resize:
            self.drv.extend_volume(self.victim, 3)
        resize.assert_not_called()
        self.assertSizeGiB(self.victim, 3)
        self.assertEqual(b'VICTIM' * 1000, self.read(self.victim, 6000))


class ShareFaultTest(HostileShareBase):
    """18.5: read-only, full and forbidden shares give Cinder errors."""

    def setUp(self):
        super().setUp()
        self.src = self.new_volume(size=1)
        self.write(self.src, b'S' * MiB)
        self.snap = self.create_snapshot(self.src)

    def _rename_failing(self, err):
        real = os.rename

        def rename(src, dst, *a, **kw):
            if os.path.basename(str(dst)).startswith('volume-') and \
                    tdriver.TMP_PREFIX in str(src):
                raise OSError(err, os.strerror(err))
            return real(src, dst, *a, **kw)
        return mock.patch('os.rename', side_effect=rename)

    def _check_rename_fault(self, err, name):
        for op in ('from_snapshot', 'clone', 'revert'):
            before = sorted(s['uuid']['uuid']
                            for s in self.sim.inventory()['snapshots'])
            vol = self.create_volume(size=2)
            with self._rename_failing(err):
                if op == 'from_snapshot':
                    call = (self.drv.create_volume_from_snapshot, vol,
                            self.snap)
                elif op == 'clone':
                    call = (self.drv.create_cloned_volume, vol, self.src)
                else:
                    call = (self.drv.revert_to_snapshot, self.ctxt,
                            self.src, self.snap)
                exc = self.assertRaises(exception.VolumeBackendAPIException,
                                        *call)
            self.assertIn(name, str(exc), op)
            self.assertEqual([], self.tmp_entries(), op)
            self.assertNotIn(vol.name, self.share_entries(), op)
            self.drv.get_volume_stats(refresh=True)   # late auto-deletes
            after = sorted(s['uuid']['uuid']
                           for s in self.sim.inventory()['snapshots'])
            self.assertEqual(before, after, op)
            self.assertEqual(b'S' * MiB, self.read(self.src, MiB))

    def test_rename_erofs(self):
        self._check_rename_fault(errno.EROFS, 'EROFS')

    def test_rename_enospc(self):
        self._check_rename_fault(errno.ENOSPC, 'ENOSPC')

    def test_rename_eacces(self):
        self._check_rename_fault(errno.EACCES, 'EACCES')

    def test_create_volume_on_full_share(self):
        vol = self.create_volume(size=1)
        with mock.patch.object(self.drv, '_create_sparsed_file',
                               side_effect=OSError(errno.ENOSPC, 'full')):
            exc = self.assertRaises(exception.VolumeBackendAPIException,
                                    self.drv.create_volume, vol)
        self.assertIn('ENOSPC', str(exc))
        self.assertNotIn(vol.name, self.share_entries())

    def test_read_only_share_refused_before_array_work(self):
        if os.geteuid() != 0:
            self.skipTest('a read-only bind mount needs root')
        mount = self.mount_point()
        target = os.readlink(mount)
        os.unlink(mount)
        os.mkdir(mount)
        subprocess.run(['mount', '--bind', target, mount], check=True,
                       timeout=30)
        self.addCleanup(subprocess.run, ['umount', mount], timeout=30)
        subprocess.run(['mount', '-o', 'remount,bind,ro', mount],
                       check=True, timeout=30)
        self.sim.reset_counts()
        vol = self.create_volume(size=1)
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.create_volume_from_snapshot, vol,
                                self.snap)
        self.assertIn('read-only', str(exc))
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.create_volume, vol)
        self.assertIn('read-only', str(exc))
        self.assertEqual(0, self.sim.request_counts().get(CLONE, 0))
        self.assertEqual([], self.tmp_entries())


class StatsTest(HostileShareBase):
    """18.6: one unreadable file does not take the pools away."""

    def _stats_with_failing_lstat(self, err):
        # Files are only walked when the array reports no provisioned space.
        self.sim.omit_stat_fields(['spaceProvisionedGiB'])
        self.new_volume(size=1)
        bad = self.new_volume(size=2)
        real = os.lstat

        def lstat(path, *a, **kw):
            if str(path).endswith(bad.name):
                raise OSError(err, os.strerror(err), str(path))
            return real(path, *a, **kw)
        with mock.patch('os.lstat', side_effect=lstat), \
                mock.patch.object(pool_stats.LOG, 'warning') as warn:
            stats = self.drv.get_volume_stats(refresh=True)
        self.assertEqual([self.share],
                         [p['pool_name'] for p in stats['pools']])
        self.assertEqual(1.0, stats['pools'][0]['provisioned_capacity_gb'])
        self.assertTrue(any(errno.errorcode[err] in str(c)
                            for c in warn.call_args_list),
                        warn.call_args_list)

    def test_estale(self):
        self._stats_with_failing_lstat(errno.ESTALE)

    def test_eio(self):
        self._stats_with_failing_lstat(errno.EIO)


class SweepOwnershipTest(HostileShareBase):
    """18.7: a running operation's temporary is never swept."""

    MOCK_TOOZ = False   # real (file) locks: ownership is a held lock

    def setUp(self):
        super().setUp()
        self.peer = self._peer_driver()

    def _peer_driver(self):
        with mock.patch.object(driver_base, 'HOST', 'other-host@tintri'):
            peer = self.make_driver(self.flags)
        self.assertNotEqual(peer._temps.tag, self.drv._temps.tag)
        return peer

    def _age(self, path, seconds):
        old = time.time() - seconds
        for root, dirs, files in os.walk(path):
            for name in files + dirs:
                os.utime(os.path.join(root, name), (old, old))
        os.utime(path, (old, old))

    def test_owned_temporary_survives_any_idle_time(self):
        mount = os.path.join(self.sim.datastore, 'cinder')
        name = self.drv._tmp_dir_name_for('volume-long')
        path = os.path.join(mount, name)
        os.mkdir(path)
        with open(os.path.join(path, 'image-x'), 'wb') as f:
            f.write(b'partial download')
        self._age(path, 5 * temporaries.FOREIGN_IDLE)
        self.peer._remove_stale_temporaries(startup=False)
        self.peer._remove_stale_temporaries(startup=True)
        self.assertTrue(os.path.isdir(path))
        # The owner crashes: its lock goes, the abandoned temporary too.
        lock = self.drv._temps._claims.pop(name)
        lock.release()
        self.peer._remove_stale_temporaries(startup=False)
        self.assertFalse(os.path.exists(path))

    def test_released_foreign_temporary_waits_until_idle(self):
        mount = os.path.join(self.sim.datastore, 'cinder')
        name = self.drv._tmp_dir_name_for('volume-done')
        path = os.path.join(mount, name)
        os.mkdir(path)
        self.drv._tmp_release(name)
        self.peer._remove_stale_temporaries(startup=False)
        self.assertTrue(os.path.isdir(path))
        self._age(path, temporaries.FOREIGN_IDLE + 60)
        self.peer._remove_stale_temporaries(startup=False)
        self.assertFalse(os.path.exists(path))

    def test_image_download_longer_than_the_idle_limit(self):
        # A slow Glance: the download is stuck while a peer sweeps with
        # the temporary looking idle for hours.
        from tests.unit import test_images
        images = test_images.ImageService()
        src = os.path.join(self.tmp, 'img.raw')
        with open(src, 'wb') as f:
            f.write(b'I' * MiB)
        image_id = images.add(src, 'raw')['id']
        vol = self.new_volume(size=1)
        swept = []
        real_fetch = __import__('cinder.image.image_utils',
                                fromlist=['x']).fetch_to_raw

        def slow_fetch(ctxt, service, img, dest, *a, **kw):
            tmp = os.path.dirname(dest)
            open(dest, 'wb').close()
            self._age(tmp, 10 * temporaries.FOREIGN_IDLE)
            swept.extend(self.peer._remove_stale_temporaries(startup=False))
            self.assertTrue(os.path.isdir(tmp))
            return real_fetch(ctxt, service, img, dest, *a, **kw)
        with mock.patch('cinder.image.image_utils.fetch_to_raw',
                        side_effect=slow_fetch):
            self.drv.copy_image_to_volume(self.ctxt, vol, images, image_id)
        self.assertEqual([], swept)
        self.assertEqual(b'I' * MiB, self.read(vol, MiB))
        self.assertEqual([], self.tmp_entries())


class InterruptedManageTest(HostileShareBase):
    """18.12: a crash after the manage rename is undone."""

    def _crashed_manage(self, name='user-disk.img'):
        path = os.path.join(self.sim.datastore, 'cinder', name)
        with open(path, 'wb') as f:
            f.write(b'USER' * 1000)
            f.truncate(GiB)
        vol = test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=0, status='managing')
        with mock.patch.object(self.drv, '_set_rw_permissions',
                               side_effect=KeyboardInterrupt):
            self.assertRaises(KeyboardInterrupt, self.drv.manage_existing,
                              vol, {'source-name': name})
        self.assertEqual([vol.name], self.share_entries())
        vol.refresh()
        return vol, path

    def test_delete_of_error_managing_volume_gives_the_file_back(self):
        vol, path = self._crashed_manage()
        vol.status = 'error_managing_deleting'
        vol.save()
        self.drv.delete_volume(vol)
        self.assertEqual(['user-disk.img'], self.share_entries())
        with open(path, 'rb') as f:
            self.assertEqual(b'USER' * 1000, f.read(4000))

    def test_next_start_gives_the_file_back(self):
        vol, path = self._crashed_manage()
        vol.status = 'error_managing'
        vol.save()
        self.make_driver(self.flags)
        self.assertEqual(['user-disk.img'], self.share_entries())

    def test_fresh_managing_volume_is_left_alone_at_start(self):
        vol, path = self._crashed_manage()
        self.make_driver(self.flags)
        self.assertEqual([vol.name], self.share_entries())
        # ... until it has been stuck for MANAGE_STUCK seconds.
        with mock.patch.object(tmanage, 'MANAGE_STUCK', -1):
            self.make_driver(self.flags)
        self.assertEqual(['user-disk.img'], self.share_entries())

    def test_managed_volume_is_deleted_normally(self):
        path = os.path.join(self.sim.datastore, 'cinder', 'disk2.img')
        with open(path, 'wb') as f:
            f.truncate(GiB)
        vol = test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=0, status='managing')
        vol.update(self.drv.manage_existing(vol, {'source-name':
                                                  'disk2.img'}))
        vol.status = 'available'
        vol.save()
        self.drv.delete_volume(vol)
        self.assertEqual([], self.share_entries())
