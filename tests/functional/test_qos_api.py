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
"""Per-volume QoS through cinder's API, scheduler and volume manager.

The set-up is tests/functional/harness.py (vmstore6 simulator profile:
files must be inventoried before the array knows their VM).  Volume types
carry back-end QoS specs; the simulator records the qosConfig of each VM
(by file), which is what the assertions read.
"""

import os
import time
import uuid

from cinder.volume import configuration

from cinder_tintri import inventory
from cinder_tintri import qos
from tests.functional import fixtures as tfixtures
from tests.functional import harness

DEADLINE = harness.DEADLINE


class QosHelpers(object):
    """QoS enabled; helpers reading the simulator's per-VM settings."""

    USE_XFS = False

    def _get_flags(self):
        f = super()._get_flags()
        group = configuration.SHARED_CONF_GROUP
        for key, value in (('tintri_qos_enabled', True),
                           ('tintri_qos_inventory_wait', 1.5)):
            f[key] = {'v': value, 'g': group}
        return f

    # -- helpers --------------------------------------------------------

    def _type(self, specs=None, consumer='back-end', extra_specs=None):
        name = 'type-%s' % uuid.uuid4().hex[:8]
        body = {'name': name}
        if extra_specs:
            body['extra_specs'] = extra_specs
        vtype = self.api.api_post('/types',
                                  {'volume_type': body})['volume_type']
        if specs is not None:
            body = dict(specs, name='qos-%s' % name, consumer=consumer)
            spec = self.api.api_post('/qos-specs',
                                     {'qos_specs': body})['qos_specs']
            self.api.api_request('/qos-specs/%s/associate?vol_type_id=%s'
                                 % (spec['id'], vtype['id']),
                                 check_response_status=[200, 202])
        return vtype

    def _rel(self, vol_id, sub='cinder'):
        return '%s/volume-%s' % (sub, vol_id)

    def _qos(self, vol_id):
        return self.env.sim.vm_qos(self._rel(vol_id))

    def _puts(self, vol_id):
        return [(low, high) for rel, low, high in self.env.sim.qos_puts()
                if rel == self._rel(vol_id)]

    def _messages(self, vol_id):
        return [m for m in self.api.api_get('/messages')['messages']
                if m['resource_uuid'] == vol_id]

    def _pending(self):
        return qos.pending_ids(self.env.share_dir)

    def _stats(self):
        self.volume.manager.driver.get_volume_stats(refresh=True)

    def _delete(self, *vols):
        for vol in vols:
            self.api.delete_volume(vol['id'])
        for vol in vols:
            self._wait_gone(self.api.get_volume, vol['id'])


