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
"""The official VMstore REST API v310 contract, as data.

Extracted from Tintri's published endpoint index and DTO reference (API
v310.191, the ``vmstore-api-v310-official.md`` reference): the
``(method, path)`` pairs the simulator implements with their documented
error codes and query specs, and the field lists of the DTOs the
simulator emits or accepts.  The strict ``vmstore6`` profile serves only
these endpoints (plus :data:`EXTRA_ENDPOINTS`) and only these fields.

Nothing here reads the reference at run time; the unit test
``tests.unit.simulator.test_official`` compares these tables with the
reference whenever it is present.
"""

import re

# (method, path template as in the index, documented errors as
# ((code, http status), ...), query FilterSpec or None).  Only the
# endpoints the simulator implements.
ENDPOINTS = (
    ('GET', '/v310/appliance', (('8001', 404),), 'ApplianceFilterSpec'),
    ('GET', '/v310/appliance/{uuid}', (('8001', 404),),
     'ApplianceFilterSpec'),
    ('GET', '/v310/appliance/{uuid}/fileDirInfo/{path}',
     (('9700', 500), ('8001', 404)), None),
    ('GET', '/v310/appliance/{uuid}/info', (('0102', 404),), None),
    ('GET', '/v310/appliance/{uuid}/ips', (('0102', 404),), None),
    ('GET', '/v310/datastore', (('0106', 404),), None),
    ('GET', '/v310/datastore/{uuid}',
     (('2001', 501), ('0102', 404), ('8001', 404)), None),
    ('GET', '/v310/datastore/{uuid}/statsRealtime', (), 'PageFilterSpec'),
    ('GET', '/v310/datastore/{uuid}/statsSummary', (('0102', 404),), None),
    ('GET', '/v310/session/active', (), None),
    ('GET', '/v310/session/current', (), None),
    ('POST', '/v310/session/login', (), None),
    ('GET', '/v310/session/logout', (), None),  # deprecated
    ('POST', '/v310/session/logout', (), None),
    ('GET', '/v310/snapshot', (('9013', 503), ('9014', 500)),
     'SnapshotFilterSpec'),
    ('DELETE', '/v310/snapshot/{tintriUuid}', (('3107', 500), ('8001', 404)),
     None),
    ('GET', '/v310/snapshot/{tintriUuid}',
     (('8001', 404), ('9014', 500), ('9013', 503)), None),
    ('GET', '/v310/virtualDisk', (), 'VirtualDiskFilterSpec'),
    ('GET', '/v310/vm', (('9026', 500),), 'VirtualMachineFilterSpec'),
    ('GET', '/v310/vm/{vmId}', (), None),
    ('POST', '/v310/vm',
     (('3003', 500), ('3205', 400), ('3206', 500), ('3213', 500),
      ('3214', 404)), None),
    ('GET', '/v310/datastore/{uuid}/replicationPath',
     (('2001', 501), ('0102', 404)), None),
    ('GET', '/v310/task/{id}', (), 'TaskFilterSpec'),
    ('DELETE', '/v310/task/{id}', (), None),
    ('PUT', '/v310/vm/{vmId}/qosConfig',
     (('3109', 400), ('3110', 400), ('3112', 400), ('3113', 400),
      ('8001', 404)), None),
)

# Served although absent from the index: (method, template, errors, why).
# The errors are INFERRED (borrowed from the documented POST snapshot and
# POST vm, or generic).
EXTRA_ENDPOINTS = (
    ('GET', '/api/info', (),
     'SEEN REST-RS:info (servlet path /api -> /api/info), '
     'vmstore-rest-api.md 2.1'),
    ('POST', '/v310/cinder/snapshot',
     (('3105', 400), ('3106', 500), ('8001', 404)),
     'SEEN SDK-DTO:beans/cinder/CinderSnapshotSpec'),
    ('POST', '/v310/cinder/clone',
     (('3205', 400), ('3206', 500), ('3214', 404)),
     'SEEN SDK-DTO:beans/cinder/CinderCloneSpec'),
    ('POST', '/v310/cinder/host/refresh', (('0020', 400),),
     'SEEN DDN-nfs refresh_hypervisor, DDN-map'),
)

