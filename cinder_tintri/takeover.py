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
"""Taking over volumes and snapshots made by other VMstore drivers.

Two drivers came before this one on the same arrays and shares; an
operator switches ``volume_driver`` and keeps every volume and snapshot.
What they left, and what this module knows about it:

**cinder 29's in-tree DDN driver** (``cinder.volume.drivers.vmstore``,
``VmstoreNfsDriver`` 3.0.3; read from the installed cinder):

* volumes are ``volume-<name_id>`` files at the share root, like ours;
* a Cinder snapshot is an array snapshot (``POST cinder/snapshot``) whose
  description is the snapshot's name, ``snapshot-<id>``, filed under the
  VM the array inventoried for the file (``vmName`` / ``vmUuid`` from
  ``virtualDisk``).  No ``provider_id`` is recorded: that driver finds
  snapshots again by description;
* ``create_volume_from_snapshot`` clones into ``<share>/snapshot-<id>/``
  and ``create_cloned_volume`` into ``<share>/clone-volume-<source id>/``
  (holding the clone under the source file name), then renames the file
  out and removes the directory.  A crash in between leaves the
  directory; see :func:`foreign_temporary`;
* a clone's helper snapshot is ``clone-volume-<source id>`` with
  DELETE_ON_ZERO_CLONE_REFERENCES: the array deletes it with its clone.
  When its clone failed (e.g. the snapshot was not listed yet, in-tree
  defect R-12) it never had one and stays; :meth:`Takeover.remove_
  abandoned_helpers` deletes such helpers once an hour old;

**the removed Tintri driver** (``TintriDriver`` 2.x, removed from cinder
in Train; its ``TClient.create_snapshot`` and ``_clone_snapshot``, read
in the openstack/cinder history, ``042364295^:cinder/volume/drivers/
tintri.py``):

* snapshots recorded their UUID in ``provider_id``; their description is
  ``<display name or name> (<volume id>)`` and ``vmTintriUuid`` the
  volume id;
* clones landed in ``<share>/<new volume name>-d/``;
* the image cache is one array snapshot per image, description
  ``image-<image id> (<image id>)``, ``vmTintriUuid`` and ``instanceId``
  the image id, of the first volume's file made from the image.  This
  driver reuses and expires those like its own ``image-<image id>``
  snapshots (:func:`image_snapshot_id`).

:class:`Takeover` fills the missing ``provider_id`` of snapshots at
start-up (``update_provider_info``) from one snapshot listing, and
accepts a match only when the array snapshot is of the volume's own file.
"""

import re
import time

from oslo_log import log as logging

from cinder_tintri import client as tclient

LOG = logging.getLogger(__name__)

_UUID = r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
# Temporary clone directories of the other drivers, at the share root.
FOREIGN_TEMPORARIES = (
    ('in-tree create_volume_from_snapshot',
     re.compile(r'snapshot-%s' % _UUID)),
    ('in-tree create_cloned_volume',
     re.compile(r'clone-volume-%s' % _UUID)),
    ('removed driver clone', re.compile(r'volume-%s-d' % _UUID)),
)
# What every name above starts or ends with.
_FOREIGN_PREFIXES = ('snapshot-', 'clone-volume-')
_FOREIGN_SUFFIX = '-d'
# The in-tree driver's Cinder snapshots (description = snapshot name).
SNAPSHOT_PREFIX = 'snapshot-'
# The in-tree driver's clone helper snapshots.
HELPER_PREFIX = 'clone-volume-'
_HELPER = re.compile(r'clone-volume-%s' % _UUID)
ZERO_REFS = 'DELETE_ON_ZERO_CLONE_REFERENCES'
# A helper without clones is abandoned once this old (seconds): the
# in-tree driver clones right after it snapshots.
HELPER_IDLE = 3600
IMAGE_PREFIX = 'image-'
# A removed driver image-cache snapshot: 'image-<id> (<id>)'.
_LEGACY_IMAGE = re.compile(r'image-(?P<id>[^ ()]+) \((?P=id)\)')
# At most this many virtual-disk look-ups per update_provider_info, for
# matches the snapshot listing alone cannot prove.
MAX_DISK_LOOKUPS = 100


