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
"""Per-volume QoS: spec mapping and validation, the client's qosConfig
call and the simulator's model of it (issue 14 item 3).

The driver-level behaviour (create, clone, extend, retype, unmanage, the
best-effort path and the periodic pass) is proved through cinder's API in
tests/functional/test_qos_api.py.
"""

import os
import tempfile
import time

from cinder import exception
import requests
import testtools

from cinder_tintri import client
from cinder_tintri import qos
from tests.unit import test_client_sim

QOS_PUT = 'PUT /api/v310/vm/{id}/qosConfig'


class ParseTest(testtools.TestCase):

    def assertRefused(self, specs, *words, consumer='back-end'):
        err = self.assertRaises(exception.InvalidQoSSpecs, qos.parse, specs,
                                consumer)
        for word in words:
            self.assertIn(word, str(err))
        return err

    def test_no_known_keys_is_none(self):
        self.assertIsNone(qos.parse({}))
        self.assertIsNone(qos.parse({'read_iops_sec': '100'}, 'both'))

    def test_fixed_bounds(self):
        spec = qos.parse({'minIOPS': '100', 'maxIOPS': '5000'})
        self.assertEqual(qos.Limits(100, 5000), spec.limits(1))
        self.assertEqual(qos.Limits(100, 5000), spec.limits(500))
        self.assertFalse(spec.per_gib)

    def test_keys_case_insensitive(self):
        spec = qos.parse({'MINiops': 5, 'maxiopspergib': '2.5'})
        self.assertEqual(qos.Limits(5, 25), spec.limits(10))
        # per GiB is rounded up to whole IOPS
        self.assertEqual(qos.Limits(5, 8), spec.limits(3))
        self.assertTrue(spec.per_gib)

    def test_per_gib_both_bounds(self):
        spec = qos.parse({'minIOPSperGiB': '10', 'maxIOPSperGiB': '50'})
        self.assertEqual(qos.Limits(10, 50), spec.limits(1))
        self.assertEqual(qos.Limits(40, 200), spec.limits(4))

    def test_only_one_bound(self):
        self.assertEqual(qos.Limits(0, 700),
                         qos.parse({'maxIOPS': '700'}).limits(3))
        self.assertEqual(qos.Limits(30, 0),
                         qos.parse({'minIOPSperGiB': '10'}).limits(3))

    def test_bad_values_name_the_key(self):
        for key, value in (('maxIOPS', 'abc'), ('maxIOPS', '-5'),
                           ('minIOPS', '1.5'), ('minIOPS', ''),
                           ('minIOPS', True), ('maxIOPS', str(2 ** 40)),
                           ('maxIOPSperGiB', 'x'), ('minIOPSperGiB', '-1'),
                           ('maxIOPSperGiB', 'nan'),
                           ('maxIOPSperGiB', 'inf')):
            self.assertRefused({key: value}, key)

    def test_min_above_max_refused(self):
        self.assertRefused({'minIOPS': '600', 'maxIOPS': '500'},
                           'minIOPS', 'maxIOPS', 'above')
        self.assertRefused({'minIOPSperGiB': '6', 'maxIOPSperGiB': '5'},
                           'minIOPSperGiB', 'above')
        # equal is fine; a zero maximum is "no ceiling"
        qos.parse({'minIOPS': '500', 'maxIOPS': '500'})
        self.assertEqual(qos.Limits(600, 0), qos.parse(
            {'minIOPS': '600', 'maxIOPS': '0'}).limits(1))

    def test_mixed_forms_checked_for_the_size(self):
        spec = qos.parse({'minIOPS': '1000', 'maxIOPSperGiB': '100'})
        self.assertEqual(qos.Limits(1000, 1000), spec.limits(10))
        err = self.assertRaises(exception.InvalidQoSSpecs, spec.limits, 5)
        self.assertIn('above', str(err))

    def test_one_form_per_bound(self):
        self.assertRefused({'maxIOPS': '10', 'maxIOPSperGiB': '1'},
                           'maxIOPS', 'maxIOPSperGiB')
        self.assertRefused({'maxIOPS': '10', 'MAXIOPS': '11'}, 'given twice')

    def test_unknown_keys(self):
        # Back end: refused, named; the VMstore has no bandwidth limit.
        self.assertRefused({'maxIOPS': '10', 'maxBPS': '100'}, 'maxBPS')
        self.assertRefused({'maxBWS': '100'}, 'maxBWS')
        # Both: the front end's keys are left to it.
        spec = qos.parse({'maxIOPS': '10', 'total_bytes_sec': '100'}, 'both')
        self.assertEqual(qos.Limits(0, 10), spec.limits(1))

    def test_huge_per_gib_result_refused(self):
        spec = qos.parse({'maxIOPSperGiB': str(2 ** 30)})
        self.assertRaises(exception.InvalidQoSSpecs, spec.limits, 4)


