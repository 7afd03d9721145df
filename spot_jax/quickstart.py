"""The offline SPoT quickstart: the whole SPoT workflow on synthetic tasks, on a laptop CPU.

Why: no weights or datasets download here, yet a new user should see SPoT work end to end in
minutes, with honest numbers. The steps are the paper's, scaled down:
  (a) model-tune a tiny T5 on the synthetic families' base tasks -> the frozen backbone;
  (b) prompt-tune `library.runs_per_source` prompts per synthetic source task -> the prompt library
      (key: the prompt at an early step; value: the best prompt);
  (c) for each held-out target task: `retrieval.target_runs` short runs whose prompts are its task
      embeddings; for each target and seed: prompt tuning from random / sampled-vocabulary init (the
      baselines), retrieval by task-embedding similarity (averaged over the target's runs),
      transfer from every library prompt (the grid: gives the oracle and best-of-top-k),
      the top-3 weighted-average init, and the top-3 multi-task mixture (a prompt tuned on the
      three retrieved sources' data mixed with the target's, then tuned on the target);
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

from spot_jax import configs, evaluation, fileio, jobs, train
from spot_jax.checkpoints import hf
from spot_jax.data import pipeline, synthetic, tasks as tasks_lib, vocab as vocab_lib
from spot_jax.models import prompt as prompt_lib
from spot_jax.models import t5
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.spot import indicators, library as library_lib, retrieval, transferability as tr


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
    tune_cfg = configs.train_defaults()
    tune_cfg.update(dict(num_train_steps=b.steps, batch_size=b.batch_size, learning_rate=b.learning_rate,
                         log_every=b.log_every, checkpoint_every=b.steps, eval_every=0, prompt_length=0,
                         seed=b.seed, mesh_shape=tuple(config.train.mesh_shape), schedule=b.schedule,
                         warmup_steps=b.warmup_steps))
    iterator = pipeline.make_train_iterator("synth_pretrain", vocab, batch_size=b.batch_size,
                                            input_length=b.input_length, target_length=config.data.target_length,
                                            seed=b.seed)
    try:
      result = train.tune_model(tune_cfg, os.path.join(workdir, "runs", "backbone"), model_config=model_cfg,
                                params=t5.init_params(model_cfg, jax.random.key(b.seed), jit=True), train_iter=iterator,
                                name="backbone")
    finally:
      iterator.close()
    hf.save_hf_t5(model_cfg, result.params, path)
  model = ml_collections.ConfigDict(config.model.to_dict())
  model.hf_path = path
  return jobs.load_backbone(model)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the quickstart; prints the table and where the files are; returns the figures.

  The workdir belongs to one quickstart config (checked, and locked while it runs); each training
  run inside checks its own sub-directory too.
  """
  with jobs.claim_job_workdir(config, workdir, "quickstart", frozen_fingerprint="made by the quickstart"):
    return _run(config, workdir)


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  start = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  data_dir = os.path.join(workdir, "data")
  synthetic.prepare(data_dir)
  tasks_lib.set_data_dir(synthetic.DATASET, data_dir)
  vocab = prepare_vocab(workdir, data_dir, config.vocab_size)
  _log(start, f"synthetic tasks built, SentencePiece vocab of {vocab.vocab_size} pieces")

  backbone = prepare_backbone(config, workdir, vocab)
  if config.report_backbone:
    no_prompt = np.zeros((0, backbone.config.d_model), np.float32)
    mode = evaluation.eval_mode(config)
    base_data = ml_collections.ConfigDict(config.data.to_dict())
    base_data.input_length = config.backbone.input_length  # the base tasks' inputs are longer
    known = {t.replace("synth_", ""): evaluation.make_evaluator(t, vocab, backbone, base_data, mode,
                                                              mesh_shape=config.train.mesh_shape)(no_prompt)["score"]
             for t in synthetic.PRETRAIN_TASKS}
    _log(start, "backbone on its base tasks (no prompt): " + ", ".join(f"{k} {v:.0f}" for k, v in known.items()))
  _log(start, f"frozen backbone ready: d_model {backbone.config.d_model}, fingerprint {backbone.fingerprint}")

  # (b) the library: library.runs_per_source prompts per source task.
  targets, seeds = list(config.grid.targets), list(config.grid.seeds)
  source_cfg = ml_collections.ConfigDict(config.to_dict())
  source_cfg.train.update(dict(num_train_steps=config.source_steps, checkpoint_every=config.source_steps,
                               eval_every=config.source_steps // 4, log_every=config.source_steps // 4))
  library = jobs.build_library(source_cfg, workdir, backbone=backbone, vocab=vocab, sources=config.library.sources,
                               library_path=os.path.join(workdir, "library"), verbose=config.verbose,
                               claim_workdir=False)
  sources = list(config.grid.sources) or library.names()  # the grid's sources: prompts of the library
  _log(start, f"library: {len(library)} source prompts")

  # (c) targets. First seed: the full grid (random-init baseline + transfer from every source). Every
  # seed: vocab init, retrieved top-1, oracle source (the grid's best), top-k weighted average, top-k
  # multi-task mixture.
  runs = jobs.transfer_grid(config, workdir, backbone=backbone, vocab=vocab, library=library, sources=sources,
                            targets=targets, seeds=seeds[:1], embed_targets=False, verbose=config.verbose)
  # SPoT's target embeddings: `retrieval.target_runs` short runs per task (seeds train.seed + i; run 0
  # shares the library keys' init draw), made once per task; a source's similarity is the mean over them.
  target_keys = jobs.target_embeddings(config, {t: os.path.join(workdir, "targets", t, "embedding") for t in targets},
                                       backbone=backbone, vocab=vocab)
  _log(start, f"transfer grid ({len(sources)} sources x {len(targets)} targets, seed {seeds[0]}) done")
  values = {name: library.get(name).value for name in library.names()}
  oracle_source = {t: max(sources, key=lambda s: runs.scores[(f"from_{s}", t, seeds[0])]) for t in targets}
  rankings: dict[tuple[str, int], dict[str, list[retrieval.Ranked]]] = {}
  cells, mixture_cells = [], []  # every (target, seed)'s runs, trained train.prompts_per_step at a time
  for seed, target in itertools.product(seeds, targets):
    rankings[(target, seed)] = jobs.rank_library(library, target_keys[target], config.retrieval.measures)
    ranking = rankings[(target, seed)][config.retrieval.measure]
    if seed != seeds[0]:
      cells.append((target, seed, "baseline", jobs.make_prompt_init(config.prompt_init, backbone, vocab, target), False))
    cells += [(target, seed, f"from_{source}", prompt_lib.from_array(values[source]), False)
              for source in sorted({ranking[0].task, oracle_source[target]})
              if (f"from_{source}", target, seed) not in runs.scores]
    weights = retrieval.weighted_average_weights(ranking, config.retrieval.k_average)
    cells.append((target, seed, "weighted_average",
                  prompt_lib.from_array(retrieval.weighted_average_prompt(values, weights)), False))
    cells.append((target, seed, "vocab_init", prompt_lib.sampled_vocab(backbone.params["token_embedder"]), False))
    mixture_cells.append((os.path.join(workdir, "targets", target, f"seed{seed}", "mixture_source"), target, seed,
                          list(dict.fromkeys(library_lib.split_entry_name(r.task)[0]  # the prompts' tasks
                                             for r in retrieval.top_k(ranking, config.retrieval.k_mixture)))))
  mixture_cfg = ml_collections.ConfigDict(config.to_dict())  # top-k mixture source runs: fewer evaluations
  mixture_cfg.train.eval_every = config.retrieval.mixture_eval_every
  mixed = jobs.mixture_prompts(mixture_cfg, mixture_cells, backbone=backbone, vocab=vocab, verbose=config.verbose)
  cells += [(target, seed, "mixture", prompt_lib.from_array(prompt), False)
            for (_, target, seed, _), prompt in zip(mixture_cells, mixed)]
  jobs.train_targets(config, workdir, runs, cells, backbone=backbone, vocab=vocab, verbose=config.verbose)
  for seed, target in itertools.product(seeds, targets):
    top = rankings[(target, seed)][config.retrieval.measure][0].task
    score = lambda method: runs.scores[(method, target, seed)]
    _log(start, f"{target} seed {seed}: random init {score('baseline'):.1f}, vocab init {score('vocab_init'):.1f}, "
                f"retrieved {top} {score(f'from_{top}'):.1f}, oracle "
                f"{oracle_source[target]} {score(f'from_{oracle_source[target]}'):.1f}")
  return report(config, workdir, runs, target_keys, rankings, oracle_source, library, sources, start,
                backbone=backbone, vocab=vocab)


def report(config, workdir, runs, target_keys, rankings, oracle_source, library, sources, start, *,
           backbone: jobs.Backbone, vocab: vocab_lib.SentencePieceVocab) -> dict[str, Any]:
  """The paper-style table (seed means), the grid's analysis (`spot-jax grid`'s), per-target
  retrieval, figures (PNG + CSV)."""
  targets, seeds = list(config.grid.targets), list(config.grid.seeds)
  first, measure = seeds[0], config.retrieval.measure
  out = os.path.join(workdir, "results")
  os.makedirs(out, exist_ok=True)
  scores = runs.scores

  def seed_table(seed: int) -> list[tr.TableRow]:
    """One seed's table; the oracle is each target's best source on the seed-0 grid, run with this seed."""
    score = lambda method, t: scores[(method, t, seed)]
    per_target = lambda method_of: {t: score(method_of(t), t) for t in targets}
    return tr.retrieval_table(
        per_target(lambda t: "baseline"),
        {(oracle_source[t], t): score(f"from_{oracle_source[t]}", t) for t in targets},
        {t: rankings[(t, seed)][measure] for t in targets}, ks=(),
        extra={"prompt tuning, vocab init": per_target(lambda t: "vocab_init"),
               "SPoT: retrieved top-1": per_target(lambda t: f"from_{rankings[(t, seed)][measure][0].task}"),
               f"SPoT: top-{config.retrieval.k_average} weighted average": per_target(lambda t: "weighted_average"),
               f"SPoT: top-{config.retrieval.k_mixture} multi-task mixture": per_target(lambda t: "mixture")})

  rows = tr.over_runs([seed_table(seed) for seed in seeds])  # mean ± std over seeds
  mode = evaluation.eval_mode(config)
  tr.write_table_csv(os.path.join(out, "table_seed_mean.csv"), rows, mode)
  grid = tr.analyse_grid(scores, sources, targets, [first], {t: rankings[(t, first)][measure] for t in targets},
                         out, mode)
  for t in targets:
    retrieval.write_ranking_csv(os.path.join(out, f"ranking_{t}.csv"), t, rankings[(t, first)])
  keys = {**library.keys(), **{f"{t} (target)": target_keys[t][0] for t in targets}}  # a target's first run
  tr.save_clustered_similarity(os.path.join(out, "task_similarity"), keys, measure)
  su_lines, indicator_rows = su_analysis(config, workdir, backbone, vocab, library, sources, grid, out)
  lines = []
  for t in targets:
    ranking = rankings[(t, first)][measure]
    family_rank = 1 + [r.task for r in ranking].index(_same_family_best(t, ranking))
    lines.append(f"  {t:<22} top-3 {', '.join(f'{r.task} ({r.similarity:.2f})' for r in ranking[:3])}; "
                 f"first same-family source at rank {family_rank}")
  elapsed = time.perf_counter() - start
  text = "\n".join([
      "", f"SPoT quickstart: {len(sources)} source prompts in the library, {len(targets)} held-out targets, seeds {seeds}",
      "Scores: best validation accuracy / exact match during training (0-100), mean ± standard deviation "
      "over seeds; "
      "relative change = mean relative error reduction vs random-init prompt tuning (targets whose baseline "
      "is already 100 are left out of it).", "",
      tr.format_table(rows, mode), "",
      f"From the seed-{first} transfer grid (every source -> every target), and SPoT's headline (Vu et al.: "
      "eliminating 69% of the search space, keeping 90% of the oracle's gain):", grid.text, "",
      f"Retrieval by task-embedding similarity ({measure}, a source's similarity averaged over the target's "
      f"{len(target_keys[targets[0]])} embedding runs; {len(library)} prompts, "
      f"{config.library.runs_per_source} per source task):", *lines, "",
      "Similarity vs relative error reduction over the grid: " + (
          f"Pearson r = {stats['pearson_r']:.2f} (p = {stats['pearson_p']:.2g}), Spearman rho = "
          f"{stats['spearman_rho']:.2f}" if (stats := grid.correlation) else "undefined (no variation)"), "",
      *su_lines, "",
      f"Files: {out}/ (table_seed_mean.csv, retrieval_table.csv and headline.csv of the grid, ranking_*.csv, "
      "transfer_rer.png/.csv, transfer_scores.png/.csv, task_similarity.png/.csv, similarity_vs_transfer.png/.csv, "
      "zero_shot_relative.png/.csv, indicator_correlations.csv/.txt, scores.json)",
      f"Wall time: {elapsed / 60:.1f} min ({elapsed:.0f} s)", ""])
  print(text, flush=True)
  fileio.atomic_write(os.path.join(out, "summary.txt"), text)
  return {"rows": rows, "grid_rows": grid.rows, "headline": grid.headline, "correlation": grid.correlation,
          "indicators": indicator_rows, "wall_time_s": elapsed}


def su_analysis(config, workdir, backbone, vocab, library, sources, grid: tr.GridAnalysis,
                out) -> tuple[list[str], list]:
  """Su et al.'s view of the same tasks: zero-shot transfer (each source prompt used as is on each
  target, relative to the target's own prompt) and how well each transferability indicator
  (embedding similarities, activated-neuron overlap) predicts the measured transfer (RER)."""
  targets, first, grid_baselines = list(config.grid.targets), config.grid.seeds[0], grid.baselines
  values = {s: library.get(s).value for s in sources}
  own = {t: prompt_io.load_prompt(os.path.join(workdir, "targets", t, f"seed{first}", "baseline"), "best")
         for t in targets}
  zero = jobs.zero_shot_grid(config, backbone=backbone, vocab=vocab, prompts=values, targets=targets)
  relative = {(s, t): 100.0 * zero[(s, t)] / grid_baselines[t] if grid_baselines[t] else float("nan")
              for s in sources for t in targets}
  tr.save_heatmap(os.path.join(out, "zero_shot_relative"),
                  np.array([[relative[(s, t)] for t in targets] for s in sources]), sources, targets,
                  "zero-shot transfer, % of the target's own prompt", "relative performance (%)")
  related = lambda same: [v for (s, t), v in relative.items() if (_family(s) == _family(t)) == same]
  states = indicators.activation_states(backbone.config, backbone.params, {**values, **own}, vocab=vocab)
  rows = indicators.indicator_correlations(values, grid.rer, target_prompts=own, activations=states)
  indicators.write_correlations(os.path.join(out, "indicator_correlations"), rows)
  lines = [
      "Zero-shot transfer (Su et al.): a source prompt used as is on a target, as % of the target's own "
      f"prompt: same-family sources {np.nanmean(related(True)):.0f}%, other families "
      f"{np.nanmean(related(False)):.0f}% (mean over pairs).",
      "Which indicator predicts transfer? Similarity(source prompt, the target's own prompt) vs relative "
      f"error reduction over the seed-{first} grid:", indicators.format_correlations(rows)]
  return lines, rows


def _same_family_best(target: str, ranking: list[retrieval.Ranked]) -> str:
  """The highest-ranked source of the target's own family (the truly related one)."""
  return next(r.task for r in ranking if _family(r.task) == _family(target))


def _family(name: str) -> str | None:
  """A synthetic task's family; a library entry's (`<task>@run<r>`) is its task's."""
  return synthetic.FAMILY.get(library_lib.split_entry_name(name)[0])