def foreign_temporary(name):
    """What made the temporary directory ``name``, or None if not one."""
    # Asked for every entry of a share's top directory at every stats
    # update: a string test first settles the volume files (34 ms of
    # regular expressions at 50,000 files otherwise).
    if not (name.startswith(_FOREIGN_PREFIXES)
            or name.endswith(_FOREIGN_SUFFIX)):
        return None
    for what, regex in FOREIGN_TEMPORARIES:
        if regex.fullmatch(name):
            return what
    return None


def legacy_image_description(image_id):
    """The removed driver's description of an image-cache snapshot."""
    return '%s%s (%s)' % (IMAGE_PREFIX, image_id, image_id)


def image_snapshot_id(snapshot):
    """The image id a removed driver image-cache snapshot caches, or None.

    Its description is ``image-<id> (<id>)`` and it is filed under the
    image id (``vmUuid`` or ``instanceId``).
    """
    if not isinstance(snapshot, dict):
        return None
    m = _LEGACY_IMAGE.fullmatch(snapshot.get('description') or '')
    if m is None:
        return None
    image_id = m.group('id')
    if image_id in (tclient._uuid_of(snapshot, 'vmUuid'),
                    snapshot.get('instanceId')):
        return image_id
    return None


def _descriptions(snapshot):
    """Descriptions the other drivers gave this Cinder snapshot."""
    names = [snapshot.name]
    display = getattr(snapshot, 'display_name', None)
    if display and display != snapshot.name:
        names.insert(0, display)
    return [snapshot.name] + ['%s (%s)' % (name, snapshot.volume_id)
                              for name in names]


def _create_time(item):
    value = item.get('createTime')
    return value if isinstance(value, (int, float)) else 0


