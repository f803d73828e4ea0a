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
"""Fault matrix: every driver operation under every injected fault.

Each cell runs one operation (snapshot, delete snapshot, volume from
snapshot, clone, revert, ...) through the driver against the simulator
with one fault injected on one REST endpoint the operation uses:

``session_expiry``  every session dropped before the operation
``busy_burst``      two 503 answers (retried)
``busy_exhausted``  503 until the retry budget is spent
``reset``           the connection closed before the array acted
``lost_response``   the array acted, the response was lost
``slow``            one response slower than the read timeout
``stalled``         every response slower than the read timeout
``crash``           cinder-volume dies right after the array call (for
                    clones: between the array clone and the rename); a
                    new driver (do_setup + check_for_setup_error) starts

A cell passes when the operation either succeeded with the right result
(data, size, array snapshot) or failed with a Cinder exception, with the
Cinder object in the state the volume manager gives it; when, once the
array finished any late work and one periodic stats update ran, the leak
checker finds nothing; and when deleting every object afterwards leaves
an empty array.  The outcome of every cell is recorded in ``RESULTS``
(``TINTRI_MATRIX_REPORT=<file>`` writes them as JSON).
"""

import hashlib
import json
import os
import shutil
import time
from unittest import mock
import uuid as uuid_mod

from cinder import exception
from cinder.tests.unit import utils as test_utils
from cinder.volume import configuration
from oslo_utils import units

from cinder_tintri import driver as tdriver
from tests.functional import fixtures as tfixtures
from tests.functional import harness
from tests import leak_check
from tests.unit import driver_base

MiB = units.Mi
API = 'POST /api/v310/'
SNAP = 'POST /api/v310/cinder/snapshot'
CLONE = 'POST /api/v310/cinder/clone'
DELETE = 'DELETE /api/v310/snapshot/{uuid}'
PUT = 'PUT /api/v310/snapshot/{uuid}'
GET = 'GET /api/v310/snapshot/{uuid}'
LIST = 'GET /api/v310/snapshot'
ANY = '*'

READ_TIMEOUT = 1.0
SLOW = READ_TIMEOUT + 0.6       # one response late, then found/resent
STALL = 4.0                     # beyond the whole retry budget
RETRY_DEADLINE = 3.0

OK, FAIL, EITHER = 'succeeded', 'failed cleanly', 'either'
FAULTS = {
    # name: (expected outcome, injection)
    'session_expiry': (OK, None),
    'busy_burst': (OK, dict(count=2, mode='error', status=503)),
    'busy_exhausted': (FAIL, dict(count=50, mode='error', status=503)),
    'reset': (OK, dict(count=1, mode='drop')),
    'lost_response': (OK, dict(count=1, mode='lose_response')),
    'slow': (OK, dict(count=1, mode='delay', delay=SLOW)),
    'stalled': (FAIL, dict(count=50, mode='delay', delay=STALL)),
    'crash': (FAIL, None),
}
FAULT_ORDER = ('session_expiry', 'busy_burst', 'busy_exhausted', 'reset',
               'lost_response', 'slow', 'stalled', 'crash')

RESULTS = {}


class _Crash(BaseException):
    """cinder-volume died: nothing after this point runs (no finally)."""


def _record(op, fault, endpoint, outcome, note=''):
    RESULTS['%s|%s|%s' % (op, fault, endpoint)] = {
        'op': op, 'fault': fault, 'endpoint': endpoint,
        'outcome': outcome, 'note': note}
    path = os.environ.get('TINTRI_MATRIX_REPORT')
    if path:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
        data.update(RESULTS)
        with open(path, 'w') as f:
            json.dump(data, f, indent=1, sort_keys=True)


class _Declined(exception.CinderException):
    message = 'clone_image declined: Cinder downloads the image instead'


