"""The built-in catalogue: the tasks of T5 and SPoT that every run can name.

Why this exists: the registry (`registry`) says what a task is; this module says which tasks the
papers use, as one table per family, and registers them when it is imported (`spot_jax.data.tasks`
imports it, so they are always there). It only defines tasks: no data is read and TensorFlow is not
imported until a task's source is opened.

The GLUE/SuperGLUE/SQuAD tasks are T5's (`T5_TASK_NAMES`: glue_<task>_v002, super_glue_<task>_v102,
WSC simple, squad_v010_allanswers): the same inputs and targets byte for byte (`preprocessors`), T5's
postprocessors (`postprocessors`) and T5's metrics (`spot_jax.metrics`, `registry.METRICS`), checked
against t5 itself by tests/test_t5_formats.py. Other formats stay available only as opt-in variant
tasks (`boolq_question_first`, `wsc_binary`). TFDS versions are pinned as the references pin them
(`TFDS_VERSIONS`; `registry.set_tfds_version` changes one task's).

The 26 tasks of the SPoT transferability study (`SPOT_SOURCE_TASKS`, `SPOT_TARGET_TASKS`) are GLUE's,
SuperGLUE's and `_register_spot`'s. The other members of generic SPoT's Table-1 mixtures (NLI,
sentiment, MRQA, RAINBOW, WMT, summarization, GEM) are described in `spot_tasks`, in their
references' formats (prompt-tuning's SPoT tasks, T5's WMT tasks), and registered by
`_register_table_1`; the mixtures themselves are in `mixtures`.
"""

from __future__ import annotations

from typing import Any, Sequence

from spot_jax.data import preprocessors as pp
from spot_jax.data import spot_tasks
from spot_jax.data.registry import Task, register_task
from spot_jax.data.sources import LocalFileSource, TfdsSource


# TFDS versions of the catalog, as the references pin them: (version, where the pin comes from).
# google-research/prompt-tuning's SPoT task definitions (prompt_tuning/spot/data/*.py) and T5's
# registered tasks (t5/data/tasks.py, t5 0.9.4) for the datasets SPoT takes from T5.
TFDS_VERSIONS: dict[str, tuple[str, str]] = {
    "glue": ("2.0.0", "prompt-tuning spot/data/glue.py (spot_glue_*_v200); T5's glue_*_v002 read 1.0.0"),
    "super_glue": ("1.0.2", "T5's super_glue_*_v102 (t5/data/tasks.py), which SPoT uses"),
    "squad": ("3.0.0", "T5's squad_v010_allanswers (squad/v1.1:3.0.0)"),
    "c4": ("2.2.0", "T5's and prompt-tuning's C4 tasks (c4/en:2.2.0, prompt_tuning/data/c4.py)"),
    "doc_nli": ("1.0.0", "prompt-tuning spot/data/nli.py"),
    "snli": ("1.1.0", "prompt-tuning spot/data/nli.py"),
    "anli": ("0.1.0", "prompt-tuning spot/data/nli.py"),
    "yelp_polarity_reviews": ("0.2.0", "prompt-tuning spot/data/sentiment.py"),
    "cosmos_qa": ("1.0.0", "prompt-tuning spot/data/rainbow.py"),
    "hellaswag": ("1.1.0", "prompt-tuning spot/data/rainbow.py"),
    "piqa": ("1.0.0", "prompt-tuning spot/data/rainbow.py"),
    "winogrande": ("1.2.0", "TFDS 4.9.10's only version; prompt-tuning spot/data/rainbow.py pins 1.1.0, "
                            "which current TFDS can neither build nor download (set_tfds_version to use a copy)"),
    "drop": ("2.0.0", "TFDS 4.9.10's version (not in the prompt-tuning SPoT definitions: unverified)"),
    "race": ("2.0.0", "TFDS 4.9.10's version (not in the prompt-tuning SPoT definitions: unverified)"),
}
TFDS_VERSIONS.update(spot_tasks.TFDS_VERSIONS)  # the Table-1 members' datasets


