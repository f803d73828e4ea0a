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
"""Report of a benchmark run: markdown, an rst fragment for the docs, plots.

Input is ``results.jsonl`` as written by :mod:`bench.cell`.  Every ratio
ours/other is the median of per-repetition ratios of operations measured
seconds apart in the same cell (same simulator, same filesystem).
"""

import collections
import datetime
import json
import os
import platform
import shutil
import statistics

LABEL = {'ours': 'cinder-tintri', 'intree': 'in-tree VMstore',
         'generic': 'generic NFS'}
WORKLOAD_LABEL = collections.OrderedDict([
    ('create_snapshot', 'create snapshot'),
    ('delete_snapshot', 'delete snapshot'),
    ('from_snapshot', 'volume from snapshot'),
    ('from_snapshot_larger', 'volume from snapshot, larger'),
    ('clone', 'clone volume'),
    ('clone_larger', 'clone volume, larger'),
    ('clone_image', 'clone_image, cache hit'),
    ('revert', 'revert to snapshot'),
    ('extend', 'extend volume'),
    ('create', 'create volume'),
    ('delete', 'delete volume'),
])
# Round trips this driver should need, whatever the array size.
RT_TARGET = {'create_snapshot': 1, 'delete_snapshot': 1, 'from_snapshot': 1,
             'clone': 2, 'clone_image': 2}
DONE = ('ok', 'wrong')
# Why the in-tree driver (cinder 29, 3.0.3) does not complete, from its code
# (cinder/volume/drivers/vmstore/nfs.py and api.py).
WHY = {
    ('intree', 'delete'):
        'after deleting the file, refresh_hypervisor polls virtualDisk for '
        'the deleted disk with sleeps of 1, 3, ... 29 s (225 s) before it '
        'gives up with a warning',
    ('intree', 'from_snapshot'):
        'it lists snapshots unfiltered and reads only the first page (it '
        'follows links[rel=next], the array pages with next); when the '
        'snapshot is not on it, the while-not-found loop never advances its '
        'counter: an endless loop of GET /snapshot',
    ('intree', 'clone'):
        'the helper snapshot it just created is not on the first page of '
        'the unfiltered list: NotFound, and the helper snapshot is left',
    ('intree', 'clone_image'):
        'no clone_image; the cached image volume is cloned with '
        'create_cloned_volume, which fails as for clone',
    ('intree', 'delete_snapshot'):
        'the snapshot is not on the first page: "Did not find snapshot, this '
        'is ok for deletion"; success is reported and the snapshot stays',
    ('intree', 'revert'):
        'no driver revert: cinder\'s generic path (volume from snapshot, a '
        'full copy - the driver reports sparse_copy_volume False - then '
        'delete_volume of the temporary volume, which polls for 225 s)',
}
MiB = 1024 * 1024
GiB = 1024 * MiB
PLOTS = ('wall.png', 'requests.png', 'floor.png', 'storm.png')


# ---------------------------------------------------------------------------
# data


class Results(object):
    def __init__(self, path):
        self.ops = collections.defaultdict(list)
        self.setup = {}
        self.lifetime = collections.defaultdict(list)
        self.storm = {}
        self.storm_ops = {}
        self.bandwidth = None
        self.files = collections.defaultdict(list)
        self.concurrency = {}
        self.migration = collections.defaultdict(list)
        self.errors = []
        self.scales, self.latencies = set(), set()
        self.drivers, self.workloads = [], []
        if not os.path.exists(path):
            return
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                self._add(rec)
        self.scales = sorted(self.scales)
        self.latencies = sorted(self.latencies)

    def _add(self, rec):
        if rec.get('t'):
            self.t0 = min(rec['t'], getattr(self, 't0', rec['t']))
        kind = rec.get('type')
        if kind == 'op' and rec['workload'] == 'boot_storm':
            self.storm_ops[rec['driver']] = rec
            return
        if kind == 'op':
            key = (rec['scale'], rec['latency'], rec['driver'],
                   rec['workload'])
            self.ops[key].append(rec)
            self.scales.add(rec['scale'])
            self.latencies.add(rec['latency'])
            if rec['driver'] not in self.drivers:
                self.drivers.append(rec['driver'])
            if rec['workload'] not in self.workloads:
                self.workloads.append(rec['workload'])
        elif kind == 'lifetime':
            self.lifetime[rec['driver']].append(rec)
        elif kind == 'storm':
            self.storm[rec['driver']] = rec
        elif kind == 'bandwidth':
            self.bandwidth = rec
        elif kind == 'concurrency':
            self.concurrency[(rec['driver'], rec['workload'],
                              rec['mode'])] = rec
        elif kind == 'migration':
            self.migration[rec['path']].append(rec)
        elif kind == 'files':
            self.files[(rec['files'], rec['driver'],
                        rec['workload'])].append(rec)
        elif kind == 'cell-error':
            self.errors.append(rec)

    def cells(self):
        return [(s, lat) for lat in self.latencies for s in self.scales]

    def driver_order(self):
        return [d for d in ('ours', 'intree', 'generic') if d in self.drivers]

    def workload_order(self):
        return [w for w in WORKLOAD_LABEL if w in self.workloads]


