"""Decoding against naive references on a tiny random T5: cached greedy == uncached argmax loop,
rank classification == per-label log-softmax of the full forward, rows independent of the batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spot_jax import decoding
from spot_jax.models import t5
from tests import train_fixtures as fx

D_MODEL = 32
MAX_LEN = 7
EOS_BIAS = 0.3


@pytest.fixture(scope="module")
def model_params():
  cfg = t5.get_config("tiny", vocab_size=64, dropout_rate=0.0, d_model=D_MODEL, num_heads=2, d_kv=16, d_ff=64,
                      num_encoder_layers=1, num_decoder_layers=2)
  params = fx.random_params(cfg)
  # Make EOS likely so rows stop at different steps (checked in the greedy test).
  params["decoder"]["logits_dense"]["kernel"][:, 1] += EOS_BIAS
  return t5.T5(cfg), params


@pytest.fixture(scope="module")
def full_forward(model_params):
  """The uncached teacher-forced forward pass, jitted once (a different code path from the cache)."""
  model, params = model_params
  return jax.jit(lambda tokens, dec_in, prefix: model.apply({"params": params}, tokens, dec_in, None,
                                                            prefix_embeddings=prefix))


def _tokens():
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 64, (6, 9)).astype(np.int32)
  tokens[1, 4:] = 0
  tokens[3, 2:] = 0
  return tokens


def _naive_greedy(full_forward, tokens, length, prefix=None):
  """Re-runs the full forward pass on everything generated so far, argmax at the newest position."""
  out = np.zeros((tokens.shape[0], length), np.int32)
  done = np.zeros(tokens.shape[0], bool)
  for i in range(length):
    dec_in = np.concatenate([np.zeros((tokens.shape[0], 1), np.int32), out[:, :-1]], axis=1)
    logits = full_forward(tokens, dec_in, prefix)  # positions > i see only later tokens: causal
    token = np.array(jnp.argmax(logits[:, i], -1))
    token[done] = 0
    out[:, i] = token
    done |= token == 1
  return out


def _prompt(kind, seed=1, batch=6):
  rng = np.random.default_rng(seed)
  if kind == "none":
    return None
  shape = (3, D_MODEL) if kind == "shared" else (batch, 3, D_MODEL)
  return rng.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("prompt_kind", ["none", "shared", "per_row"])
def test_cached_greedy_equals_naive_full_forward_loop(model_params, full_forward, prompt_kind):
  model, params = model_params
  tokens, prompt = _tokens(), _prompt(prompt_kind)
  ours = decoding.greedy_decode(model, params, tokens, max_decode_length=MAX_LEN, prefix_embeddings=prompt)
  assert ours.shape == (6, MAX_LEN) and ours.dtype == np.int32
  np.testing.assert_array_equal(ours, _naive_greedy(full_forward, tokens, MAX_LEN, prompt))
  # The planted EOS bias makes this a real test of stopping: some rows stop early, some run to the
  # end; a stopped row holds EOS once, then padding.
  stops = [int(np.argmax(row == 1)) if (row == 1).any() else MAX_LEN for row in ours]
  assert MAX_LEN in stops and min(stops) < MAX_LEN - 1, stops
  for row, stop in zip(ours, stops):
    assert (row[stop + 1:] == 0).all() and (row[:stop] > 1).all()


def test_greedy_rows_do_not_depend_on_the_batch(model_params):
  model, params = model_params
  tokens, prompt = _tokens(), _prompt("per_row")
  batched = decoding.greedy_decode(model, params, tokens, max_decode_length=MAX_LEN, prefix_embeddings=prompt)
  # Row 2 alone stops at step 1, so this also covers the loop exiting early (every row done).
  for i in (1, 2, 4):
    alone = decoding.greedy_decode(model, params, tokens[i:i + 1], max_decode_length=MAX_LEN,
                                   prefix_embeddings=prompt[i:i + 1])
    np.testing.assert_array_equal(alone[0], batched[i])
  assert (batched[2, 1:] == [1] + [0] * (MAX_LEN - 2)).all()


def _reference_label_scores(full_forward, tokens, labels, prompt):
  """Independent: per label, the sum of log-softmax over the full forward with EOS appended.

  Targets are padded to MAX_LEN (later positions cannot affect earlier ones: causal), which
  reuses the full forward compiled for the greedy reference.
  """
  columns = []
  for ids in labels:
    target = np.array(ids + [1], np.int32)
    dec_in = np.zeros((tokens.shape[0], MAX_LEN), np.int32)
    dec_in[:, 1:len(target)] = target[:-1]
    log_probs = np.asarray(jax.nn.log_softmax(full_forward(tokens, dec_in, prompt)), np.float64)
    columns.append(sum(log_probs[:, t, token] for t, token in enumerate(target)))
  return np.stack(columns, axis=1)


def test_rank_classification_equals_full_forward_log_likelihoods(model_params, full_forward):
  model, params = model_params
  tokens, prompt = _tokens(), _prompt("shared")
  labels = [[5], [7, 9], [11, 12, 13]]
  best, scores = decoding.rank_classification(model, params, tokens, labels, prefix_embeddings=prompt)
  reference = _reference_label_scores(full_forward, tokens, labels, prompt)
  assert scores.shape == (6, 3) and best.shape == (6,)
  np.testing.assert_allclose(scores, reference, atol=1e-4, rtol=1e-5)
  np.testing.assert_array_equal(best, reference.argmax(1))

  normed_best, normed = decoding.rank_classification(model, params, tokens, labels, prefix_embeddings=prompt,
                                                     length_normalize=True)
  np.testing.assert_allclose(normed, reference / np.array([2, 3, 4]), atol=1e-4, rtol=1e-5)
  np.testing.assert_array_equal(normed_best, normed.argmax(1))
  assert len(set(normed_best.tolist()) | set(best.tolist())) > 1  # the labels really compete

  # The per-token helper agrees (padding scores 0).
  targets = np.tile(decoding.label_targets(labels)[1], (6, 1))  # [7, 9, EOS, 0]
  per_token = decoding.token_log_likelihood(model, params, tokens, targets, prefix_embeddings=prompt)
  assert per_token.shape == (6, 4) and (per_token[:, 3] == 0).all() and (per_token[:, :3] < 0).all()
  np.testing.assert_allclose(per_token.sum(1), scores[:, 1], atol=1e-5)

  # Rows are independent of the batch they are in.
  for i in (1, 3):
    _, alone = decoding.rank_classification(model, params, tokens[i:i + 1], labels, prefix_embeddings=prompt)
    np.testing.assert_allclose(alone[0], scores[i], atol=1e-5)


def test_rank_classification_without_prompt(model_params, full_forward):
  model, params = model_params
  tokens, labels = _tokens(), [[5], [7, 9], [11, 12, 13]]
  _, scores = decoding.rank_classification(model, params, tokens, labels)
  np.testing.assert_allclose(scores, _reference_label_scores(full_forward, tokens, labels, None), atol=1e-4)


def test_bad_inputs_name_the_problem(model_params):
  model, params = model_params
  tokens = _tokens()
  with pytest.raises(ValueError, match="without EOS"):
    decoding.rank_classification(model, params, tokens, [[5, 1]])
  with pytest.raises(ValueError, match="at least one label"):
    decoding.rank_classification(model, params, tokens, [])
  with pytest.raises(ValueError, match="Label 1 has no tokens"):
    decoding.rank_classification(model, params, tokens, [[5], []])
  with pytest.raises(ValueError, match=r"\[batch, length\]"):
    decoding.greedy_decode(model, params, tokens[0], max_decode_length=3)
  with pytest.raises(ValueError, match="d_model of this model is 32"):
    decoding.greedy_decode(model, params, tokens, max_decode_length=3, prefix_embeddings=np.zeros((3, 16)))
  with pytest.raises(ValueError, match="one per row"):
    decoding.greedy_decode(model, params, tokens, max_decode_length=3, prefix_embeddings=np.zeros((2, 3, 32)))
  with pytest.raises(ValueError, match="max_decode_length must be >= 1"):
    decoding.greedy_decode(model, params, tokens, max_decode_length=0)