def _pinned(dataset: str) -> str:
  pin = TFDS_VERSIONS.get(dataset.split("/")[0])
  return f"{dataset}:{pin[0]}" if pin and ":" not in dataset else dataset


def _tfds(*datasets: str, **split_map: str) -> TfdsSource:
  return TfdsSource(tuple(_pinned(d) for d in datasets), tuple(split_map.items()))


def _classification(name: str, source, prefix: str, fields, label_words, metric_names=("accuracy",),
                    score_keys=None, **kw) -> Task:
  return register_task(Task(name, source, pp.classification(prefix, fields, label_words), metric_names,
                            score_keys, tuple(label_words), "label", **kw))


def _glue(name: str, dataset: str, benchmark: str, feature_names: Sequence[str], label_words: Sequence[str],
          metric_names: Sequence[str] = ("accuracy",), **kw) -> Task:
  """A GLUE/SuperGLUE classification task in T5's format (`pp.glue`). `feature_names` are T5's order:
  the TFDS text features sorted by name, unless T5 names them (MultiRC, WiC)."""
  postprocessor = "multirc" if benchmark == "multirc" else "label"
  return register_task(Task(name, _tfds(dataset), pp.glue(benchmark, label_words, tuple(feature_names)),
                            tuple(metric_names), None, tuple(label_words), postprocessor, **kw))


_F1_ACC = ("f1_score_with_invalid", "accuracy")
MNLI_LABELS = ("entailment", "neutral", "contradiction")
RTE_LABELS = ("entailment", "not_entailment")


def _register_glue() -> None:
  """GLUE in T5's glue_<task>_v002 formats, postprocessors and metrics (glue/*:2.0.0 as SPoT)."""
  t5 = "T5's format (glue_{}_v002): {}"
  _glue("cola", "glue/cola", "cola", ["sentence"], ("unacceptable", "acceptable"), ("matthews_corrcoef",),
        description=t5.format("cola", "score = Matthews correlation."))
  _glue("sst2", "glue/sst2", "sst2", ["sentence"], ("negative", "positive"),
        description=t5.format("sst2", "score = accuracy."))
  _glue("mrpc", "glue/mrpc", "mrpc", ["sentence1", "sentence2"], ("not_equivalent", "equivalent"), _F1_ACC,
        description=t5.format("mrpc", "score = mean of F1 and accuracy."))
  _glue("qqp", "glue/qqp", "qqp", ["question1", "question2"], ("not_duplicate", "duplicate"), _F1_ACC,
        description=t5.format("qqp", "score = mean of F1 and accuracy."))
  register_task(Task("stsb", _tfds("glue/stsb"), pp.stsb(), ("pearson_corrcoef", "spearman_corrcoef"),
                     postprocessor="float",
                     description=t5.format("stsb", "text regression, targets rounded to 0.2 in float32; "
                                                   "score = mean of Pearson and Spearman.")))
  mnli_fields = ["hypothesis", "premise"]
  _glue("mnli", "glue/mnli", "mnli", mnli_fields, MNLI_LABELS, eval_split="validation_matched",
        description=t5.format("mnli", "evaluated on validation_matched (see mnli_mismatched)."))
  _glue("mnli_mismatched", "glue/mnli", "mnli", mnli_fields, MNLI_LABELS, eval_split="validation_mismatched",
        description=t5.format("mnli_mismatched", "MNLI evaluated on validation_mismatched."))
  _glue("qnli", "glue/qnli", "qnli", ["question", "sentence"], RTE_LABELS,
        description=t5.format("qnli", "score = accuracy."))
  _glue("rte", "glue/rte", "rte", ["sentence1", "sentence2"], RTE_LABELS,
        description=t5.format("rte", "score = accuracy."))
  _glue("wnli", "glue/wnli", "wnli", ["sentence1", "sentence2"], ("not_entailment", "entailment"),
        description=t5.format("wnli", "score = accuracy."))


