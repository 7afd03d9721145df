"""spot_jax's GLUE/SuperGLUE/SQuAD tasks against Google's t5 0.9.4 (tests/fixtures/t5_reference.json,
written by tools/t5_reference/make_fixture.py; its README describes the layout).

- Formats: every raw TFDS-layout example of each t5 task -> our task's preprocessor -> the same list
  of outputs, `inputs` and `targets` byte for byte, and the other fields T5 emits (idx, idx/question,
  answers, label, ...) equal. Raw examples T5 turns into `<unk>` targets (label -1 in test splits, a
  ReCoRD query without answers) are skipped: spot_jax's pipeline gives no example for unlabelled
  rows, on purpose (nothing unlabelled is trained on or scored).
- Postprocessing: every decoded target/prediction of `task_metrics` -> our postprocessor -> t5's value.
- Metrics: the scenario's raw examples through our preprocessor, the decoded predictions through
  `Task.evaluate` -> t5's metric values within 1e-9 (NaN equals NaN), and 'score' = their mean.

`pytest -s tests/test_t5_formats.py` prints the parity table.
"""

import json
import math
import os

import numpy as np
import pytest

from spot_jax.data import postprocessors as post
from spot_jax.data import preprocessors as pp
from spot_jax.data import tasks

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "t5_reference.json")
with open(FIXTURE, encoding="utf-8") as _f:
  REF = json.load(_f)

# t5 task -> (spot_jax task, training?) — training picks WSC's simple_train behaviour.
T5_TO_SPOT = {
    "glue_cola_v002": ("cola", False), "glue_sst2_v002": ("sst2", False), "glue_mrpc_v002": ("mrpc", False),
    "glue_qqp_v002": ("qqp", False), "glue_stsb_v002": ("stsb", False), "glue_mnli_v002": ("mnli", False),
    "glue_mnli_matched_v002": ("mnli", False),  # our mnli evaluates on validation_matched
    "glue_mnli_mismatched_v002": ("mnli_mismatched", False), "glue_qnli_v002": ("qnli", False),
    "glue_rte_v002": ("rte", False), "glue_wnli_v002": ("wnli", False),
    "super_glue_boolq_v102": ("boolq", False), "super_glue_cb_v102": ("cb", False),
    "super_glue_copa_v102": ("copa", False), "super_glue_multirc_v102": ("multirc", False),
    "super_glue_record_v102": ("record", False), "super_glue_rte_v102": ("super_glue_rte", False),
    "super_glue_wic_v102": ("wic", False),
    "super_glue_wsc_v102_simple_train": ("wsc", True), "super_glue_wsc_v102_simple_eval": ("wsc", False),
    "squad_v010_allanswers": ("squad", False),
}


def _axb_rekeyed(preprocessor):
  """T5's AX-b: rekey {premise: sentence1, hypothesis: sentence2, label, idx} before `glue`."""
  def fn(ex, ctx):
    return preprocessor({"premise": ex["sentence1"], "hypothesis": ex["sentence2"], "label": ex["label"],
                         "idx": ex["idx"]}, ctx)
  return fn


# The diagnostic sets (test split only, every label -1) are no catalog tasks; their formats are
# checked on the preprocessors T5 builds them from.
FORMAT_ONLY = {
    "glue_ax_v002": (pp.glue("mnli", tasks.MNLI_LABELS), tasks.MNLI_LABELS),
    "super_glue_axb_v102": (_axb_rekeyed(pp.glue("rte", tasks.RTE_LABELS)), tasks.RTE_LABELS),
    "super_glue_axg_v102": (pp.glue("rte", tasks.RTE_LABELS), tasks.RTE_LABELS),
}

_TABLE: dict[str, dict] = {}


def _row(t5_task):
  return _TABLE.setdefault(t5_task, {"raw": 0, "skipped": 0, "identical": 0, "cases": 0, "post_equal": 0,
                                     "scenarios": 0, "metrics_equal": 0})


def _unlabelled(raw):
  """T5 writes `<unk>` for these; spot_jax gives no example (see the module docstring)."""
  if "answers" in raw and isinstance(raw["answers"], list):  # ReCoRD (SQuAD's answers are a dict)
    return not raw["answers"]
  return "label" in raw and raw["label"] < 0


