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
"""Snapshot listing: Tintri paging, filters and sorting at scale."""

import calendar
import time
from urllib import parse

from tests.unit.simulator import base


class PagingTest(base.SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_sim(page_size=500)
        self.s = self.session(self.sim)

    def page(self, query=''):
        r = self.call(self.s, self.sim, 'GET', '/snapshot' +
                      ('?' + query if query else ''))
        self.assertEqual(200, r.status_code, r.text)
        return r.json()

    def walk(self, query=''):
        """Read every page by following ``next``; return (items, pages)."""
        pages = [self.page(query)]
        while 'next' in pages[-1]:
            self.assertLess(len(pages), 1000)
            pages.append(self.page(pages[-1]['next']))
        return [i for p in pages for i in p['items']], pages

    def test_page_object_shape(self):
        self.sim.seed_snapshots(1200)
        first = self.page()
        self.assertEqual(
            {'typeId', 'items', 'filteredTotal', 'total', 'absoluteTotal',
             'limit', 'offset', 'page', 'pageTotal', 'next'},
            set(first))
        self.assertEqual(base.PAGE_TYPE, first['typeId'])
        self.assertEqual(500, first['limit'])
        self.assertEqual(0, first['offset'])
        self.assertEqual(1, first['page'])
        self.assertEqual(3, first['pageTotal'])
        self.assertEqual(1200, first['filteredTotal'])
        self.assertEqual(1200, first['total'])
        self.assertEqual(1200, first['absoluteTotal'])
        self.assertEqual('offset=500&limit=500', first['next'])

    def test_walk_thousands(self):
        uuids = self.sim.seed_snapshots(5003)
        items, pages = self.walk()
        self.assertEqual(11, len(pages))
        self.assertEqual(uuids, [i['uuid']['uuid'] for i in items])
        for n, p in enumerate(pages, 1):
            self.assertEqual(n, p['page'])
            self.assertEqual(11, p['pageTotal'])
            self.assertEqual(5003, p['filteredTotal'])
            self.assertEqual((n - 1) * 500, p['offset'])
        self.assertNotIn('next', pages[-1])
        self.assertEqual(3, len(pages[-1]['items']))
        self.assertEqual(11, self.sim.request_counts()[
            'GET /api/v310/snapshot'])

    def test_client_limit_and_filters_echoed(self):
        self.sim.seed_snapshots(300, description_prefix='image-a')
        self.sim.seed_snapshots(300, description_prefix='other')
        items, pages = self.walk('contain=image-&limit=70&sortOrder=DESC'
                                 '&sortedBy=createTime')
        self.assertEqual(300, len(items))
        self.assertEqual(5, len(pages))
        self.assertTrue(all(p['limit'] == 70 for p in pages))
        nxt = dict(parse.parse_qsl(pages[0]['next']))
        self.assertEqual({'offset': '70', 'limit': '70', 'contain': 'image-',
                          'sortOrder': 'DESC', 'sortedBy': 'createTime'},
                         nxt)
        times = [i['createTime'] for i in items]
        self.assertEqual(sorted(times, reverse=True), times)
        self.assertEqual(300, pages[0]['filteredTotal'])
        self.assertEqual(600, pages[0]['total'])

    def test_limit_capped_by_page_size(self):
        self.sim.seed_snapshots(600)
        p = self.page('limit=5000')
        self.assertEqual(500, p['limit'])
        self.assertEqual(500, len(p['items']))

    def test_page_parameter(self):
        uuids = self.sim.seed_snapshots(250)
        p = self.page('limit=100&page=3')
        self.assertEqual(200, p['offset'])
        self.assertEqual(3, p['page'])
        self.assertNotIn('next', p)
        self.assertEqual(uuids[200:], [i['uuid']['uuid'] for i in p['items']])
        self.assertIn('prev', p)

    def test_empty(self):
        p = self.page()
        self.assertEqual([], p['items'])
        self.assertEqual(0, p['filteredTotal'])
        self.assertEqual(0, p['pageTotal'])
        self.assertNotIn('next', p)

    def test_bad_parameters(self):
        for query in ('limit=0', 'limit=x', 'offset=-1', 'page=0',
                      'sortOrder=UP', 'hasClone=maybe', 'since=yesterday',
                      'sortedBy=nonsense'):
            r = self.call(self.s, self.sim, 'GET', '/snapshot?' + query)
            self.assertError(r, 400, 'ERR-API-4003')

    def test_filters(self):
        a = self.sim.seed_snapshots(5, vm_name='vm-a', vmUuid='UUID-A',
                                    description_prefix='alpha')
        b = self.sim.seed_snapshots(
            3, vm_name='image-b', vmUuid='UUID-B', description_prefix='beta',
            type='USER_GENERATED_SNAPSHOT', consistency='VM_CONSISTENT')

        def uuids(query):
            return [i['uuid']['uuid'] for i in self.walk(query)[0]]

        self.assertEqual(a, uuids('vmUuid=UUID-A'))
        self.assertEqual(b, uuids('contain=IMAGE-'))  # vmName, any case
        self.assertEqual(a[2:3], uuids('contain=alpha-000002'))
        self.assertEqual(b, uuids('type=USER_GENERATED_SNAPSHOT'))
        self.assertEqual(a + b, uuids('type=USER_GENERATED_SNAPSHOT,'
                                      'CINDER_GENERATED_SNAPSHOT'))
        self.assertEqual(a, uuids('type=CINDER_GENERATED_SNAPSHOT'
                                  '&consistency=CRASH_CONSISTENT'))
        self.assertEqual(a + b, uuids('hasClone=Both'))
        self.assertEqual([], uuids('hasClone=YES'))
        self.assertEqual([], uuids('deleted=TRUE'))

    def test_since_until(self):
        base_ms = calendar.timegm((2024, 1, 1, 0, 0, 0)) * 1000
        for day in range(10):
            self.sim.seed_snapshots(1, description_prefix='d%d' % day,
                                    createTime=base_ms + day * 86400000)

        def count(query):
            return self.page(query)['filteredTotal']

        self.assertEqual(10, count('since=1970-01-01T00:00:00'))
        self.assertEqual(5, count('since=1970-01-01T00:00:00'
                                  '&until=2024-01-05T00:00:00'))
        self.assertEqual(5, count('until=2024-01-05T00:00:00.000Z'))
        self.assertEqual(4, count('until=2024-01-05T00:00:00.000%2B01:00'))
        # an unencoded '+' arrives as a space; tolerated
        self.assertEqual(4, count('until=2024-01-05T00:00:00.000+01:00'))
        self.assertEqual(3, count('since=2024-01-08T00:00:00.000-0000'))
        # the upstream driver's image cache cleanup query
        self.assertEqual(10, count(
            'sortedBy=createTime&target=SNAPSHOT&consistency=CRASH_CONSISTENT'
            '&hasClone=No&type=CINDER_GENERATED_SNAPSHOT&contain=d&limit=100'
            '&page=1&sortOrder=DESC&since=1970-01-01T00:00:00&until=%s'
            % time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())))

    def test_seed_ten_thousand_and_list(self):
        uuids = self.sim.seed_snapshots(10000, deletionPolicy='DELETE_ON_'
                                        'ZERO_CLONE_REFERENCES')
        self.assertEqual(10000, len(set(uuids)))
        inv = self.sim.inventory()
        self.assertEqual(10000, len(inv['snapshots']))
        self.assertEqual(1, len(base.os.listdir(
            base.os.path.join(self.sim.root, '.snapshots'))))
        p = self.page('contain=seed-009999')
        self.assertEqual([uuids[-1]], [i['uuid']['uuid'] for i in p['items']])
        r = self.call(self.s, self.sim, 'GET', '/snapshot/' + uuids[5000])
        self.assertEqual(200, r.status_code)

    def test_seed_with_file_clones(self):
        self.make_file(self.sim, 'cinder/volume-s', b'seeded')
        uuids = self.sim.seed_snapshots(3, file='cinder/volume-s')
        self.assertEqual(200, self.clone(self.s, self.sim, uuids[1],
                                         'cinder/c').status_code)
        path = base.os.path.join(self.sim.datastore, 'cinder', 'c',
                                 'volume-s')
        self.assertEqual(b'seeded', self.read_at(path, 0, 6))
        # shared data survives deleting other seeded snapshots
        for u in (uuids[0], uuids[2]):
            self.assertEqual(200, self.call(self.s, self.sim, 'DELETE',
                                            '/snapshot/' + u).status_code)
        self.assertEqual(1, len(base.os.listdir(
            base.os.path.join(self.sim.root, '.snapshots'))))

    def test_vm_and_vdisk_paging(self):
        for i in range(7):
            self.make_file(self.sim, 'cinder/volume-%d' % i, b'x')
        sim = self.sim
        r = self.call(self.s, sim, 'GET', '/virtualDisk?limit=3')
        pages = [r.json()]
        while 'next' in pages[-1]:
            pages.append(self.call(self.s, sim, 'GET', '/virtualDisk?'
                                   + pages[-1]['next']).json())
        self.assertEqual(3, len(pages))
        self.assertEqual(7, len({i['path'] for p in pages
                                 for i in p['items']}))
