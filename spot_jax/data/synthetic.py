"""Synthetic text-to-text task families, built offline as a real TFDS dataset (`spot_synthetic`).

Why this exists: the offline quickstart and the tests need tasks where *transferability is known
by construction*, so that "a prompt from a related source helps more than one from an unrelated
source" and "prompt similarity retrieves the related source" are checkable claims, not hopes.

Design. A *family* is one underlying rule. Its tasks differ in surface form: the template words
around the payload and the payload separator; within a family the label words are the base task's
(a frozen decoder cannot be taught new output words by a prompt at toy scale — measured: prompt
tuning on new label words stayed at chance on the 64-d backbone). Families come in pairs that
share the payload type, template shapes *and* label words but not the rule, so every target task
has an unrelated source that looks exactly like it (the hardest control):

  payload: 3-6 digits      sorted  is the list non-decreasing?        repeat  does a digit repeat?
  payload: two numbers     compare which number is larger?            odd     which number is odd?
  payload: 2-4 words       reverse output the words reversed          copy    output the words as given

Each family has 4 tasks (`synth_<family>_<variant>`):
  base     canonical wording, for training the tiny backbone (`PRETRAIN_TASKS`)
  2 source new wordings, for source prompts (`SOURCE_TASKS`)
  1 target held-out wording (`TARGET_TASKS`)
Paired families' sources share template shapes and label words; only the rule word differs, e.g.
  synth_sorted_rising  `rising : 1 3 3 8`          -> `yes` / `no`
  synth_repeat_twice   `twice : 4 1 7 1`           -> `yes` / `no`
  synth_sorted_order   `in order ? 1 , 3 , 3 , 8`  -> `yes` / `no`
  synth_sorted_climb   `does it climb 1 3 3 8`     -> `yes` / `no`   (target)
Recommended protocol: train the backbone on `PRETRAIN_TASKS` (the rules, named by the canonical
words), freeze it, then prompt-tune on sources and targets — their wordings are new to the model,
so a prompt has to select the rule, which is what makes related prompts similar and transferable.
Negatives are hard where that matters: half of the unsorted lists are sorted lists with one
adjacent swap. Labels are balanced. Validation payloads never occur in the task's train split.

Sizes: 3000 train and 300 validation examples per task; with the 256-piece vocabulary trained
on `corpus_lines` (78 distinct words plus the numbers 0-99) inputs are <= 23 tokens and targets
<= 6 tokens, EOS included.
`prepare(data_dir)` builds all 24 configs in array_record format (idempotent, no download).
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from typing import Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from spot_jax.data import mixtures as mixtures_lib
from spot_jax.data import preprocessors as pp
from spot_jax.data import tasks as tasks_lib

DATASET = "spot_synthetic"
TRAIN_SIZE = 3000
VALIDATION_SIZE = 300
_NOUNS = ("cat", "dog", "sun", "box", "cup", "hat", "pen", "map", "key", "egg", "fox", "owl", "bee", "ant", "car",
          "bus", "toy", "bed", "jam", "ice")


@dataclasses.dataclass(frozen=True)
class _Variant:
  family: str
  variant: str
  role: str  # "base" | "source" | "target"
  template: str  # {p}: the payload joined by `sep`; {a}, {b}: first and last payload item
  label_words: Optional[tuple[str, str]]  # (rule false / first, rule true / second); None: generative
  sep: str = " "

  @property
  def config_name(self) -> str:
    return f"{self.family}_{self.variant}"

  @property
  def task_name(self) -> str:
    return f"synth_{self.family}_{self.variant}"


def _family(family: str, base: tuple, sources: tuple, target: tuple) -> list[_Variant]:
  return [_Variant(family, *base[:1], "base", *base[1:]), *(_Variant(family, s[0], "source", *s[1:]) for s in sources),
          _Variant(family, target[0], "target", *target[1:])]


VARIANTS: tuple[_Variant, ...] = tuple(
    # digit lists, yes/no rules
    _family("sorted", ("base", "sorted ? {p}", ("no", "yes")),
            (("rising", "rising : {p}", ("no", "yes")), ("order", "in order ? {p}", ("no", "yes"), " , ")),
            ("climb", "does it climb {p}", ("no", "yes")))
    + _family("repeat", ("base", "repeat ? {p}", ("no", "yes")),
              (("twice", "twice : {p}", ("no", "yes")), ("dup", "any dup ? {p}", ("no", "yes"), " , ")),
              ("again", "seen again {p}", ("no", "yes")))
    # two numbers, first/second rules
    + _family("compare", ("base", "larger : {p}", ("first", "second")),
              (("bigger", "bigger : {p}", ("first", "second")), ("max", "max of {a} and {b} ?", ("first", "second"))),
              ("greater", "which is greater {a} {b}", ("first", "second")))
    + _family("odd", ("base", "odd one : {p}", ("first", "second")),
              (("pick", "pick odd : {p}", ("first", "second")), ("which", "odd of {a} and {b} ?", ("first", "second"))),
              ("find", "find the odd {a} {b}", ("first", "second")))
    # word lists, generative rules
    + _family("reverse", ("base", "reverse : {p}", None),
              (("back", "backwards : {p}", None), ("mirror", "mirror [ {p} ]", None, " , ")),
              ("flip", "flip these {p}", None))
    + _family("copy", ("base", "copy : {p}", None),
              (("echo", "echo : {p}", None), ("say", "say [ {p} ]", None, " , ")),
              ("same", "same as {p}", None)))

PRETRAIN_TASKS: tuple[str, ...] = tuple(v.task_name for v in VARIANTS if v.role == "base")
SOURCE_TASKS: tuple[str, ...] = tuple(v.task_name for v in VARIANTS if v.role == "source")
TARGET_TASKS: tuple[str, ...] = tuple(v.task_name for v in VARIANTS if v.role == "target")
FAMILY: dict[str, str] = {v.task_name: v.family for v in VARIANTS}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(v.family for v in VARIANTS))
# Families with the same payload type and surface forms but a different rule.
COUNTERPART: dict[str, str] = {"sorted": "repeat", "repeat": "sorted", "compare": "odd", "odd": "compare",
                               "reverse": "copy", "copy": "reverse"}
_BY_CONFIG = {v.config_name: v for v in VARIANTS}


# ----------------------------------------------------------------------------- payloads and rules


def _digits_sorted(rng: random.Random) -> tuple[list[str], int]:
  k = rng.randint(3, 6)
  if rng.random() < 0.5:
    return [str(d) for d in sorted(rng.randrange(10) for _ in range(k))], 1
  while True:
    xs = sorted(rng.randrange(10) for _ in range(k))
    if rng.random() < 0.5:  # hard negative: one adjacent swap of a sorted list
      i = rng.randrange(k - 1)
      xs[i], xs[i + 1] = xs[i + 1], xs[i]
    else:
      rng.shuffle(xs)
    if any(a > b for a, b in zip(xs, xs[1:])):
      return [str(d) for d in xs], 0


def _digits_repeat(rng: random.Random) -> tuple[list[str], int]:
  k = rng.randint(3, 6)
  if rng.random() < 0.5:
    xs = rng.sample(range(10), k - 1)
    xs.append(rng.choice(xs))
    rng.shuffle(xs)
    return [str(d) for d in xs], 1
  return [str(d) for d in rng.sample(range(10), k)], 0


def _numbers_compare(rng: random.Random) -> tuple[list[str], int]:
  a, b = rng.sample(range(100), 2)
  return [str(a), str(b)], int(b > a)


def _numbers_odd(rng: random.Random) -> tuple[list[str], int]:
  odd, even = rng.randrange(1, 100, 2), rng.randrange(0, 100, 2)
  second = rng.random() < 0.5
  return ([str(even), str(odd)] if second else [str(odd), str(even)]), int(second)


def _words(rng: random.Random) -> list[str]:
  return rng.sample(_NOUNS, rng.randint(2, 4))


_RULES = {
    "sorted": _digits_sorted,
    "repeat": _digits_repeat,
    "compare": _numbers_compare,
    "odd": _numbers_odd,
    "reverse": lambda rng: (_words(rng), -1),
    "copy": lambda rng: (_words(rng), -1),
}


def make_example(variant: _Variant, rng: random.Random) -> dict:
  """One example of `variant`: {'inputs', 'targets', 'payload', 'label'} (label -1: generative)."""
  items, label = _RULES[variant.family](rng)
  inputs = variant.template.format(p=variant.sep.join(items), a=items[0], b=items[-1])
  if variant.label_words is not None:
    targets = variant.label_words[label]
  elif variant.family == "reverse":
    targets = " ".join(reversed(items))
  else:
    targets = " ".join(items)
  return {"inputs": inputs, "targets": targets, "payload": " ".join(items), "label": label}


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
  while len(train) < TRAIN_SIZE:
    ex = make_example(variant, rng)
    if ex["payload"] not in held_out:
      train.append(ex)
  return train


# ----------------------------------------------------------------------------- the TFDS builder


class SpotSyntheticConfig(tfds.core.BuilderConfig):
  """One synthetic task (family + variant)."""


class SpotSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic SPoT task families (see the module docstring); generated locally, nothing downloaded."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Six families x (base, 2 sources, 1 target).",
                   "1.1.0": "Label words shared within a family (prompts cannot teach new outputs at toy scale)."}
  BUILDER_CONFIGS = [
      SpotSyntheticConfig(name=v.config_name, description=f"{v.role} task of family {v.family!r}: {v.template}")
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


def prepare(data_dir: str) -> None:
  """Builds every config into `data_dir` (array_record; skips those already built) and makes it
  the default data_dir of the synthetic tasks."""
  config = tfds.download.DownloadConfig(try_download_gcs=False)
  builders = [SpotSynthetic(config=v.config_name, data_dir=data_dir) for v in VARIANTS]
  missing = [b for b in builders if not b.is_prepared()]
  if missing:
    tfds.disable_progress_bar()  # 48 progress bars for a few seconds of work is noise
    for builder in missing:
      builder.download_and_prepare(download_config=config, file_format="array_record")
  tasks_lib.set_data_dir(DATASET, data_dir)


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
        description=f"Synthetic {v.role} task of family {v.family!r}: `{v.template}`."))
  register = mixtures_lib.register_mixture
  register(mixtures_lib.Mixture("synth_pretrain", PRETRAIN_TASKS, tuple(1.0 for _ in PRETRAIN_TASKS)))
  register(mixtures_lib.Mixture("synth_sources", SOURCE_TASKS, tuple(1.0 for _ in SOURCE_TASKS)))
  register(mixtures_lib.Mixture("synth_all", tuple(FAMILY), tuple(1.0 for _ in FAMILY)))


_register()
