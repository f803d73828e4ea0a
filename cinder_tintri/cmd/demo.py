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
"""The README demo: the driver doing real work against the simulator.

Starts the embedded VMstore simulator (HTTPS, its own CA), makes its share
look NFS-mounted (a bind mount when root, otherwise a symlink with
os-brick's mount call replaced), builds a sqlite Cinder database and runs
TintriDriver as a library, the way cinderlib does: create a volume, write
data, snapshot, clone, volume from snapshot, revert, boot a fleet of
volumes from one golden image volume, and clean up.  It ends with a table
of operations, REST calls and timings taken from the simulator's counters.
"""

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from unittest import mock
import warnings

SHARE = '127.0.0.1:/tintri/cinder'
MiB = 1024 * 1024
GiB = 1024 * MiB


class Demo(object):

    def __init__(self, count, out=sys.stdout):
        self.count = count
        self.out = out
        self.rows = []
        self.cleanups = []
        self.interactive = out.isatty()

    # -- display ----------------------------------------------------------

    def say(self, text):
        self.out.write(text + '\n')
        self.out.flush()

    def progress(self, label, done, total):
        width = 30
        filled = int(width * done / max(total, 1))
        line = '  %-28s [%s%s] %d/%d' % (label, '#' * filled,
                                         '.' * (width - filled), done, total)
        if self.interactive:
            self.out.write('\r' + line + ('\n' if done == total else ''))
        elif done == total:
            self.out.write(line + '\n')
        self.out.flush()

    def step(self, label, func, times=1):
        self.sim.reset_counts()
        start = time.monotonic()
        result = None
        for i in range(times):
            result = func(i)
            self.progress(label, i + 1, times)
        elapsed = time.monotonic() - start
        self.rows.append((label, times, self.sim.total_requests(),
                          elapsed))
        return result

    # -- set-up -----------------------------------------------------------

    def setup(self):
        from cinder import context
        from cinder import coordination
        from cinder.db import migration
        from cinder import objects
        from cinder.privsep import sys_admin_pctxt
        from cinder.volume import configuration
        from cinder.volume import driver as base_driver
        from oslo_config import cfg

        from cinder_tintri import driver as tdriver
        from cinder_tintri.simulator import VMstoreSimulator

        self.tmp = tempfile.mkdtemp(prefix='tintri-demo-')
        self.cleanups.append(lambda: shutil.rmtree(self.tmp,
                                                   ignore_errors=True))
        password = 'demo-' + os.urandom(8).hex()
        self.sim = VMstoreSimulator(root=os.path.join(self.tmp, 'array'),
                                    password=password)
        self.sim.start()
        self.cleanups.append(self.sim.stop)
        self.say('VMstore simulator: %s (CA %s)' % (self.sim.url,
                                                    self.sim.ca_path))
        share_dir = os.path.join(self.sim.datastore, 'cinder')
        os.makedirs(share_dir)
        mount_base = os.path.join(self.tmp, 'mnt')
        os.makedirs(mount_base)
        self._make_share_visible(share_dir, mount_base)
        shares = os.path.join(self.tmp, 'shares')
        with open(shares, 'w') as f:
            f.write(SHARE + '\n')

        conf = cfg.CONF
        conf([], project='cinder')
        conf.set_override('connection',
                          'sqlite:///%s/cinder.sqlite' % self.tmp,
                          group='database')
        conf.set_override('lock_path', os.path.join(self.tmp, 'locks'),
                          group='oslo_concurrency')
        conf.set_override('backend_url',
                          'file://%s/locks' % self.tmp, group='coordination')
        objects.register_all()
        migration.db_sync()
        coordination.COORDINATOR.start()
        self.cleanups.append(coordination.COORDINATOR.stop)
        sys_admin_pctxt.set_client_mode(False)

        backend = 'tintri-demo'
        config = configuration.Configuration(
            base_driver.volume_opts
            + tdriver.TintriDriver.get_driver_options(),
            config_group=backend)
        for key, value in {
                'nfs_shares_config': shares,
                'nfs_mount_point_base': mount_base,
                'nas_secure_file_operations': 'true',
                'nas_secure_file_permissions': 'true',
                'tintri_server_hostname': self.sim.host,
                'tintri_server_port': self.sim.port,
                'tintri_server_username': self.sim.username,
                'tintri_server_password': password,
                'driver_ssl_cert_path': self.sim.ca_path,
                'volume_backend_name': 'tintri'}.items():
            conf.set_override(key, value, group=backend)
        self.host = 'demo@%s' % backend
        self.ctxt = context.get_admin_context()
        self.drv = tdriver.TintriDriver(configuration=config, host=self.host)
        self.drv.do_setup(self.ctxt)
        self.drv.check_for_setup_error()
        self.cleanups.append(self.drv._client.close)
        self.share_dir = share_dir
        self.objects = objects

    def _make_share_visible(self, share_dir, mount_base):
        digest = hashlib.md5(SHARE.encode(), usedforsecurity=False)
        mount_point = os.path.join(mount_base, digest.hexdigest())
        os.makedirs(mount_point)
        if os.geteuid() == 0:
            subprocess.run(['mount', '--bind', share_dir, mount_point],
                           check=True, timeout=60)
            self.cleanups.append(lambda: subprocess.run(
                ['umount', mount_point], timeout=60))
            self.say('Share %s bind-mounted at %s' % (SHARE, mount_point))
            return
        # Not root: no mount possible; os-brick's mount call is replaced
        # and the mount point is a symlink to the share directory.
        os.rmdir(mount_point)
        os.symlink(share_dir, mount_point)
        from os_brick.remotefs import remotefs as remotefs_brick
        patcher = mock.patch.object(remotefs_brick.RemoteFsClient, 'mount')
        patcher.start()
        self.cleanups.append(patcher.stop)
        self.say('Share %s linked at %s (not root: no bind mount)'
                 % (SHARE, mount_point))

    # -- the work -----------------------------------------------------------

    def volume(self, size=1):
        vol = self.objects.Volume(
            self.ctxt, size=size, host='%s#%s' % (self.host, SHARE),
            status='creating', attach_status='detached',
            user_id='demo', project_id='demo',
            volume_type_id=self._type_id())
        vol.create()
        return vol

    def _type_id(self):
        from cinder.volume import volume_types
        return volume_types.get_default_volume_type()['id']

    def snapshot(self, vol):
        snap = self.objects.Snapshot(
            self.ctxt, volume_id=vol.id, volume_size=vol.size,
            status='creating', user_id='demo', project_id='demo',
            volume_type_id=vol.volume_type_id)
        snap.create()
        return snap

    def path(self, vol):
        return os.path.join(self.share_dir, vol.name)

    def run(self):
        self.setup()
        drv = self.drv
        self.say('')
        vols = []

        def create(_i):
            vol = self.volume(size=1)
            vol.update(drv.create_volume(vol))
            vol.save()
            vols.append(vol)
            return vol

        src = self.step('create volume (1 GiB)', create)
        with open(self.path(src), 'r+b') as f:
            f.write(b'golden image v1 ' * (MiB // 16))

        snap = self.snapshot(src)
        self.step('snapshot', lambda _i: snap.update(
            drv.create_snapshot(snap)))
        snap.save()
        with open(self.path(src), 'r+b') as f:
            f.write(b'changed after snapshot' * 100)

        def from_snapshot(_i):
            vol = self.volume(size=2)
            vol.update(drv.create_volume_from_snapshot(vol, snap))
            vol.save()
            vols.append(vol)
            return vol

        restored = self.step('volume from snapshot (2 GiB)', from_snapshot)

        def clone(_i):
            vol = self.volume(size=1)
            vol.update(drv.create_cloned_volume(vol, src))
            vol.save()
            vols.append(vol)
            return vol

        self.step('clone volume', clone)
        self.step('revert to snapshot',
                  lambda _i: drv.revert_to_snapshot(self.ctxt, src, snap))
        with open(self.path(src), 'rb') as f:
            reverted_ok = f.read(16) == b'golden image v1 '
        with open(self.path(restored), 'rb') as f:
            restored_ok = f.read(16) == b'golden image v1 '

        self.step('boot volumes from golden', from_snapshot,
                  times=self.count)
        self.step('delete snapshot', lambda _i: drv.delete_snapshot(snap))
        snap.destroy()

        def delete(i):
            drv.delete_volume(vols[i])
            vols[i].destroy()

        self.step('delete volumes', delete, times=len(vols))
        inventory = self.sim.inventory()
        leftovers = [f for f in inventory['files']
                     if f.rstrip('/') not in ('cinder', '')]
        self.report(reverted_ok, restored_ok, inventory, leftovers)
        return 0 if (reverted_ok and restored_ok and not leftovers
                     and not inventory['snapshots']) else 1

    def report(self, reverted_ok, restored_ok, inventory, leftovers):
        self.say('')
        self.say('%-30s %6s %10s %10s %12s' % ('operation', 'count',
                                               'REST calls', 'wall (s)',
                                               'per op (ms)'))
        self.say('-' * 72)
        for label, count, calls, elapsed in self.rows:
            self.say('%-30s %6d %10d %10.3f %12.1f'
                     % (label, count, calls, elapsed,
                        1000.0 * elapsed / count))
        self.say('-' * 72)
        self.say('data checks: volume from snapshot has pre-snapshot data: '
                 '%s; revert restored data: %s'
                 % (_ok(restored_ok), _ok(reverted_ok)))
        self.say('logins to the array: %d; left on the array: %d files, '
                 '%d snapshots' % (inventory['logins'], len(leftovers),
                                   len(inventory['snapshots'])))

    def close(self):
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as e:  # keep cleaning up
                self.say('cleanup: %s' % e)


def _ok(flag):
    return 'OK' if flag else 'FAILED'


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Run TintriDriver against the embedded VMstore '
                    'simulator and show what it does.')
    parser.add_argument('--volumes', type=int, default=10,
                        help='volumes to boot from the golden image '
                             '(default 10)')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore', message='(?s).*Eventlet is deprecated')
    warnings.filterwarnings('ignore', module='alembic')
    # cinder runs under eventlet: patch before anything imports ssl.
    from cinder import monkey_patch
    monkey_patch.patch()
    logging.basicConfig(level=logging.WARNING)
    demo = Demo(args.volumes)
    try:
        return demo.run()
    finally:
        demo.close()


if __name__ == '__main__':
    sys.exit(main())
