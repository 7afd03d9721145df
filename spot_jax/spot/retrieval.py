"""Task-embedding similarity and SPoT's retrieval strategies.

Why: targeted SPoT ranks the library's source tasks by how similar their task embeddings (early
prompts) are to the target's, then initialises the target prompt from the best of them. The two
similarity measures and three strategies are those of Vu et al. (ACL 2022), section 5:

  cosine of average tokens   cos(mean_i a_i, mean_j b_j)
  per-token average cosine   1/L^2 sum_i sum_j cos(a_i, b_j)

  best of top-k        k target runs, one from each of the top-k source prompts; keep the best
  top-k weighted avg   one run from sum_i w_i p_i, w_i proportional to the similarities of the top k
  top-k mixture        source-tune on the top-k sources' data mixed with the target's, then use as init
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from spot_jax import fileio

MEASURES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}


def _measure(name: str):
  def register(fn):
    MEASURES[name] = fn
    return fn
  return register


def _unit(x: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.maximum(norm, 1e-12)


@_measure("average_tokens_cosine")
def average_tokens_cosine(a: np.ndarray, b: np.ndarray) -> float:
  """cos(mean_i a_i, mean_j b_j) of two prompts [L, d]."""
  a_mean, b_mean = np.asarray(a, np.float64).mean(0), np.asarray(b, np.float64).mean(0)
  return float(_unit(a_mean) @ _unit(b_mean))


@_measure("per_token_cosine")
def per_token_cosine(a: np.ndarray, b: np.ndarray) -> float:
  """1/(L_a L_b) sum_i sum_j cos(a_i, b_j) of two prompts [L, d]."""
  return float((_unit(np.asarray(a, np.float64)) @ _unit(np.asarray(b, np.float64)).T).mean())


def similarity(a: np.ndarray, b: np.ndarray, measure: str = "average_tokens_cosine") -> float:
  if measure not in MEASURES:
    raise ValueError(f"Unknown similarity measure {measure!r}; choose one of {sorted(MEASURES)}.")
  return MEASURES[measure](a, b)


@dataclasses.dataclass(frozen=True)
class Ranked:
  task: str
  similarity: float


def rank_sources(target_key: np.ndarray | Sequence[np.ndarray], source_keys: Mapping[str, np.ndarray],
                 measure: str = "average_tokens_cosine", exclude: Sequence[str] = ()) -> list[Ranked]:
  """Sources sorted by similarity to the target's task embedding (most similar first; ties by name).

  Several target embeddings (a list: one per target prompt-tuning run) -> a source's similarity is
  the mean of its similarities to each, as SPoT averages over the target's runs."""
  targets = list(target_key) if isinstance(target_key, (list, tuple)) else [target_key]
  if not targets:
    raise ValueError("rank_sources needs at least one target embedding.")
  ranked = [Ranked(name, float(np.mean([similarity(t, key, measure) for t in targets])))
            for name, key in source_keys.items() if name not in exclude]
  return sorted(ranked, key=lambda r: (-r.similarity, r.task))


def top_k(ranking: Sequence[Ranked], k: int) -> list[Ranked]:
  if k < 1:
    raise ValueError(f"k must be >= 1; got {k}.")
  return list(ranking[:k])


def weighted_average_weights(ranking: Sequence[Ranked], k: int) -> dict[str, float]:
  """Weights of the top-k weighted average: similarities (negatives clipped to 0), normalised to 1.
  If all top-k similarities are <= 0, the weights are uniform."""
  chosen = top_k(ranking, k)
  raw = np.array([max(r.similarity, 0.0) for r in chosen])
  weights = raw / raw.sum() if raw.sum() > 0 else np.full(len(chosen), 1.0 / len(chosen))
  return {r.task: float(w) for r, w in zip(chosen, weights)}


def weighted_average_prompt(values: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
  """sum_i w_i p_i over the named source prompts [L, d]."""
  return sum(w * np.asarray(values[name], np.float64) for name, w in weights.items()).astype(np.float32)


def write_ranking_csv(path: str, target: str, rankings: Mapping[str, Sequence[Ranked]]) -> None:
  """One row per (measure, rank): target, measure, rank, source, similarity."""
  fileio.write_csv(path, ["target", "measure", "rank", "source", "similarity"],
                   [[target, measure, rank, r.task, f"{r.similarity:.6f}"]
                    for measure, ranking in rankings.items() for rank, r in enumerate(ranking, start=1)])
