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
"""Array-side migration between shares of one VMstore (the collaborator).

The driver runs against the simulator with two shares (two submounts of
its one datastore); cinder_tintri.migration does the move, the driver's
migrate_volume / retype / update_migrated_volume only delegate.
"""

import os
from unittest import mock

from cinder import exception
from cinder.volume import volume_utils
from oslo_utils import units

from cinder_tintri import migration
from tests import leak_check
from tests.unit import driver_base

MiB = units.Mi
CLONE = 'POST /api/v310/cinder/clone'
SNAP = 'POST /api/v310/cinder/snapshot'


class LocationTest(driver_base.test.TestCase):
    """location_info: format, parsing, identity rules."""

    def test_round_trip_with_ipv6_host_and_colon_share(self):
        text = migration.location_info('TSIM1', 'fd00::1',
                                       '[fd00::1]:/tintri/a;b')
        self.assertEqual({'serial': 'TSIM1', 'host': 'fd00::1',
                          'share': '[fd00::1]:/tintri/a;b'},
                         migration.parse_location(text))

    def test_foreign_and_malformed_locations(self):
        for text in (None, '', 42, 'NfsDriver:1.2.3.4:/x',
                     'tintri;serial=S;share=x', 'tintri;serial=S;host=h;',
                     'tintri;host=h;serial=S;share=x'):
            self.assertIsNone(migration.parse_location(text), text)
        # A serial that is not one is unknown, not trusted.
        self.assertEqual('', migration.parse_location(
            'tintri;serial=../x;host=h;share=s')['serial'])

    def test_same_array(self):
        def loc(serial, host):
            return {'serial': serial, 'host': host, 'share': 's'}
        self.assertTrue(migration.same_array(loc('A', 'h1'), loc('A', 'h2')))
        self.assertFalse(migration.same_array(loc('A', 'h'), loc('B', 'h')))
        # Without a serial on either side only the hostname counts.
        self.assertTrue(migration.same_array(loc('', 'H'), loc('A', 'h')))
        self.assertFalse(migration.same_array(loc('A', 'h1'),
                                              loc('', 'h2')))
        self.assertFalse(migration.same_array(loc('', ''), loc('', '')))


