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
"""TLS verification, plain HTTP, IPv6 and the console script."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

from cinder_tintri.simulator import cmd
from cinder_tintri.simulator import tls
from tests.unit.simulator import base

DEADLINE = 30


class TlsTest(base.SimTestCase):

    def test_verify_with_ca_path(self):
        sim = self.start_sim()
        self.assertTrue(sim.url.startswith('https://127.0.0.1:'))
        self.assertTrue(os.path.isfile(sim.ca_path))
        s = self.session(sim, login=False)
        self.assertEqual(200, self.call(s, sim, 'GET',
                                        '/api/info').status_code)
        for host in ('localhost',):
            url = 'https://%s:%d/api/info' % (host, sim.port)
            self.assertEqual(200, s.get(url, timeout=base.TIMEOUT)
                             .status_code)
        key = os.path.join(sim.root, '.tls', 'server.key')
        self.assertEqual(0o600, os.stat(key).st_mode & 0o777)

    def test_other_ca_fails(self):
        sim = self.start_sim()
        other = tls.write_ca(self.useFixture(base.fixtures.TempDir()).path,
                             'another CA')
        s = self.session(sim, login=False)
        s.verify = other
        self.assertRaises(requests.exceptions.SSLError, self.call, s, sim,
                          'GET', '/api/info')
        # the server keeps serving after a failed handshake
        s.verify = sim.ca_path
        self.assertEqual(200, self.call(s, sim, 'GET',
                                        '/api/info').status_code)

    def test_each_simulator_has_its_own_ca(self):
        a = self.start_sim()
        b = self.start_sim()
        s = self.session(b, login=False)
        s.verify = a.ca_path
        self.assertRaises(requests.exceptions.SSLError, self.call, s, b,
                          'GET', '/api/info')

    def test_plain_http(self):
        sim = self.start_sim(tls=False)
        self.assertIsNone(sim.ca_path)
        self.assertTrue(sim.url.startswith('http://127.0.0.1:'))
        s = self.session(sim)
        self.assertEqual(200, self.call(s, sim, 'GET',
                                        '/appliance').status_code)
        r = self.login(sim, s)
        self.assertNotIn('Secure', r.headers['Set-Cookie'])

    def test_ipv6(self):
        if not socket.has_ipv6:
            self.skipTest('no IPv6')
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(('::1', 0))
            probe.close()
        except OSError:
            self.skipTest('::1 not available')
        sim = self.start_sim(host='::1')
        self.assertTrue(sim.url.startswith('https://[::1]:'))
        s = self.session(sim)
        self.assertEqual(200, self.call(s, sim, 'GET',
                                        '/appliance').status_code)
        ips = self.call(s, sim, 'GET', '/appliance/default/ips').json()
        self.assertEqual('::1/128', ips[0]['ipCidr'])

    def test_temp_root_removed_given_root_kept(self):
        sim = self.start_sim()
        root = sim.root
        self.assertTrue(os.path.isdir(sim.datastore))
        self.assertEqual(os.path.join(root, 'tintri'), sim.datastore)
        sim.stop()
        self.assertFalse(os.path.exists(root))
        mine = self.useFixture(base.fixtures.TempDir()).path
        sim = self.start_sim(root=mine)
        self.make_file(sim, 'cinder/keep', b'k')
        sim.stop()
        self.assertTrue(os.path.exists(os.path.join(mine, 'tintri',
                                                    'cinder', 'keep')))
        sim.stop()  # idempotent

    def test_stop_with_open_keepalive_and_delayed_request(self):
        sim = self.start_sim()
        s = self.session(sim)
        self.call(s, sim, 'GET', '/appliance')  # keep-alive conn open
        sim.inject_fault('*', mode='delay', delay=60)
        errors = []

        def slow():
            try:
                self.call(s, sim, 'GET', '/appliance')
            except requests.RequestException as exc:
                errors.append(exc)

        t = threading.Thread(target=slow)
        t.start()
        self.addCleanup(t.join, 10)
        time.sleep(0.2)
        start = time.monotonic()
        sim.stop()
        self.assertLess(time.monotonic() - start, 5)
        t.join(10)
        self.assertEqual(1, len(errors))


class ConsoleScriptTest(base.SimTestCase):

    def test_help_lists_every_option(self):
        out = subprocess.run(
            [sys.executable, '-m', 'cinder_tintri.simulator.cmd', '--help'],
            capture_output=True, text=True, timeout=DEADLINE, check=True)
        for opt in ('--host', '--port', '--root', '--plain-http',
                    '--username', '--password', '--page-size',
                    '--capacity-gib', '--session-idle-timeout', '--debug'):
            self.assertIn(opt, out.stdout)
        parser_opts = {o for a in cmd.build_parser()._actions
                       for o in a.option_strings}
        for opt in parser_opts:
            self.assertIn(opt, out.stdout)

    def test_entry_point_and_no_cinder_import(self):
        from importlib import metadata
        eps = [e for e in metadata.entry_points(group='console_scripts')
               if e.name == 'tintri-vmstore-sim']
        self.assertEqual(['cinder_tintri.simulator.cmd:main'],
                         [e.value for e in eps])
        out = subprocess.run(
            [sys.executable, '-c',
             'import sys, cinder_tintri.simulator.cmd; '
             'print(sorted(m for m in sys.modules if m.split(".")[0] in '
             '("cinder", "oslo_config", "oslo_log", "requests", '
             '"eventlet")))'],
            capture_output=True, text=True, timeout=DEADLINE, check=True)
        self.assertEqual('[]', out.stdout.strip())

    def _start(self, *args):
        env = dict(os.environ)
        env.pop('REQUESTS_CA_BUNDLE', None)
        proc = subprocess.Popen(
            [sys.executable, '-m', 'cinder_tintri.simulator.cmd',
             '--host', '127.0.0.1'] + list(args),
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
        line = proc.stdout.readline()
        self.assertTrue(line, proc.stderr.read() if proc.poll() else '')
        return proc, json.loads(line)

    def test_runs_prints_json_and_stops_on_sigterm(self):
        proc, info = self._start('--username', 'ops', '--password',
                                 's3cret', '--page-size', '3')
        self.assertEqual({'url', 'host', 'port', 'datastore', 'ca_path',
                          'username'}, set(info))
        self.assertEqual('ops', info['username'])
        self.assertNotIn('s3cret', json.dumps(info))
        self.assertEqual('https://127.0.0.1:%d' % info['port'], info['url'])
        s = requests.Session()
        s.trust_env = False
        s.verify = info['ca_path']
        self.addCleanup(s.close)
        r = s.post(info['url'] + '/api/v310/session/login',
                   timeout=base.TIMEOUT,
                   json={'username': 'ops', 'password': 's3cret',
                         'typeId': base.LOGIN_TYPE})
        self.assertEqual(200, r.status_code)
        s.headers['Cookie'] = 'JSESSIONID=' + r.cookies['JSESSIONID']
        s.post(info['url'] + '/sim/seed', json={'n': 7},
               timeout=base.TIMEOUT)
        page = s.get(info['url'] + '/api/v310/snapshot',
                     timeout=base.TIMEOUT).json()
        self.assertEqual(3, page['limit'])
        self.assertEqual(7, page['filteredTotal'])
        self.assertTrue(os.path.isdir(info['datastore']))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, proc.wait(DEADLINE))
        stderr = proc.stderr.read()
        self.assertNotIn('s3cret', stderr)
        self.assertNotIn(r.cookies['JSESSIONID'], stderr)
        self.assertFalse(os.path.exists(info['datastore']))

    def test_plain_http_root_sigint(self):
        root = self.useFixture(base.fixtures.TempDir()).path
        proc, info = self._start('--plain-http', '--root', root, '--debug',
                                 '--capacity-gib', '10',
                                 '--session-idle-timeout', '60')
        self.assertIsNone(info['ca_path'])
        self.assertEqual(os.path.join(root, 'tintri'), info['datastore'])
        s = requests.Session()
        s.trust_env = False
        self.addCleanup(s.close)
        r = s.post(info['url'] + '/api/v310/session/login',
                   timeout=base.TIMEOUT,
                   json={'username': 'admin', 'password': 'tintri',
                         'typeId': base.LOGIN_TYPE})
        s.headers['Cookie'] = 'JSESSIONID=' + r.cookies['JSESSIONID']
        st = s.get(info['url'] + '/api/v310/datastore/default',
                   timeout=base.TIMEOUT).json()
        self.assertEqual(10.0, st['stat']['spaceTotalGiB'])
        proc.send_signal(signal.SIGINT)
        self.assertEqual(0, proc.wait(DEADLINE))
        stderr = proc.stderr.read()
        self.assertIn('/api/v310/datastore/default', stderr)  # --debug
        self.assertNotIn('tintri"', stderr)  # no password in the log
        self.assertNotIn(r.cookies['JSESSIONID'], stderr)
        self.assertTrue(os.path.isdir(info['datastore']))

    def test_port_in_use(self):
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(('127.0.0.1', 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        out = subprocess.run(
            [sys.executable, '-m', 'cinder_tintri.simulator.cmd',
             '--host', '127.0.0.1', '--port', str(port)],
            capture_output=True, text=True, timeout=DEADLINE)
        self.assertEqual(1, out.returncode)
        self.assertIn('cannot start', out.stderr)
        self.assertEqual('', out.stdout)