# Not in the index (a snapshot's deletionPolicy is set at creation); served
# in every profile only with delete_with_clones='refuse_put'.
PUT_SNAPSHOT = ('PUT', '/v310/snapshot/{tintriUuid}')

# Codes any endpoint may answer with (generic, REST-HTTP / SDK-common).
GENERIC_ERRORS = (
    ('0104', 401),   # invalid or expired session
    ('0124', 403),   # login: invalid credentials (INFERRED status)
    ('0020', 400),   # invalid input data (bodies)
    ('0020', 413),   # request body too large
    ('4003', 400),   # invalid query parameter
    ('8001', 404),   # resource (or API) not found
    ('0007', 500),   # internal error
)

# DTO fields (com.tintri.api.rest...), in the order of the reference.

# com.tintri.api.rest.v310.dto.Page
PAGE = frozenset((
    'typeId', 'absoluteTotal', 'completedIn', 'filteredTotal',
    'lastUpdatedTime', 'next', 'offset', 'offsetMatchFound', 'overflow',
    'page', 'pageTotal', 'prev', 'total', 'items', 'limit',
))

# com.tintri.api.rest.v310.dto.Request
REQUEST = frozenset((
    'typeId', 'objectsWithNewValues', 'propertiesToBeUpdated',
))

# com.tintri.api.rest.v310.dto.SnapshotFilterSpec
SNAPSHOT_FILTER_SPEC = frozenset((
    'typeId', 'allStats', 'consistency', 'contain', 'deleted', 'fromDate',
    'fromVmstore', 'hasClone', 'instanceId', 'limit', 'location', 'locked',
    'metric', 'name', 'offset', 'orphaned', 'page', 'queryType', 'refresh',
    'removeReplica', 'replica', 'replicaTintriUuids', 'replLinkId',
    'since', 'sortedBy', 'sortOrder', 'target', 'timeout', 'toDate',
    'type', 'until', 'uuid', 'vmUuid',
))

# com.tintri.api.rest.v310.dto.VirtualDiskFilterSpec
VIRTUAL_DISK_FILTER_SPEC = frozenset((
    'typeId', 'allStats', 'autoAligned', 'cloneDedupeFactor',
    'compressionFactor', 'dedupeFactor', 'displayName', 'flashHitPercent',
    'instanceUuid', 'ioAlignedPercent', 'isDiskDrive',
    'latencyContentionMs', 'latencyDiskMs', 'latencyFlashMs',
    'latencyHostMs', 'latencyMirrorMs', 'latencyNetworkMs',
    'latencyStorageMs', 'latencyThrottleMs', 'latencyTotalMs', 'limit',
    'liveLogicalFootprint', 'metric', 'name', 'offset', 'page', 'path',
    'performanceReserveAutoAllocated', 'performanceReserveChange',
    'performanceReserveChangePercent', 'performanceReserveUsed',
    'queryType', 'refresh', 'replLinkId', 'requestSizeKiB', 'since',
    'sortedBy', 'sortOrder', 'spaceProvisionedGiB', 'spaceSavingsFactor',
    'spaceUsedChangeGiB', 'spaceUsedChangePercent', 'spaceUsedGiB',
    'spaceUsedLiveGiB', 'spaceUsedSnapshotsHypervisorGiB',
    'spaceUsedSnapshotsTintriGiB', 'target', 'timeout', 'totalIops',
    'totalMBps', 'totalNormalizedIops', 'totalUsedSpace', 'until', 'uuid',
    'vmName', 'vmUuid',
))

