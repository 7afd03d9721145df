"""The trainer: same numbers on every mesh, frozen means frozen, prompt-only state, exact resume."""


import jax
import numpy as np
import optax
import pytest

from spot_jax import configs, errors, sharding, train
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.models import prompt as prompt_lib
from tests import train_fixtures as fx


@pytest.fixture(scope="module")
def tiny():
  return fx.tiny_model()


def _train(tiny, workdir, **overrides):
  model_cfg, frozen = tiny
  cfg = fx.small_config(**overrides)
  return train.train(cfg, str(workdir), model_config=model_cfg, frozen_params=frozen,
                     train_iter=fx.ArrayIterator(cfg.batch_size), prompt_init=prompt_lib.random_uniform(),
                     verbose=False)


def test_meshes_give_the_same_losses(tiny, tmp_path):
  assert jax.device_count() == 8
  losses = {}
  for mesh in [(1, 1), (8, 1), (4, 2), (2, 4)]:
    result = _train(tiny, tmp_path / f"m{mesh[0]}x{mesh[1]}", mesh_shape=mesh)
    losses[mesh] = np.array([h["train/loss"] for h in result.train_history])
  assert len(losses[(1, 1)]) == 5
  for mesh, values in losses.items():
    np.testing.assert_allclose(values, losses[(1, 1)], atol=1e-5, err_msg=str(mesh))


def test_frozen_params_bit_identical_and_prompt_learns(tiny, tmp_path):
  model_cfg, frozen = tiny
  before = jax.tree.map(np.copy, frozen)
  result = _train(tiny, tmp_path, num_train_steps=30, log_every=5, mesh_shape=(4, 2))
  # The device copy the trainer placed and stepped with (place_frozen hands back the same arrays):
  # after 30 steps it still exists (never donated to the step) and holds the original bits.
  used = sharding.place_frozen(frozen, model_cfg, sharding.make_mesh((4, 2)))
  assert all(isinstance(x, jax.Array) and not x.is_deleted() for x in jax.tree.leaves(used))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(used), before)
  # And every step saw those params: a replay of the same steps outside the trainer, on the original
  # host params, gives the losses the trainer logged (a trainer that changed the frozen model between
  # steps would drift away from them).
  cfg = fx.small_config(num_train_steps=30, mesh_shape=(4, 2))
  step = jax.jit(train.make_train_step(prompt_lib.PromptedT5(model_cfg, cfg.prompt_length),
                                       train.make_optimizer(cfg), cfg))
  prompt = prompt_lib.random_uniform()(jax.random.key(cfg.seed + 1), (cfg.prompt_length, model_cfg.d_model))
  opt_state, batches, replayed = train.make_optimizer(cfg).init(prompt), fx.ArrayIterator(cfg.batch_size), {}
  for index in range(30):
    prompt, opt_state, metrics = step(prompt, opt_state, before, next(batches), index)
    replayed[index + 1] = float(metrics["loss"])
  logged = {h["step"]: h["train/loss"] for h in result.train_history}
  np.testing.assert_allclose([logged[s] for s in sorted(logged)], [replayed[s] for s in sorted(logged)], atol=1e-5)
  losses = [h["train/loss"] for h in result.train_history]
  assert losses[-1] < losses[0]


def test_optimizer_state_holds_only_the_prompt(tiny, tmp_path):
  cfg = fx.small_config()
  optimizer = train.make_optimizer(cfg)
  prompt = np.zeros((cfg.prompt_length, tiny[0].d_model), np.float32)
  state = optimizer.init(prompt)
  for leaf in jax.tree.leaves(state):
    assert leaf.size <= prompt.size, leaf.shape
  assert sum(leaf.size for leaf in jax.tree.leaves(state)) <= prompt.size + 8
  # On disk: a checkpoint is prompt-sized, far below the frozen model's bytes.
  _train(tiny, tmp_path, checkpoint_every=5)
  checkpoint_dir = tmp_path / "checkpoints" / "5" / "state"
  array_bytes = sum(f.stat().st_size for f in checkpoint_dir.rglob("*") if f.is_file())
  frozen_bytes = sum(x.nbytes for x in jax.tree.leaves(tiny[1]))
  print(f"checkpoint state bytes {array_bytes}, prompt bytes {prompt.nbytes}, frozen bytes {frozen_bytes}")
  assert array_bytes < frozen_bytes / 4


@pytest.mark.slow  # with dropout, so only close (rtol 0.1); the exact check below runs by default
def test_grad_accumulation_matches_full_batch(tiny, tmp_path):
  a = _train(tiny, tmp_path / "a", grad_accum_steps=1, z_loss=0.0)
  b = _train(tiny, tmp_path / "b", grad_accum_steps=2, z_loss=0.0)
  np.testing.assert_allclose([h["train/loss"] for h in a.train_history],
                             [h["train/loss"] for h in b.train_history], rtol=0.1)


