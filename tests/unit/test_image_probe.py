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
"""The header probe of manageable listings (cinder_tintri.image_probe).

Real images of every format qemu-img makes must never pass for raw; plain
raw files must, without cinder's full inspector; the listing still flags
what the full inspector refuses.
"""

import os
import subprocess
import sys
from unittest import mock

from cinder.image import format_inspector
from cinder.privsep import format_inspector as priv_inspector
import fixtures
from oslo_utils import units
import testtools

from cinder_tintri import image_probe
from tests.unit import test_manage

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MiB = units.Mi
GiB = units.Gi
# qemu-img's names of the formats cinder's inspector knows (vhd is "vpc")
QEMU_FORMATS = {'qcow2': 'qcow2', 'qed': 'qed', 'vhd': 'vpc',
                'vhdx': 'vhdx', 'vmdk': 'vmdk', 'vdi': 'vdi'}


class ProbeTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def make(self, fmt):
        path = os.path.join(self.tmp, 'disk.' + fmt)
        subprocess.run(['qemu-img', 'create', '-q', '-f', QEMU_FORMATS[fmt],
                        path, '64M'], check=True, timeout=60)
        return path

    def test_no_image_format_passes_for_raw(self):
        self.assertEqual(set(QEMU_FORMATS), image_probe.HEADER_FORMATS)
        for fmt in QEMU_FORMATS:
            path = self.make(fmt)
            self.assertFalse(image_probe.looks_raw(path), fmt)

    def test_raw_data_is_raw(self):
        path = os.path.join(self.tmp, 'raw')
        with open(path, 'wb') as f:
            f.write(os.urandom(MiB))
            f.truncate(64 * MiB)
        self.assertTrue(image_probe.looks_raw(path))
        self.assertEqual('raw',
                         str(format_inspector.detect_file_format(path)))

    def test_unsure_cases_go_to_the_full_inspector(self):
        empty = os.path.join(self.tmp, 'empty')
        open(empty, 'wb').close()
        self.assertFalse(image_probe.looks_raw(empty))
        self.assertFalse(image_probe.looks_raw(os.path.join(self.tmp, 'no')))
        link = os.path.join(self.tmp, 'link')
        os.symlink(self.make('qcow2'), link)
        self.assertFalse(image_probe.looks_raw(link))
        fifo = os.path.join(self.tmp, 'fifo')
        os.mkfifo(fifo)
        self.assertFalse(image_probe.looks_raw(fifo))

    def test_a_format_cinder_adds_is_not_probed(self):
        path = os.path.join(self.tmp, 'raw')
        with open(path, 'wb') as f:
            f.write(b'\1' * 4096)
        formats = dict(format_inspector.ALL_FORMATS, newfmt=object)
        with mock.patch.object(format_inspector, 'ALL_FORMATS', formats):
            self.assertFalse(image_probe.looks_raw(path))


class ListingTest(test_manage.ManageBase):

    def test_many_raw_files_one_read_each(self):
        for i in range(200):
            self.put('disk-%03d.img' % i, size=GiB, data=os.urandom(512))
        backed = os.path.join(self.share_dir, 'backed.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                        os.path.join(self.share_dir, 'disk-000.img'), '-F',
                        'raw', backed], check=True, timeout=60)
        vmdk = os.path.join(self.share_dir, 'disk.vmdk')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'vmdk', vmdk,
                        '1G'], check=True, timeout=60)
        with mock.patch.object(priv_inspector, 'get_format_if_safe',
                               wraps=priv_inspector.get_format_if_safe) as f:
            entries = self.drv.get_manageable_volumes(
                [], None, 1000, 0, ['reference'], ['asc'])
        inspected = sorted(os.path.basename(c.kwargs['path'])
                           for c in f.call_args_list)
        self.assertEqual(['backed.qcow2', 'disk.vmdk'], inspected)
        by_name = {e['reference']['source-name'].rsplit('/', 1)[1]: e
                   for e in entries}
        self.assertEqual(202, len(by_name))
        self.assertEqual(200, sum(1 for e in entries if e['safe_to_manage']))
        self.assertFalse(by_name['backed.qcow2']['safe_to_manage'])
        self.assertFalse(by_name['disk.vmdk']['safe_to_manage'])
        self.assertIn('vmdk', by_name['disk.vmdk']['reason_not_safe'])


class GreenProbeTest(testtools.TestCase):
    """cinder-volume runs under eventlet: a FIFO must not block there."""

    def test_fifo_under_eventlet(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        fifo = os.path.join(tmp, 'fifo')
        os.mkfifo(fifo)
        code = ('import eventlet; eventlet.monkey_patch()\n'
                'import sys; from cinder_tintri import image_probe\n'
                'print(image_probe.looks_raw(sys.argv[1]))\n')
        proc = subprocess.run(
            [sys.executable, '-c', code, fifo], capture_output=True,
            text=True, timeout=60, cwd=TOP)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertEqual('False', proc.stdout.strip())
