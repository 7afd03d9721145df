"""launch/ scripts: the exact gcloud commands they print with --dry-run, their flag errors, and
(with a fake `gcloud` on PATH) what they do without --dry-run: log collection after a failed job,
the worker count from `describe`, and delete's confirmation.

No gcloud is needed: every test puts a fake one first on PATH, which records its calls, and the
dry-run tests assert it was never called.
"""

import os
import pathlib
import shlex
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = ["create.sh", "setup.sh", "run.sh", "ssh.sh", "delete.sh"]
TPU = ["gcloud", "compute", "tpus", "tpu-vm"]
QR = ["gcloud", "compute", "tpus", "queued-resources"]
Z = "--zone=us-central2-b"
CONFIG = "experiments/spot_source_glue.py:size=xxl"

_FAKE_GCLOUD = r"""#!/usr/bin/env bash
# Records each call (arguments separated by \x1f) and plays a TPU VM.
{ printf '%s\x1f' "$@"; printf '\n'; } >> "$FAKE_GCLOUD_LOG"
case "$*" in
  *" describe "*) echo "${FAKE_DESCRIBE_OUT:-4}" ;;
  *" ssh "*) echo "fake job output"; exit "${FAKE_SSH_RC:-0}" ;;
  *" scp "*) exit "${FAKE_SCP_RC:-0}" ;;
esac
"""


