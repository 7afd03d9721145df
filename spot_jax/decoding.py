"""Batched inference on the frozen T5 (+ prompt): greedy decoding with the KV cache, rank classification.

Why: evaluation drives best-prompt selection, the transfer grid and retrieval, so it runs many
times per job and must be cheap. Greedy decoding encodes once and generates with the decoder's KV
cache inside one `lax.while_loop` (compiled once per shape, and it stops as soon as every row has
emitted EOS). Classification tasks use rank classification instead: score every label's token
sequence by its log-likelihood under teacher forcing and pick the best, which never produces an
invalid label. Both take the soft prompt through `T5.encode`'s `prefix_embeddings` hook, so the
prompt code and the model code stay apart.

On a mesh (`mesh=`, what evaluation passes): the frozen params are the trainer's placed copy
(`sharding.place_frozen`, placed once and reused, never copied per batch), the batch is split over
'data', the params over their logical axes (t5x rules), the prompt is replicated, and the functions
are jitted with these in/out shardings under the mesh and the logical-axis rules. Without a mesh they
run as plain `jax.jit` on the default device (serving, tests).

Token conventions are T5's: 0 is padding and the decoder's start token, 1 is EOS.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from spot_jax import sharding
from spot_jax.data.vocab import EOS_ID, PAD_ID
from spot_jax.models import t5

Array = jax.Array


def _fetch(x: Array) -> np.ndarray:
  """The whole array on this host, also when a multi-host mesh (set by the trainer around evaluation)
  spread its rows over other hosts' devices: every process passes the same inputs and gets all rows."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


# ----------------------------------------------------------------------------- input checks


def check_tokens(tokens: Any, what: str) -> jnp.ndarray:
  """Token ids [batch, length] of any integer dtype -> int32, or one error naming `what` and the fix."""
  return jnp.asarray(_checked_tokens(tokens, what))


def _checked_tokens(tokens: Any, what: str) -> Any:
  """`check_tokens` without moving host data to a device (a jax.Array stays one)."""
  if not isinstance(tokens, jax.Array):
    tokens = np.asarray(tokens)
  if tokens.ndim != 2:
    raise ValueError(f"{what} must be int token ids [batch, length]; got shape {tuple(tokens.shape)}. "
                     "Add a leading batch axis for a single example.")
  if not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"{what} must be integer token ids; got dtype {tokens.dtype}.")
  return tokens.astype(np.int32)


def _check_prefix(model: t5.T5, prefix: Optional[Any], batch: int) -> Optional[Any]:
  """Prompt [P, d] or [B, P, d] -> float32 array, with errors that name the expected shape."""
  if prefix is None:
    return None
  prefix = prefix.astype(jnp.float32) if isinstance(prefix, jax.Array) else np.asarray(prefix, np.float32)
  d_model = model.config.d_model
  if prefix.ndim not in (2, 3) or prefix.shape[-1] != d_model:
    raise ValueError(f"prefix_embeddings has shape {tuple(prefix.shape)}; expected [prompt_length, {d_model}] "
                     f"or [batch, prompt_length, {d_model}] (d_model of this model is {d_model}).")
  if prefix.ndim == 3 and prefix.shape[0] != batch:
    raise ValueError(f"prefix_embeddings has {prefix.shape[0]} rows but the batch has {batch}; pass one "
                     "prompt [P, d] for the whole batch or one per row [batch, P, d].")
  return prefix


# ----------------------------------------------------------------------------- jitting: plain or on a mesh


_MESH_JITS: dict = {}
_PROMPT_LAYOUTS = (None, 2, 3)  # no prompt, one prompt [P, d] for all rows, one per row [B, P, d]


def jit_on_mesh(kind: str, model: t5.T5, mesh: Mesh, params: Any, *, prefix_ndim: Optional[int] = 2,
                max_decode_length: Optional[int] = None) -> Callable:
  """The jitted function that `greedy_decode` (kind 'greedy'), `rank_classification` ('rank') or
  `token_log_likelihood` ('token_log_likelihood') run on `mesh`:
  (params, tokens [B, S], prefix, [targets]) -> [B, ...], with in/out shardings: params by their
  logical axes (`sharding.frozen_shardings`), tokens, a per-row prompt, per-row targets and the result
  over 'data'; a shared prompt and label targets replicated. `params` (arrays or ShapeDtypeStructs)
  gives the tree layout. Cached per arguments; call or `.lower()` it under `jax.set_mesh(mesh)` and
  `nn.logical_axis_rules(sharding.STANDARD_RULES)` (benchmarks/sharding_memory.py lowers it).
  """
  if kind not in _KINDS:
    raise ValueError(f"Unknown kind {kind!r}; choose one of {sorted(_KINDS)}.")
  fn, static = _KINDS[kind], {"model": model}
  if kind == "greedy":
    static["max_decode_length"] = int(max_decode_length)
  if prefix_ndim not in _PROMPT_LAYOUTS:
    raise ValueError(f"prefix_ndim must be one of {_PROMPT_LAYOUTS}; got {prefix_ndim}.")
  key = (kind, tuple(sorted(static.items())), mesh, jax.tree.structure(params), prefix_ndim)
  if key not in _MESH_JITS:
    if len(_MESH_JITS) > 32:
      _MESH_JITS.clear()
    _MESH_JITS[key] = jax.jit(functools.partial(fn, **static), out_shardings=sharding.batch_sharding(mesh),
                              in_shardings=(sharding.frozen_shardings(model.config, params, mesh),)
                              + _input_layout(kind, mesh, prefix_ndim))
  return _MESH_JITS[key]


