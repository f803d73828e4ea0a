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
"""Manage, unmanage and manageable listings against the simulator.

Every refusal is checked for its reason and for leaving the share exactly
as it was (names, inodes, sizes, modes and modification times).
"""

import json
import os
import subprocess

from cinder import exception
from cinder import objects
from cinder.tests.unit import utils as test_utils
from oslo_utils import units

from cinder_tintri import driver as tdriver
from tests.unit import driver_base

MiB = units.Mi
GiB = units.Gi
INVALID = exception.ManageExistingInvalidReference


def _sparse(path, size, data=b''):
    with open(path, 'wb') as f:
        f.write(data)
        f.truncate(size)


class ManageBase(driver_base.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.share_dir = self.dir_of(self.share)

    def dir_of(self, share):
        return os.path.join(self.sim.datastore,
                            share.split(':/tintri/', 1)[1])

    def put(self, name, size=GiB, data=b'', share=None):
        path = os.path.join(self.dir_of(share or self.share), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _sparse(path, size, data)
        return path

    def managing_volume(self, share=None, **kwargs):
        """The DB row the manager holds while it manages a volume."""
        host = '%s#%s' % (driver_base.HOST, share or self.share)
        return test_utils.create_volume(self.ctxt, host=host, size=0,
                                        status='managing', **kwargs)

    def tree(self):
        """Everything on every share, to compare before and after."""
        state = {}
        for share in self.shares:
            top = self.dir_of(share)
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    path = os.path.join(root, name)
                    st = os.lstat(path)
                    state[os.path.relpath(path, self.sim.datastore)] = (
                        st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns)
        return state


class ManageVolumeTestCase(ManageBase):

    def test_interface(self):
        from cinder.interface import volume_manageable_driver as vmd
        from cinder.interface import volume_snapshotmanagement_driver as vsd
        self.assertTrue(issubclass(tdriver.TintriDriver,
                                   vmd.VolumeListManageableDriver))
        self.assertTrue(issubclass(tdriver.TintriDriver,
                                   vsd.VolumeSnapshotManagementDriver))

    def test_manage_relative_name(self):
        self.put('imported.img', size=GiB + MiB, data=b'X' * MiB)
        vol = self.managing_volume()
        ref = {'source-name': 'imported.img'}
        self.assertEqual(2, self.drv.manage_existing_get_size(vol, ref))
        # The manager records the size before calling manage_existing.
        vol.size = 2
        vol.save()
        update = self.drv.manage_existing(vol, ref)
        self.assertEqual({'provider_location': self.share}, update)
        self.assertEqual([vol.name], self.share_entries())
        # Grown sparsely to the size Cinder records; data unchanged.
        self.assertEqual(2 * GiB, os.stat(self.path_of(vol,
                                                       self.share)).st_size)
        with open(self.path_of(vol, self.share), 'rb') as f:
            self.assertEqual(b'X' * MiB, f.read(MiB))
        vol = objects.Volume.get_by_id(self.ctxt, vol.id)
        self.assertEqual('raw', vol.admin_metadata.get('format'))

    def test_manage_host_path_in_subdirectory(self):
        self.put('migrated/disk0', size=3 * GiB)
        vol = self.managing_volume()
        ref = {'source-name': '%s/migrated/disk0' % self.share}
        self.assertEqual(3, self.drv.manage_existing_get_size(vol, ref))
        self.assertEqual({'provider_location': self.share},
                         self.drv.manage_existing(vol, ref))
        self.assertEqual(['migrated', vol.name], self.share_entries())
        self.assertEqual([], os.listdir(os.path.join(self.share_dir,
                                                     'migrated')))
        self.assertEqual(3 * GiB,
                         os.stat(self.path_of(vol, self.share)).st_size)

    def test_manage_dot_components_are_normalised(self):
        self.put('a.img')
        vol = self.managing_volume()
        ref = {'source-name': '127.0.0.1:/tintri//cinder/./a.img'}
        self.assertEqual(1, self.drv.manage_existing_get_size(vol, ref))
        self.drv.manage_existing(vol, ref)
        self.assertEqual([vol.name], self.share_entries())

    def test_manage_symlink_inside_share_manages_its_target(self):
        self.put('real.img', data=b'R')
        os.symlink('real.img', os.path.join(self.share_dir, 'link'))
        vol = self.managing_volume()
        ref = {'source-name': 'link'}
        self.assertEqual(1, self.drv.manage_existing_get_size(vol, ref))
        self.drv.manage_existing(vol, ref)
        self.assertEqual(['link', vol.name], self.share_entries())
        self.assertTrue(os.path.isfile(self.path_of(vol, self.share)))
        self.assertFalse(os.path.islink(self.path_of(vol, self.share)))

    def test_manage_without_pool_sets_host_pool(self):
        self.put('a.img')
        vol = test_utils.create_volume(self.ctxt, host=driver_base.HOST,
                                       size=0, status='managing')
        update = self.drv.manage_existing(vol, {'source-name': 'a.img'})
        self.assertEqual({'provider_location': self.share,
                          'host': '%s#%s' % (driver_base.HOST, self.share)},
                         update)

    def test_unmanage_leaves_file_and_it_can_be_managed_again(self):
        vol = self.new_volume(size=1)
        self.write(vol, b'D' * MiB)
        before = self.tree()
        self.drv.unmanage(vol)
        self.assertEqual(before, self.tree())
        old_name = vol.name
        vol.destroy()   # what the manager does after unmanage
        again = self.managing_volume()
        ref = {'source-name': old_name}
        self.assertEqual(1, self.drv.manage_existing_get_size(again, ref))
        self.drv.manage_existing(again, ref)
        self.assertEqual([again.name], self.share_entries())
        with open(self.path_of(again, self.share), 'rb') as f:
            self.assertEqual(b'D' * MiB, f.read(MiB))

    def test_managed_volume_works_with_array_snapshots(self):
        self.put('a.img', data=b'A' * MiB)
        vol = self.managing_volume()
        ref = {'source-name': 'a.img'}
        vol.update(self.drv.manage_existing(vol, ref))
        vol.size = 1
        vol.status = 'available'
        vol.save()
        snap = self.create_snapshot(vol)
        self.assertEqual([snap.provider_id], self.snapshot_uuids())
        self.drv.delete_snapshot(snap)
        self.assertEqual([], self.snapshot_uuids())


class BadReferenceTestCase(ManageBase):
    """The table of refused references: clear reason, share unchanged."""

    def _refused(self, ref, expect, volume=None):
        vol = volume or self.managing_volume()
        before = self.tree()
        for call in (self.drv.manage_existing_get_size,
                     self.drv.manage_existing):
            err = self.assertRaises(INVALID, call, vol, ref)
            self.assertIn(expect, str(err), (ref, call.__name__))
            self.assertEqual(before, self.tree(), ref)

    def test_table(self):
        outside = os.path.join(self.tmp, 'outside.img')
        _sparse(outside, GiB)
        self.put('good.img')
        self.put('empty', size=0)
        os.mkdir(os.path.join(self.share_dir, 'dir'))
        os.mkfifo(os.path.join(self.share_dir, 'fifo'))
        os.symlink(outside, os.path.join(self.share_dir, 'escape'))
        os.symlink('../../../../../../etc/hostname',
                   os.path.join(self.share_dir, 'relescape'))
        os.symlink('loop', os.path.join(self.share_dir, 'loop'))
        os.symlink(self.tmp, os.path.join(self.share_dir, 'dirlink'))
        self.put('.tintri-tmp-volume-x-123/volume-x')
        self.put('.hidden.img')
        os.link(os.path.join(self.share_dir, 'good.img'),
                os.path.join(self.share_dir, 'hard.img'))
        qcow2 = os.path.join(self.share_dir, 'disk.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', qcow2,
                        '1G'], check=True, timeout=60)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F',
                        'raw', '-b', os.path.join(self.share_dir, 'good.img'),
                        os.path.join(self.share_dir, 'overlay.qcow2')],
                       check=True, timeout=60)
        in_use = self.new_volume(size=1)
        share = self.share
        cases = [
            ('not a dict', 'must be a dictionary'),
            ({}, 'source-name'),
            ({'source-id': 'x'}, 'source-name'),
            ({'source-name': 42}, 'source-name'),
            ({'source-name': '  '}, 'source-name'),
            ({'source-name': '../outside.img'}, '".."'),
            ({'source-name': 'dir/../../outside.img'}, '".."'),
            ({'source-name': '%s/../cinder/good.img' % share}, '".."'),
            ({'source-name': '10.9.9.9:/tintri/cinder/good.img'},
             'not on a share of this backend'),
            ({'source-name': '127.0.0.1:/tintri/other/good.img'},
             'not on a share of this backend'),
            ({'source-name': '127.0.0.1:/tintri/cinderx/good.img'},
             'not on a share of this backend'),
            ({'source-name': share}, 'names the share'),
            ({'source-name': share + '/'}, 'names the share'),
            ({'source-name': outside}, 'Absolute paths are not accepted'),
            ({'source-name': '/etc/passwd'},
             'Absolute paths are not accepted'),
            ({'source-name': 'missing.img'}, 'was not found on any share'),
            ({'source-name': share + '/missing.img'}, 'does not exist'),
            ({'source-name': '.'}, 'names no file'),
            ({'source-name': 'dir'}, 'is a directory'),
            ({'source-name': 'fifo'}, 'not a regular file'),
            ({'source-name': 'escape'}, 'outside share'),
            ({'source-name': 'relescape'}, 'outside share'),
            ({'source-name': 'dirlink/outside.img'}, 'outside share'),
            ({'source-name': 'loop'}, 'cannot be resolved'),
            ({'source-name': '.tintri-tmp-volume-x-123/volume-x'},
             'temporary file or directory of the Tintri driver'),
            ({'source-name': '.hidden.img'}, 'hidden file'),
            ({'source-name': 'good\n.img'}, 'control character'),
            ({'source-name': 'good\x00.img'}, 'control character'),
            ({'source-name': 'x' * 256}, 'longer than 255 bytes'),
            ({'source-name': 'a/' * 2100 + 'x'}, 'at most 4096'),
            ({'source-name': in_use.name}, 'is the file of Cinder volume %s'
             % in_use.id),
            ({'source-name': '%s/%s' % (share, in_use.name)},
             'is the file of Cinder volume'),
            ({'source-name': 'hard.img'}, 'hard links'),
            ({'source-name': 'empty'}, 'is empty'),
            ({'source-name': 'disk.qcow2'}, 'is a qcow2 image'),
            ({'source-name': 'overlay.qcow2'},
             'fails the disk image safety check'),
        ]
        for ref, expect in cases:
            self._refused(ref, expect)
        # The volume being managed must not be created meanwhile either.
        self.assertTrue(os.path.exists(outside))

    def test_target_name_taken(self):
        self.put('good.img')
        vol = self.managing_volume()
        self.put(vol.name, size=MiB)
        self._refused({'source-name': 'good.img'}, 'already exists',
                      volume=vol)

    def test_file_of_a_migrated_volume(self):
        # A volume whose file carries another id (_name_id) is found among
        # the volumes of the backend.
        name_id = '11111111-2222-3333-4444-555555555555'
        other = self.create_volume(size=1)
        other._name_id = name_id
        other.save()
        self.put(other.name)
        self._refused({'source-name': other.name},
                      'is the file of Cinder volume %s' % other.id)

    def test_refusal_rename_race(self):
        """The file vanishing between the checks and the rename."""
        path = self.put('good.img')
        vol = self.managing_volume()
        real_rename = os.rename

        def rename(src, dst, *a, **kw):
            os.unlink(path)
            return real_rename(src, dst, *a, **kw)

        self.patch('os.rename', side_effect=rename)
        err = self.assertRaises(INVALID, self.drv.manage_existing, vol,
                                {'source-name': 'good.img'})
        self.assertIn('Cannot rename good.img', str(err))
        self.assertEqual([], self.share_entries())


