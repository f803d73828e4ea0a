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
"""The DevStack plugin: its phases, the cinder.conf it writes, shellcheck.

The plugin is sourced by bash with DevStack's functions replaced by stubs:
``iniset`` edits a real INI file; ``sudo``, ``git_clone`` and
``setup_develop`` only record their command line; ``is_service_enabled``
answers from ``STUB_ENABLED_SERVICES``.  The resulting cinder.conf is then
read back with oslo.config using the driver's real option definitions, so a
misspelt key or a bad value fails.
"""

import configparser
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

from cinder.volume import driver as cinder_driver
from cinder.volume.drivers import nfs
from cinder.volume.drivers import remotefs
import fixtures
from oslo_config import cfg
import testtools

from cinder_tintri import options

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEVSTACK = os.path.join(TOP, 'devstack')

# iniset <file> <section> <option> <value>, as DevStack's, on a real file.
INISET_PY = textwrap.dedent('''\
    import configparser, sys
    path, section, option, value = sys.argv[1:5]
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(path)
    if section != 'DEFAULT' and not cp.has_section(section):
        cp.add_section(section)
    cp.set(section, option, value)
    with open(path, 'w') as f:
        cp.write(f)
    ''')

# DevStack functions the plugin uses, stubbed.  Commands that would change
# the machine (sudo, setup_develop, install_package) are only logged.
STUBS = textwrap.dedent('''\
    set -eu
    iniset() { "$STUB_PY" "$STUB_DIR/iniset.py" "$@"; }
    trueorfalse() {
        local default=$1 testval=${!2:-}
        case "$testval" in
            1|[yY]es|YES|[tT]rue|TRUE) echo True ;;
            0|[nN]o|NO|[fF]alse|FALSE) echo False ;;
            *) echo "$default" ;;
        esac
    }
    define_plugin() { :; }
    echo_summary() { :; }
    die() { shift; echo "die: $*" >&2; exit 3; }
    is_service_enabled() {
        local service
        for service in "$@"; do
            if [[ ",${STUB_ENABLED_SERVICES-c-api,c-sch,c-vol}," \
                    == *",$service,"* ]]; then
                return 0
            fi
        done
        return 1
    }
    is_ubuntu() { return 0; }
    install_package() { echo "install_package $*" >> "$STUB_DIR/calls"; }
    setup_develop() { echo "setup_develop $*" >> "$STUB_DIR/calls"; }
    # As DevStack's: the checkout exists afterwards.
    git_clone() {
        echo "git_clone $*" >> "$STUB_DIR/calls"
        mkdir -p "$2" && : > "$2/setup.cfg"
    }
    sudo() { echo "sudo $*" >> "$STUB_DIR/calls"; }
    # Mounted: the paths listed in $STUB_DIR/mounted (none by default).
    mountpoint() { grep -qxF -- "${!#}" "$STUB_DIR/mounted" 2>/dev/null; }
    ''')

# A stand-in for tintri-vmstore-sim: prints the ready line like the real
# one (or misbehaves, by FAKE_SIM_MODE), then runs until signalled.
FAKE_SIM = textwrap.dedent('''\
    import argparse, json, os, sys, time
    p = argparse.ArgumentParser()
    for a in ('--host', '--port', '--root', '--username', '--password',
              '--profile'):
        p.add_argument(a)
    args = p.parse_args()
    mode = os.environ.get('FAKE_SIM_MODE', 'ok')
    with open(os.path.join(args.root, 'argv'), 'w') as f:
        json.dump(sys.argv[1:], f)
    with open(os.path.join(args.root, 'pid'), 'w') as f:
        f.write(str(os.getpid()))
    if mode == 'exit':
        sys.exit(1)
    if mode == 'ok':
        ds = os.path.join(args.root, 'datastore')
        os.makedirs(ds, exist_ok=True)
        print(json.dumps({
            'url': 'https://%s:4443' % args.host, 'host': args.host,
            'port': 4443, 'datastore': ds,
            'ca_path': os.path.join(args.root, 'ca.pem'),
            'username': args.username}), flush=True)
    time.sleep(600)
    ''')


