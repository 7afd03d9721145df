"""Transferability analysis: relative error reduction, the retrieval table, heatmaps, correlations.

Why: SPoT's claims are about a sources x targets grid of transfer results. This module turns raw
scores (0-100) into the paper's quantities and pictures; running the grid itself is a job (one
trainer call per cell, see spot_jax.jobs). Every figure is written as PNG plus the CSV behind it.

  relative error reduction  (s_transfer - s_baseline) / (100 - s_baseline)
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from typing import Mapping, Optional, Sequence

import numpy as np
import scipy.cluster.hierarchy
import scipy.stats

from spot_jax import fileio
from spot_jax.spot import retrieval

RETRIEVAL_KS = (1, 3, 6, 9, 12, 15)


def relative_error_reduction(score: float, baseline: float) -> float:
  """(score - baseline) / (100 - baseline); scores on a 0-100 scale."""
  if baseline >= 100:
    raise ValueError(f"Baseline {baseline} leaves no error to reduce (scores are on a 0-100 scale).")
  return (score - baseline) / (100.0 - baseline)


def rer_or_nan(score: float, baseline: float) -> float:
  """Relative error reduction, NaN where the baseline is already perfect (undefined there)."""
  return float("nan") if baseline >= 100 else relative_error_reduction(score, baseline)


def rer_matrix(transfer: Mapping[tuple[str, str], float], baselines: Mapping[str, float],
               sources: Sequence[str], targets: Sequence[str]) -> np.ndarray:
  """[sources, targets] relative error reductions (NaN where a cell was not run)."""
  out = np.full((len(sources), len(targets)), np.nan)
  for i, s in enumerate(sources):
    for j, t in enumerate(targets):
      if (s, t) in transfer:
        out[i, j] = rer_or_nan(transfer[(s, t)], baselines[t])
  return out


@dataclasses.dataclass(frozen=True)
class TableRow:
  method: str
  average_score: float
  absolute_change: float  # average over targets of (score - baseline)
  relative_change: float  # average over targets of relative error reduction, in % (targets whose
  # baseline is already 100 are left out: nothing to reduce; NaN if that is all of them)
  runs: int = 1  # > 1: the three values are means over runs (seeds), with their standard deviations:
  average_score_std: float = 0.0
  absolute_change_std: float = 0.0
  relative_change_std: float = 0.0


def over_runs(tables: Sequence[Sequence[TableRow]]) -> list[TableRow]:
  """One table per run (the same methods in the same order, e.g. one per seed) -> the table of their
  means with the sample standard deviation over runs, as the papers report mean ± std over 3 runs."""
  if not tables:
    raise ValueError("over_runs needs at least one table.")
  methods = [r.method for r in tables[0]]
  if any([r.method for r in table] != methods for table in tables):
    raise ValueError(f"Every run's table must list the same methods in the same order; got "
                     f"{[[r.method for r in table] for table in tables]}.")
  rows = []
  for i, method in enumerate(methods):
    values = np.array([[t[i].average_score, t[i].absolute_change, t[i].relative_change] for t in tables])
    mean = [_nanmean(values[:, j]) for j in range(3)]
    std = [_nanstd(values[:, j]) for j in range(3)]
    rows.append(TableRow(method, *mean, runs=len(tables), average_score_std=std[0], absolute_change_std=std[1],
                         relative_change_std=std[2]))
  return rows


def _row(method: str, scores: Mapping[str, float], baselines: Mapping[str, float]) -> TableRow:
  targets = sorted(baselines)
  missing = [t for t in targets if t not in scores]
  if missing:
    raise ValueError(f"Method {method!r} has no score for targets {missing}.")
  return TableRow(method, float(np.mean([scores[t] for t in targets])),
                  float(np.mean([scores[t] - baselines[t] for t in targets])),
                  100.0 * _nanmean([rer_or_nan(scores[t], baselines[t]) for t in targets]))


def _nanmean(values: Sequence[float]) -> float:
  finite = [v for v in values if np.isfinite(v)]
  return float(np.mean(finite)) if finite else float("nan")


def _nanstd(values: Sequence[float]) -> float:
  """Sample standard deviation (ddof 1) of the finite values; 0 for one value, NaN for none."""
  finite = [v for v in values if np.isfinite(v)]
  if not finite:
    return float("nan")
  return float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def retrieval_table(baselines: Mapping[str, float], transfer: Mapping[tuple[str, str], float],
                    rankings: Mapping[str, Sequence[retrieval.Ranked]], ks: Sequence[int] = RETRIEVAL_KS,
                    extra: Mapping[str, Mapping[str, float]] = ()) -> list[TableRow]:
  """SPoT's retrieval table: baseline, oracle (best source per target), best-of-top-k (the best
  transfer among the k most similar sources, read off the grid), plus `extra` methods run
  separately (e.g. weighted average, mixture)."""
  targets = sorted(baselines)
  oracle = {t: max(v for (s, tt), v in transfer.items() if tt == t) for t in targets}
  rows = [_row("baseline (prompt tuning)", baselines, baselines), _row("oracle", oracle, baselines)]
  for k in ks:
    if all(len(rankings[t]) >= k for t in targets):
      best = {t: max(transfer[(r.task, t)] for r in retrieval.top_k(rankings[t], k)) for t in targets}
      rows.append(_row(f"best of top-{k}", best, baselines))
  for method, scores in dict(extra).items():
    rows.append(_row(method, scores, baselines))
  return rows


EVAL_MODE_TEXT = {"generate": "greedy decoding, an output that is no label counts as wrong",
                  "rank": "rank classification over the label words"}


def format_table(rows: Sequence[TableRow], eval_mode: Optional[str] = None) -> str:
  """The paper-style table; with `eval_mode`, a first line saying how the scores were produced. Rows
  over several runs show mean ± standard deviation."""
  width = max([28] + [len(r.method) for r in rows])
  runs = max([r.runs for r in rows] + [1])
  lines = [f"scores: eval mode {eval_mode!r} ({EVAL_MODE_TEXT.get(eval_mode, eval_mode)})"] if eval_mode else []
  if runs > 1:
    lines += [f"mean ± standard deviation over {runs} runs (seeds)",
              f"{'method':<{width}} {'avg score':>14} {'abs change':>14} {'rel change %':>14}"]
    lines += [f"{r.method:<{width}} {r.average_score:>6.2f} ± {r.average_score_std:<5.2f} "
              f"{r.absolute_change:>+6.2f} ± {r.absolute_change_std:<5.2f} "
              f"{r.relative_change:>+6.1f} ± {r.relative_change_std:<5.1f}" for r in rows]
    return "\n".join(lines)
  lines += [f"{'method':<{width}} {'avg score':>9} {'abs change':>10} {'rel change %':>12}"]
  lines += [f"{r.method:<{width}} {r.average_score:>9.2f} {r.absolute_change:>+10.2f} {r.relative_change:>+12.1f}"
            for r in rows]
  return "\n".join(lines)


def write_table_csv(path: str, rows: Sequence[TableRow], eval_mode: Optional[str] = None) -> None:
  """The table as CSV (means and, over runs, standard deviations); with `eval_mode`, every row carries
  it in an `eval_mode` column."""
  extra = [eval_mode] if eval_mode else []
  fileio.write_csv(
      path, ["method", "average_score", "absolute_change", "relative_change_percent", "runs", "average_score_std",
             "absolute_change_std", "relative_change_percent_std"] + (["eval_mode"] if eval_mode else []),
      [[r.method, f"{r.average_score:.4f}", f"{r.absolute_change:.4f}", f"{r.relative_change:.4f}", r.runs,
        f"{r.average_score_std:.4f}", f"{r.absolute_change_std:.4f}", f"{r.relative_change_std:.4f}", *extra]
       for r in rows])


@dataclasses.dataclass(frozen=True)
class Headline:
  """SPoT's headline for one k: "eliminating <eliminated> of the source search space while keeping
  <gain_kept> of the best-case gain obtained by oracle selection" (Vu et al., 2022)."""

  k: int  # prompts retrieved (and tried) out of the library
  library_size: int
  eliminated: float  # 1 - k / library_size
  gain_kept: float  # mean over runs of: mean over targets of (best of top-k - baseline) / (oracle - baseline)
  gain_kept_std: float  # sample standard deviation over runs
  runs: int
  targets: int  # targets with a gain to keep (oracle above baseline), in each run at most