def test_grad_accumulation_exact_without_dropout(tmp_path):
  model_cfg, frozen = fx.tiny_model()
  model_cfg = model_cfg.replace(dropout_rate=0.0)
  results = []
  for accum in (1, 4):
    cfg = fx.small_config(grad_accum_steps=accum)
    results.append(train.train(cfg, str(tmp_path / str(accum)), model_config=model_cfg, frozen_params=frozen,
                               train_iter=fx.ArrayIterator(8), prompt_init=prompt_lib.random_uniform(),
                               verbose=False).prompt)
  # The paper's Adafactor counts from step 1.1M, so its updates are close to normalised gradients and
  # the summation order of the micro-batches shows as ~1e-5 in the prompt (the losses agree to 1e-6).
  np.testing.assert_allclose(results[0], results[1], atol=5e-5)


def test_named_prompts_best_and_embedding(tiny, tmp_path):
  scores = iter([10.0, 30.0, 20.0])
  model_cfg, frozen = tiny
  cfg = fx.small_config(num_train_steps=6, eval_every=2, embedding_step=3)
  result = train.train(cfg, str(tmp_path), model_config=model_cfg, frozen_params=frozen,
                       train_iter=fx.ArrayIterator(8), prompt_init=prompt_lib.random_uniform(),
                       evaluate=lambda prompt: {"score": next(scores)}, verbose=False)
  assert (result.best_score, result.best_step) == (30.0, 4)
  assert prompt_io.load_named_metadata(str(tmp_path), "best")["step"] == 4
  assert prompt_io.load_named_metadata(str(tmp_path), "embedding")["step"] == 3
  assert prompt_io.load_prompt(str(tmp_path), "final").shape == (5, model_cfg.d_model)
  assert not np.array_equal(prompt_io.load_prompt(str(tmp_path), "best"), result.prompt)


def test_a_nan_score_never_blocks_a_later_best(tiny, tmp_path):
  # T5 reports NaN correlations for constant predictions (early STS-B); a number after it must win.
  scores = iter([float("nan"), 20.0, float("nan")])
  model_cfg, frozen = tiny
  result = train.train(fx.small_config(num_train_steps=6, eval_every=2), str(tmp_path), model_config=model_cfg,
                       frozen_params=frozen, train_iter=fx.ArrayIterator(8), prompt_init=prompt_lib.random_uniform(),
                       evaluate=lambda prompt: {"score": next(scores)}, verbose=False)
  assert (result.best_score, result.best_step) == (20.0, 4)


def test_tensorboard_scalars_written(tiny, tmp_path):
  _train(tiny, tmp_path)
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  acc.Reload()
  tags = set(acc.Tags()["scalars"]) | set(acc.Tags().get("tensors", []))
  for tag in ("train/loss", "train/learning_rate", "train/steps_per_sec", "train/examples_per_sec"):
    assert tag in tags, tags


def test_mismatched_prompt_and_mesh_give_clear_errors(tiny, tmp_path):
  model_cfg, frozen = tiny
  wrong = np.zeros((7, model_cfg.d_model), np.float32)
  with pytest.raises(prompt_lib.PromptShapeError, match=r"\(7, 32\).*expects \(5, 32\)"):
    train.train(fx.small_config(), str(tmp_path / "a"), model_config=model_cfg, frozen_params=frozen,
                train_iter=fx.ArrayIterator(8), prompt_init=prompt_lib.from_array(wrong), verbose=False)
  with pytest.raises(sharding.MeshError, match="needs 16 devices but 8 are available"):
    _train(tiny, tmp_path / "b", mesh_shape=(4, 4))
  with pytest.raises(sharding.MeshError, match="not a multiple of 3"):
    _train(tiny, tmp_path / "c", mesh_shape=(-1, 3))
  with pytest.raises(sharding.MeshError, match="batch_size 12 is not divisible by the mesh's data axis"):
    _train(tiny, tmp_path / "d", mesh_shape=(-1, 1), batch_size=12)


_RUN_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
from spot_jax import train
from spot_jax.models import prompt as prompt_lib
from tests import train_fixtures as fx
model_cfg, frozen = fx.tiny_model()
cfg = fx.small_config(num_train_steps=40, checkpoint_every=3, keep_checkpoints=2)
train.train(cfg, sys.argv[1], model_config=model_cfg, frozen_params=frozen, train_iter=fx.ArrayIterator(8),
            prompt_init=prompt_lib.random_uniform())
