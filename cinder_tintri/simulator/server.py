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
"""HTTP(S) front end of the VMstore simulator and its Python control API.

Usage::

    from cinder_tintri.simulator import VMstoreSimulator

    with VMstoreSimulator() as sim:
        requests.post(sim.url + '/api/v310/session/login', ...,
                      verify=sim.ca_path)

The server is a ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive;
TLS handshakes happen in the per-connection thread.  All simulator state
lives in :class:`~cinder_tintri.simulator.state.SimState` under one lock,
which is never held while sleeping for injected latency or delays.
"""

import contextlib
from http import server as http_server
import json
import logging
import os
import re
import shutil
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from urllib import parse

from cinder_tintri.simulator import official
from cinder_tintri.simulator import profiles
from cinder_tintri.simulator import replication
from cinder_tintri.simulator import state as sim_state
from cinder_tintri.simulator import tls

LOG = logging.getLogger(__name__)

API = sim_state.API
MAX_BODY = 16 * 1024 * 1024
FAULT_MODES = ('error', 'drop', 'lose_response', 'delay')


def _route(template, handlers, auth=True):
    pattern = re.escape(template)
    pattern = pattern.replace(re.escape('{uuid}'), '(?P<uuid>[^/]+)')
    pattern = pattern.replace(re.escape('{id}'), '(?P<id>[^/]+)')
    # fileDirInfo: a path relative to /tintri, '/' encoded or not
    pattern = pattern.replace(re.escape('{path}'), '(?P<path>.+)')
    return (template, re.compile('^' + pattern + '$'), handlers, auth)


def official_template(template):
    """A route template as the official index writes it (``/v310/...``)."""
    if template.startswith(API + '/'):
        return template[len('/api'):]
    return template


def _h_info(st, ctx):
    return sim_state.Reply(200, st.info())


def _h_login(st, ctx):
    token = st.login(ctx['json'], ctx['client'])
    cookie = 'JSESSIONID=%s; Path=/; HttpOnly' % token
    if ctx['tls']:
        cookie += '; Secure'
    return sim_state.Reply(200, 'ADMIN', [('Set-Cookie', cookie)])


def _h_logout(st, ctx):
    st.logout(ctx['headers'])
    return sim_state.Reply(204)


def _h_session_current(st, ctx):
    return sim_state.Reply(200, st.session_view(ctx['session']))


def _h_session_active(st, ctx):
    st.active_sessions()
    return sim_state.Reply(200, [st.session_view(s)
                                 for s in st.sessions.values()])


def _h_appliances(st, ctx):
    return sim_state.Reply(200, [st.appliance()])


def _h_appliance(st, ctx):
    st.check_appliance(ctx['params']['id'], ctx['template'])
    return sim_state.Reply(200, [st.appliance()])


def _h_appliance_info(st, ctx):
    st.check_appliance(ctx['params']['id'], ctx['template'])
    return sim_state.Reply(200, st.appliance_info())


def _h_appliance_ips(st, ctx):
    st.check_appliance(ctx['params']['id'], ctx['template'])
    return sim_state.Reply(200, st.appliance_ips())


def _h_file_dir_info(st, ctx):
    st.check_appliance(ctx['params']['id'], ctx['template'])
    return sim_state.Reply(200, st.file_dir_info(ctx['params']['path']))


def _h_datastores(st, ctx):
    return sim_state.Reply(200, [st.datastore_view()])


def _h_datastore(st, ctx):
    st.check_datastore(ctx['params']['id'], ctx['template'])
    return sim_state.Reply(200, st.datastore_view())


def _h_stats_realtime(st, ctx):
    st.check_datastore(ctx['params']['id'], ctx['template'])
    return sim_state.Reply(200, st.stats_page(ctx['query']))


def _h_stats_summary(st, ctx):
    st.check_datastore(ctx['params']['id'], ctx['template'])
    return sim_state.Reply(200, st.datastore_stat())


def _h_vms(st, ctx):
    return sim_state.Reply(200, st.list_vms(ctx['query']))