def _median(values):
    return statistics.median(values) if values else None


def summary(recs):
    """Status and figures of one (cell, driver, workload)."""
    done = [r for r in recs if r['status'] in DONE]
    out = {
        'n': len(recs),
        'timeout': any(r['status'] == 'timeout' for r in recs),
        'errors': [r.get('error') or '' for r in recs
                   if r['status'] in ('error', 'setup-error')],
        'wrong': [r.get('note') for r in recs if r['status'] == 'wrong'],
        'walls': [r['wall'] for r in done],
        'requests': [r['requests'] for r in done],
        'bytes': [r.get('io_bytes', 0) for r in done],
        'share': [r.get('bytes', 0) for r in done],
        'logins': sum(r.get('logins') or 0 for r in recs),
    }
    # requests an operation made before it timed out or failed
    out['requests_any'] = [r['requests'] for r in recs
                           if r.get('requests') is not None]
    out['wall'] = _median(out['walls'])
    return out


def pair_ratio(ours, other, deadline):
    """Median and range of per-repetition wall ratios ours/other.

    Returns (median, lo, hi, bound): ``bound`` is True when the other
    driver did not complete, so the ratio is an upper bound.
    """
    by_rep = {r['rep']: r for r in other}
    ratios = []
    for r in ours:
        o = by_rep.get(r['rep'])
        if r['status'] not in DONE or o is None or o['status'] not in DONE:
            continue
        if o['wall'] > 0:
            ratios.append(r['wall'] / o['wall'])
    if ratios:
        return (statistics.median(ratios), min(ratios), max(ratios), False)
    ours_walls = [r['wall'] for r in ours if r['status'] in DONE]
    if ours_walls and any(o['status'] == 'timeout' for o in other):
        return (statistics.median(ours_walls) / deadline, None, None, True)
    return None


# ---------------------------------------------------------------------------
# formatting


def fmt_ms(seconds):
    if seconds is None:
        return '-'
    ms = seconds * 1000.0
    if ms >= 100:
        return '%.0f' % ms
    if ms >= 10:
        return '%.1f' % ms
    return '%.2f' % ms


def fmt_ratio(r):
    if r is None:
        return 'n/a'
    med, lo, hi, bound = r
    if bound:
        return '< %s (other did not complete)' % _num(med)
    if lo is None or abs(hi - lo) < 1e-9:
        return _num(med)
    return '%s (%s-%s)' % (_num(med), _num(lo), _num(hi))


def _num(x):
    if x >= 10:
        return '%.0f' % x
    if x >= 1:
        return '%.1f' % x
    if x >= 0.1:
        return '%.2f' % x
    return '%.3f' % x


def fmt_mib(b):
    if b is None:
        return '-'
    return '%.1f' % (b / MiB)


def cell_text(s, deadline):
    """Median wall time [min-max] in ms, or why there is none."""
    if s['walls']:
        text = fmt_ms(s['wall'])
        if len(s['walls']) > 1:
            text += ' [%s-%s]' % (fmt_ms(min(s['walls'])),
                                  fmt_ms(max(s['walls'])))
        if s['wrong']:
            text += ' WRONG'
        if s['timeout']:
            text += ' (+DNF)'
        return text
    if s['timeout']:
        return 'did not complete within %g s' % deadline
    if s['errors']:
        return 'failed: %s' % _short(s['errors'][0])
    return '-'


def _short(text, n=70):
    text = ' '.join(str(text).split())
    text = text.replace('|', '/').replace('`', "'")
    return text if len(text) <= n else text[:n - 3] + '...'


def req_text(s):
    if s['requests']:
        lo, hi = min(s['requests']), max(s['requests'])
        return str(lo) if lo == hi else '%d-%d' % (lo, hi)
    if s['requests_any']:
        return '%d+' % max(s['requests_any'])
    return '-'


class Doc(object):
    """Builds the same document as markdown and as rst."""

    def __init__(self):
        self.md, self.rst = [], []

    def heading(self, text, level):
        self.md += ['#' * level + ' ' + text, '']
        char = {1: '=', 2: '-', 3: '~', 4: '^'}[level]
        if level == 1:
            self.rst += [char * len(text), text, char * len(text), '']
        else:
            self.rst += [text, char * len(text), '']

    def para(self, text):
        self.md += [text, '']
        self.rst += [_md_to_rst(text), '']

    def bullets(self, items):
        self.md += ['* ' + i for i in items] + ['']
        for i in items:
            lines = _md_to_rst(i).split('\n')
            self.rst.append('* ' + lines[0])
            self.rst += ['  ' + ln for ln in lines[1:]]
        self.rst.append('')

    def table(self, header, rows):
        self.md.append('| ' + ' | '.join(header) + ' |')
        self.md.append('|' + '|'.join('---' for _ in header) + '|')
        for row in rows:
            self.md.append('| ' + ' | '.join(str(c) for c in row) + ' |')
        self.md.append('')
        self.rst += ['.. list-table::', '   :header-rows: 1', '']
        for row in [header] + rows:
            cells = [_md_to_rst(str(c)) or '\\-' for c in row]
            self.rst.append('   * - ' + cells[0])
            for c in cells[1:]:
                self.rst.append('     - ' + c)
        self.rst.append('')

    def image(self, name, alt):
        self.md += ['![%s](%s)' % (alt, name), '']
        self.rst += ['.. image:: /_static/bench/%s' % name,
                     '   :alt: %s' % alt, '']


