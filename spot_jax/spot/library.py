"""The SPoT prompt library on disk: one entry per source prompt, key = task embedding, value = prompt.

Why: SPoT's targeted transfer needs a store of source prompts keyed by task embeddings (the prompt
at an early checkpoint), tied to the exact frozen model they were trained on. The SPoT authors never
released theirs; this format is plain files so a library can be shared, inspected and imported:

  <library>/library.json              format, model fingerprint, prompt length, d_model
  <library>/entries/<task>/key.npy    task embedding [prompt_length, d_model]
  <library>/entries/<task>/value.npy  source prompt   [prompt_length, d_model]
  <library>/entries/<task>/entry.json task, steps, validation score, provenance

An entry is one prompt-tuning run of a source task: SPoT's library holds several per task (16 tasks x 3
runs = 48 prompts), and retrieval ranks prompts. Run 0 of a task is named `<task>` (so a library
written before runs existed reads as one run per task), run r > 0 `<task>@run<r>` (`entry_name`).

An entry is written to a temporary directory and renamed into place, so readers never see half an
entry; an existing entry is never overwritten (replacing one moves the old one to `replaced/`).
Entries from a different frozen model (fingerprint) or prompt shape are refused.

`import_library` is all or nothing: every incoming entry is read and checked before anything is
written, new entries are staged under `entries/.import-*` and renamed into place, and a failure part
way undoes what was done (a library created by the import is not left half made). Archive members
are checked before extraction: only relative regular files and directories are accepted.

The library may be local or on `gs://` (etils.epath); export archives and import sources that are
`.tar.gz` files are local. In a multi-host run every process opens the library and calls `add` at
the same points; process 0 alone writes, and the others wait until it has (`distributed.sync`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
import uuid
import zlib
from typing import Any, Callable, Optional, Sequence

import numpy as np
from etils import epath

from spot_jax import distributed, errors, fileio
from spot_jax.checkpoints import prompts as prompt_io

FORMAT_VERSION = 1


class LibraryError(errors.UserError, ValueError):
  """A library operation that cannot be done as asked (mismatched model, missing entry, ...)."""


RUN_SEPARATOR = "@run"


def entry_name(task: str, run: int = 0) -> str:
  """The entry of run `run` of source task `task`: `<task>` for run 0, `<task>@run<r>` after."""
  if run < 0:
    raise ValueError(f"A run number is >= 0; got {run}.")
  if RUN_SEPARATOR in task:
    raise LibraryError(f"Task name {task!r} contains {RUN_SEPARATOR!r}, which names an entry's run; rename the task.")
  return task if run == 0 else f"{task}{RUN_SEPARATOR}{run}"


def split_entry_name(name: str) -> tuple[str, int]:
  """`entry_name`'s inverse: entry name -> (task, run)."""
  task, separator, run = name.rpartition(RUN_SEPARATOR)
  if separator and run.isdigit() and int(run) > 0:
    return task, int(run)
  return name, 0


