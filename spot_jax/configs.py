"""The fields every experiment config has, with the papers' defaults.

Why: experiment files in `experiments/` should read like a row of a paper's table (task, model size,
prompt length, steps), so the shared structure and defaults live here once. Each section maps to
one part of the pipeline: model (frozen backbone), data (lengths, eval), train (the trainer),
prompt_init, library, retrieval, grid; distributed says how the hosts of a multi-host run meet.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import ml_collections

from spot_jax import errors


def train_defaults() -> ml_collections.ConfigDict:
  """`config.train`, the trainer's settings; the defaults are the prompt-tuning papers' (Lester et al.;
  Vu et al.)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.prompt_length = 100
  c.num_train_steps = 30_000
  c.batch_size = 32  # global, over all hosts
  c.grad_accum_steps = 1  # split each batch into this many micro-batches (same result, less memory)
  # The optimizer and loss of google-research/prompt-tuning (prompt_tuning/configs/models/
  # t5_1_1_prompt.gin, "PT" below; runs/prompt_finetune.gin) on t5x's Adafactor (t5x/adafactor.py):
  c.learning_rate = 0.3  # constant 0.3: runs/prompt_finetune.gin:42-44
  c.optimizer = "adafactor"  # adafactor (prompt tuning) | adamw (Su et al.'s cross-model projector)
  c.schedule = "constant"  # constant | warmup_constant | warmup_rsqrt
  c.warmup_steps = 0
  c.adafactor_decay_rate = 0.8  # PT:51 (second-moment decay 1 - t^-0.8)
  c.clipping_threshold = 1.0  # t5x's default (PT leaves it); update clipping by RMS
  c.weight_decay_rate = 1e-5  # PT:54: each step p <- (1 - 1e-5) p - lr * update (not scaled by lr)
  # t5x counts Adafactor's steps on from the checkpoint's: prompt tuning starts at the LM-adapted T5's
  # step 1,100,000 (checkpoint_1100000; PT:52 step_offset 0), so t = step + 1.1M in 1 - t^-0.8 and the
  # second moments barely move from their first value. 0: a fresh count (a backbone without that history).
  c.adafactor_start_step = 1_100_000
  # No parameter scaling (PT:53); factored only where t5x would factor (both dims >= 128; a 100-token
  # prompt is not), no momentum, eps 1e-30: t5x's defaults, which optax.adafactor shares.
  c.z_loss = 1e-4  # PT:107
  c.label_smoothing = 0.0  # PT:108
  c.mesh_shape = (-1, 1)  # (data, model); -1 = all remaining devices
  c.log_every = 100
  c.eval_every = 1000  # 0 = never
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.embedding_step = 0  # >0: save the prompt at this step as the task embedding (SPoT library key)
  # Jobs that train many prompts on one frozen model (library build, transfer grid, seeds) train this
  # many in one step, each on its own examples with its own optimizer state: the same prompts as
  # separate runs, the hardware used K times better (train.train_prompts).
  c.prompts_per_step = 1
  # Of those K, how many share one vectorised computation (0: all K, for accelerators). The rest run
  # group after group inside the same step. On a CPU a large vectorised batch can fall out of cache:
  # with 42-token inputs the quickstart's tiny step cost 0.53x per example with all 12 at once, 1.0x
  # in groups of 2; with its 30-token inputs all 12 at once is fastest (`benchmarks/multi_prompt.py
  # --in-parallel=N` measures it).
  c.prompts_in_parallel = 0
  # How this run may treat its workdir (they do not change the result):
  c.allow_changes = ""  # comma-separated fields allowed to differ from the workdir's run, e.g. "num_train_steps"
  c.fresh_start = False  # True: start over at step 0 when every checkpoint is unreadable (old prompts kept aside)
  return c


