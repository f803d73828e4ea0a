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
"""One benchmark cell, run in its own process.

A cell is one simulator (array scale = number of pre-existing snapshots,
injected latency per request) with the three drivers set up against it,
each on its own share directory of the same filesystem:

* ``ours``: :class:`cinder_tintri.driver.TintriDriver`
* ``intree``: cinder 29's ``cinder.volume.drivers.vmstore.nfs.
  VmstoreNfsDriver``, unmodified (its sleeps are real)
* ``generic``: cinder's ``NfsDriver`` with qcow2 snapshots

Repetitions are interleaved (rep 1 of every driver, then rep 2, ...), so a
pair ours/other is measured seconds apart.  Every operation runs under an
eventlet timeout (the deadline); the parent process also kills this process
if an operation overruns the deadline by much (e.g. a loop that never
yields), and restarts the cell without that workload.

Results are JSON lines appended (and flushed) to ``--out``; the parent
reads them even if this process dies.
"""

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid

from bench import breakdown as bbreakdown
import eventlet
from eventlet import greenpool

MiB = 1024 * 1024
GiB = 1024 * MiB
LOGIN = 'POST /api/v310/session/login'
CLONE = 'POST /api/v310/cinder/clone'
DRIVERS = ('ours', 'intree', 'generic')
WORKLOADS = ('create_snapshot', 'delete_snapshot', 'from_snapshot',
             'from_snapshot_larger', 'clone', 'clone_larger', 'clone_image',
             'revert', 'extend', 'create', 'delete')
CMD_TIMEOUT = 120


class TimedOut(BaseException):
    """Raised inside an operation that overran the deadline."""


def _run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          timeout=CMD_TIMEOUT).stdout


def _mounted(path):
    path = os.path.realpath(path)
    with open('/proc/self/mounts') as f:
        return any(line.split()[1] == path for line in f)


def _umount(path):
    if not _mounted(path):
        return
    try:
        _run('umount', path)
    except (subprocess.SubprocessError, OSError):
        _run('umount', '-l', path)


def mount_point(base, share):
    digest = hashlib.md5(share.encode('utf-8'),
                         usedforsecurity=False).hexdigest()
    return os.path.join(base, digest)


_LIBC = None


def _syncfs(path):
    """Flush one filesystem, so its free-space count settles."""
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        _LIBC.syncfs(fd)
    finally:
        os.close(fd)


