"""The SPoT prompt library on disk: one entry per source task, key = task embedding, value = prompt.

Why: SPoT's targeted transfer needs a store of source prompts keyed by task embeddings (the prompt
at an early checkpoint), tied to the exact frozen model they were trained on. The SPoT authors never
released theirs; this format is plain files so a library can be shared, inspected and imported:

  <library>/library.json              format, model fingerprint, prompt length, d_model
  <library>/entries/<task>/key.npy    task embedding [prompt_length, d_model]
  <library>/entries/<task>/value.npy  source prompt   [prompt_length, d_model]
  <library>/entries/<task>/entry.json task, steps, validation score, provenance

An entry is written to a temporary directory and renamed into place, so readers never see half an
entry; an existing entry is never overwritten (replacing one moves the old one to `replaced/`).
Entries from a different frozen model (fingerprint) or prompt shape are refused.

The library may be local or on `gs://` (etils.epath); export archives and import sources that are
`.tar.gz` files are local. In a multi-host run every process opens the library and calls `add` at
the same points; process 0 alone writes, and the others wait until it has (`distributed.sync`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from typing import Any, Optional

import jax
import numpy as np
from etils import epath

from spot_jax import distributed, errors, fileio
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.models import t5

FORMAT_VERSION = 1
_SAMPLE = 1 << 20  # elements hashed per parameter (strided sample; see model_fingerprint)


class LibraryError(errors.UserError, ValueError):
  """A library operation that cannot be done as asked (mismatched model, missing entry, ...)."""


def model_fingerprint(config: t5.T5Config, params: Any) -> str:
  """A short hash of the frozen model: its shape config and its weights.

  Every parameter contributes its path, shape, dtype and up to 2**20 evenly strided values (all
  values for all but the largest matrices), so different checkpoints of the same architecture get
  different fingerprints while an XXL model hashes in seconds. Runtime options (dtype, dropout, remat,
  scan) are excluded: they do not change what a prompt means.
  """
  h = hashlib.sha256()
  shape_fields = {k: v for k, v in dataclasses.asdict(config).items()
                  if k not in ("dtype", "dropout_rate", "remat_policy", "scan_layers")}
  h.update(json.dumps(shape_fields, sort_keys=True).encode())
  if config.scan_layers:
    params = t5.unscan_params(params, config)
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda kv: jax.tree_util.keystr(kv[0])):
    array = np.asarray(leaf, np.float32).reshape(-1)
    step = max(1, array.size // _SAMPLE)
    h.update(f"{jax.tree_util.keystr(path)}{leaf.shape}".encode())
    h.update(np.ascontiguousarray(array[::step]).tobytes())
  return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Entry:
  task: str
  key: np.ndarray  # task embedding [prompt_length, d_model]
  value: np.ndarray  # source prompt [prompt_length, d_model]
  metadata: dict


class PromptLibrary:
  """Opens (or with `create_for=...` creates) a library directory."""

  def __init__(self, path: str, *, model_fingerprint: Optional[str] = None, prompt_length: Optional[int] = None,
               d_model: Optional[int] = None):
    self.path = os.path.abspath(path) if fileio.is_local(path) else os.fspath(path)
    self._root = epath.Path(self.path)
    manifest = self._root / "library.json"
    may_create = None not in (model_fingerprint, prompt_length, d_model)
    exists = manifest.exists()
    if may_create:
      distributed.sync("spot_jax_library_checked")  # every process looked before process 0 creates it
    if exists:
      self.info = json.loads(manifest.read_text())
      for name, want in (("model_fingerprint", model_fingerprint), ("prompt_length", prompt_length),
                         ("d_model", d_model)):
        if want is not None and self.info[name] != want:
          raise LibraryError(
              f"Library {self.path} was built for {name}={self.info[name]!r}, not {want!r}. Its prompts only "
              "work with the frozen model and prompt length they were trained for: use another library "
              "directory, or the model/prompt length it was built with.")
    elif not may_create:
      raise LibraryError(f"No prompt library at {self.path} (library.json missing). Build one with "
                         "`spot-jax library build` or import one with `spot-jax library import`.")
    else:
      self.info = {"format": FORMAT_VERSION, "model_fingerprint": model_fingerprint,
                   "prompt_length": prompt_length, "d_model": d_model, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
      if distributed.is_primary():
        (self._root / "entries").mkdir(parents=True, exist_ok=True)
        _atomic_write_json(manifest, self.info)
      distributed.sync("spot_jax_library_created")

  @property
  def shape(self) -> tuple[int, int]:
    return (self.info["prompt_length"], self.info["d_model"])

  def _entry_dir(self, task: str) -> epath.Path:
    return self._root / "entries" / task

  def names(self) -> list[str]:
    entries = self._root / "entries"
    return sorted(p.name for p in entries.iterdir()
                  if not p.name.startswith(".") and (p / "entry.json").exists())

  def __contains__(self, task: str) -> bool:
    return task in self.names()

  def __len__(self) -> int:
    return len(self.names())

  def add(self, task: str, key: Any, value: Any, metadata: Optional[dict] = None, *,
          model_fingerprint: str, replace: bool = False) -> None:
    """Adds one entry atomically; refuses a different model, a wrong shape, or an existing name."""
    if model_fingerprint != self.info["model_fingerprint"]:
      raise LibraryError(f"Entry {task!r} comes from frozen model {model_fingerprint}, but library {self.path} "
                         f"holds prompts for model {self.info['model_fingerprint']}. Prompts do not transfer "
                         "between frozen models as-is: add it to a library of its own model.")
    for what, array in (("key", key), ("value", value)):
      if tuple(np.shape(array)) != self.shape:
        raise LibraryError(f"Entry {task!r} {what} has shape {tuple(np.shape(array))}; this library holds "
                           f"[prompt_length, d_model] = {self.shape} prompts.")
    final = self._entry_dir(task)
    if final.exists() and not replace:
      raise LibraryError(f"Library already has an entry {task!r}. Pass replace=True (CLI: --replace) to "
                         "replace it; the old entry is kept under replaced/.")
    distributed.sync("spot_jax_library_add_checked")  # every process looked before process 0 writes
    if distributed.is_primary():
      self._write_entry(task, key, value, metadata, model_fingerprint)
    distributed.sync("spot_jax_library_added")

  def _write_entry(self, task: str, key: Any, value: Any, metadata: Optional[dict], model_fingerprint: str) -> None:
    final = self._entry_dir(task)
    tmp = self._root / "entries" / f".tmp-{task}-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
      prompt_io.save_npy(tmp / "key.npy", key)
      prompt_io.save_npy(tmp / "value.npy", value)
      meta = {"task": task, "model_fingerprint": model_fingerprint, "shape": list(self.shape),
              "added": time.strftime("%Y-%m-%dT%H:%M:%S"), **(metadata or {})}
      _atomic_write_json(tmp / "entry.json", meta)
      if final.exists():
        backup = self._root / "replaced" / f"{task}-{int(time.time())}-{uuid.uuid4().hex[:6]}"
        backup.parent.mkdir(parents=True, exist_ok=True)
        final.rename(backup)
      tmp.rename(final)
    except BaseException:
      if tmp.exists():
        tmp.rmtree()
      raise

  def get(self, task: str) -> Entry:
    directory = self._entry_dir(task)
    if not (directory / "entry.json").exists():
      raise LibraryError(f"No entry {task!r} in library {self.path}. Entries: {self.names() or 'none'}.")
    metadata = json.loads((directory / "entry.json").read_text())
    return Entry(task, prompt_io.load_npy(directory / "key.npy"), prompt_io.load_npy(directory / "value.npy"),
                 metadata)

  def keys(self) -> dict[str, np.ndarray]:
    return {name: self.get(name).key for name in self.names()}

  def describe(self) -> str:
    """A human-readable listing (what `spot-jax library list` prints)."""
    lines = [f"library {self.path}", f"  model {self.info['model_fingerprint']}  prompt {self.shape}",
             f"  {len(self)} entries:"]
    for name in self.names():
      meta = self.get(name).metadata
      score = meta.get("validation_score")
      lines.append(f"    {name:<32} score {score if score is None else f'{score:.2f}'}  "
                   f"embedding step {meta.get('embedding_step')}  steps {meta.get('train_steps')}")
    return "\n".join(lines)

  # ---------------------------------------------------------------------------- sharing

  def export(self, destination: str) -> str:
    """Writes a portable copy (local directory, or `.tar.gz` archive) with a README-style MANIFEST.md."""
    if os.path.exists(destination):
      raise LibraryError(f"{destination} exists; choose a new export path (nothing was overwritten).")
    with tempfile.TemporaryDirectory() as tmp:
      staging = os.path.join(tmp, "spot_prompt_library")
      os.makedirs(os.path.join(staging, "entries"))
      files = [self._root / "library.json"] + [self._entry_dir(n) / f for n in self.names()
                                               for f in ("key.npy", "value.npy", "entry.json")]
      for source in files:  # read through epath: the library itself may be on gs://
        local = epath.Path(staging) / source.relative_to(self._root)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(source.read_bytes())
      with open(os.path.join(staging, "MANIFEST.md"), "w") as f:
        f.write(self._manifest())
      if destination.endswith((".tar.gz", ".tgz")):
        partial = destination + f".partial-{uuid.uuid4().hex[:6]}"
        with tarfile.open(partial, "w:gz") as tar:
          tar.add(staging, arcname="spot_prompt_library")
        os.rename(partial, destination)
      else:
        shutil.copytree(staging, destination + ".partial")
        os.rename(destination + ".partial", destination)
    return destination

  def _manifest(self) -> str:
    rows = "\n".join(
        f"| {n} | {self.get(n).metadata.get('validation_score')} | {self.get(n).metadata.get('embedding_step')} |"
        for n in self.names())
    return (f"# SPoT prompt library\n\nFrozen model fingerprint `{self.info['model_fingerprint']}`; prompts are "
            f"float32 `.npy` arrays of shape [{self.shape[0]}, {self.shape[1]}] (prompt_length, d_model), the "
            "format of google-research/prompt-tuning's released prompts.\n\n"
            "Each `entries/<task>/` holds `key.npy` (task embedding: the prompt at an early step), `value.npy` "
            "(the source prompt: best validation checkpoint) and `entry.json` (metadata).\n\n"
            "Use: `spot-jax library import --library=DIR --source=<this>`, then `spot-jax retrieve`.\n\n"
            f"| task | validation score | embedding step |\n|---|---|---|\n{rows}\n")


def import_library(source: str, destination: str) -> PromptLibrary:
  """Reads an exported library (directory, or local .tar.gz) into `destination` (new, or same-model library)."""
  with tempfile.TemporaryDirectory() as tmp:
    if os.path.isfile(source):
      with tarfile.open(source, "r:*") as tar:
        tar.extractall(tmp, filter="data")
      roots = [os.path.join(tmp, d) for d in os.listdir(tmp)]
      root = roots[0] if len(roots) == 1 else tmp
    else:
      root = source
    if not (epath.Path(root) / "library.json").exists():
      raise LibraryError(f"{source} is not an exported prompt library (no library.json).")
    incoming = PromptLibrary(root)
    target = PromptLibrary(destination, model_fingerprint=incoming.info["model_fingerprint"],
                           prompt_length=incoming.info["prompt_length"], d_model=incoming.info["d_model"])
    for name in incoming.names():
      entry = incoming.get(name)
      target.add(name, entry.key, entry.value, entry.metadata, model_fingerprint=incoming.info["model_fingerprint"])
  return target


def _atomic_write_json(path: epath.Path, data: dict) -> None:
  fileio.atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str))
