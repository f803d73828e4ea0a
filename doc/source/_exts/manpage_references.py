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
"""Cross-references in man pages with Docutils >= 0.22.

Docutils 0.22's man page translator sets ``visit_reference`` and
``depart_reference`` on the instance, which hides the methods Sphinx's
``ManualPageTranslator`` overrides them with: every ``:doc:`` or ``:ref:``
then comes out as ``Title <>`` (sphinx-doc/sphinx issue 14427, fix
proposed in pull request 14436).  This translator removes the instance
attributes again, so Sphinx prints the reference's text in italics, as
with older Docutils.  It changes nothing where the attributes are absent.
"""

from sphinx.writers import manpage


class ManualPageTranslator(manpage.ManualPageTranslator):

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.pop('visit_reference', None)
        self.__dict__.pop('depart_reference', None)
        self.defs.setdefault('reference', (r'\fI\%', r'\fP'))


def setup(app):
    app.set_translator('man', ManualPageTranslator, override=True)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