def _h_vm(st, ctx):
    return sim_state.Reply(200, st.get_vm(ctx['params']['uuid']))


def _h_vm_qos(st, ctx):
    st.set_vm_qos(ctx['params']['uuid'], ctx['json'])
    return sim_state.Reply(204)


def _h_vdisks(st, ctx):
    return sim_state.Reply(200, st.list_vdisks(ctx['query']))


def _h_snapshots(st, ctx):
    st.refresh_clone_refs()
    return sim_state.Reply(200, st.list_snapshots(ctx['query']))


def _h_snapshot_get(st, ctx):
    st.refresh_clone_refs()
    return sim_state.Reply(200, st.get_snapshot(ctx['params']['uuid']))


def _h_snapshot_delete(st, ctx):
    st.refresh_clone_refs()
    return sim_state.Reply(200, st.delete_snapshot(ctx['params']['uuid']))


def _h_snapshot_put(st, ctx):
    st.refresh_clone_refs()
    st.update_snapshot(ctx['params']['uuid'], ctx['json'])
    return sim_state.Reply(204)


def _h_cinder_snapshot(st, ctx):
    st.refresh_clone_refs()
    return sim_state.Reply(200, st.create_snapshot(ctx['json'],
                                                   ctx['session']))


def _h_cinder_clone(st, ctx):
    st.refresh_clone_refs()
    return sim_state.Reply(200, st.clone(ctx['json']))


def _h_host_refresh(st, ctx):
    st.refresh_clone_refs()
    return sim_state.Reply(200, st.host_refresh(ctx['json']))


def _h_replication_paths(st, ctx):
    return sim_state.Reply(200, st.replication.list_paths(
        ctx['params']['id'], ctx['template']))


def _h_vm_clone(st, ctx):
    st.refresh_clone_refs()
    return sim_state.Reply(200, st.replication.start_copy(ctx['json']))


def _h_task_get(st, ctx):
    return sim_state.Reply(200, st.replication.get_task(
        ctx['params']['id']))


def _h_task_delete(st, ctx):
    st.replication.cancel_task(ctx['params']['id'])
    return sim_state.Reply(204)


ROUTES = [
    _route('/api/info', {'GET': _h_info}, auth=False),
    _route(API + '/session/login', {'POST': _h_login}, auth=False),
    _route(API + '/session/logout', {'POST': _h_logout, 'GET': _h_logout},
           auth=False),
    _route(API + '/session/current', {'GET': _h_session_current}),
    _route(API + '/session/active', {'GET': _h_session_active}),
    _route(API + '/appliance', {'GET': _h_appliances}),
    _route(API + '/appliance/{id}', {'GET': _h_appliance}),
    _route(API + '/appliance/{id}/info', {'GET': _h_appliance_info}),
    _route(API + '/appliance/{id}/ips', {'GET': _h_appliance_ips}),
    _route(API + '/appliance/{id}/fileDirInfo/{path}',
           {'GET': _h_file_dir_info}),
    _route(API + '/datastore', {'GET': _h_datastores}),
    _route(API + '/datastore/{id}', {'GET': _h_datastore}),
    _route(API + '/datastore/{id}/statsRealtime',
           {'GET': _h_stats_realtime}),
    _route(API + '/datastore/{id}/statsSummary', {'GET': _h_stats_summary}),
    _route(API + '/datastore/{id}/replicationPath',
           {'GET': _h_replication_paths}),
    _route(API + '/vm', {'GET': _h_vms, 'POST': _h_vm_clone}),
    _route(API + '/task/{id}', {'GET': _h_task_get,
                                'DELETE': _h_task_delete}),
    _route(API + '/vm/{uuid}', {'GET': _h_vm}),
    _route(API + '/vm/{uuid}/qosConfig', {'PUT': _h_vm_qos}),
    _route(API + '/virtualDisk', {'GET': _h_vdisks}),
    _route(API + '/snapshot', {'GET': _h_snapshots}),
    _route(API + '/snapshot/{uuid}', {'GET': _h_snapshot_get,
                                      'DELETE': _h_snapshot_delete,
                                      'PUT': _h_snapshot_put}),
    _route(API + '/cinder/snapshot', {'POST': _h_cinder_snapshot}),
    _route(API + '/cinder/clone', {'POST': _h_cinder_clone}),
    _route(API + '/cinder/host/refresh', {'POST': _h_host_refresh}),
]