# com.tintri.api.rest.v310.dto.VirtualMachineFilterSpec
VIRTUAL_MACHINE_FILTER_SPEC = frozenset((
    'typeId', 'affinityRuleTypes', 'allStats', 'bytesRemainingMB',
    'categoryName', 'changeMBPerDay', 'cloneDedupeFactor', 'cloneFrom',
    'compressionFactor', 'cpuPercent', 'cpuReadyPercent',
    'cpuSwapWaitPercent', 'datastores', 'dedupeFactor', 'deleted',
    'flashHitPercent', 'hasSnapshots', 'highFrequencySnapshotEnabled',
    'host', 'hosts', 'hypervisorManagerDisplayName', 'hypervisorPath',
    'hypervisorPathPrefixes', 'hypervisorType', 'includeComposition',
    'instanceUuid', 'ioAlignedPercent', 'k8sControlPlaneNode',
    'k8sWorkerNode', 'lastReplicatedSnapshotDate', 'lastSnapshotDate',
    'latencyContentionMs', 'latencyDiskMs', 'latencyFlashMs',
    'latencyHostMs', 'latencyMirrorMs', 'latencyNetworkMs',
    'latencyStorageMs', 'latencyThrottleMs', 'latencyTotalMs',
    'latestSliceUuid', 'limit', 'live', 'liveLogicalFootprint', 'locked',
    'maxNormalizedIops', 'metric', 'migrationBytesRemainingMB',
    'migrationDestination', 'migrationThroughputLogicalMBps',
    'migrationThroughputPhysicalMBps', 'minNormalizedIops', 'name',
    'numContainers', 'numPods', 'offset', 'page',
    'performanceReserveAutoAllocated', 'performanceReserveChange',
    'performanceReserveChangePercent', 'performanceReserveUsed',
    'policyErrorCodes', 'powered', 'protections', 'provisionedType',
    'queryType', 'refresh', 'replDestination', 'replicationHasIssue',
    'replLinkId', 'replLinkIds', 'replSource', 'replState',
    'requestSizeKiB', 'serviceGroupId', 'serviceGroupIds',
    'serviceGroupName', 'since', 'snapshotScheduleType', 'sortedBy',
    'sortOrder', 'spaceProvisionedGiB', 'spaceSavingsFactor',
    'spaceUsedChangeGiB', 'spaceUsedChangePercent', 'spaceUsedGiB',
    'spaceUsedLiveGiB', 'spaceUsedSnapshotsHypervisorGiB',
    'spaceUsedSnapshotsTintriGiB', 'storageContainer',
    'storageContainerId', 'subdir', 'syncReplEnabled', 'syncReplPrimary',
    'tagIds', 'tagName', 'target', 'template', 'throughputLogicalMBps',
    'throughputPhysicalMBps', 'timeout', 'timeRemainingSeconds',
    'totalIops', 'totalMBps', 'totalNormalizedIops', 'totalUsedSpace',
    'types', 'until', 'useDefaultSchedule', 'uuid', 'vcenterName',
    'vcenterNames',
))

# com.tintri.api.rest.v310.dto.domain.Snapshot
SNAPSHOT = frozenset((
    'typeId', 'cloneReferenceCount', 'createTime', 'creatorName',
    'description', 'expirationTime', 'id', 'isCollapsed', 'isDeleted',
    'isLastReplicatedSnapshot', 'isOrphaned', 'isReplica',
    'lastUpdatedComponent', 'lastUpdatedTime', 'localAlias', 'locked',
    'logicalFullSizeGiB', 'replicaRetentionMinutes', 'replicationId',
    'sizeChangedMB', 'sizeChangedPhysicalMB', 'tag', 'timeDeleted',
    'vcenterInstanceUuid', 'version', 'vmIsTemplate', 'vmName',
    'consistency', 'deletionPolicy', 'hostNameOrIp', 'hypervisorType',
    'instanceId', 'location', 'snapshotComposition', 'type', 'uuid',
    'vmstoreTintriUuid', 'vmUuid',
))

# com.tintri.api.rest.v310.dto.domain.VirtualDisk
VIRTUAL_DISK = frozenset((
    'typeId', 'isAutoAligned', 'lastUpdatedComponent', 'lastUpdatedTime',
    'localAlias', 'vmName', 'datastoreUuid', 'displayName', 'instanceUuid',
    'isDiskDrive', 'isPinned', 'isSynthetic', 'name', 'path', 'sharedMode',
    'stat', 'syncVmConfig', 'uuid', 'vmUuid',
))

# com.tintri.api.rest.v310.dto.domain.beans.vm.VirtualMachineQoSConfig
VIRTUAL_MACHINE_QOS_CONFIG = frozenset((
    'typeId', 'effectiveMaxNormalizedIops', 'effectiveMinNormalizedIops',
    'inheritanceEnabled', 'lastUpdatedTime', 'maxNormalizedIops',
    'minNormalizedIops',
))

