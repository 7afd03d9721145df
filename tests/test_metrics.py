"""Metrics against scikit-learn / scipy on random inputs, and hand-computed QA, MultiRC, ReCoRD and
benchmark-average cases. (tests/test_metrics_t5.py checks the values t5 itself computed.)"""

import math

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from spot_jax import metrics

SEEDS = range(6)
INVALID = -1  # what the label postprocessor gives for a text that is no label word


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
    assert metrics.accuracy(t, p) == {"accuracy": pytest.approx(100 * skm.accuracy_score(t, p))}
    assert metrics.mean_multiclass_f1(num_classes)(t, p) == {f"mean_{num_classes}class_f1": pytest.approx(
        100 * skm.f1_score(t, p, labels=range(num_classes), average="macro", zero_division=0))}
    assert metrics.matthews_corrcoef(t, p) == {"matthews_corrcoef": pytest.approx(100 * skm.matthews_corrcoef(t, p))}
  t, p = _labels(seed, 2)
  assert metrics.f1_score_with_invalid(t, p) == {"f1": pytest.approx(100 * skm.f1_score(t, p, pos_label=1))}


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_classification_metrics_on_strings_and_degenerate_inputs():
  t, p = ["a", "b", "b", "c"], ["a", "b", "c", "c"]
  assert metrics.accuracy(t, p) == {"accuracy": 75.0}
  assert metrics.sequence_accuracy(["a b", "C", "d"], ["a b", "c", "d "]) == {
      "sequence_accuracy": pytest.approx(100 / 3)}  # no normalisation: case and spaces count
  assert metrics.matthews_corrcoef(t, p)["matthews_corrcoef"] == pytest.approx(100 * skm.matthews_corrcoef(t, p))
  # No positive anywhere: F1 is 0, as scikit-learn's zero_division=0.
  assert metrics.f1_score_with_invalid([0, 0, 0], [0, 0, 0]) == {"f1": 0.0}
  assert 0.0 == skm.f1_score([0, 0, 0], [0, 0, 0], zero_division=0)
  # MCC undefined (one class everywhere): 0, as scikit-learn.
  assert metrics.matthews_corrcoef([1, 1, 1], [1, 1, 1]) == {"matthews_corrcoef": 0.0}
  assert 0.0 == skm.matthews_corrcoef([1, 1, 1], [1, 1, 1])
  assert metrics.matthews_corrcoef([1, 0, 1, 0], [1, 0, 1, 0])["matthews_corrcoef"] == pytest.approx(100.0)
  assert metrics.matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1])["matthews_corrcoef"] == pytest.approx(-100.0)
  assert metrics.all_match([1, 0], [1, 0]) == {"exact_match": 100.0}
  assert metrics.all_match([1, 0], [1, INVALID]) == {"exact_match": 0.0}


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_invalid_predictions_are_wrong_but_not_a_class(seed):
  t, p = _labels(seed, 3, n=40)
  p = [INVALID if i % 7 == 0 else x for i, x in enumerate(p)]
  assert metrics.accuracy(t, p)["accuracy"] == pytest.approx(100 * skm.accuracy_score(t, p))
  # Macro-F1 over all classes, also one absent everywhere (class 3: F1 0), -1 not a class.
  assert metrics.mean_multiclass_f1(4)(t, p)["mean_4class_f1"] == pytest.approx(
      100 * skm.f1_score(t, p, labels=range(4), average="macro", zero_division=0))
  # Binary F1 as T5's f1_score_with_invalid: an invalid prediction is the opposite of its target, so
  # on a negative example it is a false positive (plain F1 of "== 1" would call it a true negative).
  t, p = _labels(seed, 2, n=40)
  p = [INVALID if i % 5 == 0 else x for i, x in enumerate(p)]
  as_t5 = [1 - y if x == INVALID else x for x, y in zip(p, t)]
  assert metrics.f1_score_with_invalid(t, p)["f1"] == pytest.approx(100 * skm.f1_score(t, as_t5))
  assert metrics.f1_score_with_invalid([0, 1], [INVALID, 1]) == {"f1": pytest.approx(100 * 2 / 3)}