def _md_to_rst(text):
    # inline code: `x` -> ``x``; nothing else differs in what we write
    out, inside = [], False
    for part in text.split('`'):
        out.append(part)
        inside = not inside
    if len(out) == 1:
        return text
    return '``'.join(out)


# ---------------------------------------------------------------------------
# report


def build(args, res, elapsed):
    doc = Doc()
    deadline = args.deadline
    drivers = res.driver_order()
    workloads = res.workload_order()
    doc.heading('Benchmark results', 2)
    now = datetime.datetime.fromtimestamp(
        getattr(res, 't0', None) or datetime.datetime.now().timestamp(),
        datetime.timezone.utc)
    fs = ('loopback XFS with reflink, shares bind-mounted'
          if os.geteuid() == 0 and not args.no_root
          else 'plain directory, shares symlinked (no reflink)')
    doc.bullets([
        'Run: %s, %.0f s in all, on %s (%d cores, Python %s).'
        % (now.strftime('%Y-%m-%d %H:%M UTC'), elapsed, platform.system()
           + ' ' + platform.release(), os.cpu_count() or 0,
           platform.python_version()),
        'Matrix: array scales %s existing snapshots; injected latency %s '
        'ms per REST request; %d repetition(s) per workload, driver and '
        'cell, interleaved; deadline %g s per operation.'
        % (', '.join(str(s) for s in res.scales),
           ', '.join('%g' % (lat * 1000) for lat in res.latencies),
           args.reps, deadline),
        'Filesystem: %s; source volumes 1 GiB with %d MiB of data; '
        'clone_image image %d MiB; simulator page size %d.'
        % (fs, args.data_mib, args.image_mib, args.page_size),
        'Wall times are medians in ms with [min-max]; "requests" are REST '
        'requests per operation counted by the simulator; "WRONG" marks an '
        'operation that returned success but left the array or the data '
        'wrong; "DNF" = did not complete within the deadline.',
    ])
    for err in res.errors:
        doc.para('Cell scale %s latency %g ms failed: %s'
                 % (err.get('scale'), (err.get('latency') or 0) * 1000,
                    _short(err.get('error'), 200)))

    _targets(doc, args, res, drivers, workloads)
    _storm(doc, args, res)
    _files(doc, args, res)
    _concurrency(doc, args, res)
    _migration(doc, args, res)
    _per_cell(doc, args, res, drivers, workloads)
    _requests_vs_scale(doc, res, drivers, workloads)
    _floor(doc, res, workloads)
    _breakdown(doc, res, workloads)
    _bytes(doc, res, drivers, workloads)
    _logins(doc, res, drivers)
    _dnf(doc, args, res, drivers, workloads)
    return doc


def _ratios(res, deadline, workload, other):
    out = []
    for cell in res.cells():
        ours = res.ops.get(cell + ('ours', workload), [])
        oth = res.ops.get(cell + (other, workload), [])
        if ours and oth:
            out.append((cell, pair_ratio(ours, oth, deadline)))
    return out


def _targets(doc, args, res, drivers, workloads):
    doc.heading('Targets', 3)
    rows = []
    if 'ours' in drivers:
        for w in workloads:
            if w not in RT_TARGET:
                continue
            per_scale = []
            ok = True
            for scale in res.scales:
                reqs = []
                for lat in res.latencies:
                    s = summary(res.ops.get((scale, lat, 'ours', w), []))
                    reqs += s['requests']
                    if s['timeout'] or s['errors']:
                        ok = False
                per_scale.append(req_text({'requests': reqs,
                                           'requests_any': []}))
                if not reqs or max(reqs) > RT_TARGET[w]:
                    ok = False
            if len(set(per_scale)) != 1:
                ok = False
            cmp_ = '<=' if w == 'clone_image' else '='
            rows.append(['round trips, %s %s %d' % (WORKLOAD_LABEL[w], cmp_,
                                                    RT_TARGET[w]),
                         ' / '.join(per_scale) + ' at scale '
                         + ' / '.join(str(s) for s in res.scales),
                         'met' if ok else 'NOT met'])
        logins = [r['logins'] for r in res.lifetime.get('ours', [])]
        if logins:
            rows.append(['one login per driver lifetime',
                         'logins per lifetime: %s' % ', '.join(
                             str(n) for n in sorted(set(logins))),
                         'met' if set(logins) == {1} else 'NOT met'])
    if 'ours' in drivers and 'intree' in drivers:
        for w in workloads:
            rat = _ratios(res, args.deadline, w, 'intree')
            vals = [r for _c, r in rat if r is not None]
            if not vals:
                continue
            met = sum(1 for r in vals if r[0] <= 0.05)
            dnf = sum(1 for r in vals if r[3])
            meds = [r[0] for r in vals if not r[3]]
            text = '%d of %d cells' % (met, len(vals))
            if dnf:
                text += ' (%d where in-tree did not complete)' % dnf
            if meds:
                text += '; ratio when both completed: %s-%s' % (
                    _num(min(meds)), _num(max(meds)))
            rows.append(['wall time <= 1/20 of in-tree, %s'
                         % WORKLOAD_LABEL[w], text,
                         'met' if met == len(vals) else
                         ('partly' if met else 'NOT met')])
    storm = _storm_figures(res)
    if storm:
        for what in ('wall', 'bytes'):
            r = storm.get(what)
            if r is None:
                continue
            # issue 15.2: the storm's wall time <= 1/20 of generic NFS
            bound, label = ((0.05, '1/20') if what == 'wall'
                            else (0.1, '1/10'))
            rows.append(['boot storm %s <= %s of generic NFS' % (
                'wall time' if what == 'wall' else 'bytes written on share',
                label), 'ratio %s' % _num(r),
                'met' if r <= bound else 'NOT met'])
    if rows:
        doc.table(['target', 'measured', 'verdict'], rows)


