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
"""Cinder volume driver for Tintri VMstore NFS storage.

Volumes are sparse raw files on VMstore NFS shares (``host:/tintri/<sub>``).
Snapshots, clones and reverts are array operations through the VMstore
REST API (:class:`cinder_tintri.client.TClient`); no qcow2 snapshot chains
are used.  Each configured share is reported as a pool.

This module holds Cinder semantics only; everything HTTP lives in
``cinder_tintri.client``.
"""

import os
import shutil
import time
import urllib.parse
import uuid

from cinder.common import constants
from cinder import coordination
from cinder import exception
from cinder.i18n import _
from cinder.image import image_utils
from cinder import interface
from cinder.volume import configuration
from cinder.volume import driver
from cinder.volume.drivers import nfs
from cinder.volume.drivers import remotefs
from cinder.volume import volume_utils
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import units

from cinder_tintri import client as tclient
from cinder_tintri import cross_array
from cinder_tintri import encryption
from cinder_tintri import groups
from cinder_tintri import images
from cinder_tintri import inventory
from cinder_tintri import manage
from cinder_tintri import migration
from cinder_tintri import options
from cinder_tintri import pool_stats
from cinder_tintri import qos
from cinder_tintri import share_files
from cinder_tintri import snapshot_deletion
from cinder_tintri import takeover
from cinder_tintri import temporaries

LOG = logging.getLogger(__name__)

CONF = cfg.CONF
CONF.register_opts(options.tintri_opts, group=configuration.SHARED_CONF_GROUP)

# Root of the VMstore NFS export; API file paths are relative to it.
EXPORT_ROOT = '/tintri'
# Prefix of the temporary clone directories the driver creates on a share,
# followed by '<target>-<hex>-h<tag>', the tag naming the service
# (host@backend) that made it (see cinder_tintri.temporaries).
TMP_PREFIX = temporaries.PREFIX
TMP_TAG_RE = temporaries.TAG_RE
# Another service's temporary is abandoned once idle this long (seconds)
# and its lock is free.
FOREIGN_TMP_IDLE = temporaries.FOREIGN_IDLE
DELETE_ON_ZERO_CLONES = 'DELETE_ON_ZERO_CLONE_REFERENCES'
SUPPORTED_API_FAMILY = 'v310'
# Seconds one stats update may spend retrying pending snapshot deletions.
PENDING_RETRY_BUDGET = 10.0
# Seconds one stats update may spend applying pending QoS settings.
QOS_RETRY_BUDGET = 10.0


