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
"""The pools the backend reports: one per share, never failing as a whole.

Every share is a directory of the VMstore's one datastore, so each pool
reports the datastore: capacity from ``spaceTotalGiB`` and
``spaceRemainingPhysicalGiB`` and provisioned space from
``spaceProvisionedGiB`` of the official DatastoreStat
(``GET datastore/default/statsRealtime``).  One REST call per stats
update, whatever the number of files: walking the shares costs one NFS
round trip per file, 50,000 of them every minute on a large backend.
Over-subscription is then judged against what the whole datastore has
promised, including other shares and non-Cinder VMs, which is what its
free space depends on.

Only when the array cannot be asked, or does not report provisioned space,
do the pools fall back to the share: its ``df`` for capacity and the sum
of the apparent sizes of its files for provisioned space.  Anything that
cannot be read there - one file with a stale NFS handle, a share whose
``df`` fails - is skipped and logged: one bad file must not take every
pool out of scheduling.
"""

import os

from oslo_log import log as logging
from oslo_utils import units

from cinder_tintri import client as tclient
from cinder_tintri import share_files

LOG = logging.getLogger(__name__)


def provisioned_bytes(mount):
    """Sum of the apparent sizes of the files under ``mount``."""
    total = 0
    errors = []
    for root, dirs, files in os.walk(mount, onerror=errors.append):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(e)
    if errors:
        LOG.warning('Provisioned space of %(mount)s: skipped %(n)d entries '
                    'that could not be read, e.g. %(first)s: %(err)s',
                    {'mount': mount, 'n': len(errors),
                     'first': errors[0].filename,
                     'err': share_files.describe(errors[0])})
    return total


class PoolStats(object):
    """Builds the per-share pool list of the backend's stats.

    :param client: the VMstore client (datastore statistics).
    :param capacity_of: ``share -> (total bytes, free bytes, allocated)``,
        the share's ``df`` (RemoteFS ``_get_capacity_info``).
    :param mount_of: ``share -> mount point``.
    """

    def __init__(self, client, capacity_of, mount_of):
        self.client = client
        self.capacity_of = capacity_of
        self.mount_of = mount_of

    def datastore(self):
        try:
            return self.client.get_datastore_stats()
        except tclient.TintriError as e:
            LOG.warning('Cannot read VMstore capacity, using the share '
                        'instead: %s', e)
            return None

    def capacity(self, share, ds):
        """(total GiB, free GiB) of a pool; never raises."""
        if ds:
            return ds['total_gib'], ds['free_gib']
        try:
            total, free, _alloc = self.capacity_of(share)
        except Exception as e:
            LOG.warning('Cannot read the capacity of share %(share)s; '
                        'reporting it full: %(err)s',
                        {'share': share, 'err': e})
            return 0.0, 0.0
        return total / units.Gi, free / units.Gi

    def provisioned_gib(self, share, ds):
        """The pool's provisioned GiB: the datastore's, else the share's."""
        if ds and ds.get('provisioned_gib') is not None:
            return ds['provisioned_gib']
        return provisioned_bytes(self.mount_of(share)) / units.Gi

    def pools(self, shares, common):
        """One pool dict per share; ``common`` holds the shared keys."""
        ds = self.datastore()
        if ds and ds.get('provisioned_gib') is None:
            LOG.debug('The VMstore reports no spaceProvisionedGiB; summing '
                      'the file sizes on each share instead.')
        pools = []
        for share in shares:
            total_gb, free_gb = self.capacity(share, ds)
            pool = {
                'pool_name': share,
                'total_capacity_gb': round(total_gb, 2),
                'free_capacity_gb': round(free_gb, 2),
                'provisioned_capacity_gb': round(
                    self.provisioned_gib(share, ds), 2),
            }
            pool.update(common)
            pools.append(pool)
        return pools
