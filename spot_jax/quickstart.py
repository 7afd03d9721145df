"""The offline SPoT quickstart: the whole SPoT workflow on synthetic tasks, on a laptop CPU.

Why: no weights or datasets download here, yet a new user should see SPoT work end to end in
minutes, with honest numbers. The steps are the paper's, scaled down:
  (a) model-tune a tiny T5 on the synthetic families' base tasks -> the frozen backbone;
  (b) prompt-tune one prompt per synthetic source task -> the prompt library
      (key: the prompt at an early step; value: the best prompt);
  (c) for each held-out target task and seed: prompt tuning from random / sampled-vocabulary init
      (the baselines; its early prompt is the target's task embedding), retrieval by task-embedding
      similarity, transfer from every library prompt (the grid: gives the oracle and best-of-top-k),
      and the top-3 weighted-average init;
  (d) the paper-style table, the retrieval ranking, heatmaps/scatter (PNG + CSV).
Every training call goes through `spot_jax.train`. Re-running with the same workdir reuses what is
finished (backbone, library entries, runs) and resumes what is not.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from spot_jax import jobs, train
from spot_jax.checkpoints import hf
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.data import pipeline, synthetic, tasks as tasks_lib, vocab as vocab_lib
from spot_jax.models import prompt as prompt_lib
from spot_jax.models import t5
from spot_jax.spot import library as library_lib
from spot_jax.spot import retrieval, transferability as tr


def _log(start: float, message: str) -> None:
  print(f"[quickstart {time.perf_counter() - start:6.0f}s] {message}", flush=True)


def prepare_vocab(workdir: str, data_dir: str, size: int) -> vocab_lib.SentencePieceVocab:
  path = os.path.join(workdir, "vocab", "spm.model")
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    vocab_lib.train_sentencepiece(synthetic.corpus_lines(data_dir), path[: -len(".model")], size)
  return vocab_lib.SentencePieceVocab(path)


def prepare_backbone(config: ml_collections.ConfigDict, workdir: str,
                     vocab: vocab_lib.SentencePieceVocab) -> jobs.Backbone:
  """Model-tunes a tiny T5 on the base tasks (once), saves it as a HF directory, loads it frozen."""
  path = os.path.join(workdir, "backbone")
  if not os.path.exists(path):
    b = config.backbone
    model_cfg = t5.get_config(b.preset, vocab_size=vocab.vocab_size, dropout_rate=b.dropout_rate,
                              **dict(b.overrides))
    tune_cfg = train.default_config()
    tune_cfg.update(dict(num_train_steps=b.steps, batch_size=b.batch_size, learning_rate=b.learning_rate,
                         log_every=b.log_every, checkpoint_every=b.steps, eval_every=0, prompt_length=0,
                         seed=b.seed, mesh_shape=tuple(config.train.mesh_shape)))
    iterator = pipeline.make_train_iterator("synth_pretrain", vocab, batch_size=b.batch_size,
                                            input_length=config.data.input_length,
                                            target_length=config.data.target_length, seed=b.seed)
    try:
      result = train.tune_model(tune_cfg, os.path.join(workdir, "runs", "backbone"), model_config=model_cfg,
                                params=t5.init_params(model_cfg, jax.random.key(b.seed)), train_iter=iterator,
                                name="backbone")
    finally:
      iterator.close()
    hf.save_hf_t5(model_cfg, result.params, path)
  model = ml_collections.ConfigDict(config.model.to_dict())
  model.hf_path = path
  return jobs.load_backbone(model)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the quickstart; prints the table and where the files are; returns the figures."""
  start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  data_dir = os.path.join(workdir, "data")
  synthetic.prepare(data_dir)
  tasks_lib.set_data_dir(synthetic.DATASET, data_dir)
  vocab = prepare_vocab(workdir, data_dir, config.vocab_size)
  _log(start, f"synthetic tasks built, SentencePiece vocab of {vocab.vocab_size} pieces")

  backbone = prepare_backbone(config, workdir, vocab)
  for task_name in synthetic.PRETRAIN_TASKS[:2] if config.report_backbone else ():
    score = jobs.make_evaluator(task_name, vocab, backbone, config.data)(np.zeros((0, backbone.config.d_model)))
    _log(start, f"backbone on {task_name} (no prompt): score {score['score']:.1f}")
  _log(start, f"frozen backbone ready: {backbone.config.d_model}-d, fingerprint {backbone.fingerprint}")

  sources, targets = list(config.sources), list(config.targets)
  library = jobs.build_library(config, workdir, backbone=backbone, vocab=vocab, sources=sources,
                               library_path=os.path.join(workdir, "library"), verbose=config.verbose)
  _log(start, f"library: {len(library)} source prompts")

  # (c) targets: baseline (random init; its early prompt = the task embedding) + transfer from every source.
  grid_cfg = ml_collections.ConfigDict(config.to_dict())
  grid_cfg.prompt_init.kind = "random_uniform"
  runs = jobs.transfer_grid(grid_cfg, workdir, backbone=backbone, vocab=vocab, library=library, sources=sources,
                            targets=targets, seeds=config.seeds, verbose=config.verbose)
  _log(start, f"transfer grid done: {len(runs.scores)} target runs")
  values = {name: library.get(name).value for name in library.names()}
  rankings: dict[tuple[str, int], dict[str, list[retrieval.Ranked]]] = {}
  for seed, target in itertools.product(config.seeds, targets):
    rankings[(target, seed)] = jobs.rank_library(library, runs.keys[(target, seed)], config.retrieval.measures)
    ranking = rankings[(target, seed)][config.retrieval.measure]
    weights = retrieval.weighted_average_weights(ranking, config.retrieval.k_average)
    common = dict(backbone=backbone, vocab=vocab, target=target, seed=seed, verbose=config.verbose)
    jobs.train_target(config, workdir, runs, method="weighted_average",
                      init=prompt_lib.from_array(retrieval.weighted_average_prompt(values, weights)), **common)
    jobs.train_target(config, workdir, runs, method="vocab_init",
                      init=prompt_lib.sampled_vocab(backbone.params["token_embedder"]), **common)
    scores = runs.scores
    best = max(sources, key=lambda s: scores[(f"from_{s}", target, seed)])
    _log(start, f"{target} seed {seed}: random {scores[('baseline', target, seed)]:.1f}, vocab "
                f"{scores[('vocab_init', target, seed)]:.1f}, retrieved {ranking[0].task} "
                f"{scores[(f'from_{ranking[0].task}', target, seed)]:.1f}, oracle {best} "
                f"{scores[(f'from_{best}', target, seed)]:.1f}")
  target_keys = {t: runs.keys[(t, config.seeds[0])] for t in targets}
  return report(config, workdir, runs.scores, rankings, target_keys, library, start)