def _register_super_glue() -> None:
  """SuperGLUE in T5's super_glue_<task>_v102 formats, postprocessors and metrics (super_glue/*:1.0.2)."""
  s, tf = "super_glue/", ("False", "True")
  t5 = "T5's format (super_glue_{}_v102): {}"
  _glue("boolq", s + "boolq", "boolq", ["passage", "question"], tf,
        description=t5.format("boolq", "passage before question, as T5 (see boolq_question_first)."))
  _glue("cb", s + "cb", "cb", ["hypothesis", "premise"], ("entailment", "contradiction", "neutral"),
        ("mean_multiclass_f1", "accuracy"), description=t5.format("cb", "score = mean of 3-class F1 and accuracy."))
  _glue("copa", s + "copa", "copa", ["choice1", "choice2", "premise", "question"], ("choice1", "choice2"),
        description=t5.format("copa", "targets choice1/choice2."))
  _glue("multirc", s + "multirc", "multirc", ["question", "answer", "paragraph"], tf,
        ("multirc_f1_over_all_answers", "mean_group_all_match"),
        description=t5.format("multirc", "<br>/<b> markup removed; score = mean of F1 over all answers and "
                                         "exact match per question (grouped by idx/question)."))
  register_task(Task("record", _tfds(s + "record"), pp.record(), ("deduplicate_squad",), postprocessor="record",
                     description=t5.format("record", "one example per answer (eval too); the metric keeps the "
                                                     "first per (passage, query), max over answers; score = mean "
                                                     "of EM and F1.")))
  _glue("super_glue_rte", s + "rte", "rte", ["hypothesis", "premise"], RTE_LABELS,
        description=t5.format("rte", "SuperGLUE RTE (same data as GLUE rte, another field order)."))
  _glue("wic", s + "wic", "wic", ["sentence1", "sentence2", "word"], tf,
        description=t5.format("wic", "the word's start/end offsets are not used."))
  register_task(Task("wsc", _tfds(s + "wsc.fixed"), pp.wsc_simple(None), ("accuracy",), postprocessor="wsc_simple",
                     description="T5's WSC simple (super_glue_wsc_v102_simple_train for training: only label-1 "
                                 "rows; super_glue_wsc_v102_simple_eval for evaluation: every labelled row): "
                                 "'wsc: ... *he* ...' -> the referent candidate; a prediction is right when "
                                 "naming the candidate agrees with the label. See wsc_binary for classification."))
  # Opt-in variants (never the default): other formats worth keeping.
  _classification("boolq_question_first", _tfds(s + "boolq"), "boolq", [("question", "question"),
                                                                        ("passage", "passage")], tf,
                  description="BoolQ with the question before the passage and whitespace collapsed (so that "
                              "truncation cuts the passage, not the question); not T5's format (see boolq).")
  register_task(Task("wsc_binary", _tfds(s + "wsc.fixed"), pp.wsc(), label_words=tf, postprocessor="label",
                     description="SuperGLUE WSC as binary classification ('wsc span1: .. span2: .. text: "
                                 "..*he*..' -> False/True), e.g. for rank scoring; not T5's format (see wsc)."))