def match_route(path):
    """(template, handlers, auth, params) for a path, or None."""
    for template, regex, handlers, auth in ROUTES:
        m = regex.match(path)
        if m:
            params = {k: parse.unquote(v) for k, v in m.groupdict().items()}
            return template, handlers, auth, params
    return None


class _Drop(Exception):
    """Close the connection without writing a response."""


class Handler(http_server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'VMstoreSimulator/1.0'
    sys_version = ''
    timeout = 300  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        # The request line holds method and path only; never headers
        # (cookies) or bodies (passwords).
        LOG.debug('%s %s', self.address_string(), fmt % args)

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    # ------------------------------------------------------------------

    def _read_body(self):
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                length = int(line.split(b';')[0].strip() or b'0', 16)
                if length == 0:
                    while self.rfile.readline(65537) not in (b'\r\n', b'\n',
                                                             b''):
                        pass
                    break
                size += length
                if size > MAX_BODY:
                    raise sim_state.ApiError(413, 'ERR-API-0020',
                                             'Request body too large')
                chunks.append(self.rfile.read(length))
                self.rfile.readline(65537)
            return b''.join(chunks)
        length = self.headers.get('Content-Length')
        if not length:
            return b''
        try:
            length = int(length)
        except ValueError:
            raise sim_state.ApiError(400, 'ERR-API-0020',
                                     'Bad Content-Length')
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise sim_state.ApiError(413, 'ERR-API-0020',
                                     'Request body too large')
        return self.rfile.read(length)

    def _send(self, reply):
        body = b''
        if reply.body is not None and reply.status != 204 \
                and self.command != 'HEAD':
            body = sim_state.dumps(reply.body)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status != 204:
            if reply.body is not None:
                self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
        if self.close_connection:
            self.send_header('Connection', 'close')
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def _drop(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self):
        sim = self.server.sim
        url = parse.urlsplit(self.path)
        path = url.path
        if len(path) > 1 and path.endswith('/'):
            path = path.rstrip('/') or '/'
        try:
            raw = self._read_body()
        except sim_state.ApiError as exc:
            self._send(sim_state.error_reply(exc))
            return
        except (ValueError, OSError):
            self._drop()
            return
        try:
            if path == '/sim' or path.startswith('/sim/'):
                reply = sim._control(self.command, path, raw)
                self._send(reply)
                return
            with sim._handling():
                self._api(sim, path, url.query, raw)
        except _Drop:
            self._drop()
        except (BrokenPipeError, ConnectionError, ssl.SSLError,
                socket.timeout):
            self.close_connection = True

    def _api(self, sim, path, query, raw):
        found = match_route(path)
        if found:
            template, handlers, auth, params = found
            key = '%s %s' % (self.command, template)
        else:
            template = handlers = params = None
            auth = False
            key = '%s %s' % (self.command, path)
        is_api = path == '/api' or path.startswith('/api/')
        fault, latency = sim._account(key, is_api)
        if latency and not sim._sleep(latency):
            raise _Drop()
        lose = False
        if fault is not None:
            mode = fault['mode']
            if mode == 'drop':
                raise _Drop()
            if mode == 'error':
                err = sim_state.ApiError(fault['status'], fault['code'],
                                         fault['cause'], fault['message'])
                self._send(sim_state.error_reply(err))
                return
            if mode == 'delay' and not sim._sleep(fault['delay']):
                raise _Drop()
            lose = mode == 'lose_response'
        t0 = time.monotonic()
        try:
            reply = self._handle(sim, handlers, auth, params, query, raw,
                                 template)
            if lose:
                raise _Drop()
            self._send(reply)
        finally:
            sim._add_busy(time.monotonic() - t0)

    def _handle(self, sim, handlers, auth, params, query, raw,
                template=None):
        st = sim._state
        if handlers is None:
            return sim_state.error_reply(sim_state.ApiError(
                404, 'ERR-API-8001',
                'No resource at %s' % parse.urlsplit(self.path).path))
        otemplate = official_template(template)
        put_snapshot = st.delete_with_clones == 'refuse_put'
        handler = handlers.get(self.command)
        if handler is _h_snapshot_put and not put_snapshot:
            handler = None
        if st.strict_endpoints and not official.allowed(
                self.command, otemplate, put_snapshot=put_snapshot):
            handler = None
            served = []
        else:
            served = [m for m, h in handlers.items()
                      if h is not _h_snapshot_put or put_snapshot]
        if handler is None:
            if st.strict_endpoints:
                # The array answers like an unknown resource (INFERRED).
                return sim_state.error_reply(sim_state.ApiError(
                    404, 'ERR-API-8001', 'No resource at %s %s' % (
                        self.command, parse.urlsplit(self.path).path)))
            return sim_state.Reply(405, sim_state.ApiError(
                405, 'ERR-API-0005', 'Method %s is not supported here'
                % self.command).body(),
                [('Allow', ', '.join(sorted(served)))])
        ctx = {
            'params': params,
            'template': otemplate,
            'query': sim_state.Query(query),
            'headers': self.headers,
            'client': self.client_address[0],
            'tls': sim.tls,
            'json': None,
            'session': None,
        }
        try:
            with st.lock:
                st.invalidate()
                if auth:
                    ctx['session'] = st.authenticate(self.headers)
                if st.strict_fields:
                    self._check_query(ctx['query'], otemplate)
                if raw:
                    try:
                        ctx['json'] = json.loads(raw.decode('utf-8'))
                    except ValueError:
                        raise sim_state.ApiError(400, 'ERR-API-0020',
                                                 'Request body is not JSON')
                return handler(st, ctx)
        except sim_state.ApiError as exc:
            return sim_state.error_reply(exc)
        except Exception as exc:  # a simulator bug: report, keep serving
            LOG.exception('Simulator error handling %s %s',
                          self.command, parse.urlsplit(self.path).path)
            return sim_state.error_reply(sim_state.ApiError(
                500, 'ERR-API-0007', '%s: %s' % (type(exc).__name__, exc)))

    def _check_query(self, query, otemplate):
        """400 ERR-API-4003 for parameters outside the FilterSpec."""
        spec, fields = official.query_spec(self.command, otemplate)
        if fields is None:
            return
        unknown = sorted(k for k in query.values if k not in fields)
        if unknown:
            raise sim_state.ApiError(
                400, 'ERR-API-4003', 'Invalid query parameter(s) for %s: %s'
                % (spec, ', '.join(unknown)))


class _Server(http_server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, sim, ssl_context, family):
        self.address_family = family
        self.sim = sim
        self.ssl_context = ssl_context
        self.connections = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Not HTTPServer.server_bind: it resolves the host name (getfqdn),
        # which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    def finish_request(self, request, client_address):
        conn = request
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                conn = self.ssl_context.wrap_socket(request, server_side=True)
                conn.settimeout(None)
            except (ssl.SSLError, OSError) as exc:
                LOG.debug('TLS handshake with %s failed: %s',
                          client_address[0], exc)
                try:
                    request.close()
                except OSError:
                    pass
                return
        with self.conn_lock:
            self.connections.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self.conn_lock:
                self.connections.discard(conn)
            if conn is not request:
                try:
                    conn.close()
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        LOG.debug('Connection from %s ended with an error',
                  client_address[0], exc_info=True)

    def close_connections(self):
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class VMstoreSimulator(object):
    """A simulated Tintri VMstore serving REST API v310.

    See ``doc/source/contributor/simulator.rst`` for the behaviour.
    Extra keyword arguments beyond the documented contract:

    ``use_reflink``
        Use FICLONE reflinks when the filesystem supports them (default);
        False forces the sparse copy.
    ``vd_requires_refresh``
        A ``volume-<id>`` file is found by ``virtualDisk?uuid=<id>`` only
        after a ``cinder/host/refresh`` named it (default True).
    ``refresh_lag``
        Seconds between a refresh and the file becoming findable by id.
    ``vm_name_style``
        ``'file'`` (default): ``vmName`` is the file base name;
        ``'volume_id'``: refreshed files report the Cinder volume id.
    ``accept_basic_auth``
        Treat HTTP basic credentials as a session (default False).

    Profiles (``profile='vmstore4'``, the default, or ``'vmstore6'``) set
    the defaults of the switches ``strict_endpoints``, ``strict_fields``,
    ``require_inventory``, ``inventory_lag``, ``snapshot_limit`` (0: no
    limit) and ``delete_with_clones`` (``'accept'``, ``'refuse_put'``,
    ``'refuse'``); ``None`` keeps the profile's default.  All are
    read-only attributes.  ``refresh_lag`` is the old name of
    ``inventory_lag``.
    """

    def __init__(self, root=None, host='127.0.0.1', port=0, tls=True,
                 username='admin', password='tintri', page_size=2000,
                 session_idle_timeout=1800.0, capacity_gib=1024.0,
                 use_reflink=True, vd_requires_refresh=True,
                 refresh_lag=None, vm_name_style='file',
                 accept_basic_auth=False, profile='vmstore4',
                 strict_endpoints=None, strict_fields=None,
                 require_inventory=None, inventory_lag=None,
                 snapshot_limit=None, delete_with_clones=None):
        if int(page_size) < 1:
            raise ValueError('page_size must be >= 1')
        if refresh_lag is not None:
            if inventory_lag is not None and \
                    float(inventory_lag) != float(refresh_lag):
                raise ValueError('refresh_lag is the old name of '
                                 'inventory_lag; give only one')
            inventory_lag = refresh_lag
        self._settings = profiles.resolve(
            profile, strict_endpoints=strict_endpoints,
            strict_fields=strict_fields,
            require_inventory=require_inventory,
            inventory_lag=inventory_lag, snapshot_limit=snapshot_limit,
            delete_with_clones=delete_with_clones)
        if self._settings['require_inventory'] and not vd_requires_refresh:
            raise ValueError('vd_requires_refresh=False contradicts '
                             'require_inventory')
        self._root_arg = root
        self.host = host
        self._port_arg = int(port)
        self.tls = bool(tls)
        self.username = username
        self.password = password
        self.page_size = int(page_size)
        self.session_idle_timeout = float(session_idle_timeout)
        self.capacity_gib = float(capacity_gib)
        if vm_name_style not in ('file', 'volume_id'):
            raise ValueError('vm_name_style must be file or volume_id')
        self._options = dict(use_reflink=use_reflink,
                             vd_requires_refresh=vd_requires_refresh,
                             vm_name_style=vm_name_style,
                             accept_basic_auth=accept_basic_auth,
                             settings=self._settings)
        self.root = None
        self.datastore = None
        self.ca_path = None
        self.cert_path = None
        self.key_path = None
        self.port = None
        self.url = None
        self._state = None
        self._server = None
        self._thread = None
        self._tmp_root = False
        self._ctl_lock = threading.Lock()
        # API requests being handled (including injected delays).
        self._in_flight = 0
        self._busy = 0.0
        self._idle = threading.Condition(self._ctl_lock)
        self._stopping = threading.Event()
        self._counts = {}
        self._faults = []
        self._latency = 0.0

    # ------------------------------------------------------------------
    # life cycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self._server is not None:
            raise RuntimeError('simulator already started')
        self._stopping.clear()
        if self._root_arg is None:
            self.root = tempfile.mkdtemp(prefix='tintri-vmstore-sim-')
            self._tmp_root = True
        else:
            self.root = os.path.abspath(self._root_arg)
            os.makedirs(self.root, exist_ok=True)
            self._tmp_root = False
        try:
            self._state = sim_state.SimState(
                self.root, self.username, self.password, self.page_size,
                self.session_idle_timeout, self.capacity_gib,
                **self._options)
            self._state.host = self.host
            self._state.replication = replication.Replication(
                self._state, self._stopping)
            self.datastore = self._state.datastore
            context = None
            if self.tls:
                paths = tls.generate(os.path.join(self.root, '.tls'),
                                     hosts=[self.host])
                self.ca_path = paths['ca_path']
                self.cert_path = paths['cert_path']
                self.key_path = paths['key_path']
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(self.cert_path, self.key_path)
            family = socket.AF_INET6 if ':' in self.host else socket.AF_INET
            self._server = _Server((self.host, self._port_arg), self,
                                   context, family)
            self.port = self._server.server_address[1]
            host = '[%s]' % self.host if ':' in self.host else self.host
            self.url = '%s://%s:%d' % ('https' if self.tls else 'http',
                                       host, self.port)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={
                    'poll_interval': 0.1},
                name='vmstore-sim-%d' % self.port, daemon=True)
            self._thread.start()
        except BaseException:
            self._cleanup_root()
            raise
        LOG.info('VMstore simulator listening on %s', self.url)
        return self

    def stop(self, timeout=10.0):
        server = self._server
        if server is None:
            return
        self._server = None
        self._stopping.set()  # wakes handlers sleeping for latency/delay
        server.shutdown()
        server.server_close()
        server.close_connections()
        deadline = time.monotonic() + timeout
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None
        if self._state is not None:
            self._state.replication.join(
                max(0.0, deadline - time.monotonic()))
        self._cleanup_root()

    def _cleanup_root(self):
        if self._tmp_root and self.root:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self):
        return self._server is not None

    # the profile and its switches (read-only)

    @property
    def profile(self):
        return self._settings['profile']

    @property
    def strict_endpoints(self):
        return self._settings['strict_endpoints']

    @property
    def strict_fields(self):
        return self._settings['strict_fields']

    @property
    def require_inventory(self):
        return self._settings['require_inventory']

    @property
    def inventory_lag(self):
        return self._settings['inventory_lag']

    @property
    def snapshot_limit(self):
        return self._settings['snapshot_limit']

    @property
    def delete_with_clones(self):
        return self._settings['delete_with_clones']

    def settings(self):
        """The profile and every switch, as a dict."""
        return dict(self._settings)

    # ------------------------------------------------------------------
    # accounting and faults (called by the handler)

    def _sleep(self, seconds):
        """Sleep without any lock; False if the simulator is stopping."""
        return not self._stopping.wait(seconds)

    @contextlib.contextmanager
    def _handling(self):
        with self._ctl_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._ctl_lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout=10.0):
        """Wait until no API request is being handled; False on timeout.

        Late work (a delayed request the client gave up on) lands before
        its handler ends, so once idle nothing more arrives on its own.
        """
        deadline = time.monotonic() + timeout
        with self._ctl_lock:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _account(self, key, is_api):
        with self._ctl_lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            fault = None
            for f in self._faults:
                if f['count'] > 0 and f['endpoint'] in (key, '*'):
                    f['count'] -= 1
                    fault = dict(f)
                    break
            self._faults = [f for f in self._faults if f['count'] > 0]
            latency = self._latency if is_api else 0.0
        return fault, latency

    # ------------------------------------------------------------------
    # control API

    def request_counts(self):
        with self._ctl_lock:
            return dict(self._counts)

    def total_requests(self):
        with self._ctl_lock:
            return sum(self._counts.values())

    def reset_counts(self):
        with self._ctl_lock:
            self._counts = {}
            self._busy = 0.0

    def _add_busy(self, seconds):
        with self._ctl_lock:
            self._busy += seconds

    def busy_seconds(self):
        """Seconds spent handling API requests since reset_counts().

        The simulator's own work (the handler and sending its answer),
        without injected latency or delays: what a benchmark subtracts to
        see its client's time alone.
        """
        with self._ctl_lock:
            return self._busy

    def omit_stat_fields(self, names):
        """Leave these DatastoreStat fields out of every answer."""
        with self._ctl_lock:
            self._state.omitted_stat_fields = frozenset(names)

    def set_latency(self, seconds):
        seconds = float(seconds)
        if seconds < 0:
            raise ValueError('latency must be >= 0')
        with self._ctl_lock:
            self._latency = seconds

    def inject_fault(self, endpoint, count=1, mode='error', status=503,
                     code='ERR-API-9013', message=None, delay=0.0,
                     cause_details=''):
        """Make the next ``count`` requests matching ``endpoint`` fail.

        ``endpoint`` is a :meth:`request_counts` key such as
        ``'GET /api/v310/snapshot'`` or ``'*'`` for any request.
        """
        if mode not in FAULT_MODES:
            raise ValueError('mode must be one of %s' % ', '.join(FAULT_MODES))
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError('endpoint must be a non-empty string')
        count = int(count)
        if count < 1:
            raise ValueError('count must be >= 1')
        status = int(status)
        if not 100 <= status <= 599:
            raise ValueError('status must be an HTTP status code')
        delay = float(delay)
        if delay < 0:
            raise ValueError('delay must be >= 0')
        with self._ctl_lock:
            self._faults.append({
                'endpoint': endpoint, 'count': count, 'mode': mode,
                'status': status, 'code': code, 'message': message,
                'delay': delay, 'cause': cause_details or '',
            })

    def clear_faults(self):
        with self._ctl_lock:
            self._faults = []

    def faults(self):
        with self._ctl_lock:
            return [dict(f) for f in self._faults]

    def _need_state(self):
        if self._state is None:
            raise RuntimeError('simulator not started')
        return self._state

    def expire_sessions(self):
        st = self._need_state()
        with st.lock:
            st.expire_sessions()

    def inventory(self):
        st = self._need_state()
        with st.lock:
            return st.inventory()

    def inventoried(self):
        """Datastore-relative paths the array has in its inventory now."""
        st = self._need_state()
        with st.lock:
            return st.inventoried()

    def set_vm_live(self, path, live=True, seconds=None):
        """Make the VM of a datastore-relative ``path`` live or not.

        ``path`` '*' means every VM.  A non-live VM refuses QoS updates
        with ERR-API-3110; ``seconds`` ends that after a while (None:
        until set live again).
        """
        st = self._need_state()
        with st.lock:
            st.set_live(path, live, seconds)

    def set_inventory_lag(self, seconds):
        """Files refreshed from now on are inventoried after ``seconds``.

        With the ``vmstore6`` profile a file is absent from the inventory
        (no VM, no virtual disk) until then.
        """
        st = self._need_state()
        with st.lock:
            st.set_inventory_lag(seconds)
        with self._ctl_lock:
            self._settings['inventory_lag'] = float(seconds)

    def vm_qos(self, path):
        """(min, max) normalized IOPS of the VM of ``path``; (0, 0) unset."""
        st = self._need_state()
        with st.lock:
            return st.qos.get(sim_state.normalize_path(path), (0, 0))

    def qos_puts(self):
        """Every accepted QoS update as (path, min, max), in order."""
        st = self._need_state()
        with st.lock:
            return list(st.qos_puts)

    def set_password(self, password):
        """Change the API password; open sessions stay valid (INFERRED)."""
        st = self._need_state()
        with st.lock:
            st.set_password(password)
            self.password = password

    @property
    def failed_logins(self):
        """Login requests that created no session (bad credentials/body)."""
        st = self._need_state()
        with st.lock:
            return st.failed_logins

    def seed_snapshots(self, n, file=None, vm_name='seed',
                       description_prefix='seed', **fields):
        """Create ``n`` snapshot records quickly; return their uuids.

        All records share one data copy (of ``file``, a datastore-relative
        path, or an empty file).  ``fields`` override snapshot fields
        (``deletionPolicy``, ``type``, ``createTime``, ...).
        """
        st = self._need_state()
        with st.lock:
            return st.seed_snapshots(n, file, vm_name, description_prefix,
                                     **fields)

    # ------------------------------------------------------------------
    # replication paths and remote copies (cross-array clone)

    def add_replication_path(self, peer, destination_ip=None, path_id=None):
        """A replication path from this array to the simulator ``peer``.

        Remote copies through it land in ``peer``'s datastore.  The path's
        ``destinationIp`` is ``peer.host`` unless given.  Returns its id.
        """
        st = self._need_state()
        peer_state = peer._need_state()
        with st.lock:
            return st.replication.add_path(
                peer_state, destination_ip or peer.host, path_id)

    def remove_replication_path(self, path_id):
        st = self._need_state()
        with st.lock:
            st.replication.remove_path(path_id)

    def set_remote_copy(self, **behaviour):
        """Injected remote-copy behaviour (delay, fail, ...).

        See :mod:`cinder_tintri.simulator.replication`.
        """
        st = self._need_state()
        with st.lock:
            st.replication.configure(**behaviour)

    def tasks(self):
        """Every remote-copy task this array ran, as Task objects."""
        st = self._need_state()
        with st.lock:
            return [st.replication.task_view(rec)
                    for rec in st.replication.tasks.values()]

    def wait_tasks(self, timeout=10.0):
        """Wait until no remote-copy task runs; False on timeout."""
        deadline = time.monotonic() + timeout
        st = self._need_state()
        while time.monotonic() < deadline:
            with st.lock:
                busy = [t for t in st.replication.tasks.values()
                        if t['state'] not in replication.DONE]
            if not busy:
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------
    # the same control surface over HTTP (outside /api)

    def _control(self, method, path, raw):
        Reply = sim_state.Reply
        try:
            body = json.loads(raw.decode('utf-8')) if raw else {}
        except ValueError:
            return Reply(400, {'error': 'body is not JSON'})
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return Reply(400, {'error': 'body must be a JSON object'})
        try:
            if path == '/sim/counts' and method == 'GET':
                return Reply(200, {'counts': self.request_counts(),
                                   'total': self.total_requests()})
            if path == '/sim/counts/reset' and method == 'POST':
                self.reset_counts()
                return Reply(204)
            if path == '/sim/inventory' and method == 'GET':
                return Reply(200, self.inventory())
            if path == '/sim/faults' and method == 'POST':
                self.inject_fault(**body)
                return Reply(204)
            if path == '/sim/faults' and method == 'GET':
                return Reply(200, self.faults())
            if path == '/sim/faults' and method == 'DELETE':
                self.clear_faults()
                return Reply(204)
            if path == '/sim/latency' and method == 'POST':
                self.set_latency(body.get('seconds', 0.0))
                return Reply(204)
            if path == '/sim/sessions/expire' and method == 'POST':
                self.expire_sessions()
                return Reply(204)
            if path == '/sim/password' and method == 'POST':
                self.set_password(body.get('password'))
                return Reply(204)
            if path == '/sim/vm/live' and method == 'POST':
                self.set_vm_live(body.get('path', '*'),
                                 bool(body.get('live', True)),
                                 body.get('seconds'))
                return Reply(204)
            if path == '/sim/inventory/lag' and method == 'POST':
                self.set_inventory_lag(body.get('seconds', 0.0))
                return Reply(204)
            if path == '/sim/settings' and method == 'GET':
                return Reply(200, self.settings())
            if path == '/sim/seed' and method == 'POST':
                if 'n' not in body:
                    return Reply(400, {'error': "'n' is required"})
                uuids = self.seed_snapshots(**body)
                return Reply(200, {'count': len(uuids), 'uuids': uuids})
        except (TypeError, ValueError, OSError) as exc:
            return Reply(400, {'error': str(exc)})
        return Reply(404, {'error': 'unknown control endpoint %s %s'
                           % (method, path)})
