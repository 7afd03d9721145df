"""`spot-jax` console entry: one subcommand per job, each an absl app with its own flags.

Why a dispatcher in front of absl: absl parses one flat flag set per process; spot-jax has several
jobs (`spot-jax <command> --config=experiments/x.py --workdir=DIR --config.train.num_train_steps=10`),
so the first argument picks the job and absl + ml_collections' config_flags parse the rest (an
unknown `--config.<key>` is an error that names the key).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Callable, Optional

from absl import app, flags

from spot_jax import errors

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


_FLAGS_BEFORE_COMMAND: set = set()  # absl's and the libraries' own flags (set in `run`)


def _command_help(argv: list[str]) -> str:
  """`spot-jax <command> --help`: the command's own flags, one line each (absl alone would print only
  "Try --helpfull", the main module of a console script having no flags of its own)."""
  name = argv[0].split()[-1]
  help_text = _COMMANDS.get(name, ("", None))[0]
  lines = [f"usage: spot-jax {name} [--flags]", "", help_text, "", "flags:"]
  own = [n for n in set(FLAGS) - _FLAGS_BEFORE_COMMAND
         if FLAGS[n].name == n and not FLAGS.find_module_defining_flag(n, "").startswith("absl")]
  for flag_name in sorted(own, key=lambda n: (n not in ("config", "workdir"), n)):
    flag = FLAGS[flag_name]
    default = "" if flag.default in (None, "", False) or flag_name == "config" else f" (default: {flag.default})"
    required = " (required)" if _is_required(flag_name) else ""
    lines.append(f"  --{flag_name:<16} {flag.help}{default}{required}")
  if "config" in FLAGS and "config" not in _FLAGS_BEFORE_COMMAND:
    lines.append(f"  --config.<field>={'<value>':<4} override one field of the config (an unknown field is an error)")
  lines += ["", "--helpfull lists absl's and the libraries' flags as well."]
  return "\n".join(lines)


def _is_required(flag_name: str) -> bool:
  """Whether absl's `mark_flag_as_required` (or `required=True`) guards the flag."""
  return any("must have a value other than None" in str(v.message) for v in FLAGS[flag_name].validators)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad `--config` as one line: an override of a field the config does
  not have (ml_collections raises AttributeError/KeyError) or an error inside the config file."""
  if any(arg in ("--help", "-h", "--helpshort", "-?") for arg in argv[1:]):
    print(_command_help(argv))
    sys.exit(0)
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else e
    text = str(inner.args[0] if inner.args else inner)
    field, _, hint = text.partition("\n")
    given = [a for a in argv if a.startswith("--config.") and field.strip("'") in a]
    raise errors.ConfigError(f"Unknown config field {field} (in {' '.join(given) or 'a --config.* override'}). "
                             f"{hint or '`--helpfull` lists the fields.'}") from None
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):  # an exception inside get_config: its last line
      raise errors.ConfigError(f"{lines[0]} {lines[-1].split(': ', 1)[-1]}") from None
    raise errors.ConfigError(f"{' '.join(lines)} (--helpfull lists the flags)") from None


def _load_config():
  """FLAGS.config, loaded on first use; a missing or broken config file as one line."""
  try:
    config = FLAGS.config
    if config is not None:
      config.keys()  # a placeholder until first use: make a loading error surface here
    return config
  except OSError as e:
    detail = " ".join(line.strip() for line in str(e).splitlines() if "Errno" in line or "Failed" in line)
    raise errors.ConfigError(f"Cannot load the --config file: {detail or e}") from None


def _start(config, workdir: Optional[str] = None) -> None:
  """Checks every config field, imports the config's task modules, joins the other hosts of a multi-host run (`config.distributed`) and
  locks the workdir (held until the command exits), before the backbone loads or a file is written:
  a bad config or a workdir in use fails at once."""
  from spot_jax import configs, distributed
  from spot_jax.checkpoints import workdir as workdir_lib
  if config is not None:
    configs.validate(config)
    from spot_jax.data import tasks  # the run's own task modules (config.data.task_modules), checked up front too
    tasks.import_task_modules(config.data.get("task_modules", ()))
  distributed.maybe_initialize(config.get("distributed") if config is not None else None)
  if workdir:
    workdir_lib.lock(workdir)


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
    config = _load_config()
    _start(config, FLAGS.workdir)
    from spot_jax import jobs
    backbone, vocab = _backbone_and_vocab(config)
    result = jobs.train_prompt(config, FLAGS.workdir, backbone=backbone, vocab=vocab, task_name=config.task,
                               evaluate_on=config.get("eval_task") or None)
    print(f"done: step {result.step}, best score {result.best_score} at step {result.best_step}; "
          f"prompts in {os.path.join(FLAGS.workdir, 'prompts')}")

  app.run(main, flags_parser=_parse_flags)


@command("eval", "Evaluate a prompt (config.prompt_init: npy / checkpoint / library) on config.task; or several "
                 "(--prompts=a.npy,RUN_DIR,...), each scored, and with --ensemble=vote their majority vote too.")
def _eval() -> None:
  _config_and_workdir(workdir_required=False)
  flags.DEFINE_list("prompts", None, "Prompts to evaluate instead of config.prompt_init: .npy files [prompt_length, "
                    "d_model] or spot_jax run directories (their best prompt), comma-separated.")
  flags.DEFINE_enum("ensemble", None, ["vote"], "Also score the prompts' ensemble (Lester et al.): per example, "
                    "the answer most prompts gave (a tie: the lowest prompt's; rank mode: the highest summed score).")

  def main(argv):
    del argv
    config = _load_config()
    if FLAGS.ensemble and not FLAGS.prompts:
      raise errors.ConfigError(f"--ensemble={FLAGS.ensemble} needs the prompts to combine: "
                               "--prompts=a.npy,b.npy,... (files or run directories).")
    _start(config)
    import jax
    import ml_collections
    from spot_jax import evaluation, jobs
    backbone, vocab = _backbone_and_vocab(config)
    mode = evaluation.eval_mode(config)
    shape = (config.train.prompt_length, backbone.config.d_model)
    show = lambda metrics: ", ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items()))
    if not FLAGS.prompts:
      init = jobs.make_prompt_init(config.prompt_init, backbone, vocab, config.task)
      metrics = evaluation.make_evaluator(config.task, vocab, backbone, config.data, mode,
                                          mesh_shape=config.train.mesh_shape)(init(jax.random.key(config.train.seed), shape))
      print(f"eval mode {mode}: " + show(metrics))
      return
    allow = config.prompt_init.get("allow_other_model", False)  # same-model check as config.prompt_init's
    prompts = [jobs.make_prompt_init(ml_collections.ConfigDict(dict(
        kind="npy" if path.endswith(".npy") else "checkpoint", path=path, which="best", allow_other_model=allow)),
        backbone, vocab, config.task)(jax.random.key(0), shape) for path in FLAGS.prompts]
    print(f"eval mode {mode}, task {config.task}, {len(prompts)} prompts:")
    if FLAGS.ensemble:
      result = evaluation.make_ensemble_evaluator(config.task, vocab, backbone, config.data, mode,
                                                  mesh_shape=config.train.mesh_shape, method=FLAGS.ensemble)(prompts)
      per_prompt = result.per_prompt
    else:
      evaluate = evaluation.make_evaluator(config.task, vocab, backbone, config.data, mode,
                                           mesh_shape=config.train.mesh_shape)
      per_prompt = [evaluate(prompt) for prompt in prompts]
    for i, (path, metrics) in enumerate(zip(FLAGS.prompts, per_prompt), start=1):
      print(f"  prompt {i} ({path}): " + show(metrics))
    if FLAGS.ensemble:
      print(f"  ensemble ({FLAGS.ensemble} of {len(prompts)} prompts): " + show(result.ensemble))

  app.run(main, flags_parser=_parse_flags)


@command("library", "Prompt library: build | add | list | show | export | import.")
def _library() -> None:
  flags.DEFINE_string("library", None, "Library directory (default: config.library.path).")
  flags.DEFINE_string("run", None, "add: a finished `spot-jax train` workdir (with embedding_step set).")
  flags.DEFINE_string("task", None, "add: the run's source task; show: an entry's name (<task>, or <task>@run<r> "
                      "for a task's later runs).")
  flags.DEFINE_integer("run_number", 0, "add: which run of --task this is (0, 1, 2, ...; SPoT keeps 3 per task).")
  flags.DEFINE_string("destination", None, "export: new directory or .tar.gz.")
  flags.DEFINE_string("source", None, "import: an exported directory or .tar.gz.")
  flags.DEFINE_bool("replace", False, "add/import: replace existing entries of the same task (the old ones are "
                    "kept under replaced/).")
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Experiment config (build/add).", lock_config=True)
  flags.DEFINE_string("workdir", None, "build: where the source runs go.")

  def main(argv):
    if len(argv) != 2 or argv[1] not in ("build", "add", "list", "show", "export", "import"):
      raise app.UsageError("usage: spot-jax library {build,add,list,show,export,import} [--flags]")
    action = argv[1]
    config = _load_config()
    _start(config, FLAGS.workdir if action == "build" else None)
    from spot_jax import jobs
    from spot_jax.spot import library as library_lib
    path = FLAGS.library or (config.library.path if config is not None else None)
    if not path:
      raise app.UsageError("Give --library=DIR (or config.library.path).")
    if action == "import":
      lib = library_lib.import_library(FLAGS.source, path, replace=FLAGS.replace)
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
        jobs.add_run_to_library(lib, FLAGS.task, FLAGS.run, backbone, replace=FLAGS.replace, run=FLAGS.run_number)
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

  app.run(main, flags_parser=_parse_flags)


@command("retrieve", "Rank the library's sources for config.task and write the chosen init: init_top<r>_<source>.npy "
                     "(best_of_top_k), init_weighted_average_top<k>.npy, or init_mixture_top<k>.npy (mixture: a "
                     "prompt tuned on the top-k sources + the target, in mixture_run_top<k>/).")
def _retrieve() -> None:
  _config_and_workdir()
  flags.DEFINE_string("embedding", None, "The target's task embedding (.npy); default: a short run on it.")

  def main(argv):
    del argv
    config = _load_config()
    _start(config, FLAGS.workdir)
    from spot_jax import jobs
    from spot_jax.checkpoints import prompts as prompt_io
    backbone, vocab = _backbone_and_vocab(config)
    embedding = prompt_io.load_npy(FLAGS.embedding) if FLAGS.embedding else None
    result = jobs.retrieve(config, FLAGS.workdir, backbone=backbone, vocab=vocab, embedding=embedding)
    for measure, ranked in result["rankings"].items():
      print(f"{measure}: " + ", ".join(f"{r.task} {r.similarity:.3f}" for r in ranked[:10]))
    print(f"strategy {config.retrieval.strategy}, k={config.retrieval.k}: {', '.join(result['chosen'])} "
          f"(similarity averaged over {result['target_embeddings']} target embedding(s)); files in {FLAGS.workdir}")

  app.run(main, flags_parser=_parse_flags)


@command("grid", "Transferability grid: sources x targets x seeds, CSV + heatmap.")
def _grid() -> None:
  _config_and_workdir()

  def main(argv):
    del argv
    config = _load_config()
    _start(config, FLAGS.workdir)
    from spot_jax import jobs
    backbone, vocab = _backbone_and_vocab(config)
    jobs.run_grid(config, FLAGS.workdir, backbone=backbone, vocab=vocab)

  app.run(main, flags_parser=_parse_flags)


@command("project", "Cross-model projector (Su et al.): train it, then transfer source prompts zero-shot / as init.")
def _project() -> None:
  _config_and_workdir()

  def main(argv):
    del argv
    config = _load_config()
    _start(config, FLAGS.workdir)
    from spot_jax import jobs
    from spot_jax.spot import projector_job
    backbone, vocab = _backbone_and_vocab(config)  # the target model
    source = config.source_model.get("hf_path")  # only to check that the source library is that model's
    fingerprint = jobs.load_backbone(config.source_model).fingerprint if source else None
    projector_job.run_projector(config, FLAGS.workdir, backbone=backbone, vocab=vocab, source_fingerprint=fingerprint)

  app.run(main, flags_parser=_parse_flags)


@command("quickstart", "Offline SPoT on synthetic tasks: backbone, library, retrieval, transfer, table.")
def _quickstart() -> None:
  _config_and_workdir()

  def main(argv):
    del argv
    config = _load_config()
    _start(config, FLAGS.workdir)
    from spot_jax import quickstart
    quickstart.run(config, FLAGS.workdir)

  app.run(main, flags_parser=_parse_flags)


@command("model-info", "Load a Hugging Face T5 directory and print its config and parameter count.")
def _model_info() -> None:
  flags.DEFINE_string("hf_path", None, "Local Hugging Face T5 directory (config.json + *.safetensors).",
                      required=True)

  def main(argv):
    del argv
    import jax
    import numpy as np
    from spot_jax.checkpoints import hf
    from spot_jax.checkpoints import fingerprint
    cfg, params = hf.load_hf_t5(FLAGS.hf_path)
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    print(cfg)
    print(f"parameters: {count:,}")
    print(f"fingerprint: {fingerprint.model_fingerprint(cfg, params)}")

  app.run(main, flags_parser=_parse_flags)


@command("convert", "Convert a T5X checkpoint (either t5x layout, local or gs://) to a Hugging Face T5 directory, "
                    "or a Hugging Face directory to a T5X checkpoint (Orbax layout): --from=SRC --to=NEW_DIR.")
def _convert() -> None:
  flags.DEFINE_string("from", None, "T5X checkpoint (checkpoint_<step>/ or the model directory above it) or "
                      "Hugging Face T5 directory.", required=True)
  flags.DEFINE_string("to", None, "New local directory (or an empty one) for the other format.", required=True)

  def main(argv):
    del argv
    from spot_jax.checkpoints import t5x
    print(t5x.convert(FLAGS["from"].value, FLAGS.to))

  app.run(main, flags_parser=_parse_flags)


def _usage() -> str:
  lines = ["usage: spot-jax <command> [--flags]   (spot-jax <command> --help for its flags)", "", "commands:"]
  lines += [f"  {name:<14} {help_text}" for name, (help_text, _) in sorted(_COMMANDS.items())]
  return "\n".join(lines)


def _storage_failure(error: BaseException) -> Optional[str]:
  """One line for an exception caused by storage (read-only place, full disk, no permission), or None."""
  from spot_jax.checkpoints import workdir as workdir_lib
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in workdir_lib.STORAGE_ERRNOS:
      where = error.filename or "a file of this run"
      return f"cannot write {where}: [Errno {error.errno}] {error.strerror}. Free space or choose a writable --workdir."
    text = str(error)  # TensorFlow and tensorstore report storage errors in their own types
    for phrase in ("No space left on device", "Read-only file system", "Disk quota exceeded", "File too large",
                   "Permission denied"):
      if phrase in text:
        paths = [p for p in re.findall(r"(?:gs://|/)[^\s;,'\"{}]+", text)
                 if p.startswith("gs://") or os.path.isdir(os.path.dirname(p))]  # not TF's /job:localhost/...
        return (f"cannot write {paths[0] if paths else 'a file of this run'}: {phrase}. Free space or choose "
                "a writable --workdir.")
    error = error.__cause__ or error.__context__
  return None


def run() -> None:
  """Console-script entry point. Expected errors (bad config, bad input, refused workdir, storage)
  print one line and exit 2 (1 for storage); anything else keeps its traceback."""
  if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(sys.argv) >= 2 else 2)
  name = sys.argv[1]
  if name not in _COMMANDS:
    print(f"Unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
    sys.exit(2)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info/warnings are noise here
  args = sys.argv[2:]
  if not any(a.startswith(("--verbosity", "-v=", "--v=")) for a in args):
    args = ["--verbosity=-1"] + args  # absl WARNING: keeps Orbax's per-save INFO lines out of the console
  sys.argv = [f"spot-jax {name}"] + args
  _FLAGS_BEFORE_COMMAND.update(FLAGS)
  try:
    _COMMANDS[name][1]()
  except errors.UserError as e:
    print(f"spot-jax {name}: error: {e}", file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # noqa: BLE001 - re-raised unless storage caused it
    failure = _storage_failure(e)
    if failure is None:
      raise
    print(f"spot-jax {name}: error: {failure}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  run()