def distributed_defaults() -> ml_collections.ConfigDict:
  """`config.distributed`: off by default; on Cloud TPU `enabled=True` alone is enough."""
  c = ml_collections.ConfigDict()
  c.enabled = False
  c.coordinator_address = ""  # "host:port" of process 0; "" = auto-detect (Cloud TPU, Slurm, Open MPI)
  c.num_processes = 0  # 0 = auto-detect
  c.process_id = -1  # -1 = auto-detect
  c.initialization_timeout = 300  # s to wait for every process to connect
  c.heartbeat_timeout = 100  # s without a heartbeat after which a process counts as dead and all stop
  c.shutdown_timeout = 300  # s a finished process waits at exit for the others
  return c


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = ""  # task or mixture to train on (see `spot_jax.data.tasks.list_tasks()`)
  c.eval_task = ""  # task whose validation score picks the best prompt (default: `task` when it is a task)

  c.model = ml_collections.ConfigDict()
  c.model.hf_path = ""  # local Hugging Face T5 directory (T5 1.1 LM-adapted for SPoT)
  c.model.vocab_path = ""  # SentencePiece .model of that T5
  c.model.extra_ids = 0  # sentinels <extra_id_0..N-1> after the SentencePiece ids (T5's vocabulary: 100)
  c.model.dtype = "float32"  # activations; "bfloat16" on TPU
  c.model.dropout_rate = 0.1  # frozen model's dropout during prompt tuning (T5 default)

  c.data = ml_collections.ConfigDict()
  c.data.input_length = 512
  c.data.target_length = 16
  c.data.data_dir = ""  # TFDS / local-file data directory ("" = TFDS default)
  # Modules that register this run's tasks beyond the built-in catalogue, imported at job start
  # (`spot_jax.data.tasks.import_task_modules`): names or .py paths, e.g. ("spot_jax.data.synthetic",).
  c.data.task_modules = ()
  c.data.eval_max_examples = 0  # 0 = the whole validation split
  c.data.eval_batch_size = 64
  c.data.skip_invalid_examples = False  # True: skip rows whose label is outside the task's (count logged)

  c.train = train_defaults()

  c.eval = ml_collections.ConfigDict()
  # generate: the papers' scoring (greedy decoding, the task's postprocessor, an invalid output is
  # wrong); rank: rank classification over the label words (classification tasks only).
  c.eval.mode = "generate"

  c.prompt_init = ml_collections.ConfigDict()
  c.prompt_init.kind = "sampled_vocab"  # random_uniform | sampled_vocab | class_labels | npy | checkpoint | library
  c.prompt_init.scale = 0.5
  c.prompt_init.population = 5000
  c.prompt_init.path = ""  # npy file or run directory
  c.prompt_init.which = "best"
  c.prompt_init.library = ""
  c.prompt_init.source = ""
  # A prompt from a run or library of another frozen model is refused (cross-model transfer goes
  # through the projector); True takes it anyway.
  c.prompt_init.allow_other_model = False

  c.library = ml_collections.ConfigDict()
  c.library.path = ""
  c.library.sources = ()
  # Prompt-tuning runs per source task (seeds train.seed + r): SPoT's library is 16 tasks x 3 runs = 48
  # prompts, and retrieval ranks prompts (k = 1, 3, ... counts prompts).
  c.library.runs_per_source = 3

  c.retrieval = ml_collections.ConfigDict()
  c.retrieval.measures = ("average_tokens_cosine", "per_token_cosine")
  c.retrieval.measure = "average_tokens_cosine"  # the one used to pick sources
  c.retrieval.strategy = "best_of_top_k"  # best_of_top_k | weighted_average | mixture
  c.retrieval.k = 1  # prompts retrieved (the library holds several runs per task: k counts prompts)
  # Target prompt-tuning runs whose embeddings rank the library (seeds train.seed + i): a source
  # prompt's similarity is the mean over them, as SPoT averages over 3 target runs.
  c.retrieval.target_runs = 3
  c.retrieval.targets = ()
  # mixture strategy: source prompt tuning on the top-k sources + the target, examples-proportional
  c.retrieval.mixture_steps = 0  # 0 = train.num_train_steps
  c.retrieval.mixture_cap = 2 ** 19  # T5's cap on a task's examples when computing rates (mixtures.DEFAULT_CAP)

  c.grid = ml_collections.ConfigDict()
  c.grid.sources = ()
  c.grid.targets = ()
  c.grid.seeds = (0,)

  c.distributed = distributed_defaults()  # multi-host: jax.distributed.initialize at start
  return c


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """'task=rte,steps=1000,fast' -> a ConfigDict over `defaults`, each value converted to its default's
  type (int, float, bool, str, or a tuple written `0:1:2`); a bare key sets a bool to True (as
  big_vision's `parse_arg`). An unknown key or a value of the wrong type is one clear error."""
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, text = item.partition("=")
    if key not in defaults:
      raise errors.ConfigError(f"Unknown config argument {key!r}; this experiment takes {sorted(defaults)}.")
    if not sep and not isinstance(defaults[key], bool):
      raise errors.ConfigError(f"Config argument {item!r} is not key=value (e.g. ':task=rte,size=base').")
    values[key] = _convert_arg(key, text if sep else "True", defaults[key])
  return ml_collections.ConfigDict(values)