@dataclasses.dataclass(frozen=True)
class Entry:
  task: str  # the entry's name: its source task, and `@run<r>` for runs after the first (`entry_name`)
  key: np.ndarray  # task embedding [prompt_length, d_model]
  value: np.ndarray  # source prompt [prompt_length, d_model]
  metadata: dict

  @property
  def source_task(self) -> str:
    return split_entry_name(self.task)[0]

  @property
  def run(self) -> int:
    return split_entry_name(self.task)[1]


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
      self.info = _new_info(model_fingerprint, prompt_length, d_model)
      if distributed.is_primary():
        (self._root / "entries").mkdir(parents=True, exist_ok=True)
        fileio.write_json(manifest, self.info)
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

  def tasks(self) -> list[str]:
    """The distinct source tasks of the entries (each may have several runs)."""
    return sorted({split_entry_name(name)[0] for name in self.names()})

  def runs_of(self, task: str) -> list[str]:
    """The entry names of `task`'s runs, run 0 first."""
    return sorted((n for n in self.names() if split_entry_name(n)[0] == task), key=lambda n: split_entry_name(n)[1])

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
      raise LibraryError(f"Library {self.path} already has an entry {task!r}; nothing was changed. Pass --replace "
                         "(Python: replace=True) to replace it; the old entry is kept under replaced/.")
    distributed.sync("spot_jax_library_add_checked")  # every process looked before process 0 writes
    if distributed.is_primary():
      self._write_entry(task, key, value, metadata, model_fingerprint)
    distributed.sync("spot_jax_library_added")

  def _write_entry(self, task: str, key: Any, value: Any, metadata: Optional[dict], model_fingerprint: str) -> None:
    final = self._entry_dir(task)
    tmp = self._root / "entries" / f".tmp-{task}-{uuid.uuid4().hex}"
    try:
      _write_entry_files(tmp, task, key, value, metadata, model_fingerprint, self.shape)
      if final.exists():
        backup = self._backup_path(task)
        backup.parent.mkdir(parents=True, exist_ok=True)
        final.rename(backup)
      tmp.rename(final)
    except BaseException:
      if tmp.exists():
        tmp.rmtree()
      raise

  def _backup_path(self, task: str) -> epath.Path:
    return self._root / "replaced" / f"{task}-{int(time.time())}-{uuid.uuid4().hex[:6]}"

  def _import_entries(self, entries: Sequence[Entry], model_fingerprint: str) -> None:
    """Writes `entries` all or nothing: staged in `entries/.import-*`, renamed into place one by one
    (an existing one moved to `replaced/` first); on failure every rename is undone."""
    entries_dir = self._root / "entries"
    staging = entries_dir / f".import-{uuid.uuid4().hex}"
    replaced_dir = self._root / "replaced"
    existed = {d: d.exists() for d in (entries_dir, replaced_dir)}
    placed: list[epath.Path] = []
    backups: list[tuple[epath.Path, epath.Path]] = []
    try:
      for entry in entries:
        _write_entry_files(staging / entry.task, entry.task, entry.key, entry.value, entry.metadata,
                           model_fingerprint, self.shape)
      for entry in entries:
        final = self._entry_dir(entry.task)
        if final.exists():
          backup = self._backup_path(entry.task)
          backup.parent.mkdir(parents=True, exist_ok=True)
          _place(final, backup)
          backups.append((backup, final))
        _place(staging / entry.task, final)
        placed.append(final)
    except BaseException:
      for final in reversed(placed):
        _quietly(final.rmtree, f"remove {final}")
      for backup, final in reversed(backups):
        _quietly(lambda b=backup, f=final: b.rename(f), f"move {backup} back to {final}")
      _quietly(lambda: staging.exists() and staging.rmtree(), f"remove {staging}")
      for directory in (d for d, was in existed.items() if not was):
        _quietly(lambda d=directory: d.exists() and not any(d.iterdir()) and d.rmdir(), f"remove {directory}")
      raise
    _quietly(lambda: staging.exists() and staging.rmtree(), f"remove {staging}")

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
             f"  {len(self)} entries ({len(self.tasks())} {_plural(len(self.tasks()), 'source task', 'source tasks')}; "
             "an entry is one run of a task: <task>@run<r>):"]
    for name in self.names():
      meta = self.get(name).metadata
      score = meta.get("validation_score")
      lines.append(f"    {name:<32} score {score if score is None else f'{score:.2f}'}  "
                   f"embedding step {meta.get('embedding_step')}  steps {meta.get('train_steps')}")
    return "\n".join(lines)

  def show(self, name: str) -> str:
    """One entry: its metadata as JSON and its arrays' shapes (what `spot-jax library show` prints)."""
    entry = self.get(name)
    return (json.dumps(entry.metadata, indent=2, sort_keys=True) +
            f"\nkey {entry.key.shape}, value {entry.value.shape}")

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


def import_library(source: str, destination: str, replace: bool = False) -> PromptLibrary:
  """Reads an exported library (directory, or local .tar.gz) into `destination` (new, or a same-model
  library), all or nothing.

  Why all or nothing: a half-done import leaves some entries in the destination, and re-running it
  then fails on those. So every incoming entry is read and checked (readable key/value arrays of the
  library's shape, parseable entry.json, same model, no name clash unless `replace`) before anything
  is written; a failure while writing undoes what was written. `replace=True` replaces clashing
  entries, keeping each old one under `replaced/` as `add` does.
  """
  dest_root = epath.Path(os.path.abspath(destination) if fileio.is_local(destination) else destination)
  with tempfile.TemporaryDirectory() as tmp:
    root = _unpack(source, tmp, destination)
    info, entries = _read_export(source, root, destination)
  fingerprint = info["model_fingerprint"]
  shape = (info["prompt_length"], info["d_model"])
  existing = (dest_root / "library.json").exists()
  target = None
  if existing:
    target = PromptLibrary(destination)
    if target.info["model_fingerprint"] != fingerprint or target.shape != shape:
      raise LibraryError(
          f"{source} holds prompts {shape} for frozen model {fingerprint}, but library {target.path} holds prompts "
          f"{target.shape} for model {target.info['model_fingerprint']}. Prompts do not transfer between frozen "
          "models or shapes as-is; nothing was imported. Import into a new library directory instead.")
    clashes = [e.task for e in entries if target._entry_dir(e.task).exists()]
    if clashes and not replace:
      raise LibraryError(
          f"Library {target.path} already has {_plural(len(clashes), 'entry', 'entries')} {clashes} that {source} "
          "also holds; nothing was imported. Pass --replace (Python: import_library(..., replace=True)) to "
          "replace them (the old entries are kept under replaced/), or import into another library directory.")
  elif dest_root.exists() and (not dest_root.is_dir() or any(dest_root.iterdir())):
    what = "a non-empty directory" if dest_root.is_dir() else "a file"
    raise LibraryError(
        f"{destination} is {what} but not a prompt library (no library.json); nothing was imported. Import into a "
        "new (or empty) directory, or into an existing library.")
  distributed.sync("spot_jax_library_import_checked")  # every process looked before process 0 writes
  if distributed.is_primary():
    if target is not None:
      target._import_entries(entries, fingerprint)
    else:
      _create_library(dest_root, _new_info(fingerprint, *shape), entries)
  distributed.sync("spot_jax_library_imported")
  return PromptLibrary(destination)


