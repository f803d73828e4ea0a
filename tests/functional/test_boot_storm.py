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
"""Boot storm: 20 volumes from one image through cinder's API.

The real API, scheduler and volume manager run in-process with
TintriDriver against the simulator, on a share bind-mounted from a
loopback XFS with reflink (so array snapshots and clones cost no data
blocks, as on a VMstore).  Glance is cinder's fake image service serving a
real image and counting downloads.

Measured: image downloads, REST calls by endpoint, and the data blocks the
whole storm added to the array's filesystem.
"""

import os
import time
import uuid

from cinder import context
from cinder import objects
from cinder.volume import configuration
from oslo_log import log as logging
from oslo_utils import units
import testtools.content

from tests.functional import harness
from tests.unit import test_images

LOG = logging.getLogger(__name__)
MiB = units.Mi
N = 20
IMAGE_MIB = 32
SNAP = 'POST /api/v310/cinder/snapshot'
CLONE = 'POST /api/v310/cinder/clone'
REFRESH = 'POST /api/v310/cinder/host/refresh'


def fs_used(path):
    os.sync()
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class _ImageTestBase(harness.ApiTestCase):
    """The lifecycle harness with a counting Glance; adds no tests."""

    EXTRA_FLAGS = {}

    def _get_flags(self):
        # Imported here: importing cinder.image.glance before cinder's
        # volume manager is a circular import.
        from cinder.image import glance

        f = super()._get_flags()
        self.glance = test_images.ImageService()
        self.mock_object(glance, 'get_remote_image_service',
                         lambda ctx, href: (self.glance, href))
        self.mock_object(glance, 'get_default_image_service',
                         return_value=self.glance)
        f.update(self.EXTRA_FLAGS)
        return f

    def setUp(self):
        super().setUp()
        from cinder import context
        from cinder.db import api as db_api
        db_api.quota_class_update(context.get_admin_context(), 'default',
                                  'volumes', 4 * N)

    def _image(self):
        path = os.path.join(self.env.tmp, 'image.raw')
        self.data = os.urandom(IMAGE_MIB * MiB)
        with open(path, 'wb') as f:
            f.write(self.data)
        return self.glance.add(path, 'raw', min_disk=0, min_ram=0)

    def _wait_all(self, ids):
        return [self._wait(self.api.get_volume, vol_id,
                           ('creating', 'downloading'), 'available')
                for vol_id in ids]

    def _check(self, vol, size_gib):
        self.assertEqual(size_gib * units.Gi, self._size(vol))
        self.assertEqual(self.data, self._read(vol, len(self.data)))
        self.assertEqual(b'\0' * MiB, self._read(vol, MiB,
                                                 offset=len(self.data)))
        self.assertEqual('true', vol['bootable'])


class BootStormTest(_ImageTestBase):

    def test_twenty_volumes_one_download_nineteen_clones(self):
        sim = self.env.sim
        meta = self._image()
        drv = self.volume.manager.driver
        self.addCleanup(drv._image_cache_stop)
        used_before = fs_used(self.env.share_dir)
        sim.reset_counts()
        started = time.monotonic()

        first = self._volume(size=1, imageRef=meta['id'], name='boot-0')
        sizes = [1 + i % 3 for i in range(1, N)]
        posted = [self.api.post_volume({'volume': {
            'size': size, 'imageRef': meta['id'],
            'name': 'boot-%d' % (i + 1)}}) for i, size in enumerate(sizes)]
        vols = self._wait_all([v['id'] for v in posted])
        elapsed = time.monotonic() - started

        counts = sim.request_counts()
        used = fs_used(self.env.share_dir) - used_before
        report = ('Boot storm: %(n)d volumes in %(t).1fs, %(d)d download(s) '
                  'of %(mib)d MiB (%(b)d bytes), REST %(rest)s, %(used).1f '
                  'MiB of array data written.'
                  % {'n': N, 't': elapsed, 'd': self.glance.downloads,
                     'mib': IMAGE_MIB, 'b': self.glance.bytes_downloaded,
                     'rest': counts, 'used': used / MiB})
        LOG.info(report)
        self.addDetail('boot-storm', testtools.content.text_content(report))
        if os.environ.get('TINTRI_BOOT_STORM_REPORT'):
            with open(os.environ['TINTRI_BOOT_STORM_REPORT'], 'a') as f:
                f.write(report + '\n')
        self.assertEqual(1, self.glance.downloads)
        self.assertEqual(IMAGE_MIB * MiB, self.glance.bytes_downloaded)
        # One image snapshot; on a VMstore >= 6 (vmstore6) the first,
        # direct, attempt is refused, the file is inventoried once and the
        # driver uses the refresh protocol from then on.
        refresh = drv._inventory.mode == 'refresh'
        self.assertEqual(2 if refresh else 1, counts.get(SNAP))
        self.assertEqual(N - 1, counts.get(CLONE))
        # only lookups besides: one per volume plus the fill's re-check
        expected = {SNAP, CLONE, 'GET /api/v310/snapshot'}
        if refresh:
            expected |= {REFRESH, 'GET /api/v310/virtualDisk'}
            self.assertEqual(1, counts.get(REFRESH))
        self.assertEqual(expected,
                         set(k for k in counts if '/cinder/' in k
                             or k in ('GET /api/v310/snapshot',
                                      'GET /api/v310/virtualDisk')))
        # (+1 on vmstore6: the refused direct snapshot is checked against
        # the snapshot limit with one count)
        self.assertLessEqual(counts['GET /api/v310/snapshot'],
                             N + 1 + int(refresh))
        # The image's data was written to the array once; snapshot and
        # clones share its blocks.
        self.assertLess(used, 2 * IMAGE_MIB * MiB)
        self.assertEqual(0, sim.inventory()['copies'].get('copy', 0))

        self._check(first, 1)
        for vol, size in zip(vols, sizes):
            self._check(vol, size)

        snaps = sim.inventory()['snapshots']
        self.assertEqual(['image-' + meta['id']],
                         [s['description'] for s in snaps])

        for vol in [first] + vols:
            self.api.delete_volume(vol['id'])
        for vol in [first] + vols:
            self._wait_gone(self.api.get_volume, vol['id'])
        # The cache entry outlives the volumes until the cleanup expires it.
        make_cleaner = drv._image_cache_cleaner

        def later():
            cleaner = make_cleaner()
            cleaner._clock = lambda: time.time() + 31 * 86400
            return cleaner

        drv._image_cache_cleaner = later
        deleted = drv._image_cache_cleanup()
        self.assertEqual([meta['id']], [d['image_id'] for d in deleted])
        inventory = sim.inventory()
        self.assertEqual([], inventory['snapshots'])
        self.assertEqual([], [e for e in os.listdir(self.env.share_dir)
                              if not e.startswith('.tintri-image-cache')])

    def test_unsafe_image_is_refused_through_the_api(self):
        path = os.path.join(self.env.tmp, 'base.raw')
        with open(path, 'wb') as f:
            f.truncate(MiB)
        backed = os.path.join(self.env.tmp, 'backed.qcow2')
        test_images.qemu_img('create', '-f', 'qcow2', '-b', path, '-F',
                             'raw', backed)
        meta = self.glance.add(backed, 'qcow2', image_id=str(uuid.uuid4()))
        vol = self.api.post_volume({'volume': {'size': 1,
                                               'imageRef': meta['id']}})
        self._wait(self.api.get_volume, vol['id'],
                   ('creating', 'downloading'), 'error')
        self.assertEqual([], self.env.sim.inventory()['snapshots'])
        self.assertEqual([], [e for e in os.listdir(self.env.share_dir)
                              if e.startswith('.tintri-tmp')])


