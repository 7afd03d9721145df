"""Su et al.'s cross-model projector on two tiny random T5s (d_model 32 -> 48): its shapes, the
distance objective recovers a linear map, task tuning through the one trainer moves only the
projector, and the job transfers projected prompts zero-shot and as init."""

import functools
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from spot_jax import configs, jobs, train
from spot_jax.checkpoints import fingerprint
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.data import synthetic, vocab as vocab_lib
from spot_jax.models import t5
from spot_jax.models.prompt import PromptShapeError
from spot_jax.spot import library as library_lib
from spot_jax.spot import projector as pj
from spot_jax.spot import projector_job
from tests import train_fixtures as fx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D_SOURCE, D_TARGET = 32, 48


@functools.lru_cache(maxsize=None)
def _target_model():
  cfg = t5.get_config("tiny", vocab_size=fx.VOCAB, d_model=D_TARGET, num_heads=4, d_kv=12, d_ff=96,
                      num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0)
  return cfg, jax.tree.map(np.asarray, t5.init_params(cfg, jax.random.key(1)))


@pytest.fixture(scope="module")
def target():
  return _target_model()


def _shapes(tree):
  return jax.tree.leaves(jax.tree.map(np.shape, tree), is_leaf=lambda x: isinstance(x, tuple))


def test_projector_maps_source_prompts_to_target_shape():
  projector = pj.Projector(prompt_length=5, d_source=D_SOURCE, d_target=D_TARGET, hidden_size=16)
  params = pj.init_params(projector)
  assert jax.tree.map(np.shape, params) == {"hidden": {"kernel": (5 * D_SOURCE, 16), "bias": (16,)},
                                            "output": {"kernel": (16, 5 * D_TARGET), "bias": (5 * D_TARGET,)}}
  prompts = np.random.default_rng(0).normal(size=(3, 5, D_SOURCE)).astype(np.float32)
  batched = pj.project(projector, params, prompts)
  assert batched.shape == (3, 5, D_TARGET)
  np.testing.assert_allclose(pj.project(projector, params, prompts[1]), batched[1], rtol=1e-5, atol=1e-6)
  normed = pj.Projector(5, D_SOURCE, D_TARGET, hidden_size=16, layer_norm=True)
  out = pj.project(normed, pj.init_params(normed), prompts[0])
  np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-4)  # LayerNorm per output token
  with pytest.raises(PromptShapeError, match=r"\(5, 32\).*got \(4, 32\)"):
    pj.project(projector, params, prompts[0, :4])


def test_distance_objective_recovers_a_linear_map(target, tmp_path):
  """Target prompts = a fixed linear map of source prompts; the projector is fit on 128 pairs through
  the trainer and must reproduce the map on 32 pairs it never saw."""
  model_cfg, frozen = target
  rng = np.random.default_rng(0)
  length = 2
  sources = rng.normal(size=(160, length, D_SOURCE)).astype(np.float32) * 0.5
  mapping = rng.normal(size=(length * D_SOURCE, length * D_TARGET)).astype(np.float32) / np.sqrt(length * D_SOURCE)
  targets = (sources.reshape(160, -1) @ mapping).reshape(160, length, D_TARGET)
  projector = pj.Projector(length, D_SOURCE, D_TARGET, hidden_size=128)
  initial = pj.init_params(projector)
  cfg = fx.small_config(prompt_length=length, optimizer="adamw", learning_rate=3e-3, batch_size=32,
                        num_train_steps=400, log_every=100, checkpoint_every=1000)
  result = pj.fit_distance(cfg, str(tmp_path), projector=projector, params=initial, source_prompts=sources[:128],
                           target_prompts=targets[:128], model_config=model_cfg, frozen_params=frozen, verbose=False)

  def relative_error(params, rows):
    projected = pj.project(projector, params, sources[rows])
    return np.mean([pj.distance(p, t) / np.linalg.norm(t) for p, t in zip(projected, targets[rows])])

  held_out = slice(128, None)
  before, after = relative_error(initial, held_out), relative_error(result.params, held_out)
  print(f"held-out relative distance: before {before:.3f}, after {after:.3f}")
  losses = [h["train/loss"] for h in result.train_history]
  assert losses[-1] < losses[0]
  assert before > 0.9 and after < 0.2
  # The named prompt is the projection of the first source prompt on the target model's width.
  np.testing.assert_allclose(prompt_io.load_prompt(str(tmp_path), "final"),
                             pj.project(projector, result.params, sources[0]), rtol=1e-5, atol=1e-5)


