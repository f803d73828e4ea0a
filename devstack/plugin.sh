# shellcheck shell=bash
# DevStack plugin for cinder-tintri, the Cinder driver for Tintri VMstore.
#
#   enable_plugin cinder-tintri https://opendev.org/x/cinder-tintri
#
# DevStack sources this file with a mode and a phase ("stack install",
# "stack post-config", "stack extra", "unstack", "clean"); sourced without
# arguments it only defines functions, which is how
# tests/unit/test_devstack.py exercises it.
# Variables are described in devstack/settings and devstack/README.rst.

_TINTRI_XTRACE=$(set +o | grep xtrace)
set +o xtrace

TINTRI_VOLUME_DRIVER=cinder_tintri.driver.TintriDriver

# The names of the tintri backends listed in CINDER_ENABLED_BACKENDS
# ("tintri:<name>" entries), one per line.
function tintri_backend_names {
    local be
    for be in ${CINDER_ENABLED_BACKENDS//,/ }; do
        if [[ "${be%%:*}" == "tintri" ]]; then
            echo "${be##*:}"
        fi
    done
}

# install_cinder_tintri: install the package into cinder's Python
# environment (with the simulator's extra dependencies when needed) and the
# NFS client tools the driver checks for.  The package comes from the local
# checkout CINDER_TINTRI_DIR (where "enable_plugin" put it); only when that
# is not there is it cloned from CINDER_TINTRI_REPO (DevStack's git_clone:
# honours ERROR_ON_CLONE, so an offline CI job fails instead of fetching).
function install_cinder_tintri {
    if [[ ! -f "$CINDER_TINTRI_DIR/setup.cfg" ]]; then
        git_clone "$CINDER_TINTRI_REPO" "$CINDER_TINTRI_DIR" "$CINDER_TINTRI_BRANCH"
    fi
    if [[ "$TINTRI_SIMULATOR" == "True" ]]; then
        setup_develop "$CINDER_TINTRI_DIR" simulator
    else
        setup_develop "$CINDER_TINTRI_DIR"
    fi
    if is_ubuntu; then
        install_package nfs-common
    else
        install_package nfs-utils
    fi
}

# _tintri_simulator_file <name>: path of a state file of the simulator.
function _tintri_simulator_file {
    echo "$TINTRI_SIMULATOR_DIR/$1"
}

# _tintri_json_get <file> <key>: one field of the simulator's ready line.
function _tintri_json_get {
    "${PYTHON:-python3}" -c '
import json, sys
with open(sys.argv[1]) as f:
    value = json.loads(f.readline())[sys.argv[2]]
print("" if value is None else value)
' "$1" "$2"
}

# _tintri_json_ready <file>: true once <file> holds a complete JSON line.
function _tintri_json_ready {
    "${PYTHON:-python3}" -c '
import json, sys
try:
    with open(sys.argv[1]) as f:
        line = f.readline()
    sys.exit(0 if line.endswith("\n") and isinstance(json.loads(line), dict)
             else 1)
except (OSError, ValueError):
    sys.exit(1)
' "$1"
}

# _tintri_pid_alive <pid>: the process exists and is not a zombie.
function _tintri_pid_alive {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z* ]]
}

# _tintri_simulator_pid: the pid of the simulator this plugin started, if
# it still runs (checked against its command line, so a recycled pid is
# never signalled).
function _tintri_simulator_pid {
    local pidfile pid
    pidfile=$(_tintri_simulator_file simulator.pid)
    [[ -r "$pidfile" ]] || return 1
    pid=$(head -n 1 "$pidfile")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    _tintri_pid_alive "$pid" || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null \
        | grep -q 'tintri-vmstore-sim' || return 1
    echo "$pid"
}

function _tintri_simulator_cmd {
    if [[ -n "$TINTRI_SIMULATOR_CMD" ]]; then
        echo "$TINTRI_SIMULATOR_CMD"
    elif [[ -n "${CINDER_BIN_DIR:-}" && -x "$CINDER_BIN_DIR/tintri-vmstore-sim" ]]; then
        echo "$CINDER_BIN_DIR/tintri-vmstore-sim"
    else
        command -v tintri-vmstore-sim
    fi
}

