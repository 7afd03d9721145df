"""Jobs: thin compositions of config -> task -> pipeline -> trainer -> library -> retrieval.

Why: every user-facing command (train, eval, library build, retrieve, transfer, grid, quickstart)
is a few lines over these functions; none has its own loop — all training goes through
`spot_jax.train`. Configs are ml_collections ConfigDicts from `experiments/` (see
`spot_jax/configs.py` for the fields).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np

from spot_jax import configs, distributed, errors, evaluation, fileio, train
from spot_jax.checkpoints import fingerprint, hf, t5x
from spot_jax.checkpoints import workdir as workdir_lib
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.data import mixtures as mixtures_lib, pipeline, tasks as tasks_lib, vocab as vocab_lib
from spot_jax.models import prompt as prompt_lib
from spot_jax.models import t5
from spot_jax.spot import library as library_lib
from spot_jax.spot import retrieval


@dataclasses.dataclass(frozen=True)
class Backbone:
  """The frozen model a job runs on, with its fingerprint (what a library entry is tied to)."""

  config: t5.T5Config
  params: Any
  fingerprint: str


def load_backbone(model: ml_collections.ConfigDict) -> Backbone:
  """`model.hf_path` (a Hugging Face T5 directory) -> frozen params, with runtime options applied."""
  if not model.get("hf_path"):
    raise ValueError("config.model.hf_path is empty: point it at a local Hugging Face T5 directory "
                     "(config.json + model.safetensors) or a T5X checkpoint directory, e.g. "
                     "--config.model.hf_path=/path/to/t5-base-lm-adapt.")
  options = dict(dtype=model.get("dtype", "float32"), dropout_rate=model.get("dropout_rate", 0.1))
  if t5x.is_t5x_checkpoint(model.hf_path):  # the paper's checkpoints, as t5x wrote them (float32 params as HF's)
    cfg, params = t5x.load_t5x_t5(model.hf_path, param_dtype="float32", **options)
  else:
    cfg, params = hf.load_hf_t5(model.hf_path, **options)
  return Backbone(cfg, params, fingerprint.model_fingerprint(cfg, params))


def load_vocab(model: ml_collections.ConfigDict) -> vocab_lib.SentencePieceVocab:
  if not model.get("vocab_path"):
    raise ValueError("config.model.vocab_path is empty: point it at the SentencePiece .model of the backbone.")
  return vocab_lib.SentencePieceVocab(model.vocab_path, extra_ids=model.get("extra_ids", 0))


# ----------------------------------------------------------------------------- evaluation


# ----------------------------------------------------------------------------- prompt init


def make_prompt_init(init: ml_collections.ConfigDict, backbone: Backbone, vocab: vocab_lib.SentencePieceVocab,
                     task_name: Optional[str] = None) -> prompt_lib.Initializer:
  """config.prompt_init -> an initializer. kind: random_uniform | sampled_vocab | class_labels | npy |
  checkpoint | library (source prompt of `init.source` in library `init.library`)."""
  kind = init.kind
  embedding = backbone.params["token_embedder"]
  if kind == "random_uniform":
    return prompt_lib.random_uniform(init.get("scale", 0.5))
  if kind == "sampled_vocab":
    return prompt_lib.sampled_vocab(embedding, init.get("population", 5000))
  if kind == "class_labels":
    if task_name is None:
      raise errors.ConfigError("config.prompt_init.kind = 'class_labels' needs a task with label words to evaluate "
                               "on (a mixture has none): set config.eval_task, or another prompt_init.kind.")
    words = tasks_lib.get_task(task_name).label_words or ()
    return prompt_lib.class_labels(embedding, [vocab.encode(w) for w in words], init.get("population", 5000))
  if kind == "npy":
    run_dir = os.path.dirname(os.path.dirname(init.path))  # <run>/prompts/<name>.npy: a run's named prompt
    if os.path.basename(os.path.dirname(init.path)) == prompt_io.PROMPTS_DIR and workdir_lib.read_record(run_dir):
      check_same_model(run_dir, backbone, init.get("allow_other_model", False))
    return prompt_lib.from_array(prompt_io.load_npy(init.path))  # a released prompt (prompt-tuning's format)
  if kind == "checkpoint":
    check_same_model(init.path, backbone, init.get("allow_other_model", False))
    return prompt_lib.from_array(prompt_io.load_prompt(init.path, init.get("which", "best")))  # a run's named prompt
  if kind == "library":
    allow = init.get("allow_other_model", False)
    library = library_lib.PromptLibrary(init.library, model_fingerprint=None if allow else backbone.fingerprint)
    return prompt_lib.from_array(library.get(init.source).value)
  raise ValueError(f"Unknown prompt_init.kind {kind!r}; choose random_uniform, sampled_vocab, class_labels, "
                   "npy, checkpoint or library.")


@dataclasses.dataclass
class PromptScores:
  """`spot-jax eval`'s result: each prompt's metrics, and the ensemble's when asked for."""

  task: str
  mode: str
  names: list[str]  # where each prompt came from (config.prompt_init's kind, or the given path)
  per_prompt: list[dict[str, float]]
  ensemble: Optional[dict[str, float]] = None
  ensemble_method: Optional[str] = None

  def lines(self) -> list[str]:
    show = lambda metrics: ", ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items()))
    if len(self.names) == 1 and self.ensemble is None:
      return [f"eval mode {self.mode}: " + show(self.per_prompt[0])]
    lines = [f"eval mode {self.mode}, task {self.task}, {len(self.names)} prompts:"]
    lines += [f"  prompt {i} ({name}): " + show(metrics)
              for i, (name, metrics) in enumerate(zip(self.names, self.per_prompt), start=1)]
    if self.ensemble is not None:
      lines.append(f"  ensemble ({self.ensemble_method} of {len(self.names)} prompts): " + show(self.ensemble))
    return lines


