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
"""A hostile HTTPS reverse proxy in front of a running VMstore simulator.

It stands for everything that can sit between the driver and a VMstore, or
answer in its place: a proxy that echoes requests into error pages, a load
balancer's HTML page with status 200, a web server that is not a VMstore,
a link that delivers one byte at a time, an array whose password was just
rotated.  Behaviours are chosen per request by (method, path regex); the
first matching rule with uses left wins, anything else passes through::

    proxy = HostileProxy(sim)           # or self.useFixture(ProxyFixture(sim))
    proxy.start()
    proxy.echo('POST', r'/session/login$', status=403)
    proxy.replace('GET', r'^/api/info$', b'<html>...</html>', 'text/html')
    proxy.drip('GET', r'/snapshot$', interval=0.4, phase='headers')
    proxy.rotate_password('new-password')
    ...
    proxy.stop()

It listens on 127.0.0.1 only, with the simulator's certificate (so clients
verify it with ``sim.ca_path``), runs in a thread (a greenthread under
eventlet) and stops cleanly: ``stop()`` wakes every dripping handler,
closes every connection and joins the server thread.  It records every
request (``requests``, ``counts()``, ``bodies``), every session id the
simulator issued through it (``session_ids``) and every login it saw
(``logins``) or rejected (``rejected_logins``).
"""

from http import client as http_client
from http import server as http_server
import json
import re
import socket
import socketserver
import ssl
import threading
import time

import fixtures

TINTRI_ERROR = 'com.tintri.api.rest.v310.dto.domain.beans.TintriError'
HOP_BY_HOP = frozenset(['connection', 'keep-alive', 'proxy-connection',
                        'transfer-encoding', 'te', 'trailer', 'upgrade',
                        'content-length', 'host'])
PHASES = ('status', 'headers', 'body')
ACTIONS = ('pass', 'echo', 'replace', 'drip', 'reject_login', 'drop')
REASONS = {200: 'OK', 204: 'No Content', 400: 'Bad Request',
           401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
           405: 'Method Not Allowed', 500: 'Internal Server Error',
           502: 'Bad Gateway', 503: 'Service Unavailable'}


def tintri_error_body(status, code, message, cause=''):
    return json.dumps({'typeId': TINTRI_ERROR, 'code': code,
                       'message': message, 'causeDetails': cause}).encode()


class Rule(object):
    """One behaviour; ``hits`` counts the requests it handled."""

    def __init__(self, method, path, action, count=None, **options):
        if action not in ACTIONS:
            raise ValueError('action must be one of %s' % ', '.join(ACTIONS))
        self.method = method.upper() if method else None
        self.path = re.compile(path)
        self.action = action
        self.count = count
        self.options = options
        self.hits = 0

    def matches(self, method, path):
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method not in (None, '*') and self.method != method:
            return False
        return bool(self.path.search(path))


