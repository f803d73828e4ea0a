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
"""Smoke test of tools/benchmark.py at its tiniest scale (``--quick``).

One repetition of one small workload per driver, 10 snapshots on the
array, no latency, no boot storm: the command must finish and write a
report with its ratio table.  No timing is asserted (shared machines).
"""

import json
import os
import subprocess
import sys

import fixtures
import testtools

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BENCH = os.path.join(TOP, 'tools', 'benchmark.py')
TIMEOUT = 240


class BenchmarkSmokeTest(testtools.TestCase):

    def test_quick_run_writes_report(self):
        out = self.useFixture(fixtures.TempDir()).path
        env = dict(os.environ, PYTHONWARNINGS='ignore')
        proc = subprocess.run(
            [sys.executable, BENCH, '--quick', '--out', out],
            cwd=TOP, capture_output=True, text=True, timeout=TIMEOUT,
            env=env, start_new_session=True)
        log = os.path.join(out, 'cells.log')
        detail = proc.stdout + proc.stderr
        if os.path.exists(log):
            with open(log) as f:
                detail += f.read()[-4000:]
        self.assertEqual(0, proc.returncode, detail)

        with open(os.path.join(out, 'report.md')) as f:
            report = f.read()
        self.assertIn('### Targets', report)
        # the per-cell table with the pairwise ratio columns
        self.assertIn('ours/in-tree VMstore', report)
        self.assertIn('ours/generic NFS', report)
        self.assertIn('| create snapshot |', report)
        self.assertTrue(os.path.exists(os.path.join(out, 'report.rst')))

        with open(os.path.join(out, 'results.jsonl')) as f:
            ops = [r for r in map(json.loads, f) if r['type'] == 'op']
        self.assertEqual({'ours', 'intree', 'generic'},
                         {r['driver'] for r in ops})
        ours = [r for r in ops if r['driver'] == 'ours']
        self.assertEqual(['ok'], [r['status'] for r in ours])
        self.assertEqual(1, ours[0]['requests'])

    def test_breakdown(self):
        """Each operation's time split by category; no subprocess spent."""
        out = self.useFixture(fixtures.TempDir()).path
        proc = subprocess.run(
            [sys.executable, BENCH, '--reps', '1', '--scales', '10',
             '--latencies', '0', '--no-storm', '--files', '',
             '--concurrency', '0', '--drivers', 'ours', '--workloads',
             'create,extend,from_snapshot_larger,clone_larger,delete',
             '--out', out],
            cwd=TOP, capture_output=True, text=True, timeout=TIMEOUT,
            env=dict(os.environ, PYTHONWARNINGS='ignore'),
            start_new_session=True)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        with open(os.path.join(out, 'results.jsonl')) as f:
            ops = {r['workload']: r for r in map(json.loads, f)
                   if r['type'] == 'op'}
        self.assertEqual({'create', 'extend', 'from_snapshot_larger',
                          'clone_larger', 'delete'}, set(ops))
        for workload, r in ops.items():
            # the larger variants check the data and the new size
            self.assertEqual('ok', r['status'], (workload, r))
            parts = r['breakdown']
            # file work on the share is done in process (issue 15.1)
            self.assertEqual([], parts['commands'], workload)
            timed = sum(parts[k] for k in ('rest', 'subprocess', 'fs',
                                           'locks', 'db', 'other'))
            self.assertAlmostEqual(r['wall'], timed, delta=r['wall'] * 0.01
                                   + 1e-6)
            self.assertGreaterEqual(parts['array'], 0.0)
        self.assertGreater(ops['clone_larger']['breakdown']['rest'], 0.0)
        self.assertEqual(0.0, ops['create']['breakdown']['rest'])
        with open(os.path.join(out, 'report.md')) as f:
            self.assertIn('### Where the overhead goes', f.read())

    def test_files_axis(self):
        out = self.useFixture(fixtures.TempDir()).path
        env = dict(os.environ, PYTHONWARNINGS='ignore')
        proc = subprocess.run(
            [sys.executable, BENCH, '--quick', '--scales', '',
             '--files', '50', '--concurrency', '3', '--reps', '1',
             '--out', out],
            cwd=TOP, capture_output=True, text=True, timeout=TIMEOUT,
            env=env, start_new_session=True)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        with open(os.path.join(out, 'results.jsonl')) as f:
            recs = [r for r in map(json.loads, f) if r['type'] == 'files']
        by = {(r['driver'], r['workload']): r for r in recs}
        self.assertEqual('ok', by[('ours', 'stats')]['status'])
        # one REST call however many files
        self.assertEqual(1, by[('ours', 'stats')]['requests'])
        self.assertEqual(50, by[('ours', 'manageable')]['entries'])
        self.assertEqual('n/a', by[('generic', 'manageable')]['status'])
        self.assertEqual('ok', by[('generic', 'stats')]['status'])
        with open(os.path.join(out, 'results.jsonl')) as f:
            conc = [r for r in map(json.loads, f)
                    if r['type'] == 'concurrency']
        self.assertEqual(
            {(d, w, m) for d in ('ours', 'generic')
             for w in ('from_snapshot', 'clone')
             for m in ('serial', 'parallel')},
            {(r['driver'], r['workload'], r['mode']) for r in conc})
        self.assertEqual({'ok'}, {r['status'] for r in conc},
                         [r.get('error') for r in conc])
        with open(os.path.join(out, 'report.md')) as f:
            report = f.read()
        self.assertIn('### Concurrency', report)
        self.assertIn('### Files on the share', report)
        self.assertIn('| stats update (get_volume_stats) | 50 |', report)

    def test_migration_axis(self):
        out = self.useFixture(fixtures.TempDir()).path
        env = dict(os.environ, PYTHONWARNINGS='ignore')
        proc = subprocess.run(
            [sys.executable, BENCH, '--quick', '--scales', '',
             '--migration', '4', '--out', out],
            cwd=TOP, capture_output=True, text=True, timeout=TIMEOUT,
            env=env, start_new_session=True)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        with open(os.path.join(out, 'results.jsonl')) as f:
            recs = {r['path']: r for r in map(json.loads, f)
                    if r['type'] == 'migration'}
        ours, generic = recs['ours'], recs['host_copy']
        self.assertEqual(('ok', 'ok'), (ours['status'], generic['status']),
                         (ours.get('error'), generic.get('error')))
        # ours: one array clone; the host copy wrote the data through dd
        self.assertEqual(1, ours['clones'])
        self.assertEqual(0, generic['clones'])
        self.assertGreaterEqual(generic['host_bytes'], 4 * 1024 * 1024)
        if not ours['array_copies'].get('copy'):
            # the simulated array reflinked (XFS): the host wrote no data
            # (a few KiB of lock files and bookkeeping at most)
            self.assertLess(ours['host_bytes'], 256 * 1024)
        with open(os.path.join(out, 'report.md')) as f:
            report = f.read()
        self.assertIn('### Migration to another pool of the same array',
                      report)
        self.assertIn('| array clone (ours) |', report)
