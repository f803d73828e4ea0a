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
    parser.add_argument('--debug', action='store_true',
                        help='log every request (method and path only) to '
                             'stderr')
    return parser


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
    sim = server.VMstoreSimulator(
        root=args.root, host=args.host, port=args.port,
        tls=not args.plain_http, username=args.username,
        password=args.password, page_size=args.page_size,
        session_idle_timeout=args.session_idle_timeout,
        capacity_gib=args.capacity_gib)
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
