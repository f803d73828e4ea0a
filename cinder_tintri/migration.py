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
"""Zero-copy migration and retype between shares of one VMstore.

Every share of a VMstore is a directory of its one datastore, and an array
clone can land anywhere on it.  A volume that moves to another share of
the same array - another pool of this backend, or a pool of another
backend on that array - is therefore moved without reading or writing a
byte through the host:

1. a helper snapshot of the volume file is taken with the
   DELETE_ON_ZERO_CLONE_REFERENCES policy (it goes with its last clone);
2. the array clones it into a temporary directory of the destination
   share, and the clone is renamed into place under the volume's name
   (refusing to overwrite anything there);
3. the source file is deleted and the helper snapshot deleted (or left to
   the array, which deletes it with the clone).

The volume keeps its id and its file name, so the model update is only
the new ``provider_location`` (and a cleared ``provider_id``: the moved
file is another VM on the array).  Array snapshots of the volume are
named by their UUID (``provider_id``) and hold their own blocks, so they
stay valid after the move: a volume created from one, a revert to one
(it clones the snapshot into the volume's new share) and its deletion
work as before.

A move is refused - ``(False, None)``, so that Cinder falls back to its
generic, host-copy migration - when the volume is attached (Cinder never
asks a driver to move an attached volume; Nova must swap it), when the
destination is another array or not a Tintri pool at all (judged from
the ``location_info`` every pool reports), or when the destination share
is not mounted here and cannot be mounted (with this backend's mount
options, at its ``nfs_mount_point_base``).  A failure half way (the array
refusing the snapshot or the clone, the share failing the rename) removes
what the move made and raises: the source file is untouched.

Array identity: ``location_info`` is
``tintri;serial=<serialNumber>;host=<tintri_server_hostname>;share=<share>``.
Two pools are on the same array when both report the array's serial number
(ApplianceInfo ``serialNumber``) and they are equal; when either does not
know it (the array did not report one), only the same configured hostname
counts.
"""

import collections
import os
import re
import time
import uuid

from cinder import exception
from cinder.i18n import _
from cinder.volume import volume_utils
from oslo_config import cfg
from oslo_log import log as logging

from cinder_tintri import client as tclient
from cinder_tintri import share_files

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

LOCATION_PREFIX = 'tintri'
ZERO_REFS = 'DELETE_ON_ZERO_CLONE_REFERENCES'
EXPORT_ROOT = '/tintri'
_SERIAL = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,127}')
# An array that did not tell its serial number is asked again after this
# many seconds (at most one extra REST call per stats update).
IDENTIFY_RETRY = 600.0

#: What the mover needs from the driver, as plain callables:
#:
#: ``mount(share)`` -> mount point; raises when it cannot be mounted.
#: ``volume_file(volume)`` -> (path, lstat) of the regular volume file;
#:     raises when it is not one.
#: ``check_writable(share, mount, what)``: raises on a read-only share.
#: ``snapshot(share, file_name, key_id, description, policy)`` -> uuid.
#: ``clone_into_share(snap_uuid, source_name, share, target_name)`` ->
#:     path of the clone, renamed into place (never overwriting).
#: ``finish(path, size_gb)``: grow to the volume size, set permissions.
#: ``delete_file(path)``: remove a file of the share.
#: ``forget(volume_id)``: drop what the driver caches about the volume's
#:     file (reusable clone sources, its VM on the array).
Ops = collections.namedtuple('Ops', [
    'mount', 'volume_file', 'check_writable', 'snapshot',
    'clone_into_share', 'finish', 'delete_file', 'forget'])


def location_info(serial, hostname, share):
    """The ``location_info`` a pool reports."""
    return '%s;serial=%s;host=%s;share=%s' % (
        LOCATION_PREFIX, serial or '', hostname or '', share)


def parse_location(text):
    """{'serial', 'host', 'share'} of a Tintri location_info, or None."""
    if not isinstance(text, str) or not text.startswith(
            LOCATION_PREFIX + ';'):
        return None
    parts = text[len(LOCATION_PREFIX) + 1:].split(';', 2)
    if len(parts) != 3:
        return None
    out = {}
    for key, part in zip(('serial', 'host', 'share'), parts):
        name, sep, value = part.partition('=')
        if name != key or not sep:
            return None
        out[key] = value
    if out['serial'] and not _SERIAL.fullmatch(out['serial']):
        out['serial'] = ''
    if not out['share']:
        return None
    return out


def same_array(ours, theirs):
    """True when two parsed locations name the same VMstore."""
    if ours['serial'] and theirs['serial']:
        return ours['serial'] == theirs['serial']
    return bool(ours['host']) and (
        ours['host'].lower() == theirs['host'].lower())


