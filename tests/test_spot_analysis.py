"""Retrieval math against numpy on hand-made prompts; relative error reduction and the retrieval
table against hand-computed values; figures written as PNG + CSV."""

import csv
import dataclasses

import numpy as np
import pytest
import scipy.stats

from spot_jax.spot import retrieval, transferability as tr


def test_average_tokens_cosine_by_hand():
  a = np.array([[1.0, 0.0], [1.0, 2.0]])  # mean (1, 1)
  b = np.array([[0.0, 2.0], [0.0, 0.0]])  # mean (0, 1)
  assert retrieval.average_tokens_cosine(a, b) == pytest.approx(1 / np.sqrt(2))


def test_per_token_cosine_against_numpy_loop():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(4, 8)), rng.normal(size=(6, 8))
  expected = np.mean([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a])
  assert retrieval.per_token_cosine(a, b) == pytest.approx(expected)
  # Hand-made: orthogonal tokens give 0, identical single-token prompts give 1.
  assert retrieval.per_token_cosine(np.array([[1.0, 0.0]]), np.array([[0.0, 3.0]])) == pytest.approx(0.0)
  assert retrieval.per_token_cosine(np.array([[2.0, 2.0]]), np.array([[1.0, 1.0]])) == pytest.approx(1.0)


def test_rank_sources_orders_by_similarity():
  target = np.array([[1.0, 0.0]])
  keys = {"near": np.array([[1.0, 0.1]]), "far": np.array([[0.0, 1.0]]), "opposite": np.array([[-1.0, 0.0]])}
  ranking = retrieval.rank_sources(target, keys, "per_token_cosine")
  assert [r.task for r in ranking] == ["near", "far", "opposite"]
  assert [r.task for r in retrieval.rank_sources(target, keys, exclude=["near"])] == ["far", "opposite"]
  with pytest.raises(ValueError, match="Unknown similarity measure 'cos'"):
    retrieval.similarity(target, target, "cos")


def test_weighted_average_weights_and_prompt():
  ranking = [retrieval.Ranked("a", 0.6), retrieval.Ranked("b", 0.2), retrieval.Ranked("c", -0.5)]
  weights = retrieval.weighted_average_weights(ranking, 3)
  assert weights == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.0})
  values = {"a": np.ones((2, 2)), "b": 5 * np.ones((2, 2)), "c": 100 * np.ones((2, 2))}
  np.testing.assert_allclose(retrieval.weighted_average_prompt(values, weights), 2 * np.ones((2, 2)))


def test_relative_error_reduction_by_hand():
  assert tr.relative_error_reduction(80.0, 60.0) == pytest.approx(0.5)
  assert tr.relative_error_reduction(50.0, 60.0) == pytest.approx(-0.25)
  with pytest.raises(ValueError, match="no error to reduce"):
    tr.relative_error_reduction(100.0, 100.0)


def test_retrieval_table_by_hand():
  baselines = {"t1": 60.0, "t2": 80.0}
  transfer = {("s1", "t1"): 70.0, ("s2", "t1"): 80.0, ("s1", "t2"): 90.0, ("s2", "t2"): 85.0}
  rankings = {"t1": [retrieval.Ranked("s1", 0.9), retrieval.Ranked("s2", 0.1)],
              "t2": [retrieval.Ranked("s2", 0.8), retrieval.Ranked("s1", 0.3)]}
  rows = {r.method: r for r in tr.retrieval_table(baselines, transfer, rankings, ks=(1, 2),
                                                     extra={"weighted average": {"t1": 65.0, "t2": 80.0}})}
  assert rows["baseline (prompt tuning)"].average_score == pytest.approx(70.0)
  assert rows["baseline (prompt tuning)"].relative_change == pytest.approx(0.0)
  # oracle: t1 -> 80 (RER 0.5), t2 -> 90 (RER 0.5)
  assert rows["oracle"].average_score == pytest.approx(85.0)
  assert rows["oracle"].absolute_change == pytest.approx(15.0)
  assert rows["oracle"].relative_change == pytest.approx(50.0)
  # top-1: t1 -> s1 = 70 (RER .25), t2 -> s2 = 85 (RER .25)
  assert rows["best of top-1"].average_score == pytest.approx(77.5)
  assert rows["best of top-1"].relative_change == pytest.approx(25.0)
  assert rows["best of top-2"].average_score == pytest.approx(85.0)
  assert rows["weighted average"].relative_change == pytest.approx(100 * (0.125 + 0.0) / 2)
  text = tr.format_table(list(rows.values()))
  assert "best of top-1" in text and "77.50" in text
  long = dataclasses.replace(rows["oracle"], method="a method name longer than the default column")
  lines = tr.format_table([rows["oracle"], long]).splitlines()
  assert len(lines[1]) == len(lines[2]) == len(lines[0])  # columns stay aligned