def report(config, workdir, scores, rankings, target_keys, library, start) -> dict[str, Any]:
  """Seed-averaged table, per-target retrieval, figures. Scores are best validation scores (0-100)."""
  sources, targets, seeds = list(config.sources), list(config.targets), list(config.seeds)
  out = os.path.join(workdir, "results")
  os.makedirs(out, exist_ok=True)

  def mean_over_seeds(method, target):
    return float(np.mean([scores[(method, target, s)] for s in seeds]))

  baselines = {t: mean_over_seeds("baseline", t) for t in targets}
  transfer = {(s, t): mean_over_seeds(f"from_{s}", t) for s in sources for t in targets}
  first = seeds[0]
  ranking_by_target = {t: rankings[(t, first)][config.retrieval.measure] for t in targets}
  per_seed_retrieved = {t: float(np.mean([scores[(f"from_{rankings[(t, s)][config.retrieval.measure][0].task}", t, s)]
                                         for s in seeds])) for t in targets}
  rows = tr.retrieval_table(
      baselines, transfer, ranking_by_target, ks=[k for k in (1, 3, 6, 9, 12, 15) if k <= len(sources)],
      extra={"prompt tuning, vocab init": {t: mean_over_seeds("vocab_init", t) for t in targets},
             "SPoT retrieved (per seed)": per_seed_retrieved,
             f"top-{config.retrieval.k_average} weighted average": {t: mean_over_seeds("weighted_average", t)
                                                                     for t in targets}})
  table = tr.format_table(rows)
  tr.write_table_csv(os.path.join(out, "retrieval_table.csv"), rows)
  for t in targets:
    retrieval.write_ranking_csv(os.path.join(out, f"ranking_{t}.csv"), t, rankings[(t, first)])
  rer = tr.rer_matrix(transfer, baselines, sources, targets)
  tr.save_heatmap(os.path.join(out, "transfer_rer"), rer, sources, targets,
                  "relative error reduction (seed mean)", "RER")
  keys = {**library.keys(), **{f"{t} (target)": k for t, k in target_keys.items()}}
  tr.save_clustered_similarity(os.path.join(out, "task_similarity"), keys, config.retrieval.measure)
  points = [(s, t, retrieval.similarity(target_keys[t], library.get(s).key, config.retrieval.measure),
             tr.relative_error_reduction(transfer[(s, t)], baselines[t])) for s in sources for t in targets]
  stats = tr.save_scatter(os.path.join(out, "similarity_vs_transfer"), points)
  per_target = [f"  {t:<22} baseline {baselines[t]:5.1f}  retrieved {ranking_by_target[t][0].task:<22} "
                f"{transfer[(ranking_by_target[t][0].task, t)]:5.1f}  oracle "
                f"{max(transfer[(s, t)] for s in sources):5.1f}  same-family source ranked #"
                f"{1 + [r.task for r in ranking_by_target[t]].index(_same_family_best(t, ranking_by_target[t]))}"
                for t in targets]
  elapsed = time.perf_counter() - start
  text = "\n".join([
      "", f"SPoT quickstart: {len(sources)} source tasks, {len(targets)} held-out targets, seeds {seeds}",
      f"(scores: best validation score over training, 0-100, averaged over seeds; baseline = random init)", "",
      table, "", f"retrieval ({config.retrieval.measure}), seed {first}:", *per_target, "",
      "similarity vs transfer: " + (f"Pearson r = {stats['pearson_r']:.2f} (p = {stats['pearson_p']:.2g}), "
                                    f"Spearman rho = {stats['spearman_rho']:.2f}" if stats else "n/a"),
      f"files: {out}/ (retrieval_table.csv, ranking_*.csv, transfer_rer.png/.csv, task_similarity.png/.csv, "
      "similarity_vs_transfer.png/.csv)", f"wall time: {elapsed / 60:.1f} min", ""])
  print(text, flush=True)
  with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write(text)
  jobs.write_json(os.path.join(out, "scores.json"),
                  {"/".join(map(str, k)): v for k, v in scores.items()})
  return {"rows": rows, "correlation": stats, "wall_time_s": elapsed, "baselines": baselines,
          "transfer": transfer}


def _same_family_best(target: str, ranking: list[retrieval.Ranked]) -> str:
  """The highest-ranked source of the target's own family (the truly related one)."""
  family = synthetic.FAMILY[target]
  return next(r.task for r in ranking if synthetic.FAMILY.get(r.task) == family)
