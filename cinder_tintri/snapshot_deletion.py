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
"""Deleting array snapshots that may still have clones.

A volume created from a snapshot is an array clone that shares the
snapshot's blocks.  What the array does when such a snapshot is deleted is
not documented, and three behaviours are plausible (the official index has
GET and DELETE on ``/v310/snapshot/{id}`` but no PUT; the Snapshot DTO has
``isDeleted``, ``timeDeleted`` and ``cloneReferenceCount``):

1. the DELETE is accepted and the array keeps the blocks until the last
   clone goes: done;
2. the DELETE is refused ("a live VM is still present") and a PUT of
   ``deletionPolicy = DELETE_ON_ZERO_CLONE_REFERENCES`` is accepted: the
   array deletes the snapshot with its last clone: done;
3. the DELETE is refused and the PUT is not supported: the snapshot is
   recorded as *pending deletion* and the Cinder snapshot is deleted.

Pending deletions are records on the share of the snapshot's volume
(``<share>/.tintri-pending-delete/<snapshot uuid>``): they survive a
restart and every service of a cluster sees them.  :meth:`retry` (run from
the periodic stats update, bounded per run) deletes them once the array
accepts, which it does when the last clone is gone; ``cinder-tintri
orphans`` lists them.  No Cinder delete waits for the clones.
"""

import re
import time

from oslo_log import log as logging

from cinder_tintri import client as tclient
from cinder_tintri import share_records

LOG = logging.getLogger(__name__)

DIR = '.tintri-pending-delete'
ZERO_REFS = 'DELETE_ON_ZERO_CLONE_REFERENCES'
DELETED = 'deleted'
BY_POLICY = 'deleted-with-last-clone'
PENDING = 'pending'
# Snapshot ids become file names: the array's format, nothing else.
_SAFE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,127}')
# At most this many pending deletions are retried per periodic run.
RETRY_BATCH = 50


class SnapshotDeletion(object):
    """Deletes array snapshots, whatever the array does about clones."""

    def __init__(self, client, retry_batch=RETRY_BATCH):
        self.client = client
        self.retry_batch = retry_batch
        # None: unknown yet; False once the array answered that it does not
        # support setting the deletion policy.
        self.policy_supported = None

    def delete(self, snap_uuid, mount=None, info=None):
        """Delete ``snap_uuid``; returns DELETED, BY_POLICY or PENDING.

        ``mount`` is the mounted share on which a pending deletion is
        recorded (the share of the snapshot's volume); ``info`` is stored
        with it (Cinder ids, for operators).
        """
        try:
            self.client.delete_snapshot(snap_uuid)
            return DELETED
        except tclient.SnapshotHasClones as e:
            refused = e
        LOG.info('VMstore snapshot %(uuid)s still has clones (%(err)s).',
                 {'uuid': snap_uuid, 'err': refused})
        if self.policy_supported is not False:
            try:
                self.client.set_snapshot_deletion_policy(snap_uuid, ZERO_REFS)
                self.policy_supported = True
                LOG.info('VMstore snapshot %s is deleted by the array with '
                         'its last clone.', snap_uuid)
                return BY_POLICY
            except tclient.TintriNotSupported as e:
                if self.client.get_snapshot(snap_uuid) is None:
                    return DELETED
                self.policy_supported = False
                LOG.info('This VMstore does not support changing a '
                         'snapshot\'s deletion policy (%s); snapshots with '
                         'clones are deleted once their clones are gone.', e)
        if mount is None:
            raise refused
        record(mount, snap_uuid, info)
        LOG.info('VMstore snapshot %(uuid)s is pending deletion until its '
                 'clones are gone (recorded on %(mount)s).',
                 {'uuid': snap_uuid, 'mount': mount})
        return PENDING

    def retry(self, mounts, deadline=None):
        """Retry pending deletions; returns the uuids now deleted."""
        done = []
        tried = 0
        for mount in mounts:
            for snap_uuid in pending_uuids(mount):
                if tried >= self.retry_batch or (
                        deadline is not None and time.monotonic() > deadline):
                    return done
                tried += 1
                try:
                    self.client.delete_snapshot(snap_uuid)
                except tclient.SnapshotHasClones:
                    continue
                except tclient.TintriError as e:
                    LOG.debug('Pending deletion of VMstore snapshot %s: %s',
                              snap_uuid, e)
                    continue
                forget(mount, snap_uuid)
                done.append(snap_uuid)
                LOG.info('Deleted VMstore snapshot %s, pending since its '
                         'Cinder snapshot was deleted.', snap_uuid)
        return done


# -- records on the share ------------------------------------------------

_RECORDS = share_records.RecordDir(DIR, _SAFE, 'snapshot id')


def record(mount, snap_uuid, info=None):
    body = dict(info or {})
    body.update({'snapshot_uuid': snap_uuid, 'since': int(time.time())})
    _RECORDS.write(mount, snap_uuid, body)


def forget(mount, snap_uuid):
    _RECORDS.remove(mount, snap_uuid)


def pending_uuids(mount):
    return _RECORDS.keys(mount)


def pending(mount):
    """[{'snapshot_uuid', 'since', ...}] recorded on the share."""
    out = []
    for snap_uuid in pending_uuids(mount):
        entry = {'snapshot_uuid': snap_uuid}
        data = _RECORDS.read(mount, snap_uuid)
        for key in ('since', 'snapshot_id', 'volume_id'):
            if isinstance(data.get(key), (str, int)):
                entry[key] = data[key]
        out.append(entry)
    return out