@interface.volumedriver
class TintriDriver(manage.TintriManageMixin, images.TintriImageMixin,
                   driver.ManageableVD, driver.CloneableImageVD,
                   nfs.NfsDriver):
    """Tintri VMstore NFS driver.

    Version history:

    .. code-block:: none

        2.2.0.1 - last version of the removed in-tree driver (Stein)
        3.0.0 - out-of-tree rewrite: persistent REST session with retries,
                array snapshots keyed by provider_id, resize on clone,
                array-side revert, one pool per share
    """

    VERSION = '3.0.0'
    VENDOR = 'Tintri'
    # ThirdPartySystems wiki page
    CI_WIKI_NAME = 'Tintri_CI'
    REQUIRED_OPTIONS = ('tintri_server_hostname', 'tintri_server_username',
                        'tintri_server_password')
    # Several cinder-volume services may serve one backend in a cluster
    # ([DEFAULT] cluster) when [coordination] backend_url is a shared tooz
    # backend (redis, etcd3, ...): every lock the driver takes is a
    # coordination lock named after the object (tintri-<volume id>,
    # tintri-image-<image id>), temporaries carry the service's tag, and
    # a service sweeps only its own (tests/functional/test_active_active).
    SUPPORTS_ACTIVE_ACTIVE = True

    driver_volume_type = 'nfs'
    # The NFS option family (nfs_shares_config, nfs_mount_point_base, ...)
    # is looked up through this prefix; operators keep using it.
    driver_prefix = 'nfs'
    volume_backend_name = 'tintri'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.configuration:
            self.configuration.append_config_values(options.tintri_opts)
        self.vendor_name = self.VENDOR
        self._client = None
        # Snapshot protocol of the array (direct / refresh), and deletion
        # of snapshots with clones; made in do_setup.
        self._inventory = None
        self._deletion = None
        # Moves between shares of the array (migration.VolumeMigration).
        self._migration = None
        # Other Tintri backends' arrays, and copies from them
        # (cinder_tintri.cross_array); made in do_setup.
        self._peers = None
        self._cross_array = None
        # Other drivers' objects (cinder_tintri.takeover); do_setup.
        self._takeover = None
        # Per-volume QoS (cinder_tintri.qos); disabled until do_setup.
        self._qos = qos.VolumeQos(None, None, self._qos_file_path,
                                  self._get_mount_point_for_share)
        # Volume id -> (snapshot uuid, identity of the file when it was
        # taken): the newest snapshot of a detached volume, or a helper
        # that outlives its clone, from which an unchanged volume is
        # cloned without a new snapshot.
        self._clone_sources = {}
        self._helpers_outlive_clones = False
        # Temporary directories on the shares, owned by lock while in use.
        self._temps = temporaries.TemporaryDirs(self.host)
        # LUKS containers of encrypted volumes (cinder_tintri.encryption).
        self._luks = encryption.LuksVolumes(
            lambda *a, **k: self._execute(*a, **k),
            lambda: self._execute_as_root, self._resize_to,
            lambda: self.configuration.safe_get('tintri_luks_iter_time'))
        # Generic volume groups, made of this driver's own snapshots and
        # clones (the driver is its MemberOperations).
        self._groups = groups.Groups(self)
        self._thin_provisioning_support = True
        self._thick_provisioning_support = False

    @staticmethod
    def get_driver_options():
        return (options.tintri_opts + nfs.nfs_opts + remotefs.nas_opts
                + [opt for opt in driver.volume_opts
                   if opt.name == 'driver_ssl_cert_path'])

    # ------------------------------------------------------------------
    # Setup
    # ------------------------------------------------------------------

    def _check_required_options(self):
        missing = [name for name in self.REQUIRED_OPTIONS
                   if not self.configuration.safe_get(name)]
        if missing:
            msg = (_('Tintri driver is missing required option(s): %s.')
                   % ', '.join(missing))
            raise exception.InvalidConfigurationValue(message=msg)
        api_version = self.configuration.tintri_api_version or ''
        if not api_version.startswith(SUPPORTED_API_FAMILY):
            msg = (_('tintri_api_version=%(v)s is not supported; this '
                     'driver speaks the %(f)s API.')
                   % {'v': api_version, 'f': SUPPORTED_API_FAMILY})
            raise exception.InvalidConfigurationValue(message=msg)

    def _make_client(self, conf=None):
        """A TClient for this backend (or the backend of ``conf``)."""
        conf = conf or self.configuration
        return tclient.TClient(
            conf.tintri_server_hostname,
            conf.tintri_server_username,
            conf.tintri_server_password,
            api_version=SUPPORTED_API_FAMILY,
            port=conf.tintri_server_port,
            use_https=conf.tintri_use_https,
            verify=conf.tintri_ssl_cert_verify,
            ca_path=conf.safe_get('driver_ssl_cert_path') or None,
            connect_timeout=conf.tintri_connect_timeout,
            read_timeout=conf.tintri_read_timeout,
            retries=conf.tintri_api_retries,
            retry_deadline=conf.tintri_api_retry_deadline,
            page_size=conf.tintri_api_page_size,
            max_pages=conf.tintri_api_max_pages,
            request_timeout=conf.tintri_request_timeout,
            auth_retry_interval=conf.tintri_auth_retry_interval,
            client_id='cinder-tintri-%s' % self.VERSION)

    def _check_array(self):
        """Reach the VMstore, check its API version and our credentials."""
        host = self.configuration.tintri_server_hostname
        try:
            info = self._client.api_info()
        except tclient.TintriNotVMstoreError as e:
            msg = (_('The server at %(host)s is not a Tintri VMstore: '
                     '%(err)s') % {'host': host, 'err': e})
            raise exception.VolumeBackendAPIException(data=msg)
        except tclient.TintriAuthError as e:
            # A strict array without /api/info is identified after a login.
            msg = _('VMstore %(host)s: %(err)s') % {'host': host, 'err': e}
            raise exception.VolumeBackendAPIException(data=msg)
        except tclient.TintriError as e:
            msg = (_('Cannot reach the VMstore REST API at %(host)s: '
                     '%(err)s') % {'host': host, 'err': e})
            raise exception.VolumeBackendAPIException(data=msg)
        versions = info.get('supportedVersionSet') or []
        preferred = info.get('preferredVersion') or ''
        if not (preferred.startswith(SUPPORTED_API_FAMILY) or any(
                str(v).startswith(SUPPORTED_API_FAMILY) for v in versions)):
            msg = (_('VMstore %(host)s does not offer the %(f)s API '
                     '(preferred %(p)s).')
                   % {'host': host, 'f': SUPPORTED_API_FAMILY,
                      'p': preferred or 'unknown'})
            raise exception.VolumeBackendAPIException(data=msg)
        try:
            self._client.login()
        except tclient.TintriAuthError as e:
            msg = _('VMstore %(host)s: %(err)s') % {'host': host, 'err': e}
            raise exception.VolumeBackendAPIException(data=msg)
        except tclient.TintriError as e:
            msg = (_('Login to VMstore %(host)s failed: %(err)s')
                   % {'host': host, 'err': e})
            raise exception.VolumeBackendAPIException(data=msg)
        LOG.info('Connected to %(product)s %(host)s, API %(ver)s.',
                 {'product': info.get('productName', 'VMstore'),
                  'host': host, 'ver': preferred})

    def do_setup(self, context):
        self._check_required_options()
        if self._client is None:
            self._client = self._make_client()
        self._check_array()
        conf = self.configuration
        self._inventory = inventory.Inventory(
            self._client, mode=conf.tintri_inventory_mode,
            hostname=self._openstack_hostname(),
            region=conf.tintri_openstack_region,
            timeout=conf.tintri_inventory_timeout)
        self._deletion = snapshot_deletion.SnapshotDeletion(self._client)
        self._migration = migration.VolumeMigration(
            self._client, conf.tintri_server_hostname, migration.Ops(
                mount=self._mount, volume_file=self._volume_file,
                check_writable=self._check_writable,
                snapshot=self._snapshot_for_move,
                clone_into_share=self._clone_into_share,
                finish=self._finish_file, delete_file=self._delete,
                forget=self._forget_file))
        self._migration.identify()
        self._peers = cross_array.Peers(conf, self.host, self._make_client)
        self._cross_array = cross_array.CrossArrayCopy(
            self._client, self._temps, conf.tintri_server_hostname,
            mode=conf.tintri_cross_array_mode,
            timeout=conf.tintri_cross_array_timeout,
            poll_interval=conf.tintri_task_poll_interval)
        self._takeover = takeover.Takeover(self._client)
        self._qos = qos.VolumeQos(
            self._client, self._inventory, self._qos_file_path,
            self._get_mount_point_for_share,
            enabled=conf.tintri_qos_enabled,
            wait=conf.tintri_qos_inventory_wait)
        super().do_setup(context)
        self._image_cache_start()

    def _openstack_hostname(self):
        """The OpenStack host name sent with inventory refreshes."""
        name = self.configuration.safe_get('tintri_openstack_hostname')
        if name:
            return name
        try:
            uri = CONF.keystone_authtoken.www_authenticate_uri
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError):
            uri = None
        if uri:
            try:
                return urllib.parse.urlsplit(uri).hostname
            except ValueError:
                return None
        return None

    def _load_shares_config(self, share_file=None):
        super()._load_shares_config(share_file)
        for share in self.shares:
            export = self._export_path(share)
            if export != EXPORT_ROOT and not export.startswith(
                    EXPORT_ROOT + '/'):
                msg = (_('Share %(share)s is not on the VMstore export '
                         '%(root)s; expected host:%(root)s/<submount>.')
                       % {'share': share, 'root': EXPORT_ROOT})
                raise exception.InvalidConfigurationValue(message=msg)

    def check_for_setup_error(self):
        if not self._mounted_shares:
            raise exception.NfsNoSharesMounted()
        self._remove_stale_temporaries()
        self._undo_interrupted_manages()
        self._takeover.remove_abandoned_helpers()

    def _check_snapshot_support(self, setup_checking=False):
        """Snapshots are array-side; NFS secure-file options don't apply.

        The generic NFS driver refuses snapshots when
        nas_secure_file_operations is true because it rewrites qcow2
        chains as root.  This driver never does: the array snapshots the
        raw file, so snapshots are always supported.  The secure-file
        options still decide file ownership and whether file commands run
        as root.
        """

    # ------------------------------------------------------------------
    # Temporaries
    # ------------------------------------------------------------------

    def _remove_stale_temporaries(self, startup=True):
        """Remove temporary directories that no operation owns any more.

        See :mod:`cinder_tintri.temporaries`: a temporary is removed only
        when its lock is free (no running operation, here or on another
        service of the cluster, owns it); another service's only once it
        is also idle; untagged ones (older driver versions) at start-up.
        Runs at start-up and with every stats update.
        """
        mounts = [self._get_mount_point_for_share(share)
                  for share in self._mounted_shares]
        return self._temps.sweep(mounts, startup=startup)

    def _tmp_dir_name_for(self, target_name):
        """A new temporary name, owned (locked) until _tmp_release."""
        return self._temps.claim(target_name)

    def _tmp_release(self, name):
        self._temps.release(name)

    # ------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------

    @staticmethod
    def _export_path(share):
        """'host:/tintri/cinder' -> '/tintri/cinder'."""
        return share.split(':', 1)[1].rstrip('/') or '/'

    def _share_of(self, volume):
        share = volume.provider_location
        if not share:
            msg = _('Volume %s has no provider_location.') % volume.id
            raise exception.VolumeBackendAPIException(data=msg)
        return share

    @staticmethod
    def _backend_error(msg):
        return exception.VolumeBackendAPIException(data=msg)

    def _mount(self, share, error=None):
        """The mount point of ``share``, mounting it if its mount is gone.

        A share that cannot be mounted fails the operation: working on the
        empty mount point directory would report success for a file that
        stays on the array (a delete) or miss it.
        """
        error = error or self._backend_error
        try:
            self._ensure_share_mounted(share)
        except Exception as e:
            msg = (_('Share %(share)s is not mounted and cannot be mounted: '
                     '%(err)s') % {'share': share, 'err': e})
            raise error(msg)
        if share in self.shares and share not in self._mounted_shares:
            self._mounted_shares.append(share)
        return self._get_mount_point_for_share(share)

    def _volume_file(self, volume, error=None, missing_ok=False):
        """(path, lstat) of the volume's file, checked; never via a link.

        The share is mounted first.  The file must be a regular file
        named ``volume.name`` directly in the share: a symbolic link (to
        another volume or out of the share), a directory, a FIFO or a
        device is refused with ``error`` (a callable taking the message;
        VolumeBackendAPIException by default), and nothing is done to it.
        A missing file gives (path, None) when ``missing_ok``.
        """
        error = error or self._backend_error
        share = self._share_of(volume)
        mount = self._mount(share, error)
        try:
            name = share_files.check_name(volume.name)
            path = os.path.join(mount, name)
            st = share_files.lstat_regular(path, missing_ok=missing_ok)
        except share_files.ShareFileError as e:
            msg = (_('Volume %(id)s: its file on share %(share)s cannot be '
                     'used: %(reason)s') % {'id': volume.id, 'share': share,
                                            'reason': e.reason})
            raise error(msg)
        return path, st

    def _check_writable(self, share, mount, what):
        if share_files.read_only(mount):
            msg = (_('%(what)s: share %(share)s is mounted read-only.')
                   % {'what': what, 'share': share})
            raise exception.VolumeBackendAPIException(data=msg)

    def _share_fault(self, what, share, err):
        msg = (_('%(what)s failed on share %(share)s: %(err)s')
               % {'what': what, 'share': share,
                  'err': share_files.describe(err)})
        return exception.VolumeBackendAPIException(data=msg)

    def _clone_into_share(self, snapshot_uuid, source_name, share,
                          target_name, replace=False):
        """Array-clone a snapshot to ``<share>/<target_name>``.

        The array creates a temporary directory holding the clone under
        the source file name; it is renamed into place (atomically, and
        replacing an existing regular file only when ``replace``) and the
        directory removed, also on failure.  A read-only share is refused
        before the array is asked for anything.
        """
        what = _('Cloning snapshot %(snap)s to %(target)s') % {
            'snap': snapshot_uuid, 'target': target_name}
        mount = self._mount(share)
        self._check_writable(share, mount, what)
        share_files.check_name(target_name)
        tmp_name = self._tmp_dir_name_for(target_name)
        tmp_dir = os.path.join(mount, tmp_name)
        target = os.path.join(mount, target_name)
        try:
            def landed():
                return _holds_one_file(tmp_dir)
            try:
                self._client.clone_volume(
                    snapshot_uuid,
                    '%s/%s' % (self._export_path(share), tmp_name),
                    landed=landed)
            except tclient.TintriError as e:
                # A resend refused because the first attempt's clone is
                # there (409, or 400 on arrays that use the documented
                # 3205 for it): the clone landed in our own directory.
                if e.status not in (400, 409) or not landed():
                    raise
                LOG.info('VMstore clone of %(snap)s landed although the '
                         'array answered %(err)s.',
                         {'snap': snapshot_uuid, 'err': e})
            cloned = self._cloned_file(tmp_dir, source_name, snapshot_uuid)
            try:
                existing = share_files.lstat_regular(target, missing_ok=True)
            except share_files.ShareFileError as e:
                msg = (_('Refusing to replace %(target)s: %(reason)s')
                       % {'target': target, 'reason': e.reason})
                raise exception.VolumeBackendAPIException(data=msg)
            if existing is not None and not replace:
                msg = _('Refusing to overwrite existing file %s.') % target
                raise exception.VolumeBackendAPIException(data=msg)
            try:
                os.rename(cloned, target)
            except OSError as e:
                raise self._share_fault(what, share, e)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            self._tmp_release(tmp_name)
        return target

    @staticmethod
    def _cloned_file(tmp_dir, source_name, snapshot_uuid):
        """The regular file the array's clone left in ``tmp_dir``.

        The array names it after the snapshotted file; a name that is not
        a plain file name is not used as a path.  When that name is not
        there, the one regular file in the directory is taken.
        """
        path, entries = share_files.landed_file(tmp_dir, source_name)
        if path is not None:
            return path
        msg = (_('The VMstore clone of snapshot %(snap)s did not produce a '
                 'regular file %(file)s (found: %(found)s).')
               % {'snap': snapshot_uuid,
                  'file': os.path.join(tmp_dir, str(source_name)),
                  'found': ', '.join(entries) or 'nothing'})
        raise exception.VolumeBackendAPIException(data=msg)

    def _resize_to(self, path, size_gb):
        """Grow the raw regular file ``path`` to ``size_gb`` GiB if smaller.

        A sparse ftruncate on a descriptor opened without following
        links; qemu-img (as root when so configured) only when this
        process may not write the file.
        """
        size = size_gb * units.Gi
        try:
            share_files.grow(path, size)
            return
        except share_files.ShareFileError as e:
            msg = _('Cannot grow %(path)s: %(reason)s') % {
                'path': path, 'reason': e.reason}
            raise exception.VolumeBackendAPIException(data=msg)
        except PermissionError:
            pass
        try:
            st = share_files.lstat_regular(path)
        except share_files.ShareFileError as e:
            raise exception.VolumeBackendAPIException(data=e.reason)
        if st.st_size < size:
            image_utils.resize_image(path, size_gb,
                                     run_as_root=self._execute_as_root,
                                     file_format='raw')

    def _check_luks(self, volume, path, error=None):
        """An encrypted volume's file must be a LUKS container to grow."""
        if encryption.is_encrypted(volume):
            self._luks.check_container(volume, path,
                                       error or self._backend_error)

    # File work on the share: in this process, without following links,
    # when it may (no subprocess: 5 to 25 ms each, measured); cinder's
    # root helper (truncate, chmod, rm) only where it is denied.

    def _create_sparsed_file(self, path, size):
        try:
            done = share_files.create_sparse(path, size * units.Gi)
        except share_files.ShareFileError as e:
            raise exception.VolumeBackendAPIException(data=e.reason)
        if not done:
            super()._create_sparsed_file(path, size)

    def _set_rw_permissions(self, path):
        secure = self.configuration.nas_secure_file_permissions == 'true'
        try:
            done = share_files.set_rw_permissions(path, secure)
        except share_files.ShareFileError as e:
            raise exception.VolumeBackendAPIException(data=e.reason)
        if not done:
            super()._set_rw_permissions(path)

    def _delete(self, path):
        if not share_files.remove(path):
            super()._delete(path)

    def _api_error(self, what, err):
        msg = _('%(what)s failed on the VMstore: %(err)s') % {
            'what': what, 'err': err}
        return exception.VolumeBackendAPIException(data=msg)

    # ------------------------------------------------------------------
    # Volumes
    # ------------------------------------------------------------------

    @coordination.synchronized('tintri-{volume.id}')
    def create_volume(self, volume):
        self._luks.refuse_migration_target(volume)
        self._qos.check(volume)
        update = remotefs.RemoteFSDriver.create_volume(self, volume)
        self._qos.apply(volume, qos.CREATE)
        return update

    def before_volume_copy(self, context, src_vol, dest_vol, remote=None):
        # Cinder's generic copy cannot change the encryption on a share.
        self._luks.refuse_encryption_change(context, src_vol, dest_vol)

    def _do_create_volume(self, volume):
        """Sparse raw file, whatever nfs_sparsed_volumes says.

        Nothing may exist at the new volume's name (a link planted there
        would be followed by truncate and chmod); a read-only or full
        share fails with a clear error and leaves no file behind.
        """
        share = volume.provider_location
        what = _('Creating volume %s') % volume.id
        mount = self._mount(share)
        self._check_writable(share, mount, what)
        path = os.path.join(mount, share_files.check_name(volume.name))
        if os.path.lexists(path):
            msg = (_('%(what)s: %(path)s already exists on share %(share)s; '
                     'refusing to reuse it.')
                   % {'what': what, 'path': path, 'share': share})
            raise exception.VolumeBackendAPIException(data=msg)
        encrypted = encryption.is_encrypted(volume)
        try:
            if encrypted:
                self._luks.create(volume, path)
            else:
                self._create_sparsed_file(path, volume.size)
            self._set_rw_permissions(path)
        except (OSError, processutils.ProcessExecutionError) as e:
            self._remove_partial(path)
            if isinstance(e, OSError):
                raise self._share_fault(what, share, e)
            msg = (_('%(what)s failed on share %(share)s: %(err)s')
                   % {'what': what, 'share': share,
                      'err': (e.stderr or '').strip() or e})
            raise exception.VolumeBackendAPIException(data=msg)
        except Exception:
            with excutils.save_and_reraise_exception():
                if encrypted:
                    # qemu-img made the file; growing or chmod failed.
                    self._remove_partial(path)
        volume.admin_metadata['format'] = 'raw'
        with volume.obj_as_admin():
            volume.save()

    def _remove_partial(self, path):
        try:
            if share_files.lstat_regular(path, missing_ok=True):
                self._delete(path)
        except Exception as e:
            LOG.warning('Could not remove %(path)s: %(err)s',
                        {'path': path, 'err': e})

    @coordination.synchronized('tintri-{volume.id}')
    def delete_volume(self, volume):
        """Delete the volume file; a missing file is success.

        The share is mounted first: on a share whose mount is gone the
        file would look missing while it stays on the array, unreachable.
        If the share cannot be mounted the delete fails (the volume goes
        to error_deleting and can be retried).  A volume whose file is
        not a regular file (a link, a directory) is refused, nothing
        changed.  A volume whose manage was interrupted gets its file
        back under the name it had before.
        """
        if self._manage_undo(volume):
            return
        self._qos.forget(volume)
        if not volume.provider_location:
            # A create that failed.  Array work whose response timed out
            # may have landed after the failure: a clone in a temporary
            # directory, a clone's helper snapshot.  Remove both.
            LOG.info('Volume %s has no provider_location; removing what '
                     'a failed create may have left.', volume.id)
            self._remove_failed_create_leftovers(volume)
            return
        path, st = self._volume_file(volume, missing_ok=True)
        if st is not None:
            try:
                self._delete(path)
            except processutils.ProcessExecutionError as e:
                msg = (_('Deleting volume %(id)s: cannot remove %(path)s: '
                         '%(err)s') % {'id': volume.id, 'path': path,
                                       'err': e})
                raise exception.VolumeBackendAPIException(data=msg)
        else:
            LOG.info('Volume %(id)s: its file %(path)s is already gone.',
                     {'id': volume.id, 'path': path})
        self._temps.remove_for(os.path.dirname(path), volume.name)

    def _remove_failed_create_leftovers(self, volume):
        # Every share: a rescheduled create has no host or pool any more,
        # and each attempt may have left temporaries.  A share that cannot
        # be mounted fails the delete (to be retried): its leftovers would
        # otherwise hold clone references on the array for good.
        for share in list(self.shares):
            mount = self._mount(share)
            self._temps.remove_for(mount, volume.name)
        prefix = '%s-clone-' % volume.name
        try:
            helpers = [s for s in self._client.find_snapshots(contain=prefix)
                       if (s.get('description') or '').startswith(prefix)]
        except tclient.TintriError as e:
            LOG.warning('Cannot look for helper snapshots of volume %(id)s: '
                        '%(err)s', {'id': volume.id, 'err': e})
            return
        for snap in helpers:
            uuid_ = tclient._uuid_of(snap)
            if uuid_:
                self._delete_helper_snapshot(uuid_)

    def ensure_export(self, ctx, volume):
        pass

    def create_export(self, ctx, volume, connector):
        pass

    def remove_export(self, ctx, volume):
        pass

    def initialize_connection(self, volume, connector):
        """NfsDriver's connection info, for a volume file that is one.

        The host attaching (Nova's compute, a backup, a migration) opens
        ``<mount>/<volume name>`` and follows whatever is there: a link
        planted at that name would hand it another volume.  Refused like
        every other operation on such a file.
        """
        self._volume_file(volume)
        return super().initialize_connection(volume, connector)

    # ------------------------------------------------------------------
    # Snapshots
    # ------------------------------------------------------------------

    def _snapshot_file(self, share, file_name, key_id, description,
                       deletion_policy=None, export=None):
        """Array snapshot of ``<share>/<file_name>`` (either protocol).

        ``key_id`` is the id the array files the file under: the volume
        id, or an image id.  Raises VolumeBackendAPIException, naming the
        array's snapshot limit when that is what refused it.
        """
        export = export or self._export_path(share)
        try:
            return self._inventory.snapshot(export, file_name, key_id,
                                            description,
                                            deletion_policy=deletion_policy)
        except inventory.SnapshotLimitReached as e:
            msg = (_('Cannot snapshot %(file)s: %(err)s')
                   % {'file': file_name, 'err': e})
            raise exception.VolumeBackendAPIException(data=msg)

    def _remember_vm(self, volume):
        """Record the volume's VMstore VM uuid in its provider_id."""
        vm = self._inventory.cached(volume.id)
        if vm is None:
            return
        try:
            if volume.provider_id == vm.vm_uuid:
                return
            volume.provider_id = vm.vm_uuid
            volume.save()
        except Exception as e:
            LOG.debug('Cannot record the VM of volume %s: %s', volume.id, e)

    @coordination.synchronized('tintri-{snapshot.volume_id}')
    def create_snapshot(self, snapshot):
        volume = snapshot.volume
        share = self._share_of(volume)
        path, _st = self._volume_file(volume)   # or refuse
        identity = self._fresh_identity(path) if _detached(volume) else None
        try:
            snap_uuid = self._snapshot_file(share, volume.name, volume.id,
                                            snapshot.name)
        except tclient.TintriError as e:
            raise self._api_error(_('Creating snapshot %s') % snapshot.id, e)
        self._remember_vm(volume)
        if identity is not None:
            # An unchanged detached volume is cloned from this snapshot
            # instead of a new helper (create_cloned_volume).
            self._clone_sources[volume.id] = (snap_uuid, identity)
        LOG.info('Created VMstore snapshot %(uuid)s for snapshot %(id)s.',
                 {'uuid': snap_uuid, 'id': snapshot.id})
        return {'provider_id': snap_uuid}

    @coordination.synchronized('tintri-{snapshot.volume_id}')
    def delete_snapshot(self, snapshot):
        """Delete the array snapshot; idempotent; never waits for clones.

        A snapshot that still has clones (volumes created from it) is
        deleted by the array with its last clone: the array accepts the
        DELETE and keeps the blocks, or takes
        DELETE_ON_ZERO_CLONE_REFERENCES as its deletion policy, or - when
        it does neither - the driver records it as pending deletion on the
        volume's share and deletes it from the periodic task once the
        array accepts (:mod:`cinder_tintri.snapshot_deletion`).
        """
        snap_uuid = self._find_snapshot_uuid(snapshot)
        if not snap_uuid:
            LOG.info('Snapshot %s has no VMstore snapshot; nothing to '
                     'delete.', snapshot.id)
            return
        if self._clone_sources.get(snapshot.volume_id, (None,))[0] == \
                snap_uuid:
            self._clone_sources.pop(snapshot.volume_id, None)
        mount = None
        share = snapshot.volume.provider_location
        if share:
            try:
                mount = self._mount(share)
            except exception.VolumeBackendAPIException as e:
                LOG.warning('Snapshot %(id)s: %(err)s', {'id': snapshot.id,
                                                         'err': e})
        try:
            self._deletion.delete(
                snap_uuid, mount=mount,
                info={'snapshot_id': snapshot.id,
                      'volume_id': snapshot.volume_id})
        except tclient.TintriError as e:
            raise self._api_error(_('Deleting snapshot %s') % snapshot.id, e)

    def update_provider_info(self, volumes, snapshots):
        """At start-up: provider_id for snapshots other drivers made.

        See :meth:`cinder_tintri.takeover.Takeover.provider_info`.
        """
        if self._takeover is None:
            return None, None
        return self._takeover.provider_info(volumes, snapshots)

    def _find_snapshot_uuid(self, snapshot, peer=None):
        """The array snapshot's UUID: provider_id, else by its name.

        The name (``snapshot-<id>``, or the removed driver's ``<name>
        (<volume id>)``) is looked up without a VM filter because the VM a
        snapshot is filed under depends on the protocol (the volume id, or
        the array's VM uuid); a match must be of the volume's own file
        (:meth:`cinder_tintri.takeover.Takeover.find`).
        """
        if snapshot.provider_id:
            return snapshot.provider_id
        if peer is not None:
            # Another backend's array: by the name this driver gives.
            found = peer.client.find_snapshot_by_description(snapshot.name)
            return tclient._uuid_of(found) if found else None
        snap_uuid = self._takeover.find(snapshot)
        if snap_uuid:
            # Found once, by its UUID from now on.
            try:
                snapshot.provider_id = snap_uuid
                snapshot.save()
            except Exception as e:
                LOG.debug('Cannot record provider_id of snapshot %s: %s',
                          snapshot.id, e)
        return snap_uuid

    def _snapshot_uuid(self, snapshot, peer=None):
        snap_uuid = self._find_snapshot_uuid(snapshot, peer)
        if not snap_uuid:
            msg = (_('Snapshot %s has no VMstore snapshot.') % snapshot.id)
            raise exception.SnapshotNotFound(message=msg,
                                             snapshot_id=snapshot.id)
        return snap_uuid

    # ------------------------------------------------------------------
    # Clones
    # ------------------------------------------------------------------

    def create_volume_from_snapshot(self, volume, snapshot):
        """An array clone of the snapshot, grown to the requested size.

        A snapshot of another Tintri backend's array is copied from it
        (:mod:`cinder_tintri.cross_array`).
        """
        peer = self._peers.peer_for(snapshot.volume.host)
        snap_uuid = self._snapshot_uuid(snapshot, peer)
        self._qos.check(volume)
        self._ensure_shares_mounted()
        share = self._find_share(volume)
        self._mount(share)
        self._clone_to_new_volume(snap_uuid, snapshot.volume_name, share,
                                  volume, peer=peer,
                                  src_share=snapshot.volume.provider_location)
        LOG.info('Created volume %(vol)s from snapshot %(snap)s.',
                 {'vol': volume.id, 'snap': snapshot.id})
        self._qos_after_clone(volume, share, snapshot.volume)
        return {'provider_location': share}

    def _clone_to_new_volume(self, snap_uuid, source_name, share, volume,
                             peer=None, src_share=None):
        try:
            if peer is None:
                path = self._clone_into_share(snap_uuid, source_name, share,
                                              volume.name)
            else:
                path = self._cross_array.copy_snapshot(
                    peer, snap_uuid, source_name, src_share, share,
                    self._mount(share), volume.name)
        except tclient.TintriError as e:
            raise self._api_error(_('Cloning volume %s') % volume.id, e)
        try:
            self._check_luks(volume, path)
            self._resize_to(path, volume.size)
            self._set_rw_permissions(path)
        except Exception as e:
            self._remove_partial(path)
            if isinstance(e, exception.CinderException):
                raise
            msg = (_('Finishing the clone %(path)s of volume %(id)s failed: '
                     '%(err)s') % {'path': path, 'id': volume.id, 'err': e})
            raise exception.VolumeBackendAPIException(data=msg) from e
        return path

    def create_cloned_volume(self, volume, src_vref):
        """Clone the source through a snapshot, without spending budget.

        A detached source whose file has not changed (same inode, size,
        mtime and ctime) since its newest snapshot, or since a helper that
        still lives, is cloned from that snapshot: no new snapshot.
        Otherwise a helper snapshot is made with
        DELETE_ON_ZERO_CLONE_REFERENCES and deleted as soon as the clone
        has landed; an array that refuses because the clone still
        references it deletes it with that clone.  Either way clones do
        not spend the VM's snapshot budget (128).  On failure a new helper
        is deleted.
        """
        src_share = self._share_of(src_vref)
        src_path, _st = self._volume_file(src_vref)   # or refuse
        self._qos.check(volume)
        self._ensure_shares_mounted()
        share = self._find_share(volume)
        self._mount(share)
        identity = self._fresh_identity(src_path)
        snap_uuid = self._reusable_helper(src_vref, identity)
        reused = snap_uuid is not None
        if not reused:
            description = '%s-clone-%s' % (volume.name,
                                           uuid.uuid4().hex[:12])
            try:
                snap_uuid = self._snapshot_file(
                    src_share, src_vref.name, src_vref.id, description,
                    deletion_policy=DELETE_ON_ZERO_CLONES)
            except tclient.TintriError as e:
                raise self._api_error(_('Snapshot for clone %s') % volume.id,
                                      e)
        try:
            self._clone_to_new_volume(snap_uuid, src_vref.name, share, volume)
        except Exception:
            with excutils.save_and_reraise_exception():
                if not reused:
                    self._delete_helper_snapshot(snap_uuid)
        if not reused:
            self._retire_helper(src_vref, snap_uuid, identity)
        LOG.info('Cloned volume %(src)s to %(vol)s%(how)s.',
                 {'src': src_vref.id, 'vol': volume.id,
                  'how': ' (reusing helper snapshot %s)' % snap_uuid
                  if reused else ''})
        self._qos_after_clone(volume, share, src_vref)
        return {'provider_location': share}

    @staticmethod
    def _fresh_identity(path):
        """What changes when the file is written or replaced (not cached)."""
        try:
            st = share_files.fresh_stat(path)
        except share_files.ShareFileError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                st.st_ctime_ns)

    def _reusable_helper(self, src_vref, identity):
        """A live snapshot of the unchanged detached source, or None."""
        cached = self._clone_sources.get(src_vref.id)
        if cached is None or identity is None or cached[1] != identity:
            return None
        if not _detached(src_vref):
            return None   # writes may be in flight
        try:
            snap = self._client.get_snapshot(cached[0])
        except tclient.TintriError:
            snap = None
        if not snap or snap.get('isDeleted'):
            self._clone_sources.pop(src_vref.id, None)
            return None
        return cached[0]

    def _retire_helper(self, src_vref, snap_uuid, identity):
        """Delete a helper once its clone landed, or keep it for reuse.

        An array that refused once to delete a helper with a clone is not
        asked again (it deletes helpers with their clones).
        """
        if self._helpers_outlive_clones:
            self._clone_sources[src_vref.id] = (snap_uuid, identity)
            return
        try:
            self._client.delete_snapshot(snap_uuid)
            return
        except tclient.SnapshotHasClones:
            # It goes with its clone (DELETE_ON_ZERO_CLONE_REFERENCES).
            self._helpers_outlive_clones = True
            self._clone_sources[src_vref.id] = (snap_uuid, identity)
        except tclient.TintriError as e:
            LOG.info('Helper snapshot %(uuid)s stays until its clone is '
                     'deleted: %(err)s', {'uuid': snap_uuid, 'err': e})

    def _delete_helper_snapshot(self, snap_uuid):
        try:
            self._client.delete_snapshot(snap_uuid)
        except tclient.TintriError as e:
            LOG.warning('Could not delete helper snapshot %(uuid)s: %(err)s',
                        {'uuid': snap_uuid, 'err': e})

    @coordination.synchronized('tintri-{volume.id}')
    def revert_to_snapshot(self, context, volume, snapshot):
        """Revert on the array: clone the snapshot, swap it in atomically."""
        snap_uuid = self._snapshot_uuid(snapshot)
        share = self._share_of(volume)
        self._volume_file(volume)   # mounted, a regular file, or refuse
        try:
            path = self._clone_into_share(snap_uuid, snapshot.volume_name,
                                          share, volume.name, replace=True)
        except tclient.TintriError as e:
            raise self._api_error(_('Reverting volume %s') % volume.id, e)
        self._check_luks(volume, path)
        self._resize_to(path, volume.size)
        self._set_rw_permissions(path)
        LOG.info('Reverted volume %(vol)s to snapshot %(snap)s.',
                 {'vol': volume.id, 'snap': snapshot.id})
        # The swapped-in file may be a new VM to the array.
        self._qos.apply(volume, qos.REVERT)

    def snapshot_revert_use_temp_snapshot(self):
        # The swap is atomic: the volume file is either the old or the
        # reverted one, so the manager's safety snapshot buys nothing.
        return False

    # ------------------------------------------------------------------
    # Generic volume groups (cinder_tintri.groups)
    # ------------------------------------------------------------------

    def create_group(self, context, group):
        return self._groups.create_group(context, group)

    def delete_group(self, context, group, volumes):
        return self._groups.delete_group(context, group, volumes)

    def update_group(self, context, group, add_volumes=None,
                     remove_volumes=None):
        return self._groups.update_group(context, group, add_volumes,
                                         remove_volumes)

    def create_group_snapshot(self, context, group_snapshot, snapshots):
        return self._groups.create_group_snapshot(context, group_snapshot,
                                                  snapshots)

    def delete_group_snapshot(self, context, group_snapshot, snapshots):
        return self._groups.delete_group_snapshot(context, group_snapshot,
                                                  snapshots)

    def create_group_from_src(self, context, group, volumes,
                              group_snapshot=None, snapshots=None,
                              source_group=None, source_vols=None):
        return self._groups.create_group_from_src(
            context, group, volumes, group_snapshot, snapshots,
            source_group, source_vols)

    # ------------------------------------------------------------------
    # Extend
    # ------------------------------------------------------------------

    @coordination.synchronized('tintri-{volume.id}')
    def extend_volume(self, volume, new_size):
        """Grow a detached volume; attached ones are refused.

        cinder 29 has no Nova-assisted extend for NFS-backed volumes yet
        (qemu-img cannot resize a file QEMU holds), so
        ``online_extend_support`` is reported False and the scheduler
        keeps in-use extends away.
        """
        if self._is_volume_attached(volume):
            msg = (_('Cannot extend volume %s while it is attached; '
                     'detach it first.') % volume.id)
            raise exception.ExtendVolumeError(reason=msg)
        path, _st = self._volume_file(
            volume, error=lambda m: exception.ExtendVolumeError(reason=m))
        self._check_luks(volume, path,
                         lambda m: exception.ExtendVolumeError(reason=m))
        self._qos.check(volume, new_size)
        try:
            self._resize_to(path, new_size)
        except exception.VolumeBackendAPIException as e:
            raise exception.ExtendVolumeError(reason=e.msg)
        LOG.info('Extended volume %(vol)s to %(size)s GiB.',
                 {'vol': volume.id, 'size': new_size})
        self._qos.apply(volume, qos.EXTEND, size_gb=new_size,
                        per_gib_only=True)

    # ------------------------------------------------------------------
    # Migration (cinder_tintri.migration)
    # ------------------------------------------------------------------

    @coordination.synchronized('tintri-{volume.id}')
    def retype(self, context, volume, new_type, diff, host):
        """A new pool moves the volume; the new type's QoS is set.

        Nothing else on the array depends on the type.  Bad QoS specs of
        the new type fail the retype before anything moves.
        """
        type_id = (new_type or {}).get('id')
        self._qos.check_type(type_id, volume.size)
        retyped, update = self._migration.retype(volume, new_type, diff, host)
        if retyped:
            self._qos_after_move(volume, update, qos.RETYPE, type_id=type_id,
                                 clear_unset=True)
        return retyped, update

    @coordination.synchronized('tintri-{volume.id}')
    def migrate_volume(self, context, volume, host):
        """An array clone into a share of the same VMstore, or False."""
        moved, update = self._migration.migrate(volume, host)
        if moved and update:
            # The moved file is another VM on the array.
            self._qos_after_move(volume, update, qos.MIGRATE)
        return moved, update

    def update_migrated_volume(self, ctxt, volume, new_volume,
                               original_volume_status):
        return self._migration.update_migrated(volume, new_volume,
                                               original_volume_status)

    def _snapshot_for_move(self, share, file_name, key_id, description,
                           policy):
        return self._snapshot_file(share, file_name, key_id, description,
                                   deletion_policy=policy)

    def _finish_file(self, path, size_gb):
        self._resize_to(path, size_gb)
        self._set_rw_permissions(path)

    def _forget_file(self, volume_id):
        """The volume's file was replaced by another (moved)."""
        self._clone_sources.pop(volume_id, None)
        self._inventory.forget(volume_id)

    # ------------------------------------------------------------------
    # QoS (cinder_tintri.qos does the work)
    # ------------------------------------------------------------------

    def _qos_file_path(self, volume):
        return tclient.export_relative('%s/%s' % (
            self._export_path(volume.provider_location), volume.name))

    def _qos_after_clone(self, volume, share, source):
        """A clone gets its type's QoS, or loses what its source had."""
        volume.provider_location = share
        self._qos.apply(volume, qos.CREATE,
                        clear_unset=self._qos.has_qos(source))

    def _qos_after_move(self, volume, update, operation, **kwargs):
        """After a retype or migration; a moved file is a new VM."""
        moved_to = (update or {}).get('provider_location')
        if moved_to and moved_to != volume.provider_location:
            self._qos.forget(volume)   # a record on the old share
            volume.provider_location = moved_to
        self._qos.apply(volume, operation, **kwargs)

    def clone_image(self, context, volume, image_location, image_meta,
                    image_service):
        self._qos.check(volume)
        update, cloned = super().clone_image(
            context, volume, image_location, image_meta, image_service)
        if cloned and update:
            volume.provider_location = update.get('provider_location')
            self._qos.apply(volume, qos.CREATE, clear_unset=True)
        return update, cloned

    def manage_existing(self, volume, existing_ref):
        """Adopt the file (cinder_tintri.manage), then set its QoS."""
        if self._qos.enabled:
            self._qos.check(volume, self.manage_existing_get_size(
                volume, existing_ref))
        update = super().manage_existing(volume, existing_ref)
        if self._qos.enabled:
            volume.provider_location = (update or {}).get(
                'provider_location', volume.provider_location)
            path = os.path.join(
                self._get_mount_point_for_share(volume.provider_location),
                volume.name)
            self._qos.apply(volume, qos.MANAGE, clear_unset=True,
                            size_gb=manage._gib(os.stat(path).st_size))
        return update

    def unmanage(self, volume):
        """The VM's QoS goes back to the array default; the file stays."""
        self._qos.clear(volume)
        super().unmanage(volume)

    # ------------------------------------------------------------------
    # Pools, stats
    # ------------------------------------------------------------------

    def get_pool(self, volume):
        return volume.provider_location

    def _find_share(self, volume):
        pool = volume_utils.extract_host(volume.host, level='pool')
        if pool:
            if pool not in self._mounted_shares:
                msg = (_('Pool %(pool)s of volume %(vol)s is not a mounted '
                         'share of this backend.')
                       % {'pool': pool, 'vol': volume.id})
                raise exception.InvalidHost(reason=msg)
            return pool
        return super()._find_share(volume)

    def _get_pool_name_from_share(self, share):
        return share

    def _update_volume_stats(self):
        conf = self.configuration
        self._ensure_shares_mounted()
        try:
            self._remove_stale_temporaries(startup=False)
        except Exception:
            LOG.warning('Removing stale temporaries failed.', exc_info=True)
        try:
            self._deletion.retry(
                [self._get_mount_point_for_share(share)
                 for share in self._mounted_shares],
                deadline=time.monotonic() + PENDING_RETRY_BUDGET)
        except Exception:
            LOG.warning('Retrying pending snapshot deletions failed.',
                        exc_info=True)
        try:
            self._qos.retry_pending(
                [self._get_mount_point_for_share(share)
                 for share in self._mounted_shares],
                deadline=time.monotonic() + QOS_RETRY_BUDGET)
        except Exception:
            LOG.warning('Applying pending QoS settings failed.',
                        exc_info=True)
        backend_name = (conf.safe_get('volume_backend_name')
                        or self.volume_backend_name)
        pools = pool_stats.PoolStats(
            self._client, self._get_capacity_info,
            self._get_mount_point_for_share).pools(
                list(self._mounted_shares), {
                    'volume_backend_name': backend_name,
                    'reserved_percentage': conf.reserved_percentage,
                    'max_over_subscription_ratio': (
                        self.max_over_subscription_ratio),
                    'thin_provisioning_support': True,
                    'thick_provisioning_support': False,
                    'multiattach': True,
                    'QoS_support': self._qos.enabled,
                    'online_extend_support': False,
                    'sparse_copy_volume': True,
                    **groups.CAPABILITIES,
                })
        self._migration.identify()
        for pool in pools:
            pool['location_info'] = self._migration.location_info(
                pool['pool_name'])
        self._stats = {
            'volume_backend_name': backend_name,
            'vendor_name': self.VENDOR,
            'driver_version': self.VERSION,
            'storage_protocol': constants.NFS,
            'sparse_copy_volume': True,
            'total_capacity_gb': 0,
            'free_capacity_gb': 0,
            'pools': pools,
        }
        LOG.debug('Tintri backend %(backend)s pools: %(pools)s',
                  {'backend': self._stats['volume_backend_name'],
                   'pools': ', '.join(
                       '%s (%.1f of %.1f GiB free)' % (
                           p['pool_name'], p['free_capacity_gb'],
                           p['total_capacity_gb']) for p in pools)})


groups.MemberOperations.register(TintriDriver)


def _holds_one_file(directory):
    """True when ``directory`` (a clone's destination) holds a file."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    if len(entries) != 1:
        return False
    try:
        return share_files.lstat_regular(
            os.path.join(directory, entries[0]), missing_ok=True) is not None
    except share_files.ShareFileError:
        return False


def _detached(volume):
    """True only when Cinder says nothing has the volume attached."""
    try:
        return volume.attach_status == 'detached'
    except Exception:
        return False
