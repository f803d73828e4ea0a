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
"""Security: TLS verification, secrets in logs, clear errors on bad input.

* TLS is verified by default: a VMstore whose certificate is not signed
  by the configured CA (no CA configured, another CA, a name the
  certificate does not cover) is refused with a clear error.
* Nothing in the DEBUG log of a whole representative run - set-up, every
  volume and snapshot operation, session expiry and re-login, retries
  and lost responses, a rejected login, errors, shutdown - contains the
  password (a distinctive ``pw-<hex>``) or any session id the simulator
  issued.
* The same holds when the array (or a proxy in front of it) echoes the
  request - request line, every header including the session cookie,
  the raw body including the login password - into its error pages:
  a whole driver run through tests/hostile_proxy.py.
* Bad configuration and bad API input fail with an error that says what
  is wrong.
"""

from http import server as http_server
import logging
import os
import ssl
import threading
from unittest import mock

from cinder import exception
from cinder.objects import fields
from cinder.tests.unit import utils as test_utils
from oslo_utils import units

from cinder_tintri import client as tclient
from cinder_tintri import driver as tdriver
from cinder_tintri.simulator import state as sim_state
from cinder_tintri.simulator import tls
from tests import hostile_proxy
from tests import leak_check
from tests.unit import driver_base

MiB = units.Mi


class _Capture(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter(
            '%(levelname)s %(name)s %(message)s'))
        self.lines = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception as e:  # a broken log call is a finding too
            self.lines.append('UNFORMATTABLE %s: %s' % (record.msg, e))


class SecurityTestCase(driver_base.DriverTestCase):

    def setUp(self):
        self.password = 'pw-' + os.urandom(16).hex()
        self.SIM_KWARGS = {'password': self.password}
        # Record every session id the simulator hands out.
        self.tokens = []
        real = sim_state.secrets.token_hex

        def token_hex(n):
            value = real(n)
            self.tokens.append(value.upper())
            return value
        patcher = mock.patch.object(sim_state.secrets, 'token_hex',
                                    side_effect=token_hex)
        patcher.start()
        self.addCleanup(patcher.stop)
        super().setUp()
        self.addCleanup(self.drv._image_cache_stop)
        # Capture everything from here on (after the test base set up its
        # logging fixtures) and start a new driver: its set-up and login
        # are in the capture.
        self.capture = _Capture()
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(self.capture)
        root.setLevel(logging.DEBUG)
        self.addCleanup(root.setLevel, old_level)
        self.addCleanup(root.removeHandler, self.capture)
        self.drv = self.make_driver(self.flags)
        self.addCleanup(self.drv._image_cache_stop)

    def setup_error(self, exc_class, **changes):
        drv = self.make_driver(dict(self.flags, **changes), setup=False)
        self.addCleanup(lambda: drv._client and drv._client.close())
        return str(self.assertRaises(exc_class, drv.do_setup, self.ctxt))


