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
"""Active-active: several services of one cluster share the locks in redis.

The test starts its own ``redis-server`` on a random loopback port (no
persistence; stopped by PID) and one VMstore simulator, then:

* runs the driver in two separate worker processes (this module run as
  ``python -m tests.functional.test_active_active worker <spec>``), each
  a different host of cluster ``c1`` with ``[coordination] backend_url``
  on that redis, contending for the same locks:

  - ``create_snapshot`` of one volume from both (lock
    ``tintri-<volume id>``): the array calls made under the lock never
    overlap in time across the processes; the same run with a per-process
    ``file://`` backend (no shared lock) does overlap, so the check can
    see a missing lock;
  - ``clone_image`` of one uncached image from both (lock
    ``tintri-image-<image id>``): exactly one image snapshot on the
    array, every volume holds the image;

* starts two real ``cinder-volume`` processes with ``cluster = c1`` and
  the redis coordination backend on one database; both initialise the
  backend (cinder-volume refuses a clustered backend whose driver does
  not declare ``SUPPORTS_ACTIVE_ACTIVE``).
"""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import testtools

from cinder_tintri.simulator import VMstoreSimulator

SHARE = '127.0.0.1:/tintri/cinder'
GLANCE = '127.0.0.1:/tintri/glance'
BACKEND = 'tintri-1'
CLUSTER = 'c1'
WORKER_DEADLINE = 120.0
START_DEADLINE = 150.0
REDIS_DEADLINE = 15.0
LATENCY = 0.2           # simulator latency: each array call takes this
SNAPSHOTS_EACH = 4
IMAGE_CLONES_EACH = 2


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _stop(proc, timeout=30):
    """Stop a process group we started, by its PID."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


class RedisServer(object):
    """redis-server on 127.0.0.1:<free port>, no persistence."""

    def __init__(self, test, workdir):
        exe = shutil.which('redis-server')
        if not exe:
            test.skipTest('redis-server not installed (tools/setup-env.sh)')
        self.port = _free_port()
        self.url = 'redis://127.0.0.1:%d' % self.port
        self.log = open(os.path.join(workdir, 'redis.log'), 'wb')
        test.addCleanup(self.log.close)
        self.proc = subprocess.Popen(
            [exe, '--bind', '127.0.0.1', '--port', str(self.port),
             '--save', '', '--appendonly', 'no', '--protected-mode', 'yes',
             '--dir', workdir],
            stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        test.addCleanup(_stop, self.proc)
        import redis
        self.client = redis.Redis(host='127.0.0.1', port=self.port,
                                  socket_timeout=2)
        test.addCleanup(self.client.close)
        deadline = time.monotonic() + REDIS_DEADLINE
        while True:
            try:
                if self.client.ping():
                    return
            except Exception:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                test.fail('redis-server did not start on port %d'
                          % self.port)
            time.sleep(0.1)


class ActiveActiveTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix='tintri-aa-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.redis = RedisServer(self, self.tmp)
        # The strict VMstore >= 6 array (issue 17).
        self.sim = VMstoreSimulator(password='pw-' + uuid.uuid4().hex,
                                    profile='vmstore6')
        self.sim.start()
        self.addCleanup(self.sim.stop)
        for sub in ('cinder', 'glance'):
            os.makedirs(os.path.join(self.sim.datastore, sub))
        self.shares = os.path.join(self.tmp, 'shares')
        with open(self.shares, 'w') as f:
            f.write(SHARE + '\n')
        self.image_shares = os.path.join(self.tmp, 'image_shares')
        with open(self.image_shares, 'w') as f:
            f.write(GLANCE + '\n')

    # -- configuration ------------------------------------------------

    def _conf(self, name, coordination_url, mount_base, extra=''):
        state = os.path.join(self.tmp, name)
        os.makedirs(state, exist_ok=True)
        path = os.path.join(self.tmp, name + '.conf')
        with open(path, 'w') as f:
            f.write(f"""[DEFAULT]
host = {name}
cluster = {CLUSTER}
enabled_backends = {BACKEND}
transport_url = fake:/
state_path = {state}
debug = True
{extra}
[oslo_concurrency]
lock_path = {state}/locks

[coordination]
backend_url = {coordination_url}

[database]
# Two processes share one sqlite file here: writers wait for the lock.
connection = sqlite:///{self.tmp}/cinder.sqlite?timeout=30