def test_cb_macro_f1_counts_every_class():
  # Neutral (2) nowhere: F1 0 for it, so the mean is over 3 classes, not the 2 seen.
  t, p = [0, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 0]
  per_class = skm.f1_score(t, p, labels=[0, 1], average=None)
  assert metrics.mean_multiclass_f1(3)(t, p) == {"mean_3class_f1": pytest.approx(100 * sum(per_class) / 3)}


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_equal_scipy_including_ties(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(3, 80))
  t = rng.normal(2.5, 1.0, n)
  p = t + rng.normal(0, 1.0, n)
  pearson = lambda x, y: metrics.pearson_corrcoef(x.tolist(), y.tolist())["pearson_corrcoef"]
  spearman = lambda x, y: metrics.spearman_corrcoef(x.tolist(), y.tolist())["spearman_corrcoef"]
  assert pearson(t, p) == pytest.approx(100 * scipy.stats.pearsonr(t, p)[0], abs=1e-9)
  assert spearman(t, p) == pytest.approx(100 * scipy.stats.spearmanr(t, p)[0], abs=1e-9)
  # STS-B style: targets rounded to 0.2 and predictions to one decimal, so both sides have ties.
  t_ties, p_ties = np.round(t * 5) / 5, np.round(p, 1)
  assert spearman(t_ties, p_ties) == pytest.approx(100 * scipy.stats.spearmanr(t_ties, p_ties)[0], abs=1e-9)
  assert pearson(t_ties, p_ties) == pytest.approx(100 * scipy.stats.pearsonr(t_ties, p_ties)[0], abs=1e-9)


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_correlations_of_unparseable_and_constant_predictions():
  t = [0.0, 1.2, 2.4, 3.6, 5.0]
  as_postprocessed = [0.2, -1.0, 2.0, -1.0, 4.8]  # string_to_float: "high" -> -1.0
  assert metrics.pearson_corrcoef(t, as_postprocessed)["pearson_corrcoef"] == pytest.approx(
      100 * scipy.stats.pearsonr(t, as_postprocessed)[0])
  assert metrics.spearman_corrcoef(t, as_postprocessed)["spearman_corrcoef"] == pytest.approx(
      100 * scipy.stats.spearmanr(t, as_postprocessed)[0])
  # Constant predictions, or a NaN one (string_to_float parses "nan"): NaN, as scipy and T5.
  for p in ([1.0] * 5, [math.nan, 1.0, 2.0, 3.0, 4.0]):
    assert math.isnan(metrics.pearson_corrcoef(t, p)["pearson_corrcoef"])
    assert math.isnan(metrics.spearman_corrcoef(t, p)["spearman_corrcoef"])
    assert math.isnan(scipy.stats.pearsonr(t, p)[0]) and math.isnan(scipy.stats.spearmanr(t, p)[0])
  with pytest.raises(ValueError, match="predictions must be numbers"):
    metrics.pearson_corrcoef(t, ["0.2", "high", 2.0, 3.0, 4.8])


def test_squad_normalisation_and_max_over_answers():
  assert metrics.normalize_squad("The  Eiffel-Tower!") == "eiffeltower"
  assert metrics.normalize_squad("An apple a day, (the) theater") == "apple day theater"
  assert metrics.normalize_squad("  A\tB\n") == "b"
  assert metrics.normalize_squad("U . S .") == "u s" and metrics.normalize_squad("the-end") == "theend"
  gold = [["The Eiffel Tower", "Eiffel tower"], ["Paris"], ["1,000 people", "a thousand"], ["Denver Broncos"]]
  predictions = ["eiffel tower!", "in Paris France", "1000 People", ""]
  result = metrics.squad(gold, predictions)
  # EM: 1, 0, 1 ("1,000" -> "1000"), 0. F1: 1, 2*(1/3*1)/(1/3+1) = 0.5, 1, 0 (empty prediction).
  assert result["em"] == pytest.approx(100 * 2 / 4)
  assert result["f1"] == pytest.approx(100 * (1 + 0.5 + 1 + 0) / 4)
  # F1 is the max over answers, not the F1 of the first answer.
  assert metrics.squad([["big red tower", "tower"]], ["tower"]) == {"em": 100.0, "f1": 100.0}
  assert metrics.squad([["the big red tower"]], ["red tower"])["f1"] == pytest.approx(100 * 0.8)
  # An answer that normalises to nothing: EM 1 but F1 0 (T5's qa_utils, no special case).
  assert metrics.squad([["a an the"]], [""]) == {"em": 100.0, "f1": 0.0}


