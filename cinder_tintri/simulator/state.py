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
"""In-memory state and REST semantics of the simulated VMstore.

Nothing here knows about HTTP transport: :class:`SimState` takes a parsed
request (method, route template, path parameters, query pairs, body) and
returns a :class:`Reply`.  Every public method of :class:`SimState` must be
called with ``SimState.lock`` held; the server does that.

Facts follow ``vmstore-rest-api.md`` (Tintri's public API documentation and
SDKs).  Where the documents are silent the behaviour is marked INFERRED
here and in ``doc/source/contributor/simulator.rst``.
"""

import base64
import calendar
import datetime
import json
import math
import os
import re
import secrets
import shutil
import threading
import time
from urllib import parse
import uuid as uuidlib

from cinder_tintri.simulator import official
from cinder_tintri.simulator import profiles
from cinder_tintri.simulator import storage

API = '/api/v310'
NS = 'com.tintri.api.rest.v310.dto'
TYPE_PAGE = NS + '.Page'
TYPE_ERROR = NS + '.domain.beans.TintriError'
TYPE_SNAPSHOT = NS + '.domain.Snapshot'
TYPE_REQUEST = NS + '.Request'
TYPE_VM = NS + '.domain.VirtualMachine'
TYPE_VDISK = NS + '.domain.VirtualDisk'
TYPE_QOS = NS + '.domain.beans.vm.VirtualMachineQoSConfig'
TYPE_APPLIANCE = NS + '.domain.Appliance'
TYPE_APPLIANCE_INFO = NS + '.domain.beans.hardware.ApplianceInfo'
TYPE_APPLIANCE_IP = NS + '.domain.beans.hardware.ApplianceIp'
TYPE_DATASTORE = NS + '.domain.Datastore'
TYPE_DATASTORE_STAT = NS + '.domain.beans.perf.DatastoreStat'
TYPE_STATS = NS + '.domain.beans.perf.Stats'
TYPE_USER_SESSION = NS + '.UserSession'
TYPE_FILE_SYSTEM_INFO = NS + '.domain.beans.filesystem.FileSystemInfo'

PREFERRED_VERSION = 'v310.191'
SUPPORTED_VERSIONS = ['v310.1', 'v310.11', 'v310.21', 'v310.31', 'v310.41',
                      'v310.51', 'v310.61', 'v310.71', 'v310.81', 'v310.91',
                      'v310.101', 'v310.111', 'v310.121', 'v310.131',
                      'v310.141', 'v310.151', 'v310.161', 'v310.171',
                      'v310.181', 'v310.191']

POLICIES = ('DELETE_ON_EXPIRATION', 'DELETE_ON_ZERO_CLONE_REFERENCES',
            'DELETE_ON_SYNCREPL_RESYNC_COMPLETE')
ZERO_REFS = 'DELETE_ON_ZERO_CLONE_REFERENCES'
GIB = float(1024 ** 3)
# Largest normalized IOPS value the simulator accepts (INFERRED bound).
QOS_MAX = 2 ** 31 - 1
MIB = float(1024 ** 2)

MESSAGES = {
    'ERR-API-0005': 'Request not supported.',
    'ERR-API-0007': 'Internal error.',
    'ERR-API-0020': 'Invalid input data.',
    'ERR-API-0102': 'Failed to obtain default entity.',
    'ERR-API-0104': 'Invalid or expired session.',
    'ERR-API-0124': 'Invalid credentials.',
    'ERR-API-2001': ("Datastores other than 'default datastore' are not "
                     "supported."),
    'ERR-API-3105': 'Invalid create snapshot request.',
    'ERR-API-3106': 'Create snapshot failed.',
    'ERR-API-3107': 'Delete snapshot failed.',
    'ERR-API-3109': 'Invalid update QoS settings request.',
    'ERR-API-3110': "Can't update QoS for non-live VMs.",
    'ERR-API-3112': 'Invalid QoS settings: minimum above maximum.',
    'ERR-API-3113': 'Invalid QoS settings: value out of range.',
    'ERR-API-9700': 'Failed to get file or directory information.',
    'ERR-API-3205': 'Invalid clone request.',
    'ERR-API-3206': 'Clone request failed.',
    'ERR-API-3214': 'Resource not found for clone request.',
    'ERR-API-4003': 'Invalid query parameter.',
    'ERR-API-8001': 'Resource not found.',
    'ERR-API-9013': 'Snapshot inventory is busy, please retry later.',
    'ERR-API-9014': 'Get snapshots failed.',
}

TITLES = {
    400: 'Bad request', 401: 'Unauthorized', 403: 'Forbidden',
    404: 'Resource not found', 405: 'Method not allowed', 409: 'Conflict',
    411: 'Length required', 413: 'Request too large',
    429: 'Too many requests', 500: 'Internal server error',
    501: 'Not implemented', 502: 'Bad gateway',
    503: 'Service unavailable', 504: 'Gateway timeout',
}


class ApiError(Exception):
    """A TintriError reply."""

    def __init__(self, status, code, cause='', message=None, title=None):
        super().__init__(cause or code)
        self.status = status
        self.code = code
        self.cause = cause or ''
        self.message = message or MESSAGES.get(code, 'Request failed.')
        self.title = title or TITLES.get(status, 'Error')

    def body(self):
        return {
            'typeId': TYPE_ERROR,
            'code': self.code,
            'message': self.message,
            'causeDetails': self.cause,
            'title': self.title,
        }


class Reply(object):
    """Status, JSON-able body (``None`` for no body) and extra headers."""

    def __init__(self, status=200, body=None, headers=None):
        self.status = status
        self.body = body
        self.headers = headers or []


def error_reply(error):
    return Reply(error.status, error.body())


def now_ms():
    return int(time.time() * 1000)


def format_datetime(ms):
    dt = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc)
    return dt.strftime('%Y-%m-%dT%H:%M:%S.') + '%03d+00:00' % (ms % 1000)


_DT_RE = re.compile(
    r'^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})'
    r'(?:\.(\d{1,9}))?(Z|[ +-]\d{2}:?\d{2})?$')


def parse_datetime(value):
    """Epoch milliseconds of an API date; ValueError when unparsable.

    Accepts ``YYYY-MM-DDTHH:MM:SS`` with optional fraction and zone
    (``Z``, ``+hh:mm``, ``+hhmm``); no zone means UTC (INFERRED).  Plain
    integers are taken as epoch milliseconds.  A space before the zone is
    read as ``+`` (an unencoded ``+`` in a hand-built query string).
    """
    value = value.strip()
    if re.match(r'^-?\d+$', value):
        return int(value)
    m = _DT_RE.match(value)
    if not m:
        raise ValueError(value)
    year, month, day, hour, minute, second = (int(x) for x in m.groups()[:6])
    frac = m.group(7) or '0'
    millis = int((frac + '000')[:3])
    datetime.datetime(year, month, day, hour, minute, second)  # validates
    seconds = calendar.timegm((year, month, day, hour, minute, second))
    zone = m.group(8)
    if zone and zone != 'Z':
        sign = -1 if zone[0] == '-' else 1
        digits = zone[1:].replace(':', '')
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        seconds -= sign * offset
    return seconds * 1000 + millis


