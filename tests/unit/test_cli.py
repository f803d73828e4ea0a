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
"""``cinder-tintri check`` catches each misconfiguration (a table)."""

import io
import os
import shutil
import socket
import tempfile
import uuid

import fixtures
import testtools

from cinder_tintri.cmd import cli
from cinder_tintri.simulator import VMstoreSimulator
from tests import hostile_proxy

BACKEND = 'tintri-1'


class CheckTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix='tintri-cli-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.password = 'pw-' + uuid.uuid4().hex
        self.sim = VMstoreSimulator(password=self.password)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.shares = os.path.join(self.tmp, 'shares')
        self._write(self.shares, '127.0.0.1:/tintri/cinder\n')

    def _write(self, path, text):
        with open(path, 'w') as f:
            f.write(text)

    def _conf(self, **changes):
        values = {
            'volume_driver': 'cinder_tintri.driver.TintriDriver',
            'nfs_shares_config': self.shares,
            'nfs_mount_point_base': os.path.join(self.tmp, 'mnt'),
            'tintri_server_hostname': self.sim.host,
            'tintri_server_port': self.sim.port,
            'tintri_server_username': self.sim.username,
            'tintri_server_password': self.password,
            'driver_ssl_cert_path': self.sim.ca_path,
            'tintri_connect_timeout': 2,
            'tintri_read_timeout': 5,
        }
        values.update(changes)
        lines = ['[DEFAULT]', 'enabled_backends = %s' % BACKEND, '',
                 '[%s]' % BACKEND]
        lines += ['%s = %s' % (k, v) for k, v in values.items()
                  if v is not None]
        path = os.path.join(self.tmp, 'cinder.conf')
        self._write(path, '\n'.join(lines) + '\n')
        return path

    def check(self, **changes):
        out = io.StringIO()
        rc = cli.main(['check', '--config-file', self._conf(**changes)],
                      out=out)
        text = out.getvalue()
        self.assertNotIn(self.password, text)
        verdicts = {}
        for line in text.splitlines():
            verdict, item = line[:4].strip(), line[6:24].strip()
            verdicts.setdefault(item, verdict)
            if verdict == 'FAIL':
                verdicts[item] = 'FAIL'
        return rc, verdicts, text

    def assertFails(self, item, needle, **changes):
        rc, verdicts, text = self.check(**changes)
        self.assertEqual(1, rc, text)
        self.assertEqual('FAIL', verdicts.get(item), text)
        self.assertIn(needle, text)

    def test_good_config_passes(self):
        rc, verdicts, text = self.check()
        self.assertEqual(0, rc, text)
        for item in ('options', 'shares', 'reachable', 'tls',
                     'api version', 'credentials', 'capacity'):
            self.assertEqual('OK', verdicts.get(item), text)
        # Not mounted here (cinder-volume mounts it): a warning only.
        self.assertEqual('WARN', verdicts.get('mounted'), text)

    def test_missing_password(self):
        self.assertFails('options', 'tintri_server_password',
                         tintri_server_password=None)

    def test_missing_hostname(self):
        self.assertFails('options', 'tintri_server_hostname',
                         tintri_server_hostname=None)

    def test_unsupported_api_version(self):
        self.assertFails('options', 'v200', tintri_api_version='v200')

    def test_ca_file_missing(self):
        self.assertFails('options', 'does not exist',
                         driver_ssl_cert_path='/nonexistent/ca.pem')

    def test_wrong_ca(self):
        with VMstoreSimulator() as other:
            self.assertFails('tls', 'certificate not trusted',
                             driver_ssl_cert_path=other.ca_path)

    def test_no_ca_default_verification_fails(self):
        self.assertFails('tls', 'certificate not trusted',
                         driver_ssl_cert_path=None)

    def test_unreachable(self):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        self.assertFails('reachable', str(port), tintri_server_port=port)

    def test_wrong_password(self):
        self.assertFails('credentials', 'user admin',
                         tintri_server_password='not-the-password')

    def test_plain_http_against_https(self):
        self.assertFails('api', 'VMstore API', tintri_use_https=False)

    def test_shares_file_missing(self):
        self.assertFails('shares', 'does not exist',
                         nfs_shares_config='/nonexistent/shares')

    def test_share_outside_export(self):
        self._write(self.shares, '127.0.0.1:/export/cinder\n')
        self.assertFails('shares', '/export/cinder')

    def test_bad_cache_thresholds(self):
        self.assertFails('options', 'free_space',
                         tintri_image_cache_free_space_start=50,
                         tintri_image_cache_free_space_stop=10)

    def test_invalid_value_in_file(self):
        rc, verdicts, text = self.check(tintri_server_port='not-a-port')
        self.assertEqual(1, rc, text)
        self.assertEqual('FAIL', verdicts.get('config'), text)

    def test_backend_must_be_named_when_ambiguous(self):
        conf = self._conf()
        with open(conf) as f:
            text = f.read().replace('enabled_backends = %s' % BACKEND,
                                    'enabled_backends = a,b')
        self._write(conf, text)
        err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        exc = self.assertRaises(SystemExit, cli.main,
                                ['check', '--config-file', conf])
        self.assertEqual(2, exc.code)
        self.assertIn('--backend', err.getvalue())