def _unpack(source: str, tmp: str, destination: str) -> str:
  """-> the directory holding the export: `source` itself, or where its archive was extracted in `tmp`."""
  if not os.path.isfile(source):
    if fileio.is_local(source) and not os.path.exists(source):
      raise LibraryError(f"Import source {source} does not exist. Give the directory or .tar.gz that "
                         "`spot-jax library export` wrote.")
    return source
  try:
    with tarfile.open(source, "r:*") as tar:
      members = tar.getmembers()
      _check_members(source, members)
      tar.extractall(tmp, members=members, filter="data")  # second line of defence
  except tarfile.FilterError as e:
    raise LibraryError(f"{source}: {e}. Refusing to extract {source}; nothing was imported.") from e
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    raise LibraryError(
        f"{source} is not a readable .tar.gz archive ({type(e).__name__}: {' '.join(str(e).split())}); "
        f"nothing was imported into "
        f"{destination}. Re-create it with `spot-jax library export`, or give the exported directory.") from e
  roots = [os.path.join(tmp, d) for d in os.listdir(tmp)]
  return roots[0] if len(roots) == 1 and os.path.isdir(roots[0]) else tmp


def _check_members(archive: str, members: Sequence[tarfile.TarInfo]) -> None:
  """Refuses an archive with anything but relative regular files and directories, naming the member.

  Why here and not only tarfile's `data` filter: the filter strips a leading '/' and drops some
  members silently, which ends as a misleading "not an exported library"; an export holds only
  relative files and directories, so anything else is refused by name before anything is extracted.
  """
  only = "an exported library only holds regular files and directories"
  for member in members:
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if posixpath.isabs(name):
      reason = "has an absolute path; an exported library only holds relative paths"
    elif ".." in parts:
      reason = ("has a '..' component, which points outside the extraction directory; an exported library only "
                "holds paths inside its own directory")
    elif member.issym():
      reason = f"is a symbolic link (to {member.linkname!r}); {only}"
    elif member.islnk():
      reason = f"is a hard link (to {member.linkname!r}); {only}"
    elif member.ischr() or member.isblk():
      reason = f"is a device file; {only}"
    elif member.isfifo():
      reason = f"is a FIFO (named pipe); {only}"
    elif not (member.isfile() or member.isdir()):
      reason = f"is not a regular file or directory (tar type {member.type!r}); {only}"
    else:
      continue
    raise LibraryError(f"{archive}: member {name!r} {reason}. Refusing to extract {archive}; nothing was "
                       "imported. Import only archives written by `spot-jax library export`.")


def _read_export(source: str, root: str, destination: str) -> tuple[dict, list[Entry]]:
  """Reads and checks the whole export at `root` (library.json and every entry) before anything is
  written; any problem is a LibraryError naming the file inside `source` and saying nothing was imported."""
  base = epath.Path(root)

  def refuse(problem: str, fix: str = "Re-export it with `spot-jax library export` from the library it came "
             "from") -> LibraryError:
    return LibraryError(f"Cannot import {source}: {problem}. Nothing was imported into {destination}. {fix}.")

  if not (base / "library.json").exists():
    raise refuse("it is not an exported prompt library (no library.json)",
                 "Give the directory or .tar.gz that `spot-jax library export` wrote")
  info = _read_json(base / "library.json", "library.json", refuse)
  fields = {"model_fingerprint": str, "prompt_length": int, "d_model": int}
  for field, kind in fields.items():
    if not isinstance(info.get(field), kind) or isinstance(info.get(field), bool):
      raise refuse(f"library.json has {field}={info.get(field)!r}, not a {kind.__name__}")
  shape = (info["prompt_length"], info["d_model"])
  if not (base / "entries").is_dir():
    raise refuse("it has library.json but no entries/ directory")
  entries = []
  for child in sorted((base / "entries").iterdir(), key=lambda p: p.name):
    if child.name.startswith("."):
      continue  # an entry being written in a live library (never part of an export)
    rel = f"entries/{child.name}"
    if not child.is_dir():
      raise refuse(f"{rel} is a file; entries/ holds one directory per entry")
    for file in ("key.npy", "value.npy", "entry.json"):
      if not (child / file).exists():
        raise refuse(f"entry {child.name!r} lacks {rel}/{file} (an entry holds key.npy, value.npy and entry.json)")
    metadata = _read_json(child / "entry.json", f"{rel}/entry.json", refuse)
    if metadata.get("model_fingerprint", info["model_fingerprint"]) != info["model_fingerprint"]:
      raise refuse(f"{rel}/entry.json says frozen model {metadata['model_fingerprint']!r}, but library.json says "
                   f"{info['model_fingerprint']!r}: the entry was trained on another model")
    arrays = [_read_array(child / file, f"{rel}/{file}", shape, refuse) for file in ("key.npy", "value.npy")]
    entries.append(Entry(child.name, arrays[0], arrays[1], metadata))
  return info, entries