# start_tintri_simulator: start tintri-vmstore-sim on 127.0.0.1 in the
# background and wait, at most TINTRI_SIMULATOR_START_TIMEOUT seconds, for
# the JSON line it prints when ready; keep that line in simulator.json.
function start_tintri_simulator {
    local cmd out log pid deadline password pwfile

    stop_tintri_simulator
    cmd=$(_tintri_simulator_cmd) \
        || die $LINENO "tintri-vmstore-sim not found; is cinder-tintri installed?"
    mkdir -p "$TINTRI_SIMULATOR_DIR/data"

    # The password is generated once per data directory unless given.
    pwfile=$(_tintri_simulator_file password)
    password=$TINTRI_SIMULATOR_PASSWORD
    if [[ -z "$password" ]]; then
        if [[ ! -s "$pwfile" ]]; then
            (umask 077 && "${PYTHON:-python3}" -c \
                'import secrets; print(secrets.token_hex(16))' > "$pwfile")
        fi
        password=$(head -n 1 "$pwfile")
    fi

    out=$(_tintri_simulator_file simulator.out)
    log=$(_tintri_simulator_file simulator.log)
    rm -f "$out" "$(_tintri_simulator_file simulator.json)"
    # setsid + disown: DevStack kills its own background jobs on exit.
    setsid "$cmd" --host 127.0.0.1 --port "$TINTRI_SIMULATOR_PORT" \
        --root "$TINTRI_SIMULATOR_DIR/data" \
        --username "$TINTRI_SIMULATOR_USERNAME" --password "$password" \
        --profile "$TINTRI_SIMULATOR_PROFILE" \
        > "$out" 2>> "$log" < /dev/null &
    pid=$!
    disown "$pid" 2>/dev/null || true
    echo "$pid" > "$(_tintri_simulator_file simulator.pid)"

    deadline=$((SECONDS + TINTRI_SIMULATOR_START_TIMEOUT))
    until _tintri_json_ready "$out"; do
        if ! _tintri_pid_alive "$pid"; then
            die $LINENO "tintri-vmstore-sim exited before it was ready; see $log"
        fi
        if (( SECONDS >= deadline )); then
            stop_tintri_simulator
            die $LINENO "tintri-vmstore-sim not ready after ${TINTRI_SIMULATOR_START_TIMEOUT}s; see $log"
        fi
        sleep 0.5
    done
    head -n 1 "$out" > "$(_tintri_simulator_file simulator.json)"
    echo "tintri-vmstore-sim (pid $pid) ready: $(head -n 1 "$out")"
}

# stop_tintri_simulator: SIGTERM, then SIGKILL after
# TINTRI_SIMULATOR_STOP_TIMEOUT seconds.  No-op when it is not running.
function stop_tintri_simulator {
    local pid deadline
    if pid=$(_tintri_simulator_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + TINTRI_SIMULATOR_STOP_TIMEOUT))
        while _tintri_pid_alive "$pid" && (( SECONDS < deadline )); do
            sleep 0.5
        done
        if _tintri_pid_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$(_tintri_simulator_file simulator.pid)"
}

