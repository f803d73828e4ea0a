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
"""Benchmark: this driver vs cinder's in-tree VMstore and generic NFS drivers.

One command runs the same workloads through the three drivers against the
VMstore simulator, on the same filesystem, in the same run, and writes a
markdown report with plots::

    python tools/benchmark.py                 # full matrix
    python tools/benchmark.py --quick         # CI smoke (seconds)
    python tools/benchmark.py --publish       # also doc/source/benchmark.rst

Each (array scale, latency) cell runs in its own child process (see
``tools/bench/cell.py``); the parent only schedules, enforces deadlines and
writes the report, so a driver stuck in an endless loop cannot keep the
run alive.
"""

# cinder (like cinder-volume) runs under eventlet: patch before anything
# imports ssl/socket/requests.
from cinder import monkey_patch; monkey_patch.patch()  # noqa: E402,E702,I100

import argparse  # noqa: E402,I100
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import cell as bcell  # noqa: E402
from bench import report as breport  # noqa: E402

# Extra seconds the parent grants an operation beyond the deadline before
# it kills the cell process (the in-process eventlet timeout fires first
# unless the operation never yields).
KILL_GRACE = 30.0
# Seconds a cell may spend on setup (simulator, XFS, drivers) and teardown.
CELL_OVERHEAD = 120.0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='CI smoke: 1 repetition, scale 10, latency 0, '
                        'one small workload per driver, no boot storm')
    p.add_argument('--reps', type=int, default=3,
                   help='repetitions per workload, driver and cell')
    p.add_argument('--scales', default='10,1000,10000',
                   help='existing snapshots on the array (comma list)')
    p.add_argument('--latencies', default='0,2,20',
                   help='simulated latency per REST request, ms')
    p.add_argument('--workloads', default=','.join(bcell.WORKLOADS))
    p.add_argument('--drivers', default=','.join(bcell.DRIVERS))
    p.add_argument('--deadline', type=float, default=5.0,
                   help='seconds one operation may take before it is '
                        'reported as "did not complete"')
    p.add_argument('--data-mib', type=int, default=4,
                   help='MiB of data written into each source volume')
    p.add_argument('--image-mib', type=int, default=32,
                   help='size of the image of the clone_image workload')
    p.add_argument('--page-size', type=int, default=2000,
                   help="simulator page size (its default)")
    p.add_argument('--storm-volumes', type=int, default=20)
    p.add_argument('--storm-image-mib', type=int, default=1024)
    p.add_argument('--storm-concurrency', type=int, default=20)
    p.add_argument('--storm-latency', type=float, default=2.0,
                   help='latency (ms) during the boot storm')
    p.add_argument('--storm-deadline', type=float, default=600.0,
                   help='seconds the whole boot storm of one driver may '
                        'take')
    p.add_argument('--no-storm', action='store_true')
    p.add_argument('--files', default='1000,5000,50000',
                   help='files on each share for the stats and manageable '
                        'listing axis (comma separated; empty: skip)')
    p.add_argument('--concurrency', type=int, default=20,
                   help='volumes per run of the concurrency axis (0: '
                        'skip)')
    p.add_argument('--concurrency-latency', type=float, default=20.0,
                   help='ms per REST request in the concurrency axis')
    p.add_argument('--migration', type=int, default=64,
                   help='MiB of data in the volume the migration axis moves '
                        'to another pool of the same array (ours vs '
                        "Cinder's host copy; 0: skip)")
    p.add_argument('--manageable-max', type=int, default=5000,
                   help='largest file count the manageable listing is '
                        'measured at (the generic driver inspects every '
                        'file with qemu-img)')
    p.add_argument('--no-root', action='store_true',
                   help='symlinked shares on the plain filesystem even as '
                        'root (no loopback XFS, no bind mounts)')
    p.add_argument('--out', default=os.path.join(REPO, 'bench-results'),
                   help='directory for report.md, results.jsonl, *.png')
    p.add_argument('--publish', action='store_true',
                   help='copy the report and plots into doc/source')
    p.add_argument('--report-only', action='store_true',
                   help='rewrite the report (and --publish) from the '
                        'results.jsonl already in --out, without running')
    p.add_argument('--cell', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 1
        args.scales = '10'
        args.latencies = '0'
        args.workloads = 'create_snapshot'
        args.no_storm = True
        args.data_mib = 1
    return args


def ints(text):
    return [int(x) for x in text.split(',') if x.strip()]


def floats(text):
    return [float(x) for x in text.split(',') if x.strip()]


def template_db(work):
    """A migrated cinder sqlite database, copied into every cell."""
    path = os.path.join(work, 'template.db')
    code = ('from cinder import monkey_patch; monkey_patch.patch()\n'
            'import sys, warnings\n'
            'warnings.simplefilter("ignore")\n'
            'from oslo_config import cfg\n'
            'from cinder.common import config\n'
            'from cinder.db import migration\n'
            'cfg.CONF([], project="cinder", default_config_files=[])\n'
            'cfg.CONF.set_override("connection", "sqlite:///" + sys.argv[1],'
            ' group="database")\n'
            'migration.db_sync()\n')
    subprocess.run([sys.executable, '-c', code, path], check=True,
                   capture_output=True, timeout=300)
    return path


class CellRunner(object):
    """Runs one cell in a child process, restarting it after a kill."""

    def __init__(self, args, work, db, results, log):
        self.args = args
        self.work = work
        self.db = db
        self.results = results
        self.log = log

    def spec(self, name, scale, latency_ms, drivers, workloads, skip,
             storm=False, files=0, concurrency=0, migration=0):
        cell_dir = tempfile.mkdtemp(prefix='%s-' % name, dir=self.work)
        db = os.path.join(cell_dir, 'cinder.db')
        shutil.copy(self.db, db)
        return {
            'workdir': cell_dir, 'db': db, 'out': self.results,
            'scale': scale, 'latency': latency_ms / 1000.0,
            'deadline': (self.args.storm_deadline if storm
                         else self.args.deadline),
            'reps': self.args.reps,
            'drivers': drivers, 'workloads': workloads, 'skip': skip,
            'data_mib': self.args.data_mib, 'image_mib': self.args.image_mib,
            'page_size': self.args.page_size, 'no_root': self.args.no_root,
            'storm': storm, 'storm_volumes': self.args.storm_volumes,
            'storm_image_mib': self.args.storm_image_mib,
            'storm_concurrency': self.args.storm_concurrency,
            'xfs_gib': 64,
            'files': files, 'manageable_max': self.args.manageable_max,
            'files_deadline': 600, 'concurrency': concurrency,
            'migration': migration,
        }

    def budget(self, spec):
        if spec.get('files') or spec.get('concurrency') or \
                spec.get('migration'):
            return CELL_OVERHEAD + 2 * spec['reps'] * len(spec['drivers']) \
                * (spec['files_deadline'] + 5)
        if spec['storm']:
            return CELL_OVERHEAD + self.args.storm_deadline + KILL_GRACE
        ops = (len(spec['drivers']) * len(spec['workloads'])
               * spec['reps'])
        return CELL_OVERHEAD + ops * (self.args.deadline + 5)

    def run(self, name, scale, latency_ms, drivers, workloads, storm=False,
            files=0, concurrency=0, migration=0):
        skip = []
        for _attempt in range(len(drivers) * len(workloads) + 1):
            spec = self.spec(name, scale, latency_ms, drivers, workloads,
                             skip, storm, files, concurrency, migration)
            killed = self._once(spec)
            shutil.rmtree(spec['workdir'], ignore_errors=True)
            if killed is None:
                return
            skip.append(killed)

    def _once(self, spec):
        """Run the child; (driver, workload) it was killed in, or None."""
        spec_path = os.path.join(spec['workdir'], 'spec.json')
        with open(spec_path, 'w') as f:
            json.dump(spec, f)
        start_offset = os.path.getsize(self.results) \
            if os.path.exists(self.results) else 0
        cmd = [sys.executable, os.path.abspath(__file__), '--cell',
               spec_path]
        with open(self.log, 'a') as log:
            log.write('\n=== cell %s scale=%s latency=%s\n'
                      % (os.path.basename(spec['workdir']), spec['scale'],
                         spec['latency']))
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=log,
                                    start_new_session=True)
        hard_end = time.monotonic() + self.budget(spec)
        current = None
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                current = self._current(start_offset) or current
                now = time.time()
                overdue = (current is not None and current['type'] == 'start'
                           and now - current['t'] > (spec['deadline']
                                                     + KILL_GRACE))
                if overdue or time.monotonic() > hard_end:
                    self._kill(proc)
                    if current and current['type'] == 'start':
                        self._record_kill(current)
                        return [current['driver'], current['workload']]
                    self._append({'type': 'cell-error',
                                  'scale': spec['scale'],
                                  'latency': spec['latency'],
                                  'error': 'cell exceeded its time budget',
                                  't': time.time()})
                    return None
        except BaseException:
            self._kill(proc)
            raise
        finally:
            if proc.poll() is None:
                self._kill(proc)
            self._cleanup_mounts(spec['workdir'])
        return None

    def _current(self, offset):
        """The last record the child wrote."""
        try:
            with open(self.results, 'rb') as f:
                f.seek(offset)
                lines = f.read().splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                return json.loads(line)
            except ValueError:
                continue
        return None

    def _record_kill(self, start):
        rec = dict(start)
        rec.update(type='op', status='timeout', wall=None, requests=None,
                   note='killed: the operation did not yield to the '
                        'in-process timeout', t=time.time())
        self._append(rec)

    def _append(self, rec):
        with open(self.results, 'a') as f:
            f.write(json.dumps(rec, sort_keys=True) + '\n')

    @staticmethod
    def _kill(proc):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=15)
                return
            except subprocess.TimeoutExpired:
                continue

    @staticmethod
    def _cleanup_mounts(workdir):
        """Unmount whatever a killed child left mounted under workdir."""
        try:
            with open('/proc/self/mounts') as f:
                points = [line.split()[1] for line in f]
        except OSError:
            return
        real = os.path.realpath(workdir)
        for point in sorted(points, key=len, reverse=True):
            if point == real or point.startswith(real + '/'):
                subprocess.run(['umount', '-l', point], capture_output=True,
                               timeout=60)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.cell:
        return bcell.main([args.cell])
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, 'results.jsonl')
    log = os.path.join(args.out, 'cells.log')
    if args.report_only:
        return finish(args, results, breport.elapsed(results))
    for path in (results, log):
        if os.path.exists(path):
            os.unlink(path)
    drivers = [d for d in args.drivers.split(',') if d]
    workloads = [w for w in args.workloads.split(',') if w]
    if args.quick:
        # one small workload per driver
        workloads = ['create_snapshot']
    scales, latencies = ints(args.scales), floats(args.latencies)
    work = tempfile.mkdtemp(prefix='tintri-bench-')
    try:
        db = template_db(work)
        runner = CellRunner(args, work, db, results, log)
        cells = [(s, lat) for lat in latencies for s in scales]
        for i, (scale, lat) in enumerate(cells, 1):
            print('[%3.0fs] cell %d/%d: scale %d, latency %g ms'
                  % (time.time() - t_start, i, len(cells), scale, lat),
                  flush=True)
            runner.run('cell', scale, lat, drivers, workloads)
        if not args.no_storm:
            storm_drivers = [d for d in drivers if d != 'intree']
            print('[%3.0fs] boot storm: %d volumes from one %d MiB image'
                  % (time.time() - t_start, args.storm_volumes,
                     args.storm_image_mib), flush=True)
            for name in storm_drivers:
                # one process per driver: nothing of one storm can run
                # on into the other's measurement
                runner.run('storm', 10, args.storm_latency, [name], [],
                           storm=True)
        files = [] if args.quick else ints(args.files or '')
        if args.quick and args.files != parse_args([]).files:
            files = ints(args.files)
        for count in files:
            print('[%3.0fs] files on the share: %d' % (
                time.time() - t_start, count), flush=True)
            runner.run('files', 0, 0, [d for d in drivers if d != 'intree'],
                       [], files=count)
        if args.concurrency and (not args.quick or '--concurrency' in argv):
            print('[%3.0fs] concurrency: %d volumes, serial and parallel'
                  % (time.time() - t_start, args.concurrency), flush=True)
            runner.run('concurrency', 0, args.concurrency_latency,
                       [d for d in drivers if d != 'intree'], [],
                       concurrency=args.concurrency)
        if 'ours' in drivers and args.migration > 0 and (
                not args.quick or '--migration' in argv):
            print('[%3.0fs] migration: a volume with %d MiB to another pool '
                  'of the array, ours vs host copy'
                  % (time.time() - t_start, args.migration), flush=True)
            runner.run('migration', 0, 0, ['ours'], [],
                       migration=args.migration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return finish(args, results, time.time() - t_start)


def finish(args, results, elapsed):
    report = breport.write(args, results, elapsed)
    print('report: %s (%.0f s)' % (report, elapsed), flush=True)
    if args.publish:
        breport.publish(args.out, os.path.join(REPO, 'doc', 'source'))
        print('published to doc/source/_static/bench (included by '
              'doc/source/benchmark.rst)', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
