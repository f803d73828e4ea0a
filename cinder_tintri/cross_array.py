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
"""Cross-array clone: a volume from a snapshot held by another VMstore.

With ``snapshot_same_host = False`` the scheduler may place a volume
created from a snapshot on any backend; this backend (array B) then gets a
snapshot whose volume lives on another backend (array A).  Cinder gives
the source volume's ``host`` (``host@<section>#pool``); the section names
A's configuration, from which A's credentials and NFS options are read
(:class:`Peers`).  A section that points to the same array as this backend
is not a peer: the ordinary array clone works.

:class:`CrossArrayCopy` then lands a copy of the snapshot as
``<B share>/<volume name>``:

* through the arrays' replication path: A is asked to copy the snapshot
  to B (``POST /v310/vm`` with ``remoteCopyInfo``), into a temporary
  directory on B's share; the returned Task is polled until it ends or
  the deadline passes (then it is cancelled); a failed task's text is
  reported, masked; the file is renamed into place;
* else by a host copy: A clones the snapshot into a temporary directory
  of A's share, and the file is copied (sparse) into a temporary
  directory of B's share and renamed into place.  Both shares must be
  mounted on this host (A's by A's backend).

Guesses and their fallbacks (the official index lists the endpoints, not
these fields): RemoteCopyInfo ``{replicationPathId, directoryName}``; the
copy landing *inside* ``directoryName`` under the snapshotted file's name
(a copy that lands *at* ``directoryName`` is taken too); the replication
path's ``id`` and ``destinationIp``.  When A has no path to B, refuses the
request, or the task ends well but nothing landed, the host copy runs
(``tintri_cross_array_mode = auto``).  Every temporary is removed on
failure; a late copy into a removed temporary is swept like any other.
"""

import errno
import hashlib
import os
import shutil
import socket
import stat
import threading
import time

from cinder import exception
from cinder.i18n import _
from cinder.volume import configuration
from cinder.volume import driver as base_driver
from cinder.volume.drivers import nfs
from cinder.volume.drivers import remotefs
from cinder.volume import volume_utils
from oslo_log import log as logging
from oslo_utils import netutils

from cinder_tintri import client as tclient
from cinder_tintri import options
from cinder_tintri import share_files

LOG = logging.getLogger(__name__)

DRIVER_PATH = 'cinder_tintri.driver.TintriDriver'
MODES = ('auto', 'replication', 'host_copy', 'disabled')
CHUNK = 4 * 1024 * 1024
# Seconds a successful task's copy may take to appear on B's mount.
LANDING_GRACE = 10.0


def _error(msg):
    return exception.VolumeBackendAPIException(data=msg)


class _Refused(Exception):
    """The replication path cannot be used; the host copy may run."""


def backend_section(host):
    """'h@sect#pool' -> 'sect'; None without a backend part."""
    backend = volume_utils.extract_host(host, 'backend') if host else None
    if not backend or '@' not in backend:
        return None
    return backend.split('@', 1)[1] or None


def export_of(share):
    """'host:/tintri/cinder' -> '/tintri/cinder'."""
    return share.split(':', 1)[1].rstrip('/') or '/'


def mount_point(base, share):
    """Where os-brick's RemoteFsClient mounts ``share`` under ``base``."""
    digest = hashlib.md5(share.encode('utf-8'),
                         usedforsecurity=False).hexdigest()
    return os.path.join(base, digest)


def is_mounted(path, mounts_file='/proc/self/mounts'):
    """True when ``path`` is a mount point listed in ``mounts_file``."""
    real = os.path.realpath(path)
    try:
        with open(mounts_file) as f:
            for line in f:
                fields = line.split()
                if len(fields) > 1 and fields[1].replace(
                        '\\040', ' ') == real:
                    return True
    except OSError:
        return False
    return False


class Peer(object):
    """Another Tintri backend's array, as this backend reaches it.

    :param section: the backend's configuration section
    :param client: a TClient for its VMstore
    :param mount_of: share -> local path of its mount; raises
        VolumeBackendAPIException when it is not mounted here
    """

    def __init__(self, section, client, mount_of):
        self.section = section
        self.client = client
        self.mount_of = mount_of