def _storm_figures(res):
    ours, gen = res.storm_ops.get('ours'), res.storm_ops.get('generic')
    if not (ours and gen and ours['status'] in DONE
            and gen['status'] in DONE):
        return None
    out = {'wall': ours['wall'] / gen['wall']}
    if gen.get('bytes'):
        out['bytes'] = ours['bytes'] / float(gen['bytes'])
    return out


def _storm(doc, args, res):
    if not res.storm_ops:
        return
    doc.heading('Boot storm', 3)
    doc.para('%d volumes from one %d MiB raw image (all of it data), %d at '
             'a time, as cinder-volume does it: `clone_image` first, and '
             'if the driver declines, `create_volume` + '
             '`copy_image_to_volume` (a download and a conversion; '
             'cinder-tintri writes a raw image once, straight into its '
             'cache file, inside `clone_image`). '
             'Latency %g ms. The in-tree driver has no `clone_image`; it '
             'takes the generic path, so it is not run separately.'
             % (args.storm_volumes, args.storm_image_mib,
                args.storm_concurrency, args.storm_latency))
    rows = []
    for d in ('ours', 'generic'):
        op = res.storm_ops.get(d)
        st = res.storm.get(d, {})
        if not op:
            continue
        wall = ('%.1f s' % op['wall'] if op['status'] in DONE else
                'did not complete within %g s' % args.storm_deadline)
        if op['status'] == 'error':
            wall = 'failed: %s' % _short(op.get('error'))
        rows.append([LABEL[d], wall, str(st.get('downloads', '-')),
                     '%.2f' % (op.get('bytes', 0) / GiB),
                     '%.2f' % (op.get('io_bytes', 0) / GiB),
                     str(op.get('requests', '-')),
                     op.get('note') or ''])
    doc.table(['driver', 'wall time', 'image downloads',
               'GiB allocated on the share', 'GiB written (host I/O)',
               'REST requests', 'note'], rows)
    fig = _storm_figures(res)
    if fig:
        doc.para('Ratio ours/generic: wall time %s, bytes on the share %s.'
                 % (_num(fig['wall']), _num(fig.get('bytes', 0))))
    bw = res.bandwidth
    ours = res.storm_ops.get('ours')
    if bw and bw.get('mib_s') and ours and ours['status'] in DONE:
        floor = args.storm_image_mib / bw['mib_s']
        doc.para('Disk floor: the share\'s file system writes %.0f MiB/s '
                 'sequentially (%d MiB written and fdatasynced in the same '
                 'run), so writing the image once takes %.1f s; the storm '
                 'of cinder-tintri took %.1f s, %s times that floor.'
                 % (bw['mib_s'], bw['bytes'] // MiB, floor, ours['wall'],
                    _num(ours['wall'] / floor)))
    doc.image('storm.png', 'boot storm wall time and bytes')


FILES_TARGET = {'stats': (50000, 1.0), 'manageable': (5000, 5.0)}
FILES_LABEL = {'stats': 'stats update (get_volume_stats)',
               'manageable': 'manageable listing (1,000 of them)'}


def _files_wall(recs):
    done = [r['wall'] for r in recs if r['status'] == 'ok']
    if not done:
        states = sorted({r['status'] for r in recs})
        return None, '/'.join(states) or '-'
    return _median(done), None


