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
"""Generic volume groups and group snapshots on array snapshots and clones.

A group is a Cinder-side collection: nothing exists for it on the VMstore.
A group snapshot is one array snapshot per member (``POST cinder/snapshot``,
the request every single snapshot makes), each recorded in its Cinder
snapshot's ``provider_id``; a group created from a group snapshot or from
another group is one array clone per member.

**Consistency.**  The VMstore API promises no crash consistency across
files: the official ``POST /v310/snapshot`` takes a list of SnapshotSpec,
but names VMs (``sourceVmTintriUUID``), not files, and documents no
atomicity, no ordering of its ``List<String>`` answer and no cinder/clone
of what it makes; ``cinder/snapshot`` takes one file.  So the members are
snapshotted one after another, each at its own instant, and every pool
reports ``consistent_group_snapshot_enabled: False``.  A group type that
asks for ``consistent_group_snapshot_enabled="<is> True"`` is not
scheduled here, and such a group is refused if one is asked for anyway.

**All or nothing.**  When one member fails, nothing more is created and
what the operation already made is deleted: the array snapshots of the
other members, the clones of the other new volumes, and whatever the
failed member's own request may have left (a late snapshot found by its
description, a clone in a temporary directory, a clone's helper
snapshot).  Anything that cannot be deleted stays recorded (a snapshot's
``provider_id``, a volume's ``provider_location``) so that deleting the
Cinder object removes it later.

The collaborator works through an explicit interface,
:class:`MemberOperations`: the driver's own single-object operations
(locks, protocol choice, error mapping included), so a member of a group
is snapshotted, cloned and deleted exactly as a lone volume is.
"""

import abc

