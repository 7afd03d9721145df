"""Writes tests/fixtures/spot_reference.json: what google-research/prompt-tuning's SPoT preprocessors
(`prompt_tuning/spot/data/`) make of fabricated raw examples, so that spot_jax's SPoT-only tasks are
checked against the reference's own code rather than our reading of it.

Runs in the side venv of make_fixture.py (README.md here), never in spot_jax's venv:

    git -C <prompt-tuning clone> archive fbfab63 prompt_tuning | tar -x -C /tmp/pt_ref
    git -C <prompt-tuning clone> show HEAD:prompt_tuning/spot/data/nli.py > /tmp/pt_ref/prompt_tuning/spot/data/nli.py
    git -C <prompt-tuning clone> show HEAD:prompt_tuning/spot/data/preprocessors.py \
        > /tmp/pt_ref/prompt_tuning/spot/data/preprocessors_main.py
    /work/t5ref-venv/bin/python tools/t5_reference/make_spot_fixture.py /tmp/pt_ref [output path]

Which code: commit fbfab63 ("[SPoT] add RAINBOW tasks to SPoT") is the one tree that holds every
family (sentiment, similarity, RAINBOW and GEM were later dropped from the main line); its modules
import `prompt_tuning.spot.preprocessors`, which that tree keeps at `spot/data/preprocessors.py`, so
the script adds that alias; nli.py is the main line's (fbfab63 has none), and so is
`preprocess_text_classification` (the main line's fixes fbfab63's, which writes "None:" for a task
without a second text, e.g. "imdb_reviews text: ... None:"). The reference's rainbow.py
cannot register its tasks as written (its loop reads keys its DATASETS lack), so the RAINBOW tasks
run the preprocessor each DATASETS entry names, as spot_jax's notes say. The local-file tasks cr and
cxc run from one TSV line through the reference's `parse_tsv` and preprocessor; abductive_nli and
social_iqa are not covered (rainbow.py registers them only after the loop that fails).

Raw examples: every feature of the task's TFDS layout (the builder's feature spec; nothing is
downloaded) is filled; text fields carry whitespace runs, tabs, newlines, punctuation and non-ASCII
characters, the way make_fixture.py's edge cases do. Preprocessing stops before tokenization.
"""

import importlib
import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "spot_reference.json")

TEXT = "  Tabs\there,  new\nline: ü — é (U.S.A.) it's  done. "
MODULES = ("nli", "mrqa", "summarization", "sentiment", "similarity", "gem")
# TFDS builders that current TFDS names differently from the reference's pin (feature layout only).
# (The GEM configs the reference names without 'gem/'; a pinned version TFDS can no longer build falls
# back to TFDS's version of the builder.)
BUILDER_NAMES = {"e2e_nlg": "gem/e2e_nlg", "schema_guided_dialog": "gem/schema_guided_dialog",
                 "web_nlg_en": "gem/web_nlg_en", "wiki_auto_asset_turk": "gem/wiki_auto_asset_turk",
                 "wiki_lingua_english_en": "gem/wiki_lingua_english_en", "xsum": "gem/xsum"}
# Per-feature values where a made-up one would break the dataset's own invariants.
OVERRIDES = {
    "sentiment140": [{"polarity": 4}, {"polarity": 0}, {"polarity": 2}],
    "goemotions": [{"joy": True, "admiration": True, "neutral": True}, {"anger": True}],
    "hellaswag": [{"label": 3, "endings": ["e0 ", " e1", "e2\tx", "e3"]}, {"label": 0, "endings": ["a", "b", "c", "d"]}],
}

