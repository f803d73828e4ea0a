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
"""Profiles vmstore4 | vmstore6: switches, allow-list, fields, errors.

Everything over real HTTPS with ``requests``.  Inventory, the snapshot
limit and the delete modes have their own modules.
"""

import errno
import json
import os
import select
import subprocess
import sys
from urllib import parse

from cinder_tintri.simulator import cmd
from cinder_tintri.simulator import official
from cinder_tintri.simulator import server
from cinder_tintri.simulator import VMstoreSimulator
from tests.unit.simulator import base

REQUEST_TYPE = 'com.tintri.api.rest.v310.dto.Request'
SNAP_TYPE = 'com.tintri.api.rest.v310.dto.domain.Snapshot'
DEADLINE = 60


class SettingsTest(base.SimTestCase):

    def test_profile_defaults(self):
        v4 = VMstoreSimulator()
        self.assertEqual(
            {'profile': 'vmstore4', 'strict_endpoints': False,
             'strict_fields': False, 'require_inventory': False,
             'inventory_lag': 0.0, 'snapshot_limit': 0,
             'delete_with_clones': 'refuse_put'}, v4.settings())
        v6 = VMstoreSimulator(profile='vmstore6')
        self.assertEqual(
            {'profile': 'vmstore6', 'strict_endpoints': True,
             'strict_fields': True, 'require_inventory': True,
             'inventory_lag': 0.2, 'snapshot_limit': 128,
             'delete_with_clones': 'refuse'}, v6.settings())
        self.assertEqual('vmstore6', v6.profile)
        self.assertTrue(v6.strict_endpoints)
        self.assertTrue(v6.strict_fields)
        self.assertTrue(v6.require_inventory)
        self.assertEqual(0.2, v6.inventory_lag)
        self.assertEqual(128, v6.snapshot_limit)
        self.assertEqual('refuse', v6.delete_with_clones)

    def test_switches_override_the_profile(self):
        sim = VMstoreSimulator(profile='vmstore6', strict_fields=False,
                               snapshot_limit=0, inventory_lag=1,
                               delete_with_clones='accept')
        self.assertFalse(sim.strict_fields)
        self.assertTrue(sim.strict_endpoints)
        self.assertEqual(0, sim.snapshot_limit)
        self.assertEqual(1.0, sim.inventory_lag)
        self.assertEqual('accept', sim.delete_with_clones)
        # refresh_lag is the old name of inventory_lag
        self.assertEqual(0.5, VMstoreSimulator(refresh_lag=0.5).inventory_lag)

    def test_attributes_are_read_only(self):
        sim = VMstoreSimulator(profile='vmstore6')
        for name in ('profile', 'strict_endpoints', 'strict_fields',
                     'require_inventory', 'inventory_lag', 'snapshot_limit',
                     'delete_with_clones'):
            self.assertRaises(AttributeError, setattr, sim, name, None)

    def test_bad_values(self):
        for kwargs, word in (
                ({'profile': 'vmstore5'}, 'vmstore5'),
                ({'profile': None}, 'profile'),
                ({'delete_with_clones': 'maybe'}, 'delete_with_clones'),
                ({'snapshot_limit': -1}, 'snapshot_limit'),
                ({'snapshot_limit': 1.5}, 'snapshot_limit'),
                ({'snapshot_limit': True}, 'snapshot_limit'),
                ({'inventory_lag': -1}, 'inventory_lag'),
                ({'inventory_lag': 'soon'}, 'inventory_lag'),
                ({'strict_fields': 'yes'}, 'strict_fields'),
                ({'refresh_lag': 1, 'inventory_lag': 2}, 'refresh_lag'),
                ({'profile': 'vmstore6', 'vd_requires_refresh': False},
                 'vd_requires_refresh')):
            e = self.assertRaises(ValueError, VMstoreSimulator, **kwargs)
            self.assertIn(word, str(e))

    def test_settings_over_control_http(self):
        sim = self.start_sim(profile='vmstore6', snapshot_limit=7)
        s = self.session(sim, login=False)
        r = s.get(sim.url + '/sim/settings', timeout=base.TIMEOUT)
        self.assertEqual(200, r.status_code)
        self.assertEqual(sim.settings(), r.json())
        self.assertEqual(7, r.json()['snapshot_limit'])