def test_record_scores_the_first_row_of_each_query_against_all_entities():
  # T5's ReCoRD: one row per gold answer, each target holding all answers and the (passage, query)
  # group; only the first row of a group is scored (its prediction), max over the answers.
  gold = [["Barack Obama", "Obama"], ["Angela Merkel"], ["U.S."]]
  rows_t = [{"group": (0, 0), "value": gold[0]}, {"group": (0, 0), "value": gold[0]},
            {"group": (0, 1), "value": gold[1]}, {"group": (1, 0), "value": gold[2]}]
  rows_p = [{"value": "obama"}, {"value": "ignored"}, {"value": "Merkel"}, {"value": "US"}]
  result = metrics.deduplicate_metric(metrics.squad)(rows_t, rows_p)
  # EM 1, 0, 1 ("u.s." -> "us"); F1 1, 2/3 (1 of 2 tokens, precision 1), 1.
  assert result == pytest.approx({"em": 100 * 2 / 3, "f1": 100 * (1 + 2 / 3 + 1) / 3})
  # A group read back from JSON (a list) works as the tuple.
  as_lists = [dict(r, group=list(r["group"])) for r in rows_t]
  assert metrics.deduplicate_metric(metrics.squad)(as_lists, rows_p) == result


def test_multirc_f1_over_options_and_em_over_questions():
  groups = [(0, 0), (0, 0), (0, 0), (0, 1), (0, 1), (1, 0)]
  targets = [1, 0, 1, 0, 1, 1]
  predictions = [1, 0, 1, 1, 1, 0]
  records_t = [{"group": g, "value": v} for g, v in zip(groups, targets)]
  records_p = [{"value": v} for v in predictions]
  # Options: tp 3, fp 1, fn 1 -> F1 = 6/8. Questions: (0,0) all right, (0,1) and (1,0) not -> 1/3.
  assert metrics.multirc_f1_over_all_answers(records_t, records_p) == {"f1": pytest.approx(75.0)}
  assert 75.0 == pytest.approx(100 * skm.f1_score(targets, predictions))
  assert metrics.mean_group_metric(metrics.all_match)(records_t, records_p) == {"exact_match": pytest.approx(100 / 3)}
  # An invalid prediction (-1) is wrong for both: on a False option it is a false positive (T5).
  one_question_t = [{"group": 0, "value": 1}, {"group": 0, "value": 0}]
  one_question_p = [{"value": 1}, {"value": INVALID}]
  assert metrics.multirc_f1_over_all_answers(one_question_t, one_question_p) == {"f1": pytest.approx(100 * 2 / 3)}
  assert metrics.mean_group_metric(metrics.all_match)(one_question_t, one_question_p) == {"exact_match": 0.0}
  # Subgroup scores, as T5's return_subgroup_scores.
  with_groups = metrics.mean_group_metric(metrics.all_match, return_subgroup_scores=True)(records_t, records_p)
  assert with_groups["(0, 0)-exact_match"] == 100.0 and with_groups["(1, 0)-exact_match"] == 0.0
  with pytest.raises(ValueError, match="must be a record with the key 'group'"):
    metrics.mean_group_metric(metrics.all_match)([{"value": 1}], [{"value": 1}])
  with pytest.raises(ValueError, match=r"predictions\[0\] must be a record"):
    metrics.multirc_f1_over_all_answers(one_question_t, [1, 0])