def _image_volume_cache_flags(project_id):
    """Cinder's own image-volume cache on, owned by ``project_id``."""
    return {
        'image_volume_cache_enabled': {
            'v': True, 'g': configuration.SHARED_CONF_GROUP},
        'cinder_internal_tenant_project_id': {'v': project_id},
        'cinder_internal_tenant_user_id': {'v': str(uuid.uuid4())},
    }


class WithImageVolumeCacheTest(_ImageTestBase):
    """Cinder's own image-volume cache enabled as well."""

    INTERNAL_PROJECT = str(uuid.uuid4())
    EXTRA_FLAGS = dict(
        _image_volume_cache_flags(INTERNAL_PROJECT),
        # Cinder's download path, so that its cache gets an entry.
        tintri_image_write_once={
            'v': False, 'g': configuration.SHARED_CONF_GROUP})

    def test_array_cache_answers_and_sizes_are_right(self):
        """The first request misses both caches.

        Cinder downloads once, creates the volume at the image's size
        (copy_image_to_volume fills the array cache), clones it into its
        own cache entry and extends the volume back.  Later requests are
        array clones from clone_image; Cinder's cache is not consulted.
        """
        drv = self.volume.manager.driver
        self.addCleanup(drv._image_cache_stop)
        self.assertIsNotNone(self.volume.manager.image_volume_cache)
        meta = self._image()
        sim = self.env.sim
        sizes = (2, 1, 3)

        vols = [self._volume(size=size, imageRef=meta['id'])
                for size in sizes]

        self.assertEqual(1, self.glance.downloads)
        for vol, size in zip(vols, sizes):
            self._check(vol, size)
        cache_vols = objects.VolumeList.get_all_by_project(
            context.get_admin_context(), self.INTERNAL_PROJECT, None, None)
        self.assertEqual(1, len(cache_vols))
        self.assertEqual(1, cache_vols[0].size)
        descriptions = [s['description']
                        for s in sim.inventory()['snapshots']]
        self.assertEqual(1, descriptions.count('image-' + meta['id']))
        # 1 image snapshot + the helper snapshot behind Cinder's entry
        self.assertEqual(2, len(descriptions))


class WriteOnceWithImageVolumeCacheTest(_ImageTestBase):
    """Both caches on, a raw image written once (the default)."""

    INTERNAL_PROJECT = str(uuid.uuid4())
    EXTRA_FLAGS = _image_volume_cache_flags(INTERNAL_PROJECT)

    def test_first_request_is_answered_by_clone_image(self):
        """The miss is downloaded once into the array cache by clone_image.

        So Cinder's own cache never gets an entry (it caches only what it
        downloaded), and no image data goes through image_conversion_dir.
        """
        drv = self.volume.manager.driver
        self.addCleanup(drv._image_cache_stop)
        meta = self._image()
        sizes = (2, 1, 3)
        vols = [self._volume(size=size, imageRef=meta['id'])
                for size in sizes]
        self.assertEqual(1, self.glance.downloads)
        for vol, size in zip(vols, sizes):
            self._check(vol, size)
        cache_vols = objects.VolumeList.get_all_by_project(
            context.get_admin_context(), self.INTERNAL_PROJECT, None, None)
        self.assertEqual(0, len(cache_vols))
        self.assertEqual(['image-' + meta['id']],
                         [s['description'] for s in
                          self.env.sim.inventory()['snapshots']])
        self.assertEqual([], [e for e in os.listdir(self.env.share_dir)
                              if e.startswith('.tintri-tmp')])