# com.tintri.api.rest.v310.dto.domain.beans.TintriError
TINTRI_ERROR = frozenset((
    'typeId', 'causeDetails', 'code', 'message', 'targetId', 'title',
    'errors', 'targetName',
))

# com.tintri.api.rest.v310.dto.domain.beans.filesystem.FileSystemInfo
FILE_SYSTEM_INFO = frozenset((
    'typeId', 'isDir', 'path', 'sizeInBytes',
))

# com.tintri.api.rest.v310.dto.domain.beans.perf.DatastoreStat
DATASTORE_STAT = frozenset((
    'typeId', 'cloneDedupeFactor', 'compressedSpaceUsedLive',
    'compressedSpaceUsedSnapshotOnly', 'compressionFactor', 'dedupeFactor',
    'disksCount', 'flashHitPercent', 'inactive', 'intervalSeconds',
    'ioAlignedPercent', 'k8sClusterCount', 'k8sContainerCount',
    'k8sDeploymentCount', 'k8sPersistentVolumeClaimCount',
    'k8sPersistentVolumeCount', 'k8sPodCount', 'latencyContentionMs',
    'latencyDifferenceFromMaxInSetMs', 'latencyDiskMs', 'latencyFlashMs',
    'latencyHostMs', 'latencyIopsPercent', 'latencyMirrorMs',
    'latencyMirrorReadMs', 'latencyMirrorWriteMs',
    'latencyMirrorWriteNetworkMs', 'latencyNetworkMs', 'latencyStorageMs',
    'latencyThrottleMs', 'latencyTotalMs',
    'logicalMappedSpaceUsedWithFullSnapshotsGiB',
    'logicalUniqueSpaceUsedGiB', 'maxFiles', 'normalizedReadIops',
    'normalizedTotalIops', 'normalizedWriteIops', 'ntbRecoveryCountA',
    'ntbRecoveryCountB', 'numFiles', 'operationsInWeekMaximumIops',
    'operationsInWeekMinimumIops', 'operationsReadIops',
    'operationsTotalIops', 'operationsWriteIops',
    'performanceReserveActual', 'performanceReserveAutoAllocated',
    'performanceReserveChange', 'performanceReserveChangePercent',
    'performanceReserveIfAutoAllocated', 'performanceReserveIfPinned',
    'performanceReservePinned', 'performanceReserveRemaining',
    'performanceReserveUsed', 'quotaProvisionedPercent', 'replLinkCount',
    'snapshotSavingsFactor', 'spaceProvisionedGiB',
    'spaceProvisionedPercent', 'spaceRemainingDays',
    'spaceRemainingPhysicalGiB', 'spaceSavingsFactor',
    'spaceSavingsFactorIncludingSnapshotSavings', 'spaceTotalGiB',
    'spaceUsedChangeGiB', 'spaceUsedChangePercent',
    'spaceUsedChangePhysicalGiB', 'spaceUsedDifferenceFromMaxInSetGiB',
    'spaceUsedDifferenceFromMaxInSetPhysicalGiB', 'spaceUsedGiB',
    'spaceUsedLiveGiB', 'spaceUsedLivePhysicalGiB', 'spaceUsedMappedGiB',
    'spaceUsedOtherGiB', 'spaceUsedOtherPhysicalGiB',
    'spaceUsedPhysicalChangePercent', 'spaceUsedPhysicalGiB',
    'spaceUsedReplicaSnapshotsTintriLogicalGiB',
    'spaceUsedReplicaSnapshotsTintriPhysicalGiB',
    'spaceUsedSnapshotsHypervisorGiB',
    'spaceUsedSnapshotsHypervisorPhysicalGiB',
    'spaceUsedSnapshotsTintriGiB', 'spaceUsedSnapshotsTintriPhysicalGiB',
    'thickSpaceUsedGiB', 'thickSpaceUsedPercent',
    'throughputCacheReadMBps', 'throughputFlashMissMBps',
    'throughputInWeekMaximumMBps', 'throughputInWeekMinimumMBps',
    'throughputReadMBps', 'throughputTotalMBps', 'throughputWriteMBps',
    'timeEnd', 'timeStart', 'totalQuotaSubscribedGiB',
    'totalSpaceSavingsIncludingThinProvisioningFactor', 'vmsCount',
    'liveLogicalFootprint', 'replicationIncoming', 'replicationOutgoing',
    'requestSizeKiB', 'uuid',
))

