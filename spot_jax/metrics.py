"""Evaluation metrics of the SPoT tasks and the GLUE / SuperGLUE averages, in plain numpy.

Why this exists: every number spot_jax reports — best-checkpoint selection, the transfer grid,
retrieval's relative error reduction — goes through these functions, so they must match the
reference implementations the papers used (scikit-learn / scipy for the classification and
correlation metrics, the SQuAD v1.1 script as used by T5 for SQuAD, DROP and ReCoRD, SuperGLUE's
MultiRC scorer) without importing scikit-learn at runtime. tests/test_metrics.py checks each against
scikit-learn and scipy.

Conventions:
- Inputs are postprocessed values (see `spot_jax.data.tasks`): label indices for classification,
  floats for regression, strings for QA. Every function takes `(targets, predictions)` and returns a
  percentage in [0, 100] (correlations in [-100, 100]); dict-valued metrics use the keys 'em', 'f1',
  'f1a'.
- `INVALID_LABEL` (-1) is what a decoded text that is not a label word becomes. It never equals a
  target, so it always counts as wrong; `f1_macro` does not count it as a class of its own.
- Regression predictions that are not finite numbers (text that fails to parse, NaN) become
  `UNPARSEABLE_FLOAT` (-1.0, outside STS-B's 0-5 range), as T5's `string_to_float` postprocessor does.
- Empty inputs and targets/predictions of different lengths raise ValueError.
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Any, Hashable, Mapping, Optional, Sequence

import numpy as np

INVALID_LABEL = -1
UNPARSEABLE_FLOAT = -1.0


def _check_pair(name: str, targets: Sequence[Any], predictions: Sequence[Any]) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"{name}: got {len(targets)} targets but {len(predictions)} predictions; they must "
                     "pair up one to one (did a batch get dropped or padded rows get kept?).")
  if len(targets) == 0:
    raise ValueError(f"{name}: got no examples; a metric of an empty evaluation set is undefined. "
                     "Check the eval split and eval_max_examples.")


# ----------------------------------------------------------------------------- classification


def accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> float:
  """Percentage of predictions equal to their target (any comparable values)."""
  _check_pair("accuracy", targets, predictions)
  return 100.0 * sum(bool(t == p) for t, p in zip(targets, predictions)) / len(targets)


def _f1_from_counts(tp: int, fp: int, fn: int) -> float:
  """F1 = 2tp / (2tp + fp + fn); 0 when there is nothing to score (scikit-learn's zero_division=0)."""
  denominator = 2 * tp + fp + fn
  return 2.0 * tp / denominator if denominator else 0.0


def f1_binary(targets: Sequence[Any], predictions: Sequence[Any], positive: Hashable = 1) -> float:
  """F1 of the class `positive` (MRPC, QQP: positive = 1, the "equivalent"/"duplicate" label)."""
  _check_pair("f1_binary", targets, predictions)
  t = np.array([x == positive for x in targets], bool)
  p = np.array([x == positive for x in predictions], bool)
  return 100.0 * _f1_from_counts(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p)))


def f1_macro(targets: Sequence[Any], predictions: Sequence[Any], labels: Optional[Sequence[Hashable]] = None) -> float:
  """Unweighted mean of per-class F1 (CB).

  Classes: `labels` if given (e.g. `range(num_classes)`, as T5's `mean_multiclass_f1`), otherwise
  every value seen in targets or predictions except `INVALID_LABEL` — scikit-learn's
  `f1_score(average='macro')` whenever no prediction is invalid.
  """
  _check_pair("f1_macro", targets, predictions)
  if labels is None:
    labels = [c for c in dict.fromkeys([*targets, *predictions]) if not _is_invalid(c)]
  if not labels:
    raise ValueError("f1_macro: no classes to average over (every value is INVALID_LABEL); pass labels=.")
  t, p = list(targets), list(predictions)
  scores = []
  for c in labels:
    tc = np.array([x == c for x in t], bool)
    pc = np.array([x == c for x in p], bool)
    scores.append(_f1_from_counts(int(np.sum(tc & pc)), int(np.sum(~tc & pc)), int(np.sum(tc & ~pc))))
  return 100.0 * float(np.mean(scores))