def _preprocess(t5_task, raw, training=None):
  if t5_task in FORMAT_ONLY:
    return FORMAT_ONLY[t5_task][0](raw, pp.Context(training=False))
  name, train = T5_TO_SPOT[t5_task]
  return tasks.get_task(name).preprocess(raw, pp.Context(training=train if training is None else training))


def _plain(value):
  """JSON-comparable: tuples as lists, NaN as T5's fixture writes it."""
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, float) and math.isnan(value):
    return "nan"
  if isinstance(value, np.generic):
    return _plain(value.item())
  return value


def _same_number(ours, theirs):
  theirs = float(theirs) if isinstance(theirs, str) else theirs
  if math.isnan(theirs) or math.isnan(ours):
    return math.isnan(theirs) and math.isnan(ours)
  return abs(ours - theirs) <= 1e-9


FORMAT_TASKS = sorted(set(T5_TO_SPOT) | set(FORMAT_ONLY))


def test_every_fixture_task_is_covered():
  assert set(REF["tasks"]) == set(FORMAT_TASKS)
  assert set(REF["task_metrics"]) <= set(FORMAT_TASKS)
  for name, t5_name in tasks.T5_TASK_NAMES.items():
    assert all(t in REF["tasks"] for t in t5_name.split(" / ")), name


@pytest.mark.parametrize("t5_task", FORMAT_TASKS)
def test_outputs_are_t5s_byte_for_byte(t5_task):
  row = _row(t5_task)
  for example in REF["tasks"][t5_task]["examples"]:
    raw, expected = example["raw"], example["outputs"]
    row["raw"] += 1
    if _unlabelled(raw):
      row["skipped"] += 1
      continue
    ours = _preprocess(t5_task, raw)
    assert len(ours) == len(expected), (example["name"], ours, expected)
    for mine, theirs in zip(ours, expected):
      for key, value in theirs.items():
        assert key in mine, (example["name"], key)
        assert _plain(mine[key]) == value, (example["name"], key, mine[key], value)
        if key in ("inputs", "targets"):
          assert mine[key].encode("utf-8") == value.encode("utf-8")
      if "label" in mine and "label" not in theirs:  # our classification outputs also carry the index
        task = tasks.get_task(T5_TO_SPOT[t5_task][0]) if t5_task in T5_TO_SPOT else None
        words = task.label_words if task else FORMAT_ONLY[t5_task][1]
        assert words[mine["label"]] == mine["targets"]
    row["identical"] += 1


def test_stsb_targets_round_in_float32_half_to_even():
  cases = {3.1: "3.2", 2.5: "2.4", 2.25: "2.2", 0.1: "0.0", 0.3: "0.4", 0.5: "0.4", 0.7: "0.8", 0.9: "0.8",
           4.9: "4.8", 3.3999999: "3.4", 5.0: "5.0", 0.0: "0.0", 1.75: "1.8"}
  for label, target in cases.items():
    assert pp.stsb_target(np.float32(label)) == target, label
    assert pp.stsb_target(label) == target, label  # a float64 label is taken as float32 first


def test_inputs_t5_rejects_raise_invalid_row_naming_the_field():
  for error in REF["errors"]:
    if error["stage"] != "preprocess":
      continue
    fields = {"span2_text_not_at_span2_index": "span2_text", "pronoun_is_first_word": "span2_index",
              "span2_index_past_end": "span2_index", "no_answers": "answers"}
    with pytest.raises(pp.InvalidRow) as e:
      _preprocess(error["task"], error["raw"])
    assert e.value.field == fields[error["name"]], error["name"]
  assert [e["name"] for e in REF["errors"] if e["stage"] == "metric"] == ["metric_on_example_without_answers"]


def test_wsc_train_keeps_correct_referents_and_eval_keeps_all():
  raw = REF["tasks"]["super_glue_wsc_v102_simple_eval"]["examples"][0]["raw"]
  assert raw["label"] == 0
  wsc = tasks.get_task("wsc")
  assert wsc.preprocess(raw, pp.Context(training=True)) == []
  assert wsc.preprocess(raw, pp.Context(training=False))[0]["targets"] == "Mark"