class TlsTest(SecurityTestCase):

    def test_verification_on_by_default(self):
        self.assertTrue(self.drv.configuration.tintri_ssl_cert_verify)
        self.assertEqual(self.sim.ca_path, self.drv._client.verify)
        client = tclient.TClient(self.sim.host, 'u', 'p')
        self.assertIs(True, client.verify)

    def test_no_ca_configured_refused(self):
        msg = self.setup_error(exception.VolumeBackendAPIException,
                               driver_ssl_cert_path='',
                               tintri_api_retries=0)
        self.assertIn('certificate verify failed', msg)

    def test_wrong_ca_refused(self):
        other = tls.generate(os.path.join(self.tmp, 'other-ca'),
                             hosts=['127.0.0.1'])
        msg = self.setup_error(exception.VolumeBackendAPIException,
                               driver_ssl_cert_path=other['ca_path'],
                               tintri_api_retries=0)
        self.assertIn('certificate verify failed', msg)
        self.assertIn('TLS error', msg)

    def test_name_not_in_certificate_refused(self):
        # A server on 127.0.0.1 whose certificate, signed by the CA the
        # client trusts, names another host.
        with mock.patch.object(tls, 'DEFAULT_HOSTS', ()):
            paths = tls.generate(os.path.join(self.tmp, 'elsewhere'),
                                 hosts=['vmstore.invalid'])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(paths['cert_path'], paths['key_path'])
        server = http_server.HTTPServer(('127.0.0.1', 0),
                                        http_server.BaseHTTPRequestHandler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.addCleanup(server.server_close)
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        client = tclient.TClient('127.0.0.1', 'u', 'p',
                                 port=server.server_address[1],
                                 ca_path=paths['ca_path'], retries=0,
                                 connect_timeout=5, read_timeout=5)
        err = self.assertRaises(tclient.TintriConnectionError,
                                client.api_info)
        self.assertIn('certificate verify failed', str(err))
        thread.join(10)

    def test_missing_ca_bundle_named(self):
        missing = os.path.join(self.tmp, 'no-such-ca.pem')
        msg = self.setup_error(exception.VolumeBackendAPIException,
                               driver_ssl_cert_path=missing,
                               tintri_api_retries=0)
        self.assertIn(missing, msg)

    def test_ca_bundle_not_a_certificate(self):
        junk = os.path.join(self.tmp, 'junk.pem')
        with open(junk, 'w') as f:
            f.write('not a certificate\n')
        msg = self.setup_error(exception.VolumeBackendAPIException,
                               driver_ssl_cert_path=junk,
                               tintri_api_retries=0)
        self.assertIn('Cannot reach', msg)


class SecretsInLogsTest(SecurityTestCase):

    def test_whole_run_logs_no_password_or_session_id(self):
        drv = self.drv
        # Snapshots, clones, revert, extend.
        vol = self.new_volume()
        self.write(vol, b'A' * MiB)
        snap = self.create_snapshot(vol)
        self.write(vol, b'B' * MiB)
        from_snap = self.create_volume(size=2)
        from_snap.update(drv.create_volume_from_snapshot(from_snap, snap))
        clone = self.create_volume(size=2)
        clone.update(drv.create_cloned_volume(clone, vol))
        drv.revert_to_snapshot(self.ctxt, vol, snap)
        drv.extend_volume(vol, 2)
        # Session expiry and re-login, retries, lost responses, errors.
        self.sim.expire_sessions()
        drv.get_volume_stats(refresh=True)
        self.sim.inject_fault('POST /api/v310/cinder/snapshot', count=1,
                              mode='lose_response')
        snap2 = self.create_snapshot(vol)
        self.sim.inject_fault('POST /api/v310/cinder/clone', count=1,
                              mode='error', status=503)
        clone2 = self.create_volume()
        drv.create_cloned_volume(clone2, vol)
        self.sim.inject_fault('POST /api/v310/cinder/clone', count=10,
                              mode='error', status=500,
                              message='internal error')
        failed = self.create_volume()
        self.assertRaises(exception.VolumeBackendAPIException,
                          drv.create_volume_from_snapshot, failed, snap)
        self.sim.clear_faults()
        # A rejected login (the wrong password must not show either).
        wrong = 'pw-wrong-' + os.urandom(8).hex()
        self.setup_error(exception.VolumeBackendAPIException,
                         tintri_server_password=wrong)
        # Delete everything, shut down.
        for s in (snap, snap2):
            drv.delete_snapshot(s)
        for v in (from_snap, clone, clone2, failed, vol):
            drv.delete_volume(v)
        drv._client.close()

        # set-up and the re-login after expiry
        self.assertGreaterEqual(len(self.tokens), 2)
        text = '\n'.join(self.capture.lines)
        self.assertIn('DEBUG cinder_tintri.client VMstore API', text)
        self.assertIn('session expired, logging in again', text)
        for secret in [self.password, wrong] + self.tokens:
            for variant in (secret, secret.lower()):
                self.assertNotIn(variant, text)
        self.assertNotIn('JSESSIONID=', text)
        self.assertNotIn('UNFORMATTABLE', text)
        # The masked login body is logged: proof that bodies are logged.
        self.assertIn('"password": "***"', text)

    def test_client_repr_and_errors_hold_no_secret(self):
        client = self.drv._client
        self.assertNotIn(self.password, repr(client))
        self.assertNotIn(client._session_id, repr(client))
        bad = tclient.TClient(self.sim.host, self.sim.username,
                              'pw-bad-secret', port=self.sim.port,
                              verify=True, ca_path=self.sim.ca_path,
                              retries=0)
        err = self.assertRaises(tclient.TintriAuthError, bad.login)
        self.assertNotIn('pw-bad-secret', str(err))
        self.assertNotIn('pw-bad-secret', repr(err))


class EchoingArrayTest(SecurityTestCase):
    """A whole driver run against an array that echoes every request."""

    def setUp(self):
        super().setUp()
        self.proxy = self.useFixture(
            hostile_proxy.ProxyFixture(self.sim)).proxy
        self.flags = dict(self.flags, tintri_server_port=self.proxy.port)
        self.drv = self.make_driver(self.flags)
        self.addCleanup(self.drv._image_cache_stop)

    def fails(self, exc_class, func, *args):
        err = self.assertRaises(exc_class, func, *args)
        self.errors.append(str(err))
        return err

    def test_whole_run_through_an_echoing_array(self):
        drv = self.drv
        self.errors = []
        vol = self.new_volume()
        self.write(vol, b'A' * MiB)
        # Retried echoes: the POST and GETs succeed on the second try.
        for path in (r'/cinder/snapshot$', r'/statsRealtime$',
                     r'/snapshot$'):
            self.proxy.echo('*', path, status=503, count=1)
        snap = self.create_snapshot(vol)
        drv.get_volume_stats(refresh=True)
        # Failures whose errors quote the request, in every style.
        for style in ('tintri', 'text', 'html'):
            self.proxy.clear()
            self.proxy.echo('POST', r'/cinder/clone$', status=500,
                            style=style)
            target = self.create_volume()
            self.fails(exception.VolumeBackendAPIException,
                       drv.create_volume_from_snapshot, target, snap)
            self.fails(exception.VolumeBackendAPIException,
                       drv.create_cloned_volume, self.create_volume(), vol)
            self.proxy.echo('POST', r'/cinder/snapshot$', status=500,
                            style=style)
            self.fails(exception.VolumeBackendAPIException,
                       self.create_snapshot, vol)
            self.proxy.echo('GET', r'/statsRealtime$', status=500,
                            style=style)
            drv.get_volume_stats(refresh=True)
            self.proxy.echo('DELETE', r'/snapshot/', status=500, style=style)
            self.fails(exception.VolumeBackendAPIException,
                       drv.delete_snapshot, snap)
        # Session expiry, then a re-login the array echoes back.
        self.proxy.clear()
        self.sim.expire_sessions()
        self.proxy.echo('POST', r'/session/login$', status=403)
        self.fails(exception.VolumeBackendAPIException,
                   self.create_snapshot, vol)
        # And a new driver whose first login is echoed.
        self.fails(exception.VolumeBackendAPIException, self.make_driver(
            self.flags, setup=False).do_setup, self.ctxt)
        self.proxy.clear()
        drv._client.set_credentials(self.sim.username, self.password)
        drv.delete_snapshot(snap)
        drv.delete_volume(vol)
        drv._client.close()

        text = '\n'.join(self.capture.lines + self.errors)
        self.assertEqual(14, len(self.errors))
        self.assertIn('VMstore API POST /api/v310/cinder/clone failed: '
                      'HTTP 500', text)
        self.assertIn('rejected the credentials', text)
        self.assertIn('"password": "***"', text)
        self.assertIn('Cookie: ***', text)
        tokens = self.tokens + [t.upper() for t in self.proxy.session_ids]
        self.assertGreaterEqual(len(tokens), 3)
        for secret in [self.password] + tokens:
            for variant in (secret, secret.lower()):
                self.assertNotIn(variant, text)
        self.assertNotIn('JSESSIONID=', text)
        self.assertNotIn('UNFORMATTABLE', text)
        # The echoes did hold the secrets the run never showed.
        sent = b' '.join(b for _m, _p, b in self.proxy.bodies).decode()
        self.assertIn(self.password, sent)
        self.assertEqual([], self.sim.inventory()['snapshots'])


class BadInputTest(SecurityTestCase):
    """Bad configuration and bad requests: errors that say what is wrong."""

    def test_bad_configuration(self):
        cases = [
            ({'tintri_server_hostname': None}, 'tintri_server_hostname'),
            ({'tintri_server_password': ''}, 'tintri_server_password'),
            ({'tintri_api_version': 'v200'}, 'v200'),
            ({'tintri_server_password': 'nope'}, 'rejected the credentials'),
            ({'tintri_server_port': 1, 'tintri_api_retries': 0},
             'Cannot reach'),
        ]
        base = dict(self.flags, tintri_api_version='v310')
        for changes, expected in cases:
            drv = self.make_driver(dict(base, **changes), setup=False)
            self.addCleanup(lambda d=drv: d._client and d._client.close())
            try:
                drv.do_setup(self.ctxt)
            except exception.CinderException as e:
                msg = str(e)
            else:
                self.fail('no error for %s' % changes)
            self.assertIn(expected, msg, changes)
            self.assertNotIn(self.password, msg)
            self.assertNotIn('nope', msg)

    def test_share_outside_export_and_missing_shares_file(self):
        bad = os.path.join(self.tmp, 'bad-shares')
        with open(bad, 'w') as f:
            f.write('127.0.0.1:/export/cinder\n')
        msg = self.setup_error(exception.InvalidConfigurationValue,
                               nfs_shares_config=bad)
        self.assertIn('/export/cinder', msg)
        missing = os.path.join(self.tmp, 'no-shares-file')
        msg = self.setup_error(exception.NfsException,
                               nfs_shares_config=missing)
        self.assertIn(missing, msg)

    def test_bad_requests(self):
        vol = self.new_volume()
        # A snapshot that the array does not have.
        ghost = test_utils.create_snapshot(self.ctxt, vol.id, volume_size=1)
        self.assertRaises(exception.SnapshotNotFound,
                          self.drv.revert_to_snapshot, self.ctxt, vol,
                          ghost)
        ghost.provider_id = 'NO-SUCH-SNAPSHOT'
        target = self.create_volume()
        msg = str(self.assertRaises(
            exception.VolumeBackendAPIException,
            self.drv.create_volume_from_snapshot, target, ghost))
        self.assertIn('NO-SUCH-SNAPSHOT', msg)
        # A volume whose file is gone.
        lost = self.new_volume()
        os.unlink(self.path_of(lost))
        snap = test_utils.create_snapshot(self.ctxt, lost.id, volume_size=1)
        msg = str(self.assertRaises(exception.VolumeBackendAPIException,
                                    self.drv.create_snapshot, snap))
        self.assertIn('missing', msg)
        # Extending an attached volume.
        vol.attach_status = fields.VolumeAttachStatus.ATTACHED
        msg = str(self.assertRaises(exception.ExtendVolumeError,
                                    self.drv.extend_volume, vol, 2))
        self.assertIn('detach', msg)
        # Managing something that is not a file on a share.
        managing = test_utils.create_volume(
            self.ctxt, host='%s#%s' % (driver_base.HOST, self.share),
            size=1, status='managing')
        for ref in ({'source-name': '../../etc/passwd'},
                    {'source-name': 'no-such-file'}, 'not-a-dict', {}):
            self.assertRaises(exception.ManageExistingInvalidReference,
                              self.drv.manage_existing_get_size, managing,
                              ref)
        report = leak_check.find_leaks(self.sim)
        self.assertEqual(([], [], []), (report.leaked_files,
                                        report.leaked_tmp,
                                        report.leaked_snapshots))
        self.assertNotIn(tdriver.TMP_PREFIX, ' '.join(self.share_entries()))
