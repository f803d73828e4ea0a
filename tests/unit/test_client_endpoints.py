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
"""Official endpoint guard (issue 17 item 5).

The client declares every (method, template) it can call in
``client.ENDPOINTS``. These tests fail when a row claims to be official
but is not in the official v310 index, when a fallback row names a test
that does not exist, or when any client method sends a request that no
row covers.
"""

import importlib
import inspect
import os
import re
import time

import fixtures
import testtools

from cinder_tintri import client
from cinder_tintri.simulator import VMstoreSimulator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHARED_INDEX = os.path.join(REPO, '..', 'shared', 'reference',
                            'vmstore-api-v310-official.md')
VENDORED = os.path.join(HERE, 'data', 'vmstore-api-v310-official-rows.md')
ROW_RE = re.compile(r'^\| `(/v310/[^`]+)` \| ([A-Z]+) \|')
CINDER = {('POST', 'cinder/snapshot'), ('POST', 'cinder/clone'),
          ('POST', 'cinder/host/refresh')}


def normalize(template):
    """'/v310/snapshot/{tintriUuid}' and 'snapshot/{uuid}' -> 'snapshot/{}'."""
    template = template.split('?', 1)[0]
    if template.startswith('/v310/'):
        template = template[len('/v310/'):]
    elif template.startswith('/api/v310/'):
        template = template[len('/api/v310/'):]
    return re.sub(r'\{[^}]*\}', '{}', template)


def index_rows(path):
    rows = set()
    with open(path) as f:
        for line in f:
            m = ROW_RE.match(line)
            if m:
                rows.add((m.group(2), normalize(m.group(1))))
    return rows


def raw_rows(path):
    with open(path) as f:
        return [ln.rstrip('\n') for ln in f if ROW_RE.match(ln)]


class TableTest(testtools.TestCase):

    def index(self):
        if os.path.isfile(SHARED_INDEX):
            return index_rows(SHARED_INDEX)
        return index_rows(VENDORED)

    def test_official_rows_are_in_the_official_index(self):
        index = self.index()
        self.assertGreater(len(index), 5)
        for row in client.ENDPOINTS:
            key = (row.method, normalize(row.template))
            if row.source == 'official':
                self.assertIn(key, index, row)
            else:
                # Anything marked otherwise really is outside the index.
                self.assertNotIn(key, index, row)

    def test_vendored_rows_match_the_shared_index(self):
        vendored = raw_rows(VENDORED)
        self.assertGreater(len(vendored), 5)
        if not os.path.isfile(SHARED_INDEX):
            self.skipTest('no %s here' % SHARED_INDEX)
        shared = set(raw_rows(SHARED_INDEX))
        for line in vendored:
            self.assertIn(line, shared)
        # And the vendored copy covers every official row of the table.
        covered = index_rows(VENDORED)
        for row in client.ENDPOINTS:
            if row.source == 'official':
                self.assertIn((row.method, normalize(row.template)),
                              covered, row)

    def test_every_row_has_a_known_source(self):
        seen = set()
        for row in client.ENDPOINTS:
            self.assertNotIn((row.method, row.template), seen)
            seen.add((row.method, row.template))
            if (row.method, row.template) in CINDER:
                self.assertEqual('cinder', row.source, row)
            else:
                self.assertTrue(row.source == 'official'
                                or row.source.startswith('fallback:'), row)

    def test_each_fallback_names_a_test_that_exists(self):
        fallbacks = [r for r in client.ENDPOINTS
                     if r.source.startswith('fallback:')]
        self.assertEqual({('GET', '/api/info'), ('PUT', 'snapshot/{uuid}')},
                         {(r.method, r.template) for r in fallbacks})
        for row in fallbacks:
            test_id = row.source[len('fallback:'):]
            module_name, class_name, method_name = test_id.rsplit('.', 2)
            module = importlib.import_module(module_name)
            cls = getattr(module, class_name)
            self.assertTrue(issubclass(cls, testtools.TestCase), test_id)
            self.assertTrue(callable(getattr(cls, method_name, None)),
                            test_id)
            self.assertTrue(method_name.startswith('test'), test_id)

    def test_undeclared_endpoint_refused_before_sending(self):
        cl = client.TClient('127.0.0.1', 'u', 'password', port=1)
        sent = []
        cl._session.request = lambda *a, **k: sent.append(a)
        for method, path in (('GET', 'vm'), ('POST', 'snapshot'),
                             ('DELETE', 'snapshot'), ('GET', 'x/y'),
                             ('PUT', 'cinder/clone')):
            self.assertRaises(client.UndeclaredEndpoint, cl._call, method,
                              path, auth=False)
        self.assertRaises(client.UndeclaredEndpoint, cl.get, 'vm')
        self.assertRaises(client.UndeclaredEndpoint, cl._call, 'GET',
                          'snapshot/X', template='snapshot/{id}', auth=False)
        self.assertEqual([], sent)
        self.assertEqual({}, cl.request_counts)

    def test_template_matching(self):
        self.assertEqual(('GET', 'snapshot/{uuid}'), tuple(
            client.find_endpoint('get', 'snapshot/ABC')[:2]))
        self.assertEqual('appliance/{id}/fileDirInfo/{path}',
                         client.find_endpoint(
                             'GET', 'appliance/default/fileDirInfo/a/b/c'
                         ).template)
        self.assertIsNone(client.find_endpoint('GET', 'snapshot/a/b'))
        self.assertIsNone(client.find_endpoint('PATCH', 'snapshot'))