class FaultMatrixBase(driver_base.DriverTestCase):
    """One test method per operation; each loops over faults/endpoints."""

    # Datastore paths the leak checker ignores (images on a Glance share).
    LEAK_IGNORE = ()
    # The strict VMstore >= 6 array (issue 17), with the snapshot PUT the
    # 'delete snapshot with clones' cells exercise (the other two delete
    # behaviours: tests.unit.test_array_protocols and test_lifecycle).
    SIM_KWARGS = {'profile': 'vmstore6', 'delete_with_clones': 'refuse_put'}

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        flags.update(tintri_read_timeout=READ_TIMEOUT,
                     tintri_openstack_hostname='keystone.test',
                     tintri_api_retries=4,
                     tintri_api_retry_deadline=RETRY_DEADLINE)
        return flags

    def make_driver(self, flags, setup=True):
        drv = super().make_driver(flags, setup=setup)
        self._fast_backoff(drv)
        if setup:
            self.addCleanup(drv._image_cache_stop)
        return drv

    @staticmethod
    def _fast_backoff(drv):
        if drv._client is None:
            drv._client = drv._make_client()
        # Lookups after a timeout still span more than SLOW - READ_TIMEOUT.
        drv._client.backoff_base = 0.2
        drv._client.backoff_cap = 1.0

    # -- Cinder-side helpers ------------------------------------------

    def _snapshot_obj(self, vol, status='creating'):
        return test_utils.create_snapshot(self.ctxt, vol.id,
                                          volume_size=vol.size,
                                          status=status)

    def _restart(self):
        """A new cinder-volume: new driver, set-up, manager clean-up."""
        old = self.drv._client
        old._session.close()        # a dead process does not log out
        self.drv = self.make_driver(self.flags)
        vols, snaps = leak_check.cinder_objects(self.ctxt)
        for obj in vols + snaps:
            if obj.status == 'creating':
                obj.status = 'error'
                obj.save()

    def _quiesce(self, started, fault):
        """Wait until late (delayed) array work has landed."""
        inj = FAULTS[fault][1] or {}
        if inj.get('mode') == 'delay':
            # A delayed request the driver gave up on lands when its
            # handler ends, whenever it started: wait for the simulator to
            # be idle (bounded: a delayed request lasts ``delay``).
            self.sim.clear_faults()
            self.assertTrue(self.sim.wait_idle(inj['delay'] + 5.0),
                            'the simulator is still busy')
        self.sim.clear_faults()

    def _delete_everything(self):
        vols, snaps = leak_check.cinder_objects(self.ctxt)
        for snap in snaps:
            self.drv.delete_snapshot(snap)
            snap.destroy()
        for vol in vols:
            self.drv.delete_volume(vol)
            vol.destroy()
        report = leak_check.find_leaks(self.sim, volumes=[], snapshots=[],
                                       ignore=self.LEAK_IGNORE)
        self.assertFalse(bool(report), 'left after deleting all: %s'
                         % report)
        # Only image-cache entries outlive the volumes.
        self.assertEqual([], [s for s in report.inventory['snapshots']
                              if not s['description'].startswith('image-')])

    def _hard_reset(self):
        """After a broken cell: start the next one from nothing."""
        self.sim.clear_faults()
        vols, snaps = leak_check.cinder_objects(self.ctxt)
        for obj in snaps + vols:
            obj.destroy()
        share_dir = os.path.join(self.sim.datastore, 'cinder')
        for entry in os.listdir(share_dir):
            path = os.path.join(share_dir, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        for snap in self.sim.inventory()['snapshots']:
            try:
                self.drv._client.delete_snapshot(snap['uuid']['uuid'])
            except Exception:
                pass

    def _crash_patches(self, endpoint):
        method = {SNAP: 'create_snapshot', CLONE: 'clone_volume',
                  DELETE: 'delete_snapshot', GET: 'get_snapshot',
                  PUT: 'set_snapshot_deletion_policy'}[endpoint]
        return self._crash_after(self.drv._client, method)

    @staticmethod
    def _crash_after(obj, method):
        real = getattr(obj, method)

        def die(*args, **kwargs):
            real(*args, **kwargs)
            raise _Crash()
        return [mock.patch.object(obj, method, side_effect=die),
                # the finally: clause of a dead process never runs
                mock.patch.object(tdriver, 'shutil', mock.Mock())]

    # -- the cell runner ----------------------------------------------

    def run_cells(self, op, endpoints, prepare, faults=FAULT_ORDER,
                  expect=None):
        """``prepare()`` -> (run, check_ok, on_failure)."""
        problems = []
        for fault in faults:
            for endpoint in endpoints:
                try:
                    outcome, note = self._cell(op, fault, endpoint, prepare)
                except Exception as e:
                    outcome, note = 'BROKEN', '%s: %s' % (
                        type(e).__name__, e)
                if outcome not in (OK, FAIL):
                    self._hard_reset()
                _record(op, fault, endpoint, outcome, note)
                want = expect or FAULTS[fault][0]
                if outcome not in (OK, FAIL) or (
                        want != EITHER and outcome != want):
                    problems.append('%s/%s/%s: expected %s, got %s %s'
                                    % (op, fault, endpoint, want, outcome,
                                       note))
        if problems:
            self.fail('\n'.join(problems))

    def _cell(self, op, fault, endpoint, prepare):
        run, check_ok, on_failure = prepare()
        expected, inj = FAULTS[fault]
        patches = []
        logins = self.sim.inventory()['logins']
        if fault == 'session_expiry':
            self.sim.expire_sessions()
        elif fault == 'crash':
            patches = self._crash_patches(endpoint)
        else:
            self.sim.inject_fault(endpoint, **inj)
        started = time.monotonic()
        requests_before = self.sim.total_requests()
        error = None
        for p in patches:
            p.start()
        try:
            run()
        except _Crash:
            error = 'crash'
        except exception.CinderException as e:
            error = e
        finally:
            for p in reversed(patches):
                p.stop()
        elapsed = time.monotonic() - started
        self._quiesce(started, fault)
        note = '%.1fs' % elapsed
        if error == 'crash':
            self._restart()
            on_failure(crashed=True)
            outcome = FAIL
            note += ', restart tidied up'
        elif error is not None:
            on_failure(crashed=False)
            outcome = FAIL
            note += ', %s' % type(error).__name__
        else:
            check_ok()
            outcome = OK
        if fault == 'session_expiry' and outcome == OK and \
                self.sim.total_requests() > requests_before:
            self.assertEqual(logins + 1, self.sim.inventory()['logins'])
        # The periodic task of a running service, then the leak check.
        before = leak_check.find_leaks(self.sim, ignore=self.LEAK_IGNORE)
        self.drv.get_volume_stats(refresh=True)
        report = leak_check.find_leaks(self.sim, ignore=self.LEAK_IGNORE)
        if report:
            return 'LEAK', '%s; %s' % (note, report)
        if before:
            note += ', swept by the stats task: %s' % before
        self._delete_everything()
        return outcome, note


class DriverFaultMatrixTest(FaultMatrixBase):

    def test_create_snapshot(self):
        def prepare():
            vol = self.new_volume()
            self.write(vol, b'S' * MiB)
            snap = self._snapshot_obj(vol)

            def run():
                snap.update(self.drv.create_snapshot(snap))
                snap.status = 'available'
                snap.save()

            def check_ok():
                self.assertIn(snap.provider_id, self.snapshot_uuids())

            def on_failure(crashed):
                snap.refresh()
                if snap.status == 'creating':
                    snap.status = 'error'
                    snap.save()
                self.assertEqual('error', snap.status)
                self.assertIsNone(snap.provider_id)
            return run, check_ok, on_failure
        self.run_cells('create snapshot', [SNAP], prepare)

    def test_delete_snapshot(self):
        def prepare():
            vol = self.new_volume()
            snap = self._snapshot_obj(vol)
            snap.update(self.drv.create_snapshot(snap))
            snap.status = 'deleting'
            snap.save()

            def run():
                self.drv.delete_snapshot(snap)
                snap.destroy()

            def check_ok():
                self.assertNotIn(snap.provider_id, self.snapshot_uuids())

            def on_failure(crashed):
                # error_deleting; the operator deletes again.
                snap.status = 'error_deleting'
                snap.save()
            return run, check_ok, on_failure
        self.run_cells('delete snapshot', [DELETE], prepare)

    def test_delete_snapshot_with_clones(self):
        def prepare():
            vol = self.new_volume()
            snap = self._snapshot_obj(vol)
            snap.update(self.drv.create_snapshot(snap))
            snap.status = 'deleting'
            snap.save()
            child = self.create_volume()
            child.update(self.drv.create_volume_from_snapshot(child, snap))
            child.save()

            def run():
                self.drv.delete_snapshot(snap)
                snap.destroy()

            def check_ok():
                snaps = {s['uuid']['uuid']: s
                         for s in self.sim.inventory()['snapshots']}
                self.assertEqual(tdriver.DELETE_ON_ZERO_CLONES,
                                 snaps[snap.provider_id]['deletionPolicy'])

            def on_failure(crashed):
                snap.status = 'error_deleting'
                snap.save()
            return run, check_ok, on_failure
        self.run_cells('delete snapshot with clones', [PUT], prepare)

    def _new_volume_cell(self, make):
        """Cells for operations creating a volume: returns prepare()."""
        def prepare():
            src = self.new_volume()
            self.write(src, b'A' * MiB)
            vol = test_utils.create_volume(
                self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
                size=2, status='creating')
            run_op, data = make(src, vol)
            src_data = self.read(src, MiB)

            def run():
                vol.update(run_op())
                vol.status = 'available'
                vol.save()

            def check_ok():
                self.assertEqual(self.share, vol.provider_location)
                self.assertEqual(data, self.read(vol, MiB))
                self.assertSizeGiB(vol, 2)
                self.assertEqual(src_data, self.read(src, MiB))

            def on_failure(crashed):
                vol.refresh()
                if vol.status == 'creating':
                    vol.status = 'error'
                    vol.save()
                self.assertEqual('error', vol.status)
                self.assertIsNone(vol.provider_location)
                self.assertEqual(src_data, self.read(src, MiB))
            return run, check_ok, on_failure
        return prepare

    def test_create_volume_from_snapshot(self):
        def make(src, vol):
            snap = self._snapshot_obj(src)
            snap.update(self.drv.create_snapshot(snap))
            snap.status = 'available'
            snap.save()
            self.write(src, b'B' * MiB)
            return (lambda: self.drv.create_volume_from_snapshot(vol, snap),
                    b'A' * MiB)
        self.run_cells('volume from snapshot', [CLONE],
                       self._new_volume_cell(make))

    def test_create_cloned_volume(self):
        def make(src, vol):
            return (lambda: self.drv.create_cloned_volume(vol, src),
                    b'A' * MiB)
        self.run_cells('clone', [SNAP, CLONE], self._new_volume_cell(make))

    def test_revert_to_snapshot(self):
        def prepare():
            vol = self.new_volume()
            self.write(vol, b'A' * MiB)
            snap = self._snapshot_obj(vol)
            snap.update(self.drv.create_snapshot(snap))
            snap.status = 'restoring'
            snap.save()
            self.write(vol, b'B' * MiB)
            vol.status = 'reverting'
            vol.save()

            def run():
                self.drv.revert_to_snapshot(self.ctxt, vol, snap)
                vol.status = 'available'
                vol.save()

            def check_ok():
                self.assertEqual(b'A' * MiB, self.read(vol, MiB))
                self.assertSizeGiB(vol, 1)

            def on_failure(crashed):
                # The manager: volume error, snapshot available.  The
                # volume holds either the old or the reverted data.
                vol.status = 'error'
                vol.save()
                snap.status = 'available'
                snap.save()
                self.assertIn(self.read(vol, MiB), (b'A' * MiB, b'B' * MiB))
                self.assertSizeGiB(vol, 1)
            return run, check_ok, on_failure
        self.run_cells('revert', [CLONE], prepare)

    def test_manage_snapshot(self):
        def prepare():
            vol = self.new_volume()
            snap = self._snapshot_obj(vol, status='creating')
            # An array snapshot Cinder forgot (unmanaged), by its name.
            uuid = self.drv._inventory.snapshot(
                self.drv._export_path(self.share), vol.name, vol.id,
                snap.name)

            def run():
                snap.update(self.drv.manage_existing_snapshot(
                    snap, {'source-id': uuid}))
                snap.status = 'available'
                snap.save()

            def check_ok():
                self.assertEqual(uuid, snap.provider_id)

            def on_failure(crashed):
                snap.status = 'error'
                snap.save()
                self.assertIsNone(snap.provider_id)
            return run, check_ok, on_failure
        self.run_cells('manage snapshot', [GET], prepare)

    def test_manage_volume(self):
        # Managing a file is a rename on the share: no REST call, so no
        # REST fault reaches it (checked: no request at all is made).
        def prepare():
            path = os.path.join(self.sim.datastore, 'cinder', 'imported')
            with open(path, 'wb') as f:
                f.write(b'M' * MiB)
                f.truncate(units.Gi)
            vol = test_utils.create_volume(
                self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
                size=1, status='managing')
            ref = {'source-name': 'imported'}
            self.sim.reset_counts()

            def run():
                self.assertEqual(1, self.drv.manage_existing_get_size(
                    vol, ref))
                vol.update(self.drv.manage_existing(vol, ref))
                vol.status = 'available'
                vol.save()

            def check_ok():
                self.assertEqual(b'M' * MiB, self.read(vol, MiB))
                self.assertEqual(0, self.sim.total_requests())

            def on_failure(crashed):
                self.fail('manage failed')
            return run, check_ok, on_failure
        self.run_cells('manage volume', [ANY], prepare,
                       faults=FAULT_ORDER[:-1], expect=OK)


class ImageFaultMatrixTest(FaultMatrixBase):
    """clone_image: a cache hit, and an uncached image on a Glance share."""

    GLANCE = '127.0.0.1:/tintri/glance'
    LEAK_IGNORE = ('glance', 'glance/*')

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        self.glance_dir = os.path.join(self.sim.datastore, 'glance')
        os.makedirs(os.path.join(self.glance_dir, 'images'))
        image_shares = os.path.join(self.tmp, 'image_shares')
        with open(image_shares, 'w') as f:
            f.write('%s\n' % self.GLANCE)
        flags['tintri_image_shares_config'] = image_shares
        return flags

    def setUp(self):
        super().setUp()
        from tests.unit import test_images
        self.glance = test_images.ImageService()
        self.data = os.urandom(MiB) + b'TINTRI' * 1000
        self.raw = os.path.join(self.tmp, 'image.raw')
        with open(self.raw, 'wb') as f:
            f.write(self.data)
            f.truncate(3 * MiB)

    def _image(self):
        image_id = str(uuid_mod.uuid4())
        dest = os.path.join(self.glance_dir, 'images', image_id)
        shutil.copyfile(self.raw, dest)
        meta = self.glance.add(dest, 'raw', image_id=image_id)
        url = 'nfs://127.0.0.1/tintri/glance/images/%s' % image_id
        return meta, url

    def _image_snapshots(self, image_id):
        return [s for s in self.sim.inventory()['snapshots']
                if s['description'] == 'image-' + image_id]

    def _clone_image_cell(self, cached):
        def prepare():
            meta, url = self._image()
            if cached:
                first = test_utils.create_volume(
                    self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
                    size=1, status='creating')
                update, cloned = self.drv.clone_image(
                    self.ctxt, first, (url, []), meta, self.glance)
                self.assertTrue(cloned)
                first.update(update)
                first.status = 'available'
                first.save()
            vol = test_utils.create_volume(
                self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
                size=2, status='creating')

            def run():
                update, cloned = self.drv.clone_image(
                    self.ctxt, vol, (url, []), meta, self.glance)
                if not cloned:
                    raise _Declined()
                vol.update(update)
                vol.status = 'available'
                vol.save()

            def check_ok():
                self.assertEqual(self.data, self.read(vol, len(self.data)))
                self.assertSizeGiB(vol, 2)
                self.assertEqual(1, len(self._image_snapshots(meta['id'])))

            def on_failure(crashed):
                vol.refresh()
                vol.status = 'error'
                vol.save()
                self.assertIsNone(vol.provider_location)
                self.assertFalse(os.path.exists(self.path_of(vol,
                                                             self.share)))
                self.assertLessEqual(len(self._image_snapshots(meta['id'])),
                                     1)
            return run, check_ok, on_failure
        return prepare

    def test_clone_image_cached(self):
        self.run_cells('clone_image (cached)', [CLONE],
                       self._clone_image_cell(cached=True))

    def test_clone_image_from_glance_share(self):
        self.run_cells('clone_image (uncached)', [SNAP, CLONE],
                       self._clone_image_cell(cached=False))


class LateArrayWorkTest(FaultMatrixBase):
    """Array work whose response timed out lands after the driver gave up."""

    def _failed_volume(self):
        return test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=1, status='error')

    def test_delete_failed_clone_removes_late_helper_snapshot(self):
        src = self.new_volume()
        # A first snapshot (of another volume) settles the protocol, so the
        # stalled POST below is one the array completes late.
        other = self.new_volume()
        other_snap = self._snapshot_obj(other)
        other_snap.update(self.drv.create_snapshot(other_snap))
        other_snap.save()
        vol = self._failed_volume()
        self.sim.inject_fault(SNAP, count=50, mode='delay', delay=STALL)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_cloned_volume, vol, src)
        self._quiesce(time.monotonic(), 'stalled')
        helpers = [s for s in self.sim.inventory()['snapshots']
                   if s['description'].startswith(vol.name + '-clone-')]
        self.assertEqual(1, len(helpers), 'the late helper landed')
        self.drv.delete_volume(vol)
        vol.destroy()
        leak_check.assert_no_leaks(self, self.sim)
        self.assertEqual([other_snap.provider_id],
                         [s['uuid']['uuid']
                          for s in self.sim.inventory()['snapshots']])

    def test_delete_failed_create_removes_late_clone(self):
        src = self.new_volume()
        snap = self._snapshot_obj(src)
        snap.update(self.drv.create_snapshot(snap))
        snap.save()
        vol = self._failed_volume()
        self.sim.inject_fault(CLONE, count=50, mode='delay', delay=STALL)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_volume_from_snapshot, vol, snap)
        self._quiesce(time.monotonic(), 'stalled')
        late = [e for e in self.share_entries()
                if e.startswith(tdriver.TMP_PREFIX + vol.name)]
        self.assertEqual(1, len(late), 'the late clone landed')
        self.drv.delete_volume(vol)
        vol.destroy()
        self.assertEqual([src.name], self.share_entries())
        leak_check.assert_no_leaks(self, self.sim)

    def test_rescheduled_create_without_host_removes_late_clone(self):
        # The scheduler clears the host of a create it gave up on.
        src = self.new_volume()
        snap = self._snapshot_obj(src)
        snap.update(self.drv.create_snapshot(snap))
        snap.save()
        vol = self._failed_volume()
        self.sim.inject_fault(CLONE, count=50, mode='delay', delay=STALL)
        self.assertRaises(exception.VolumeBackendAPIException,
                          self.drv.create_volume_from_snapshot, vol, snap)
        self._quiesce(time.monotonic(), 'stalled')
        vol.host = None
        vol.save()
        self.drv.delete_volume(vol)
        vol.destroy()
        self.assertEqual([src.name], self.share_entries())

    def test_late_clone_after_resend_swept_by_stats(self):
        # The clone's response is late; the driver resends, succeeds and
        # finishes; then the first request lands into the temporary name.
        src = self.new_volume()
        snap = self._snapshot_obj(src)
        snap.update(self.drv.create_snapshot(snap))
        snap.save()
        vol = self.create_volume()
        started = time.monotonic()
        self.sim.inject_fault(CLONE, count=1, mode='delay', delay=SLOW)
        vol.update(self.drv.create_volume_from_snapshot(vol, snap))
        vol.save()
        self._quiesce(started, 'slow')
        late = [e for e in self.share_entries()
                if e.startswith(tdriver.TMP_PREFIX)]
        self.assertEqual(1, len(late), 'the late clone landed')
        self.drv.get_volume_stats(refresh=True)
        self.assertEqual(sorted([src.name, vol.name]), self.share_entries())
        leak_check.assert_no_leaks(self, self.sim)

    def test_sweep_spares_running_and_other_services(self):
        mount = os.path.join(self.sim.datastore, 'cinder')
        claimed = self.drv._tmp_dir_name_for('volume-a')
        other_tag = '-h' + hashlib.md5(b'other-host@tintri').hexdigest()[:8]
        foreign = tdriver.TMP_PREFIX + 'volume-b-0123456789ab' + other_tag
        legacy = tdriver.TMP_PREFIX + 'volume-c-0123456789ab'
        for name in (claimed, foreign, legacy):
            os.makedirs(os.path.join(mount, name))
            open(os.path.join(mount, name, 'data'), 'w').close()
        self.drv.get_volume_stats(refresh=True)
        self.assertEqual(sorted([claimed, foreign, legacy]),
                         self.share_entries())
        # The operation ends: its name is released and swept.
        self.drv._tmp_release(claimed)
        self.drv.get_volume_stats(refresh=True)
        self.assertEqual(sorted([foreign, legacy]), self.share_entries())
        # A restart removes untagged (older driver) temporaries but not a
        # fresh one of another service of the cluster.
        self.drv = self.make_driver(self.flags)
        self.assertEqual([foreign], self.share_entries())
        # Once idle for FOREIGN_TMP_IDLE, it is abandoned.
        old = time.time() - tdriver.FOREIGN_TMP_IDLE - 60
        for path in (os.path.join(mount, foreign, 'data'),
                     os.path.join(mount, foreign)):
            os.utime(path, (old, old))
        self.drv.get_volume_stats(refresh=True)
        self.assertEqual([], self.share_entries())


