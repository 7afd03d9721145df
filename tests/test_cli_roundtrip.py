"""CLI round trip on a tiny backbone and the synthetic tasks: train a source prompt -> library add ->
retrieve for a target -> transfer to the target from the retrieved prompt; plus config errors."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from spot_jax.checkpoints import hf
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.data import synthetic, vocab as vocab_lib
from spot_jax.models import t5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """Synthetic TFDS data, a SentencePiece vocab and a random tiny HF backbone holding spiece.model."""
  base = tmp_path_factory.mktemp("cli")
  data_dir = str(base / "data")
  synthetic.prepare(data_dir)
  model_file = vocab_lib.train_sentencepiece(synthetic.corpus_lines(data_dir, per_task=50), str(base / "spm"), 128)
  vocab = vocab_lib.SentencePieceVocab(model_file)
  cfg = t5.get_config("tiny", vocab_size=vocab.vocab_size, d_model=32, d_ff=64, num_heads=2, d_kv=16)
  hf.save_hf_t5(cfg, t5.init_params(cfg, jax.random.key(0)), str(base / "backbone"))
  shutil.copy(model_file, base / "backbone" / "spiece.model")
  return base, data_dir


def _cli(world, *args):
  base, data_dir = world
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", TFDS_DATA_DIR=data_dir)
  small = ["--config.data.input_length=32", "--config.data.target_length=8", "--config.train.batch_size=8",
           "--config.train.prompt_length=4", "--config.train.log_every=2", "--config.data.eval_max_examples=16",
           "--config.data.eval_batch_size=16", f"--config.data.data_dir={data_dir}"]
  command = [sys.executable, "-m", "spot_jax.cli", *args]
  if any(a.startswith("--config=") for a in args):
    command += small
  out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
  return out


def test_train_library_retrieve_transfer(world):
  base, _ = world
  backbone = str(base / "backbone")
  source_run, library, retrieved, target_run = (str(base / n) for n in ("src", "lib", "ret", "tgt"))
  out = _cli(world, "train", f"--config=experiments/prompt_tuning.py:task=synth_seven_comma,hf_path={backbone},steps=4",
             f"--workdir={source_run}", "--config.train.embedding_step=2", "--config.train.eval_every=2")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "best score" in out.stdout
  out = _cli(world, "library", "add", f"--config=experiments/prompt_tuning.py:hf_path={backbone}",
             f"--library={library}", f"--run={source_run}", "--task=synth_seven_comma")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "synth_seven_comma" in out.stdout
  out = _cli(world, "retrieve",
             f"--config=experiments/targeted_spot.py:task=synth_seven_target,hf_path={backbone},library={library},"
             "embedding_step=2", f"--workdir={retrieved}")
  assert out.returncode == 0, out.stderr[-3000:]
  init = os.path.join(retrieved, "init_top1_synth_seven_comma.npy")
  np.testing.assert_array_equal(prompt_io.load_npy(init), prompt_io.load_prompt(source_run, "best"))
  assert os.path.exists(os.path.join(retrieved, "ranking.csv"))
  out = _cli(world, "train", f"--config=experiments/spot_transfer.py:task=synth_seven_target,hf_path={backbone},steps=2",
             f"--workdir={target_run}", "--config.prompt_init.kind=npy", f"--config.prompt_init.path={init}",
             "--config.train.eval_every=2")
  assert out.returncode == 0, out.stderr[-3000:]
  assert prompt_io.load_prompt(target_run, "final").shape == (4, 32)
  out = _cli(world, "library", "list", f"--library={library}")
  assert out.returncode == 0 and "1 entries" in out.stdout

  # The top-k multi-task mixture strategy: a prompt tuned on the retrieved source's data mixed with
  # the target's (its checkpointed data position counts examples of both), saved as init_mixture_top1.npy. The cap
  # of 64 examples per task makes the rates 1:1 (uncapped, the target's 64 of 3064 would be ~2%).
  mixed = str(base / "ret_mixture")
  out = _cli(world, "retrieve",
             f"--config=experiments/targeted_spot.py:task=synth_seven_target,hf_path={backbone},library={library},"
             "embedding_step=2,strategy=mixture", f"--workdir={mixed}", "--config.retrieval.mixture_steps=6",
             "--config.train.eval_every=3", "--config.train.checkpoint_every=6",
             "--config.retrieval.mixture_cap=64")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "strategy mixture, k=1: synth_seven_comma" in out.stdout
  init = prompt_io.load_npy(os.path.join(mixed, "init_mixture_top1.npy"))
  np.testing.assert_array_equal(init, prompt_io.load_prompt(os.path.join(mixed, "mixture_run_top1"), "best"))
  assert not np.allclose(init, prompt_io.load_prompt(source_run, "best"))
  with open(os.path.join(mixed, "mixture_run_top1", "checkpoints", "6", "data", "metadata")) as f:
    per_task = json.load(f)["per_process"][0]["counts"]["per_task"]
  assert set(per_task) == {"synth_seven_comma", "synth_seven_target"} and sum(per_task.values()) == 6 * 8
  assert min(per_task.values()) >= 12  # 24 expected of each
  out = _cli(world, "retrieve", f"--config=experiments/targeted_spot.py:task=synth_seven_target,hf_path={backbone},"
             f"library={library},strategy=mix", f"--workdir={mixed}")
  assert out.returncode != 0 and "Unknown retrieval.strategy 'mix'" in out.stderr


def test_unknown_config_key_is_a_clear_error(world):
  out = _cli(world, "train", "--config=experiments/prompt_tuning.py", "--workdir=/tmp/unused",
             "--config.train.learning_rat=0.1")
  assert out.returncode != 0
  assert "learning_rat" in out.stderr


def test_unknown_experiment_argument_is_a_clear_error(world):
  out = _cli(world, "train", "--config=experiments/prompt_tuning.py:tsak=rte", "--workdir=/tmp/unused")
  assert out.returncode != 0
  assert "Unknown config argument 'tsak'" in out.stderr