@pytest.fixture
def sh(tmp_path):
  """sh(script, *args, input=None, cwd=None, **env) -> CompletedProcess, with a fake gcloud on PATH."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  fake = bin_dir / "gcloud"
  fake.write_text(_FAKE_GCLOUD)
  fake.chmod(0o755)
  log = tmp_path / "gcloud_calls"

  def run(script, *args, input=None, cwd=None, **env):
    full_env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_GCLOUD_LOG=str(log),
                    TMPDIR=str(tmp_path), **env)
    return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, env=full_env,
                          input=input if input is not None else "", cwd=cwd or tmp_path, timeout=30)

  def calls():
    if not log.exists():
      return []
    return [line.split("\x1f")[:-1] for line in log.read_text().splitlines()]

  run.calls = calls
  return run


def dry(sh, script, *args):
  """Runs `script --dry-run args` -> list of argv, one per printed command; checks the format."""
  out = sh(script, "--dry-run", *args)
  assert out.returncode == 0, out.stderr
  commands = []
  for line in out.stdout.splitlines():
    assert line.startswith("+ "), f"not a command line: {line!r}"
    argv = shlex.split(line[2:])
    assert line == "+ " + shlex.join(argv), "printed command is not exactly shell-quoted"
    commands.append(argv)
  assert sh.calls() == [], "--dry-run must not call gcloud"
  return commands


def remote(argv):
  """The --command=... of a `gcloud ... ssh` argv."""
  (command,) = [a for a in argv if a.startswith("--command=")]
  return command[len("--command="):]


# ----------------------------------------------------------------------------- create


def test_create_queued_spot_maps_to_queued_resource_with_node_id(sh):
  cmds = dry(sh, "create.sh", "--name=spot-xxl", Z, "--accelerator-type=v4-32", "--spot", "--queued",
             "--project=my-proj")
  assert cmds == [QR + ["create", "spot-xxl", Z, "--project=my-proj", "--node-id=spot-xxl",
                        "--accelerator-type=v4-32", "--runtime-version=tpu-ubuntu2204-base", "--spot"]]


def test_create_tpu_vm_uses_version_flag_and_spot_or_preemptible(sh):
  base = TPU + ["create", "spot-xxl", Z, "--accelerator-type=v4-32"]
  args = ("--name=spot-xxl", Z, "--accelerator-type=v4-32")
  assert dry(sh, "create.sh", *args) == [base + ["--version=tpu-ubuntu2204-base"]]
  assert dry(sh, "create.sh", *args, "--spot") == [base + ["--version=tpu-ubuntu2204-base", "--spot"]]
  assert dry(sh, "create.sh", *args, "--preemptible", "--runtime-version=v2-alpha-tpuv5") == [
      base + ["--version=v2-alpha-tpuv5", "--preemptible"]]


def test_create_queued_preemptible_is_alpha_best_effort(sh):
  cmds = dry(sh, "create.sh", "--name", "n", "--zone", "us-central2-b", "--accelerator-type", "v4-8", "--queued",
             "--preemptible")
  assert cmds == [["gcloud", "alpha", "compute", "tpus", "queued-resources", "create", "n", Z, "--node-id=n",
                   "--accelerator-type=v4-8", "--runtime-version=tpu-ubuntu2204-base", "--best-effort"]]


def test_create_spot_and_preemptible_exclude_each_other(sh):
  out = sh("create.sh", "--dry-run", "--name=n", Z, "--accelerator-type=v4-8", "--spot", "--preemptible")
  assert out.returncode == 2
  assert "--spot and --preemptible" in out.stderr


# ----------------------------------------------------------------------------- setup


def test_setup_from_source_copies_one_archive_to_all_workers_and_installs_tpu_extra(sh, tmp_path):
  cmds = dry(sh, "setup.sh", "--name=spot-xxl", Z, f"--source={REPO}")
  archive = f"{tmp_path}/spot_jax-spot-xxl.tar.gz"
  assert cmds[0][:3] == ["tar", "-czf", archive]
  assert {"--exclude=.venv", "--exclude=.git"} <= set(cmds[0])
  assert cmds[0][-3:] == ["-C", str(REPO), "."]
  assert cmds[1] == TPU + ["scp", archive, "spot-xxl:spot_jax_src.tar.gz", Z, "--worker=all"]
  for argv in cmds[2:]:
    assert argv[:6] == TPU + ["ssh", "spot-xxl"] and argv[6:8] == [Z, "--worker=all"]
  assert "tar -xzf ~/spot_jax_src.tar.gz -C ~/spot_jax" in remote(cmds[2])
  install = remote(cmds[3])
  assert "python3.11 -m venv ~/spot_jax_venv" in install
  assert 'cd ~/spot_jax && ~/spot_jax_venv/bin/pip install -q -e ".[tpu]"' in install
  assert "jax.distributed.initialize()" in remote(cmds[4])
  assert len(cmds) == 5


def test_setup_from_repo_fetches_ref_on_all_workers(sh):
  cmds = dry(sh, "setup.sh", "--name=n", Z, "--repo=https://github.com/org/spot_jax.git", "--ref=v0.1.0",
             "--no-check", "--project=p")
  assert len(cmds) == 2
  assert cmds[0][:9] == TPU + ["ssh", "n", Z, "--project=p", "--worker=all"]
  assert ("git -C ~/spot_jax fetch -q --depth=1 https://github.com/org/spot_jax.git v0.1.0 "
          "&& git -C ~/spot_jax checkout -q FETCH_HEAD") in remote(cmds[0])
  assert ".[tpu]" in remote(cmds[1])


@pytest.mark.parametrize("args, message", [
    ([], "missing required flag --source or --repo"),
    (["--source=.", "--repo=u"], "--source and --repo exclude each other"),
    (["--source=/nonexistent"], "has no pyproject.toml"),
    (["--source=.", "--ref=v1"], "--ref only applies to --repo"),
])
def test_setup_source_flag_errors(sh, args, message):
  out = sh("setup.sh", "--dry-run", "--name=n", Z, *args, cwd=REPO)
  assert out.returncode == 2
  assert message in out.stderr


# ----------------------------------------------------------------------------- run


def test_run_on_all_workers_with_env_extra_flags_and_log_collection(sh):
  cmds = dry(sh, "run.sh", "--name=spot-xxl", Z, "--accelerator-type=v4-32", f"--config={CONFIG}",
             "--workdir=gs://bucket/runs/src", "--env=TFDS_DATA_DIR=gs://bucket/tfds", "--env", "NOTE=two words",
             "--", "--config.model.hf_path=gs://bucket/t5-xxl-lm-adapt", "--config.train.mesh_shape=(2,8)")
  job = ("set -o pipefail; mkdir -p ~/spot_jax_logs && cd ~/spot_jax && "
         "PYTHONUNBUFFERED=1 TFDS_DATA_DIR=gs://bucket/tfds NOTE='two words' "
         "~/spot_jax_venv/bin/spot-jax train --config=experiments/spot_source_glue.py:size=xxl "
         "--workdir=gs://bucket/runs/src --config.model.hf_path=gs://bucket/t5-xxl-lm-adapt "
         "'--config.train.mesh_shape=(2,8)' 2>&1 | tee ~/spot_jax_logs/run.log")
  assert cmds[0] == TPU + ["ssh", "spot-xxl", Z, "--worker=all", f"--command={job}"]
  # What the remote shell runs: the env value with a space and the config arg stay one word each.
  words = shlex.split(job.split(" && ", 2)[2].split(" 2>&1 ")[0])
  assert words[2] == "NOTE=two words"
  assert words[5] == "--config=experiments/spot_source_glue.py:size=xxl"
  # v4-32 = 16 chips on 4 hosts: one log per worker.
  assert cmds[1] == ["mkdir", "-p", "logs/spot-xxl"]
  assert cmds[2:] == [TPU + ["scp", "spot-xxl:spot_jax_logs/run.log", f"logs/spot-xxl/worker-{i}.log", Z,
                             f"--worker={i}"] for i in range(4)]


def test_run_remote_command_keeps_words_env_and_exit_status(sh, tmp_path):
  """Runs the printed --command the way a worker's shell would, with a fake spot-jax in a fake home."""
  home = tmp_path / "worker"
  (home / "spot_jax").mkdir(parents=True)
  fake = home / "spot_jax_venv" / "bin" / "spot-jax"
  fake.parent.mkdir(parents=True)
  fake.write_text('#!/usr/bin/env bash\necho "cwd=$PWD note=$NOTE"; printf "arg=%s\\n" "$@"; exit 5\n')
  fake.chmod(0o755)
  cmds = dry(sh, "run.sh", "--name=n", Z, "--num-workers=1", f"--config={CONFIG}", "--workdir=gs://b/my run",
             "--env", "NOTE=it's two words", "--", "--x=a b", "--config.train.mesh_shape=2,8")
  out = subprocess.run(["bash", "-c", remote(cmds[0])], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, HOME=str(home)))
  assert out.returncode == 5  # the job's status, through `| tee`
  expected = [f"cwd={home / 'spot_jax'} note=it's two words", "arg=train", f"arg=--config={CONFIG}",
              "arg=--workdir=gs://b/my run", "arg=--x=a b", "arg=--config.train.mesh_shape=2,8"]
  assert out.stdout.splitlines() == expected
  assert (home / "spot_jax_logs" / "run.log").read_text().splitlines() == expected