def _files(doc, args, res):
    if not res.files:
        return
    doc.heading('Files on the share', 3)
    doc.para('Each share holds N unmanaged raw files (1 GiB, 512 bytes of '
             'data) beside nothing else; latency 0. The stats update and '
             'a manageable listing (limit 1,000, sorted by reference) are '
             'timed per driver, %d repetition(s), medians. The simulator '
             'samples its datastore statistics every 10 s as an array '
             'does (statsRealtime slices), so its own walk of the planted '
             'files is not billed to the driver. Targets: stats <= 1 s at '
             '50,000 files, listing <= 5 s at 5,000.' % args.reps)
    counts = sorted({k[0] for k in res.files})
    rows = []
    for workload in ('stats', 'manageable'):
        for count in counts:
            ours = res.files.get((count, 'ours', workload))
            gen = res.files.get((count, 'generic', workload))
            if not ours and not gen:
                continue
            ow, onote = _files_wall(ours or [])
            gw, gnote = _files_wall(gen or [])
            ratio = '%s' % _num(ow / gw) if ow and gw else '-'
            target_n, bound = FILES_TARGET[workload]
            verdict = ''
            if count == target_n and ow is not None:
                verdict = 'met' if ow <= bound else 'NOT met'
            rows.append([FILES_LABEL[workload], '{:,}'.format(count),
                         fmt_ms(ow) if ow is not None else onote,
                         fmt_ms(gw) if gw is not None else gnote,
                         ratio, verdict])
    doc.table(['operation', 'files per share', 'cinder-tintri ms',
               'generic NFS ms', 'ratio ours/generic', 'target'], rows)


def _concurrency(doc, args, res):
    if not res.concurrency:
        return
    doc.heading('Concurrency', 3)
    n = next(iter(res.concurrency.values()))['n']
    doc.para('%d operations on %d different volumes, first one after the '
             'other, then all at once in greenthreads of one process (as '
             'cinder-volume runs them); %g ms per REST request. A ratio '
             'near 1 would mean something serialises operations on '
             'different volumes; the data of every new volume is checked.'
             % (n, n, args.concurrency_latency))
    rows = []
    for d in ('ours', 'generic'):
        for w in ('from_snapshot', 'clone'):
            ser = res.concurrency.get((d, w, 'serial'))
            par = res.concurrency.get((d, w, 'parallel'))
            if not ser or not par:
                continue

            def cell(rec):
                if rec['status'] != 'ok':
                    return '%s %s' % (rec['status'], _short(
                        rec.get('error') or '', 60))
                return '%.2f s' % rec['wall']
            ratio = (_num(par['wall'] / ser['wall'])
                     if ser['status'] == par['status'] == 'ok' else '-')
            rows.append([LABEL[d], WORKLOAD_LABEL[w], cell(ser), cell(par),
                         ratio, str(par.get('requests', '-'))])
    doc.table(['driver', 'operation', 'serial', 'parallel',
               'ratio parallel/serial', 'REST requests'], rows)


def _migration(doc, args, res):
    if not res.migration:
        return
    doc.heading('Migration to another pool of the same array', 3)
    mib = next(iter(res.migration.values()))[0]['mib']
    doc.para('A detached 1 GiB volume holding %d MiB of data moves to '
             'another share (pool) of the same VMstore, on our driver: '
             '"array clone" is its migrate_volume (helper snapshot, array '
             'clone into the destination share, rename, source deleted); '
             '"host copy" is what Cinder\'s generic migration does when a '
             'driver declines (a new volume on the destination, '
             'volume_utils.copy_volume with dd, sparse, the source '
             'deleted). Host bytes: what this process and its children '
             'wrote to storage (getrusage); used: growth of the '
             'filesystem\'s used space. Data of the moved volume checked.'
             % mib)
    rows = []
    med = {}
    for path, label in (('ours', 'array clone (ours)'),
                        ('host_copy', 'host copy (generic)')):
        recs = res.migration.get(path) or []
        ok = [r for r in recs if r['status'] == 'ok']
        if not ok:
            bad = recs[0] if recs else {}
            rows.append([label, '%s %s' % (bad.get('status', '-'), _short(
                bad.get('error') or '', 60)), '-', '-', '-', '-'])
            continue
        host = _median([r['host_bytes'] for r in ok])
        med[path] = (host, _median([r['wall'] for r in ok]))
        rows.append([label, '%.0f' % (host / 1024.0),
                     fmt_mib(_median([r['used_bytes'] for r in ok])),
                     fmt_ms(_median([r['wall'] for r in ok])),
                     str(_median([r['clones'] for r in ok])),
                     str(_median([r['requests'] for r in ok]))])
    doc.table(['path', 'host KiB written', 'used MiB', 'wall ms',
               'array clones', 'REST requests'], rows)
    if 'ours' in med and 'host_copy' in med and med['host_copy'][1]:
        doc.para('Ratios ours/host copy: wall %s; host bytes %.0f KiB '
                 'against %.0f KiB (what ours writes is lock files and '
                 'bookkeeping, not volume data).'
                 % (_num(med['ours'][1] / med['host_copy'][1]),
                    med['ours'][0] / 1024.0, med['host_copy'][0] / 1024.0))


