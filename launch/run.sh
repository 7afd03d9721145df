#!/usr/bin/env bash
# shellcheck disable=SC2154  # the FLAG_* variables are set by parse_flags (common.sh)
# shellcheck source-path=SCRIPTDIR
# Run a spot_jax job on every worker of a Cloud TPU VM at once, and collect each worker's log.
#
#   launch/run.sh --name=spot-xxl --zone=us-central2-b --accelerator-type=v4-32 \
#     --config=experiments/spot_source_glue.py:size=xxl --workdir=gs://BUCKET/runs/src_glue_xxl \
#     --env=TFDS_DATA_DIR=gs://BUCKET/tfds -- --config.model.hf_path=gs://BUCKET/t5-xxl-lm-adapt
#
# Every worker runs `spot-jax COMMAND --config=... --workdir=... [extra flags]` (JAX multi-host: the
# same program on every host), its output tee'd to ~/spot_jax_logs/run.log on that worker; then each
# worker's log is copied back to logs/NAME/worker-I.log, also when the job failed. The exit status is
# the job's.
#
# How many logs to collect: --num-workers=N, else the count implied by --accelerator-type (v4-32 ->
# 4 hosts), else (not in --dry-run) asked from `gcloud compute tpus tpu-vm describe`.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCRIPT=run.sh
USAGE='run.sh --name=NAME --zone=ZONE --config=experiments/X.py[:ARG] --workdir=DIR [--command=train] [--env=KEY=VALUE ...] [--num-workers=N | --accelerator-type=TYPE] [--detach | --collect-only] [--project=PROJECT] [--dry-run] [-- EXTRA SPOT-JAX FLAGS]'
HELP='  --name              TPU VM name
  --zone              its zone
  --config            experiment config, e.g. experiments/spot_source_glue.py:size=xxl
  --workdir           output directory, normally gs://BUCKET/... (every worker must reach it)
  --command           spot-jax subcommand (default train; also eval, retrieve, grid, library)
  --env KEY=VALUE     environment variable for the job on every worker (repeatable)
  --num-workers       number of TPU VM hosts (logs to collect)
  --accelerator-type  or give the type and the host count follows (v4-32 -> 4)
  --detach            start the job in the background (nohup) and return; collect later
  --collect-only      only copy the workers'"'"' logs back (after --detach, or after a lost connection)
  --project           GCP project (default: gcloud config)
  --dry-run           print the gcloud commands, run nothing
  -- FLAGS...         passed on to spot-jax, e.g. -- --config.model.hf_path=gs://BUCKET/t5-xxl'
VALUE_FLAGS='name zone config workdir command num-workers accelerator-type'
BOOL_FLAGS='detach collect-only'
MULTI_FLAGS='env'
parse_flags "$@"

require_flag name spot-xxl
require_flag zone us-central2-b
if [[ -n $FLAG_detach && -n $FLAG_collect_only ]]; then
  usage_error "--detach and --collect-only exclude each other"
fi
if [[ -z $FLAG_collect_only ]]; then
  require_flag config experiments/spot_source_glue.py:size=xxl
  require_flag workdir gs://BUCKET/runs/src_glue_xxl
