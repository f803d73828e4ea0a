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
"""Cleanup of the VMstore image cache.

The driver caches a Glance image on the array as a snapshot whose
description is ``image-<image id>`` and whose ``vmUuid`` is the image id
(direct protocol) or whose instance id or VM name names the image
(refresh protocol; see :mod:`cinder_tintri.images` and
:mod:`cinder_tintri.inventory`).  :class:`ImageCacheCleaner` removes such
snapshots when they are no longer worth keeping:

* **expiry** - a snapshot not used for ``expiry_days`` days is deleted.
  "Last use" is the newest of the snapshot's ``createTime`` and the
  last-use time the driver records whenever it clones a volume from the
  snapshot (``last_used`` callback; the driver keeps a small marker file
  per image on its shares and touches it on every use, because the array
  has no "last cloned" attribute);
* **free space** - when the datastore's free space is below
  ``free_space_start`` percent, the least recently used snapshots are
  deleted until it is back at ``free_space_stop`` percent.

Whatever the reason, a snapshot that still has clones
(``cloneReferenceCount`` > 0, i.e. volumes that share its blocks) is never
deleted: it is skipped when listed, checked again just before deletion, and
the array refuses the deletion anyway (``SnapshotHasClones``).  Snapshots
whose description is not exactly ``image-`` followed by their ``vmUuid``
are not image-cache snapshots and are never touched, except the removed
Tintri driver's ``image-<id> (<id>)`` filed under that image id, which
this driver reuses (:mod:`cinder_tintri.takeover`) and expires like its
own.

A run reads every page of the listing before deleting anything and stops
deleting once its time budget (``timeout`` seconds) is used up.
"""

import contextlib
import time

from oslo_log import log as logging

from cinder_tintri import client as tclient
from cinder_tintri import takeover

LOG = logging.getLogger(__name__)

IMAGE_PREFIX = 'image-'
SNAPSHOT_TYPE = 'CINDER_GENERATED_SNAPSHOT'
DAY = 86400.0
EXPIRED = 'expired'
SPACE = 'free-space'


def image_id_of(snapshot):
    """The Glance image id an image-cache snapshot caches, else None."""
    if not isinstance(snapshot, dict):
        return None
    # The removed Tintri driver's 'image-<id> (<id>)' (cinder_tintri.
    # takeover): reused, so expired like ours.
    legacy = takeover.image_snapshot_id(snapshot)
    if legacy is not None:
        return legacy
    desc = snapshot.get('description') or ''
    if not desc.startswith(IMAGE_PREFIX):
        return None
    image_id = desc[len(IMAGE_PREFIX):]
    if not image_id:
        return None
    vm_uuid = snapshot.get('vmUuid')
    if isinstance(vm_uuid, dict):
        vm_uuid = vm_uuid.get('uuid')
    # Direct protocol: filed under the image id.  Refresh protocol
    # (VMstore >= 6): filed under the array's VM of the cached file, with
    # the image id as instance id or the file image-<id> as the VM name.
    if image_id in (vm_uuid, snapshot.get('instanceId')) or \
            snapshot.get('vmName') == desc:
        return image_id
    return None


def _uuid(snapshot):
    uuid = snapshot.get('uuid')
    if isinstance(uuid, dict):
        uuid = uuid.get('uuid')
    return uuid


@contextlib.contextmanager
def _no_lock(image_id):
    yield True