def _per_cell(doc, args, res, drivers, workloads):
    doc.heading('Wall time and requests per cell', 3)
    doc.para('Per cell: median wall time in ms [min-max] and REST requests '
             'per operation; ratios ours/other are medians of per-repetition '
             'ratios (range in brackets).')
    doc.image('wall.png', 'median wall time per workload and driver')
    others = [d for d in drivers if d != 'ours']
    for scale, lat in res.cells():
        doc.heading('Scale %d snapshots, latency %g ms' % (scale, lat * 1000),
                    4)
        header = ['workload']
        header += ['%s ms' % LABEL[d] for d in drivers]
        header += ['%s requests' % LABEL[d] for d in drivers
                   if d != 'generic']
        if 'ours' in drivers:
            header += ['ours/%s' % LABEL[d] for d in others]
        rows = []
        for w in workloads:
            row = [WORKLOAD_LABEL[w]]
            sums = {d: summary(res.ops.get((scale, lat, d, w), []))
                    for d in drivers}
            row += [cell_text(sums[d], args.deadline) for d in drivers]
            row += [req_text(sums[d]) for d in drivers if d != 'generic']
            if 'ours' in drivers:
                for d in others:
                    row.append(fmt_ratio(pair_ratio(
                        res.ops.get((scale, lat, 'ours', w), []),
                        res.ops.get((scale, lat, d, w), []), args.deadline)))
            rows.append(row)
        doc.table(header, rows)


def _requests_vs_scale(doc, res, drivers, workloads):
    doc.heading('Requests per operation against array size', 3)
    doc.para('REST requests per operation (all latencies pooled), at each '
             'array scale. The generic NFS driver makes none. "n+" = the '
             'operation had made n requests when it was stopped.')
    doc.image('requests.png', 'requests per operation against array size')
    rows = []
    for w in workloads:
        for d in drivers:
            if d == 'generic':
                continue
            row = [WORKLOAD_LABEL[w], LABEL[d]]
            for scale in res.scales:
                recs = []
                for lat in res.latencies:
                    recs += res.ops.get((scale, lat, d, w), [])
                row.append(req_text(summary(recs)))
            rows.append(row)
    doc.table(['workload', 'driver'] + ['%d snapshots' % s
                                        for s in res.scales], rows)


def _floor(doc, res, workloads):
    if 'ours' not in res.drivers:
        return
    doc.heading('Floor and overhead (cinder-tintri)', 3)
    doc.para('The floor is requests x injected latency: the time the '
             'array alone accounts for. Overhead = median wall time - floor '
             '(TLS, JSON, the file work on the share, Cinder objects). '
             'Pooled over array scales.')
    doc.image('floor.png', 'floor and overhead of cinder-tintri')
    header = ['workload']
    for lat in res.latencies:
        header += ['%g ms: floor' % (lat * 1000),
                   '%g ms: overhead' % (lat * 1000)]
    rows = []
    for w in workloads:
        row = [WORKLOAD_LABEL[w]]
        for lat in res.latencies:
            recs = []
            for scale in res.scales:
                recs += [r for r in res.ops.get((scale, lat, 'ours', w), [])
                         if r['status'] in DONE]
            if not recs:
                row += ['-', '-']
                continue
            floor = _median([r['requests'] * lat for r in recs])
            over = _median([r['wall'] - r['requests'] * lat for r in recs])
            row += [fmt_ms(floor), fmt_ms(over)]
        rows.append(row)
    doc.table(header, rows)


BREAKDOWN = (('rest', 'REST, client side'), ('subprocess', 'subprocesses'),
             ('fs', 'file system'), ('locks', 'locks'), ('db', 'database'),
             ('other', 'other'))


def breakdown_rows(res, workloads, driver='ours'):
    """Per workload: (workload, overhead, array, parts), medians in s.

    ``array`` is the simulator's own time handling the requests (its
    handlers and answers, no injected latency); the driver's overhead is
    wall - floor - array, and ``parts`` splits it: the client's side of
    REST (time in HTTP attempts - floor - array: TLS, JSON, requests),
    subprocesses, file system calls, locks, the database, other.
    """
    rows = []
    for w in workloads:
        recs = []
        for scale in res.scales:
            for lat in res.latencies:
                recs += [(r, lat) for r in
                         res.ops.get((scale, lat, driver, w), [])
                         if r['status'] in DONE and r.get('breakdown')]
        if not recs:
            continue
        parts = {}
        for key, _label in BREAKDOWN:
            values = []
            for r, lat in recs:
                b = r['breakdown']
                v = b.get(key, 0.0)
                if key == 'rest':
                    v = max(0.0, v - r['requests'] * lat - b.get('array', 0))
                values.append(v)
            parts[key] = _median(values)
        array = _median([r['breakdown'].get('array', 0.0) for r, _l in recs])
        over = _median([r['wall'] - r['requests'] * lat
                        - r['breakdown'].get('array', 0.0)
                        for r, lat in recs])
        rows.append((w, over, array, parts))
    return rows


def _breakdown(doc, res, workloads):
    rows = breakdown_rows(res, workloads)
    if not rows:
        return
    doc.heading('Where the overhead goes (cinder-tintri)', 3)
    doc.para('Median ms per operation, pooled over all cells.  "array" is '
             'the simulator\'s own time handling the requests (it runs in '
             'the same process and is not the driver\'s); the driver\'s '
             'overhead is wall time - floor - array.  tools/bench/'
             'breakdown.py charges it to the outermost call the operation '
             'made: the client side of REST (TLS, JSON, requests), '
             'subprocesses (qemu-img, dd, chmod), file system calls on the '
             'share, waiting for locks, cinder\'s database (object saves '
             'the driver makes) and the rest (Cinder objects, logging, '
             'Python).  Medians of parts need not add up exactly to the '
             'median overhead.')
    header = (['workload', 'array', 'driver overhead']
              + [label for _k, label in BREAKDOWN])
    table = []
    for w, over, array, parts in rows:
        table.append([WORKLOAD_LABEL[w], fmt_ms(array), fmt_ms(over)]
                     + [fmt_ms(parts[k]) for k, _label in BREAKDOWN])
    doc.table(header, table)


