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
"""What is on the array and the shares: image cache and orphans.

``cinder-tintri image-cache list|clean`` and ``cinder-tintri orphans``.
The array side comes from the VMstore REST API, the Cinder side from the
Cinder database named in cinder.conf, the share side from the shares as
mounted on this cinder-volume host.
"""

import datetime
import os
import re
import sys
import time

from cinder_tintri import image_cache
from cinder_tintri import snapshot_deletion

# What the driver names things (see cinder_tintri.driver / images).
UUID = r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
VOLUME_FILE = re.compile(r'^volume-(%s)$' % UUID)
SNAPSHOT_DESC = re.compile(r'^snapshot-(%s)$' % UUID)
HELPER_DESC = re.compile(r'^volume-(%s)-clone-[0-9a-f]+$' % UUID)
TMP_PREFIX = '.tintri-tmp-'
GIB = float(1024 ** 3)
MARKER_DIR = '.tintri-image-cache'
PROGRESS_EVERY = 1000


def _when(epoch):
    if not epoch:
        return '-'
    return datetime.datetime.fromtimestamp(
        epoch, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M')


def _uuid(snap):
    # The client only yields snapshots with a well-formed uuid object;
    # tolerate a bare string too.
    uuid = snap.get('uuid')
    return uuid.get('uuid') if isinstance(uuid, dict) else uuid


class Progress(object):
    """Progress of a long scan on stderr (not on the report stream)."""

    def __init__(self, what, err=None):
        self.what = what
        self.err = err or sys.stderr
        self.count = 0

    def tick(self):
        self.count += 1
        if self.count % PROGRESS_EVERY == 0:
            self.err.write('... %d %s\n' % (self.count, self.what))
            self.err.flush()


def last_used(mounts, image_id):
    """Newest use marker of an image on the mounted shares (epoch)."""
    newest = None
    for mount in mounts:
        try:
            mtime = os.stat(os.path.join(mount, MARKER_DIR,
                                         image_id)).st_mtime
        except OSError:
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest


def list_image_cache(client, mounts, expiry_days, out, err=None):
    """Print every image-cache snapshot; return how many there are."""
    progress = Progress('snapshots read', err)
    rows = []
    for snap in client.find_snapshots(type=image_cache.SNAPSHOT_TYPE,
                                      contain=image_cache.IMAGE_PREFIX):
        progress.tick()
        image_id = image_cache.image_id_of(snap)
        if image_id is None or snap.get('isDeleted'):
            continue
        created = (snap.get('createTime') or 0) / 1000.0
        used = max(created, last_used(mounts, image_id) or 0)
        clones = snap.get('cloneReferenceCount') or 0
        expired = (expiry_days and not clones
                   and used < time.time() - expiry_days * image_cache.DAY)
        rows.append((image_id, _uuid(snap), _when(created), _when(used),
                     clones, 'yes' if expired else 'no'))
    out.write('%-36s  %-55s  %-16s  %-16s  %6s  %s\n'
              % ('image', 'snapshot', 'created (UTC)', 'last used (UTC)',
                 'clones', 'expired'))
    for row in sorted(rows, key=lambda r: r[3]):
        out.write('%-36s  %-55s  %-16s  %-16s  %6d  %s\n' % row)
    out.write('%d image snapshot(s)\n' % len(rows))
    return len(rows)


def find_orphans(client, mounts, volume_ids, snapshot_ids, provider_ids,
                 err=None):
    """Array snapshots and share files that look Cinder-made, owner gone.

    :param mounts: {share: mount point} of the shares to scan.
    :param volume_ids: ids (and name ids) of the Cinder volumes.
    :param snapshot_ids: ids of the Cinder snapshots.
    :param provider_ids: provider_ids of the Cinder snapshots.
    :returns: list of (kind, where, what, why).  Snapshots pending
        deletion (their Cinder snapshot is deleted, the array keeps them
        until their clones are gone) are listed as kind 'pending': they
        are not leaks, the driver deletes them itself.
    """
    orphans = []
    pending = {}
    for share, mount in sorted(mounts.items()):
        for rec in snapshot_deletion.pending(mount):
            pending[rec['snapshot_uuid']] = (share, rec)
    progress = Progress('snapshots read', err)
    for snap in client.find_snapshots(type=image_cache.SNAPSHOT_TYPE):
        progress.tick()
        uuid = _uuid(snap)
        desc = snap.get('description') or ''
        if snap.get('isDeleted') or uuid in provider_ids:
            continue
        if uuid in pending:
            share, rec = pending.pop(uuid)
            since = rec.get('since')
            orphans.append((
                'pending', uuid, desc,
                'pending deletion since %s (Cinder snapshot %s deleted), '
                'waiting for %s clone(s) to go; recorded on %s'
                % (_when(since) if isinstance(since, int) else '?',
                   rec.get('snapshot_id', '?'),
                   snap.get('cloneReferenceCount', '?'), share)))
            continue
        m = SNAPSHOT_DESC.match(desc)
        if m and m.group(1) not in snapshot_ids:
            orphans.append(('snapshot', uuid, desc,
                            'Cinder snapshot %s does not exist'
                            % m.group(1)))
            continue
        m = HELPER_DESC.match(desc)
        if (m and m.group(1) not in volume_ids
                and not snap.get('cloneReferenceCount')):
            orphans.append(('snapshot', uuid, desc,
                            'clone helper of volume %s, which does not '
                            'exist, and without clones' % m.group(1)))
    for uuid, (share, rec) in sorted(pending.items()):
        # Recorded but no longer on the array: the next periodic run of
        # the driver drops the record.
        orphans.append(('pending', uuid, rec.get('snapshot_id', '?'),
                        'pending deletion already done on the array; the '
                        'driver removes the record on %s' % share))
    progress = Progress('files read', err)
    for share, mount in sorted(mounts.items()):
        try:
            entries = sorted(os.listdir(mount))
        except OSError as e:
            orphans.append(('share', share, mount, 'cannot read: %s' % e))
            continue
        for entry in entries:
            progress.tick()
            m = VOLUME_FILE.match(entry)
            if m and m.group(1) not in volume_ids:
                orphans.append(('file', share, entry,
                                'Cinder volume %s does not exist'
                                % m.group(1)))
            elif entry.startswith(TMP_PREFIX):
                orphans.append(('file', share, entry,
                                'temporary clone directory (the driver '
                                'removes idle ones itself)'))
    return orphans


def volume_report(client, mounts, out, err=None):
    """Each volume file on the shares as the array sees it.

    One row per ``volume-<id>`` file: its apparent size on the share, the
    size the array reports for it (``fileDirInfo``, official), and the
    VMstore VM and space used that the array's inventory gives for the
    volume (``virtualDisk?uuid=<volume id>``, official; '-' while the
    array has not inventoried it).  Read-only: nothing is refreshed.
    Returns the number of volume files.
    """
    progress = Progress('volumes read', err)
    rows = 0
    out.write('%-44s %10s %10s %-56s %10s  %s\n'
              % ('volume file', 'share GiB', 'array GiB', 'VMstore VM',
                 'used GiB', 'share'))
    for share, mount in sorted(mounts.items()):
        try:
            entries = sorted(os.listdir(mount))
        except OSError as e:
            out.write('%s: cannot read %s: %s\n' % (share, mount, e))
            continue
        export = share.split(':', 1)[1].rstrip('/')
        for entry in entries:
            m = VOLUME_FILE.match(entry)
            if not m:
                continue
            progress.tick()
            rows += 1
            try:
                local = '%.2f' % (os.lstat(os.path.join(mount, entry))
                                  .st_size / GIB)
            except OSError:
                local = '?'
            array = vm = used = '-'
            try:
                info = client.get_file_info('%s/%s' % (export, entry))
                if info:
                    array = '%.2f' % (info['size'] / GIB)
                disk = client.find_virtual_disk(uuid=m.group(1))
                if disk:
                    vm = disk['vm_uuid']
                    stat = (disk.get('raw') or {}).get('stat') or {}
                    value = stat.get('spaceUsedGiB')
                    if isinstance(value, (int, float)):
                        used = '%.2f' % value
            except Exception as e:   # a report: show what failed, go on
                vm = 'error: %s' % e
            out.write('%-44s %10s %10s %-56s %10s  %s\n'
                      % (entry, local, array, vm, used, share))
    out.write('%d volume file(s)\n' % rows)
    return rows


def cinder_ids(config_file):
    """(volume ids, snapshot ids, snapshot provider_ids) in Cinder's DB."""
    from cinder import context
    from cinder import objects
    from oslo_config import cfg

    cfg.CONF(['--config-file', config_file], project='cinder',
             default_config_files=[])
    objects.register_all()
    ctxt = context.get_admin_context()
    volume_ids = set()
    for vol in objects.VolumeList.get_all(ctxt):
        volume_ids.add(vol.id)
        volume_ids.add(vol.name_id)
    snapshot_ids, provider_ids = set(), set()
    for snap in objects.SnapshotList.get_all(ctxt, filters={}):
        snapshot_ids.add(snap.id)
        if snap.provider_id:
            provider_ids.add(snap.provider_id)
    return volume_ids, snapshot_ids, provider_ids


def start_coordination(config_file):
    """cinder's coordinator as configured, for the image locks."""
    from cinder import coordination
    from oslo_config import cfg

    cfg.CONF(['--config-file', config_file], project='cinder',
             default_config_files=[])
    coordination.COORDINATOR.start()
    return coordination.COORDINATOR


def image_try_lock(coordinator):
    """The driver's per-image lock, taken without waiting."""
    import contextlib

    from cinder_tintri import images

    @contextlib.contextmanager
    def try_lock(image_id):
        lock = coordinator.get_lock(images.IMAGE_LOCK % image_id)
        acquired = lock.acquire(blocking=False)
        try:
            yield bool(acquired)
        finally:
            if acquired:
                lock.release()
    return try_lock
