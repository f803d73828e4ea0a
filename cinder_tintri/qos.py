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
"""Per-volume QoS: back-end QoS specs onto the VMstore VM of the file.

A VMstore limits I/O per VM (``PUT /v310/vm/{vmId}/qosConfig``, a
VirtualMachineQoSConfig with ``minNormalizedIops`` / ``maxNormalizedIops``;
0 means the system default, i.e. no explicit floor or ceiling).  The VM of
a volume is the one the array's inventory gives for the volume file
(:class:`cinder_tintri.inventory.Inventory`).

Keys of a QoS spec with consumer ``back-end`` or ``both`` (case does not
matter), as other Cinder drivers (NetApp, SolidFire) spell them:

``minIOPS`` / ``maxIOPS``
    normalized IOPS floor / ceiling of the volume;
``minIOPSperGiB`` / ``maxIOPSperGiB``
    the same per GiB of the volume's size (rounded up to whole IOPS), set
    again when the volume is extended.

A floor and a ceiling may mix forms (``minIOPS`` with ``maxIOPSperGiB``);
one of each form per bound only.  A value is a whole number >= 0 (per
GiB: a number >= 0); the floor may not exceed a non-zero ceiling.  Other
keys are refused for consumer ``back-end`` (e.g. ``maxBPS``: the VMstore
limits IOPS only) and left to the front end for consumer ``both``.

Best effort: when the array cannot take the settings yet (the file is not
in its inventory, ERR-API-3110 "non-live VM", a 404 or a connection
failure) the operation still succeeds, the reason is logged, the owner of
the volume gets a Cinder user message (level WARNING), and the volume is
recorded as *pending* on its share
(``<share>/.tintri-qos-pending/<volume id>``).  Records survive a restart
and every service of a cluster sees them; :meth:`VolumeQos.retry_pending`
(run from the periodic stats update, bounded in time) applies the
settings later, derived again from the volume's type and size at that
moment (a retype or an extend meanwhile is honoured), and drops the
record when done or when the volume is gone.  Values the array refuses
(ERR-API-3109/3112/3113) are not retried.
"""

import collections
import math
import re
import time

from cinder import context as cinder_context
from cinder import coordination
from cinder import exception
from cinder.i18n import _
from cinder.message import api as message_api
from cinder.message import message_field
from cinder import objects
from cinder.volume import volume_types
from oslo_log import log as logging

from cinder_tintri import client as tclient
from cinder_tintri import inventory
from cinder_tintri import share_records

LOG = logging.getLogger(__name__)

DIR = '.tintri-qos-pending'
MIN_IOPS = 'miniops'
MAX_IOPS = 'maxiops'
MIN_PER_GIB = 'miniopspergib'
MAX_PER_GIB = 'maxiopspergib'
#: The documented keys, as operators write them.
KEYS = ('minIOPS', 'maxIOPS', 'minIOPSperGiB', 'maxIOPSperGiB')
_CANONICAL = {k.lower(): k for k in KEYS}
CONSUMERS = ('back-end', 'both')
# Largest value sent (the DTO's numbers are Java ints or longs: stay in
# the int range).
QOS_MAX = 2 ** 31 - 1
# Volume ids become file names.
_SAFE_ID = re.compile(r'[0-9a-fA-F-]{1,64}')
#: At most this many pending volumes are tried per periodic run.
RETRY_BATCH = 50

# What is in progress when the array refuses (the Cinder user message's
# action): a create of any kind, an extend, an unmanage.
CREATE = 'create'
EXTEND = 'extend'
RETYPE = 'retype'
MANAGE = 'manage'
REVERT = 'revert'
MIGRATE = 'migrate'
UNMANAGE = 'unmanage'
_ACTIONS = {
    EXTEND: message_field.Action.EXTEND_VOLUME,
    UNMANAGE: message_field.Action.UNMANAGE_VOLUME,
}

