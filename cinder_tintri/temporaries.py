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
"""Temporary directories on the shares, and proof of who owns them.

Array clones land in a temporary directory on the share
(``.tintri-tmp-<target>-<hex>-h<tag>``, the tag naming the service that
made it) and are renamed into place; image downloads are written into one.
An operation can be cut short (a crash, a clone whose response timed out
landing after the operation gave up), so the directories are swept.

Ownership is proved by a lock: the operation that claims a temporary name
holds the coordination lock ``tintri-tmp-<name>`` until it releases the
name.  A sweeper - this service or another of an active-active cluster -
removes a temporary only after it obtained that lock without waiting, so no
running operation's temporary is ever swept, however long it runs (a large
image from a slow Glance).  A crashed owner's lock is freed by the lock
backend (file locks by the kernel, redis/etcd locks when their heartbeat
stops), so abandoned temporaries are still swept.  Another service's
temporaries are in addition only swept once nothing in them changed for
``foreign_idle`` seconds: a guard against a cluster whose services do not
share a lock backend.  Untagged temporaries (older driver versions) go at
start-up.

The temporary clone directories of the drivers this one takes over from
(:func:`cinder_tintri.takeover.foreign_temporary`: the in-tree driver's
``snapshot-<id>/`` and ``clone-volume-<id>/``, the removed driver's
``volume-<id>-d/``) are swept too, by the same rules as another service's:
their lock free and nothing in them changed for ``foreign_idle`` seconds,
because those drivers take no lock of ours and one may still be running
during a switch.  Only a real directory holding nothing but regular files
(what their clones leave) is removed; anything else with such a name is
logged and left alone.
"""

import hashlib
import os
import re
import shutil
import stat
import threading
import time
import uuid

from cinder import coordination
from oslo_log import log as logging

from cinder_tintri import takeover

LOG = logging.getLogger(__name__)

PREFIX = '.tintri-tmp-'
TAG_RE = re.compile(r'-h([0-9a-f]{8})$')
LOCK = 'tintri-tmp-%s'
# Another service's temporary is abandoned once idle this long (seconds)
# and its lock is free.
FOREIGN_IDLE = 3600


def host_tag(host):
    """Eight hex digits naming the service ``host`` (host@backend)."""
    return hashlib.md5((host or '').encode('utf-8'),
                       usedforsecurity=False).hexdigest()[:8]


def idle_seconds(path):
    """Seconds since anything in the directory ``path`` last changed."""
    newest = 0.0
    try:
        newest = os.lstat(path).st_mtime
        for entry in os.listdir(path):
            try:
                newest = max(newest,
                             os.lstat(os.path.join(path, entry)).st_mtime)
            except OSError:
                pass
    except OSError:
        return 0.0
    return time.time() - newest


class TemporaryDirs(object):
    """Claims, releases and sweeps the temporary directories of a service.

    :param host: the service name (host@backend); its tag marks the names.
    :param foreign_idle: seconds another service's temporary must be idle
        (besides its lock being free) before it is swept.
    """

    def __init__(self, host, foreign_idle=FOREIGN_IDLE):
        self.tag = host_tag(host)
        self.foreign_idle = foreign_idle
        self._claims = {}
        self._guard = threading.Lock()

    # -- claims ------------------------------------------------------

    def claim(self, target_name):
        """A new temporary name for ``target_name``, owned until released.

        The name's lock is taken before the name is handed out, so there
        is no moment in which its directory exists unowned.
        """
        name = '%s%s-%s-h%s' % (PREFIX, target_name, uuid.uuid4().hex[:12],
                                self.tag)
        lock = coordination.COORDINATOR.get_lock(LOCK % name)
        if not lock.acquire(blocking=False):
            # A fresh random name nobody can hold; a lock backend that
            # says otherwise is broken.
            raise RuntimeError('cannot lock the new temporary name %s'
                               % name)
        with self._guard:
            self._claims[name] = lock
        return name

    def release(self, name):
        """The operation that claimed ``name`` has ended."""
        with self._guard:
            lock = self._claims.pop(name, None)
        if lock is not None:
            _release(lock, name)

    def claimed(self, name):
        with self._guard:
            return name in self._claims

    # -- sweeping ----------------------------------------------------

    def _try_own(self, name):
        """The lock of an unclaimed temporary name, or None if it is held."""
        if self.claimed(name):
            return None
        lock = coordination.COORDINATOR.get_lock(LOCK % name)
        try:
            if lock.acquire(blocking=False):
                return lock
        except Exception as e:
            LOG.warning('Cannot take the lock of temporary %(name)s: '
                        '%(err)s', {'name': name, 'err': e})
        return None

    def remove_if_abandoned(self, mount, name, stale):
        """Remove ``mount/name`` if ``stale`` and nobody owns it."""
        lock = self._try_own(name)
        if lock is None:
            return False
        try:
            if not stale:
                return False
            LOG.info('Removing abandoned temporary %(name)s in %(mount)s.',
                     {'name': name, 'mount': mount})
            shutil.rmtree(os.path.join(mount, name), ignore_errors=True)
            return True
        finally:
            _release(lock, name)

    def sweep(self, mounts, startup=False):
        """Remove the temporaries in ``mounts`` that no operation owns."""
        removed = []
        for mount in mounts:
            try:
                entries = os.listdir(mount)
            except OSError:
                continue
            for entry in entries:
                if not entry.startswith(PREFIX):
                    if self._remove_foreign(mount, entry):
                        removed.append(os.path.join(mount, entry))
                    continue
                path = os.path.join(mount, entry)
                match = TAG_RE.search(entry)
                if match is None:
                    stale = startup
                elif match.group(1) == self.tag:
                    stale = True
                else:
                    stale = idle_seconds(path) > self.foreign_idle
                if self.remove_if_abandoned(mount, entry, stale):
                    removed.append(path)
        return removed

    def _remove_foreign(self, mount, entry):
        """Remove another driver's abandoned temporary clone directory."""
        what = takeover.foreign_temporary(entry)
        if what is None:
            return False
        path = os.path.join(mount, entry)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                return False
            inner = [os.lstat(os.path.join(path, e))
                     for e in os.listdir(path)]
        except OSError:
            return False
        if not all(stat.S_ISREG(i.st_mode) for i in inner):
            LOG.warning('%(path)s is named like a temporary of the %(what)s '
                        'but holds more than files; left alone.',
                        {'path': path, 'what': what})
            return False
        if idle_seconds(path) <= self.foreign_idle:
            return False
        LOG.info('Removing the abandoned temporary %(name)s of the '
                 '%(what)s.', {'name': entry, 'what': what})
        return self.remove_if_abandoned(mount, entry, True)

    def remove_for(self, mount, target_name):
        """Unowned temporaries made for ``target_name`` (a deleted volume)."""
        prefix = '%s%s-' % (PREFIX, target_name)
        try:
            entries = os.listdir(mount)
        except OSError:
            return
        for entry in entries:
            if entry.startswith(prefix):
                self.remove_if_abandoned(mount, entry, True)


def _release(lock, name):
    try:
        lock.release()
    except Exception as e:
        LOG.warning('Could not release the lock of temporary %(name)s: '
                    '%(err)s', {'name': name, 'err': e})
    # File locks leave a file per name behind; temporary names are
    # unique, so remove it.
    coordination.synchronized_remove(LOCK % name)
