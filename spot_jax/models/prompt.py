"""Soft prompt on a frozen T5: initializers and the `PromptedT5` module.

Why separate from t5.py: the prompt is the only trainable thing in spot_jax, and the T5 code should
not know about it. A prompt is an array [prompt_length, d_model] fed to `T5.encode` as
`prefix_embeddings` (inserted after the token embedding, before input dropout; the encoder mask gets
prompt_length ones in front). Initializers are closures `fn(rng, shape, dtype) -> array` (flax's initializer signature), as in
google-research/prompt-tuning, so configs can name them and tests can call them directly.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spot_jax.models import t5

Array = jax.Array
Initializer = Callable[..., Array]  # (rng, shape, dtype=float32) -> array, as flax initializers

PROMPT_AXES = ("prompt", "prompt_embed")  # replicated by the sharding rules; saved as one array


class PromptShapeError(ValueError):
  """A prompt whose shape does not fit the model/config it is used with. An expected error (the
  user's to fix, like `spot_jax.errors.UserError`'s subclasses): models/ imports nothing of spot_jax
  outside it, so this derives from ValueError alone and `errors.is_expected` names it."""


def check_prompt_shape(prompt: np.ndarray | Array, shape: tuple[int, int], what: str = "prompt") -> None:
  if tuple(prompt.shape) != tuple(shape):
    raise PromptShapeError(
        f"{what} has shape {tuple(prompt.shape)} but the model expects {tuple(shape)} "
        "[prompt_length, d_model]. Set config.train.prompt_length to the prompt's length (e.g. "
        f"--config.train.prompt_length={prompt.shape[0]}), or use a prompt trained on a model with d_model "
        f"{shape[1]}.")


def random_uniform(scale: float = 0.5) -> Initializer:
  """U(-scale, scale): Lester et al.'s random init."""
  def init(rng: Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> Array:
    return jax.random.uniform(rng, shape, jnp.float32, -scale, scale)
  return init


def sampled_vocab(embedding: np.ndarray | Array, population: int = 5000) -> Initializer:
  """Rows of the frozen embedding [vocab, d_model], drawn without replacement from the first
  `population` ids (SentencePiece orders ids by frequency, so these are the most frequent tokens;
  ids 0-2 — pad, EOS, unk — are skipped)."""
  def init(rng: Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> Array:
    candidates = jnp.arange(3, min(population, embedding.shape[0]))
    replace = shape[0] > candidates.shape[0]
    ids = jax.random.choice(rng, candidates, (shape[0],), replace=replace)
    rows = jnp.asarray(embedding)[ids].astype(jnp.float32)
    check_prompt_shape(rows, shape, "sampled vocabulary prompt")
    return rows
  return init


def class_labels(embedding: np.ndarray | Array, label_token_ids: Sequence[Sequence[int]],
                 population: int = 5000) -> Initializer:
  """First rows: the embedding of each label word (multi-token labels averaged); the remaining rows
  sampled vocabulary (Lester et al.'s best init)."""
  def init(rng: Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> Array:
    rows = sampled_vocab(embedding, population)(rng, shape)
    labels = [jnp.asarray(embedding)[jnp.asarray(ids)].mean(axis=0) for ids in label_token_ids if len(ids)]
    count = min(len(labels), shape[0])
    if count:
      rows = rows.at[:count].set(jnp.stack(labels[:count]).astype(jnp.float32))
    return rows
  return init


def from_array(array: np.ndarray | Array) -> Initializer:
  """A given prompt (e.g. a retrieved source prompt), shape-checked."""
  def init(rng: Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> Array:
    del rng, dtype
    check_prompt_shape(array, shape)
    return jnp.asarray(array, jnp.float32)
  return init


def weighted_average(prompts: Sequence[np.ndarray | Array], weights: Sequence[float]) -> Initializer:
  """sum_i w_i p_i with weights normalised to sum 1 (SPoT's top-k weighted average)."""
  if len(prompts) != len(weights) or not prompts:
    raise ValueError(f"weighted_average needs one weight per prompt; got {len(prompts)} prompts, "
                     f"{len(weights)} weights.")
  w = np.asarray(weights, np.float64)
  if np.any(w < 0) or w.sum() <= 0:
    raise ValueError(f"weighted_average weights must be non-negative with a positive sum; got {list(weights)}.")
  shapes = {tuple(p.shape) for p in prompts}
  if len(shapes) != 1:
    raise PromptShapeError(f"Cannot average prompts of different shapes {sorted(shapes)}.")
  w = w / w.sum()
  average = sum(float(wi) * np.asarray(p, np.float64) for wi, p in zip(w, prompts)).astype(np.float32)
  return from_array(average)


class PromptedT5(nn.Module):
  """Soft prompt + frozen T5. Params: {'prompt': [L, d_model], 't5': <T5 params>}.

  The trainer differentiates only 'prompt'; 't5' is passed in unchanged every step.
  """

  config: t5.T5Config
  prompt_length: int = 100
  prompt_init: Optional[Initializer] = None

  def setup(self):
    init = self.prompt_init or random_uniform()
    self.prompt = self.param("prompt", nn.with_logical_partitioning(init, PROMPT_AXES),
                             (self.prompt_length, self.config.d_model), jnp.float32)
    self.t5 = t5.T5(self.config)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Optional[Array] = None, enable_dropout: bool = False) -> Array:
    """-> logits [batch, target_len, vocab]; the encoder sees [prompt; tokens]."""
    return self.t5(encoder_input_tokens, decoder_input_tokens, decoder_target_tokens, enable_dropout,
                   prefix_embeddings=self.prompt)
