"""Evaluation metrics of the SPoT tasks and the GLUE / SuperGLUE averages, as T5 computes them.

Why this exists: every number spot_jax reports — best-checkpoint selection, the transfer grid,
retrieval's relative error reduction — goes through these functions, and the SPoT paper's numbers
come from Google's `t5` library (0.9.4): `t5.evaluation.metrics`, the per-task metric lists of
`t5.data.glue_utils` and the benchmark averages of `t5.evaluation.eval_utils.compute_avg_glue`.
So the functions below carry T5's names, take T5's postprocessed values and return T5's dicts
({key: value}, percentages where T5 gives percentages), in plain numpy, without TensorFlow, `t5`,
scikit-learn or scipy at runtime; BLEU and ROUGE call sacrebleu and rouge-score, as T5
does. tests/test_metrics_t5.py checks them against values that `t5`
itself produced (tests/fixtures/t5_reference.json) and, on other inputs, against scikit-learn and
scipy, which T5 calls.

T5's metric list per task (glue_utils.GLUE_METRICS / SUPERGLUE_METRICS), in these names:
  CoLA `matthews_corrcoef`; SST-2, MNLI (matched and mismatched), QNLI, RTE, WNLI, BoolQ, COPA,
  WiC, WSC (simple_eval) `accuracy`; MRPC, QQP `f1_score_with_invalid`, `accuracy`; STS-B
  `pearson_corrcoef`, `spearman_corrcoef`; CB `mean_multiclass_f1(3)`, `accuracy`; MultiRC
  `multirc_f1_over_all_answers`, `mean_group_metric(all_match)`; ReCoRD
  `deduplicate_metric(squad)`; SQuAD `squad`.
The generation tasks of the Table-1 mixtures (spot_jax.data.spot_tasks): WMT `bleu`;
  summarization `rouge`; GEM `rouge`, `bleu`; MRQA `squad`.

Conventions:
- Inputs are what T5's postprocessors make (`spot_jax.data.postprocessors`): label indices for
  classification (-1 for a decoded text that is no label word: an invalid prediction), floats for
  regression (`string_to_float` gives -1.0 for text that is no number), lists of gold answers and
  answer strings for QA, records {'group': ..., 'value': ...} for MultiRC and ReCoRD targets
  ({'value': ...} for their predictions).
- Where T5's value is NaN (a correlation of constant predictions) these return NaN too.
- Empty inputs and targets/predictions of different lengths raise ValueError (T5 would return NaN
  or fail inside scikit-learn).
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

MetricFn = Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]


def _check_pair(name: str, targets: Sequence[Any], predictions: Sequence[Any]) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"{name}: got {len(targets)} targets but {len(predictions)} predictions; they must "
                     "pair up one to one (did a batch get dropped or padded rows get kept?).")
  if len(targets) == 0:
    raise ValueError(f"{name}: got no examples; a metric of an empty evaluation set is undefined. "
                     "Check the eval split and eval_max_examples.")


def _f1_from_counts(tp: int, fp: int, fn: int) -> float:
  """F1 = 2tp / (2tp + fp + fn); 0 when there is nothing to score (scikit-learn's zero_division=0,
  what T5 gets from `f1_score` / `fbeta_score`)."""
  denominator = 2 * tp + fp + fn
  return 2.0 * tp / denominator if denominator else 0.0


# ----------------------------------------------------------------------------- classification


def accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  """T5's `accuracy`: percentage of predictions equal to their target. -> {'accuracy': ...}.

  An invalid prediction (-1) never equals a target, so it is wrong. (T5's scikit-learn call also
  rejects mixing strings with numbers; here any values comparable with == are accepted.)
  """
  _check_pair("accuracy", targets, predictions)
  correct = sum(bool(t == p) for t, p in zip(targets, predictions))
  return {"accuracy": 100 * (correct / len(targets))}


def sequence_accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """T5's `sequence_accuracy`: percentage of predicted strings exactly equal to their target (no
  normalisation: case and whitespace count). -> {'sequence_accuracy': ...}."""
  _check_pair("sequence_accuracy", targets, predictions)
  return {"sequence_accuracy": 100 * float(np.mean([p == t for p, t in zip(predictions, targets)]))}


def matthews_corrcoef(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  """T5's CoLA metric, `sklearn_metrics_wrapper('matthews_corrcoef')` x 100.
  -> {'matthews_corrcoef': ...}.

  The multiclass form (Gorodkin 2004) over every value seen, as scikit-learn: an invalid prediction
  (-1) is a class of its own here, as in T5. 0 when undefined (all targets or all predictions one
  value), as scikit-learn.
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
    return {"matthews_corrcoef": 0.0}
  return {"matthews_corrcoef": 100 * float(cov_tp / np.sqrt(cov_tt * cov_pp))}


