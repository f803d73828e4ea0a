#!/usr/bin/env bash
# Run the demo from a fresh machine: bash tools/demo.sh
# Installs what it needs, starts the embedded VMstore simulator and shows the
# driver doing real work against it.
set -euo pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP"
# shellcheck source=tools/setup-env.sh
source "$TOP/tools/setup-env.sh"
exec "$VENV/bin/python" -m cinder_tintri.cmd.demo "$@"