class AllowListTest(base.SimTestCase):
    """Only the official index (and the extras) in vmstore6.

    vmstore4 keeps serving the rest.
    """

    def setUp(self):
        super().setUp()
        self.v4 = self.start_sim()
        self.v6 = self.start_sim(profile='vmstore6',
                                 delete_with_clones='refuse')
        self.s4 = self.session(self.v4)
        self.s6 = self.session(self.v6)

    def _snap(self, s, sim):
        self.make_file(sim, 'cinder/volume-1', b'x')
        if sim.require_inventory:
            return self.inventory_snapshot(s, sim, 'cinder/volume-1')
        return self.snapshot(s, sim, 'cinder/volume-1')

    def _put(self, s, sim, snap_uuid):
        return self.call(s, sim, 'PUT', '/snapshot/' + snap_uuid, json={
            'typeId': REQUEST_TYPE,
            'objectsWithNewValues': [{
                'typeId': SNAP_TYPE,
                'deletionPolicy': 'DELETE_ON_ZERO_CLONE_REFERENCES'}],
            'propertiesToBeUpdated': ['deletionPolicy']})

    def test_off_index_put_snapshot(self):
        # vmstore4 (refuse_put): the undocumented PUT works
        u4 = self._snap(self.s4, self.v4)
        self.clone(self.s4, self.v4, u4, 'cinder/c')
        self.assertEqual(204, self._put(self.s4, self.v4, u4).status_code)
        self.assertEqual('DELETE_ON_ZERO_CLONE_REFERENCES',
                         self.get_snap(self.s4, self.v4, u4)[
                             'deletionPolicy'])
        # vmstore6: 404 TintriError, nothing changed
        u6 = self._snap(self.s6, self.v6)
        body = self.assertError(self._put(self.s6, self.v6, u6), 404,
                                'ERR-API-8001', 'PUT')
        self.assertEqual(set(body) - {'typeId'},
                         set(body) & official.TINTRI_ERROR - {'typeId'})
        self.assertEqual('DELETE_ON_EXPIRATION',
                         self.get_snap(self.s6, self.v6, u6)[
                             'deletionPolicy'])

    def test_known_path_other_method(self):
        for method, path in (('DELETE', '/appliance'),
                             ('POST', '/virtualDisk'),
                             ('PUT', '/datastore/default'),
                             ('POST', '/snapshot'),    # documented, not
                             ('PATCH', '/vm')):        # implemented
            r4 = self.call(self.s4, self.v4, method, path, json={})
            self.assertError(r4, 405, 'ERR-API-0005')
            r6 = self.call(self.s6, self.v6, method, path, json={})
            self.assertError(r6, 404, 'ERR-API-8001', path)

    def test_unknown_path_both(self):
        for sim, s in ((self.v4, self.s4), (self.v6, self.s6)):
            self.assertError(self.call(s, sim, 'GET', '/volume'), 404,
                             'ERR-API-8001')
            self.assertError(self.call(s, sim, 'GET', '/api/v1/info'), 404,
                             'ERR-API-8001')

    def test_extras_and_index_served_in_vmstore6(self):
        sim, s = self.v6, self.s6
        self.assertEqual(200, self.call(s, sim, 'GET', '/api/info')
                         .status_code)
        for path in ('/appliance', '/appliance/default',
                     '/appliance/default/info', '/appliance/default/ips',
                     '/datastore', '/datastore/default',
                     '/datastore/default/statsRealtime',
                     '/datastore/default/statsSummary', '/vm',
                     '/virtualDisk', '/snapshot', '/session/current',
                     '/session/active'):
            r = self.call(s, sim, 'GET', path)
            self.assertEqual(200, r.status_code, path)
        self.make_file(sim, 'cinder/volume-2', b'y')
        self.assertEqual(200, self.refresh(s, sim, 'cinder/volume-2')
                         .status_code)
        u = self.inventory_snapshot(s, sim, 'cinder/volume-2')
        self.assertEqual(200, self.clone(s, sim, u, 'cinder/c2').status_code)
        self.assertEqual(204, self.call(s, sim, 'GET', '/session/logout')
                         .status_code)

    def test_put_served_in_vmstore6_with_refuse_put(self):
        sim = self.start_sim(profile='vmstore6',
                             delete_with_clones='refuse_put')
        s = self.session(sim)
        u = self._snap(s, sim)
        self.assertEqual(204, self._put(s, sim, u).status_code)
        # ... but no other off-index method
        self.assertError(self.call(s, sim, 'POST', '/snapshot/' + u,
                                   json={}), 404, 'ERR-API-8001')

    def test_relaxed_endpoints_in_vmstore6(self):
        sim = self.start_sim(profile='vmstore6', strict_endpoints=False)
        s = self.session(sim)
        self.assertError(self.call(s, sim, 'DELETE', '/appliance'), 405,
                         'ERR-API-0005')


