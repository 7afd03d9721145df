#!/usr/bin/env bash
# Installs spot_jax with its test extras into .venv (if missing or stale) and runs the test suite.
# Extra arguments go to pytest, e.g. `./test.sh -m slow` or `./test.sh tests/test_t5_parity.py`.
set -euo pipefail
cd "$(dirname "$0")"
source ./tools/ensure_venv.sh test
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests (exit 5); treating as failure" >&2
  exit 1
fi
exit "$rc"