class TwoSharesTestCase(ManageBase):

    SUBMOUNTS = ('cinder', 'other')

    def test_ambiguous_relative_name(self):
        self.put('same.img')
        self.put('same.img', share=self.shares[1])
        before = self.tree()
        vol = self.managing_volume()
        err = self.assertRaises(INVALID, self.drv.manage_existing_get_size,
                                vol, {'source-name': 'same.img'})
        self.assertIn('exists on several shares', str(err))
        self.assertEqual(before, self.tree())
        # Naming the share resolves it.
        ref = {'source-name': '%s/same.img' % self.shares[1]}
        other = self.managing_volume(share=self.shares[1])
        self.assertEqual(1, self.drv.manage_existing_get_size(other, ref))
        self.drv.manage_existing(other, ref)
        self.assertEqual([other.name],
                         sorted(os.listdir(self.dir_of(self.shares[1]))))
        self.assertEqual(['same.img'], self.share_entries())

    def test_relative_name_found_on_second_share(self):
        self.put('only.img', share=self.shares[1])
        vol = self.managing_volume(share=self.shares[1])
        self.assertEqual({'provider_location': self.shares[1]},
                         self.drv.manage_existing(
                             vol, {'source-name': 'only.img'}))

    def test_pool_mismatch_refused(self):
        self.put('only.img', share=self.shares[1])
        vol = self.managing_volume(share=self.shares[0])
        before = self.tree()
        for call in (self.drv.manage_existing_get_size,
                     self.drv.manage_existing):
            err = self.assertRaises(INVALID, call, vol,
                                    {'source-name': 'only.img'})
            self.assertIn('to be managed into pool %s' % self.shares[0],
                          str(err))
        self.assertEqual(before, self.tree())

    def test_symlink_to_other_share_refused(self):
        target = self.put('b.img', share=self.shares[1])
        os.symlink(target, os.path.join(self.share_dir, 'cross'))
        vol = self.managing_volume()
        before = self.tree()
        err = self.assertRaises(INVALID, self.drv.manage_existing, vol,
                                {'source-name': 'cross'})
        self.assertIn('outside share', str(err))
        self.assertEqual(before, self.tree())