# Local-file tasks: rows as their TSV files hold them (no tab or newline inside a field).
TSV_TEXT = "  Spaces,  runs: ü — é (U.S.A.) it's  done. "
TSV_ROWS = {
    "spot_cr_v100": [{"index": "0", "text": TSV_TEXT, "label": "1"},
                     {"index": "1", "text": "bad  battery", "label": "0"}],
    "spot_cxc_v100": [{"index": "3", "sentence1": "a dog runs", "sentence2": TSV_TEXT, "label": "4.3"},
                      {"index": "4", "sentence1": TSV_TEXT, "sentence2": "b", "label": "3.1"}],
}


def _setup(tree: str) -> None:
  sys.path.insert(0, tree)
  sys.path.insert(0, HERE)
  importlib.import_module("prompt_tuning.spot")
  data_pp = importlib.import_module("prompt_tuning.spot.data.preprocessors")
  sys.modules["prompt_tuning.spot.preprocessors"] = data_pp
  sys.modules["prompt_tuning.spot"].preprocessors = data_pp
  main_line = importlib.import_module("prompt_tuning.spot.data.preprocessors_main")
  data_pp.preprocess_text_classification = main_line.preprocess_text_classification  # before the tasks bind it
  for module in MODULES:
    importlib.import_module(f"prompt_tuning.spot.data.{module}")


def _value(name, spec, tf, index):
  """A made-up value of one feature in its TFDS dtype and rank (nested dicts recurse)."""
  if isinstance(spec, dict):
    return {k: _value(f"{name}.{k}", v, tf, index) for k, v in spec.items()}
  rank = spec.shape.rank
  if spec.dtype == tf.string:
    scalar = TEXT if index == 0 else f"{name} plain text {index}."
    return scalar if rank == 0 else [f"{name} one {TEXT}", f"{name}\ttwo  "]  # rank 2: _rank2_fix
  if spec.dtype == tf.bool:
    return False if rank == 0 else [False, True]
  if spec.dtype.is_floating:
    return 0.5 if rank == 0 else [0.5, 1.5]
  return index if rank == 0 else [index, index + 1]


def _rank2_fix(value, spec, tf):
  """Rank-2 features (MRQA's token offsets): a list of lists."""
  if isinstance(spec, dict):
    return {k: _rank2_fix(value[k], v, tf) for k, v in spec.items()}
  if spec.shape.rank == 2:
    return [list(value) if isinstance(value, list) else [value]] * 2
  return value


def _examples(spec, label_names, tf, dataset):
  out = []
  overrides = OVERRIDES.get(dataset, [{}, {}])
  for index, override in enumerate(overrides):
    raw = {k: _rank2_fix(_value(k, v, tf, index), v, tf) for k, v in spec.items()}
    if "label" in raw and label_names:
      raw["label"] = (len(label_names) - 1) if index == 0 else 0
    raw.update(override)
    out.append(raw)
  return out


def _coerce(value, spec, tf, np):
  """make_fixture.coerce for any rank (GEM and MRQA have rank-2 features)."""
  if isinstance(spec, dict):
    return {k: _coerce(value[k], v, tf, np) for k, v in spec.items()}
  if spec.dtype == tf.string:
    encode = lambda v: [encode(x) for x in v] if isinstance(v, list) else v.encode("utf-8")
    return np.array(encode(value), dtype=object) if spec.shape.rank else value.encode("utf-8")
  return np.array(value, dtype=spec.dtype.as_numpy_dtype)


def _run(preprocessors, raw, spec, signature, tf, tfds, mf):
  import numpy as np
  value = _coerce(raw, spec, tf, np)
  ds = tf.data.Dataset.from_generator(lambda: iter([value]), output_signature=signature)
  for p in preprocessors:
    ds = p(ds)
  return [mf.jsonable(o) for o in tfds.as_numpy(ds)]


