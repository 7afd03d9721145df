"""The prompt library: atomic entries, refusal of mismatched models/shapes, export/import."""

import json
import pathlib

import jax
import numpy as np
import pytest

from spot_jax.checkpoints import fingerprint
from spot_jax.models import t5
from spot_jax.spot import library as lib

SHAPE = (4, 8)


def _prompt(seed):
  return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


@pytest.fixture
def library(tmp_path):
  return lib.PromptLibrary(str(tmp_path / "lib"), model_fingerprint="abc", prompt_length=4, d_model=8)


def test_add_get_list(library):
  library.add("mnli", _prompt(0), _prompt(1), {"validation_score": 81.5, "embedding_step": 10},
              model_fingerprint="abc")
  library.add("qqp", _prompt(2), _prompt(3), model_fingerprint="abc")
  assert library.names() == ["mnli", "qqp"]
  entry = library.get("mnli")
  np.testing.assert_array_equal(entry.key, _prompt(0))
  np.testing.assert_array_equal(entry.value, _prompt(1))
  assert entry.metadata["validation_score"] == 81.5
  assert "mnli" in library.describe() and "81.50" in library.describe()
  reopened = lib.PromptLibrary(library.path)
  assert reopened.names() == ["mnli", "qqp"]


def test_refuses_other_model_shape_and_duplicates(library):
  with pytest.raises(lib.LibraryError, match="comes from frozen model zzz.*holds prompts for model abc"):
    library.add("mnli", _prompt(0), _prompt(1), model_fingerprint="zzz")
  with pytest.raises(lib.LibraryError, match=r"shape \(5, 8\)"):
    library.add("mnli", np.zeros((5, 8)), _prompt(1), model_fingerprint="abc")
  library.add("mnli", _prompt(0), _prompt(1), model_fingerprint="abc")
  with pytest.raises(lib.LibraryError, match="already has an entry 'mnli'"):
    library.add("mnli", _prompt(5), _prompt(6), model_fingerprint="abc")
  np.testing.assert_array_equal(library.get("mnli").key, _prompt(0))  # untouched
  library.add("mnli", _prompt(5), _prompt(6), model_fingerprint="abc", replace=True)
  np.testing.assert_array_equal(library.get("mnli").key, _prompt(5))
  assert len(list((pathlib.Path(library.path) / "replaced").iterdir())) == 1  # old entry kept
  with pytest.raises(lib.LibraryError, match="built for model_fingerprint='abc', not 'other'"):
    lib.PromptLibrary(library.path, model_fingerprint="other")
  with pytest.raises(lib.LibraryError, match="No entry 'rte'.*Entries: \\['mnli'\\]"):
    library.get("rte")


def test_missing_library_is_a_clear_error(tmp_path):
  with pytest.raises(lib.LibraryError, match="No prompt library at"):
    lib.PromptLibrary(str(tmp_path / "nothing"))


def test_interrupted_write_leaves_no_entry(library, monkeypatch):
  from spot_jax.checkpoints import prompts as prompt_io
  calls = []

  def failing_save(path, prompt):
    calls.append(path)
    if len(calls) == 2:
      raise OSError("disk full")
    return original(path, prompt)

  original = prompt_io.save_npy
  monkeypatch.setattr(prompt_io, "save_npy", failing_save)
  with pytest.raises(OSError, match="disk full"):
    library.add("mnli", _prompt(0), _prompt(1), model_fingerprint="abc")
  assert library.names() == []


@pytest.mark.parametrize("archive", [False, True])
def test_export_import_round_trip(library, tmp_path, archive):
  library.add("mnli", _prompt(0), _prompt(1), {"validation_score": 80.0}, model_fingerprint="abc")
  destination = str(tmp_path / ("export.tar.gz" if archive else "export"))
  library.export(destination)
  if not archive:
    manifest = (tmp_path / "export" / "MANIFEST.md").read_text()
    assert "mnli" in manifest and "abc" in manifest
    assert json.loads((tmp_path / "export" / "library.json").read_text())["model_fingerprint"] == "abc"
  imported = lib.import_library(destination, str(tmp_path / "imported"))
  assert imported.names() == ["mnli"]
  np.testing.assert_array_equal(imported.get("mnli").value, _prompt(1))
  with pytest.raises(lib.LibraryError, match="exists"):
    library.export(destination)


def test_model_fingerprint_tracks_weights_not_runtime_options():
  cfg = t5.get_config("tiny", vocab_size=32, num_encoder_layers=1, num_decoder_layers=1)
  params = t5.init_params(cfg, jax.random.key(0))
  a = fingerprint.model_fingerprint(cfg, params)
  assert a == fingerprint.model_fingerprint(cfg.replace(dtype="bfloat16", dropout_rate=0.0), params)
  assert a == fingerprint.model_fingerprint(cfg.replace(scan_layers=True), t5.scan_params(params, cfg))
  changed = jax.tree.map(lambda x: x, params)
  changed["decoder"]["decoder_norm"]["scale"] = params["decoder"]["decoder_norm"]["scale"] * 1.01
  assert fingerprint.model_fingerprint(cfg, changed) != a
  assert fingerprint.model_fingerprint(cfg, t5.init_params(cfg, jax.random.key(1))) != a
