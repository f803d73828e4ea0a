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
"""A real cinder-volume process loads the driver from a cinder.conf.

The test writes a cinder.conf with an ``enabled_backends`` section for
TintriDriver, syncs a sqlite database, starts ``cinder-volume`` (fake
messaging transport: no broker needed), waits until the backend is
initialised and has reported its pool, and stops the process.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import testtools

from cinder_tintri.simulator import VMstoreSimulator
from tests.functional import fixtures as tfixtures

SHARE = '127.0.0.1:/tintri/cinder'
BACKEND = 'tintri-1'
START_DEADLINE = 120.0


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


@tfixtures.skip_unless_root
class CinderVolumeProcessTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        if not os.path.exists(_bin('cinder-volume')):
            self.skipTest('cinder-volume not installed in this environment')
        self.tmp = tempfile.mkdtemp(prefix='tintri-cvol-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        # A password that cannot occur by chance in a log line.
        self.sim = VMstoreSimulator(password='pw-' + uuid.uuid4().hex)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        share_dir = os.path.join(self.sim.datastore, 'cinder')
        os.makedirs(share_dir)
        self.mount_base = os.path.join(self.tmp, 'mnt')
        os.makedirs(self.mount_base)
        self.useFixture(tfixtures.ShareFixture(SHARE, share_dir,
                                               self.mount_base))

    def _write_conf(self):
        shares = os.path.join(self.tmp, 'shares')
        with open(shares, 'w') as f:
            f.write(SHARE + '\n')
        self.log = os.path.join(self.tmp, 'cinder-volume.log')
        conf = os.path.join(self.tmp, 'cinder.conf')
        with open(conf, 'w') as f:
            f.write(f"""[DEFAULT]
enabled_backends = {BACKEND}
transport_url = fake:/
host = tintri-test-host
state_path = {self.tmp}/state
debug = True
log_file = {self.log}
backend_stats_polling_interval = 3

[oslo_concurrency]
lock_path = {self.tmp}/locks

[coordination]
backend_url = file://{self.tmp}/locks

[database]
connection = sqlite:///{self.tmp}/cinder.sqlite

[{BACKEND}]
volume_driver = cinder_tintri.driver.TintriDriver
volume_backend_name = tintri
nfs_shares_config = {shares}
nfs_mount_point_base = {self.mount_base}
nas_secure_file_operations = false
nas_secure_file_permissions = false
tintri_server_hostname = {self.sim.host}
tintri_server_port = {self.sim.port}
tintri_server_username = {self.sim.username}
tintri_server_password = {self.sim.password}
driver_ssl_cert_path = {self.sim.ca_path}
""")
        return conf

    def _log_text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def test_cinder_volume_initializes_backend_and_reports_pool(self):
        conf = self._write_conf()
        os.makedirs(os.path.join(self.tmp, 'state'))
        subprocess.run([_bin('cinder-manage'), '--config-file', conf,
                        'db', 'sync'], check=True, capture_output=True,
                       timeout=600)
        out = open(os.path.join(self.tmp, 'stdout'), 'wb')
        self.addCleanup(out.close)
        proc = subprocess.Popen([_bin('cinder-volume'), '--config-file',
                                 conf], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.addCleanup(_stop, proc)

        wanted = ('Driver post RPC initialization completed successfully',
                  'Tintri backend tintri pools: %s' % SHARE)
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            text = self._log_text()
            if all(w in text for w in wanted):
                break
            if proc.poll() is not None:
                self.fail('cinder-volume exited with %s:\n%s'
                          % (proc.returncode, text[-4000:]))
            time.sleep(0.5)
        else:
            self.fail('cinder-volume did not report its pool within %ss:\n%s'
                      % (START_DEADLINE, self._log_text()[-4000:]))
        self.assertNotIn('ERROR', ''.join(
            line for line in text.splitlines(True)
            if BACKEND in line and 'ERROR' in line))
        self.assertEqual(1, self.sim.inventory()['logins'])
        # The password never reaches the log, even at DEBUG.
        self.assertNotIn(self.sim.password, text)


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
