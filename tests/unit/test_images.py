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
"""Images: the VMstore image cache, direct clones from a Glance share.

The driver runs against the simulator (tests.unit.driver_base); image data
is real: raw and qcow2 files made with qemu-img and served by a subclass
of cinder's fake image service that counts downloads.
"""

import os
import subprocess
import threading
import time
import uuid

from cinder import coordination
from cinder import exception
from cinder.tests.unit.image import fake as fake_image
from cinder.tests.unit import utils as test_utils
from cinder.volume import volume_types
from oslo_utils import units

from cinder_tintri import images
from tests.unit import driver_base

MiB = units.Mi
LIST = 'GET /api/v310/snapshot'
SNAP = 'POST /api/v310/cinder/snapshot'
CLONE = 'POST /api/v310/cinder/clone'
DEADLINE = 60.0


class ImageService(fake_image._FakeImageService):
    """cinder's fake Glance with real data and a download counter."""

    def __init__(self):
        super().__init__()
        self.temp_images = None     # no pre-fetched images
        self.downloads = 0
        self.bytes_downloaded = 0
        self.uploaded = {}
        self.locations = {}
        self._lock = threading.Lock()

    def add(self, path, disk_format, image_id=None, **extra):
        image_id = image_id or str(uuid.uuid4())
        meta = {'id': image_id, 'name': 'img', 'status': 'active',
                'disk_format': disk_format, 'container_format': 'bare',
                'size': os.stat(path).st_size, 'properties': {},
                'visibility': 'public', 'protected': False}
        meta.update(extra)
        self.images[image_id] = meta
        with open(path, 'rb') as f:
            self._imagedata[image_id] = f.read()
        return dict(meta)

    def download(self, context, image_id, data):
        with self._lock:
            self.downloads += 1
            self.bytes_downloaded += len(self._imagedata[image_id])
        data.write(self._imagedata[image_id])

    def get_location(self, context, image_id):
        return self.locations.get(image_id, (None, []))

    def update(self, context, image_id, metadata, data=None,
               purge_props=False, store_id=None, base_image_ref=None):
        if data is not None:
            self.uploaded[image_id] = data.read()
        return super().update(context, image_id, metadata)


def qemu_img(*args):
    subprocess.run(('qemu-img',) + args, check=True,
                   stdout=subprocess.DEVNULL, timeout=60)


class ImageFiles(object):
    """Raw, qcow2, backed qcow2 and disguised images in ``directory``."""

    def __init__(self, directory):
        self.data = (os.urandom(MiB) + b'\0' * MiB + b'TINTRI' * 1000)
        self.raw = os.path.join(directory, 'image.raw')
        with open(self.raw, 'wb') as f:
            f.write(self.data)
            f.truncate(3 * MiB)
        self.qcow2 = os.path.join(directory, 'image.qcow2')
        qemu_img('convert', '-f', 'raw', '-O', 'qcow2', self.raw, self.qcow2)
        self.backed = os.path.join(directory, 'backed.qcow2')
        qemu_img('create', '-f', 'qcow2', '-b', self.raw, '-F', 'raw',
                 self.backed)


def run_all(test, funcs):
    """Run ``funcs`` in threads (bounded wait); no call may raise."""
    errors = []

    def run(func):
        try:
            func()
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(f,)) for f in funcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
        test.assertFalse(t.is_alive())
    test.assertEqual([], errors)


class ImageTestCase(driver_base.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(self.drv._image_cache_stop)
        self.glance = ImageService()
        self.files = ImageFiles(self.tmp)

    # -- helpers --------------------------------------------------------

    def snapshots(self):
        return self.sim.inventory()['snapshots']

    def image_snapshots(self, image_id):
        return [s for s in self.snapshots()
                if s['description'] == 'image-' + image_id]

    def assertImageIn(self, vol, size_gib):
        self.assertSizeGiB(vol, size_gib)
        self.assertEqual(self.files.data, self.read(vol, len(self.files.data)))
        # the rest of the volume reads as zeros
        self.assertEqual(b'\0' * 4096, self.read(vol, 4096, offset=3 * MiB))

    def assertNoTemporaries(self, share=None):
        entries = self.share_entries(share)
        self.assertEqual([], [e for e in entries if e.startswith('.tintri-t')])

    def bare_volume(self, size=1, **kwargs):
        """A volume as the manager passes it to clone_image."""
        return test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=size, **kwargs)

    def fill(self, meta, size=1):
        vol = self.new_volume(size=size)
        self.drv.copy_image_to_volume(self.ctxt, vol, self.glance, meta['id'])
        return vol

    def clone(self, meta, size=1, location=None):
        vol = self.bare_volume(size=size)
        update, cloned = self.drv.clone_image(
            self.ctxt, vol, location or (None, []), meta, self.glance)
        if cloned:
            vol.update(update)
            vol.save()
        return vol, update, cloned