def test_similarity_averaged_over_target_runs_against_numpy():
  rng = np.random.default_rng(7)
  targets = [rng.normal(size=(4, 6)) for _ in range(3)]  # one task embedding per target run
  sources = {"a": rng.normal(size=(4, 6)), "b": targets[0] + 0.1 * rng.normal(size=(4, 6)),
             "b@run1": targets[1] + 0.1 * rng.normal(size=(4, 6))}
  cos = lambda x, y: float(x.mean(0) @ y.mean(0) / np.linalg.norm(x.mean(0)) / np.linalg.norm(y.mean(0)))
  expected = {name: np.mean([cos(t, key) for t in targets]) for name, key in sources.items()}
  ranking = retrieval.rank_sources(targets, sources, "average_tokens_cosine")
  assert [r.task for r in ranking] == sorted(expected, key=lambda n: -expected[n])
  for r in ranking:
    assert r.similarity == pytest.approx(expected[r.task], abs=1e-9)
  assert retrieval.rank_sources(targets[0], sources) == retrieval.rank_sources([targets[0]], sources)


def _grid(seed_shift):
  """A 2-target grid; the second run's scores shifted, as another seed would give."""
  baselines = {"t1": 60.0 + seed_shift, "t2": 80.0}
  transfer = {("s1", "t1"): 70.0, ("s2", "t1"): 80.0, ("s3", "t1"): 60.0,
              ("s1", "t2"): 90.0, ("s2", "t2"): 85.0, ("s3", "t2"): 70.0}
  rankings = {"t1": [retrieval.Ranked("s1", 0.9), retrieval.Ranked("s2", 0.1), retrieval.Ranked("s3", 0.0)],
              "t2": [retrieval.Ranked("s2", 0.8), retrieval.Ranked("s1", 0.3), retrieval.Ranked("s3", 0.1)]}
  return baselines, transfer, rankings


def test_tables_over_runs_give_mean_and_sample_std(tmp_path):
  runs = [tr.retrieval_table(*_grid(shift), ks=(1,)) for shift in (0.0, 10.0)]
  rows = {r.method: r for r in tr.over_runs(runs)}
  # baseline average score: run 0 (60+80)/2 = 70, run 1 (70+80)/2 = 75 -> mean 72.5, sample std 3.5355
  assert rows["baseline (prompt tuning)"].average_score == pytest.approx(72.5)
  assert rows["baseline (prompt tuning)"].average_score_std == pytest.approx(np.std([70, 75], ddof=1))
  # top-1 absolute change: run 0 ((70-60) + (85-80))/2 = 7.5; run 1 ((70-70) + 5)/2 = 2.5
  assert rows["best of top-1"].absolute_change == pytest.approx(5.0)
  assert rows["best of top-1"].absolute_change_std == pytest.approx(np.std([7.5, 2.5], ddof=1))
  assert rows["oracle"].runs == 2
  text = tr.format_table(list(rows.values()), "generate")
  assert "over 2 runs" in text and "72.50 ± 3.54" in text
  tr.write_table_csv(str(tmp_path / "t.csv"), list(rows.values()), "generate")
  table = list(csv.DictReader(open(tmp_path / "t.csv")))
  assert table[0]["average_score_std"] == "3.5355" and table[0]["runs"] == "2"
  with pytest.raises(ValueError, match="same methods"):
    tr.over_runs([runs[0], runs[1][:2]])


