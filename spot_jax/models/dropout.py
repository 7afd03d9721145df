"""Dropout for T5 on CPU: the same masks as `flax.linen.Dropout`, several times cheaper.

Why: on CPU jax lowers threefry (the PRNG behind every dropout mask) as a 5-step while loop that
copies its state each step, which made dropout masks the largest cost of a prompt-tuning step on
small models. `bernoulli_mask` is the unrolled form jax itself uses on GPU/TPU, written out here and
applied only to T5's dropout (no process-wide lowering change). Cost: none in results (masks equal
jax.random's bit for bit, tests/test_t5_model.py); a slightly larger step program to compile. On:
whenever dropout is on and the key is threefry; any other key (or rate 1, broadcast dims, >= 2**32
elements) uses flax's dropout as is.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def threefry2x32(key1: Array, key2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
  """Threefry-2x32 (20 rounds), exactly as `jax.random` computes it, written without a loop."""
  ks = (key1, key2, key1 ^ key2 ^ np.uint32(0x1BD11BDA))
  x1, x2 = x1 + ks[0], x2 + ks[1]
  for i in range(5):
    for r in ((13, 15, 26, 6), (17, 29, 16, 24))[i % 2]:
      x1 = x1 + x2
      x2 = x1 ^ (jax.lax.shift_left(x2, np.uint32(r)) | jax.lax.shift_right_logical(x2, np.uint32(32 - r)))
    x1, x2 = x1 + ks[(i + 1) % 3], x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x1, x2


def _uses_threefry(key: Array) -> bool:
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return "threefry" in str(jax.random.key_impl(key))
  return key.shape == (2,) and key.dtype == jnp.uint32 and "threefry" in jax.config.jax_default_prng_impl


def bernoulli_mask(key: Array, keep_prob: float, shape: tuple[int, ...]) -> Array:
  """`jax.random.bernoulli(key, keep_prob, shape)`, bit for bit, computed in one fused loop.

  On CPU jax lowers threefry as a 5-step while loop (to compile faster) that copies its state every
  step, which makes dropout masks the largest cost of a prompt-tuning step on small models. This is
  the unrolled form jax itself uses on GPU/TPU, applied only here (no process-wide lowering change):
  the counters are the flat element index (`jax_threefry_partitionable`, jax's default), the 32
  random bits `b1 ^ b2`, the uniform the top 23 bits as a mantissa in [1, 2) minus 1.
  """
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  strides = np.cumprod((1,) + tuple(reversed(shape[1:])))[::-1]
  index = sum(jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
              for axis, stride in enumerate(strides)) if shape else jnp.zeros((), jnp.uint32)
  bits1, bits2 = threefry2x32(data[0], data[1], jnp.zeros(shape, jnp.uint32), index)
  mantissa = jax.lax.shift_right_logical(bits1 ^ bits2, np.uint32(9)) | np.uint32(0x3F800000)
  uniform = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
  return uniform < keep_prob


class Dropout(nn.Dropout):
  """`nn.Dropout` with the same masks, made faster on CPU (see `bernoulli_mask`).

  The key is derived once behind an optimization barrier: otherwise XLA fuses the key derivation
  (scalar threefry hashes of the step and the module path) into the mask's elementwise loop and
  redoes it for every element.
  """

  @nn.compact
  def __call__(self, inputs: Array, deterministic: Optional[bool] = None, rng: Optional[Array] = None) -> Array:
    if self.rate == 0 or nn.merge_param("deterministic", self.deterministic, deterministic):
      return inputs
    if rng is None:
      rng = self.make_rng(self.rng_collection)
    if self.rate == 1.0 or self.broadcast_dims or not _uses_threefry(rng) or math.prod(inputs.shape) >= 2**32:
      return super().__call__(inputs, deterministic, rng=rng)
    rng = jax.lax.optimization_barrier(rng)
    keep_prob = 1.0 - self.rate
    keep = bernoulli_mask(rng, keep_prob, inputs.shape)
    return jax.lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))
