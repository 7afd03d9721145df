#!/usr/bin/env bash
# Installs spot_jax into .venv (if missing or stale) and runs the offline SPoT quickstart on the
# synthetic task families: backbone -> source prompts / library -> retrieval -> transfer -> table.
# Extra arguments go to `spot-jax quickstart`, e.g. `./quickstart.sh --workdir=/tmp/qs`.
set -euo pipefail
cd "$(dirname "$0")"
source ./tools/ensure_venv.sh ""
workdir="runs/quickstart"
for arg in "$@"; do
  case "$arg" in --workdir=*) workdir="${arg#--workdir=}" ;; esac
done
exec .venv/bin/spot-jax quickstart --config=experiments/quickstart.py --workdir="$workdir" "$@"
