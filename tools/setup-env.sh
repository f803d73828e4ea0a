#!/usr/bin/env bash
# Prepare everything the demo and the tests need on a fresh Debian machine
# with Python 3.11: Debian packages (when root), a virtualenv in .venv with
# the project and its test dependencies.  Idempotent; re-runs are cheap.
#
# Sourced by tools/run-tests.sh and tools/demo.sh; exports VENV and PY.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TINTRI_VENV:-$TOP/.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Debian packages the tests use, keyed by the command each gives.
declare -A DEB_FOR=(
    [qemu-img]=qemu-utils
    [mount.nfs]=nfs-common
    [mkfs.xfs]=xfsprogs
    [redis-server]=redis-server
    [shellcheck]=shellcheck
)

missing_debs() {
    local cmd
    for cmd in "${!DEB_FOR[@]}"; do
        if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/sbin/$cmd" ] \
                && [ ! -x "/usr/sbin/$cmd" ]; then
            echo "${DEB_FOR[$cmd]}"
        fi
    done | sort -u
}

ensure_debs() {
    local missing
    missing=$(missing_debs | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing Debian packages: $missing"
        export DEBIAN_FRONTEND=noninteractive
        timeout 600 apt-get update -qq >/dev/null
        # shellcheck disable=SC2086
        timeout 900 apt-get install -y -qq --no-install-recommends $missing >/dev/null
        # The package may start a system redis; the tests start their own.
        if command -v service >/dev/null 2>&1; then
            service redis-server stop >/dev/null 2>&1 || true
        fi
    else
        echo "setup: missing Debian packages: $missing" >&2
        echo "setup: run as root, or: sudo apt-get install -y $missing" >&2
        echo "setup: tests that need them (and root for mounts) will be skipped" >&2
    fi
}

ensure_venv() {
    local stamp want
    if [ ! -x "$VENV/bin/python" ]; then
        echo "setup: creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    want=$(cat "$TOP/requirements.txt" "$TOP/test-requirements.txt" \
           "$TOP/setup.cfg" | sha256sum | cut -d' ' -f1)
    stamp="$VENV/.cinder-tintri-deps"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "setup: installing Python dependencies into $VENV (a few minutes the first time)"
        # (pip's "Location ... is ignored" lines about local mirrors are noise)
        "$VENV/bin/pip" install -q --disable-pip-version-check \
            -r "$TOP/requirements.txt" -r "$TOP/test-requirements.txt" \
            2> >(grep -v '^WARNING: Location' >&2)
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
            -e "$TOP" 2> >(grep -v '^WARNING: Location' >&2)
        echo "$want" > "$stamp"
    fi
}

ensure_debs
ensure_venv
export VENV
PY="$VENV/bin/python"
export PY
