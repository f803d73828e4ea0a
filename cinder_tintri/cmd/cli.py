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
"""``cinder-tintri``: the operator's command line.

``check``, ``image-cache list|clean``, ``orphans`` and ``volumes``; see
doc/source/operations.rst and the reference generated from
``build_parser()`` (doc/source/cli.rst).

``cinder-tintri check --config-file /etc/cinder/cinder.conf --backend NAME``
validates one backend section the way the driver will use it and prints a
verdict per item: options, shares file, reachability, TLS, credentials,
API version, shares mounted, capacity.  Exit status: 0 when nothing
failed, 1 when an item failed, 2 on a usage error.
"""

import argparse
import hashlib
import os
import re
import socket
import sys
import warnings

from oslo_config import cfg

from cinder_tintri import client as tclient
from cinder_tintri.cmd import inventory
from cinder_tintri import image_cache
from cinder_tintri import options

OK, WARN, FAIL, SKIP = 'OK', 'WARN', 'FAIL', 'SKIP'
EXPORT_ROOT = '/tintri'
SHARE_RE = re.compile(r'^([^:]+|\[[0-9a-fA-F:]+\]):(/.*)$')
TCP_TIMEOUT = 5.0


def _backend_opts():
    """Every option ``check`` reads, as the driver registers them."""
    from cinder.volume import driver as base_driver
    from cinder.volume.drivers import nfs
    from cinder.volume.drivers import remotefs
    wanted = {'driver_ssl_cert_path', 'volume_backend_name'}
    return (options.tintri_opts + nfs.nfs_opts + remotefs.nas_opts
            + [o for o in base_driver.volume_opts if o.name in wanted]
            # cinder registers this one with the volume manager.
            + [cfg.StrOpt('volume_driver')])


class BackendConf(object):
    """Values of one backend section, falling back to backend_defaults."""

    def __init__(self, config_file, backend):
        self.conf = cfg.ConfigOpts()
        opts = _backend_opts()
        self.conf.register_opts(opts, group=backend)
        self.conf.register_opts(opts, group='backend_defaults')
        for opt in opts:
            self.conf.set_default(opt.name, None, group=backend)
        self.conf(['--config-file', config_file], project='cinder',
                  default_config_files=[], use_env=False)
        self.backend = backend
        for opt in opts:   # a bad value fails here, not halfway through
            getattr(self, opt.name)

    def __getattr__(self, name):
        value = self.conf[self.backend][name]
        if value is None:
            value = self.conf['backend_defaults'][name]
        return value


def enabled_backends(config_file):
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.ListOpt('enabled_backends')])
    conf(['--config-file', config_file], project='cinder',
         default_config_files=[], use_env=False)
    return conf.enabled_backends or []


# Every client this process made; their secrets are masked in the output.
_CLIENTS = []


def make_client(c, retries=None, deadline=None):
    client = tclient.TClient(
        c.tintri_server_hostname, c.tintri_server_username,
        c.tintri_server_password, port=c.tintri_server_port,
        use_https=c.tintri_use_https, verify=c.tintri_ssl_cert_verify,
        ca_path=c.driver_ssl_cert_path or None,
        connect_timeout=c.tintri_connect_timeout,
        read_timeout=c.tintri_read_timeout,
        retries=c.tintri_api_retries if retries is None else retries,
        retry_deadline=min(c.tintri_api_retry_deadline,
                           deadline or c.tintri_api_retry_deadline),
        page_size=c.tintri_api_page_size, max_pages=c.tintri_api_max_pages,
        request_timeout=c.tintri_request_timeout,
        auth_retry_interval=c.tintri_auth_retry_interval)
    _CLIENTS.append(client)
    return client


class MaskingWriter(object):
    """An output stream that masks secrets in everything written.

    What this tool prints comes partly from the array (error messages,
    snapshot descriptions): the configured password and every session id
    of the clients made here are replaced by ``***`` (see
    :func:`cinder_tintri.client.mask_text`).
    """

    def __init__(self, out, secrets=()):
        self.out = out
        self.secrets = [s for s in secrets if s]

    def write(self, text):
        for client in list(_CLIENTS):
            text = client.mask(text)
        return self.out.write(tclient.mask_text(text, self.secrets))

    def flush(self):
        self.out.flush()


