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
"""Replication paths and remote-copy tasks between simulator instances.

A simulator is told about a peer (another running simulator) with
:meth:`VMstoreSimulator.add_replication_path`; its
``GET /v310/datastore/{uuid}/replicationPath`` then lists the path, and
``POST /v310/vm`` with a VirtualMachineCloneSpec carrying
``remoteCopyInfo {replicationPathId, directoryName}`` starts a Task that
copies the snapshot's file, in a thread, into
``<peer datastore>/<directoryName>/<snapshotted file name>``.  The task is
polled with ``GET /v310/task/{id}`` and cancelled with
``DELETE /v310/task/{id}``.

Endpoints and the Task shape are in the official index; the
DatastoreReplicationPath fields (``id`` a flat string, ``destinationIp``)
and the RemoteCopyInfo fields are INFERRED (Tintri's SDK, DDN 3.0.10).

Injectable behaviour (:meth:`Replication.configure`): ``delay`` (seconds
a task stays RUNNING before it copies), ``fail`` (the task writes part
of the file, then ends FAILED with ``fail_message``), ``land_elsewhere``
(the copy lands directly at ``directoryName``, not inside it: the other
plausible reading of the field).
"""

import os
import threading
import time

from cinder_tintri.simulator import state as sim_state
from cinder_tintri.simulator import storage

TYPE_TASK = sim_state.NS + '.Task'
TYPE_REPL_PATH = (sim_state.NS
                  + '.domain.beans.repl.DatastoreReplicationPath')
TASK_FIELDS = frozenset((
    'typeId', 'createDate', 'createdBy', 'isCancelable',
    'lastUpdatedComponent', 'lastUpdatedTime', 'localAlias',
    'progressDescription', 'progressError', 'progressPercent',
    'progressSecondsRemaining', 'restartable', 'state', 'targetIds',
    'targetType', 'type', 'vmstoreNameOrIp', 'vmstoreTaskId',
    'vmstoreTintriId', 'error', 'jobDone', 'properties', 'uuid',
))
# VirtualMachineCloneSpec (official DTO extract).
CLONE_SPEC_FIELDS = frozenset((
    'typeId', 'consistency', 'count', 'preserveInstanceUuid',
    'simpleCloneVmName', 'snapshotId', 'vmId', 'generic', 'hyperv',
    'otherDb', 'remoteCopyInfo', 'restoreInfo', 'rhev', 'vmware',
    'xenServer',
))
DONE = ('SUCCESS', 'FAILED', 'CANCELLED')