class SimulatorRunTest(testtools.TestCase):
    """Every public client method, run against the simulator."""

    # Public TClient members that send nothing.
    LOCAL = {'mask', 'reset_counts', 'request_counts', 'logins',
             'failed_logins', 'logged_in', 'set_credentials'}

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'cinder_tintri.client.TClient.backoff_base', 0.02))
        self.sim = VMstoreSimulator(password='pw-endpoints-guard')
        self.sim.start()
        self.addCleanup(self.sim.stop)
        os.makedirs(os.path.join(self.sim.datastore, 'cinder'))
        with open(os.path.join(self.sim.datastore, 'cinder', 'volume-1'),
                  'wb') as f:
            f.truncate(4096)
        # A peer for the remote copy (cross-array clone).
        self.peer = VMstoreSimulator(host='127.0.0.2',
                                     password='pw-endpoints-peer')
        self.peer.start()
        self.addCleanup(self.peer.stop)
        self.path_id = self.sim.add_replication_path(self.peer)

    def test_every_method_uses_only_table_rows(self):
        cl = client.TClient(self.sim.host, self.sim.username,
                            self.sim.password, port=self.sim.port,
                            ca_path=self.sim.ca_path, retries=1)
        self.addCleanup(cl.close)
        sent = []
        real = cl._session.request

        def recording(method, url, **kwargs):
            sent.append((method, url))
            return real(method, url, **kwargs)
        cl._session.request = recording
        state = {}

        def snap(name):
            return cl.create_snapshot('/tintri/cinder', 'volume-1', 'VOL-1',
                                      name)

        def create():
            state['uuid'] = snap('snap-guard')
            return state['uuid']

        def body():
            return {'typeId': client.REQUEST_TYPE,
                    'objectsWithNewValues': [{
                        'typeId': client.SNAPSHOT_TYPE,
                        'deletionPolicy': 'DELETE_ON_EXPIRATION'}],
                    'propertiesToBeUpdated': ['deletionPolicy']}
        calls = [
            ('api_info', lambda: cl.api_info()),
            ('login', lambda: cl.login()),
            ('get_appliance_info', lambda: cl.get_appliance_info()),
            ('get_datastore_stats', lambda: cl.get_datastore_stats()),
            ('create_snapshot', create),
            ('get_snapshot', lambda: cl.get_snapshot(state['uuid'])),
            ('find_snapshots', lambda: list(cl.find_snapshots())),
            ('find_snapshot_by_description',
             lambda: cl.find_snapshot_by_description('snap-guard')),
            ('count_snapshots', lambda: cl.count_snapshots(vmUuid='VOL-1')),
            ('get_image_snapshots_to_date', lambda: list(
                cl.get_image_snapshots_to_date('2999-01-01T00:00:00'))),
            ('set_snapshot_deletion_policy',
             lambda: cl.set_snapshot_deletion_policy(
                 state['uuid'], 'DELETE_ON_EXPIRATION')),
            ('clone_volume', lambda: cl.clone_volume(
                state['uuid'], '/tintri/cinder/tmp-guard')),
            ('get_appliance_ips', lambda: cl.get_appliance_ips()),
            ('list_replication_paths',
             lambda: cl.list_replication_paths()),
            ('remote_copy', lambda: state.update(task=cl.remote_copy(
                state['uuid'], self.path_id, 'cinder/rc-guard'))),
            ('wait_task', lambda: cl.wait_task(
                state['task'], time.monotonic() + 10, 0.05)),
            ('get_task', lambda: cl.get_task(state['task'])),
            ('cancel_task', lambda: cl.cancel_task(state['task'])),
            ('host_refresh', lambda: cl.host_refresh(
                'compute-1', '/tintri/cinder/volume-1', volume_id='VOL-1')),
            ('find_virtual_disk',
             lambda: cl.find_virtual_disk(uuid='VOL-1')),
            ('set_vm_qos', lambda: cl.set_vm_qos(
                cl.find_virtual_disk(uuid='VOL-1')['vm_uuid'], 100, 500)),
            ('get_file_info',
             lambda: cl.get_file_info('/tintri/cinder/volume-1')),
            ('get', lambda: cl.get('appliance/default/info')),
            ('get_query', lambda: cl.get_query('snapshot', {'limit': 1})),
            ('iter_items', lambda: list(cl.iter_items('snapshot'))),
            ('post', lambda: cl.post('cinder/host/refresh', {
                'typeId': client.HOST_REFRESH_TYPE, 'hostname': 'h',
                'volumeFilePath': 'cinder/volume-1'})),
            ('put', lambda: cl.put('snapshot/%s' % state['uuid'], body())),
            ('delete_snapshot', lambda: cl.delete_snapshot(
                snap('snap-guard-2'))),
            ('delete', lambda: cl.delete('snapshot/%s'
                                         % snap('snap-guard-3'))),
            ('logout', lambda: cl.logout()),
            ('close', lambda: cl.close()),
        ]
        public = {n for n, _v in inspect.getmembers(client.TClient)
                  if not n.startswith('_')
                  and n not in ('backoff_base', 'backoff_cap', 'POOL_SIZE')}
        self.assertEqual(public - self.LOCAL, {n for n, _c in calls})
        for _name, call in calls:
            call()
        self.assertTrue(self.sim.inventory()['refreshed'])
        self.assertGreater(len(sent), len(calls))
        used = set()
        for method, url in sent:
            path = url.split('://', 1)[1].split('/', 1)[1].split('?')[0]
            path = '/' + path
            rel = path[len(cl.api_prefix):] if path.startswith(
                cl.api_prefix) else path
            row = client.find_endpoint(method, rel)
            self.assertIsNotNone(row, '%s %s is not in the table'
                                 % (method, path))
            used.add((row.method, row.template))
        # The run covered the whole table.
        self.assertEqual({(r.method, r.template) for r in client.ENDPOINTS},
                         used)