def _input_layout(kind: str, mesh: Mesh, prefix_ndim: Optional[int]) -> tuple:
  """Shardings of (tokens, prefix, [targets]) on `mesh`."""
  rows, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  return (rows, {None: None, 2: repl, 3: rows}[prefix_ndim]) + {
      "greedy": (), "rank": (repl,), "token_log_likelihood": (rows,)}[kind]


def _run(kind: str, model: t5.T5, mesh: Optional[Mesh], params: Any, tokens: Any, prefix: Optional[Any],
         targets: Optional[Any] = None, **static: Any) -> np.ndarray:
  """One call of `kind` -> [B, ...] on this host, all rows: a plain `jax.jit` on the default device
  without a mesh; on a mesh, the frozen params placed once (`sharding.place_frozen`: the trainer's
  copy when it placed them) and the inputs laid out as `jit_on_mesh` says."""
  args = (tokens, prefix) + (() if targets is None else (targets,))
  if mesh is None:
    return _fetch(_PLAIN_JITS[kind](params, *args, model=model, **static))
  sharding.check_batch_fits(tokens.shape[0], mesh)
  params = sharding.place_frozen(params, model.config, mesh)
  prefix_ndim = None if prefix is None else prefix.ndim
  jitted = jit_on_mesh(kind, model, mesh, params, prefix_ndim=prefix_ndim, **static)
  placed = tuple(None if x is None else sharding.put_global(x, s)
                 for x, s in zip(args, _input_layout(kind, mesh, prefix_ndim)))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.STANDARD_RULES):
    return _fetch(jitted(params, *placed))


# ----------------------------------------------------------------------------- greedy decoding


def _greedy(params: Any, tokens: Array, prefix: Optional[Array], *, model: t5.T5, max_decode_length: int) -> Array:
  batch = tokens.shape[0]
  encoded, mask = model.apply({"params": params}, tokens, prefix_embeddings=prefix, method=t5.T5.encode)
  # The first decode=True call only creates the zeroed cache for `max_decode_length` positions
  # (its logits are unused and compiled away).
  _, state = model.apply({"params": params}, encoded, mask, jnp.zeros((batch, max_decode_length), jnp.int32),
                         decode=True, mutable=["cache"], method=t5.T5.decode)

  def cond(carry):
    i, _, _, _, done = carry
    return (i < max_decode_length) & ~jnp.all(done)

  def body(carry):
    i, cache, previous, out, done = carry
    logits, state = model.apply({"params": params, "cache": cache}, encoded, mask, previous[:, None],
                                decode=True, mutable=["cache"], method=t5.T5.decode)
    token = jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)
    token = jnp.where(done, PAD_ID, token)  # finished rows write padding
    out = jax.lax.dynamic_update_slice(out, token[:, None], (0, i))
    return i + 1, state["cache"], token, out, done | (token == EOS_ID)

  init = (jnp.array(0, jnp.int32), state["cache"], jnp.full((batch,), PAD_ID, jnp.int32),
          jnp.full((batch, max_decode_length), PAD_ID, jnp.int32), jnp.zeros((batch,), bool))
  return jax.lax.while_loop(cond, body, init)[3]


def greedy_decode(model: t5.T5, params: Any, encoder_input_tokens: Any, *, max_decode_length: int,
                  prefix_embeddings: Optional[Any] = None, mesh: Optional[Mesh] = None) -> np.ndarray:
  """Greedy generation: tokens [B, S] (+ prompt [P, d] or [B, P, d]) -> ids [B, max_decode_length].

  Generation starts from id 0 (T5's decoder start). A row stops after it emits EOS (the EOS is
  kept); its later positions are 0. The loop ends early once every row has stopped. Compiled once
  per (model, shapes, max_decode_length); keep the batch shape fixed (pad the last batch) to reuse it.
  With `mesh`, B must be a multiple of its 'data' axis and the params are placed once (see module doc).
  """
  if max_decode_length < 1:
    raise ValueError(f"max_decode_length must be >= 1; got {max_decode_length}.")
  tokens = _checked_tokens(encoder_input_tokens, "encoder_input_tokens")
  prefix = _check_prefix(model, prefix_embeddings, tokens.shape[0])
  return _run("greedy", model, mesh, params, tokens, prefix, max_decode_length=int(max_decode_length))


# ----------------------------------------------------------------------------- scoring


def _shift_right(targets: Array) -> Array:
  """Decoder inputs for teacher forcing: [..., T] targets -> [0, t_0, ..., t_{T-2}]."""
  return jnp.pad(targets, [(0, 0)] * (targets.ndim - 1) + [(1, 0)])[..., :-1]


