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
"""The image-cache cleanup against the simulator, over several pages."""

import contextlib
import os
import time
import uuid

from cinder_tintri import image_cache
from tests.unit import driver_base

DAY_MS = 86400 * 1000
LIST = 'GET /api/v310/snapshot'
PAGE = 7


class CleanerTestCase(driver_base.DriverTestCase):

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        flags['tintri_api_page_size'] = PAGE
        return flags

    def setUp(self):
        super().setUp()
        self.addCleanup(self.drv._image_cache_stop)
        self.client = self.drv._client
        self.now_ms = int(time.time() * 1000)
        self.used = {}
        src = os.path.join(self.sim.datastore, 'cinder', 'image-src')
        with open(src, 'wb') as f:
            f.write(b'x' * 4096)
        self.src = 'cinder/image-src'

    def seed_image(self, age_days, image_id=None, vm_name=None, **fields):
        image_id = image_id or str(uuid.uuid4())
        fields.setdefault('description', 'image-' + image_id)
        fields.setdefault('vmUuid', image_id)
        snap_uuid, = self.sim.seed_snapshots(
            1, file=self.src, vm_name=vm_name or 'image-' + image_id,
            createTime=self.now_ms - int(age_days * DAY_MS), **fields)
        return snap_uuid, image_id

    def clone_of(self, snap_uuid):
        name = 'clone-%s' % uuid.uuid4().hex[:8]
        self.client.clone_volume(snap_uuid, '/tintri/cinder/' + name)

    def remaining(self):
        return set(s['uuid']['uuid']
                   for s in self.sim.inventory()['snapshots'])

    def cleaner(self, **kwargs):
        kwargs.setdefault('expiry_days', 30)
        kwargs.setdefault('free_space_start', 0)
        kwargs.setdefault('free_space_stop', 0)
        kwargs.setdefault('timeout', 60)
        kwargs.setdefault('last_used', self.used.get)
        return image_cache.ImageCacheCleaner(self.client, **kwargs)


