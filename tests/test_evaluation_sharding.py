"""Sharded evaluation on 8 fake devices: decoding and rank classification on a (data, model) mesh give
what one device gives, and evaluation during training runs on the trainer's placed frozen params
(the same device arrays, placed once), not on a copy made per batch."""

import gc
import weakref

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from spot_jax import decoding, evaluation, sharding, train
from spot_jax.models import prompt as prompt_lib
from spot_jax.models import t5
from tests import cli_world as world_lib
from tests import train_fixtures as fx

MESHES = [(8, 1), (4, 2), (2, 4)]
MAX_LEN = 6
LABELS = ("no", "yes")
TASK = "test_eval_sharding"


def _config(vocab_size=64):
  # Every sharded dimension (vocab, heads, joined_kv = 4 x 8, mlp) divides model = 2 and 4.
  return t5.get_config("tiny", vocab_size=vocab_size, d_model=32, num_heads=4, d_kv=8, d_ff=64,
                       num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0)


@pytest.fixture(scope="module")
def model_params():
  cfg = _config()
  params = fx.random_params(cfg, scale_std=0.3)
  params["decoder"]["logits_dense"]["kernel"][:, 1] += 0.3  # EOS likely: rows stop at different steps
  return t5.T5(cfg), params


def _inputs(batch=8, length=10, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(2, 64, (batch, length)).astype(np.int32)
  tokens[1, 5:] = 0
  tokens[-2, 3:] = 0
  return tokens, rng.normal(size=(3, 32)).astype(np.float32), rng.normal(size=(batch, 3, 32)).astype(np.float32)


@pytest.mark.parametrize("mesh_shape", [MESHES[0], *(pytest.param(m, marks=pytest.mark.slow) for m in MESHES[1:])])
def test_sharded_decoding_and_scoring_equal_one_device(model_params, mesh_shape):
  model, params = model_params
  mesh = sharding.make_mesh(mesh_shape)
  tokens, prompt, per_row_prompts = _inputs()
  labels = [[5], [6, 7], [9, 10, 11]]
  for prefix in (prompt, per_row_prompts, None):
    alone = decoding.greedy_decode(model, params, tokens, max_decode_length=MAX_LEN, prefix_embeddings=prefix)
    sharded = decoding.greedy_decode(model, params, tokens, max_decode_length=MAX_LEN, prefix_embeddings=prefix,
                                     mesh=mesh)
    np.testing.assert_array_equal(sharded, alone)
    best, scores = decoding.rank_classification(model, params, tokens, labels, prefix_embeddings=prefix)
    sharded_best, sharded_scores = decoding.rank_classification(model, params, tokens, labels,
                                                                prefix_embeddings=prefix, mesh=mesh)
    np.testing.assert_allclose(sharded_scores, scores, atol=1e-5, rtol=1e-6)  # fp32 sums of ~20
    np.testing.assert_array_equal(sharded_best, best)
  assert len({tuple(row) for row in alone}) > 1 and (alone == 1).any(), "want varied rows, some stopping early"
  targets = np.tile(decoding.label_targets(labels)[2], (8, 1))
  np.testing.assert_allclose(
      decoding.token_log_likelihood(model, params, tokens, targets, prefix_embeddings=prompt, mesh=mesh),
      decoding.token_log_likelihood(model, params, tokens, targets, prefix_embeddings=prompt), atol=1e-5, rtol=0)


def test_a_batch_that_does_not_fit_the_data_axis_is_refused(model_params):
  model, params = model_params
  tokens, prompt, _ = _inputs(batch=6)
  with pytest.raises(sharding.MeshError, match="multiple of 4"):
    decoding.greedy_decode(model, params, tokens, max_decode_length=3, prefix_embeddings=prompt,
                           mesh=sharding.make_mesh((4, 2)))


def test_place_frozen_places_once_per_params_and_mesh(model_params):
  model, params = model_params
  mesh = sharding.make_mesh((2, 4))
  placed = sharding.place_frozen(params, model.config, mesh)
  assert sharding.place_frozen(params, model.config, mesh) is placed
  assert sharding.place_frozen(placed, model.config, mesh) is placed  # the placed copy is known too
  assert sharding.place_frozen(params, model.config, sharding.make_mesh((4, 2))) is not placed
  # The params' logical axes on the mesh: the embedding [vocab, embed] split over 'model', norms replicated.
  assert placed["token_embedder"].sharding == NamedSharding(mesh, P("model", None))
  assert placed["encoder"]["encoder_norm"]["scale"].sharding == NamedSharding(mesh, P(None))
  np.testing.assert_array_equal(np.asarray(placed["token_embedder"]), params["token_embedder"])

  other = jax.tree.map(np.copy, params)  # same values, other arrays: placed anew (identity, not content)
  other_placed = sharding.place_frozen(other, model.config, mesh)
  assert other_placed is not placed
  freed = weakref.ref(other_placed["token_embedder"])
  del other, other_placed
  gc.collect()
  assert freed() is None, "the placed copy must not outlive the params it was made from"


# ----------------------------------------------------------------------------- the evaluator


@pytest.fixture(scope="module")
def vocab(cli_world):
  return world_lib.register_yes_no_task(cli_world, TASK, rows=13)


class _Backbone:
  def __init__(self, config, params):
    self.config, self.params, self.fingerprint = config, params, "random"


def _data(**overrides):
  from spot_jax import configs
  data = configs.base_config().data
  data.update(dict(input_length=12, target_length=4, eval_batch_size=6, **overrides))
  return data


@pytest.fixture(scope="module")
def backbone(vocab):
  cfg = _config(vocab.vocab_size)
  params = fx.random_params(cfg, scale_std=0.3)
  # Make 'no' and 'yes' (and EOS) likely enough that rank scores and generated texts vary by row.
  for word in LABELS:
    params["decoder"]["logits_dense"]["kernel"][:, vocab.encode(word)] += 0.5
  return _Backbone(cfg, params)


@pytest.mark.parametrize("mode", ["rank", "generate"])
def test_evaluator_on_meshes_scores_as_on_one_device(vocab, backbone, mode):
  prompt = np.random.default_rng(3).normal(size=(4, backbone.config.d_model)).astype(np.float32)
  alone = evaluation.make_evaluator(TASK, vocab, backbone, _data(), mode, mesh_shape=(1, 1))(prompt)
  for mesh_shape in MESHES:  # eval_batch_size 6 -> 8 rows on data=8 and data=4, 6 on data=2; 13 examples
    assert evaluation.make_evaluator(TASK, vocab, backbone, _data(), mode, mesh_shape=mesh_shape)(prompt) == alone
  assert evaluation.make_evaluator(TASK, vocab, backbone, _data(), mode)(prompt) == alone  # default (-1, 1)


class _InVocab(fx.ArrayIterator):
  """The trainer fixtures' batches with ids folded into this backbone's smaller vocabulary (an id past
  the embedding table reads NaN, and the trainer stops on a NaN loss)."""

  def __init__(self, batch_size, vocab_size):
    super().__init__(batch_size)
    self.vocab_size = vocab_size

  def __next__(self):
    return {k: v % self.vocab_size if v.dtype.kind == "i" else v for k, v in super().__next__().items()}


def test_evaluation_during_training_uses_the_trainers_placed_params(vocab, backbone, monkeypatch, tmp_path):
  placements = []  # (caller's params, placed params, mesh) of every place_frozen call
  place = sharding.place_frozen

  def spy(params, model_config, mesh):
    placed = place(params, model_config, mesh)
    placements.append((params, placed, mesh))
    return placed

  monkeypatch.setattr(sharding, "place_frozen", spy)
  params = jax.tree.map(np.copy, backbone.params)  # fresh host arrays: nothing placed yet
  host = _Backbone(backbone.config, params)
  cfg = fx.small_config(num_train_steps=4, eval_every=2, mesh_shape=(4, 2), prompt_length=3)
  evaluate = evaluation.make_evaluator(TASK, vocab, host, _data(), "rank", mesh_shape=cfg.mesh_shape)
  result = train.train(cfg, str(tmp_path), model_config=host.config, frozen_params=params,
                       train_iter=_InVocab(cfg.batch_size, host.config.vocab_size),
                       prompt_init=prompt_lib.random_uniform(), evaluate=evaluate, verbose=False)
  assert [h["step"] for h in result.eval_history] == [2, 4]
  trainer_params, trainer_placed, mesh = placements[0]
  assert trainer_params is params, "the trainer places the host params first"
  assert len(placements) == 1 + 2 * 2, "the trainer, then each evaluation batch (13 examples in 8 rows, twice)"
  assert all(placed is trainer_placed and m == mesh for _, placed, m in placements)
  expected = sharding.frozen_shardings(host.config, params, mesh)
  assert jax.tree.leaves(jax.tree.map(lambda x, s: x.sharding == s, trainer_placed, expected)) == [True] * len(
      jax.tree.leaves(params))
  assert trainer_placed["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"].sharding.spec == P(None, "model")
  # (The jitted evaluation functions take these shardings as in_shardings: a committed array laid out
  # otherwise would be refused, not silently copied.)
  # After training the placed copy is still the one evaluation gets (no second copy on the devices).
  assert place(params, host.config, mesh) is trainer_placed
