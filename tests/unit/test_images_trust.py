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
"""Images as tenant input (issue 18, items 1, 5 and 12).

An image's owner chooses its properties, so an image must never make the
driver clone a file it was not given by Glance, nor a file of a volume
share (another tenant's volume).  Each attack below is run against the
driver, the simulator and real files on the simulated shares; the
assertions are on what the array was asked to do (no snapshot, no clone of
the victim's file) and on the data of the volumes.
"""

import errno
import os
import subprocess
import tempfile

from cinder import exception
from oslo_utils import units

from cinder_tintri import images
from tests.unit import driver_base
from tests.unit import test_images

MiB = units.Mi
GiB = units.Gi
SNAP = test_images.SNAP
CLONE = test_images.CLONE
SECRET = b'the victim tenant data ' * 4096


class CrossTenantReadTest(test_images.GlanceShareBase):
    """18.1: an image whose "location" is another tenant's volume."""

    def setUp(self):
        super().setUp()
        self.victim = self.new_volume(size=1)
        self.write(self.victim, SECRET)
        self.victim_url = 'nfs://127.0.0.1/tintri/cinder/%s' % (
            self.victim.name)

    def attacker_image(self, size=GiB):
        meta = self.glance.add(self.files.raw, 'raw')
        if size is None:
            meta.pop('size', None)
        else:
            meta['size'] = size
        return meta

    def assertDeclined(self, meta, location=(None, [])):
        self.sim.reset_counts()
        vol, update, cloned = self.clone(meta, location=location)
        self.assertEqual((None, False), (update, cloned))
        counts = self.sim.request_counts()
        self.assertEqual(0, counts.get(SNAP, 0), counts)
        self.assertEqual(0, counts.get(CLONE, 0), counts)
        self.assertEqual([], self.snapshots())
        self.assertNotIn(vol.name, self.share_entries())
        self.assertEqual(SECRET, self.read(self.victim, len(SECRET)))
        return vol

    def test_property_with_the_volume_size(self):
        meta = self.attacker_image(size=GiB)
        meta['properties']['provider_location'] = self.victim_url
        self.assertDeclined(meta)
        # Cinder then downloads: the volume holds the attacker's image.
        vol = self.fill(meta)
        self.assertEqual(self.files.data, self.read(vol, len(self.files.data)))

    def test_property_with_size_zero(self):
        meta = self.attacker_image(size=0)
        meta['properties']['provider_location'] = self.victim_url
        self.assertDeclined(meta)

    def test_property_without_a_size(self):
        meta = self.attacker_image(size=None)
        meta['properties']['provider_location'] = self.victim_url
        self.assertDeclined(meta)

    def test_top_level_provider_location(self):
        meta = self.attacker_image()
        meta['provider_location'] = self.victim_url
        self.assertDeclined(meta)

    def test_property_on_a_volume_share_even_when_trusted(self):
        self.override_config('tintri_image_trust_provider_location', True,
                             group=driver_base.BACKEND)
        meta = self.attacker_image()
        meta['properties']['provider_location'] = self.victim_url
        self.assertDeclined(meta)

    def test_location_metadata_naming_a_volume_share(self):
        meta = self.attacker_image()
        url = 'file:///var/lib/glance/%s' % self.victim.name
        location = (url, [{'url': url, 'metadata': {
            'type': 'nfs', 'share_location': 'nfs://127.0.0.1/tintri/cinder',
            'mount_point': '/var/lib/glance'}}])
        self.assertDeclined(meta, location)

    def test_direct_url_on_a_volume_share(self):
        self.assertDeclined(self.attacker_image(), (self.victim_url, []))

    def test_image_shares_that_are_or_hold_a_volume_share(self):
        for share in ('127.0.0.1:/tintri/cinder', '127.0.0.1:/tintri',
                      '127.0.0.1:/tintri/'):
            with open(self.flags['tintri_image_shares_config'], 'w') as f:
                f.write('%s\n' % share)
            self.drv._image_shares_cache = None
            self.assertDeclined(self.attacker_image(),
                                (self.victim_url, []))

    def test_path_through_the_image_share_into_a_volume_share(self):
        with open(self.flags['tintri_image_shares_config'], 'w') as f:
            f.write('127.0.0.1:/tintri/glance\n')
        self.drv._image_shares_cache = None
        for url in ('nfs://127.0.0.1/tintri/glance/../cinder/%s',
                    'nfs://127.0.0.1/tintri/glance/./../cinder/%s',
                    'nfs://127.0.0.1/tintri/glance//%s'):
            self.assertDeclined(self.attacker_image(),
                                (url % self.victim.name, []))

    def test_symlink_on_the_image_share(self):
        link = os.path.join(self.glance_dir, 'images', 'evil')
        os.symlink(os.path.join('..', '..', 'cinder', self.victim.name),
                   link)
        self.assertDeclined(
            self.attacker_image(),
            ('nfs://127.0.0.1/tintri/glance/images/evil', []))

    def test_symlinked_directory_on_the_image_share(self):
        os.symlink(os.path.join('..', 'cinder'),
                   os.path.join(self.glance_dir, 'evil'))
        self.assertDeclined(
            self.attacker_image(),
            ('nfs://127.0.0.1/tintri/glance/evil/%s' % self.victim.name, []))

    def test_hard_link_on_the_image_share(self):
        os.link(self.path_of(self.victim),
                os.path.join(self.glance_dir, 'images', 'linked'))
        self.assertDeclined(
            self.attacker_image(),
            ('nfs://127.0.0.1/tintri/glance/images/linked', []))


