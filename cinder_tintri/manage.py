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
"""Manage, unmanage and list manageable volumes and snapshots.

Volumes
    An existing file on a configured share is adopted by renaming it to the
    Cinder volume's name in the same share.  The reference is
    ``{'source-name': 'host:/export/path/file'}`` or a path relative to a
    configured share.  It must resolve, after following symbolic links, to
    a regular, raw, non-empty file inside that share that no Cinder volume
    uses; every other reference is refused with
    ``ManageExistingInvalidReference`` before anything on the share changes.
    The volume size is the file size rounded up to GiB; a file that is not
    a whole number of GiB is grown (sparsely) to that size when managed.
    Unmanage leaves the file as it is.

Snapshots
    An existing VMstore snapshot of a managed volume is adopted by storing
    its UUID as the snapshot's ``provider_id``; it is named by
    ``{'source-id': <Tintri snapshot UUID>}`` or ``{'source-name':
    <snapshot description>}``.  Unmanage leaves the array snapshot.
"""

import collections
import hashlib
import math
import os
import re
import stat

from cinder import context as cinder_context
from cinder import coordination
from cinder import exception
from cinder.i18n import _
from cinder import objects
from cinder.privsep import format_inspector
from cinder.volume import volume_utils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import timeutils
from oslo_utils import units

from cinder_tintri import client as tclient
from cinder_tintri import image_probe

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

# Temporary clone directories of the driver start with this (driver.py).
TMP_PREFIX = '.tintri-tmp-'
# Longest file name component, and longest reference, accepted.
NAME_MAX = 255
PATH_MAX = 4096
# How deep the manageable-volumes listing descends into subdirectories.
LIST_MAX_DEPTH = 8
# Array snapshots with this policy are helpers of create_cloned_volume:
# the array deletes them with their last clone, so they cannot be managed.
DELETE_ON_ZERO_CLONES = 'DELETE_ON_ZERO_CLONE_REFERENCES'
# Formats the driver serves; every volume of this backend is a raw file.
SERVED_FORMATS = ('raw',)
# Admin metadata key: the share and path a volume is being managed from.
MANAGED_FROM = 'tintri_managed_from'
# A volume left in 'managing' this long by a crashed service is undone at
# start-up (seconds).
MANAGE_STUCK = 600

_CONTROL_RE = re.compile('[\x00-\x1f\x7f]')

# A reference resolved to a file on a share.
Located = collections.namedtuple(
    'Located', ['share', 'mount', 'path', 'rel', 'stat'])


def _invalid(existing_ref, reason):
    return exception.ManageExistingInvalidReference(
        existing_ref=existing_ref, reason=reason)


def _gib(size_bytes):
    return int(math.ceil(float(size_bytes) / units.Gi))


def _uuid_of(item):
    value = item.get('uuid') if isinstance(item, dict) else None
    if isinstance(value, dict):
        value = value.get('uuid')
    return value if isinstance(value, str) else None


def _lock_name(path):
    # Lock names become file names: keep them short and free of '/'.
    return 'tintri-manage-%s' % hashlib.sha256(
        path.encode('utf-8', 'surrogateescape')).hexdigest()[:32]