def share_list(c):
    """The backend's shares as the driver reads them (no validation)."""
    if c.nas_host and c.nas_share_path:
        return ['%s:%s' % (c.nas_host, c.nas_share_path)]
    if not c.nfs_shares_config or not os.path.isfile(c.nfs_shares_config):
        return []
    with open(c.nfs_shares_config) as f:
        return [ln.split()[0] for ln in f
                if ln.strip() and not ln.startswith('#')]


def mount_point(c, share):
    digest = hashlib.md5(share.encode('utf-8'),
                         usedforsecurity=False).hexdigest()
    return os.path.join(os.path.realpath(c.nfs_mount_point_base or ''),
                        digest)


class Checker(object):

    def __init__(self, conf, out=sys.stdout):
        self.conf = conf
        self.out = out
        self.results = []
        self.client = None

    def report(self, verdict, item, detail):
        self.results.append((verdict, item, detail))
        self.out.write('%-4s  %-18s %s\n' % (verdict, item, detail))
        self.out.flush()

    @property
    def failed(self):
        return any(v == FAIL for v, _i, _d in self.results)

    # -- the items ----------------------------------------------------------

    def run(self):
        if self.check_options():
            shares = self.check_shares_file()
            if self.check_reachable() and self.check_tls_and_api():
                if self.check_credentials():
                    self.check_capacity()
            self.check_mounted(shares)
        if self.client:
            self.client.close()
        return 1 if self.failed else 0

    def check_options(self):
        c = self.conf
        if c.volume_driver and 'tintri' not in c.volume_driver.lower():
            self.report(WARN, 'volume_driver',
                        '%s is not cinder_tintri.driver.TintriDriver'
                        % c.volume_driver)
        missing = [n for n in ('tintri_server_hostname',
                               'tintri_server_username',
                               'tintri_server_password')
                   if not getattr(c, n)]
        if missing:
            self.report(FAIL, 'options', 'missing: %s' % ', '.join(missing))
            return False
        if not (c.tintri_api_version or '').startswith('v310'):
            self.report(FAIL, 'options', 'tintri_api_version=%s is not '
                        'supported (v310 only)' % c.tintri_api_version)
            return False
        if not c.tintri_ssl_cert_verify:
            self.report(WARN, 'options', 'tintri_ssl_cert_verify=False: '
                        'the array certificate is not verified')
        elif (c.driver_ssl_cert_path
              and not os.path.isfile(c.driver_ssl_cert_path)):
            self.report(FAIL, 'options', 'driver_ssl_cert_path %s does not '
                        'exist' % c.driver_ssl_cert_path)
            return False
        if (c.tintri_image_cache_free_space_start
                > c.tintri_image_cache_free_space_stop):
            self.report(FAIL, 'options', 'tintri_image_cache_free_space_'
                        'start must not exceed ..._stop')
            return False
        self.report(OK, 'options', 'required options set')
        return True

    def check_shares_file(self):
        c = self.conf
        if c.nas_host and c.nas_share_path:
            source = 'nas_host/nas_share_path'
        else:
            source = c.nfs_shares_config
            if not source or not os.path.isfile(source):
                self.report(FAIL, 'shares', 'nfs_shares_config %s does not '
                            'exist' % source)
                return []
        lines = share_list(c)
        shares, bad = [], []
        for share in lines:
            m = SHARE_RE.match(share)
            export = m.group(2).rstrip('/') if m else ''
            if not m or not (export == EXPORT_ROOT
                             or export.startswith(EXPORT_ROOT + '/')):
                bad.append(share)
            else:
                shares.append(share)
        if bad:
            self.report(FAIL, 'shares', 'not host:%s/<submount>: %s'
                        % (EXPORT_ROOT, ', '.join(bad)))
        elif not shares:
            self.report(FAIL, 'shares', 'no share in %s' % source)
        else:
            self.report(OK, 'shares', '%d share(s) from %s'
                        % (len(shares), source))
        return shares

    def check_reachable(self):
        c = self.conf
        host = c.tintri_server_hostname.strip('[]')
        try:
            with socket.create_connection((host, c.tintri_server_port),
                                          timeout=TCP_TIMEOUT):
                pass
        except OSError as e:
            self.report(FAIL, 'reachable', '%s port %s: %s'
                        % (host, c.tintri_server_port, e))
            return False
        self.report(OK, 'reachable', '%s port %s'
                    % (host, c.tintri_server_port))
        return True

    def check_tls_and_api(self):
        c = self.conf
        self.client = make_client(c, retries=1, deadline=30.0)
        try:
            info = self.client.api_info()
        except tclient.TintriNotVMstoreError as e:
            self.report(FAIL, 'api', str(e))
            return False
        except tclient.TintriAuthError as e:
            # An array without /api/info is identified after a login.
            self.report(FAIL, 'credentials', 'user %s: %s'
                        % (c.tintri_server_username, e))
            return False
        except tclient.TintriError as e:
            text = str(e)
            if 'CERTIFICATE' in text.upper() or 'SSL' in text.upper():
                self.report(FAIL, 'tls', 'certificate not trusted (set '
                            'driver_ssl_cert_path to the array CA): %s' % e)
            else:
                self.report(FAIL, 'api', str(e))
            return False
        if c.tintri_use_https:
            self.report(OK if c.tintri_ssl_cert_verify else WARN, 'tls',
                        'verified' if c.tintri_ssl_cert_verify
                        else 'NOT verified')
        else:
            self.report(WARN, 'tls', 'plain HTTP: the password travels in '
                        'clear')
        versions = [str(v) for v in info.get('supportedVersionSet') or []]
        preferred = info.get('preferredVersion') or ''
        if not (preferred.startswith('v310')
                or any(v.startswith('v310') for v in versions)):
            self.report(FAIL, 'api version', 'array offers %s, not v310'
                        % (preferred or versions or 'nothing'))
            return False
        self.report(OK, 'api version', '%s %s' % (
            info.get('productName', 'VMstore'), preferred))
        return True

    def check_credentials(self):
        try:
            self.client.login()
        except tclient.TintriError as e:
            self.report(FAIL, 'credentials', 'user %s: %s'
                        % (self.conf.tintri_server_username, e))
            return False
        self.report(OK, 'credentials', 'logged in as %s'
                    % self.conf.tintri_server_username)
        return True

    def check_capacity(self):
        try:
            stats = self.client.get_datastore_stats()
        except tclient.TintriError as e:
            self.report(WARN, 'capacity', 'datastore stats unavailable: %s'
                        % e)
            return
        total, free = stats['total_gib'], stats['free_gib']
        pct = 100.0 * free / total if total else 0.0
        verdict = WARN if pct < self.conf.tintri_image_cache_free_space_start \
            else OK
        self.report(verdict, 'capacity', '%.1f of %.1f GiB free (%.0f%%)'
                    % (free, total, pct))

    def check_mounted(self, shares):
        try:
            with open('/proc/self/mounts') as f:
                mounts = {line.split()[1] for line in f}
        except OSError:
            mounts = set()
        for share in shares:
            point = mount_point(self.conf, share)
            if point in mounts:
                self.report(OK, 'mounted', '%s at %s' % (share, point))
            else:
                self.report(WARN, 'mounted', '%s not mounted at %s (the '
                            'driver mounts it when cinder-volume starts)'
                            % (share, point))


