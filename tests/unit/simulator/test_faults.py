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
"""Injected faults, latency and request accounting."""

import concurrent.futures
import os
import threading
import time

import requests

from tests.unit.simulator import base

STATS = 'GET /api/v310/datastore/{id}/statsRealtime'
SNAP_CREATE = 'POST /api/v310/cinder/snapshot'


class FaultTest(base.SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim()
        self.s = self.session(self.sim)

    def stats(self, **kwargs):
        return self.call(self.s, self.sim, 'GET',
                         '/datastore/default/statsRealtime', **kwargs)

    def test_counts(self):
        self.sim.reset_counts()
        self.stats()
        self.stats()
        self.call(self.s, self.sim, 'GET', '/snapshot/ABC')
        self.call(self.s, self.sim, 'GET', '/api/info')
        self.call(self.s, self.sim, 'GET', '/bogus/path')
        counts = self.sim.request_counts()
        self.assertEqual({STATS: 2, 'GET /api/v310/snapshot/{uuid}': 1,
                          'GET /api/info': 1,
                          'GET /api/v310/bogus/path': 1}, counts)
        self.assertEqual(5, self.sim.total_requests())
        self.sim.reset_counts()
        self.assertEqual({}, self.sim.request_counts())
        self.assertEqual(0, self.sim.total_requests())

    def test_error_mode(self):
        self.sim.inject_fault(STATS, count=2, mode='error', status=503,
                              code='ERR-API-9013')
        for _i in range(2):
            body = self.assertError(self.stats(), 503, 'ERR-API-9013')
            self.assertIn('busy', body['message'])
        self.assertEqual(200, self.stats().status_code)
        self.assertEqual(3, self.sim.request_counts()[STATS])

    def test_error_mode_custom_message_and_wildcard(self):
        self.sim.inject_fault('*', mode='error', status=500,
                              code='RESOURCE_BUSY', message='busy now',
                              cause_details='try later')
        body = self.assertError(self.call(self.s, self.sim, 'GET',
                                          '/appliance'),
                                500, 'RESOURCE_BUSY', 'try later')
        self.assertEqual('busy now', body['message'])
        self.assertEqual(200, self.call(self.s, self.sim, 'GET',
                                        '/appliance').status_code)

    def test_error_happens_before_auth(self):
        anon = self.session(self.sim, login=False)
        self.sim.inject_fault(STATS, mode='error', status=502,
                              code='ERR-API-0007')
        r = self.call(anon, self.sim, 'GET',
                      '/datastore/default/statsRealtime')
        self.assertError(r, 502, 'ERR-API-0007')

    def test_drop(self):
        self.sim.inject_fault(STATS, count=1, mode='drop')
        self.assertRaises(requests.ConnectionError, self.stats)
        self.assertEqual(200, self.stats().status_code)

    def test_drop_does_nothing(self):
        self.make_file(self.sim, 'cinder/volume-1', b'x')
        self.sim.inject_fault(SNAP_CREATE, mode='drop')
        self.assertRaises(requests.ConnectionError, self.call, self.s,
                          self.sim, 'POST', '/cinder/snapshot',
                          json={'file': 'cinder/volume-1'})
        self.assertEqual([], self.sim.inventory()['snapshots'])

    def test_lose_response_does_the_work(self):
        self.make_file(self.sim, 'cinder/volume-1', b'x')
        self.sim.inject_fault(SNAP_CREATE, mode='lose_response')
        self.assertRaises(requests.ConnectionError, self.call, self.s,
                          self.sim, 'POST', '/cinder/snapshot',
                          json={'file': 'cinder/volume-1',
                                'description': 'lost'})
        snaps = self.sim.inventory()['snapshots']
        self.assertEqual(['lost'], [x['description'] for x in snaps])
        self.assertEqual(1, self.sim.request_counts()[SNAP_CREATE])

    def test_lose_response_of_clone(self):
        self.make_file(self.sim, 'cinder/volume-1', b'x')
        snap = self.snapshot(self.s, self.sim, 'cinder/volume-1')
        self.sim.inject_fault('POST /api/v310/cinder/clone',
                              mode='lose_response')
        self.assertRaises(requests.ConnectionError, self.clone, self.s,
                          self.sim, snap, 'cinder/lost')
        self.assertTrue(os.path.exists(os.path.join(
            self.sim.datastore, 'cinder', 'lost', 'volume-1')))
        # a retry finds the destination in place
        self.assertError(self.clone(self.s, self.sim, snap, 'cinder/lost'),
                         409, 'ERR-API-3205')

    def test_delay_read_timeout(self):
        self.sim.inject_fault(STATS, mode='delay', delay=1.5)
        self.assertRaises(requests.ReadTimeout, self.stats,
                          timeout=(5, 0.3))
        # the server still handles the delayed request and survives
        self.assertEqual(200, self.stats().status_code)

    def test_delay_succeeds_late(self):
        self.sim.inject_fault(STATS, mode='delay', delay=0.4)
        start = time.monotonic()
        self.assertEqual(200, self.stats().status_code)
        self.assertGreaterEqual(time.monotonic() - start, 0.35)

    def test_delay_does_not_block_others(self):
        other = self.session(self.sim)
        self.sim.inject_fault(STATS, mode='delay', delay=1.0)
        t = threading.Thread(target=self.stats)
        t.start()
        self.addCleanup(t.join, 10)
        time.sleep(0.1)
        start = time.monotonic()
        self.assertEqual(200, self.call(other, self.sim, 'GET',
                                        '/appliance').status_code)
        self.assertLess(time.monotonic() - start, 0.9)

    def test_latency(self):
        self.sim.set_latency(0.3)
        start = time.monotonic()
        self.assertEqual(200, self.stats().status_code)
        self.assertGreaterEqual(time.monotonic() - start, 0.25)
        self.sim.set_latency(0)
        self.assertRaises(ValueError, self.sim.set_latency, -1)

    def test_clear_faults(self):
        self.sim.inject_fault(STATS, count=5, mode='error')
        self.sim.clear_faults()
        self.assertEqual(200, self.stats().status_code)

    def test_bad_fault_arguments(self):
        self.assertRaises(ValueError, self.sim.inject_fault, STATS,
                          mode='explode')
        self.assertRaises(ValueError, self.sim.inject_fault, STATS, count=0)
        self.assertRaises(ValueError, self.sim.inject_fault, STATS,
                          status=1000)

    def test_control_over_http(self):
        anon = self.session(self.sim, login=False)
        url = self.sim.url
        r = anon.post(url + '/sim/faults', timeout=base.TIMEOUT,
                      json={'endpoint': STATS, 'mode': 'error',
                            'status': 503, 'code': 'ERR-API-9013'})
        self.assertEqual(204, r.status_code)
        self.assertError(self.stats(), 503, 'ERR-API-9013')
        anon.post(url + '/sim/faults', json={'endpoint': STATS},
                  timeout=base.TIMEOUT)
        self.assertEqual(204, anon.delete(url + '/sim/faults',
                                          timeout=base.TIMEOUT).status_code)
        self.assertEqual(200, self.stats().status_code)
        counts = anon.get(url + '/sim/counts', timeout=base.TIMEOUT).json()
        self.assertEqual(2, counts['counts'][STATS])
        self.assertEqual(sum(counts['counts'].values()), counts['total'])
        self.assertEqual(204, anon.post(url + '/sim/counts/reset',
                                        timeout=base.TIMEOUT).status_code)
        self.assertEqual({}, self.sim.request_counts())
        r = anon.post(url + '/sim/seed', json={'n': 25},
                      timeout=base.TIMEOUT)
        self.assertEqual(25, r.json()['count'])
        inv = anon.get(url + '/sim/inventory', timeout=base.TIMEOUT).json()
        self.assertEqual(25, len(inv['snapshots']))
        self.assertEqual(1, inv['sessions'])
        self.assertEqual(204, anon.post(url + '/sim/latency',
                                        json={'seconds': 0.0},
                                        timeout=base.TIMEOUT).status_code)
        self.assertEqual(204, anon.post(url + '/sim/sessions/expire',
                                        timeout=base.TIMEOUT).status_code)
        self.assertError(self.stats(), 401, 'ERR-API-0104')
        r = anon.post(url + '/sim/faults', json={'mode': 'bogus',
                                                 'endpoint': '*'},
                      timeout=base.TIMEOUT)
        self.assertEqual(400, r.status_code)
        self.assertEqual(404, anon.get(url + '/sim/nothing',
                                       timeout=base.TIMEOUT).status_code)
        # control calls are not API requests
        self.assertNotIn('GET /sim/counts', self.sim.request_counts())


class ConcurrencyTest(base.SimTestCase):

    def test_parallel_clients(self):
        sim = self.start_sim()
        for i in range(8):
            self.make_file(sim, 'cinder/volume-%d' % i, b'v%d' % i)

        def worker(i):
            s = self.session(sim)
            snap = self.snapshot(s, sim, 'cinder/volume-%d' % i)
            r = self.clone(s, sim, snap, 'cinder/c%d' % i)
            self.assertEqual(200, r.status_code)
            for _j in range(10):
                self.assertEqual(200, self.call(s, sim, 'GET',
                                                '/snapshot').status_code)
            return snap

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            snaps = list(pool.map(worker, range(8), timeout=60))
        self.assertEqual(8, len(set(snaps)))
        self.assertEqual(8, sim.inventory()['logins'])
