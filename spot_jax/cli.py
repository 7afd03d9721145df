"""`spot-jax` console entry: one subcommand per job, each an absl app with its own flags.

Why a dispatcher in front of absl: absl parses one flat flag set per process; spot-jax has several
jobs (`spot-jax <command> --config=experiments/x.py --workdir=DIR --config.train.num_train_steps=10`),
so the first argument picks the job and absl + ml_collections' config_flags parse the rest (an
unknown `--config.<key>` is an error that names the key).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from typing import Callable, Optional

from absl import app, flags

from spot_jax import errors

_COMMANDS: dict[str, tuple[str, Callable[[], None]]] = {}
FLAGS = flags.FLAGS


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
  """Checks every config field, imports the config's task modules, joins the other hosts of a
  multi-host run (`config.distributed`) and locks the workdir (held until the command exits), before
  the backbone loads or a file is written: a bad config or a workdir in use fails at once."""
  from spot_jax import configs, distributed
  from spot_jax.checkpoints import workdir as workdir_lib
  if config is not None:
    configs.validate(config)
    _import_tensorflow_quietly()  # a job that reads data imports it anyway; a bad config fails before
    from spot_jax.data import tasks  # the run's own task modules (config.data.task_modules), checked up front too
    tasks.import_task_modules(config.data.get("task_modules", ()))
  distributed.maybe_initialize(config.get("distributed") if config is not None else None)
  if workdir:
    workdir_lib.lock(workdir)


def _import_tensorflow_quietly() -> None:
  """Imports TensorFlow (which TFDS and the data pipeline load anyway) with the process's stderr
  pointed away: its C++ start-up lines (oneDNN notices, CUDA stubs, "All log messages before
  absl::InitializeLog()") go straight to file descriptor 2, before TF_CPP_MIN_LOG_LEVEL or any log
  setting applies. A failed import shows what it wrote; `--verbosity=0` (or higher) shows it all."""
  if "tensorflow" in sys.modules or FLAGS["verbosity"].value >= 0:
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as sink:
    os.dup2(sink.fileno(), 2)
    try:
      importlib.import_module("tensorflow")
    except BaseException:
      os.dup2(saved, 2)
      sink.seek(0)
      sys.stderr.write(sink.read().decode(errors="replace"))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


class Job:
  """What a command's body is given: the checked config, the workdir, and the frozen backbone and
  its vocabulary (loaded on first use, with TFDS pointed at config.data.data_dir)."""

  def __init__(self, config, workdir: Optional[str]):
    self.config, self.workdir = config, workdir
    self._loaded = None

  def _load(self):
    if self._loaded is None:
      from spot_jax import jobs
      if self.config.data.get("data_dir"):
        os.environ.setdefault("TFDS_DATA_DIR", self.config.data.data_dir)
      self._loaded = jobs.load_backbone(self.config.model), jobs.load_vocab(self.config.model)
    return self._loaded

  @property
  def backbone(self):
    return self._load()[0]

  @property
  def vocab(self):
    return self._load()[1]


def job_command(name: str, help_text: str, *, config: str = "required", workdir: str = "required",
                extra_flags: Callable[[], None] = lambda: None, locks_workdir: Callable[[list], bool] = lambda argv: True):
  """Registers `body(job, argv)` as `spot-jax <name>`. The one place that owns what every job
  command does first: `--config` / `--workdir` (each "required", "optional" or "none"), the
  command's own flags (`extra_flags`), then config checks, task modules, multi-host start-up and the
  workdir lock (when `locks_workdir(argv)`), before the body runs."""
  def register(body: Callable[[Job, list], None]) -> Callable[[Job, list], None]:
    def entry() -> None:
      if config != "none":
        from ml_collections import config_flags
        config_flags.DEFINE_config_file("config", None, "Experiment config: experiments/<name>.py[:arg].",
                                        lock_config=True)
        if config == "required":
          flags.mark_flag_as_required("config")
      if workdir != "none":
        flags.DEFINE_string("workdir", None, "Output directory (local or gs://).", required=workdir == "required")
      extra_flags()

      def main(argv):
        loaded = _load_config() if config != "none" else None
        run_dir = FLAGS.workdir if workdir != "none" else None
        _start(loaded, run_dir if locks_workdir(argv) else None)
        body(Job(loaded, run_dir), argv)

      app.run(main, flags_parser=_parse_flags)

    _COMMANDS[name] = (help_text, entry)
    return body
  return register


@job_command("train", "Prompt-tune one prompt (source or target) on config.task.")
def _train(job: Job, argv: list) -> None:
  from spot_jax import jobs
  result = jobs.train_prompt(job.config, job.workdir, backbone=job.backbone, vocab=job.vocab,
                             task_name=job.config.task, evaluate_on=job.config.get("eval_task") or None)
  print(f"done: step {result.step}, best score {result.best_score} at step {result.best_step}; "
        f"prompts in {os.path.join(job.workdir, 'prompts')}")


def _eval_flags() -> None:
  flags.DEFINE_list("prompts", None, "Prompts to evaluate instead of config.prompt_init: .npy files [prompt_length, "
                    "d_model] or spot_jax run directories (their best prompt), comma-separated.")
  flags.DEFINE_enum("ensemble", None, ["vote"], "Also score the prompts' ensemble (Lester et al.): per example, "
                    "the answer most prompts gave (a tie: the lowest prompt's; rank mode: the highest summed score).")


@job_command("eval", "Evaluate a prompt (config.prompt_init: npy / checkpoint / library) on config.task; or several "
                     "(--prompts=a.npy,RUN_DIR,...), each scored, and with --ensemble=vote their majority vote too.",
             workdir="none", extra_flags=_eval_flags)
def _eval(job: Job, argv: list) -> None:
  from spot_jax import jobs
  if FLAGS.ensemble and not FLAGS.prompts:
    raise errors.ConfigError(f"--ensemble={FLAGS.ensemble} needs the prompts to combine: "
                             "--prompts=a.npy,b.npy,... (files or run directories).")
  result = jobs.evaluate_prompts(job.config, FLAGS.prompts or (), backbone=job.backbone, vocab=job.vocab,
                                 ensemble=FLAGS.ensemble)
  print("\n".join(result.lines()))


def _library_flags() -> None:
  flags.DEFINE_string("library", None, "Library directory (default: config.library.path).")
  flags.DEFINE_string("run", None, "add: a finished `spot-jax train` workdir (with embedding_step set).")
  flags.DEFINE_string("task", None, "add: the run's source task; show: an entry's name (<task>, or <task>@run<r> "
                      "for a task's later runs).")
  flags.DEFINE_integer("run_number", 0, "add: which run of --task this is (0, 1, 2, ...; SPoT keeps 3 per task).")
  flags.DEFINE_string("destination", None, "export: new directory or .tar.gz.")
  flags.DEFINE_string("source", None, "import: an exported directory or .tar.gz.")
  flags.DEFINE_bool("replace", False, "add/import: replace existing entries of the same task (the old ones are "
                    "kept under replaced/).")


_LIBRARY_ACTIONS = ("build", "add", "list", "show", "export", "import")


@job_command("library", "Prompt library: build | add | list | show | export | import.", config="optional",
             workdir="optional", extra_flags=_library_flags, locks_workdir=lambda argv: argv[1:2] == ["build"])
def _library(job: Job, argv: list) -> None:
  if len(argv) != 2 or argv[1] not in _LIBRARY_ACTIONS:
    raise app.UsageError(f"usage: spot-jax library {{{','.join(_LIBRARY_ACTIONS)}}} [--flags]")
  action, config = argv[1], job.config
  from spot_jax import jobs
  from spot_jax.spot import library as library_lib
  path = FLAGS.library or (config.library.path if config is not None else None)
  if not path:
    raise app.UsageError("Give --library=DIR (or config.library.path).")
  if action in ("build", "add") and config is None:
    raise app.UsageError(f"library {action} needs --config.")
  if action == "build":
    if not job.workdir:
      raise app.UsageError("library build needs --workdir for the source runs.")
    lib = jobs.build_library(config, job.workdir, backbone=job.backbone, vocab=job.vocab,
                             sources=list(config.library.sources), library_path=path)
  elif action == "add":
    lib = jobs.add_to_library(config, path, FLAGS.task, FLAGS.run, backbone=job.backbone, run=FLAGS.run_number,
                              replace=FLAGS.replace)
  elif action == "import":
    lib = library_lib.import_library(FLAGS.source, path, replace=FLAGS.replace)
  elif action == "show":
    print(library_lib.PromptLibrary(path).show(FLAGS.task))
    return
  elif action == "export":
    print(f"exported to {library_lib.PromptLibrary(path).export(FLAGS.destination)}")
    return
  else:
    lib = library_lib.PromptLibrary(path)
  print(lib.describe())


def _retrieve_flags() -> None:
  flags.DEFINE_string("embedding", None, "The target's task embedding (.npy); default: a short run on it.")


@job_command("retrieve", "Rank the library's sources for config.task and write the chosen init: init_top<r>_<source>.npy "
                         "(best_of_top_k), init_weighted_average_top<k>.npy, or init_mixture_top<k>.npy (mixture: a "
                         "prompt tuned on the top-k sources + the target, in mixture_run_top<k>/).",
             extra_flags=_retrieve_flags)
def _retrieve(job: Job, argv: list) -> None:
  from spot_jax import jobs
  from spot_jax.checkpoints import prompts as prompt_io
  result = jobs.retrieve(job.config, job.workdir, backbone=job.backbone, vocab=job.vocab,
                         embedding=prompt_io.load_npy(FLAGS.embedding) if FLAGS.embedding else None)
  for measure, ranked in result["rankings"].items():
    print(f"{measure}: " + ", ".join(f"{r.task} {r.similarity:.3f}" for r in ranked[:10]))
  print(f"strategy {job.config.retrieval.strategy}, k={job.config.retrieval.k}: {', '.join(result['chosen'])} "
        f"(similarity averaged over {result['target_embeddings']} target embedding(s)); files in {job.workdir}")


@job_command("grid", "Transferability grid: sources x targets x seeds, CSV + heatmap.")
def _grid(job: Job, argv: list) -> None:
  from spot_jax import jobs
  jobs.run_grid(job.config, job.workdir, backbone=job.backbone, vocab=job.vocab)


@job_command("project", "Cross-model projector (Su et al.): train it, then transfer source prompts zero-shot / as init.")
def _project(job: Job, argv: list) -> None:
  from spot_jax.spot import projector_job
  projector_job.run_projector(job.config, job.workdir, backbone=job.backbone, vocab=job.vocab,  # onto the target
                              source_fingerprint=projector_job.source_model_fingerprint(job.config))


@job_command("quickstart", "Offline SPoT on synthetic tasks: backbone, library, retrieval, transfer, table.")
def _quickstart(job: Job, argv: list) -> None:
  from spot_jax import quickstart
  quickstart.run(job.config, job.workdir)


def _model_info_flags() -> None:
  flags.DEFINE_string("hf_path", None, "Local Hugging Face T5 directory (config.json + *.safetensors).",
                      required=True)


@job_command("model-info", "Load a Hugging Face T5 directory and print its config and parameter count.",
             config="none", workdir="none", extra_flags=_model_info_flags)
def _model_info(job: Job, argv: list) -> None:
  from spot_jax import jobs
  print(jobs.describe_model(FLAGS.hf_path))


def _convert_flags() -> None:
  flags.DEFINE_string("from", None, "T5X checkpoint (checkpoint_<step>/ or the model directory above it) or "
                      "Hugging Face T5 directory.", required=True)
  flags.DEFINE_string("to", None, "New local directory (or an empty one) for the other format.", required=True)


@job_command("convert", "Convert a T5X checkpoint (either t5x layout, local or gs://) to a Hugging Face T5 directory, "
                        "or a Hugging Face directory to a T5X checkpoint (Orbax layout): --from=SRC --to=NEW_DIR.",
             config="none", workdir="none", extra_flags=_convert_flags)
def _convert(job: Job, argv: list) -> None:
  from spot_jax.checkpoints import t5x
  print(t5x.convert(FLAGS["from"].value, FLAGS.to))


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
  except Exception as e:  # noqa: BLE001 - re-raised unless expected or caused by storage
    if errors.is_expected(e):
      print(f"spot-jax {name}: error: {e}", file=sys.stderr)
      sys.exit(2)
    failure = _storage_failure(e)
    if failure is None:
      raise
    print(f"spot-jax {name}: error: {failure}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  run()