class _Server(http_server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, proxy, context):
        self.proxy = proxy
        self.ssl_context = context
        self.connections = set()
        self.conn_lock = threading.Lock()
        super().__init__(('127.0.0.1', 0), _Handler)

    def server_bind(self):
        # Not HTTPServer.server_bind: no reverse DNS of the address.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        conn = request
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                conn = self.ssl_context.wrap_socket(request, server_side=True)
                conn.settimeout(60)
            except (ssl.SSLError, OSError):
                request.close()
                return
        with self.conn_lock:
            self.connections.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self.conn_lock:
                self.connections.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # a client that hung up mid-drip is expected

    def close_connections(self):
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(http_server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'HostileProxy/1.0'
    sys_version = ''

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.server.proxy._handle(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    # -- helpers used by HostileProxy ------------------------------------

    def read_body(self):
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length > 0 else b''

    def raw_request(self, body):
        """Request line, every header (Cookie included) and the body."""
        line = self.raw_requestline.decode('latin-1').rstrip('\r\n')
        headers = ''.join('%s: %s\r\n' % (k, v)
                          for k, v in self.headers.items())
        return '%s\r\n%s\r\n%s' % (line, headers,
                                   body.decode('utf-8', 'replace'))


class HostileProxy(object):
    """See the module docstring."""

    def __init__(self, sim, tls=True):
        if sim.url is None:
            raise RuntimeError('start the simulator first')
        self.sim = sim
        self.tls = tls and sim.tls
        self.host = '127.0.0.1'
        self.port = None
        self.url = None
        self.ca_path = sim.ca_path
        self.rules = []
        self.requests = []
        self.bodies = []
        self.session_ids = []
        self.logins = 0
        self.rejected_logins = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self._rotated = None

    # -- life cycle ------------------------------------------------------

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self._server is not None:
            raise RuntimeError('proxy already started')
        context = None
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.sim.cert_path, self.sim.key_path)
        self._stopping.clear()
        self._server = _Server(self, context)
        self.port = self._server.server_address[1]
        self.url = '%s://127.0.0.1:%d' % ('https' if self.tls else 'http',
                                          self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={'poll_interval': 0.1},
            name='hostile-proxy-%d' % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10.0):
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        deadline = time.monotonic() + timeout
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None

    # -- behaviours ------------------------------------------------------

    def add(self, method, path, action, count=None, **options):
        rule = Rule(method, path, action, count=count, **options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def passthrough(self, method, path, count=None):
        """Forward as is (useful ahead of a broader rule)."""
        return self.add(method, path, 'pass', count)

    def echo(self, method, path, status=500, style='tintri', count=None,
             forward=False):
        """Answer with an error body quoting the whole request.

        ``style``: 'tintri' (TintriError JSON, the echo in message and
        causeDetails), 'text' (text/plain) or 'html' (an HTML page).
        ``forward``: send the request to the simulator first.
        """
        if style not in ('tintri', 'text', 'html'):
            raise ValueError('style must be tintri, text or html')
        return self.add(method, path, 'echo', count, status=status,
                        style=style, forward=forward)

    def replace(self, method, path, body, content_type='text/html',
                status=200, count=None, forward=False):
        """Answer with a raw body (bytes or str) instead of the array's.

        ``forward``: the simulator handles the request first (so e.g. a
        snapshot really is made) and only its answer is replaced.
        """
        if isinstance(body, str):
            body = body.encode('utf-8')
        return self.add(method, path, 'replace', count, body=body,
                        content_type=content_type, status=status,
                        forward=forward)

    def drip(self, method, path, interval=0.4, phase='status', count=None):
        """Forward, then send the answer one byte every ``interval`` s.

        ``phase``: where the dripping starts - 'status' (status line,
        headers and body all dripped), 'headers' (status line at once) or
        'body' (status line and headers at once).
        """
        if phase not in PHASES:
            raise ValueError('phase must be one of %s' % ', '.join(PHASES))
        return self.add(method, path, 'drip', count, interval=interval,
                        phase=phase)

    def drop(self, method, path, count=None):
        """Close the connection without answering."""
        return self.add(method, path, 'drop', count)

    def reject_logins(self, count=None):
        """403 TintriError ERR-API-0124 to logins, counted in ``hits``."""
        return self.add('POST', r'/session/login$', 'reject_login', count)

    def rotate_password(self, new_password, expire_sessions=True):
        """The array's password is now ``new_password``.

        Logins with any other password get 403 ERR-API-0124 (counted in
        ``rejected_logins``); logins with the new one are forwarded with
        the simulator's real password. Existing sessions are expired.
        """
        with self._lock:
            self._rotated = new_password
        if expire_sessions:
            self.sim.expire_sessions()

    def clear(self):
        with self._lock:
            self.rules = []
            self._rotated = None

    def counts(self):
        """{'METHOD /path': requests seen} (paths without query)."""
        out = {}
        with self._lock:
            for method, path in self.requests:
                key = '%s %s' % (method, path)
                out[key] = out.get(key, 0) + 1
        return out

    def total_requests(self):
        with self._lock:
            return len(self.requests)

    # -- the request path ------------------------------------------------

    def _rule_for(self, method, path):
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def _handle(self, handler):
        method = handler.command
        path = handler.path.split('?', 1)[0]
        body = handler.read_body()
        with self._lock:
            self.requests.append((method, path))
            self.bodies.append((method, path, body))
        if path.endswith('/session/login') and method == 'POST':
            with self._lock:
                self.logins += 1
        rule = self._rule_for(method, path)
        action = rule.action if rule else 'pass'
        opts = rule.options if rule else {}
        if action == 'drop':
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if action == 'reject_login' or self._rotation_rejects(path, body):
            with self._lock:
                self.rejected_logins += 1
            self._answer(handler, 403, 'application/json', tintri_error_body(
                403, 'ERR-API-0124', 'Login failed: invalid user name or '
                'password'))
            return
        if action == 'echo':
            if opts.get('forward'):
                self._forward(handler, method, body)
            self._answer_echo(handler, opts, handler.raw_request(body))
            return
        if action == 'replace':
            if opts.get('forward'):
                self._forward(handler, method, body)
            self._answer(handler, opts['status'], opts['content_type'],
                         opts['body'])
            return
        status, reason, headers, data = self._forward(handler, method, body)
        if action == 'drip':
            self._write(handler, status, reason, headers, data,
                        drip=opts['interval'], phase=opts['phase'])
        else:
            self._write(handler, status, reason, headers, data)

    def _rotation_rejects(self, path, body):
        with self._lock:
            new = self._rotated
        if new is None or not path.endswith('/session/login'):
            return False
        try:
            sent = json.loads(body.decode('utf-8')).get('password')
        except (ValueError, AttributeError):
            return True
        return sent != new

    def _forward(self, handler, method, body):
        """Send the request to the simulator; (status, reason, hdrs, data)."""
        path = handler.path
        if self._rotated is not None and path.split('?')[0].endswith(
                '/session/login'):
            try:
                creds = json.loads(body.decode('utf-8'))
                creds['password'] = self.sim.password
                body = json.dumps(creds).encode('utf-8')
            except (ValueError, AttributeError, TypeError):
                pass
        if self.sim.tls:
            context = ssl.create_default_context(cafile=self.sim.ca_path)
            conn = http_client.HTTPSConnection(self.sim.host, self.sim.port,
                                               context=context, timeout=60)
        else:
            conn = http_client.HTTPConnection(self.sim.host, self.sim.port,
                                              timeout=60)
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in HOP_BY_HOP}
        headers['Content-Length'] = str(len(body))
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders()
                   if k.lower() not in HOP_BY_HOP]
            for k, v in out:
                if k.lower() == 'set-cookie' and 'JSESSIONID=' in v:
                    sid = v.split('JSESSIONID=', 1)[1].split(';')[0]
                    with self._lock:
                        self.session_ids.append(sid.strip().strip('"'))
            return resp.status, resp.reason, out, data
        except (OSError, http_client.HTTPException) as e:
            return 502, 'Bad Gateway', [('Content-Type', 'text/plain')], (
                'upstream failed: %s' % e).encode()
        finally:
            conn.close()

    def _answer_echo(self, handler, opts, echo):
        status = opts['status']
        if opts['style'] == 'tintri':
            body = tintri_error_body(
                status, 'ERR-API-0007', 'Request failed: ' + echo,
                'While processing: ' + echo)
            ctype = 'application/json'
        elif opts['style'] == 'text':
            body = ('Proxy error %d while processing:\n%s' % (
                status, echo)).encode('utf-8')
            ctype = 'text/plain'
        else:
            body = ('<html><head><title>%d Error</title></head><body><pre>%s'
                    '</pre></body></html>' % (status, echo)).encode('utf-8')
            ctype = 'text/html'
        self._answer(handler, status, ctype, body)

    def _answer(self, handler, status, content_type, body):
        headers = [('Content-Type', content_type)] if content_type else []
        self._write(handler, status, REASONS.get(status, 'Unknown'),
                    headers, body)

    def _write(self, handler, status, reason, headers, data, drip=None,
               phase='status'):
        head = 'HTTP/1.1 %d %s\r\n' % (status, reason)
        lines = ''.join('%s: %s\r\n' % (k, v) for k, v in headers)
        lines += 'Content-Length: %d\r\n' % len(data)
        if drip:
            lines += 'Connection: close\r\n'
            handler.close_connection = True
        lines += '\r\n'
        head, lines = head.encode('latin-1'), lines.encode('latin-1')
        try:
            if not drip:
                handler.wfile.write(head + lines + data)
                handler.wfile.flush()
                return
            parts = {'status': (b'', head + lines + data),
                     'headers': (head, lines + data),
                     'body': (head + lines, data)}[phase]
            if parts[0]:
                handler.wfile.write(parts[0])
                handler.wfile.flush()
            for i in range(len(parts[1])):
                if self._stopping.wait(drip):
                    break
                handler.wfile.write(parts[1][i:i + 1])
                handler.wfile.flush()
        except OSError:
            handler.close_connection = True


class ProxyFixture(fixtures.Fixture):
    """A started HostileProxy, stopped at cleanup (also on failure)."""

    def __init__(self, sim, tls=True):
        super().__init__()
        self.sim = sim
        self.tls = tls

    def _setUp(self):
        self.proxy = HostileProxy(self.sim, tls=self.tls)
        self.proxy.start()
        self.addCleanup(self.proxy.stop)