def test_setup_source_archive_unpacks_on_the_worker_without_local_clutter(sh, tmp_path):
  src = tmp_path / "src"
  for rel in ["pyproject.toml", "spot_jax/__init__.py", ".venv/bin/python", ".git/HEAD", "spot_jax/__pycache__/x.pyc",
              "logs/n/worker-0.log"]:
    (src / rel).parent.mkdir(parents=True, exist_ok=True)
    (src / rel).write_text("x")
  cmds = dry(sh, "setup.sh", "--name=n", Z, f"--source={src}", "--no-check")
  subprocess.run(cmds[0], check=True, cwd=tmp_path)  # the local tar
  home = tmp_path / "worker"
  home.mkdir()
  shutil.copy(cmds[1][5], home / "spot_jax_src.tar.gz")  # what scp does
  subprocess.run(["bash", "-c", remote(cmds[2])], check=True, env=dict(os.environ, HOME=str(home)))
  files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
  assert files == ["spot_jax/pyproject.toml", "spot_jax/spot_jax/__init__.py"]


def test_run_quotes_a_config_arg_that_needs_it(sh):
  cmds = dry(sh, "run.sh", "--name=n", Z, "--num-workers=1", "--command=eval",
             "--config=experiments/spot_source_glue.py:size=xxl,source=mnli", "--workdir=gs://b/my run")
  job = remote(cmds[0])
  assert ("~/spot_jax_venv/bin/spot-jax eval --config=experiments/spot_source_glue.py:size=xxl,source=mnli "
          "--workdir='gs://b/my run' 2>&1") in job