def evaluate_prompts(config: ml_collections.ConfigDict, paths: Sequence[str], *, backbone: Backbone,
                     vocab: vocab_lib.SentencePieceVocab, ensemble: Optional[str] = None) -> PromptScores:
  """`spot-jax eval`: config.prompt_init's prompt on config.task, or each of `paths` (.npy files or
  run directories: their best prompt, checked to be this model's), and with `ensemble` ('vote')
  their ensemble (Lester et al.)."""
  mode = evaluation.eval_mode(config)
  shape = (config.train.prompt_length, backbone.config.d_model)
  if paths:
    allow = config.prompt_init.get("allow_other_model", False)  # the same-model check as config.prompt_init's
    inits = [make_prompt_init(ml_collections.ConfigDict(dict(
        kind="npy" if path.endswith(".npy") else "checkpoint", path=path, which="best", allow_other_model=allow)),
        backbone, vocab, config.task) for path in paths]
    names = list(paths)
  else:
    inits, names = [make_prompt_init(config.prompt_init, backbone, vocab, config.task)], [config.prompt_init.kind]
  prompts = [init(jax.random.key(config.train.seed if not paths else 0), shape) for init in inits]
  where = dict(mesh_shape=config.train.mesh_shape)
  if ensemble:
    result = evaluation.make_ensemble_evaluator(config.task, vocab, backbone, config.data, mode, method=ensemble,
                                                **where)(prompts)
    return PromptScores(config.task, mode, names, result.per_prompt, result.ensemble, ensemble)
  evaluate = evaluation.make_evaluator(config.task, vocab, backbone, config.data, mode, **where)
  return PromptScores(config.task, mode, names, [evaluate(prompt) for prompt in prompts])


def describe_model(hf_path: str) -> str:
  """`spot-jax model-info`: a Hugging Face T5 directory's config, parameter count and fingerprint."""
  cfg, params = hf.load_hf_t5(hf_path)
  count = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))
  return f"{cfg}\nparameters: {count:,}\nfingerprint: {fingerprint.model_fingerprint(cfg, params)}"