class Replication(object):
    """Paths to peers and the tasks of one simulated VMstore."""

    def __init__(self, st, stopping):
        self.st = st
        self.stopping = stopping
        self.paths = {}        # id -> {'peer': SimState, 'destinationIp'}
        self.tasks = {}        # id -> record
        self.task_seq = 0
        self.path_seq = 0
        self.threads = []
        self.behaviour = {'delay': 0.0, 'fail': False,
                          'fail_message': 'Remote copy failed',
                          'land_elsewhere': False}

    # -- control ------------------------------------------------------

    def add_path(self, peer_state, destination_ip, path_id=None):
        self.path_seq += 1
        path_id = path_id or '%s-RPL-%d' % (self.st.serial, self.path_seq)
        self.paths[path_id] = {'peer': peer_state,
                               'destinationIp': destination_ip}
        return path_id

    def remove_path(self, path_id):
        self.paths.pop(path_id, None)

    def configure(self, **kwargs):
        unknown = set(kwargs) - set(self.behaviour)
        if unknown:
            raise ValueError('unknown remote copy setting(s): %s'
                             % ', '.join(sorted(unknown)))
        if float(kwargs.get('delay', 0.0)) < 0:
            raise ValueError('delay must be >= 0')
        self.behaviour.update(kwargs)

    def join(self, timeout):
        for thread in list(self.threads):
            thread.join(timeout)

    # -- views --------------------------------------------------------

    def path_view(self, path_id, path):
        return {
            'typeId': TYPE_REPL_PATH,
            'id': path_id,
            'sourceIp': self.st.host,
            'destinationIp': path['destinationIp'],
            'destinationPort': 0,
            'displayName': 'path-%s' % path_id,
        }

    def list_paths(self, ident, template):
        self.st.check_datastore(ident, template)
        return [self.path_view(k, v) for k, v in sorted(self.paths.items())]

    def task_view(self, rec):
        view = {
            'typeId': TYPE_TASK,
            'uuid': {'typeId': 'com.tintri.api.rest.vcommon.dto.Uuid',
                     'uuid': rec['id']},
            'type': 'REMOTE_COPY',
            'state': rec['state'],
            'jobDone': rec['state'] in DONE,
            'progressPercent': rec['progress'],
            'progressDescription': rec['description'],
            'progressError': rec['state'] == 'FAILED',
            'isCancelable': rec['state'] not in DONE,
            'createDate': rec['created'],
            'lastUpdatedTime': sim_state.format_datetime(rec['updated']),
            'targetIds': rec['snapshot'],
            'targetType': 'SNAPSHOT',
        }
        if rec['state'] == 'FAILED':
            view['error'] = sim_state.ApiError(
                500, 'ERR-API-3213', rec['error']).body()
        return view

    def get_task(self, task_id):
        rec = self.tasks.get(task_id)
        if rec is None:
            raise sim_state.ApiError(404, 'ERR-API-8001',
                                     'Task %s not found' % task_id)
        return self.task_view(rec)

    def cancel_task(self, task_id):
        rec = self.tasks.get(task_id)
        if rec is None:
            raise sim_state.ApiError(404, 'ERR-API-8001',
                                     'Task %s not found' % task_id)
        if rec['state'] not in DONE:
            rec['cancel'] = True
            rec['state'] = 'CANCEL_PENDING'
            rec['updated'] = sim_state.now_ms()

    # -- POST vm --------------------------------------------------------

    def start_copy(self, body):
        st = self.st
        if not isinstance(body, dict):
            raise sim_state.ApiError(400, 'ERR-API-3205',
                                     'Body must be a VirtualMachineCloneSpec')
        st.check_body(body, CLONE_SPEC_FIELDS, 'VirtualMachineCloneSpec')
        info = body.get('remoteCopyInfo')
        if not isinstance(info, dict):
            # Only the remote copy form of a VM clone is simulated.
            raise sim_state.ApiError(400, 'ERR-API-3205',
                                     'Only remote copies are supported')
        snap_uuid = body.get('snapshotId')
        rec = st.snapshots.get(snap_uuid) if isinstance(
            snap_uuid, str) else None
        if rec is None or rec['isDeleted']:
            raise sim_state.ApiError(404, 'ERR-API-3214',
                                     'Snapshot %s does not exist'
                                     % (snap_uuid,))
        path = self.paths.get(info.get('replicationPathId'))
        if path is None:
            raise sim_state.ApiError(
                500, 'ERR-API-3003', 'Replication path %r is not configured'
                % (info.get('replicationPathId'),))
        try:
            rel = sim_state.normalize_path(info.get('directoryName'))
        except ValueError:
            raise sim_state.ApiError(400, 'ERR-API-3205',
                                     'Invalid directoryName %r'
                                     % (info.get('directoryName'),))
        self.task_seq += 1
        task_id = '%s-TSK-%016X' % (st.fs_uuid, self.task_seq)
        now = sim_state.now_ms()
        task = {'id': task_id, 'state': 'QUEUED', 'progress': 0.0,
                'description': 'Remote copy queued', 'error': '',
                'created': now, 'updated': now, 'snapshot': snap_uuid,
                'cancel': False}
        self.tasks[task_id] = task
        # The snapshot's data stays while the copy reads it.
        st._blob_ref(rec['data'])
        job = (task, rec['data'], rec['source_name'], rec['mode'],
               path['peer'], rel, dict(self.behaviour))
        thread = threading.Thread(target=self._run, args=job,
                                  name='sim-remote-copy-%d' % self.task_seq,
                                  daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()]
        self.threads.append(thread)
        thread.start()
        return self.task_view(task)

    def _set(self, task, **fields):
        with self.st.lock:
            task.update(fields)
            task['updated'] = sim_state.now_ms()

    def _run(self, task, data, source_name, mode, peer, rel, behaviour):
        try:
            self._set(task, state='RUNNING', progress=1.0,
                      description='Remote copy running')
            until = time.monotonic() + float(behaviour['delay'])
            while True:
                with self.st.lock:
                    if task['cancel']:
                        task.update(state='CANCELLED',
                                    description='Remote copy cancelled')
                        return
                left = until - time.monotonic()
                if left <= 0:
                    break
                if self.stopping.wait(min(0.05, left)):
                    return
            dest_dir = os.path.join(peer.datastore, rel)
            try:
                if behaviour['land_elsewhere']:
                    os.makedirs(os.path.dirname(dest_dir), exist_ok=True)
                    target = dest_dir
                else:
                    os.makedirs(dest_dir, exist_ok=True)
                    target = os.path.join(dest_dir, source_name)
                if behaviour['fail']:
                    # A copy cut short: part of the data is there.
                    with open(data, 'rb') as src, open(target, 'wb') as dst:
                        dst.write(src.read(64 * 1024))
                    raise OSError(5, behaviour['fail_message'])
                storage.copy_file(data, target, use_reflink=True)
                os.chmod(target, mode)
            except OSError as exc:
                self._set(task, state='FAILED', progress=50.0,
                          description='Remote copy failed',
                          error=exc.strerror or str(exc))
                return
            finally:
                with peer.lock:
                    peer.invalidate()
            self._set(task, state='SUCCESS', progress=100.0,
                      description='Remote copy complete')
        finally:
            with self.st.lock:
                self.st._blob_unref(data)
