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
"""A raw image on a cache miss: written once, into the cache file (15.2).

``clone_image`` downloads a raw, bare, unsigned image straight into the
file that becomes the array's cache snapshot, checks it as cinder's
``fetch_to_volume_format`` would, and clones the volume from it; nothing
goes through ``image_conversion_dir`` (pointed at a file here, so any
use of it fails).  Images that do not qualify are declined to cinder's
own path; unsafe ones are refused and leave nothing behind.
"""

import os

from cinder import exception
import testtools

from cinder_tintri import image_download
from tests.unit import test_images

MiB = test_images.MiB


class RawOnceTest(test_images.ImageTestCase):

    MOCK_TOOZ = False   # real locks between the concurrent requests

    def setUp(self):
        super().setUp()
        not_a_dir = os.path.join(self.tmp, 'conversion-is-a-file')
        with open(not_a_dir, 'w') as f:
            f.write('cinder must not convert through here')
        self.override_config('image_conversion_dir', not_a_dir)

    def assertNothingLeft(self, vol):
        self.assertEqual([], self.snapshots())
        self.assertNoTemporaries()
        self.assertNotIn(vol.name, self.share_entries())

    def test_raw_miss_is_one_download_into_the_cache(self):
        meta = self.glance.add(self.files.raw, 'raw')
        vol, update, cloned = self.clone(meta, size=2)
        self.assertTrue(cloned)
        self.assertEqual({'provider_location': self.share, 'bootable': True},
                         update)
        self.assertImageIn(vol, 2)
        self.assertEqual(1, self.glance.downloads)
        snaps = self.image_snapshots(meta['id'])
        self.assertEqual(1, len(snaps))
        self.assertNoTemporaries()
        # the next volume is a clone of the cache, no download
        vol2, _update, cloned = self.clone(meta, size=1)
        self.assertTrue(cloned)
        self.assertImageIn(vol2, 1)
        self.assertEqual(1, self.glance.downloads)

    def test_concurrent_misses_download_once(self):
        meta = self.glance.add(self.files.raw, 'raw')
        vols = [self.bare_volume(size=1) for _ in range(4)]
        results = []

        def one(v):
            update, cloned = self.drv.clone_image(
                self.ctxt, v, (None, []), meta, self.glance)
            v.update(update or {})
            results.append(cloned)

        test_images.run_all(self, [lambda v=v: one(v) for v in vols])
        self.assertEqual([True] * 4, results)
        self.assertEqual(1, self.glance.downloads)
        self.assertEqual(1, len(self.image_snapshots(meta['id'])))
        for vol in vols:
            self.assertImageIn(vol, 1)
        self.assertNoTemporaries()

    def test_qcow2_labelled_raw_is_refused(self):
        meta = self.glance.add(self.files.qcow2, 'raw')
        vol = self.bare_volume(size=1)
        self.assertRaises(exception.ImageUnacceptable, self.drv.clone_image,
                          self.ctxt, vol, (None, []), meta, self.glance)
        self.assertNothingLeft(vol)

    def test_qcow2_with_backing_file_labelled_raw_is_refused(self):
        meta = self.glance.add(self.files.backed, 'raw')
        vol = self.bare_volume(size=1)
        self.assertRaises(exception.ImageUnacceptable, self.drv.clone_image,
                          self.ctxt, vol, (None, []), meta, self.glance)
        self.assertNothingLeft(vol)

    def test_image_larger_than_the_volume_is_refused(self):
        big = os.path.join(self.tmp, 'big.raw')
        with open(big, 'wb') as f:
            f.write(b'BIG' * 1000)
            f.truncate(2 * 1024 * MiB)
        meta = self.glance.add(big, 'raw')
        vol = self.bare_volume(size=1)
        self.assertRaises(exception.ImageUnacceptable, self.drv.clone_image,
                          self.ctxt, vol, (None, []), meta, self.glance)
        self.assertNothingLeft(vol)

    def test_short_download_is_refused(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.glance.images[meta['id']]['size'] = meta['size'] + 512
        meta['size'] += 512
        vol = self.bare_volume(size=1)
        exc = self.assertRaises(exception.ImageUnacceptable,
                                self.drv.clone_image, self.ctxt, vol,
                                (None, []), meta, self.glance)
        self.assertIn('Glance records', str(exc))
        self.assertNothingLeft(vol)

    def _declined(self, meta):
        vol = self.bare_volume(size=1)
        self.assertEqual((None, False), self.drv.clone_image(
            self.ctxt, vol, (None, []), meta, self.glance))
        self.assertEqual(0, self.glance.downloads)
        self.assertNothingLeft(vol)

    def test_qcow2_is_left_to_cinder(self):
        self._declined(self.glance.add(self.files.qcow2, 'qcow2'))

    def test_signed_image_is_left_to_the_volume_manager(self):
        self._declined(self.glance.add(
            self.files.raw, 'raw',
            properties={'img_signature': 'c2ln',
                        'img_signature_hash_method': 'SHA-256',
                        'img_signature_certificate_uuid': 'cert',
                        'img_signature_key_type': 'RSA-PSS'}))

    def test_off_leaves_every_image_to_cinder(self):
        self.override_config('tintri_image_write_once', False,
                             group=test_images.driver_base.BACKEND)
        self._declined(self.glance.add(self.files.raw, 'raw'))

    def test_compressed_container_is_left_to_cinder(self):
        self._declined(self.glance.add(self.files.raw, 'raw',
                                       container_format='compressed'))


class WhyNotUnitTest(testtools.TestCase):

    def test_reasons(self):
        ok = {'disk_format': 'raw', 'container_format': 'bare',
              'size': 10, 'properties': {}}
        self.assertIsNone(image_download.why_not(ok))
        for change, word in (({'disk_format': 'qcow2'}, 'qcow2'),
                             ({'container_format': 'ova'}, 'ova'),
                             ({'size': 0}, 'no size'),
                             ({'size': None}, 'no size'),
                             ({'size': True}, 'no size'),
                             ({'properties': {'img_signature': 'x'}},
                              'signed')):
            self.assertIn(word, image_download.why_not(dict(ok, **change)))