def _is_binary_label(value: Any) -> bool:
  return not isinstance(value, str) and value is not None and bool(value == 0 or value == 1)


def f1_score_with_invalid(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  """T5's MRPC / QQP / MultiRC F1: binary F1 of class 1 where a prediction other than 0 or 1
  counts as the opposite of its target — a false negative on a positive example and a false
  positive on a negative one (plain F1 would call the latter a true negative). -> {'f1': ...}.

  0 when there is no positive anywhere (scikit-learn's zero_division). Targets must be 0 or 1.
  """
  _check_pair("f1_score_with_invalid", targets, predictions)
  bad = [t for t in targets if not _is_binary_label(t)][:3]
  if bad:
    raise ValueError(f"f1_score_with_invalid: targets must be 0 or 1; got {bad}. Unlabelled (test split) "
                     "examples have no target to score.")
  t = np.array([bool(x == 1) for x in targets])
  p = np.array([bool(x == 1) if _is_binary_label(x) else not bool(y == 1) for x, y in zip(predictions, targets)])
  return {"f1": 100 * _f1_from_counts(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p)))}


def _macro_f1(targets: Sequence[Any], predictions: Sequence[Any], labels: Sequence[Hashable]) -> float:
  """Unweighted mean of the per-class F1 of `labels` (a class absent from both sides scores 0)."""
  scores = []
  for c in labels:
    tc = np.array([bool(x == c) for x in targets])
    pc = np.array([bool(x == c) for x in predictions])
    scores.append(_f1_from_counts(int(np.sum(tc & pc)), int(np.sum(~tc & pc)), int(np.sum(tc & ~pc))))
  return float(np.mean(scores))