def _bytes(doc, res, drivers, workloads):
    doc.heading('Bytes written', 3)
    doc.para('Median MiB written per operation by the process and its '
             'children (block I/O accounting: the driver, qemu-img, dd and '
             'the in-process simulator), pooled over all cells, and the '
             'median change of allocated space on the share filesystem '
             '(negative: space freed).')
    rows = []
    for w in workloads:
        row = [WORKLOAD_LABEL[w]]
        for d in drivers:
            recs = []
            for cell in res.cells():
                recs += res.ops.get(cell + (d, w), [])
            s = summary(recs)
            if not s['bytes']:
                row.append('-')
                continue
            row.append('%s (share %s)' % (fmt_mib(_median(s['bytes'])),
                                          fmt_mib(_median(s['share']))))
        rows.append(row)
    doc.table(['workload'] + ['%s MiB' % LABEL[d] for d in drivers], rows)


def _logins(doc, res, drivers):
    doc.heading('Logins', 3)
    rows = []
    for d in drivers:
        recs = res.lifetime.get(d, [])
        if not recs:
            continue
        logins = [r['logins'] for r in recs]
        reqs = [r['requests'] for r in recs]
        rows.append([LABEL[d], str(len(recs)),
                     ', '.join(str(n) for n in sorted(set(logins))),
                     '%d-%d' % (min(reqs), max(reqs))])
    doc.para('One driver instance lives through a whole cell (setup, every '
             'workload and repetition, the clean-ups between workloads are '
             'made by a separate client and not counted).')
    doc.table(['driver', 'lifetimes', 'logins per lifetime',
               'REST requests per lifetime'], rows)


def _dnf(doc, args, res, drivers, workloads):
    rows = []
    for d in drivers:
        for w in workloads:
            cells = []
            kinds = set()
            for cell in res.cells():
                s = summary(res.ops.get(cell + (d, w), []))
                if s['timeout']:
                    kinds.add('did not complete within %g s' % args.deadline)
                elif s['errors'] and not s['walls']:
                    kinds.add('failed: ' + _short(s['errors'][0], 60))
                elif s['wrong']:
                    kinds.add('wrong: ' + _short(s['wrong'][0], 60))
                else:
                    continue
                cells.append('%d/%g' % (cell[0], cell[1] * 1000))
            if cells:
                rows.append([LABEL[d], WORKLOAD_LABEL[w],
                             '; '.join(sorted(kinds)), ', '.join(cells),
                             WHY.get((d, w), '')])
    if not rows:
        return
    doc.heading('Operations that did not complete or went wrong', 3)
    doc.para('Cells are written scale/latency in ms. The last column is '
             'the mechanism, read from the driver\'s code.')
    doc.table(['driver', 'workload', 'what happened', 'cells', 'why'], rows)


# ---------------------------------------------------------------------------
# plots


COLORS = {'ours': '#1b7837', 'intree': '#c51b7d', 'generic': '#4d4d4d'}


def plots(args, res, out):
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
    except ImportError:
        return []
    made = []
    drivers = res.driver_order()
    workloads = res.workload_order()
    if not res.ops:
        workloads = []
    if workloads:
        made.append(_plot_wall(plt, args, res, drivers, workloads, out))
        made.append(_plot_requests(plt, res, drivers, workloads, out))
        if 'ours' in drivers:
            made.append(_plot_floor(plt, res, workloads, out))
    if res.storm_ops:
        made.append(_plot_storm(plt, res, out))
    return [m for m in made if m]


def _save(plt, fig, out, name):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return name


