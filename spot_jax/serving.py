"""Serving many prompts from one frozen T5: per-example prompts, mixed-task batches, prompt ensembles.

Why: the frozen backbone is shared by every task, so a task is just a small prompt [L, d_model]
(Lester et al. 2021, §7). One batch can then hold examples of different tasks, each row carrying the
index of its prompt in a stacked *prompt bank* [P, L, d_model]; the bank is gathered into per-row
prefix embeddings [B, L, d_model] and fed through `T5.encode`'s `prefix_embeddings` hook. The same
trick gives prompt ensembling almost for free: replicate each example once per prompt of the same
task, decode in one batch, and take a majority vote.

Everything here is a thin layer over `spot_jax.decoding` (no decode loop of its own): rows are
independent in the encoder-decoder, so a row in a mixed batch gets the same answer as it would in a
batch of its own task with that task's single prompt.

Limitation: the prompts of one batch must share the prompt length L (the bank is one array and the
encoder gives every prefix row a mask of one). Serve prompts of different lengths in separate batches.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from spot_jax import decoding
from spot_jax.models import t5
from spot_jax.models.prompt import PromptShapeError, check_prompt_shape

LabelIds = Sequence[Sequence[int]]  # one task's labels: token ids per label, without EOS


# ----------------------------------------------------------------------------- prompt bank


def stack_prompts(prompts: Any, d_model: int | None = None) -> np.ndarray:
  """Prompts [L, d] each (or an array [P, L, d]) -> one bank [P, L, d] float32, shape-checked.

  Why a bank: per-row prompts are then one gather, and the whole batch runs in one compiled call.
  """
  if isinstance(prompts, (list, tuple)):
    if not prompts:
      raise ValueError("A prompt bank needs at least one prompt; got none.")
    first = np.asarray(prompts[0])
    if first.ndim != 2:
      raise PromptShapeError(f"prompt 0 has shape {first.shape}; each prompt must be [prompt_length, d_model].")
    for i, prompt in enumerate(prompts):
      if tuple(np.shape(prompt)) != first.shape:
        raise PromptShapeError(
            f"prompt {i} has shape {tuple(np.shape(prompt))} but prompt 0 has {first.shape}. Prompts served "
            "in one batch must share [prompt_length, d_model]; serve prompts of other lengths in separate "
            "batches.")
    bank = np.stack([np.asarray(p, np.float32) for p in prompts])
  else:
    bank = np.asarray(prompts, np.float32)
    if bank.ndim != 3 or bank.shape[0] == 0:
      raise PromptShapeError(f"A prompt bank must be [num_prompts >= 1, prompt_length, d_model]; got shape "
                             f"{bank.shape}. Pass a list of [prompt_length, d_model] prompts or stack them.")
  if d_model is not None:
    check_prompt_shape(bank[0], (bank.shape[1], d_model), "prompt bank entry")
  return bank


def _check_tokens(tokens: Any) -> np.ndarray:
  return np.asarray(decoding.check_tokens(tokens, "encoder_input_tokens"))


def _check_prompt_ids(prompt_ids: Any, batch: int | None, num_prompts: int) -> np.ndarray:
  ids = np.asarray(prompt_ids)
  if ids.ndim != 1 or (batch is not None and ids.shape[0] != batch):
    raise ValueError(f"prompt_ids must be one prompt index per row, shape [{batch or 'batch'}]; got shape "
                     f"{ids.shape}.")
  if ids.size and not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"prompt_ids must be integer indices into the prompt bank; got dtype {ids.dtype}.")
  bad = sorted({int(i) for i in ids if not 0 <= i < num_prompts})
  if bad:
    raise IndexError(f"prompt_ids {bad} are out of range for a bank of {num_prompts} prompts "
                     f"(valid: 0..{num_prompts - 1}).")
  return ids.astype(np.int32)


def gather_prompts(bank: Any, prompt_ids: Any, d_model: int | None = None) -> jnp.ndarray:
  """Bank [P, L, d] (or a list of [L, d]) + prompt index per row [B] -> prefix embeddings [B, L, d].

  `T5.encode` takes [B, L, d] as well as [L, d], so the result goes straight into `prefix_embeddings`.
  """
  bank = stack_prompts(bank, d_model)
  ids = _check_prompt_ids(prompt_ids, None, bank.shape[0])
  return jnp.take(jnp.asarray(bank), jnp.asarray(ids), axis=0)


def _prefix(model: t5.T5, tokens: np.ndarray, prompt_ids: Any, bank: np.ndarray) -> jnp.ndarray:
  _check_prompt_ids(prompt_ids, tokens.shape[0], bank.shape[0])
  return gather_prompts(bank, prompt_ids, model.config.d_model)


# ----------------------------------------------------------------------------- mixed-task batches


def mixed_greedy_decode(model: t5.T5, params: Any, encoder_input_tokens: Any, prompt_ids: Any, prompts: Any, *,
                        max_decode_length: int) -> np.ndarray:
  """Greedy decoding of a batch whose rows use different prompts: tokens [B, S], prompt_ids [B],
  prompts [P, L, d] (or a list of [L, d]) -> ids [B, max_decode_length], as `decoding.greedy_decode`."""
  tokens = _check_tokens(encoder_input_tokens)
  prefix = _prefix(model, tokens, prompt_ids, stack_prompts(prompts))
  return decoding.greedy_decode(model, params, tokens, max_decode_length=max_decode_length,
                                prefix_embeddings=prefix)


def _label_union(label_token_ids: Sequence[LabelIds], num_prompts: int) -> tuple[list[list[int]], np.ndarray]:
  """Per-prompt label sets -> (distinct labels, index [P, max_labels] into them, -1 past a task's labels)."""
  if len(label_token_ids) != num_prompts:
    raise ValueError(f"label_token_ids must hold one label set per prompt in the bank ({num_prompts}); got "
                     f"{len(label_token_ids)}.")
  union: dict[tuple[int, ...], int] = {}
  index = np.full((num_prompts, max(max(len(labels) for labels in label_token_ids), 1)), -1, np.int32)
  for p, labels in enumerate(label_token_ids):
    try:
      decoding.label_targets(labels)  # validates this task's labels (non-empty, no EOS/padding)
    except ValueError as e:
      raise ValueError(f"Labels of prompt {p}: {e}") from e
    for k, ids in enumerate(labels):
      index[p, k] = union.setdefault(tuple(int(t) for t in ids), len(union))
  return [list(ids) for ids in union], index


def mixed_rank_classification(model: t5.T5, params: Any, encoder_input_tokens: Any, prompt_ids: Any,
                              prompts: Any, label_token_ids: Sequence[LabelIds], *,
                              length_normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Rank classification of a mixed-task batch: each row is scored on its own task's labels.

  label_token_ids[p] is the label set of the task prompt p serves (ids without EOS, as in
  `decoding.rank_classification`). Every distinct label of the batch is scored once per row (one
  encoder pass), then each row keeps its task's labels.
  -> (label index into the row's task labels [B], scores [B, max_labels]; -inf past a task's labels).
  Ties go to the lower label index, as in `decoding.rank_classification`.
  """
  tokens = _check_tokens(encoder_input_tokens)
  bank = stack_prompts(prompts)
  prefix = _prefix(model, tokens, prompt_ids, bank)
  labels, index = _label_union(label_token_ids, bank.shape[0])
  _, union_scores = decoding.rank_classification(model, params, tokens, labels, prefix_embeddings=prefix,
                                                 length_normalize=length_normalize)
  row_index = index[np.asarray(prompt_ids, np.int32)]  # [B, max_labels]
  scores = np.where(row_index >= 0, np.take_along_axis(union_scores, np.maximum(row_index, 0), axis=1), -np.inf)
  return scores.argmax(axis=1), scores.astype(np.float32)


# ----------------------------------------------------------------------------- prompt ensembling


def majority_vote(votes: Any, num_classes: int, tie_scores: Any | None = None) -> np.ndarray:
  """Majority over the N voters of each row: votes [B, N] ints in [0, num_classes) -> winner [B].

  Ties between equally frequent classes go to the highest `tie_scores` [B, num_classes] when given,
  then to the lowest class index.
  """
  votes = np.asarray(votes)
  counts = (votes[..., None] == np.arange(num_classes)).sum(axis=1)  # [B, classes]
  tied = counts == counts.max(axis=1, keepdims=True)
  if tie_scores is None:
    return tied.argmax(axis=1)
  return np.where(tied, np.asarray(tie_scores, np.float64), -np.inf).argmax(axis=1)


def winning_voter(same: Any) -> np.ndarray:
  """Majority over free-form answers: same [B, N, N] bool (voter i's answer equals voter j's) -> [B]
  the index of a voter whose answer the most voters gave. A tie goes to the answer first given by the
  lowest voter index (each answer's class is the first voter that gave it), and that voter is returned.
  """
  same = np.asarray(same, bool)
  return majority_vote(same.argmax(axis=2), same.shape[1])


def ensemble_batch(encoder_input_tokens: Any, num_prompts: int) -> tuple[np.ndarray, np.ndarray]:
  """Tokens [B, S] -> ([B*N, S], prompt_ids [B*N]): each example once per prompt, example-major
  (row b*N + n is example b with prompt n), so results reshape to [B, N, ...]."""
  tokens = _check_tokens(encoder_input_tokens)
  if num_prompts < 1:
    raise ValueError(f"An ensemble needs at least one prompt; got {num_prompts}.")
  return np.repeat(tokens, num_prompts, axis=0), np.tile(np.arange(num_prompts, dtype=np.int32), tokens.shape[0])


def ensemble_greedy_decode(model: t5.T5, params: Any, encoder_input_tokens: Any, prompts: Any, *,
                           max_decode_length: int) -> tuple[np.ndarray, np.ndarray]:
  """Lester et al.'s prompt ensemble for generation: N prompts of one task, one batch of B*N rows.

  -> (voted ids [B, max_decode_length], per-prompt ids [B, N, max_decode_length]). The vote counts
  identical output sequences; a tie goes to the sequence produced by the lowest prompt index.
  """
  bank = stack_prompts(prompts, model.config.d_model)
  tokens, prompt_ids = ensemble_batch(encoder_input_tokens, bank.shape[0])
  ids = mixed_greedy_decode(model, params, tokens, prompt_ids, bank, max_decode_length=max_decode_length)
  per_prompt = ids.reshape(-1, bank.shape[0], ids.shape[-1])  # [B, N, T]
  winner = winning_voter((per_prompt[:, :, None] == per_prompt[:, None]).all(axis=-1))
  return per_prompt[np.arange(per_prompt.shape[0]), winner], per_prompt


def ensemble_rank_classification(model: t5.T5, params: Any, encoder_input_tokens: Any, prompts: Any,
                                 label_token_ids: LabelIds, *,
                                 length_normalize: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Prompt ensemble for classification: each prompt ranks the labels, then a majority vote.

  -> (voted label [B], per-prompt labels [B, N], scores [B, N, labels]). Ties between equally voted
  labels go to the highest score summed over the N prompts, then to the lowest label index.
  """
  bank = stack_prompts(prompts, model.config.d_model)
  tokens, prompt_ids = ensemble_batch(encoder_input_tokens, bank.shape[0])
  prefix = _prefix(model, tokens, prompt_ids, bank)
  best, scores = decoding.rank_classification(model, params, tokens, label_token_ids, prefix_embeddings=prefix,
                                              length_normalize=length_normalize)
  per_prompt = best.reshape(-1, bank.shape[0])
  scores = scores.reshape(per_prompt.shape + scores.shape[-1:])
  return majority_vote(per_prompt, scores.shape[-1], scores.sum(axis=1)), per_prompt, scores