Limits = collections.namedtuple('Limits', ['min_iops', 'max_iops'])
NO_LIMITS = Limits(0, 0)


class QosSpec(collections.namedtuple(
        'QosSpec', ['min_iops', 'max_iops', 'min_per_gib', 'max_per_gib'])):
    """A validated spec; each field None when not given."""

    @property
    def per_gib(self):
        return self.min_per_gib is not None or self.max_per_gib is not None

    def limits(self, size_gb):
        """The Limits for a volume of ``size_gb``; InvalidQoSSpecs if bad."""
        def bound(fixed, per_gib):
            if fixed is not None:
                return fixed
            if per_gib is not None:
                return int(math.ceil(per_gib * max(0, int(size_gb or 0))))
            return 0
        low = bound(self.min_iops, self.min_per_gib)
        high = bound(self.max_iops, self.max_per_gib)
        for name, value in (('minimum', low), ('maximum', high)):
            if value > QOS_MAX:
                raise exception.InvalidQoSSpecs(reason=_(
                    'the %(name)s of %(value)d IOPS for %(size)s GiB is '
                    'above %(max)d') % {'name': name, 'value': value,
                                        'size': size_gb, 'max': QOS_MAX})
        if high and low > high:
            raise exception.InvalidQoSSpecs(reason=_(
                'for %(size)s GiB the minimum of %(low)d IOPS is above the '
                'maximum of %(high)d') % {'size': size_gb, 'low': low,
                                          'high': high})
        return Limits(low, high)


def _bad(key, value, what):
    return exception.InvalidQoSSpecs(reason=_(
        'QoS spec %(key)s=%(value)r: %(what)s') % {
            'key': key, 'value': value, 'what': what})


def _whole(key, value):
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r'\+?[0-9]+', text):
        raise _bad(key, value, _('must be a whole number >= 0'))
    number = int(text)
    if number > QOS_MAX:
        raise _bad(key, value, _('must be at most %d') % QOS_MAX)
    return number


def _rate(key, value):
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if isinstance(value, bool) or number is None or \
            not math.isfinite(number) or number < 0:
        raise _bad(key, value, _('must be a number >= 0'))
    if number > QOS_MAX:
        raise _bad(key, value, _('must be at most %d') % QOS_MAX)
    return number


def parse(specs, consumer='back-end'):
    """A :class:`QosSpec` from a QoS spec's key/value dict, or None.

    None when the spec has none of :data:`KEYS`.  Raises
    ``exception.InvalidQoSSpecs`` naming the key for a bad value, a bound
    given twice, a floor above the ceiling of the same form, or (consumer
    ``back-end``) a key this back end does not know.
    """
    found = {}
    unknown = []
    for key, value in (specs or {}).items():
        low = str(key).lower()
        if low in _CANONICAL:
            if low in found:
                raise _bad(key, value, _('given twice'))
            found[low] = (key, value)
        else:
            unknown.append(str(key))
    if unknown and consumer == 'back-end':
        raise exception.InvalidQoSSpecs(reason=_(
            'QoS spec key(s) %(keys)s are not supported by the Tintri '
            'back end (it sets %(known)s; the VMstore limits normalized '
            'IOPS only)') % {'keys': ', '.join(sorted(unknown)),
                             'known': ', '.join(KEYS)})
    if not found:
        return None
    values = {}
    for low, (key, value) in found.items():
        values[low] = (_rate(key, value) if low.endswith('pergib')
                       else _whole(key, value))
    for fixed, per_gib in ((MIN_IOPS, MIN_PER_GIB), (MAX_IOPS, MAX_PER_GIB)):
        if fixed in values and per_gib in values:
            raise exception.InvalidQoSSpecs(reason=_(
                'QoS spec: give %(a)s or %(b)s, not both') % {
                    'a': _CANONICAL[fixed], 'b': _CANONICAL[per_gib]})
    for low_key, high_key in ((MIN_IOPS, MAX_IOPS),
                              (MIN_PER_GIB, MAX_PER_GIB)):
        if values.get(high_key) and values.get(low_key, 0) > values[
                high_key]:
            raise exception.InvalidQoSSpecs(reason=_(
                'QoS spec %(low)s=%(lv)s is above %(high)s=%(hv)s') % {
                    'low': found[low_key][0], 'lv': found[low_key][1],
                    'high': found[high_key][0], 'hv': found[high_key][1]})
    return QosSpec(values.get(MIN_IOPS), values.get(MAX_IOPS),
                   values.get(MIN_PER_GIB), values.get(MAX_PER_GIB))