class ManageableVolumesTestCase(ManageBase):

    def _list(self, cinder_volumes=(), marker=None, limit=100, offset=0,
              sort_keys=('reference',), sort_dirs=('asc',)):
        return self.drv.get_manageable_volumes(
            list(cinder_volumes), marker, limit, offset, list(sort_keys),
            list(sort_dirs))

    @staticmethod
    def _by_name(entries):
        return {e['reference']['source-name']: e for e in entries}

    def test_listing(self):
        vol = self.new_volume(size=2)
        self.put('raw.img', size=GiB + 1)
        self.put('sub/deep.img', size=GiB)
        self.put('empty', size=0)
        self.put('.tintri-tmp-volume-x-1/volume-x')
        self.put('.hidden')
        os.symlink('raw.img', os.path.join(self.share_dir, 'link'))
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2',
                        os.path.join(self.share_dir, 'disk.qcow2'), '1G'],
                       check=True, timeout=60)
        orphan = 'volume-%s' % '0e6c5ad4-1111-2222-3333-444455556666'
        self.put(orphan)
        other = test_utils.create_volume(self.ctxt, size=1,
                                         host='otherhost@be#pool',
                                         provider_location=self.share)
        self.put(other.name)
        before = self.tree()
        entries = self._list([vol])
        self.assertEqual(before, self.tree())
        got = {name.split(self.share + '/', 1)[1]: (
            e['safe_to_manage'], e['size'], e['cinder_id'],
            e['reason_not_safe'] and e['reason_not_safe'].split(' ')[0])
            for name, e in self._by_name(entries).items()}
        self.assertEqual({
            vol.name: (False, 2, vol.id, 'Volume'),
            'raw.img': (True, 2, None, None),
            'sub': (False, 0, None, 'Directory;'),
            'sub/deep.img': (True, 1, None, None),
            'empty': (False, 0, None, 'Empty'),
            '.tintri-tmp-volume-x-1': (False, 0, None, 'Temporary'),
            '.hidden': (False, 0, None, 'Hidden'),
            'link': (False, 0, None, 'Symbolic'),
            'disk.qcow2': (False, 1, None, 'qcow2'),
            orphan: (True, 1, None, None),
            other.name: (False, 1, other.id, 'In'),
        }, got)
        for e in entries:
            self.assertIsNone(e['extra_info'])
            if not e['safe_to_manage']:
                self.assertTrue(bool(e['reason_not_safe']), e)
        # Every safe entry's reference is accepted by manage_existing.
        for name, e in self._by_name(entries).items():
            if e['safe_to_manage']:
                self.drv.manage_existing_get_size(self.managing_volume(),
                                                  e['reference'])

    def test_unreadable_file(self):
        self.put('a.img')
        # Permission denied on the file for every reader (not reproducible
        # as root): the listing's header probe and cinder's inspector.
        self.patch('cinder.privsep.format_inspector.get_format_if_safe',
                   side_effect=OSError(13, 'Permission denied'))
        real_open = os.open

        def denied(path, *args, **kwargs):
            if str(path).endswith('a.img'):
                raise PermissionError(13, 'Permission denied', path)
            return real_open(path, *args, **kwargs)
        self.patch('os.open', side_effect=denied)
        [entry] = self._list()
        self.assertFalse(entry['safe_to_manage'])
        self.assertEqual('Not a volume image: it cannot be read as a disk '
                         'image.', entry['reason_not_safe'])
        err = self.assertRaises(INVALID, self.drv.manage_existing_get_size,
                                self.managing_volume(),
                                {'source-name': 'a.img'})
        self.assertIn('a.img: cannot be read as a disk image', str(err))

    def test_pagination(self):
        for i, size in enumerate((3, 1, 2, 5, 4)):
            self.put('f%d.img' % i, size=size * GiB)

        def names(entries):
            return [e['reference']['source-name'].rsplit('/')[-1]
                    for e in entries]

        self.assertEqual(['f0.img', 'f1.img', 'f2.img', 'f3.img', 'f4.img'],
                         names(self._list()))
        self.assertEqual(['f1.img', 'f2.img'],
                         names(self._list(limit=2, offset=1)))
        self.assertEqual(['f3.img', 'f4.img', 'f0.img'],
                         names(self._list(sort_keys=['size'],
                                          sort_dirs=['desc'], limit=3)))
        marker = json.dumps({'source-name': '%s/f2.img' % self.share})
        self.assertEqual(['f3.img', 'f4.img'], names(self._list(
            marker=marker)))
        self.assertEqual(['f4.img'], names(self._list(marker=marker,
                                                      offset=1)))
        self.assertEqual(5, len(self._list(limit=None)))
        self.assertRaises(exception.InvalidInput, self._list,
                          marker=json.dumps({'source-name': 'nope'}))