class ImageCacheCleaner(object):
    """One cleanup pass over the image-cache snapshots of a VMstore.

    :param client: a :class:`cinder_tintri.client.TClient`.
    :param expiry_days: delete snapshots unused for this many days; 0
        disables expiry.
    :param free_space_start: free-space percentage below which least
        recently used snapshots are deleted; 0 disables this.
    :param free_space_stop: ...until free space is back at this
        percentage.
    :param timeout: seconds one run may spend.
    :param last_used: ``f(image_id) -> epoch seconds or None``, the last
        recorded use of an image's snapshot.
    :param try_lock: ``f(image_id)`` returning a context manager that
        yields True when the image's lock was taken without waiting; a
        busy image (being cached or cloned right now) is skipped.
    """

    def __init__(self, client, expiry_days=30, free_space_start=10,
                 free_space_stop=20, timeout=300, last_used=None,
                 try_lock=None, clock=time.time, monotonic=time.monotonic):
        self.client = client
        self.expiry_days = expiry_days or 0
        self.free_space_start = free_space_start or 0
        self.free_space_stop = max(free_space_stop or 0,
                                   self.free_space_start)
        self.timeout = timeout
        self._last_used = last_used or (lambda image_id: None)
        self._try_lock = try_lock or _no_lock
        self._clock = clock
        self._monotonic = monotonic

    # ------------------------------------------------------------------

    def run_once(self):
        """Run one cleanup pass; return the deleted snapshots.

        Each item is a dict with ``uuid``, ``image_id``, ``reason``
        ('expired' or 'free-space') and ``last_used`` (epoch seconds).
        """
        deadline = self._monotonic() + self.timeout
        try:
            entries = self._list_entries(deadline)
        except tclient.TintriError as e:
            LOG.warning('Image cache cleanup: cannot list image snapshots: '
                        '%s', e)
            return []
        if entries is None:
            LOG.warning('Image cache cleanup: listing the image snapshots '
                        'took longer than %ss; nothing deleted this run.',
                        self.timeout)
            return []
        deleted = []
        # Least recently used first, so that a run cut short by its time
        # budget has removed the least valuable entries.
        entries.sort(key=lambda e: (e['last_used'], e['uuid']))
        if self.expiry_days > 0:
            cutoff = self._clock() - self.expiry_days * DAY
            for entry in entries:
                if entry['last_used'] >= cutoff:
                    continue
                if self._out_of_time(deadline):
                    break
                if self._delete(entry, EXPIRED):
                    deleted.append(entry)
        gone = set(e['uuid'] for e in deleted)
        remaining = [e for e in entries if e['uuid'] not in gone]
        deleted.extend(self._relieve_space_pressure(remaining, deadline))
        LOG.info('Image cache cleanup: %(n)d unreferenced image snapshots '
                 'found, %(d)d deleted (%(e)d expired, %(s)d for free '
                 'space).',
                 {'n': len(entries), 'd': len(deleted),
                  'e': sum(1 for e in deleted if e['reason'] == EXPIRED),
                  's': sum(1 for e in deleted if e['reason'] == SPACE)})
        return deleted

    # ------------------------------------------------------------------

    def _out_of_time(self, deadline):
        if self._monotonic() < deadline:
            return False
        LOG.warning('Image cache cleanup stopped after its time budget of '
                    '%ss; the rest waits for the next run.', self.timeout)
        return True

    def _list_entries(self, deadline):
        """Every unreferenced image snapshot (all pages); None on timeout."""
        entries = []
        snaps = self.client.find_snapshots(type=SNAPSHOT_TYPE,
                                           contain=IMAGE_PREFIX,
                                           hasClone='No',
                                           sortedBy='createTime',
                                           sortOrder='ASC')
        for snap in snaps:
            if self._monotonic() >= deadline:
                return None
            image_id = image_id_of(snap)
            if image_id is None or snap.get('isDeleted'):
                continue
            if snap.get('cloneReferenceCount'):
                continue
            uuid = _uuid(snap)
            if not uuid:
                continue
            created = (snap.get('createTime') or 0) / 1000.0
            used = self._last_used(image_id)
            size_mb = (snap.get('sizeChangedPhysicalMB')
                       or snap.get('sizeChangedMB') or 0)
            entries.append({
                'uuid': uuid,
                'image_id': image_id,
                'last_used': max(created, used or 0),
                'size_gib': float(size_mb) / 1024.0,
            })
        return entries

    def _delete(self, entry, reason):
        """Delete one snapshot if it is still unreferenced; True if done."""
        uuid, image_id = entry['uuid'], entry['image_id']
        with self._try_lock(image_id) as locked:
            if not locked:
                LOG.info('Image cache cleanup: image %s is in use right '
                         'now; keeping its snapshot %s.', image_id, uuid)
                return False
            try:
                fresh = self.client.get_snapshot(uuid)
                if fresh is None:
                    return False
                if fresh.get('cloneReferenceCount'):
                    LOG.info('Image cache cleanup: snapshot %s of image %s '
                             'has clones now; keeping it.', uuid, image_id)
                    return False
                self.client.delete_snapshot(uuid)
            except tclient.SnapshotHasClones:
                LOG.info('Image cache cleanup: snapshot %s of image %s has '
                         'clones; keeping it.', uuid, image_id)
                return False
            except tclient.TintriError as e:
                LOG.warning('Image cache cleanup: cannot delete snapshot '
                            '%(uuid)s of image %(image)s: %(err)s',
                            {'uuid': uuid, 'image': image_id, 'err': e})
                return False
        entry['reason'] = reason
        LOG.info('Image cache cleanup: deleted snapshot %(uuid)s of image '
                 '%(image)s (%(reason)s, last used %(used)s).',
                 {'uuid': uuid, 'image': image_id, 'reason': reason,
                  'used': time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                        time.gmtime(entry['last_used']))})
        return True

    def _free_gib(self):
        stats = self.client.get_datastore_stats()
        return stats['total_gib'], stats['free_gib']

    def _relieve_space_pressure(self, entries, deadline):
        if self.free_space_start <= 0 or not entries:
            return []
        try:
            total, free = self._free_gib()
        except (tclient.TintriError, KeyError) as e:
            LOG.warning('Image cache cleanup: cannot read the datastore '
                        'free space: %s', e)
            return []
        if total <= 0 or free * 100.0 / total >= self.free_space_start:
            return []
        target = total * self.free_space_stop / 100.0
        LOG.info('Image cache cleanup: datastore %(pct).1f%% free, below '
                 '%(start)s%%; deleting least recently used image snapshots '
                 'until %(stop)s%% free.',
                 {'pct': free * 100.0 / total,
                  'start': self.free_space_start,
                  'stop': self.free_space_stop})
        deleted = []
        for entry in entries:
            if free >= target or self._out_of_time(deadline):
                break
            if not self._delete(entry, SPACE):
                continue
            deleted.append(entry)
            # The array may reclaim space lazily: trust whichever is
            # larger, the measured free space or the estimate.
            estimate = free + entry['size_gib']
            try:
                free = max(self._free_gib()[1], estimate)
            except (tclient.TintriError, KeyError):
                free = estimate
        if free < target:
            LOG.warning('Image cache cleanup: datastore still %(pct).1f%% '
                        'free after deleting %(n)d image snapshots; no more '
                        'unreferenced image snapshots could be deleted.',
                        {'pct': free * 100.0 / total, 'n': len(deleted)})
        return deleted