def headline(runs: Sequence[tuple[Mapping[str, float], Mapping[tuple[str, str], float],
                                  Mapping[str, Sequence[retrieval.Ranked]]]],
             ks: Sequence[int], library_size: int) -> list[Headline]:
  """Per run (e.g. seed) the grid's (baselines {target: score}, transfer {(source, target): score},
  rankings {target: ranked sources}) -> for each k the fraction of the search space eliminated and
  the fraction of the oracle's gain kept by trying only the top-k retrieved, mean ± std over runs.
  Targets where no source beats the baseline have no gain to keep and are left out."""
  rows = []
  for k in ks:
    kept, counted = [], 0
    for baselines, transfer, rankings in runs:
      per_target = []
      for t, base in baselines.items():
        oracle = max(v for (_, tt), v in transfer.items() if tt == t)
        if oracle > base and len(rankings[t]) >= k:
          best = max(transfer[(r.task, t)] for r in retrieval.top_k(rankings[t], k))
          per_target.append((best - base) / (oracle - base))
      counted = max(counted, len(per_target))
      kept.append(float(np.mean(per_target)) if per_target else float("nan"))
    rows.append(Headline(k, library_size, 1.0 - k / library_size, _nanmean(kept), _nanstd(kept), len(runs), counted))
  return rows