class QosLifecycle(QosHelpers):
    """The lifecycle test, for every simulator profile."""

    def test_qos_follows_the_volume(self):
        # The scheduler places a type asking for QoS_support here: every
        # pool reports it (CapabilitiesFilter).
        gold = self._type({'minIOPS': '100', 'maxIOPS': '2000'},
                          extra_specs={'QoS_support': '<is> True'})
        per_gib = self._type({'minIOPSperGiB': '10', 'maxIOPSperGiB': '50'})
        plain = self._type()
        pools = self.volume.manager.driver.get_volume_stats()['pools']
        self.assertGreater(len(pools), 0)
        self.assertEqual([True] * len(pools),
                         [p['QoS_support'] for p in pools])

        # create: one refresh, the lookup, one PUT
        self.env.sim.reset_counts()
        vol = self._volume(size=1, volume_type=gold['name'])
        self.assertEqual((100, 2000), self._qos(vol['id']))
        counts = self.env.sim.request_counts()
        self.assertEqual(1, counts.get(
            'PUT /api/v310/vm/{uuid}/qosConfig'), counts)
        self.assertLessEqual(counts.get(
            'POST /api/v310/cinder/host/refresh', 0), 1, counts)
        # a type without QoS sends nothing
        bare = self._volume(size=1, volume_type=plain['name'])
        self.assertEqual([], self._puts(bare['id']))

        # clone of a volume with QoS
        clone = self._volume(size=1, source_volid=vol['id'])
        self.assertEqual((100, 2000), self._qos(clone['id']))

        # per GiB; a volume from its snapshot, larger
        small = self._volume(size=1, volume_type=per_gib['name'])
        self.assertEqual((10, 50), self._qos(small['id']))
        snap = self.api.post_snapshot({'snapshot': {'volume_id': small['id'],
                                                    'name': 's'}})
        snap = self._wait(self.api.get_snapshot, snap['id'], ('creating',),
                          'available')
        from_snap = self._volume(size=2, snapshot_id=snap['id'])
        self.assertEqual((20, 100), self._qos(from_snap['id']))

        # revert swaps the file in: its QoS is set again
        sent = len(self._puts(small['id']))
        self._action(small['id'], {'revert': {'snapshot_id': snap['id']}})
        self._wait(self.api.get_volume, small['id'], ('reverting',),
                   'available')
        self.assertEqual((10, 50), self._qos(small['id']))
        self.assertEqual(sent + 1, len(self._puts(small['id'])))

        # extend: per-GiB specs follow the size; fixed ones are not resent
        self._action(from_snap['id'], {'os-extend': {'new_size': 3}})
        self._wait(self.api.get_volume, from_snap['id'], ('extending',),
                   'available')
        self.assertEqual((30, 150), self._qos(from_snap['id']))
        puts = len(self._puts(clone['id']))
        self._action(clone['id'], {'os-extend': {'new_size': 2}})
        self._wait(self.api.get_volume, clone['id'], ('extending',),
                   'available')
        self.assertEqual(puts, len(self._puts(clone['id'])))

        # retype to other specs, then to a type without QoS
        self._action(vol['id'], {'os-retype': {
            'new_type': per_gib['name'], 'migration_policy': 'never'}})
        self._wait_type(vol['id'], per_gib['name'])
        self.assertEqual((10, 50), self._qos(vol['id']))
        self._action(vol['id'], {'os-retype': {
            'new_type': plain['name'], 'migration_policy': 'never'}})
        self._wait_type(vol['id'], plain['name'])
        self.assertEqual((0, 0), self._qos(vol['id']))
        self.assertEqual((0, 0), self._puts(vol['id'])[-1])

        # unmanage clears; the file stays
        self._action(from_snap['id'], {'os-unmanage': None})
        self._wait_gone(self.api.get_volume, from_snap['id'])
        self.assertEqual((0, 0), self._qos(from_snap['id']))
        self.assertEqual((0, 0), self._puts(from_snap['id'])[-1])
        left = os.path.join(self.env.share_dir,
                            'volume-%s' % from_snap['id'])
        self.assertTrue(os.path.isfile(left))
        os.unlink(left)

        self.assertEqual([], self._pending())
        self.api.delete_snapshot(snap['id'])
        self._wait_gone(self.api.get_snapshot, snap['id'])
        self._delete(vol, bare, clone, small)
        # The revert made ``small`` a clone of the snapshot: on vmstore6
        # its deletion waited for that clone, and the stats update ends it.
        self._stats()
        self.assertEqual([], os.listdir(self.env.share_dir))
        self.assertEqual([], self.env.sim.inventory()['snapshots'])

    def _wait_type(self, vol_id, type_name):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            vol = self.api.get_volume(vol_id)
            if vol['status'] != 'retyping' and \
                    vol['volume_type'] == type_name:
                self.assertEqual('available', vol['status'], vol)
                return vol
            time.sleep(0.2)
        self.fail('volume %s not retyped' % vol_id)


@tfixtures.skip_unless_root
class QosApiTest(QosLifecycle, harness.ApiTestCase):
    """VMstore >= 6 (the harness's default vmstore6 profile)."""

    def test_bad_spec_fails_the_create_leaving_nothing(self):
        bad = self._type({'minIOPS': '600', 'maxIOPS': '500'})
        vol = self.api.post_volume({'volume': {'size': 1,
                                               'volume_type': bad['name']}})
        vol = self._wait(self.api.get_volume, vol['id'], ('creating',),
                         'error')
        self.assertFalse(os.path.exists(
            os.path.join(self.env.share_dir, 'volume-%s' % vol['id'])))
        self.assertEqual([], self.env.sim.qos_puts())
        self._delete(vol)

    def test_array_refuses_then_the_periodic_pass_applies(self):
        sim = self.env.sim
        gold = self._type({'minIOPS': '100', 'maxIOPS': '2000'})

        # ERR-API-3110: the VM is not live
        sim.set_vm_live('*', False)
        vol = self._volume(size=1, volume_type=gold['name'])
        self.assertEqual((0, 0), self._qos(vol['id']))
        self.assertEqual([vol['id']], self._pending())
        msgs = self._messages(vol['id'])
        self.assertEqual(1, len(msgs), msgs)
        self.assertEqual('WARNING', msgs[0]['message_level'])
        # still refused: stays pending, no second message
        self._stats()
        self.assertEqual([vol['id']], self._pending())
        self.assertEqual(1, len(self._messages(vol['id'])))
        # A restarted service knows only what is on the share: a fresh
        # collaborator (and inventory, nothing cached) applies it.
        drv = self.volume.manager.driver
        drv._qos = qos.VolumeQos(
            drv._client, inventory.Inventory(drv._client,
                                             hostname='keystone.test'),
            drv._qos_file_path, drv._get_mount_point_for_share,
            enabled=True, wait=1.5)
        sim.set_vm_live('*', True)
        self._stats()
        self.assertEqual((100, 2000), self._qos(vol['id']))
        self.assertEqual([], self._pending())

        # The file is not in the array's inventory for a while.
        sim.set_inventory_lag(4.0)
        late = self._volume(size=1, volume_type=gold['name'])
        self.assertEqual((0, 0), self._qos(late['id']))
        self.assertEqual([late['id']], self._pending())
        self.assertEqual(1, len(self._messages(late['id'])))
        self._stats()   # not inventoried yet: still pending
        self.assertEqual([late['id']], self._pending())
        deadline = time.monotonic() + DEADLINE
        while self._rel(late['id']) not in sim.inventoried():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)
        sim.set_inventory_lag(0.0)
        self._stats()
        self.assertEqual((100, 2000), self._qos(late['id']))
        self.assertEqual([], self._pending())

        # A pending volume that is deleted drops its record.
        sim.set_vm_live('*', False)
        gone = self._volume(size=1, volume_type=gold['name'])
        self.assertEqual([gone['id']], self._pending())
        sim.set_vm_live('*', True)
        self._delete(gone)
        self.assertEqual([], self._pending())

        self._delete(vol, late)
        self.assertEqual([], os.listdir(self.env.share_dir))