class FieldsTest(base.SimTestCase):
    """Only documented DTO fields in vmstore6 responses."""

    def setUp(self):
        super().setUp()
        self.v4 = self.start_sim()
        self.v6 = self.start_sim(profile='vmstore6')
        self.s4 = self.session(self.v4)
        self.s6 = self.session(self.v6)
        for sim in (self.v4, self.v6):
            self.make_file(sim, 'cinder/volume-1', b'x', size=4096)

    def assertFields(self, allowed, obj, what):
        extra = sorted(set(obj) - set(allowed))
        self.assertEqual([], extra, '%s has undocumented fields' % what)

    def test_snapshot_has_no_file_in_vmstore6(self):
        u6 = self.inventory_snapshot(self.s6, self.v6, 'cinder/volume-1')
        one = self.get_snap(self.s6, self.v6, u6)
        listed = self.call(self.s6, self.v6, 'GET', '/snapshot').json()
        for snap in (one, listed['items'][0]):
            self.assertNotIn('file', snap)
            self.assertFields(official.SNAPSHOT, snap, 'Snapshot')
            self.assertEqual({'uuid': u6}, snap['uuid'])
        # the control surface keeps it for tests
        self.assertEqual('cinder/volume-1',
                         self.v6.inventory()['snapshots'][0]['file'])
        u4 = self.snapshot(self.s4, self.v4, 'cinder/volume-1')
        self.assertEqual('cinder/volume-1',
                         self.get_snap(self.s4, self.v4, u4)['file'])

    def test_documented_dtos(self):
        sim, s = self.v6, self.s6
        self.refresh(s, sim, 'cinder/volume-1')
        vd = self.wait_vdisk(s, sim, path='cinder/volume-1')
        self.assertFields(official.VIRTUAL_DISK, vd, 'VirtualDisk')
        for path in ('/virtualDisk', '/snapshot', '/vm',
                     '/datastore/default/statsRealtime'):
            page = self.call(s, sim, 'GET', path).json()
            self.assertFields(official.PAGE, page, 'Page of ' + path)
            self.assertEqual('com.tintri.api.rest.v310.dto.Page',
                             page['typeId'])
        stat = self.call(s, sim, 'GET',
                         '/datastore/default/statsSummary').json()
        self.assertFields(official.DATASTORE_STAT, stat, 'DatastoreStat')
        ds = self.call(s, sim, 'GET', '/datastore/default').json()
        self.assertFields(official.DATASTORE_STAT, ds['stat'],
                          'Datastore.stat')
        rt = self.call(s, sim, 'GET',
                       '/datastore/default/statsRealtime').json()
        self.assertFields(official.DATASTORE_STAT,
                          rt['items'][0]['sortedStats'][0], 'sortedStats')
        err = self.call(s, sim, 'GET', '/snapshot/nope').json()
        self.assertFields(official.TINTRI_ERROR, err, 'TintriError')
        info = self.call(s, sim, 'GET', '/appliance/default/fileDirInfo/'
                         'cinder/volume-1').json()
        self.assertEqual(set(official.FILE_SYSTEM_INFO), set(info))

    def test_unknown_query_parameters(self):
        for path, bad in (('/snapshot', 'file'),
                          ('/snapshot', 'vmName'),
                          ('/virtualDisk', 'volumeId'),
                          ('/vm', 'path'),
                          ('/datastore/default/statsRealtime', 'name')):
            r = self.call(self.s6, self.v6, 'GET', path,
                          params={bad: 'x', 'limit': 5})
            self.assertError(r, 400, 'ERR-API-4003', bad)
            r = self.call(self.s4, self.v4, 'GET', path, params={bad: 'x'})
            self.assertEqual(200, r.status_code, (path, r.text))
        # documented filters pass, including the in-tree driver's
        for path, params in (
                ('/snapshot', {'contain': 'x', 'vmUuid': 'y', 'limit': 3,
                               'sortedBy': 'createTime',
                               'sortOrder': 'DESC', 'deleted': 'BOTH',
                               'target': 'SNAPSHOT', 'uuid': 'z'}),
                ('/virtualDisk', {'uuid': 'x', 'path': 'cinder/volume-1',
                                  'vmUuid': 'y', 'offset': 0}),
                ('/vm', {'name': 'x', 'live': 'TRUE', 'uuid': 'y'}),
                ('/datastore/default/statsRealtime', {'limit': 1})):
            r = self.call(self.s6, self.v6, 'GET', path, params=params)
            self.assertEqual(200, r.status_code, (path, r.text))
        # endpoints without a FilterSpec ignore parameters
        self.assertEqual(200, self.call(self.s6, self.v6, 'GET',
                                        '/appliance/default/info',
                                        params={'x': 1}).status_code)

    def test_unknown_body_fields(self):
        sim, s = self.v6, self.s6
        self.refresh(s, sim, 'cinder/volume-1')
        vd = self.wait_vdisk(s, sim, path='cinder/volume-1')
        r = self.call(s, sim, 'POST', '/cinder/snapshot', json={
            'file': 'cinder/volume-1', 'vmTintriUuid': vd['vmUuid']['uuid'],
            'retentionMinutes': 5})
        self.assertError(r, 400, 'ERR-API-0020', 'retentionMinutes')
        self.assertEqual([], sim.inventory()['snapshots'])
        u = self.inventory_snapshot(s, sim, 'cinder/volume-1')
        r = self.call(s, sim, 'POST', '/cinder/clone', json={
            'tintriSnapshotUuid': u, 'destinationPaths': ['cinder/c'],
            'count': 2})
        self.assertError(r, 400, 'ERR-API-0020', 'count')
        self.assertNotIn('cinder/c/', sim.inventory()['files'])
        r = self.refresh(s, sim, 'cinder/volume-1', instanceId='x')
        self.assertError(r, 400, 'ERR-API-0020', 'instanceId')
        anon = self.session(sim, login=False)
        r = self.call(anon, sim, 'POST', '/session/login', json={
            'typeId': base.LOGIN_TYPE, 'username': sim.username,
            'password': sim.password, 'domain': 'x'})
        self.assertError(r, 400, 'ERR-API-0020', 'domain')
        self.assertNotIn('JSESSIONID', r.cookies)
        # every documented field is accepted
        r = self.call(anon, sim, 'POST', '/session/login', json={
            'typeId': base.LOGIN_TYPE, 'username': sim.username,
            'password': sim.password, 'fullApiVersion': 'v310.191',
            'roles': []})
        self.assertEqual(200, r.status_code, r.text)
        self.assertEqual(200, self.refresh(
            s, sim, 'cinder/volume-1', volumeId='1').status_code)
        # vmstore4 ignores unknown fields
        r = self.call(self.s4, self.v4, 'POST', '/cinder/snapshot', json={
            'file': 'cinder/volume-1', 'retentionMinutes': 5})
        self.assertEqual(200, r.status_code, r.text)