fi
subcommand=${FLAG_command:-train}
env_words=(PYTHONUNBUFFERED=1)  # so that prints reach the log as they happen
for kv in ${FLAG_env[@]+"${FLAG_env[@]}"}; do
  key=${kv%%=*}
  if [[ $kv != *=* || ! $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    usage_error "--env takes KEY=VALUE with KEY a shell variable name (got '$kv'), e.g. --env=TFDS_DATA_DIR=gs://BUCKET/tfds"
  fi
  env_words+=("$key=$(shquote "${kv#*=}")")
done

num_workers=$FLAG_num_workers
if [[ -n $num_workers && ! $num_workers =~ ^[1-9][0-9]*$ ]]; then
  usage_error "--num-workers must be a positive integer (got '$num_workers')"
fi
if [[ -z $num_workers && -n $FLAG_accelerator_type ]]; then
  num_workers=$(workers_for_accelerator "$FLAG_accelerator_type")
  if [[ -z $num_workers ]]; then
    usage_error "cannot tell the host count of --accelerator-type=$FLAG_accelerator_type; give --num-workers=N"
  fi
fi
if [[ -z $num_workers && -n $FLAG_dry_run && -z $FLAG_detach ]]; then
  usage_error "--dry-run needs --num-workers=N or --accelerator-type=TYPE (e.g. --accelerator-type=v4-32) to list the log copies"
fi
gcloud_common_flags
local_logs="logs/$FLAG_name"
remote_log="$REMOTE_LOGS/run.log"

collect_logs() {  # copy ~/spot_jax_logs/run.log of every worker to logs/NAME/worker-I.log
  local n=$num_workers i failed=0
  if [[ -z $n ]]; then
    n=$(run_cmd "${GCLOUD_TPU[@]}" describe "$FLAG_name" "${GCLOUD_FLAGS[@]}" '--format=value(networkEndpoints.len())') ||
      die "could not describe TPU VM '$FLAG_name' to count its workers; give --num-workers=N"
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "unexpected worker count '$n' from gcloud; give --num-workers=N"
  fi
  run_cmd mkdir -p "$local_logs"
  for ((i = 0; i < n; i++)); do
    # scp paths are relative to the remote home (no ~: scp would not expand it).
    run_cmd "${GCLOUD_TPU[@]}" scp "$FLAG_name:${remote_log#\~/}" "$local_logs/worker-$i.log" \
      "${GCLOUD_FLAGS[@]}" "--worker=$i" || { failed=1; note "no log from worker $i"; }
  done
  [[ -n ${FLAG_dry_run:-} ]] || note "logs in $local_logs/worker-{0..$((n - 1))}.log"
  return "$failed"
}

if [[ -n $FLAG_collect_only ]]; then
  ((${#REST_ARGS[@]} == 0)) || usage_error "--collect-only takes no arguments after '--'"
  collect_logs
  exit $?
fi

job=("$REMOTE_VENV/bin/spot-jax" "$(shquote "$subcommand")" "--config=$(shquote "$FLAG_config")" "--workdir=$(shquote "$FLAG_workdir")")
for w in ${REST_ARGS[@]+"${REST_ARGS[@]}"}; do job+=("$(shquote "$w")"); done
job_line="${env_words[*]} ${job[*]}"
prepare="mkdir -p $REMOTE_LOGS && cd $REMOTE_SRC"

if [[ -n $FLAG_detach ]]; then
  # nohup + redirected stdin/stdout: the job survives the end of the ssh session.
  run_cmd "${GCLOUD_TPU[@]}" ssh "$FLAG_name" "${GCLOUD_FLAGS[@]}" --worker=all \
    "--command=$prepare && nohup env $job_line > $remote_log 2>&1 < /dev/null &"
  collect=(launch/run.sh "--name=$FLAG_name" "--zone=$FLAG_zone")
  if [[ -n $FLAG_project ]]; then collect+=("--project=$FLAG_project"); fi
  if [[ -n $FLAG_num_workers ]]; then collect+=("--num-workers=$FLAG_num_workers"); fi
  if [[ -n $FLAG_accelerator_type ]]; then collect+=("--accelerator-type=$FLAG_accelerator_type"); fi
  note "started in the background; follow worker 0 with: launch/ssh.sh --name=$FLAG_name --zone=$FLAG_zone -- tail -f '$remote_log'"
  note "collect the logs with: $(cmd_string "${collect[@]}") --collect-only"
  exit 0
fi

status=0
run_cmd "${GCLOUD_TPU[@]}" ssh "$FLAG_name" "${GCLOUD_FLAGS[@]}" --worker=all \
  "--command=set -o pipefail; $prepare && $job_line 2>&1 | tee $remote_log" || status=$?
if ((status != 0)); then note "the job failed on at least one worker (exit $status); collecting the logs"; fi
collect_logs || true
exit "$status"