def _read_json(path: epath.Path, rel: str, refuse: Callable[..., LibraryError]) -> dict:
  try:
    data = json.loads(path.read_text())
  except (ValueError, OSError) as e:
    raise refuse(f"{rel} is not valid JSON (truncated or edited?): {e}") from e
  if not isinstance(data, dict):
    raise refuse(f"{rel} holds a JSON {type(data).__name__}, not an object")
  return data


def _read_array(path: epath.Path, rel: str, shape: tuple[int, int], refuse: Callable[..., LibraryError]) -> np.ndarray:
  try:
    array = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise refuse(f"{rel} is not a readable .npy array (corrupted or truncated?): {e}") from e
  if not np.issubdtype(array.dtype, np.floating) or tuple(array.shape) != shape:
    raise refuse(f"{rel} holds a {array.dtype} array of shape {tuple(array.shape)}; this library's prompts are "
                 f"float [prompt_length, d_model] = {shape} (library.json)")
  return array.astype(np.float32)


def _create_library(root: epath.Path, info: dict, entries: Sequence[Entry]) -> None:
  """A new library at `root` (missing or an empty directory), all or nothing: assembled in a dot-named
  sibling and renamed into place; on failure nothing of it (nor a parent it made) is left."""
  made = None  # the topmost missing ancestor, which this import creates
  ancestor = root.parent
  while not ancestor.exists() and ancestor != ancestor.parent:
    made, ancestor = ancestor, ancestor.parent
  was_empty_dir = root.exists()
  root_removed = False
  staging = root.parent / f".{root.name}.import-{uuid.uuid4().hex}"
  try:
    (staging / "entries").mkdir(parents=True)
    for entry in entries:
      _write_entry_files(staging / "entries" / entry.task, entry.task, entry.key, entry.value, entry.metadata,
                         info["model_fingerprint"], (info["prompt_length"], info["d_model"]))
    fileio.write_json(staging / "library.json", info)
    if was_empty_dir:
      root.rmdir()
      root_removed = True
    _place(staging, root)
  except BaseException:
    _quietly(lambda: staging.exists() and staging.rmtree(), f"remove {staging}")
    if root_removed or not was_empty_dir:  # a (partly) placed library: the root was missing or empty before
      _quietly(lambda: root.exists() and root.rmtree(), f"remove {root}")
    if root_removed:
      _quietly(lambda: root.mkdir(parents=True, exist_ok=True), f"re-create {root}")
    if made is not None:
      _quietly(lambda: made.exists() and made.rmtree(), f"remove {made}")
    raise


def _write_entry_files(directory: epath.Path, task: str, key: Any, value: Any, metadata: Optional[dict],
                       model_fingerprint: str, shape: tuple[int, int]) -> None:
  """key.npy, value.npy and entry.json of one entry, in a new directory (not yet in place)."""
  directory.mkdir(parents=True)
  prompt_io.save_npy(directory / "key.npy", key)
  prompt_io.save_npy(directory / "value.npy", value)
  meta = {"task": task, "model_fingerprint": model_fingerprint, "shape": list(shape),
          "added": time.strftime("%Y-%m-%dT%H:%M:%S"), **(metadata or {})}
  fileio.write_json(directory / "entry.json", meta)


def _place(source: epath.Path, target: epath.Path) -> None:
  """Renames one staged entry (or a whole new library) into place; one function, so tests can make it fail."""
  source.rename(target)


def _quietly(step: Callable[[], Any], what: str) -> None:
  """One undo step after a failed import: its own failure is logged, not raised over the original one."""
  try:
    step()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Could not %s while undoing a failed library import: %s", what, e)


def _new_info(model_fingerprint: str, prompt_length: int, d_model: int) -> dict:
  return {"format": FORMAT_VERSION, "model_fingerprint": model_fingerprint, "prompt_length": prompt_length,
          "d_model": d_model, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _plural(n: int, one: str, many: str) -> str:
  return one if n == 1 else many
