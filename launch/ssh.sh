#!/usr/bin/env bash
# shellcheck disable=SC2154  # the FLAG_* variables are set by parse_flags (common.sh)
# shellcheck source-path=SCRIPTDIR
# SSH into one worker of a Cloud TPU VM, or run a command on one, several or all workers.
#
#   launch/ssh.sh --name=spot-xxl --zone=us-central2-b                       # shell on worker 0
#   launch/ssh.sh --name=spot-xxl --zone=us-central2-b --worker=all -- 'pgrep -af spot-jax'
#
# The words after `--` are joined with spaces into one remote command line (as ssh does), so quote
# what the remote shell should see as one word. --worker=all (or a list such as 1,3 or a range 0-2)
# needs a command: gcloud opens an interactive shell on one worker only.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCRIPT=ssh.sh
USAGE='ssh.sh --name=NAME --zone=ZONE [--worker=0 | --worker=all] [--project=PROJECT] [--dry-run] [-- COMMAND...]'
HELP='  --name     TPU VM name
  --zone     its zone
  --worker   worker index (default 0); with a command also all, a list (0,2) or a range (1-3)
  --project  GCP project (default: gcloud config)
  --dry-run  print the gcloud command, run nothing
  -- CMD...  run CMD on the worker(s) instead of opening a shell'
VALUE_FLAGS='name zone worker'
parse_flags "$@"

require_flag name spot-xxl
require_flag zone us-central2-b
worker=${FLAG_worker:-0}
if [[ ! $worker =~ ^(all|[0-9]+([-,][0-9]+)*)$ ]]; then
  usage_error "--worker takes an index (0), all, a list (0,2) or a range (1-3); got '$worker'"
fi
if [[ ! $worker =~ ^[0-9]+$ && ${#REST_ARGS[@]} -eq 0 ]]; then
  usage_error "--worker=$worker needs a command after '--' (an interactive shell is one worker: --worker=0)"
fi
gcloud_common_flags

cmd=("${GCLOUD_TPU[@]}" ssh "$FLAG_name" "${GCLOUD_FLAGS[@]}" "--worker=$worker")
if ((${#REST_ARGS[@]} > 0)); then cmd+=("--command=${REST_ARGS[*]}"); fi
run_cmd "${cmd[@]}"