class ErrorCodesTest(base.SimTestCase):
    """vmstore6 answers with the codes the index documents per endpoint."""

    def setUp(self):
        super().setUp()
        self.v6 = self.start_sim(profile='vmstore6', inventory_lag=0)
        self.s6 = self.session(self.v6)
        self.make_file(self.v6, 'cinder/volume-1', b'x')
        self.u6 = self.inventory_snapshot(self.s6, self.v6,
                                          'cinder/volume-1')

    def test_missing_entities(self):
        sim, s = self.v6, self.s6
        for method, path, status, code in (
                ('GET', '/appliance/bogus', 404, 'ERR-API-8001'),
                ('GET', '/appliance/bogus/info', 404, 'ERR-API-0102'),
                ('GET', '/appliance/bogus/ips', 404, 'ERR-API-0102'),
                ('GET', '/appliance/bogus/fileDirInfo/cinder', 404,
                 'ERR-API-8001'),
                ('GET', '/datastore/bogus', 501, 'ERR-API-2001'),
                # documents no code: the generic 8001
                ('GET', '/datastore/bogus/statsRealtime', 404,
                 'ERR-API-8001'),
                ('GET', '/datastore/bogus/statsSummary', 404,
                 'ERR-API-0102'),
                ('GET', '/snapshot/bogus', 404, 'ERR-API-8001'),
                ('DELETE', '/snapshot/bogus', 404, 'ERR-API-8001'),
                ('GET', '/vm/bogus', 404, 'ERR-API-8001')):
            self.assertError(self.call(s, sim, method, path), status, code)
        # vmstore4 keeps its old answers
        v4 = self.start_sim()
        s4 = self.session(v4)
        self.assertError(self.call(s4, v4, 'GET', '/appliance/bogus/info'),
                         404, 'ERR-API-8001')
        self.assertError(self.call(s4, v4, 'GET',
                                   '/datastore/bogus/statsSummary'),
                         501, 'ERR-API-2001')

    def test_clone_codes(self):
        sim, s = self.v6, self.s6
        self.assertError(self.clone(s, sim, 'nope', 'cinder/x'), 404,
                         'ERR-API-3214')
        # an existing destination: the documented 400, not 409
        self.assertError(self.clone(s, sim, self.u6, 'cinder/volume-1'),
                         400, 'ERR-API-3205', 'exists')
        self.assertError(self.clone(s, sim, self.u6, []), 400,
                         'ERR-API-3205')

    def test_every_error_is_documented(self):
        """Every error of a battery of bad requests is documented.

        Each answer's (code, status) is one the index documents for that
        endpoint, or a generic one.
        """
        sim, s = self.v6, self.s6
        self.clone(s, sim, self.u6, 'cinder/c1')
        requests_ = [
            ('GET', '/appliance/x', None), ('GET', '/appliance/x/info', None),
            ('GET', '/appliance/x/ips', None),
            ('GET', '/appliance/default/fileDirInfo/nope', None),
            ('GET', '/appliance/default/fileDirInfo/' + 'n' * 300, None),
            ('GET', '/datastore/x', None),
            ('GET', '/datastore/x/statsRealtime', None),
            ('GET', '/datastore/x/statsSummary', None),
            ('GET', '/snapshot?limit=0', None),
            ('GET', '/snapshot?bogus=1', None),
            ('GET', '/snapshot/x', None), ('DELETE', '/snapshot/x', None),
            ('DELETE', '/snapshot/' + self.u6, None),   # has a clone
            ('PUT', '/snapshot/' + self.u6, {}),
            ('GET', '/vm/x', None), ('GET', '/vm?live=MAYBE', None),
            ('GET', '/virtualDisk?limit=-1', None),
            ('POST', '/cinder/snapshot', {'file': 'cinder/volume-1'}),
            ('POST', '/cinder/snapshot', {'file': '../x'}),
            ('POST', '/cinder/snapshot', {'bogus': 1}),
            ('POST', '/cinder/clone', {'tintriSnapshotUuid': 'x',
                                       'destinationPaths': ['cinder/z']}),
            ('POST', '/cinder/clone', {'tintriSnapshotUuid': self.u6,
                                       'destinationPaths': []}),
            ('POST', '/cinder/host/refresh', {'hostname': 'h'}),
            ('POST', '/session/login', {'username': 'admin'}),
            ('POST', '/session/login', {'typeId': base.LOGIN_TYPE,
                                        'username': 'admin',
                                        'password': 'wrong'}),
            ('GET', '/nothing', None),
        ]
        seen = 0
        for method, path, body in requests_:
            r = self.call(s, sim, method, path, json=body)
            self.assertGreaterEqual(r.status_code, 400, (method, path))
            err = self.assertError(r, r.status_code, r.json()['code'])
            code = err['code'][len('ERR-API-'):]
            found = server.match_route(
                parse.urlsplit(base.API + path).path)
            documented = ()
            if found:
                documented = official.errors(
                    method, server.official_template(found[0]))
            allowed = set(documented) | set(official.GENERIC_ERRORS)
            self.assertIn((code, r.status_code), allowed,
                          '%s %s -> %s' % (method, path, r.text))
            seen += 1
        self.assertEqual(len(requests_), seen)
        # the session is still good: nothing above broke it
        self.assertEqual(200, self.call(s, sim, 'GET', '/appliance')
                         .status_code)