def test_benchmark_averages_group_as_t5():
  glue = {"cola": {"matthews_corrcoef": 40.0}, "sst2": {"accuracy": 90.0}, "mrpc": {"f1": 90.0, "accuracy": 86.0},
          "qqp": {"f1": 70.0, "accuracy": 80.0, "score": 75.0},
          "stsb": {"pearson_corrcoef": 88.0, "spearman_corrcoef": 86.0},
          "mnli": {"accuracy": 80.0}, "mnli_mismatched": {"accuracy": 82.0}, "qnli": 85.0, "rte": {"accuracy": 70.0},
          "wnli": {"accuracy": 10.0}}  # WNLI is not part of the average
  # 8 groups: MNLI matched and mismatched are one group, each multi-metric task one group.
  expected = (40 + 90 + 88 + 75 + 87 + 81 + 85 + 70) / 8
  assert metrics.glue_average(glue) == pytest.approx(expected)
  # Earlier spot_jax metric keys (saved results), and T5's flat tags, are read too.
  earlier = dict(glue, cola={"mcc": 40.0}, stsb={"pearson": 88.0, "spearman": 86.0})
  assert metrics.glue_average(earlier) == pytest.approx(expected)
  flat = {row.tag: 0.0 for row in metrics.GLUE_AVERAGE_METRICS}
  flat["glue_cola_v002/matthews_corrcoef"] = 80.0
  assert metrics.glue_average(flat) == pytest.approx(10.0)

  superglue = {"boolq": {"accuracy": 80.0}, "cb": {"mean_3class_f1": 80.0, "accuracy": 90.0},
               "copa": {"accuracy": 60.0}, "multirc": {"f1": 70.0, "exact_match": 30.0},
               "record": {"f1": 80.0, "em": 78.0}, "super_glue_rte": {"accuracy": 75.0}, "wic": {"accuracy": 65.0},
               "wsc": {"accuracy": 63.0}}
  expected = (80 + 85 + 60 + 50 + 79 + 75 + 65 + 63) / 8
  assert metrics.superglue_average(superglue) == pytest.approx(expected)
  earlier = dict(superglue, cb={"f1_macro": 80.0, "accuracy": 90.0}, multirc={"f1a": 70.0, "em": 30.0})
  earlier["rte"] = earlier.pop("super_glue_rte")  # the same RTE data under GLUE's name works too
  assert metrics.superglue_average(earlier) == pytest.approx(expected)
  # A NaN metric (constant STS-B predictions) makes the average NaN, as in T5.
  assert math.isnan(metrics.glue_average(dict(glue, stsb={"pearson_corrcoef": math.nan, "spearman_corrcoef": 1.0})))

  # T5 writes no average when a metric is missing; here that is an error naming it.
  with pytest.raises(ValueError, match=r"missing \['super_glue_wsc_v102_simple_eval/accuracy'\]"):
    metrics.superglue_average({k: v for k, v in superglue.items() if k != "wsc"})
  with pytest.raises(ValueError, match="glue_stsb_v002/spearman_corrcoef"):
    metrics.glue_average(dict(glue, stsb={"pearson_corrcoef": 88.0}))
  with pytest.raises(ValueError, match="glue_mnli_mismatched_v002/accuracy"):
    metrics.glue_average({k: v for k, v in glue.items() if k != "mnli_mismatched"})


def test_bad_inputs_name_the_problem():
  grouped = (metrics.multirc_f1_over_all_answers, metrics.mean_group_metric(metrics.all_match),
             metrics.deduplicate_metric(metrics.squad))
  for fn in (metrics.accuracy, metrics.matthews_corrcoef, metrics.f1_score_with_invalid, metrics.mean_multiclass_f1(3),
             metrics.pearson_corrcoef, metrics.spearman_corrcoef, metrics.squad, metrics.sequence_accuracy,
             metrics.all_match, *grouped):
    with pytest.raises(ValueError, match="got no examples"):
      fn([], [])
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
      fn([["a"], ["b"]] if fn is metrics.squad else [1, 0], ["a"] if fn is metrics.squad else [1])
  with pytest.raises(ValueError, match="Wrap a single answer in a list"):
    metrics.squad(["Paris"], ["Paris"])
  with pytest.raises(ValueError, match="targets must be 0 or 1"):
    metrics.f1_score_with_invalid([0, 2], [0, 1])
  with pytest.raises(ValueError, match="num_classes must be a positive integer"):
    metrics.mean_multiclass_f1(0)
