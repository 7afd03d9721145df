#!/usr/bin/env bash
# shellcheck disable=SC2154  # the FLAG_* variables are set by parse_flags (common.sh)
# shellcheck source-path=SCRIPTDIR
# Delete a Cloud TPU VM (or, with --queued, its queued resource and the TPU VM it provisioned).
#
#   launch/delete.sh --name=spot-xxl --zone=us-central2-b --queued --yes
#
# A TPU slice bills until it is deleted, stopped or not; this is the step that ends the cost.
# Asks for confirmation unless --yes (or --dry-run). Logs on the workers are lost: run
# `launch/run.sh ... --collect-only` first if you need them (the workdir in gs:// stays).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCRIPT=delete.sh
USAGE='delete.sh --name=NAME --zone=ZONE [--queued] [--yes] [--project=PROJECT] [--dry-run]'
HELP='  --name     TPU VM name (the queued-resource id with --queued)
  --zone     its zone
  --queued   delete the queued resource (with --force: its TPU VM too), as made by create.sh --queued
  --yes      do not ask for confirmation
  --project  GCP project (default: gcloud config)
  --dry-run  print the gcloud command, run nothing'
VALUE_FLAGS='name zone'
BOOL_FLAGS='queued yes'
parse_flags "$@"

require_flag name spot-xxl
require_flag zone us-central2-b
((${#REST_ARGS[@]} == 0)) || usage_error "delete.sh takes no arguments after '--' (got: ${REST_ARGS[*]})"
gcloud_common_flags

if [[ -n $FLAG_queued ]]; then
  what="queued resource '$FLAG_name' and its TPU VM"
  # --force: also delete the node(s) the request provisioned (else the call fails while they exist).
  cmd=("${GCLOUD_QR[@]}" delete "$FLAG_name" "${GCLOUD_FLAGS[@]}" --force --quiet)
else
  what="TPU VM '$FLAG_name'"
  cmd=("${GCLOUD_TPU[@]}" delete "$FLAG_name" "${GCLOUD_FLAGS[@]}" --quiet)
fi

if [[ -z $FLAG_yes && -z $FLAG_dry_run ]]; then
  printf 'Delete %s in %s? Everything on its disks is lost. [y/N] ' "$what" "$FLAG_zone" >&2
  answer=''
  read -r answer || true
  case $answer in
    y | Y | yes | YES) ;;
    *) die "not deleted (answer 'y' to confirm, or pass --yes)" ;;
  esac
fi
run_cmd "${cmd[@]}"
