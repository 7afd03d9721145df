"""K prompts per step (`train.train_prompts`): each prompt is exactly the prompt of its own run."""

import dataclasses
import shutil

import ml_collections
import numpy as np
import pytest

from spot_jax import errors, train
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.checkpoints import workdir as workdir_lib
from spot_jax.models import prompt as prompt_lib
from tests import train_fixtures as fx

SEEDS = (0, 3, 7)


@pytest.fixture(scope="module")
def tiny():
  return fx.tiny_model()  # dropout 0.1: each prompt's dropout must come from its own seed


def _score(prompt):  # a deterministic "validation score" that moves during training
  return {"score": float(100 * np.tanh(np.abs(prompt).mean()) * np.sign(prompt[0, 0]) % 37)}


def _run(workdir, i, seed, fail_after=None):
  return train.PromptRun(str(workdir / f"p{i}"), seed, _FailingIterator(8, seed=100 + i, fail_after=fail_after),
                         prompt_lib.random_uniform(), _score, f"p{i}", {"task": f"task{i}"})


class _FailingIterator(fx.ArrayIterator):
  """Stops the process's run (as a crash would) after `fail_after` batches."""

  def __init__(self, *args, fail_after=None, **kwargs):
    super().__init__(*args, **kwargs)
    self.fail_after = fail_after

  def __next__(self):
    if self.fail_after is not None and self.position >= self.fail_after:
      raise RuntimeError("simulated crash")
    return super().__next__()


def _separate(tiny, workdir, cfg):
  model_cfg, frozen = tiny
  results = []
  for i, seed in enumerate(SEEDS):
    run_cfg = ml_collections.ConfigDict(cfg.to_dict())
    run_cfg.seed = seed
    run = _run(workdir, i, seed)
    results.append(train.train(run_cfg, run.workdir, model_config=model_cfg, frozen_params=frozen,
                               train_iter=run.train_iter, prompt_init=run.prompt_init, evaluate=run.evaluate,
                               name=run.name, verbose=False, run_identity=run.run_identity))
  return results


def _joint(tiny, workdir, cfg, fail_after=None):
  model_cfg, frozen = tiny
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.prompts_per_step = len(SEEDS)
  runs = [_run(workdir, i, seed, fail_after) for i, seed in enumerate(SEEDS)]
  return train.train_prompts(cfg, runs, model_config=model_cfg, frozen_params=frozen, verbose=False)