def check_same_model(run_dir: str, backbone: Backbone, allow_other_model: bool = False) -> None:
  """Refuses a prompt from a run on another frozen model (same shapes or not): a prompt means
  something only on its own model; cross-model transfer goes through the projector."""
  if allow_other_model:
    return
  record = workdir_lib.read_record(run_dir)
  if record is None:
    raise errors.ConfigError(
        f"Run {run_dir} has no run.json, so its frozen model cannot be checked (it is not a spot_jax run, or "
        "one made before runs recorded their model). If it was trained on this model, add "
        "--config.prompt_init.allow_other_model=true.")
  theirs = record.get("identity", {}).get("frozen_model")
  if theirs != backbone.fingerprint:
    raise errors.ConfigError(
        f"Run {run_dir} was trained on frozen model {theirs}, not on this one ({backbone.fingerprint}). "
        "Its prompt does not transfer as-is: project it with `spot-jax project` (Su et al.), or add "
        "--config.prompt_init.allow_other_model=true to start from it anyway.")


# ----------------------------------------------------------------------------- training jobs


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One prompt-tuning run of a job: its workdir, task, seed and start (see `train_prompts`)."""

  workdir: str
  task_name: str
  prompt_init: Optional[prompt_lib.Initializer] = None  # None: config.prompt_init
  evaluate_on: Optional[str] = None  # None: the task itself, when it is a task (not a mixture)
  name: Optional[str] = None
  seed: Optional[int] = None  # None: config.train.seed
  embedding_step: Optional[int] = None  # None: config.train.embedding_step


def train_prompt(config: ml_collections.ConfigDict, workdir: str, *, backbone: Backbone,
                 vocab: vocab_lib.SentencePieceVocab, task_name: str,
                 prompt_init: Optional[prompt_lib.Initializer] = None, evaluate_on: Optional[str] = None,
                 name: Optional[str] = None, verbose: bool = True) -> train.TrainResult:
  """Prompt tuning of one prompt on a task or mixture (source or target) through the trainer."""
  spec = RunSpec(workdir, task_name, prompt_init, evaluate_on, name)
  return train_prompts(config, [spec], backbone=backbone, vocab=vocab, verbose=verbose)[0]


def train_prompts(config: ml_collections.ConfigDict, specs: Sequence[RunSpec], *, backbone: Backbone,
                  vocab: vocab_lib.SentencePieceVocab, verbose: bool = True) -> list[train.TrainResult]:
  """Prompt tuning of several runs, `config.train.prompts_per_step` of them in each step (the same
  prompts as one run at a time, see `train.train_prompts`); results in the order of `specs`."""
  configs.validate(config)
  trainer_cfg = config.train
  process_count = jax.process_count()
  if trainer_cfg.batch_size % process_count:
    raise ValueError(f"train.batch_size {trainer_cfg.batch_size} must be divisible by the {process_count} processes.")
  evaluators: dict[str, Any] = {}
  results: list[train.TrainResult] = []
  for group in _chunks(specs, trainer_cfg.get("prompts_per_step", 1)):
    runs = []
    try:
      for spec in group:
        runs.append(_prompt_run(config, spec, backbone, vocab, evaluators))
      results += train.train_prompts(trainer_cfg, runs, model_config=backbone.config, frozen_params=backbone.params,
                                     verbose=verbose, frozen_fingerprint=backbone.fingerprint)
    finally:
      for run in runs:
        run.train_iter.close()
  return results


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
  return [items[i:i + size] for i in range(0, len(items), size)]


def _prompt_run(config: ml_collections.ConfigDict, spec: RunSpec, backbone: Backbone,
                vocab: vocab_lib.SentencePieceVocab, evaluators: dict) -> train.PromptRun:
  """A `RunSpec` -> the trainer's `PromptRun`: its input pipeline, evaluator (one per task, shared)
  and initialiser, and the run's identity (task and data settings)."""
  trainer_cfg, data = config.train, config.data
  seed = trainer_cfg.seed if spec.seed is None else spec.seed
  is_task = spec.task_name in tasks_lib.list_tasks()
  if not is_task and not mixtures_lib.is_mixture(spec.task_name):
    tasks_lib.get_task(spec.task_name)  # neither a task nor a mixture: the registry's error says what to do
  eval_task = spec.evaluate_on or (spec.task_name if is_task else None)
  if eval_task and trainer_cfg.eval_every and eval_task not in evaluators:
    evaluators[eval_task] = evaluation.make_evaluator(eval_task, vocab, backbone, data, evaluation.eval_mode(config),
                                                      mesh_shape=trainer_cfg.mesh_shape)
  init = spec.prompt_init or make_prompt_init(config.prompt_init, backbone, vocab, eval_task)
  identity = {"task": spec.task_name, "eval_task": eval_task, "eval_mode": evaluation.eval_mode(config),
              "data": {k: data.get(k) for k in ("input_length", "target_length", "eval_max_examples",
                                                "skip_invalid_examples")}}
  iterator = pipeline.make_train_iterator(
      spec.task_name, vocab, batch_size=trainer_cfg.batch_size // jax.process_count(),
      input_length=data.input_length, target_length=data.target_length, seed=seed,
      process_index=jax.process_index(), process_count=jax.process_count(), data_dir=data.get("data_dir") or None,
      skip_invalid_examples=data.get("skip_invalid_examples", False))
  return train.PromptRun(spec.workdir, seed, iterator, init, evaluators.get(eval_task) if trainer_cfg.eval_every else None,
                         spec.name or spec.task_name, identity, spec.embedding_step)