class RecordsTest(testtools.TestCase):

    def test_record_read_forget(self):
        mount = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, mount)
        vol = '0b9c6f5e-1d2a-4c3b-9e8f-7a6b5c4d3e2f'
        qos.record(mount, vol, {'operation': 'create'})
        self.assertEqual([vol], qos.pending_ids(mount))
        self.assertEqual('create', qos.read(mount, vol)['operation'])
        qos.record(mount, vol, {'operation': 'extend'})
        self.assertEqual('extend', qos.read(mount, vol)['operation'])
        qos.forget(mount, vol)
        self.assertEqual([], qos.pending_ids(mount))
        self.assertFalse(os.path.exists(os.path.join(mount, qos.DIR)))

    def test_bad_ids_and_links_refused(self):
        mount = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, mount)
        self.assertRaises(ValueError, qos.record, mount, '../x')
        os.rmdir(os.path.join(mount, qos.DIR))
        target = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, target)
        os.symlink(target, os.path.join(mount, qos.DIR))
        self.addCleanup(os.unlink, os.path.join(mount, qos.DIR))
        self.assertRaises(OSError, qos.record, mount, 'abc-1')
        self.assertEqual([], os.listdir(target))


class ClientQosTest(test_client_sim.SimulatorTestBase):
    """TClient.set_vm_qos against the strict simulator."""

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim(profile='vmstore6', inventory_lag=0.0)
        self.cl = self.make_client(self.sim)
        self.make_volume(self.sim, 'volume-v1')
        self.cl.host_refresh('keystone.test', 'cinder/volume-v1',
                             volume_id='v1')
        self.vm = self.cl.find_virtual_disk(uuid='v1')['vm_uuid']

    def test_set_and_clear(self):
        self.cl.set_vm_qos(self.vm, 100, 2000)
        self.assertEqual((100, 2000), self.sim.vm_qos('cinder/volume-v1'))
        self.cl.set_vm_qos(self.vm, 0, 0)
        self.assertEqual((0, 0), self.sim.vm_qos('cinder/volume-v1'))
        self.assertEqual([('cinder/volume-v1', 100, 2000),
                          ('cinder/volume-v1', 0, 0)], self.sim.qos_puts())

    def test_vm_view_shows_the_settings(self):
        self.cl.set_vm_qos(self.vm, 10, 20)
        st = self.sim._state
        with st.lock:
            view = st.get_vm(self.vm)
        self.assertEqual(10, view['qosConfig']['minNormalizedIops'])
        self.assertEqual(20, view['qosConfig']['maxNormalizedIops'])

    def test_non_live_vm(self):
        self.sim.set_vm_live('cinder/volume-v1', False)
        err = self.assertRaises(client.VmNotLive, self.cl.set_vm_qos,
                                self.vm, 1, 2)
        self.assertEqual('ERR-API-3110', err.code)
        self.assertEqual((0, 0), self.sim.vm_qos('cinder/volume-v1'))
        self.sim.set_vm_live('cinder/volume-v1', True)
        self.cl.set_vm_qos(self.vm, 1, 2)
        self.assertEqual((1, 2), self.sim.vm_qos('cinder/volume-v1'))

    def test_non_live_for_a_while(self):
        self.sim.set_vm_live('*', False, seconds=0.3)
        self.assertRaises(client.VmNotLive, self.cl.set_vm_qos, self.vm,
                          1, 2)
        time.sleep(0.35)
        self.cl.set_vm_qos(self.vm, 1, 2)

    def test_controls_over_http(self):
        url = self.sim.url
        r = requests.post(url + '/sim/vm/live', json={
            'path': 'cinder/volume-v1', 'live': False},
            verify=self.sim.ca_path, timeout=10)
        self.assertEqual(204, r.status_code)
        self.assertRaises(client.VmNotLive, self.cl.set_vm_qos, self.vm,
                          1, 2)
        inv = self.sim.inventory()
        self.assertEqual(['cinder/volume-v1'], inv['not_live'])
        requests.post(url + '/sim/vm/live', json={
            'path': 'cinder/volume-v1', 'live': True},
            verify=self.sim.ca_path, timeout=10)
        self.cl.set_vm_qos(self.vm, 1, 2)
        self.assertEqual({'cinder/volume-v1': {'min': 1, 'max': 2}},
                         self.sim.inventory()['qos'])
        # A file refreshed while the lag is long is not inventoried yet.
        r = requests.post(url + '/sim/inventory/lag', json={'seconds': 60},
                          verify=self.sim.ca_path, timeout=10)
        self.assertEqual(204, r.status_code)
        self.assertEqual(60.0, self.sim.inventory_lag)
        self.make_volume(self.sim, 'volume-v2')
        self.cl.host_refresh('keystone.test', 'cinder/volume-v2',
                             volume_id='v2')
        self.assertIsNone(self.cl.find_virtual_disk(uuid='v2'))
        self.assertNotIn('cinder/volume-v2', self.sim.inventoried())

    def test_unknown_vm(self):
        other = self.vm[:-1] + ('0' if self.vm[-1] != '0' else '1')
        err = self.assertRaises(client.VmNotFound, self.cl.set_vm_qos,
                                other, 1, 2)
        self.assertEqual(404, err.status)

    def test_bad_arguments_send_nothing(self):
        self.cl.reset_counts()
        for args in (('not-a-vm', 1, 2), (self.vm, -1, 2),
                     (self.vm, 1.5, 2), (self.vm, True, 2),
                     (self.vm, 5, 2), (self.vm, 1, None)):
            self.assertRaises(client.TintriInvalidInput, self.cl.set_vm_qos,
                              *args)
        self.assertNotIn(QOS_PUT, self.cl.request_counts)

    def test_simulator_refuses_bad_values(self):
        def put(obj, props=('minNormalizedIops', 'maxNormalizedIops')):
            obj = dict(obj, typeId=client.QOS_CONFIG_TYPE)
            return self.cl._call(
                'PUT', 'vm/%s/qosConfig' % self.vm, body={
                    'typeId': client.REQUEST_TYPE,
                    'objectsWithNewValues': [obj],
                    'propertiesToBeUpdated': list(props)},
                expect='any')
        err = self.assertRaises(client.TintriError, put, {
            'minNormalizedIops': 9, 'maxNormalizedIops': 3})
        self.assertEqual('ERR-API-3112', err.code)
        err = self.assertRaises(client.TintriError, put, {
            'minNormalizedIops': -1, 'maxNormalizedIops': 3})
        self.assertEqual('ERR-API-3113', err.code)
        err = self.assertRaises(client.TintriError, put, {
            'minNormalizedIops': 1}, props=('iops',))
        self.assertEqual('ERR-API-3109', err.code)
        err = self.assertRaises(client.TintriError, put, {
            'minNormalizedIops': 1, 'burst': 2})
        self.assertEqual('ERR-API-0020', err.code)   # strict fields
        # Strings of digits are accepted (REST-HTTP's example).
        put({'minNormalizedIops': '4', 'maxNormalizedIops': '8'})
        self.assertEqual((4, 8), self.sim.vm_qos('cinder/volume-v1'))
        # Only the named property changes.
        put({'maxNormalizedIops': 16}, props=('maxNormalizedIops',))
        self.assertEqual((4, 16), self.sim.vm_qos('cinder/volume-v1'))

    def test_classification(self):
        def err(code, status=400):
            return client.TintriError('x', status=status, code=code)
        self.assertIs(client.VmNotLive,
                      client._qos_error_class(err('ERR-API-3110')))
        self.assertIs(client.VmNotFound,
                      client._qos_error_class(err('ERR-API-8001', 404)))
        for code in ('ERR-API-3109', 'ERR-API-3112', 'ERR-API-3113'):
            self.assertIs(client.QosRefused,
                          client._qos_error_class(err(code)))
        self.assertIsNone(client._qos_error_class(err('ERR-API-0007', 500)))