def test_task_tuning_trains_only_the_projector_through_the_trainer(target, tmp_path):
  model_cfg, frozen = target
  before = jax.tree.map(np.copy, frozen)
  source_prompt = np.random.default_rng(1).uniform(-0.5, 0.5, (5, D_SOURCE)).astype(np.float32)
  projector = pj.Projector(5, D_SOURCE, D_TARGET, hidden_size=32)
  initial = pj.init_params(projector)
  cfg = fx.small_config(optimizer="adamw", learning_rate=5e-3, num_train_steps=30, log_every=5, checkpoint_every=30,
                        mesh_shape=(4, 2))
  result = pj.tune_on_task(cfg, str(tmp_path), projector=projector, params=initial, source_prompt=source_prompt,
                           model_config=model_cfg, frozen_params=frozen, train_iter=fx.ArrayIterator(8),
                           verbose=False)
  losses = [h["train/loss"] for h in result.train_history]
  print("task-tuning losses", np.round(losses, 3))
  assert losses[-1] < losses[0]
  jax.tree.map(np.testing.assert_array_equal, frozen, before)  # the frozen target is bit-identical
  assert jax.tree.structure(result.params) == jax.tree.structure(initial)
  assert not np.array_equal(result.params["hidden"]["kernel"], initial["hidden"]["kernel"])
  np.testing.assert_allclose(result.prompt, pj.project(projector, result.params, source_prompt), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(prompt_io.load_prompt(str(tmp_path), "final"), result.prompt)
  # On disk: the trainable is the projector, and AdamW's moments are the projector's and nothing else.
  state = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "30" / "state")
  assert jax.tree.structure(jax.tree.map(np.asarray, state["trainable"])) == jax.tree.structure(initial)
  moments = sorted(np.shape(x) for x in jax.tree.leaves(state["opt_state"]) if np.ndim(x) > 0)
  assert moments == sorted(_shapes(initial) * 2)


def test_a_projector_that_makes_a_prompt_of_the_wrong_length_is_refused(target, tmp_path):
  model_cfg, frozen = target
  projector = pj.Projector(5, D_SOURCE, D_TARGET, hidden_size=8)
  objective = pj.task_objective(projector, np.zeros((5, D_SOURCE), np.float32), model_cfg, frozen)
  with pytest.raises(PromptShapeError, match=r"prompt_fn\(trainable\) has shape \(5, 48\).*expects \(7, 48\)"):
    train.run(fx.small_config(prompt_length=7), str(tmp_path), objective, pj.init_params(projector),
              model_config=model_cfg, train_iter=fx.ArrayIterator(8))
  assert not (tmp_path / "run.json").exists()


