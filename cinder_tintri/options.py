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
"""Configuration options of the Tintri VMstore driver.

The first six options are those of the removed in-tree Tintri driver
(cinder <= Stein) and keep their names, types, defaults and meaning, so an
operator can switch by changing only ``volume_driver``.  Everything added
since follows the same ``tintri_`` prefix.
"""

import copy

from oslo_config import cfg

# Options of the removed in-tree driver: names and meaning are a contract.
legacy_opts = [
    cfg.StrOpt('tintri_server_hostname',
               help='The hostname (or IP address) of the Tintri VMstore '
                    'REST API endpoint.'),
    cfg.StrOpt('tintri_server_username',
               help='User name for the Tintri VMstore REST API.'),
    cfg.StrOpt('tintri_server_password',
               secret=True,
               help='Password for the Tintri VMstore REST API.'),
    cfg.StrOpt('tintri_api_version',
               default='v310',
               help='API version for the storage system. Only the v310 '
                    'API family is supported.'),
    cfg.IntOpt('tintri_image_cache_expiry_days',
               default=30,
               min=0,
               help='Delete unused image snapshots older than this many '
                    'days. 0 disables age based cleanup.'),
    cfg.StrOpt('tintri_image_shares_config',
               help='Path to a file listing the NFS shares (one per line, '
                    'host:/export) on which Glance images live, so that '
                    'images stored on this VMstore can be cloned directly. '
                    'Volumes are only ever cloned from these shares, never '
                    'from a volume share; an image share that is, holds or '
                    'lies inside a volume share is ignored.'),
]

# Connection behaviour of the REST client.
connection_opts = [
    cfg.PortOpt('tintri_server_port',
                default=443,
                help='TCP port of the VMstore REST API endpoint.'),
    cfg.BoolOpt('tintri_ssl_cert_verify',
                default=True,
                help='Verify the VMstore TLS certificate. Verification is '
                     'on by default; set driver_ssl_cert_path to a CA '
                     'bundle for arrays with a private CA. Turning it off '
                     'exposes the API password to anyone on the path.'),
    cfg.BoolOpt('tintri_use_https',
                default=True,
                help='Talk HTTPS to the VMstore. Plain HTTP exists only '
                     'for test setups and sends the password in clear.'),
    cfg.FloatOpt('tintri_connect_timeout',
                 default=10.0,
                 min=0.1,
                 help='Seconds one attempt may wait to establish the TCP '
                      'connection to the VMstore REST API, and for each '
                      'step of the TLS handshake. Also capped by '
                      'tintri_request_timeout.'),
    cfg.FloatOpt('tintri_read_timeout',
                 default=60.0,
                 min=0.1,
                 help='Seconds one attempt may wait for the next data from '
                      'the VMstore once the request is sent: the status '
                      'line, and then each further piece of the answer. '
                      'It bounds every single wait, not the whole answer: '
                      'an answer that trickles in byte by byte is bounded '
                      'by tintri_request_timeout instead.'),
    cfg.FloatOpt('tintri_request_timeout',
                 default=90.0,
                 min=0.1,
                 help='Total seconds one attempt of a REST request may '
                      'take: connecting, sending, and receiving the status '
                      'line, the headers and the whole body. An attempt '
                      'still running then is cut off and counts as a '
                      'timeout (retried or reconciled like one). Each '
                      'attempt is further limited to what is left of '
                      'tintri_api_retry_deadline.'),
    cfg.IntOpt('tintri_api_retries',
               default=5,
               min=0,
               help='How many times one REST operation is attempted again '
                    'after a retryable failure (connection error, timeout, '
                    'HTTP 429/502/503/504, e.g. 503 ERR-API-9013 snapshot '
                    'inventory busy), with capped exponential backoff and '
                    'jitter; 0 means one attempt only. A request the array '
                    'may have carried out is never sent twice: it is '
                    'looked up instead. Also bounded by '
                    'tintri_api_retry_deadline.'),
    cfg.FloatOpt('tintri_api_retry_deadline',
                 default=120.0,
                 min=1.0,
                 help='Total seconds one REST operation may take, from its '
                      'first attempt to its last, including the waits '
                      'between attempts, a re-login and any look-up of '
                      'the effect of a request whose answer was lost. No '
                      'attempt starts or continues past it.'),
    cfg.FloatOpt('tintri_auth_retry_interval',
                 default=300.0,
                 min=0.0,
                 help='After the VMstore rejected the login (wrong or '
                      'rotated password), seconds during which no new '
                      'login is tried: calls fail at once with an error '
                      'naming the user, without contacting the array. '
                      'Arrays lock an account after a few failed logins, '
                      'and retrying on every call would lock out the '
                      'account the driver shares with other tools. A '
                      'restart of the service, or new credentials, start '
                      'afresh. 0 retries the login on every call.'),
    cfg.IntOpt('tintri_api_page_size',
               default=500,
               min=1,
               max=2000,
               help='Items requested per page when listing snapshots.'),
    cfg.IntOpt('tintri_api_max_pages',
               default=1000,
               min=1,
               help='Upper bound on pages read from one listing; a listing '
                    'with more pages fails instead of looping forever.'),
]

