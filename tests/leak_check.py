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
"""Leak checker: Cinder's objects against the simulated VMstore.

Any test can call :func:`find_leaks` (or :func:`assert_no_leaks`) with a
running :class:`~cinder_tintri.simulator.VMstoreSimulator`.  Cinder's
volumes and snapshots come from the database (all non-deleted rows, read
with an admin context) unless lists are given; the lists may hold Cinder
objects or plain dicts (``id``, ``name``, ``status``,
``provider_location`` / ``provider_id``, ``volume_id``).

What is a leak:

* a file on the datastore that no volume owns.  A volume owns
  ``<submount>/<volume name>`` of the share in its ``provider_location``;
  a volume without ``provider_location`` (a failed create) owns nothing,
  because ``delete_volume`` would not remove a file for it;
* any ``.tintri-tmp-`` directory or file (a temporary clone);
* an array snapshot that no Cinder snapshot owns.  A Cinder snapshot owns
  the array snapshot named by its ``provider_id`` and, in any status, one
  whose description is its name (what ``delete_snapshot`` looks up when a
  create failed after the array took the snapshot).  A snapshot with the
  DELETE_ON_ZERO_CLONE_REFERENCES policy and clone references is owned by
  its clones (the array deletes it with the last of them; the clones
  themselves are files, checked above).  A clone's helper snapshot
  (description ``<volume name>-clone-...``) of a volume Cinder still has
  is owned by that volume: deleting a volume whose create failed removes
  it.  Image-cache snapshots
  (description ``image-<id>``) and the cache's marker directory are owned
  by the array image cache unless ``image_cache=False``.

What is missing (lost by the backend): an ``available``/``in-use`` volume
whose file is not on its share, an ``available`` snapshot whose
``provider_id`` is not on the array.
"""

import fnmatch

TMP_MARK = '.tintri-tmp-'
ZERO_REFS = 'DELETE_ON_ZERO_CLONE_REFERENCES'
IMAGE_PREFIX = 'image-'
IMAGE_MARKER_DIR = '.tintri-image-cache'
LIVE_VOLUME = ('available', 'in-use')
LIVE_SNAPSHOT = ('available',)


class LeakReport(object):
    """What :func:`find_leaks` found; true when anything is wrong."""

    FIELDS = ('leaked_files', 'leaked_tmp', 'leaked_snapshots',
              'missing_files', 'missing_snapshots')

    def __init__(self):
        for name in self.FIELDS:
            setattr(self, name, [])
        self.inventory = None

    def __bool__(self):
        return any(getattr(self, name) for name in self.FIELDS)

    def as_dict(self):
        return {name: list(getattr(self, name)) for name in self.FIELDS}

    def __str__(self):
        parts = ['%s: %s' % (name, getattr(self, name))
                 for name in self.FIELDS if getattr(self, name)]
        return '; '.join(parts) or 'no leaks'


def _get(obj, key, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    try:
        return getattr(obj, key, default)
    except Exception:  # lazy-load errors on detached objects
        return default


def _volume_name(vol):
    return _get(vol, 'name') or 'volume-%s' % _get(vol, 'id')


def _snapshot_name(snap):
    return _get(snap, 'name') or 'snapshot-%s' % _get(snap, 'id')


def submount(share):
    """'127.0.0.1:/tintri/cinder' -> 'cinder' (datastore-relative)."""
    path = share.split(':', 1)[1] if ':' in share else share
    path = path.strip('/')
    if path == 'tintri':
        return ''
    if path.startswith('tintri/'):
        path = path[len('tintri/'):]
    return path.strip('/')


def cinder_objects(context=None):
    """(volumes, snapshots): every non-deleted row of Cinder's database."""
    from cinder import context as cinder_context
    from cinder import objects
    ctxt = context or cinder_context.get_admin_context()
    return (list(objects.VolumeList.get_all(ctxt)),
            list(objects.SnapshotList.get_all(ctxt, None)))


def find_leaks(sim, volumes=None, snapshots=None, context=None,
               image_cache=True, ignore=()):
    """Compare Cinder's objects with ``sim.inventory()``.

    :param volumes, snapshots: Cinder's objects; both None -> read from
        the database.
    :param image_cache: image-cache snapshots and markers are owned.
    :param ignore: fnmatch patterns of datastore-relative paths to ignore
        (e.g. files a test placed for manage).
    :returns: a :class:`LeakReport`.
    """
    if volumes is None and snapshots is None:
        volumes, snapshots = cinder_objects(context)
    volumes = list(volumes or [])
    snapshots = list(snapshots or [])
    inv = sim.inventory()
    report = LeakReport()
    report.inventory = inv

    owned = {}
    for vol in volumes:
        share = _get(vol, 'provider_location')
        if not share:
            continue
        sub = submount(share)
        rel = '%s/%s' % (sub, _volume_name(vol)) if sub else \
            _volume_name(vol)
        owned[rel] = vol

    present = set()
    for entry in inv['files']:
        is_dir = entry.endswith('/')
        rel = entry.rstrip('/')
        if any(fnmatch.fnmatch(rel, pat) for pat in ignore):
            continue
        parts = rel.split('/')
        if any(p.startswith(TMP_MARK) for p in parts):
            # Report the temporary itself, not each file inside it.
            if parts[-1].startswith(TMP_MARK):
                report.leaked_tmp.append(entry)
            continue
        if image_cache and IMAGE_MARKER_DIR in parts:
            continue
        if is_dir:
            continue
        present.add(rel)
        if rel not in owned:
            report.leaked_files.append(entry)

    for rel, vol in sorted(owned.items()):
        if _get(vol, 'status') in LIVE_VOLUME and rel not in present:
            report.missing_files.append('%s (volume %s)'
                                        % (rel, _get(vol, 'id')))

    provider_ids = {}
    names = set()
    helper_prefixes = tuple('%s-clone-' % _volume_name(v) for v in volumes)
    for snap in snapshots:
        if _get(snap, 'provider_id'):
            provider_ids[_get(snap, 'provider_id')] = snap
        names.add(_snapshot_name(snap))
    on_array = set()
    for s in inv['snapshots']:
        uuid = s['uuid']['uuid']
        on_array.add(uuid)
        description = s.get('description') or ''
        if uuid in provider_ids or description in names:
            continue
        if helper_prefixes and description.startswith(helper_prefixes):
            continue
        if s.get('deletionPolicy') == ZERO_REFS and \
                s.get('cloneReferenceCount'):
            continue
        if image_cache and description.startswith(IMAGE_PREFIX):
            continue
        report.leaked_snapshots.append(
            '%s (%s, policy %s, %d clone refs)'
            % (uuid, description, s.get('deletionPolicy'),
               s.get('cloneReferenceCount') or 0))
    for uuid, snap in sorted(provider_ids.items()):
        if _get(snap, 'status') in LIVE_SNAPSHOT and uuid not in on_array:
            report.missing_snapshots.append('%s (snapshot %s)'
                                            % (uuid, _get(snap, 'id')))
    return report


def assert_no_leaks(testcase, sim, **kwargs):
    """Fail ``testcase`` with the report when anything leaked."""
    report = find_leaks(sim, **kwargs)
    if report:
        testcase.fail('VMstore inventory does not match Cinder: %s\n'
                      'files: %s' % (report, report.inventory['files']))
    return report