def mean_multiclass_f1(num_classes: int) -> MetricFn:
  """T5's `mean_multiclass_f1(num_classes)` (CB: 3): a metric fn giving the unweighted mean F1 over
  the classes 0 .. num_classes-1 -> {'mean_<num_classes>class_f1': ...}.

  Every class counts, also one absent from this evaluation set (F1 0 when neither targets nor
  predictions have it: scikit-learn's `fbeta_score(labels=range(n), average='macro')`), so the
  value does not depend on which classes a subset happens to hold. An invalid prediction (-1) is
  no class: it only costs the target class a false negative.
  """
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"mean_multiclass_f1: num_classes must be a positive integer; got {num_classes!r}.")
  key = "mean_%dclass_f1" % num_classes
  labels = range(int(num_classes))

  def fn(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    _check_pair(key, targets, predictions)
    return {key: 100 * _macro_f1(targets, predictions, labels)}

  fn.__name__ = key
  return fn


def all_match(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  """T5's `all_match`: 100 if every prediction equals its target, else 0 -> {'exact_match': ...}.
  MultiRC uses it per question through `mean_group_metric`."""
  _check_pair("all_match", targets, predictions)
  return {"exact_match": 100 * float(np.array_equal(targets, predictions))}


# ----------------------------------------------------------------------------- regression


def _float_array(name: str, what: str, values: Sequence[Any]) -> np.ndarray:
  """Numbers -> float64 array. Strings are refused: T5's metrics get floats from the postprocessor
  (`string_to_float`), and numpy would otherwise parse '3.2' silently."""
  bad = [v for v in values if isinstance(v, (str, bytes)) or v is None][:3]
  if bad:
    raise ValueError(f"{name}: {what} must be numbers; got {bad}. Apply the regression postprocessor "
                     "(T5's string_to_float: text that is no number -> -1.0) first.")
  return np.asarray(values, np.float64)


def pearson_corrcoef(targets: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
  """T5's STS-B metric: Pearson r x 100 as scipy.stats.pearsonr -> {'pearson_corrcoef': ...}.

  NaN, as scipy, when either side is constant (a prompt that always answers "2.0") or holds a NaN
  (T5's `string_to_float` parses the text "nan"); exactly +-100 for two pairs; fewer than two pairs
  raise ValueError, as scipy.
  """
  _check_pair("pearson_corrcoef", targets, predictions)
  x = _float_array("pearson_corrcoef", "targets", targets)
  y = _float_array("pearson_corrcoef", "predictions", predictions)
  if len(x) < 2:
    raise ValueError("pearson_corrcoef: needs at least 2 pairs (scipy.stats.pearsonr raises too).")
  if np.all(x == x[0]) or np.all(y == y[0]):
    return {"pearson_corrcoef": math.nan}
  # scipy's formula: centre, scale by the largest deviation before the norm, clip.
  xm, ym = x - x.mean(), y - y.mean()
  with np.errstate(invalid="ignore", divide="ignore"):
    xmax, ymax = np.max(np.abs(xm)), np.max(np.abs(ym))
    normxm, normym = xmax * np.linalg.norm(xm / xmax), ymax * np.linalg.norm(ym / ymax)
    r = float(np.clip(np.dot(xm / normxm, ym / normym), -1.0, 1.0))
  if len(x) == 2:
    r = float(np.round(r))
  return {"pearson_corrcoef": 100 * r}


def _rank(x: np.ndarray) -> np.ndarray:
  """1-based ranks, ties sharing their average rank (scipy.stats.rankdata 'average')."""
  ranks = np.empty(len(x), np.float64)
  ranks[np.argsort(x, kind="mergesort")] = np.arange(1, len(x) + 1)
  _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
  return (np.bincount(group, weights=ranks) / counts)[group]


def spearman_corrcoef(targets: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
  """T5's STS-B metric: Spearman rank correlation x 100 as scipy.stats.spearmanr (ties get their
  average rank) -> {'spearman_corrcoef': ...}.

  NaN, as scipy, when either side is constant, holds a NaN, or has fewer than two pairs.
  """
  _check_pair("spearman_corrcoef", targets, predictions)
  x = _float_array("spearman_corrcoef", "targets", targets)
  y = _float_array("spearman_corrcoef", "predictions", predictions)
  if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]) or np.isnan(x).any() or np.isnan(y).any():
    return {"spearman_corrcoef": math.nan}
  return {"spearman_corrcoef": 100 * float(np.corrcoef(_rank(x), _rank(y))[1, 0])}


# ----------------------------------------------------------------------------- QA: SQuAD, ReCoRD


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_squad(text: str) -> str:
  """T5's `normalize_squad` (the SQuAD v1.1 script's): lower case, delete ASCII punctuation, replace
  the words a/an/the by a space, collapse whitespace — in that order, so "U . S ." -> "u s" but
  "U.S." -> "us", and "the-end" -> "theend" keeps its article."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(target: str, prediction: str) -> float:
  """Bag-of-tokens F1 of two normalised answers; 0 without a common token — also when both are
  empty, where exact match is 1 (T5's qa_utils)."""
  t, p = target.split(), prediction.split()
  common = sum((collections.Counter(t) & collections.Counter(p)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(p), common / len(t)
  return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """T5's `squad`: exact match and token F1 of normalised answers, each the max over an example's
  gold answers, averaged over examples -> {'em': ..., 'f1': ...} in percent.

  targets: one non-empty list of gold answers per example (T5's `qa` postprocessor gives all of
  them; note T5's SQuAD answers are the punctuation-padded ones); predictions: one string each.
  A bare string as target is refused (T5 would take its characters as the answers).
  """
  _check_pair("squad", targets, predictions)
  for i, (answers, prediction) in enumerate(zip(targets, predictions)):
    if isinstance(answers, str) or not isinstance(answers, Sequence) or len(answers) == 0:
      raise ValueError(f"squad: targets[{i}] must be a non-empty list of gold answer strings; got {answers!r}. "
                       "Wrap a single answer in a list (T5 raises on an example without answers).")
    if not isinstance(prediction, str):
      raise ValueError(f"squad: predictions[{i}] must be a string; got {type(prediction).__name__}.")
  gold = [[normalize_squad(a) for a in answers] for answers in targets]
  guess = [normalize_squad(p) for p in predictions]
  em = np.mean([max(a == p for a in answers) for answers, p in zip(gold, guess)])
  f1 = np.mean([max(_token_f1(a, p) for a in answers) for answers, p in zip(gold, guess)])
  return {"em": float(em * 100), "f1": float(f1 * 100)}


# ----------------------------------------------------------------------------- grouped: MultiRC, ReCoRD


def _hashable(group: Any) -> Hashable:
  """A group id as a dict key: lists (a tuple after a JSON round trip) become tuples."""
  if isinstance(group, (list, tuple)):
    return tuple(_hashable(g) for g in group)
  return group


def _field(name: str, record: Any, key: str, what: str, i: int) -> Any:
  if not isinstance(record, Mapping) or key not in record:
    raise ValueError(f"{name}: {what}[{i}] must be a record with the key {key!r}; got {record!r}. Apply the "
                     "task's postprocessor (targets {'group': ..., 'value': ...}, predictions {'value': ...}).")
  return record[key]


def multirc_f1_over_all_answers(targets: Sequence[Mapping[str, Any]],
                                predictions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """T5's MultiRC F1 (SuperGLUE's F1a): `f1_score_with_invalid` over every answer option's 'value'
  -> {'f1': ...}."""
  _check_pair("multirc_f1_over_all_answers", targets, predictions)
  return f1_score_with_invalid(
      [_field("multirc_f1_over_all_answers", r, "value", "targets", i) for i, r in enumerate(targets)],
      [_field("multirc_f1_over_all_answers", r, "value", "predictions", i) for i, r in enumerate(predictions)])


def mean_group_metric(metric_fn: MetricFn, group_key: str = "group", value_key: str = "value",
                      return_subgroup_scores: bool = False) -> MetricFn:
  """T5's `mean_group_metric`: a metric fn that runs `metric_fn` on each group of records (the
  group read from the targets' `group_key`) and averages each result key over the groups.

  MultiRC's exact match is `mean_group_metric(all_match)`: the percentage of questions whose
  options are all labelled right. T5's MultiRC group is `idx/question` alone, so two paragraphs'
  question 0 fall into one group; the postprocessor decides that, not this function. With
  `return_subgroup_scores` each group's scores come too, as '<group>-<key>'.
  """
  name = f"mean_group_metric({getattr(metric_fn, '__name__', 'metric_fn')})"

  def fn(targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    _check_pair(name, targets, predictions)
    grouped: dict[Hashable, tuple[list, list]] = collections.defaultdict(lambda: ([], []))
    for i, (target, prediction) in enumerate(zip(targets, predictions)):
      values = grouped[_hashable(_field(name, target, group_key, "targets", i))]
      values[0].append(_field(name, target, value_key, "targets", i))
      values[1].append(_field(name, prediction, value_key, "predictions", i))
    scores: dict[str, list[float]] = collections.defaultdict(list)
    for group, (group_targets, group_predictions) in grouped.items():
      for key, score in metric_fn(group_targets, group_predictions).items():
        scores[key].append(score)
        if return_subgroup_scores:
          scores["%s-%s" % (group, key)].append(score)
    return {key: float(np.mean(values)) for key, values in scores.items()}

  fn.__name__ = name
  return fn


def deduplicate_metric(metric_fn: MetricFn, group_key: str = "group", value_key: str = "value") -> MetricFn:
  """T5's `deduplicate_metric`: a metric fn that keeps only the first record of each group (the
  group read from the targets' `group_key`) and runs `metric_fn` on their 'value's.

  ReCoRD is `deduplicate_metric(squad)`: T5 makes one example per gold answer, each target holding
  all answers and the group (idx/passage, idx/query); only the first copy's prediction is scored,
  the others are ignored, then SQuAD EM / F1 take the max over the answers.
  """
  name = f"deduplicate_metric({getattr(metric_fn, '__name__', 'metric_fn')})"

  def fn(targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    _check_pair(name, targets, predictions)
    seen: set[Hashable] = set()
    kept_targets, kept_predictions = [], []
    for i, (target, prediction) in enumerate(zip(targets, predictions)):
      group = _hashable(_field(name, target, group_key, "targets", i))
      if group in seen:
        continue
      seen.add(group)
      kept_targets.append(_field(name, target, value_key, "targets", i))
      kept_predictions.append(_field(name, prediction, value_key, "predictions", i))
    return metric_fn(kept_targets, kept_predictions)

  fn.__name__ = name
  return fn


# ----------------------------------------------------------------------------- generation
# T5's metrics of its translation / summarization tasks, which the Table-1 mixtures' generation
# members (WMT, summarization, GEM) use. They call the field's libraries, as T5 does: sacrebleu
# and rouge-score (imported on first use; both are dependencies of spot_jax).


def bleu(targets: Sequence[Any], predictions: Sequence[str], tokenizer: str = "intl") -> dict[str, float]:
  """T5's `bleu`: sacrebleu's corpus BLEU (0-100) with exponential smoothing, `intl` tokenisation,
  case-sensitive, no effective order. `targets` are strings (one reference each) or lists of
  strings, which T5 hands to sacrebleu unchanged as its reference *streams* (stream i =
  `targets[i]`, read against the predictions in order); kept as T5 does it, quirk included."""
  import sacrebleu  # pylint: disable=import-outside-toplevel

  _check_pair("bleu", targets, predictions)
  if isinstance(targets[0], list):
    references = [list(t) for t in targets]
  else:
    references = [list(targets)]
  score = sacrebleu.corpus_bleu(list(predictions), references, smooth_method="exp", smooth_value=0.0,
                                force=False, lowercase=False, tokenize=tokenizer, use_effective_order=False)
  return {"bleu": float(score.score)}


ROUGE_KEYS = ("rouge1", "rouge2", "rougeLsum")


def _prepare_summary(summary: str) -> str:
  """T5's rouge preprocessing: a newline after every ' . ', so that rougeLsum sees sentences."""
  return summary.replace(" . ", " .\n")


def rouge(targets: Sequence[str], predictions: Sequence[str], score_keys: Sequence[str] = ROUGE_KEYS,
          seed: Optional[int] = 0, **scorer_kwargs) -> dict[str, float]:
  """T5's `rouge`: rouge-score's F-measures (0-100) of `score_keys` (rouge1, rouge2, rougeLsum),
  each summary split into sentences at ' . ' (T5's `_prepare_summary`), aggregated over examples
  by rouge-score's `BootstrapAggregator` (the median of 1000 bootstrap means, T5's `mid`).

  T5 draws the bootstrap from numpy's global RNG, so its value depends on the RNG state; here the
  global RNG is seeded with `seed` for the call and restored after it (`seed=0` gives T5's value
  after `np.random.seed(0)`; None: use the global state as it is, exactly as T5)."""
  from rouge_score import rouge_scorer, scoring  # pylint: disable=import-outside-toplevel

  _check_pair("rouge", targets, predictions)
  scorer = rouge_scorer.RougeScorer(rouge_types=list(score_keys), **scorer_kwargs)
  aggregator = scoring.BootstrapAggregator()
  for prediction, target in zip(predictions, targets):
    aggregator.add_scores(scorer.score(target=_prepare_summary(target), prediction=_prepare_summary(prediction)))
  state = np.random.get_state() if seed is not None else None
  try:
    if seed is not None:
      np.random.seed(seed)
    result = aggregator.aggregate()
  finally:
    if state is not None:
      np.random.set_state(state)
  return {key: float(result[key].mid.fmeasure * 100) for key in score_keys}


# ----------------------------------------------------------------------------- benchmark averages


class BenchmarkMetric(NamedTuple):
  """One metric of a benchmark average, as a row of T5's `eval_utils.METRIC_NAMES`."""
  tag: str  # T5's '<task>/<metric key>', e.g. 'glue_cola_v002/matthews_corrcoef'
  group: str  # T5's metric group: a group's metrics are averaged first
  tasks: tuple[str, ...] = ()  # task names accepted besides T5's (spot_jax's first)
  aliases: tuple[str, ...] = ()  # metric keys accepted besides T5's (earlier spot_jax names)


# T5's METRIC_NAMES rows whose tag holds 'glue' (not 'super'), in its order. WNLI is not in it.
GLUE_AVERAGE_METRICS: tuple[BenchmarkMetric, ...] = (
    BenchmarkMetric("glue_cola_v002/matthews_corrcoef", "CoLA", ("cola",), ("mcc",)),
    BenchmarkMetric("glue_sst2_v002/accuracy", "SST-2", ("sst2",)),
    BenchmarkMetric("glue_mrpc_v002/f1", "MRPC", ("mrpc",)),
    BenchmarkMetric("glue_mrpc_v002/accuracy", "MRPC", ("mrpc",)),
    BenchmarkMetric("glue_stsb_v002/pearson_corrcoef", "STSB", ("stsb",), ("pearson",)),
    BenchmarkMetric("glue_stsb_v002/spearman_corrcoef", "STSB", ("stsb",), ("spearman",)),
    BenchmarkMetric("glue_qqp_v002/f1", "QQP", ("qqp",)),
    BenchmarkMetric("glue_qqp_v002/accuracy", "QQP", ("qqp",)),
    BenchmarkMetric("glue_mnli_matched_v002/accuracy", "MNLI", ("mnli", "mnli_matched")),
    BenchmarkMetric("glue_mnli_mismatched_v002/accuracy", "MNLI", ("mnli_mismatched",)),
    BenchmarkMetric("glue_qnli_v002/accuracy", "QNLI", ("qnli",)),
    BenchmarkMetric("glue_rte_v002/accuracy", "GLUE RTE", ("rte",)),
)
# T5's METRIC_NAMES rows whose tag holds 'super_glue'. RTE may also be given as 'rte' (same data).
SUPERGLUE_AVERAGE_METRICS: tuple[BenchmarkMetric, ...] = (
    BenchmarkMetric("super_glue_boolq_v102/accuracy", "BoolQ (accuracy)", ("boolq",)),
    BenchmarkMetric("super_glue_cb_v102/mean_3class_f1", "CB", ("cb",), ("f1_macro",)),
    BenchmarkMetric("super_glue_cb_v102/accuracy", "CB", ("cb",)),
    BenchmarkMetric("super_glue_copa_v102/accuracy", "CoPA", ("copa",)),
    BenchmarkMetric("super_glue_multirc_v102/f1", "MultiRC", ("multirc",), ("f1a",)),
    BenchmarkMetric("super_glue_multirc_v102/exact_match", "MultiRC", ("multirc",), ("em",)),
    BenchmarkMetric("super_glue_record_v102/f1", "ReCoRD", ("record",)),
    BenchmarkMetric("super_glue_record_v102/em", "ReCoRD", ("record",)),
    BenchmarkMetric("super_glue_rte_v102/accuracy", "SuperGLUE RTE", ("super_glue_rte", "rte")),
    BenchmarkMetric("super_glue_wic_v102/accuracy", "WiC", ("wic",)),
    BenchmarkMetric("super_glue_wsc_v102_simple_eval/accuracy", "WSC", ("wsc", "wsc_simple")),
)

Scores = Mapping[str, Any]  # {task: {metric: value}} | {task: score} | {'task/metric': value}


def _nest(scores: Scores) -> dict[str, Any]:
  """Accept T5's flat tags ('glue_cola_v002/matthews_corrcoef': v) next to {task: {metric: v}}."""
  nested: dict[str, Any] = {}
  for key, value in scores.items():
    if isinstance(key, str) and "/" in key:
      task, metric = key.split("/", 1)
      nested.setdefault(task, {})
      if isinstance(nested[task], dict):
        nested[task][metric] = value
    else:
      nested[key] = value
  return nested


def _lookup(scores: Mapping[str, Any], row: BenchmarkMetric) -> Optional[float]:
  t5_task, t5_metric = row.tag.split("/", 1)
  task = next((t for t in (*row.tasks, t5_task) if t in scores), None)
  if task is None:
    return None
  value = scores[task]
  if not isinstance(value, Mapping):  # a task's score, taken as each of its metrics
    return float(value)
  key = next((k for k in (t5_metric, *row.aliases) if k in value), None)
  return None if key is None else float(value[key])


def _benchmark_average(benchmark: str, scores: Scores, rows: Sequence[BenchmarkMetric]) -> float:
  nested = _nest(scores)
  groups: dict[str, list[float]] = {}
  missing = []
  for row in rows:
    value = _lookup(nested, row)
    if value is None:
      missing.append(row.tag)
    groups.setdefault(row.group, []).append(value)
  if missing:
    raise ValueError(f"{benchmark} average needs every metric of T5's average; missing {missing} (T5 writes no "
                     f"average then). Give them as {{task: {{metric: value}}}} with spot_jax or T5 task names, "
                     f"or as T5's 'task/metric' tags; got {sorted(nested)}.")
  group_means = [float(np.mean(values)) for values in groups.values()]
  return sum(group_means) / len(group_means)


def glue_average(scores: Scores) -> float:
  """T5's "Average GLUE Score" (`eval_utils.compute_avg_glue`): the metrics are grouped as T5's
  METRIC_NAMES groups them, each group is averaged, then the 8 group means are averaged:
  CoLA (MCC), SST-2, MRPC (F1, accuracy), STS-B (Pearson, Spearman), QQP (F1, accuracy),
  MNLI (matched and mismatched accuracy, one group), QNLI, RTE. WNLI is not part of it.

  scores: {task: {metric: value}} with spot_jax task names (cola, ..., mnli, mnli_mismatched) or
  T5's (glue_cola_v002, ...) and T5's metric keys (earlier spot_jax keys such as 'mcc', 'pearson'
  work too); or T5's flat tags {'glue_cola_v002/matthews_corrcoef': value}; a plain number for a
  task stands for each of its metrics. Other tasks and keys are ignored. A NaN metric gives NaN,
  as in T5. A missing metric raises ValueError: T5 computes no average then (CoLA missing: no
  GLUE average).
  """
  return _benchmark_average("GLUE", scores, GLUE_AVERAGE_METRICS)


def superglue_average(scores: Scores) -> float:
  """T5's "Average SuperGLUE Score", grouped as `glue_average`: BoolQ, CB (mean_3class_f1 and
  accuracy), COPA, MultiRC (f1 and exact_match), ReCoRD (f1 and em), RTE, WiC, WSC — 8 groups.

  scores: as `glue_average`, with task names boolq, cb, copa, multirc, record, super_glue_rte (or
  rte), wic, wsc, or T5's (super_glue_cb_v102, ..., super_glue_wsc_v102_simple_eval); MultiRC's
  keys may also be spot_jax's earlier 'f1a' / 'em', CB's 'f1_macro'.
  """
  return _benchmark_average("SuperGLUE", scores, SUPERGLUE_AVERAGE_METRICS)