def test_headline_fractions_by_hand(tmp_path):
  rows = {h.k: h for h in tr.headline([_grid(0.0), _grid(10.0)], ks=(1, 2), library_size=3)}
  # run 0: t1 oracle 80, base 60: top-1 s1 = 70 -> kept 0.5; t2 oracle 90, base 80: top-1 s2 = 85 -> 0.5
  # run 1: t1 base 70: top-1 s1 = 70 -> 0.0; t2 as before 0.5.  Means 0.5 and 0.25.
  assert rows[1].eliminated == pytest.approx(2 / 3)
  assert rows[1].gain_kept == pytest.approx(0.375)
  assert rows[1].gain_kept_std == pytest.approx(np.std([0.5, 0.25], ddof=1))
  assert rows[2].gain_kept == pytest.approx(1.0) and rows[2].gain_kept_std == 0.0  # top-2 holds both oracles
  assert (rows[1].runs, rows[1].targets) == (2, 2)
  text = tr.format_headline(list(rows.values()))
  assert "top-1 of 3: eliminates 67% of the source search space, keeps 38% ± 18% of the oracle's gain" in text
  # A target that no source improves has no gain to keep: it is left out, not counted as 0 or 1.
  flat = {"t1": 90.0}, {("s1", "t1"): 80.0}, {"t1": [retrieval.Ranked("s1", 1.0)]}
  assert np.isnan(tr.headline([flat], ks=(1,), library_size=1)[0].gain_kept)
  tr.write_headline_csv(str(tmp_path / "h.csv"), list(rows.values()))
  assert list(csv.DictReader(open(tmp_path / "h.csv")))[0]["oracle_gain_kept"] == "0.3750"


def test_rer_matrix_marks_missing_cells():
  m = tr.rer_matrix({("s", "t"): 80.0}, {"t": 60.0, "u": 50.0}, ["s"], ["t", "u"])
  assert m[0, 0] == pytest.approx(0.5) and np.isnan(m[0, 1])


def test_figures_written_with_csv_and_correlation(tmp_path):
  rng = np.random.default_rng(0)
  keys = {f"task{i}": rng.normal(size=(3, 4)) for i in range(4)}
  png, csv_path = tr.save_clustered_similarity(str(tmp_path / "sim"), keys, "average_tokens_cosine")
  assert open(png, "rb").read(4) == b"\x89PNG"
  with open(csv_path) as f:
    rows = list(csv.reader(f))
  assert len(rows) == 5 and sorted(rows[0][1:]) == sorted(keys)
  points = [("s", f"t{i}", float(x), float(y)) for i, (x, y) in enumerate(rng.normal(size=(6, 2)))]
  stats = tr.save_scatter(str(tmp_path / "scatter"), points)
  r, p = scipy.stats.pearsonr([p[2] for p in points], [p[3] for p in points])
  assert stats["pearson_r"] == pytest.approx(r) and stats["pearson_p"] == pytest.approx(p)
  assert (tmp_path / "scatter.png").exists() and (tmp_path / "scatter.csv").exists()


def test_ranking_csv(tmp_path):
  path = str(tmp_path / "r" / "ranking.csv")
  retrieval.write_ranking_csv(path, "tgt", {"per_token_cosine": [retrieval.Ranked("a", 0.5)]})
  with open(path) as f:
    assert list(csv.reader(f)) == [["target", "measure", "rank", "source", "similarity"],
                                   ["tgt", "per_token_cosine", "1", "a", "0.500000"]]


def test_perfect_baseline_is_left_out_of_relative_change():
  baselines = {"easy": 100.0, "hard": 60.0}
  transfer = {("s", "easy"): 100.0, ("s", "hard"): 80.0}
  rankings = {"easy": [retrieval.Ranked("s", 1.0)], "hard": [retrieval.Ranked("s", 1.0)]}
  rows = {r.method: r for r in tr.retrieval_table(baselines, transfer, rankings, ks=(1,))}
  assert rows["best of top-1"].relative_change == pytest.approx(50.0)  # only 'hard' counts
  assert rows["best of top-1"].average_score == pytest.approx(90.0)
  assert np.isnan(tr.rer_matrix(transfer, baselines, ["s"], ["easy", "hard"])[0, 0])
