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
"""``cinder-tintri image-cache`` and ``cinder-tintri orphans``."""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import testtools

from cinder_tintri import client as tclient
from cinder_tintri.cmd import inventory
from cinder_tintri.simulator import VMstoreSimulator
from cinder_tintri import snapshot_deletion
from tests import hostile_proxy

SHARE = '127.0.0.1:/tintri/cinder'


def _id():
    return str(uuid.uuid4())


class InventoryBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix='tintri-inv-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.password = 'pw-' + uuid.uuid4().hex
        self.sim = VMstoreSimulator(password=self.password)
        self.sim.start()
        self.addCleanup(self.sim.stop)
        self.share_dir = os.path.join(self.sim.datastore, 'cinder')
        os.makedirs(self.share_dir)
        self.client = tclient.TClient(
            self.sim.host, self.sim.username, self.password,
            port=self.sim.port, ca_path=self.sim.ca_path, retries=0)
        self.addCleanup(self.client.close)

    def file(self, name, size=4096):
        with open(os.path.join(self.share_dir, name), 'wb') as f:
            f.truncate(size)
        return name

    def snap(self, file_name, description, owner):
        return self.client.create_snapshot('/tintri/cinder', file_name,
                                           owner, description)

    def _conf(self, port=None):
        port = port or self.sim.port
        shares = os.path.join(self.tmp, 'shares')
        with open(shares, 'w') as f:
            f.write(SHARE + '\n')
        base = os.path.join(self.tmp, 'mnt')
        os.makedirs(base)
        # The share as the driver would have mounted it.
        os.symlink(self.share_dir, os.path.join(
            base, inventory_mount_name(SHARE)))
        conf = os.path.join(self.tmp, 'cinder.conf')
        with open(conf, 'w') as f:
            f.write(f"""[DEFAULT]
enabled_backends = tintri

[database]
connection = sqlite:///{self.tmp}/cinder.sqlite

[coordination]
backend_url = file://{self.tmp}/locks

[tintri]
nfs_shares_config = {shares}
nfs_mount_point_base = {base}
tintri_server_hostname = {self.sim.host}
tintri_server_port = {port}
tintri_server_username = {self.sim.username}
tintri_server_password = {self.password}
driver_ssl_cert_path = {self.sim.ca_path}
""")
        subprocess.run([os.path.join(os.path.dirname(sys.executable),
                                     'cinder-manage'), '--config-file',
                        conf, 'db', 'sync'], check=True,
                       capture_output=True, timeout=600)
        return conf

    def _cli(self, *args):
        proc = subprocess.run(
            [sys.executable, '-m', 'cinder_tintri.cmd.cli'] + list(args),
            capture_output=True, text=True, timeout=300)
        self.assertNotIn(self.password, proc.stdout + proc.stderr)
        return proc