def _is_invalid(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == INVALID_LABEL


def matthews_corrcoef(targets: Sequence[Any], predictions: Sequence[Any]) -> float:
  """Matthews correlation x 100 (CoLA); the multiclass form (Gorodkin 2004), as scikit-learn.

  0 when it is undefined (all targets or all predictions in one class), as scikit-learn.
  """
  _check_pair("matthews_corrcoef", targets, predictions)
  classes = {c: i for i, c in enumerate(dict.fromkeys([*targets, *predictions]))}
  confusion = np.zeros((len(classes), len(classes)), np.float64)
  np.add.at(confusion, ([classes[x] for x in targets], [classes[x] for x in predictions]), 1.0)
  true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
  n, correct = confusion.sum(), np.trace(confusion)
  cov_tp = correct * n - true_counts @ pred_counts
  cov_pp = n * n - pred_counts @ pred_counts
  cov_tt = n * n - true_counts @ true_counts
  if cov_pp * cov_tt == 0:
    return 0.0
  return 100.0 * float(cov_tp / math.sqrt(cov_tt * cov_pp))


# ----------------------------------------------------------------------------- regression


def _as_float(value: Any) -> float:
  """A prediction -> finite float, or UNPARSEABLE_FLOAT."""
  try:
    x = float(value.strip()) if isinstance(value, str) else float(value)
  except (TypeError, ValueError):
    return UNPARSEABLE_FLOAT
  return x if math.isfinite(x) else UNPARSEABLE_FLOAT


def _float_pair(name: str, targets: Sequence[Any], predictions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
  """Targets must be numbers (gold labels); predictions fall back to UNPARSEABLE_FLOAT."""
  _check_pair(name, targets, predictions)
  t = np.array([_as_float(x) if _is_finite_number(x) else math.nan for x in targets], np.float64)
  if not np.all(np.isfinite(t)):
    bad = [x for x, ok in zip(targets, np.isfinite(t)) if not ok][:3]
    raise ValueError(f"{name}: targets must be finite numbers; got {bad}. Check the task's postprocessor "
                     "(is_target=True) for this regression task.")
  return t, np.array([_as_float(x) for x in predictions], np.float64)


def _is_finite_number(value: Any) -> bool:
  try:
    return math.isfinite(float(value.strip() if isinstance(value, str) else value))
  except (TypeError, ValueError):
    return False


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  """Pearson r x 100; 0 when undefined (fewer than two pairs, or either side constant)."""
  if len(x) < 2:
    return 0.0
  xc, yc = x - x.mean(), y - y.mean()
  denominator = math.sqrt(float(xc @ xc) * float(yc @ yc))
  if denominator == 0.0:
    return 0.0
  return 100.0 * float(np.clip((xc @ yc) / denominator, -1.0, 1.0))


def _rank(x: np.ndarray) -> np.ndarray:
  """1-based ranks, ties sharing their average rank (scipy.stats.rankdata 'average')."""
  ranks = np.empty(len(x), np.float64)
  ranks[np.argsort(x, kind="mergesort")] = np.arange(1, len(x) + 1)
  _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
  return (np.bincount(group, weights=ranks) / counts)[group]


def pearson(targets: Sequence[Any], predictions: Sequence[Any]) -> float:
  """Pearson correlation x 100 (STS-B, CxC). Unparseable predictions count as UNPARSEABLE_FLOAT (-1.0).

  Returns 0 where scipy would return NaN (constant predictions or targets, fewer than two pairs),
  so a degenerate checkpoint ranks below any informative one.
  """
  return _pearson(*_float_pair("pearson", targets, predictions))


def spearman(targets: Sequence[Any], predictions: Sequence[Any]) -> float:
  """Spearman rank correlation x 100 (ties get average ranks); same conventions as `pearson`."""
  t, p = _float_pair("spearman", targets, predictions)
  return _pearson(_rank(t), _rank(p))


# ----------------------------------------------------------------------------- QA: SQuAD, DROP, ReCoRD


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
  """SQuAD v1.1 answer normalisation: lower case, drop punctuation, drop articles a/an/the,
  collapse whitespace (same order as the official script and T5's `normalize_squad`)."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(target: str, prediction: str) -> float:
  """Bag-of-tokens F1 of normalised answers; 0 without a common token (SQuAD v1.1 / T5)."""
  t, p = normalize_answer(target).split(), normalize_answer(prediction).split()
  common = sum((collections.Counter(t) & collections.Counter(p)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(p), common / len(t)
  return 2 * precision * recall / (precision + recall)


def _max_over_answers_em_f1(name: str, targets: Sequence[Sequence[str]],
                            predictions: Sequence[str]) -> dict[str, float]:
  _check_pair(name, targets, predictions)
  em = f1 = 0.0
  for i, (answers, prediction) in enumerate(zip(targets, predictions)):
    if isinstance(answers, str) or not answers:
      raise ValueError(f"{name}: targets[{i}] must be a non-empty list of gold answer strings; got {answers!r}. "
                       "Wrap a single answer in a list.")
    if not isinstance(prediction, str):
      raise ValueError(f"{name}: predictions[{i}] must be a string; got {type(prediction).__name__}.")
    normalized = normalize_answer(prediction)
    em += max(float(normalize_answer(a) == normalized) for a in answers)
    f1 += max(_token_f1(a, prediction) for a in answers)
  return {"em": 100.0 * em / len(targets), "f1": 100.0 * f1 / len(targets)}


def squad_em_f1(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD (and DROP, C4 continuation) exact match and token F1, each the max over the gold answers.

  targets: one list of gold answers per example; predictions: one string per example.
  -> {'em': ..., 'f1': ...} in percent.
  """
  return _max_over_answers_em_f1("squad_em_f1", targets, predictions)


def record_em_f1(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """ReCoRD exact match and token F1, max over the gold entity answers (the SuperGLUE ReCoRD scorer
  uses the SQuAD v1.1 normalisation and token F1). -> {'em': ..., 'f1': ...}."""
  return _max_over_answers_em_f1("record_em_f1", targets, predictions)


def multirc_f1a_em(groups: Sequence[Hashable], targets: Sequence[Any],
                   predictions: Optional[Sequence[Any]] = None, *, positive: Hashable = 1) -> dict[str, float]:
  """MultiRC as SuperGLUE scores it: F1a = binary F1 over all answer options (positive = True = 1);
  EM = percentage of questions (`groups`: one id per option, e.g. (paragraph, question)) whose
  options are all labelled correctly. -> {'f1a': ..., 'em': ...}.

  Also accepts the record form `multirc_f1a_em(target_records, prediction_records)` where each record
  is {'group': ..., 'value': label} (what `spot_jax.data.tasks`' 'multirc' postprocessor makes); the
  group is read from the targets.
  """
  if predictions is None:
    records_t, records_p = groups, targets
    _check_pair("multirc_f1a_em", records_t, records_p)
    for what, records in (("targets", records_t), ("predictions", records_p)):
      if not all(isinstance(r, Mapping) and "value" in r for r in records):
        raise ValueError(f"multirc_f1a_em: called with two arguments, so {what} must be records "
                         "{'group': ..., 'value': ...}; otherwise call multirc_f1a_em(groups, targets, predictions).")
    groups = [r.get("group") for r in records_t]
    targets, predictions = [r["value"] for r in records_t], [r["value"] for r in records_p]
  _check_pair("multirc_f1a_em", targets, predictions)
  if len(groups) != len(targets):
    raise ValueError(f"multirc_f1a_em: got {len(groups)} group ids for {len(targets)} answer options; "
                     "pass one group (question) id per option.")
  all_correct: dict[Hashable, bool] = {}
  for g, t, p in zip(groups, targets, predictions):
    all_correct[g] = all_correct.get(g, True) and bool(t == p)
  em = 100.0 * sum(all_correct.values()) / len(all_correct)
  return {"f1a": f1_binary(targets, predictions, positive=positive), "em": em}


# ----------------------------------------------------------------------------- benchmark averages

# The metrics each benchmark task is scored by (keys as the functions above and `data.tasks` name
# them); a task's score is their mean, the benchmark's the mean over its tasks. GLUE here is the 8
# tasks of the SPoT / T5 tables (WNLI left out, as T5 does); MNLI is the 'mnli' entry (matched).
GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",), "sst2": ("accuracy",), "mrpc": ("f1", "accuracy"), "qqp": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"), "mnli": ("accuracy",), "qnli": ("accuracy",), "rte": ("accuracy",),
}
SUPERGLUE_METRICS: dict[str, tuple[str, ...]] = {
    "boolq": ("accuracy",), "cb": ("f1_macro", "accuracy"), "copa": ("accuracy",), "multirc": ("f1a", "em"),
    "record": ("f1", "em"), "super_glue_rte": ("accuracy",), "wic": ("accuracy",), "wsc": ("accuracy",),
}
_ALIASES = {"super_glue_rte": ("rte",), "mcc": ("matthews_corrcoef",)}  # other accepted spellings


def task_score(task: str, metrics: float | Mapping[str, float], metric_names: Sequence[str]) -> float:
  """One task's score: the mean of its metrics `metric_names` (a plain number is taken as is)."""
  if not isinstance(metrics, Mapping):
    return float(metrics)
  values = []
  for name in metric_names:
    key = next((k for k in (name, *_ALIASES.get(name, ())) if k in metrics), None)
    if key is None:
      raise ValueError(f"Task {task!r} is scored by {tuple(metric_names)} but its metrics lack {name!r}; got "
                       f"{sorted(metrics)}. Pass the metrics dict the task's evaluation returned.")
    values.append(float(metrics[key]))
  return float(np.mean(values))


def _benchmark_average(benchmark: str, scores: Mapping[str, float | Mapping[str, float]],
                       spec: Mapping[str, tuple[str, ...]]) -> float:
  found, missing = {}, []
  for task, names in spec.items():
    key = next((k for k in (task, *_ALIASES.get(task, ())) if k in scores), None)
    if key is None:
      missing.append(task)
    else:
      found[task] = task_score(task, scores[key], names)
  if missing:
    raise ValueError(f"{benchmark} average needs all of {sorted(spec)}; missing {missing}. Evaluate those tasks "
                     "(a partial average is not comparable with the papers' numbers).")
  return float(np.mean(list(found.values())))


def glue_average(scores: Mapping[str, float | Mapping[str, float]]) -> float:
  """GLUE score as in the T5 / SPoT tables: per task the mean of its metrics (MRPC, QQP F1 and
  accuracy; STS-B Pearson and Spearman; CoLA MCC; the rest accuracy), then the mean over the 8 tasks.

  scores: {task: {metric: value}} (or {task: score}); other tasks (wnli, mnli_mismatched) are ignored.
  """
  return _benchmark_average("GLUE", scores, GLUE_METRICS)


def superglue_average(scores: Mapping[str, float | Mapping[str, float]]) -> float:
  """SuperGLUE score as in the papers: per task the mean of its metrics (CB macro-F1 and accuracy,
  MultiRC F1a and EM, ReCoRD F1 and EM; the rest accuracy), then the mean over the 8 tasks.
  RTE may be given as 'super_glue_rte' (the task registry's name) or 'rte'.
  """
  return _benchmark_average("SuperGLUE", scores, SUPERGLUE_METRICS)