"""


@pytest.mark.parametrize("kill_after_step", [7, pytest.param(17, marks=pytest.mark.slow)])
def test_kill9_resume_is_bit_exact(tmp_path, kill_after_step):
  fx.kill9_and_resume(_RUN_SCRIPT, tmp_path, kill_after_step)
  np.testing.assert_array_equal(prompt_io.load_prompt(str(tmp_path / "victim"), "final"),
                                prompt_io.load_prompt(str(tmp_path / "reference"), "final"))


def test_corrupted_latest_checkpoint_falls_back(tiny, tmp_path):
  _train(tiny, tmp_path / "ref", num_train_steps=6, checkpoint_every=2)
  _train(tiny, tmp_path / "run", num_train_steps=4, checkpoint_every=2)
  # Damage every file of the latest checkpoint's state (as a disk error would).
  latest = tmp_path / "run" / "checkpoints" / "4" / "state"
  for f in latest.rglob("*"):
    if f.is_file():
      f.write_bytes(b"\x00garbage")
  result = _train(tiny, tmp_path / "run", num_train_steps=6, checkpoint_every=2, allow_changes="num_train_steps")
  quarantined = list((tmp_path / "run" / "checkpoints" / "corrupt_checkpoints").iterdir())
  assert [q.name.split("-")[0] for q in quarantined] == ["4"]  # moved aside, not deleted
  ref = prompt_io.load_prompt(str(tmp_path / "ref"), "final")
  np.testing.assert_array_equal(result.prompt, ref)


def test_relative_workdir_checkpoints_and_resumes(tiny, tmp_path, monkeypatch):
  # The quickstart's default is `--workdir=runs/quickstart`; Orbax refuses relative paths on its own.
  monkeypatch.chdir(tmp_path)
  first = _train(tiny, "runs/rel", checkpoint_every=5)
  assert (tmp_path / "runs/rel/checkpoints/5").is_dir()
  again = _train(tiny, "runs/rel", checkpoint_every=5)  # finished run: restores, trains nothing
  np.testing.assert_array_equal(again.prompt, first.prompt)


def test_a_non_finite_loss_stops_the_run_before_it_is_saved(tiny, tmp_path):
  model_cfg, frozen = tiny
  cfg = fx.small_config(num_train_steps=3, checkpoint_every=1, log_every=100)
  broken = lambda key, shape: np.full(shape, np.nan, np.float32)  # e.g. a prompt from a diverged run
  with pytest.raises(errors.TrainingDivergedError, match=r"at step 1: the run diverged .*last checkpoint step none"):
    train.train(cfg, str(tmp_path), model_config=model_cfg, frozen_params=frozen, train_iter=fx.ArrayIterator(8),
                prompt_init=broken, verbose=False)
  assert not (tmp_path / "checkpoints" / "1").exists()
  assert not (tmp_path / "prompts").exists()


def _t5x_adafactor_step(step, p, state, g, lr, decay=0.8, start=0, clip=1.0, wd=1e-5, eps=1e-30, min_dim=128):
  """t5x/adafactor.py `apply_param_gradient` for a 2-D parameter (no parameter scale, no momentum),
  transcribed in float64: second moments factored only when both dims are >= min_dim."""
  t = step + start + 1.0
  decay_rate = 1.0 - t ** (-decay)
  squared = g * g + eps
  if min(p.shape) >= min_dim:
    rows, cols = (1, 0) if p.shape[0] <= p.shape[1] else (0, 1)  # t5x: reduce the largest dim for v_row
    state["vr"] = decay_rate * state.get("vr", 0) + (1 - decay_rate) * squared.mean(axis=rows)
    state["vc"] = decay_rate * state.get("vc", 0) + (1 - decay_rate) * squared.mean(axis=cols)
    vr, vc = state["vr"], state["vc"]
    y = g * np.expand_dims((vr / vr.mean()) ** -0.5, rows) * np.expand_dims(vc ** -0.5, cols)
  else:
    state["v"] = decay_rate * state.get("v", 0) + (1 - decay_rate) * squared
    y = g * state["v"] ** -0.5
  y = y / max(1.0, np.sqrt((y * y).mean()) / clip)
  return (1.0 - wd) * p - lr * y, state


@pytest.mark.parametrize("shape", [(100, 64), (130, 160)])  # a prompt (not factored); one t5x would factor
def test_prompt_optimizer_is_t5x_adafactor_as_prompt_tunings_gin(shape):
  cfg = configs.train_defaults()  # lr 0.3, decay 0.8, clip 1.0, weight decay 1e-5, count from step 1.1M
  tx = train.make_optimizer(cfg)
  rng = np.random.default_rng(0)
  reference = rng.normal(size=shape)
  params = jax.numpy.asarray(reference, jax.numpy.float32)
  opt_state, state = tx.init(params), {}
  for step in range(5):
    grad = rng.normal(size=shape) * (step + 1)
    reference, state = _t5x_adafactor_step(step, reference, state, grad, lr=cfg.learning_rate,
                                           start=cfg.adafactor_start_step, wd=cfg.weight_decay_rate)
    updates, opt_state = tx.update(jax.numpy.asarray(grad, jax.numpy.float32), opt_state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(params, np.float64), reference, atol=2e-6, rtol=0)


def test_progress_line_says_rate_and_eta(capsys):
  """Every log step prints the loss, the rate since the previous report and the time left."""
  progress = train._Progress("run", total=10, every_steps=5, printing=True)
  times = {0: 100.0, **{s: 100.0 + 0.5 * s for s in range(1, 6)}, **{s: 102.5 + (s - 5) for s in range(6, 11)}}
  for step in range(11):
    progress.loss = 0.25
    progress(step, t=times[step])
  lines = capsys.readouterr().out.splitlines()
  assert lines == ["[run] step 5/10 loss 0.2500 2.00 steps/s ETA 0m02s",
                   "[run] step 10/10 loss 0.2500 1.00 steps/s ETA 0m00s"]