def add_run_to_library(library: library_lib.PromptLibrary, task_name: str, workdir: str, backbone: Backbone,
                       replace: bool = False, run: int = 0) -> str:
  """Library entry from a finished run, as run `run` of source `task_name` (`library.entry_name`):
  key = its embedding prompt, value = its best prompt; -> the entry's name."""
  best = prompt_io.load_named_metadata(workdir, "best")
  embedding = prompt_io.load_named_metadata(workdir, "embedding")
  final = prompt_io.load_named_metadata(workdir, "final") or {}
  if embedding is None:
    raise ValueError(f"Run {workdir} has no task embedding prompt: train with train.embedding_step > 0.")
  record = workdir_lib.read_record(workdir) or {}
  name = library_lib.entry_name(task_name, run)
  value_name = "best" if best is not None else "final"
  library.add(name, prompt_io.load_prompt(workdir, "embedding"), prompt_io.load_prompt(workdir, value_name),
              {"task": task_name, "run_number": run, "seed": record.get("identity", {}).get("train", {}).get("seed"),
               "validation_score": best["score"] if best else None, "best_step": best["step"] if best else None,
               "embedding_step": embedding["step"], "train_steps": final.get("step"),
               "run": os.path.abspath(workdir) if fileio.is_local(workdir) else workdir},
              model_fingerprint=backbone.fingerprint, replace=replace)
  return name


def add_to_library(config: ml_collections.ConfigDict, path: str, task_name: str, run_dir: str, *,
                   backbone: Backbone, run: int = 0, replace: bool = False) -> library_lib.PromptLibrary:
  """`spot-jax library add`: a finished run as run `run` of `task_name` in the library at `path`
  (made for this backbone and config.train.prompt_length if new)."""
  library = library_lib.PromptLibrary(path, model_fingerprint=backbone.fingerprint,
                                      prompt_length=config.train.prompt_length, d_model=backbone.config.d_model)
  add_run_to_library(library, task_name, run_dir, backbone, replace=replace, run=run)
  return library


def build_library(config: ml_collections.ConfigDict, workdir: str, *, backbone: Backbone,
                  vocab: vocab_lib.SentencePieceVocab, sources: Sequence[str], library_path: str,
                  verbose: bool = True, claim_workdir: bool = True) -> library_lib.PromptLibrary:
  """`library.runs_per_source` prompts per source task (SPoT: 3), run r with seed train.seed + r in
  `<workdir>/sources/<entry name>`, `train.prompts_per_step` at a time; an interrupted build resumes.

  An entry already in the library is skipped only if it came from this build's own run; an entry
  from elsewhere is refused (it was made with other settings this build cannot check).
  `claim_workdir=False` when the caller already holds `workdir` (the quickstart).
  """
  claim = claim_job_workdir(config, workdir, "library_build", backbone.fingerprint) if claim_workdir else None
  try:
    library = library_lib.PromptLibrary(library_path, model_fingerprint=backbone.fingerprint,
                                        prompt_length=config.train.prompt_length, d_model=backbone.config.d_model)
    todo = []  # (run number, spec)
    for source in sources:
      for run in range(config.library.get("runs_per_source", 1)):
        name = library_lib.entry_name(source, run)
        run_dir = os.path.join(workdir, "sources", name)
        if name in library:
          _check_entry_from(library, name, run_dir)
        else:
          todo.append((run, RunSpec(run_dir, source, seed=config.train.seed + run, name=name)))
    total = len(library) + len(todo)
    for group in _chunks(todo, config.train.get("prompts_per_step", 1)):
      if verbose:
        print(f"[library] prompts {len(library) + 1}-{len(library) + len(group)} of {total}: "
              f"{', '.join(spec.name for _, spec in group)}", flush=True)
      train_prompts(config, [spec for _, spec in group], backbone=backbone, vocab=vocab, verbose=verbose)
      for run, spec in group:  # entries are added as their group finishes: an interrupted build keeps them
        add_run_to_library(library, spec.task_name, spec.workdir, backbone, run=run)
    return library
  finally:
    if claim is not None:
      claim.release()