def _register_spot() -> None:
  """The 26 tasks of the SPoT transferability study that GLUE/SuperGLUE do not already give."""
  register_task(Task("c4", _tfds("c4/en"), pp.prefix_lm(), ("squad",), ("f1",),
                     description="C4 (en) with T5's prefix-LM objective (c4_v220_prefix_lm), token-level: "
                                 "segments of input_length - 1 tokens split at a random point; inputs = "
                                 "prefix, targets = continuation. Metric = token F1 of the continuation."))
  register_task(Task("squad", _tfds("squad/v1.1"), pp.squad(), ("squad",), None, None, "qa",
                     description="SQuAD v1.1 in T5's format (squad_v010_allanswers): punctuation padded; "
                                 "score = mean of EM and F1 (max over the padded answers)."))
  register_task(Task("drop", _tfds("drop", validation="dev"), pp.drop(), ("squad",), None, None, "qa",
                     description="DROP; EM/F1 with SQuAD normalization over answer + validated answers "
                                 "(not DROP's number-aware F1)."))
  register_task(Task("race", _tfds("race/high", "race/middle", validation="dev"), pp.race(),
                     label_words=pp.LETTERS[:4], postprocessor="label",
                     description="RACE (high + middle); one example per question."))
  register_task(Task(
      "anli", _tfds("anli/r1", "anli/r2", "anli/r3"),
      pp.classification("anli", [("hypothesis", "hypothesis"), ("context", "premise")], MNLI_LABELS),
      label_words=MNLI_LABELS, postprocessor="label",
      description="ANLI rounds 1-3 concatenated in spot_jax's own format (kept for earlier runs); the NLI "
                  "mixture uses anli_r1, anli_r2, anli_r3 in the reference's format."))


def _register_table_1() -> None:
  """The members of the Table-1 mixtures that GLUE/SuperGLUE/SQuAD do not give, from their
  reference definitions (`spot_tasks`): NLI, CxC, sentiment, MRQA, RAINBOW, WMT, summarization, GEM."""
  for spec in spot_tasks.SPECS:
    if spec.local is not None:
      source: Any = LocalFileSource(spec.local[0], spec.local[1])
    else:
      source = TfdsSource(tuple(_pinned(d) for d in spec.tfds), spec.split_map)
    register_task(Task(spec.name, source, spec.preprocessor, spec.metric_names, None, spec.label_words,
                       spec.postprocessor, eval_split=spec.eval_split, description=spec.description))


GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "mnli_mismatched", "qnli", "rte", "wnli")
SUPER_GLUE_TASKS = ("boolq", "cb", "copa", "multirc", "record", "super_glue_rte", "wic", "wsc")
SPOT_SOURCE_TASKS = ("c4", "docnli", "yelp_polarity", "mnli", "qqp", "qnli", "record", "cxc", "squad", "drop",
                     "sst2", "winogrande", "hellaswag", "multirc", "cosmos_qa", "race")
SPOT_TARGET_TASKS = ("boolq", "cola", "stsb", "wic", "cr", "mrpc", "rte", "wsc", "copa", "cb")
# The members of the Table-1 mixtures defined in `spot_tasks`, by family (see `mixtures` for the mixtures).
TABLE_1_TASKS: dict[str, tuple[str, ...]] = {
    family: tuple(spec.name for spec in specs) for family, specs in spot_tasks.FAMILIES.items()}
# The t5.data task each T5-format task reproduces (tests/test_t5_formats.py checks them byte for byte).
T5_TASK_NAMES = {
    "cola": "glue_cola_v002", "sst2": "glue_sst2_v002", "mrpc": "glue_mrpc_v002", "qqp": "glue_qqp_v002",
    "stsb": "glue_stsb_v002", "mnli": "glue_mnli_v002", "mnli_mismatched": "glue_mnli_mismatched_v002",
    "qnli": "glue_qnli_v002", "rte": "glue_rte_v002", "wnli": "glue_wnli_v002",
    "boolq": "super_glue_boolq_v102", "cb": "super_glue_cb_v102", "copa": "super_glue_copa_v102",
    "multirc": "super_glue_multirc_v102", "record": "super_glue_record_v102", "super_glue_rte": "super_glue_rte_v102",
    "wic": "super_glue_wic_v102", "wsc": "super_glue_wsc_v102_simple_train / super_glue_wsc_v102_simple_eval",
    "squad": "squad_v010_allanswers",
}

_register_glue()
_register_super_glue()
_register_spot()
_register_table_1()
