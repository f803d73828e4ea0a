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
"""Point-in-time snapshots, clones, clone references and reflinks."""

import os
import shutil

from cinder_tintri.simulator import storage
from tests.functional import fixtures as fs_fixtures
from tests.unit.simulator import base

GIB = 1 << 30
ZERO_REFS = 'DELETE_ON_ZERO_CLONE_REFERENCES'


class SnapshotCloneTest(base.SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim()
        self.s = self.session(self.sim)
        self.vol = self.make_file(self.sim, 'cinder/volume-src', b'OLD!',
                                  size=GIB, offset=512 << 20)

    def _clone_path(self, dest, name='volume-src'):
        return os.path.join(self.sim.datastore, dest, name)

    def test_snapshot_is_point_in_time(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src')
        with open(self.vol, 'r+b') as f:
            f.seek(512 << 20)
            f.write(b'NEW!')
            f.seek(0)
            f.write(b'head')
        self.assertEqual(200, self.clone(self.s, self.sim, snap,
                                         'cinder/c1').status_code)
        clone = self._clone_path('cinder/c1')
        self.assertEqual(b'OLD!', self.read_at(clone, 512 << 20, 4))
        self.assertEqual(b'\0\0\0\0', self.read_at(clone, 0, 4))
        self.assertEqual(GIB, os.stat(clone).st_size)
        # sparse: far less allocated than the apparent size
        self.assertLess(os.stat(clone).st_blocks * 512, 64 << 20)
        # a later snapshot sees the new bytes; the clone is independent
        snap2 = self.snapshot(self.s, self.sim, 'cinder/volume-src')
        self.clone(self.s, self.sim, snap2, 'cinder/c2')
        self.assertEqual(b'NEW!', self.read_at(
            self._clone_path('cinder/c2'), 512 << 20, 4))
        with open(clone, 'r+b') as f:
            f.write(b'mine')
        self.assertEqual(b'head', self.read_at(self.vol, 0, 4))

    def test_snapshot_survives_volume_delete(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src')
        os.unlink(self.vol)
        self.clone(self.s, self.sim, snap, 'cinder/c1')
        self.assertEqual(b'OLD!', self.read_at(
            self._clone_path('cinder/c1'), 512 << 20, 4))

    def test_clone_keeps_mode(self):
        os.chmod(self.vol, 0o660)
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src')
        self.clone(self.s, self.sim, snap, 'cinder/c1')
        self.assertEqual(0o660, os.stat(
            self._clone_path('cinder/c1')).st_mode & 0o777)

    def refs(self, snap):
        return self.get_snap(self.s, self.sim, snap)['cloneReferenceCount']

    def test_reference_survives_rename_and_drops_on_delete(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src')
        self.clone(self.s, self.sim, snap, 'cinder/clone-dir')
        self.assertEqual(1, self.refs(snap))
        # what the drivers do: move the file out, remove the directory
        new = os.path.join(self.sim.datastore, 'cinder', 'volume-new')
        os.rename(self._clone_path('cinder/clone-dir'), new)
        os.rmdir(os.path.join(self.sim.datastore, 'cinder', 'clone-dir'))
        self.assertEqual(1, self.refs(snap))
        listed = self.call(self.s, self.sim, 'GET', '/snapshot',
                           params={'hasClone': 'yes'}).json()
        self.assertEqual([snap], [i['uuid']['uuid'] for i in listed['items']])
        self.assertEqual(1, self.sim.inventory()['snapshots'][0][
            'cloneReferenceCount'])
        os.unlink(new)
        self.assertEqual(0, self.refs(snap))
        listed = self.call(self.s, self.sim, 'GET', '/snapshot',
                           params={'hasClone': 'No'}).json()
        self.assertEqual(1, listed['filteredTotal'])
        # now deletable
        r = self.call(self.s, self.sim, 'DELETE', '/snapshot/' + snap)
        self.assertEqual(200, r.status_code)

    def test_reused_inode_is_not_a_reference(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src')
        self.clone(self.s, self.sim, snap, 'cinder/c1')
        path = self._clone_path('cinder/c1')
        os.unlink(path)
        # A new file may get the freed inode number; it is no clone.
        for i in range(20):
            self.make_file(self.sim, 'cinder/c1/other-%d' % i, b'x')
        self.assertEqual(0, self.refs(snap))

    def test_zero_reference_policy_auto_delete(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src',
                             deletionPolicy=ZERO_REFS)
        # never cloned: stays (the drivers clone right after creating it)
        self.assertIsNotNone(self.get_snap(self.s, self.sim, snap))
        self.clone(self.s, self.sim, snap, 'cinder/a')
        self.clone(self.s, self.sim, snap, 'cinder/b')
        self.assertEqual(2, self.refs(snap))
        os.unlink(self._clone_path('cinder/a'))
        self.assertEqual(1, self.refs(snap))
        data_files = os.listdir(os.path.join(self.sim.root, '.snapshots'))
        self.assertEqual(1, len(data_files))
        os.unlink(self._clone_path('cinder/b'))
        self.assertIsNone(self.get_snap(self.s, self.sim, snap))
        self.assertEqual([], os.listdir(os.path.join(self.sim.root,
                                                     '.snapshots')))
        self.assertEqual([], self.sim.inventory()['snapshots'])

    def test_auto_delete_seen_by_list_and_inventory(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src',
                             deletionPolicy=ZERO_REFS)
        self.clone(self.s, self.sim, snap, 'cinder/a')
        os.unlink(self._clone_path('cinder/a'))
        self.assertEqual([], self.sim.inventory()['snapshots'])
        page = self.call(self.s, self.sim, 'GET', '/snapshot').json()
        self.assertEqual(0, page['filteredTotal'])

    def test_expiration_policy_is_kept(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src',
                             deletionPolicy='DELETE_ON_EXPIRATION')
        self.clone(self.s, self.sim, snap, 'cinder/a')
        os.unlink(self._clone_path('cinder/a'))
        self.assertEqual(0, self.refs(snap))

    def test_inventory_files(self):
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-src')
        self.clone(self.s, self.sim, snap, 'cinder/c1')
        inv = self.sim.inventory()
        self.assertEqual(['cinder/', 'cinder/c1/', 'cinder/c1/volume-src',
                          'cinder/volume-src'], inv['files'])
        self.assertEqual(1, len(inv['snapshots']))
        self.assertEqual(2, sum(inv['copies'].values()))


class SparseCopyTest(base.SimTestCase):

    def test_sparse_copy_preserves_data_and_holes(self):
        tmp = self.useFixture(base.fixtures.TempDir()).path
        src = os.path.join(tmp, 'src')
        with open(src, 'wb') as f:
            f.truncate(256 << 20)
            f.seek(100 << 20)
            f.write(b'a' * 4096)
            f.seek((256 << 20) - 3)
            f.write(b'end')
        dst = os.path.join(tmp, 'dst')
        self.assertEqual('copy', storage.copy_file(src, dst,
                                                   use_reflink=False))
        self.assertEqual(os.stat(src).st_size, os.stat(dst).st_size)
        with open(src, 'rb') as a, open(dst, 'rb') as b:
            self.assertEqual(a.read(), b.read())
        self.assertLess(os.stat(dst).st_blocks * 512, 8 << 20)

    def test_only_holes(self):
        tmp = self.useFixture(base.fixtures.TempDir()).path
        src = os.path.join(tmp, 'src')
        with open(src, 'wb') as f:
            f.truncate(1 << 20)
        dst = os.path.join(tmp, 'dst')
        storage.copy_file(src, dst, use_reflink=False)
        self.assertEqual(1 << 20, os.stat(dst).st_size)
        self.assertEqual(0, os.stat(dst).st_blocks)


class XfsReflinkTest(base.SimTestCase):
    """On a loopback XFS with reflink=1 (root only), copies are reflinks."""

    @fs_fixtures.skip_unless_root
    def test_reflink_snapshot_and_clone(self):
        xfs = self.useFixture(fs_fixtures.XfsFixture(size_mb=512))
        root = os.path.join(xfs.path, 'sim')
        sim = self.start_sim(root=root)
        self.addCleanup(self._rm, root)
        s = self.session(sim)
        # 4 GiB apparent size, 64 MiB of real data: larger than the
        # filesystem's free space twice over if it were copied.
        vol = self.make_file(sim, 'cinder/volume-big', size=4 * GIB)
        with open(vol, 'r+b') as f:
            for i in range(64):
                f.seek(i * (64 << 20))
                f.write(os.urandom(1 << 20))
            os.fsync(f.fileno())
        snaps = [self.snapshot(s, sim, 'cinder/volume-big',
                               description='s%d' % i) for i in range(6)]
        for i, snap in enumerate(snaps):
            self.assertEqual(200, self.clone(s, sim, snap,
                                             'cinder/c%d' % i).status_code)
        inv = sim.inventory()
        self.assertEqual({'reflink': 12, 'copy': 0}, inv['copies'])
        statvfs = os.statvfs(xfs.path)
        used = (statvfs.f_blocks - statvfs.f_bfree) * statvfs.f_frsize
        self.assertLess(used, 300 << 20)  # 12 full copies would be 768 MiB
        with open(vol, 'r+b') as f:
            f.write(b'changed')
        clone = os.path.join(sim.datastore, 'cinder', 'c0', 'volume-big')
        with open(vol, 'rb') as a, open(clone, 'rb') as b:
            self.assertNotEqual(a.read(7), b.read(7))
            a.seek(64 << 20)
            b.seek(64 << 20)
            self.assertEqual(a.read(1 << 20), b.read(1 << 20))

    @fs_fixtures.skip_unless_root
    def test_reflink_disabled_copies(self):
        xfs = self.useFixture(fs_fixtures.XfsFixture(size_mb=512))
        root = os.path.join(xfs.path, 'sim')
        sim = self.start_sim(root=root, use_reflink=False)
        self.addCleanup(self._rm, root)
        s = self.session(sim)
        self.make_file(sim, 'cinder/volume-1', b'abc')
        snap = self.snapshot(s, sim, 'cinder/volume-1')
        self.clone(s, sim, snap, 'cinder/c')
        self.assertEqual({'reflink': 0, 'copy': 2},
                         sim.inventory()['copies'])

    @staticmethod
    def _rm(path):
        shutil.rmtree(path, ignore_errors=True)