def _check_entry_from(library: library_lib.PromptLibrary, task: str, run_dir: str) -> None:
  run = library.get(task).metadata.get("run")
  here = os.path.abspath(run_dir) if fileio.is_local(run_dir) else run_dir
  if run != here:
    raise library_lib.LibraryError(
        f"Library {library.path} already has an entry {task!r}, made by run {run}, not by this build's run "
        f"{here}. A build reuses only its own runs: leave {task!r} out of the sources, or build into another "
        "library.")


def target_embeddings(config: ml_collections.ConfigDict, workdirs: Mapping[str, str], *, backbone: Backbone,
                      vocab: vocab_lib.SentencePieceVocab, runs: Optional[int] = None) -> dict[str, list[np.ndarray]]:
  """New tasks' embeddings {task: [one per run]}: `runs` (default `retrieval.target_runs`) prompt-tuning
  runs on each task for `train.embedding_step` steps, seeds train.seed + i, as SPoT averages a
  source's similarity over a target's runs. Run i of a task goes to `workdirs[task]` (i = 0) or
  `<workdirs[task]>@run<i>`; `train.prompts_per_step` runs at a time."""
  runs = runs or config.retrieval.get("target_runs", 1)
  short = ml_collections.ConfigDict(config.to_dict())
  short.train.num_train_steps, short.train.eval_every = config.train.embedding_step, 0
  specs = {task: [RunSpec(library_lib.entry_name(path, i), task, seed=config.train.seed + i) for i in range(runs)]
           for task, path in workdirs.items()}
  train_prompts(short, [s for task_specs in specs.values() for s in task_specs], backbone=backbone, vocab=vocab,
                verbose=False)
  return {task: [prompt_io.load_prompt(s.workdir, "embedding") for s in task_specs] for task, task_specs in specs.items()}


def target_embedding(config: ml_collections.ConfigDict, workdir: str, *, backbone: Backbone,
                     vocab: vocab_lib.SentencePieceVocab, task_name: str) -> np.ndarray:
  """A new task's embedding from one run with config.train.seed (see `target_embeddings`)."""
  return target_embeddings(config, {task_name: workdir}, backbone=backbone, vocab=vocab, runs=1)[task_name][0]


def rank_library(library: library_lib.PromptLibrary, target_key: np.ndarray | Sequence[np.ndarray],
                 measures: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, list[retrieval.Ranked]]:
  """The library's prompts ranked per measure by similarity to the target's embedding (several: the
  mean similarity over the target's runs); `exclude` leaves out every run of those tasks."""
  keys = {name: key for name, key in library.keys().items() if library_lib.split_entry_name(name)[0] not in exclude}
  return {m: retrieval.rank_sources(target_key, keys, m) for m in measures}