class Peers(object):
    """The other Tintri backends a snapshot may come from.

    :param own_conf: this backend's Configuration
    :param own_host: this service's host (``host@section``)
    :param make_client: Configuration -> TClient (the driver's factory)
    """

    def __init__(self, own_conf, own_host, make_client):
        self.own_conf = own_conf
        self.own_section = backend_section(own_host)
        self.make_client = make_client
        self._peers = {}
        self._lock = threading.Lock()

    @staticmethod
    def _same_array(a, b):
        return ((a.safe_get('tintri_server_hostname') or '').lower(),
                a.safe_get('tintri_server_port')) == (
            (b.safe_get('tintri_server_hostname') or '').lower(),
            b.safe_get('tintri_server_port'))

    def peer_for(self, volume_host):
        """The Peer holding volumes of ``volume_host``, or None (ours)."""
        section = backend_section(volume_host)
        if section is None or section == self.own_section:
            return None
        with self._lock:
            if section in self._peers:
                return self._peers[section]
            conf = configuration.Configuration(base_driver.volume_opts,
                                               config_group=section)
            conf.append_config_values(options.tintri_opts)
            conf.append_config_values(nfs.nfs_opts)
            conf.append_config_values(remotefs.nas_opts)
            # Imported here: the volume manager module needs cinder's
            # objects registered, which a library user of the driver
            # (cinderlib, tests) may do after importing the driver.
            from cinder.volume import manager as volume_manager
            conf.append_config_values(volume_manager.volume_backend_opts)
            driver_path = conf.safe_get('volume_driver') or ''
            if driver_path != DRIVER_PATH:
                msg = (_('The snapshot is on backend %(sect)s, which is not '
                         'a Tintri backend in this service\'s configuration '
                         '(volume_driver %(drv)s).')
                       % {'sect': section, 'drv': driver_path or 'unset'})
                raise _error(msg)
            if not conf.safe_get('tintri_server_hostname'):
                msg = (_('The snapshot is on backend %s, whose section in '
                         'this service\'s configuration names no '
                         'tintri_server_hostname.') % section)
                raise _error(msg)
            if self._same_array(conf, self.own_conf):
                peer = None
            else:
                base = conf.safe_get('nfs_mount_point_base')
                peer = Peer(section, self.make_client(conf),
                            self._mounted(section, base))
            self._peers[section] = peer
            return peer

    @staticmethod
    def _mounted(section, base):
        def mount_of(share):
            path = mount_point(base, share)
            if not is_mounted(path):
                msg = (_('Share %(share)s of backend %(sect)s is not mounted '
                         'on this host (%(path)s); a host copy between the '
                         'arrays needs both shares mounted here.')
                       % {'share': share, 'sect': section, 'path': path})
                raise _error(msg)
            return path
        return mount_of

    def close(self):
        with self._lock:
            for peer in self._peers.values():
                if peer is not None:
                    peer.client.close()
            self._peers = {}


