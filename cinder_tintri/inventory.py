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
"""Snapshots of files on both VMstore generations.

Two protocols exist for ``POST cinder/snapshot`` (see
doc/source/contributor/simulator.rst, "Profiles"):

``direct`` (the removed driver, VMstore 4.x)
    The snapshot names the file and passes the Cinder volume id (or, for
    an image, the image id) as ``vmTintriUuid``, for a file the array has
    never inventoried.

``refresh`` (DDN's drivers, VMstore >= 6.0.1.1)
    The array must know the file first: ``cinder/host/refresh`` asks it to
    inventory the file (naming the OpenStack host and region it queries),
    ``GET virtualDisk?uuid=<id>`` returns the virtual disk once it appears,
    and the snapshot carries that disk's VM uuid, VM name and instance
    uuid.

``auto`` (the default) starts with the direct form.  When the array
refuses it the way it refuses a file it has not inventoried (HTTP 404 or
400 on ``cinder/snapshot``, not because of the snapshot limit) and the
refresh form then succeeds, the driver uses the refresh form for the rest
of its life.

Lookups are bounded: the virtual disk is first looked up without a refresh
(a file inventoried earlier answers at once), then one refresh is sent and
the lookup repeated with capped exponential backoff until
``timeout`` seconds have passed (a second refresh at half time); no
unbounded polling.  Results are cached per id (LRU), and dropped when the
array refuses a snapshot with a cached VM.

A VM holds at most ``SNAPSHOT_LIMIT`` (128) snapshots (SnapshotSpec's
documentation).  When a snapshot is refused, the VM's snapshots are counted
with one request; at the limit the caller gets
:class:`SnapshotLimitReached`, naming it.
"""

import collections
import threading
import time

from oslo_log import log as logging

from cinder_tintri import client as tclient

LOG = logging.getLogger(__name__)

MODES = ('auto', 'direct', 'refresh')
SNAPSHOT_LIMIT = 128
_CACHE_SIZE = 4096
# Backoff of the virtual-disk lookup after a refresh (seconds).
_POLL_FIRST = 0.1
_POLL_CAP = 2.0


class InventoryError(tclient.TintriError):
    """The array did not inventory a file in time, or cannot."""


class SnapshotLimitReached(tclient.TintriError):
    """The VM already holds the array's maximum number of snapshots."""

    def __init__(self, vm, count, limit=SNAPSHOT_LIMIT):
        self.vm = vm
        self.count = count
        self.limit = limit
        super().__init__(
            'VM %s already holds %d snapshots; a VMstore VM holds at most '
            '%d. Delete snapshots of this volume (or volumes cloned from '
            'them) first.' % (vm, count, limit))


VirtualMachine = collections.namedtuple(
    'VirtualMachine', ['vm_uuid', 'vm_name', 'instance_uuid'])


def _uninventoried(error):
    """True when a refused cinder/snapshot looks like "file unknown"."""
    return (isinstance(error, tclient.TintriError)
            and not isinstance(error, (tclient.TintriConnectionError,
                                       tclient.TintriAuthError))
            and error.status in (400, 404))