def _io_bytes():
    """Bytes this process and its finished children sent to storage."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_oublock
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    return (own + kids) * 512


class Recorder(object):
    def __init__(self, path):
        self._f = open(path, 'a')

    def __call__(self, **rec):
        rec['t'] = time.time()
        self._f.write(json.dumps(rec, sort_keys=True) + '\n')
        self._f.flush()

    def close(self):
        self._f.close()


class FileImageService(object):
    """A Glance stand-in serving one image file, streamed in chunks."""

    def __init__(self, path, image_id, disk_format='raw'):
        self.path = path
        self.image_id = image_id
        self.downloads = 0
        self.temp_images = None     # cinder's image_utils looks for it
        self.meta = {
            'id': image_id, 'name': 'bench-image', 'status': 'active',
            'disk_format': disk_format, 'container_format': 'bare',
            'size': os.stat(path).st_size, 'properties': {},
            'visibility': 'public', 'protected': False,
            'min_disk': 0, 'min_ram': 0, 'owner': None,
            'created_at': None, 'updated_at': None, 'deleted_at': None,
            'deleted': False, 'checksum': None, 'is_public': True}

    def show(self, context, image_id):
        if image_id != self.image_id:
            raise KeyError(image_id)
        return dict(self.meta)

    def download(self, context, image_id, data=None):
        self.downloads += 1
        with open(self.path, 'rb') as src:
            while True:
                chunk = src.read(4 * MiB)
                if not chunk:
                    break
                data.write(chunk)
                eventlet.sleep(0)

    def get_location(self, context, image_id):
        return None, []


def make_image(path, size, data_bytes):
    """A raw image of ``size`` bytes, ``data_bytes`` of them not zero."""
    block = os.urandom(MiB)
    with open(path, 'wb') as f:
        written = 0
        while written < data_bytes:
            n = min(MiB, data_bytes - written)
            f.write(block[:n])
            written += n
        f.truncate(size)


class Cell(object):
    """Simulator, filesystem, shares and drivers of one cell."""

    def __init__(self, spec, stack):
        self.spec = spec
        self.stack = stack
        self.work = spec['workdir']
        self.scale = int(spec['scale'])
        self.latency = float(spec['latency'])
        self.deadline = float(spec['deadline'])
        self.data = int(spec['data_mib']) * MiB
        self.root = os.geteuid() == 0 and not spec.get('no_root')
        self.drivers = {}
        self.shares = {}
        self.pools = {}
        self.logins = {d: 0 for d in DRIVERS}
        self.requests = {d: 0 for d in DRIVERS}
        self.skip = set(tuple(x) for x in spec.get('skip', []))
        self.dead = set()       # (driver, workload) that timed out

    # -- setup ----------------------------------------------------------

    def setup(self):
        from cinder.common import config  # noqa: F401  (registers opts)
        from cinder import coordination
        from cinder import objects
        from cinder.privsep import sys_admin_pctxt
        from oslo_config import cfg

        conf = cfg.CONF
        objects.register_all()
        conf([], project='cinder', default_config_files=[])
        os.makedirs(os.path.join(self.work, 'locks'), exist_ok=True)
        conf.set_override('connection', 'sqlite:///' + self.spec['db'],
                          group='database')
        conf.set_override('state_path', self.work)
        conf.set_override('image_conversion_dir',
                          os.path.join(self.work, 'conversion'))
        conf.set_override('lock_path', os.path.join(self.work, 'locks'),
                          group='oslo_concurrency')
        conf.set_override('backend_url', 'file://' + os.path.join(
            self.work, 'coord'), group='coordination')
        coordination.COORDINATOR.start()
        self.stack.callback(coordination.COORDINATOR.stop)
        sys_admin_pctxt.set_client_mode(False)
        # requests lets these override verify= (the simulator's CA)
        os.environ.pop('REQUESTS_CA_BUNDLE', None)
        os.environ.pop('CURL_CA_BUNDLE', None)

        from cinder import context
        self.ctxt = context.get_admin_context()
        self._filesystem()
        self._simulator()
        for name in self.spec['drivers']:
            self._share(name)
        if self.spec.get('migration') and 'ours' in self.spec['drivers']:
            # a second share of the same datastore, a second pool of ours
            self._share('ours2', base=self.shares['ours'][2])
        if not self.root:
            self._patch_mount()
        makers = {'ours': self._ours, 'intree': self._intree,
                  'generic': self._generic}
        for name in self.spec['drivers']:
            t0 = time.perf_counter()
            counts, _ = self._counted(lambda: makers[name]())
            self.logins[name] += counts.get(LOGIN, 0)
            self.requests[name] += sum(counts.values())
            self.record(type='setup', driver=name,
                        wall=time.perf_counter() - t0,
                        requests=sum(counts.values()), counts=counts)
        self.sim.set_latency(self.latency)
        self.breakdown = bbreakdown.Breakdown()
        self.stack.callback(self.breakdown.install())

    def _filesystem(self):
        self.fs = None
        if self.root and shutil.which('mkfs.xfs'):
            image = os.path.join(self.work, 'xfs.img')
            with open(image, 'wb') as f:
                f.truncate(int(self.spec.get('xfs_gib', 64)) * GiB)
            _run('mkfs.xfs', '-q', '-m', 'reflink=1', image)
            self.fs = os.path.join(self.work, 'xfs')
            os.makedirs(self.fs)
            _run('mount', '-o', 'loop', image, self.fs)
            self.stack.callback(_umount, self.fs)
            base = self.fs
        else:
            base = os.path.join(self.work, 'fs')
            os.makedirs(base)
        self.array_root = os.path.join(base, 'array')

    def _simulator(self):
        from cinder_tintri.simulator import VMstoreSimulator
        self.sim = VMstoreSimulator(root=self.array_root,
                                    page_size=self.spec['page_size'])
        self.sim.start()
        self.stack.callback(self.sim.stop)
        if self.scale:
            self.sim.seed_snapshots(self.scale)

    def _share(self, name, base=None):
        share = '127.0.0.1:/tintri/%s' % name
        src = os.path.join(self.sim.datastore, name)
        os.makedirs(src)
        if base is None:
            base = os.path.join(self.work, 'mnt-%s' % name)
            os.makedirs(base)
        self.shares[name] = (share, src, base)
        if self.root:
            point = mount_point(base, share)
            os.makedirs(point)
            _run('mount', '--bind', src, point)
            self.stack.callback(_umount, point)

    def _patch_mount(self):
        from unittest import mock

        from os_brick.remotefs import remotefs as remotefs_brick

        cell = self

        def fake_mount(client, share, flags=None):
            point = client.get_mount_point(share)
            if os.path.islink(point):
                return
            name = share.rsplit('/', 1)[1]
            os.symlink(cell.shares[name][1], point)

        patcher = mock.patch.object(remotefs_brick.RemoteFsClient, 'mount',
                                    autospec=True, side_effect=fake_mount)
        patcher.start()
        self.stack.callback(patcher.stop)

    def _configure(self, group, opts, values):
        from cinder.volume import configuration
        from cinder.volume import driver as base_driver
        from oslo_config import cfg
        conf = configuration.Configuration(base_driver.volume_opts + opts,
                                           config_group=group)
        known = {o.dest for o in base_driver.volume_opts + opts}
        for key, value in values.items():
            if key in known:
                cfg.CONF.set_override(key, value, group=group)
        return conf

    def _shares_file(self, name):
        path = os.path.join(self.work, 'shares-%s' % name)
        shares = [self.shares[name][0]]
        if name == 'ours' and 'ours2' in self.shares:
            shares.append(self.shares['ours2'][0])
        with open(path, 'w') as f:
            f.write('\n'.join(shares) + '\n')
        return path

    def _ours(self):
        from cinder_tintri import driver as tdriver
        share, _src, base = self.shares['ours']
        sim = self.sim
        values = {
            'volume_backend_name': 'ours',
            'nfs_shares_config': self._shares_file('ours'),
            'nfs_mount_point_base': base,
            'nas_secure_file_operations': 'false',
            'nas_secure_file_permissions': 'false',
            'tintri_server_hostname': sim.host,
            'tintri_server_port': sim.port,
            'tintri_server_username': sim.username,
            'tintri_server_password': sim.password,
            'driver_ssl_cert_path': sim.ca_path,
            'tintri_image_cache_cleanup_interval': 0,
        }
        conf = self._configure(
            'ours', tdriver.TintriDriver.get_driver_options(), values)
        drv = tdriver.TintriDriver(configuration=conf, host='bench@ours')
        drv.do_setup(self.ctxt)
        drv.check_for_setup_error()
        self.stack.callback(drv._client.close)
        if hasattr(drv, '_image_cache_stop'):
            self.stack.callback(drv._image_cache_stop)
        self._add('ours', drv, share)

    def _intree(self):
        from cinder.volume.drivers import nfs as nfs_driver
        from cinder.volume.drivers import remotefs
        from cinder.volume.drivers.vmstore import nfs as vmstore_nfs
        from cinder.volume.drivers.vmstore import options as vmstore_options
        share, _src, base = self.shares['intree']
        sim = self.sim
        conf = self._configure(
            'intree', nfs_driver.nfs_opts + remotefs.nas_opts
            + vmstore_options.VMSTORE_NFS_OPTS, {
                'volume_backend_name': 'intree',
                'nas_host': '127.0.0.1',
                'nas_share_path': '/tintri/intree',
                'nfs_mount_options': 'vers=3',
                'nas_secure_file_operations': 'false',
                'nas_secure_file_permissions': 'false',
                'vmstore_mount_point_base': base,
                'vmstore_rest_protocol': 'https',
                'vmstore_rest_address': sim.host,
                'vmstore_rest_port': sim.port,
                'vmstore_user': sim.username,
                'vmstore_password': sim.password,
                'vmstore_openstack_hostname': 'controller',
                'driver_ssl_cert_verify': True,
                'driver_ssl_cert_path': sim.ca_path})
        drv = vmstore_nfs.VmstoreNfsDriver(configuration=conf,
                                           host='bench@intree')
        drv.do_setup(self.ctxt)
        drv.check_for_setup_error()
        self.stack.callback(drv.vmstore.session.close)
        self._add('intree', drv, share)

    def _generic(self):
        from cinder.volume.drivers import nfs as nfs_driver
        from cinder.volume.drivers import remotefs
        share, _src, base = self.shares['generic']
        conf = self._configure(
            'generic', nfs_driver.nfs_opts + remotefs.nas_opts, {
                'volume_backend_name': 'generic',
                'nfs_shares_config': self._shares_file('generic'),
                'nfs_mount_point_base': base,
                'nfs_snapshot_support': True,
                'nas_secure_file_operations': 'false',
                'nas_secure_file_permissions': 'false'})
        drv = nfs_driver.NfsDriver(configuration=conf, host='bench@generic')
        drv.do_setup(self.ctxt)
        drv.check_for_setup_error()
        drv._ensure_shares_mounted()
        self._add('generic', drv, share)

    def _add(self, name, drv, share):
        self.drivers[name] = drv
        self.pools[name] = share
        stats = drv.get_volume_stats(refresh=True) or {}
        sparse = stats.get('sparse_copy_volume')
        if sparse is None:
            pools = stats.get('pools') or [{}]
            sparse = pools[0].get('sparse_copy_volume', False)
        drv._bench_sparse_copy = bool(sparse)

    # -- accounting ------------------------------------------------------

    def record(self, **rec):
        rec.setdefault('scale', self.scale)
        rec.setdefault('latency', self.latency)
        self.spec['recorder'](**rec)

    def _used_bytes(self):
        if self.fs:
            _syncfs(self.fs)
            st = os.statvfs(self.fs)
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        total = 0
        for top in (self.sim.root,):
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    try:
                        total += os.lstat(
                            os.path.join(dirpath, name)).st_blocks * 512
                    except OSError:
                        pass
        return total

    def _counted(self, fn):
        self.sim.reset_counts()
        result = fn()
        return self.sim.request_counts(), result

    def _setup_call(self, name, fn):
        """A driver call that prepares a measurement (not measured)."""
        counts, result = self._counted(fn)
        self.logins[name] += counts.get(LOGIN, 0)
        self.requests[name] += sum(counts.values())
        return result

    def measure(self, name, workload, rep, fn, check=None):
        used0 = self._used_bytes()
        io0 = _io_bytes()
        self.sim.reset_counts()
        self.record(type='start', driver=name, workload=workload, rep=rep)
        status, error = 'ok', None
        self.breakdown.start()
        t0 = time.perf_counter()
        try:
            with eventlet.Timeout(self.deadline, TimedOut):
                fn()
        except TimedOut:
            status = 'timeout'
        except Exception as e:
            status, error = 'error', '%s: %s' % (type(e).__name__, e)
        wall = time.perf_counter() - t0
        parts = self.breakdown.stop(wall)
        parts['array'] = self.sim.busy_seconds()
        counts = self.sim.request_counts()
        used1 = self._used_bytes()
        io1 = _io_bytes()
        note = None
        if status == 'ok' and check is not None:
            try:
                note = check()
            except Exception as e:
                note = 'check failed: %s' % e
            if note:
                status = 'wrong'
        n = sum(counts.values())
        self.logins[name] += counts.get(LOGIN, 0)
        self.requests[name] += n
        self.record(type='op', driver=name, workload=workload, rep=rep,
                    status=status, error=error, note=note, wall=wall,
                    requests=n, counts=counts,
                    logins=counts.get(LOGIN, 0),
                    bytes=used1 - used0, io_bytes=io1 - io0,
                    floor=n * self.latency, breakdown=parts)
        if status == 'timeout':
            self.dead.add((name, workload))
        return status

    # -- objects ---------------------------------------------------------

    def _db_volume(self, name, size=1):
        from cinder import objects
        from cinder.volume import volume_types
        vtype = volume_types.get_default_volume_type(self.ctxt)
        vol = objects.Volume(
            context=self.ctxt, size=size,
            host='bench@%s#%s' % (name, self.pools[name]),
            status='available', attach_status='detached',
            project_id='bench', user_id='bench',
            volume_type_id=vtype['id'], availability_zone='nova',
            display_name='bench')
        vol.create()
        return vol

    def new_volume(self, name, size=1, data=True):
        drv = self.drivers[name]
        vol = self._db_volume(name, size)
        update = self._setup_call(name, lambda: drv.create_volume(vol))
        vol.update(update or {})
        vol.provider_location = vol.provider_location or self.pools[name]
        vol.save()
        if data and self.data:
            self.write(name, vol, self.pattern(vol.id))
        return vol

    def pattern(self, seed):
        block = hashlib.sha256(seed.encode()).digest() * (MiB // 32)
        return block * max(1, self.data // MiB)

    def path(self, name, vol):
        return os.path.join(self._mount(name), vol.name)

    def _mount(self, name):
        drv = self.drivers[name]
        return drv._get_mount_point_for_share(self.pools[name])

    def write(self, name, vol, data):
        with open(self.path(name, vol), 'r+b') as f:
            f.write(data)

    def read(self, name, vol, length):
        with open(self.path(name, vol), 'rb') as f:
            return f.read(length)

    def new_snapshot(self, name, vol):
        from cinder import objects
        drv = self.drivers[name]
        snap = objects.Snapshot(
            context=self.ctxt, volume_id=vol.id, volume_size=vol.size,
            status='creating', project_id='bench', user_id='bench',
            display_name='bench', volume_type_id=vol.volume_type_id)
        snap.create()
        return snap, drv

    def snapshot(self, name, vol):
        snap, drv = self.new_snapshot(name, vol)
        update = self._setup_call(name, lambda: drv.create_snapshot(snap))
        snap.update(update or {})
        snap.status = 'available'
        snap.save()
        return snap

    def array_descriptions(self):
        return [s['description'] for s in self.sim.inventory()['snapshots']]

    # -- workloads -------------------------------------------------------

    def w_create_snapshot(self, name, rep):
        vol = self.new_volume(name)
        snap, drv = self.new_snapshot(name, vol)

        return self.measure(name, 'create_snapshot', rep,
                            lambda: drv.create_snapshot(snap))

    def w_delete_snapshot(self, name, rep):
        vol = self.new_volume(name)
        snap = self.snapshot(name, vol)
        drv = self.drivers[name]

        def check():
            if name != 'generic' and snap.name in self.array_descriptions():
                return 'array snapshot left behind (reported success)'

        return self.measure(name, 'delete_snapshot', rep,
                            lambda: drv.delete_snapshot(snap), check)

    def w_from_snapshot(self, name, rep, size=1,
                        workload='from_snapshot'):
        vol = self.new_volume(name)
        snap = self.snapshot(name, vol)
        new = self._db_volume(name, size)
        drv = self.drivers[name]

        def op():
            new.update(drv.create_volume_from_snapshot(new, snap) or {})

        return self.measure(name, workload, rep, op,
                            self._same_data(name, new, vol.id, size))

    def w_from_snapshot_larger(self, name, rep):
        return self.w_from_snapshot(name, rep, 2, 'from_snapshot_larger')

    def _same_data(self, name, vol, seed, size=None):
        def check():
            want = self.pattern(seed)
            if self.read(name, vol, len(want)) != want:
                return 'wrong data'
            if size is not None and name != 'generic':
                got = os.stat(self.path(name, vol)).st_size
                if got != size * GiB:
                    return 'size %d, want %d GiB' % (got, size)
        return check

    def w_clone(self, name, rep, size=1, workload='clone'):
        src = self.new_volume(name)
        new = self._db_volume(name, size)
        drv = self.drivers[name]

        def op():
            new.update(drv.create_cloned_volume(new, src) or {})

        return self.measure(name, workload, rep, op,
                            self._same_data(name, new, src.id, size))

    def w_clone_larger(self, name, rep):
        return self.w_clone(name, rep, 2, 'clone_larger')

    def w_revert(self, name, rep):
        vol = self.new_volume(name)
        snap = self.snapshot(name, vol)
        drv = self.drivers[name]
        if name != 'generic':
            # raw files: overwrite, the revert must bring the data back
            self.write(name, vol, b'\xff' * len(self.pattern(vol.id)))

        def op():
            try:
                drv.revert_to_snapshot(self.ctxt, vol, snap)
            except NotImplementedError:
                self._generic_revert(name, vol, snap)

        check = None if name == 'generic' else self._same_data(
            name, vol, vol.id)
        return self.measure(name, 'revert', rep, op, check)

    def _generic_revert(self, name, vol, snap):
        """What cinder's volume manager does without a driver revert.

        ``VolumeManager._revert_to_snapshot_generic``: a temporary volume
        from the snapshot, a full copy of it onto the volume (sparse only
        if the driver reports ``sparse_copy_volume``), delete the
        temporary volume.
        """
        from cinder.volume import volume_utils
        drv = self.drivers[name]
        tmp = self._db_volume(name, vol.size)
        tmp.update(drv.create_volume_from_snapshot(tmp, snap) or {})
        tmp.provider_location = tmp.provider_location or self.pools[name]
        dest = os.path.join(self._mount(name),
                            drv.get_active_image_from_info(vol)
                            if name == 'generic' else vol.name)
        volume_utils.copy_volume(self.path(name, tmp), dest,
                                 vol.size * 1024, '1M',
                                 sparse=drv._bench_sparse_copy)
        drv.delete_volume(tmp)

    def w_extend(self, name, rep):
        vol = self.new_volume(name)
        drv = self.drivers[name]

        status = self.measure(name, 'extend', rep,
                              lambda: drv.extend_volume(vol, 2),
                              self._same_data(name, vol, vol.id, 2))
        vol.size = 2
        vol.save()
        return status

    def w_create(self, name, rep):
        vol = self._db_volume(name)
        drv = self.drivers[name]

        def op():
            update.update(drv.create_volume(vol) or {})

        def check():
            path = self.path(name, vol)
            if not os.path.isfile(path):
                return 'no volume file'
            if name != 'generic' and os.stat(path).st_size != GiB:
                return 'size %d, want 1 GiB' % os.stat(path).st_size

        update = {}
        status = self.measure(name, 'create', rep, op, check)
        vol.update(update)
        vol.provider_location = vol.provider_location or self.pools[name]
        vol.save()
        return status

    def w_delete(self, name, rep):
        vol = self.new_volume(name)
        drv = self.drivers[name]

        def check():
            if os.path.exists(self.path(name, vol)):
                return 'volume file left behind'

        return self.measure(name, 'delete', rep,
                            lambda: drv.delete_volume(vol), check)

    # clone_image: ours = a cache hit on the array; the others have no
    # clone_image (they decline), so their best "cache hit" is cinder's
    # generic image-volume cache: create_cloned_volume of the cached
    # image volume.

    def _image_setup(self):
        if getattr(self, 'image', None):
            return
        path = os.path.join(self.work, 'image.raw')
        size = int(self.spec.get('image_mib', 64)) * MiB
        make_image(path, size, size)
        self.image = FileImageService(path, str(uuid.uuid4()))
        self.image_volumes = {}

    def _image_cached(self, name):
        self._image_setup()
        if name in self.image_volumes:
            return self.image_volumes[name]
        drv = self.drivers[name]
        vol = self.new_volume(name, data=False)
        self._setup_call(name, lambda: drv.copy_image_to_volume(
            self.ctxt, vol, self.image, self.image.image_id))
        self.image_volumes[name] = vol
        return vol

    def w_clone_image(self, name, rep):
        cached = self._image_cached(name)
        drv = self.drivers[name]
        vol = self._db_volume(name)
        meta = self.image.show(self.ctxt, self.image.image_id)

        def op():
            update, done = drv.clone_image(self.ctxt, vol, (None, []), meta,
                                           self.image)
            if not done:
                if name == 'ours':
                    raise RuntimeError('clone_image declined a cached image')
                update = drv.create_cloned_volume(vol, cached)
            vol.update(update or {})

        def check():
            with open(self.image.path, 'rb') as f:
                want = f.read(MiB)
            if self.read(name, vol, MiB) != want:
                return 'wrong data'

        return self.measure(name, 'clone_image', rep, op, check)

    # -- files on the share ---------------------------------------------

    def _plant(self, name, count):
        """``count`` unmanaged raw files (512 bytes of data, 1 GiB)."""
        src = self.shares[name][1]
        head = os.urandom(512)
        for i in range(count):
            with open(os.path.join(src, 'disk-%06d.img' % i), 'wb') as f:
                f.write(head)
                f.truncate(GiB)

    def _sampled_array_stats(self, interval=10.0):
        """The simulator samples its datastore statistics like an array.

        A VMstore answers statsRealtime from statistics it keeps (slices
        of ``timeStart``..``timeEnd``), not by walking its file system per
        request; the simulator does walk, so without this its own walk of
        every planted file would be billed to the driver asking.
        """
        state = self.sim._state
        compute = state.datastore_stat
        cache = {}

        def sampled():
            now = time.monotonic()
            if 'at' not in cache or now - cache['at'] > interval:
                cache.update(at=now, stat=compute())
            return dict(cache['stat'])

        state.datastore_stat = sampled

    def _timed(self, fn, deadline):
        """(status, error, wall seconds, result) of ``fn()``, bounded.

        The simulator's request counts are reset first, so they count
        what ``fn`` asked of the array.
        """
        self.sim.reset_counts()
        status, error, result = 'ok', None, None
        t0 = time.perf_counter()
        try:
            with eventlet.Timeout(deadline, TimedOut):
                result = fn()
        except TimedOut:
            status = 'timeout'
        except NotImplementedError:
            status = 'n/a'
        except Exception as e:
            status, error = 'error', '%s: %s' % (type(e).__name__, e)
        return status, error, time.perf_counter() - t0, result

    def files_axis(self):
        """Stats and manageable listings against ``files`` per share."""
        count = int(self.spec['files'])
        names = list(self.spec['drivers'])
        for name in names:
            self._plant(name, count)
        self._sampled_array_stats()
        deadline = float(self.spec.get('files_deadline', 600))
        workloads = [('stats', lambda d: d.get_volume_stats(refresh=True))]
        if count <= int(self.spec.get('manageable_max', 5000)):
            workloads.append(('manageable', lambda d: d.get_manageable_volumes(
                [], None, 1000, 0, ['reference'], ['asc'])))
        for workload, call in workloads:
            for rep in range(int(self.spec['reps'])):
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    drv = self.drivers[name]
                    if workload == 'manageable' and not hasattr(
                            drv, 'get_manageable_volumes'):
                        self.record(type='files', driver=name, files=count,
                                    workload=workload, rep=rep, status='n/a',
                                    error=None, wall=None, entries=None,
                                    requests=0)
                        continue
                    status, error, wall, result = self._timed(
                        lambda: call(drv), deadline)
                    entries = (len(result) if workload == 'manageable'
                               and isinstance(result, list) else None)
                    self.record(type='files', driver=name, files=count,
                                workload=workload, rep=rep, status=status,
                                error=error, wall=wall, entries=entries,
                                requests=sum(
                                    self.sim.request_counts().values()))

    # -- concurrency -------------------------------------------------------

    def concurrency_axis(self):
        """N operations on N different volumes: serial, then green-parallel.

        As cinder-volume runs them (greenthreads of one process).  With a
        per-request latency the parallel run should overlap the waits; a
        lock held across different volumes would serialise it (ratio 1).
        """
        n = int(self.spec['concurrency'])
        deadline = float(self.spec.get('files_deadline', 600))
        for name in self.spec['drivers']:
            drv = self.drivers[name]
            for workload in ('from_snapshot', 'clone'):
                for mode in ('serial', 'parallel'):
                    jobs = []
                    for _i in range(n):
                        src = self.new_volume(name)
                        new = self._db_volume(name)
                        if workload == 'from_snapshot':
                            snap = self.snapshot(name, src)
                            jobs.append((new, src, lambda new=new, snap=snap:
                                         drv.create_volume_from_snapshot(
                                             new, snap)))
                        else:
                            jobs.append((new, src, lambda new=new, src=src:
                                         drv.create_cloned_volume(new, src)))
                    if mode == 'serial':
                        def run(jobs=jobs):
                            for _new, _src, job in jobs:
                                job()
                    else:
                        def run(jobs=jobs):
                            pool = greenpool.GreenPool(n)
                            list(pool.imap(lambda j: j[2](), jobs))
                    status, error, wall, _result = self._timed(run, deadline)
                    wrong = 0
                    if status == 'ok':
                        for new, src, _job in jobs:
                            new.provider_location = (new.provider_location
                                                     or self.pools[name])
                            want = self.pattern(src.id)
                            if self.read(name, new, len(want)) != want:
                                wrong += 1
                        if wrong:
                            status = 'wrong'
                    self.record(type='concurrency', driver=name,
                                workload=workload, mode=mode, n=n,
                                status=status, error=error, wall=wall,
                                wrong=wrong, requests=sum(
                                    self.sim.request_counts().values()))
                self._cleanup()

    # -- migration ---------------------------------------------------------

    def migration_axis(self):
        """Move a volume to the other pool: ours vs Cinder's host copy.

        Both paths run on our driver with two shares of one datastore.
        "ours" is migrate_volume (an array clone); "host copy" is what
        Cinder's generic migration does when a driver declines: a new
        volume on the destination pool, ``volume_utils.copy_volume`` (dd,
        sparse, as the volume manager calls it for raw NFS files) and the
        source deleted.  Bytes written by this process and its children
        (getrusage ru_oublock: what dd and the driver sent to storage) and
        the growth of the filesystem's used space are recorded; the data
        of the moved volume is checked.
        """
        from cinder.volume import volume_utils
        name = 'ours'
        drv = self.drivers[name]
        src_share, dest_share = self.pools[name], self.shares['ours2'][0]
        mib = int(self.spec['migration'])
        pools = drv.get_volume_stats(refresh=True)['pools']
        caps = [p for p in pools if p['pool_name'] == dest_share][0]
        host = {'host': 'bench@%s#%s' % (name, dest_share),
                'capabilities': caps}
        deadline = float(self.spec.get('files_deadline', 600))

        def source():
            vol = self._db_volume(name, size=1)
            vol.update(self._setup_call(name, lambda: drv.create_volume(vol))
                       or {})
            vol.provider_location = vol.provider_location or src_share
            vol.save()
            data = hashlib.sha256(vol.id.encode()).digest() * (
                MiB // 32) * mib
            self.write(name, vol, data)
            os.sync()
            return vol, data

        def dest_path(vol):
            return os.path.join(drv._get_mount_point_for_share(dest_share),
                                vol.name)

        def ours(vol):
            moved, update = drv.migrate_volume(self.ctxt, vol, host)
            if not moved:
                raise RuntimeError('the driver declined the migration')
            vol.update(update or {})
            return vol

        def host_copy(vol):
            new = self._db_volume(name, size=vol.size)
            new.host = host['host']
            new.provider_location = dest_share
            new.save()
            drv.create_volume(new)
            volume_utils.copy_volume(
                os.path.join(drv._get_mount_point_for_share(src_share),
                             vol.name),
                dest_path(new), vol.size * 1024, '1M',   # volume_dd_blocksize
                sparse=True)
            drv.delete_volume(vol)
            return new

        for rep in range(int(self.spec['reps'])):
            for path, move in (('ours', ours), ('host_copy', host_copy)):
                vol, data = source()
                used0, io0 = self._used_bytes(), _io_bytes()
                copies0 = self.sim.inventory()['copies']
                self.sim.reset_counts()
                status, error, wall, moved = self._timed(
                    lambda: move(vol), deadline)
                os.sync()
                io1, used1 = _io_bytes(), self._used_bytes()
                counts = self.sim.request_counts()
                # how the simulated array copied (in this same process:
                # a plain copy without reflink counts as host bytes)
                copies = {k: v - copies0.get(k, 0) for k, v in
                          self.sim.inventory()['copies'].items()}
                wrong = None
                if status == 'ok':
                    with open(dest_path(moved), 'rb') as f:
                        if f.read(len(data)) != data:
                            status, wrong = 'wrong', 'data differs'
                    if os.path.lexists(os.path.join(
                            drv._get_mount_point_for_share(src_share),
                            vol.name)):
                        status, wrong = 'wrong', 'source file left'
                self.record(type='migration', driver=name, path=path,
                            rep=rep, mib=mib, status=status,
                            error=error or wrong, wall=wall,
                            host_bytes=io1 - io0, used_bytes=used1 - used0,
                            clones=counts.get(CLONE, 0),
                            array_copies=copies,
                            requests=sum(counts.values()))
            self._cleanup()

    # -- boot storm -------------------------------------------------------

    def disk_bandwidth(self, mib=None):
        """Sequential write bandwidth of the shares' file system.

        Writes the storm image's size (random data, 4 MiB blocks) to a
        file beside the shares and fdatasyncs it: the floor of writing
        the image once.
        """
        mib = int(mib or self.spec['storm_image_mib'])
        path = os.path.join(self.sim.datastore, 'bandwidth.tmp')
        block = os.urandom(4 * MiB)
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = 0
            while written < mib * MiB:
                written += os.write(fd, block[:min(len(block),
                                                   mib * MiB - written)])
            os.fdatasync(fd)
        finally:
            os.close(fd)
        wall = time.perf_counter() - t0
        os.unlink(path)
        self.record(type='bandwidth', bytes=written, wall=wall,
                    mib_s=written / MiB / wall if wall else None)

    def boot_storm(self, name):
        """N volumes from one uncached image, as the manager does it.

        clone_image first; if the driver declines, create_volume +
        copy_image_to_volume (a download).  ``concurrency`` requests at a
        time, like cinder-volume's workers.
        """
        n = int(self.spec['storm_volumes'])
        path = os.path.join(self.work, 'storm.raw')
        if not os.path.exists(path):
            size = int(self.spec['storm_image_mib']) * MiB
            make_image(path, size, size)
        image = FileImageService(path, str(uuid.uuid4()))
        meta = image.show(self.ctxt, image.image_id)
        drv = self.drivers[name]
        size_gib = max(1, -(-os.stat(path).st_size // GiB))
        vols = [self._db_volume(name, size_gib) for _ in range(n)]
        errors = []

        def one(vol):
            try:
                update, done = drv.clone_image(self.ctxt, vol, (None, []),
                                               meta, image)
                if not done:
                    update = drv.create_volume(vol) or {}
                    vol.update(update)
                    vol.provider_location = (vol.provider_location
                                             or self.pools[name])
                    drv.copy_image_to_volume(self.ctxt, vol, image,
                                             image.image_id)
                else:
                    vol.update(update or {})
            except Exception as e:
                errors.append('%s: %s' % (type(e).__name__, e))

        def op():
            pool = greenpool.GreenPool(int(self.spec['storm_concurrency']))
            try:
                for vol in vols:
                    pool.spawn(one, vol)
                pool.waitall()
            finally:
                # on timeout, stop the stragglers before anything else
                for gt in list(pool.coroutines_running):
                    gt.kill()
            if errors:
                raise RuntimeError('%d of %d failed; first: %s'
                                   % (len(errors), n, errors[0]))

        def check():
            with open(path, 'rb') as f:
                want = f.read(MiB)
            bad = [v for v in vols if self.read(name, v, MiB) != want]
            if bad:
                return '%d volumes with wrong data' % len(bad)

        status = self.measure(name, 'boot_storm', 0, op, check)
        self.record(type='storm', driver=name, downloads=image.downloads,
                    volumes=n, image_bytes=os.stat(path).st_size,
                    status=status)

    # -- driver -----------------------------------------------------------

    def run(self):
        names = list(self.spec['drivers'])
        if self.spec.get('files'):
            self.files_axis()
            return
        if self.spec.get('concurrency'):
            self.concurrency_axis()
            return
        if self.spec.get('migration'):
            self.migration_axis()
            return
        if self.spec.get('storm'):
            self.disk_bandwidth()
            for name in names:
                self.boot_storm(name)
            return
        for workload in self.spec['workloads']:
            fn = getattr(self, 'w_' + workload)
            for rep in range(int(self.spec['reps'])):
                # rotate the order so no driver always goes first
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    key = (name, workload)
                    if key in self.skip or key in self.dead:
                        continue
                    try:
                        fn(name, rep)
                    except Exception as e:
                        self.record(type='op', driver=name,
                                    workload=workload, rep=rep,
                                    status='setup-error',
                                    error='%s: %s' % (type(e).__name__, e))
            self._cleanup()
        for name in names:
            self.record(type='lifetime', driver=name,
                        logins=self.logins[name],
                        requests=self.requests[name])

    def _cleanup(self):
        """Remove what a workload left, so the array scale stays put."""
        from cinder_tintri import client as tclient
        for name, (_share, src, _base) in self.shares.items():
            for entry in os.listdir(src):
                if entry.startswith('.') or entry.startswith('image-'):
                    continue
                keep = [v.name for v in getattr(self, 'image_volumes',
                                                {}).values()]
                if entry in keep:
                    continue
                full = os.path.join(src, entry)
                if os.path.isdir(full):
                    shutil.rmtree(full, ignore_errors=True)
                else:
                    os.unlink(full)
        sim = self.sim
        latency = self.latency
        sim.set_latency(0)
        try:
            client = tclient.TClient(
                sim.host, sim.username, sim.password, port=sim.port,
                verify=True, ca_path=sim.ca_path)
            try:
                for snap in sim.inventory()['snapshots']:
                    if snap['creatorName'] == 'seed':
                        continue
                    if snap['description'].startswith('image-'):
                        continue
                    try:
                        client.delete_snapshot(snap['uuid']['uuid'])
                    except tclient.TintriError:
                        pass
            finally:
                client.close()
        finally:
            sim.set_latency(latency)


def main(argv):
    with open(argv[0]) as f:
        spec = json.load(f)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    recorder = Recorder(spec['out'])
    spec['recorder'] = recorder
    with contextlib.ExitStack() as stack:
        stack.callback(recorder.close)
        cell = Cell(spec, stack)
        try:
            cell.setup()
            cell.run()
        except Exception as e:
            logging.exception('cell failed')
            recorder(type='cell-error', scale=spec['scale'],
                     latency=spec['latency'],
                     error='%s: %s' % (type(e).__name__, e))
            return 1
        finally:
            recorder(type='end', scale=spec['scale'],
                     latency=spec['latency'])
    return 0
