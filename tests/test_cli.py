"""The `spot-jax` console script: help, dispatch, and a job on a locally saved model."""

import os
import subprocess
import sys

import jax

from spot_jax.checkpoints import hf
from spot_jax.models import t5

_CLI = [sys.executable, "-m", "spot_jax.cli"]


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  return subprocess.run(_CLI + list(args), capture_output=True, text=True, env=env, timeout=300)


def test_help_lists_commands():
  out = _run("--help")
  assert out.returncode == 0
  assert "model-info" in out.stdout


def test_each_commands_help_lists_its_own_flags():
  out = _run("train", "--help")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[0] == "usage: spot-jax train [--flags]"
  assert any(l.startswith("  --config ") and "(required)" in l for l in lines)
  assert any(l.startswith("  --workdir ") for l in lines) and any("--config.<field>" in l for l in lines)
  assert not any(l.strip().startswith(("--helpxml", "--only_check_flags", "--verbosity")) for l in lines)
  out = _run("library", "--help")
  assert out.returncode == 0 and "  --run_number " in out.stdout and "  --library " in out.stdout
  out = _run("eval", "-h")
  assert out.returncode == 0 and "  --ensemble " in out.stdout


def test_unknown_command_fails_with_usage():
  out = _run("trian")
  assert out.returncode == 2
  assert "Unknown command 'trian'" in out.stderr


def test_model_info_reads_a_saved_model(tmp_path):
  cfg = t5.get_config("tiny", vocab_size=50, num_encoder_layers=1, num_decoder_layers=1)
  params = t5.init_params(cfg, jax.random.key(0))
  hf.save_hf_t5(cfg, params, str(tmp_path / "m"))
  out = _run("model-info", f"--hf_path={tmp_path / 'm'}")
  assert out.returncode == 0, out.stderr
  count = sum(x.size for x in jax.tree.leaves(params))
  assert f"parameters: {count:,}" in out.stdout