def normalize_path(path):
    """Datastore-relative path of an API file path; ValueError if bad.

    Tolerates a leading ``/`` or ``/tintri/`` (the export root).
    """
    if not isinstance(path, str):
        raise ValueError('not a string')
    p = path.strip()
    if p == '/tintri' or p.startswith('/tintri/'):
        p = p[len('/tintri'):]
    parts = [x for x in p.split('/') if x not in ('', '.')]
    if not parts or '..' in parts or '\0' in p:
        raise ValueError(path)
    return '/'.join(parts)


class Query(object):
    """Query string parameters (case-sensitive keys, ordered)."""

    def __init__(self, query_string):
        self.pairs = parse.parse_qsl(query_string or '',
                                     keep_blank_values=True)
        self.values = {}
        for key, value in self.pairs:
            self.values.setdefault(key, []).append(value)

    def get(self, key, default=None):
        vals = self.values.get(key)
        if not vals:
            return default
        return vals[0]

    def multi(self, key):
        out = []
        for val in self.values.get(key, []):
            out.extend(v.strip() for v in val.split(',') if v.strip())
        return out

    def int(self, key, minimum):
        val = self.get(key)
        if val is None or val == '':
            return None
        try:
            num = int(val)
        except ValueError:
            raise ApiError(400, 'ERR-API-4003',
                           'Query parameter %s must be an integer' % key)
        if num < minimum:
            raise ApiError(400, 'ERR-API-4003',
                           'Query parameter %s must be >= %d'
                           % (key, minimum))
        return num