def retrieve(config: ml_collections.ConfigDict, workdir: str, *, backbone: Backbone,
             vocab: vocab_lib.SentencePieceVocab, embedding: Optional[np.ndarray] = None) -> dict[str, Any]:
  """`spot-jax retrieve`: rank the library's prompts for `config.task` and write the chosen start.

  The target's embeddings: `embedding`, or `retrieval.target_runs` short prompt-tuning runs on the
  task (`<workdir>/embedding_run`, `embedding_run@run<i>`; seeds train.seed + i), similarities
  averaged over them. Strategies (`retrieval.strategy`, k = `retrieval.k` prompts): best_of_top_k
  writes `init_top<r>_<entry>.npy` per retrieved prompt; weighted_average writes
  `init_weighted_average_top<k>.npy`; mixture tunes a prompt on the distinct source tasks of the
  top-k prompts mixed with the target (`mixture_run_top<k>/`) and writes `init_mixture_top<k>.npy`.
  The workdir belongs to one target task and library; strategies and k may vary.
  """
  with claim_job_workdir(config, workdir, "retrieve", backbone.fingerprint,
                         identity={"task": config.task, "library": config.library.path}):
    lib = library_lib.PromptLibrary(config.library.path, model_fingerprint=backbone.fingerprint,
                                    prompt_length=config.train.prompt_length)
    keys = [embedding] if embedding is not None else target_embeddings(
        config, {config.task: os.path.join(workdir, "embedding_run")}, backbone=backbone, vocab=vocab)[config.task]
    rankings = rank_library(lib, keys, list(config.retrieval.measures), exclude=[config.task])
    primary = distributed.is_primary()  # every host computes the same; process 0 writes the files
    if primary:
      retrieval.write_ranking_csv(os.path.join(workdir, "ranking.csv"), config.task, rankings)
    ranking = rankings[config.retrieval.measure]
    k = config.retrieval.k
    top = [r.task for r in retrieval.top_k(ranking, k)]
    if config.retrieval.strategy == "weighted_average":
      weights = retrieval.weighted_average_weights(ranking, k)
      init = retrieval.weighted_average_prompt({n: lib.get(n).value for n in weights}, weights)
      chosen = [f"{n} (w={w:.3f})" for n, w in weights.items()]
      files = [os.path.join(workdir, f"init_weighted_average_top{k}.npy")]
      if primary:
        prompt_io.save_npy(files[0], init)
    elif config.retrieval.strategy == "mixture":  # a prompt tuned on the top-k prompts' tasks + the target's
      chosen = list(dict.fromkeys(library_lib.split_entry_name(name)[0] for name in top))
      init = mixture_prompt(config, os.path.join(workdir, f"mixture_run_top{k}"), backbone=backbone, vocab=vocab,
                            target=config.task, sources=chosen, verbose=True)
      files = [os.path.join(workdir, f"init_mixture_top{k}.npy")]
      if primary:
        prompt_io.save_npy(files[0], init)
    else:  # best_of_top_k: one init per prompt; the target is tuned from each, the best kept
      chosen = top
      files = [os.path.join(workdir, f"init_top{rank}_{name}.npy") for rank, name in enumerate(top, start=1)]
      if primary:
        for path, name in zip(files, top):
          prompt_io.save_npy(path, lib.get(name).value)
    return {"rankings": rankings, "chosen": chosen, "files": files, "target_embeddings": len(keys)}


def mixture_prompts(config: ml_collections.ConfigDict, cells: Sequence[tuple[str, str, Optional[int], Sequence[str]]],
                    *, backbone: Backbone, vocab: vocab_lib.SentencePieceVocab, verbose: bool = False) -> list[np.ndarray]:
  """SPoT's top-k multi-task mixture strategy, first half, for each (workdir, target, seed, sources)
  cell: prompt tuning on the retrieved sources' data mixed with the target's (examples-proportional,
  cap `retrieval.mixture_cap`), from `config.prompt_init`, for `retrieval.mixture_steps` steps; -> per
  cell the best prompt by the target's validation score, to initialise the target run. Each mixture
  is registered as `spot_mixture:<target>:<source>+<source>...`; runs go `train.prompts_per_step` at a time."""
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.train.num_train_steps = config.retrieval.mixture_steps or config.train.num_train_steps
  cfg.train.embedding_step = 0
  specs = []
  for workdir, target, seed, sources in cells:
    name = f"spot_mixture:{target}:{'+'.join(sources)}"
    if not mixtures_lib.is_mixture(name):
      mixtures_lib.register_mixture(mixtures_lib.Mixture(name, tuple(sources) + (target,),
                                                         cap=config.retrieval.mixture_cap))
    specs.append(RunSpec(workdir, name, evaluate_on=target, seed=seed,
                         name=f"{target}/mixture" + ("" if seed is None else f"/seed{seed}")))
  train_prompts(cfg, specs, backbone=backbone, vocab=vocab, verbose=verbose)
  which = "best" if cfg.train.eval_every else "final"
  return [prompt_io.load_prompt(spec.workdir, which) for spec in specs]


