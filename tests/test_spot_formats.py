"""spot_jax's SPoT-only tasks against google-research/prompt-tuning's own preprocessors
(tests/fixtures/spot_reference.json, written by tools/t5_reference/make_spot_fixture.py in a side venv
from prompt-tuning's code; fabricated raw examples in each dataset's TFDS layout, whitespace runs, tabs,
newlines, punctuation and non-ASCII text included). T5's own tasks are tests/test_t5_formats.py's.
"""

import json
import os

import pytest

from spot_jax.data import spot_tasks, tasks

FIXTURE = json.load(open(os.path.join(os.path.dirname(__file__), "fixtures", "spot_reference.json"),
                         encoding="utf-8"))
BY_REFERENCE = {spec.reference: spec for spec in spot_tasks.SPECS}
# Where spot_jax does on purpose what the reference means rather than what it runs (each spec's note
# says why); the test checks that the reference still behaves so, and what spot_jax does instead.
FAILS_IN_REFERENCE = {
    "spot_gem_wiki_auto_asset_turk_v110": "KeyError",  # reads 'input'; TFDS's gem config has 'source'
    "spot_rainbow_cosmos_qa_v100": "TypeError",  # list.extend returns None: string_join(None)
}
COMPARED = sorted(n for n, entry in FIXTURE["tasks"].items() if "error" not in entry)


def _ours(name, raw):
  return tasks.get_task(BY_REFERENCE[name].name).preprocess(raw)


def test_fixture_covers_every_spot_task_the_reference_registers():
  """Every SPoT-only task read from TFDS, and the local-file tasks cr and cxc (from a TSV line through
  the reference's parse_tsv), are in the fixture. T5's WMT tasks are T5's; the reference registers
  abductive_nli and social_iqa only after a loop that fails (tests/test_spot_mixtures.py checks them)."""
  wanted = {s.reference for s in spot_tasks.SPECS if s.tfds and s not in spot_tasks.TRANSLATION}
  assert wanted | {"spot_cr_v100", "spot_cxc_v100"} == set(FIXTURE["tasks"])
  assert {n for n, e in FIXTURE["tasks"].items() if e.get("source") == "tsv"} == {"spot_cr_v100", "spot_cxc_v100"}


@pytest.mark.parametrize("name", COMPARED)
def test_inputs_and_targets_equal_the_references(name):
  for example in FIXTURE["tasks"][name]["examples"]:
    ours = _ours(name, example["raw"])
    reference = example["outputs"]
    assert len(ours) == len(reference), (name, ours, reference)
    for mine, theirs in zip(ours, reference):
      if name == "spot_goemotions_v010":
        continue  # below
      assert mine["inputs"] == theirs["inputs"], name
      assert mine["targets"] == theirs["targets"], name
      if "answers" in theirs:
        assert mine["answers"] == theirs["answers"], name


def test_goemotions_lists_the_true_emotions_where_the_reference_lists_all():
  """The reference's `if example[feature]` is traced by tf.data into both branches, so as run it writes
  all 28 emotions for every example; spot_jax writes the true ones (spot_tasks' note)."""
  emotions = [n for n in spot_tasks.pp.GOEMOTIONS_LABELS]
  for example in FIXTURE["tasks"]["spot_goemotions_v010"]["examples"]:
    (theirs,) = example["outputs"]
    (mine,) = _ours("spot_goemotions_v010", example["raw"])
    assert theirs["targets"] == " \\n ".join(emotions)
    assert mine["targets"] == " \\n ".join(e for e in emotions if example["raw"][e])
    assert mine["inputs"] == theirs["inputs"]


@pytest.mark.parametrize("name", sorted(FAILS_IN_REFERENCE))
def test_where_the_reference_fails_spot_jax_makes_the_example(name):
  assert FIXTURE["tasks"][name]["error"].startswith(FAILS_IN_REFERENCE[name]), FIXTURE["tasks"][name]["error"]
  spec = BY_REFERENCE[name]
  assert spec.note, f"{spec.name}: a deviation from the reference needs a note"
  assert set(FIXTURE["tasks"]) - set(COMPARED) == set(FAILS_IN_REFERENCE)
