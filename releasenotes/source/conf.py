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
"""Sphinx configuration of the cinder-tintri release notes (reno).

Themed like the documentation (openstackdocstheme); ``tox -e
releasenotes`` and ``tests/unit/test_docs.py`` build it with warnings as
errors.  reno reads the notes from git, so this needs a git checkout (no
network).
"""

extensions = [
    'openstackdocstheme',
    'reno.sphinxext',
]

project = 'cinder-tintri Release Notes'
copyright = 'cinder-tintri developers'
author = 'cinder-tintri developers'

master_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
pygments_style = 'native'

# Release notes are not versioned by the package version (the theme turns
# auto-versioning off for a releasenotes/ directory anyway).
version = ''
release = ''

openstackdocs_repo_name = 'x/cinder-tintri'
openstackdocs_bug_project = 'cinder-tintri'
openstackdocs_bug_tag = 'releasenotes'
openstackdocs_auto_name = False
openstackdocs_use_storyboard = False

html_theme = 'openstackdocs'
html_static_path = []
# Not served from docs.openstack.org: no page views to its analytics.
html_theme_options = {'analytics_tracking_code': ''}
