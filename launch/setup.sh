#!/usr/bin/env bash
# shellcheck disable=SC2154  # the FLAG_* variables are set by parse_flags (common.sh)
# shellcheck source-path=SCRIPTDIR
# Install spot_jax with TPU jax on every worker of a Cloud TPU VM (--worker=all).
#
#   launch/setup.sh --name=spot-xxl --zone=us-central2-b --source=.                  # this checkout
#   launch/setup.sh --name=spot-xxl --zone=us-central2-b --repo=https://github.com/ORG/spot_jax --ref=v0.1.0
#
# Each worker gets the same tree in ~/spot_jax and a Python 3.11 venv in ~/spot_jax_venv with
# `pip install -e '.[tpu]'` (the pinned dependencies plus jax[tpu] of the same version), then a check
# that every worker sees every chip. Re-running it replaces the tree and reinstalls (idempotent).
#
# --source=DIR is packed into one .tar.gz (without .git, .venv, caches, logs) and copied with
# `gcloud compute tpus tpu-vm scp --worker=all`: one compressed file per worker instead of
# thousands of small ones, and never a multi-GB local venv.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCRIPT=setup.sh
USAGE='setup.sh --name=NAME --zone=ZONE (--source=DIR | --repo=URL [--ref=main]) [--no-check] [--project=PROJECT] [--dry-run]'
HELP='  --name       TPU VM name
  --zone       its zone
  --source     local directory with the spot_jax source (pyproject.toml), copied to every worker
  --repo       git URL cloned on every worker instead (the workers need read access to it)
  --ref        branch, tag or commit of --repo (default main)
  --no-check   skip the final jax check (each worker prints its process index and device counts)
  --project    GCP project (default: gcloud config)
  --dry-run    print the commands, run nothing'
VALUE_FLAGS='name zone source repo ref'
BOOL_FLAGS='no-check'
parse_flags "$@"

require_flag name spot-xxl
require_flag zone us-central2-b
((${#REST_ARGS[@]} == 0)) || usage_error "setup.sh takes no arguments after '--' (got: ${REST_ARGS[*]})"
if [[ -n $FLAG_source && -n $FLAG_repo ]]; then
  usage_error "--source and --repo exclude each other; give one"
fi
if [[ -z $FLAG_source && -z $FLAG_repo ]]; then
  usage_error "missing required flag --source or --repo (e.g. --source=. or --repo=https://github.com/ORG/spot_jax)"
fi
if [[ -n $FLAG_ref && -z $FLAG_repo ]]; then
  usage_error "--ref only applies to --repo (with --source the directory is copied as it is)"
fi
if [[ -n $FLAG_source && ! -f $FLAG_source/pyproject.toml ]]; then
  usage_error "--source=$FLAG_source has no pyproject.toml; point it at the spot_jax checkout (e.g. --source=.)"
fi
gcloud_common_flags
ssh_all=("${GCLOUD_TPU[@]}" ssh "$FLAG_name" "${GCLOUD_FLAGS[@]}" --worker=all)

# 1. The source tree on every worker, in ~/spot_jax.
if [[ -n $FLAG_source ]]; then
  archive="${TMPDIR:-/tmp}/spot_jax-$FLAG_name.tar.gz"
  run_cmd tar -czf "$archive" --exclude=.git --exclude=.venv --exclude=__pycache__ \
    --exclude='*.egg-info' --exclude=.pytest_cache --exclude=./logs -C "$FLAG_source" .
  run_cmd "${GCLOUD_TPU[@]}" scp "$archive" "$FLAG_name:spot_jax_src.tar.gz" "${GCLOUD_FLAGS[@]}" --worker=all
  unpack="rm -rf $REMOTE_SRC && mkdir -p $REMOTE_SRC"
  unpack+=" && tar -xzf ~/spot_jax_src.tar.gz -C $REMOTE_SRC && rm ~/spot_jax_src.tar.gz"
  run_cmd "${ssh_all[@]}" "--command=$unpack"
else
  ref=${FLAG_ref:-main}
  # init + fetch (not clone --branch) so that --ref may also be a commit id.
  fetch="rm -rf $REMOTE_SRC && git init -q $REMOTE_SRC"
  fetch+=" && git -C $REMOTE_SRC fetch -q --depth=1 $(shquote "$FLAG_repo") $(shquote "$ref")"
  fetch+=" && git -C $REMOTE_SRC checkout -q FETCH_HEAD"
  run_cmd "${ssh_all[@]}" "--command=$fetch"
fi

# 2. Python 3.11 (pyproject: >=3.11,<3.12; the TPU images ship 3.10) and the package with TPU jax.
# The lock timeout rides out unattended-upgrades, which holds the apt lock on a fresh VM.
apt='sudo apt-get -o DPkg::Lock::Timeout=600 -q'
install="set -e; python3.11 -c \"import ensurepip\" 2>/dev/null"
install+=" || { $apt update && $apt install -y python3.11 python3.11-venv; }"
install+="; python3.11 -m venv $REMOTE_VENV && $REMOTE_VENV/bin/pip install -q --upgrade pip"
install+=" && cd $REMOTE_SRC && $REMOTE_VENV/bin/pip install -q -e \".[tpu]\""
run_cmd "${ssh_all[@]}" "--command=$install"

# 3. Every worker must see the whole slice (runs on all workers at once, as training will).
if [[ -z $FLAG_no_check ]]; then
  check="import jax; jax.distributed.initialize(); print(dict(process=jax.process_index(),"
  check+=" processes=jax.process_count(), local_devices=jax.local_device_count(), devices=jax.device_count()))"
  run_cmd "${ssh_all[@]}" "--command=$REMOTE_VENV/bin/python -c \"$check\""
fi
note "next: launch/run.sh --name=$FLAG_name --zone=$FLAG_zone" \
  "--config=experiments/spot_source_glue.py:size=xxl --workdir=gs://BUCKET/runs/NAME"
