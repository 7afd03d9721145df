# shellcheck shell=bash
# shellcheck disable=SC2034,SC2088,SC2154  # globals for the scripts that source this; ~ expands remotely
# Shared helpers for the Cloud TPU VM scripts in launch/ (sourced, never run).
#
# Why: every script takes the same kind of flags (--name=NAME or --name NAME), needs the same
# --dry-run behaviour (print each command exactly as it would run, copy-pasteable, run nothing),
# and the same errors (missing or unknown flag -> exit 2 with the flag named and an example).
#
# Portable to the bash 3.2 that macOS ships: no associative arrays, namerefs, ${x^^} or mapfile,
# and empty arrays are expanded as ${a[@]+"${a[@]}"} (bash < 4.4 treats "${a[@]}" as unset).
#
# A script declares its flags, then calls parse_flags "$@":
#   SCRIPT=create.sh
#   USAGE='create.sh --name=NAME --zone=ZONE --accelerator-type=TYPE [--dry-run]'
#   VALUE_FLAGS='name zone accelerator-type'   # --flag=VALUE or --flag VALUE -> $FLAG_accelerator_type
#   BOOL_FLAGS='spot'                            # --flag -> FLAG_spot=1 (else empty)
#   MULTI_FLAGS='env'                            # repeatable --flag=VALUE -> array FLAG_env
# Every script also gets --project, --dry-run and --help. Words after `--` land in REST_ARGS.

# Remote layout on every TPU worker (setup.sh writes it, run.sh uses it).
REMOTE_SRC='~/spot_jax'              # the package source (git checkout or copied tree)
REMOTE_VENV='~/spot_jax_venv'        # Python 3.11 virtual environment with spot_jax[tpu]
REMOTE_LOGS='~/spot_jax_logs'        # per-worker run logs, collected by run.sh
GCLOUD_TPU=(gcloud compute tpus tpu-vm)
GCLOUD_QR=(gcloud compute tpus queued-resources)

die() {  # die MESSAGE...: runtime error (exit 1)
  printf '%s: error: %s\n' "${SCRIPT:-launch}" "$*" >&2
  exit 1
}

usage_error() {  # usage_error MESSAGE...: bad command line (exit 2), with the usage line
  printf '%s: error: %s\n' "${SCRIPT:-launch}" "$*" >&2
  printf 'usage: %s\n' "${USAGE:-}" >&2
  exit 2
}

note() {  # note MESSAGE...: a hint for the user, on stderr (stdout carries only commands)
  printf '%s: %s\n' "${SCRIPT:-launch}" "$*" >&2
}

shquote() {  # shquote WORD: WORD quoted for a POSIX shell, exactly like Python's shlex.quote
  local w=$1 safe='^[A-Za-z0-9_@%+=:,./-]+$' q="'\"'\"'"
  if [[ -z $w ]]; then
    printf "''"
  elif [[ $w =~ $safe ]]; then
    printf '%s' "$w"
  else
    printf "'%s'" "${w//\'/$q}"
  fi
}

cmd_string() {  # cmd_string WORD...: the words as one shell command line (shlex.join)
  local out='' w
  for w in "$@"; do
    out="${out:+$out }$(shquote "$w")"
  done
  printf '%s' "$out"
}

run_cmd() {  # run_cmd WORD...: print '+ <command>'; unless --dry-run, run it and return its status
  if [[ -n ${FLAG_dry_run:-} ]]; then
    printf '+ %s\n' "$(cmd_string "$@")"
    return 0
  fi
  printf '+ %s\n' "$(cmd_string "$@")" >&2
  "$@"
}