# All 3 prompts vectorised at once; in groups of 2 (and 1) one after another (the quickstart's setting).
@pytest.mark.parametrize("in_parallel", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_one_step_equals_separate_runs(tiny, tmp_path, in_parallel):
  cfg = fx.small_config(num_train_steps=1)
  separate = _separate(tiny, tmp_path / "separate", cfg)
  cfg.prompts_in_parallel = in_parallel
  joint = _joint(tiny, tmp_path / "joint", cfg)
  for alone, together in zip(separate, joint):
    np.testing.assert_allclose(together.prompt, alone.prompt, atol=1e-6, rtol=0)
  assert not np.allclose(joint[0].prompt, joint[1].prompt)  # distinct seeds, data and inits


def test_five_steps_equal_separate_runs_with_their_own_named_prompts(tiny, tmp_path):
  cfg = fx.small_config(num_train_steps=5, eval_every=1, embedding_step=2)
  separate, joint = _separate(tiny, tmp_path / "separate", cfg), _joint(tiny, tmp_path / "joint", cfg)
  for i, (alone, together) in enumerate(zip(separate, joint)):
    np.testing.assert_allclose([h["train/loss"] for h in together.train_history],
                               [h["train/loss"] for h in alone.train_history], atol=1e-5, rtol=0)
    np.testing.assert_allclose(together.prompt, alone.prompt, atol=2e-3, rtol=0)
    assert together.best_step == alone.best_step
    for which in ("embedding", "best", "final"):
      np.testing.assert_allclose(prompt_io.load_prompt(str(tmp_path / "joint" / f"p{i}"), which),
                                 prompt_io.load_prompt(str(tmp_path / "separate" / f"p{i}"), which), atol=2e-3, rtol=0)
    # The workdir records the same run either way, so it may be resumed either way.
    assert (workdir_lib.read_record(str(tmp_path / "joint" / f"p{i}"))["identity"]
            == workdir_lib.read_record(str(tmp_path / "separate" / f"p{i}"))["identity"])


@pytest.mark.parametrize("mesh", [(8, 1), pytest.param((2, 4), marks=pytest.mark.slow)])
def test_meshes_agree(tiny, tmp_path, mesh):
  cfg = fx.small_config(num_train_steps=3)
  reference = _joint(tiny, tmp_path / "one_device", cfg)
  cfg.mesh_shape = mesh
  sharded = _joint(tiny, tmp_path / "mesh", cfg)
  for a, b in zip(reference, sharded):
    np.testing.assert_allclose([h["train/loss"] for h in b.train_history],
                               [h["train/loss"] for h in a.train_history], atol=1e-5, rtol=0)


def test_interrupted_joint_run_resumes_bit_exact_even_with_runs_at_different_steps(tiny, tmp_path):
  cfg = fx.small_config(num_train_steps=6, checkpoint_every=2, keep_checkpoints=3)
  reference = _joint(tiny, tmp_path / "reference", cfg)
  with pytest.raises(RuntimeError, match="simulated crash"):
    _joint(tiny, tmp_path / "victim", cfg, fail_after=5)  # checkpoints at 2 and 4 are on disk
  # As if the crash came between two runs' saves: run 0 is back at step 2, the others at 4.
  shutil.rmtree(tmp_path / "victim" / "p0" / "checkpoints" / "4")
  resumed = _joint(tiny, tmp_path / "victim", cfg)
  for a, b in zip(reference, resumed):
    np.testing.assert_array_equal(b.prompt, a.prompt)
  assert [len(r.train_history) for r in resumed] == [4, 2, 2]  # each run logged only the steps it trained


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import ml_collections
from spot_jax import errors, train
from spot_jax.models import prompt as prompt_lib
from tests import train_fixtures as fx
model_cfg, frozen = fx.tiny_model()
cfg = fx.small_config(num_train_steps=30, checkpoint_every=3, keep_checkpoints=2, prompts_per_step=3)
runs = [train.PromptRun(sys.argv[1] + f"/p{{i}}", seed, fx.ArrayIterator(8, seed=100 + i), prompt_lib.random_uniform(),
                        name=f"p{{i}}") for i, seed in enumerate((0, 3, 7))]
train.train_prompts(cfg, runs, model_config=model_cfg, frozen_params=frozen)
"""


@pytest.mark.slow
def test_kill9_of_a_joint_run_resumes_bit_exact(tmp_path):
  fx.kill9_and_resume(_KILL_SCRIPT, tmp_path, kill_after_step=8)
  for i in range(3):
    np.testing.assert_array_equal(prompt_io.load_prompt(str(tmp_path / "victim" / f"p{i}"), "final"),
                                  prompt_io.load_prompt(str(tmp_path / "reference" / f"p{i}"), "final"))


def test_runs_may_keep_their_own_embedding_step(tiny, tmp_path):
  model_cfg, frozen = tiny
  cfg = fx.small_config(num_train_steps=1, embedding_step=5, prompts_per_step=3)  # 5: only as overridden
  runs = [_run(tmp_path, i, seed) for i, seed in enumerate(SEEDS)]
  runs = [dataclasses.replace(run, embedding_step=step) for run, step in zip(runs, (0, 1, 1))]
  train.train_prompts(cfg, runs, model_config=model_cfg, frozen_params=frozen, verbose=False)
  assert [prompt_io.load_named_metadata(run.workdir, "embedding") is not None for run in runs] == [False, True, True]
  late = [dataclasses.replace(_run(tmp_path / "late", 0, 0), embedding_step=None)]
  with pytest.raises(errors.ConfigError, match="embedding_step = 5 is after the last step"):
    train.train_prompts(cfg, late, model_config=model_cfg, frozen_params=frozen, verbose=False)
  assert not (tmp_path / "late").exists()