class CacheTest(ImageTestCase):

    def test_not_cached_and_not_on_a_share_declines(self):
        # (a raw image is written once instead: test_image_download)
        meta = self.glance.add(self.files.qcow2, 'qcow2')
        self.sim.reset_counts()
        vol, update, cloned = self.clone(meta)
        self.assertEqual((None, False), (update, cloned))
        self.assertEqual({LIST: 1}, self.sim.request_counts())
        self.assertEqual([], self.snapshots())
        self.assertNotIn(vol.name, self.share_entries())

    def test_download_fills_the_cache(self):
        meta = self.glance.add(self.files.raw, 'raw')
        vol = self.fill(meta, size=1)
        self.assertImageIn(vol, 1)
        self.assertEqual(1, self.glance.downloads)
        snaps = self.image_snapshots(meta['id'])
        self.assertEqual(1, len(snaps))
        self.assertEqual(meta['id'], snaps[0]['vmUuid']['uuid'])
        self.assertEqual('image-' + meta['id'], snaps[0]['vmName'])
        self.assertNoTemporaries()
        self.assertIsNotNone(self.drv._image_last_used(meta['id']))

    def test_cache_hit_is_one_clone_resized_and_bootable(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta)
        self.sim.reset_counts()
        vol, update, cloned = self.clone(meta, size=2)
        self.assertTrue(cloned)
        self.assertEqual({'provider_location': self.share, 'bootable': True},
                         update)
        counts = self.sim.request_counts()
        self.assertLessEqual(sum(counts.values()), 2)
        self.assertEqual(1, counts.get(CLONE))
        self.assertEqual(1, self.glance.downloads)
        self.assertImageIn(vol, 2)
        self.assertEqual(1, len(self.snapshots()))
        self.assertNoTemporaries()

    def test_cached_snapshot_holds_the_image_not_the_first_volume(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta, size=3)
        vol, _update, cloned = self.clone(meta, size=1)
        self.assertTrue(cloned)
        self.assertImageIn(vol, 1)

    def test_qcow2_download_cached_as_raw(self):
        meta = self.glance.add(self.files.qcow2, 'qcow2')
        first = self.fill(meta)
        self.assertImageIn(first, 1)
        vol, _update, cloned = self.clone(meta)
        self.assertTrue(cloned)
        self.assertImageIn(vol, 1)
        self.assertEqual(1, self.glance.downloads)

    def test_copy_clones_when_cached_meanwhile(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta)
        vol = self.new_volume(size=2)
        self.sim.reset_counts()
        self.drv.copy_image_to_volume(self.ctxt, vol, self.glance, meta['id'])
        self.assertEqual(1, self.glance.downloads)
        self.assertEqual(1, self.sim.request_counts().get(CLONE))
        self.assertImageIn(vol, 2)

    def test_image_too_big_for_the_volume_is_refused(self):
        big = os.path.join(self.tmp, 'big.raw')
        with open(big, 'wb') as f:
            f.truncate(units.Gi + MiB)
        meta = self.glance.add(big, 'raw')
        self.fill(meta, size=2)
        vol = self.bare_volume(size=1)
        self.assertRaises(exception.ImageUnacceptable, self.drv.clone_image,
                          self.ctxt, vol, None, meta, self.glance)
        self.assertNotIn(vol.name, self.share_entries())
        self.assertNoTemporaries()

    def test_snapshot_failure_still_gives_a_volume(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.sim.inject_fault(SNAP, count=10, status=500,
                              code='ERR-API-3106')
        vol = self.fill(meta)
        self.sim.clear_faults()
        self.assertImageIn(vol, 1)
        self.assertEqual([], self.snapshots())
        self.assertNoTemporaries()

    def test_failed_clone_falls_back_to_download(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta)
        self.sim.inject_fault(CLONE, count=10, status=404,
                              code='ERR-API-3214')
        vol, update, cloned = self.clone(meta)
        self.sim.clear_faults()
        self.assertEqual((None, False), (update, cloned))
        self.assertNotIn(vol.name, self.share_entries())
        self.assertNoTemporaries()

    def test_encrypted_volume_is_not_cloned(self):
        meta = self.glance.add(self.files.raw, 'raw')
        self.fill(meta)
        vol = self.bare_volume(size=1, encryption_key_id=str(uuid.uuid4()))
        self.assertEqual((None, False), self.drv.clone_image(
            self.ctxt, vol, None, meta, self.glance))

    def test_odd_image_id_is_not_cached(self):
        meta = self.glance.add(self.files.raw, 'raw', image_id='odd id')
        self.assertEqual((None, False), self.clone(meta)[1:])
        vol = self.fill(meta)
        self.assertImageIn(vol, 1)
        self.assertEqual([], self.snapshots())

    def test_copy_volume_to_image_uploads_the_raw_file(self):
        meta = self.glance.add(self.files.raw, 'raw')
        vol_type = volume_types.get_default_volume_type(self.ctxt)
        vol = self.new_volume(size=1, volume_type_id=vol_type['id'])
        self.drv.copy_image_to_volume(self.ctxt, vol, self.glance, meta['id'])
        target = self.glance.add(self.files.raw, 'raw')
        self.drv.copy_volume_to_image(self.ctxt, vol, self.glance, target)
        uploaded = self.glance.uploaded[target['id']]
        self.assertEqual(units.Gi, len(uploaded))
        self.assertEqual(self.files.data, uploaded[:len(self.files.data)])


class RefusalTest(ImageTestCase):

    def _refused_download(self, meta):
        vol = self.new_volume(size=1)
        self.assertRaises(exception.ImageUnacceptable,
                          self.drv.copy_image_to_volume,
                          self.ctxt, vol, self.glance, meta['id'])
        self.assertEqual([], self.snapshots())
        self.assertNoTemporaries()
        self.assertEqual([vol.name], [e for e in self.share_entries()
                                      if not e.startswith('.')])

    def test_qcow2_with_backing_file_is_refused(self):
        self._refused_download(self.glance.add(self.files.backed, 'qcow2'))

    def test_qcow2_disguised_as_raw_is_refused(self):
        self._refused_download(self.glance.add(self.files.qcow2, 'raw'))

    def test_raw_disguised_as_qcow2_is_refused(self):
        self._refused_download(self.glance.add(self.files.raw, 'qcow2'))


class GlanceShareBase(ImageTestCase):
    """A VMstore share Glance keeps its images on (an image share)."""

    GLANCE = '127.0.0.1:/tintri/glance'

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        self.glance_dir = os.path.join(self.sim.datastore, 'glance')
        os.makedirs(os.path.join(self.glance_dir, 'images'))
        image_shares = os.path.join(self.tmp, 'image_shares')
        with open(image_shares, 'w') as f:
            f.write('# Glance\n%s\n' % self.GLANCE)
        flags['tintri_image_shares_config'] = image_shares
        # A miss then means Cinder's download: what these tests check is
        # which files on the shares are (not) read.
        flags['tintri_image_write_once'] = False
        return flags

    def on_share(self, path, disk_format, **extra):
        image_id = str(uuid.uuid4())
        dest = os.path.join(self.glance_dir, 'images', image_id)
        with open(path, 'rb') as src, open(dest, 'wb') as dst:
            dst.write(src.read())
        meta = self.glance.add(dest, disk_format, image_id=image_id, **extra)
        url = 'nfs://127.0.0.1/tintri/glance/images/%s' % image_id
        return meta, url


class GlanceShareTest(GlanceShareBase):
    """Images whose file lives on a VMstore share Glance uses."""

    def test_raw_image_cloned_in_place(self):
        meta, url = self.on_share(self.files.raw, 'raw')
        self.sim.reset_counts()
        vol, update, cloned = self.clone(meta, size=2, location=(url, []))
        self.assertTrue(cloned)
        self.assertTrue(update['bootable'])
        counts = self.sim.request_counts()
        self.assertEqual({LIST: 2, SNAP: 1, CLONE: 1}, counts)
        self.assertImageIn(vol, 2)
        self.assertEqual(0, self.glance.downloads)
        snap, = self.image_snapshots(meta['id'])
        self.assertEqual('glance/images/%s' % meta['id'], snap['file'])
        # the next one is a plain cache hit
        self.sim.reset_counts()
        vol2, _update, cloned = self.clone(meta, size=1, location=(url, []))
        self.assertTrue(cloned)
        self.assertEqual({LIST: 1, CLONE: 1}, self.sim.request_counts())
        self.assertImageIn(vol2, 1)
        self.assertEqual(self.files.data[:MiB], open(
            os.path.join(self.glance_dir, 'images', meta['id']),
            'rb').read(MiB))

    def test_direct_url_and_location_metadata(self):
        meta, url = self.on_share(self.files.raw, 'raw')
        _vol, _u, cloned = self.clone(meta, location=(url, []))
        self.assertTrue(cloned)
        meta2, _url = self.on_share(self.files.raw, 'raw')
        location = ('file:///var/lib/glance/images/%s' % meta2['id'], [{
            'url': 'file:///var/lib/glance/images/%s' % meta2['id'],
            'metadata': {'type': 'nfs',
                         'share_location': 'nfs://127.0.0.1/tintri/glance',
                         'mount_point': '/var/lib/glance'}}])
        _vol, _u, cloned = self.clone(meta2, location=location)
        self.assertTrue(cloned)
        self.assertEqual(1, len(self.image_snapshots(meta2['id'])))

    def test_qcow2_converted_and_cached(self):
        meta, url = self.on_share(self.files.qcow2, 'qcow2')
        vol, _u, cloned = self.clone(meta, location=(url, []))
        self.assertTrue(cloned)
        self.assertImageIn(vol, 1)
        snap, = self.image_snapshots(meta['id'])
        self.assertEqual('image-' + meta['id'], snap['vmName'])
        self.assertNoTemporaries()
        vol2, _u, cloned = self.clone(meta, location=(url, []))
        self.assertTrue(cloned)
        self.assertImageIn(vol2, 1)
        self.assertEqual(1, len(self.snapshots()))

    def _refused(self, path, disk_format):
        meta, url = self.on_share(path, disk_format)
        vol = self.bare_volume(size=1)
        self.assertRaises(exception.ImageUnacceptable, self.drv.clone_image,
                          self.ctxt, vol, (url, []), meta, self.glance)
        self.assertEqual([], self.snapshots())
        self.assertEqual([], [e for e in self.share_entries()
                              if not e.startswith('.')])
        self.assertNoTemporaries()

    def test_backing_file_on_share_refused(self):
        self._refused(self.files.backed, 'qcow2')

    def test_disguised_on_share_refused(self):
        self._refused(self.files.qcow2, 'raw')

    def test_paths_outside_the_share_are_ignored(self):
        meta, _url = self.on_share(self.files.raw, 'raw')
        for url in ('nfs://127.0.0.1/tintri/glance/images/../../cinder/x',
                    'nfs://127.0.0.1/tintri/other/%s' % meta['id'],
                    'nfs://192.0.2.1/tintri/glance/images/%s' % meta['id'],
                    'http://127.0.0.1/tintri/glance/images/%s' % meta['id']):
            self.assertEqual((None, False), self.clone(
                meta, location=(url, []))[1:], url)
        self.assertEqual([], self.snapshots())

    def test_file_of_another_size_is_not_used(self):
        meta, url = self.on_share(self.files.raw, 'raw')
        meta['size'] += 1
        self.assertEqual((None, False),
                         self.clone(meta, location=(url, []))[1:])


class ConcurrencyTest(ImageTestCase):
    """Real coordination locks (file backend) between threads."""

    MOCK_TOOZ = False
    N = 6

    def _run_all(self, funcs):
        run_all(self, funcs)

    def test_concurrent_downloads_make_one_snapshot(self):
        meta = self.glance.add(self.files.raw, 'raw')
        vols = [self.new_volume(size=1) for _ in range(self.N)]
        self._run_all([
            lambda v=v: self.drv.copy_image_to_volume(
                self.ctxt, v, self.glance, meta['id']) for v in vols])
        self.assertEqual(1, len(self.image_snapshots(meta['id'])))
        self.assertEqual(1, self.glance.downloads)
        for vol in vols:
            self.assertImageIn(vol, 1)
        self.assertNoTemporaries()

    def test_two_hosts_make_one_snapshot(self):
        """Two drivers (as two cinder-volume hosts) sharing the locks."""
        other = self.make_driver(self.flags)
        self.addCleanup(other._image_cache_stop)
        meta = self.glance.add(self.files.qcow2, 'qcow2')
        vols = [self.new_volume(size=1) for _ in range(self.N)]
        drivers = [self.drv, other] * (self.N // 2)
        self._run_all([
            lambda v=v, d=d: d.copy_image_to_volume(
                self.ctxt, v, self.glance, meta['id'])
            for v, d in zip(vols, drivers)])
        self.assertEqual(1, len(self.image_snapshots(meta['id'])))
        self.assertEqual(1, self.glance.downloads)
        for vol in vols:
            self.assertImageIn(vol, 1)

    def test_lock_timeout_downloads_without_caching(self):
        self.override_config('tintri_image_lock_timeout', 0,
                             group=driver_base.BACKEND)
        meta = self.glance.add(self.files.raw, 'raw')
        lock = coordination.COORDINATOR.get_lock(
            images.IMAGE_LOCK % meta['id'])
        self.assertTrue(lock.acquire(blocking=False))
        self.addCleanup(lock.release)
        vol = self.fill(meta)
        self.assertImageIn(vol, 1)
        self.assertEqual([], self.snapshots())


class GlanceShareConcurrencyTest(GlanceShareBase):
    """Simultaneous direct clones of one image, real coordination locks."""

    MOCK_TOOZ = False
    N = 6

    def test_concurrent_direct_clones_make_one_snapshot(self):
        meta, url = self.on_share(self.files.qcow2, 'qcow2')
        results = []
        run_all(self, [lambda: results.append(self.clone(
            meta, location=(url, []))) for _ in range(self.N)])
        self.assertEqual(1, len(self.image_snapshots(meta['id'])))
        self.assertEqual(self.N, len(results))
        for vol, update, cloned in results:
            self.assertTrue(cloned)
            self.assertImageIn(vol, 1)


class PeriodicCleanupTest(ImageTestCase):

    def test_starts_runs_and_stops(self):
        calls = []
        ran = threading.Event()

        def cleanup():
            calls.append(1)
            ran.set()
            return []

        self.drv._image_cache_stop()
        self.override_config('tintri_image_cache_cleanup_interval', 1,
                             group=driver_base.BACKEND)
        self.drv._image_cache_cleanup = cleanup
        self.drv._image_cache_start()
        self.addCleanup(self.drv._image_cache_stop)
        self.assertTrue(ran.wait(DEADLINE))
        thread = self.drv._image_cache_thread
        self.drv._image_cache_stop()
        self.assertFalse(thread.is_alive())
        done = len(calls)
        time.sleep(1.5)
        self.assertEqual(done, len(calls))

    def test_disabled_with_zero_interval(self):
        self.drv._image_cache_stop()
        self.override_config('tintri_image_cache_cleanup_interval', 0,
                             group=driver_base.BACKEND)
        self.drv._image_cache_start()
        self.assertIsNone(self.drv._image_cache_thread)

    def test_cleanup_forgets_deleted_images(self):
        meta = self.glance.add(self.files.raw, 'raw')
        vol = self.fill(meta)
        self.assertIsNotNone(self.drv._image_last_used(meta['id']))
        self.override_config('tintri_image_cache_expiry_days', 1,
                             group=driver_base.BACKEND)
        old = time.time() - 3 * 86400
        for share in self.drv._mounted_shares:
            marker = os.path.join(self.drv._get_mount_point_for_share(share),
                                  images.MARKER_DIR, meta['id'])
            if os.path.exists(marker):
                os.utime(marker, (old, old))
        # the snapshot itself is new: kept
        self.assertEqual([], self.drv._image_cache_cleanup())
        self.drv.delete_volume(vol)
        make_cleaner = self.drv._image_cache_cleaner

        def three_days_later():
            cleaner = make_cleaner()
            cleaner._clock = lambda: time.time() + 3 * 86400
            return cleaner

        self.drv._image_cache_cleaner = three_days_later
        deleted = self.drv._image_cache_cleanup()
        self.assertEqual([meta['id']], [d['image_id'] for d in deleted])
        self.assertEqual([], self.snapshots())
        self.assertIsNone(self.drv._image_last_used(meta['id']))