class Takeover(object):
    """Finds other drivers' array snapshots for Cinder snapshots.

    :param client: a :class:`cinder_tintri.client.TClient`.
    :param max_disk_lookups: bound on the ``virtualDisk`` look-ups one
        :meth:`provider_info` may make.
    """

    def __init__(self, client, max_disk_lookups=MAX_DISK_LOOKUPS):
        self.client = client
        self.max_disk_lookups = max_disk_lookups

    # -- interface -----------------------------------------------------

    def provider_info(self, volumes, snapshots):
        """``(volume_updates, snapshot_updates)`` for update_provider_info.

        Every snapshot without ``provider_id`` gets an entry (cinder 29's
        manager indexes the list for each of them), ``provider_id`` None
        when no array snapshot of its volume's file carries one of its
        descriptions.  One snapshot listing (paged, bounded by the
        client's page limit) and, only for matches the listing cannot
        prove, at most ``max_disk_lookups`` virtual-disk look-ups, one per
        volume.  Volumes are not changed.
        """
        missing = [s for s in snapshots if not s.provider_id]
        if not missing:
            return None, None
        try:
            listing = list(self.client.find_snapshots(
                contain=SNAPSHOT_PREFIX))
        except tclient.TintriError as e:
            LOG.warning('Cannot list the VMstore snapshots to find the '
                        'array snapshots of %(n)d Cinder snapshots without '
                        'provider_id: %(err)s', {'n': len(missing),
                                                 'err': e})
            return None, None
        index = {}
        for item in listing:
            if item.get('isDeleted'):
                continue
            index.setdefault(item.get('description'), []).append(item)
        disks = _DiskCache(self.client, self.max_disk_lookups)
        updates = []
        found = 0
        for snap in missing:
            uuid = self._pick(snap, index, disks)
            found += uuid is not None
            updates.append({'id': snap.id, 'provider_id': uuid})
        LOG.info('Took over %(found)d of %(n)d Cinder snapshots without '
                 'provider_id (%(calls)d virtual disk look-ups).',
                 {'found': found, 'n': len(missing),
                  'calls': disks.lookups})
        return None, updates

    def remove_abandoned_helpers(self, now=None):
        """Delete the in-tree driver's clone helpers its failures left.

        One listing (``contain=clone-volume-``); a snapshot is deleted only
        when its description is exactly ``clone-volume-<uuid>``, its
        policy DELETE_ON_ZERO_CLONE_REFERENCES, it has no clone and it is
        older than :data:`HELPER_IDLE`.  Returns the deleted UUIDs; errors
        are logged, never raised.
        """
        now = time.time() if now is None else now
        deleted = []
        try:
            listing = list(self.client.find_snapshots(contain=HELPER_PREFIX))
        except tclient.TintriError as e:
            LOG.warning('Cannot list the in-tree driver\'s clone helper '
                        'snapshots: %s', e)
            return deleted
        for item in listing:
            created = item.get('createTime')
            if (item.get('isDeleted')
                    or not _HELPER.fullmatch(item.get('description') or '')
                    or item.get('deletionPolicy') != ZERO_REFS
                    or item.get('cloneReferenceCount') != 0
                    or not isinstance(created, (int, float))
                    or now - created / 1000.0 < HELPER_IDLE):
                continue
            uuid = tclient._uuid_of(item)
            try:
                self.client.delete_snapshot(uuid)
            except tclient.TintriError as e:
                LOG.warning('Cannot delete the abandoned clone helper '
                            '%(uuid)s of the in-tree driver: %(err)s',
                            {'uuid': uuid, 'err': e})
                continue
            LOG.info('Deleted the abandoned clone helper snapshot %(uuid)s '
                     '(%(desc)s) of the in-tree driver.',
                     {'uuid': uuid, 'desc': item.get('description')})
            deleted.append(uuid)
        return deleted

    def find(self, snapshot):
        """The array snapshot UUID of one Cinder snapshot, or None.

        One listing filtered by its name; the match is verified like
        :meth:`provider_info`'s.
        """
        index = {}
        for item in self.client.find_snapshots(contain=snapshot.name):
            if not item.get('isDeleted'):
                index.setdefault(item.get('description'), []).append(item)
        return self._pick(snapshot, index,
                          _DiskCache(self.client, 1))

    # -- matching ------------------------------------------------------

    def _pick(self, snapshot, index, disks):
        candidates = []
        for desc in _descriptions(snapshot):
            candidates.extend(index.get(desc, ()))
        volume = snapshot.volume
        own = [c for c in candidates if self._of_volume(c, volume, disks)]
        if not own:
            if candidates:
                LOG.warning('Snapshot %(id)s: %(n)d VMstore snapshots carry '
                            'its name but none is of the file of volume '
                            '%(vol)s; not taken over.',
                            {'id': snapshot.id, 'n': len(candidates),
                             'vol': snapshot.volume_id})
            return None
        own.sort(key=_create_time, reverse=True)
        if len(own) > 1:
            LOG.warning('Snapshot %(id)s: %(n)d VMstore snapshots of its '
                        'volume carry its name; using the newest, %(uuid)s.',
                        {'id': snapshot.id, 'n': len(own),
                         'uuid': tclient._uuid_of(own[0])})
        return tclient._uuid_of(own[0])

    @staticmethod
    def _volume_file(volume):
        share = volume.provider_location or ''
        if ':' not in share:
            return None
        rel = tclient.export_relative(share.split(':', 1)[1])
        return '%s/%s' % (rel, volume.name) if rel else volume.name

    def _of_volume(self, item, volume, disks):
        """Is the array snapshot ``item`` one of ``volume``'s own file?"""
        path = self._volume_file(volume)
        if path is None:
            return False
        file_ = item.get('file')
        if isinstance(file_, str) and file_:
            # A lenient array names the file: that decides.
            return tclient.export_relative(file_) == path
        vm_name = item.get('vmName')
        if vm_name in (volume.name, volume.name_id, volume.id):
            return True
        vm_uuid = tclient._uuid_of(item, 'vmUuid')
        if not vm_uuid:
            return False
        # Ours records the VM in the volume's provider_id; the removed
        # driver filed snapshots under the volume id.
        if vm_uuid in (volume.provider_id, volume.id):
            return True
        return disks.vm_uuid(path) == vm_uuid


class _DiskCache(object):
    """VM uuid of a file from ``virtualDisk?path=``, once per file."""

    def __init__(self, client, limit):
        self.client = client
        self.limit = limit
        self.lookups = 0
        self._seen = {}

    def vm_uuid(self, path):
        if path in self._seen:
            return self._seen[path]
        if self.lookups >= self.limit:
            return None
        self.lookups += 1
        try:
            disk = self.client.find_virtual_disk(path=path)
        except tclient.TintriError as e:
            LOG.warning('Cannot look up the VMstore virtual disk of '
                        '%(path)s: %(err)s', {'path': path, 'err': e})
            disk = None
        self._seen[path] = disk['vm_uuid'] if disk else None
        return self._seen[path]