def mixture_prompt(config: ml_collections.ConfigDict, workdir: str, *, backbone: Backbone,
                   vocab: vocab_lib.SentencePieceVocab, target: str, sources: Sequence[str],
                   seed: Optional[int] = None, verbose: bool = False) -> np.ndarray:
  """One mixture source prompt (see `mixture_prompts`), trained in `workdir`."""
  return mixture_prompts(config, [(workdir, target, seed, sources)], backbone=backbone, vocab=vocab,
                         verbose=verbose)[0]


# Config fields that do not change a job's results (paths to the same inputs, output cadence, hosts).
_JOB_NOT_IDENTITY = {"": ("distributed", "verbose", "report_backbone"), "model": ("hf_path", "vocab_path"),
                     "data": ("data_dir", "eval_batch_size", "task_modules"), "library": ("path",),
                     "train": train.NOT_IDENTITY_FIELDS}


def claim_job_workdir(config: ml_collections.ConfigDict, workdir: str, kind: str, frozen_fingerprint: str,
                      identity: Optional[dict] = None) -> workdir_lib.Claim:
  """Locks a multi-run job's workdir (library build, grid, retrieval, projector, quickstart) and checks
  it holds this job: by default its whole config (less `_JOB_NOT_IDENTITY`) and frozen model. Each
  training run inside checks its own sub-directory as well."""
  if identity is None:
    identity = config.to_dict()
    for section, fields in _JOB_NOT_IDENTITY.items():
      part = identity.get(section, {}) if section else identity
      for field in fields:
        part.pop(field, None)
  return workdir_lib.claim(workdir, kind, {"config": identity, "frozen_model": frozen_fingerprint},
                           workdir_lib.parse_allow_changes(config.train.get("allow_changes", "")),
                           never_changeable=("frozen_model",))


# ----------------------------------------------------------------------------- target runs and the grid


@dataclasses.dataclass
class TargetRuns:
  """Best validation scores of target runs, keyed (method, target, seed); methods are 'baseline',
  'from_<source>' and any extra names. `keys` holds the targets' task embeddings per (target, seed)."""

  scores: dict = dataclasses.field(default_factory=dict)
  keys: dict = dataclasses.field(default_factory=dict)


def target_run(workdir: str, *, target: str, seed: int, method: str, init: prompt_lib.Initializer,
               keep_embedding: bool = False) -> RunSpec:
  """One target prompt-tuning run, `<workdir>/targets/<target>/seed<seed>/<method>`; with
  `keep_embedding` its early prompt (config.train.embedding_step) is the target's task embedding."""
  return RunSpec(os.path.join(workdir, "targets", target, f"seed{seed}", method), target, init,
                 name=f"{target}/{method}/seed{seed}", seed=seed, embedding_step=None if keep_embedding else 0)


def train_targets(config: ml_collections.ConfigDict, workdir: str, runs: TargetRuns,
                  cells: Sequence[tuple[str, int, str, prompt_lib.Initializer, bool]], *, backbone: Backbone,
                  vocab: vocab_lib.SentencePieceVocab, verbose: bool = False) -> None:
  """Target runs (target, seed, method, init, keep_embedding), `train.prompts_per_step` at a time;
  records each best score (and kept embeddings) in `runs`."""
  specs = [target_run(workdir, target=t, seed=s, method=m, init=i, keep_embedding=e) for t, s, m, i, e in cells]
  results = train_prompts(config, specs, backbone=backbone, vocab=vocab, verbose=verbose)
  for (target, seed, method, _, keep), spec, result in zip(cells, specs, results):
    runs.scores[(method, target, seed)] = result.best_score
    if keep:
      runs.keys[(target, seed)] = prompt_io.load_prompt(spec.workdir, "embedding")