# Image cache behaviour.
image_cache_opts = [
    cfg.IntOpt('tintri_image_cache_cleanup_interval',
               default=3600,
               min=0,
               help='Seconds between image-cache cleanup runs. 0 disables '
                    'the periodic cleanup.'),
    cfg.IntOpt('tintri_image_cache_free_space_start',
               default=10,
               min=0,
               max=100,
               help='When the free space of the datastore falls below '
                    'this percentage, unreferenced image snapshots are '
                    'deleted, least recently used first...'),
    cfg.IntOpt('tintri_image_cache_free_space_stop',
               default=20,
               min=0,
               max=100,
               help='...until the free space is back above this '
                    'percentage.'),
    cfg.IntOpt('tintri_image_cache_cleanup_timeout',
               default=300,
               min=1,
               help='Upper bound in seconds on one image-cache cleanup '
                    'run.'),
    cfg.BoolOpt('tintri_image_trust_provider_location',
                default=False,
                help='Also clone volumes from the file named by an image\'s '
                     '"provider_location" property (an nfs:// URL). Image '
                     'owners set that property themselves, so with this on '
                     'any user who may create images chooses which file a '
                     'new volume is cloned from. Enable it only when every '
                     'image owner is trusted (for example, only '
                     'administrators may create images). Even then only '
                     'regular files on the shares of '
                     'tintri_image_shares_config, with the image\'s size, '
                     'are used. Off by default: only the locations Glance '
                     'itself reports (direct_url and locations) are used.'),
    cfg.BoolOpt('tintri_image_write_once',
                default=True,
                help='On an image-cache miss, download a raw, bare, '
                     'unsigned image straight into the file that becomes '
                     'the array\'s cache snapshot (one write of the image, '
                     'checked as Cinder checks a download: format, backing '
                     'file, virtual size, byte count) instead of letting '
                     'Cinder download it to image_conversion_dir and '
                     'convert it into the volume (two writes). Other images '
                     'always take Cinder\'s path.'),
    cfg.IntOpt('tintri_image_lock_timeout',
               default=1800,
               min=0,
               help='Seconds a request for an uncached image waits while '
                    'another request (on this or another cinder-volume '
                    'host) downloads the same image into the array image '
                    'cache. When the wait times out the request downloads '
                    'the image on its own without caching it. 0 means do '
                    'not wait.'),
]

