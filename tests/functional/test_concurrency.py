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
"""Concurrent driver operations on shared objects, as greenthreads.

cinder-volume runs requests as greenthreads of one process; these tests do
the same against the simulator (with a little latency so that operations
really interleave) with real coordination locks (tooz file backend):

* many clones of one source at once;
* deleting a source while it is being cloned;
* snapshots of a volume while it is being cloned;
* deleting a snapshot while volumes are created from it.

Every operation either succeeds with the right bytes or fails with a
Cinder exception; the leak checker finds nothing afterwards, deleting
everything leaves an empty array, and every wait is bounded (a deadlock
fails the test at DEADLINE).
"""

import time

from cinder import exception
from cinder.tests.unit import utils as test_utils
import eventlet
from oslo_log import log as logging
from oslo_utils import units

from tests import leak_check
from tests.unit import driver_base

LOG = logging.getLogger(__name__)
MiB = units.Mi
DEADLINE = 90.0
LATENCY = 0.02
N = 16


class ConcurrencyTest(driver_base.DriverTestCase):

    MOCK_TOOZ = False       # real locks

    def setUp(self):
        super().setUp()
        self.addCleanup(self.drv._image_cache_stop)
        self.sim.set_latency(LATENCY)

    # -- helpers --------------------------------------------------------

    def run_all(self, funcs):
        """Run ``funcs`` as greenthreads; [(result | exception)]."""
        def call(func):
            try:
                return func()
            except exception.CinderException as e:
                return e
        with eventlet.Timeout(DEADLINE, exception=AssertionError(
                'deadlock or stall: not done in %ss' % DEADLINE)):
            threads = [eventlet.spawn(call, f) for f in funcs]
            return [t.wait() for t in threads]

    def bare_volume(self, size=1):
        return test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=size, status='creating')

    def finish(self, vol, result):
        """Record a create's outcome as the volume manager would."""
        if isinstance(result, Exception):
            self.assertIsInstance(result,
                                  exception.VolumeBackendAPIException)
            vol.status = 'error'
        else:
            vol.update(result)
            vol.status = 'available'
        vol.save()
        return not isinstance(result, Exception)

    def delete_everything(self):
        vols, snaps = leak_check.cinder_objects(self.ctxt)
        self.run_all([lambda s=s: self.drv.delete_snapshot(s)
                      for s in snaps])
        self.run_all([lambda v=v: self.drv.delete_volume(v) for v in vols])
        for obj in snaps + vols:
            obj.destroy()
        inv = self.sim.inventory()
        self.assertEqual([], inv['snapshots'])
        self.assertEqual(['cinder/'], inv['files'])

    # -- tests ----------------------------------------------------------

    def test_many_clones_of_one_source(self):
        src = self.new_volume()
        data = b'C' * MiB
        self.write(src, data)
        vols = [self.bare_volume(size=2) for _ in range(N)]
        start = time.monotonic()
        results = self.run_all([lambda v=v: self.drv.create_cloned_volume(
            v, src) for v in vols])
        parallel = time.monotonic() - start
        for vol, result in zip(vols, results):
            self.assertTrue(self.finish(vol, result), result)
            self.assertEqual(data, self.read(vol, MiB))
            self.assertSizeGiB(vol, 2)
        helpers = self.sim.inventory()['snapshots']
        self.assertEqual(N, len(helpers))
        self.assertTrue(all(h['cloneReferenceCount'] == 1 for h in helpers))
        leak_check.assert_no_leaks(self, self.sim)
        # The same clones one after the other, for the record.
        more = [self.bare_volume(size=2) for _ in range(N)]
        start = time.monotonic()
        for vol in more:
            self.finish(vol, self.drv.create_cloned_volume(vol, src))
        serial = time.monotonic() - start
        LOG.info('%d clones of one source: %.2fs in parallel, %.2fs one '
                 'after the other', N, parallel, serial)
        self.addDetail('timing', _text('%d clones: parallel %.2fs, serial '
                                       '%.2fs' % (N, parallel, serial)))
        self.delete_everything()

    def test_delete_source_while_cloning(self):
        src = self.new_volume()
        data = b'D' * MiB
        self.write(src, data)
        vols = [self.bare_volume() for _ in range(N)]

        def delete_source():
            eventlet.sleep(LATENCY * 3)
            self.drv.delete_volume(src)
            return 'deleted'
        results = self.run_all(
            [lambda v=v: self.drv.create_cloned_volume(v, src)
             for v in vols] + [delete_source])
        self.assertEqual('deleted', results[-1])
        src.destroy()
        done = 0
        for vol, result in zip(vols, results):
            if self.finish(vol, result):
                done += 1
                # A clone that succeeded is whole: never a partial file.
                self.assertEqual(data, self.read(vol, MiB))
                self.assertSizeGiB(vol, 1)
        self.addDetail('outcome', _text('%d of %d clones succeeded' %
                                        (done, N)))
        leak_check.assert_no_leaks(self, self.sim)
        self.delete_everything()

    def test_snapshots_of_a_volume_being_cloned(self):
        src = self.new_volume()
        data = b'S' * MiB
        self.write(src, data)
        vols = [self.bare_volume() for _ in range(N // 2)]
        snaps = [test_utils.create_snapshot(self.ctxt, src.id,
                                            volume_size=1)
                 for _ in range(N // 2)]
        funcs = []
        for vol, snap in zip(vols, snaps):
            funcs.append(lambda v=vol: self.drv.create_cloned_volume(v, src))
            funcs.append(lambda s=snap: self.drv.create_snapshot(s))
        results = self.run_all(funcs)
        for i, (vol, snap) in enumerate(zip(vols, snaps)):
            self.assertTrue(self.finish(vol, results[2 * i]))
            self.assertEqual(data, self.read(vol, MiB))
            update = results[2 * i + 1]
            self.assertNotIsInstance(update, Exception)
            snap.update(update)
            snap.status = 'available'
            snap.save()
        uuids = self.snapshot_uuids()
        for snap in snaps:
            self.assertIn(snap.provider_id, uuids)
        # Each snapshot holds the data: volumes from two of them.
        for snap in snaps[:2]:
            vol = self.bare_volume()
            self.finish(vol, self.drv.create_volume_from_snapshot(vol, snap))
            self.assertEqual(data, self.read(vol, MiB))
        leak_check.assert_no_leaks(self, self.sim)
        self.delete_everything()

    def test_delete_snapshot_while_creating_volumes_from_it(self):
        src = self.new_volume()
        data = b'V' * MiB
        self.write(src, data)
        snap = test_utils.create_snapshot(self.ctxt, src.id, volume_size=1)
        snap.update(self.drv.create_snapshot(snap))
        snap.save()
        vols = [self.bare_volume() for _ in range(N // 2)]

        def delete_snapshot():
            eventlet.sleep(LATENCY * 2)
            self.drv.delete_snapshot(snap)
            return 'deleted'

        def create(i, vol):
            eventlet.sleep(i * LATENCY / 2)     # staggered around the delete
            return self.drv.create_volume_from_snapshot(vol, snap)
        results = self.run_all(
            [lambda i=i, v=v: create(i, v) for i, v in enumerate(vols)]
            + [delete_snapshot])
        self.assertEqual('deleted', results[-1])
        snap.destroy()
        done = 0
        for vol, result in zip(vols, results):
            if self.finish(vol, result):
                done += 1
                self.assertEqual(data, self.read(vol, MiB))
        self.addDetail('outcome', _text('%d of %d volumes created' %
                                        (done, len(vols))))
        # The array snapshot outlives the Cinder one only through its
        # clones (DELETE_ON_ZERO_CLONE_REFERENCES).
        leak_check.assert_no_leaks(self, self.sim)
        self.delete_everything()


def _text(value):
    from testtools import content
    return content.text_content(value)
