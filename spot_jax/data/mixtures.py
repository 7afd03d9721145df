"""Mixtures: several tasks sampled at fixed rates into one training stream.

Why this exists: SPoT's strongest generic source prompts are trained on task mixtures (the rows of
the paper's Table 1, `TABLE_1_MIXTURES`: GLUE, SuperGLUE, NLI, paraphrase, sentiment, MRQA, RAINBOW,
translation, summarization, GEM, All), and targeted SPoT's
third strategy mixes the top-k retrieved sources with the target. T5 mixes *examples-
proportionally with a cap*: rate_i ∝ min(n_i, cap)^(1/temperature), so a huge task (C4, QQP) does
not drown the small ones; temperature > 1 flattens the rates further.

`Mixture.rates` is either explicit weights or "proportional" (computed from the tasks' train
split sizes when the pipeline opens them). The sampling itself (which task each batch slot comes
from, deterministic given the seed) lives in `pipeline`.

The Table-1 mixtures are registered when this module is imported; a task module (the synthetic
families, your own; see `registry.import_task_modules`) registers its mixtures with `register_mixture`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import numpy as np

from spot_jax.data import catalog, registry

# T5's artificial dataset-size limit K for examples-proportional mixing (Raffel et al., 2020, §3.5.2).
DEFAULT_CAP = 2 ** 19


def examples_proportional_rates(num_examples: Sequence[int], cap: Optional[int] = DEFAULT_CAP,
                                temperature: float = 1.0) -> np.ndarray:
  """rate_i ∝ min(n_i, cap) ** (1 / temperature), normalised to sum to 1. `cap=None`: no cap."""
  n = np.asarray(num_examples, np.float64)
  if n.ndim != 1 or not len(n) or np.any(n < 0) or not np.any(n > 0):
    raise ValueError(f"Need non-negative example counts, at least one positive; got {list(num_examples)}.")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0; got {temperature}.")
  if cap is not None:
    n = np.minimum(n, float(cap))
  r = n ** (1.0 / temperature)
  return r / r.sum()


@dataclasses.dataclass(frozen=True)
class Mixture:
  """Tasks sampled at `rates`: explicit weights (normalised) or 'proportional' (examples-
  proportional with `cap` and `temperature`, from the train split sizes)."""

  name: str
  task_names: tuple[str, ...]
  rates: Union[tuple[float, ...], str] = "proportional"
  cap: Optional[int] = DEFAULT_CAP
  temperature: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "task_names", tuple(self.task_names))
    if not self.task_names:
      raise ValueError(f"Mixture {self.name!r} has no tasks.")
    if len(set(self.task_names)) != len(self.task_names):
      raise ValueError(f"Mixture {self.name!r} lists a task twice: {self.task_names}.")
    if isinstance(self.rates, str):
      if self.rates != "proportional":
        raise ValueError(f"Mixture {self.name!r}: rates must be weights or 'proportional'; got {self.rates!r}.")
    else:
      rates = tuple(float(r) for r in self.rates)
      if len(rates) != len(self.task_names) or any(r < 0 for r in rates) or not sum(rates) > 0:
        raise ValueError(f"Mixture {self.name!r}: need one non-negative rate per task ({len(self.task_names)}), "
                         f"not all zero; got {self.rates}.")
      object.__setattr__(self, "rates", rates)

  def normalized_rates(self, num_examples: Optional[Sequence[int]] = None) -> np.ndarray:
    """[num_tasks] probabilities. 'proportional' needs the tasks' train sizes `num_examples`."""
    if isinstance(self.rates, str):
      if num_examples is None:
        raise ValueError(f"Mixture {self.name!r} is examples-proportional: pass the tasks' example counts.")
      return examples_proportional_rates(num_examples, self.cap, self.temperature)
    r = np.asarray(self.rates, np.float64) ** (1.0 / self.temperature)
    return r / r.sum()

  def tasks(self) -> list[registry.Task]:
    return [registry.get_task(n) for n in self.task_names]


_MIXTURES: dict[str, Mixture] = {}


def register_mixture(mixture: Mixture, overwrite: bool = False) -> Mixture:
  if mixture.name in _MIXTURES and not overwrite and _MIXTURES[mixture.name] != mixture:
    raise ValueError(f"Mixture {mixture.name!r} is already registered; pick another name or pass overwrite=True.")
  if registry.is_registered(mixture.name):
    raise ValueError(f"{mixture.name!r} is already a task name; a mixture needs a distinct name.")
  _MIXTURES[mixture.name] = mixture
  return mixture


