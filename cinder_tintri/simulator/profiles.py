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
"""Simulator profiles: array generations as bundles of switch defaults.

``vmstore4``
    The removed upstream driver's era (VMstore 4.x) as the simulator has
    always behaved: lenient about endpoints, fields and inventory.
``vmstore6``
    DDN's VMstore >= 6.0.1.1, strict: only the official endpoints and
    fields, snapshots only of inventoried files, the 128-snapshot limit.

Every switch can be set on its own; ``None`` means the profile's default.
"""

PROFILES = ('vmstore4', 'vmstore6')
DELETE_MODES = ('accept', 'refuse_put', 'refuse')

DEFAULTS = {
    'vmstore4': {
        'strict_endpoints': False,
        'strict_fields': False,
        'require_inventory': False,
        'inventory_lag': 0.0,
        'snapshot_limit': 0,          # 0: no limit
        'delete_with_clones': 'refuse_put',
    },
    'vmstore6': {
        'strict_endpoints': True,
        'strict_fields': True,
        'require_inventory': True,
        'inventory_lag': 0.2,
        'snapshot_limit': 128,
        'delete_with_clones': 'refuse',
    },
}

SWITCHES = tuple(DEFAULTS['vmstore4'])


def resolve(profile='vmstore4', **switches):
    """The effective settings dict; ValueError on any bad value."""
    if profile not in PROFILES:
        raise ValueError('unknown simulator profile %r (use %s)'
                         % (profile, ' or '.join(PROFILES)))
    unknown = sorted(set(switches) - set(SWITCHES))
    if unknown:
        raise ValueError('unknown profile switch(es): %s'
                         % ', '.join(unknown))
    out = dict(DEFAULTS[profile])
    for key, value in switches.items():
        if value is not None:
            out[key] = value
    out['profile'] = profile
    for key in ('strict_endpoints', 'strict_fields', 'require_inventory'):
        if not isinstance(out[key], bool):
            raise ValueError('%s must be True or False, not %r'
                             % (key, out[key]))
    try:
        lag = float(out['inventory_lag'])
    except (TypeError, ValueError):
        raise ValueError('inventory_lag must be a number of seconds, not %r'
                         % (out['inventory_lag'],))
    if not lag >= 0:
        raise ValueError('inventory_lag must be >= 0, not %r' % (lag,))
    out['inventory_lag'] = lag
    limit = out['snapshot_limit']
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError('snapshot_limit must be an integer >= 0 (0: no '
                         'limit), not %r' % (limit,))
    if out['delete_with_clones'] not in DELETE_MODES:
        raise ValueError('delete_with_clones must be one of %s, not %r'
                         % (', '.join(DELETE_MODES),
                            out['delete_with_clones']))
    return out
