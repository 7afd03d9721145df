"""Short content hashes of weights: which frozen model a prompt belongs to, which init a run started from.

Why: a prompt only means something on the exact frozen model it was trained on, and a workdir only
holds one run. Both are checked by comparing hashes that are cheap even for T5 XXL: every array
contributes its path, shape and up to 2**20 evenly strided values (all values of all but the largest
matrices), so different checkpoints of one architecture hash differently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import jax
import numpy as np

from spot_jax.models import t5

_SAMPLE = 1 << 20  # elements hashed per array (strided sample)


def _update_with_tree(h: "hashlib._Hash", tree: Any) -> None:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    array = np.asarray(jax.device_get(leaf), np.float32).reshape(-1)
    step = max(1, array.size // _SAMPLE)
    h.update(f"{jax.tree_util.keystr(path)}{np.shape(leaf)}".encode())
    h.update(np.ascontiguousarray(array[::step]).tobytes())


def model_fingerprint(config: t5.T5Config, params: Any) -> str:
  """A short hash of the frozen model: its shape config and its weights.

  Runtime options (dtype, dropout, remat, scan) are excluded: they do not change what a prompt means.
  """
  h = hashlib.sha256()
  shape_fields = {k: v for k, v in dataclasses.asdict(config).items()
                  if k not in ("dtype", "dropout_rate", "remat_policy", "scan_layers")}
  h.update(json.dumps(shape_fields, sort_keys=True).encode())
  if config.scan_layers:
    params = t5.unscan_params(params, config)
  _update_with_tree(h, params)
  return h.hexdigest()[:16]


def tree_digest(tree: Any) -> str:
  """A short hash of any pytree of arrays (e.g. a run's initial prompt or trainable)."""
  h = hashlib.sha256()
  _update_with_tree(h, tree)
  return h.hexdigest()[:16]