def export_path(share):
    """'host:/tintri/sub' -> '/tintri/sub' ('' when not host:path)."""
    if ':' not in share:
        return ''
    return share.split(':', 1)[1].rstrip('/') or '/'


def _pool_of(host):
    """The pool of a destination ``{'host': 'h@b#pool', ...}``, or None."""
    name = (host or {}).get('host')
    if not name:
        return None
    return volume_utils.extract_host(name, level='pool')


def _attached(volume):
    try:
        if volume.attach_status != 'detached':
            return True
        return bool(volume.volume_attachment)
    except Exception:
        return True   # unknown: never move a file something may hold


class Refused(Exception):
    """The move cannot be done by the array: Cinder copies instead."""


class VolumeMigration(object):
    """Moves volume files between shares of one VMstore by array clone.

    :param client: the VMstore client (helper snapshot deletion).
    :param hostname: this backend's ``tintri_server_hostname``.
    :param ops: :data:`Ops`, the driver's share and array primitives.
    """

    def __init__(self, client, hostname, ops):
        self.client = client
        self.hostname = hostname
        self.ops = ops
        self.serial = None
        self._asked_at = None

    # -- identity ------------------------------------------------------

    def identify(self, force=False):
        """Learn the array's serial number; False when it did not say.

        Asked once, then again at most every IDENTIFY_RETRY seconds (or
        when ``force``) until the array answers with one.
        """
        if self.serial:
            return True
        now = time.monotonic()
        if not force and self._asked_at is not None and (
                now - self._asked_at < IDENTIFY_RETRY):
            return False
        self._asked_at = now
        try:
            info = self.client.get_appliance_info()
        except tclient.TintriError as e:
            LOG.info('Cannot read the VMstore serial number (%s); pools '
                     'on it are recognised by its hostname only.', e)
            return False
        serial = info.get('serialNumber')
        if isinstance(serial, str) and _SERIAL.fullmatch(serial):
            self.serial = serial
            return True
        return False

    def location_info(self, share):
        return location_info(self.serial, self.hostname, share)

    # -- the driver's entry points ------------------------------------

    def migrate(self, volume, host):
        """Cinder's migrate_volume: ``(moved, model_update)``."""
        try:
            dest = self._destination(volume, host)
        except Refused as e:
            LOG.info('Volume %(id)s: no array-side migration to %(host)s: '
                     '%(why)s; Cinder copies it instead.',
                     {'id': volume.id, 'host': (host or {}).get('host'),
                      'why': e})
            return False, None
        if dest == volume.provider_location:
            return True, None
        return True, self.move(volume, dest)

    def retype(self, volume, new_type, diff, host):
        """Cinder's retype: ``(retyped, model_update)``.

        Nothing on the array depends on the volume type.  A retype that
        also changes the pool (the scheduler placed the new type on
        another share of this backend) moves the file there; one that
        cannot be moved is not retyped here and Cinder migrates it (with
        ``migration_policy=on-demand``).
        """
        pool = _pool_of(host)
        if not pool or pool == volume.provider_location:
            return True, None
        moved, update = self.migrate(volume, host)
        return moved, update

    def update_migrated(self, volume, new_volume, original_status):
        """Cinder's update_migrated_volume after a generic migration.

        ``new_volume``'s file (on this backend) is renamed to the original
        volume's name when the volume was detached, nothing holds that
        name and the rename succeeds; then the volume keeps its name.
        Otherwise it keeps the new file, which Cinder then finds through
        ``_name_id``.
        """
        if original_status == 'available':
            try:
                if self._rename(volume, new_volume):
                    return {'_name_id': None,
                            'provider_location': new_volume.provider_location}
            except Exception as e:
                LOG.warning('Volume %(id)s keeps the file of %(new)s: %(err)s',
                            {'id': volume.id, 'new': new_volume.id,
                             'err': e})
        return {'_name_id': new_volume._name_id or new_volume.id,
                'provider_location': new_volume.provider_location}

    def _rename(self, volume, new_volume):
        """Give new_volume's file the original volume's name, or False."""
        path, _st = self.ops.volume_file(new_volume)   # regular, or raise
        target = os.path.join(os.path.dirname(path), share_files.check_name(
            CONF.volume_name_template % volume.id))
        if target == path:
            return True
        if os.path.lexists(target):
            LOG.warning('Volume %(id)s: %(target)s exists; keeping the '
                        'migrated file under its own name.',
                        {'id': volume.id, 'target': target})
            return False
        os.rename(path, target)
        self.ops.forget(new_volume.id)
        return True

    # -- the decision --------------------------------------------------

    def _destination(self, volume, host):
        """The destination share, or Refused."""
        if _attached(volume):
            raise Refused(_('the volume is attached'))
        caps = (host or {}).get('capabilities') or {}
        theirs = parse_location(caps.get('location_info'))
        if theirs is None:
            raise Refused(_('the destination is not a Tintri pool'))
        self.identify(force=True)
        ours = parse_location(self.location_info(volume.provider_location
                                                 or '-'))
        if not same_array(ours, theirs):
            raise Refused(_('the destination is another VMstore'))
        dest = theirs['share']
        pool = _pool_of(host)
        if pool and pool != dest:
            raise Refused(_('the destination pool %(pool)s is not its share '
                            '%(share)s') % {'pool': pool, 'share': dest})
        path = export_path(dest)
        if (path != EXPORT_ROOT and not path.startswith(EXPORT_ROOT + '/')
                or any(p in ('..', '.') for p in path.split('/'))):
            raise Refused(_('share %s is not on the VMstore export') % dest)
        if dest == volume.provider_location:
            return dest
        try:
            self.ops.mount(dest)
        except Exception as e:
            raise Refused(_('share %(share)s is not mounted here and cannot '
                            'be mounted: %(err)s') % {'share': dest,
                                                      'err': e})
        return dest

    # -- the move ------------------------------------------------------

    def move(self, volume, dest):
        """Move the volume's file to share ``dest``; the model update.

        Raises VolumeMigrationFailed (or the driver's Cinder exception)
        after removing whatever the move made; the source is untouched.
        """
        ops = self.ops
        src = volume.provider_location
        what = _('Migrating volume %(id)s to %(share)s') % {
            'id': volume.id, 'share': dest}
        path, st = ops.volume_file(volume)
        mount = ops.mount(dest)
        ops.check_writable(dest, mount, what)
        name = share_files.check_name(volume.name)
        target = os.path.join(mount, name)
        if os.path.lexists(target):
            msg = (_('%(what)s: %(target)s already exists; refusing to '
                     'overwrite it.') % {'what': what, 'target': target})
            raise exception.VolumeMigrationFailed(reason=msg)
        description = '%s-clone-migrate-%s' % (name, uuid.uuid4().hex[:12])
        try:
            snap_uuid = ops.snapshot(src, name, volume.id, description,
                                     ZERO_REFS)
        except tclient.TintriError as e:
            raise self._failed(what, e)
        try:
            new_path = ops.clone_into_share(snap_uuid, name, dest, name)
        except Exception as e:
            self._drop_helper(snap_uuid)
            raise self._failed(what, e)
        try:
            ops.finish(new_path, volume.size)
            got = share_files.lstat_regular(new_path)
            if got.st_size < st.st_size:
                raise exception.VolumeBackendAPIException(
                    data=_('the clone has %(got)d bytes, the volume '
                           '%(want)d') % {'got': got.st_size,
                                          'want': st.st_size})
            ops.delete_file(path)
        except Exception as e:
            self._remove(new_path)
            self._drop_helper(snap_uuid)
            raise self._failed(what, e)
        ops.forget(volume.id)
        self._drop_helper(snap_uuid)
        LOG.info('Moved volume %(id)s from %(src)s to %(dest)s on the '
                 'VMstore (no data copied by the host).',
                 {'id': volume.id, 'src': src, 'dest': dest})
        return {'provider_location': dest, 'provider_id': None}

    def _drop_helper(self, snap_uuid):
        """Delete a helper; one with a clone goes with it (its policy)."""
        try:
            self.client.delete_snapshot(snap_uuid)
        except tclient.SnapshotHasClones:
            LOG.debug('Helper snapshot %s is deleted with its clone.',
                      snap_uuid)
        except tclient.TintriError as e:
            LOG.warning('Could not delete helper snapshot %(uuid)s: %(err)s',
                        {'uuid': snap_uuid, 'err': e})

    def _remove(self, path):
        try:
            if share_files.lstat_regular(path, missing_ok=True):
                self.ops.delete_file(path)
        except Exception as e:
            LOG.warning('Could not remove %(path)s: %(err)s',
                        {'path': path, 'err': e})

    @staticmethod
    def _failed(what, err):
        if isinstance(err, exception.CinderException):
            reason = err.msg
        else:
            reason = str(err)
        msg = _('%(what)s failed: %(err)s') % {'what': what, 'err': reason}
        return exception.VolumeMigrationFailed(reason=msg)
