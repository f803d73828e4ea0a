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

from importlib import metadata

from oslo_config import cfg
import testtools

from cinder_tintri import options


LEGACY = {
    # name: (type, default) of the removed in-tree driver's options.
    'tintri_server_hostname': (cfg.StrOpt, None),
    'tintri_server_username': (cfg.StrOpt, None),
    'tintri_server_password': (cfg.StrOpt, None),
    'tintri_api_version': (cfg.StrOpt, 'v310'),
    'tintri_image_cache_expiry_days': (cfg.IntOpt, 30),
    'tintri_image_shares_config': (cfg.StrOpt, None),
}


class OptionsTestCase(testtools.TestCase):

    def _opts(self):
        groups = options.list_opts()
        self.assertEqual(['backend_defaults'], [g for g, _ in groups])
        return groups[0][1]

    def test_every_option_has_help_and_prefix(self):
        opts = self._opts()
        self.assertGreater(len(opts), len(LEGACY))
        for opt in opts:
            self.assertTrue(opt.name.startswith('tintri_'), opt.name)
            self.assertGreater(len((opt.help or '').strip()), 20, opt.name)

    def test_names_unique(self):
        names = [o.name for o in self._opts()]
        self.assertEqual(len(names), len(set(names)))

    def test_legacy_options_keep_name_type_default(self):
        by_name = {o.name: o for o in self._opts()}
        for name, (opt_type, default) in LEGACY.items():
            self.assertIn(name, by_name)
            self.assertIsInstance(by_name[name], opt_type, name)
            self.assertEqual(default, by_name[name].default, name)
        self.assertTrue(by_name['tintri_server_password'].secret)

    def test_list_opts_returns_copies(self):
        first = self._opts()
        first[0].default = 'changed'
        self.assertNotEqual('changed', self._opts()[0].default)

    def test_registers_in_a_config(self):
        conf = cfg.ConfigOpts()
        conf.register_opts(self._opts(), group='tintri')
        conf([])
        self.assertEqual('v310', conf.tintri.tintri_api_version)
        self.assertTrue(conf.tintri.tintri_ssl_cert_verify)

    def test_entry_point_declared(self):
        eps = metadata.entry_points(group='oslo.config.opts')
        ours = [ep for ep in eps if ep.name == 'cinder_tintri']
        self.assertEqual(1, len(ours))
        self.assertIs(options.list_opts, ours[0].load())