def format_headline(rows: Sequence[Headline]) -> str:
  """One line per k, as the paper words it."""
  spread = lambda r: f" ± {100 * r.gain_kept_std:.0f}%" if r.runs > 1 else ""
  return "\n".join(
      f"top-{r.k} of {r.library_size}: eliminates {100 * r.eliminated:.0f}% of the source search space, keeps "
      f"{100 * r.gain_kept:.0f}%{spread(r)} of the oracle's gain (mean over {r.targets} targets"
      + (f", {r.runs} runs)" if r.runs > 1 else ")") for r in rows)


def write_headline_csv(path: str, rows: Sequence[Headline]) -> None:
  fileio.write_csv(
      path, ["k", "library_size", "search_space_eliminated", "oracle_gain_kept", "oracle_gain_kept_std", "runs",
             "targets"],
      [[r.k, r.library_size, f"{r.eliminated:.4f}", f"{r.gain_kept:.4f}", f"{r.gain_kept_std:.4f}", r.runs,
        r.targets] for r in rows])


def similarity_matrix(keys: Mapping[str, np.ndarray], measure: str) -> tuple[list[str], np.ndarray]:
  names = sorted(keys)
  matrix = np.array([[retrieval.similarity(keys[a], keys[b], measure) for b in names] for a in names])
  return names, matrix


def correlation(similarities: Sequence[float], transfers: Sequence[float]) -> dict[str, float]:
  """Pearson and Spearman correlation (with p-values) between similarity and transfer."""
  if np.ptp(similarities) == 0 or np.ptp(transfers) == 0:
    return {}  # undefined for constant inputs (e.g. no transfer effect at all)
  r, p = scipy.stats.pearsonr(similarities, transfers)
  rho, p_rho = scipy.stats.spearmanr(similarities, transfers)
  return {"pearson_r": float(r), "pearson_p": float(p), "spearman_rho": float(rho), "spearman_p": float(p_rho)}