class Inventory(object):
    """Creates array snapshots of files with the protocol the array speaks.

    :param client: a :class:`cinder_tintri.client.TClient`.
    :param mode: 'auto', 'direct' or 'refresh'.
    :param hostname: OpenStack host name the array queries on a refresh;
        required before a refresh is sent.
    :param region: OpenStack region sent with a refresh.
    :param timeout: seconds to wait for a refreshed file to appear.
    """

    def __init__(self, client, mode='auto', hostname=None, region=None,
                 timeout=30.0, limit=SNAPSHOT_LIMIT):
        if mode not in MODES:
            raise ValueError('inventory mode must be one of %s'
                             % ', '.join(MODES))
        self.client = client
        self.configured_mode = mode
        self._mode = None if mode == 'auto' else mode
        self.hostname = hostname
        self.region = region
        self.timeout = float(timeout)
        self.limit = limit
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()

    @property
    def mode(self):
        """The protocol in use: 'direct', 'refresh' or None (undecided)."""
        return self._mode

    # -- the cache -----------------------------------------------------

    def cached(self, key_id):
        with self._lock:
            vm = self._cache.get(key_id)
            if vm is not None:
                self._cache.move_to_end(key_id)
            return vm

    def _remember(self, key_id, vm):
        with self._lock:
            self._cache[key_id] = vm
            self._cache.move_to_end(key_id)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)

    def forget(self, key_id):
        with self._lock:
            self._cache.pop(key_id, None)

    # -- lookups -------------------------------------------------------

    def lookup(self, file_path, key_id, refresh=True, timeout=None):
        """The VM the array knows ``file_path`` as (inventoried by id).

        ``file_path`` is relative to the export root (``cinder/volume-x``).
        ``timeout`` (default: the instance's) bounds the wait after a
        refresh; 0 sends the refresh and looks once more.
        Raises InventoryError when the file does not appear in time.
        """
        vm = self.cached(key_id)
        if vm is not None:
            return vm
        vm = self._find(file_path, key_id)
        if vm is None and refresh:
            vm = self._refresh_and_wait(
                file_path, key_id,
                self.timeout if timeout is None else float(timeout))
        if vm is None:
            raise InventoryError(
                'the VMstore has no virtual disk for %s (id %s)'
                % (file_path, key_id))
        self._remember(key_id, vm)
        return vm

    def _find(self, file_path, key_id):
        disk = self.client.find_virtual_disk(uuid=key_id)
        if not disk:
            return None
        path = disk.get('path')
        if path and tclient.export_relative(path) != file_path:
            # A disk the array files under this id but for another file:
            # never snapshot a VM we did not ask for.
            LOG.warning('VMstore virtual disk %(uuid)s is %(path)s, not '
                        '%(want)s; ignoring it.',
                        {'uuid': key_id, 'path': path, 'want': file_path})
            return None
        return VirtualMachine(disk['vm_uuid'], disk.get('vm_name'),
                              disk.get('instance_uuid'))

    def _send_refresh(self, file_path, key_id):
        if not self.hostname:
            raise InventoryError(
                'the VMstore must inventory %s before it can snapshot it, '
                'and no OpenStack host name is configured for the refresh '
                '(set tintri_openstack_hostname)' % file_path)
        self.client.host_refresh(self.hostname, file_path,
                                 region=self.region, volume_id=key_id)

    def _refresh_and_wait(self, file_path, key_id, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        self._send_refresh(file_path, key_id)
        start = time.monotonic()
        deadline = start + timeout
        refreshed_again = False
        delay = _POLL_FIRST
        while True:
            vm = self._find(file_path, key_id)
            if vm is not None:
                LOG.debug('VMstore inventoried %(path)s as VM %(vm)s in '
                          '%(t).2fs.', {'path': file_path, 'vm': vm.vm_uuid,
                                        't': time.monotonic() - start})
                return vm
            now = time.monotonic()
            if now >= deadline:
                return None
            if not refreshed_again and timeout and \
                    now - start >= timeout / 2:
                refreshed_again = True
                self._send_refresh(file_path, key_id)
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, _POLL_CAP)

    # -- snapshots -----------------------------------------------------

    def snapshot(self, export_path, file_name, key_id, description,
                 deletion_policy=None):
        """Snapshot ``<export_path>/<file_name>``; returns its UUID.

        ``key_id`` is the id the array files the file under (the volume
        id, or the image id for an image-cache entry).
        """
        rel = tclient.export_relative(export_path)
        file_path = '%s/%s' % (rel, file_name) if rel else file_name
        if self._mode != 'refresh':
            try:
                return self.client.create_snapshot(
                    export_path, file_name, key_id, description,
                    deletion_policy=deletion_policy, vm_name=file_name)
            except tclient.TintriError as e:
                self._check_limit(e, key_id)
                if self._mode == 'direct' or not _uninventoried(e):
                    raise
                LOG.info('The VMstore refused a snapshot of %(file)s that '
                         'it has not inventoried (%(err)s); trying the '
                         'refresh protocol of VMstore >= 6.',
                         {'file': file_path, 'err': e})
                direct_error = e
            try:
                uuid = self._snapshot_refreshed(export_path, file_name,
                                                file_path, key_id,
                                                description, deletion_policy)
            except tclient.TintriError as e:
                LOG.warning('Neither snapshot protocol worked for %(file)s: '
                            'direct: %(d)s; refresh: %(r)s',
                            {'file': file_path, 'd': direct_error, 'r': e})
                raise
            if self._mode is None:
                self._mode = 'refresh'
                LOG.info('This VMstore needs files inventoried before a '
                         'snapshot; using the refresh protocol from now on.')
            return uuid
        return self._snapshot_refreshed(export_path, file_name, file_path,
                                        key_id, description, deletion_policy)

    def _snapshot_refreshed(self, export_path, file_name, file_path, key_id,
                            description, deletion_policy):
        for attempt in (1, 2):
            cached = self.cached(key_id) is not None
            vm = self.lookup(file_path, key_id)
            try:
                return self.client.create_snapshot(
                    export_path, file_name, key_id, description,
                    deletion_policy=deletion_policy,
                    vm_name=vm.vm_name or file_name, vm_uuid=vm.vm_uuid,
                    instance_id=vm.instance_uuid or key_id)
            except tclient.TintriError as e:
                self._check_limit(e, vm.vm_uuid)
                if not (cached and attempt == 1 and _uninventoried(e)):
                    raise
                # The file was replaced (a revert swaps it): the cached VM
                # is stale; look it up again once.
                self.forget(key_id)

    def _check_limit(self, error, vm):
        """Raise SnapshotLimitReached if ``error`` came from the limit."""
        if isinstance(error, (tclient.TintriConnectionError,
                              tclient.TintriAuthError)) or not self.limit:
            return
        try:
            count = self.client.count_snapshots(vmUuid=vm)
        except tclient.TintriError as e:
            LOG.debug('Cannot count the snapshots of VM %s: %s', vm, e)
            return
        if count >= self.limit:
            raise SnapshotLimitReached(vm, count, self.limit) from error

    def vm_uuid_for(self, key_id):
        """The VM uuid snapshots of ``key_id`` carry, if known."""
        if self._mode == 'direct' or self._mode is None:
            return key_id
        vm = self.cached(key_id)
        return vm.vm_uuid if vm else None
