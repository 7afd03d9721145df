"""Prompt files: `.npy` import/export and the named prompts of a run (task embedding, best).

Why: a prompt is tiny ([prompt_length, d_model]) and is the artifact people share. The released
prompts of google-research/prompt-tuning are single `.npy` arrays, so that is the exchange format.
A run's named prompts live in `<workdir>/prompts/<name>.npy` with `<name>.json` metadata; every write
goes to a temporary file first and is renamed into place, so a crash never leaves half a prompt.
Paths may be local or `gs://` (etils.epath).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Optional

import numpy as np
from etils import epath

from spot_jax import errors, fileio

PROMPTS_DIR = "prompts"


class PromptFileError(errors.UserError, ValueError):
  """A prompt file that is missing, unreadable or not a [length, d_model] float array."""


def _atomic_write_bytes(path: epath.Path, data: bytes) -> None:
  fileio.atomic_write(path, data)  # atomic on POSIX; on GCS a copy + delete of a complete object


def save_npy(path: str | os.PathLike, prompt: Any) -> None:
  """Writes prompt [length, d_model] as float32 `.npy`, atomically."""
  array = np.asarray(prompt, np.float32)
  if array.ndim != 2:
    raise PromptFileError(f"A prompt is [length, d_model]; got shape {array.shape}.")
  buffer = io.BytesIO()
  np.save(buffer, array, allow_pickle=False)
  _atomic_write_bytes(epath.Path(path), buffer.getvalue())


def load_npy(path: str | os.PathLike) -> np.ndarray:
  """Reads a `.npy` prompt [length, d_model] (float32), with a clear error for anything else."""
  path = epath.Path(path)
  if not path.exists():
    raise PromptFileError(f"Prompt file {path} does not exist.")
  try:
    array = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise PromptFileError(f"{path} is not a readable .npy prompt (corrupted or truncated?): {e}") from e
  if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
    raise PromptFileError(f"{path} holds a {array.dtype} array of shape {array.shape}; a prompt is a "
                          "float array [length, d_model].")
  return array.astype(np.float32)


def save_named_prompt(workdir: str, name: str, prompt: Any, metadata: Optional[dict] = None) -> None:
  """Writes `<workdir>/prompts/<name>.npy` (+ `<name>.json`), each atomically, array first."""
  directory = epath.Path(workdir) / PROMPTS_DIR
  save_npy(directory / f"{name}.npy", prompt)
  meta = dict(metadata or {})
  meta.setdefault("shape", list(np.shape(prompt)))
  _atomic_write_bytes(directory / f"{name}.json", json.dumps(meta, indent=2, sort_keys=True).encode())


def load_named_metadata(workdir: str, name: str) -> Optional[dict]:
  path = epath.Path(workdir) / PROMPTS_DIR / f"{name}.json"
  return json.loads(path.read_text()) if path.exists() else None


def load_prompt(workdir: str, which: str = "best") -> np.ndarray:
  """The prompt named `which` ('best', 'embedding', 'final', ...) of the run in `workdir`."""
  directory = epath.Path(workdir) / PROMPTS_DIR
  path = directory / f"{which}.npy"
  if not path.exists():
    available = sorted(p.stem for p in directory.glob("*.npy")) if directory.exists() else []
    raise PromptFileError(f"No prompt {which!r} in {directory}. Available: {available or 'none'} "
                          "(is the workdir that of a finished spot_jax run?).")
  return load_npy(path)
