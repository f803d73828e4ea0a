#!/usr/bin/env bash
# Run the whole test suite (unit + functional) from a fresh machine:
#   bash tools/run-tests.sh [stestr filter regex]
# Installs what it needs (see tools/setup-env.sh), runs flake8, then the
# tests under stestr, prints "N skipped" and ends with the plain line
# "N passed, N failed".
set -uo pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP"
# shellcheck source=tools/setup-env.sh
source "$TOP/tools/setup-env.sh" || { echo "0 passed, 1 failed"; exit 1; }
set +e

lint_rc=0
if [ $# -eq 0 ]; then
    echo "== flake8"
    "$VENV/bin/flake8" cinder_tintri tests tools setup.py
    lint_rc=$?
fi

echo "== stestr"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$VENV/bin/stestr" run --color "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

count() { grep -E "^ - $1: [0-9]+" "$log" | tail -1 | grep -oE '[0-9]+$' || echo 0; }
passed=$(count Passed)
failed=$(count Failed)
skipped=$(count Skipped)
unexpected=$(count 'Unexpected Success')
failed=$((failed + unexpected))
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1   # stestr itself failed (import error, no tests, ...)
fi
if [ "$lint_rc" -ne 0 ]; then
    echo "flake8 found problems (see above)"
    failed=$((failed + 1))
fi
echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
