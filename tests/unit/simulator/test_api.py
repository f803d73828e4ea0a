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
"""Success and error shapes of every simulated endpoint."""

import os
import time

from tests.unit.simulator import base

API = base.API


class SessionTest(base.SimTestCase):

    def test_info_needs_no_session(self):
        sim = self.start_sim()
        s = self.session(sim, login=False)
        r = self.call(s, sim, 'GET', '/api/info')
        self.assertEqual(200, r.status_code)
        body = r.json()
        self.assertEqual('v310.191', body['preferredVersion'])
        self.assertEqual('Tintri VMstore', body['productName'])
        self.assertIn('v310.191', body['supportedVersionSet'])
        self.assertIn('v310.41', body['supportedVersionSet'])

    def test_login_success(self):
        sim = self.start_sim()
        s = self.session(sim, login=False)
        r = self.login(sim, s)
        self.assertEqual(200, r.status_code)
        self.assertEqual('ADMIN', r.json())  # a JSON string: the role
        self.assertTrue(r.cookies['JSESSIONID'])
        self.assertIn('Secure', r.headers['Set-Cookie'])
        r = self.call(s, sim, 'GET', '/session/current')
        self.assertEqual(200, r.status_code)
        self.assertEqual('admin', r.json()['userName'])
        self.assertEqual(1, sim.inventory()['sessions'])
        self.assertEqual(1, sim.inventory()['logins'])

    def test_login_bad_credentials(self):
        sim = self.start_sim()
        s = self.session(sim, login=False)
        r = self.login(sim, s, password='wrong')
        self.assertError(r, 403, 'ERR-API-0124')
        self.assertNotIn('JSESSIONID', r.cookies)
        self.assertEqual(0, sim.inventory()['logins'])

    def test_login_missing_type_id(self):
        sim = self.start_sim()
        s = self.session(sim, login=False)
        r = self.call(s, sim, 'POST', '/session/login',
                      json={'username': 'admin', 'password': 'tintri'})
        self.assertError(r, 400, 'ERR-API-0020', 'typeId')

    def test_login_not_json(self):
        sim = self.start_sim()
        s = self.session(sim, login=False)
        r = self.call(s, sim, 'POST', '/session/login', data=b'{nope',
                      headers={'Content-Type': 'application/json'})
        self.assertError(r, 400, 'ERR-API-0020')

    def test_no_cookie_unknown_cookie(self):
        sim = self.start_sim()
        s = self.session(sim, login=False)
        self.assertError(self.call(s, sim, 'GET', '/appliance'),
                         401, 'ERR-API-0104')
        s.headers['Cookie'] = 'JSESSIONID=DEADBEEF'
        self.assertError(self.call(s, sim, 'GET', '/appliance'),
                         401, 'ERR-API-0104')

    def test_logout_post_and_get(self):
        sim = self.start_sim()
        for method in ('POST', 'GET'):
            s = self.session(sim)
            r = self.call(s, sim, method, '/session/logout')
            self.assertEqual(204, r.status_code)
            self.assertEqual(b'', r.content)
            self.assertError(self.call(s, sim, 'GET', '/appliance'),
                             401, 'ERR-API-0104')
        self.assertEqual(1, sim.request_counts()[
            'GET /api/v310/session/logout'])
        self.assertEqual(1, sim.request_counts()[
            'POST /api/v310/session/logout'])

    def test_logout_without_cookie_keeps_sessions(self):
        sim = self.start_sim()
        s = self.session(sim)
        anon = self.session(sim, login=False)
        self.assertEqual(204, self.call(anon, sim, 'GET',
                                        '/session/logout').status_code)
        self.assertEqual(200, self.call(s, sim, 'GET',
                                        '/appliance').status_code)

    def test_expire_sessions(self):
        sim = self.start_sim()
        s = self.session(sim)
        sim.expire_sessions()
        self.assertError(self.call(s, sim, 'GET', '/appliance'),
                         401, 'ERR-API-0104')
        self.assertEqual(0, sim.inventory()['sessions'])
        self.login(sim, s)
        self.assertEqual(200, self.call(s, sim, 'GET',
                                        '/appliance').status_code)

    def test_idle_timeout(self):
        sim = self.start_sim(session_idle_timeout=0.3)
        s = self.session(sim)
        self.assertEqual(200, self.call(s, sim, 'GET',
                                        '/appliance').status_code)
        time.sleep(0.6)
        self.assertError(self.call(s, sim, 'GET', '/appliance'),
                         401, 'ERR-API-0104')

    def test_activity_keeps_session_alive(self):
        sim = self.start_sim(session_idle_timeout=0.5)
        s = self.session(sim)
        for _i in range(4):
            time.sleep(0.2)
            self.assertEqual(200, self.call(s, sim, 'GET',
                                            '/appliance').status_code)

    def test_basic_auth_off_by_default(self):
        sim = self.start_sim()
        s = self.session(sim, login=False)
        s.auth = (sim.username, sim.password)
        self.assertError(self.call(s, sim, 'GET', '/appliance'),
                         401, 'ERR-API-0104')
        sim2 = self.start_sim(accept_basic_auth=True)
        s2 = self.session(sim2, login=False)
        s2.auth = (sim2.username, sim2.password)
        self.assertEqual(200, self.call(s2, sim2, 'GET',
                                        '/appliance').status_code)