def spec_of_type(type_id):
    """The QosSpec of a volume type's back-end QoS, or None."""
    if not type_id:
        return None
    try:
        found = volume_types.get_volume_type_qos_specs(type_id)
    except exception.VolumeTypeNotFound:
        return None
    qos = (found or {}).get('qos_specs')
    if not qos or qos.get('consumer') not in CONSUMERS:
        return None
    return parse(qos.get('specs') or {}, qos.get('consumer'))


class VolumeQos(object):
    """Applies, clears and retries the QoS of volumes on the array.

    :param client: a :class:`cinder_tintri.client.TClient`.
    :param inventory: the driver's :class:`cinder_tintri.inventory.Inventory`.
    :param file_path: callable(volume) -> the volume file's path relative
        to the export root (``cinder/volume-<id>``).
    :param mount_of: callable(share) -> its mount point (pending records).
    :param enabled: the ``tintri_qos_enabled`` option; when False nothing
        is sent and nothing is recorded.
    :param wait: seconds an operation waits for the array to inventory a
        new file before the QoS is left pending.
    """

    def __init__(self, client, inventory_, file_path, mount_of,
                 enabled=False, wait=10.0, retry_batch=RETRY_BATCH):
        self.client = client
        self.inventory = inventory_
        self.file_path = file_path
        self.mount_of = mount_of
        self.enabled = bool(enabled)
        self.wait = float(wait)
        self.retry_batch = retry_batch
        self._messages = None

    # -- checks --------------------------------------------------------

    def check_type(self, type_id, size_gb):
        """Validate a type's QoS for a size; InvalidQoSSpecs if bad."""
        if not self.enabled:
            return None
        spec = spec_of_type(type_id)
        if spec is not None:
            spec.limits(size_gb)
        return spec

    def check(self, volume, size_gb=None):
        """check_type for the volume's type (at ``size_gb``, or its size).

        Nothing is read from the volume when QoS is off: a library user
        (cinderlib, a tool) may pass an object without a type.
        """
        if not self.enabled:
            return None
        return self.check_type(volume.volume_type_id,
                               volume.size if size_gb is None else size_gb)

    def has_qos(self, volume):
        """Whether the volume's type has (or had bad) back-end QoS."""
        if not self.enabled or volume is None:
            return False
        try:
            return spec_of_type(volume.volume_type_id) is not None
        except exception.InvalidQoSSpecs:
            return True

    # -- the operations --------------------------------------------------

    def apply(self, volume, operation=CREATE, size_gb=None, type_id=None,
              clear_unset=False, per_gib_only=False):
        """Set the volume's QoS from its type (or ``type_id``): best effort.

        ``clear_unset``: a type without QoS clears the VM's settings (a
        clone, a managed file or a retype may carry settings).
        ``per_gib_only``: only a per-GiB spec is applied (extend).
        Returns the Limits set, None when nothing was sent, or False when
        the settings are pending or cannot be made.  Never raises: the
        operation is done by now (callers that must refuse a bad spec call
        :meth:`check_type` first); a bad spec is logged and told.
        """
        if not self.enabled:
            return None
        type_id = volume.volume_type_id if type_id is None else type_id
        size_gb = volume.size if size_gb is None else size_gb
        try:
            spec = spec_of_type(type_id)
            if spec is not None and not (per_gib_only and not spec.per_gib):
                limits = spec.limits(size_gb)
        except exception.InvalidQoSSpecs as e:
            LOG.error('QoS of volume %(id)s not set: %(err)s',
                      {'id': volume.id, 'err': e})
            self._tell(volume, operation, e)
            return False
        if spec is None:
            if not clear_unset:
                self._forget(volume)
                return None
            limits = NO_LIMITS
        elif per_gib_only and not spec.per_gib:
            return None
        return self._set(volume, limits, operation, clear_unset=clear_unset)

    def clear(self, volume):
        """Back to the system default (unmanage); never raises."""
        if not self.enabled:
            return None
        self._forget(volume)
        try:
            vm = self._vm(volume)
            self.client.set_vm_qos(vm.vm_uuid, 0, 0)
        except (tclient.TintriError, inventory.InventoryError) as e:
            LOG.warning('Could not clear the VMstore QoS of volume %(id)s '
                        '(it keeps its settings on the array): %(err)s',
                        {'id': volume.id, 'err': e})
            self._tell(volume, UNMANAGE, e)
            return False
        LOG.info('Cleared the VMstore QoS of volume %s.', volume.id)
        return NO_LIMITS

    def forget(self, volume):
        """The volume is deleted: drop a pending record."""
        self._forget(volume)

    def _vm(self, volume, wait=None):
        file_path = self.file_path(volume)
        return self.inventory.lookup(
            file_path, volume.id, refresh=True,
            timeout=self.wait if wait is None else wait)

    def _set(self, volume, limits, operation, wait=None, tell=True,
             clear_unset=False):
        try:
            cached = self.inventory.cached(volume.id) is not None
            vm = self._vm(volume, wait)
            try:
                self.client.set_vm_qos(vm.vm_uuid, *limits)
            except (tclient.VmNotFound, tclient.VmNotLive):
                if not cached:
                    raise
                # A cached VM may be stale (a revert replaces the file):
                # look the file up again, once.
                self.inventory.forget(volume.id)
                vm = self._vm(volume, wait)
                self.client.set_vm_qos(vm.vm_uuid, *limits)
        except tclient.QosRefused as e:
            LOG.error('The VMstore refused QoS %(lim)s for volume %(id)s: '
                      '%(err)s', {'lim': _show(limits), 'id': volume.id,
                                  'err': e})
            self._forget(volume)
            if tell:
                self._tell(volume, operation, e)
            return False
        except (tclient.TintriError, inventory.InventoryError) as e:
            if tell:
                LOG.warning('VMstore QoS %(lim)s of volume %(id)s is '
                            'pending (%(op)s): %(err)s; it is retried '
                            'periodically.', {'lim': _show(limits),
                                              'id': volume.id,
                                              'op': operation, 'err': e})
                self._tell(volume, operation, e)
            self._record(volume, operation, e, clear_unset)
            return False
        self._forget(volume)
        LOG.info('VMstore QoS of volume %(id)s (VM %(vm)s): %(lim)s.',
                 {'id': volume.id, 'vm': vm.vm_uuid, 'lim': _show(limits)})
        return limits

    # -- user messages -------------------------------------------------

    def _tell(self, volume, operation, error):
        """A Cinder user message for the volume's owner (no array text)."""
        try:
            ctxt = getattr(volume, '_context', None)
            if ctxt is None or ctxt.project_id != volume.project_id:
                ctxt = cinder_context.get_admin_context()
                ctxt.project_id = volume.project_id
            if self._messages is None:
                self._messages = message_api.API()
            self._messages.create(
                ctxt, _ACTIONS.get(operation,
                                   message_field.Action.
                                   CREATE_VOLUME_FROM_BACKEND),
                resource_uuid=volume.id,
                detail=message_field.Detail.UNKNOWN_ERROR,
                level='WARNING')
        except Exception as e:
            LOG.debug('No user message for the QoS of volume %s: %s',
                      volume.id, e)

    # -- pending records on the share -------------------------------------

    def _mount(self, volume):
        share = volume.provider_location
        if not share:
            return None
        try:
            return self.mount_of(share)
        except Exception:
            return None

    def _record(self, volume, operation, error, clear_unset=False):
        mount = self._mount(volume)
        if mount is None:
            return
        try:
            record(mount, volume.id, {'operation': operation,
                                      'clear_unset': bool(clear_unset),
                                      'reason': str(error)[:300]})
        except (OSError, ValueError) as e:
            LOG.warning('Cannot record the pending QoS of volume %(id)s on '
                        '%(mount)s: %(err)s',
                        {'id': volume.id, 'mount': mount, 'err': e})

    def _forget(self, volume):
        mount = self._mount(volume)
        if mount is not None:
            forget(mount, volume.id)

    def retry_pending(self, mounts, deadline=None):
        """Apply pending QoS once more; returns the volume ids now done.

        Each volume is re-read from the database: its type and size now
        decide.  A volume that is gone, or whose type lost its QoS and is
        not a clone that may carry settings, is dropped.  A volume busy
        with another operation (its lock is held) is left for the next run.
        The lookup sends a refresh and does not wait: a file inventoried
        by the next run is found then.
        """
        done = []
        if not self.enabled:
            return done
        ctxt = cinder_context.get_admin_context()
        tried = 0
        for mount in mounts:
            for vol_id in pending_ids(mount):
                if tried >= self.retry_batch or (
                        deadline is not None and time.monotonic() > deadline):
                    return done
                tried += 1
                if self._retry_one(ctxt, mount, vol_id):
                    done.append(vol_id)
        return done

    def _retry_one(self, ctxt, mount, vol_id):
        try:
            volume = objects.Volume.get_by_id(ctxt, vol_id)
        except exception.VolumeNotFound:
            forget(mount, vol_id)
            return False
        if volume.status not in ('available', 'in-use'):
            return False   # being created, extended, retyped or deleted
        info = read(mount, vol_id)
        lock = coordination.COORDINATOR.get_lock('tintri-%s' % vol_id)
        if not lock.acquire(blocking=False):
            return False
        try:
            try:
                spec = spec_of_type(volume.volume_type_id)
                limits = (spec.limits(volume.size) if spec is not None
                          else NO_LIMITS)
            except exception.InvalidQoSSpecs as e:
                LOG.error('Pending QoS of volume %(id)s dropped: %(err)s',
                          {'id': vol_id, 'err': e})
                forget(mount, vol_id)
                return False
            if spec is None and not info.get('clear_unset'):
                forget(mount, vol_id)   # nothing to set any more
                return False
            got = self._set(volume, limits, info.get('operation', CREATE),
                            wait=0, tell=False,
                            clear_unset=bool(info.get('clear_unset')))
        finally:
            lock.release()
        if got is False:
            return False
        forget(mount, vol_id)   # found here; the volume may have moved
        LOG.info('Applied the pending VMstore QoS of volume %(id)s: '
                 '%(lim)s.', {'id': vol_id, 'lim': _show(got)})
        return True


def _show(limits):
    return 'min %s / max %s normalized IOPS' % (
        limits.min_iops or 'default', limits.max_iops or 'default')


# -- records on the share ------------------------------------------------

_RECORDS = share_records.RecordDir(DIR, _SAFE_ID, 'volume id')


def record(mount, vol_id, info=None):
    body = read(mount, vol_id)
    body.update(info or {})
    body.setdefault('since', int(time.time()))
    body['volume_id'] = vol_id
    _RECORDS.write(mount, vol_id, body)


def read(mount, vol_id):
    return _RECORDS.read(mount, vol_id)


def forget(mount, vol_id):
    try:
        _RECORDS.remove(mount, vol_id)
    except ValueError:
        pass


def pending_ids(mount):
    return _RECORDS.keys(mount)
