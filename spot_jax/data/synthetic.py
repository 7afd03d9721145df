"""Synthetic text-to-text task families, built offline as a real TFDS dataset (`spot_synthetic`).

Why this exists: the offline quickstart and the tests need tasks where *transferability is known
by construction*, so that "a prompt from a related source helps more than one from an unrelated
source" and "prompt similarity retrieves the related source" are checkable claims, not hopes.

Design. Every task reads the same kind of input, a list of 3-6 digits, and a *family* is one rule
over it. Three families answer `yes` / `no`, three answer with digits:

  seven    does the list contain a 7?           reverse  the digits in reverse order
  big      is the first digit 5 or more?        first    the first digit
  lowend   is the last digit 4 or less?         last     the last digit

(Rules a 64-wide T5 learns well from scratch in a minute, and that read the same whatever the
payload's format: a length rule would not, as commas double the number of tokens. Two pairs mirror
each other, first vs last digit, so some unrelated families are "a little" related, as real
tasks are.)

Each family has 4 tasks (`synth_<family>_<variant>`):
  base     the rule *named* in the input (`sorted ? 1 , 3 , 3 , 8`), in all three payload formats;
           the tiny backbone is model-tuned on these (`PRETRAIN_TASKS`) and then frozen.
  comma    `1 , 3 , 3 , 8`    } sources (`SOURCE_TASKS`): the bare payload, no rule word,
  bracket  `[ 1 3 3 8 ]`      } 3000 training examples each
  target   `1 3 3 8`          held out (`TARGET_TASKS`): bare payload, low-resource (64 examples)
Since source and target inputs never say which rule applies, only the prompt can: a prompt has to
learn to stand in for the rule's name. Tasks of one family are therefore truly related (same rule,
other surface form); tasks of different families are not, although their inputs look exactly
alike (the hardest control: an unrelated prompt reads the same inputs and even, within a group,
produces the same label words). The targets are low-resource, as SPoT's best-helped targets are
(CB, COPA, WSC): from a random start, 64 examples are little evidence of which rule is meant.
Labels are balanced. Validation payloads never occur in the task's train split.

Sizes: 3000 train (targets: 64) and 300 validation examples per task; with the 256-piece vocabulary
trained on `corpus_lines`, inputs are <= 24 tokens and targets <= 7 tokens, EOS included.
`prepare(data_dir)` builds all 24 configs in array_record format (idempotent, no download).

Importing this module registers the 24 tasks and the mixtures `synth_pretrain`, `synth_sources`,
`synth_all` (and imports TensorFlow Datasets, for the builder); nothing else imports it, so they exist
only where a run asks for them: `config.data.task_modules = ("spot_jax.data.synthetic",)` (see
`tasks.import_task_modules`), or `from spot_jax.data import synthetic` in a script or test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import random
import zlib
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging as absl_logging
from etils import epath

from spot_jax.data import mixtures as mixtures_lib
from spot_jax.data import preprocessors as pp
from spot_jax.data import tasks as tasks_lib

DATASET = "spot_synthetic"
TRAIN_SIZE = 3000
TARGET_TRAIN_SIZE = 64
VALIDATION_SIZE = 300
YES_NO = ("no", "yes")
FORMATS = ("comma", "bracket", "plain")  # how the digits are written


def format_payload(digits: list[str], fmt: str) -> str:
  """`1 , 3 , 3 , 8` (comma), `[ 1 3 3 8 ]` (bracket) or `1 3 3 8` (plain)."""
  return {"comma": " , ".join(digits), "bracket": f"[ {' '.join(digits)} ]", "plain": " ".join(digits)}[fmt]


@dataclasses.dataclass(frozen=True)
class _Variant:
  family: str
  variant: str
  role: str  # "base" | "source" | "target"
  fmt: Optional[str]  # payload format; None: any of FORMATS, chosen per example (base tasks)

  @property
  def config_name(self) -> str:
    return f"{self.family}_{self.variant}"

  @property
  def task_name(self) -> str:
    return f"synth_{self.family}_{self.variant}"

  @property
  def label_words(self) -> Optional[tuple[str, str]]:
    return YES_NO if self.family in CLASSIFICATION_FAMILIES else None

  @property
  def train_size(self) -> int:
    return TARGET_TRAIN_SIZE if self.role == "target" else TRAIN_SIZE

  @property
  def description(self) -> str:
    shown = format_payload(["1", "3", "3", "8"], self.fmt or "comma")
    return f"`{RULE_WORDS[self.family]} {shown}`" if self.role == "base" else f"`{shown}` (rule unnamed)"


CLASSIFICATION_FAMILIES = ("seven", "big", "lowend")
GENERATIVE_FAMILIES = ("reverse", "first", "last")
FAMILIES: tuple[str, ...] = CLASSIFICATION_FAMILIES + GENERATIVE_FAMILIES
RULE_WORDS = {"seven": "has seven ?", "big": "big first ?", "lowend": "low end ?",
              "reverse": "reverse :", "first": "first :", "last": "last :"}

VARIANTS: tuple[_Variant, ...] = tuple(
    v for f in FAMILIES for v in (_Variant(f, "base", "base", None), _Variant(f, "comma", "source", "comma"),
                                  _Variant(f, "bracket", "source", "bracket"), _Variant(f, "target", "target", "plain")))

PRETRAIN_TASKS: tuple[str, ...] = tuple(v.task_name for v in VARIANTS if v.role == "base")
SOURCE_TASKS: tuple[str, ...] = tuple(v.task_name for v in VARIANTS if v.role == "source")
TARGET_TASKS: tuple[str, ...] = tuple(v.task_name for v in VARIANTS if v.role == "target")
FAMILY: dict[str, str] = {v.task_name: v.family for v in VARIANTS}
_BY_CONFIG = {v.config_name: v for v in VARIANTS}


# ----------------------------------------------------------------------------- payloads and rules


def _digits(rng: random.Random, k: Optional[int] = None) -> list[int]:
  return [rng.randrange(10) for _ in range(k or rng.randint(3, 6))]


def _balanced(rule: Callable[[list[int]], int]) -> Callable[[random.Random], tuple[list[int], int]]:
  """A sampler whose label (`rule(xs)`, 0 or 1) is 1 half of the time."""
  def sample(rng: random.Random) -> tuple[list[int], int]:
    want = int(rng.random() < 0.5)
    while True:
      xs = _digits(rng)
      if rule(xs) == want:
        return xs, want
  return sample


def _has_seven(xs: list[int]) -> int:
  return int(7 in xs)


def _big_first(xs: list[int]) -> int:
  return int(xs[0] >= 5)


def _low_end(xs: list[int]) -> int:
  return int(xs[-1] <= 4)


def _generative(rng: random.Random) -> tuple[list[int], int]:
  return _digits(rng), -1


RULES = {  # family -> (payload sampler, answer of a payload: label index or target text)
    "seven": (_balanced(_has_seven), _has_seven),
    "big": (_balanced(_big_first), _big_first),
    "lowend": (_balanced(_low_end), _low_end),
    "reverse": (_generative, lambda xs: " ".join(map(str, reversed(xs)))),
    "first": (_generative, lambda xs: str(xs[0])),
    "last": (_generative, lambda xs: str(xs[-1])),
}


def make_example(variant: _Variant, rng: random.Random) -> dict:
  """One example of `variant`: {'inputs', 'targets', 'payload', 'label'} (label -1: generative)."""
  sample, answer = RULES[variant.family]
  xs, label = sample(rng)
  digits = [str(x) for x in xs]
  text = format_payload(digits, variant.fmt or rng.choice(FORMATS))
  inputs = f"{RULE_WORDS[variant.family]} {text}" if variant.role == "base" else text
  targets = variant.label_words[answer(xs)] if variant.label_words else answer(xs)
  return {"inputs": inputs, "targets": targets, "payload": " ".join(digits), "label": label}


def generate(config_name: str, split: str) -> list[dict]:
  """All examples of one config and split, deterministically (validation payloads are kept out of
  train). Pure Python: also usable without TFDS."""
  variant = _BY_CONFIG[config_name]
  val_rng = random.Random(zlib.crc32(f"{config_name}/validation".encode()))
  validation = [make_example(variant, val_rng) for _ in range(VALIDATION_SIZE)]
  if split == "validation":
    return validation
  if split != "train":
    raise ValueError(f"spot_synthetic has splits 'train' and 'validation'; got {split!r}.")
  held_out = {ex["payload"] for ex in validation}
  rng = random.Random(zlib.crc32(f"{config_name}/train".encode()))
  train = []
  while len(train) < variant.train_size:
    ex = make_example(variant, rng)
    if ex["payload"] not in held_out:
      train.append(ex)
  return train


# ----------------------------------------------------------------------------- the TFDS builder


class SpotSyntheticConfig(tfds.core.BuilderConfig):
  """One synthetic task (family + variant)."""


class SpotSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic SPoT task families (see the module docstring); generated locally, nothing downloaded."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Six families x (base, 2 sources, 1 target).",
                   "1.1.0": "Label words shared within a family (prompts cannot teach new outputs at toy scale).",
                   "2.0.0": "Six rules over one input kind; sources and targets leave the rule unnamed; "
                            "low-resource targets."}
  BUILDER_CONFIGS = [
      SpotSyntheticConfig(name=v.config_name, description=f"{v.role} task of family {v.family!r}: {v.description}")
      for v in VARIANTS
  ]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS derives this through `importlib_resources`, which the pinned environment does not ship;
    # the answer is simply this file (it has no checksums or metadata files beside it).
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[0],
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Text(),
            "targets": tfds.features.Text(),
            "payload": tfds.features.Text(),
            "label": tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=("inputs", "targets"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {"train": self._generate_examples("train"), "validation": self._generate_examples("validation")}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    for i, ex in enumerate(generate(self.builder_config.name, split)):
      yield f"{split}-{i}", ex


def prepare(data_dir: str, file_format: str = "array_record", configs: Optional[Sequence[str]] = None) -> None:
  """Builds the configs (default: all) into `data_dir` (skips those already built) and makes it the
  default data_dir of the synthetic tasks. `file_format="tfrecord"` gives the layout most of the
  TFDS catalog (C4 included) is prepared in, to exercise that reader."""
  config = tfds.download.DownloadConfig(try_download_gcs=False)
  with _quiet_tfds():  # 24 "preparing ..." banners and warnings for a few seconds of local work are noise
    names = [v.config_name for v in VARIANTS] if configs is None else list(configs)
    for builder in [SpotSynthetic(config=name, data_dir=data_dir) for name in names]:
      if not builder.is_prepared():
        builder.download_and_prepare(download_config=config, file_format=file_format)
  tasks_lib.set_data_dir(DATASET, data_dir)


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
  tfds.disable_progress_bar()
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    absl_logging.set_verbosity(verbosity)


def corpus_lines(data_dir: str, per_task: int = 400) -> list[str]:
  """Inputs and targets of the first `per_task` train examples of every task (prepared in
  `data_dir` if needed): enough text to train the quickstart's SentencePiece model."""
  prepare(data_dir)
  lines = []
  for v in VARIANTS:
    source = tasks_lib.get_task(v.task_name).source.open("train", data_dir)
    rows = source.read_many(range(min(per_task, len(source))))
    for ex in rows:
      lines.append(pp.as_text(ex["inputs"]))
      lines.append(pp.as_text(ex["targets"]))
  return lines


# ----------------------------------------------------------------------------- registration


def _register() -> None:
  for v in VARIANTS:
    source = tasks_lib.TfdsSource((f"{DATASET}/{v.config_name}",))
    classification = v.label_words is not None
    tasks_lib.register_task(tasks_lib.Task(
        v.task_name, source, pp.passthrough(label_key="label" if classification else None),
        metric_names=("accuracy",), label_words=v.label_words,
        postprocessor="label" if classification else "text",
        description=f"Synthetic {v.role} task of family {v.family!r}: {v.description}."))
  register = mixtures_lib.register_mixture
  register(mixtures_lib.Mixture("synth_pretrain", PRETRAIN_TASKS, tuple(1.0 for _ in PRETRAIN_TASKS)))
  register(mixtures_lib.Mixture("synth_sources", SOURCE_TASKS, tuple(1.0 for _ in SOURCE_TASKS)))
  register(mixtures_lib.Mixture("synth_all", tuple(FAMILY), tuple(1.0 for _ in FAMILY)))


_register()