def _add_common(parser):
    parser.add_argument('--config-file', default='/etc/cinder/cinder.conf',
                        help='cinder.conf to read (default: %(default)s)')
    parser.add_argument('--backend',
                        help='backend section to use (default: the only '
                             'one in enabled_backends)')


def _mounted_shares(conf, out):
    mounts = {}
    for share in share_list(conf):
        point = mount_point(conf, share)
        if os.path.isdir(point):
            mounts[share] = point
        else:
            out.write('note: share %s is not mounted here (%s); its files '
                      'are not scanned\n' % (share, point))
    return mounts


def cmd_check(args, conf, out):
    return Checker(conf, out=out).run()


def cmd_image_cache(args, conf, out):
    mounts = list(_mounted_shares(conf, out).values())
    with make_client(conf) as client:
        if args.action == 'list':
            inventory.list_image_cache(client, mounts,
                                       conf.tintri_image_cache_expiry_days,
                                       out)
            return 0
        coordinator = inventory.start_coordination(args.config_file)
        try:
            cleaner = image_cache.ImageCacheCleaner(
                client,
                expiry_days=(conf.tintri_image_cache_expiry_days
                             if args.expiry_days is None
                             else args.expiry_days),
                free_space_start=conf.tintri_image_cache_free_space_start,
                free_space_stop=conf.tintri_image_cache_free_space_stop,
                timeout=conf.tintri_image_cache_cleanup_timeout,
                last_used=lambda image_id: inventory.last_used(mounts,
                                                               image_id),
                try_lock=inventory.image_try_lock(coordinator))
            deleted = cleaner.run_once()
        finally:
            coordinator.stop()
    for entry in deleted:
        out.write('deleted %s (image %s): %s\n'
                  % (entry['uuid'], entry['image_id'], entry['reason']))
    out.write('%d image snapshot(s) deleted\n' % len(deleted))
    return 0


