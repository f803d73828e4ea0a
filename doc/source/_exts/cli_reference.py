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
"""A command-line reference generated from an argparse parser.

::

    .. cli-reference:: cinder_tintri.cmd.cli:build_parser

imports the module, calls the function (or takes the attribute if it is
already a parser) and writes, for the program and then for each of its
subcommands (one section each): the description or the subcommand's help,
the usage line argparse prints, and one ``.. option::`` per argument, under
a ``.. program::`` of that command line.  So the HTML page, the man page
and Sphinx's index of options all come from the parser itself: an option
added to the code appears in the docs without editing them.
"""

import argparse
import importlib
import re

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.parsers.rst import directives
from docutils import statemachine
from sphinx.util import nodes as sphinx_nodes

# Section adornments for subcommands, by depth.
_ADORNMENTS = '~^"\''
_USAGE_WIDTH = 76
_SPECIAL = re.compile(r'([\\*`|_\[\]<>])')


def _escape(text):
    """``text`` as literal reStructuredText (no markup, no references)."""
    text = _SPECIAL.sub(r'\\\1', ' '.join(text.split()))
    if text and not text[0].isalnum() and text[0] != '\\':
        text = '\\' + text
    return text


def load_parser(spec):
    """``module:attribute`` -> the parser (called if it is a builder)."""
    module_name, _sep, attr = spec.partition(':')
    if not attr:
        raise ValueError('expected module:function, got %r' % spec)
    module = importlib.import_module(module_name)
    obj = getattr(module, attr)
    if not isinstance(obj, argparse.ArgumentParser):
        obj = obj()
    return module, obj


def subcommands(parser):
    """``[(name, help, subparser)]`` in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return [(c.dest, c.help or '', action.choices[c.dest])
                    for c in action._choices_actions]
    return []


def _formatter(parser):
    return argparse.HelpFormatter(prog=parser.prog, width=_USAGE_WIDTH)


def _usage(parser):
    fmt = _formatter(parser)
    fmt.add_usage(parser.usage, parser._actions,
                  parser._mutually_exclusive_groups)
    return fmt.format_help().rstrip('\n')


def _metavar(action):
    metavar = action.metavar or action.dest
    if isinstance(metavar, tuple):
        metavar = metavar[0]
    return '<%s>' % metavar.lower().replace('_', '-')


def option_signature(action):
    """What follows ``.. option::`` for one argument."""
    if not action.option_strings:
        return (action.metavar or action.dest).lower()
    if action.nargs == 0:
        return ', '.join(action.option_strings)
    value = _metavar(action)
    if action.nargs == argparse.OPTIONAL:
        value = '[%s]' % value
    elif action.nargs == argparse.ZERO_OR_MORE:
        value = '[%s ...]' % value
    elif action.nargs == argparse.ONE_OR_MORE:
        value = '%s [%s ...]' % (value, value)
    elif isinstance(action.nargs, int) and action.nargs > 1:
        value = ' '.join([value] * action.nargs)
    return ', '.join('%s %s' % (o, value) for o in action.option_strings)


def _option_help(parser, action):
    text = _formatter(parser)._expand_help(action) if action.help else ''
    lines = [_escape(text)] if text else []
    if action.choices is not None:
        lines.append('Choices: %s.' % ', '.join(
            '``%s``' % c for c in action.choices))
    if (action.option_strings and action.nargs != 0
            and action.default not in (None, argparse.SUPPRESS)
            and 'default' not in text.lower()):
        lines.append('Default: ``%s``.' % (action.default,))
    return lines or ['(no description)']


def _is_documented(action):
    return (action.help is not argparse.SUPPRESS
            and not isinstance(action, argparse._SubParsersAction))


def _option_lines(parser, actions):
    for action in actions:
        if not _is_documented(action):
            continue
        yield '.. option:: %s' % option_signature(action)
        yield ''
        for line in _option_help(parser, action):
            yield '   ' + line
            yield ''


def program_lines(parser, summary=None, depth=0):
    """reStructuredText for ``parser`` and, recursively, its subcommands."""
    yield '.. program:: %s' % parser.prog
    yield ''
    text = parser.description or summary
    if text:
        yield _escape(text)
        yield ''
    yield '.. code-block:: text'
    yield ''
    for line in _usage(parser).splitlines():
        yield '   ' + line
    yield ''

    groups = [(None, None, parser._positionals._group_actions),
              (None, None, parser._optionals._group_actions)]
    groups += [(g.title, g.description, g._group_actions)
               for g in parser._action_groups
               if g not in (parser._positionals, parser._optionals)]
    for title, description, actions in groups:
        if not any(_is_documented(a) for a in actions):
            continue
        if title:
            yield '.. rubric:: %s' % _escape(title.capitalize())
            yield ''
        if description:
            yield _escape(description)
            yield ''
        for line in _option_lines(parser, actions):
            yield line

    subs = subcommands(parser)
    if subs:
        yield '.. rubric:: Commands'
        yield ''
        for name, help_text, _sub in subs:
            yield '``%s``' % name
            yield '   %s' % (_escape(help_text) or '(no description)')
        yield ''
    for name, help_text, sub in subs:
        title = sub.prog
        yield title
        yield _ADORNMENTS[depth] * len(title)
        yield ''
        for line in program_lines(sub, help_text, depth + 1):
            yield line


class CliReference(Directive):
    """``.. cli-reference:: module:parser_builder``."""

    required_arguments = 1
    has_content = False
    option_spec = {'prog': directives.unchanged}

    def run(self):
        module, parser = load_parser(self.arguments[0])
        if 'prog' in self.options:
            parser.prog = self.options['prog']
        settings = self.state.document.settings
        if getattr(module, '__file__', None):
            settings.record_dependencies.add(module.__file__)
        lines = statemachine.StringList()
        for line in program_lines(parser):
            lines.append(line, '<cli-reference %s>' % self.arguments[0])
        container = nodes.section()
        container.document = self.state.document
        sphinx_nodes.nested_parse_with_titles(self.state, lines, container)
        return container.children


def setup(app):
    app.add_directive('cli-reference', CliReference)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