class ManageSnapshotTestCase(ManageBase):

    def setUp(self):
        super().setUp()
        self.vol = self.new_volume(size=2)
        self.export = self.drv._export_path(self.share)

    def array_snapshot(self, vol, description, **kwargs):
        """A VMstore snapshot Cinder does not know about."""
        return self.drv._client.create_snapshot(
            self.export, vol.name, vol.id, description, vm_name=vol.name,
            **kwargs)

    def cinder_snapshot(self, vol=None, **kwargs):
        vol = vol or self.vol
        return test_utils.create_snapshot(self.ctxt, vol.id,
                                          volume_size=vol.size, **kwargs)

    def test_manage_by_uuid(self):
        uuid = self.array_snapshot(self.vol, 'operator-snap')
        snap = self.cinder_snapshot()
        ref = {'source-id': uuid}
        self.assertEqual(2, self.drv.manage_existing_snapshot_get_size(
            snap, ref))
        self.assertEqual({'provider_id': uuid},
                         self.drv.manage_existing_snapshot(snap, ref))
        self.assertEqual([uuid], self.snapshot_uuids())

    def test_manage_by_name_then_use_and_unmanage(self):
        uuid = self.array_snapshot(self.vol, 'operator-snap')
        snap = self.cinder_snapshot()
        ref = {'source-name': 'operator-snap'}
        self.assertEqual(2, self.drv.manage_existing_snapshot_get_size(
            snap, ref))
        snap.update(self.drv.manage_existing_snapshot(snap, ref))
        snap.status = 'available'
        snap.save()
        # The managed snapshot works: a volume from it.
        new = self.create_volume(size=3)
        new.update(self.drv.create_volume_from_snapshot(new, snap))
        self.assertSizeGiB(new, 3)
        self.drv.unmanage_snapshot(snap)
        self.assertIn(uuid, self.snapshot_uuids())

    def test_manage_snapshot_the_array_took_of_the_file(self):
        # A snapshot taken on the VMstore (not through Cinder) carries the
        # array's VM UUID; it is matched by the file it was taken of.
        rel = '%s/%s' % (self.export[len('/tintri/'):], self.vol.name)
        [uuid] = self.sim.seed_snapshots(1, file=rel, vm_name='vm')
        snap = self.cinder_snapshot()
        self.assertEqual({'provider_id': uuid},
                         self.drv.manage_existing_snapshot(
                             snap, {'source-id': uuid}))

    def test_bad_references(self):
        other_vol = self.new_volume(size=1)
        other_uuid = self.array_snapshot(other_vol, 'theirs')
        managed = self.create_snapshot(self.vol)
        helper = self.array_snapshot(
            self.vol, 'helper', deletion_policy=tdriver.DELETE_ON_ZERO_CLONES)
        dup1 = self.array_snapshot(self.vol, 'dup')
        dup2 = self.array_snapshot(self.vol, 'dup')
        mine = self.array_snapshot(self.vol, 'mine')
        [foreign] = self.sim.seed_snapshots(1, vm_name='vm',
                                            description_prefix='foreign')
        snap = self.cinder_snapshot()
        cases = [
            ('nope', 'must be a dictionary'),
            ({}, 'must contain "source-id"'),
            ({'source-id': ''}, 'non-empty strings'),
            ({'source-id': 7}, 'non-empty strings'),
            ({'source-name': 'a\nb'}, 'control character'),
            ({'source-id': 'x' * 300}, 'at most 255'),
            ({'source-id': 'no-such-uuid'}, 'no VMstore snapshot with UUID'),
            ({'source-name': 'no-such-name'}, 'no VMstore snapshot named'),
            ({'source-id': other_uuid}, 'is not a snapshot of volume'),
            ({'source-name': 'theirs'}, 'is not a snapshot of volume'),
            ({'source-id': foreign}, 'is not a snapshot of volume'),
            ({'source-id': managed.provider_id},
             'already managed as snapshot %s' % managed.id),
            ({'source-id': helper}, 'Helper snapshot of a clone'),
            ({'source-name': 'dup'}, 'use "source-id"'),
            ({'source-id': mine, 'source-name': 'other'}, 'is not named'),
        ]
        before = self.snapshot_uuids()
        for ref, expect in cases:
            for call in (self.drv.manage_existing_snapshot_get_size,
                         self.drv.manage_existing_snapshot):
                err = self.assertRaises(INVALID, call, snap, ref)
                self.assertIn(expect, str(err), ref)
        self.assertEqual(before, self.snapshot_uuids())
        # The unambiguous ones still work.
        for uuid in (dup1, dup2):
            self.assertEqual({'provider_id': uuid},
                             self.drv.manage_existing_snapshot(
                                 snap, {'source-id': uuid}))

    def test_manageable_snapshots(self):
        managed = self.create_snapshot(self.vol)
        loose = self.array_snapshot(self.vol, 'loose')
        other_vol = self.new_volume(size=1)
        theirs = self.array_snapshot(other_vol, 'theirs')
        helper = self.array_snapshot(
            self.vol, 'helper', deletion_policy=tdriver.DELETE_ON_ZERO_CLONES)
        self.sim.seed_snapshots(2, vm_name='not-cinder')
        cinder_snaps = objects.SnapshotList.get_all(self.ctxt, None)
        entries = self.drv.get_manageable_snapshots(
            cinder_snaps, None, 100, 0, ['reference'], ['asc'])
        got = {e['reference']['source-id']: (
            e['safe_to_manage'], e['size'], e['cinder_id'],
            e['source_reference'], e['extra_info']['description'])
            for e in entries}
        self.assertEqual({
            managed.provider_id: (False, 2, managed.id,
                                  {'source-id': self.vol.id}, managed.name),
            loose: (True, 2, None, {'source-id': self.vol.id}, 'loose'),
            theirs: (True, 1, None, {'source-id': other_vol.id}, 'theirs'),
            helper: (False, 2, None, {'source-id': self.vol.id}, 'helper'),
        }, got)
        page = self.drv.get_manageable_snapshots(
            cinder_snaps, None, 2, 1, ['size'], ['asc'])
        self.assertEqual(2, len(page))
        self.assertEqual([2, 2], [e['size'] for e in page])