from cinder import exception
from cinder.i18n import _
from cinder.objects import fields
from cinder.volume import volume_utils
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: Pool capabilities this module is responsible for (what the array
#: gives; see the module documentation).
CAPABILITIES = {'consistent_group_snapshot_enabled': False}


class MemberOperations(abc.ABC):
    """The single-object operations a group is made of.

    Each takes Cinder objects and raises a Cinder exception on failure,
    as the corresponding volume-driver method does.
    """

    @abc.abstractmethod
    def create_snapshot(self, snapshot):
        """Array snapshot of ``snapshot.volume``.

        Returns a model update holding its ``provider_id``.
        """

    @abc.abstractmethod
    def delete_snapshot(self, snapshot):
        """Delete the array snapshot; nothing there is success.

        The snapshot is ``provider_id``, else the one named after the
        Cinder snapshot.
        """

    @abc.abstractmethod
    def create_volume_from_snapshot(self, volume, snapshot):
        """Clone a snapshot; returns a model update (provider_location)."""

    @abc.abstractmethod
    def create_cloned_volume(self, volume, src_vref):
        """Clone a volume; returns a model update (provider_location)."""

    @abc.abstractmethod
    def delete_volume(self, volume):
        """Delete the volume's file.

        Without provider_location: what a failed create may have left.
        """


class Groups(object):
    """The group interface of a Cinder volume driver.

    :param members: a :class:`MemberOperations` (the driver).
    """

    def __init__(self, members):
        self.members = members

    # -- groups --------------------------------------------------------

    def create_group(self, context, group):
        self._refuse_consistent(group, _('Creating group %s') % group.id)
        LOG.info('Group %s: nothing to create on the VMstore.', group.id)
        return {'status': fields.GroupStatus.AVAILABLE}

    def update_group(self, context, group, add_volumes=None,
                     remove_volumes=None):
        # Membership lives in Cinder's database only.
        return None, None, None

    def delete_group(self, context, group, volumes):
        """Delete every member; report each one's outcome."""
        model_update = {'status': fields.GroupStatus.DELETED}
        updates = []
        for volume in volumes:
            update = {'id': volume.id}
            try:
                self.members.delete_volume(volume)
                update['status'] = 'deleted'
            except exception.VolumeIsBusy:
                update['status'] = 'available'
            except Exception as e:
                LOG.error('Group %(group)s: deleting volume %(vol)s '
                          'failed: %(err)s',
                          {'group': group.id, 'vol': volume.id, 'err': e})
                update['status'] = 'error_deleting'
                model_update['status'] = fields.GroupStatus.ERROR_DELETING
            updates.append(update)
        return model_update, updates

    # -- group snapshots -----------------------------------------------

    def create_group_snapshot(self, context, group_snapshot, snapshots):
        """One array snapshot per member; all of them or none.

        On a failure the members not yet snapshotted are not asked for,
        the array snapshots already made are deleted and every member is
        reported ``error`` (with the ``provider_id`` of any snapshot that
        could not be deleted, so that deleting the group snapshot later
        removes it).
        """
        self._refuse_consistent(
            group_snapshot, _('Group snapshot %s') % group_snapshot.id)
        made = []      # (snapshot, provider_id)
        failure = None
        for snapshot in snapshots:
            try:
                update = self.members.create_snapshot(snapshot) or {}
            except Exception as e:
                failure = (snapshot, e)
                break
            made.append((snapshot, update.get('provider_id')))
        if failure is None:
            LOG.info('Group snapshot %(gs)s: %(n)d array snapshots.',
                     {'gs': group_snapshot.id, 'n': len(made)})
            return ({'status': fields.GroupSnapshotStatus.AVAILABLE},
                    [{'id': snap.id, 'provider_id': uuid,
                      'status': fields.SnapshotStatus.AVAILABLE}
                     for snap, uuid in made])
        failed, err = failure
        LOG.error('Group snapshot %(gs)s: snapshot %(snap)s of volume '
                  '%(vol)s failed (%(err)s); deleting the %(n)d array '
                  'snapshots already made.',
                  {'gs': group_snapshot.id, 'snap': failed.id,
                   'vol': failed.volume_id, 'err': err, 'n': len(made)})
        kept = {}
        for snap, uuid in made + [(failed, None)]:
            # The failed member's request may have made a snapshot the
            # answer did not name: found by its description.
            snap.provider_id = uuid
            try:
                self.members.delete_snapshot(snap)
            except Exception as e:
                LOG.warning('Group snapshot %(gs)s: array snapshot of '
                            '%(snap)s stays recorded: %(err)s',
                            {'gs': group_snapshot.id, 'snap': snap.id,
                             'err': e})
                kept[snap.id] = uuid
        updates = []
        for snap in snapshots:
            snap.provider_id = kept.get(snap.id)
            updates.append({'id': snap.id,
                            'status': fields.SnapshotStatus.ERROR,
                            'provider_id': snap.provider_id})
        return {'status': fields.GroupSnapshotStatus.ERROR}, updates

    def delete_group_snapshot(self, context, group_snapshot, snapshots):
        """Delete every member's array snapshot; report each outcome."""
        model_update = {'status': fields.GroupSnapshotStatus.DELETED}
        updates = []
        for snapshot in snapshots:
            update = {'id': snapshot.id}
            try:
                self.members.delete_snapshot(snapshot)
                update['status'] = fields.SnapshotStatus.DELETED
            except exception.SnapshotIsBusy:
                update['status'] = fields.SnapshotStatus.AVAILABLE
            except Exception as e:
                LOG.error('Group snapshot %(gs)s: deleting snapshot '
                          '%(snap)s failed: %(err)s',
                          {'gs': group_snapshot.id, 'snap': snapshot.id,
                           'err': e})
                update['status'] = fields.SnapshotStatus.ERROR_DELETING
                model_update['status'] = (
                    fields.GroupSnapshotStatus.ERROR_DELETING)
            updates.append(update)
        return model_update, updates

    # -- groups from a source ------------------------------------------

    def create_group_from_src(self, context, group, volumes,
                              group_snapshot=None, snapshots=None,
                              source_group=None, source_vols=None):
        """One array clone per new member; all of them or none.

        Each new volume is matched to its source by id (its
        ``snapshot_id`` or ``source_volid``), not by list position.  On a
        failure the clones already made are deleted, with whatever the
        failed clone left, and the error is raised: the volume manager
        then marks the group and its volumes ``error`` (a model update
        saying error would not be heeded here).
        """
        self._refuse_consistent(group, _('Creating group %s') % group.id)
        pairs = self._pair_sources(group, volumes, snapshots, source_vols)
        made = []
        for volume, source in pairs:
            try:
                if snapshots:
                    update = self.members.create_volume_from_snapshot(
                        volume, source)
                else:
                    update = self.members.create_cloned_volume(volume,
                                                               source)
            except Exception as e:
                self._undo_clones(group, made, volume)
                if isinstance(e, exception.CinderException):
                    raise
                msg = (_('Creating group %(group)s: volume %(vol)s '
                         'failed: %(err)s')
                       % {'group': group.id, 'vol': volume.id, 'err': e})
                raise exception.VolumeBackendAPIException(data=msg) from e
            update = dict(update or {})
            update.pop('id', None)
            made.append((volume, update))
        LOG.info('Group %(group)s: %(n)d volumes cloned from %(src)s.',
                 {'group': group.id, 'n': len(made),
                  'src': ('group snapshot %s' % group_snapshot.id
                          if group_snapshot is not None
                          else 'group %s' % getattr(source_group, 'id',
                                                    None))})
        return ({'status': fields.GroupStatus.AVAILABLE},
                [dict(update, id=volume.id,
                      status=update.get('status', 'available'))
                 for volume, update in made])

    def _pair_sources(self, group, volumes, snapshots, source_vols):
        """[(new volume, its source)], matched by id.

        A mismatch is refused before anything is created.
        """
        if snapshots:
            by_id = {s.id: s for s in snapshots}
            key = 'snapshot_id'
        elif source_vols:
            by_id = {v.id: v for v in source_vols}
            key = 'source_volid'
        else:
            msg = (_('Creating group %s from a source: no source snapshots '
                     'or volumes given.') % group.id)
            raise exception.InvalidInput(reason=msg)
        pairs = []
        for volume in volumes:
            source = by_id.get(getattr(volume, key, None))
            if source is None:
                msg = (_('Creating group %(group)s: volume %(vol)s has no '
                         'source among the given ones.')
                       % {'group': group.id, 'vol': volume.id})
                raise exception.InvalidInput(reason=msg)
            pairs.append((volume, source))
        if len({id(src) for _vol, src in pairs}) != len(pairs) or \
                len(pairs) != len(by_id):
            msg = (_('Creating group %s: the new volumes and their sources '
                     'do not pair up one to one.') % group.id)
            raise exception.InvalidInput(reason=msg)
        return pairs

    def _undo_clones(self, group, made, failed):
        """Delete the clones made, then what the failed one left.

        A volume whose clone cannot be deleted keeps its
        provider_location on the object (the manager saves the object
        with status error), so that deleting it later removes the file.
        """
        for volume, update in made:
            volume.provider_location = update.get('provider_location')
            try:
                self.members.delete_volume(volume)
            except Exception as e:
                LOG.warning('Creating group %(group)s: the clone %(vol)s '
                            'stays (delete the volume to remove it): '
                            '%(err)s',
                            {'group': group.id, 'vol': volume.id, 'err': e})
                continue
            volume.provider_location = None
        failed.provider_location = None
        try:
            self.members.delete_volume(failed)
        except Exception as e:
            LOG.warning('Creating group %(group)s: cleaning up after volume '
                        '%(vol)s failed: %(err)s',
                        {'group': group.id, 'vol': failed.id, 'err': e})

    # -- helpers -------------------------------------------------------

    @staticmethod
    def _refuse_consistent(group_or_snap, what):
        """A group type asking for consistent snapshots is not served."""
        if volume_utils.is_group_a_cg_snapshot_type(group_or_snap):
            msg = (_('%s: the group type asks for consistent group '
                     'snapshots (consistent_group_snapshot_enabled), which '
                     'the VMstore does not provide across volumes.') % what)
            raise exception.VolumeBackendAPIException(data=msg)