def _convert_arg(key: str, text: str, default: Any) -> Any:
  """`text` as the type of `default`."""
  if isinstance(default, tuple):
    element = type(default[0]) if default else str
    return tuple(_convert_arg(key, part, element()) for part in filter(None, text.split(":")))
  try:
    if isinstance(default, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return text.lower() in ("true", "1")
    return type(default)(text)
  except ValueError:
    raise errors.ConfigError(f"Config argument {key}={text!r} is not {type(default).__name__} like its default "
                             f"{default!r}.") from None


def set_backbone(c: ml_collections.ConfigDict, size: str, hf_path: str = "") -> None:
  """T5 1.1 LM-adapted of `size`: a Hugging Face directory (which also holds spiece.model)."""
  c.model.hf_path = hf_path or f"checkpoints/t5-{size}-lm-adapt"
  c.model.vocab_path = f"{c.model.hf_path}/spiece.model"
  c.model.extra_ids = 100  # T5's vocabulary: 32000 pieces + 100 sentinels (Su et al.'s ON input uses <extra_id_0>)
  c.model.dtype = "float32" if size in ("small", "base") else "bfloat16"


def load_experiment(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of an experiment file (as `--config=path:arg` gives it to the CLI), for
  scripts and tests that build a job's config without the command line."""
  path = os.fspath(path)
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


# ----------------------------------------------------------------------------- validation
# Every field a job reads, checked before any file is touched: one line naming the field, the value
# and what is allowed (a value that passes here must not fail later inside JAX or Orbax).

_INT = lambda low: (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an integer >= {low}")
_NUMBER = lambda test, text: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and test(v), text)
_ONE_OF = lambda *choices: (lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))
_BOOL = (lambda v: isinstance(v, bool), "True or False")
_STR = (lambda v: isinstance(v, str), "a string")

_TRAIN_RULES = {
    "seed": _INT(0),
    "num_train_steps": _INT(1),
    "batch_size": _INT(1),
    "grad_accum_steps": _INT(1),
    "learning_rate": _NUMBER(lambda v: 0 < v < float("inf"), "a number > 0"),
    "optimizer": _ONE_OF("adafactor", "adamw"),
    "schedule": _ONE_OF("constant", "warmup_constant", "warmup_rsqrt"),
    "warmup_steps": _INT(0),
    "adafactor_decay_rate": _NUMBER(lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "clipping_threshold": _NUMBER(lambda v: v > 0, "a number > 0"),
    "weight_decay_rate": _NUMBER(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "adafactor_start_step": _INT(0),
    "z_loss": _NUMBER(lambda v: v >= 0, "a number >= 0"),
    "label_smoothing": _NUMBER(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "mesh_shape": (lambda v: isinstance(v, (tuple, list)) and len(v) == 2
                   and all(isinstance(x, int) and (x == -1 or x >= 1) for x in v),
                   "(data, model): two integers, each >= 1 or -1 (all remaining devices)"),
    "log_every": _INT(1),
    "eval_every": _INT(0),
    "checkpoint_every": _INT(1),
    "keep_checkpoints": _INT(1),
    "embedding_step": _INT(0),
    "prompts_per_step": _INT(1),
    "prompts_in_parallel": _INT(0),
    "allow_changes": _STR,
    "fresh_start": _BOOL,
}
_DATA_RULES = {
    "task_modules": (lambda v: isinstance(v, (tuple, list)) and all(isinstance(m, str) and m for m in v),
                     "a tuple of module names or .py paths, e.g. ('spot_jax.data.synthetic',)"),
    "input_length": _INT(1),
    "target_length": _INT(1),
    "data_dir": _STR,
    "eval_max_examples": _INT(0),
    "eval_batch_size": _INT(1),
    "skip_invalid_examples": _BOOL,
}
_PROMPT_INIT_KINDS = ("random_uniform", "sampled_vocab", "class_labels", "npy", "checkpoint", "library")
_PROMPT_INIT_RULES = {
    "kind": _ONE_OF(*_PROMPT_INIT_KINDS),
    "scale": _NUMBER(lambda v: v > 0, "a number > 0"),
    "population": _INT(4),
    "allow_other_model": _BOOL,
}
_MODEL_RULES = {
    "dtype": _ONE_OF("float32", "bfloat16"),
    "dropout_rate": _NUMBER(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "extra_ids": _INT(0),
}
_EVAL_RULES = {"mode": _ONE_OF("generate", "rank")}
_LIBRARY_RULES = {"runs_per_source": _INT(1)}
_RETRIEVAL_RULES = {
    "target_runs": _INT(1),
    "strategy": _ONE_OF("best_of_top_k", "weighted_average", "mixture"),
    "k": _INT(1),
    "mixture_steps": _INT(0),
    "mixture_cap": _INT(1),
}


def _check_section(section: ml_collections.ConfigDict, rules: dict, where: str) -> None:
  for name, (test, allowed) in rules.items():
    if name in section and not test(section[name]):
      raise errors.ConfigError(f"{where}.{name} = {section[name]!r} is not allowed: it must be {allowed}.")


def check_train(cfg: ml_collections.ConfigDict, *, prompt_tuning: bool = True, where: str = "config.train") -> None:
  """Validates a trainer config (`config.train`); the trainer calls it before touching its workdir.
  `prompt_tuning=False` (model tuning) allows prompt_length 0."""
  _check_section(cfg, _TRAIN_RULES, where)
  if "prompt_length" in cfg and not _INT(1 if prompt_tuning else 0)[0](cfg.prompt_length):
    raise errors.ConfigError(f"{where}.prompt_length = {cfg.prompt_length!r} is not allowed: it must be "
                             f"{_INT(1 if prompt_tuning else 0)[1]} (the paper's is 100).")
  if cfg.batch_size % cfg.grad_accum_steps:
    raise errors.ConfigError(f"{where}.batch_size = {cfg.batch_size} is not divisible by {where}.grad_accum_steps "
                             f"= {cfg.grad_accum_steps}: each micro-batch must have the same size.")
  if cfg.schedule != "constant" and cfg.warmup_steps < 1:
    raise errors.ConfigError(f"{where}.warmup_steps = {cfg.warmup_steps} with schedule {cfg.schedule!r}: a warmup "
                             "schedule needs warmup_steps >= 1 (or schedule='constant').")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every trainer / data / eval / prompt-init / retrieval field a job reads, up front.

  Raises `errors.ConfigError` naming the first bad field, its value and what is allowed.
  """
  if "train" in config:
    check_train(config.train)
  for section, rules in (("data", _DATA_RULES), ("prompt_init", _PROMPT_INIT_RULES), ("model", _MODEL_RULES),
                         ("eval", _EVAL_RULES), ("retrieval", _RETRIEVAL_RULES), ("library", _LIBRARY_RULES)):
    if section in config:
      _check_section(config[section], rules, f"config.{section}")
  init = config.get("prompt_init")
  if init is not None and init.kind in ("npy", "checkpoint") and not init.get("path"):
    raise errors.ConfigError(f"config.prompt_init.kind = {init.kind!r} needs config.prompt_init.path (a .npy file "
                             "or a run directory).")
  if init is not None and init.kind == "library" and not (init.get("library") and init.get("source")):
    raise errors.ConfigError("config.prompt_init.kind = 'library' needs config.prompt_init.library (a library "
                             "directory) and config.prompt_init.source (the entry's task).")
  retrieval = config.get("retrieval")
  if retrieval is not None and "measures" in retrieval:
    known = ("average_tokens_cosine", "per_token_cosine")
    unknown = [m for m in retrieval.measures if m not in known]
    if unknown or not retrieval.measures:
      raise errors.ConfigError(f"config.retrieval.measures = {tuple(retrieval.measures)!r} is not allowed: it must "
                               f"be a non-empty list of {known}.")
    if retrieval.measure not in retrieval.measures:
      raise errors.ConfigError(f"config.retrieval.measure = {retrieval.measure!r} is not allowed: it must be one of "
                               f"config.retrieval.measures {tuple(retrieval.measures)}.")
  grid = config.get("grid")
  if grid is not None and "seeds" in grid and not (grid.seeds and all(_INT(0)[0](s) for s in grid.seeds)):
    raise errors.ConfigError(f"config.grid.seeds = {tuple(grid.seeds)!r} is not allowed: it must be a non-empty "
                             "list of integers >= 0.")