def train_target(config: ml_collections.ConfigDict, workdir: str, runs: TargetRuns, *, backbone: Backbone,
                 vocab: vocab_lib.SentencePieceVocab, target: str, seed: int, method: str,
                 init: prompt_lib.Initializer, keep_embedding: bool = False, verbose: bool = False) -> float:
  """One target run (see `train_targets`); returns its best score."""
  train_targets(config, workdir, runs, [(target, seed, method, init, keep_embedding)], backbone=backbone,
                vocab=vocab, verbose=verbose)
  return runs.scores[(method, target, seed)]


def transfer_grid(config: ml_collections.ConfigDict, workdir: str, *, backbone: Backbone,
                  vocab: vocab_lib.SentencePieceVocab, library: library_lib.PromptLibrary, sources: Sequence[str],
                  targets: Sequence[str], seeds: Sequence[int], runs: Optional[TargetRuns] = None,
                  embed_targets: bool = True, verbose: bool = False) -> TargetRuns:
  """For every target and seed: the baseline (config.prompt_init; with `embed_targets` its early
  prompt is the target's task embedding) and one run initialised from each source prompt of the
  library; all these runs go `train.prompts_per_step` at a time."""
  runs = runs or TargetRuns()
  cells = []
  for seed in seeds:
    for target in targets:
      cells.append((target, seed, "baseline", make_prompt_init(config.prompt_init, backbone, vocab, target),
                    embed_targets))
      cells += [(target, seed, f"from_{source}", prompt_lib.from_array(library.get(source).value), False)
                for source in sources]
  train_targets(config, workdir, runs, cells, backbone=backbone, vocab=vocab, verbose=verbose)
  if verbose:
    for seed in seeds:
      for target in targets:
        print(f"[grid] {target} seed {seed}: baseline {runs.scores[('baseline', target, seed)]:.2f}", flush=True)
  return runs


def zero_shot_grid(config: ml_collections.ConfigDict, *, backbone: Backbone, vocab: vocab_lib.SentencePieceVocab,
                   prompts: Mapping[str, np.ndarray], targets: Sequence[str]) -> dict[tuple[str, str], float]:
  """Su et al.'s zero-shot cross-task transfer: every source prompt evaluated as is on every target
  (no training) -> {(source, target): score}. Report it relative to the target's own prompt."""
  scores = {}
  for target in targets:
    evaluate = evaluation.make_evaluator(target, vocab, backbone, config.data, evaluation.eval_mode(config),
                                         mesh_shape=config.train.mesh_shape)
    for source, prompt in prompts.items():
      scores[(source, target)] = evaluate(prompt)["score"]
  return scores


def run_grid(config: ml_collections.ConfigDict, workdir: str, *, backbone: Backbone,
             vocab: vocab_lib.SentencePieceVocab) -> dict[str, Any]:
  """`spot-jax grid`: the sources x targets transferability grid with its CSV, heatmap and correlation."""
  with claim_job_workdir(config, workdir, "grid", backbone.fingerprint):
    from spot_jax.spot import transferability as tr
    library = library_lib.PromptLibrary(config.library.path, model_fingerprint=backbone.fingerprint)
    sources = list(config.grid.sources) or library.names()
    targets, seeds = list(config.grid.targets), list(config.grid.seeds)
    if not targets:
      raise ValueError("config.grid.targets is empty: name the target tasks of the grid.")
    runs = transfer_grid(config, workdir, backbone=backbone, vocab=vocab, library=library, sources=sources,
                         targets=targets, seeds=seeds, verbose=True)
    # One ranking per target: each source's similarity averaged over the target's runs (one embedding
    # per seed), as SPoT does; every seed's grid is read through it.
    source_keys = {s: library.get(s).key for s in sources}
    rankings = {t: retrieval.rank_sources([runs.keys[(t, seed)] for seed in seeds], source_keys,
                                          config.retrieval.measure) for t in targets}
    primary = distributed.is_primary()  # every process ran the grid; process 0 writes and prints its results
    out = os.path.join(workdir, "results")
    analysis = tr.analyse_grid(runs.scores, sources, targets, seeds, rankings, out if primary else None,
                               evaluation.eval_mode(config))
    if primary:
      print(analysis.text)
      print(f"similarity vs transfer: {analysis.correlation}; files in {out}")
    return {"rows": analysis.rows, "headline": analysis.headline, "correlation": analysis.correlation or None,
            "runs": runs}
