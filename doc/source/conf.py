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

Built with warnings as errors: ``tox -e docs``, or as a test,
``tests/unit/test_docs.py``.  The configuration reference is generated
from the option definitions by oslo.config's Sphinx extension, so the
package must be importable (installed, or in the source tree below).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join('..', '..')))

project = 'cinder-tintri'
copyright = 'cinder-tintri developers'
author = 'cinder-tintri developers'

extensions = [
    'oslo_config.sphinxext',
]

master_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build']
pygments_style = 'sphinx'

html_theme = 'alabaster'
html_static_path = []
html_title = 'cinder-tintri'