# ----------------------------------------------------------------------------- figures (PNG + CSV)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save_png(fig, path: str) -> None:
  """A matplotlib figure as PNG at a local or gs:// path (savefig itself writes local files only)."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=120)
  fileio.atomic_write(path, buffer.getvalue())


def save_heatmap(path_stem: str, matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
                 title: str, value_label: str) -> tuple[str, str]:
  """Writes `<stem>.png` and `<stem>.csv` (rows x columns, with labels); returns both paths."""
  fileio.write_csv(path_stem + ".csv", [""] + list(col_labels),
                   [[r] + [f"{v:.6f}" for v in row] for r, row in zip(row_labels, matrix)])
  plt = _plt()
  fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 0.7 * len(col_labels)), max(4.0, 1.5 + 0.45 * len(row_labels))))
  finite = matrix[np.isfinite(matrix)]
  bound = float(np.abs(finite).max()) if finite.size else 1.0
  image = ax.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
  ax.set_xticks(range(len(col_labels)), col_labels, rotation=60, ha="right", fontsize=8)
  ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
  for i in range(matrix.shape[0]):
    for j in range(matrix.shape[1]):
      if np.isfinite(matrix[i, j]):
        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
  fig.colorbar(image, ax=ax, label=value_label)
  ax.set_title(title)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # long task names: tight_layout does its best
    fig.tight_layout()
  _save_png(fig, path_stem + ".png")
  plt.close(fig)
  return path_stem + ".png", path_stem + ".csv"


def save_clustered_similarity(path_stem: str, keys: Mapping[str, np.ndarray], measure: str) -> tuple[str, str]:
  """Task-embedding similarity heatmap, tasks ordered by average-linkage hierarchical clustering."""
  names, matrix = similarity_matrix(keys, measure)
  if len(names) > 2:
    distance = np.clip(1.0 - matrix, 0.0, None)
    condensed = distance[np.triu_indices(len(names), k=1)]
    order = scipy.cluster.hierarchy.leaves_list(scipy.cluster.hierarchy.linkage(condensed, "average"))
  else:
    order = np.arange(len(names))
  ordered = [names[i] for i in order]
  return save_heatmap(path_stem, matrix[np.ix_(order, order)], ordered, ordered,
                      f"task embedding similarity ({measure})", "similarity")


def save_scatter(path_stem: str, points: Sequence[tuple[str, str, float, float]]) -> dict[str, float]:
  """(source, target, similarity, relative error reduction) points -> PNG + CSV; returns correlations."""
  fileio.write_csv(path_stem + ".csv", ["source", "target", "similarity", "relative_error_reduction"],
                   [[s, t, f"{x:.6f}", f"{y:.6f}"] for s, t, x, y in points])
  xs, ys = [p[2] for p in points], [p[3] for p in points]
  stats = correlation(xs, ys) if len(points) > 2 else {}
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 4))
  ax.scatter(xs, ys, s=18)
  ax.set_xlabel("task embedding similarity")
  ax.set_ylabel("relative error reduction")
  if stats:
    ax.set_title(f"Pearson r = {stats['pearson_r']:.2f} (p = {stats['pearson_p']:.3g})")
  fig.tight_layout()
  _save_png(fig, path_stem + ".png")
  plt.close(fig)
  return stats


# ----------------------------------------------------------------------------- the grid's analysis


@dataclasses.dataclass
class GridAnalysis:
  """What a transfer grid shows: the retrieval table and SPoT's headline (mean ± std over seeds), the
  seed-mean grid behind them, and how well similarity predicts transfer."""

  rows: list[TableRow]
  headline: list[Headline]
  baselines: dict[str, float]  # target -> seed-mean baseline score
  transfer: dict[tuple[str, str], float]  # (source, target) -> seed-mean score after transfer
  rer: dict[tuple[str, str], float]  # (source, target) -> its relative error reduction (NaN: baseline 100)
  correlation: dict[str, float]  # similarity vs relative error reduction ({} when undefined)
  text: str  # the table and the headline, formatted


def analyse_grid(scores: Mapping[tuple[str, str, int], float], sources: Sequence[str], targets: Sequence[str],
                 seeds: Sequence[int], rankings: Mapping[str, Sequence[retrieval.Ranked]], out_dir: Optional[str],
                 eval_mode: Optional[str] = None) -> GridAnalysis:
  """The one analysis of a transfer grid (`spot-jax grid` and the quickstart).

  `scores[(method, target, seed)]`: method "baseline" (the target's own prompt tuning) and
  "from_<source>" (initialised from a source prompt); other methods are kept in scores.json only.
  `rankings[target]`: the sources by task-embedding similarity (averaged over the target's runs),
  read through for every seed. With `out_dir`: retrieval_table.csv, headline.csv, scores.json, the
  RER and score heatmaps and the similarity-vs-RER scatter (PNG + CSV).
  """
  sources, targets, seeds = list(sources), list(targets), list(seeds)
  per_seed = [({t: scores[("baseline", t, seed)] for t in targets},
               {(s, t): scores[(f"from_{s}", t, seed)] for s in sources for t in targets}, rankings)
              for seed in seeds]
  mean = lambda method, t: float(np.mean([scores[(method, t, seed)] for seed in seeds]))
  baselines = {t: mean("baseline", t) for t in targets}
  transfer = {(s, t): mean(f"from_{s}", t) for s in sources for t in targets}
  rer_grid = rer_matrix(transfer, baselines, sources, targets)  # [sources, targets]
  rer = {(s, t): float(rer_grid[i, j]) for i, s in enumerate(sources) for j, t in enumerate(targets)}
  ks = [k for k in RETRIEVAL_KS if k <= len(sources)]
  rows = over_runs([retrieval_table(*grid, ks=ks) for grid in per_seed])
  top = headline(per_seed, ks, len(sources))
  text = "\n".join([format_table(rows, eval_mode), "", format_headline(top)])
  if out_dir is None:
    return GridAnalysis(rows, top, baselines, transfer, rer, {}, text)
  similarity = {(r.task, t): r.similarity for t in targets for r in rankings[t]}
  points = [(s, t, similarity[(s, t)], rer[(s, t)]) for s in sources for t in targets if baselines[t] < 100]
  stats = save_scatter(f"{out_dir}/similarity_vs_transfer", points)
  save_heatmap(f"{out_dir}/transfer_rer", rer_grid, sources, targets,
               f"relative error reduction (mean over seeds {seeds})", "RER")
  save_heatmap(f"{out_dir}/transfer_scores", np.array([[transfer[(s, t)] for t in targets] for s in sources]),
               sources, targets, f"target score after transfer (mean over seeds {seeds})", "score")
  write_table_csv(f"{out_dir}/retrieval_table.csv", rows, eval_mode)
  write_headline_csv(f"{out_dir}/headline.csv", top)
  fileio.write_json(f"{out_dir}/scores.json", {"eval_mode": eval_mode,
                                               "scores": {"/".join(map(str, k)): v for k, v in scores.items()}})
  return GridAnalysis(rows, top, baselines, transfer, rer, stats, text)
