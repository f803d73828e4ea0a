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
"""The documentation, man page and release notes build with warnings as errors.

The same builds as ``tox -e docs`` and ``tox -e releasenotes``, into a
temporary directory; skipped when Sphinx (or reno) is not installed.  The
generated references are checked against what they are generated from:
the option definitions, and the argparse parsers of ``cinder-tintri`` and
``tintri-vmstore-sim``.
"""

import argparse
import html
import importlib.util
import os
import re
import subprocess
import sys
import zlib

import fixtures
import testtools

from cinder_tintri.cmd import cli
from cinder_tintri import options
from cinder_tintri.simulator import cmd as sim_cmd

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _programs(parser, summary=None):
    """``(prog, summary, [argument names])`` for a parser and its commands.

    ``summary`` is the ``help`` a subcommand was added with.
    """
    names = []
    subs = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subs = [(action.choices[c.dest], c.help)
                    for c in action._choices_actions]
        elif action.help is not argparse.SUPPRESS:
            names.extend(action.option_strings or [action.dest])
    yield parser.prog, summary, names
    for sub, help_text in subs:
        yield from _programs(sub, help_text)


def _inventory(html_dir):
    """``{name: uri}`` of the ``std:cmdoption`` entries of objects.inv."""
    with open(os.path.join(html_dir, 'objects.inv'), 'rb') as f:
        for _ in range(4):
            f.readline()
        body = zlib.decompress(f.read()).decode('utf-8')
    entries = {}
    for line in body.splitlines():
        m = re.match(r'(.+?) std:cmdoption -?\d+ (\S+) ', line)
        if m:
            entries[m.group(1)] = m.group(2)
    return entries


def _text(path):
    """The text of an HTML page, without its scripts and markup."""
    with open(path) as f:
        page = f.read()
    page = re.sub(r'(?s)<(script|style)\b.*?</\1>', ' ', page)
    return html.unescape(re.sub(r'<[^>]+>', ' ', page))


def _roff(text):
    """Man page source with the escapes Sphinx writes undone."""
    for escape in ('\\fB', '\\fI', '\\fP', '\\fR', '\\%', '\\&'):
        text = text.replace(escape, '')
    return text.replace('\\-', '-')


class DocsBuildTestCase(testtools.TestCase):

    def _build(self, source, builder='html'):
        if importlib.util.find_spec('sphinx') is None:
            self.skipTest('sphinx is not installed')
        out = self.useFixture(fixtures.TempDir()).path
        proc = subprocess.run(
            [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q',
             '-b', builder, '-d', os.path.join(out, 'doctrees'),
             os.path.join(TOP, source), os.path.join(out, builder)],
            cwd=TOP, capture_output=True, text=True, timeout=600)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        return os.path.join(out, builder)

    def test_docs(self):
        out = self._build(os.path.join('doc', 'source'))
        with open(os.path.join(out, 'configuration.html')) as f:
            reference = f.read()
        # The generated reference documents every option.
        for _group, opts in options.list_opts():
            for opt in opts:
                self.assertIn(opt.name, reference)
        for page in ('install', 'examples', 'operations', 'cli',
                     'troubleshooting', 'support-matrix', 'devstack',
                     'contributor/index', 'contributor/simulator'):
            self.assertTrue(os.path.exists(
                os.path.join(out, page + '.html')), page)
        # openstackdocstheme, configured for this repository, and no page
        # views sent to docs.openstack.org's analytics.
        with open(os.path.join(out, 'index.html')) as f:
            index = f.read()
        self.assertIn('var repositoryName = "x/cinder-tintri"', index)
        self.assertIn('var bugProject = "cinder-tintri"', index)
        self.assertTrue(os.path.exists(
            os.path.join(out, '_static', 'css', 'combined.css')))
        self.assertNotIn('googletagmanager', index)

    def test_cli_reference(self):
        """Every command and argument of both parsers, on its page."""
        out = self._build(os.path.join('doc', 'source'))
        documented = _inventory(out)
        pages = {'cli.html': cli.build_parser(),
                 'contributor/simulator.html': sim_cmd.build_parser()}
        for page, parser in pages.items():
            text = ' '.join(_text(os.path.join(out, page)).split())
            for prog, summary, names in _programs(parser):
                # One section (or the page itself) per command line, with
                # the subcommand's help as its summary.
                self.assertIn(prog, text)
                if summary:
                    self.assertIn(' '.join(summary.split()), text)
                self.assertNotEqual([], names, prog)
                keys = ['%s.%s' % (prog.replace(' ', '-'), name)
                        for name in names]
                self.assertEqual(
                    [], [k for k in keys
                         if documented.get(k, '').split('#')[0] != page],
                    'arguments not documented on %s' % page)

    def test_man_page(self):
        out = self._build(os.path.join('doc', 'source'), builder='man')
        page = os.path.join(out, 'cinder-tintri.1')
        self.assertTrue(os.path.exists(page))
        with open(page) as f:
            roff = _roff(f.read())
        self.assertIn('.TH "CINDER-TINTRI" "1"', roff)
        # Argument names of each command, from its section of the page.
        sections = {}
        current = 'cinder-tintri'
        for line in roff.splitlines():
            if line.startswith('.SS '):
                current = line[4:].strip()
            elif line.startswith('.B ') and line[3:].strip():
                for sig in line[3:].split(', '):
                    sections.setdefault(current, set()).add(sig.split()[0])
        for prog, _summary, names in _programs(cli.build_parser()):
            self.assertIn(prog, sections)
            self.assertTrue(set(names) <= sections[prog],
                            (prog, names, sections[prog]))
        # Cross-references read as text (no "<>" left by the writer).
        self.assertIn('Operations', roff)
        self.assertNotIn('<>', roff)

    def test_release_notes(self):
        if importlib.util.find_spec('reno') is None:
            self.skipTest('reno is not installed')
        # A clone has a .git directory, a git worktree a .git file.
        if not os.path.exists(os.path.join(TOP, '.git')):
            self.skipTest('reno reads notes from git; not a git checkout')
        lint = subprocess.run(
            [sys.executable, '-c',
             'import sys, reno.main; sys.exit(reno.main.main(sys.argv[1:]))',
             'lint'], cwd=TOP,
            capture_output=True, text=True, timeout=300)
        self.assertEqual(0, lint.returncode, lint.stdout + lint.stderr)
        out = self._build(os.path.join('releasenotes', 'source'))
        with open(os.path.join(out, 'index.html')) as f:
            self.assertIn('var repositoryName = "x/cinder-tintri"', f.read())
        # reno rendered the notes, among them the one about this build.
        text = ' '.join(_text(os.path.join(out, 'unreleased.html')).split())
        self.assertIn('The documentation and these release notes use '
                      'openstackdocstheme', text)