# tintri_load_simulator_facts: point the TINTRI_SERVER_* variables and
# TINTRI_SHARES at the running simulator (from simulator.json).
function tintri_load_simulator_facts {
    local facts host port share sub
    facts=$(_tintri_simulator_file simulator.json)
    [[ -s "$facts" ]] || return 1
    host=$(_tintri_json_get "$facts" host)
    port=$(_tintri_json_get "$facts" port)
    TINTRI_SERVER_HOSTNAME=$host
    TINTRI_SERVER_PORT=$port
    TINTRI_SERVER_USERNAME=$(_tintri_json_get "$facts" username)
    if [[ -n "$TINTRI_SIMULATOR_PASSWORD" ]]; then
        TINTRI_SERVER_PASSWORD=$TINTRI_SIMULATOR_PASSWORD
    else
        TINTRI_SERVER_PASSWORD=$(head -n 1 "$(_tintri_simulator_file password)")
    fi
    TINTRI_SSL_CERT_VERIFY=True
    TINTRI_CA_BUNDLE=$(_tintri_json_get "$facts" ca_path)
    share=""
    for sub in ${TINTRI_SIMULATOR_SUBMOUNTS//,/ }; do
        share+="${share:+,}$host:/tintri/$sub"
    done
    TINTRI_SHARES=$share
}

# tintri_mount_point <share>: where os-brick (and so the driver) expects the
# share to be mounted: <nfs_mount_point_base>/<md5 of the share string>.
function tintri_mount_point {
    local hash
    hash=$(printf '%s' "$1" | md5sum | cut -d ' ' -f 1)
    echo "$TINTRI_MOUNT_POINT_BASE/$hash"
}

# tintri_prepare_simulator_shares: there is no NFS server in simulator
# mode; each share is the directory <datastore>/<submount>, bind-mounted
# where the driver would have mounted the NFS export.
function tintri_prepare_simulator_shares {
    local facts datastore sub share dir mp
    facts=$(_tintri_simulator_file simulator.json)
    datastore=$(_tintri_json_get "$facts" datastore)
    for sub in ${TINTRI_SIMULATOR_SUBMOUNTS//,/ }; do
        share="$(_tintri_json_get "$facts" host):/tintri/$sub"
        dir="$datastore/$sub"
        mp=$(tintri_mount_point "$share")
        mkdir -p "$dir" "$mp"
        if ! mountpoint -q "$mp"; then
            sudo mount --bind "$dir" "$mp"
        fi
    done
}

# tintri_unmount_simulator_shares: undo tintri_prepare_simulator_shares.
function tintri_unmount_simulator_shares {
    local facts sub share mp
    facts=$(_tintri_simulator_file simulator.json)
    [[ -s "$facts" ]] || return 0
    for sub in ${TINTRI_SIMULATOR_SUBMOUNTS//,/ }; do
        share="$(_tintri_json_get "$facts" host):/tintri/$sub"
        mp=$(tintri_mount_point "$share")
        if mountpoint -q "$mp"; then
            sudo umount "$mp" || sudo umount -l "$mp"
        fi
    done
}

# configure_cinder_backend_tintri <name>: write the backend section
# [<name>] of $CINDER_CONF and its shares file.  DevStack's configure_cinder
# calls it for every "tintri:<name>" in CINDER_ENABLED_BACKENDS; the plugin
# calls it again at post-config, once the simulator (if any) is up.
function configure_cinder_backend_tintri {
    local be_name=$1
    local share

    if [[ "$TINTRI_SIMULATOR" == "True" ]]; then
        tintri_load_simulator_facts || true
    fi

    iniset "$CINDER_CONF" "$be_name" volume_driver "$TINTRI_VOLUME_DRIVER"
    iniset "$CINDER_CONF" "$be_name" volume_backend_name "$be_name"
    iniset "$CINDER_CONF" "$be_name" nfs_shares_config "$TINTRI_SHARES_CONFIG"
    iniset "$CINDER_CONF" "$be_name" nfs_mount_point_base "$TINTRI_MOUNT_POINT_BASE"
    if [[ -n "$TINTRI_NFS_MOUNT_OPTIONS" ]]; then
        iniset "$CINDER_CONF" "$be_name" nfs_mount_options "$TINTRI_NFS_MOUNT_OPTIONS"
    fi
    iniset "$CINDER_CONF" "$be_name" tintri_server_hostname "$TINTRI_SERVER_HOSTNAME"
    iniset "$CINDER_CONF" "$be_name" tintri_server_port "$TINTRI_SERVER_PORT"
    iniset "$CINDER_CONF" "$be_name" tintri_server_username "$TINTRI_SERVER_USERNAME"
    iniset "$CINDER_CONF" "$be_name" tintri_server_password "$TINTRI_SERVER_PASSWORD"
    iniset "$CINDER_CONF" "$be_name" tintri_use_https True
    if [[ -n "$TINTRI_OPENSTACK_HOSTNAME" ]]; then
        iniset "$CINDER_CONF" "$be_name" tintri_openstack_hostname "$TINTRI_OPENSTACK_HOSTNAME"
    fi
    iniset "$CINDER_CONF" "$be_name" tintri_openstack_region "$TINTRI_OPENSTACK_REGION"
    iniset "$CINDER_CONF" "$be_name" tintri_ssl_cert_verify "$TINTRI_SSL_CERT_VERIFY"
    if [[ -n "$TINTRI_CA_BUNDLE" ]]; then
        iniset "$CINDER_CONF" "$be_name" driver_ssl_cert_path "$TINTRI_CA_BUNDLE"
    fi

    mkdir -p "$(dirname "$TINTRI_SHARES_CONFIG")"
    : > "$TINTRI_SHARES_CONFIG"
    for share in ${TINTRI_SHARES//,/ }; do
        echo "$share" >> "$TINTRI_SHARES_CONFIG"
    done
}

# configure_tintri_backends: post-config work for every tintri backend.
function configure_tintri_backends {
    local be_name
    if [[ "$TINTRI_SIMULATOR" == "True" ]]; then
        start_tintri_simulator
        tintri_load_simulator_facts
        tintri_prepare_simulator_shares
    elif [[ -z "$TINTRI_SERVER_HOSTNAME" || -z "$TINTRI_SHARES" ]]; then
        die $LINENO "Set TINTRI_SERVER_HOSTNAME and TINTRI_SHARES (or TINTRI_SIMULATOR=True)"
    fi
    for be_name in $(tintri_backend_names); do
        configure_cinder_backend_tintri "$be_name"
    done
}

# _tintri_cli_cmd: the operator CLI, next to cinder-volume or on PATH.
function _tintri_cli_cmd {
    if [[ -n "$TINTRI_CLI_CMD" ]]; then
        echo "$TINTRI_CLI_CMD"
    elif [[ -n "${CINDER_BIN_DIR:-}" && -x "$CINDER_BIN_DIR/cinder-tintri" ]]; then
        echo "$CINDER_BIN_DIR/cinder-tintri"
    else
        command -v cinder-tintri
    fi
}

# check_tintri_backends: once cinder-volume runs, "cinder-tintri check" on
# every tintri backend section: options, shares, reachability, TLS,
# credentials, API version, capacity, mounts.  A failed item fails the
# run (warnings do not); TINTRI_CHECK=False skips it.
function check_tintri_backends {
    local cmd be_name
    if [[ "$TINTRI_CHECK" != "True" ]]; then
        echo "cinder-tintri: TINTRI_CHECK=False, backends not checked"
        return 0
    fi
    cmd=$(_tintri_cli_cmd) \
        || die $LINENO "cinder-tintri not found; is cinder-tintri installed?"
    for be_name in $(tintri_backend_names); do
        if ! "$cmd" check --config-file "$CINDER_CONF" --backend "$be_name"; then
            die $LINENO "cinder-tintri check failed for backend $be_name (see above)"
        fi
    done
}

# cleanup_cinder_backend_tintri <name>: called by DevStack's cleanup_cinder.
function cleanup_cinder_backend_tintri {
    stop_tintri_simulator
    tintri_unmount_simulator_shares
}

# The phases DevStack calls the plugin in (see DevStack's "Plugins" page):
# everything is for cinder-volume, so nothing runs on a node without it.
if is_service_enabled c-vol; then
    if [[ "${1:-}" == "stack" && "${2:-}" == "install" ]]; then
        echo_summary "Installing cinder-tintri"
        install_cinder_tintri
    elif [[ "${1:-}" == "stack" && "${2:-}" == "post-config" ]]; then
        # cinder.conf exists; cinder-volume is not started yet.
        echo_summary "Configuring the Tintri VMstore backend"
        configure_tintri_backends
    elif [[ "${1:-}" == "stack" && "${2:-}" == "extra" ]]; then
        # cinder-volume runs now.
        echo_summary "Checking the Tintri VMstore backend"
        check_tintri_backends
    fi

    if [[ "${1:-}" == "unstack" ]]; then
        stop_tintri_simulator
        tintri_unmount_simulator_shares
    fi

    if [[ "${1:-}" == "clean" ]]; then
        # clean.sh runs unstack.sh first; this removes what is left.
        stop_tintri_simulator
        tintri_unmount_simulator_shares
        rm -rf "$TINTRI_SIMULATOR_DIR"
        rm -f "$TINTRI_SHARES_CONFIG"
    fi
fi

$_TINTRI_XTRACE