def get_mixture(name: str) -> Mixture:
  if name not in _MIXTURES:
    raise registry.unknown_name("mixture", name, list(_MIXTURES),
                                "Mixtures outside the built-in ones are registered by their module: list it in "
                                "config.data.task_modules (the synthetic synth_* mixtures: 'spot_jax.data.synthetic').")
  return _MIXTURES[name]


def list_mixtures() -> list[str]:
  return sorted(_MIXTURES)


def is_mixture(name: str) -> bool:
  return name in _MIXTURES


# Generic SPoT's source mixtures: the rows of Vu et al. (2022), Table 1, and their members. The paper
# names the members (§2.1); prompt-tuning's prompt_tuning/spot/data/*.py define the member tasks
# (`spot_tasks`) but register no mixtures, so the rates are the paper's: examples-proportional with
# T5's size limit K = 2**19 (`DEFAULT_CAP`), from the train split sizes.
_T = catalog.TABLE_1_TASKS
TABLE_1_MIXTURES: dict[str, tuple[str, ...]] = {
    # Table-1 row "GLUE (8 tasks)": T5's glue_<task>_v002 tasks, without WNLI.
    "glue": ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"),
    # "SuperGLUE (8 tasks)": T5's super_glue_<task>_v102 tasks (WSC: simple).
    "super_glue": ("boolq", "cb", "copa", "multirc", "record", "super_glue_rte", "wic", "wsc"),
    # "NLI (7 tasks)": ANLI (its three rounds, as prompt-tuning registers them: spot_anli_r{1,2,3}_v010),
    # CB, DocNLI, MNLI, QNLI, RTE, SNLI. The rounds are each far below the cap, so the three together get
    # the rate one concatenated ANLI would.
    "spot_nli": ("anli_r1", "anli_r2", "anli_r3", "cb", "docnli", "mnli", "qnli", "rte", "snli"),
    # "Paraphrasing/semantic similarity (4 tasks)": CxC (spot_cxc_v100), MRPC, QQP, STS-B.
    "spot_paraphrase": ("cxc", "mrpc", "qqp", "stsb"),
    # "Sentiment analysis (5 tasks)": the five of prompt-tuning's sentiment.py (GoEmotions, IMDB,
    # Sentiment140, Yelp-2, CR). SST-2 is GLUE's, not in that file.
    "spot_sentiment": _T["sentiment"],
    # "MRQA (6 tasks)": prompt-tuning's mrqa.py (in-domain MRQA: SQuAD, NewsQA, TriviaQA, SearchQA,
    # HotpotQA, NaturalQuestions).
    "spot_mrqa": _T["mrqa"],
    # "RAINBOW (6 tasks)": prompt-tuning's rainbow.py (αNLI, CosmosQA, HellaSwag, PIQA, SocialIQa, WinoGrande).
    "spot_rainbow": _T["rainbow"],
    # "Translation (3 tasks)": T5's WMT tasks (En-De wmt_t2t, En-Fr wmt15, En-Ro wmt16).
    "spot_translation": _T["translation"],
    # "Summarization": prompt-tuning's summarization.py (AESLC, BillSum, Gigaword, CNN/DailyMail,
    # Multi-News, SAMSum, Newsroom).
    "spot_summarization": _T["summarization"],
    # "GEM": prompt-tuning's gem.py (CommonGen, DART, E2E, SGD, WebNLG, WikiAuto+ASSET+TURK, XSum,
    # WikiLingua).
    "spot_gem": _T["gem"],
}
# "All": every member of the rows above, once (RTE appears twice, as GLUE's and SuperGLUE's tasks:
# two formats of the same data, as in T5's all_proportional mixture).
TABLE_1_MIXTURES["spot_all"] = tuple(dict.fromkeys(t for members in TABLE_1_MIXTURES.values() for t in members))

for _name, _tasks in TABLE_1_MIXTURES.items():
  register_mixture(Mixture(_name, _tasks))
# Earlier spot_jax mixtures, kept working.
register_mixture(Mixture("spot_sources", catalog.SPOT_SOURCE_TASKS))  # the 16 sources of the transfer study
register_mixture(Mixture("glue_super_glue", TABLE_1_MIXTURES["glue"] + TABLE_1_MIXTURES["super_glue"]))
register_mixture(Mixture("spot_mrc", TABLE_1_MIXTURES["spot_mrqa"]))  # earlier name of reading comprehension
register_mixture(Mixture("spot_commonsense", TABLE_1_MIXTURES["spot_rainbow"]))  # earlier name of commonsense