# A stand-in for the cinder-tintri CLI: records its arguments, one JSON
# list per line, and exits with FAKE_CHECK_RC.
FAKE_CLI = textwrap.dedent('''\
    import json, os, sys
    with open(os.environ['FAKE_CLI_LOG'], 'a') as f:
        f.write(json.dumps(sys.argv[1:]) + '\\n')
    print('OK    fake check')
    sys.exit(int(os.environ.get('FAKE_CHECK_RC', '0')))
    ''')


def _known_backend_options():
    # cinder.volume.manager needs the versioned objects registered first.
    from cinder import objects
    objects.register_all()
    from cinder.volume import manager as cinder_manager

    opts = (options.tintri_opts + nfs.nfs_opts + remotefs.nas_opts
            + cinder_driver.volume_opts
            + cinder_manager.volume_backend_opts)
    return {opt.name: opt for opt in opts}


class DevstackPluginTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.stub_dir = os.path.join(self.tmp, 'stubs')
        os.makedirs(self.stub_dir)
        with open(os.path.join(self.stub_dir, 'iniset.py'), 'w') as f:
            f.write(INISET_PY)
        self.conf = os.path.join(self.tmp, 'etc', 'cinder', 'cinder.conf')
        os.makedirs(os.path.dirname(self.conf))
        self.data = os.path.join(self.tmp, 'data')
        self.env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'PYTHON': sys.executable,
            'STUB_PY': sys.executable,
            'STUB_DIR': self.stub_dir,
            'DEST': os.path.join(self.tmp, 'opt'),
            'DATA_DIR': self.data,
            'CINDER_CONF_DIR': os.path.dirname(self.conf),
            'CINDER_CONF': self.conf,
            'CINDER_STATE_PATH': os.path.join(self.data, 'cinder'),
            'CINDER_ENABLED_BACKENDS': 'lvm:lvmdriver-1',
            'TINTRI_SIMULATOR_STOP_TIMEOUT': '5',
        }
        self.addCleanup(self._kill_simulator)

    def _bash(self, body, expect_rc=0, **env):
        script = (STUBS
                  + 'source "%s/settings"\n' % DEVSTACK
                  + 'source "%s/plugin.sh"\n' % DEVSTACK
                  + textwrap.dedent(body))
        full_env = dict(self.env, **env)
        proc = subprocess.run(['bash', '-c', script], env=full_env,
                              capture_output=True, text=True, timeout=120)
        if expect_rc is not None:
            self.assertEqual(
                expect_rc, proc.returncode,
                'stdout:\n%s\nstderr:\n%s' % (proc.stdout, proc.stderr))
        return proc

    def _read_conf(self):
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        cp.read(self.conf)
        return cp

    def _calls(self):
        try:
            with open(os.path.join(self.stub_dir, 'calls')) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def _assert_valid_for_oslo(self, section):
        """Every key is a real option and every value parses as its type."""
        known = _known_backend_options()
        cp = self._read_conf()
        keys = list(cp[section].keys())
        self.assertEqual([], [k for k in keys if k not in known],
                         'keys the driver does not know')
        conf = cfg.ConfigOpts()
        conf.register_opts([known[k] for k in keys], group=section)
        conf(args=[], default_config_files=[self.conf])
        return {k: getattr(conf[section], k) for k in keys}

    def _sim_dir(self):
        return os.path.join(self.data, 'tintri-simulator')

    def _kill_simulator(self):
        pidfile = os.path.join(self._sim_dir(), 'simulator.pid')
        try:
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def _fake_sim(self):
        path = os.path.join(self.stub_dir, 'fake-tintri-vmstore-sim')
        with open(path, 'w') as f:
            f.write('#!%s\n%s' % (sys.executable, FAKE_SIM))
        os.chmod(path, 0o755)
        return path

    # -- settings ---------------------------------------------------------

    def test_settings_adds_the_backend_once(self):
        proc = self._bash('''\
            source "$TOP/devstack/settings"
            echo "$CINDER_ENABLED_BACKENDS"
            tintri_backend_names
            ''', TOP=TOP)
        self.assertEqual(['lvm:lvmdriver-1,tintri:tintri', 'tintri'],
                         proc.stdout.splitlines())

    def test_settings_respects_an_explicit_backend_list(self):
        proc = self._bash('echo "$CINDER_ENABLED_BACKENDS"\n',
                          CINDER_ENABLED_BACKENDS='tintri:vmstore-a')
        self.assertEqual('tintri:vmstore-a', proc.stdout.strip())
        proc = self._bash('echo "$CINDER_ENABLED_BACKENDS"\n',
                          TINTRI_ADD_BACKEND='False')
        self.assertEqual('lvm:lvmdriver-1', proc.stdout.strip())

    # -- a real array -------------------------------------------------------

    def test_real_array_backend_section(self):
        self._bash('configure_tintri_backends\n',
                   TINTRI_SERVER_HOSTNAME='vmstore.example.com',
                   TINTRI_SERVER_USERNAME='cinder',
                   TINTRI_SERVER_PASSWORD='placeholder-password',
                   TINTRI_SHARES='vmstore.example.com:/tintri/a,'
                                 'vmstore.example.com:/tintri/b',
                   TINTRI_CA_BUNDLE='/etc/ssl/private-ca.pem',
                   TINTRI_NFS_MOUNT_OPTIONS='vers=3,lookupcache=pos')
        values = self._assert_valid_for_oslo('tintri')
        shares_file = os.path.join(os.path.dirname(self.conf),
                                   'tintri_shares')
        self.assertEqual({
            'volume_driver': 'cinder_tintri.driver.TintriDriver',
            'volume_backend_name': 'tintri',
            'nfs_shares_config': shares_file,
            'nfs_mount_point_base': os.path.join(self.data, 'cinder', 'mnt'),
            'nfs_mount_options': 'vers=3,lookupcache=pos',
            'tintri_server_hostname': 'vmstore.example.com',
            'tintri_server_port': 443,
            'tintri_server_username': 'cinder',
            'tintri_server_password': 'placeholder-password',
            'tintri_use_https': True,
            'tintri_ssl_cert_verify': True,
            'driver_ssl_cert_path': '/etc/ssl/private-ca.pem',
            'tintri_openstack_region': 'RegionOne',
        }, values)
        with open(shares_file) as f:
            self.assertEqual(['vmstore.example.com:/tintri/a',
                              'vmstore.example.com:/tintri/b'],
                             f.read().splitlines())
        # Nothing is mounted or started for a real array.
        self.assertEqual([], [c for c in self._calls()
                              if c.startswith('sudo')])
        self.assertFalse(os.path.exists(self._sim_dir()))

    def test_each_tintri_backend_gets_a_section(self):
        self._bash('configure_tintri_backends\n',
                   CINDER_ENABLED_BACKENDS='tintri:fast,lvm:lvm,tintri:slow',
                   TINTRI_SERVER_HOSTNAME='vmstore.example.com',
                   TINTRI_SHARES='vmstore.example.com:/tintri/a')
        cp = self._read_conf()
        self.assertEqual(['fast', 'slow'], cp.sections())
        self.assertEqual('slow', cp['slow']['volume_backend_name'])

    def test_real_array_without_hostname_is_refused(self):
        proc = self._bash('configure_tintri_backends\n', expect_rc=3)
        self.assertIn('TINTRI_SERVER_HOSTNAME', proc.stderr)
        self.assertFalse(os.path.exists(self.conf))

    def test_install_phase(self):
        self._bash('source "$TOP/devstack/plugin.sh" stack install\n',
                   TOP=TOP, TINTRI_SIMULATOR='True')
        calls = self._calls()
        self.assertIn('setup_develop %s simulator'
                      % os.path.join(self.tmp, 'opt', 'cinder-tintri'),
                      calls)
        self.assertIn('install_package nfs-common', calls)

    def _checkout(self):
        """A local checkout where DevStack's enable_plugin puts it."""
        path = os.path.join(self.tmp, 'opt', 'cinder-tintri')
        os.makedirs(path)
        with open(os.path.join(path, 'setup.cfg'), 'w') as f:
            f.write('[metadata]\nname = cinder-tintri\n')
        return path

    def test_install_clones_over_https_without_a_checkout(self):
        checkout = os.path.join(self.tmp, 'opt', 'cinder-tintri')
        self._bash('source "$TOP/devstack/plugin.sh" stack install\n',
                   TOP=TOP)
        calls = self._calls()
        self.assertEqual(
            ['git_clone https://opendev.org/x/cinder-tintri.git %s master'
             % checkout,
             'setup_develop %s' % checkout,
             'install_package nfs-common'], calls)

    def test_install_clone_follows_git_base_and_branch(self):
        self._bash('source "$TOP/devstack/plugin.sh" stack install\n',
                   TOP=TOP, GIT_BASE='https://git.example.org',
                   CINDER_TINTRI_BRANCH='stable/2026.1')
        self.assertEqual(
            'git_clone https://git.example.org/x/cinder-tintri.git %s '
            'stable/2026.1' % os.path.join(self.tmp, 'opt', 'cinder-tintri'),
            self._calls()[0])

    def test_install_uses_the_local_checkout(self):
        checkout = self._checkout()
        self._bash('source "$TOP/devstack/plugin.sh" stack install\n',
                   TOP=TOP, TINTRI_SIMULATOR='True')
        calls = self._calls()
        self.assertEqual([], [c for c in calls if c.startswith('git_clone')])
        self.assertEqual(['setup_develop %s simulator' % checkout,
                          'install_package nfs-common'], calls)

    def _fake_cli(self):
        path = os.path.join(self.stub_dir, 'fake-cinder-tintri')
        with open(path, 'w') as f:
            f.write('#!%s\n%s' % (sys.executable, FAKE_CLI))
        os.chmod(path, 0o755)
        log = os.path.join(self.stub_dir, 'cli-calls')
        return path, log

    def _cli_calls(self, log):
        try:
            with open(log) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def test_extra_checks_every_tintri_backend(self):
        cli, log = self._fake_cli()
        proc = self._bash('source "$TOP/devstack/plugin.sh" stack extra\n',
                          TOP=TOP, TINTRI_CLI_CMD=cli, FAKE_CLI_LOG=log,
                          CINDER_ENABLED_BACKENDS='tintri:fast,lvm:lvm,'
                                                  'tintri:slow')
        self.assertEqual(
            [['check', '--config-file', self.conf, '--backend', 'fast'],
             ['check', '--config-file', self.conf, '--backend', 'slow']],
            self._cli_calls(log))
        self.assertIn('OK    fake check', proc.stdout)

    def test_extra_fails_the_run_when_a_check_fails(self):
        cli, log = self._fake_cli()
        proc = self._bash('source "$TOP/devstack/plugin.sh" stack extra\n',
                          expect_rc=3, TOP=TOP, TINTRI_CLI_CMD=cli,
                          FAKE_CLI_LOG=log, FAKE_CHECK_RC='1')
        self.assertIn('cinder-tintri check failed for backend tintri',
                      proc.stderr)
        self.assertEqual(1, len(self._cli_calls(log)))

    def test_extra_check_can_be_turned_off(self):
        cli, log = self._fake_cli()
        proc = self._bash('source "$TOP/devstack/plugin.sh" stack extra\n',
                          TOP=TOP, TINTRI_CLI_CMD=cli, FAKE_CLI_LOG=log,
                          FAKE_CHECK_RC='1', TINTRI_CHECK='False')
        self.assertEqual([], self._cli_calls(log))
        self.assertIn('backends not checked', proc.stdout)

    def test_nothing_runs_without_cinder_volume(self):
        cli, log = self._fake_cli()
        sim = self._fake_sim()
        os.makedirs(self._sim_dir())
        state = os.path.join(self._sim_dir(), 'password')
        with open(state, 'w') as f:
            f.write('kept\n')
        for phase in ('stack install', 'stack post-config', 'stack extra',
                      'unstack', 'clean'):
            self._bash('source "$TOP/devstack/plugin.sh" %s\n' % phase,
                       TOP=TOP, STUB_ENABLED_SERVICES='c-api,c-sch',
                       TINTRI_SIMULATOR='True', TINTRI_SIMULATOR_CMD=sim,
                       TINTRI_CLI_CMD=cli, FAKE_CLI_LOG=log)
        self.assertEqual([], self._calls())
        self.assertEqual([], self._cli_calls(log))
        self.assertFalse(os.path.exists(self.conf))
        self.assertFalse(os.path.exists(
            os.path.join(self._sim_dir(), 'simulator.pid')))
        self.assertTrue(os.path.exists(state))

    def test_clean_removes_the_state(self):
        sim = self._fake_sim()
        self._bash('source "$TOP/devstack/plugin.sh" stack post-config\n',
                   TOP=TOP, TINTRI_SIMULATOR='True', TINTRI_SIMULATOR_CMD=sim)
        with open(os.path.join(self._sim_dir(), 'simulator.pid')) as f:
            pid = int(f.read())
        shares_file = os.path.join(os.path.dirname(self.conf),
                                   'tintri_shares')
        self.assertTrue(os.path.exists(shares_file))
        mounts = [c.split()[-1] for c in self._calls()
                  if c.startswith('sudo mount --bind ')]
        self.assertEqual(1, len(mounts))
        with open(os.path.join(self.stub_dir, 'mounted'), 'w') as f:
            f.write(mounts[0] + '\n')
        self._bash('source "$TOP/devstack/plugin.sh" clean\n',
                   TOP=TOP, TINTRI_SIMULATOR='True')
        self.assertFalse(_alive(pid))
        self.assertIn('sudo umount %s' % mounts[0], self._calls())
        self.assertFalse(os.path.exists(self._sim_dir()))
        self.assertFalse(os.path.exists(shares_file))

    # -- simulator mode -----------------------------------------------------

    def test_simulator_mode(self):
        sim = self._fake_sim()
        proc = self._bash('source "$TOP/devstack/plugin.sh" '
                          'stack post-config\n', TOP=TOP,
                          TINTRI_SIMULATOR='True',
                          TINTRI_SIMULATOR_CMD=sim)
        self.assertIn('ready', proc.stdout)
        sim_dir = self._sim_dir()
        with open(os.path.join(sim_dir, 'simulator.pid')) as f:
            pid = int(f.read())
        os.kill(pid, 0)   # still running after the plugin's shell exited

        with open(os.path.join(sim_dir, 'password')) as f:
            password = f.read().strip()
        self.assertEqual(32, len(password))
        self.assertEqual(0o600, os.stat(
            os.path.join(sim_dir, 'password')).st_mode & 0o777)
        with open(os.path.join(sim_dir, 'data', 'argv')) as f:
            argv = f.read()
        self.assertIn('"--host", "127.0.0.1"', argv)
        self.assertIn('"--profile", "vmstore6"', argv)

        values = self._assert_valid_for_oslo('tintri')
        root = os.path.join(sim_dir, 'data')
        self.assertEqual('127.0.0.1', values['tintri_server_hostname'])
        self.assertEqual(4443, values['tintri_server_port'])
        self.assertEqual('admin', values['tintri_server_username'])
        self.assertEqual(password, values['tintri_server_password'])
        self.assertTrue(values['tintri_ssl_cert_verify'])
        self.assertEqual(os.path.join(root, 'ca.pem'),
                         values['driver_ssl_cert_path'])
        with open(values['nfs_shares_config']) as f:
            self.assertEqual(['127.0.0.1:/tintri/cinder'],
                             f.read().splitlines())

        # The share directory exists and is bind-mounted where os-brick
        # looks for the mount of that share.
        share_dir = os.path.join(root, 'datastore', 'cinder')
        self.assertTrue(os.path.isdir(share_dir))
        digest = hashlib.md5(b'127.0.0.1:/tintri/cinder').hexdigest()
        mount_point = os.path.join(values['nfs_mount_point_base'], digest)
        self.assertTrue(os.path.isdir(mount_point))
        self.assertIn('sudo mount --bind %s %s' % (share_dir, mount_point),
                      self._calls())

        # unstack stops it (by its pid, within the stop timeout).
        start = time.monotonic()
        self._bash('source "$TOP/devstack/plugin.sh" unstack\n', TOP=TOP,
                   TINTRI_SIMULATOR='True')
        self.assertLess(time.monotonic() - start, 30)
        self.assertFalse(_alive(pid))
        self.assertFalse(os.path.exists(os.path.join(sim_dir,
                                                     'simulator.pid')))

    def test_simulator_restart_keeps_the_password(self):
        sim = self._fake_sim()
        for _ in range(2):
            self._bash('start_tintri_simulator\n', TINTRI_SIMULATOR='True',
                       TINTRI_SIMULATOR_CMD=sim)
        with open(os.path.join(self._sim_dir(), 'data', 'argv')) as f:
            argv = f.read()
        with open(os.path.join(self._sim_dir(), 'password')) as f:
            self.assertIn(f.read().strip(), argv)

    def test_simulator_start_has_a_deadline(self):
        sim = self._fake_sim()
        start = time.monotonic()
        proc = self._bash('start_tintri_simulator\n', expect_rc=3,
                          TINTRI_SIMULATOR='True', TINTRI_SIMULATOR_CMD=sim,
                          TINTRI_SIMULATOR_START_TIMEOUT='2',
                          FAKE_SIM_MODE='silent')
        self.assertLess(time.monotonic() - start, 30)
        self.assertIn('not ready after 2s', proc.stderr)
        with open(os.path.join(self._sim_dir(), 'data', 'pid')) as f:
            self.assertFalse(_alive(int(f.read())))
        self.assertFalse(os.path.exists(os.path.join(self._sim_dir(),
                                                     'simulator.pid')))

    def test_simulator_that_exits_is_reported(self):
        sim = self._fake_sim()
        proc = self._bash('start_tintri_simulator\n', expect_rc=3,
                          TINTRI_SIMULATOR='True', TINTRI_SIMULATOR_CMD=sim,
                          FAKE_SIM_MODE='exit')
        self.assertIn('exited before it was ready', proc.stderr)

    def test_stop_ignores_a_recycled_pid(self):
        os.makedirs(self._sim_dir())
        sleeper = subprocess.Popen(['sleep', '60'])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        with open(os.path.join(self._sim_dir(), 'simulator.pid'), 'w') as f:
            f.write('%d\n' % sleeper.pid)
        self._bash('stop_tintri_simulator\n')
        self.assertIsNone(sleeper.poll())

    def test_real_simulator(self):
        """The plugin against the real tintri-vmstore-sim, when present."""
        cmd = os.path.join(os.path.dirname(sys.executable),
                           'tintri-vmstore-sim')
        if not os.access(cmd, os.X_OK):
            self.skipTest('tintri-vmstore-sim is not installed')
        try:
            subprocess.run([cmd, '--help'], capture_output=True, timeout=60,
                           check=True)
        except (subprocess.SubprocessError, OSError) as e:
            self.skipTest('tintri-vmstore-sim does not run: %s' % e)
        self._bash('''\
            start_tintri_simulator
            tintri_load_simulator_facts
            configure_cinder_backend_tintri tintri
            stop_tintri_simulator
            ''', TINTRI_SIMULATOR='True', TINTRI_SIMULATOR_CMD=cmd)
        values = self._assert_valid_for_oslo('tintri')
        self.assertEqual('127.0.0.1', values['tintri_server_hostname'])
        self.assertNotEqual(0, values['tintri_server_port'])
        self.assertTrue(values['tintri_ssl_cert_verify'])

    def test_extra_check_against_the_real_simulator(self):
        """``stack extra``'s check with the real CLI and simulator."""
        bin_dir = os.path.dirname(sys.executable)
        sim = os.path.join(bin_dir, 'tintri-vmstore-sim')
        cli = os.path.join(bin_dir, 'cinder-tintri')
        if not (os.access(sim, os.X_OK) and os.access(cli, os.X_OK)):
            self.skipTest('cinder-tintri is not installed in this venv')
        script = '''\
            configure_tintri_backends
            rc=0
            check_tintri_backends || rc=$?
            stop_tintri_simulator
            exit $rc
            '''
        proc = self._bash(script, TINTRI_SIMULATOR='True',
                          TINTRI_SIMULATOR_CMD=sim, TINTRI_CLI_CMD=cli)
        for item in ('options', 'shares', 'reachable', 'tls',
                     'api version', 'credentials', 'capacity'):
            self.assertRegex(proc.stdout, r'(?m)^OK +%s ' % item)
        # The bind mount is stubbed out here, so the share is not mounted.
        self.assertRegex(proc.stdout, r'(?m)^WARN +mounted ')


class ShellcheckTestCase(testtools.TestCase):

    def test_shellcheck(self):
        shellcheck = shutil.which('shellcheck')
        if not shellcheck:
            self.skipTest('shellcheck is not installed '
                          '(Debian package "shellcheck")')
        files = sorted(
            glob.glob(os.path.join(DEVSTACK, '*.sh'))
            + [os.path.join(DEVSTACK, 'settings')]
            + glob.glob(os.path.join(TOP, 'tools', '*.sh')))
        proc = subprocess.run([shellcheck, '--external-sources'] + files,
                              cwd=TOP, capture_output=True, text=True,
                              timeout=300)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False