# How the driver speaks to the two VMstore generations.
inventory_opts = [
    cfg.StrOpt('tintri_inventory_mode',
               default='auto',
               choices=[
                   ('auto', 'Start with the direct form; switch to '
                            '"refresh" for the rest of the service\'s '
                            'life once the array refuses a snapshot of a '
                            'file it has not inventoried and the refresh '
                            'form works.'),
                   ('direct', 'Snapshot files the array has never '
                              'inventoried, naming them by the Cinder '
                              'volume id (VMstore 4.x, the removed '
                              'in-tree driver).'),
                   ('refresh', 'Ask the array to inventory the file '
                               '(cinder/host/refresh), look it up as a '
                               'virtual disk and snapshot the VM it '
                               'belongs to (VMstore >= 6.0.1.1, DDN\'s '
                               'drivers).')],
               help='How snapshots name the file they are taken of.'),
    cfg.HostAddressOpt('tintri_openstack_hostname',
                       help='Host name (or address) of the OpenStack '
                            'endpoint the VMstore is registered with as a '
                            'hypervisor manager; sent with every inventory '
                            'refresh (refresh protocol). Without it the '
                            'host of [keystone_authtoken] '
                            'www_authenticate_uri is used; a refresh '
                            'without either fails with an error naming '
                            'this option.'),
    cfg.StrOpt('tintri_openstack_region',
               default='RegionOne',
               help='OpenStack region sent with an inventory refresh '
                    '(refresh protocol).'),
    cfg.FloatOpt('tintri_inventory_timeout',
                 default=30.0,
                 min=1.0,
                 help='Seconds to wait for the VMstore to list a refreshed '
                      'file as a virtual disk before the operation fails '
                      '(refresh protocol). The wait polls with capped '
                      'exponential backoff and refreshes once more at half '
                      'time.'),
]

# Volumes from snapshots of another Tintri backend (another VMstore).
cross_array_opts = [
    cfg.StrOpt('tintri_cross_array_mode',
               default='auto',
               choices=[
                   ('auto', 'Ask the source array to copy the snapshot '
                            'through a replication path to this array; '
                            'without one (or when the array refuses), '
                            'copy it on this host between the two '
                            'mounted shares.'),
                   ('replication', 'Only through a replication path; '
                                   'fail without one.'),
                   ('host_copy', 'Always copy on this host.'),
                   ('disabled', 'Refuse volumes from snapshots of another '
                                'array.')],
               help='How a volume is created from a snapshot held by '
                    'another Tintri backend\'s array (cinder places it '
                    'there only with snapshot_same_host = False). The '
                    'source backend\'s section must be in this service\'s '
                    'configuration: its credentials are read from it.'),
    cfg.FloatOpt('tintri_cross_array_timeout',
                 default=3600.0,
                 min=1.0,
                 help='Seconds a cross-array copy may take: the wait for '
                      'the array\'s remote-copy task (cancelled when it '
                      'passes) or the host copy.'),
    cfg.FloatOpt('tintri_task_poll_interval',
                 default=2.0,
                 min=0.05,
                 help='Seconds between two polls of a VMstore task.'),
]

# Encrypted (LUKS) volumes.
encryption_opts = [
    cfg.IntOpt('tintri_luks_iter_time',
               default=2000,
               min=1,
               help='Milliseconds of key derivation (PBKDF2) that '
                    'qemu-img spends on the key slot of a new encrypted '
                    'volume\'s LUKS header (qemu\'s iter-time; 2000 is its '
                    'default). Every open of the volume (Nova attaching '
                    'it, the driver writing an image into it) spends about '
                    'as long. The passphrase is a random key from Cinder\'s '
                    'key manager, not a word a person chose, so a lower '
                    'value does not make it easier to guess.'),
]

qos_opts = [
    cfg.BoolOpt('tintri_qos_enabled',
                default=False,
                help='Map back-end QoS specs of volume types (consumer '
                     '"back-end" or "both"; keys minIOPS, maxIOPS, '
                     'minIOPSperGiB, maxIOPSperGiB) onto the VMstore VM of '
                     'each volume file (PUT vm/{id}/qosConfig), and report '
                     'QoS_support in every pool. Off by default: it needs '
                     'the array to inventory each volume file (one refresh '
                     'and lookup per create, clone, manage, retype and '
                     'per-GiB extend). Settings the array cannot take yet '
                     'are retried by the periodic stats update.'),
    cfg.FloatOpt('tintri_qos_inventory_wait',
                 default=10.0,
                 min=0.0,
                 help='Seconds an operation waits for the VMstore to '
                      'inventory a new volume file before its QoS is left '
                      'pending (the volume is still created; the periodic '
                      'stats update applies the QoS later).'),
]

tintri_opts = (legacy_opts + connection_opts + image_cache_opts
               + inventory_opts + cross_array_opts + encryption_opts
               + qos_opts)


def list_opts():
    """Options for oslo-config-generator and the Sphinx config reference."""
    return [
        ('backend_defaults', copy.deepcopy(tintri_opts)),
    ]
