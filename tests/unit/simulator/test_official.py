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
"""simulator/official.py against the official index and the routes.

The reference (``<repo>/../shared/reference/vmstore-api-v310-official.md``)
is read only here, and only when it exists; the simulator never reads it.
"""

import os
import re

import testtools

from cinder_tintri.simulator import official
from cinder_tintri.simulator import server

REFERENCE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..',
    'shared', 'reference', 'vmstore-api-v310-official.md')

_ROW = re.compile(r'^\| `(?P<path>[^`]+)` \| (?P<method>[A-Z]+) \| \w+ \|'
                  r'(?P<input>[^|]*)\|[^|]*\|(?P<errors>[^|]*)\|[^|]*\|$')
_DTO = re.compile(r'^### (?P<name>\S+)\n\n```\n(?P<body>.*?)\n```',
                  re.S | re.M)
_QUERY = re.compile(r'\(query: (\w+)\)')


def _errors(text):
    out = []
    for item in text.split(','):
        item = item.strip()
        if item:
            code, status = item.split('/')
            out.append((code, int(status)))
    return tuple(out)


def _routes():
    """(method, official template) of every route the simulator has."""
    out = set()
    for template, _regex, handlers, _auth in server.ROUTES:
        for method in handlers:
            out.add((method, server.official_template(template)))
    return out


class TableVsRoutesTest(testtools.TestCase):
    """Needs no reference: the table and the routes agree."""

    def test_every_table_entry_is_routed(self):
        routes = {(m, official.shape(t)) for m, t in _routes()}
        for method, template, _e, _q in (official.ENDPOINTS
                                         + official.EXTRA_ENDPOINTS):
            self.assertIn((method, official.shape(template)), routes)

    def test_every_route_is_official_extra_or_put(self):
        put = (official.PUT_SNAPSHOT[0],
               official.shape(official.PUT_SNAPSHOT[1]))
        for method, template in _routes():
            key = (method, official.shape(template))
            self.assertTrue(key in official.ALLOWED or key == put,
                            '%s %s is served but not in the table'
                            % (method, template))

    def test_put_snapshot_is_off_index(self):
        self.assertFalse(official.allowed(*official.PUT_SNAPSHOT))
        self.assertTrue(official.allowed(*official.PUT_SNAPSHOT,
                                         put_snapshot=True))


@testtools.skipUnless(os.path.exists(REFERENCE),
                      'official index not present at %s' % REFERENCE)
class TableVsReferenceTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        with open(REFERENCE, encoding='utf-8') as f:
            self.doc = f.read()
        self.index = {}
        for line in self.doc.splitlines():
            m = _ROW.match(line)
            if m:
                query = _QUERY.search(m.group('input'))
                self.index[(m.group('method'), m.group('path'))] = (
                    _errors(m.group('errors')),
                    query.group(1) if query else None)
        self.assertGreater(len(self.index), 300)   # the parse worked

    def test_endpoints_equal_the_index(self):
        """The table is the index, restricted to what is implemented."""
        implemented = {(m, official.shape(t)) for m, t in _routes()}
        expected = {(m, p): v for (m, p), v in self.index.items()
                    if (m, official.shape(p)) in implemented}
        table = {(m, t): (e, q) for m, t, e, q in official.ENDPOINTS}
        self.assertEqual(expected, table)

    def test_extras_are_not_in_the_index(self):
        shapes = {(m, official.shape(p)) for m, p in self.index}
        for method, template, _e, _why in official.EXTRA_ENDPOINTS:
            self.assertNotIn((method, official.shape(template)), shapes)
        self.assertNotIn((official.PUT_SNAPSHOT[0],
                          official.shape(official.PUT_SNAPSHOT[1])), shapes)
        # the index has GET and DELETE on snapshot/{tintriUuid}, no PUT
        self.assertIn(('GET', '/v310/snapshot/{tintriUuid}'), self.index)
        self.assertIn(('DELETE', '/v310/snapshot/{tintriUuid}'), self.index)

    def test_dto_tables_equal_the_reference(self):
        dtos = {}
        for m in _DTO.finditer(self.doc):
            dtos[m.group('name')] = frozenset(
                re.findall(r'^\s*"(\w+)":', m.group('body'), re.M))
        ns = 'com.tintri.api.rest.v310.dto.'
        for name, table in (
                ('Page', official.PAGE),
                ('Request', official.REQUEST),
                ('SnapshotFilterSpec', official.SNAPSHOT_FILTER_SPEC),
                ('VirtualDiskFilterSpec', official.VIRTUAL_DISK_FILTER_SPEC),
                ('VirtualMachineFilterSpec',
                 official.VIRTUAL_MACHINE_FILTER_SPEC),
                ('domain.Snapshot', official.SNAPSHOT),
                ('domain.VirtualDisk', official.VIRTUAL_DISK),
                ('domain.beans.TintriError', official.TINTRI_ERROR),
                ('domain.beans.vm.VirtualMachineQoSConfig',
                 official.VIRTUAL_MACHINE_QOS_CONFIG),
                ('domain.beans.filesystem.FileSystemInfo',
                 official.FILE_SYSTEM_INFO),
                ('domain.beans.perf.DatastoreStat', official.DATASTORE_STAT)):
            self.assertEqual(dtos[ns + name], table, name)
        self.assertEqual(
            dtos['com.tintri.api.rest.vcommon.dto.rbac.RestApiCredentials'],
            official.REST_API_CREDENTIALS)
        # PageFilterSpec is not in the extract: the inferred list is made
        # of fields every documented FilterSpec has
        self.assertNotIn(ns + 'PageFilterSpec', dtos)
        for spec in ('SnapshotFilterSpec', 'VirtualDiskFilterSpec',
                     'VirtualMachineFilterSpec'):
            self.assertLessEqual(official.PAGE_FILTER_SPEC, dtos[ns + spec])