_levenshtein() {  # _levenshtein A B -> edit distance (for "did you mean")
  local a=$1 b=$2 i j cost la=${#1} lb=${#2}
  local -a prev cur
  for ((j = 0; j <= lb; j++)); do prev[j]=$j; done
  for ((i = 1; i <= la; i++)); do
    cur=("$i")
    for ((j = 1; j <= lb; j++)); do
      cost=1
      [[ ${a:i-1:1} == "${b:j-1:1}" ]] && cost=0
      cur[j]=$((prev[j] + 1))
      ((cur[j - 1] + 1 < cur[j])) && cur[j]=$((cur[j - 1] + 1))
      ((prev[j - 1] + cost < cur[j])) && cur[j]=$((prev[j - 1] + cost))
    done
    prev=("${cur[@]}")
  done
  printf '%s' "${prev[lb]}"
}

_flag_var() {  # _flag_var accelerator-type -> FLAG_accelerator_type
  printf 'FLAG_%s' "${1//-/_}"
}

_in_list() {  # _in_list WORD "a b c"
  local x
  for x in $2; do [[ $x == "$1" ]] && return 0; done
  return 1
}

_print_help() {
  printf 'usage: %s\n' "$USAGE"
  if [[ -n ${HELP:-} ]]; then printf '\n%s\n' "$HELP"; fi
}

parse_flags() {  # parse_flags "$@": fill FLAG_* variables and REST_ARGS from the command line
  VALUE_FLAGS="${VALUE_FLAGS:-} project"
  BOOL_FLAGS="${BOOL_FLAGS:-} dry-run"
  MULTI_FLAGS="${MULTI_FLAGS:-}"
  REST_ARGS=()
  local f
  for f in $VALUE_FLAGS $BOOL_FLAGS; do printf -v "$(_flag_var "$f")" '%s' ''; done
  for f in $MULTI_FLAGS; do eval "$(_flag_var "$f")=()"; done

  local arg name value has_value
  while (($#)); do
    arg=$1
    shift
    case $arg in
      --)
        REST_ARGS=("$@")
        return 0
        ;;
      -h | --help)
        _print_help
        exit 0
        ;;
      --*=*)
        name=${arg%%=*}
        name=${name#--}
        value=${arg#*=}
        has_value=1
        ;;
      --*)
        name=${arg#--}
        value=''
        has_value=''
        ;;
      *)
        usage_error "unexpected argument '$arg' (flags are --name=VALUE; extra arguments go after '--')"
        ;;
    esac

    if _in_list "$name" "$BOOL_FLAGS"; then
      [[ -n $has_value ]] && usage_error "--$name takes no value (got '$arg'); write just --$name"
      printf -v "$(_flag_var "$name")" '%s' 1
    elif _in_list "$name" "$VALUE_FLAGS $MULTI_FLAGS"; then
      if [[ -z $has_value ]]; then
        (($#)) || usage_error "--$name needs a value, e.g. --$name=VALUE"
        value=$1
        shift
      fi
      if _in_list "$name" "$MULTI_FLAGS"; then
        eval "$(_flag_var "$name")+=(\"\$value\")"
      else
        printf -v "$(_flag_var "$name")" '%s' "$value"
      fi
    else
      local known='' k best='' d bestd=3
      for k in $VALUE_FLAGS $MULTI_FLAGS $BOOL_FLAGS; do
        known="$known --$k"
        d=$(_levenshtein "$name" "$k")
        if ((d < bestd)); then bestd=$d best=$k; fi
      done
      local hint=''
      [[ -n $best ]] && hint=" (did you mean --$best?)"
      usage_error "unknown flag '--$name'$hint. Known flags:$known"
    fi
  done
}

require_flag() {  # require_flag FLAG EXAMPLE: exit 2 unless --FLAG was given a non-empty value
  local var
  var=$(_flag_var "$1")
  if [[ -z ${!var:-} ]]; then
    usage_error "missing required flag --$1 (e.g. --$1=$2)"
  fi
}

gcloud_common_flags() {  # -> GCLOUD_FLAGS: --zone and --project, appended to every gcloud command
  GCLOUD_FLAGS=("--zone=$FLAG_zone")
  if [[ -n ${FLAG_project:-} ]]; then GCLOUD_FLAGS+=("--project=$FLAG_project"); fi
}

workers_for_accelerator() {  # workers_for_accelerator v4-32 -> 4 (hosts in the slice), or "" if unknown
  # Numbers per Cloud TPU docs: v2/v3/v4/v5p count TensorCores (8 per host: 4 chips x 2 cores on
  # v4/v5p, 4 chips x 2 cores on v2/v3); v5e (v5litepod) and v6e count chips, 4 per host on
  # multi-host slices, and up to 8 chips fit on one host.
  local type=$1 n
  n=${type##*-}
  [[ $n =~ ^[0-9]+$ ]] || return 0
  case $type in
    v2-* | v3-* | v4-* | v5p-*)
      if ((n <= 8)); then printf 1; else printf '%s' $((n / 8)); fi
      ;;
    v5litepod-* | v5e-* | v6e-*)
      if ((n <= 8)); then printf 1; else printf '%s' $((n / 4)); fi
      ;;
  esac
}
