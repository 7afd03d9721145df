"""Decoding against naive references on a tiny random T5."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spot_jax import decoding
from spot_jax.models import t5


@pytest.fixture(scope="module")
def model_params():
  cfg = t5.get_config("tiny", vocab_size=64, dropout_rate=0.0, d_model=32, num_heads=2, d_kv=16, d_ff=64)
  params = t5.init_params(cfg, jax.random.key(0))
  # Make EOS likely at some steps so rows stop at different times.
  params["decoder"]["logits_dense"]["kernel"] = params["decoder"]["logits_dense"]["kernel"].at[:, 1].add(0.5)
  return t5.T5(cfg), params


def _tokens():
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 64, (5, 9)).astype(np.int32)
  tokens[1, 4:] = 0
  tokens[3, 2:] = 0
  return tokens


def _naive_greedy(model, params, tokens, length, prefix=None):
  """Re-runs the full (uncached) forward pass for every new token."""
  out = np.zeros((tokens.shape[0], length), np.int32)
  done = np.zeros(tokens.shape[0], bool)
  for i in range(length):
    dec_in = np.concatenate([np.zeros((tokens.shape[0], 1), np.int32), out[:, :i]], axis=1)
    logits = model.apply({"params": params}, tokens, dec_in, None, prefix_embeddings=prefix)
    token = np.array(jnp.argmax(logits[:, -1], -1))
    token[done] = 0
    out[:, i] = token
    done |= token == 1
  return out


@pytest.mark.parametrize("with_prompt", [False, True])
def test_greedy_equals_naive_full_forward(model_params, with_prompt):
  model, params = model_params
  prompt = np.random.default_rng(1).normal(size=(3, 32)).astype(np.float32) if with_prompt else None
  tokens = _tokens()
  ours = decoding.greedy_decode(model, params, tokens, max_decode_length=6, prefix_embeddings=prompt)
  np.testing.assert_array_equal(ours, _naive_greedy(model, params, tokens, 6, prompt))


def test_rank_classification_equals_full_forward_scores(model_params):
  model, params = model_params
  tokens = _tokens()
  labels = [[5], [7, 9], [11, 12, 13]]
  prompt = np.random.default_rng(2).normal(size=(2, 32)).astype(np.float32)
  best, scores = decoding.rank_classification(model, params, tokens, labels, prefix_embeddings=prompt)
  for j, ids in enumerate(labels):
    target = np.array(ids + [1], np.int32)
    dec_in = np.concatenate([[0], target[:-1]]).astype(np.int32)
    tile = lambda x: np.broadcast_to(x, (tokens.shape[0], len(x)))
    logits = model.apply({"params": params}, tokens, tile(dec_in), tile(target), prefix_embeddings=prompt)
    ll = jnp.take_along_axis(jax.nn.log_softmax(logits), tile(target)[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(scores[:, j], ll, atol=1e-4)
  np.testing.assert_array_equal(best, scores.argmax(1))
  # Rows are independent: one row alone gives the same scores.
  _, alone = decoding.rank_classification(model, params, tokens[2:3], labels, prefix_embeddings=prompt)
  np.testing.assert_allclose(alone[0], scores[2], atol=1e-5)
