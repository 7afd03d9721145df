"""Task + registry: what a task is, and the one table of tasks a run can name.

Why this exists: SPoT trains prompts on dozens of tasks and compares them on one scale, so every
task must answer the same questions the same way — which examples (a `sources` source), which text
format (`preprocessors`), which label words (rank classification, class-label prompt init), how a
decoded string becomes a prediction (`postprocessors`), which metrics (`spot_jax.metrics`, named in
`METRICS`), and the ONE validation number (`score`, 0-100) used for best-checkpoint selection and
relative error reduction. A small seqio-like registry answers them without seqio's dependencies.

Which tasks exist is explicit. The built-in catalogue (`catalog`: GLUE, SuperGLUE, SQuAD, the SPoT
tasks) is registered with the package (`spot_jax.data.tasks` imports it); any other module of tasks
(your own, or the offline synthetic families in `spot_jax.data.synthetic`) registers its tasks when
it is imported, and a run imports the ones its config lists in `config.data.task_modules`
(`import_task_modules`), as big_vision imports a config's `pp_modules`. This module imports neither.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import math
import os
import types
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from spot_jax import errors
from spot_jax.data import postprocessors as post
from spot_jax.data import preprocessors as pp
from spot_jax.data import sources


# ----------------------------------------------------------------------------- metrics
# One metrics module: `spot_jax.metrics` (T5's functions with T5's semantics). A task names its metrics
# here; each name gives, for a task, a function (targets, predictions) -> {key: value in 0-100}.


def _metric(name: str, *args_from_task: Callable[["Task"], Any]) -> Callable[["Task"], Callable]:
  def factory(task: "Task") -> Callable:
    from spot_jax import metrics  # pylint: disable=import-outside-toplevel
    fn = getattr(metrics, name)
    return fn(*(a(task) for a in args_from_task)) if args_from_task else fn
  return factory


def _group_all_match(task: "Task") -> Callable:
  from spot_jax import metrics  # pylint: disable=import-outside-toplevel
  return metrics.mean_group_metric(metrics.all_match)


def _deduplicate_squad(task: "Task") -> Callable:
  from spot_jax import metrics  # pylint: disable=import-outside-toplevel
  return metrics.deduplicate_metric(metrics.squad)


# name -> factory(task) -> metric function. T5's GLUE_METRICS / SUPERGLUE_METRICS use: accuracy,
# matthews_corrcoef (CoLA), f1_score_with_invalid + accuracy (MRPC, QQP), pearson + spearman (STS-B),
# mean_multiclass_f1(num_classes = number of label words) + accuracy (CB), multirc_f1_over_all_answers +
# mean_group_metric(all_match) (MultiRC), deduplicate_metric(squad) (ReCoRD), squad (SQuAD).
METRICS: dict[str, Callable[["Task"], Callable]] = {
    "accuracy": _metric("accuracy"),
    "matthews_corrcoef": _metric("matthews_corrcoef"),
    "f1_score_with_invalid": _metric("f1_score_with_invalid"),
    "mean_multiclass_f1": _metric("mean_multiclass_f1", lambda task: len(task.label_words or ())),
    "pearson_corrcoef": _metric("pearson_corrcoef"),
    "spearman_corrcoef": _metric("spearman_corrcoef"),
    "squad": _metric("squad"),
    "multirc_f1_over_all_answers": _metric("multirc_f1_over_all_answers"),
    "mean_group_all_match": _group_all_match,
    "deduplicate_squad": _deduplicate_squad,
    "sequence_accuracy": _metric("sequence_accuracy"),
    "bleu": _metric("bleu"),  # T5's for WMT and GEM (sacrebleu)
    "rouge": _metric("rouge"),  # T5's for summarization and GEM (rouge-score)
}
# Earlier spellings, still accepted in `Task.metric_names`.
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "mcc": ("matthews_corrcoef",), "f1": ("f1_score_with_invalid",), "f1_macro": ("mean_multiclass_f1",),
    "pearson": ("pearson_corrcoef",), "spearman": ("spearman_corrcoef",),
    "multirc": ("multirc_f1_over_all_answers", "mean_group_all_match"), "record": ("deduplicate_squad",),
}


def _metric_names(names: Sequence[str]) -> tuple[str, ...]:
  return tuple(dict.fromkeys(m for n in names for m in METRIC_ALIASES.get(n, (n,))))



# Fields of a `load_eval_examples` entry that are spot_jax's, not the preprocessor's output.
_PIPELINE_FIELDS = ("example", "index", "encoder_input_tokens")


def t5_example(eval_example: Mapping[str, Any]) -> dict:
  """A `load_eval_examples` entry as T5 hands an example to its postprocessor: the preprocessor's
  output fields plus `targets_pretokenized`."""
  out = {k: v for k, v in eval_example.items() if k not in _PIPELINE_FIELDS}
  out["targets_pretokenized"] = eval_example["targets"]
  return out


# ----------------------------------------------------------------------------- the task


@dataclasses.dataclass(frozen=True)
class Task:
  """One text-to-text task.

  `metric_names` pick from `METRICS` (T5's metric functions; `METRIC_ALIASES` are accepted too).
  `score_keys` are the metric keys averaged into the task's one validation score (0-100); by default
  every key the metrics return, which is T5's convention (MRPC: mean of F1 and accuracy; CoLA: MCC).
  A NaN metric (pearson of a constant prediction) makes the score NaN, as T5 reports it.
  `postprocessor` is one of `postprocessors.BY_NAME` ('label' maps an exact label word to its index, -1 if
  the text is not one: an invalid output is wrong).
  """

  name: str
  source: Any  # a Source: TfdsSource, LocalFileSource, InMemorySource or your own
  preprocessor: pp.Preprocessor
  metric_names: tuple[str, ...] = ("accuracy",)
  score_keys: Optional[tuple[str, ...]] = None  # default: all keys the metrics return
  label_words: Optional[tuple[str, ...]] = None
  postprocessor: str = "text"
  train_split: str = "train"
  eval_split: str = "validation"
  description: str = ""

  def __post_init__(self):
    unknown = [m for m in _metric_names(self.metric_names) if m not in METRICS]
    if unknown:
      raise ValueError(f"Task {self.name!r}: unknown metrics {unknown}; choose from {sorted(METRICS)} "
                       f"(or {sorted(METRIC_ALIASES)}).")
    if self.postprocessor not in post.BY_NAME:
      raise ValueError(f"Task {self.name!r}: unknown postprocessor {self.postprocessor!r}; "
                       f"choose from {sorted(post.BY_NAME)}.")
    if self.postprocessor == "label" and not self.label_words:
      raise ValueError(f"Task {self.name!r}: postprocessor {self.postprocessor!r} needs label_words.")
    if "mean_multiclass_f1" in _metric_names(self.metric_names) and not self.label_words:
      raise ValueError(f"Task {self.name!r}: metric 'mean_multiclass_f1' needs label_words (the classes).")

  def preprocess(self, example: Mapping[str, Any], ctx: pp.Context = pp.Context()) -> list[dict]:
    return self.preprocessor(example, ctx)

  def postprocess(self, text: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> Any:
    """Decoded text (or the target string, with `is_target=True`) -> what the metrics compare.
    `example` is as T5's (see `t5_example`)."""
    return post.BY_NAME[self.postprocessor](text, example, is_target, self.label_words or ())

  def metrics(self, targets: list, predictions: list) -> dict[str, float]:
    """Postprocessed targets and predictions -> {metric key: value in 0-100}, T5's keys
    ('accuracy', 'f1', 'matthews_corrcoef', 'pearson_corrcoef', 'em', 'exact_match', ...)."""
    if len(targets) != len(predictions):
      raise ValueError(f"Got {len(targets)} targets but {len(predictions)} predictions; they must pair up.")
    out: dict[str, float] = {}
    for name in _metric_names(self.metric_names):
      gold = targets
      if name == "squad":  # a single target string is one gold answer
        gold = [[t] if isinstance(t, str) else list(t) for t in targets]
      out.update({k: float(v) for k, v in METRICS[name](self)(gold, predictions).items()})
    return out

  def score(self, metrics: Mapping[str, float]) -> float:
    """The one validation number (0-100): the mean of `score_keys` (T5's and the papers' convention);
    NaN if a metric is NaN (or there are none)."""
    keys = self.score_keys or tuple(metrics)
    missing = [k for k in keys if k not in metrics]
    if missing:
      raise KeyError(f"Task {self.name!r} scores {keys} but the metrics lack {missing}; got {sorted(metrics)}.")
    values = [float(metrics[k]) for k in keys]
    return float(np.mean(values)) if values else math.nan

  def evaluate(self, eval_examples: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> dict[str, float]:
    """`load_eval_examples` output + decoded strings -> metrics with 'score' added. Targets and
    predictions go through the postprocessor as in T5 (`seqio`'s LegacyMetric): the target string
    with `is_target=True`, each prediction with the same example."""
    if len(predictions) != len(eval_examples):
      raise ValueError(f"Got {len(predictions)} predictions for {len(eval_examples)} examples.")
    examples = [t5_example(e) for e in eval_examples]
    targets = [self.postprocess(ex["targets_pretokenized"], ex, is_target=True) for ex in examples]
    preds = [self.postprocess(p, ex) for p, ex in zip(predictions, examples)]
    result = self.metrics(targets, preds)
    result["score"] = self.score(result)
    return result


# ----------------------------------------------------------------------------- registry

_TASKS: dict[str, Task] = {}


def register_task(task: Task, overwrite: bool = False) -> Task:
  """Adds `task` under `task.name`; registering an equal task again is a no-op, a different one
  under a taken name needs `overwrite=True`."""
  if task.name in _TASKS and not overwrite and _TASKS[task.name] != task:
    raise ValueError(f"Task {task.name!r} is already registered; pick another name or pass overwrite=True.")
  _TASKS[task.name] = task
  return task


def is_registered(name: str) -> bool:
  """Whether a task of that name is registered (mixtures use it to keep their names distinct)."""
  return name in _TASKS


def unknown_name(kind: str, name: str, known: Sequence[str], how: str) -> ValueError:
  """The error for a task or mixture nobody registered: close matches, what is registered, `how` to add it."""
  close = difflib.get_close_matches(name, list(known), n=3)
  hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
  return ValueError(f"Unknown {kind} {name!r}{hint}. Registered {kind}s: {', '.join(sorted(known))}. {how}")


def get_task(name: str) -> Task:
  if name not in _TASKS:
    raise unknown_name("task", name, list(_TASKS),
                       "Tasks outside the built-in catalogue are registered by their module: list it in "
                       "config.data.task_modules (the synthetic synth_* tasks: 'spot_jax.data.synthetic'); "
                       "add your own with spot_jax.data.tasks.register_task in such a module.")
  return _TASKS[name]


def list_tasks() -> list[str]:
  """The registered tasks' names, sorted: the catalogue's and those of the imported task modules."""
  return sorted(_TASKS)


def set_tfds_version(task_name: str, version: Optional[str]) -> Task:
  """Reads task `task_name` from another version of its TFDS dataset(s) (None: TFDS's default for
  the installed code) from now on; returns the re-registered task."""
  task = get_task(task_name)
  if not isinstance(task.source, sources.TfdsSource):
    raise ValueError(f"Task {task_name!r} does not read TFDS (its source is {task.source!r}).")
  return register_task(dataclasses.replace(task, source=task.source.with_version(version)), overwrite=True)


# ----------------------------------------------------------------------------- task modules

_FILE_MODULES: dict[str, types.ModuleType] = {}  # real path of a .py task module -> the module


def import_task_modules(modules: Sequence[str]) -> list[types.ModuleType]:
  """Imports the modules that register a run's tasks and mixtures (`config.data.task_modules`).

  Each entry is a module name (`"spot_jax.data.synthetic"`, `"my_package.tasks"`) or the path of a
  `.py` file (`"experiments/task_modules/my_tasks.py"`, relative to the working directory). Importing twice is a
  no-op (a file is executed once per process). A module that cannot be found or imported is a
  `ConfigError` naming it; an error raised by the module's own code propagates with a note naming it.
  """
  if isinstance(modules, (str, bytes)):
    raise errors.ConfigError(f"config.data.task_modules must be a tuple of module names, not the string "
                             f"{modules!r}: write ({modules!r},).")
  return [_import_task_module(str(m)) for m in modules]


def _import_task_module(module: str) -> types.ModuleType:
  where = f"task module {module!r} (config.data.task_modules)"
  try:
    if module.endswith(".py"):
      return _import_file(module)
    return importlib.import_module(module)
  except FileNotFoundError as e:
    raise errors.ConfigError(f"Cannot import {where}: no file {os.path.abspath(module)!r}. Give a module "
                             "name (e.g. 'spot_jax.data.synthetic') or the path of a .py file.") from e
  except ImportError as e:
    missing = getattr(e, "name", None)
    if isinstance(e, ModuleNotFoundError) and missing and (module == missing or module.startswith(missing + ".")):
      raise errors.ConfigError(f"Cannot import {where}: no module named {missing!r}. Give an importable module "
                               "name (e.g. 'spot_jax.data.synthetic') or the path of a .py file.") from e
    raise errors.ConfigError(f"Cannot import {where}: {type(e).__name__}: {e}") from e
  except Exception as e:  # the module's own code failed: keep its traceback, say which module it was
    e.add_note(f"(while importing {where})")
    raise


def _import_file(path: str) -> types.ModuleType:
  real = os.path.realpath(path)
  if real not in _FILE_MODULES:
    if not os.path.isfile(real):
      raise FileNotFoundError(real)
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(real))[0], real)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _FILE_MODULES[real] = module
  return _FILE_MODULES[real]
