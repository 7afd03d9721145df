"""XLA compiler options for the jitted train step, per backend.

Why: XLA:CPU hands dots to YNNPACK by default; for the train step's many small matmuls (batch x
length rows, d_model columns) XLA's own dot emitter is faster: +8-12% on the `tiny` shape, within
noise on T5 1.1 small (benchmarks/train_step.py). Reductions stay on YNNPACK. Cost: none in results
(the same program, another dot kernel). On: CPU only; GPU/TPU keep XLA's defaults, and an XLA that
no longer knows the option keeps its defaults with a warning instead of failing.
"""

from __future__ import annotations

import functools
import logging
from typing import Optional

import jax
import jax.numpy as jnp

CPU_TRAIN_STEP_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.lru_cache(maxsize=None)
def train_step_options() -> Optional[dict]:
  """XLA options for the jitted train step on this backend (None where the defaults are best)."""
  if jax.default_backend() != "cpu":
    return None
  try:  # an XLA that no longer knows the option: keep its defaults rather than fail
    jax.jit(jnp.sin).lower(jnp.zeros(())).compile(compiler_options=CPU_TRAIN_STEP_OPTIONS)
  except Exception:  # noqa: BLE001 - XLA raises a runtime error type that differs across versions
    logging.warning("XLA rejected %s; compiling the train step with default options.", CPU_TRAIN_STEP_OPTIONS)
    return None
  return CPU_TRAIN_STEP_OPTIONS
