"""`spot-jax` console entry: one subcommand per job, each an absl app with its own flags.

Why a dispatcher in front of absl: absl parses one flat flag set per process; spot-jax has several
jobs (`spot-jax <command> --config=experiments/x.py --workdir=DIR --config.train.num_train_steps=10`),
so the first argument picks the job and absl + ml_collections' config_flags parse the rest (an
unknown `--config.<key>` is an error that names the key).
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags

_COMMANDS: dict[str, tuple[str, Callable[[], None]]] = {}
FLAGS = flags.FLAGS


def command(name: str, help_text: str):
  """Registers `fn` (which defines its flags and runs absl) as `spot-jax <name>`."""
  def register(fn: Callable[[], None]) -> Callable[[], None]:
    _COMMANDS[name] = (help_text, fn)
    return fn
  return register


def _config_and_workdir(workdir_required: bool = True) -> None:
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Experiment config: experiments/<name>.py[:arg].",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Output directory (local or gs://).", required=workdir_required)
  flags.mark_flag_as_required("config")


def _start(config) -> None:
  """Joins the other hosts of a multi-host run (`config.distributed`), before anything touches JAX."""
  from spot_jax import distributed
  distributed.maybe_initialize(config.get("distributed") if config is not None else None)


def _backbone_and_vocab(config):
  """Points TFDS at config.data.data_dir (if set) and loads the frozen model and its vocabulary."""
  from spot_jax import jobs
  if config.data.get("data_dir"):
    os.environ.setdefault("TFDS_DATA_DIR", config.data.data_dir)
  return jobs.load_backbone(config.model), jobs.load_vocab(config.model)


@command("train", "Prompt-tune one prompt (source or target) on config.task.")
def _train() -> None:
  _config_and_workdir()

  def main(argv):
    del argv
    from spot_jax import jobs
    config = FLAGS.config
    _start(config)
    backbone, vocab = _backbone_and_vocab(config)
    result = jobs.train_prompt(config, FLAGS.workdir, backbone=backbone, vocab=vocab, task_name=config.task,
                               evaluate_on=config.get("eval_task") or None)
    print(f"done: step {result.step}, best score {result.best_score} at step {result.best_step}; "
          f"prompts in {os.path.join(FLAGS.workdir, 'prompts')}")

  app.run(main)


@command("eval", "Evaluate a prompt (config.prompt_init: npy / checkpoint / library) on config.task.")
def _eval() -> None:
  _config_and_workdir(workdir_required=False)

  def main(argv):
    del argv
    import jax
    from spot_jax import jobs
    config = FLAGS.config
    _start(config)
    backbone, vocab = _backbone_and_vocab(config)
    init = jobs.make_prompt_init(config.prompt_init, backbone, vocab, config.task)
    prompt = init(jax.random.key(config.train.seed), (config.train.prompt_length, backbone.config.d_model))
    metrics = jobs.make_evaluator(config.task, vocab, backbone, config.data)(prompt)
    print(", ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items())))

  app.run(main)


@command("library", "Prompt library: build | add | list | show | export | import.")
def _library() -> None:
  flags.DEFINE_string("library", None, "Library directory (default: config.library.path).")
  flags.DEFINE_string("run", None, "add: a finished `spot-jax train` workdir (with embedding_step set).")
  flags.DEFINE_string("task", None, "add/show: the entry's task name.")
  flags.DEFINE_string("destination", None, "export: new directory or .tar.gz.")
  flags.DEFINE_string("source", None, "import: an exported directory or .tar.gz.")
  flags.DEFINE_bool("replace", False, "add: replace an existing entry (the old one is kept under replaced/).")
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Experiment config (build/add).", lock_config=True)
  flags.DEFINE_string("workdir", None, "build: where the source runs go.")

  def main(argv):
    if len(argv) != 2 or argv[1] not in ("build", "add", "list", "show", "export", "import"):
      raise app.UsageError("usage: spot-jax library {build,add,list,show,export,import} [--flags]")
    action = argv[1]
    from spot_jax import jobs
    from spot_jax.spot import library as library_lib
    config = FLAGS.config
    _start(config)
    path = FLAGS.library or (config.library.path if config is not None else None)
    if not path:
      raise app.UsageError("Give --library=DIR (or config.library.path).")
    if action == "import":
      lib = library_lib.import_library(FLAGS.source, path)
      print(lib.describe())
      return
    if action in ("build", "add"):
      if config is None:
        raise app.UsageError(f"library {action} needs --config.")
      backbone, vocab = _backbone_and_vocab(config)
      if action == "build":
        if not FLAGS.workdir:
          raise app.UsageError("library build needs --workdir for the source runs.")
        lib = jobs.build_library(config, FLAGS.workdir, backbone=backbone, vocab=vocab,
                                 sources=list(config.library.sources), library_path=path)
      else:
        lib = library_lib.PromptLibrary(path, model_fingerprint=backbone.fingerprint,
                                        prompt_length=config.train.prompt_length, d_model=backbone.config.d_model)
        jobs.add_run_to_library(lib, FLAGS.task, FLAGS.run, backbone, replace=FLAGS.replace)
      print(lib.describe())
      return
    lib = library_lib.PromptLibrary(path)
    if action == "list":
      print(lib.describe())
    elif action == "show":
      entry = lib.get(FLAGS.task)
      import json
      print(json.dumps(entry.metadata, indent=2, sort_keys=True))
      print(f"key {entry.key.shape}, value {entry.value.shape}")
    elif action == "export":
      print(f"exported to {lib.export(FLAGS.destination)}")

  app.run(main)


STRATEGIES = ("best_of_top_k", "weighted_average", "mixture")


@command("retrieve", "Rank the library's sources for config.task and write the chosen init: init_top<r>_<source>.npy "
                     "(best_of_top_k), init_weighted_average_top<k>.npy, or init_mixture_top<k>.npy (mixture: a "
                     "prompt tuned on the top-k sources + the target, in mixture_run_top<k>/).")
def _retrieve() -> None:
  _config_and_workdir()
  flags.DEFINE_string("embedding", None, "The target's task embedding (.npy); default: a short run on it.")

  def main(argv):
    del argv
    from spot_jax import distributed, jobs
    from spot_jax.checkpoints import prompts as prompt_io
    from spot_jax.spot import library as library_lib, retrieval
    config = FLAGS.config
    if config.retrieval.strategy not in STRATEGIES:
      raise app.UsageError(f"Unknown retrieval.strategy {config.retrieval.strategy!r}; choose one of {STRATEGIES}.")
    _start(config)
    backbone, vocab = _backbone_and_vocab(config)
    lib = library_lib.PromptLibrary(config.library.path, model_fingerprint=backbone.fingerprint,
                                    prompt_length=config.train.prompt_length)
    if FLAGS.embedding:
      key = prompt_io.load_npy(FLAGS.embedding)
    else:
      key = jobs.target_embedding(config, os.path.join(FLAGS.workdir, "embedding_run"), backbone=backbone,
                                  vocab=vocab, task_name=config.task)
    rankings = jobs.rank_library(lib, key, list(config.retrieval.measures), exclude=[config.task])
    primary = distributed.is_primary()  # every host computes the same; process 0 writes the files
    if primary:
      retrieval.write_ranking_csv(os.path.join(FLAGS.workdir, "ranking.csv"), config.task, rankings)
    ranking = rankings[config.retrieval.measure]
    k = config.retrieval.k
    top = [r.task for r in retrieval.top_k(ranking, k)]
    if config.retrieval.strategy == "weighted_average":
      weights = retrieval.weighted_average_weights(ranking, k)
      init = retrieval.weighted_average_prompt({n: lib.get(n).value for n in weights}, weights)
      chosen = [f"{n} (w={w:.3f})" for n, w in weights.items()]
      if primary:
        prompt_io.save_npy(os.path.join(FLAGS.workdir, f"init_weighted_average_top{k}.npy"), init)
    elif config.retrieval.strategy == "mixture":  # a prompt tuned on the top-k sources' data + the target's
      chosen = top
      init = jobs.mixture_prompt(config, os.path.join(FLAGS.workdir, f"mixture_run_top{k}"), backbone=backbone,
                                 vocab=vocab, target=config.task, sources=top, verbose=True)
      if primary:
        prompt_io.save_npy(os.path.join(FLAGS.workdir, f"init_mixture_top{k}.npy"), init)
    else:  # best_of_top_k: one init per source; the target is tuned from each, the best kept
      chosen = top
      for rank, name in enumerate(top, start=1):
        if primary:
          prompt_io.save_npy(os.path.join(FLAGS.workdir, f"init_top{rank}_{name}.npy"), lib.get(name).value)
    for measure, ranked in rankings.items():
      print(f"{measure}: " + ", ".join(f"{r.task} {r.similarity:.3f}" for r in ranked[:10]))
    print(f"strategy {config.retrieval.strategy}, k={k}: {', '.join(chosen)}; files in {FLAGS.workdir}")

  app.run(main)


@command("grid", "Transferability grid: sources x targets x seeds, CSV + heatmap.")
def _grid() -> None:
  _config_and_workdir()

  def main(argv):
    del argv
    from spot_jax import jobs
    config = FLAGS.config
    _start(config)
    backbone, vocab = _backbone_and_vocab(config)
    jobs.run_grid(config, FLAGS.workdir, backbone=backbone, vocab=vocab)

  app.run(main)


@command("project", "Cross-model projector (Su et al.): train it, then transfer source prompts zero-shot / as init.")
def _project() -> None:
  _config_and_workdir()

  def main(argv):
    del argv
    from spot_jax import jobs
    config = FLAGS.config
    _start(config)
    backbone, vocab = _backbone_and_vocab(config)  # the target model
    source = config.source_model.get("hf_path")  # only to check that the source library is that model's
    fingerprint = jobs.load_backbone(config.source_model).fingerprint if source else None
    jobs.run_projector(config, FLAGS.workdir, backbone=backbone, vocab=vocab, source_fingerprint=fingerprint)

  app.run(main)


@command("quickstart", "Offline SPoT on synthetic tasks: backbone, library, retrieval, transfer, table.")
def _quickstart() -> None:
  _config_and_workdir()

  def main(argv):
    del argv
    from spot_jax import quickstart
    _start(FLAGS.config)
    quickstart.run(FLAGS.config, FLAGS.workdir)

  app.run(main)


@command("model-info", "Load a Hugging Face T5 directory and print its config and parameter count.")
def _model_info() -> None:
  flags.DEFINE_string("hf_path", None, "Local Hugging Face T5 directory (config.json + *.safetensors).",
                      required=True)

  def main(argv):
    del argv
    import jax
    import numpy as np
    from spot_jax.checkpoints import hf
    from spot_jax.spot import library as library_lib
    cfg, params = hf.load_hf_t5(FLAGS.hf_path)
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    print(cfg)
    print(f"parameters: {count:,}")
    print(f"fingerprint: {library_lib.model_fingerprint(cfg, params)}")

  app.run(main)


def _usage() -> str:
  lines = ["usage: spot-jax <command> [--flags]   (spot-jax <command> --help for its flags)", "", "commands:"]
  lines += [f"  {name:<14} {help_text}" for name, (help_text, _) in sorted(_COMMANDS.items())]
  return "\n".join(lines)


def run() -> None:
  """Console-script entry point."""
  if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(sys.argv) >= 2 else 2)
  name = sys.argv[1]
  if name not in _COMMANDS:
    print(f"Unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
    sys.exit(2)
  args = sys.argv[2:]
  if not any(a.startswith(("--verbosity", "-v=", "--v=")) for a in args):
    args = ["--verbosity=-1"] + args  # absl WARNING: keeps Orbax's per-save INFO lines out of the console
  sys.argv = [f"spot-jax {name}"] + args
  _COMMANDS[name][1]()


if __name__ == "__main__":
  run()
