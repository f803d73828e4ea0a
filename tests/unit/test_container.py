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
"""The container examples: contrib/container/Containerfile, the kolla override.

Linted always (instructions parsed, the kolla template rendered with
Jinja2 against a stand-in parent template); the Containerfile is also
built and run when a working container tool (docker or podman) and the
base image are available, otherwise that test is skipped and says why.
"""

import os
import re
import shutil
import subprocess
import sys

import fixtures
import jinja2
import testtools

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONTAINERFILE = os.path.join(TOP, 'contrib', 'container', 'Containerfile')
KOLLA = os.path.join(TOP, 'contrib', 'kolla', 'template-overrides.j2')
KNOWN = {'FROM', 'ARG', 'RUN', 'COPY', 'USER', 'LABEL', 'ENV', 'WORKDIR',
         'ENTRYPOINT', 'CMD'}


def instructions(path):
    """[(KEYWORD, argument)] with continuations joined, comments dropped."""
    result, current = [], ''
    with open(path) as f:
        for raw in f:
            line = raw.rstrip('\n')
            if not current and (not line.strip()
                                or line.lstrip().startswith('#')):
                continue
            if line.endswith('\\'):
                current += line[:-1] + ' '
                continue
            current += line
            keyword, _sep, arg = current.strip().partition(' ')
            result.append((keyword, ' '.join(arg.split())))
            current = ''
    if current:
        raise AssertionError('dangling line continuation in %s' % path)
    return result


class ContainerfileLintTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.steps = instructions(CONTAINERFILE)

    def args(self, keyword):
        return [a for k, a in self.steps if k == keyword]

    def test_only_known_instructions_no_remote_add(self):
        self.assertEqual([], [k for k, _a in self.steps if k not in KNOWN])

    def test_base_is_a_pinned_cinder_volume_image(self):
        self.assertEqual(('ARG', 'FROM'),
                         (self.steps[0][0], self.steps[1][0]))
        name, _eq, default = self.steps[0][1].partition('=')
        self.assertEqual('BASE', name)
        self.assertEqual('${BASE}', self.steps[1][1])
        self.assertIn('cinder-volume:', default)
        tag = default.rsplit(':', 1)[1]
        self.assertTrue(tag.startswith('2026.2'), tag)   # cinder 29

    def test_installs_only_the_wheel_and_checks_it(self):
        copy, = self.args('COPY')
        self.assertTrue(copy.startswith('dist/cinder_tintri-'), copy)
        self.assertIn('.whl', copy)
        run, = self.args('RUN')
        self.assertRegex(run, r'pip install [^&]*--no-deps')
        self.assertIn('--no-index', run)
        self.assertIn('--no-cache-dir', run)
        self.assertIn('pip check', run)
        self.assertIn("import_class('cinder_tintri.driver.TintriDriver')",
                      run)
        self.assertIn('oslo-config-generator --namespace cinder_tintri', run)
        self.assertIn('rm -rf /tmp/wheels', run)

    def test_runs_as_the_cinder_user(self):
        self.assertEqual('cinder', self.args('USER')[-1])

    def test_build_instructions_match_the_copy(self):
        with open(CONTAINERFILE) as f:
            text = f.read()
        outdir = re.search(r'--outdir (\S+)', text).group(1)
        context = re.search(r'-t \S+ (\S+)\s*$', text, re.M).group(1)
        copy_src = self.args('COPY')[0].split()[0]
        self.assertEqual(os.path.normpath(outdir),
                         os.path.normpath(os.path.join(
                             context, os.path.dirname(copy_src))))

    def test_hadolint_when_installed(self):
        tool = shutil.which('hadolint')
        if tool is None:
            self.skipTest('hadolint is not installed')
        proc = subprocess.run([tool, '--ignore', 'DL3002', CONTAINERFILE],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)


class KollaOverrideTest(testtools.TestCase):
    """The override renders as kolla-build renders it (stand-in parent)."""

    def test_renders_the_pip_install_into_the_cinder_volume_footer(self):
        with open(KOLLA) as f:
            override = f.read()
        parent = ('FROM base\n'
                  '{% block cinder_volume_header %}{% endblock %}\n'
                  'RUN install cinder\n'
                  '{% block cinder_volume_footer %}{% endblock %}\n'
                  'USER cinder\n')
        env = jinja2.Environment(loader=jinja2.DictLoader(
            {'cinder-volume/Dockerfile.j2': parent, 'override.j2': override}),
            undefined=jinja2.StrictUndefined)
        asked = []

        def customizable(values, name):
            asked.append(name)
            return values

        class Macros(object):
            @staticmethod
            def install_pip(packages, constraints=True):
                return 'pip install %s' % ' '.join(packages)

        env.filters['customizable'] = customizable
        text = env.get_template('override.j2').render(
            parent_template='cinder-volume/Dockerfile.j2', macros=Macros)
        lines = [line for line in text.splitlines() if line.strip()]
        self.assertEqual(['FROM base', 'RUN install cinder',
                          'RUN pip install cinder-tintri', 'USER cinder'],
                         lines)
        self.assertEqual(['pip_packages'], asked)


class ContainerBuildTest(testtools.TestCase):
    """Build and run the image where a container tool works."""

    def _tool(self):
        for name in ('podman', 'docker'):
            path = shutil.which(name)
            if not path:
                continue
            try:
                ok = subprocess.run([path, 'info'], capture_output=True,
                                    timeout=60).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                return path
        self.skipTest('no working container tool (docker or podman with '
                      'its daemon or socket); the Containerfile is linted '
                      'only')

    def test_build_and_import(self):
        tool = self._tool()
        base = instructions(CONTAINERFILE)[0][1].partition('=')[2]
        pull = subprocess.run([tool, 'pull', base], capture_output=True,
                              text=True, timeout=1800)
        if pull.returncode != 0:
            self.skipTest('base image %s cannot be pulled here: %s'
                          % (base, pull.stderr.strip()[-300:]))
        tmp = self.useFixture(fixtures.TempDir()).path
        context = os.path.join(tmp, 'context')
        shutil.copytree(os.path.dirname(CONTAINERFILE), context)
        subprocess.run([sys.executable, '-m', 'build', '-q', '--wheel',
                        '--outdir', os.path.join(context, 'dist'), TOP],
                       check=True, timeout=900)
        tag = 'cinder-tintri-test:%d' % os.getpid()
        subprocess.run([tool, 'build', '-q', '-t', tag, context], check=True,
                       timeout=1800)
        self.addCleanup(subprocess.run, [tool, 'rmi', '-f', tag],
                        capture_output=True, timeout=300)
        out = subprocess.run(
            [tool, 'run', '--rm', '--entrypoint', '', tag,
             '/var/lib/kolla/venv/bin/python', '-c',
             'import cinder_tintri.driver as d; print(d.__file__)'],
            capture_output=True, text=True, timeout=600, check=True)
        self.assertIn('/var/lib/kolla/venv/', out.stdout)