def _plot_wall(plt, args, res, drivers, workloads, out):
    scale = res.scales[len(res.scales) // 2]
    lats = res.latencies
    fig, axes = plt.subplots(1, len(lats), figsize=(4.2 * len(lats), 3.6),
                             squeeze=False)
    width = 0.8 / len(drivers)
    for ax, lat in zip(axes[0], lats):
        for i, d in enumerate(drivers):
            xs, ys, dnf = [], [], []
            for j, w in enumerate(workloads):
                s = summary(res.ops.get((scale, lat, d, w), []))
                x = j + (i - (len(drivers) - 1) / 2.0) * width
                if s['wall'] is not None:
                    xs.append(x)
                    ys.append(s['wall'] * 1000)
                elif s['timeout']:
                    dnf.append(x)
            ax.bar(xs, ys, width, color=COLORS[d], label=LABEL[d])
            if dnf:
                ax.bar(dnf, [args.deadline * 1000] * len(dnf), width,
                       color='none', edgecolor=COLORS[d], hatch='//')
        ax.set_yscale('log')
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels([WORKLOAD_LABEL[w].split(',')[0]
                            for w in workloads], rotation=40, ha='right',
                           fontsize=8)
        ax.set_title('%d snapshots, %g ms latency' % (scale, lat * 1000),
                     fontsize=9)
        ax.set_ylabel('median wall time, ms (log)', fontsize=8)
    axes[0][0].legend(fontsize=7, loc='upper left')
    fig.suptitle('Hatched: did not complete within %g s' % args.deadline,
                 fontsize=8)
    return _save(plt, fig, out, 'wall.png')


def _plot_requests(plt, res, drivers, workloads, out):
    fig, axes = plt.subplots(1, len(workloads),
                             figsize=(1.9 * len(workloads), 2.8),
                             squeeze=False, sharey=True)
    for ax, w in zip(axes[0], workloads):
        for d in drivers:
            if d == 'generic':
                continue
            xs, ys = [], []
            for scale in res.scales:
                recs = []
                for lat in res.latencies:
                    recs += res.ops.get((scale, lat, d, w), [])
                s = summary(recs)
                vals = s['requests'] or s['requests_any']
                if vals:
                    xs.append(scale)
                    ys.append(max(vals))
            ax.plot(xs, ys, marker='o', color=COLORS[d], label=LABEL[d])
        ax.set_xscale('log')
        ax.set_yscale('symlog')
        ax.set_title(WORKLOAD_LABEL[w].split(',')[0], fontsize=8)
        ax.set_xlabel('snapshots', fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel('requests per op (max)', fontsize=8)
    axes[0][0].legend(fontsize=6)
    return _save(plt, fig, out, 'requests.png')


def _plot_floor(plt, res, workloads, out):
    lat = res.latencies[-1]
    floors, overs, labels = [], [], []
    for w in workloads:
        recs = []
        for scale in res.scales:
            recs += [r for r in res.ops.get((scale, lat, 'ours', w), [])
                     if r['status'] in DONE]
        if not recs:
            continue
        floors.append(_median([r['requests'] * lat for r in recs]) * 1000)
        overs.append(_median([r['wall'] - r['requests'] * lat
                              for r in recs]) * 1000)
        labels.append(WORKLOAD_LABEL[w].split(',')[0])
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    xs = range(len(labels))
    ax.bar(xs, floors, color='#a6dba0', label='floor (requests x latency)')
    ax.bar(xs, overs, bottom=floors, color=COLORS['ours'],
           label='overhead above the floor')
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=30, ha='right', fontsize=8)
    ax.set_ylabel('ms', fontsize=8)
    ax.set_title('cinder-tintri at %g ms per request' % (lat * 1000),
                 fontsize=9)
    ax.legend(fontsize=7)
    return _save(plt, fig, out, 'floor.png')


def _plot_storm(plt, res, out):
    ds = [d for d in ('ours', 'generic') if d in res.storm_ops
          and res.storm_ops[d]['status'] in DONE]
    if not ds:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(6.5, 2.8))
    panels = (('wall', 's', 1.0), ('bytes', 'GiB on share', GiB))
    for ax, (key, unit, scale) in zip(axes, panels):
        vals = [res.storm_ops[d].get(key, 0) / scale for d in ds]
        ax.bar([LABEL[d] for d in ds], vals,
               color=[COLORS[d] for d in ds])
        for i, v in enumerate(vals):
            ax.text(i, v, '%.1f' % v, ha='center', va='bottom', fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].set_title('boot storm: wall time', fontsize=9)
    axes[1].set_title('boot storm: bytes on the share', fontsize=9)
    return _save(plt, fig, out, 'storm.png')


# ---------------------------------------------------------------------------
# entry points


def elapsed(results):
    """Seconds from the first to the last record of a results file."""
    times = []
    with open(results) as f:
        for line in f:
            try:
                times.append(json.loads(line)['t'])
            except (ValueError, KeyError):
                continue
    return max(times) - min(times) if times else 0.0


def write(args, results, elapsed):
    """Write report.md, report.rst and the plots; return report.md."""
    out = os.path.dirname(os.path.abspath(results))
    res = Results(results)
    doc = build(args, res, elapsed)
    made = plots(args, res, out)
    md = [line for line in doc.md
          if not (line.startswith('![') and line.split('(')[-1][:-1]
                  not in made)]
    rst, skip = [], 0
    for line in doc.rst:
        if skip:
            skip -= 1
            continue
        if line.startswith('.. image:: ') and \
                line.rsplit('/', 1)[-1] not in made:
            skip = 2
            continue
        rst.append(line)
    path = os.path.join(out, 'report.md')
    with open(path, 'w') as f:
        f.write('\n'.join(md).rstrip() + '\n')
    with open(os.path.join(out, 'report.rst'), 'w') as f:
        f.write('\n'.join(rst).rstrip() + '\n')
    return path


def publish(out, doc_source):
    """Copy the rst report and the plots under doc/source/_static/bench."""
    dest = os.path.join(doc_source, '_static', 'bench')
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(dest):
        if name.endswith('.png') or name == 'results.inc':
            os.unlink(os.path.join(dest, name))
    shutil.copy(os.path.join(out, 'report.rst'),
                os.path.join(dest, 'results.inc'))
    for name in PLOTS:
        src = os.path.join(out, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(dest, name))