# com.tintri.api.rest.vcommon.dto.rbac.RestApiCredentials
REST_API_CREDENTIALS = frozenset((
    'typeId', 'fullApiVersion', 'newPassword', 'password', 'username',
    'authInfo', 'authType', 'roles',
))

# Request bodies of the Cinder endpoints (not in the index).
# SEEN SDK-DTO:beans/cinder/CinderSnapshotSpec
CINDER_SNAPSHOT_SPEC = frozenset((
    'typeId', 'file', 'vmName', 'vmTintriUuid', 'instanceId', 'description',
    'snapshotCreator', 'deletionPolicy',
))

# SEEN SDK-DTO:beans/cinder/CinderCloneSpec
CINDER_CLONE_SPEC = frozenset((
    'typeId', 'tintriSnapshotUuid', 'destinationPaths',
))

# SEEN DDN-nfs refresh_hypervisor (volumeId: OOT >= 3.0.9)
OPENSTACK_HOST_REFRESH_SPEC = frozenset((
    'typeId', 'hostname', 'volumeFilePath', 'region', 'volumeId',
))

# PageFilterSpec is named by the index but its fields are not in the
# extract.  INFERRED: the paging parameters vmstore-rest-api.md 3.1 lists
# (SDK-DTO:VirtualMachineFilterSpec "PageFilterSpec parameters"), all of
# which the three documented FilterSpecs share.
PAGE_FILTER_SPEC = frozenset((
    'typeId', 'limit', 'offset', 'page', 'sortedBy', 'sortOrder', 'since',
    'until', 'queryType', 'refresh', 'allStats', 'target', 'timeout',
))

QUERY_SPECS = {
    'SnapshotFilterSpec': SNAPSHOT_FILTER_SPEC,
    'VirtualDiskFilterSpec': VIRTUAL_DISK_FILTER_SPEC,
    'VirtualMachineFilterSpec': VIRTUAL_MACHINE_FILTER_SPEC,
    'PageFilterSpec': PAGE_FILTER_SPEC,
}

_PARAM = re.compile(r'\{[^}]*\}')


def shape(template):
    """A template with its parameter names erased: ``/v310/vm/{}``."""
    return _PARAM.sub('{}', template)


_BY_SHAPE = {}
for _method, _template, _errors, _extra in ENDPOINTS + EXTRA_ENDPOINTS:
    _BY_SHAPE[(_method, shape(_template))] = (_template, _errors, _extra)

ALLOWED = frozenset(_BY_SHAPE)


def allowed(method, template, put_snapshot=False):
    """Whether the strict profile serves ``method`` on ``template``.

    ``template`` may use any parameter names (``{uuid}``, ``{id}``).
    """
    key = (method, shape(template))
    if key in ALLOWED:
        return True
    return put_snapshot and key == (PUT_SNAPSHOT[0], shape(PUT_SNAPSHOT[1]))


def errors(method, template):
    """Documented ``((code, status), ...)`` of an endpoint, or ()."""
    found = _BY_SHAPE.get((method, shape(template)))
    return found[1] if found else ()


def query_spec(method, template):
    """(FilterSpec name, its fields or None when unknown) or (None, None).

    Only index endpoints have a FilterSpec; the fields are known for
    :data:`QUERY_SPECS`.
    """
    for m, t, _errors, spec in ENDPOINTS:
        if m == method and shape(t) == shape(template):
            return spec, QUERY_SPECS.get(spec)
    return None, None


def missing_entity(method, template, default=('8001', 404)):
    """The documented (code, status) for "that object does not exist".

    Prefers ERR-API-2001 (a non-default datastore), then 0102 ("failed to
    obtain default entity"), then 8001, among the endpoint's documented
    codes; ``default`` when it documents none of them (INFERRED).
    """
    documented = errors(method, template)
    for code in ('2001', '0102', '8001'):
        for c, status in documented:
            if c == code:
                return c, status
    return default
