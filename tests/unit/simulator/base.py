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
"""Shared helpers for the simulator tests."""

import os
import time

import fixtures
import requests
import testtools

from cinder_tintri.simulator import VMstoreSimulator

API = '/api/v310'
LOGIN_TYPE = 'com.tintri.api.rest.vcommon.dto.rbac.RestApiCredentials'
ERROR_TYPE = 'com.tintri.api.rest.v310.dto.domain.beans.TintriError'
PAGE_TYPE = 'com.tintri.api.rest.v310.dto.Page'
TIMEOUT = (5, 30)


class SimTestCase(testtools.TestCase):
    """Starts simulators bound to 127.0.0.1 and cleans them up."""

    def setUp(self):
        super().setUp()
        # requests lets REQUESTS_CA_BUNDLE override Session.verify.
        self.useFixture(fixtures.EnvironmentVariable('REQUESTS_CA_BUNDLE'))
        self.useFixture(fixtures.EnvironmentVariable('CURL_CA_BUNDLE'))

    def start_sim(self, **kwargs):
        kwargs.setdefault('host', '127.0.0.1')
        sim = VMstoreSimulator(**kwargs)
        sim.start()
        self.addCleanup(sim.stop)
        return sim

    def session(self, sim, login=True):
        s = requests.Session()
        s.trust_env = False
        s.verify = sim.ca_path if sim.ca_path else True
        self.addCleanup(s.close)
        if login:
            self.login(sim, s)
        return s

    def login(self, sim, s, password=None):
        r = s.post(sim.url + API + '/session/login', timeout=TIMEOUT,
                   json={'username': sim.username,
                         'password': password or sim.password,
                         'typeId': LOGIN_TYPE})
        if r.status_code == 200:
            s.headers['Cookie'] = 'JSESSIONID=%s' % r.cookies['JSESSIONID']
        return r

    def call(self, s, sim, method, path, **kwargs):
        kwargs.setdefault('timeout', TIMEOUT)
        url = sim.url + (path if path.startswith('/api') else API + path)
        return s.request(method, url, **kwargs)

    def assertError(self, r, status, code, cause=None):
        self.assertEqual(status, r.status_code, r.text)
        body = r.json()
        self.assertEqual(ERROR_TYPE, body['typeId'])
        self.assertEqual(code, body['code'])
        self.assertIsInstance(body['message'], str)
        self.assertIsInstance(body['causeDetails'], str)
        self.assertIn('title', body)
        if cause:
            self.assertIn(cause, body['causeDetails'])
        return body

    def make_file(self, sim, rel, data=b'', size=None, offset=0):
        path = os.path.join(sim.datastore, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            if size is not None:
                f.truncate(size)
            f.seek(offset)
            f.write(data)
        return path

    def read_at(self, path, offset, n):
        with open(path, 'rb') as f:
            f.seek(offset)
            return f.read(n)

    def snapshot(self, s, sim, rel, description='snap', **extra):
        body = {'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.'
                          'cinder.CinderSnapshotSpec',
                'file': rel, 'description': description,
                'vmName': rel.rsplit('/', 1)[-1],
                'snapshotCreator': 'test'}
        body.update(extra)
        r = self.call(s, sim, 'POST', '/cinder/snapshot', json=body)
        self.assertEqual(200, r.status_code, r.text)
        return r.json()[0]

    def clone(self, s, sim, snap_uuid, dest):
        r = self.call(s, sim, 'POST', '/cinder/clone', json={
            'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.cinder.'
                      'CinderCloneSpec',
            'tintriSnapshotUuid': snap_uuid, 'destinationPaths': dest})
        return r

    def get_snap(self, s, sim, snap_uuid):
        r = self.call(s, sim, 'GET', '/snapshot/' + snap_uuid)
        if r.status_code == 404:
            return None
        self.assertEqual(200, r.status_code, r.text)
        return r.json()

    # -- inventory (vmstore6) -------------------------------------------

    def refresh(self, s, sim, rel, **extra):
        body = {'typeId': 'com.tintri.api.rest.v310.dto.domain.beans.'
                          'cinder.OpenStackHostRefreshSpec',
                'hostname': 'controller', 'region': 'RegionOne',
                'volumeFilePath': rel}
        body.update(extra)
        return self.call(s, sim, 'POST', '/cinder/host/refresh', json=body)

    def vdisks(self, s, sim, **query):
        r = self.call(s, sim, 'GET', '/virtualDisk', params=query)
        self.assertEqual(200, r.status_code, r.text)
        return r.json()['items']

    def wait_vdisk(self, s, sim, deadline=10.0, **query):
        """Poll virtualDisk until it finds one item; fail at the deadline."""
        end = time.monotonic() + deadline
        while True:
            items = self.vdisks(s, sim, **query)
            if items:
                self.assertEqual(1, len(items), items)
                return items[0]
            if time.monotonic() > end:
                self.fail('no virtual disk for %r within %ss'
                          % (query, deadline))
            time.sleep(0.05)

    def inventory_snapshot(self, s, sim, rel, description='snap', **extra):
        """Refresh ``rel``, wait for its disk, snapshot it with its VM."""
        self.assertEqual(200, self.refresh(s, sim, rel).status_code)
        vd = self.wait_vdisk(s, sim, path=rel)
        extra.setdefault('vmTintriUuid', vd['vmUuid']['uuid'])
        extra.setdefault('instanceId', vd['instanceUuid'])
        extra.setdefault('vmName', vd['vmName'])
        return self.snapshot(s, sim, rel, description=description, **extra)