# ----------------------------------------------------------------------------- the job


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """Two synthetic tasks on disk, a SentencePiece vocab, the tiny target backbone and prompt
  libraries of both models (random prompts stand in for trained ones)."""
  base = tmp_path_factory.mktemp("projector")
  data_dir = str(base / "data")
  tasks = ("synth_seven_comma", "synth_big_comma")
  for name in tasks:
    builder = synthetic.SpotSynthetic(config=name.removeprefix("synth_"), data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False),
                                 file_format="array_record")
  lines = [ex[k] for v in synthetic.VARIANTS for ex in synthetic.generate(v.config_name, "validation")[:40]
           for k in ("inputs", "targets")]
  vocab = vocab_lib.SentencePieceVocab(vocab_lib.train_sentencepiece(lines, str(base / "spm"), fx.VOCAB))
  assert vocab.vocab_size <= fx.VOCAB
  cfg, params = _target_model()  # the unit tests' target model: its embedding covers the vocabulary
  backbone = jobs.Backbone(cfg, params, fingerprint.model_fingerprint(cfg, params))
  rng = np.random.default_rng(0)
  libraries = {}
  for which, d_model, model in (("source", D_SOURCE, "source-model"), ("target", D_TARGET, backbone.fingerprint)):
    lib = library_lib.PromptLibrary(str(base / which), model_fingerprint=model, prompt_length=4, d_model=d_model)
    for name in tasks:
      prompt = rng.uniform(-0.5, 0.5, (4, d_model)).astype(np.float32)
      lib.add(name, prompt, prompt, model_fingerprint=model)
    libraries[which] = lib.path
  return base, data_dir, vocab, backbone, libraries, tasks


def _job_config(world, objective, **projector):
  _, data_dir, _, _, libraries, tasks = world
  c = configs.load_experiment(os.path.join(ROOT, "experiments", "projector.py"),
                              f"objective={objective},task={tasks[0]},hidden=16,steps=6,init_steps=2")
  c.data.update(dict(input_length=32, target_length=8, eval_max_examples=16, eval_batch_size=16, data_dir=data_dir))
  c.prompt_init.kind = "random_uniform"
  c.projector.source_library, c.projector.target_library = libraries["source"], libraries["target"]
  c.projector.transfer_tasks = tasks[:1]
  c.projector.train.update(dict(batch_size=8, log_every=3, eval_every=6, checkpoint_every=6, mesh_shape=(1, 1)))
  c.projector.update(projector)
  c.train.update(dict(batch_size=8, log_every=2, eval_every=2, checkpoint_every=2, mesh_shape=(1, 1)))
  return c


def test_job_task_objective_transfers_zero_shot_and_as_init(world):
  base, _, vocab, backbone, _, tasks = world
  workdir = str(base / "task")
  out = projector_job.run_projector(_job_config(world, "task"), workdir, backbone=backbone, vocab=vocab,
                           source_fingerprint="source-model", verbose=False)
  (row,) = out["rows"]
  assert row["task"] == tasks[0] and row["seen"]
  for key in ("zero_shot_projected", "zero_shot_baseline", "init_projected", "init_baseline"):
    assert 0.0 <= row[key] <= 100.0, (key, row)
  assert row["distance_after"] != row["distance_before"]  # target library given: distances are reported
  saved = pj.load_params(os.path.join(workdir, "projector.msgpack"))
  jax.tree.map(np.testing.assert_array_equal, saved, out["params"])
  assert prompt_io.load_prompt(os.path.join(workdir, "targets", tasks[0], "projected"), "final").shape == (4, D_TARGET)
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["trained_on"] == [tasks[0]]
  with pytest.raises(library_lib.LibraryError, match="built for model_fingerprint"):
    projector_job.run_projector(_job_config(world, "task"), str(base / "wrong"), backbone=backbone, vocab=vocab,
                       source_fingerprint="another-model", verbose=False)


def test_job_distance_objective_moves_projections_toward_target_prompts(world):
  base, _, vocab, backbone, _, tasks = world
  config = _job_config(world, "distance", init_transfer=False, transfer_tasks=tasks)
  config.projector.train.update(dict(num_train_steps=30, learning_rate=1e-2, batch_size=2, eval_every=0))
  out = projector_job.run_projector(config, str(base / "distance"), backbone=backbone, vocab=vocab, verbose=False)
  for row in out["rows"]:
    print(row)
    assert row["seen"] and row["distance_after"] < 0.5 * row["distance_before"]
    assert "init_projected" not in row
