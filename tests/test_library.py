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


def test_several_runs_per_task_are_entries_and_retrieval_ranks_prompts(library):
  from spot_jax import jobs
  assert lib.entry_name("mnli") == "mnli" and lib.entry_name("mnli", 2) == "mnli@run2"
  assert lib.split_entry_name("mnli@run2") == ("mnli", 2) and lib.split_entry_name("mnli") == ("mnli", 0)
  with pytest.raises(lib.LibraryError, match="contains '@run'"):
    lib.entry_name("odd@run1", 1)
  target = _prompt(100)
  for task in ("mnli", "qqp"):
    for run in range(3):
      near = target + (0.1 if task == "mnli" else 2.0) * _prompt(run + (0 if task == "mnli" else 10))
      library.add(lib.entry_name(task, run), near, _prompt(run), model_fingerprint="abc")
  assert len(library) == 6 and library.tasks() == ["mnli", "qqp"]
  assert library.runs_of("mnli") == ["mnli", "mnli@run1", "mnli@run2"]
  assert library.get("mnli@run2").source_task == "mnli" and library.get("mnli@run2").run == 2
  assert "6 entries (2 source tasks;" in library.describe()
  # Retrieval ranks the 6 prompts; the target's several embeddings are averaged; `exclude` drops
  # every run of a task.
  ranking = jobs.rank_library(library, [target, target + 0.01], ["average_tokens_cosine"])["average_tokens_cosine"]
  assert len(ranking) == 6 and {r.task for r in ranking[:3]} == {"mnli", "mnli@run1", "mnli@run2"}
  excluded = jobs.rank_library(library, target, ["average_tokens_cosine"], exclude=["mnli"])["average_tokens_cosine"]
  assert [lib.split_entry_name(r.task)[0] for r in excluded] == ["qqp"] * 3


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
  library.add(lib.entry_name("mnli", 1), _prompt(4), _prompt(5), model_fingerprint="abc")  # a second run
  destination = str(tmp_path / ("export.tar.gz" if archive else "export"))
  library.export(destination)
  if not archive:
    manifest = (tmp_path / "export" / "MANIFEST.md").read_text()
    assert "mnli" in manifest and "abc" in manifest
    assert json.loads((tmp_path / "export" / "library.json").read_text())["model_fingerprint"] == "abc"
  imported = lib.import_library(destination, str(tmp_path / "imported"))
  assert imported.names() == ["mnli", "mnli@run1"] and imported.runs_of("mnli") == ["mnli", "mnli@run1"]
  np.testing.assert_array_equal(imported.get("mnli").value, _prompt(1))
  np.testing.assert_array_equal(imported.get("mnli@run1").value, _prompt(5))
  with pytest.raises(lib.LibraryError, match="exists"):
    library.export(destination)


def test_a_library_written_before_runs_reads_as_one_run_per_task(tmp_path):
  # The layout spot_jax wrote before a library held several runs per task: entries/<task>/ only.
  root = tmp_path / "old"
  (root / "entries" / "mnli").mkdir(parents=True)
  (root / "library.json").write_text(json.dumps({"format": 1, "model_fingerprint": "abc", "prompt_length": 4,
                                                 "d_model": 8}))
  np.save(root / "entries" / "mnli" / "key.npy", _prompt(0))
  np.save(root / "entries" / "mnli" / "value.npy", _prompt(1))
  (root / "entries" / "mnli" / "entry.json").write_text(json.dumps({"validation_score": 70.0}))
  old = lib.PromptLibrary(str(root))
  assert old.names() == ["mnli"] and old.tasks() == ["mnli"] and old.runs_of("mnli") == ["mnli"]
  assert (old.get("mnli").source_task, old.get("mnli").run) == ("mnli", 0)
  old.add(lib.entry_name("mnli", 1), _prompt(2), _prompt(3), model_fingerprint="abc")  # more runs can join it
  assert old.runs_of("mnli") == ["mnli", "mnli@run1"]


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