@tfixtures.skip_unless_root
class ApiFaultCellsTest(harness.ApiTestCase):
    """A few cells through cinder's API, scheduler and volume manager."""

    def _get_flags(self):
        f = super()._get_flags()
        group = configuration.SHARED_CONF_GROUP
        for key, value in (('tintri_read_timeout', READ_TIMEOUT),
                           ('tintri_api_retries', 4),
                           ('tintri_api_retry_deadline', RETRY_DEADLINE)):
            f[key] = {'v': value, 'g': group}
        return f

    def _wait_status(self, getter, res_id, busy):
        deadline = time.monotonic() + harness.DEADLINE
        while True:
            res = getter(res_id)
            if res['status'] not in busy:
                return res
            if time.monotonic() > deadline:
                self.fail('%s still %s' % (res_id, res['status']))
            time.sleep(0.2)

    def test_cells_through_the_api(self):
        sim = self.env.sim
        results = []
        vol = self._volume(size=1, name='src')
        self._write(vol, b'A' * MiB)

        # clone, response of the array clone lost -> available
        sim.inject_fault(CLONE, mode='lose_response')
        clone = self._volume(size=1, source_volid=vol['id'])
        self.assertEqual(b'A' * MiB, self._read(clone, MiB))
        results.append(('clone', 'lost_response', clone['status']))

        # snapshot, array busy beyond the retry budget -> error, deletable
        sim.inject_fault(SNAP, count=50, mode='error', status=503)
        snap = self.api.post_snapshot({'snapshot': {'volume_id': vol['id'],
                                                    'name': 'busy'}})
        snap = self._wait_status(self.api.get_snapshot, snap['id'],
                                 ('creating',))
        sim.clear_faults()
        self.assertEqual('error', snap['status'])
        results.append(('create snapshot', 'busy_exhausted', 'error'))
        self.api.delete_snapshot(snap['id'])
        self._wait_gone(self.api.get_snapshot, snap['id'])

        # snapshot, connection reset -> available
        sim.inject_fault(SNAP, mode='drop')
        snap = self.api.post_snapshot({'snapshot': {'volume_id': vol['id'],
                                                    'name': 'snap'}})
        snap = self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')
        results.append(('create snapshot', 'reset', snap['status']))
        self._write(vol, b'B' * MiB)

        # volume from snapshot, every clone response late -> error; the
        # late clone lands afterwards; deleting the volume removes it
        sim.inject_fault(CLONE, count=50, mode='delay', delay=STALL)
        bad = self.api.post_volume({'volume': {'size': 1,
                                               'snapshot_id': snap['id']}})
        bad = self._wait_status(self.api.get_volume, bad['id'],
                                ('creating',))
        self.assertEqual('error', bad['status'])
        results.append(('volume from snapshot', 'stalled', 'error'))
        time.sleep(STALL + 0.5)
        sim.clear_faults()
        # The scheduler gave up after its retries and cleared the host, so
        # the API deletes the volume without the driver; the late clones
        # of each attempt go with the next stats update of the service.
        self.api.delete_volume(bad['id'])
        self._wait_gone(self.api.get_volume, bad['id'])
        late = leak_check.find_leaks(sim).leaked_tmp
        self.volume.manager.driver.get_volume_stats(refresh=True)
        self.assertEqual([], leak_check.find_leaks(sim).leaked_tmp)
        results.append(('late clones swept by stats', len(late)))

        # revert, connection reset on the clone -> available, reverted
        sim.inject_fault(CLONE, mode='drop')
        self._action(vol['id'], {'revert': {'snapshot_id': snap['id']}})
        reverted = self._wait(self.api.get_volume, vol['id'],
                              ('reverting',), 'available')
        self.assertEqual(b'A' * MiB, self._read(vol, MiB))
        results.append(('revert', 'reset', reverted['status']))

        leak_check.assert_no_leaks(self, sim)
        self.addDetail('cells', _text(repr(results)))

        self.api.delete_snapshot(snap['id'])
        self._wait_gone(self.api.get_snapshot, snap['id'])
        for v in (clone, vol):
            self.api.delete_volume(v['id'])
        for v in (clone, vol):
            self._wait_gone(self.api.get_volume, v['id'])
        inv = sim.inventory()
        self.assertEqual([], inv['snapshots'])
        self.assertEqual([], os.listdir(self.env.share_dir))


def _text(value):
    from testtools import content
    return content.text_content(value)
