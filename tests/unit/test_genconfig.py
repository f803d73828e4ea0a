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
"""The sample config (tox -e genconfig) lists every option with its help."""

import os
import re
import shutil
import subprocess
import sys

import fixtures
import testtools

from cinder_tintri import options


def _generator():
    path = os.path.join(os.path.dirname(sys.executable),
                        'oslo-config-generator')
    return path if os.access(path, os.X_OK) else shutil.which(
        'oslo-config-generator')


class GenconfigTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        generator = _generator()
        if not generator:
            self.skipTest('oslo-config-generator is not installed')
        out = os.path.join(self.useFixture(fixtures.TempDir()).path,
                           'cinder-tintri.conf.sample')
        proc = subprocess.run(
            [generator, '--namespace', 'cinder_tintri', '--output-file', out],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(0, proc.returncode, proc.stderr)
        with open(out) as f:
            self.sample = f.read()

    def _section(self, name):
        match = re.search(r'^\[%s\]\n(.*?)(?=^\[|\Z)' % re.escape(name),
                          self.sample, re.M | re.S)
        self.assertIsNotNone(match, 'no [%s] in the sample' % name)
        return match.group(1)

    def _blocks(self):
        """{option name: (comment text, commented-out default line)}."""
        blocks = {}
        comment = []
        for line in self._section('backend_defaults').splitlines():
            m = re.match(r'^#(\w+) = (.*)$', line)
            if m:
                blocks[m.group(1)] = (' '.join(comment), m.group(2))
                comment = []
            elif line.startswith('#'):
                comment.append(line.lstrip('#').strip())
            else:
                comment = []
        return blocks

    def test_every_option_with_help_and_default(self):
        blocks = self._blocks()
        for group, opts in options.list_opts():
            self.assertEqual('backend_defaults', group)
            for opt in opts:
                self.assertIn(opt.name, blocks)
                text, default = blocks[opt.name]
                self.assertIn(' '.join(opt.help.split()), text,
                              '%s: help missing' % opt.name)
                if opt.default is None:
                    self.assertEqual('<None>', default, opt.name)
                elif isinstance(opt.default, bool):
                    self.assertEqual(str(opt.default).lower(), default)
                else:
                    self.assertEqual(str(opt.default), default, opt.name)

    def test_no_stray_options(self):
        names = {opt.name for _, opts in options.list_opts() for opt in opts}
        self.assertEqual(names, set(self._blocks()))

    def test_password_has_no_value(self):
        text, default = self._blocks()['tintri_server_password']
        self.assertEqual('<None>', default)
