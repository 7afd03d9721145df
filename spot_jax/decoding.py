"""Batched inference on the frozen T5 (+ prompt): greedy decoding with the KV cache, rank classification.

Why: evaluation drives best-prompt selection, the transfer grid and retrieval, so it runs many
times per job. Greedy decoding encodes once and generates with the decoder's KV cache inside one
`lax.fori_loop` (compiled once per shape). Classification tasks use rank classification instead:
score every label word sequence by its log-likelihood and pick the best, which never produces an
invalid label.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spot_jax.data.vocab import EOS_ID
from spot_jax.models import t5

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("model", "max_decode_length"))
def _greedy(model: t5.T5, params: Any, tokens: Array, prefix: Optional[Array], max_decode_length: int) -> Array:
  batch = tokens.shape[0]
  encoded, mask = model.apply({"params": params}, tokens, prefix_embeddings=prefix, method=t5.T5.encode)
  _, state = model.apply({"params": params}, encoded, mask, jnp.zeros((batch, max_decode_length), jnp.int32),
                         decode=True, mutable=["cache"], method=t5.T5.decode)

  def step(i, carry):
    cache, previous, out, done = carry
    logits, state = model.apply({"params": params, "cache": cache}, encoded, mask, previous[:, None],
                                decode=True, mutable=["cache"], method=t5.T5.decode)
    token = jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)
    token = jnp.where(done, 0, token)
    out = out.at[:, i].set(token)
    return state["cache"], token, out, done | (token == EOS_ID)

  init = (state["cache"], jnp.zeros((batch,), jnp.int32), jnp.zeros((batch, max_decode_length), jnp.int32),
          jnp.zeros((batch,), bool))
  return jax.lax.fori_loop(0, max_decode_length, step, init)[2]


def greedy_decode(model: t5.T5, params: Any, encoder_input_tokens: Any, *, max_decode_length: int,
                  prefix_embeddings: Optional[Any] = None) -> np.ndarray:
  """Tokens [B, S] (+ prompt [P, d] or [B, P, d]) -> generated ids [B, max_decode_length].

  Generation starts from id 0; a row stops at EOS (kept), later positions are 0.
  """
  prefix = None if prefix_embeddings is None else jnp.asarray(prefix_embeddings, jnp.float32)
  return np.asarray(_greedy(model, params, jnp.asarray(encoder_input_tokens, jnp.int32), prefix, max_decode_length))


@functools.partial(jax.jit, static_argnames=("model",))
def _label_scores(model: t5.T5, params: Any, tokens: Array, prefix: Optional[Array], targets: Array,
                  weights: Array) -> Array:
  """Summed log-likelihood of each label sequence: targets/weights [labels, T] -> [B, labels]."""
  batch, num_labels = tokens.shape[0], targets.shape[0]
  encoded, mask = model.apply({"params": params}, tokens, prefix_embeddings=prefix, method=t5.T5.encode)
  decoder_inputs = jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]

  def score_label(label_targets, label_inputs, label_weights):
    tiled = lambda x: jnp.broadcast_to(x[None], (batch,) + x.shape)
    logits = model.apply({"params": params}, encoded, mask, tiled(label_inputs), tiled(label_targets),
                         method=t5.T5.decode)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    token_ll = jnp.take_along_axis(log_probs, tiled(label_targets)[..., None], axis=-1)[..., 0]
    return jnp.sum(token_ll * label_weights[None], axis=-1)  # [B]

  return jax.vmap(score_label, out_axes=1)(targets, decoder_inputs, weights)


def rank_classification(model: t5.T5, params: Any, encoder_input_tokens: Any,
                        label_token_ids: Sequence[Sequence[int]], *, prefix_embeddings: Optional[Any] = None,
                        length_normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """-> (best label index [B], scores [B, labels]); each label's ids without EOS (appended here)."""
  if not label_token_ids:
    raise ValueError("rank_classification needs at least one label.")
  sequences = [list(ids) + [EOS_ID] for ids in label_token_ids]
  length = max(len(s) for s in sequences)
  targets = np.zeros((len(sequences), length), np.int32)
  for i, seq in enumerate(sequences):
    targets[i, :len(seq)] = seq
  weights = (targets > 0).astype(np.float32)
  prefix = None if prefix_embeddings is None else jnp.asarray(prefix_embeddings, jnp.float32)
  scores = np.asarray(_label_scores(model, params, jnp.asarray(encoder_input_tokens, jnp.int32), prefix,
                                    jnp.asarray(targets), jnp.asarray(weights)))
  if length_normalize:
    scores = scores / weights.sum(axis=1)[None]
  return scores.argmax(axis=1), scores
