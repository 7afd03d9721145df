"""`library import` is all or nothing, and an archive is checked member by member before extraction."""

import io
import json
import os
import pathlib
import re
import tarfile

import numpy as np
import pytest

from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.spot import library as lib

SHAPE = (4, 8)


def _prompt(seed):
  return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


def _snapshot(path):
  """Every file (with its bytes) and directory under `path`; None if `path` does not exist."""
  root = pathlib.Path(path)
  if not root.exists():
    return None
  return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "<dir>") for p in sorted(root.rglob("*"))}


def _library(path, names, seed=0, fingerprint="abc"):
  library = lib.PromptLibrary(str(path), model_fingerprint=fingerprint, prompt_length=SHAPE[0], d_model=SHAPE[1])
  for i, name in enumerate(names):
    library.add(name, _prompt(seed + 2 * i), _prompt(seed + 2 * i + 1), {"validation_score": 50.0 + i},
                model_fingerprint=fingerprint)
  return library


@pytest.fixture
def export(tmp_path):
  """An exported directory with entries a, b, c."""
  return _library(tmp_path / "src", ["a", "b", "c"], seed=100).export(str(tmp_path / "export"))


@pytest.fixture
def destination(tmp_path):
  """An existing library with entries b (clashes with the export) and z."""
  return _library(tmp_path / "dest", ["b", "z"]).path


def test_clash_leaves_destination_unchanged_and_names_replace(export, destination):
  before = _snapshot(destination)
  with pytest.raises(lib.LibraryError) as error:
    lib.import_library(export, destination)
  message = str(error.value)
  assert f"Library {destination} already has entry ['b'] that {export} also holds; nothing was imported" in message
  assert "--replace" in message
  assert _snapshot(destination) == before


def test_replace_imports_everything_and_keeps_the_old_entry(export, destination):
  old_b = lib.PromptLibrary(destination).get("b")
  imported = lib.import_library(export, destination, replace=True)
  assert imported.names() == ["a", "b", "c", "z"]
  np.testing.assert_array_equal(imported.get("b").key, _prompt(102))
  replaced = list((pathlib.Path(destination) / "replaced").iterdir())
  assert len(replaced) == 1 and replaced[0].name.startswith("b-")
  np.testing.assert_array_equal(prompt_io.load_npy(replaced[0] / "key.npy"), old_b.key)
  assert not [p for p in (pathlib.Path(destination) / "entries").iterdir() if p.name.startswith(".")]