class ExpiryTest(CleanerTestCase):

    def test_deletes_exactly_the_expired_unreferenced_over_pages(self):
        expired = set(self.seed_image(40 + i)[0] for i in range(9))
        fresh = set(self.seed_image(i + 0.5)[0] for i in range(10))
        used_recently = set()
        for i in range(3):
            snap_uuid, image_id = self.seed_image(45)
            self.used[image_id] = time.time() - 86400
            used_recently.add(snap_uuid)
        cloned = set()
        for i in range(2):
            snap_uuid, _image = self.seed_image(50)
            self.clone_of(snap_uuid)
            cloned.add(snap_uuid)
        # Not image-cache snapshots, however old or alike they look.
        others = set(self.sim.seed_snapshots(
            5, file=self.src, createTime=self.now_ms - 90 * DAY_MS))
        others.add(self.seed_image(60, description='image-not-its-vm')[0])
        # (A VM, instance and VM name that do not name the image.)
        others.add(self.seed_image(60, vmUuid='someone-else',
                                   vm_name='someone-else')[0])
        others.add(self.seed_image(60, description='my-image-backup')[0])
        others.add(self.seed_image(60, type='USER_GENERATED_SNAPSHOT')[0])
        self.sim.reset_counts()

        deleted = self.cleaner().run_once()

        self.assertEqual(expired, set(d['uuid'] for d in deleted))
        self.assertEqual({image_cache.EXPIRED},
                         set(d['reason'] for d in deleted))
        self.assertEqual(fresh | used_recently | cloned | others,
                         self.remaining())
        # 9 + 10 + 3 unreferenced candidates: several pages were read.
        self.assertGreaterEqual(self.sim.request_counts()[LIST],
                                (9 + 10 + 3) // PAGE + 1)

    def test_zero_days_disables_expiry(self):
        self.seed_image(400)
        self.assertEqual([], self.cleaner(expiry_days=0).run_once())
        self.assertEqual(1, len(self.remaining()))

    def test_snapshot_cloned_after_listing_is_kept(self):
        snap_uuid, _image = self.seed_image(40)
        listed = list(self.client.find_snapshots())
        self.clone_of(snap_uuid)
        self.mock_object(self.client, 'find_snapshots',
                         side_effect=lambda **kw: iter(listed))
        self.assertEqual([], self.cleaner().run_once())
        self.assertIn(snap_uuid, self.remaining())

    def test_array_refusal_keeps_the_snapshot(self):
        snap_uuid, _image = self.seed_image(40)
        listed = list(self.client.find_snapshots())
        self.clone_of(snap_uuid)
        self.mock_object(self.client, 'find_snapshots',
                         side_effect=lambda **kw: iter(listed))
        # Even if the fresh read missed the clone, the array refuses.
        self.mock_object(self.client, 'get_snapshot',
                         side_effect=lambda u: dict(listed[0]))
        self.assertEqual([], self.cleaner().run_once())
        self.assertIn(snap_uuid, self.remaining())

    def test_busy_image_is_skipped(self):
        busy_uuid, busy_image = self.seed_image(40)
        other_uuid, _other = self.seed_image(41)

        @contextlib.contextmanager
        def try_lock(image_id):
            yield image_id != busy_image

        deleted = self.cleaner(try_lock=try_lock).run_once()
        self.assertEqual([other_uuid], [d['uuid'] for d in deleted])
        self.assertEqual({busy_uuid}, self.remaining())

    def test_time_budget_stops_deleting(self):
        for i in range(5):
            self.seed_image(40 + i)
        clock = [0.0]
        delete = self.client.delete_snapshot

        def slow_delete(snap_uuid):
            delete(snap_uuid)
            clock[0] += 100

        self.mock_object(self.client, 'delete_snapshot',
                         side_effect=slow_delete)
        deleted = self.cleaner(timeout=150,
                               monotonic=lambda: clock[0]).run_once()
        self.assertEqual(2, len(deleted))
        self.assertEqual(3, len(self.remaining()))

    def test_listing_failure_deletes_nothing(self):
        self.seed_image(40)
        self.sim.inject_fault(LIST, count=50, status=500,
                              code='ERR-API-0001')
        self.assertEqual([], self.cleaner().run_once())
        self.sim.clear_faults()
        self.assertEqual(1, len(self.remaining()))


class FreeSpaceTest(CleanerTestCase):

    def _fake_space(self, total=100.0, free=5.0, per_deleted=3.0):
        start = len(self.remaining())

        def stats():
            gone = start - len(self.remaining())
            return {'total_gib': total, 'free_gib': free + per_deleted * gone}

        self.mock_object(self.client, 'get_datastore_stats',
                         side_effect=stats)

    def test_lru_deleted_until_the_stop_threshold(self):
        # Ages 20..11 days: none expired; the oldest has a clone.
        snaps = [self.seed_image(20 - i)[0] for i in range(10)]
        self.clone_of(snaps[0])
        # a recorded use makes the second oldest the most recently used
        second_uuid = snaps[1]
        second_image = [s for s in self.sim.inventory()['snapshots']
                        if s['uuid']['uuid'] == second_uuid][0]
        self.used[second_image['vmUuid']['uuid']] = time.time()
        self._fake_space(free=5.0, per_deleted=3.0)

        deleted = self.cleaner(free_space_start=10,
                               free_space_stop=20).run_once()

        # 5% free, 3% per deletion: 5 deletions reach 20%.
        self.assertEqual(snaps[2:7], [d['uuid'] for d in deleted])
        self.assertEqual({image_cache.SPACE},
                         set(d['reason'] for d in deleted))
        self.assertEqual(set(snaps[:2] + snaps[7:]), self.remaining())

    def test_nothing_deleted_above_the_start_threshold(self):
        for i in range(3):
            self.seed_image(5 + i)
        self._fake_space(free=15.0)
        self.assertEqual([], self.cleaner(free_space_start=10,
                                          free_space_stop=20).run_once())
        self.assertEqual(3, len(self.remaining()))

    def test_expired_first_then_space(self):
        expired, _i = self.seed_image(40)
        lru = [self.seed_image(20 - i)[0] for i in range(4)]
        self._fake_space(free=5.0, per_deleted=3.0)
        deleted = self.cleaner(free_space_start=10,
                               free_space_stop=12).run_once()
        # the expiry deletion already brought 5% to 8%; one more for 11%,
        # and a third for 14% >= 12%.
        self.assertEqual([expired] + lru[:2], [d['uuid'] for d in deleted])

    def test_stats_failure_skips_space_pressure(self):
        self.seed_image(5)
        self.mock_object(self.client, 'get_datastore_stats',
                         side_effect=image_cache.tclient.TintriError('x'))
        self.assertEqual([], self.cleaner(free_space_start=10,
                                          free_space_stop=20).run_once())
