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
"""Small JSON records kept in a directory of a share, one file per key.

Work that must survive a restart and be seen by every service of the
backend (snapshot deletions waiting for clones, QoS settings the array
could not take yet) is recorded as ``<share>/<directory>/<key>``.  Keys
must match the owner's pattern (they become file names); the directory
must be a real directory, never a link; a record is written to a
temporary name and renamed, so readers see a whole record or none; the
directory goes when its last record does.
"""

import json
import os
import stat

MAX_RECORD = 4096


class RecordDir(object):

    def __init__(self, name, key_re, what):
        """``name``: the directory; ``key_re``: keys; ``what``: their noun."""
        self.name = name
        self.key_re = key_re
        self.what = what

    def path(self, mount, key):
        if not self.key_re.fullmatch(str(key)):
            raise ValueError('not a %s: %r' % (self.what, key))
        return os.path.join(mount, self.name, key)

    def write(self, mount, key, body):
        """Write ``body`` (a dict) as the record of ``key``."""
        directory = os.path.join(mount, self.name)
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            pass
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError('%s is not a directory' % directory)
        path = self.path(mount, key)
        tmp = '%s.%d.new' % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                     | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, json.dumps(body).encode('utf-8'))
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def read(self, mount, key):
        """The record of ``key`` as a dict; {} if missing or unreadable."""
        try:
            fd = os.open(self.path(mount, key), os.O_RDONLY | os.O_NOFOLLOW)
        except (OSError, ValueError):
            return {}
        try:
            data = json.loads(os.read(fd, MAX_RECORD).decode('utf-8'))
        except (OSError, ValueError):
            return {}
        finally:
            os.close(fd)
        return data if isinstance(data, dict) else {}

    def remove(self, mount, key):
        """Remove the record (missing: fine); ValueError for a bad key."""
        try:
            os.unlink(self.path(mount, key))
        except FileNotFoundError:
            pass
        try:
            os.rmdir(os.path.join(mount, self.name))   # only when empty
        except OSError:
            pass

    def keys(self, mount):
        """The keys recorded on ``mount``, sorted."""
        try:
            names = sorted(os.listdir(os.path.join(mount, self.name)))
        except OSError:
            return []
        return [n for n in names
                if self.key_re.fullmatch(n) and not n.endswith('.new')]
