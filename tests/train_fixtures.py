"""A tiny frozen T5 and a deterministic in-memory batch iterator for trainer tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import jax
import numpy as np

from spot_jax import configs
from spot_jax.models import t5

VOCAB = 64


def tiny_model(seed: int = 0):
  cfg = t5.get_config("tiny", vocab_size=VOCAB, d_model=32, num_heads=4, d_kv=8, d_ff=64,
                      num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.1)
  return cfg, jax.tree.map(np.asarray, t5.init_params(cfg, jax.random.key(seed)))


def random_params(cfg: t5.T5Config, seed: int = 0, scale_std: float = 0.0) -> dict:
  """Params in `t5.init_params`' layout, filled by numpy: kernels std fan_in**-0.5, norm scales
  1 + N(0, scale_std). Only the layout comes from the model (`eval_shape`): `t5.init_params` compiles
  the whole forward pass (~10-15 s on two busy cores), and inference tests only need well-scaled weights."""
  rng = np.random.default_rng(seed)
  layout = jax.eval_shape(lambda: t5.init_params(cfg, jax.random.key(0)))

  def fill(path, leaf):
    if jax.tree_util.keystr(path).endswith("['scale']"):
      return (1 + scale_std * rng.normal(size=leaf.shape)).astype(np.float32) if scale_std else np.ones(
          leaf.shape, np.float32)
    return (rng.normal(size=leaf.shape) * leaf.shape[0]**-0.5).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, layout)


class ArrayIterator:
  """Batch i is a pure function of (seed, i): the position is the whole state."""

  def __init__(self, batch_size: int, input_length: int = 12, target_length: int = 4, seed: int = 0):
    self.batch_size, self.input_length, self.target_length, self.seed = batch_size, input_length, target_length, seed
    self.position = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    rng = np.random.default_rng((self.seed, self.position))
    self.position += 1
    enc = rng.integers(3, VOCAB, (self.batch_size, self.input_length)).astype(np.int32)
    lengths = rng.integers(4, self.input_length + 1, self.batch_size)
    enc[np.arange(self.input_length)[None] >= lengths[:, None]] = 0
    # A learnable rule: the target is the first input token, then EOS.
    tgt = np.zeros((self.batch_size, self.target_length), np.int32)
    tgt[:, 0], tgt[:, 1] = enc[:, 0], 1
    dec = np.zeros_like(tgt)
    dec[:, 1:] = tgt[:, :-1]
    return {"encoder_input_tokens": enc, "decoder_input_tokens": dec, "decoder_target_tokens": tgt,
            "decoder_loss_weights": (tgt > 0).astype(np.float32)}

  def get_state(self) -> dict:
    return {"position": self.position}

  def set_state(self, state: dict) -> None:
    self.position = int(state["position"])


def small_config(**overrides):
  cfg = configs.train_defaults()
  cfg.prompt_length = 5
  cfg.num_train_steps = 5
  cfg.batch_size = 8
  cfg.log_every = 1
  cfg.eval_every = 0
  cfg.checkpoint_every = 100
  cfg.mesh_shape = (1, 1)
  cfg.update(overrides)
  return cfg


def kill9_and_resume(script: str, tmp_path, kill_after_step: int) -> None:
  """Runs `script` (a Python program taking a workdir; `{root}` is the repo) to the end in
  `reference/`, kill -9s a second run in `victim/` once it logs step `kill_after_step`, and runs it
  again there: it must resume from a checkpoint. The caller compares the two workdirs' prompts."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")

  def spawn(workdir):
    return subprocess.Popen([sys.executable, "-c", script.format(root=root), str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

  reference = spawn(tmp_path / "reference")
  assert reference.wait(timeout=600) == 0
  victim = spawn(tmp_path / "victim")
  for line in victim.stdout:
    if f"step {kill_after_step}/" in line:
      victim.send_signal(signal.SIGKILL)
      break
  victim.wait(timeout=60)
  assert victim.returncode == -signal.SIGKILL
  resumed = spawn(tmp_path / "victim")
  output = resumed.stdout.read()
  assert resumed.wait(timeout=600) == 0
  assert "resumed from checkpoint at step" in output
