"""CLI round trip on a tiny backbone and the synthetic tasks: train a source prompt -> library add ->
retrieve for a target -> transfer to the target from the retrieved prompt; plus config errors."""

import json
import os
import pathlib

import numpy as np
import pytest

from spot_jax.checkpoints import prompts as prompt_io
from tests import cli_world as world_lib


@pytest.fixture
def world(cli_world):
  return cli_world


def _cli(world, *args):
  return world_lib.run_cli(world, *args)


def test_train_library_retrieve_transfer(world):
  base, backbone = pathlib.Path(world.base), world.backbone
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
             "embedding_step=2", f"--workdir={retrieved}", "--config.retrieval.target_runs=2")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "averaged over 2 target embedding(s)" in out.stdout  # retrieval.target_runs (SPoT's: 3)
  init = os.path.join(retrieved, "init_top1_synth_seven_comma.npy")
  np.testing.assert_array_equal(prompt_io.load_npy(init), prompt_io.load_prompt(source_run, "best"))
  assert os.path.exists(os.path.join(retrieved, "ranking.csv"))
  out = _cli(world, "train", f"--config=experiments/spot_transfer.py:task=synth_seven_target,hf_path={backbone},steps=2",
             f"--workdir={target_run}", "--config.prompt_init.kind=npy", f"--config.prompt_init.path={init}",
             "--config.train.eval_every=2")
  assert out.returncode == 0, out.stderr[-3000:]
  assert prompt_io.load_prompt(target_run, "final").shape == (4, 32)
  # A second run of the same source (SPoT keeps 3 per task): entries are prompts, named <task>@run<r>.
  out = _cli(world, "library", "add", f"--config=experiments/prompt_tuning.py:hf_path={backbone}",
             f"--library={library}", f"--run={source_run}", "--task=synth_seven_comma", "--run_number=1")
  assert out.returncode == 0, out.stderr[-3000:]
  out = _cli(world, "library", "list", f"--library={library}")
  assert out.returncode == 0 and "2 entries (1 source task;" in out.stdout and "synth_seven_comma@run1" in out.stdout

  # The transfer grid over two seeds, 6 prompts per step: tables of mean ± std over the seeds and
  # SPoT's headline (search space eliminated, oracle gain kept), as text and CSV.
  grid = str(base / "grid")
  out = _cli(world, "grid", f"--config=experiments/transferability_grid.py:hf_path={backbone},library={library},"
             "seeds=0:1,steps=2", f"--workdir={grid}", "--config.grid.sources=()",
             "--config.grid.targets=('synth_seven_target',)", "--config.train.embedding_step=2",
             "--config.train.prompts_per_step=6", "--config.data.eval_max_examples=16")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "mean ± standard deviation over 2 runs" in out.stdout
  assert "top-1 of 2: eliminates 50% of the source search space" in out.stdout  # k counts prompts
  for name in ("retrieval_table.csv", "headline.csv", "transfer_rer.png", "scores.json"):
    assert os.path.exists(os.path.join(grid, "results", name)), name
  scores = json.load(open(os.path.join(grid, "results", "scores.json")))["scores"]
  assert len(scores) == 6  # (baseline, from each of the 2 prompts) x 2 seeds

  # The top-k multi-task mixture strategy: a prompt tuned on the retrieved source's data mixed with
  # the target's (its checkpointed data position counts examples of both), saved as init_mixture_top1.npy. The cap
  # of 64 examples per task makes the rates 1:1 (uncapped, the target's 64 of 3064 would be ~2%).
  mixed = str(base / "ret_mixture")
  out = _cli(world, "retrieve",
             f"--config=experiments/targeted_spot.py:task=synth_seven_target,hf_path={backbone},library={library},"
             "embedding_step=2,strategy=mixture", f"--workdir={mixed}", "--config.retrieval.mixture_steps=6",
             "--config.train.eval_every=3", "--config.train.checkpoint_every=6",
             "--config.retrieval.mixture_cap=64", "--config.retrieval.target_runs=1")
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
  assert out.returncode == 2
  assert world_lib.error_lines(out.stderr) == [
      "spot-jax retrieve: error: config.retrieval.strategy = 'mix' is not allowed: it must be one of "
      "'best_of_top_k', 'weighted_average', 'mixture'."]


def test_unknown_config_key_is_a_clear_error(world):
  out = _cli(world, "train", "--config=experiments/prompt_tuning.py", "--workdir=/tmp/unused",
             "--config.train.learning_rat=0.1")
  assert out.returncode != 0
  assert "learning_rat" in out.stderr


def test_unknown_experiment_argument_is_a_clear_error(world):
  out = _cli(world, "train", "--config=experiments/prompt_tuning.py:tsak=rte", "--workdir=/tmp/unused")
  assert out.returncode != 0
  assert "Unknown config argument 'tsak'" in out.stderr
