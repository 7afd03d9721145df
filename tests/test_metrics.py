"""Metrics against scikit-learn / scipy on random inputs, and hand-computed QA, MultiRC, ReCoRD and
benchmark-average cases."""

import math

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from spot_jax import metrics

SEEDS = range(6)


def _labels(seed, num_classes, n=None):
  rng = np.random.default_rng(seed)
  n = n or int(rng.integers(5, 60))
  targets = rng.integers(0, num_classes, n)
  # Predictions agree with targets part of the time so scores are not all near chance.
  predictions = np.where(rng.random(n) < 0.6, targets, rng.integers(0, num_classes, n))
  return targets.tolist(), predictions.tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_equal_sklearn(seed):
  for num_classes in (2, 3, 5):
    t, p = _labels(seed, num_classes)
    assert metrics.accuracy(t, p) == pytest.approx(100 * skm.accuracy_score(t, p))
    assert metrics.f1_macro(t, p) == pytest.approx(100 * skm.f1_score(t, p, average="macro"))
    assert metrics.matthews_corrcoef(t, p) == pytest.approx(100 * skm.matthews_corrcoef(t, p))
    for positive in range(num_classes):
      binary_t, binary_p = [int(x == positive) for x in t], [int(x == positive) for x in p]
      assert metrics.f1_binary(t, p, positive=positive) == pytest.approx(100 * skm.f1_score(binary_t, binary_p))
  t, p = _labels(seed, 2)
  assert metrics.f1_binary(t, p) == pytest.approx(100 * skm.f1_score(t, p, pos_label=1))


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_classification_metrics_on_strings_and_degenerate_inputs():
  t, p = ["a", "b", "b", "c"], ["a", "b", "c", "c"]
  assert metrics.accuracy(t, p) == 75.0
  assert metrics.f1_macro(t, p) == pytest.approx(100 * skm.f1_score(t, p, average="macro"))
  assert metrics.matthews_corrcoef(t, p) == pytest.approx(100 * skm.matthews_corrcoef(t, p))
  # No positive anywhere: F1 is 0, as scikit-learn's zero_division=0.
  assert metrics.f1_binary([0, 0, 0], [0, 0, 0]) == 0.0 == skm.f1_score([0, 0, 0], [0, 0, 0], zero_division=0)
  # MCC undefined (one class everywhere): 0, as scikit-learn.
  assert metrics.matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0 == skm.matthews_corrcoef([1, 1, 1], [1, 1, 1])
  assert metrics.matthews_corrcoef([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(100.0)
  assert metrics.matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-100.0)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_invalid_predictions_are_wrong_but_not_a_class(seed):
  t, p = _labels(seed, 3, n=40)
  p = [metrics.INVALID_LABEL if i % 7 == 0 else x for i, x in enumerate(p)]
  assert metrics.accuracy(t, p) == pytest.approx(100 * skm.accuracy_score(t, p))
  assert metrics.f1_macro(t, p) == pytest.approx(100 * skm.f1_score(t, p, labels=[0, 1, 2], average="macro"))
  assert metrics.f1_macro(t, p, labels=range(4)) == pytest.approx(
      100 * skm.f1_score(t, p, labels=range(4), average="macro", zero_division=0))
  assert metrics.f1_binary(t, p) == pytest.approx(100 * skm.f1_score([x == 1 for x in t], [x == 1 for x in p]))


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_equal_scipy_including_ties(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(3, 80))
  t = rng.normal(2.5, 1.0, n)
  p = t + rng.normal(0, 1.0, n)
  assert metrics.pearson(t.tolist(), p.tolist()) == pytest.approx(100 * scipy.stats.pearsonr(t, p)[0], abs=1e-9)
  assert metrics.spearman(t.tolist(), p.tolist()) == pytest.approx(100 * scipy.stats.spearmanr(t, p)[0], abs=1e-9)
  # STS-B style: targets rounded to 0.2 and predictions to one decimal, so both sides have ties.
  t_ties, p_ties = np.round(t * 5) / 5, np.round(p, 1)
  assert metrics.spearman(t_ties, p_ties) == pytest.approx(100 * scipy.stats.spearmanr(t_ties, p_ties)[0], abs=1e-9)
  assert metrics.pearson(t_ties, p_ties) == pytest.approx(100 * scipy.stats.pearsonr(t_ties, p_ties)[0], abs=1e-9)


def test_unparseable_regression_predictions_count_as_the_sentinel():
  t = [0.0, 1.2, 2.4, 3.6, 5.0]
  p = ["0.2", "high", 2.0, math.nan, " 4.8 "]
  as_sentinel = [0.2, metrics.UNPARSEABLE_FLOAT, 2.0, metrics.UNPARSEABLE_FLOAT, 4.8]
  assert metrics.UNPARSEABLE_FLOAT == -1.0
  assert metrics.pearson(t, p) == pytest.approx(100 * scipy.stats.pearsonr(t, as_sentinel)[0])
  assert metrics.spearman(t, p) == pytest.approx(100 * scipy.stats.spearmanr(t, as_sentinel)[0])
  # Constant predictions: undefined in scipy (NaN); 0 here so such a checkpoint is never "best".
  assert metrics.pearson(t, [1.0] * 5) == 0.0 and metrics.spearman(t, ["x"] * 5) == 0.0
  with pytest.raises(ValueError, match="targets must be finite numbers"):
    metrics.pearson([1.0, "n/a"], [1.0, 2.0])


def test_squad_normalisation_and_max_over_answers():
  assert metrics.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
  assert metrics.normalize_answer("An apple a day, (the) theater") == "apple day theater"
  assert metrics.normalize_answer("  A\tB\n") == "b"
  gold = [["The Eiffel Tower", "Eiffel tower"], ["Paris"], ["1,000 people", "a thousand"], ["Denver Broncos"]]
  predictions = ["eiffel tower!", "in Paris France", "1000 People", ""]
  result = metrics.squad_em_f1(gold, predictions)
  # EM: 1, 0, 1 ("1,000" -> "1000"), 0. F1: 1, 2*(1/3*1)/(1/3+1) = 0.5, 1, 0 (empty prediction).
  assert result["em"] == pytest.approx(100 * 2 / 4)
  assert result["f1"] == pytest.approx(100 * (1 + 0.5 + 1 + 0) / 4)
  # F1 is the max over answers, not the F1 of the first answer.
  assert metrics.squad_em_f1([["big red tower", "tower"]], ["tower"]) == {"em": 100.0, "f1": 100.0}
  assert metrics.squad_em_f1([["the big red tower"]], ["red tower"])["f1"] == pytest.approx(100 * 0.8)


def test_record_em_f1_takes_the_best_entity():
  gold = [["Barack Obama", "Obama"], ["Angela Merkel"], ["U.S."]]
  predictions = ["obama", "Merkel", "US"]
  result = metrics.record_em_f1(gold, predictions)
  # EM 1, 0, 1 ("u.s." -> "us"); F1 1, 2/3 (1 of 2 tokens, precision 1), 1.
  assert result == pytest.approx({"em": 100 * 2 / 3, "f1": 100 * (1 + 2 / 3 + 1) / 3})


def test_multirc_f1a_over_options_and_em_over_questions():
  groups = [(0, 0), (0, 0), (0, 0), (0, 1), (0, 1), (1, 0)]
  targets = [1, 0, 1, 0, 1, 1]
  predictions = [1, 0, 1, 1, 1, 0]
  result = metrics.multirc_f1a_em(groups, targets, predictions)
  # Options: tp 3, fp 1, fn 1 -> F1a = 6/8. Questions: (0,0) all right, (0,1) and (1,0) not -> 1/3.
  assert result["f1a"] == pytest.approx(75.0) == pytest.approx(100 * skm.f1_score(targets, predictions))
  assert result["em"] == pytest.approx(100 / 3)
  records = lambda values: [{"group": g, "value": v} for g, v in zip(groups, values)]
  assert metrics.multirc_f1a_em(records(targets), records(predictions)) == result
  # An invalid prediction (-1) is a wrong answer for both metrics.
  assert metrics.multirc_f1a_em([0, 0], [1, 0], [1, metrics.INVALID_LABEL]) == {"f1a": 100.0, "em": 0.0}
  with pytest.raises(ValueError, match="one group"):
    metrics.multirc_f1a_em([0], [1, 0], [1, 0])
  with pytest.raises(ValueError, match="must be records"):
    metrics.multirc_f1a_em([1, 0], [1, 0])


def test_benchmark_averages_average_each_tasks_metrics_first():
  glue = {"cola": {"mcc": 40.0}, "sst2": {"accuracy": 90.0}, "mrpc": {"f1": 90.0, "accuracy": 86.0},
          "qqp": {"f1": 70.0, "accuracy": 80.0, "score": 75.0}, "stsb": {"pearson": 88.0, "spearman": 86.0},
          "mnli": {"accuracy": 80.0}, "qnli": 85.0, "rte": {"accuracy": 70.0},
          "wnli": {"accuracy": 10.0}, "mnli_mismatched": {"accuracy": 0.0}}  # not part of the average
  expected = (40 + 90 + 88 + 75 + 87 + 80 + 85 + 70) / 8
  assert metrics.glue_average(glue) == pytest.approx(expected)

  superglue = {"boolq": {"accuracy": 80.0}, "cb": {"f1_macro": 80.0, "accuracy": 90.0}, "copa": {"accuracy": 60.0},
               "multirc": {"f1a": 70.0, "em": 30.0}, "record": {"f1": 80.0, "em": 78.0}, "rte": {"accuracy": 75.0},
               "wic": {"accuracy": 65.0}, "wsc": {"accuracy": 63.0}}
  expected = (80 + 85 + 60 + 50 + 79 + 75 + 65 + 63) / 8
  assert metrics.superglue_average(superglue) == pytest.approx(expected)
  superglue["super_glue_rte"] = superglue.pop("rte")  # the task registry's name works too
  assert metrics.superglue_average(superglue) == pytest.approx(expected)

  with pytest.raises(ValueError, match=r"missing \['wsc'\]"):
    metrics.superglue_average({k: v for k, v in superglue.items() if k != "wsc"})
  with pytest.raises(ValueError, match="lack 'spearman'"):
    metrics.glue_average(dict(glue, stsb={"pearson": 88.0}))


def test_bad_inputs_name_the_problem():
  for fn in (metrics.accuracy, metrics.f1_binary, metrics.f1_macro, metrics.matthews_corrcoef, metrics.pearson,
             metrics.spearman, metrics.squad_em_f1, metrics.record_em_f1):
    with pytest.raises(ValueError, match="got no examples"):
      fn([], [])
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
      fn([["a"], ["b"]] if "em_f1" in fn.__name__ else [1, 0], ["a"] if "em_f1" in fn.__name__ else [1])
  with pytest.raises(ValueError, match="got no examples"):
    metrics.multirc_f1a_em([], [], [])
  with pytest.raises(ValueError, match="Wrap a single answer in a list"):
    metrics.squad_em_f1(["Paris"], ["Paris"])