class CrossArrayCopy(object):
    """Lands a copy of a peer array's snapshot on this backend's share.

    :param client: this backend's (array B's) TClient
    :param temps: this service's TemporaryDirs
    :param own_hostname: B's configured REST address
    :param mode: one of :data:`MODES`
    :param timeout: seconds a whole copy may take (task or host copy)
    :param poll_interval: seconds between two polls of a task
    """

    def __init__(self, client, temps, own_hostname, mode='auto',
                 timeout=3600.0, poll_interval=2.0):
        if mode not in MODES:
            raise ValueError('mode must be one of %s' % ', '.join(MODES))
        self.client = client
        self.temps = temps
        self.own_hostname = own_hostname
        self.mode = mode
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self._addresses = None

    # -- the interface --------------------------------------------------

    def copy_snapshot(self, peer, snap_uuid, source_name, src_share,
                      dest_share, dest_mount, target_name):
        """Copy ``peer``'s snapshot to ``<dest_mount>/<target_name>``.

        Returns the path; raises VolumeBackendAPIException and leaves
        nothing on either share when it cannot.
        """
        if self.mode == 'disabled':
            msg = (_('Snapshot %(snap)s is on backend %(sect)s, another '
                     'array, and tintri_cross_array_mode is disabled.')
                   % {'snap': snap_uuid, 'sect': peer.section})
            raise _error(msg)
        share_files.check_name(target_name)
        if share_files.read_only(dest_mount):
            msg = (_('Cross-array copy of snapshot %(snap)s: share '
                     '%(share)s is mounted read-only.')
                   % {'snap': snap_uuid, 'share': dest_share})
            raise _error(msg)
        deadline = time.monotonic() + self.timeout
        if self.mode in ('auto', 'replication'):
            path_id = self._replication_path(peer)
            why = None
            if path_id is None:
                why = _('no replication path of backend %s leads to this '
                        'array') % peer.section
            else:
                try:
                    return self._remote_copy(
                        peer, path_id, snap_uuid, source_name, dest_share,
                        dest_mount, target_name, deadline)
                except _Refused as e:
                    why = str(e)
            if self.mode == 'replication':
                msg = (_('Cross-array copy of snapshot %(snap)s: %(why)s '
                         '(tintri_cross_array_mode = replication).')
                       % {'snap': snap_uuid, 'why': why})
                raise _error(msg)
            LOG.info('Cross-array copy of snapshot %(snap)s by a host copy: '
                     '%(why)s.', {'snap': snap_uuid, 'why': why})
        return self._host_copy(peer, snap_uuid, source_name, src_share,
                               dest_mount, target_name, deadline)

    # -- replication path ---------------------------------------------

    def _own_addresses(self):
        if self._addresses is None:
            found = {self.own_hostname.lower()}
            found.update(_resolve(self.own_hostname))
            try:
                found.update(self.client.get_appliance_ips())
            except tclient.TintriError as e:
                LOG.info('Cannot list the addresses of this VMstore: %s', e)
            self._addresses = found
        return self._addresses

    def _replication_path(self, peer):
        """The id of a path from ``peer`` to this array, or None."""
        try:
            paths = peer.client.list_replication_paths()
        except tclient.TintriError as e:
            LOG.warning('Cannot list the replication paths of backend '
                        '%(sect)s: %(err)s', {'sect': peer.section, 'err': e})
            return None
        if not paths:
            return None
        mine = self._own_addresses()
        for path in paths:
            dest = path['destination']
            if dest in mine or mine & _resolve(dest):
                return path['id']
        return None

    def _remote_copy(self, peer, path_id, snap_uuid, source_name, dest_share,
                     dest_mount, target_name, deadline):
        tmp_name = self.temps.claim(target_name)
        tmp = os.path.join(dest_mount, tmp_name)
        directory = '%s/%s' % (export_of(dest_share), tmp_name)
        what = _('Cross-array copy of snapshot %(snap)s from backend '
                 '%(sect)s') % {'snap': snap_uuid, 'sect': peer.section}
        try:
            try:
                task_id = peer.client.remote_copy(snap_uuid, path_id,
                                                  directory)
            except tclient.TintriConnectionError as e:
                # The copy may be running: not resent, not replaced by a
                # host copy into the same place.
                msg = _('%(what)s: the request was lost: %(err)s') % {
                    'what': what, 'err': e}
                raise _error(msg)
            except tclient.TintriError as e:
                raise _Refused(_('the array refused the remote copy: %s')
                               % e)
            LOG.info('%(what)s: task %(task)s through replication path '
                     '%(path)s.', {'what': what, 'task': task_id,
                                   'path': path_id})
            try:
                peer.client.wait_task(task_id, deadline, self.poll_interval)
            except tclient.TintriTaskFailed as e:
                msg = _('%(what)s failed on the array: %(err)s') % {
                    'what': what, 'err': e}
                raise _error(msg)
            except tclient.TintriTaskTimeout:
                peer.client.cancel_task(task_id)
                msg = (_('%(what)s: task %(task)s did not end within '
                         '%(sec)d s (tintri_cross_array_timeout); it was '
                         'cancelled.') % {'what': what, 'task': task_id,
                                          'sec': self.timeout})
                raise _error(msg)
            except tclient.TintriError as e:
                peer.client.cancel_task(task_id)
                msg = _('%(what)s: polling task %(task)s failed: %(err)s') % {
                    'what': what, 'task': task_id, 'err': e}
                raise _error(msg)
            landed = _wait_landed(tmp, source_name,
                                  min(deadline, time.monotonic()
                                      + LANDING_GRACE))
            if landed is None:
                raise _Refused(_('task %(task)s succeeded but no copy is in '
                                 '%(dir)s') % {'task': task_id, 'dir': tmp})
            return _rename_into(landed, dest_mount, target_name, what)
        finally:
            _remove(tmp)
            self.temps.release(tmp_name)

    # -- host copy ----------------------------------------------------

    def _host_copy(self, peer, snap_uuid, source_name, src_share, dest_mount,
                   target_name, deadline):
        what = _('Host copy of snapshot %(snap)s from backend %(sect)s') % {
            'snap': snap_uuid, 'sect': peer.section}
        src_mount = peer.mount_of(src_share)
        src_tmp_name = self.temps.claim(target_name)
        src_tmp = os.path.join(src_mount, src_tmp_name)
        dest_tmp_name = self.temps.claim(target_name)
        dest_tmp = os.path.join(dest_mount, dest_tmp_name)
        try:
            def landed():
                return _landed_file(src_tmp, source_name) is not None
            try:
                peer.client.clone_volume(
                    snap_uuid, '%s/%s' % (export_of(src_share), src_tmp_name),
                    landed=landed)
            except tclient.TintriError as e:
                if e.status not in (400, 409) or not landed():
                    msg = _('%(what)s: the clone on the source array '
                            'failed: %(err)s') % {'what': what, 'err': e}
                    raise _error(msg)
            source = _landed_file(src_tmp, source_name)
            if source is None:
                msg = (_('%(what)s: the source array\'s clone left no '
                         'regular file in %(dir)s.')
                       % {'what': what, 'dir': src_tmp})
                raise _error(msg)
            try:
                os.mkdir(dest_tmp, 0o700)
                copy = os.path.join(dest_tmp, target_name)
                sparse_copy(source, copy, deadline)
            except _Timeout:
                msg = (_('%(what)s did not finish within %(sec)d s '
                         '(tintri_cross_array_timeout).')
                       % {'what': what, 'sec': self.timeout})
                raise _error(msg)
            except (OSError, share_files.ShareFileError) as e:
                msg = _('%(what)s failed: %(err)s') % {
                    'what': what, 'err': share_files.describe(e)
                    if isinstance(e, OSError) else e}
                raise _error(msg)
            return _rename_into(copy, dest_mount, target_name, what)
        finally:
            _remove(src_tmp)
            _remove(dest_tmp)
            self.temps.release(src_tmp_name)
            self.temps.release(dest_tmp_name)