@pytest.mark.parametrize("accelerator, workers", [
    ("v4-8", 1), ("v4-32", 4), ("v4-128", 16), ("v5p-64", 8), ("v3-32", 4), ("v5litepod-8", 1),
    ("v5litepod-16", 4), ("v6e-8", 1), ("v6e-256", 64)])
def test_run_worker_count_from_accelerator_type(sh, accelerator, workers):
  cmds = dry(sh, "run.sh", "--name=n", Z, f"--accelerator-type={accelerator}", f"--config={CONFIG}",
             "--workdir=gs://b/w")
  assert [c[-1] for c in cmds if "scp" in c] == [f"--worker={i}" for i in range(workers)]


def test_run_num_workers_wins_over_accelerator_type(sh):
  cmds = dry(sh, "run.sh", "--name=n", Z, "--accelerator-type=v4-32", "--num-workers=2", f"--config={CONFIG}",
             "--workdir=gs://b/w")
  assert len([c for c in cmds if "scp" in c]) == 2


def test_run_detach_starts_in_background_and_collect_only_copies_logs(sh):
  cmds = dry(sh, "run.sh", "--name=n", Z, f"--config={CONFIG}", "--workdir=gs://b/w", "--detach")
  assert len(cmds) == 1
  assert remote(cmds[0]) == (
      "mkdir -p ~/spot_jax_logs && cd ~/spot_jax && nohup env PYTHONUNBUFFERED=1 ~/spot_jax_venv/bin/spot-jax "
      f"train --config={CONFIG} --workdir=gs://b/w > ~/spot_jax_logs/run.log 2>&1 < /dev/null &")
  cmds = dry(sh, "run.sh", "--name=n", Z, "--num-workers=2", "--collect-only")
  assert [c[4] for c in cmds[1:]] == ["scp", "scp"]


def test_run_dry_run_needs_a_worker_count(sh):
  out = sh("run.sh", "--dry-run", "--name=n", Z, f"--config={CONFIG}", "--workdir=gs://b/w")
  assert out.returncode == 2
  assert "--num-workers" in out.stderr and "--accelerator-type" in out.stderr


@pytest.mark.parametrize("bad", ["--env=NOEQUALS", "--env=1BAD=x", "--num-workers=0", "--accelerator-type=v9-32"])
def test_run_rejects_bad_values(sh, bad):
  out = sh("run.sh", "--dry-run", "--name=n", Z, f"--config={CONFIG}", "--workdir=gs://b/w", bad)
  assert out.returncode == 2
  assert bad.split("=")[0] in out.stderr


def test_run_failed_job_still_collects_logs_and_returns_its_status(sh, tmp_path):
  out = sh("run.sh", "--name=n", Z, f"--config={CONFIG}", "--workdir=gs://b/w", FAKE_SSH_RC="3",
           FAKE_DESCRIBE_OUT="2")
  assert out.returncode == 3, out.stderr
  assert "fake job output" in out.stdout
  calls = sh.calls()
  assert [c[3] for c in calls] == ["ssh", "describe", "scp", "scp"]  # worker count asked from gcloud
  assert calls[1][-1] == "--format=value(networkEndpoints.len())"
  assert (tmp_path / "logs" / "n").is_dir()
  # Commands are echoed on stderr when they run.
  assert "+ gcloud compute tpus tpu-vm scp n:spot_jax_logs/run.log logs/n/worker-1.log" in out.stderr


def test_run_missing_worker_log_is_reported_not_fatal(sh):
  out = sh("run.sh", "--name=n", Z, "--num-workers=2", f"--config={CONFIG}", "--workdir=gs://b/w",
           FAKE_SCP_RC="1")
  assert out.returncode == 0
  assert "no log from worker 1" in out.stderr


# ----------------------------------------------------------------------------- ssh, delete