class TintriManageMixin(object):
    """Manage/unmanage support of :class:`cinder_tintri.driver.TintriDriver`.

    Uses the driver's ``_mounted_shares``, ``_get_mount_point_for_share``,
    ``_export_path`` and ``_client`` (and cinder's RemoteFS helpers
    ``_execute``, ``_execute_as_root`` and ``_set_rw_permissions``).
    """

    # ------------------------------------------------------------------
    # Volumes: the API
    # ------------------------------------------------------------------

    def manage_existing_get_size(self, volume, existing_ref):
        """Size in GiB, rounded up, of the raw file the reference names."""
        loc = self._manage_locate(existing_ref, volume=volume)
        self._manage_check_target(volume, loc, existing_ref)
        self._manage_check_format(loc, existing_ref)
        return _gib(loc.stat.st_size)

    @coordination.synchronized('tintri-{volume.id}')
    def manage_existing(self, volume, existing_ref):
        """Rename the referenced file to the volume's name on its share."""
        # The volume's lock keeps the driver's own operations on the new
        # volume out; the source lock keeps two manages of one file apart.
        loc = self._manage_locate(existing_ref, volume=volume)
        with coordination.COORDINATOR.get_lock(_lock_name(loc.path)):
            # Everything is checked again under the lock: the file may have
            # changed since manage_existing_get_size looked at it.
            loc = self._manage_locate(existing_ref, volume=volume)
            self._manage_check_target(volume, loc, existing_ref)
            self._manage_check_format(loc, existing_ref)
            return self._manage_adopt(volume, loc, existing_ref)

    def unmanage(self, volume):
        """Cinder forgets the volume; its file stays on the share."""
        LOG.info('Unmanaged volume %(id)s; its file %(name)s stays on '
                 '%(share)s.', {'id': volume.id, 'name': volume.name,
                                'share': volume.provider_location})

    def get_manageable_volumes(self, cinder_volumes, marker, limit, offset,
                               sort_keys, sort_dirs):
        """Files on the mounted shares, and whether each can be managed."""
        managed = {}
        for vol in cinder_volumes:
            if vol.provider_location:
                managed[(vol.provider_location, vol.name)] = vol
        entries = []
        for share in list(self._mounted_shares):
            try:
                entries.extend(self._manage_list_share(share, managed))
            except OSError as e:
                LOG.warning('Cannot list manageable volumes on share '
                            '%(share)s: %(err)s', {'share': share, 'err': e})
        return self._manage_paginate(entries, marker, limit, offset,
                                     sort_keys, sort_dirs)

    # ------------------------------------------------------------------
    # Volumes: resolving a reference
    # ------------------------------------------------------------------

    def _manage_source_name(self, existing_ref):
        if not isinstance(existing_ref, dict):
            raise _invalid(existing_ref,
                           _('The reference must be a dictionary with the '
                             'key "source-name".'))
        name = existing_ref.get('source-name')
        if not isinstance(name, str) or not name.strip():
            raise _invalid(existing_ref,
                           _('The reference must contain "source-name": '
                             'host:/export/path/file or a path relative to '
                             'a configured share.'))
        self._manage_check_text(name, existing_ref, PATH_MAX)
        return name

    def _manage_check_text(self, text, existing_ref, max_len):
        if _CONTROL_RE.search(text):
            raise _invalid(existing_ref,
                           _('The reference contains a NUL, newline or other '
                             'control character.'))
        try:
            length = len(text.encode('utf-8'))
        except UnicodeEncodeError:
            raise _invalid(existing_ref,
                           _('The reference is not valid UTF-8 text.'))
        if length > max_len:
            raise _invalid(existing_ref,
                           _('The reference is %(len)d bytes long; at most '
                             '%(max)d are accepted.')
                           % {'len': length, 'max': max_len})

    def _manage_components(self, path, existing_ref):
        """Path components; refuses '..', hidden names and long names."""
        comps = [c for c in path.split('/') if c and c != '.']
        if '..' in comps:
            raise _invalid(existing_ref,
                           _('The path must not contain "..".'))
        for comp in comps:
            if len(comp.encode('utf-8')) > NAME_MAX:
                raise _invalid(existing_ref,
                               _('A file name in the path is longer than '
                                 '%d bytes.') % NAME_MAX)
        self._manage_check_hidden(comps, existing_ref)
        return comps

    def _manage_check_hidden(self, comps, existing_ref):
        for comp in comps:
            if comp.startswith(TMP_PREFIX):
                raise _invalid(existing_ref,
                               _('%s is a temporary file or directory of '
                                 'the Tintri driver.') % comp)
            if comp.startswith('.'):
                raise _invalid(existing_ref,
                               _('%s is a hidden file or directory; hidden '
                                 'files are not managed.') % comp)

    @staticmethod
    def _manage_split_host(name):
        """'host:/path' -> ('host', '/path'); anything else -> None.

        The host may be an IPv6 literal in brackets ('[fe80::1]:/tintri').
        """
        host, sep, rest = name.partition(':/')
        if sep and host and '/' not in host:
            return host, '/' + rest
        return None

    @staticmethod
    def _manage_same_host(a, b):
        return a.strip('[]').lower() == b.strip('[]').lower()

    def _manage_find_share(self, name, existing_ref):
        """(share, components relative to the share) for a reference.

        The shares are those configured; the one the reference is on (for
        a relative reference: every one) is mounted first, and a share
        that cannot be mounted fails the request instead of making its
        files look missing.
        """
        shares = list(getattr(self, 'shares', None) or self._mounted_shares)
        if not shares:
            raise _invalid(existing_ref, _('No share is configured.'))
        split = self._manage_split_host(name)
        if split:
            host, path = split
            comps = self._manage_components(path, existing_ref)
            best = None
            for share in shares:
                share_host = share.partition(':/')[0]
                if not self._manage_same_host(share_host, host):
                    continue
                export = [c for c in self._export_path(share).split('/')
                          if c]
                if comps[:len(export)] != export:
                    continue
                if len(comps) == len(export):
                    raise _invalid(existing_ref,
                                   _('The reference names the share %s '
                                     'itself, not a file on it.') % share)
                if best is None or len(export) > best[0]:
                    best = (len(export), share, comps[len(export):])
            if best is None:
                raise _invalid(existing_ref,
                               _('%(name)s is not on a share of this '
                                 'backend (%(shares)s).')
                               % {'name': name, 'shares': ', '.join(shares)})
            # Hidden components below the share (checked above for the
            # whole path, which includes the export).
            self._mount(best[1])
            return best[1], best[2]
        if name.startswith('/'):
            raise _invalid(existing_ref,
                           _('Absolute paths are not accepted; use '
                             'host:/export/path/file or a path relative to '
                             'a share (%s).') % ', '.join(shares))
        comps = self._manage_components(name, existing_ref)
        if not comps:
            raise _invalid(existing_ref, _('The reference names no file.'))
        for share in shares:
            self._mount(share)
        found = [share for share in shares
                 if os.path.lexists(os.path.join(
                     self._get_mount_point_for_share(share), *comps))]
        if not found:
            raise _invalid(existing_ref,
                           _('%(name)s was not found on any share of this '
                             'backend (%(shares)s).')
                           % {'name': name, 'shares': ', '.join(shares)})
        if len(found) > 1:
            raise _invalid(existing_ref,
                           _('%(name)s exists on several shares (%(shares)s); '
                             'name one as host:/export/path/file.')
                           % {'name': name, 'shares': ', '.join(found)})
        return found[0], comps

    def _manage_locate(self, existing_ref, volume=None):
        """Resolve and check a volume reference; returns a Located.

        Refuses (ManageExistingInvalidReference) anything that is not a
        regular file inside a configured share and unused by Cinder.
        Nothing on the share is changed.
        """
        name = self._manage_source_name(existing_ref)
        share, comps = self._manage_find_share(name, existing_ref)
        mount = self._get_mount_point_for_share(share)
        root = os.path.realpath(mount)
        lexical = os.path.join(mount, *comps)
        try:
            path = os.path.realpath(lexical, strict=True)
        except FileNotFoundError:
            raise _invalid(existing_ref,
                           _('%(name)s does not exist on share %(share)s.')
                           % {'name': '/'.join(comps), 'share': share})
        except OSError as e:
            raise _invalid(existing_ref,
                           _('%(name)s cannot be resolved on share '
                             '%(share)s: %(err)s')
                           % {'name': '/'.join(comps), 'share': share,
                              'err': e.strerror or e})
        if path == root or os.path.commonpath([root, path]) != root:
            raise _invalid(existing_ref,
                           _('%(name)s resolves (through a symbolic link) '
                             'to a place outside share %(share)s.')
                           % {'name': '/'.join(comps), 'share': share})
        rel = os.path.relpath(path, root)
        self._manage_check_hidden(rel.split(os.sep), existing_ref)
        try:
            st = os.lstat(path)
        except OSError as e:
            raise _invalid(existing_ref,
                           _('Cannot read %(name)s: %(err)s')
                           % {'name': rel, 'err': e.strerror or e})
        if stat.S_ISDIR(st.st_mode):
            raise _invalid(existing_ref,
                           _('%s is a directory, not a volume file.') % rel)
        if not stat.S_ISREG(st.st_mode):
            raise _invalid(existing_ref,
                           _('%s is not a regular file (a device, FIFO, '
                             'socket or link).') % rel)
        if st.st_nlink > 1:
            raise _invalid(existing_ref,
                           _('%(name)s has %(n)d hard links; a file with '
                             'other names may belong to another volume.')
                           % {'name': rel, 'n': st.st_nlink})
        if len(os.path.basename(path).encode('utf-8')) > NAME_MAX:
            raise _invalid(existing_ref,
                           _('The file name of %s is too long.') % rel)
        owner = self._manage_volume_using(os.path.basename(path), share,
                                          volume)
        if owner:
            raise _invalid(existing_ref,
                           _('%(name)s is the file of Cinder volume '
                             '%(id)s.') % {'name': rel, 'id': owner})
        if st.st_size == 0:
            raise _invalid(existing_ref,
                           _('%s is empty; it is not a volume image.') % rel)
        return Located(share, mount, path, rel, st)

    def _manage_check_format(self, loc, existing_ref):
        fmt, problem = self._manage_image_format(loc.path)
        if problem:
            raise _invalid(existing_ref, '%s: %s' % (loc.rel, problem))
        if fmt not in SERVED_FORMATS:
            raise _invalid(existing_ref,
                           _('%(name)s is a %(fmt)s image; this backend '
                             'serves raw volumes only. Convert it first '
                             '(qemu-img convert -O raw).')
                           % {'name': loc.rel, 'fmt': fmt})

    @staticmethod
    def _manage_image_format(path):
        """(format, None), or (None, why it is not a usable image).

        Cinder's image format inspector (the check qemu_img_info runs
        before qemu-img, through privsep) reads only the headers, so the
        listing stays fast on shares with many files.  Any bytes are a
        valid raw image; a file whose header is that of another format is
        taken for that format and refused.
        """
        try:
            fmt = format_inspector.get_format_if_safe(
                path=path, allow_qcow2_backing_file=False)
        except Exception as e:
            LOG.info('Cannot inspect %(path)s: %(err)s',
                     {'path': path, 'err': e})
            return None, _('cannot be read as a disk image.')
        if fmt is None:
            return None, _('fails the disk image safety check (for example '
                           'a backing file or external data file).')
        return fmt, None

    @staticmethod
    def _manage_volume_id_from_name(name):
        """The volume id a file name made by volume_name_template holds."""
        head, sep, tail = CONF.volume_name_template.partition('%s')
        if not sep or not name.startswith(head):
            return None
        if tail and not name.endswith(tail):
            return None
        vol_id = name[len(head):len(name) - len(tail)]
        if re.match(r'^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$',
                    vol_id):
            return vol_id
        return None

    def _manage_volume_using(self, file_name, share, volume=None,
                             scan_backend=True):
        """Id of a live Cinder volume whose file is ``file_name``, or None.

        A file named like a volume (``volume-<uuid>``) is in use when that
        volume exists; one left behind by unmanage is not.  Volumes whose
        file carries another id (after a migration) are found among the
        volumes of the backend.
        """
        vol_id = self._manage_volume_id_from_name(file_name)
        ctxt = cinder_context.get_admin_context()
        if vol_id:
            if volume is not None and vol_id == volume.id:
                return None
            try:
                owner = objects.Volume.get_by_id(ctxt, vol_id)
            except exception.VolumeNotFound:
                owner = None
            if owner is not None:
                return owner.id
        if not scan_backend:
            return None
        backend = None
        if volume is not None and volume.host:
            backend = volume_utils.extract_host(volume.host, 'backend')
        backend = backend or getattr(self, 'host', None)
        if not backend:
            return None
        for vol in objects.VolumeList.get_all_by_host(ctxt, backend):
            if volume is not None and vol.id == volume.id:
                continue
            if vol.name == file_name and vol.provider_location == share:
                return vol.id
        return None

    # ------------------------------------------------------------------
    # Volumes: adopting a file
    # ------------------------------------------------------------------

    @staticmethod
    def _manage_target(volume, loc):
        return os.path.join(os.path.realpath(loc.mount), volume.name)

    def _manage_check_target(self, volume, loc, existing_ref):
        """The file can become ``volume``: right pool, free target name."""
        pool = volume_utils.extract_host(volume.host, 'pool')
        if pool and pool != loc.share:
            raise _invalid(existing_ref,
                           _('%(name)s is on share %(share)s, but the volume '
                             'is to be managed into pool %(pool)s; use the '
                             'host ...#%(share)s.')
                           % {'name': loc.rel, 'share': loc.share,
                              'pool': pool})
        target = self._manage_target(volume, loc)
        if loc.path != target and os.path.lexists(target):
            raise _invalid(existing_ref,
                           _('%(target)s already exists on share %(share)s.')
                           % {'target': volume.name, 'share': loc.share})

    def _manage_adopt(self, volume, loc, existing_ref):
        """Rename the file to the volume's name, recorded first.

        The file's old name is stored in the volume's admin metadata
        (``MANAGED_FROM``) before the rename.  Cinder records the result
        (``provider_location``) only after the driver returns, so until
        then a crash leaves the user's file under the name of a volume
        that ends in ``error_managing``; deleting that volume, or the next
        start of the service, renames the file back
        (:meth:`_manage_undo`).  A failure here renames it back at once.
        """
        target = self._manage_target(volume, loc)
        renamed = False
        if loc.path != target:
            LOG.info('Managing %(src)s on %(share)s as volume %(id)s.',
                     {'src': loc.rel, 'share': loc.share, 'id': volume.id})
            self._manage_set_origin(volume, '%s/%s' % (loc.share, loc.rel))
            try:
                os.rename(loc.path, target)
            except OSError as e:
                self._manage_set_origin(volume, None)
                raise _invalid(existing_ref,
                               _('Cannot rename %(name)s to %(target)s: '
                                 '%(err)s')
                               % {'name': loc.rel, 'target': volume.name,
                                  'err': e.strerror or e})
            renamed = True
        try:
            size = _gib(loc.stat.st_size) * units.Gi
            if loc.stat.st_size < size:
                # Sparse growth to the size Cinder records; data unchanged.
                self._execute('truncate', '-s', str(size), target,
                              run_as_root=self._execute_as_root)
            self._set_rw_permissions(target)
        except Exception:
            if renamed:
                LOG.warning('Managing %(src)s failed; renaming it back.',
                            {'src': loc.rel})
                try:
                    os.rename(target, loc.path)
                    self._manage_set_origin(volume, None)
                except OSError as e:
                    LOG.error('Could not rename %(target)s back to %(src)s: '
                              '%(err)s', {'target': target, 'src': loc.rel,
                                          'err': e})
            raise
        model = {'provider_location': loc.share}
        if not volume_utils.extract_host(volume.host, 'pool'):
            model['host'] = volume_utils.append_host(volume.host, loc.share)
        volume.admin_metadata['format'] = 'raw'
        with volume.obj_as_admin():
            volume.save()
        return model

    # -- interrupted manages -------------------------------------------

    @staticmethod
    def _manage_set_origin(volume, origin):
        if origin is None:
            volume.admin_metadata.pop(MANAGED_FROM, None)
        else:
            volume.admin_metadata[MANAGED_FROM] = origin
        with volume.obj_as_admin():
            volume.save()

    def _manage_undo(self, volume):
        """Give a never-recorded manage's file its old name back.

        For a volume Cinder did not record as managed (no
        provider_location) whose admin metadata names the file it was
        managed from: if ``<share>/<volume name>`` is a regular file and
        the old name is free inside the same share, the file is renamed
        back.  True when it was.
        """
        origin = (volume.admin_metadata or {}).get(MANAGED_FROM)
        if not origin or volume.provider_location:
            return False
        share = rel = None
        for candidate in list(self._mounted_shares):
            prefix = candidate.rstrip('/') + '/'
            if origin.startswith(prefix):
                share, rel = candidate, origin[len(prefix):]
                break
        else:
            LOG.warning('Volume %(id)s was managed from %(origin)s, which is '
                        'on no mounted share; not renaming it back.',
                        {'id': volume.id, 'origin': origin})
            return False
        comps = rel.split('/')
        if any(c in ('', '.', '..') or c.startswith('.') for c in comps):
            return False
        mount = os.path.realpath(self._get_mount_point_for_share(share))
        target = os.path.join(mount, volume.name)
        source = os.path.join(mount, *comps)
        try:
            st = os.lstat(target)
        except OSError:
            return False
        parent = mount
        for comp in comps[:-1]:
            parent = os.path.join(parent, comp)
            if not os.path.isdir(parent) or os.path.islink(parent):
                return False
        if not stat.S_ISREG(st.st_mode) or os.path.lexists(source):
            LOG.warning('Cannot give the file of volume %(id)s its old name '
                        '%(rel)s back: the name is taken.',
                        {'id': volume.id, 'rel': rel})
            return False
        os.rename(target, source)
        LOG.info('Volume %(id)s was never recorded as managed: its file is '
                 '%(rel)s on %(share)s again.',
                 {'id': volume.id, 'rel': rel, 'share': share})
        return True

    def _undo_interrupted_manages(self):
        """At start-up: undo manages that Cinder never recorded.

        Volumes of this backend in error_managing, or stuck in managing
        for MANAGE_STUCK seconds with no operation holding their lock.
        """
        host = getattr(self, 'host', None)
        if not host:
            return
        ctxt = cinder_context.get_admin_context()
        try:
            volumes = objects.VolumeList.get_all_by_host(
                ctxt, volume_utils.extract_host(host, 'backend'))
        except Exception as e:
            LOG.warning('Cannot look for interrupted manages: %s', e)
            return
        now = timeutils.utcnow()
        for vol in volumes:
            if vol.provider_location or MANAGED_FROM not in (
                    vol.admin_metadata or {}):
                continue
            if vol.status == 'managing':
                changed = vol.updated_at or vol.created_at
                if changed and (now - changed.replace(tzinfo=None)
                                ).total_seconds() < MANAGE_STUCK:
                    continue
            elif vol.status not in ('error_managing',
                                    'error_managing_deleting'):
                continue
            lock = coordination.COORDINATOR.get_lock('tintri-%s' % vol.id)
            if not lock.acquire(blocking=False):
                continue
            try:
                self._manage_undo(vol)
            except Exception as e:
                LOG.warning('Cannot undo the interrupted manage of volume '
                            '%(id)s: %(err)s', {'id': vol.id, 'err': e})
            finally:
                lock.release()

    # ------------------------------------------------------------------
    # Volumes: the listing
    # ------------------------------------------------------------------

    def _manage_list_share(self, share, managed):
        mount = self._get_mount_point_for_share(share)
        root = os.path.realpath(mount)
        entries = []
        pending = [((), 0)]
        while pending:
            comps, depth = pending.pop()
            directory = os.path.join(root, *comps)
            try:
                names = sorted(os.listdir(directory))
            except OSError as e:
                LOG.info('Cannot list %(dir)s: %(err)s',
                         {'dir': directory, 'err': e})
                continue
            for name in names:
                here = comps + (name,)
                entry, descend = self._manage_list_entry(
                    share, root, here, managed)
                if entry:
                    entries.append(entry)
                if descend and depth + 1 < LIST_MAX_DEPTH:
                    pending.append((here, depth + 1))
        return entries

    def _manage_list_entry(self, share, root, comps, managed):
        """(entry or None, whether to descend) for one directory entry."""
        name = comps[-1]
        path = os.path.join(root, *comps)
        rel = '/'.join(comps)
        ref = {'source-name': '%s/%s' % (share.rstrip('/'), rel)}
        entry = {'reference': ref, 'size': 0, 'safe_to_manage': False,
                 'reason_not_safe': None, 'cinder_id': None,
                 'extra_info': None}
        try:
            st = os.lstat(path)
        except OSError:
            return None, False
        if len(comps) == 1 and (share, name) in managed:
            vol = managed[(share, name)]
            entry.update(size=vol.size, cinder_id=vol.id,
                         reason_not_safe=_('Volume already managed.'))
            return entry, False
        if name.startswith(TMP_PREFIX):
            entry['reason_not_safe'] = _('Temporary file of the Tintri '
                                         'driver.')
            return entry, False
        if name.startswith('.'):
            entry['reason_not_safe'] = _('Hidden file.')
            return entry, False
        if _CONTROL_RE.search(name) or len(name.encode(
                'utf-8', 'surrogateescape')) > NAME_MAX:
            entry['reason_not_safe'] = _('Unusable file name.')
            return entry, False
        if stat.S_ISLNK(st.st_mode):
            entry['reason_not_safe'] = _('Symbolic link; manage the file '
                                         'it points to.')
            return entry, False
        if stat.S_ISDIR(st.st_mode):
            entry['reason_not_safe'] = _('Directory; not a volume image.')
            return entry, True
        if not stat.S_ISREG(st.st_mode):
            entry['reason_not_safe'] = _('Not a regular file.')
            return entry, False
        entry['size'] = _gib(st.st_size)
        if st.st_nlink > 1:
            entry['reason_not_safe'] = _('File has several hard links.')
            return entry, False
        if st.st_size == 0:
            entry['reason_not_safe'] = _('Empty file; not a volume image.')
            return entry, False
        # The volumes of this backend are in ``managed``; a file named like
        # a volume may still belong to a volume of another backend.
        owner = (self._manage_volume_using(name, share, scan_backend=False)
                 if len(comps) == 1 else None)
        if owner:
            entry.update(cinder_id=owner,
                         reason_not_safe=_('In use by Cinder volume %s.')
                         % owner)
            return entry, False
        # A header probe settles plain raw files (most of a share) at the
        # cost of one read; anything else gets cinder's full inspector.
        if image_probe.looks_raw(path):
            fmt, problem = 'raw', None
        else:
            fmt, problem = self._manage_image_format(path)
        if problem:
            entry['reason_not_safe'] = _('Not a volume image: it %s') % problem
        elif fmt not in SERVED_FORMATS:
            entry['reason_not_safe'] = _('%s image; this backend serves '
                                         'raw volumes only.') % fmt
        else:
            entry['safe_to_manage'] = True
        return entry, False

    @staticmethod
    def _manage_paginate(entries, marker, limit, offset, sort_keys,
                         sort_dirs):
        if limit is None:
            limit = len(entries)
        return volume_utils.paginate_entries_list(
            entries, marker, limit, offset, sort_keys or ['reference'],
            sort_dirs or ['asc'])

    # ------------------------------------------------------------------
    # Snapshots
    # ------------------------------------------------------------------

    def manage_existing_snapshot_get_size(self, snapshot, existing_ref):
        """A snapshot of a volume is as large as the volume."""
        self._manage_find_snapshot(snapshot, existing_ref)
        return snapshot.volume.size

    def manage_existing_snapshot(self, snapshot, existing_ref):
        """Record the array snapshot's UUID as the provider_id."""
        snap = self._manage_find_snapshot(snapshot, existing_ref)
        snap_uuid = _uuid_of(snap)
        LOG.info('Managing VMstore snapshot %(uuid)s as snapshot %(id)s of '
                 'volume %(vol)s.', {'uuid': snap_uuid, 'id': snapshot.id,
                                     'vol': snapshot.volume_id})
        return {'provider_id': snap_uuid}

    def unmanage_snapshot(self, snapshot):
        """Cinder forgets the snapshot; the array snapshot stays."""
        LOG.info('Unmanaged snapshot %(id)s; VMstore snapshot %(uuid)s '
                 'stays.', {'id': snapshot.id, 'uuid': snapshot.provider_id})

    def get_manageable_snapshots(self, cinder_snapshots, marker, limit,
                                 offset, sort_keys, sort_dirs):
        """Array snapshots of this backend's volumes."""
        by_uuid = {}
        by_name = {}
        for snap in cinder_snapshots:
            if snap.provider_id:
                by_uuid[snap.provider_id] = snap
            by_name[(snap.volume_id, snap.name)] = snap
        volumes = self._manage_backend_volumes()
        index = self._manage_volume_index(volumes.values())
        entries = []
        try:
            array_snaps = list(self._client.find_snapshots())
        except tclient.TintriError as e:
            msg = (_('Cannot list the snapshots on the VMstore: %s') % e)
            raise exception.VolumeBackendAPIException(data=msg)
        for snap in array_snaps:
            snap_uuid = _uuid_of(snap)
            if not snap_uuid:
                continue
            volume = self._manage_snapshot_volume(snap, index)
            if volume is None:
                continue
            description = snap.get('description') or ''
            entry = {
                'reference': {'source-id': snap_uuid},
                'size': volume.size,
                'safe_to_manage': True,
                'reason_not_safe': None,
                'cinder_id': None,
                'extra_info': {'description': description,
                               'type': str(snap.get('type') or '')},
                'source_reference': {'source-id': volume.id},
            }
            owner = (by_uuid.get(snap_uuid)
                     or by_name.get((volume.id, description)))
            reason = self._manage_snapshot_unsafe(snap)
            if owner is not None:
                entry.update(safe_to_manage=False, cinder_id=owner.id,
                             reason_not_safe=_('Snapshot already managed.'))
            elif reason:
                entry.update(safe_to_manage=False, reason_not_safe=reason)
            entries.append(entry)
        return self._manage_paginate(entries, marker, limit, offset,
                                     sort_keys, sort_dirs)

    def _manage_backend_volumes(self):
        host = getattr(self, 'host', None)
        if not host:
            return {}
        ctxt = cinder_context.get_admin_context()
        return {v.id: v for v in objects.VolumeList.get_all_by_host(
            ctxt, volume_utils.extract_host(host, 'backend'))}

    def _manage_volume_index(self, volumes):
        index = {}
        for vol in volumes:
            index[('id', vol.id)] = vol
            index[('name', vol.name)] = vol
            if vol.provider_location:
                index[('file', tclient.export_relative(
                    '%s/%s' % (self._export_path(vol.provider_location),
                               vol.name)))] = vol
        return index

    @staticmethod
    def _manage_snapshot_volume(snap, index):
        """The Cinder volume an array snapshot was taken of, or None."""
        vm_uuid = _uuid_of({'uuid': snap.get('vmUuid')})
        for key in (('id', vm_uuid), ('id', snap.get('instanceId')),
                    ('file', tclient.export_relative(snap.get('file'))),
                    ('name', snap.get('vmName'))):
            if key[1] and key in index:
                return index[key]
        return None

    @staticmethod
    def _manage_snapshot_unsafe(snap):
        if snap.get('isDeleted'):
            return _('The VMstore snapshot is being deleted.')
        if snap.get('deletionPolicy') == DELETE_ON_ZERO_CLONES:
            return _('Helper snapshot of a clone; the VMstore deletes it '
                     'with its last clone.')
        return None

    def _manage_find_snapshot(self, snapshot, existing_ref):
        """The array snapshot the reference names, checked; or refuse."""
        if not isinstance(existing_ref, dict):
            raise _invalid(existing_ref,
                           _('The reference must be a dictionary with '
                             '"source-id" or "source-name".'))
        snap_uuid = existing_ref.get('source-id')
        name = existing_ref.get('source-name')
        for value in (snap_uuid, name):
            if value is not None and (not isinstance(value, str)
                                      or not value.strip()):
                raise _invalid(existing_ref,
                               _('"source-id" and "source-name" must be '
                                 'non-empty strings.'))
            if value is not None:
                self._manage_check_text(value, existing_ref, NAME_MAX)
        if snap_uuid is None and name is None:
            raise _invalid(existing_ref,
                           _('The reference must contain "source-id" (the '
                             'VMstore snapshot UUID) or "source-name" (its '
                             'description).'))
        volume = snapshot.volume
        index = self._manage_volume_index([volume])
        try:
            if snap_uuid is not None:
                snap = self._client.get_snapshot(snap_uuid)
                if snap is None:
                    raise _invalid(existing_ref,
                                   _('There is no VMstore snapshot with '
                                     'UUID %s.') % snap_uuid)
                if name is not None and snap.get('description') != name:
                    raise _invalid(existing_ref,
                                   _('VMstore snapshot %(uuid)s is not named '
                                     '%(name)s.')
                                   % {'uuid': snap_uuid, 'name': name})
            else:
                found = [s for s in self._client.find_snapshots(contain=name)
                         if s.get('description') == name]
                if not found:
                    raise _invalid(existing_ref,
                                   _('There is no VMstore snapshot named '
                                     '%s.') % name)
                mine = [s for s in found
                        if self._manage_snapshot_volume(s, index)]
                if not mine:
                    raise _invalid(existing_ref,
                                   _('The VMstore snapshot named %(name)s is '
                                     'not a snapshot of volume %(vol)s.')
                                   % {'name': name, 'vol': volume.id})
                if len(mine) > 1:
                    raise _invalid(existing_ref,
                                   _('%(n)d VMstore snapshots of volume '
                                     '%(vol)s are named %(name)s (%(uuids)s); '
                                     'use "source-id".')
                                   % {'n': len(mine), 'vol': volume.id,
                                      'name': name,
                                      'uuids': ', '.join(_uuid_of(s) or '?'
                                                         for s in mine)})
                snap = mine[0]
        except tclient.TintriError as e:
            msg = _('Cannot look up the VMstore snapshot: %s') % e
            raise exception.VolumeBackendAPIException(data=msg)
        snap_uuid = _uuid_of(snap)
        if not snap_uuid:
            raise _invalid(existing_ref,
                           _('The VMstore returned a snapshot without a '
                             'UUID.'))
        if self._manage_snapshot_volume(snap, index) is None:
            raise _invalid(existing_ref,
                           _('VMstore snapshot %(uuid)s is not a snapshot of '
                             'volume %(vol)s.')
                           % {'uuid': snap_uuid, 'vol': volume.id})
        reason = self._manage_snapshot_unsafe(snap)
        if reason:
            raise _invalid(existing_ref, reason)
        ctxt = cinder_context.get_admin_context()
        for other in objects.SnapshotList.get_all_for_volume(ctxt,
                                                             volume.id):
            if other.id != snapshot.id and other.provider_id == snap_uuid:
                raise _invalid(existing_ref,
                               _('VMstore snapshot %(uuid)s is already '
                                 'managed as snapshot %(id)s.')
                               % {'uuid': snap_uuid, 'id': other.id})
        return snap