class ApplianceDatastoreTest(base.SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim(capacity_gib=100.0)
        self.s = self.session(self.sim)

    def get(self, path):
        return self.call(self.s, self.sim, 'GET', path)

    def test_appliance_list(self):
        r = self.get('/appliance')
        self.assertEqual(200, r.status_code)
        body = r.json()
        self.assertIsInstance(body, list)
        self.assertEqual(1, len(body))
        self.assertIn('uuid', body[0]['uuid'])
        self.assertEqual('Tintri VMstore', body[0]['info']['product'])
        r = self.get('/appliance/default')
        self.assertEqual(body, r.json())
        r = self.get('/appliance/%s' % body[0]['uuid']['uuid'])
        self.assertEqual(200, r.status_code)

    def test_appliance_info(self):
        info = self.get('/appliance/default/info').json()
        self.assertTrue(info['modelName'])
        self.assertRegex(info['osVersion'], r'^5\.6\.0\.1-\d+')
        self.assertTrue(info['serialNumber'])
        self.assertTrue(info['isAllFlash'])
        self.assertEqual(100.0, info['currentCapacityGiB'])

    def test_appliance_ips(self):
        ips = self.get('/appliance/default/ips').json()
        self.assertEqual('127.0.0.1/24', ips[0]['ipCidr'])

    def test_unknown_appliance(self):
        self.assertError(self.get('/appliance/nope/info'),
                         404, 'ERR-API-8001')

    def test_datastore(self):
        body = self.get('/datastore').json()
        self.assertIsInstance(body, list)
        ds = self.get('/datastore/default').json()
        self.assertEqual(body[0]['uuid'], ds['uuid'])
        self.assertEqual(100.0, ds['stat']['spaceTotalGiB'])

    def test_non_default_datastore(self):
        self.assertError(self.get('/datastore/other'), 501, 'ERR-API-2001')
        self.assertError(self.get('/datastore/other/statsRealtime'),
                         501, 'ERR-API-2001')

    def test_stats_reflect_files(self):
        def stat():
            page = self.get('/datastore/default/statsRealtime').json()
            self.assertEqual(base.PAGE_TYPE, page['typeId'])
            self.assertEqual(1, page['filteredTotal'])
            return page['items'][0]['sortedStats'][0]

        before = stat()
        self.assertEqual(100.0, before['spaceTotalGiB'])
        self.assertEqual(0.0, before['spaceProvisionedGiB'])
        path = self.make_file(self.sim, 'cinder/volume-1', size=1 << 30)
        with open(path, 'r+b') as f:
            f.write(os.urandom(8 << 20))
            os.fsync(f.fileno())
        after = stat()
        self.assertAlmostEqual(1.0, after['spaceProvisionedGiB'])
        used = os.stat(path).st_blocks * 512 / float(1 << 30)
        self.assertAlmostEqual(used, after['spaceUsedPhysicalGiB'])
        self.assertGreaterEqual(after['spaceUsedPhysicalGiB'], 8.0 / 1024)
        self.assertLess(after['spaceUsedPhysicalGiB'], 0.5)  # sparse
        self.assertAlmostEqual(
            100.0 - after['spaceUsedPhysicalGiB'],
            after['spaceRemainingPhysicalGiB'])
        self.snapshot(self.s, self.sim, 'cinder/volume-1')
        snap = stat()
        self.assertGreater(snap['spaceUsedSnapshotsTintriGiB'], 0.0)
        self.assertEqual(snap['spaceUsedPhysicalGiB'],
                         snap['spaceUsedLivePhysicalGiB']
                         + snap['spaceUsedSnapshotsTintriPhysicalGiB'])

    def test_stats_summary(self):
        st = self.get('/datastore/default/statsSummary').json()
        self.assertEqual(100.0, st['spaceTotalGiB'])

    def test_unknown_path_and_method(self):
        r = self.get('/nothingHere')
        self.assertError(r, 404, 'ERR-API-8001')
        self.assertEqual(1, self.sim.request_counts()[
            'GET /api/v310/nothingHere'])
        r = self.call(self.s, self.sim, 'GET', '/api/v999/appliance')
        self.assertError(r, 404, 'ERR-API-8001')
        r = self.call(self.s, self.sim, 'DELETE', '/appliance')
        self.assertError(r, 405, 'ERR-API-0005')

    def test_keep_alive(self):
        # Many calls over one pooled connection with exact lengths.
        for _i in range(50):
            self.assertEqual(200, self.get('/appliance').status_code)
            self.assertError(self.call(self.s, self.sim, 'PUT',
                                       '/snapshot/nope', json={}),
                             404, 'ERR-API-8001')
        self.assertEqual(50, self.sim.request_counts()[
            'PUT /api/v310/snapshot/{uuid}'])


class VmVirtualDiskTest(base.SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim()
        self.s = self.session(self.sim)
        self.make_file(self.sim, 'cinder/volume-aaa', b'x')
        self.make_file(self.sim, 'cinder/volume-bbb', b'y')
        self.make_file(self.sim, 'other/disk.img', b'z')

    def get(self, url_path, **params):
        return self.call(self.s, self.sim, 'GET', url_path, params=params)

    def test_vm_listing(self):
        page = self.get('/vm').json()
        self.assertEqual(base.PAGE_TYPE, page['typeId'])
        self.assertEqual(3, page['filteredTotal'])
        names = sorted(v['vmware']['name'] for v in page['items'])
        self.assertEqual(['disk.img', 'volume-aaa', 'volume-bbb'], names)
        vm = [v for v in page['items']
              if v['vmware']['name'] == 'volume-aaa'][0]
        self.assertIn('-VIM-', vm['uuid']['uuid'])
        # stable uuids
        again = self.get('/vm', name='volume-aaa').json()['items']
        self.assertEqual([vm['uuid']], [v['uuid'] for v in again])
        one = self.get('/vm/' + vm['uuid']['uuid']).json()
        self.assertEqual('cinder/volume-aaa', one['path'])
        self.assertError(self.get('/vm/nope'), 404, 'ERR-API-8001')

    def test_vm_filters(self):
        self.assertEqual(1, self.get(
            '/vm', path='/tintri/other/disk.img').json()['filteredTotal'])
        page = self.get('/vm', limit=2).json()
        self.assertEqual(2, len(page['items']))
        self.assertIn('next', page)

    def test_virtual_disk_listing(self):
        page = self.get('/virtualDisk').json()
        self.assertEqual(3, page['filteredTotal'])
        vd = self.get('/virtualDisk', path='cinder/volume-bbb').json()
        self.assertEqual(1, vd['filteredTotal'])
        item = vd['items'][0]
        self.assertEqual('volume-bbb', item['vmName'])
        self.assertIn('uuid', item['vmUuid'])
        self.assertTrue(item['instanceUuid'])
        for key, value in (('vmName', 'volume-bbb'),
                           ('vmUuid', item['vmUuid']['uuid']),
                           ('uuid', item['uuid']['uuid']),
                           ('name', 'volume-bbb')):
            got = self.get('/virtualDisk', **{key: value}).json()
            self.assertEqual([item], got['items'], key)

    def test_refresh_registers_volume_id(self):
        self.assertEqual(0, self.get('/virtualDisk',
                                     uuid='aaa').json()['filteredTotal'])
        r = self.call(self.s, self.sim, 'POST', '/cinder/host/refresh', json={
            'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.cinder.'
                      'OpenStackHostRefreshSpec',
            'hostname': 'controller', 'region': 'RegionOne',
            'volumeFilePath': 'cinder/volume-aaa'})
        self.assertEqual(200, r.status_code)
        items = self.get('/virtualDisk', uuid='aaa').json()['items']
        self.assertEqual(1, len(items))
        self.assertEqual('cinder/volume-aaa', items[0]['path'])
        self.assertEqual('aaa', items[0]['instanceUuid'])
        # explicit volumeId (OOT driver >= 3.0.9)
        self.call(self.s, self.sim, 'POST', '/cinder/host/refresh', json={
            'hostname': 'h', 'region': 'r', 'volumeId': 'id-of-bbb',
            'volumeFilePath': '/tintri/cinder/volume-bbb'})
        items = self.get('/virtualDisk', uuid='id-of-bbb').json()['items']
        self.assertEqual('cinder/volume-bbb', items[0]['path'])

    def test_refresh_errors_and_lag(self):
        r = self.call(self.s, self.sim, 'POST', '/cinder/host/refresh',
                      json={'hostname': 'h'})
        self.assertError(r, 400, 'ERR-API-0020')
        sim = self.start_sim(refresh_lag=0.5, vm_name_style='volume_id')
        s = self.session(sim)
        self.make_file(sim, 'cinder/volume-ccc', b'c')
        self.call(s, sim, 'POST', '/cinder/host/refresh', json={
            'hostname': 'h', 'volumeFilePath': 'cinder/volume-ccc'})
        page = self.call(s, sim, 'GET', '/virtualDisk?uuid=ccc').json()
        self.assertEqual(0, page['filteredTotal'])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            page = self.call(s, sim, 'GET', '/virtualDisk?uuid=ccc').json()
            if page['filteredTotal']:
                break
            time.sleep(0.1)
        self.assertEqual('ccc', page['items'][0]['vmName'])

    def test_no_refresh_needed_option(self):
        sim = self.start_sim(vd_requires_refresh=False)
        s = self.session(sim)
        self.make_file(sim, 'cinder/volume-ddd', b'd')
        page = self.call(s, sim, 'GET', '/virtualDisk?uuid=ddd').json()
        self.assertEqual(1, page['filteredTotal'])


class SnapshotEndpointTest(base.SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim()
        self.s = self.session(self.sim)
        self.make_file(self.sim, 'cinder/volume-1', b'data', size=1 << 20)

    def test_create_shape(self):
        before = int(time.time() * 1000)
        snap_uuid = self.snapshot(
            self.s, self.sim, 'cinder/volume-1', description='snapshot-x',
            vmName='vm-1', vmTintriUuid='vol-uuid-1', instanceId='inst-1',
            deletionPolicy='DELETE_ON_EXPIRATION',
            snapshotCreator='Vmstore cinder driver')
        self.assertRegex(snap_uuid,
                         r'^[0-9A-F-]{36}-SST-[0-9A-F]{16}$')
        snap = self.get_snap(self.s, self.sim, snap_uuid)
        self.assertEqual('com.tintri.api.rest.v310.dto.domain.Snapshot',
                         snap['typeId'])
        self.assertEqual({'uuid': snap_uuid}, snap['uuid'])
        self.assertEqual({'uuid': 'vol-uuid-1'}, snap['vmUuid'])
        self.assertEqual('vm-1', snap['vmName'])
        self.assertEqual('snapshot-x', snap['description'])
        self.assertGreaterEqual(snap['createTime'], before)
        self.assertEqual('CINDER_GENERATED_SNAPSHOT', snap['type'])
        self.assertEqual('CRASH_CONSISTENT', snap['consistency'])
        self.assertEqual('DELETE_ON_EXPIRATION', snap['deletionPolicy'])
        self.assertEqual(0, snap['cloneReferenceCount'])
        self.assertFalse(snap['isDeleted'])
        self.assertEqual('Vmstore cinder driver', snap['creatorName'])
        self.assertEqual('inst-1', snap['instanceId'])
        self.assertEqual('cinder/volume-1', snap['file'])
        for key in ('expirationTime', 'sizeChangedMB'):
            self.assertIn(key, snap)

    def test_create_path_forms(self):
        for form in ('/cinder/volume-1', '/tintri/cinder/volume-1'):
            snap = self.get_snap(self.s, self.sim, self.snapshot(
                self.s, self.sim, form))
            self.assertEqual('cinder/volume-1', snap['file'])

    def test_create_errors(self):
        post = lambda body: self.call(self.s, self.sim, 'POST',  # noqa
                                      '/cinder/snapshot', json=body)
        self.assertError(post({'file': 'cinder/missing'}), 404,
                         'ERR-API-8001', 'cinder/missing')
        self.assertError(post({'description': 'x'}), 400, 'ERR-API-3105')
        self.assertError(post({'file': '../etc/passwd'}), 400,
                         'ERR-API-3105')
        self.assertError(post({'file': 'cinder'}), 400, 'ERR-API-3105')
        self.assertError(post({'file': 'cinder/volume-1',
                               'deletionPolicy': 'SOMETIMES'}),
                         400, 'ERR-API-3105')
        self.assertError(post(['cinder/volume-1']), 400, 'ERR-API-3105')
        self.assertEqual([], self.sim.inventory()['snapshots'])

    def test_get_unknown(self):
        r = self.call(self.s, self.sim, 'GET', '/snapshot/nope')
        self.assertError(r, 404, 'ERR-API-8001')

    def test_delete(self):
        snap_uuid = self.snapshot(self.s, self.sim, 'cinder/volume-1')
        r = self.call(self.s, self.sim, 'DELETE', '/snapshot/' + snap_uuid)
        self.assertEqual(200, r.status_code)
        self.assertIsInstance(r.json(), str)
        self.assertIsNone(self.get_snap(self.s, self.sim, snap_uuid))
        self.assertEqual([], os.listdir(os.path.join(self.sim.root,
                                                     '.snapshots')))
        r = self.call(self.s, self.sim, 'DELETE', '/snapshot/' + snap_uuid)
        self.assertError(r, 404, 'ERR-API-8001', 'Failed to lookup')

    def test_delete_with_clone(self):
        snap_uuid = self.snapshot(self.s, self.sim, 'cinder/volume-1')
        self.assertEqual(200, self.clone(self.s, self.sim, snap_uuid,
                                         'cinder/c1').status_code)
        r = self.call(self.s, self.sim, 'DELETE', '/snapshot/' + snap_uuid)
        body = self.assertError(r, 500, 'ERR-API-3107',
                                'live VM is still present')
        self.assertEqual('Delete snapshot failed.', body['message'])
        self.assertIsNotNone(self.get_snap(self.s, self.sim, snap_uuid))

    def put_policy(self, snap_uuid, policy, props=('deletionPolicy',)):
        return self.call(self.s, self.sim, 'PUT', '/snapshot/' + snap_uuid,
                         json={'typeId': 'com.tintri.api.rest.v310.dto.'
                                         'Request',
                               'objectsWithNewValues': [{
                                   'typeId': 'com.tintri.api.rest.v310.dto.'
                                             'domain.Snapshot',
                                   'deletionPolicy': policy}],
                               'propertiesToBeUpdated': list(props)})

    def test_put_policy(self):
        snap_uuid = self.snapshot(self.s, self.sim, 'cinder/volume-1')
        self.clone(self.s, self.sim, snap_uuid, 'cinder/c1')
        r = self.put_policy(snap_uuid, 'DELETE_ON_ZERO_CLONE_REFERENCES')
        self.assertEqual(204, r.status_code)
        self.assertEqual(b'', r.content)
        snap = self.get_snap(self.s, self.sim, snap_uuid)
        self.assertEqual('DELETE_ON_ZERO_CLONE_REFERENCES',
                         snap['deletionPolicy'])
        self.assertError(self.put_policy(snap_uuid, 'NEVER'), 400,
                         'ERR-API-0020')
        self.assertError(self.put_policy(snap_uuid, 'DELETE_ON_EXPIRATION',
                                         props=('description',)),
                         400, 'ERR-API-0020')
        self.assertError(self.put_policy('nope', 'DELETE_ON_EXPIRATION'),
                         404, 'ERR-API-8001')

    def test_put_zero_refs_policy_without_clones_deletes(self):
        snap_uuid = self.snapshot(self.s, self.sim, 'cinder/volume-1')
        self.assertEqual(204, self.put_policy(
            snap_uuid, 'DELETE_ON_ZERO_CLONE_REFERENCES').status_code)
        self.assertIsNone(self.get_snap(self.s, self.sim, snap_uuid))

    def test_clone_shape(self):
        snap_uuid = self.snapshot(self.s, self.sim, 'cinder/volume-1')
        r = self.clone(self.s, self.sim, snap_uuid, ['cinder/c1',
                                                     '/tintri/cinder/c2'])
        self.assertEqual(200, r.status_code)
        self.assertEqual({}, r.json())
        for d in ('c1', 'c2'):
            path = os.path.join(self.sim.datastore, 'cinder', d,
                                'volume-1')
            self.assertEqual(b'data', self.read_at(path, 0, 4))
            self.assertEqual(1 << 20, os.stat(path).st_size)
        snap = self.get_snap(self.s, self.sim, snap_uuid)
        self.assertEqual(2, snap['cloneReferenceCount'])
        # a leading slash, as the in-tree driver sends it
        self.assertEqual(200, self.clone(self.s, self.sim, snap_uuid,
                                         '/cinder/c3').status_code)

    def test_clone_errors(self):
        snap_uuid = self.snapshot(self.s, self.sim, 'cinder/volume-1')
        self.assertError(self.clone(self.s, self.sim, 'nope', 'cinder/x'),
                         404, 'ERR-API-3214')
        self.assertError(self.clone(self.s, self.sim, snap_uuid,
                                    'cinder/volume-1'), 409, 'ERR-API-3205')
        self.assertError(self.clone(self.s, self.sim, snap_uuid, []),
                         400, 'ERR-API-3205')
        self.assertError(self.clone(self.s, self.sim, snap_uuid,
                                    '../x'), 400, 'ERR-API-3205')
        self.assertError(self.clone(self.s, self.sim, None, 'cinder/x'),
                         400, 'ERR-API-3205')
        self.assertNotIn('cinder/x/', self.sim.inventory()['files'])
        self.assertEqual(0, self.get_snap(self.s, self.sim, snap_uuid)[
            'cloneReferenceCount'])