def test_ssh_interactive_and_command_on_all_workers(sh):
  assert dry(sh, "ssh.sh", "--name=n", Z) == [TPU + ["ssh", "n", Z, "--worker=0"]]
  assert dry(sh, "ssh.sh", "--name=n", Z, "--worker=all", "--", "pgrep", "-af", "spot-jax") == [
      TPU + ["ssh", "n", Z, "--worker=all", "--command=pgrep -af spot-jax"]]


def test_ssh_all_workers_needs_a_command(sh):
  out = sh("ssh.sh", "--dry-run", "--name=n", Z, "--worker=all")
  assert out.returncode == 2
  assert "--worker=all needs a command" in out.stderr


def test_delete_tpu_vm_and_queued_resource(sh):
  assert dry(sh, "delete.sh", "--name=n", Z) == [TPU + ["delete", "n", Z, "--quiet"]]
  assert dry(sh, "delete.sh", "--name=n", Z, "--queued") == [QR + ["delete", "n", Z, "--force", "--quiet"]]


def test_delete_asks_for_confirmation(sh):
  out = sh("delete.sh", "--name=n", Z, input="n\n")
  assert out.returncode == 1
  assert "not deleted" in out.stderr
  assert sh.calls() == []
  out = sh("delete.sh", "--name=n", Z, input="y\n")
  assert out.returncode == 0, out.stderr
  assert sh.calls() == [TPU[1:] + ["delete", "n", Z, "--quiet"]]


def test_delete_yes_skips_the_question(sh):
  out = sh("delete.sh", "--name=n", Z, "--yes", "--queued")
  assert out.returncode == 0, out.stderr
  assert sh.calls() == [QR[1:] + ["delete", "n", Z, "--force", "--quiet"]]


# ----------------------------------------------------------------------------- flag errors


@pytest.mark.parametrize("script, args, missing", [
    ("create.sh", [Z, "--accelerator-type=v4-32"], "--name"),
    ("create.sh", ["--name=n", "--accelerator-type=v4-32"], "--zone"),
    ("create.sh", ["--name=n", Z], "--accelerator-type"),
    ("setup.sh", [Z, "--source=."], "--name"),
    ("run.sh", ["--name=n", Z, "--num-workers=1", "--workdir=gs://b/w"], "--config"),
    ("run.sh", ["--name=n", Z, "--num-workers=1", f"--config={CONFIG}"], "--workdir"),
    ("ssh.sh", ["--name=n"], "--zone"),
    ("delete.sh", [Z], "--name"),
])
def test_missing_required_flag_exits_2_naming_it_with_an_example(sh, script, args, missing):
  out = sh(script, "--dry-run", *args, cwd=REPO)
  assert out.returncode == 2
  assert f"missing required flag {missing} (e.g. {missing}=" in out.stderr
  assert "usage:" in out.stderr
  assert out.stdout == ""


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_flag_exits_2_naming_it(sh, script):
  out = sh(script, "--dry-run", "--name=n", Z, "--zonee=x")
  assert out.returncode == 2
  assert "unknown flag '--zonee' (did you mean --zone?)" in out.stderr
  assert out.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["stray"], "unexpected argument 'stray'"),
    (["--spot=yes"], "--spot takes no value"),
    (["--name"], "--name needs a value"),
])
def test_malformed_flags_exit_2(sh, args, message):
  out = sh("create.sh", "--dry-run", Z, "--accelerator-type=v4-8", *(["--name=n"] if args != ["--name"] else []),
           *args)
  assert out.returncode == 2
  assert message in out.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0(sh, script):
  out = sh(script, "--help")
  assert out.returncode == 0
  assert out.stdout.startswith(f"usage: {script}")


# ----------------------------------------------------------------------------- static checks


@pytest.mark.parametrize("script", SCRIPTS + ["common.sh"])
def test_scripts_parse(script):
  subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
  out = subprocess.run(["shellcheck", "-x", *[str(LAUNCH / s) for s in SCRIPTS]], capture_output=True, text=True,
                       cwd=REPO)
  assert out.returncode == 0, out.stdout