def _dotted(item, key):
    value = item
    for part in key.split('.'):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class SimState(object):
    """All mutable state of one simulated VMstore."""

    def __init__(self, root, username, password, page_size,
                 session_idle_timeout, capacity_gib, use_reflink=True,
                 vd_requires_refresh=True, refresh_lag=None,
                 vm_name_style='file', accept_basic_auth=False,
                 settings=None):
        self.lock = threading.RLock()
        if settings is None:
            settings = profiles.resolve(
                'vmstore4', inventory_lag=refresh_lag)
        self.settings = dict(settings)
        self.profile = settings['profile']
        self.strict_endpoints = settings['strict_endpoints']
        self.strict_fields = settings['strict_fields']
        self.require_inventory = settings['require_inventory']
        self.snapshot_limit = settings['snapshot_limit']
        self.delete_with_clones = settings['delete_with_clones']
        if self.require_inventory and not vd_requires_refresh:
            raise ValueError('vd_requires_refresh=False contradicts '
                             'require_inventory (only refreshed files are '
                             'inventoried)')
        self.root = root
        self.datastore = os.path.join(root, 'tintri')
        self.snapdir = os.path.join(root, '.snapshots')
        self.username = username
        self.password = password
        self.page_size = int(page_size)
        self.session_idle_timeout = float(session_idle_timeout)
        self.capacity_gib = float(capacity_gib)
        self.use_reflink = use_reflink
        self.vd_requires_refresh = vd_requires_refresh
        self.refresh_lag = settings['inventory_lag']
        if vm_name_style not in ('file', 'volume_id'):
            raise ValueError('vm_name_style must be file or volume_id')
        self.vm_name_style = vm_name_style
        self.accept_basic_auth = accept_basic_auth
        self.host = '127.0.0.1'

        self.fs_uuid = str(uuidlib.uuid4()).upper()
        self.appliance_uuid = '%s-APP-%016X' % (self.fs_uuid, 1)
        self.datastore_uuid = '%s-DS-%016X' % (self.fs_uuid, 1)
        self.serial = 'TSIM%08d' % (int(self.fs_uuid[:8], 16) % 10 ** 8)
        self.started_ms = now_ms()

        self.sessions = {}
        self.session_seq = 0
        self.logins = 0
        self.failed_logins = 0
        self.snapshots = {}           # uuid -> record (creation order)
        self.with_clones = {}         # uuid -> record having clone refs
        self.live_by_vm = {}          # vmUuid -> live (not deleted) count
        self.deleted_kept = 0         # deleted records kept for clones
        self.snap_seq = 0
        self.blobs = {}               # data path -> reference count
        self.blob_seq = 0
        self.vm_ids = {}              # relative path -> sequence number
        self.vm_seq = 0
        self.registered = {}          # relative path -> refresh info
        self.refreshes = []
        self.copies = {'reflink': 0, 'copy': 0}
        self._scan_cache = None
        self.qos = {}                 # relative path -> (min, max) IOPS
        self.qos_puts = []            # (relative path, min, max) accepted
        # Non-live VMs (QoS refused with ERR-API-3110): relative path ->
        # time until which it is not live (inf: until told otherwise);
        # '*' for every VM.
        self.not_live = {}

        os.makedirs(self.datastore, exist_ok=True)
        if os.path.isdir(self.snapdir):
            shutil.rmtree(self.snapdir, ignore_errors=True)
        os.makedirs(self.snapdir, exist_ok=True)

    # ------------------------------------------------------------------
    # scanning the datastore (cached until the next request or mutation)

    def invalidate(self):
        self._scan_cache = None

    def scan(self):
        """List of (relative path, lstat, is_dir) under the datastore."""
        if self._scan_cache is not None:
            return self._scan_cache
        entries = []
        base = self.datastore
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, base)
            rel_dir = '' if rel_dir == '.' else rel_dir + '/'
            for name in dirnames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                entries.append((rel_dir + name, st, True))
            for name in sorted(filenames):
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if not _is_reg(st):
                    continue
                entries.append((rel_dir + name, st, False))
        entries.sort(key=lambda e: e[0])
        self._scan_cache = entries
        return entries

    def files(self):
        return [(rel, st) for rel, st, is_dir in self.scan() if not is_dir]

    def abspath(self, rel):
        return os.path.join(self.datastore, rel)

    # ------------------------------------------------------------------
    # sessions

    def check_body(self, body, fields, spec):
        """400 ERR-API-0020 for fields ``spec`` does not have (strict)."""
        if not self.strict_fields or not isinstance(body, dict):
            return
        unknown = sorted(k for k in body if k not in fields)
        if unknown:
            raise ApiError(400, 'ERR-API-0020',
                           'Unknown field(s) for %s: %s'
                           % (spec, ', '.join(map(str, unknown))))

    def login(self, body, client_ip):
        try:
            return self._login(body, client_ip)
        except ApiError:
            self.failed_logins += 1
            raise

    def set_password(self, password):
        if not isinstance(password, str) or not password:
            raise ValueError('password must be a non-empty string')
        self.password = password

    def _login(self, body, client_ip):
        if not isinstance(body, dict):
            raise ApiError(400, 'ERR-API-0020',
                           'Login body must be a RestApiCredentials object')
        self.check_body(body, official.REST_API_CREDENTIALS,
                        'RestApiCredentials')
        if not body.get('typeId'):
            raise ApiError(400, 'ERR-API-0020',
                           "'typeId' is required in the login request")
        user = body.get('username')
        password = body.get('password')
        if not isinstance(user, str) or not isinstance(password, str):
            raise ApiError(400, 'ERR-API-0020',
                           'username and password are required')
        if user != self.username or password != self.password:
            raise ApiError(403, 'ERR-API-0124',
                           'Login failed: invalid user name or password')
        token = secrets.token_hex(16).upper()
        self.session_seq += 1
        now = time.time()
        self.sessions[token] = {
            'id': 'SESSION-%06d' % self.session_seq,
            'user': user,
            'client': client_ip,
            'login': now,
            'last': now,
            'version': body.get('fullApiVersion') or 'v310.1',
        }
        self.logins += 1
        return token

    def _session_ok(self, sess, now):
        return now - sess['last'] <= self.session_idle_timeout

    def authenticate(self, headers):
        """Return the session dict for the request or raise 401."""
        now = time.time()
        token = cookie_token(headers)
        if token is not None:
            sess = self.sessions.get(token)
            if sess is not None:
                if self._session_ok(sess, now):
                    sess['last'] = now
                    return sess
                del self.sessions[token]
        if self.accept_basic_auth and self._basic_ok(headers):
            return {'id': 'BASIC', 'user': self.username, 'client': '',
                    'login': now, 'last': now, 'version': 'v310.1'}
        raise ApiError(401, 'ERR-API-0104',
                       'The session is invalid or has expired; please log '
                       'in again')

    def _basic_ok(self, headers):
        auth = headers.get('Authorization') or ''
        if not auth.startswith('Basic '):
            return False
        try:
            raw = base64.b64decode(auth[6:]).decode('utf-8')
        except ValueError:
            return False
        user, _sep, password = raw.partition(':')
        return user == self.username and password == self.password

    def logout(self, headers):
        token = cookie_token(headers)
        if token is not None:
            self.sessions.pop(token, None)

    def active_sessions(self):
        now = time.time()
        for token in [t for t, s in self.sessions.items()
                      if not self._session_ok(s, now)]:
            del self.sessions[token]
        return len(self.sessions)

    def expire_sessions(self):
        self.sessions.clear()

    def session_view(self, sess):
        return {
            'typeId': TYPE_USER_SESSION,
            'id': sess['id'],
            'userName': sess['user'],
            'clientIp': sess['client'],
            'loginTime': format_datetime(int(sess['login'] * 1000)),
            'roles': ['ADMIN'],
        }

    # ------------------------------------------------------------------
    # appliance and datastore

    def info(self):
        return {
            'typeId': NS + '.domain.RestApi',
            'preferredVersion': PREFERRED_VERSION,
            'productName': 'Tintri VMstore',
            'supportedVersionSet': list(SUPPORTED_VERSIONS),
            'commonApiResponseProviderName': 'VMstore',
        }

    def appliance_info(self):
        return {
            'typeId': TYPE_APPLIANCE_INFO,
            'modelName': 'T7080',
            'osVersion': '5.6.0.1-15080.62871.25540',
            'serialNumber': self.serial,
            'isAllFlash': True,
            'currentCapacityGiB': self.capacity_gib,
            'expansionSupported': False,
            'isExpandable': False,
            'expansionHistory': [],
            'product': 'Tintri VMstore',
        }

    def appliance_ips(self):
        host = self.host
        cidr = host + ('/128' if ':' in host else '/24')
        return [{
            'typeId': TYPE_APPLIANCE_IP,
            'ip': host,
            'ipCidr': cidr,
            'netmask': '255.255.255.0' if ':' not in host else '',
            'serviceType': 'data',
            'networkBond': 'bond1',
            'vlanId': 0,
            'isNatted': False,
        }]

    def appliance(self):
        return {
            'typeId': TYPE_APPLIANCE,
            'uuid': {'uuid': self.appliance_uuid},
            'info': self.appliance_info(),
            'configIps': self.appliance_ips(),
            'components': [],
            'controllers': [{
                'locator': 'controller-a', 'state': 'ACTIVE',
                'role': 'ACTIVE', 'components': [], 'networkBonds': [],
            }],
            'disks': [],
            'maintenanceMode': {'isEnabled': False},
        }

    def check_appliance(self, ident, template=None):
        if ident in ('default', self.appliance_uuid):
            return
        code, status = '8001', 404
        if self.strict_endpoints and template:
            code, status = official.missing_entity('GET', template)
        raise ApiError(status, 'ERR-API-' + code,
                       'Appliance %s not found' % ident)

    def check_datastore(self, ident, template=None):
        if ident in ('default', self.datastore_uuid):
            return
        code, status = '2001', 501
        if self.strict_endpoints and template:
            # endpoints documenting none of 2001/0102/8001: the generic
            # 8001 (INFERRED)
            code, status = official.missing_entity('GET', template)
        if code == '2001':
            cause = "Datastore '%s' is not supported" % ident
        else:
            cause = "Datastore '%s' not found" % ident
        raise ApiError(status, 'ERR-API-' + code, cause)

    def file_dir_info(self, path):
        """FileSystemInfo of a datastore path (``{path}`` of fileDirInfo).

        ``path`` is relative to /tintri (a leading ``/`` or ``/tintri/`` is
        tolerated).  ``sizeInBytes`` is the apparent size (INFERRED).
        """
        try:
            rel = normalize_path(path)
        except ValueError:
            raise ApiError(404, 'ERR-API-8001',
                           'No file or directory %r under /tintri' % (path,))
        try:
            st = os.lstat(self.abspath(rel))
        except FileNotFoundError:
            raise ApiError(404, 'ERR-API-8001',
                           'No file or directory %s under /tintri' % rel)
        except NotADirectoryError:
            raise ApiError(404, 'ERR-API-8001',
                           'No file or directory %s under /tintri' % rel)
        except OSError as exc:
            raise ApiError(500, 'ERR-API-9700',
                           'Cannot read %s: %s' % (rel, exc.strerror))
        is_dir = (st.st_mode & 0o170000) == 0o040000
        return {
            'typeId': TYPE_FILE_SYSTEM_INFO,
            'isDir': is_dir,
            'path': rel,
            'sizeInBytes': st.st_size,
        }

    # DatastoreStat fields left out of every answer (an array generation
    # or configuration that does not report them); see
    # VMstoreSimulator.omit_stat_fields.
    omitted_stat_fields = frozenset()

    def datastore_stat(self):
        stat = self._datastore_stat()
        for name in self.omitted_stat_fields:
            stat.pop(name, None)
        return stat

    def _datastore_stat(self):
        live_alloc = live_size = 0
        nfiles = 0
        for _rel, st in self.files():
            live_alloc += storage.allocated_bytes(st)
            live_size += st.st_size
            nfiles += 1
        snap_alloc = 0
        for path in self.blobs:
            try:
                snap_alloc += storage.allocated_bytes(os.lstat(path))
            except OSError:
                pass
        total = self.capacity_gib
        used = (live_alloc + snap_alloc) / GIB
        provisioned = live_size / GIB
        remaining = max(0.0, total - used)
        ms = now_ms()
        return {
            'typeId': TYPE_DATASTORE_STAT,
            'spaceTotalGiB': total,
            'spaceUsedGiB': used,
            'spaceUsedPhysicalGiB': used,
            'spaceRemainingPhysicalGiB': remaining,
            'spaceProvisionedGiB': provisioned,
            'spaceProvisionedPercent': int(round(
                100.0 * provisioned / total)) if total else 0,
            'spaceUsedLiveGiB': live_alloc / GIB,
            'spaceUsedLivePhysicalGiB': live_alloc / GIB,
            'spaceUsedSnapshotsTintriGiB': snap_alloc / GIB,
            'spaceUsedSnapshotsTintriPhysicalGiB': snap_alloc / GIB,
            'spaceUsedSnapshotsHypervisorGiB': 0.0,
            'spaceUsedOtherGiB': 0.0,
            'spaceUsedMappedGiB': 0.0,
            'spaceRemainingDays': -1,
            'spaceSavingsFactor': 1.0,
            'dedupeFactor': 1.0,
            'compressionFactor': 1.0,
            'cloneDedupeFactor': 1.0,
            'performanceReserveUsed': 0.0,
            'performanceReserveRemaining': 100.0,
            'performanceReserveAutoAllocated': 0.0,
            'performanceReservePinned': 0.0,
            'flashHitPercent': 100.0,
            'operationsReadIops': 0,
            'operationsWriteIops': 0,
            'operationsTotalIops': 0,
            'normalizedTotalIops': 0,
            'throughputReadMBps': 0.0,
            'throughputWriteMBps': 0.0,
            'throughputTotalMBps': 0.0,
            'latencyTotalMs': 0.0,
            'latencyHostMs': 0.0,
            'latencyNetworkMs': 0.0,
            'latencyStorageMs': 0.0,
            'latencyDiskMs': 0.0,
            'latencyFlashMs': 0.0,
            'latencyContentionMs': 0.0,
            'latencyThrottleMs': 0.0,
            'vmsCount': nfiles,
            'disksCount': nfiles,
            'timeStart': format_datetime(ms - 10000),
            'timeEnd': format_datetime(ms),
        }

    def datastore_view(self):
        return {
            'typeId': TYPE_DATASTORE,
            'uuid': {'uuid': self.datastore_uuid},
            'displayName': 'default',
            'applianceUuid': {'uuid': self.appliance_uuid},
            'stat': self.datastore_stat(),
            'isDataFromAppliance': True,
            'vaaiThickSupportDisabled': False,
        }

    def stats_page(self, query):
        stat = self.datastore_stat()
        item = {
            'typeId': TYPE_STATS,
            'startTime': stat['timeStart'],
            'endTime': stat['timeEnd'],
            'numberOfSlices': 1,
            'sortedStats': [stat],
        }
        return self.paginate([item], query, total=1)

    # ------------------------------------------------------------------
    # VMs and virtual disks: one per regular file in the datastore

    def _vm_seq(self, rel):
        seq = self.vm_ids.get(rel)
        if seq is None:
            self.vm_seq += 1
            seq = self.vm_ids[rel] = self.vm_seq
        return seq

    def vm_uuid(self, rel):
        return '%s-VIM-%016X' % (self.fs_uuid, self._vm_seq(rel))

    def _visible_alias(self, rel):
        reg = self.registered.get(rel)
        if reg is None or time.time() < reg['visible_at']:
            return None
        return reg

    def _volume_id(self, rel):
        base = rel.rsplit('/', 1)[-1]
        if base.startswith('volume-') and len(base) > 7:
            return base[7:]
        return None

    def _entity(self, rel, st):
        seq = self._vm_seq(rel)
        base = rel.rsplit('/', 1)[-1]
        reg = self._visible_alias(rel)
        aliases = []
        if reg is not None:
            aliases = list(reg['ids'])
        elif not self.vd_requires_refresh:
            vol = self._volume_id(rel)
            if vol:
                aliases = [vol]
        vm_name = base
        if reg is not None and self.vm_name_style == 'volume_id' and aliases:
            vm_name = aliases[0]
        instance = aliases[0] if aliases else str(
            uuidlib.uuid5(uuidlib.NAMESPACE_URL,
                          'tintri-sim:%s:%s' % (self.fs_uuid, rel)))
        return {
            'rel': rel, 'st': st, 'seq': seq, 'base': base,
            'vm_uuid': '%s-VIM-%016X' % (self.fs_uuid, seq),
            'vd_uuid': '%s-VDK-%016X' % (self.fs_uuid, seq),
            'vm_name': vm_name, 'instance': instance, 'aliases': aliases,
        }

    def entities(self):
        """The VMs/virtual disks: every file, or (strict) the inventory."""
        if self.require_inventory:
            return [self._entity(rel, st) for rel, st in self._inventory()]
        return [self._entity(rel, st) for rel, st in self.files()]

    def _inventory(self):
        """(rel, stat) of inventoried files, by path; no datastore walk.

        A file is inventoried when a refresh named its path at least
        ``inventory_lag`` seconds ago and a regular file is there now.
        """
        out = []
        now = time.time()
        for rel in sorted(self.registered):
            if now < self.registered[rel]['visible_at']:
                continue
            try:
                st = os.lstat(self.abspath(rel))
            except OSError:
                continue
            if _is_reg(st):
                out.append((rel, st))
        return out

    def inventoried(self):
        return [rel for rel, _st in self._inventory()]

    def _inventoried_entity(self, rel):
        reg = self._visible_alias(rel)
        if reg is None:
            return None
        try:
            st = os.lstat(self.abspath(rel))
        except OSError:
            return None
        if not _is_reg(st):
            return None
        return self._entity(rel, st)

    def _space(self, st):
        return {
            'spaceUsedGiB': storage.allocated_bytes(st) / GIB,
            'spaceUsedLiveGiB': storage.allocated_bytes(st) / GIB,
            'spaceProvisionedGiB': st.st_size / GIB,
        }

    def is_live(self, rel):
        now = time.time()
        for key in (rel, '*'):
            until = self.not_live.get(key)
            if until is not None:
                if now < until:
                    return False
                del self.not_live[key]
        return True

    def set_live(self, path, live, seconds=None):
        """Make the VM of ``path`` (or '*': all) non-live for a while."""
        key = path if path == '*' else normalize_path(path)
        if live:
            self.not_live.pop(key, None)
        else:
            self.not_live[key] = (float('inf') if seconds is None
                                  else time.time() + float(seconds))

    def set_inventory_lag(self, seconds):
        """Seconds before a refreshed file is inventoried (from now on)."""
        seconds = float(seconds)
        if not seconds >= 0:
            raise ValueError('inventory lag must be >= 0')
        self.refresh_lag = seconds
        self.settings['inventory_lag'] = seconds

    def qos_view(self, rel):
        low, high = self.qos.get(rel, (0, 0))
        return {'typeId': TYPE_QOS, 'minNormalizedIops': low,
                'maxNormalizedIops': high,
                'effectiveMinNormalizedIops': low,
                'effectiveMaxNormalizedIops': high,
                'inheritanceEnabled': False}

    def vm_view(self, ent):
        snaps = [r['uuid'] for r in self.with_clones.values()
                 if r['vmUuid'] == ent['vm_uuid']]
        stat = {'typeId': NS + '.domain.beans.perf.VirtualMachineStat'}
        stat.update(self._space(ent['st']))
        return {
            'typeId': TYPE_VM,
            'uuid': {'uuid': ent['vm_uuid']},
            'isLive': self.is_live(ent['rel']),
            'isDeleted': False,
            'isTemplate': False,
            'vmware': {
                'name': ent['vm_name'],
                'vcenterName': 'openstack',
                'hypervisorType': 'OPENSTACK',
                'storageContainers': ['default'],
                'instanceUuids': [ent['instance']],
            },
            'qosConfig': self.qos_view(ent['rel']),
            'snapshot': {'snapshotIdsWithClone': snaps},
            'stat': {'sortedStats': [stat]},
            'path': ent['rel'],
        }

    def vdisk_view(self, ent):
        stat = {'typeId': NS + '.domain.beans.perf.VirtualDiskStat'}
        stat.update(self._space(ent['st']))
        return {
            'typeId': TYPE_VDISK,
            'uuid': {'uuid': ent['vd_uuid']},
            'vmUuid': {'uuid': ent['vm_uuid']},
            'vmName': ent['vm_name'],
            'name': 'scsi0:0',
            'displayName': ent['base'],
            'path': ent['rel'],
            'instanceUuid': ent['instance'],
            'datastoreUuid': {'uuid': self.datastore_uuid},
            'isDiskDrive': True,
            'isSynthetic': False,
            'isPinned': False,
            'isAutoAligned': True,
            'stat': stat,
        }

    def list_vms(self, query):
        ents = self.entities()
        total = len(ents)
        name = query.get('name')
        uuid = query.get('uuid')
        path = _norm_or_none(query.get('path'))
        inst = query.get('instanceUuid')
        live = (query.get('live') or 'BOTH').upper()
        if live not in ('TRUE', 'FALSE', 'BOTH'):
            raise ApiError(400, 'ERR-API-4003', 'live must be TRUE, FALSE '
                           'or BOTH')
        out = []
        for ent in ents:
            if name is not None and ent['vm_name'] != name:
                continue
            if uuid is not None and ent['vm_uuid'] != uuid:
                continue
            if path is not None and ent['rel'] != path:
                continue
            if inst is not None and ent['instance'] != inst:
                continue
            is_live = self.is_live(ent['rel'])
            if (live == 'FALSE' and is_live) or (live == 'TRUE'
                                                 and not is_live):
                continue
            out.append(ent)
        return self.paginate(out, query, total=total, view=self.vm_view)

    def get_vm(self, ident):
        for ent in self.entities():
            if ent['vm_uuid'] == ident:
                return self.vm_view(ent)
        raise ApiError(404, 'ERR-API-8001', 'VM %s not found' % ident)

    def set_vm_qos(self, ident, body):
        """PUT vm/{vmId}/qosConfig with a Request<VirtualMachineQoSConfig>.

        Errors (codes from the index; which condition gives which of
        3109/3112/3113 is INFERRED): 8001/404 no such VM; 3109 a malformed
        request or property; 3110 a non-live VM; 3112 minimum above a
        non-zero maximum; 3113 a value that is not an integer in
        [0, QOS_MAX].  Numbers may come as digit strings (REST-HTTP's
        example sends strings).
        """
        ent = None
        for cand in self.entities():
            if cand['vm_uuid'] == ident:
                ent = cand
                break
        if ent is None:
            raise ApiError(404, 'ERR-API-8001', 'VM %s not found' % ident)
        if not isinstance(body, dict):
            raise ApiError(400, 'ERR-API-3109', 'Body must be a Request')
        self.check_body(body, official.REQUEST, 'Request')
        objs = body.get('objectsWithNewValues')
        props = body.get('propertiesToBeUpdated')
        if isinstance(objs, dict):
            objs = [objs]
        if not isinstance(objs, list) or len(objs) != 1 or \
                not isinstance(objs[0], dict):
            raise ApiError(400, 'ERR-API-3109', 'objectsWithNewValues must '
                           'hold one VirtualMachineQoSConfig')
        self.check_body(objs[0], official.VIRTUAL_MACHINE_QOS_CONFIG,
                        'VirtualMachineQoSConfig')
        settable = ('minNormalizedIops', 'maxNormalizedIops')
        if not isinstance(props, list) or not props or any(
                p not in settable for p in props):
            raise ApiError(400, 'ERR-API-3109', 'propertiesToBeUpdated must '
                           'name minNormalizedIops and/or maxNormalizedIops')
        low, high = self.qos.get(ent['rel'], (0, 0))
        new = {'minNormalizedIops': low, 'maxNormalizedIops': high}
        for prop in props:
            value = objs[0].get(prop)
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value <= QOS_MAX:
                raise ApiError(400, 'ERR-API-3113', '%s must be an integer '
                               'from 0 to %d, not %r' % (prop, QOS_MAX,
                                                         value))
            new[prop] = value
        low, high = new['minNormalizedIops'], new['maxNormalizedIops']
        if high and low > high:
            raise ApiError(400, 'ERR-API-3112', 'minNormalizedIops %d is '
                           'above maxNormalizedIops %d' % (low, high))
        if not self.is_live(ent['rel']):
            raise ApiError(400, 'ERR-API-3110', 'VM %s is not live' % ident)
        if low or high:
            self.qos[ent['rel']] = (low, high)
        else:
            self.qos.pop(ent['rel'], None)
        self.qos_puts.append((ent['rel'], low, high))

    def list_vdisks(self, query):
        ents = self.entities()
        total = len(ents)
        uuid = query.get('uuid')
        vm_uuid = query.get('vmUuid')
        vm_name = query.get('vmName')
        name = query.get('name')
        display = query.get('displayName')
        path = _norm_or_none(query.get('path'))
        inst = query.get('instanceUuid')
        out = []
        for ent in ents:
            if uuid is not None and uuid != ent['vd_uuid'] and \
                    uuid not in ent['aliases']:
                continue
            if vm_uuid is not None and vm_uuid != ent['vm_uuid']:
                continue
            if vm_name is not None and vm_name != ent['vm_name']:
                continue
            if name is not None and name not in ('scsi0:0', ent['base']):
                continue
            if display is not None and display != ent['base']:
                continue
            if path is not None and path != ent['rel']:
                continue
            if inst is not None and inst != ent['instance']:
                continue
            out.append(ent)
        return self.paginate(out, query, total=total, view=self.vdisk_view)

    def host_refresh(self, body):
        if not isinstance(body, dict):
            raise ApiError(400, 'ERR-API-0020',
                           'Body must be an OpenStackHostRefreshSpec')
        self.check_body(body, official.OPENSTACK_HOST_REFRESH_SPEC,
                        'OpenStackHostRefreshSpec')
        path = body.get('volumeFilePath')
        try:
            rel = normalize_path(path)
        except ValueError:
            raise ApiError(400, 'ERR-API-0020',
                           'volumeFilePath is required')
        ids = []
        vol = body.get('volumeId')
        if isinstance(vol, str) and vol:
            ids.append(vol)
        derived = self._volume_id(rel)
        if derived and derived not in ids:
            ids.append(derived)
        visible_at = time.time() + self.refresh_lag
        old = self.registered.get(rel)
        if old is not None:
            # A second refresh does not delay the inventory of the first.
            visible_at = min(visible_at, old['visible_at'])
            ids = ids + [i for i in old['ids'] if i not in ids]
        self.registered[rel] = {
            'ids': ids,
            'visible_at': visible_at,
            'hostname': body.get('hostname'),
            'region': body.get('region'),
        }
        self.refreshes.append(rel)
        return {}

    # ------------------------------------------------------------------
    # snapshots

    def _new_snap_uuid(self):
        self.snap_seq += 1
        return '%s-SST-%016X' % (self.fs_uuid, self.snap_seq)

    def _new_blob(self):
        self.blob_seq += 1
        return os.path.join(self.snapdir, 'data-%08d' % self.blob_seq)

    def _blob_ref(self, path):
        self.blobs[path] = self.blobs.get(path, 0) + 1

    def _blob_unref(self, path):
        count = self.blobs.get(path, 0) - 1
        if count > 0:
            self.blobs[path] = count
            return
        self.blobs.pop(path, None)
        try:
            os.unlink(path)
        except OSError:
            pass

    def _record(self, snap_uuid, **kw):
        rec = {
            'uuid': snap_uuid,
            'vmUuid': None,
            'vmName': '',
            'description': '',
            'createTime': now_ms(),
            'expirationTime': -1,
            'type': 'CINDER_GENERATED_SNAPSHOT',
            'consistency': 'CRASH_CONSISTENT',
            'deletionPolicy': 'DELETE_ON_EXPIRATION',
            'creatorName': self.username,
            'instanceId': None,
            'file': None,
            'data': None,
            'source_name': None,
            'mode': 0o644,
            'size': 0,
            'sizeChangedMB': 0.0,
            'clones': {},
            'had_clones': False,
            'isDeleted': False,
            'timeDeleted': None,
        }
        rec.update(kw)
        return rec

    def _count_live(self, vm_uuid, delta):
        count = self.live_by_vm.get(vm_uuid, 0) + delta
        if count > 0:
            self.live_by_vm[vm_uuid] = count
        else:
            self.live_by_vm.pop(vm_uuid, None)

    def _check_limit(self, vm_uuid, vm_name):
        limit = self.snapshot_limit
        if limit and self.live_by_vm.get(vm_uuid, 0) >= limit:
            raise ApiError(
                400, 'ERR-API-3105',
                'VM %s (%s) already holds %d snapshots: a VM can hold at '
                'most %d (delete some first)'
                % (vm_uuid, vm_name, self.live_by_vm[vm_uuid], limit))

    def _inventory_refusal(self, rel, vm_uuid, why):
        return ApiError(
            404, 'ERR-API-8001',
            'File %s is not in the inventory%s: %s. Send '
            'cinder/host/refresh naming it, wait for the inventory, then '
            'use the vmUuid that virtualDisk reports for it'
            % (rel, ' under VM %s' % vm_uuid if vm_uuid else '', why))

    def create_snapshot(self, body, sess):
        if not isinstance(body, dict):
            raise ApiError(400, 'ERR-API-3105',
                           'Body must be a CinderSnapshotSpec object')
        self.check_body(body, official.CINDER_SNAPSHOT_SPEC,
                        'CinderSnapshotSpec')
        try:
            rel = normalize_path(body.get('file'))
        except ValueError:
            raise ApiError(400, 'ERR-API-3105',
                           "'file' must be a path relative to /tintri")
        policy = body.get('deletionPolicy') or 'DELETE_ON_EXPIRATION'
        if policy not in POLICIES:
            raise ApiError(400, 'ERR-API-3105',
                           'Unknown deletionPolicy %r' % (policy,))
        for key in ('vmName', 'vmTintriUuid', 'instanceId', 'description',
                    'snapshotCreator'):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise ApiError(400, 'ERR-API-3105',
                               "'%s' must be a string" % key)
        src = self.abspath(rel)
        base = rel.rsplit('/', 1)[-1]
        given_vm = body.get('vmTintriUuid')
        if self.require_inventory:
            ent = self._inventoried_entity(rel)
            if ent is None:
                raise self._inventory_refusal(
                    rel, given_vm, 'no cinder/host/refresh named it, the '
                    'inventory has not caught up yet, or no regular file '
                    'is there')
            if given_vm != ent['vm_uuid']:
                raise self._inventory_refusal(
                    rel, given_vm, 'vmTintriUuid must be the uuid of the '
                    "file's own VM")
            st = ent['st']
            vm_uuid, vm_name = ent['vm_uuid'], ent['vm_name']
        else:
            try:
                st = os.stat(src)
            except OSError:
                raise ApiError(404, 'ERR-API-8001',
                               'File %s does not exist on the datastore'
                               % rel)
            if not _is_reg(st):
                raise ApiError(400, 'ERR-API-3105',
                               'File %s is not a regular file' % rel)
            vm_uuid = given_vm or self.vm_uuid(rel)
            vm_name = body.get('vmName') or base
        self._check_limit(vm_uuid, vm_name)
        blob = self._new_blob()
        try:
            method = storage.copy_file(src, blob, self.use_reflink)
        except OSError as exc:
            raise ApiError(500, 'ERR-API-3106',
                           'Cannot snapshot %s: %s' % (rel, exc.strerror))
        self.copies[method] += 1
        self._blob_ref(blob)
        snap_uuid = self._new_snap_uuid()
        rec = self._record(
            snap_uuid,
            vmUuid=vm_uuid,
            vmName=vm_name,
            description=body.get('description') or '',
            deletionPolicy=policy,
            creatorName=body.get('snapshotCreator') or sess['user'],
            instanceId=body.get('instanceId'),
            file=rel,
            data=blob,
            source_name=base,
            mode=st.st_mode & 0o7777,
            size=st.st_size,
            sizeChangedMB=round(storage.allocated_bytes(st) / MIB, 3),
        )
        self.snapshots[snap_uuid] = rec
        self._count_live(vm_uuid, 1)
        return [snap_uuid]

    def seed_snapshots(self, n, file=None, vm_name='seed',
                       description_prefix='seed', **fields):
        allowed = ('vmUuid', 'vmName', 'description', 'createTime',
                   'expirationTime', 'type', 'consistency', 'deletionPolicy',
                   'creatorName', 'instanceId')
        bad = [k for k in fields if k not in allowed]
        if bad:
            raise ValueError('unknown snapshot fields: %s' % ', '.join(bad))
        n = int(n)
        if n < 0:
            raise ValueError('n must be >= 0')
        if 'deletionPolicy' in fields and \
                fields['deletionPolicy'] not in POLICIES:
            raise ValueError('bad deletionPolicy')
        blob = self._new_blob()
        if file is not None:
            rel = normalize_path(file)
            src = self.abspath(rel)
            st = os.stat(src)
            method = storage.copy_file(src, blob, self.use_reflink)
            self.copies[method] += 1
            vm_uuid = self.vm_uuid(rel)
            source_name = rel.rsplit('/', 1)[-1]
            mode, size = st.st_mode & 0o7777, st.st_size
        else:
            rel = None
            with open(blob, 'wb'):
                pass
            self.vm_seq += 1
            vm_uuid = '%s-VIM-%016X' % (self.fs_uuid, self.vm_seq)
            source_name = vm_name
            mode, size = 0o644, 0
        base_ms = now_ms() - n * 1000
        uuids = []
        for i in range(n):
            snap_uuid = self._new_snap_uuid()
            rec = self._record(
                snap_uuid, vmUuid=vm_uuid, vmName=vm_name,
                description='%s-%06d' % (description_prefix, i),
                createTime=base_ms + (i + 1) * 1000, file=rel, data=blob,
                source_name=source_name, mode=mode, size=size,
                creatorName='seed')
            rec.update(fields)
            self.snapshots[snap_uuid] = rec
            self._count_live(rec['vmUuid'], 1)
            self.blobs[blob] = self.blobs.get(blob, 0) + 1
            uuids.append(snap_uuid)
        if not uuids:
            os.unlink(blob)
        return uuids

    def refresh_clone_refs(self):
        """Recount clone references; auto-delete zero-ref snapshots.

        A clone reference is the (st_dev, st_ino) of a file a clone
        created, so it survives renames (the drivers move the clone out of
        its directory).  Once an inode is seen gone it is forgotten, so a
        later file reusing the inode number is never counted.
        """
        if not self.with_clones:
            return
        present = {}
        for rel, st in self.files():
            present.setdefault((st.st_dev, st.st_ino), rel)
        for rec in list(self.with_clones.values()):
            alive = {}
            for key, tagged in rec['clones'].items():
                rel = present.get(key)
                if rel is None:
                    continue
                if tagged and not storage.tag_matches(self.abspath(rel),
                                                      rec['uuid']):
                    continue
                alive[key] = tagged
            rec['clones'] = alive
            if not alive:
                del self.with_clones[rec['uuid']]
                if rec['isDeleted'] or (rec['deletionPolicy'] == ZERO_REFS
                                        and rec['had_clones']):
                    self._remove_snapshot(rec)

    def _remove_snapshot(self, rec):
        if self.snapshots.pop(rec['uuid'], None) is not None:
            if rec['isDeleted']:
                self.deleted_kept -= 1
            else:
                self._count_live(rec['vmUuid'], -1)
        self.with_clones.pop(rec['uuid'], None)
        if rec['data']:
            self._blob_unref(rec['data'])

    def _mark_deleted(self, rec):
        """Deleted but kept while clones refer to it (INFERRED)."""
        rec['isDeleted'] = True
        rec['timeDeleted'] = now_ms()
        self.deleted_kept += 1
        self._count_live(rec['vmUuid'], -1)

    def snapshot_view(self, rec, full=False):
        """The Snapshot DTO; ``full`` adds the simulator's ``file``."""
        view = {
            'typeId': TYPE_SNAPSHOT,
            'uuid': {'uuid': rec['uuid']},
            'vmUuid': {'uuid': rec['vmUuid']},
            'vmName': rec['vmName'],
            'description': rec['description'],
            'createTime': rec['createTime'],
            'expirationTime': rec['expirationTime'],
            'type': rec['type'],
            'consistency': rec['consistency'],
            'deletionPolicy': rec['deletionPolicy'],
            'cloneReferenceCount': len(rec['clones']),
            'isDeleted': rec['isDeleted'],
            'isOrphaned': False,
            'isReplica': False,
            'sizeChangedMB': rec['sizeChangedMB'],
            'sizeChangedPhysicalMB': rec['sizeChangedMB'],
            'creatorName': rec['creatorName'],
            'instanceId': rec['instanceId'],
            'hypervisorType': 'OPENSTACK',
        }
        if rec['isDeleted']:
            view['timeDeleted'] = rec['timeDeleted']
        if full or not self.strict_fields:
            view['file'] = rec['file']
        return view

    def list_snapshots(self, query):
        recs = list(self.snapshots.values())
        absolute = len(recs)
        total = absolute - self.deleted_kept
        vm_uuid = query.get('vmUuid')
        snap_uuid = query.get('uuid')
        contain = query.get('contain')
        contain = contain.lower() if contain else None
        types = set(t.upper() for t in query.multi('type'))
        consistencies = set(c.upper() for c in query.multi('consistency'))
        instance = query.get('instanceId')
        has_clone = (query.get('hasClone') or 'Both').lower()
        has_clone = {'true': 'yes', 'false': 'no'}.get(has_clone, has_clone)
        if has_clone not in ('yes', 'no', 'both'):
            raise ApiError(400, 'ERR-API-4003',
                           'hasClone must be Yes, No or Both')
        deleted = (query.get('deleted') or 'FALSE').upper()
        if deleted not in ('TRUE', 'FALSE', 'BOTH'):
            raise ApiError(400, 'ERR-API-4003',
                           'deleted must be TRUE, FALSE or BOTH')
        since = self._date(query, 'since', 'fromDate')
        until = self._date(query, 'until', 'toDate')
        out = []
        for rec in recs:
            if deleted == 'FALSE' and rec['isDeleted']:
                continue
            if deleted == 'TRUE' and not rec['isDeleted']:
                continue
            if vm_uuid is not None and rec['vmUuid'] != vm_uuid:
                continue
            if snap_uuid is not None and rec['uuid'] != snap_uuid:
                continue
            if contain is not None and \
                    contain not in (rec['description'] or '').lower() and \
                    contain not in (rec['vmName'] or '').lower():
                continue
            if types and rec['type'] not in types:
                continue
            if consistencies and rec['consistency'] not in consistencies:
                continue
            if instance is not None and rec['instanceId'] != instance:
                continue
            if has_clone == 'yes' and not rec['clones']:
                continue
            if has_clone == 'no' and rec['clones']:
                continue
            if since is not None and rec['createTime'] < since:
                continue
            if until is not None and rec['createTime'] > until:
                continue
            out.append(rec)
        return self.paginate(out, query, total=total,
                             view=self.snapshot_view,
                             sort_key=self._snap_sort_key(query),
                             absolute=absolute)

    def _snap_sort_key(self, query):
        field = query.get('sortedBy')
        if not field:
            return None
        if field == 'cloneReferenceCount':
            return lambda rec: len(rec['clones'])
        if field in ('createTime', 'expirationTime', 'description',
                     'vmName', 'uuid', 'type', 'consistency',
                     'deletionPolicy', 'sizeChangedMB', 'creatorName'):
            def key(rec):
                value = rec[field]
                return (value is None, value if value is not None else 0)
            return key
        raise ApiError(400, 'ERR-API-4003',
                       'Cannot sort snapshots by %s' % field)

    def _date(self, query, *keys):
        for key in keys:
            value = query.get(key)
            if value:
                try:
                    return parse_datetime(value)
                except ValueError:
                    raise ApiError(400, 'ERR-API-4003',
                                   'Invalid date for %s: %s' % (key, value))
        return None

    def _get_rec(self, snap_uuid, cause=None, deleted_ok=False):
        rec = self.snapshots.get(snap_uuid)
        if rec is None:
            raise ApiError(404, 'ERR-API-8001',
                           cause or 'Snapshot %s not found' % snap_uuid)
        if rec['isDeleted'] and not deleted_ok:
            raise ApiError(404, 'ERR-API-8001',
                           (cause or 'Snapshot %s not found' % snap_uuid)
                           + ' (it is deleted; kept until its clones go)')
        return rec

    def get_snapshot(self, snap_uuid):
        return self.snapshot_view(self._get_rec(snap_uuid, deleted_ok=True))

    def delete_snapshot(self, snap_uuid):
        rec = self._get_rec(
            snap_uuid, 'Failed to lookup snapshot %s: it does not exist'
            % snap_uuid)
        if rec['clones']:
            if self.delete_with_clones == 'accept':
                self._mark_deleted(rec)
                return 'Snapshot %s deleted.' % snap_uuid
            raise ApiError(
                500, 'ERR-API-3107',
                'Snapshot %s cannot be deleted: a live VM is still present '
                'that was cloned from it (%d clone references)'
                % (snap_uuid, len(rec['clones'])))
        self._remove_snapshot(rec)
        return 'Snapshot %s deleted.' % snap_uuid

    def update_snapshot(self, snap_uuid, body):
        rec = self._get_rec(snap_uuid)
        if not isinstance(body, dict):
            raise ApiError(400, 'ERR-API-0020', 'Body must be a Request')
        self.check_body(body, official.REQUEST, 'Request')
        objs = body.get('objectsWithNewValues')
        props = body.get('propertiesToBeUpdated')
        if isinstance(objs, dict):
            objs = [objs]
        if not isinstance(objs, list) or not objs or \
                not isinstance(objs[0], dict):
            raise ApiError(400, 'ERR-API-0020',
                           'objectsWithNewValues must hold one Snapshot')
        if not isinstance(props, list) or not props:
            raise ApiError(400, 'ERR-API-0020',
                           'propertiesToBeUpdated must be a non-empty list')
        self.check_body(objs[0], official.SNAPSHOT, 'Snapshot')
        unsupported = [p for p in props if p != 'deletionPolicy']
        if unsupported:
            raise ApiError(400, 'ERR-API-0020',
                           'Only deletionPolicy can be updated, not %s'
                           % ', '.join(map(str, unsupported)))
        policy = objs[0].get('deletionPolicy')
        if policy not in POLICIES:
            raise ApiError(400, 'ERR-API-0020',
                           'Unknown deletionPolicy %r' % (policy,))
        rec['deletionPolicy'] = policy
        if policy == ZERO_REFS and not rec['clones']:
            self._remove_snapshot(rec)

    # ------------------------------------------------------------------
    # clones

    def clone(self, body):
        if not isinstance(body, dict):
            raise ApiError(400, 'ERR-API-3205',
                           'Body must be a CinderCloneSpec object')
        self.check_body(body, official.CINDER_CLONE_SPEC, 'CinderCloneSpec')
        snap_uuid = body.get('tintriSnapshotUuid')
        if not isinstance(snap_uuid, str) or not snap_uuid:
            raise ApiError(400, 'ERR-API-3205',
                           'tintriSnapshotUuid is required')
        dests = body.get('destinationPaths')
        if isinstance(dests, str):
            dests = [dests]
        if not isinstance(dests, list) or not dests:
            raise ApiError(400, 'ERR-API-3205',
                           'destinationPaths must list at least one path')
        rels = []
        for dest in dests:
            try:
                rels.append(normalize_path(dest))
            except ValueError:
                raise ApiError(400, 'ERR-API-3205',
                               'Invalid destination path %r' % (dest,))
        if len(set(rels)) != len(rels):
            raise ApiError(400, 'ERR-API-3205',
                           'Duplicate destination paths')
        rec = self.snapshots.get(snap_uuid)
        if rec is None:
            raise ApiError(404, 'ERR-API-3214',
                           'Snapshot %s does not exist' % snap_uuid)
        if rec['isDeleted']:
            raise ApiError(404, 'ERR-API-3214',
                           'Snapshot %s is deleted' % snap_uuid)
        for rel in rels:
            if os.path.lexists(self.abspath(rel)):
                # 409 "object already exists" (REST-HTTP); the index
                # documents only 400 for ERR-API-3205.
                raise ApiError(400 if self.strict_endpoints else 409,
                               'ERR-API-3205',
                               'Destination %s already exists' % rel)
        made = []
        try:
            for rel in rels:
                dest_dir = self.abspath(rel)
                os.makedirs(dest_dir)
                made.append(dest_dir)
                target = os.path.join(dest_dir, rec['source_name'])
                method = storage.copy_file(rec['data'], target,
                                           self.use_reflink)
                self.copies[method] += 1
                os.chmod(target, rec['mode'])
                tagged = storage.tag(target, rec['uuid'])
                st = os.stat(target)
                rec['clones'][(st.st_dev, st.st_ino)] = tagged
        except OSError as exc:
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
            raise ApiError(500, 'ERR-API-3206',
                           'Clone failed: %s' % exc.strerror)
        finally:
            self.invalidate()
        rec['had_clones'] = True
        self.with_clones[rec['uuid']] = rec
        return {}

    # ------------------------------------------------------------------
    # paging

    def paginate(self, items, query, total, view=None, sort_key=None,
                 absolute=None):
        limit = query.int('limit', 1)
        limit = min(limit or self.page_size, self.page_size)
        offset = query.get('offset')
        page = query.int('page', 1)
        if offset not in (None, ''):
            offset = query.int('offset', 0)
        elif page:
            offset = (page - 1) * limit
        else:
            offset = 0
        order = (query.get('sortOrder') or 'ASC').upper()
        if order not in ('ASC', 'DESC'):
            raise ApiError(400, 'ERR-API-4003',
                           'sortOrder must be ASC or DESC')
        if sort_key is not None:
            items = sorted(items, key=sort_key, reverse=(order == 'DESC'))
        elif order == 'DESC':
            items = list(reversed(items))
        filtered = len(items)
        chunk = items[offset:offset + limit]
        if view is not None:
            chunk = [view(i) for i in chunk]
        body = {
            'typeId': TYPE_PAGE,
            'items': chunk,
            'filteredTotal': filtered,
            'total': total,
            'absoluteTotal': total if absolute is None else absolute,
            'limit': limit,
            'offset': offset,
            'page': offset // limit + 1,
            'pageTotal': int(math.ceil(filtered / float(limit))),
        }
        echo = [(k, v) for k, v in query.pairs
                if k not in ('offset', 'limit', 'page')]
        if offset + limit < filtered:
            body['next'] = parse.urlencode(
                [('offset', offset + limit), ('limit', limit)] + echo)
        if offset > 0:
            body['prev'] = parse.urlencode(
                [('offset', max(0, offset - limit)), ('limit', limit)]
                + echo)
        return body

    # ------------------------------------------------------------------
    # inventory (control surface)

    def inventory(self):
        self.invalidate()
        self.refresh_clone_refs()
        files = []
        for rel, _st, is_dir in self.scan():
            files.append(rel + '/' if is_dir else rel)
        return {
            'profile': self.profile,
            'files': sorted(files),
            'snapshots': [self.snapshot_view(r, full=True)
                          for r in self.snapshots.values()],
            'sessions': self.active_sessions(),
            'logins': self.logins,
            'failed_logins': self.failed_logins,
            'copies': dict(self.copies),
            'refreshed': sorted(self.registered),
            'inventoried': self.inventoried(),
            'qos': {rel: {'min': v[0], 'max': v[1]}
                    for rel, v in sorted(self.qos.items())},
            'qos_puts': [list(p) for p in self.qos_puts],
            'not_live': sorted(self.not_live),
        }


def _is_reg(st):
    return (st.st_mode & 0o170000) == 0o100000


def _norm_or_none(value):
    if value is None:
        return None
    try:
        return normalize_path(value)
    except ValueError:
        return value


def cookie_token(headers):
    """JSESSIONID from the Cookie header(s), or None."""
    values = headers.get_all('Cookie') if hasattr(headers, 'get_all') \
        else [headers.get('Cookie')]
    for value in values or []:
        if not value:
            continue
        for part in value.split(';'):
            name, sep, val = part.strip().partition('=')
            if sep and name.strip() == 'JSESSIONID':
                return val.strip().strip('"')
    return None


def dumps(body):
    return json.dumps(body, separators=(',', ':')).encode('utf-8')