def _corrupt(export_dir, kind):
  entry = pathlib.Path(export_dir) / "entries" / "c"
  if kind == "truncated value":
    data = (entry / "value.npy").read_bytes()
    (entry / "value.npy").write_bytes(data[:len(data) // 2])
    return "entries/c/value.npy is not a readable .npy array"
  if kind == "wrong shape":
    np.save(entry / "key.npy", np.zeros((5, 8), np.float32))
    return r"entries/c/key.npy holds a float32 array of shape \(5, 8\); this library's prompts are float"
  if kind == "bad entry.json":
    (entry / "entry.json").write_text('{"task": "c", ')
    return r"entries/c/entry.json is not valid JSON \(truncated or edited\?\): Expecting"
  if kind == "other model":
    meta = json.loads((entry / "entry.json").read_text())
    (entry / "entry.json").write_text(json.dumps({**meta, "model_fingerprint": "zzz"}))
    return "entries/c/entry.json says frozen model 'zzz', but library.json says 'abc'"
  if kind == "missing key":
    (entry / "key.npy").unlink()
    return "entry 'c' lacks entries/c/key.npy"
  raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated value", "wrong shape", "bad entry.json", "other model", "missing key"])
@pytest.mark.parametrize("new_destination", [False, True])
def test_bad_entry_imports_nothing(export, destination, tmp_path, kind, new_destination):
  expected = _corrupt(export, kind)
  target = str(tmp_path / "new" / "lib") if new_destination else destination
  before = _snapshot(target)
  with pytest.raises(lib.LibraryError, match=f"Cannot import {export}: {expected}") as error:
    lib.import_library(export, target, replace=True)
  assert f"Nothing was imported into {target}" in str(error.value)
  assert _snapshot(target) == before
  if new_destination:
    assert not (tmp_path / "new").exists()  # not even the parent it would have made


@pytest.mark.parametrize("new_destination", [False, True])
def test_failure_while_writing_leaves_destination_as_before(export, destination, tmp_path, monkeypatch,
                                                            new_destination):
  original, calls = prompt_io.save_npy, []

  def failing_save(path, prompt):  # the first entry's key and value are written, then the disk is full
    calls.append(path)
    if len(calls) == 3:
      raise OSError("disk full")
    return original(path, prompt)

  monkeypatch.setattr(prompt_io, "save_npy", failing_save)
  target = str(tmp_path / "new") if new_destination else destination
  before = _snapshot(target)
  with pytest.raises(OSError, match="disk full"):
    lib.import_library(export, target, replace=True)
  assert _snapshot(target) == before
  assert sorted(os.listdir(tmp_path)) == ["dest", "export", "src"]  # no staging directory left


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_failure_while_renaming_into_place_leaves_destination_as_before(export, destination, monkeypatch,
                                                                        fail_at):
  original, calls = lib._place, []

  def failing_place(source, target):  # a placed; b moved to replaced/, then b placed; c placed
    calls.append(target)
    if len(calls) == fail_at:
      raise OSError("connection reset")
    return original(source, target)

  monkeypatch.setattr(lib, "_place", failing_place)
  before = _snapshot(destination)
  with pytest.raises(OSError, match="connection reset"):
    lib.import_library(export, destination, replace=True)
  assert _snapshot(destination) == before


def test_failure_while_placing_a_new_library_leaves_nothing(export, tmp_path, monkeypatch):
  def failing_place(source, target):
    raise OSError("connection reset")

  monkeypatch.setattr(lib, "_place", failing_place)
  (tmp_path / "empty").mkdir()
  with pytest.raises(OSError):
    lib.import_library(export, str(tmp_path / "new"))
  with pytest.raises(OSError):
    lib.import_library(export, str(tmp_path / "empty"))
  assert sorted(os.listdir(tmp_path)) == ["empty", "export", "src"]
  assert not os.listdir(tmp_path / "empty")


def test_import_into_new_and_empty_directories_and_refusals(export, destination, tmp_path):
  (tmp_path / "empty").mkdir()
  for target in (tmp_path / "new" / "lib", tmp_path / "empty"):
    assert lib.import_library(export, str(target)).names() == ["a", "b", "c"]
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("mine")
  with pytest.raises(lib.LibraryError,
                     match="other is a non-empty directory but not a prompt library .*nothing was imported"):
    lib.import_library(export, str(tmp_path / "other"))
  assert os.listdir(tmp_path / "other") == ["notes.txt"]
  lib.PromptLibrary(str(tmp_path / "wrong"), model_fingerprint="xyz", prompt_length=4, d_model=8)
  with pytest.raises(lib.LibraryError, match="holds prompts .* for frozen model abc, but library .*wrong holds "
                     "prompts .* for model xyz.*nothing was imported"):
    lib.import_library(export, str(tmp_path / "wrong"))
  with pytest.raises(lib.LibraryError, match="does not exist"):
    lib.import_library(str(tmp_path / "nowhere"), destination)


# ------------------------------------------------------------------------------------------ archives


def _archive(tmp_path, export, add_member):
  """A .tar.gz of `export` (as spot_prompt_library/) plus one member added by `add_member(tar)`."""
  path = tmp_path / "evil.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    tar.add(export, arcname="spot_prompt_library")
    add_member(tar)
  return str(path)


def _file(name, data=b"pwned"):
  def add(tar):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
  return add


def _special(name, kind, linkname=""):
  def add(tar):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)
  return add


@pytest.mark.parametrize("member, reason", [
    ("absolute", "has an absolute path; an exported library only holds relative paths"),
    ("dotdot", "has a '..' component"),
    ("symlink", r"is a symbolic link \(to '/etc/passwd'\); an exported library only holds regular files"),
    ("hardlink", r"is a hard link \(to 'spot_prompt_library/library.json'\)"),
    ("device", "is a device file"),
    ("fifo", r"is a FIFO \(named pipe\)"),
])
def test_archive_members_are_checked_before_extraction(export, tmp_path, member, reason):
  outside = tmp_path / "outside"
  names = {
      "absolute": (str(outside / "evil.txt"), _file(str(outside / "evil.txt"))),
      "dotdot": ("spot_prompt_library/../../outside/evil.txt", _file("spot_prompt_library/../../outside/evil.txt")),
      "symlink": ("spot_prompt_library/entries/a/link", _special("spot_prompt_library/entries/a/link",
                                                                 tarfile.SYMTYPE, "/etc/passwd")),
      "hardlink": ("spot_prompt_library/hard", _special("spot_prompt_library/hard", tarfile.LNKTYPE,
                                                        "spot_prompt_library/library.json")),
      "device": ("spot_prompt_library/dev", _special("spot_prompt_library/dev", tarfile.CHRTYPE)),
      "fifo": ("spot_prompt_library/fifo", _special("spot_prompt_library/fifo", tarfile.FIFOTYPE)),
  }
  name, add = names[member]
  archive = _archive(tmp_path, export, add)
  with pytest.raises(lib.LibraryError) as error:
    lib.import_library(archive, str(tmp_path / "imported"))
  message = str(error.value)
  assert message.startswith(f"{archive}: member {name!r} ")
  assert f"Refusing to extract {archive}; nothing was imported" in message
  assert re.search(reason, message), message
  assert not outside.exists() and not (tmp_path / "imported").exists()


def test_clean_archive_imports_and_a_broken_one_is_named(export, tmp_path, destination):
  archive = _archive(tmp_path, export, lambda tar: None)
  assert lib.import_library(archive, str(tmp_path / "imported")).names() == ["a", "b", "c"]
  broken = tmp_path / "broken.tar.gz"
  broken.write_bytes(pathlib.Path(archive).read_bytes()[:100])
  before = _snapshot(destination)
  with pytest.raises(lib.LibraryError, match=f"{broken} is not a readable .tar.gz archive"):
    lib.import_library(str(broken), destination)
  assert _snapshot(destination) == before


def test_import_into_a_gs_library(export, bucket):  # `bucket` (tests/test_gcs_paths.py): gs:// in a local dir
  imported = lib.import_library(export, "gs://bucket/lib")
  assert imported.path == "gs://bucket/lib" and imported.names() == ["a", "b", "c"]
  before = _snapshot(bucket / "bucket" / "lib")
  with pytest.raises(lib.LibraryError, match="already has entries \\['a', 'b', 'c'\\].*--replace"):
    lib.import_library(export, "gs://bucket/lib")
  assert _snapshot(bucket / "bucket" / "lib") == before
  lib.import_library(export, "gs://bucket/lib", replace=True)
  assert len(list((bucket / "bucket" / "lib" / "replaced").iterdir())) == 3