@tfixtures.skip_unless_root
class QosApiVmstore4Test(QosLifecycle, harness.ApiTestCase):
    """The same lifecycle on the lenient VMstore 4.x profile."""

    SIM_KWARGS = {'profile': 'vmstore4'}


@tfixtures.skip_unless_root
class QosMoveApiTest(QosHelpers, harness.ApiTestCase):
    """A volume moved to another share is another VM: it gets its QoS."""

    USE_XFS = True
    SUBMOUNTS = ('cinder', 'cinder2')

    def _wait_moved(self, vol_id, pool):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            vol = self.api.get_volume(vol_id)
            if vol['status'] not in ('retyping', 'maintenance') and \
                    vol.get('migration_status') in ('success', 'error'):
                self.assertEqual('success', vol['migration_status'], vol)
                self.assertEqual(pool, vol['os-vol-host-attr:host'])
                return vol
            time.sleep(0.2)
        self.fail('volume %s not moved' % vol_id)

    def test_retype_and_migrate_to_the_other_share(self):
        pools = self._pools()
        gold = {'minIOPS': '100', 'maxIOPS': '2000'}
        on_0 = self._type(gold, extra_specs={
            'pool_name': self.env.shares[0]})
        per_gib_on_1 = self._type(
            {'minIOPSperGiB': '10', 'maxIOPSperGiB': '50'},
            extra_specs={'pool_name': self.env.shares[1]})
        vol = self._volume(size=1, volume_type=on_0['name'])
        self.assertEqual((100, 2000), self._qos(vol['id']))

        # retype to a type placed on the other share: moved, new specs
        self._action(vol['id'], {'os-retype': {
            'new_type': per_gib_on_1['name'],
            'migration_policy': 'on-demand'}})
        moved = self._wait(self.api.get_volume, vol['id'], ('retyping',),
                           'available')
        self.assertEqual(pools[1], moved['os-vol-host-attr:host'])
        self.assertEqual(per_gib_on_1['name'], moved['volume_type'])
        self.assertEqual((10, 50), self.env.sim.vm_qos(
            self._rel(vol['id'], 'cinder2')))

        # migrate (type not tied to a pool): its QoS on the moved file
        anywhere = self._type(gold)
        vol2 = self._volume(size=1, volume_type=anywhere['name'])
        src = pools.index(vol2['os-vol-host-attr:host'])
        subs = [d.rsplit('/', 1)[-1] for d in self.env.share_dirs]
        self.assertEqual((100, 2000), self.env.sim.vm_qos(
            self._rel(vol2['id'], subs[src])))
        self._action(vol2['id'], {'os-migrate_volume': {
            'host': pools[1 - src], 'force_host_copy': False}})
        self._wait_moved(vol2['id'], pools[1 - src])
        self.assertEqual((100, 2000), self.env.sim.vm_qos(
            self._rel(vol2['id'], subs[1 - src])))
        self.assertEqual([], self._pending())
        self._delete(vol, vol2)
        for share_dir in self.env.share_dirs:
            self.assertEqual([], os.listdir(share_dir))
