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
"""A cheap first look at a file's disk format, for listings.

cinder's format inspector (``detect_file_format``) reads a file until every
format's inspector is sure, which for a plain raw file is megabytes: about
20 ms per file, so a manageable-volume listing of 5,000 files would outlast
Cinder's RPC timeout.  Every inspector of cinder 29 recognises its format
by a header within the first 512 bytes, so :func:`looks_raw` feeds the
first :data:`PROBE_BYTES` to each of cinder's own inspectors and answers
True when none of them matches: such a file is raw to the full inspector
too.  When one matches, or when cinder knows a format whose inspector this
was not checked against, the caller runs the full inspector.

Only listings use this.  Managing a file still runs the full check.
"""

import os
import stat

from cinder.image import format_inspector

PROBE_BYTES = 64 * 1024
# Formats whose inspector decides format_match from the first 512 bytes
# (cinder 29's ALL_FORMATS minus raw).  A format cinder adds later is not
# probed: its files always get the full inspection.
HEADER_FORMATS = frozenset(('qcow2', 'qed', 'vhd', 'vhdx', 'vmdk', 'vdi'))


def looks_raw(path):
    """True when no known format's header is in the file; False if unsure.

    The file is opened without following links and read only if it is a
    regular file, so a FIFO never blocks the caller.
    """
    if set(format_inspector.ALL_FORMATS) - {'raw'} - HEADER_FORMATS:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # Only a regular file is read: under eventlet (cinder-volume) a
        # green read of an empty FIFO waits for a writer for ever.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, PROBE_BYTES)
    except OSError:
        return False
    finally:
        os.close(fd)
    if not head:
        return False
    for name, inspector_class in format_inspector.ALL_FORMATS.items():
        if name == 'raw':
            continue
        inspector = inspector_class()
        try:
            inspector.eat_chunk(head)
        except format_inspector.ImageFormatError:
            continue
        except Exception:
            return False
        if inspector.format_match:
            return False
    return True