def main() -> None:
  tree = sys.argv[1]
  out_path = sys.argv[2] if len(sys.argv) > 2 else OUT
  _setup(tree)
  import make_fixture as mf
  import seqio
  import tensorflow as tf
  import tensorflow_datasets as tfds
  rainbow_source = open(os.path.join(tree, "prompt_tuning", "spot", "data", "rainbow.py")).read()
  rainbow = types.ModuleType("rainbow_datasets")  # DATASETS only: the module's registration fails
  exec(rainbow_source.split("# Register datasets")[0], rainbow.__dict__)  # pylint: disable=exec-used

  def before_tokenization(task):
    applied = []
    for p in task.preprocessors:
      if p in mf._STOP_AT or isinstance(p, seqio.CacheDatasetPlaceholder):  # pylint: disable=protected-access
        break
      applied.append(p)
    return applied

  fixture = {"meta": {"reference": "google-research/prompt-tuning fbfab63 (+ the main line's nli.py and "
                                   "preprocess_text_classification, 72285ee)",
                      "text": TEXT, "tsv_text": TSV_TEXT, "versions": mf.versions()}, "tasks": {}}
  jobs = []  # (reference task name, tfds name, preprocessors before tokenization)
  for name in sorted(seqio.TaskRegistry.names()):
    task = seqio.TaskRegistry.get(name)
    if not name.startswith("spot_"):
      continue
    if name in TSV_ROWS:  # local files: one TSV line through parse_tsv and the task's preprocessor
      applied = before_tokenization(task)
      field_names = applied[0].keywords["field_names"]
      entry = {"source": "tsv", "field_names": field_names,
               "preprocessors": [mf.describe_callable(p) for p in applied], "examples": []}
      for row in TSV_ROWS[name]:
        line = "\t".join(row[f] for f in field_names)
        ds = tf.data.Dataset.from_tensors(tf.constant(line))
        for p in applied:
          ds = p(ds)
        entry["examples"].append({"raw": row, "line": line, "outputs": [mf.jsonable(o) for o in tfds.as_numpy(ds)]})
      fixture["tasks"][name] = entry
      print(name, len(entry["examples"]), flush=True)
    elif hasattr(task.source, "tfds_dataset"):
      jobs.append((name, task.source.tfds_dataset.name, before_tokenization(task)))
  for dataset, entry in sorted(rainbow.DATASETS.items()):
    version = "v" + entry["tfds_name"].split(":")[-1].replace(".", "")
    jobs.append((f"spot_rainbow_{dataset}_{version}", entry["tfds_name"], [entry["preprocessor"]]))

  for name, tfds_name, applied in jobs:
    base, _, version = tfds_name.partition(":")
    builder_name = BUILDER_NAMES.get(base, base)
    try:
      builder = tfds.builder(f"{builder_name}:{version}", data_dir="/tmp/spot_ref_tfds_unused")
    except Exception:  # pylint: disable=broad-except  # a version current TFDS cannot build
      builder = tfds.builder(builder_name, data_dir="/tmp/spot_ref_tfds_unused")
    spec = builder.info.features.get_tensor_spec()
    signature = mf.spec_to_signature(spec)
    feats = builder.info.features
    label_names = list(feats["label"].names) if "label" in feats and hasattr(feats["label"], "names") else None
    dataset = base.split("/")[-1] if base.startswith(("gem/", "mrqa/", "anli/")) else base.split("/")[0]
    entry = {"tfds_name": tfds_name, "builder_used": builder.info.full_name,
             "preprocessors": [mf.describe_callable(p) for p in applied], "examples": []}
    try:
      for raw in _examples(spec, label_names, tf, dataset):
        entry["examples"].append({"raw": mf.jsonable(raw),
                                  "outputs": _run(applied, raw, spec, signature, tf, tfds, mf)})
    except Exception as e:  # pylint: disable=broad-except  # the reference fails on today's TFDS layout
      entry["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1]}"
    fixture["tasks"][name] = entry
    print(name, len(entry["examples"]), entry.get("error", ""), flush=True)
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(fixture, f, ensure_ascii=False, indent=1, sort_keys=True)
  print("wrote", out_path, len(fixture["tasks"]), "tasks")


if __name__ == "__main__":
  main()