class ImageRecordTest(test_images.GlanceShareBase):
    """Only Glance's own locations, and only files matching the record."""

    def test_provider_location_property_ignored_by_default(self):
        meta, url = self.on_share(self.files.raw, 'raw')
        meta['properties']['provider_location'] = url
        self.sim.reset_counts()
        _vol, update, cloned = self.clone(meta)
        self.assertEqual((None, False), (update, cloned))
        self.assertEqual(0, self.sim.request_counts().get(SNAP, 0))

    def test_provider_location_property_used_when_trusted(self):
        self.override_config('tintri_image_trust_provider_location', True,
                             group=driver_base.BACKEND)
        meta, url = self.on_share(self.files.raw, 'raw')
        meta['properties']['provider_location'] = url
        vol, _update, cloned = self.clone(meta)
        self.assertTrue(cloned)
        self.assertImageIn(vol, 1)
        self.assertEqual(0, self.glance.downloads)

    def test_image_without_a_size_is_not_cloned_from_the_share(self):
        meta, url = self.on_share(self.files.raw, 'raw')
        meta.pop('size')
        self.assertEqual((None, False),
                         self.clone(meta, location=(url, []))[1:])
        self.assertEqual([], self.snapshots())

    def test_virtual_size_other_than_the_record_is_refused(self):
        meta, url = self.on_share(self.files.qcow2, 'qcow2')
        meta['virtual_size'] = 3 * MiB + 512
        vol = self.bare_volume(size=1)
        exc = self.assertRaises(exception.ImageUnacceptable,
                                self.drv.clone_image, self.ctxt, vol,
                                (url, []), meta, self.glance)
        self.assertIn('virtual size', str(exc))
        self.assertEqual([], self.snapshots())
        self.assertNotIn(vol.name, self.share_entries())
        self.assertNoTemporaries()

    def test_matching_virtual_size_is_cloned(self):
        meta, url = self.on_share(self.files.qcow2, 'qcow2')
        meta['virtual_size'] = 3 * MiB
        vol, _update, cloned = self.clone(meta, location=(url, []))
        self.assertTrue(cloned)
        self.assertImageIn(vol, 1)

    def test_fifo_on_the_image_share_does_not_hang(self):
        meta, _url = self.on_share(self.files.raw, 'raw')
        os.mkfifo(os.path.join(self.glance_dir, 'images', 'fifo'))
        self.assertEqual((None, False), self.clone(
            meta, location=('nfs://127.0.0.1/tintri/glance/images/fifo',
                            []))[1:])

    def test_inspection_reads_the_file_that_was_checked(self):
        """A name swapped for a link after the check changes nothing."""
        meta, url = self.on_share(self.files.qcow2, 'qcow2')
        name = os.path.join(self.glance_dir, 'images', meta['id'])
        real_inspect = self.drv._image_inspect

        def swap_then_inspect(path, *args):
            os.rename(name, name + '.orig')
            os.symlink(self.files.backed, name)
            return real_inspect(path, *args)

        self.drv._image_inspect = swap_then_inspect
        vol, _update, cloned = self.clone(meta, location=(url, []))
        self.assertTrue(cloned)
        self.assertImageIn(vol, 1)