def cmd_orphans(args, conf, out):
    mounts = _mounted_shares(conf, out)
    volume_ids, snapshot_ids, provider_ids = inventory.cinder_ids(
        args.config_file)
    with make_client(conf) as client:
        orphans = inventory.find_orphans(client, mounts, volume_ids,
                                         snapshot_ids, provider_ids)
    for kind, where, what, why in orphans:
        out.write('%-8s  %-40s  %s: %s\n' % (kind, where, what, why))
    pending = [o for o in orphans if o[0] == 'pending']
    real = len(orphans) - len(pending)
    out.write('%d orphan(s), %d snapshot(s) pending deletion\n'
              % (real, len(pending)))
    return 1 if real else 0


def cmd_volumes(args, conf, out):
    mounts = _mounted_shares(conf, out)
    with make_client(conf) as client:
        inventory.volume_report(client, mounts, out)
    return 0


def build_parser():
    """The ``cinder-tintri`` argument parser (also read by the docs)."""
    parser = argparse.ArgumentParser(
        prog='cinder-tintri',
        description='Operator tools for the Tintri VMstore Cinder driver.')
    sub = parser.add_subparsers(dest='command', required=True)
    check = sub.add_parser(
        'check', help='validate a cinder.conf backend section against '
                      'the VMstore')
    _add_common(check)
    check.set_defaults(func=cmd_check)
    cache = sub.add_parser(
        'image-cache', help='list or clean the image cache on the array')
    cache.add_argument('action', choices=('list', 'clean'))
    cache.add_argument('--expiry-days', type=int,
                       help='clean: override tintri_image_cache_expiry_days')
    _add_common(cache)
    cache.set_defaults(func=cmd_image_cache)
    orphans = sub.add_parser(
        'orphans', help='list array snapshots and share files that look '
                        'Cinder-made but belong to no Cinder object '
                        '(exit 1 when there are any)')
    _add_common(orphans)
    orphans.set_defaults(func=cmd_orphans)
    volumes = sub.add_parser(
        'volumes', help='per-volume report: size on the share and on the '
                        'array, the VMstore VM and the space it uses')
    _add_common(volumes)
    volumes.set_defaults(func=cmd_volumes)
    return parser


def main(argv=None, out=sys.stdout):
    parser = build_parser()
    args = parser.parse_args(argv)
    # cinder's import announces that eventlet is deprecated; not news to
    # an operator running this tool.
    warnings.filterwarnings('ignore', message='(?s).*Eventlet is deprecated')

    if not os.path.isfile(args.config_file):
        parser.error('config file %s not found' % args.config_file)
    backend = args.backend
    if not backend:
        backends = enabled_backends(args.config_file)
        if len(backends) != 1:
            parser.error('pass --backend (enabled_backends = %s)'
                         % (', '.join(backends) or 'none'))
        backend = backends[0]
    try:
        conf = BackendConf(args.config_file, backend)
    except cfg.Error as e:
        out.write('FAIL  %-18s %s\n' % ('config', e))
        return 1
    out = MaskingWriter(out, [conf.tintri_server_password])
    try:
        return args.func(args, conf, out)
    except tclient.TintriError as e:
        out.write('error: %s\n' % e)
        return 1


if __name__ == '__main__':
    sys.exit(main())