class HostileArrayCheckTest(CheckTestCase):
    """``check`` against a proxy that is hostile (issue 18 items 1, 2)."""

    def setUp(self):
        super().setUp()
        self.proxy = self.useFixture(
            hostile_proxy.ProxyFixture(self.sim)).proxy

    def check(self, **changes):
        changes.setdefault('tintri_server_port', self.proxy.port)
        rc, verdicts, text = super().check(**changes)
        for sid in self.proxy.session_ids:
            self.assertNotIn(sid, text)
            self.assertNotIn(sid.lower(), text)
        return rc, verdicts, text

    def test_through_a_clean_proxy_passes(self):
        rc, verdicts, text = self.check()
        self.assertEqual(0, rc, text)
        self.assertEqual('OK', verdicts.get('api version'), text)

    def test_not_a_vmstore_fails(self):
        cases = [
            ('<html><title>It works!</title></html>', 'text/html',
             'an HTML page (text/html)'),
            ('[{"a": 1}]', 'application/json', 'a JSON list'),
            ('{"name": "some service"}', 'application/json',
             'without the RestApi fields'),
            ('{"productName": "Tintri VMst', 'application/json',
             'invalid JSON'),
        ]
        for body, ctype, needle in cases:
            self.proxy.clear()
            self.proxy.replace('*', '.*', body, ctype)
            rc, verdicts, text = self.check()
            self.assertEqual(1, rc, text)
            self.assertEqual('FAIL', verdicts.get('api'), text)
            self.assertIn('not a VMstore at 127.0.0.1:%d: /api/info '
                          'answered' % self.proxy.port, text)
            self.assertIn(needle, text)
            self.assertNotIn('api version', verdicts, text)
            self.assertNotIn('credentials', verdicts, text)
        # Not one login: the password never went to it.
        self.assertEqual(0, self.proxy.logins)

    def test_strict_array_without_api_info_passes(self):
        self.proxy.replace('GET', r'^/api/info$', hostile_proxy.
                           tintri_error_body(404, 'ERR-API-8001',
                                             'Resource not found.'),
                           'application/json', status=404)
        rc, verdicts, text = self.check()
        self.assertEqual(0, rc, text)
        self.assertEqual('OK', verdicts.get('api version'), text)
        self.assertEqual('OK', verdicts.get('credentials'), text)

    def test_echoed_requests_never_printed(self):
        for style in ('tintri', 'text', 'html'):
            self.proxy.clear()
            self.proxy.echo('POST', r'/session/login$', status=403,
                            style=style)
            rc, verdicts, text = self.check()
            self.assertEqual('FAIL', verdicts.get('credentials'), text)
            self.assertIn('rejected the credentials', text)
            if style == 'tintri':
                # The echo is in full (text pages are cut to 200 chars).
                self.assertIn('"password": "***"', text)
            self.proxy.clear()
            self.proxy.echo('GET', r'/statsRealtime$', status=500,
                            style=style)
            rc, verdicts, text = self.check()
            self.assertEqual('WARN', verdicts.get('capacity'), text)
            if style == 'tintri':
                self.assertIn('Cookie: ***', text)
        self.assertTrue(self.proxy.session_ids)
