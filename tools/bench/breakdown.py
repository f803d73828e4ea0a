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
"""Where the wall time of one measured operation goes.

:class:`Breakdown` wraps a few entry points for the duration of a cell and
charges the wall time of each call to a category, but only for calls made
by the (green) thread running the measured operation, and only for the
outermost wrapped call (a lock's file I/O counts as lock time, a REST
call's JSON work as REST time):

* ``rest``: :meth:`cinder_tintri.client.TClient._send_once`, one HTTP
  attempt (connection, TLS, the request and the wait for the answer,
  injected latency included);
* ``subprocess``: ``oslo_concurrency.processutils.execute`` and
  ``subprocess.run`` (qemu-img, dd, ...);
* ``fs``: the ``os`` functions that touch a file system (open, stat,
  rename, ftruncate, listdir, ...) and ``shutil`` copies;
* ``locks``: acquiring a lock from cinder's coordinator (tooz);
* ``db``: cinder's database API (``cinder.db.api``: the object saves the
  driver makes, such as a new volume's admin metadata).

Whatever remains (Cinder objects, Python, logging, the driver's own
logic) is ``other``.  The simulator runs in other green threads of the
same process: its work shows only as the wait inside ``rest``.
"""

import functools
import os
import shutil
import subprocess
import threading
import time

CATEGORIES = ('rest', 'subprocess', 'fs', 'locks', 'db')

_FS_FUNCS = ('open', 'close', 'read', 'write', 'pread', 'pwrite', 'stat',
             'lstat', 'fstat', 'rename', 'replace', 'unlink', 'rmdir',
             'mkdir', 'makedirs', 'listdir', 'scandir', 'chmod', 'fchmod',
             'chown', 'ftruncate', 'truncate', 'fsync', 'fdatasync',
             'utime', 'link', 'symlink', 'readlink', 'statvfs', 'access',
             'lseek', 'posix_fallocate', 'copy_file_range')
_SHUTIL_FUNCS = ('copyfile', 'copyfileobj', 'rmtree', 'move')


class Breakdown(object):
    """Charge wall time to categories while :meth:`measuring`."""

    def __init__(self):
        self._local = threading.local()
        self._owner = None
        self._totals = None
        self._commands = []
        self._undo = []

    # -- install ---------------------------------------------------------

    def install(self):
        """Wrap the entry points; returns a callable that undoes it."""
        from cinder import coordination
        from cinder.db import api as db
        from oslo_concurrency import processutils

        from cinder_tintri import client as tclient

        self._wrap(tclient.TClient, '_send_once', 'rest')
        self._wrap(processutils, 'execute', 'subprocess')
        self._wrap(subprocess, 'run', 'subprocess')
        for name in _FS_FUNCS:
            if hasattr(os, name):
                self._wrap(os, name, 'fs')
        for name in _SHUTIL_FUNCS:
            self._wrap(shutil, name, 'fs')
        self._wrap_locks(coordination.COORDINATOR)
        for name in dir(db):
            if not name.startswith('_') and callable(getattr(db, name)) \
                    and getattr(getattr(db, name), '__module__',
                                '') == db.__name__:
                self._wrap(db, name, 'db')
        return self.uninstall

    def uninstall(self):
        while self._undo:
            owner, name, original = self._undo.pop()
            setattr(owner, name, original)

    def _wrap(self, owner, name, category):
        original = getattr(owner, name)
        timed = self._timed(original, category)
        self._undo.append((owner, name, original))
        setattr(owner, name, timed)

    def _wrap_locks(self, coordinator):
        original = coordinator.get_lock
        outer = self

        class TimedLock(object):
            def __init__(self, lock):
                self._lock = lock

            def acquire(self, *args, **kwargs):
                return outer._timed(self._lock.acquire, 'locks')(
                    *args, **kwargs)

            def __enter__(self):
                self.acquire()
                return self

            def __exit__(self, *exc):
                return self._lock.__exit__(*exc)

            def __getattr__(self, name):
                return getattr(self._lock, name)

        def get_lock(name):
            return TimedLock(original(name))

        self._undo.append((coordinator, 'get_lock', original))
        coordinator.get_lock = get_lock

    def _timed(self, fn, category):
        local = self._local

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if (self._totals is None
                    or threading.get_ident() != self._owner
                    or getattr(local, 'depth', 0)):
                return fn(*args, **kwargs)
            local.depth = 1
            if category == 'subprocess':
                self._commands.append(_command_name(args, kwargs))
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                local.depth = 0
                if self._totals is not None:
                    self._totals[category] += time.perf_counter() - t0
        return timed

    # -- measure ---------------------------------------------------------

    def start(self):
        """Start charging calls of the current (green) thread."""
        self._owner = threading.get_ident()
        self._local.depth = 0
        self._totals = dict.fromkeys(CATEGORIES, 0.0)
        self._commands = []

    def stop(self, wall):
        """Stop; the categories in seconds, ``other`` the remainder.

        ``commands`` lists the programs the operation ran, in order.
        """
        totals, self._totals, self._owner = self._totals, None, None
        totals = totals or dict.fromkeys(CATEGORIES, 0.0)
        totals['other'] = max(0.0, wall - sum(totals.values()))
        totals['commands'] = self._commands
        self._commands = []
        return totals


def _command_name(args, kwargs):
    """The program a processutils.execute / subprocess.run call runs."""
    cmd = args[0] if args else kwargs.get('args')
    if isinstance(cmd, (list, tuple)):
        cmd = cmd[0] if cmd else ''
    name = os.path.basename(str(cmd or ''))
    if name == 'env' and len(args) > 1:
        # processutils.execute('env', 'LC_ALL=C', 'qemu-img', ...)
        rest = [a for a in args[1:] if '=' not in str(a)]
        name = os.path.basename(str(rest[0])) if rest else name
    return name