class FileDirInfoTest(base.SimTestCase):
    """GET appliance/{uuid}/fileDirInfo/{path}, both profiles."""

    def _check(self, **kwargs):
        sim = self.start_sim(**kwargs)
        s = self.session(sim)
        self.make_file(sim, 'cinder/volume-1', b'abc', size=5 << 20)
        get = lambda path: self.call(  # noqa
            s, sim, 'GET', '/appliance/default/fileDirInfo/' + path)
        for form in ('cinder/volume-1', 'cinder%2Fvolume-1',
                     '%2Fcinder%2Fvolume-1', 'tintri/cinder/volume-1'):
            r = get(form)
            if form.startswith('tintri/'):
                # only a leading /tintri is the export root
                self.assertError(r, 404, 'ERR-API-8001')
                continue
            self.assertEqual(200, r.status_code, (form, r.text))
            self.assertEqual({
                'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.'
                          'filesystem.FileSystemInfo',
                'isDir': False, 'path': 'cinder/volume-1',
                'sizeInBytes': 5 << 20}, r.json())
        r = get('%2Ftintri%2Fcinder%2Fvolume-1')
        self.assertEqual('cinder/volume-1', r.json()['path'])
        d = get('cinder').json()
        self.assertTrue(d['isDir'])
        self.assertEqual('cinder', d['path'])
        r = self.call(s, sim, 'GET', '/appliance/%s/fileDirInfo/cinder'
                      % sim._state.appliance_uuid)
        self.assertEqual(200, r.status_code)
        for missing in ('cinder/nope', 'cinder/volume-1/x', '..%2Fetc',
                        'cinder/..%2F..%2Fetc'):
            self.assertError(get(missing), 404, 'ERR-API-8001')
        # an unreadable path: ERR-API-9700
        os.symlink('loop', os.path.join(sim.datastore, 'loop'))
        body = self.assertError(get('loop/x'), 500, 'ERR-API-9700')
        self.assertIn(os.strerror(errno.ELOOP), body['causeDetails'])
        self.assertEqual(0, sim.request_counts().get(
            'GET /api/v310/appliance/{id}', 0))
        self.assertGreater(sim.request_counts()[
            'GET /api/v310/appliance/{id}/fileDirInfo/{path}'], 5)

    def test_vmstore4(self):
        self._check()

    def test_vmstore6(self):
        self._check(profile='vmstore6')


