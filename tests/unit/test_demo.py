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
"""The README demo runs end to end and leaves nothing behind."""

import re
import subprocess
import sys

import testtools


class DemoTestCase(testtools.TestCase):

    def test_demo_runs_clean(self):
        proc = subprocess.run(
            [sys.executable, '-m', 'cinder_tintri.cmd.demo', '--volumes',
             '3'], capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        self.assertEqual(0, proc.returncode, out)
        self.assertIn('volume from snapshot has pre-snapshot data: OK', out)
        self.assertIn('revert restored data: OK', out)
        self.assertIn('left on the array: 0 files, 0 snapshots', out)
        self.assertIn('logins to the array: 1;', out)
        row = re.search(r'^boot volumes from golden\s+(\d+)\s+(\d+)', out,
                        re.M)
        self.assertIsNotNone(row, out)
        # One array clone per booted volume, nothing else.
        self.assertEqual(('3', '3'), row.groups())
        self.assertNotIn('Traceback', out)