class MarkerTest(test_images.ImageTestCase):
    """18.12: last-use markers are never written through a link."""

    def marker_dir(self):
        return os.path.join(self.mount_point(), images.MARKER_DIR)

    def mount_point(self):
        return self.drv._get_mount_point_for_share(self.share)

    def test_marker_replaced_by_a_symlink(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta)
        outside = tempfile.mkdtemp(dir=self.tmp)
        target = os.path.join(outside, 'planted')
        marker = os.path.join(self.marker_dir(), meta['id'])
        os.unlink(marker)
        os.symlink(target, marker)
        _vol, _u, cloned = self.clone(meta)
        self.assertTrue(cloned)
        self.assertFalse(os.path.lexists(target))
        self.assertTrue(os.path.islink(marker))
        # a link is no evidence of use either
        self.assertIsNone(self.drv._image_last_used(meta['id']))

    def test_marker_directory_replaced_by_a_symlink(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta)
        outside = tempfile.mkdtemp(dir=self.tmp)
        os.rename(self.marker_dir(), self.marker_dir() + '.old')
        os.symlink(outside, self.marker_dir())
        _vol, _u, cloned = self.clone(meta)
        self.assertTrue(cloned)
        self.assertEqual([], os.listdir(outside))
        self.drv._image_forget(meta['id'])
        self.assertEqual([], os.listdir(outside))

    def test_forget_removes_the_marker(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta)
        self.assertIsNotNone(self.drv._image_last_used(meta['id']))
        self.drv._image_forget(meta['id'])
        self.assertIsNone(self.drv._image_last_used(meta['id']))


class ImageIdTest(test_images.ImageTestCase):
    """18.12: image ids are matched whole."""

    def test_trailing_newline_is_not_an_image_id(self):
        good = '0f0e3d2c-1b2a-4c3d-9e8f-7a6b5c4d3e2f'
        self.assertTrue(self.drv._image_id_ok(good))
        for bad in (good + '\n', '\n' + good, good + '/x', '../' + good,
                    '', None, 42):
            self.assertFalse(self.drv._image_id_ok(bad), repr(bad))

    def test_image_with_a_newline_in_its_id_is_not_cached(self):
        meta = self.glance.add(self.files.raw, 'raw',
                               image_id='0f0e3d2c-1b2a-4c3d\n')
        self.assertEqual((None, False), self.clone(meta)[1:])
        vol = self.fill(meta)
        self.assertEqual(self.files.data, self.read(vol, len(self.files.data)))
        self.assertEqual([], self.snapshots())
        self.assertNotIn(images.MARKER_DIR, self.share_entries())


class CopyImageShareFaultTest(test_images.ImageTestCase):
    """18.5: copy_image_to_volume on a read-only or full share."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('read-only and full file systems need root')

    def _fake_mount(self, client, share, flags=None):
        mount_point = client.get_mount_point(share)
        with open('/proc/self/mounts') as f:
            if any(line.split()[1] == mount_point for line in f):
                return    # the real (bind) mount of the test is there
        super()._fake_mount(client, share, flags)

    def _mount(self, *args):
        subprocess.run(['mount'] + list(args), check=True, timeout=30)

    def _umount(self, path):
        subprocess.run(['umount', '-l', path], timeout=30)

    def assertNothingLeft(self, vol):
        self.assertEqual([], self.snapshots())
        self.assertNoTemporaries()
        self.assertEqual([vol.name], [e for e in self.share_entries()
                                      if not e.startswith('.')])

    def test_read_only_share(self):
        vol = self.new_volume(size=1)
        mount = self.drv._get_mount_point_for_share(self.share)
        target = os.readlink(mount)
        os.unlink(mount)
        os.mkdir(mount)
        self._mount('--bind', target, mount)
        self.addCleanup(self._umount, mount)
        self._mount('-o', 'remount,bind,ro', mount)
        meta = self.glance.add(self.files.raw, 'raw')
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.copy_image_to_volume, self.ctxt,
                                vol, self.glance, meta['id'])
        self.assertIn('read-only', str(exc))
        self.assertIn(self.share, str(exc))
        self.assertEqual(0, self.glance.downloads)
        self.assertNothingLeft(vol)

    def test_full_share(self):
        share_dir = os.path.join(self.sim.datastore, 'cinder')
        self._mount('-t', 'tmpfs', '-o', 'size=512k', 'tintri-full',
                    share_dir)
        self.addCleanup(self._umount, share_dir)
        vol = self.new_volume(size=1)
        meta = self.glance.add(self.files.raw, 'raw')
        exc = self.assertRaises(exception.VolumeBackendAPIException,
                                self.drv.copy_image_to_volume, self.ctxt,
                                vol, self.glance, meta['id'])
        self.assertIn('full', str(exc))
        self.assertIn(errno.errorcode[errno.ENOSPC], str(exc))
        self.assertIn(vol.id, str(exc))
        self.assertNothingLeft(vol)