def test_squad_pads_only_ascii_punctuation_and_collapses_re2_whitespace():
  assert pp.pad_punctuation("U.S.") == "U . S . "
  assert pp.pad_punctuation("a\u00a0 b\x0b\x0cc") == "a\u00a0 b\x0b c"  # RE2's \s has no \v, no U+00A0
  assert pp.pad_punctuation("¿qué?") == "¿qué ? "


POST_TASKS = sorted(REF["task_metrics"])


def _postprocess(t5_task, text, example, is_target):
  if t5_task in FORMAT_ONLY:
    return post.string_label_to_class_id(text, FORMAT_ONLY[t5_task][1])
  return tasks.get_task(T5_TO_SPOT[t5_task][0]).postprocess(text, example, is_target=is_target)


@pytest.mark.parametrize("t5_task", POST_TASKS)
def test_postprocessors_are_t5s(t5_task):
  row = _row(t5_task)
  if t5_task == "super_glue_wsc_v102_simple_train":
    pytest.skip("T5's simple_train task has no postprocessor (it is never evaluated); our wsc evaluates "
                "with simple_eval's, checked on super_glue_wsc_v102_simple_eval")
  for scenario in REF["task_metrics"][t5_task]:
    for case in scenario["cases"]:
      row["cases"] += 1
      ex = case["example"]
      target = _postprocess(t5_task, case["target_decoded"], ex, True)
      prediction = _postprocess(t5_task, case["prediction_decoded"], ex, False)
      assert _plain(target) == case["target_postprocessed"], (scenario["name"], case)
      assert _plain(prediction) == case["prediction_postprocessed"], (scenario["name"], case)
      row["post_equal"] += 1


def _eval_examples(t5_task, raw_examples):
  out = []
  for index, raw in enumerate(raw_examples):
    for ex in _preprocess(t5_task, raw, training=False):
      out.append({**ex, "example": raw, "index": index})
  return out


@pytest.mark.parametrize("t5_task", sorted(t for t, s in REF["task_metrics"].items() if s[0]["metrics"]))
def test_task_evaluate_gives_t5s_metric_values(t5_task):
  row = _row(t5_task)
  task = tasks.get_task(T5_TO_SPOT[t5_task][0])
  for scenario in REF["task_metrics"][t5_task]:
    row["scenarios"] += 1
    examples = _eval_examples(t5_task, scenario["raw_examples"])
    assert [e["targets"] for e in examples] == [c["target_decoded"] for c in scenario["cases"]], scenario["name"]
    assert [e["inputs"] for e in examples] == [c["inputs"] for c in scenario["cases"]], scenario["name"]
    result = task.evaluate(examples, [c["prediction_decoded"] for c in scenario["cases"]])
    expected = scenario["metrics"]
    assert set(result) == set(expected) | {"score"}, (scenario["name"], result, expected)
    for key, value in expected.items():
      assert _same_number(result[key], value), (scenario["name"], key, result[key], value)
    values = [float(v) for v in expected.values()]
    assert _same_number(result["score"], float(np.mean(values))), (scenario["name"], result)
    row["metrics_equal"] += 1


def test_zz_print_parity_table():
  """The per-task table (run with -s to see it)."""
  lines = [f"{'t5 task':36} {'spot_jax task':16} {'raw':>4} {'skip':>4} {'same':>4} {'post':>9} {'metrics':>7}"]
  for t5_task in FORMAT_TASKS:
    row = _row(t5_task)
    ours = T5_TO_SPOT[t5_task][0] if t5_task in T5_TO_SPOT else "(format only)"
    post_cell = f"{row['post_equal']}/{row['cases']}" if row["cases"] else "-"
    metric_cell = f"{row['metrics_equal']}/{row['scenarios']}" if row["scenarios"] else "-"
    lines.append(f"{t5_task:36} {ours:16} {row['raw']:>4} {row['skipped']:>4} {row['identical']:>4} "
                 f"{post_cell:>9} {metric_cell:>7}")
  print("\n" + "\n".join(lines))
  print("raw: raw examples; skip: unlabelled (T5 writes <unk>; spot_jax gives no example); same: raw examples "
        "whose outputs are identical; post: postprocessed target+prediction pairs equal; metrics: scenarios "
        "whose Task.evaluate metrics equal t5's within 1e-9.")