class InventoryTestCase(InventoryBase):

    def test_find_orphans_exactly(self):
        kept_vol, gone_vol, gone_clone = _id(), _id(), _id()
        kept_snap, gone_snap, renamed_snap = _id(), _id(), _id()
        self.file('volume-' + kept_vol)
        self.file('volume-' + gone_vol)
        self.file('notes.txt')
        os.mkdir(os.path.join(self.share_dir, '.tintri-tmp-volume-x-1'))
        src = 'volume-' + kept_vol
        self.snap(src, 'snapshot-' + kept_snap, kept_vol)
        orphan_uuid = self.snap(src, 'snapshot-' + gone_snap, kept_vol)
        renamed = self.snap(src, 'snapshot-' + renamed_snap, kept_vol)
        helper = self.snap(src, 'volume-%s-clone-abc123' % gone_clone,
                           kept_vol)
        self.snap(src, 'image-' + _id(), _id())   # image cache: not orphan
        self.snap(src, 'user snapshot', kept_vol)  # not Cinder-made

        found = inventory.find_orphans(
            self.client, {SHARE: self.share_dir}, {kept_vol},
            {kept_snap}, {renamed}, err=io.StringIO())
        got = sorted((kind, what) for kind, _where, what, _why in found)
        self.assertEqual(sorted([
            ('file', '.tintri-tmp-volume-x-1'),
            ('file', 'volume-' + gone_vol),
            ('snapshot', 'snapshot-' + gone_snap),
            ('snapshot', 'volume-%s-clone-abc123' % gone_clone),
        ]), got)
        uuids = {where for kind, where, _w, _y in found if kind == 'snapshot'}
        self.assertEqual({orphan_uuid, helper}, uuids)

    def test_pending_deletions_are_shown_not_counted(self):
        vol = _id()
        gone_snap = _id()
        self.file('volume-' + vol)
        pending_uuid = self.snap('volume-' + vol, 'snapshot-' + gone_snap,
                                 vol)
        snapshot_deletion.record(self.share_dir, pending_uuid,
                                 {'snapshot_id': gone_snap,
                                  'volume_id': vol})
        # A record whose array snapshot is gone already.
        snapshot_deletion.record(self.share_dir, 'F' * 36 + '-SST-' + '0' * 16,
                                 {'snapshot_id': _id()})
        found = inventory.find_orphans(
            self.client, {SHARE: self.share_dir}, {vol}, set(), set(),
            err=io.StringIO())
        kinds = sorted((kind, where) for kind, where, _w, _y in found)
        self.assertEqual(sorted([('pending', pending_uuid),
                                 ('pending', 'F' * 36 + '-SST-' + '0' * 16)]),
                         kinds)
        why = [y for k, w, _x, y in found if w == pending_uuid][0]
        self.assertIn(gone_snap, why)
        self.assertIn('pending deletion since', why)
        # Through the CLI: shown, and not a failure.
        proc = self._cli('orphans', '--config-file', self._conf())
        self.assertIn(pending_uuid, proc.stdout)
        self.assertIn('2 snapshot(s) pending deletion', proc.stdout)

    def test_volume_report(self):
        known, unknown = _id(), _id()
        with open(os.path.join(self.share_dir, 'volume-' + known),
                  'wb') as f:
            f.truncate(2 * 1024 ** 3)    # sparse: 2 GiB apparent
        self.file('volume-' + unknown)
        self.file('notes.txt')
        self.client.host_refresh('keystone.test', 'cinder/volume-' + known,
                                 volume_id=known)
        vm = None
        for _i in range(100):   # the simulator's inventory lag (none here)
            disk = self.client.find_virtual_disk(uuid=known)
            if disk:
                vm = disk['vm_uuid']
                break
        self.assertIsNotNone(vm)
        out = io.StringIO()
        n = inventory.volume_report(self.client, {SHARE: self.share_dir},
                                    out, err=io.StringIO())
        self.assertEqual(2, n)
        rows = {line.split()[0]: line.split()
                for line in out.getvalue().splitlines()
                if line.startswith('volume-')}
        self.assertEqual(['volume-' + known, '2.00', '2.00', vm],
                         rows['volume-' + known][:4])
        self.assertEqual('-', rows['volume-' + unknown][3])
        self.assertNotIn('notes.txt', out.getvalue())
        proc = self._cli('volumes', '--config-file', self._conf())
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn(vm, proc.stdout)
        self.assertIn('2 volume file(s)', proc.stdout)

    def test_image_cache_list(self):
        src = self.file('volume-' + _id())
        images = [_id(), _id()]
        for image in images:
            self.snap(src, 'image-' + image, image)
        self.snap(src, 'snapshot-' + _id(), _id())
        out = io.StringIO()
        n = inventory.list_image_cache(self.client, [self.share_dir], 30,
                                       out, err=io.StringIO())
        self.assertEqual(2, n)
        for image in images:
            self.assertIn(image, out.getvalue())
        self.assertIn('2 image snapshot(s)', out.getvalue())

    def test_cli_end_to_end(self):
        conf = self._conf()
        vol = _id()
        self.file('volume-' + vol)
        self.snap('volume-' + vol, 'snapshot-' + _id(), vol)
        self.snap('volume-' + vol, 'image-' + (image := _id()), image)
        # The Cinder database is empty: both Cinder-made things are
        # orphans, the image snapshot is not.
        proc = self._cli('orphans', '--config-file', conf)
        self.assertEqual(1, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('volume-' + vol, proc.stdout)
        self.assertIn('2 orphan(s)', proc.stdout)
        self.assertNotIn(image, proc.stdout)

        proc = self._cli('image-cache', 'list', '--config-file', conf)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn(image, proc.stdout)

        # Nothing has expired yet; --expiry-days 0 disables expiry.
        proc = self._cli('image-cache', 'clean', '--config-file', conf)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('0 image snapshot(s) deleted', proc.stdout)
        self.assertEqual(2, len(self.sim.inventory()['snapshots']))


# The CLI with every logger at DEBUG on stderr.
DEBUG_CLI = ('import logging, sys; '
             'logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); '
             'from cinder_tintri.cmd import cli; '
             'sys.exit(cli.main(sys.argv[1:]))')


class HostileArrayCliTest(InventoryBase):
    """Every command, against an array that echoes requests (18.2)."""

    def setUp(self):
        super().setUp()
        self.proxy = self.useFixture(
            hostile_proxy.ProxyFixture(self.sim)).proxy

    def _debug_cli(self, *args):
        proc = subprocess.run([sys.executable, '-c', DEBUG_CLI] + list(args),
                              capture_output=True, text=True, timeout=300)
        output = proc.stdout + proc.stderr
        for secret in [self.password] + self.proxy.session_ids:
            for form in (secret, secret.lower()):
                self.assertNotIn(form, output, args)
        return proc

    def test_no_command_prints_or_logs_a_secret(self):
        conf = self._conf(port=self.proxy.port)
        vol = _id()
        self.file('volume-' + vol)
        self.snap('volume-' + vol, 'image-' + _id(), _id())
        commands = [('image-cache', 'list'), ('image-cache', 'clean'),
                    ('orphans',)]
        # 1. Logins echoed (the body holds the password).
        self.proxy.echo('POST', r'/session/login$', status=403)
        for cmd in commands:
            proc = self._debug_cli(*(cmd + ('--config-file', conf)))
            output = proc.stdout + proc.stderr
            self.assertIn('rejected the credentials', output)
            self.assertIn('"password": "***"', output)
        # 2. Authenticated calls echoed (the Cookie holds the session),
        #    once as a retryable 503, then as a failure.
        for style in ('tintri', 'text'):
            for cmd in commands:
                self.proxy.clear()
                for path in (r'/snapshot$', r'/statsRealtime$'):
                    self.proxy.echo('GET', path, status=503, style=style,
                                    count=1)
                    self.proxy.echo('GET', path, status=500, style=style)
                proc = self._debug_cli(*(cmd + ('--config-file', conf)))
                self.assertIn('VMstore API', proc.stdout + proc.stderr)
                self.assertIn('retry 1/', proc.stderr)
        self.assertGreaterEqual(len(self.proxy.session_ids), 6)
        # The echoes did carry both secrets.
        seen = b' '.join(b for _m, _p, b in self.proxy.bodies)
        self.assertIn(self.password.encode(), seen)


def inventory_mount_name(share):
    return hashlib.md5(share.encode(), usedforsecurity=False).hexdigest()
