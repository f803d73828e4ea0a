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
"""``tintri-vmstore-sim``: run the VMstore simulator until stopped.

Prints one JSON line ``{"url", "host", "port", "datastore", "ca_path",
"username"}`` on stdout when it is ready, then serves until SIGTERM or
SIGINT.  The password is never printed; it is the one given with
``--password`` (default ``tintri``).
"""

import argparse
import json
import logging
import signal
import sys
import threading

from cinder_tintri.simulator import profiles
from cinder_tintri.simulator import server


def build_parser():
    parser = argparse.ArgumentParser(
        prog='tintri-vmstore-sim',
        description='Run a simulated Tintri VMstore (REST API v310) backed '
                    'by a local directory standing for the /tintri NFS '
                    'export.  Prints one JSON line with url, host, port, '
                    'datastore, ca_path and username when ready; stops on '
                    'SIGTERM or SIGINT.  Control endpoints (counts, '
                    'inventory, faults, latency, session expiry, seeding) '
                    'are served under /sim/.')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1; '
                             'use ::1 for IPv6)')
    parser.add_argument('--port', type=int, default=0,
                        help='TCP port (default 0: pick a free port)')
    parser.add_argument('--root', default=None,
                        help='directory for all state: <root>/tintri is '
                             'the datastore (share host:/tintri/<sub> is '
                             '<root>/tintri/<sub>), snapshots and TLS files '
                             'live beside it.  Default: a temporary '
                             'directory removed on exit')
    parser.add_argument('--plain-http', action='store_true',
                        help='serve plain HTTP instead of HTTPS with a '
                             'generated self-signed CA')
    parser.add_argument('--username', default='admin',
                        help='API user name (default admin)')
    parser.add_argument('--password', default='tintri',
                        help='API password (default tintri)')
    parser.add_argument('--page-size', type=int, default=2000,
                        help='maximum items per page of paged listings '
                             '(default 2000, the VMstore default limit)')
    parser.add_argument('--capacity-gib', type=float, default=1024.0,
                        help='datastore capacity reported in GiB '
                             '(default 1024)')
    parser.add_argument('--session-idle-timeout', type=float,
                        default=1800.0,
                        help='seconds of inactivity after which a session '
                             'expires and calls get 401 ERR-API-0104 '
                             '(default 1800)')
    group = parser.add_argument_group(
        'profile', 'The array generation to simulate and its switches; a '
        'switch not given takes the profile\'s default.')
    group.add_argument('--profile', choices=profiles.PROFILES,
                       default='vmstore4',
                       help='vmstore4 (default): the VMstore 4.x era, '
                            'lenient; vmstore6: VMstore >= 6.0.1.1, strict '
                            '(official endpoints and fields only, '
                            'snapshots of inventoried files only, 128 '
                            'snapshots per VM)')
    group.add_argument('--strict-endpoints',
                       action=argparse.BooleanOptionalAction, default=None,
                       help='serve only the official index endpoints '
                            '(others: 404 ERR-API-8001) with their '
                            'documented error codes (vmstore6 default)')
    group.add_argument('--strict-fields',
                       action=argparse.BooleanOptionalAction, default=None,
                       help='only documented DTO fields in responses; '
                            'unknown query parameters 400 ERR-API-4003, '
                            'unknown body fields 400 ERR-API-0020 '
                            '(vmstore6 default)')
    group.add_argument('--require-inventory',
                       action=argparse.BooleanOptionalAction, default=None,
                       help='VMs/virtual disks only for files a '
                            'cinder/host/refresh named; cinder/snapshot '
                            'only of those, with their vmTintriUuid '
                            '(vmstore6 default)')
    group.add_argument('--inventory-lag', type=float, default=None,
                       metavar='SECONDS',
                       help='delay between a refresh and the file being '
                            'inventoried (vmstore4 0, vmstore6 0.2)')
    group.add_argument('--snapshot-limit', type=int, default=None,
                       metavar='N',
                       help='live snapshots a VM may hold; 0: no limit '
                            '(vmstore4 0, vmstore6 128)')
    group.add_argument('--delete-with-clones',
                       choices=profiles.DELETE_MODES, default=None,
                       help='deleting a snapshot that has clones: accept '
                            '(kept as deleted until its clones go), '
                            'refuse_put (500 ERR-API-3107, PUT '
                            'snapshot/{uuid} served; vmstore4 default) or '
                            'refuse (500 ERR-API-3107, no PUT; vmstore6 '
                            'default)')
    parser.add_argument('--debug', action='store_true',
                        help='log every request (method and path only) to '
                             'stderr')
    return parser


def profile_kwargs(args):
    """VMstoreSimulator keyword arguments for the profile options."""
    return {
        'profile': args.profile,
        'strict_endpoints': args.strict_endpoints,
        'strict_fields': args.strict_fields,
        'require_inventory': args.require_inventory,
        'inventory_lag': args.inventory_lag,
        'snapshot_limit': args.snapshot_limit,
        'delete_with_clones': args.delete_with_clones,
    }


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format='%(asctime)s %(levelname)s %(name)s %(message)s')
    if args.page_size < 1:
        sys.stderr.write('--page-size must be >= 1\n')
        return 2
    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        sim = server.VMstoreSimulator(
            root=args.root, host=args.host, port=args.port,
            tls=not args.plain_http, username=args.username,
            password=args.password, page_size=args.page_size,
            session_idle_timeout=args.session_idle_timeout,
            capacity_gib=args.capacity_gib, **profile_kwargs(args))
    except ValueError as exc:
        sys.stderr.write('tintri-vmstore-sim: %s\n' % exc)
        return 2
    try:
        sim.start()
    except OSError as exc:
        sys.stderr.write('tintri-vmstore-sim: cannot start: %s\n' % exc)
        return 1
    try:
        sys.stdout.write(json.dumps({
            'url': sim.url,
            'host': sim.host,
            'port': sim.port,
            'datastore': sim.datastore,
            'ca_path': sim.ca_path,
            'username': sim.username,
        }) + '\n')
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