class MigrationTest(driver_base.DriverTestCase):

    SUBMOUNTS = ('cinder', 'cinder2')
    SIM_KWARGS = {'profile': 'vmstore6'}
    UNREACHABLE = '127.0.0.1:/tintri/unreachable'

    def _fake_mount(self, client, share, flags=None):
        # os-brick's NFS mount of a share this host cannot reach.
        if share == self.UNREACHABLE:
            raise OSError('mount.nfs: Connection timed out')
        return super()._fake_mount(client, share, flags)

    def driver_flags(self, shares_file):
        flags = super().driver_flags(shares_file)
        flags['tintri_openstack_hostname'] = 'keystone.test'
        return flags

    def setUp(self):
        super().setUp()
        self.share2 = self.shares[1]

    # -- helpers --------------------------------------------------------

    def pool(self, share, drv=None):
        stats = (drv or self.drv).get_volume_stats(refresh=True)
        [pool] = [p for p in stats['pools'] if p['pool_name'] == share]
        return pool

    def host_for(self, share, backend=driver_base.HOST, caps=None):
        return {'host': '%s#%s' % (backend, share),
                'capabilities': caps if caps is not None
                else self.pool(share)}

    def data_volume(self, data=b'M' * MiB, offset=5 * MiB):
        vol = self.new_volume(size=1)
        self.write(vol, data, offset)
        return vol

    def moved(self, vol, update):
        vol.update(update or {})
        vol.save()
        return vol

    def assert_no_leaks(self, volumes, snapshots=()):
        report = leak_check.find_leaks(self.sim, volumes=list(volumes),
                                       snapshots=list(snapshots))
        self.assertFalse(bool(report), str(report))

    # -- the pools ------------------------------------------------------

    def test_pools_report_multiattach_and_the_array(self):
        serial = self.drv._client.get_appliance_info()['serialNumber']
        stats = self.drv.get_volume_stats(refresh=True)
        self.assertEqual(sorted(self.shares),
                         sorted(p['pool_name'] for p in stats['pools']))
        for pool in stats['pools']:
            self.assertIs(True, pool['multiattach'])
            loc = migration.parse_location(pool['location_info'])
            self.assertEqual({'serial': serial, 'host': self.sim.host,
                              'share': pool['pool_name']}, loc)

    def test_stats_do_not_ask_for_the_serial_again(self):
        self.drv.get_volume_stats(refresh=True)
        self.sim.reset_counts()
        self.drv.get_volume_stats(refresh=True)
        self.assertNotIn('GET /api/v310/appliance/{id}/info',
                         self.sim.request_counts())

    # -- migrate --------------------------------------------------------

    def test_migrate_between_pools_is_one_array_clone(self):
        vol = self.data_volume()
        src_path = self.path_of(vol)
        copies = self.sim.inventory()['copies']
        host = self.host_for(self.share2)
        self.sim.reset_counts()
        with mock.patch.object(volume_utils, 'copy_volume',
                               wraps=volume_utils.copy_volume) as copy:
            moved, update = self.drv.migrate_volume(self.ctxt, vol, host)
        self.assertTrue(moved)
        self.assertEqual({'provider_location': self.share2,
                          'provider_id': None}, update)
        counts = self.sim.request_counts()
        self.assertEqual(1, counts.get(CLONE))
        # one helper (on a VMstore >= 6 a first direct attempt is refused
        # and the refresh protocol found)
        self.assertIn(counts.get(SNAP), (1, 2))
        copy.assert_not_called()
        # the array made the one copy (reflink or copy, its business)
        after = self.sim.inventory()['copies']
        self.assertEqual(sum(copies.values()) + 2, sum(after.values()))
        self.assertFalse(os.path.lexists(src_path))
        vol = self.moved(vol, update)
        self.assertEqual([vol.name], self.share_entries(self.share2))
        self.assertEqual([], self.share_entries(self.share))
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))
        self.assertSizeGiB(vol, 1)
        self.assert_no_leaks([vol])
        # the moved volume is a volume like any other
        snap = self.create_snapshot(vol)
        self.drv.extend_volume(vol, 2)
        self.assertSizeGiB(vol, 2)
        self.drv.delete_snapshot(snap)
        self.drv.delete_volume(vol)
        self.assertEqual([], self.share_entries(self.share2))
        self.assertEqual([], self.snapshot_uuids())

    def test_migrate_to_the_same_share_moves_nothing(self):
        vol = self.data_volume()
        host = self.host_for(self.share)
        self.sim.reset_counts()
        self.assertEqual((True, None), self.drv.migrate_volume(
            self.ctxt, vol, host))
        self.assertEqual({}, self.sim.request_counts())
        self.assertEqual([vol.name], self.share_entries())

    def test_refusals_leave_everything_as_it_was(self):
        vol = self.data_volume()
        before = (self.share_entries(), self.share_entries(self.share2),
                  self.snapshot_uuids())
        other_array = dict(self.pool(self.share2), location_info=(
            migration.location_info('OTHER-SERIAL', self.sim.host,
                                    self.share2)))
        unreachable = dict(self.pool(self.share2), location_info=(
            self.drv._migration.location_info(self.UNREACHABLE)))
        cases = {
            'other array': self.host_for(self.share2, caps=other_array),
            'not tintri': self.host_for(self.share2, caps={
                'location_info': 'NfsDriver:127.0.0.1:/tintri/cinder2'}),
            'no capabilities': {'host': '%s#%s' % (driver_base.HOST,
                                                   self.share2)},
            'pool is not its share': {
                'host': '%s#%s' % (driver_base.HOST, self.share),
                'capabilities': self.pool(self.share2)},
            'unreachable share': self.host_for(self.UNREACHABLE,
                                               caps=unreachable),
        }
        for bad in ('127.0.0.1:/tintri/../etc', '127.0.0.1:/srv/cinder',
                    'no-colon'):
            cases['share %s' % bad] = self.host_for(bad, caps={
                'location_info': self.drv._migration.location_info(bad)})
        for why, host in cases.items():
            self.sim.reset_counts()
            self.assertEqual((False, None),
                             self.drv.migrate_volume(self.ctxt, vol, host),
                             why)
            self.assertNotIn(CLONE, self.sim.request_counts(), why)
            self.assertNotIn(SNAP, self.sim.request_counts(), why)
        vol.attach_status = 'attached'
        self.assertEqual((False, None), self.drv.migrate_volume(
            self.ctxt, vol, self.host_for(self.share2)))
        self.assertEqual(before, (self.share_entries(),
                                  self.share_entries(self.share2),
                                  self.snapshot_uuids()))
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))

    def test_hostname_decides_when_the_array_has_no_serial(self):
        self.drv._migration.serial = None
        self.sim.inject_fault('GET /api/v310/appliance/{id}/info',
                              count=10, mode='error', status=404,
                              code='ERR-API-0102')
        vol = self.data_volume()
        caps = dict(self.pool(self.share2))
        caps['location_info'] = migration.location_info(
            '', 'other-host', self.share2)
        self.assertEqual((False, None), self.drv.migrate_volume(
            self.ctxt, vol, self.host_for(self.share2, caps=caps)))
        caps['location_info'] = migration.location_info(
            '', self.sim.host, self.share2)
        moved, update = self.drv.migrate_volume(
            self.ctxt, vol, self.host_for(self.share2, caps=caps))
        self.assertTrue(moved)
        self.sim.clear_faults()
        vol = self.moved(vol, update)
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))

    def test_existing_file_at_the_destination_is_not_overwritten(self):
        vol = self.data_volume()
        squatter = os.path.join(self.sim.datastore, 'cinder2', vol.name)
        with open(squatter, 'wb') as f:
            f.write(b'other')
        self.assertRaises(exception.VolumeMigrationFailed,
                          self.drv.migrate_volume, self.ctxt, vol,
                          self.host_for(self.share2))
        with open(squatter, 'rb') as f:
            self.assertEqual(b'other', f.read())
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))
        self.assertEqual([], self.snapshot_uuids())

    def test_failure_half_way_leaves_nothing_and_the_source_intact(self):
        vol = self.data_volume()
        host = self.host_for(self.share2)
        for endpoint in (SNAP, CLONE):
            # A failure that is not retried (a 503 is, until the budget).
            self.sim.inject_fault(endpoint, count=1, mode='error',
                                  status=500, code='ERR-API-3206')
            self.assertRaises(exception.VolumeMigrationFailed,
                              self.drv.migrate_volume, self.ctxt, vol, host)
            self.sim.clear_faults()
            self.assertEqual([vol.name], self.share_entries(), endpoint)
            self.assertEqual([], self.share_entries(self.share2), endpoint)
            self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))
            self.assertEqual([], self.snapshot_uuids(), endpoint)
            self.assert_no_leaks([vol])
        # After the clone, deleting the source fails (a share fault the
        # simulator cannot make): the clone goes, the source stays.
        real_delete = self.drv._delete
        calls = []

        def delete(path):
            path = os.path.realpath(path)
            calls.append(path)
            if path == os.path.realpath(self.path_of(vol)):
                raise exception.VolumeBackendAPIException(data='EROFS')
            return real_delete(path)
        self.drv._migration.ops = self.drv._migration.ops._replace(
            delete_file=delete)
        self.assertRaises(exception.VolumeMigrationFailed,
                          self.drv.migrate_volume, self.ctxt, vol, host)
        self.assertEqual([os.path.realpath(self.path_of(vol)),
                          os.path.realpath(self.path_of(vol, self.share2))],
                         calls)
        self.assertEqual([vol.name], self.share_entries())
        self.assertEqual([], self.share_entries(self.share2))
        self.assert_no_leaks([vol])
        # and the next attempt succeeds
        self.drv._migration.ops = self.drv._migration.ops._replace(
            delete_file=real_delete)
        vol = self.moved(vol, self.drv.migrate_volume(self.ctxt, vol,
                                                      host)[1])
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))
        self.assert_no_leaks([vol])

    def test_faults_on_every_array_call_of_a_move(self):
        """The fault matrix's injections on the calls a move makes.

        Each cell either moves the volume (data on the destination, source
        gone) or fails with the source intact and the destination empty;
        either way nothing is left that the leak checker finds, once one
        periodic stats update ran.
        """
        faults = {
            'busy_burst': dict(count=2, mode='error', status=503),
            'reset': dict(count=1, mode='drop'),
            'lost_response': dict(count=1, mode='lose_response'),
            'refused': dict(count=1, mode='error', status=500,
                            code='ERR-API-3206'),
        }
        host = self.host_for(self.share2)
        outcomes = {}
        for endpoint in (SNAP, CLONE, 'DELETE /api/v310/snapshot/{uuid}'):
            for fault, inj in faults.items():
                vol = self.data_volume()
                self.sim.inject_fault(endpoint, **inj)
                try:
                    vol = self.moved(vol, self.drv.migrate_volume(
                        self.ctxt, vol, host)[1])
                    outcome = 'moved'
                except exception.VolumeMigrationFailed:
                    outcome = 'failed'
                self.sim.clear_faults()
                cell = '%s/%s' % (endpoint, fault)
                outcomes[cell] = outcome
                self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB),
                                 cell)
                other = self.share if outcome == 'moved' else self.share2
                self.assertEqual([], self.share_entries(other), cell)
                self.drv.get_volume_stats(refresh=True)
                self.assert_no_leaks([vol])
                self.drv.delete_volume(vol)
                self.drv.get_volume_stats(refresh=True)
                self.assertEqual([], self.snapshot_uuids(), cell)
        # Retried or reconciled faults move the volume; a refusal of the
        # snapshot or the clone fails it; a helper that cannot be deleted
        # does not fail a move that landed.
        for cell, outcome in outcomes.items():
            want = 'failed' if cell in ('%s/refused' % SNAP,
                                        '%s/refused' % CLONE) else 'moved'
            self.assertEqual(want, outcome, cell)

    def test_crash_between_the_rename_and_the_source_deletion(self):
        """What operations.rst documents for a service that dies there."""
        class Crash(BaseException):
            pass

        def die(path):
            raise Crash()
        vol = self.data_volume()
        host = self.host_for(self.share2)
        ops = self.drv._migration.ops
        self.drv._migration.ops = ops._replace(delete_file=die)
        self.assertRaises(Crash, self.drv.migrate_volume, self.ctxt, vol,
                          host)
        self.drv._migration.ops = ops
        # Cinder still points at the source, which is intact; the copy on
        # the destination is the one thing left (a file no volume owns) ...
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))
        self.assertEqual([vol.name], self.share_entries(self.share2))
        report = leak_check.find_leaks(self.sim, volumes=[vol],
                                       snapshots=[])
        self.assertEqual(['cinder2/%s' % vol.name], report.leaked_files)
        # ... and the next attempt names it instead of overwriting it.
        e = self.assertRaises(exception.VolumeMigrationFailed,
                              self.drv.migrate_volume, self.ctxt, vol, host)
        self.assertIn(vol.name, str(e))
        os.unlink(os.path.join(self.sim.datastore, 'cinder2', vol.name))
        vol = self.moved(vol, self.drv.migrate_volume(self.ctxt, vol,
                                                      host)[1])
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))
        self.drv.delete_volume(vol)
        self.drv.get_volume_stats(refresh=True)
        self.assertEqual([], self.snapshot_uuids())

    def test_to_a_share_of_another_backend_on_the_same_array(self):
        # The other backend's share is not in this backend's shares: it
        # is mounted through os-brick with this backend's mount base.
        os.makedirs(os.path.join(self.sim.datastore, 'other'))
        share = '127.0.0.1:/tintri/other'
        caps = {'location_info': self.drv._migration.location_info(share),
                'multiattach': True}
        vol = self.data_volume()
        moved, update = self.drv.migrate_volume(
            self.ctxt, vol, self.host_for(share, backend='h2@other',
                                          caps=caps))
        self.assertTrue(moved)
        self.assertEqual(share, update['provider_location'])
        self.assertTrue(os.path.isdir(self.drv._get_mount_point_for_share(
            share)))
        vol = self.moved(vol, update)
        self.assertEqual(b'M' * MiB, self.read(vol, MiB, 5 * MiB))
        self.assertEqual([], self.share_entries())
        self.assert_no_leaks([vol])

    # -- retype ---------------------------------------------------------

    def test_retype_in_the_same_pool_touches_nothing(self):
        vol = self.data_volume()
        self.sim.reset_counts()
        self.assertEqual((True, None), self.drv.retype(
            self.ctxt, vol, None, {}, self.host_for(self.share)))
        self.assertNotIn(SNAP, self.sim.request_counts())

    def test_retype_to_another_pool_keeps_snapshots_valid(self):
        vol = self.data_volume(b'A' * MiB)
        snap = self.create_snapshot(vol)
        self.write(vol, b'B' * MiB, 5 * MiB)
        retyped, update = self.drv.retype(self.ctxt, vol, None, {},
                                          self.host_for(self.share2))
        self.assertTrue(retyped)
        vol = self.moved(vol, update)
        vol.host = '%s#%s' % (driver_base.HOST, self.share2)
        vol.save()
        self.assertEqual(b'B' * MiB, self.read(vol, MiB, 5 * MiB))
        self.assert_no_leaks([vol], [snap])
        # the snapshot is an array object, not a file of the old share:
        snap.refresh()
        new = self.create_volume(size=1)
        new.update(self.drv.create_volume_from_snapshot(new, snap))
        new.save()
        self.assertEqual(b'A' * MiB, self.read(new, MiB, 5 * MiB))
        self.drv.revert_to_snapshot(self.ctxt, vol, snap)
        self.assertEqual(b'A' * MiB, self.read(vol, MiB, 5 * MiB))
        self.assertEqual([vol.name], self.share_entries(self.share2))
        snap2 = self.create_snapshot(vol)   # the moved file's new VM
        self.drv.delete_snapshot(snap)
        self.drv.delete_snapshot(snap2)
        self.drv.delete_volume(new)
        self.drv.delete_volume(vol)
        # (an array that keeps snapshots with clones deletes them now)
        self.drv.get_volume_stats(refresh=True)
        self.assertEqual([], self.share_entries() +
                         self.share_entries(self.share2))
        self.assertEqual([], self.snapshot_uuids())

    def test_retype_of_an_attached_volume_to_another_pool_is_refused(self):
        vol = self.data_volume()
        vol.attach_status = 'attached'
        self.assertEqual((False, None), self.drv.retype(
            self.ctxt, vol, None, {}, self.host_for(self.share2)))
        self.assertEqual([vol.name], self.share_entries())

    # -- generic migration's last step ---------------------------------

    def _generic_pair(self):
        vol = self.data_volume()
        new = self.new_volume(size=1, share=self.share2)
        self.write(new, b'N' * MiB)
        return vol, new

    def test_update_migrated_volume_keeps_the_name(self):
        vol, new = self._generic_pair()
        update = self.drv.update_migrated_volume(self.ctxt, vol, new,
                                                 'available')
        self.assertEqual({'_name_id': None,
                          'provider_location': self.share2}, update)
        self.assertEqual([vol.name], self.share_entries(self.share2))

    def test_update_migrated_volume_reports_the_new_name_id(self):
        vol, new = self._generic_pair()
        # in-use: Nova has the new file open under its name
        self.assertEqual({'_name_id': new.id,
                          'provider_location': self.share2},
                         self.drv.update_migrated_volume(
                             self.ctxt, vol, new, 'in-use'))
        # a file already has the name: never overwritten
        squatter = os.path.join(self.sim.datastore, 'cinder2', vol.name)
        with open(squatter, 'wb') as f:
            f.write(b'x')
        self.assertEqual({'_name_id': new.id,
                          'provider_location': self.share2},
                         self.drv.update_migrated_volume(
                             self.ctxt, vol, new, 'available'))
        self.assertEqual(sorted([vol.name, new.name]),
                         self.share_entries(self.share2))
        with open(squatter, 'rb') as f:
            self.assertEqual(b'x', f.read())


class MigrationVmstore4Test(MigrationTest):
    SIM_KWARGS = {'profile': 'vmstore4', 'delete_with_clones': 'refuse'}