class _Timeout(Exception):
    pass


def _resolve(name):
    """The addresses ``name`` resolves to (an address: itself)."""
    if netutils.is_valid_ip(name):
        return {name.lower()}
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {info[4][0].lower() for info in infos}


def _landed_file(tmp, source_name):
    """The regular file a copy left in ``tmp`` (or at ``tmp``), or None.

    ``tmp`` itself must be a regular file or a real directory: a link
    planted there is never looked through.
    """
    try:
        st = os.lstat(tmp)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return tmp              # landed at directoryName itself
    if not stat.S_ISDIR(st.st_mode):
        LOG.warning('Ignoring %(path)s: it is %(kind)s.',
                    {'path': tmp, 'kind': share_files.kind_of(st.st_mode)})
        return None
    return share_files.landed_file(tmp, source_name)[0]


def _wait_landed(tmp, source_name, deadline):
    while True:
        found = _landed_file(tmp, source_name)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def _rename_into(path, mount, target_name, what):
    target = os.path.join(mount, target_name)
    try:
        existing = share_files.lstat_regular(target, missing_ok=True)
    except share_files.ShareFileError as e:
        raise _error(_('%(what)s: refusing to replace %(target)s: '
                       '%(reason)s') % {'what': what, 'target': target,
                                        'reason': e.reason})
    if existing is not None:
        raise _error(_('%(what)s: refusing to overwrite existing file '
                       '%(target)s.') % {'what': what, 'target': target})
    try:
        os.rename(path, target)
    except OSError as e:
        raise _error(_('%(what)s: cannot move the copy into place: '
                       '%(err)s') % {'what': what,
                                     'err': share_files.describe(e)})
    return target


def _remove(path):
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except FileNotFoundError:
        pass
    except OSError as e:
        LOG.warning('Could not remove %(path)s: %(err)s',
                    {'path': path, 'err': e})


def sparse_copy(src, dst, deadline):
    """Copy the regular file ``src`` to the new file ``dst``, holes kept.

    Neither path is followed through a link; raises _Timeout at
    ``deadline`` (time.monotonic()), OSError or ShareFileError.
    """
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(sfd)
        if not stat.S_ISREG(st.st_mode):
            raise share_files.ShareFileError('%s is %s, not a regular file'
                                             % (src, share_files.kind_of(
                                                 st.st_mode)))
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                      | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _copy_data(sfd, dfd, st.st_size, deadline)
            os.ftruncate(dfd, st.st_size)
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_data(sfd, dfd, size, deadline):
    pos = 0
    while pos < size:
        try:
            data = os.lseek(sfd, pos, os.SEEK_DATA)
            hole = os.lseek(sfd, data, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return          # a hole up to the end
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            data, hole = pos, size  # no hole support: copy, skip zeros
        while data < hole:
            if time.monotonic() >= deadline:
                raise _Timeout()
            chunk = os.pread(sfd, min(CHUNK, hole - data), data)
            if not chunk:
                return
            if chunk.count(0) != len(chunk):
                os.pwrite(dfd, chunk, data)
            data += len(chunk)
        pos = hole