def _target_log_probs(model: t5.T5, params: Any, encoded: Array, mask: Array, targets: Array) -> Array:
  """log p(target_t | target_<t, input) per position [B, T]; 0 where targets are padding."""
  logits = model.apply({"params": params}, encoded, mask, _shift_right(targets), targets, method=t5.T5.decode)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  token_ll = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return jnp.where(targets > 0, token_ll, 0.0)


def _token_log_likelihood(params: Any, tokens: Array, prefix: Optional[Array], targets: Array, *,
                          model: t5.T5) -> Array:
  encoded, mask = model.apply({"params": params}, tokens, prefix_embeddings=prefix, method=t5.T5.encode)
  return _target_log_probs(model, params, encoded, mask, targets)


def token_log_likelihood(model: t5.T5, params: Any, encoder_input_tokens: Any, decoder_target_tokens: Any, *,
                         prefix_embeddings: Optional[Any] = None, mesh: Optional[Mesh] = None) -> np.ndarray:
  """Per-token log-likelihood of given targets (teacher forcing): [B, S], [B, T] -> [B, T].

  Targets are as in training: ids ending with EOS, padded with 0; padded positions score 0, so
  `.sum(-1)` is the sequence log-likelihood. `mesh`: as in `greedy_decode`.
  """
  tokens = _checked_tokens(encoder_input_tokens, "encoder_input_tokens")
  targets = _checked_tokens(decoder_target_tokens, "decoder_target_tokens")
  if targets.shape[0] != tokens.shape[0]:
    raise ValueError(f"decoder_target_tokens has {targets.shape[0]} rows but encoder_input_tokens has "
                     f"{tokens.shape[0]}; they must pair up.")
  prefix = _check_prefix(model, prefix_embeddings, tokens.shape[0])
  return _run("token_log_likelihood", model, mesh, params, tokens, prefix, targets)


def _label_scores(params: Any, tokens: Array, prefix: Optional[Array], targets: Array, *, model: t5.T5) -> Array:
  """Summed log-likelihood of every label sequence: targets [labels, T] -> [B, labels].

  The input is encoded once; the decoder runs once per label (vmapped) against that encoding.
  """
  batch = tokens.shape[0]
  encoded, mask = model.apply({"params": params}, tokens, prefix_embeddings=prefix, method=t5.T5.encode)

  def score_label(label_targets):  # [T] -> [B]
    tiled = jnp.broadcast_to(label_targets[None], (batch,) + label_targets.shape)
    return _target_log_probs(model, params, encoded, mask, tiled).sum(axis=-1)

  return jax.vmap(score_label, out_axes=1)(targets)


_KINDS = {"greedy": _greedy, "rank": _label_scores, "token_log_likelihood": _token_log_likelihood}
_PLAIN_JITS = {kind: jax.jit(fn, static_argnames=("model", "max_decode_length") if kind == "greedy" else ("model",))
               for kind, fn in _KINDS.items()}


def label_targets(label_token_ids: Sequence[Sequence[int]]) -> np.ndarray:
  """Label ids (without EOS) -> padded decoder targets [labels, T] with EOS appended to each."""
  if len(label_token_ids) == 0:
    raise ValueError("rank_classification needs at least one label; got an empty label_token_ids.")
  sequences = []
  for i, ids in enumerate(label_token_ids):
    ids = [int(t) for t in ids]
    if not ids:
      raise ValueError(f"Label {i} has no tokens. Every label word must encode to at least one id "
                       "(check the task's label words against the vocabulary).")
    if PAD_ID in ids or EOS_ID in ids:
      raise ValueError(f"Label {i} ids {ids} contain padding ({PAD_ID}) or EOS ({EOS_ID}). Pass each label's "
                       "ids without EOS (it is appended here), e.g. `vocab.encode(word)`.")
    sequences.append(ids + [EOS_ID])
  targets = np.zeros((len(sequences), max(len(s) for s in sequences)), np.int32)
  for i, seq in enumerate(sequences):
    targets[i, :len(seq)] = seq
  return targets


def rank_classification(model: t5.T5, params: Any, encoder_input_tokens: Any,
                        label_token_ids: Sequence[Sequence[int]], *, prefix_embeddings: Optional[Any] = None,
                        length_normalize: bool = False, mesh: Optional[Mesh] = None) -> tuple[np.ndarray, np.ndarray]:
  """Pick the most likely label for each row: tokens [B, S] -> (label index [B], scores [B, labels]).

  Each label's ids are given WITHOUT EOS (EOS is appended here, as the targets were in training);
  a label's score is the summed log-likelihood of its ids + EOS, or the mean per token with
  `length_normalize=True` (fairer when label words have different lengths). Ties go to the lower index.
  `mesh`: as in `greedy_decode`.
  """
  tokens = _checked_tokens(encoder_input_tokens, "encoder_input_tokens")
  prefix = _check_prefix(model, prefix_embeddings, tokens.shape[0])
  targets = label_targets(label_token_ids)
  scores = _run("rank", model, mesh, params, tokens, prefix, targets)
  if length_normalize:
    scores = scores / (targets > 0).sum(axis=1)[None].astype(np.float32)
  return scores.argmax(axis=1), scores
