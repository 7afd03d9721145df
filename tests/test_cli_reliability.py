"""Through `spot-jax` as a user runs it: bad input, bad configs and refused workdirs fail fast with one
clear line (exit 2; storage errors exit 1); nothing already written is touched."""

import json
import os
import shutil
import subprocess
import time

import jax
import numpy as np
import pytest

from spot_jax.checkpoints import hf
from spot_jax.models import t5
from spot_jax.spot import library as library_lib
from tests import cli_world as world_lib


def _train_args(world, workdir, steps=4, task="synth_seven_comma", hf_path=None):
  experiment = f"experiments/prompt_tuning.py:task={task},hf_path={hf_path or world.backbone},steps={steps}"
  return ["train", f"--config={experiment}",
          f"--workdir={workdir}", "--config.train.eval_every=2"]


def _one_error(out, command="train"):
  """The process failed with exactly one line on stderr (after start-up noise): that line."""
  lines = world_lib.error_lines(out.stderr)
  assert out.returncode != 0, out.stdout[-2000:]
  assert len(lines) == 1, "\n".join(lines[-40:])
  assert lines[0].startswith(f"spot-jax {command}: error: "), lines[0]
  return lines[0]


@pytest.fixture(scope="module")
def source_run(cli_world, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reliability") / "source")
  out = world_lib.run_cli(cli_world, *_train_args(cli_world, workdir))
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def test_workdir_of_another_config_is_refused_untouched(cli_world, source_run):
  before = world_lib.workdir_snapshot(source_run)
  out = world_lib.run_cli(cli_world, *_train_args(cli_world, source_run), "--config.train.seed=1")
  line = _one_error(out)
  assert "holds a run made with different settings" in line and "train.seed: 0 in the workdir, 1 now" in line
  assert "--config.train.allow_changes=" in line and "seed" in line.rsplit("=", 1)[1]
  # Item 4: a negative step count on the finished run fails on the config, before any file.
  out = world_lib.run_cli(cli_world, *_train_args(cli_world, source_run), "--config.train.num_train_steps=-3")
  assert _one_error(out) == ("spot-jax train: error: config.train.num_train_steps = -3 is not allowed: it must be an "
                             "integer >= 1.")
  assert world_lib.workdir_snapshot(source_run) == before


@pytest.mark.parametrize("override,message", [
    ("--config.train.log_every=0", "config.train.log_every = 0 is not allowed: it must be an integer >= 1."),
    ("--config.train.checkpoint_every=0", "config.train.checkpoint_every = 0 is not allowed"),
    ("--config.train.grad_accum_steps=0", "config.train.grad_accum_steps = 0 is not allowed"),
    ("--config.train.prompt_length=0", "config.train.prompt_length = 0 is not allowed: it must be an integer >= 1"),
    ("--config.nonexistent=1", "Unknown config field 'nonexistent' (in --config.nonexistent=1)"),
    ("--config.train.learning_rat=0.1", 'Did you mean "learning_rate" instead of "learning_rat"?'),
])
def test_bad_config_values_are_one_line_before_any_file(cli_world, tmp_path, override, message):
  out = world_lib.run_cli(cli_world, *_train_args(cli_world, tmp_path / "run"), override)
  assert message in _one_error(out)
  assert not (tmp_path / "run").exists()


@pytest.mark.slow  # the lock itself is tested in-process by default (tests/test_workdir.py)
def test_second_writer_fails_at_once_naming_the_first(cli_world, tmp_path):
  workdir = tmp_path / "run"
  first = subprocess.Popen(world_lib.cli_command(cli_world, *_train_args(cli_world, workdir, steps=100000)),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           env=world_lib.cli_env(cli_world), cwd=world_lib.ROOT)
  try:
    for line in first.stdout:
      if "step 2/" in line:
        break
    start = time.perf_counter()
    out = world_lib.run_cli(cli_world, *_train_args(cli_world, workdir, steps=100000))
    line = _one_error(out)
    assert f"is in use by process {first.pid} on host" in line and "use another --workdir" in line
    assert first.poll() is None  # the first run goes on
  finally:
    first.kill()
    first.wait()
  assert time.perf_counter() - start < 60  # refused before loading the model (a few seconds of start-up)


def test_bad_row_stops_the_run_naming_file_line_and_field(cli_world, tmp_path):
  data = tmp_path / "data" / "my_sentiment"
  data.mkdir(parents=True)
  rows = [{"sentence": f"film number {i} was {'great' if i % 2 else 'dull'}", "label": i % 2} for i in range(300)]
  del rows[199]["label"]
  (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:20]))
  experiment = f"experiments/custom_task.py:hf_path={cli_world.backbone},steps=4"
  out = world_lib.run_cli(cli_world, "train", f"--config={experiment}",
                          f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={tmp_path / 'data'}", timeout=300)
  line = _one_error(out)
  assert f"{data / 'train.jsonl'}" in line and "line 200" in line and "field 'label' is missing" in line


def test_storage_errors_are_one_line(cli_world, tmp_path):
  if os.geteuid() == 0:  # root writes through file modes; /sys refuses new directories to everyone
    unwritable = "/sys/spot_jax_test_workdir"
  else:
    (tmp_path / "readonly").mkdir(mode=0o555)
    unwritable = str(tmp_path / "readonly" / "run")
  out = world_lib.run_cli(cli_world, *_train_args(cli_world, unwritable))
  line = _one_error(out)
  assert f"Cannot create the workdir {unwritable}: [Errno" in line
  # A full disk mid-run (simulated by a file-size limit: writes past it fail with EFBIG; run.json, ~1.5 kB,
  # still fits, the checkpoint files do not).
  out = world_lib.run_cli(cli_world, *_train_args(cli_world, tmp_path / "full"), file_size_limit=1700)
  assert out.returncode == 1
  line = [l for l in world_lib.error_lines(out.stderr) if l.startswith("spot-jax train: error:")]
  assert len(line) == 1 and "File too large" in line[0] and str(tmp_path / "full") in line[0], out.stderr[-3000:]
  # A truncated config.json of the backbone.
  broken = tmp_path / "broken"
  shutil.copytree(cli_world.backbone, broken)
  (broken / "config.json").write_text((broken / "config.json").read_text()[:40])
  out = world_lib.run_cli(cli_world, "model-info", f"--hf_path={broken}")
  assert f"{broken / 'config.json'} is not valid JSON" in _one_error(out, "model-info")


@pytest.mark.slow  # the model check itself is tested in-process by default (tests/test_workdir.py)
def test_prompt_from_a_run_on_another_model_is_refused(cli_world, source_run, tmp_path):
  other = tmp_path / "other_backbone"
  cfg = hf.load_hf_t5(cli_world.backbone)[0]
  hf.save_hf_t5(cfg, t5.init_params(cfg, jax.random.key(1)), str(other))
  shutil.copy(os.path.join(cli_world.backbone, "spiece.model"), other / "spiece.model")
  args = [*_train_args(cli_world, tmp_path / "target", steps=2, task="synth_seven_target", hf_path=other),
          "--config.prompt_init.kind=checkpoint", f"--config.prompt_init.path={source_run}"]
  line = _one_error(world_lib.run_cli(cli_world, *args))
  assert f"Run {source_run} was trained on frozen model" in line and "spot-jax project" in line
  assert not (tmp_path / "target" / "checkpoints").exists()
  out = world_lib.run_cli(cli_world, *args, "--config.prompt_init.allow_other_model=true")
  assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow  # the clash itself is tested through the API in test_library_reliability.py
def test_library_import_clash_is_one_line_and_replace_works(cli_world, tmp_path):
  prompt = lambda seed: np.random.default_rng(seed).normal(size=(4, 8)).astype(np.float32)
  source = library_lib.PromptLibrary(str(tmp_path / "source"), model_fingerprint="abc", prompt_length=4, d_model=8)
  source.add("mnli", prompt(0), prompt(1), model_fingerprint="abc")
  exported = source.export(str(tmp_path / "export.tar.gz"))
  args = ["library", "import", f"--library={tmp_path / 'dest'}", f"--source={exported}"]
  assert world_lib.run_cli(cli_world, *args).returncode == 0
  before = world_lib.workdir_snapshot(tmp_path / "dest")
  line = _one_error(world_lib.run_cli(cli_world, *args), "library")
  assert "already has entry ['mnli']" in line and "--replace" in line
  assert world_lib.workdir_snapshot(tmp_path / "dest") == before
  out = world_lib.run_cli(cli_world, *args, "--replace")
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "dest" / "replaced").is_dir()
  np.testing.assert_array_equal(library_lib.PromptLibrary(str(tmp_path / "dest")).get("mnli").value, prompt(1))
