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
"""Sphinx configuration of the cinder-tintri documentation.

Built with warnings as errors: ``tox -e docs`` (HTML and the man page), or
as a test, ``tests/unit/test_docs.py``.  The theme is openstackdocstheme,
as in every OpenStack project; the build needs no network (the theme reads
the version and git sha from the local checkout).  Two references are
generated from the code, so the package must be importable (installed, or
in the source tree below):

* the configuration reference, by oslo.config's Sphinx extension, from the
  option definitions;
* the command-line reference (``cli.rst``, also the ``cinder-tintri(1)``
  man page), by the local extension ``_exts/cli_reference.py``, from the
  argparse parsers.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join('..', '..')))
sys.path.insert(0, os.path.abspath('_exts'))

# -- General ---------------------------------------------------------------

extensions = [
    'openstackdocstheme',
    'oslo_config.sphinxext',
    'cli_reference',
    'manpage_references',
]

# openstackdocstheme takes the project name from setup.cfg and the version
# from pbr (git or the installed metadata).
project = 'cinder-tintri'
copyright = 'cinder-tintri developers'
author = 'cinder-tintri developers'

master_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
pygments_style = 'native'

# -- openstackdocstheme ----------------------------------------------------

openstackdocs_repo_name = 'x/cinder-tintri'
openstackdocs_bug_project = 'cinder-tintri'
openstackdocs_bug_tag = 'doc'
openstackdocs_auto_name = False
openstackdocs_use_storyboard = False

# -- HTML ------------------------------------------------------------------

html_theme = 'openstackdocs'
html_static_path = []
html_title = 'cinder-tintri'
# These pages are not served from docs.openstack.org: do not report page
# views to its analytics account.
html_theme_options = {'analytics_tracking_code': ''}

# -- Man pages ---------------------------------------------------------------

# (source start file, name, description, authors, manual section)
man_pages = [
    ('cli', 'cinder-tintri',
     'operator tools for the Tintri VMstore Cinder driver',
     [author], 1),
]
