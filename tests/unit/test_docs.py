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
"""The documentation and release notes build with warnings as errors.

The same builds as ``tox -e docs`` and ``tox -e releasenotes``, into a
temporary directory; skipped when Sphinx (or reno) is not installed.
"""

import importlib.util
import os
import subprocess
import sys

import fixtures
import testtools

from cinder_tintri import options

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class DocsBuildTestCase(testtools.TestCase):

    def _build(self, source):
        if importlib.util.find_spec('sphinx') is None:
            self.skipTest('sphinx is not installed')
        out = self.useFixture(fixtures.TempDir()).path
        proc = subprocess.run(
            [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q',
             '-b', 'html', '-d', os.path.join(out, 'doctrees'),
             os.path.join(TOP, source), os.path.join(out, 'html')],
            cwd=TOP, capture_output=True, text=True, timeout=600)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        return os.path.join(out, 'html')

    def test_docs(self):
        html = self._build(os.path.join('doc', 'source'))
        with open(os.path.join(html, 'configuration.html')) as f:
            reference = f.read()
        # The generated reference documents every option.
        for _group, opts in options.list_opts():
            for opt in opts:
                self.assertIn(opt.name, reference)
        for page in ('install', 'examples', 'operations', 'troubleshooting',
                     'support-matrix', 'devstack', 'contributor/index',
                     'contributor/simulator'):
            self.assertTrue(os.path.exists(
                os.path.join(html, page + '.html')), page)

    def test_release_notes(self):
        if importlib.util.find_spec('reno') is None:
            self.skipTest('reno is not installed')
        if not os.path.isdir(os.path.join(TOP, '.git')):
            self.skipTest('reno reads notes from git; not a git checkout')
        lint = subprocess.run(
            [sys.executable, '-c',
             'import sys, reno.main; sys.exit(reno.main.main(sys.argv[1:]))',
             'lint'], cwd=TOP,
            capture_output=True, text=True, timeout=300)
        self.assertEqual(0, lint.returncode, lint.stdout + lint.stderr)
        self._build(os.path.join('releasenotes', 'source'))