class PasswordTest(base.SimTestCase):

    def _check(self, profile):
        sim = self.start_sim(profile=profile)
        old = self.session(sim)
        self.assertEqual(0, sim.failed_logins)
        sim.set_password('n3w-secret')
        self.assertEqual('n3w-secret', sim.password)
        # the open session stays valid
        self.assertEqual(200, self.call(old, sim, 'GET', '/appliance')
                         .status_code)
        s = self.session(sim, login=False)
        self.assertError(self.login(sim, s, password='tintri'), 403,
                         'ERR-API-0124')
        self.assertError(self.call(s, sim, 'POST', '/session/login',
                                   json={'username': 'admin'}),
                         400, 'ERR-API-0020')
        self.assertEqual(2, sim.failed_logins)
        self.assertEqual(2, sim.inventory()['failed_logins'])
        self.assertEqual(200, self.login(sim, s).status_code)
        self.assertEqual(2, sim.failed_logins)
        self.assertEqual(2, sim.inventory()['logins'])
        # over the control surface too
        anon = self.session(sim, login=False)
        r = anon.post(sim.url + '/sim/password', json={'password': 'p2'},
                      timeout=base.TIMEOUT)
        self.assertEqual(204, r.status_code)
        self.assertEqual('p2', sim.password)
        self.assertEqual(200, self.login(sim, anon).status_code)
        r = anon.post(sim.url + '/sim/password', json={},
                      timeout=base.TIMEOUT)
        self.assertEqual(400, r.status_code)
        self.assertRaises(ValueError, sim.set_password, '')
        self.assertEqual('p2', sim.password)

    def test_vmstore4(self):
        self._check('vmstore4')

    def test_vmstore6(self):
        self._check('vmstore6')


