"""The fields every experiment config has, with the papers' defaults.

Why: experiment files in `experiments/` should read like a row of a paper's table (task, model size,
prompt length, steps), so the shared structure and defaults live here once. Each section maps to
one part of the pipeline: model (frozen backbone), data (lengths, eval), train (the trainer),
prompt_init, library, retrieval, grid; distributed says how the hosts of a multi-host run meet.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from spot_jax import distributed, train
from spot_jax.data import mixtures


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = ""  # task or mixture to train on (see `spot_jax.data.tasks.list_tasks()`)
  c.eval_task = ""  # task whose validation score picks the best prompt (default: `task` when it is a task)

  c.model = ml_collections.ConfigDict()
  c.model.hf_path = ""  # local Hugging Face T5 directory (T5 1.1 LM-adapted for SPoT)
  c.model.vocab_path = ""  # SentencePiece .model of that T5
  c.model.dtype = "float32"  # activations; "bfloat16" on TPU
  c.model.dropout_rate = 0.1  # frozen model's dropout during prompt tuning (T5 default)

  c.data = ml_collections.ConfigDict()
  c.data.input_length = 512
  c.data.target_length = 16
  c.data.data_dir = ""  # TFDS / local-file data directory ("" = TFDS default)
  c.data.eval_max_examples = 0  # 0 = the whole validation split
  c.data.eval_batch_size = 64

  c.train = train.default_config()

  c.prompt_init = ml_collections.ConfigDict()
  c.prompt_init.kind = "sampled_vocab"  # random_uniform | sampled_vocab | class_labels | npy | checkpoint | library
  c.prompt_init.scale = 0.5
  c.prompt_init.population = 5000
  c.prompt_init.path = ""  # npy file or run directory
  c.prompt_init.which = "best"
  c.prompt_init.library = ""
  c.prompt_init.source = ""

  c.library = ml_collections.ConfigDict()
  c.library.path = ""
  c.library.sources = ()

  c.retrieval = ml_collections.ConfigDict()
  c.retrieval.measures = ("average_tokens_cosine", "per_token_cosine")
  c.retrieval.measure = "average_tokens_cosine"  # the one used to pick sources
  c.retrieval.strategy = "best_of_top_k"  # best_of_top_k | weighted_average | mixture
  c.retrieval.k = 1
  c.retrieval.targets = ()
  # mixture strategy: source prompt tuning on the top-k sources + the target, examples-proportional
  c.retrieval.mixture_steps = 0  # 0 = train.num_train_steps
  c.retrieval.mixture_cap = mixtures.DEFAULT_CAP  # T5's cap on a task's examples when computing rates

  c.grid = ml_collections.ConfigDict()
  c.grid.sources = ()
  c.grid.targets = ()
  c.grid.seeds = (0,)

  c.distributed = distributed.default_config()  # multi-host: jax.distributed.initialize at start
  return c


def parse_arg(arg: str | None, **defaults: str) -> dict[str, str]:
  """'task=rte,size=base' -> {'task': 'rte', 'size': 'base'} over `defaults`; unknown keys are an error."""
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"Config argument {item!r} is not key=value (e.g. ':task=rte,size=base').")
    if key not in defaults:
      raise ValueError(f"Unknown config argument {key!r}; this experiment takes {sorted(defaults)}.")
    values[key] = value
  return values


def set_backbone(c: ml_collections.ConfigDict, size: str, hf_path: str = "") -> None:
  """T5 1.1 LM-adapted of `size`: a Hugging Face directory (which also holds spiece.model)."""
  c.model.hf_path = hf_path or f"checkpoints/t5-{size}-lm-adapt"
  c.model.vocab_path = f"{c.model.hf_path}/spiece.model"
  c.model.dtype = "float32" if size in ("small", "base") else "bfloat16"


def load_experiment(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of an experiment file (as `--config=path:arg` gives it to the CLI), for
  scripts and tests that build a job's config without the command line."""
  path = os.fspath(path)
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
