#!/usr/bin/env bash
# shellcheck disable=SC2154  # the FLAG_* variables are set by parse_flags (common.sh)
# shellcheck source-path=SCRIPTDIR
# Create a Cloud TPU VM (or a queued resource that provisions one) for spot_jax.
#
#   launch/create.sh --name=spot-xxl --zone=us-central2-b --accelerator-type=v4-32 --spot --queued
#
# Without --queued: `gcloud compute tpus tpu-vm create` (fails at once if there is no capacity).
# With --queued: `gcloud compute tpus queued-resources create NAME --node-id=NAME` (waits in a queue
# until capacity frees up; the TPU VM gets the same name, so the other scripts work unchanged).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCRIPT=create.sh
USAGE='create.sh --name=NAME --zone=ZONE --accelerator-type=TYPE [--runtime-version=VERSION] [--spot | --preemptible] [--queued] [--project=PROJECT] [--dry-run]'
HELP='  --name               TPU VM name (also the queued-resource id with --queued)
  --zone               e.g. us-central2-b (v4), us-east5-a (v5p), us-east1-d (v6e)
  --accelerator-type   e.g. v4-8, v4-32, v5p-32, v5litepod-16, v6e-16
  --runtime-version    TPU software image (default tpu-ubuntu2204-base, for v2-v4; v5e:
                       v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e)
  --spot               Spot capacity: much cheaper, may be preempted at any time, no time limit
  --preemptible        legacy preemptible TPU (24 h limit); with --queued: the alpha best-effort tier
  --queued             request through a queued resource (gcloud compute tpus queued-resources)
  --project            GCP project (default: gcloud config)
  --dry-run            print the gcloud commands, run nothing'
VALUE_FLAGS='name zone accelerator-type runtime-version'
BOOL_FLAGS='spot preemptible queued'
parse_flags "$@"

require_flag name spot-xxl
require_flag zone us-central2-b
require_flag accelerator-type v4-32
((${#REST_ARGS[@]} == 0)) || usage_error "create.sh takes no arguments after '--' (got: ${REST_ARGS[*]})"
if [[ -n $FLAG_spot && -n $FLAG_preemptible ]]; then
  usage_error "--spot and --preemptible exclude each other; pick one (--spot is the cheaper, current option)"
fi
runtime_version=${FLAG_runtime_version:-tpu-ubuntu2204-base}
gcloud_common_flags

if [[ -z $FLAG_queued ]]; then
  # tpu-vm create names the software image --version (queued-resources create: --runtime-version).
  cmd=("${GCLOUD_TPU[@]}" create "$FLAG_name" "${GCLOUD_FLAGS[@]}"
    "--accelerator-type=$FLAG_accelerator_type" "--version=$runtime_version")
  if [[ -n $FLAG_spot ]]; then cmd+=(--spot); fi
  if [[ -n $FLAG_preemptible ]]; then cmd+=(--preemptible); fi
  run_cmd "${cmd[@]}"
  note "next: launch/setup.sh --name=$FLAG_name --zone=$FLAG_zone --source=."
  exit 0
fi

# Queued resource. GA `queued-resources create` has --spot (and --guaranteed/--reserved) but no
# preemptible tier; the closest, --best-effort, exists only in `gcloud alpha`.
if [[ -n $FLAG_preemptible ]]; then
  cmd=(gcloud alpha compute tpus queued-resources create)
  note "queued resources have no 'preemptible' tier: using the alpha best-effort tier (--best-effort)." \
    "--spot is the GA option and usually what you want."
else
  cmd=("${GCLOUD_QR[@]}" create)
fi
cmd+=("$FLAG_name" "${GCLOUD_FLAGS[@]}" "--node-id=$FLAG_name"
  "--accelerator-type=$FLAG_accelerator_type" "--runtime-version=$runtime_version")
if [[ -n $FLAG_spot ]]; then cmd+=(--spot); fi
if [[ -n $FLAG_preemptible ]]; then cmd+=(--best-effort); fi
run_cmd "${cmd[@]}"
note "the request waits for capacity; watch it with:" \
  "gcloud compute tpus queued-resources describe $FLAG_name --zone=$FLAG_zone --format='value(state.state)'" \
  "(ACTIVE = the TPU VM $FLAG_name exists; then run launch/setup.sh)"