[{BACKEND}]
volume_driver = cinder_tintri.driver.TintriDriver
volume_backend_name = tintri
nfs_shares_config = {self.shares}
nfs_mount_point_base = {mount_base}
nas_secure_file_operations = false
nas_secure_file_permissions = false
tintri_server_hostname = {self.sim.host}
tintri_server_port = {self.sim.port}
tintri_server_username = {self.sim.username}
tintri_server_password = {self.sim.password}
driver_ssl_cert_path = {self.sim.ca_path}
tintri_image_shares_config = {self.image_shares}
tintri_image_cache_cleanup_interval = 0
tintri_openstack_hostname = keystone.test
tintri_read_timeout = 30
""")
        return path

    # -- driver workers -----------------------------------------------

    def _run_workers(self, op, urls, **args):
        """Run ``op`` in one worker process per URL, started together."""
        go = os.path.join(self.tmp, 'go-%s' % uuid.uuid4().hex)
        procs = []
        for i, url in enumerate(urls):
            name = 'worker%d-%s' % (i, uuid.uuid4().hex[:6])
            mount_base = os.path.join(self.tmp, name, 'mnt')
            os.makedirs(mount_base)
            spec = dict(args, op=op, index=i, go=go,
                        conf=self._conf(name, url, mount_base),
                        ready=os.path.join(self.tmp, name + '.ready'),
                        datastore=self.sim.datastore)
            out = open(os.path.join(self.tmp, name + '.out'), 'w+')
            self.addCleanup(out.close)
            proc = subprocess.Popen(
                [sys.executable, '-m', 'tests.functional.test_active_active',
                 'worker', json.dumps(spec)],
                stdout=out, stderr=subprocess.STDOUT, cwd=_top_dir(),
                start_new_session=True)
            self.addCleanup(_stop, proc)
            procs.append((proc, out, spec))
        deadline = time.monotonic() + WORKER_DEADLINE
        while not all(os.path.exists(s['ready']) for _p, _o, s in procs):
            self._check_alive(procs, deadline)
            time.sleep(0.1)
        open(go, 'w').close()
        results = []
        for proc, out, spec in procs:
            while proc.poll() is None:
                self._check_alive(procs, deadline)
                time.sleep(0.1)
            out.seek(0)
            text = out.read()
            if proc.returncode != 0:
                self.fail('worker %d exited %s:\n%s'
                          % (spec['index'], proc.returncode, text[-4000:]))
            line = [x for x in text.splitlines() if x.startswith('RESULT ')]
            self.assertTrue(line, text[-4000:])
            results.append(json.loads(line[-1][len('RESULT '):]))
        return results

    def _check_alive(self, procs, deadline):
        for proc, out, spec in procs:
            if proc.poll() not in (None, 0):
                out.seek(0)
                self.fail('worker %d died (%s):\n%s' % (
                    spec['index'], proc.returncode, out.read()[-4000:]))
        if time.monotonic() > deadline:
            self.fail('workers did not finish within %ss' % WORKER_DEADLINE)

    @staticmethod
    def _overlaps(a, b):
        return sum(1 for s1, e1 in a for s2, e2 in b
                   if s1 < e2 and s2 < e1)

    def test_volume_lock_excludes_across_processes(self):
        self.sim.set_latency(LATENCY)
        volume_id = str(uuid.uuid4())
        path = os.path.join(self.sim.datastore, 'cinder',
                            'volume-%s' % volume_id)
        with open(path, 'wb') as f:
            f.truncate(1024 * 1024)
        redis_url = self.redis.url
        shared = self._run_workers('snapshots', [redis_url, redis_url],
                                   volume_id=volume_id)
        a, b = (r['intervals'] for r in shared)
        self.assertEqual(SNAPSHOTS_EACH, len(a))
        self.assertEqual(SNAPSHOTS_EACH, len(b))
        self.assertEqual(0, self._overlaps(a, b), (a, b))
        # The same without a shared lock (one file:// backend each):
        # the array calls overlap, so the check above can fail.
        alone = self._run_workers(
            'snapshots', ['file://' + os.path.join(self.tmp, 'l%d' % i)
                          for i in range(2)], volume_id=volume_id)
        a, b = (r['intervals'] for r in alone)
        self.assertGreater(self._overlaps(a, b), 0, (a, b))
        # Filed under the array's VM of the volume file (vmstore6).
        snaps = [s for s in self.sim.inventory()['snapshots']
                 if s.get('file') == 'cinder/volume-%s' % volume_id]
        self.assertEqual(4 * SNAPSHOTS_EACH, len(snaps))
        self.assertEqual(4 * SNAPSHOTS_EACH,
                         len({s['description'] for s in snaps}))

    def test_concurrent_clone_image_makes_one_image_snapshot(self):
        self.sim.set_latency(LATENCY)
        image_id = str(uuid.uuid4())
        data = os.urandom(1024 * 1024)
        with open(os.path.join(self.sim.datastore, 'glance',
                               image_id), 'wb') as f:
            f.write(data)
        results = self._run_workers('clone_image',
                                    [self.redis.url, self.redis.url],
                                    image_id=image_id)
        image_snaps = [s for s in self.sim.inventory()['snapshots']
                       if s['description'] == 'image-' + image_id]
        self.assertEqual(1, len(image_snaps), image_snaps)
        volumes = [v for r in results for v in r['volumes']]
        self.assertEqual(2 * IMAGE_CLONES_EACH, len(volumes))
        for name in volumes:
            with open(os.path.join(self.sim.datastore, 'cinder', name),
                      'rb') as f:
                self.assertEqual(data, f.read(len(data)))
        self.assertEqual([], [e for e in os.listdir(
            os.path.join(self.sim.datastore, 'cinder'))
            if e.startswith('.tintri-tmp-')])

    # -- two cinder-volume services in one cluster -------------------

    def test_two_cinder_volume_services_in_one_cluster(self):
        if not os.path.exists(_bin('cinder-volume')):
            self.skipTest('cinder-volume not installed')
        from tests.functional import fixtures as tfixtures
        if not tfixtures.is_root():
            self.skipTest('needs root for the share bind mounts')
        confs, logs = [], []
        for i in range(2):
            name = 'cvol%d' % i
            mount_base = os.path.join(self.tmp, name, 'mnt')
            os.makedirs(mount_base)
            self.useFixture(tfixtures.ShareFixture(
                SHARE, os.path.join(self.sim.datastore, 'cinder'),
                mount_base))
            self.useFixture(tfixtures.ShareFixture(
                GLANCE, os.path.join(self.sim.datastore, 'glance'),
                mount_base))
            log = os.path.join(self.tmp, name + '.log')
            logs.append(log)
            confs.append(self._conf(
                name, self.redis.url, mount_base,
                extra='log_file = %s\nbackend_stats_polling_interval = 3\n'
                      '[cinder_sys_admin]\nhelper_command = %s '
                      '--config-file %s\n'
                % (log, _bin('privsep-helper'),
                   os.path.join(self.tmp, name + '.conf'))))
        subprocess.run([_bin('cinder-manage'), '--config-file', confs[0],
                        'db', 'sync'], check=True, capture_output=True,
                       timeout=600)
        wanted = ('Driver post RPC initialization completed successfully',
                  'Tintri backend tintri pools: %s' % SHARE)
        deadline = time.monotonic() + START_DEADLINE
        texts = [''] * len(logs)
        procs = []

        def poll(count, want):
            # True when the first ``count`` services logged ``want``.
            for i, log in enumerate(logs[:count]):
                try:
                    with open(log, errors='replace') as f:
                        texts[i] = f.read()
                except FileNotFoundError:
                    pass
                if procs[i].poll() is not None:
                    with open(confs[i] + '.out', errors='replace') as f:
                        out = f.read()
                    self.fail('cinder-volume %d exited %s:\n%s\n%s'
                              % (i, procs[i].returncode, texts[i][-6000:],
                                 out[-2000:]))
            if all(all(w in t for w in want) for t in texts[:count]):
                return True
            if time.monotonic() > deadline:
                self.fail('cinder-volume services not up in %ss:\n%s'
                          % (START_DEADLINE, '\n----\n'.join(
                              t[-3000:] for t in texts)))
            time.sleep(0.5)
            return False

        for conf in confs:
            # One sqlite file is shared: the second service starts once
            # the first has written its service rows (sqlite answers
            # "database is locked" to two processes upgrading read
            # transactions at once, whatever the busy timeout).
            while procs and not poll(len(procs), wanted[:1]):
                pass
            out = open(conf + '.out', 'wb')
            self.addCleanup(out.close)
            proc = subprocess.Popen([_bin('cinder-volume'), '--config-file',
                                     conf], stdout=out,
                                    stderr=subprocess.STDOUT,
                                    start_new_session=True)
            # Registered after redis: cleanups run in reverse, so the
            # services stop before the coordination backend.
            self.addCleanup(_stop, proc)
            procs.append(proc)
        while not poll(len(procs), wanted):
            pass
        for text in texts:
            self.assertNotIn('Active-Active configuration is not currently '
                             'supported', text)
            self.assertNotIn(self.sim.password, text)
        # Both services joined cluster c1 in the database.
        import sqlite3
        db = sqlite3.connect(os.path.join(self.tmp, 'cinder.sqlite'))
        self.addCleanup(db.close)
        rows = db.execute("SELECT host, cluster_name FROM services WHERE "
                          "topic = 'cinder-volume' AND deleted = 0"
                          ).fetchall()
        self.assertEqual(
            sorted([('cvol0@%s' % BACKEND, '%s@%s' % (CLUSTER, BACKEND)),
                    ('cvol1@%s' % BACKEND, '%s@%s' % (CLUSTER, BACKEND))]),
            sorted(rows))
        # Both services are members of the redis coordination backend.
        self.assertTrue(self.redis.client.keys('*'))


def _top_dir():
    return os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))


# ----------------------------------------------------------------------
# The worker: one driver in its own process, as one host of the cluster.
# ----------------------------------------------------------------------

def _worker(spec):
    from unittest import mock

    from cinder import context
    from cinder import coordination
    from cinder import objects
    from cinder.privsep import sys_admin_pctxt
    from cinder.volume import configuration
    from cinder.volume import driver as base_driver
    from os_brick.remotefs import remotefs as remotefs_brick
    from oslo_config import cfg

    from cinder_tintri import driver as tdriver

    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    objects.register_all()
    conf_file = spec['conf']
    cfg.CONF(['--config-file', conf_file], project='cinder')
    sys_admin_pctxt.set_client_mode(False)

    def fake_mount(client, share, flags=None):
        mount_point = client.get_mount_point(share)
        if not os.path.islink(mount_point):
            sub = share.split(':/tintri/', 1)[1]
            os.symlink(os.path.join(spec['datastore'], sub), mount_point)

    mock.patch.object(remotefs_brick.RemoteFsClient, 'mount', autospec=True,
                      side_effect=fake_mount).start()
    coordination.COORDINATOR.start()
    ctxt = context.get_admin_context()
    conf = configuration.Configuration(
        base_driver.volume_opts + tdriver.TintriDriver.get_driver_options(),
        config_group=BACKEND)
    drv = tdriver.TintriDriver(configuration=conf,
                               host='%s@%s' % (cfg.CONF.host, BACKEND),
                               cluster_name=CLUSTER)
    drv.do_setup(ctxt)
    drv.check_for_setup_error()
    result = {}
    try:
        if spec['op'] == 'snapshots':
            result = _worker_snapshots(spec, drv, ctxt)
        else:
            result = _worker_clone_image(spec, drv, ctxt)
    finally:
        drv._image_cache_stop()
        drv._client.close()
        coordination.COORDINATOR.stop()
    print('RESULT ' + json.dumps(result), flush=True)


def _wait_go(spec):
    open(spec['ready'], 'w').close()
    deadline = time.monotonic() + WORKER_DEADLINE
    while not os.path.exists(spec['go']):
        if time.monotonic() > deadline:
            raise RuntimeError('no go signal')
        time.sleep(0.01)


def _worker_snapshots(spec, drv, ctxt):
    from cinder import objects
    volume = _volume(ctxt, spec['volume_id'], provider_location=SHARE)
    intervals = []
    real = drv._client.create_snapshot

    def timed(*args, **kwargs):
        # Successful snapshots only: on vmstore6 the first, direct,
        # attempt is refused before the refresh protocol is used.
        start = time.time()
        result = real(*args, **kwargs)
        intervals.append((start, time.time()))
        return result
    drv._client.create_snapshot = timed
    _wait_go(spec)
    for _i in range(SNAPSHOTS_EACH):
        snap = objects.Snapshot(ctxt, id=str(uuid.uuid4()),
                                volume_id=volume.id, volume_size=1)
        snap.volume = volume
        drv.create_snapshot(snap)
    return {'intervals': intervals}


def _volume(ctxt, volume_id, **fields):
    """A volume object as the manager passes it (no database here)."""
    from cinder import objects
    return objects.Volume(ctxt, id=volume_id, _name_id=None, size=1,
                          host='h@%s#%s' % (BACKEND, SHARE),
                          encryption_key_id=None, admin_metadata={},
                          **fields)


def _worker_clone_image(spec, drv, ctxt):
    image_id = spec['image_id']
    meta = {'id': image_id, 'disk_format': 'raw',
            'container_format': 'bare', 'status': 'active',
            'size': 1024 * 1024, 'properties': {}}
    url = 'nfs://127.0.0.1/tintri/glance/%s' % image_id
    _wait_go(spec)
    names = []
    for _i in range(IMAGE_CLONES_EACH):
        volume = _volume(ctxt, str(uuid.uuid4()))
        update, cloned = drv.clone_image(ctxt, volume, (url, []), meta,
                                         None)
        if not cloned:
            raise RuntimeError('clone_image declined')
        names.append(volume.name)
    return {'volumes': names}


if __name__ == '__main__' and len(sys.argv) == 3 and \
        sys.argv[1] == 'worker':
    _worker(json.loads(sys.argv[2]))