class CommandLineTest(base.SimTestCase):

    def test_defaults_leave_the_profile_in_charge(self):
        args = cmd.build_parser().parse_args([])
        self.assertEqual({'profile': 'vmstore4', 'strict_endpoints': None,
                          'strict_fields': None, 'require_inventory': None,
                          'inventory_lag': None, 'snapshot_limit': None,
                          'delete_with_clones': None},
                         cmd.profile_kwargs(args))

    def test_parse_profile_options(self):
        args = cmd.build_parser().parse_args([
            '--profile', 'vmstore6', '--delete-with-clones', 'accept',
            '--snapshot-limit', '5', '--no-strict-fields',
            '--inventory-lag', '0.5', '--require-inventory',
            '--no-strict-endpoints'])
        sim = VMstoreSimulator(**cmd.profile_kwargs(args))
        self.assertEqual(
            {'profile': 'vmstore6', 'strict_endpoints': False,
             'strict_fields': False, 'require_inventory': True,
             'inventory_lag': 0.5, 'snapshot_limit': 5,
             'delete_with_clones': 'accept'}, sim.settings())
        args = cmd.build_parser().parse_args(
            ['--delete-with-clones', 'refuse', '--strict-endpoints'])
        sim = VMstoreSimulator(**cmd.profile_kwargs(args))
        self.assertEqual('vmstore4', sim.profile)
        self.assertEqual('refuse', sim.delete_with_clones)
        self.assertTrue(sim.strict_endpoints)
        self.assertFalse(sim.strict_fields)

    def test_bad_choices_exit_2(self):
        for argv in (['--profile', 'vmstore5'],
                     ['--delete-with-clones', 'never'],
                     ['--snapshot-limit', 'many']):
            out = subprocess.run(
                [sys.executable, '-m', 'cinder_tintri.simulator.cmd']
                + argv, capture_output=True, text=True, timeout=DEADLINE)
            self.assertEqual(2, out.returncode, argv)
            self.assertIn('invalid choice' if 'many' not in argv
                          else 'invalid int', out.stderr)
            self.assertEqual('', out.stdout)
        out = subprocess.run(
            [sys.executable, '-m', 'cinder_tintri.simulator.cmd',
             '--host', '127.0.0.1', '--snapshot-limit', '-1'],
            capture_output=True, text=True, timeout=DEADLINE)
        self.assertEqual(2, out.returncode)
        self.assertIn('snapshot_limit', out.stderr)
        self.assertEqual('', out.stdout)

    def test_process_serves_the_profile(self):
        env = dict(os.environ)
        env.pop('REQUESTS_CA_BUNDLE', None)
        proc = subprocess.Popen(
            [sys.executable, '-m', 'cinder_tintri.simulator.cmd',
             '--host', '127.0.0.1', '--profile', 'vmstore6',
             '--snapshot-limit', '3', '--delete-with-clones', 'refuse_put'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)

        def cleanup():
            if proc.poll() is None:
                proc.kill()
            proc.wait(DEADLINE)
            proc.stdout.close()
            proc.stderr.close()

        self.addCleanup(cleanup)
        ready, _w, _x = select.select([proc.stdout], [], [], DEADLINE)
        self.assertTrue(ready, 'simulator did not print its JSON line')
        info = json.loads(proc.stdout.readline())
        s = base.requests.Session()
        s.trust_env = False
        s.verify = info['ca_path']
        self.addCleanup(s.close)
        settings = s.get(info['url'] + '/sim/settings',
                         timeout=base.TIMEOUT).json()
        self.assertEqual('vmstore6', settings['profile'])
        self.assertEqual(3, settings['snapshot_limit'])
        self.assertEqual('refuse_put', settings['delete_with_clones'])
        r = s.post(info['url'] + base.API + '/session/login',
                   timeout=base.TIMEOUT,
                   json={'username': 'admin', 'password': 'tintri',
                         'typeId': base.LOGIN_TYPE})
        s.headers['Cookie'] = 'JSESSIONID=' + r.cookies['JSESSIONID']
        r = s.delete(info['url'] + base.API + '/appliance',
                     timeout=base.TIMEOUT)
        self.assertEqual(404, r.status_code)
        self.assertEqual('ERR-API-8001', r.json()['code'])
        proc.terminate()
        self.assertEqual(0, proc.wait(DEADLINE))
