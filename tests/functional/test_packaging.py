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
"""The package as operators get it: sdist, wheel, a venv with only cinder.

``python -m build`` on a clone of the checkout makes the sdist and, from
the sdist alone (no git), the wheel; a second wheel is built straight from
the checkout.  Both must carry the same version, files, entry points and
runtime requirements.  The wheel is then installed into a new virtualenv
that holds cinder 29.0.0 and nothing else, where the driver class must
import as cinder-volume imports it, ``oslo-config-generator`` must list
every option, both console scripts must run, and the simulator must serve.

Needs git, the network (PyPI, or pip's cache) and about a minute.
"""

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import fixtures
import testtools

from cinder_tintri import options

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CINDER = 'cinder==29.0.0'
TIMEOUT = 900
# What the driver needs at run time: requirements.txt, never test-only.
TEST_ONLY = ('hacking', 'stestr', 'fixtures', 'testtools', 'oslotest', 'ddt',
             'sphinx', 'reno', 'matplotlib', 'redis', 'build')


def _requirement_names(path):
    names = set()
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                names.add(_canonical(re.split(r'[<>=!~;\[ ]', line)[0]))
    return names


def _canonical(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def _run(args, **kwargs):
    kwargs.setdefault('timeout', TIMEOUT)
    proc = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise AssertionError('%s failed (%d):\n%s\n%s' % (
            ' '.join(args), proc.returncode, proc.stdout[-4000:],
            proc.stderr[-4000:]))
    return proc.stdout


class PackagingTest(testtools.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.path.isdir(os.path.join(TOP, '.git')) or \
                shutil.which('git') is None:
            raise testtools.TestCase.skipException(
                'needs a git checkout (pbr takes the version from git)')

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK='1',
                        PYTHONDONTWRITEBYTECODE='1')
        self.env.pop('PYTHONPATH', None)

    # -- building -----------------------------------------------------

    def _clone(self):
        src = os.path.join(self.tmp, 'src')
        _run(['git', 'clone', '-q', '--no-hardlinks', TOP, src])
        return src

    def _build(self, src, outdir, *what):
        _run([sys.executable, '-m', 'build', '-q'] + list(what)
             + ['--outdir', outdir, src], env=self.env, cwd=self.tmp)
        return sorted(os.listdir(outdir))

    @staticmethod
    def _wheel_facts(path):
        with zipfile.ZipFile(path) as whl:
            names = whl.namelist()
            info = [n for n in names if n.endswith('.dist-info/METADATA')][0]
            meta = email.parser.Parser().parsestr(whl.read(info).decode())
            eps = whl.read(info.replace('METADATA', 'entry_points.txt'))
        files = sorted(n for n in names if not n.startswith(
            os.path.dirname(info) + '/'))
        requires = sorted(r for r in meta.get_all('Requires-Dist') or []
                          if 'extra ==' not in r)
        return {'version': meta['Version'], 'name': meta['Name'],
                'files': files, 'requires': requires,
                'entry_points': eps.decode()}

    # -- the test -----------------------------------------------------

    def test_build_install_and_run_with_only_cinder(self):
        src = self._clone()
        version = _run([sys.executable, 'setup.py', '-q', '--version'],
                       cwd=src, env=self.env).strip().splitlines()[-1]

        # sdist, then a wheel built from the sdist alone (build's default)
        from_sdist = os.path.join(self.tmp, 'from-sdist')
        built = self._build(src, from_sdist)
        sdist = [b for b in built if b.endswith('.tar.gz')]
        wheel = [b for b in built if b.endswith('.whl')]
        self.assertEqual(1, len(sdist), built)
        self.assertEqual(1, len(wheel), built)
        with tarfile.open(os.path.join(from_sdist, sdist[0])) as tar:
            members = tar.getnames()
        self.assertFalse([m for m in members if '/.git/' in m])
        for needed in ('setup.cfg', 'setup.py', 'pyproject.toml',
                       'requirements.txt', 'PKG-INFO', 'README.rst',
                       'cinder_tintri/driver.py'):
            self.assertTrue([m for m in members if m.endswith('/' + needed)],
                            needed)
        # a wheel straight from the checkout
        from_git = os.path.join(self.tmp, 'from-git')
        git_wheel = self._build(src, from_git, '--wheel')
        self.assertEqual(wheel, git_wheel)

        facts = self._wheel_facts(os.path.join(from_sdist, wheel[0]))
        self.assertEqual(facts, self._wheel_facts(
            os.path.join(from_git, git_wheel[0])))
        self.assertEqual(version, facts['version'])
        self.assertEqual('cinder-tintri', facts['name'])
        self.assertIn('cinder_tintri/driver.py', facts['files'])
        self.assertIn('cinder_tintri/simulator/server.py', facts['files'])
        self.assertFalse([f for f in facts['files']
                          if f.startswith('tests/')], facts['files'])
        runtime = {_canonical(re.split(r'[<>=!~; ]', r)[0])
                   for r in facts['requires']}
        self.assertEqual(_requirement_names(
            os.path.join(TOP, 'requirements.txt')), runtime)
        self.assertFalse(runtime & set(TEST_ONLY))
        for entry in ('cinder_tintri = cinder_tintri.options:list_opts',
                      'cinder-tintri = cinder_tintri.cmd.cli:main',
                      'tintri-vmstore-sim = cinder_tintri.simulator.cmd:main'):
            self.assertIn(entry, facts['entry_points'])

        # a virtualenv with cinder 29 and nothing else, then the wheel
        venv = os.path.join(self.tmp, 'venv')
        _run([sys.executable, '-m', 'venv', venv])
        pip = [os.path.join(venv, 'bin', 'python'), '-m', 'pip']
        _run(pip + ['install', '-q', CINDER], env=self.env, cwd=self.tmp)
        before = self._freeze(pip)
        self.assertNotIn('cinder-tintri', before)
        _run(pip + ['install', '-q', os.path.join(from_sdist, wheel[0])],
             env=self.env, cwd=self.tmp)
        after = self._freeze(pip)
        added = set(after) - set(before)
        self.assertEqual({'cinder-tintri'}, added,
                         'the wheel needs more than cinder brings')
        self.assertEqual(version, after['cinder-tintri'])

        self._check_installed(venv)

    def _freeze(self, pip):
        out = _run(pip + ['list', '--format=json'], env=self.env,
                   cwd=self.tmp)
        return {_canonical(p['name']): p['version'] for p in json.loads(out)}

    def _check_installed(self, venv):
        bindir = os.path.join(venv, 'bin')
        python = os.path.join(bindir, 'python')
        # as cinder-volume loads volume_driver (from outside the source tree)
        out = _run([python, '-c', (
            'import json\n'
            'from oslo_utils import importutils\n'
            'from cinder.volume import driver\n'
            'cls = importutils.import_class('
            '"cinder_tintri.driver.TintriDriver")\n'
            'import cinder_tintri\n'
            'print(json.dumps({"file": cinder_tintri.__file__,\n'
            '    "vd": issubclass(cls, driver.BaseVD),\n'
            '    "manageable": issubclass(cls, driver.ManageableVD),\n'
            '    "version": cls.VERSION}))\n')],
            env=self.env, cwd=self.tmp)
        facts = json.loads(out.strip().splitlines()[-1])
        self.assertTrue(facts['file'].startswith(venv + os.sep), facts)
        self.assertTrue(facts['vd'])
        self.assertTrue(facts['manageable'])

        # every option, through the oslo.config.opts entry point
        sample = _run([os.path.join(bindir, 'oslo-config-generator'),
                       '--namespace', 'cinder_tintri'], env=self.env,
                      cwd=self.tmp)
        for _group, opts in options.list_opts():
            for opt in opts:
                self.assertIn('#%s = ' % opt.name, sample, opt.name)

        for script in ('cinder-tintri', 'tintri-vmstore-sim'):
            out = _run([os.path.join(bindir, script), '--help'],
                       env=self.env, cwd=self.tmp)
            self.assertIn('usage:', out)
        out = _run([os.path.join(bindir, 'cinder-tintri'), 'check', '--help'],
                   env=self.env, cwd=self.tmp)
        self.assertIn('--backend', out)

        # the simulator serves from the installed package (its TLS included)
        sim = subprocess.Popen(
            [os.path.join(bindir, 'tintri-vmstore-sim'), '--host',
             '127.0.0.1', '--port', '0', '--root',
             os.path.join(self.tmp, 'sim')],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=self.env, cwd=self.tmp)
        self.addCleanup(self._stop, sim)
        line = sim.stdout.readline()
        self.assertTrue(line, sim.stderr.read() if sim.poll() else '')
        ready = json.loads(line)
        self.assertTrue(ready['url'].startswith('https://127.0.0.1:'), ready)

    @staticmethod
    def _stop(proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
