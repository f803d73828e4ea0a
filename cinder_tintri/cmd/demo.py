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
"""The README demo (placeholder until the simulator and driver land)."""

import sys

from cinder_tintri import options


def main(argv=None):
    print('cinder-tintri demo')
    print('The driver is not complete yet; these options exist:')
    for _group, opts in options.list_opts():
        for opt in opts:
            print('  %s' % opt.name)
    return 0


if __name__ == '__main__':
    sys.exit(main())
