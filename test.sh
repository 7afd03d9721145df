#!/usr/bin/env bash
# Installs spot_jax with its test extras into .venv (if missing or stale) and runs the test suite.
# Without arguments: the default suite (not `slow`) on SPOT_JAX_TEST_WORKERS worker processes (2: a
# test mostly runs one core, so two use a 2-core machine; each worker needs up to ~4 GB of memory), one
# test file per worker at a time (its module fixtures made once). With arguments: plain pytest with
# them, e.g. `./test.sh -m slow`, `./test.sh tests/test_t5_parity.py -s`, `./test.sh -n 2 -m slow`.
set -euo pipefail
cd "$(dirname "$0")"
source ./tools/ensure_venv.sh test
if [ "$#" -eq 0 ]; then
  set -- -n "${SPOT_JAX_TEST_WORKERS:-2}" --dist loadfile
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests (exit 5); treating as failure" >&2
  exit 1
fi
exit "$rc"
