"""Writes tests/fixtures/t5_reference.json: ground truth from Google's `t5`.

The fixture records, for fabricated raw examples in each task's TFDS feature
layout, what Google's `t5` library (the registered seqio Tasks of
`t5.data.tasks`) turns them into (text-to-text `inputs`/`targets` and every
other output field, before tokenization), what the tasks' postprocessors and
metric functions return on fabricated model outputs, direct calls of
`t5.evaluation.metrics` functions, and t5's GLUE / SuperGLUE average
(`t5.evaluation.eval_utils.compute_avg_glue`). Its `prefix_lm` section holds
what the registered `c4_v220_prefix_lm` task's token-level steps (prefix_lm,
append_eos_after_trim) make of fabricated token sequences, with the seeds each
random step received. spot_jax's tests compare against it without needing `t5`
installed.

This script does NOT run in spot_jax's venv. It needs a side venv (Python
3.11) with t5 installed:

    python3.11 -m venv /work/t5ref-venv
    /work/t5ref-venv/bin/pip install tensorflow-cpu==2.21.0 \
        tensorflow-datasets==4.9.10 seqio==0.0.20 tensorflow-text==2.21.1 \
        protobuf==7.36.2 gin-config editdistance babel nltk sacrebleu \
        rouge-score scikit-learn scipy pandas immutabledict
    /work/t5ref-venv/bin/pip install --no-deps t5==0.9.4

Then, from the repository root:

    /work/t5ref-venv/bin/python tools/t5_reference/make_fixture.py

(optional argument: the output path; default tests/fixtures/t5_reference.json).
Nothing is downloaded: TFDS builders are only asked for their feature specs,
and the SentencePiece vocabulary is never loaded (preprocessing stops before
tokenization). The output is deterministic (sorted keys, fixed inputs, a fixed
numpy seed for ROUGE's bootstrap, PYTHONHASHSEED=0 via a re-exec).
"""

import copy
import functools
import json
import math
import os
import sys
import warnings

# t5's compute_avg_glue sums group means in set-iteration order, so its last
# bits depend on string hashing: pin the hash seed (re-exec once) so the
# fixture is byte-for-byte reproducible.
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
  os.environ["PYTHONHASHSEED"] = "0"
  os.execv(sys.executable, [sys.executable] + sys.argv)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

absl_logging.set_verbosity(absl_logging.ERROR)
tf.get_logger().setLevel("ERROR")

import seqio  # noqa: E402
import t5  # noqa: E402,F401
import t5.data.glue_utils as glue_utils  # noqa: E402
import t5.data.preprocessors  # noqa: E402,F401
import t5.data.tasks  # noqa: E402,F401  (registers the tasks)
import t5.evaluation.eval_utils as eval_utils  # noqa: E402
from t5.evaluation import metrics as t5_metrics  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "t5_reference.json")

TASKS = [
    "glue_cola_v002",
    "glue_sst2_v002",
    "glue_mrpc_v002",
    "glue_qqp_v002",
    "glue_stsb_v002",
    "glue_mnli_v002",
    "glue_mnli_matched_v002",
    "glue_mnli_mismatched_v002",
    "glue_qnli_v002",
    "glue_rte_v002",
    "glue_wnli_v002",
    "glue_ax_v002",
    "super_glue_boolq_v102",
    "super_glue_cb_v102",
    "super_glue_copa_v102",
    "super_glue_multirc_v102",
    "super_glue_record_v102",
    "super_glue_rte_v102",
    "super_glue_wic_v102",
    "super_glue_wsc_v102_simple_train",
    "super_glue_wsc_v102_simple_eval",
    "super_glue_axb_v102",
    "super_glue_axg_v102",
    "squad_v010_allanswers",
]

# Preprocessors at and after which we stop (tokenization and later).
_STOP_AT = {
    seqio.preprocessors.tokenize,
    seqio.preprocessors.tokenize_and_append_eos,
    seqio.preprocessors.append_eos,
    seqio.preprocessors.append_eos_after_trim,
}


# ----------------------------------------------------------------------------
# JSON helpers
# ----------------------------------------------------------------------------
def jsonable(x):
  """Converts numpy / bytes / tuples / NaN to plain JSON values."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple, range)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return [jsonable(v) for v in x.tolist()] if x.ndim else jsonable(x.item())
  if isinstance(x, (bytes, np.bytes_)):
    return bytes(x).decode("utf-8")
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    f = float(x)
    if math.isnan(f):
      return "nan"
    if math.isinf(f):
      return "inf" if f > 0 else "-inf"
    return f
  if isinstance(x, (int, str)) or x is None:
    return x
  if callable(x):
    return describe_callable(x)
  return repr(x)


def describe_callable(f):
  """A JSON description of a (possibly partial / closure) t5 callable."""
  if isinstance(f, functools.partial):
    d = describe_callable(f.func)
    d["partial_args"] = jsonable(list(f.args))
    d["partial_kwargs"] = jsonable(dict(f.keywords))
    return d
  if not hasattr(f, "__qualname__") and not hasattr(f, "__name__"):
    return {"name": type(f).__qualname__, "module": type(f).__module__}
  d = {
      "name": getattr(f, "__qualname__", getattr(f, "__name__", None)),
      "module": getattr(f, "__module__", None),
  }
  code = getattr(f, "__code__", None)
  closure = getattr(f, "__closure__", None)
  if code is not None and closure:
    cells = {}
    for name, cell in zip(code.co_freevars, closure):
      try:
        v = cell.cell_contents
      except ValueError:
        continue
      if callable(v):
        cells[name] = getattr(v, "__qualname__", repr(v))
      else:
        cells[name] = jsonable(v)
    d["closure"] = cells
  return d


def spec_to_json(spec):
  if isinstance(spec, dict):
    return {k: spec_to_json(v) for k, v in spec.items()}
  s = spec.dtype.name
  if s == "string":
    s = "str"
  if spec.shape.rank:
    s += "[]"
  return s


def spec_to_signature(spec):
  if isinstance(spec, dict):
    return {k: spec_to_signature(v) for k, v in spec.items()}
  return tf.TensorSpec(shape=spec.shape, dtype=spec.dtype)


def coerce(value, spec):
  """Converts a python raw value to numpy in the TFDS dtype (exactly)."""
  if isinstance(spec, dict):
    return {k: coerce(value[k], v) for k, v in spec.items()}
  dt = spec.dtype
  if dt == tf.string:
    if spec.shape.rank:
      return np.array([v.encode("utf-8") for v in value], dtype=object)
    return value.encode("utf-8")
  np_dt = dt.as_numpy_dtype
  return np.array(value, dtype=np_dt)


# ----------------------------------------------------------------------------
# Running a task's text preprocessors
# ----------------------------------------------------------------------------
class TaskRunner:
  """Applies a registered task's preprocessors up to tokenization."""

  def __init__(self, name):
    self.name = name
    self.task = seqio.TaskRegistry.get(name)
    src = self.task.source
    self.tfds_name = src.tfds_dataset.name
    builder = tfds.builder(self.tfds_name, data_dir="/tmp/t5ref_tfds_unused")
    self.builder = builder
    self.spec = builder.info.features.get_tensor_spec()
    self.signature = spec_to_signature(self.spec)
    self.label_names = None
    feats = builder.info.features
    if "label" in feats and hasattr(feats["label"], "names"):
      self.label_names = list(feats["label"].names)
    applied, skipped = [], []
    stop = False
    for p in self.task.preprocessors:
      if p in _STOP_AT or isinstance(p, seqio.CacheDatasetPlaceholder):
        stop = True
      (skipped if stop else applied).append(p)
    self.applied = applied
    self.skipped = skipped

  def text_fields(self):
    return [k for k, v in self.spec.items()
            if not isinstance(v, dict) and v.dtype == tf.string
            and not v.shape.rank and k not in ("label", "idx")]

  def raw_to_json(self, raw):
    return jsonable(coerce(raw, {k: self.spec[k] for k in raw}))

  def run(self, raw):
    """Returns the list of output dicts (numpy, as tfds.as_numpy yields)."""
    missing = set(self.spec) - set(raw)
    extra = set(raw) - set(self.spec)
    if missing or extra:
      raise ValueError(f"{self.name}: raw fields mismatch {missing} {extra}")
    value = coerce(raw, self.spec)

    def gen():
      yield value

    ds = tf.data.Dataset.from_generator(gen, output_signature=self.signature)
    ds = self.task._preprocess_dataset(ds, self.applied, sequence_length=None)  # pylint: disable=protected-access
    return list(tfds.as_numpy(ds))

  def metadata(self):
    tfds_builder, _, version = self.tfds_name.partition(":")
    return {
        "tfds_name": self.tfds_name,
        "tfds_builder": tfds_builder,
        "tfds_version": version,
        "source_splits": jsonable(list(self.task.source.splits) if self.task.source.splits else None),
        "feature_spec": spec_to_json(self.spec),
        "label_names": self.label_names,
        "preprocessors_applied": [describe_callable(p) for p in self.applied],
        "preprocessors_skipped": [describe_callable(p) for p in self.skipped],
        "postprocessor": (describe_callable(self.task.postprocessor)
                          if self.task.postprocessor else None),
        "metric_fns": [describe_callable(f) for f in self.task.metric_fns],
        "output_features": {
            k: {"add_eos": f.add_eos, "required": f.required,
                "vocabulary": type(f.vocabulary).__name__,
                "sentencepiece_model_file": getattr(f.vocabulary, "sentencepiece_model_file", None),
                "extra_ids": getattr(f.vocabulary, "extra_ids", None)}
            for k, f in self.task.output_features.items()
        },
    }


# ----------------------------------------------------------------------------
# Fabricated raw examples
# ----------------------------------------------------------------------------
EDGE = [
    "The cat sat on the mat.",
    "  leading and trailing spaces  ",
    "multiple   inner    spaces and\ttabs\tand\nnew\nlines\r\nCRLF",
    "Café naïve résumé — 東京タワー 😀 non\u00a0breaking “curly” ‘quotes’ «guillemets»",
    "Hello, world! (Really?) \"quoted\" -- well-known; e.g. 3.14... 'single' [x] {y} #1 $5 100% a+b=c",
    "",
    "<b>bold</b> markup<br>and a backslash \\ and $1 \\1 regex-ish *chars*",
    " ",
]

REALISTIC = {
    "cola": {"sentence": "The book was written by John."},
    "sst2": {"sentence": "it 's a charming and often affecting journey . "},
    "mrpc": {"sentence1": "Amrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his evidence .",
             "sentence2": "Referring to him as only \" the witness \" , Amrozi accused his brother of deliberately distorting his evidence ."},
    "qqp": {"question1": "How is the life of a math student? Could you describe your own experiences?",
            "question2": "Which level of prepration is enough for the exam jlpt5?"},
    "mnli": {"premise": "Conceptually cream skimming has two basic dimensions - product and geography.",
             "hypothesis": "Product and geography are what make cream skimming work. "},
    "qnli": {"question": "When did the third Digimon series begin?",
             "sentence": "Unlike the two seasons before it and most of the seasons that followed, Digimon Tamers takes a darker and more realistic approach to its story featuring Digimon who do not reincarnate after their deaths and more complex character development in the original Japanese."},
    "rte": {"sentence1": "No Weapons of Mass Destruction Found in Iraq Yet.",
            "sentence2": "Weapons of Mass Destruction Found in Iraq."},
    "wnli": {"sentence1": "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
             "sentence2": "The carrot had a hole."},
    "boolq": {"question": "do iran and afghanistan speak the same language",
              "passage": "Persian language -- Persian (/ˈpɜːrʒən, -ʃən/), also known by its endonym Farsi (فارسی fārsi (fɒːɾˈsiː) ( listen)), is one of the Western Iranian languages within the Indo-Iranian branch of the Indo-European language family."},
    "cb": {"premise": "It was a complex language. Not written down but handed down. One might say it was peeled down.",
           "hypothesis": "the language was peeled down"},
    "copa": {"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
             "choice2": "The grass was cut.", "question": "cause"},
    "axb": {"sentence1": "The cat sat on the mat.", "sentence2": "The cat did not sit on the mat."},
    "super_glue/rte": {"premise": "No Weapons of Mass Destruction Found in Iraq Yet.",
                       "hypothesis": "Weapons of Mass Destruction Found in Iraq."},
    "axg": {"premise": "The nurse notified the patient that his shift would be ending in an hour.",
            "hypothesis": "The patient's shift would be ending in an hour."},
}


def glue_config_name(task_name, runner):
  return runner.tfds_name.split("/")[1].split(":")[0]


def generic_examples(runner, n=8, realistic=None, labels=None, texts=None):
  """Cycles EDGE texts over the text fields; labels cycle over classes + -1."""
  fields = runner.text_fields()
  texts = texts or EDGE
  out = []
  num_classes = len(runner.label_names) if runner.label_names else 2
  if labels is None:
    labels = [i % num_classes for i in range(n - 1)] + [-1]
  if realistic:
    ex = dict(realistic)
    ex["label"] = 0
    ex["idx"] = 0
    out.append(("realistic", ex))
  for i, lab in enumerate(labels):
    ex = {f: texts[(i + 3 * j) % len(texts)] for j, f in enumerate(fields)}
    ex["label"] = lab
    ex["idx"] = len(out) if i < len(labels) - 1 else 2147483647
    out.append((f"edge_{i}", ex))
  return out


def wic_examples(runner):
  base = generic_examples(runner)
  out = []
  for k, (name, ex) in enumerate(base):
    ex = dict(ex)
    ex["word"] = ["bank", "run", "", " set ", "Café", "play-off", "東京", "x"][k % 8]
    ex.update(start1=k, end1=k + 4, start2=2 * k, end2=2 * k + 4)
    out.append((name, ex))
  out.insert(0, ("realistic", {
      "word": "place", "sentence1": "Do you want to come over to my place later?",
      "sentence2": "A political system with no place for the less prominent groups.",
      "start1": 31, "end1": 36, "start2": 27, "end2": 32, "idx": 0, "label": 0}))
  return out


def stsb_examples(runner):
  labels = [0.0, 5.0, 2.5, 3.1, 2.25, 1.75, 3.3999999, 0.1, 0.3, 0.5, 0.7, 0.9,
            4.9, 4.7, 1.8, 2.6, 3.8, 4.999, 0.0999, -1.0]
  out = [("realistic", {"sentence1": "A plane is taking off.",
                        "sentence2": "An air plane is taking off.", "label": 5.0, "idx": 0})]
  for i, lab in enumerate(labels):
    out.append((f"label_{lab!r}", {
        "sentence1": EDGE[i % len(EDGE)], "sentence2": EDGE[(i + 3) % len(EDGE)],
        "label": lab, "idx": i + 1}))
  return out


MULTIRC_P1 = (
    "<b>Sent 1: </b>While this process moved along, diplomacy continued its rounds."
    "<br><b>Sent 2: </b>Direct pressure on the Taliban had proved unsuccessful."
    "<br><b>Sent 3: </b>As one NSC staff note put it, \"Under the Taliban, Afghanistan is "
    "not so much a state sponsor of terrorism as it is a state sponsored by terrorists.\"<br>")
MULTIRC_P2 = (
    "<b>Sent 1: </b>Café naïve — 東京 😀.<br><b>Sent 2: </b>Second   sentence\twith\ttabs."
    "<br> <b>Sent 3: </b>  spaced  <br><br>")


def multirc_examples(runner):
  rows = [
      (MULTIRC_P1, "What did the NSC staff note say?",
       "Afghanistan is a state sponsored by terrorists", 1, (0, 0, 0)),
      (MULTIRC_P1, "What did the NSC staff note say?", "Nothing", 0, (0, 0, 1)),
      (MULTIRC_P1, "What did the NSC staff note say?", "<b>bold</b> answer<br>here", 0, (0, 0, 2)),
      (MULTIRC_P1, "  Whitespace\tquestion?\n", "Yes", 1, (0, 1, 3)),
      (MULTIRC_P1, "  Whitespace\tquestion?\n", "", 0, (0, 1, 4)),
      (MULTIRC_P2, "Où est 東京?  <b>Sent</b>", "In Japan 😀", -1, (1, 2, 5)),
      (MULTIRC_P2, "Où est 東京?  <b>Sent</b>", "  Kyoto  ", -1, (1, 2, 6)),
      ("", "", "", 1, (2, 3, 7)),
      ("<B>Upper</B> case tags <br/> and <BR> and < b > spaced", "q", "a", 0, (3, 4, 8)),
  ]
  out = []
  for i, (p, q, a, lab, (pi, qi, ai)) in enumerate(rows):
    out.append((f"row_{i}", {"paragraph": p, "question": q, "answer": a, "label": lab,
                             "idx": {"paragraph": pi, "question": qi, "answer": ai}}))
  return out


def record_examples(runner):
  rows = [
      ("basic_one_answer",
       "(CNN) -- The cat sat on the mat.\n@highlight\nThe cat is happy\n@highlight\nMat is red!",
       "@placeholder sat on the mat", ["CNN", "The cat", "cat", "mat"], ["cat"], (0, 0)),
      ("several_answers",
       "(CNN) -- The cat sat on the mat.\n@highlight\nThe cat is happy\n@highlight\nMat is red!",
       "The @placeholder was red", ["CNN", "Mat", "cat", "mat"], ["Mat", "mat", "the mat"], (0, 1)),
      ("highlight_punctuation_variants",
       "@highlight\nStarts with highlight. Ends with period.\n@highlight\nQuestion?\n@highlight\n"
       "Exclaim!\n@highlight\nQuote\"\n@highlight\nApostrophe'\n@highlight\nParen)\n@highlight\n"
       "No punctuation\n@highlight\n\n@highlight\nlast one.\n@highlight\n",
       "What about @placeholder?", ["Exclaim", "Question", "Quote"], ["Question"], (1, 2)),
      ("no_answers_test_split",
       "Some passage.\n@highlight\nA highlight", "@placeholder is missing",
       ["passage", "highlight"], [], (2, 3)),
      ("unicode_whitespace",
       "  Zoë   met Chloé in 東京.\t😀\n@highlight\n“Curly” quotes\u00a0here.\n@highlight\nEnd  ",
       " Who met @placeholder  in Tokyo? ", ["Chloé", "Zoë", "東京"], ["Chloé", "Zoë"], (3, 4)),
      ("empty_entities_and_comma_entity",
       "Smith, John said hi.\n@highlight\nHi", "@placeholder said hi", ["Smith, John"],
       ["Smith, John"], (4, 5)),
      ("no_entities", "Nothing here.", "@placeholder", [], [], (5, 6)),
      ("regex_chars", "a $1 \\1 b.\n@highlight\nc\\n@highlight\\nd", "@placeholder $1",
       ["$1", "\\1"], ["\\1", "$1"], (6, 7)),
  ]
  out = []
  for name, p, q, ents, ans, (pi, qi) in rows:
    out.append((name, {"passage": p, "query": q, "entities": ents, "answers": ans,
                       "idx": {"passage": pi, "query": qi}}))
  return out


PONY = ("The boy continued to whip the pony , and eventually the pony threw him over. "
        "John laughed out quite loud. \"Good for him,\" he said. ")
PEBBLE = ("When they had eventually calmed down a bit , and had gotten home, Mr. Farley put "
          "the magic pebble in an iron safe . Some day they might want to use it , but really "
          "for now, what more could they wish for?")


def wsc_examples(runner):
  rows = [
      ("realistic", "Mark told Pete many lies about himself, which Pete included in his book. "
       "He should have been more skeptical.", "Mark", 0, "He", 13, 0),
      ("trophy", "The trophy doesn't fit into the brown suitcase because it is too large.",
       "The trophy", 0, "it", 9, 1),
      ("span_with_punct_possessive", "Mr. Smith's dog chased the cat , and it ran up a tree .",
       "Mr. Smith's dog", 0, "it", 8, 0),
      ("span_the_cat", "Mr. Smith's dog chased the cat , and it ran up a tree .",
       "the cat", 4, "it", 8, 1),
      ("literal_X_elsewhere", "Malcolm X said that he would come .", "Malcolm X", 0, "he", 4, 1),
      ("pronoun_last_word", "The man lifted the boy onto his shoulders because the boy asked him",
       "The man", 0, "him", 12, 1),
      ("double_spaces", "Sam  gave Tom  a book because he was kind .", "Sam", 0, "he", 8, 1),
      ("unicode", "Zoë told Chloé that she had won the prize — 🎉 .", "Chloé", 2, "she", 4, 1),
      ("test_label_minus1", "Anna thanked Beth because she had helped her .", "Beth", 2, "she", 4, -1),
      ("special_case_pony", PONY, "the pony", 10, "him", 13, 0),
      ("special_case_pebble", PEBBLE, "the magic pebble", 16, "it", 30, 1),
      ("pronoun_with_punct", "Jane called Susan , but she wasn't home.", "Susan", 2, "she", 5, 1),
  ]
  out = []
  for i, (name, text, s1, i1, s2, i2, lab) in enumerate(rows):
    out.append((name, {"text": text, "span1_text": s1, "span1_index": i1, "span2_text": s2,
                       "span2_index": i2, "label": lab, "idx": i}))
  return out


def squad_examples(runner):
  rows = [
      ("realistic", "University_of_Notre_Dame",
       "Architecturally, the school has a Catholic character. Atop the Main Building's gold dome "
       "is a golden statue of the Virgin Mary.", "What sits on top of the Main Building?",
       ["a golden statue of the Virgin Mary", "golden statue", "the Virgin Mary"], [92, 94, 113]),
      ("whitespace", "  Title  ", "  Leading spaces,\tand tabs\tand\nnewlines;   many   spaces.  ",
       "  Where   is\tit?\n", ["tabs\tand\nnewlines", "  many   spaces  "], [24, 40]),
      ("unicode", "東京", "Café “Le Zèbre” — opened in 1999 in 東京; it's 😀 popular.\u00a0Really.",
       "When did Café “Le Zèbre” open?", ["1999", "Café “Le Zèbre”"], [28, 0]),
      ("punctuation_heavy", "Punct",
       "U.S. (United States) -- e.g., well-known: \"quotes\", 'single' [brackets] {braces} "
       "#hash $5.00 100% a+b=c ~tilde `backtick` ^caret |pipe \\backslash @at <lt> &amp; _under_ *star*",
       "What's the price (in $)?", ["$5.00", "U.S.", "100%", "well-known"], [86, 0, 92, 28]),
      ("empty_title_and_question", "", "Context only.", "", ["Context"], [0]),
      ("already_spaced", "t", "Hello , world . ( x )", "Hello ?", ["world ."], [8]),
      ("non_ascii_punct", "t", "«guillemets» ¿qué? ¡sí! … ellipsis –en-dash —em-dash ‘x’",
       "¿qué?", ["¿qué?", "«guillemets»"], [13, 0]),
      ("single_answer_numbers", "t", "Pi is 3.14159, roughly 22/7; e is 2.718.", "What is pi?",
       ["3.14159"], [6]),
  ]
  out = []
  for i, (name, title, ctx, q, texts, starts) in enumerate(rows):
    out.append((name, {"id": f"5733be284776f41900661{i:03d}", "title": title, "context": ctx,
                       "question": q, "answers": {"text": texts, "answer_start": starts}}))
  return out


def examples_for(runner):
  cfg = glue_config_name(runner.name, runner)
  if runner.name == "glue_stsb_v002":
    return stsb_examples(runner)
  if cfg == "wic":
    return wic_examples(runner)
  if cfg == "multirc":
    return multirc_examples(runner)
  if cfg == "record":
    return record_examples(runner)
  if cfg.startswith("wsc"):
    return wsc_examples(runner)
  if runner.tfds_name.startswith("squad"):
    return squad_examples(runner)
  key = "mnli" if ("mnli" in cfg or cfg == "ax") else cfg
  realistic = REALISTIC.get(runner.tfds_name.split(":")[0], REALISTIC.get(key))
  if realistic is not None and set(realistic) != set(runner.text_fields()):
    raise ValueError(f"{runner.name}: realistic example fields {sorted(realistic)}")
  return generic_examples(runner, realistic=realistic)


# ----------------------------------------------------------------------------
# Section 1: preprocessing
# ----------------------------------------------------------------------------
def preprocessing_section(runners):
  out = {}
  for name, runner in runners.items():
    entries = []
    for ex_name, raw in examples_for(runner):
      outputs = runner.run(raw)
      entries.append({"name": ex_name, "raw": runner.raw_to_json(raw),
                      "outputs": jsonable(outputs)})
    meta = runner.metadata()
    meta["examples"] = entries
    meta["num_raw_examples"] = len(entries)
    meta["num_outputs"] = sum(len(e["outputs"]) for e in entries)
    out[name] = meta
    print(f"[preprocess] {name}: {len(entries)} raw -> {meta['num_outputs']} outputs",
          file=sys.stderr)
  return out


# ----------------------------------------------------------------------------
# Section 2: postprocessing + task metrics, as seqio's evaluator does it
# ----------------------------------------------------------------------------
def eval_example(out):
  """The example dict seqio's evaluator hands to the postprocessor.

  seqio's tokenize preprocessor replaces inputs/targets by token ids and keeps
  the strings as inputs_pretokenized / targets_pretokenized; the evaluator
  reads the target text from targets_pretokenized. Token ids are irrelevant to
  t5's postprocessors, so they are left out here.
  """
  ex = {k: v for k, v in out.items() if k not in ("inputs", "targets")}
  ex["inputs_pretokenized"] = out["inputs"]
  ex["targets_pretokenized"] = out["targets"]
  return ex


def run_metric_scenario(runner, name, raws, predictions, note=None):
  task = runner.task
  outputs = []
  for raw in raws:
    outputs.extend(runner.run(raw))
  if len(outputs) != len(predictions):
    raise ValueError(f"{runner.name}/{name}: {len(outputs)} outputs, {len(predictions)} predictions")
  cases, targets_pp, preds_pp = [], [], []
  for out, pred in zip(outputs, predictions):
    ex = eval_example(out)
    target = ex["targets_pretokenized"]
    if isinstance(target, bytes):
      target = target.decode("utf-8")
    t_pp = task.postprocess_fn(target, example=ex, is_target=True)
    p_pp = task.postprocess_fn(pred, example=ex, is_target=False)
    targets_pp.append(t_pp)
    preds_pp.append(p_pp)
    cases.append({
        "example": jsonable({k: v for k, v in ex.items()
                             if k not in ("inputs_pretokenized",)}),
        "inputs": jsonable(out["inputs"]),
        "target_decoded": target,
        "prediction_decoded": pred,
        "target_postprocessed": jsonable(t_pp),
        "prediction_postprocessed": jsonable(p_pp),
    })
  metric_values = {}
  per_fn = []
  for fn in task.metric_fns:
    res = fn(copy.deepcopy(targets_pp), copy.deepcopy(preds_pp))
    per_fn.append({"metric_fn": describe_callable(fn), "result": jsonable(res)})
    metric_values.update(res)
  entry = {
      "name": name,
      "raw_examples": [runner.raw_to_json(r) for r in raws],
      "cases": cases,
      "metrics": jsonable(metric_values),
      "metrics_per_fn": per_fn,
  }
  if note:
    entry["note"] = note
  return entry


def simple_raws(runner, labels, idx_start=0):
  fields = runner.text_fields()
  raws = []
  for i, lab in enumerate(labels):
    r = {f: f"{f} number {i}." for f in fields}
    if runner.name == "super_glue_wic_v102":
      r.update(word="bank", start1=0, end1=4, start2=0, end2=4)
    r["label"] = lab
    r["idx"] = idx_start + i
    raws.append(r)
  return raws


def classification_scenarios(runner):
  names = runner.label_names
  n = len(names)
  labels = [i % n for i in range(8)]
  # Mostly right, some wrong, some invalid strings.
  preds = [names[l] for l in labels]
  preds[1] = names[(labels[1] + 1) % n]
  preds[3] = "banana"
  preds[5] = ""
  preds[6] = names[labels[6]].upper() if names[labels[6]].upper() != names[labels[6]] else "x"
  preds[7] = " " + names[labels[7]]
  scen = [run_metric_scenario(runner, "mixed_valid_invalid", simple_raws(runner, labels), preds)]
  scen.append(run_metric_scenario(
      runner, "all_correct", simple_raws(runner, labels[:4]), [names[l] for l in labels[:4]]))
  scen.append(run_metric_scenario(
      runner, "constant_prediction", simple_raws(runner, labels[:6]), [names[0]] * 6))
  return scen


def binary_f1_scenarios(runner):
  names = runner.label_names  # [neg, pos]
  scen = classification_scenarios(runner)
  labels = [1, 1, 0, 0, 1, 0, 1, 0]
  preds = [names[1], "banana", names[0], "", names[1], names[1], "", "banana"]
  scen.append(run_metric_scenario(runner, "f1_with_invalid", simple_raws(runner, labels), preds,
                                  note="invalid predictions count as the opposite of the target"))
  scen.append(run_metric_scenario(runner, "all_invalid", simple_raws(runner, labels[:4]),
                                  ["banana"] * 4))
  scen.append(run_metric_scenario(runner, "no_positives_anywhere", simple_raws(runner, [0, 0, 0]),
                                  [names[0]] * 3, note="F1 ill-defined: sklearn returns 0"))
  return scen


def stsb_scenarios(runner):
  raw_labels = [0.0, 1.2, 2.5, 3.1, 4.8, 5.0, 3.3999999, 1.75]
  raws = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "label": l, "idx": i}
          for i, l in enumerate(raw_labels)]
  scen = [
      run_metric_scenario(runner, "numeric_and_garbage", raws,
                          ["0.0", "1.4", "2.4", "3.0", "4.8", "5.0", "abc", ""]),
      run_metric_scenario(runner, "whitespace_and_formats", raws,
                          [" 0.2 ", "1", "2.6\n", "3e0", "+4.6", "-0.5", "5.00", "1_0"],
                          note="python float() accepts surrounding whitespace, exponents, "
                               "a leading '+' and digit underscores"),
      run_metric_scenario(runner, "constant_prediction", raws[:5], ["2.0"] * 5,
                          note="constant predictions: pearson/spearman are NaN"),
      run_metric_scenario(runner, "nan_prediction", raws[:5], ["nan", "1.0", "2.0", "3.0", "4.0"],
                          note="float('nan') parses; a NaN prediction makes the correlation NaN"),
      run_metric_scenario(runner, "perfect", raws[:5], ["0.0", "1.2", "2.4", "3.2", "4.8"]),
  ]
  return scen


def cb_scenarios(runner):
  names = runner.label_names  # entailment, contradiction, neutral
  scen = classification_scenarios(runner)
  labels = [0, 1, 0, 1, 0, 1]
  scen.append(run_metric_scenario(runner, "neutral_absent_everywhere", simple_raws(runner, labels),
                                  [names[0], names[1], names[1], names[1], names[0], names[0]]))
  scen.append(run_metric_scenario(runner, "neutral_only_in_predictions",
                                  simple_raws(runner, labels),
                                  [names[0], names[2], names[0], names[1], names[2], names[1]]))
  scen.append(run_metric_scenario(runner, "invalid_predictions", simple_raws(runner, [0, 1, 2, 2]),
                                  ["banana", names[1], "", names[2]]))
  return scen


def multirc_scenarios(runner):
  def raw(p_i, q_i, a_i, lab, text="ans"):
    return {"paragraph": MULTIRC_P1 if p_i == 0 else MULTIRC_P2,
            "question": f"Question {q_i}?", "answer": f"{text} {a_i}", "label": lab,
            "idx": {"paragraph": p_i, "question": q_i, "answer": a_i}}
  raws = [raw(0, 0, 0, 1), raw(0, 0, 1, 0), raw(0, 0, 2, 1),
          raw(0, 1, 3, 0), raw(0, 1, 4, 0),
          raw(1, 2, 5, 1), raw(1, 2, 6, 1), raw(1, 2, 7, 0), raw(1, 2, 8, 0)]
  preds = ["True", "False", "True",   # group 0: all match
           "False", "True",           # group 1: one wrong
           "True", "banana", "False", ""]  # group 2: invalid -> wrong
  scen = [run_metric_scenario(runner, "three_groups", raws, preds)]
  scen.append(run_metric_scenario(runner, "all_correct", raws, [
      "True", "False", "True", "False", "False", "True", "True", "False", "False"]))
  collide = [raw(0, 7, 0, 1), raw(0, 7, 1, 0), raw(1, 7, 0, 1), raw(1, 8, 1, 1)]
  scen.append(run_metric_scenario(
      runner, "same_question_idx_in_two_paragraphs", collide, ["True", "False", "False", "True"],
      note="t5 groups exact_match by idx/question only (not by paragraph)"))
  return scen


def record_scenarios(runner):
  def raw(pi, qi, answers, ents):
    return {"passage": "The Cat sat.\n@highlight\nThe U.S. flag", "query": "@placeholder sat",
            "entities": ents, "answers": answers, "idx": {"passage": pi, "query": qi}}
  raws = [raw(0, 0, ["Cat", "The Cat"], ["Cat", "The Cat", "U.S."]),
          raw(0, 1, ["U.S."], ["Cat", "U.S."]),
          raw(1, 2, ["New York City", "NYC", "New York"], ["NYC", "New York", "New York City"]),
          raw(2, 3, ["Zoë Smith-Jones"], ["Zoë Smith-Jones"])]
  # outputs: 2 + 1 + 3 + 1 = 7 (one per answer); only the first per group counts.
  preds = ["the cat!", "IGNORED duplicate", "US", "new york", "ignored", "ignored", "Zoë Smith Jones"]
  scen = [run_metric_scenario(runner, "max_over_answers_dedup", raws, preds,
                              note="one output per answer; deduplicate_metric keeps the first "
                                   "output of each (idx/passage, idx/query) group")]
  preds2 = ["", "IGNORED", "u.s.", "City of New York", "x", "x", "zoë  smith-jones"]
  scen.append(run_metric_scenario(runner, "normalisation_variants", raws, preds2))
  return scen


def wsc_eval_scenarios(runner):
  rows = [
      ("Mark told Pete many lies about himself, which Pete included in his book. "
       "He should have been more skeptical.", "Mark", 0, "He", 13, 0),
      ("The trophy doesn't fit into the brown suitcase because it is too large.",
       "The trophy", 0, "it", 9, 1),
      ("Mr. Smith's dog chased the cat , and it ran up a tree .", "Mr. Smith's dog", 0, "it", 8, 0),
      ("Mr. Smith's dog chased the cat , and it ran up a tree .", "the cat", 4, "it", 8, 1),
      ("The fuzzy bunny hopped past the dog because it was fast .", "The fuzzy bunny", 0, "it", 8, 1),
      ("The fuzzy bunny hopped past the dog because it was fast .", "bunny", 2, "it", 8, 1),
      ("Anna thanked Beth because she had helped her .", "Beth", 2, "she", 4, 1),
      ("Anna thanked Beth because she had helped her .", "Anna", 0, "she", 4, 0),
      ("Sam saw Bob's hat when he arrived .", "Bob's hat", 2, "he", 5, 0),
  ]
  raws = [{"text": t, "span1_text": s1, "span1_index": i1, "span2_text": s2, "span2_index": i2,
           "label": lab, "idx": k} for k, (t, s1, i1, s2, i2, lab) in enumerate(rows)]
  preds = ["Pete", "the trophy", "Smith's dog", "The Cat", "bunny", "the fuzzy bunny",
           "", "Beth", "Bob"]
  return [run_metric_scenario(runner, "referent_matching", raws, preds),
          run_metric_scenario(runner, "determiners_case_whitespace", raws[:4],
                              ["  PETE  ", "a trophy", "his dog", "cat the"])]


def squad_scenarios(runner):
  def raw(i, ctx, q, texts):
    return {"id": f"q{i}", "title": "t", "context": ctx, "question": q,
            "answers": {"text": texts, "answer_start": [0] * len(texts)}}
  raws = [
      raw(0, "The Cat sat on the mat.", "Who sat?", ["The Cat", "cat"]),
      raw(1, "It is in the U.S. today.", "Where?", ["the U.S.", "U.S."]),
      raw(2, "Price: $5.00 only.", "Price?", ["$5.00"]),
      raw(3, "A well-known fact.", "What fact?", ["well-known fact", "A well-known fact"]),
      raw(4, "Café “Le Zèbre” is here.", "Which café?", ["Café “Le Zèbre”"]),
      raw(5, "New York City is big.", "Which city?", ["New York City", "New York"]),
      raw(6, "Pi is 3.14.", "Pi?", ["3.14"]),
      raw(7, "Nothing to see.", "What?", ["Nothing"]),
  ]
  preds = ["The Cat!", "US", "$5.00", "well known fact", "cafe le zebre", "new york",
           "3 . 14", ""]
  return [run_metric_scenario(
      runner, "normalisation", raws, preds,
      note="targets are the punctuation-padded answers from the preprocessed example")]


def no_metric_scenarios(runner):
  names = runner.label_names
  labels = [0, 1, 1, -1]
  preds = [names[0], names[0], "banana", ""]
  return [run_metric_scenario(runner, "postprocess_only", simple_raws(runner, labels), preds,
                              note="task has no metric_fns (test-only diagnostic)")]


def wsc_train_scenarios(runner):
  raws = [{"text": "The trophy doesn't fit into the brown suitcase because it is too large.",
           "span1_text": "The trophy", "span1_index": 0, "span2_text": "it", "span2_index": 9,
           "label": 1, "idx": 0},
          {"text": "Anna thanked Beth because she had helped her .", "span1_text": "Anna",
           "span1_index": 0, "span2_text": "she", "span2_index": 4, "label": 0, "idx": 1}]
  return [run_metric_scenario(runner, "no_postprocessor_no_metrics", raws, ["the trophy"],
                              note="label-0 example is filtered out (correct_referent_only)")]


def metrics_section(runners):
  out = {}
  for name, runner in runners.items():
    cfg = glue_config_name(name, runner)
    if name == "glue_stsb_v002":
      scen = stsb_scenarios(runner)
    elif name in ("glue_mrpc_v002", "glue_qqp_v002"):
      scen = binary_f1_scenarios(runner)
    elif cfg == "cb":
      scen = cb_scenarios(runner)
    elif cfg == "multirc":
      scen = multirc_scenarios(runner)
    elif cfg == "record":
      scen = record_scenarios(runner)
    elif name == "super_glue_wsc_v102_simple_eval":
      scen = wsc_eval_scenarios(runner)
    elif name == "super_glue_wsc_v102_simple_train":
      scen = wsc_train_scenarios(runner)
    elif name.startswith("squad"):
      scen = squad_scenarios(runner)
    elif not runner.task.metric_fns:
      scen = no_metric_scenarios(runner)
    else:
      scen = classification_scenarios(runner)
    out[name] = scen
    print(f"[metrics] {name}: {len(scen)} scenarios", file=sys.stderr)
  return out


# ----------------------------------------------------------------------------
# Section 3: direct calls of t5.evaluation.metrics
# ----------------------------------------------------------------------------
def metric_fn_calls():
  m = t5_metrics
  calls = []

  def add(label, fn, fn_desc, targets, predictions, **kwargs):
    res = fn(copy.deepcopy(targets), copy.deepcopy(predictions), **kwargs)
    calls.append({"name": label, "fn": fn_desc, "kwargs": jsonable(kwargs),
                  "targets": jsonable(targets), "predictions": jsonable(predictions),
                  "result": jsonable(res)})

  mcc = m.sklearn_metrics_wrapper("matthews_corrcoef", metric_post_process_fn=lambda x: 100 * x)
  f1_3 = m.mean_multiclass_f1(num_classes=3)
  add("accuracy_basic", m.accuracy, "accuracy", [0, 1, 1, 0], [0, 1, 0, 0])
  add("accuracy_invalid", m.accuracy, "accuracy", [0, 1, 2, 1], [0, -1, 2, -1])
  add("accuracy_floats_strings", m.accuracy, "accuracy", ["a", "b", "c"], ["a", "b", "x"])
  add("mcc", mcc, "sklearn_metrics_wrapper('matthews_corrcoef', *100)",
      [1, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 1, 0, 1])
  add("mcc_with_invalid", mcc, "sklearn_metrics_wrapper('matthews_corrcoef', *100)",
      [1, 0, 1, 1, 0, 0], [1, -1, 0, 1, -1, 0])
  add("mcc_constant_prediction", mcc, "sklearn_metrics_wrapper('matthews_corrcoef', *100)",
      [1, 0, 1, 0], [1, 1, 1, 1])
  add("f1_with_invalid", m.f1_score_with_invalid, "f1_score_with_invalid",
      [1, 0, 1, 1, 0, 1], [1, -1, -1, 1, 0, 0])
  add("f1_with_invalid_all_invalid", m.f1_score_with_invalid, "f1_score_with_invalid",
      [1, 0, 1], [-1, -1, -1])
  add("f1_with_invalid_no_positive", m.f1_score_with_invalid, "f1_score_with_invalid",
      [0, 0, 0], [0, 0, 0])
  add("mean_3class_f1_all_classes", f1_3, "mean_multiclass_f1(num_classes=3)",
      [0, 1, 2, 0, 1, 2], [0, 1, 1, 0, 2, 2])
  add("mean_3class_f1_class_absent", f1_3, "mean_multiclass_f1(num_classes=3)",
      [0, 1, 0, 1], [0, 1, 1, 1])
  add("mean_3class_f1_invalid", f1_3, "mean_multiclass_f1(num_classes=3)",
      [0, 1, 2, 2], [-1, 1, -1, 2])
  add("pearson", m.pearson_corrcoef, "pearson_corrcoef", [0.0, 1.2, 2.4, 3.6, 5.0],
      [0.2, 1.0, 2.8, 3.4, 4.6])
  add("pearson_constant", m.pearson_corrcoef, "pearson_corrcoef", [0.0, 1.2, 2.4], [2.0, 2.0, 2.0])
  add("pearson_with_minus1", m.pearson_corrcoef, "pearson_corrcoef", [0.0, 1.2, 2.4, 4.0],
      [0.2, -1.0, 2.0, 4.2])
  add("spearman", m.spearman_corrcoef, "spearman_corrcoef", [0.0, 1.2, 2.4, 3.6, 5.0],
      [0.2, 1.0, 2.8, 3.4, 4.6])
  add("spearman_ties", m.spearman_corrcoef, "spearman_corrcoef", [1.0, 2.0, 2.0, 3.0, 4.0],
      [1.0, 1.0, 3.0, 3.0, 5.0])
  add("spearman_constant", m.spearman_corrcoef, "spearman_corrcoef", [0.0, 1.2, 2.4],
      [2.0, 2.0, 2.0])
  add("squad", m.squad, "squad",
      [["The Cat", "cat"], ["the U . S ."], ["New York City", "New York"], ["a an the"], ["x"]],
      ["The Cat!", "U.S.", "new york", "", "  X  "])
  add("squad_f1_partial", m.squad, "squad", [["the quick brown fox"], ["a b c d"]],
      ["quick fox jumps", "b b c"])
  add("multirc_f1_over_all_answers", m.multirc_f1_over_all_answers, "multirc_f1_over_all_answers",
      [{"value": 1, "group": 0}, {"value": 0, "group": 0}, {"value": 1, "group": 1}],
      [{"value": 1}, {"value": -1}, {"value": 0}])
  add("all_match", m.all_match, "all_match", [1, 0, 1], [1, 0, 1])
  add("all_match_false", m.all_match, "all_match", [1, 0, 1], [1, 0, 0])
  add("mean_group_all_match", m.mean_group_metric(m.all_match), "mean_group_metric(all_match)",
      [{"value": 1, "group": 0}, {"value": 0, "group": 0}, {"value": 1, "group": 1},
       {"value": 0, "group": 2}],
      [{"value": 1}, {"value": 0}, {"value": 0}, {"value": -1}])
  add("deduplicate_squad", m.deduplicate_metric(m.squad), "deduplicate_metric(squad)",
      [{"value": ["cat"], "group": (0, 0)}, {"value": ["cat"], "group": (0, 0)},
       {"value": ["dog", "hound"], "group": (0, 1)}],
      [{"value": "Cat"}, {"value": "ignored"}, {"value": "a hound"}])
  add("sequence_accuracy", m.sequence_accuracy, "sequence_accuracy", ["a b", "c", "d "],
      ["a b", "C", "d"])
  add("exact_match_via_sequence_accuracy_note", m.sequence_accuracy, "sequence_accuracy",
      ["x"], ["x"])
  add("bleu", m.bleu, "bleu", ["the cat sat on the mat", "hello there general kenobi"],
      ["the cat sat on a mat", "hello there general kenobi"])
  add("bleu_multi_ref", m.bleu, "bleu", [["the cat sat on the mat", "a cat sat on the mat"],
                                         ["hello there", "hi there"]],
      ["a cat sat on the mat", "hi there"])
  np.random.seed(0)
  add("rouge_single", m.rouge, "rouge", ["the cat sat on the mat . it was happy ."],
      ["the cat sat on a mat . it was sad ."])
  np.random.seed(0)
  add("rouge_multi_bootstrap_seed0", m.rouge, "rouge",
      ["the cat sat on the mat .", "hello there general kenobi ."],
      ["the cat sat .", "hello there ."])
  calls[-1]["note"] = ("rouge uses rouge_score's BootstrapAggregator (mid = median of 1000 "
                       "bootstrap resamples, np.random seeded with 0); with more than one example "
                       "the value is not the plain mean")
  add("edit_distance", m.edit_distance, "edit_distance", ["the cat sat", "Hello World"],
      ["the cat sit", "hello world !"])
  # rank_classification: targets are (idx, is_correct, weight, target_len).
  t2 = [((0, 0), False, 1.0, 2), ((0, 1), True, 1.0, 3), ((1, 0), True, 1.0, 2),
        ((1, 1), False, 1.0, 1), ((2, 0), False, 2.0, 2), ((2, 1), True, 2.0, 2)]
  s2 = [-2.0, -1.0, -0.5, -3.0, -1.0, -4.0]
  add("rank_classification_2class", m.rank_classification, "rank_classification", t2, s2,
      num_classes=2)
  add("rank_classification_2class_normalized", m.rank_classification, "rank_classification",
      t2, s2, num_classes=2, normalize_by_target_length=True)
  t3 = [((0, 0), True, 1.0, 1), ((0, 1), False, 1.0, 1), ((0, 2), False, 1.0, 1),
        ((1, 0), False, 1.0, 1), ((1, 1), False, 1.0, 1), ((1, 2), True, 1.0, 1)]
  s3 = [-1.0, -2.0, -3.0, -1.0, -0.5, -2.0]
  add("rank_classification_3class", m.rank_classification, "rank_classification", t3, s3,
      num_classes=3)
  add("rank_classification_variable_classes", m.rank_classification, "rank_classification",
      t3[:5], s3[:5])
  return calls


# ----------------------------------------------------------------------------
# Section 4: GLUE / SuperGLUE averages (t5.evaluation.eval_utils)
# ----------------------------------------------------------------------------
def glue_average_section():
  names = copy.deepcopy(eval_utils.METRIC_NAMES)
  tags = [t for t in names if "glue" in t and "average" not in t]
  rng = np.random.RandomState(1234)
  scores = {}
  for t in tags:
    scores[t] = [(1000, float(np.round(rng.uniform(40, 95), 4))),
                 (2000, float(np.round(rng.uniform(40, 95), 4)))]
  cases = []
  df = eval_utils.compute_avg_glue(eval_utils.scores_to_df(copy.deepcopy(scores), copy.deepcopy(names)),
                                   copy.deepcopy(names))
  cases.append({"name": "all_metrics_present", "scores": {t: [[s, v] for s, v in vs] for t, vs in scores.items()},
                "result_rows": {str(step): jsonable(dict(row)) for step, row in df.iterrows()}})
  partial = {t: v for t, v in scores.items() if t != "glue_cola_v002/matthews_corrcoef"}
  df2 = eval_utils.compute_avg_glue(eval_utils.scores_to_df(copy.deepcopy(partial), copy.deepcopy(names)),
                                    copy.deepcopy(names))
  cases.append({"name": "cola_missing_no_glue_average",
                "scores": {t: [[s, v] for s, v in vs] for t, vs in partial.items()},
                "result_rows": {str(step): jsonable(dict(row)) for step, row in df2.iterrows()}})
  return {
      "description": (
          "t5.evaluation.eval_utils.compute_avg_glue(scores_to_df(scores)): metrics are grouped "
          "by METRIC_NAMES[tag].group; each group is averaged, then the group means are averaged. "
          "An average is only computed when every metric of the benchmark is present."),
      "metric_names": {t: {"name": m.name, "group": m.group} for t, m in names.items()
                       if "glue" in t},
      "cases": cases,
  }


# ----------------------------------------------------------------------------
# Section 5: inputs that t5 rejects (so spot_jax can decide what to do)
# ----------------------------------------------------------------------------
def errors_section(runners):
  cases = []

  def try_preprocess(task, name, raw):
    runner = runners[task]
    try:
      outs = runner.run(raw)
      res = {"raises": False, "outputs": jsonable(outs)}
    except Exception as e:  # pylint: disable=broad-except
      msg = str(e)
      marker = "ParallelMapV2: "
      if marker in msg:
        msg = msg.split(marker, 1)[1]
      msg = msg.split("\n")[0].split(" [[")[0].strip()[:200]
      res = {"raises": True, "error_type": type(e).__name__, "error_head": msg}
    cases.append(dict(task=task, name=name, stage="preprocess", raw=runner.raw_to_json(raw), **res))

  wsc = "super_glue_wsc_v102_simple_eval"
  try_preprocess(wsc, "span2_text_not_at_span2_index",
                 {"text": "Anna thanked Beth because she had helped her .", "span1_text": "Beth",
                  "span1_index": 2, "span2_text": "she", "span2_index": 3, "label": 1, "idx": 0})
  try_preprocess(wsc, "pronoun_is_first_word",
                 {"text": "She thanked Beth .", "span1_text": "Beth", "span1_index": 2,
                  "span2_text": "She", "span2_index": 0, "label": 1, "idx": 0})
  try_preprocess(wsc, "span2_index_past_end",
                 {"text": "Anna thanked Beth .", "span1_text": "Beth", "span1_index": 2,
                  "span2_text": "she", "span2_index": 9, "label": 1, "idx": 0})
  try_preprocess("squad_v010_allanswers", "no_answers",
                 {"id": "x", "title": "t", "context": "c", "question": "q",
                  "answers": {"text": [], "answer_start": []}})
  # ReCoRD test example (no answers) fed to the metric: max() over no answers.
  runner = runners["super_glue_record_v102"]
  try:
    run_metric_scenario(runner, "x", [{"passage": "p", "query": "@placeholder", "entities": ["p"],
                                       "answers": [], "idx": {"passage": 0, "query": 0}}], ["p"])
    res = {"raises": False}
  except Exception as e:  # pylint: disable=broad-except
    res = {"raises": True, "error_type": type(e).__name__,
           "error_head": str(e).strip().splitlines()[0][:200]}
  cases.append(dict(task="super_glue_record_v102", name="metric_on_example_without_answers",
                    stage="metric", prediction="p", **res))
  return cases


# ----------------------------------------------------------------------------
# C4 prefix-LM (token level)
# ----------------------------------------------------------------------------
PREFIX_LM_TASK = "c4_v220_prefix_lm"
PREFIX_LM_VOCAB_SIZE = 32128
# (name, number of tokens, token salt, sequence_length, postcache seed). The
# tokens of a case are `prefix_lm_tokens(n, salt)`; they start after the
# tokenizer (no text, no vocabulary).
PREFIX_LM_CASES = [
    ("empty", 0, 0, {"inputs": 16, "targets": 16}, 0),
    ("length_1", 1, 1, {"inputs": 16, "targets": 16}, 0),
    ("length_2", 2, 2, {"inputs": 16, "targets": 16}, 0),
    ("length_2_seed_5", 2, 2, {"inputs": 16, "targets": 16}, 5),
    ("length_3", 3, 3, {"inputs": 16, "targets": 16}, 1),
    ("short", 7, 4, {"inputs": 16, "targets": 16}, 0),
    ("inputs_length_minus_1", 15, 5, {"inputs": 16, "targets": 16}, 2),
    ("exactly_inputs_length", 16, 6, {"inputs": 16, "targets": 16}, 3),  # 15 + a 1-token segment
    ("inputs_length_plus_1", 17, 7, {"inputs": 16, "targets": 16}, 4),
    ("long", 200, 8, {"inputs": 16, "targets": 8}, 0),  # 14 segments; targets trimmed to 7 + EOS
    ("long_seed_7", 200, 8, {"inputs": 16, "targets": 8}, 7),
    ("long_inputs_2", 9, 9, {"inputs": 2, "targets": 4}, 11),  # segments of one token
    ("long_inputs_3", 11, 10, {"inputs": 3, "targets": 2}, 12),
    ("much_longer", 1000, 11, {"inputs": 64, "targets": 32}, 13),
    # Longer than prefix_lm's 65536-token chunk: select_random_chunk picks one of 2 chunks. The
    # outputs are recorded as lengths and SHA-256 digests (see prefix_lm_digest).
    ("over_one_chunk", 70000, 12, {"inputs": 8192, "targets": 4096}, 0),
    ("over_one_chunk_seed_1", 70000, 12, {"inputs": 8192, "targets": 4096}, 1),
    ("over_one_chunk_seed_2", 70000, 12, {"inputs": 8192, "targets": 4096}, 2),
]
PREFIX_LM_DIGEST_ABOVE = 512  # outputs of cases with more tokens are recorded as digests
# select_random_chunk alone, at small max_length: (tokens, salt, max_length, map seed).
SELECT_RANDOM_CHUNK_CASES = [(25, 20, 4, 0), (25, 21, 7, 1), (25, 22, 7, 2), (25, 23, 25, 3), (25, 24, 30, 4),
                             (1, 25, 3, 5), (100, 26, 9, 6), (100, 27, 33, 7), (100, 28, 9, 8), (100, 29, 9, 9),
                             (100, 30, 9, 10), (26, 31, 5, 11), (26, 32, 5, 12), (99, 33, 33, 13)]


def prefix_lm_tokens(n, salt):
  """Fabricated token ids in [3, 32000): deterministic, distinct neighbours, no pad / EOS / unk."""
  return [3 + (i * 7919 + salt * 104729) % 31997 for i in range(n)]


def prefix_lm_digest(ids):
  """{'length', 'sha256' of the ids as little-endian int32, 'head': first 8 ids}."""
  import hashlib
  arr = np.asarray(ids, dtype="<i4")
  return {"length": int(arr.size), "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
          "head": [int(v) for v in arr[:8]]}


def _random_stream(seed, n):
  """The first n values of `tf.data.Dataset.random(seed=seed)`: what seqio's map_over_dataset zips
  with the examples as their per-example seeds (pairs from seeds s, s + 1)."""
  if n == 0:
    return []
  return [int(v) for v in tf.data.Dataset.random(seed=seed).take(n).as_numpy_iterator()]


def _stage_seeds(map_seed, n):
  """Per-element seeds ([2] int64) that the map_over_dataset call getting map seeds (map_seed,
  map_seed + 1) hands its first n elements."""
  return [list(p) for p in zip(_random_stream(map_seed, n), _random_stream(map_seed + 1, n))]


def prefix_lm_output_features():
  """T5's DEFAULT_OUTPUT_FEATURES with a pass-through vocabulary: the same add_eos, EOS id 1 and
  dtype; the token-level steps only read those (the SentencePiece model would need gs://)."""
  vocab = seqio.PassThroughVocabulary(PREFIX_LM_VOCAB_SIZE, eos_id=1)
  default = t5.data.tasks.DEFAULT_OUTPUT_FEATURES
  return {k: seqio.Feature(vocabulary=vocab, add_eos=f.add_eos, required=f.required, dtype=f.dtype)
          for k, f in default.items()}


def prefix_lm_section():
  """T5's registered c4_v220_prefix_lm on fabricated token sequences: its postcache preprocessors
  (prefix_lm, append_eos_after_trim) through seqio.Task.preprocess_postcache with a seed, and the
  per-element seeds each random step received, re-checked by calling the single-example steps
  directly with those seeds."""
  registered = seqio.TaskRegistry.get(PREFIX_LM_TASK)
  features = prefix_lm_output_features()
  for k in ("inputs", "targets"):
    assert features[k].add_eos == registered.output_features[k].add_eos
  task = seqio.Task(f"{PREFIX_LM_TASK}_fixture", source=registered.source,
                    preprocessors=registered.preprocessors, output_features=features)
  cache_idx = task._cache_step_idx  # pylint: disable=protected-access
  postcache = registered.preprocessors[cache_idx + 1:]
  assert [getattr(p, "__name__", None) for p in postcache] == ["prefix_lm", "append_eos_after_trim"], postcache
  pre = t5.data.preprocessors

  cases = []
  for name, n, salt, seq_len, seed in PREFIX_LM_CASES:
    tokens = prefix_lm_tokens(n, salt)
    ds = tf.data.Dataset.from_tensors({"targets": tf.constant(tokens, tf.int32, shape=[n])})
    outputs = list(task.preprocess_postcache(ds, sequence_length=seq_len, seed=seed).as_numpy_iterator())
    # seqio: postcache map seeds start at seed + 42 * cache_step_idx; each random map_over_dataset
    # takes the next two (select_random_chunk, split_tokens, denoise).
    map_seed = seed + 42 * cache_idx
    seeds = {"select_random_chunk": _stage_seeds(map_seed, 1 if n else 0),
             "split_tokens": _stage_seeds(map_seed + 2, 1 if n else 0),
             "denoise": _stage_seeds(map_seed + 4, len(outputs))}
    # The same ids from T5's single-example steps with these seeds (so the recorded seeds are the
    # ones T5 used).
    if n:
      chunk = pre.single_example_select_random_chunk(
          {"targets": tf.constant(tokens, tf.int32)}, tf.constant(seeds["select_random_chunk"][0], tf.int64),
          output_features=features, max_length=65536)["targets"].numpy()
      seg = seq_len["inputs"] - 1
      segments = [chunk[i:i + seg] for i in range(0, len(chunk), seg)]
      assert len(segments) == len(outputs), (name, len(segments), len(outputs))
      for segment, s, out in zip(segments, seeds["denoise"], outputs):
        d = pre.single_example_denoise(
            {"targets": tf.constant(segment, tf.int32)}, tf.constant(s, tf.int64), output_features=features,
            noise_density=0.5, noise_mask_fn=pre.random_prefix_noise_mask, inputs_fn=pre.drop_nonnoise_tokens,
            targets_fn=pre.drop_noise_tokens)
        for k, length in seq_len.items():
          expected = list(d[k].numpy()[:length - 1]) + [1]
          assert list(out[k]) == expected, (name, k)
    else:
      assert not outputs, name
    digest = n > PREFIX_LM_DIGEST_ABOVE
    cases.append({
        "name": name, "num_tokens": n, "token_salt": salt, "sequence_length": seq_len, "seed": seed,
        "tokens": None if digest else tokens,
        "seeds": seeds,
        "outputs": [{k: prefix_lm_digest(v) if digest else [int(t) for t in v] for k, v in out.items()}
                    for out in outputs],
    })

  chunks = []
  for n, salt, max_length, seed in SELECT_RANDOM_CHUNK_CASES:
    tokens = prefix_lm_tokens(n, salt)
    (s,) = _stage_seeds(seed, 1)
    with seqio.map_seed_manager(seed):
      ds = pre.select_random_chunk(tf.data.Dataset.from_tensors({"targets": tf.constant(tokens, tf.int32)}),
                                   output_features=features, max_length=max_length)
      (out,) = list(ds.as_numpy_iterator())
    direct = pre.single_example_select_random_chunk({"targets": tf.constant(tokens, tf.int32)},
                                                    tf.constant(s, tf.int64), output_features=features,
                                                    max_length=max_length)["targets"].numpy()
    assert list(direct) == list(out["targets"]), (n, max_length, seed)
    chunks.append({"num_tokens": n, "token_salt": salt, "max_length": max_length, "map_seed": seed, "seed": s,
                   "tokens": tokens, "chunk": [int(t) for t in out["targets"]]})

  return {
      "task": PREFIX_LM_TASK,
      "tfds_name": registered.source.tfds_dataset.name,
      "preprocessors": [describe_callable(p) for p in registered.preprocessors],
      "output_features": {k: {"add_eos": f.add_eos, "required": f.required, "dtype": f.dtype.name}
                          for k, f in registered.output_features.items()},
      "notes": [
          "cases[].outputs: seqio.Task.preprocess_postcache(seed=cases[].seed) of the registered task's "
          "preprocessors on a dataset of one example {'targets': tokens} (tokens = prefix_lm_tokens("
          "num_tokens, token_salt) = [3 + (i * 7919 + salt * 104729) % 31997 for i in range(n)]), i.e. "
          "prefix_lm then append_eos_after_trim: ids with EOS (1).",
          "cases[].seeds: the [2] int64 seed each random step got: select_random_chunk and split_tokens "
          "(unused: fixed segment length) for the example, denoise for each segment in order. They are "
          "the values of tf.data.Dataset.random(seed=s) as seqio zips them, checked by re-running T5's "
          "single-example steps with them.",
          f"Cases with more than {PREFIX_LM_DIGEST_ABOVE} tokens record tokens as null and each output "
          "as {length, sha256 of little-endian int32 ids, head: the first 8 ids}.",
          "select_random_chunk[]: t5.data.preprocessors.select_random_chunk(max_length=...) under "
          "seqio.map_seed_manager(map_seed); seed is the per-example seed it received.",
      ],
      "cases": cases,
      "select_random_chunk": chunks,
  }


# ----------------------------------------------------------------------------
def versions():
  import importlib.metadata as md
  pkgs = ["t5", "seqio", "tensorflow", "tensorflow-cpu", "tensorflow-datasets", "tensorflow-text",
          "protobuf", "numpy", "scipy", "scikit-learn", "sacrebleu", "rouge-score", "nltk",
          "pandas", "jax", "sentencepiece", "editdistance", "gin-config", "immutabledict", "babel"]
  out = {}
  for p in pkgs:
    try:
      out[p] = md.version(p)
    except md.PackageNotFoundError:
      pass
  out["python"] = sys.version.split()[0]
  return out


def main():
  out_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
  registered = set(seqio.TaskRegistry.names())
  missing = [t for t in TASKS if t not in registered]
  runners = {t: TaskRunner(t) for t in TASKS if t in registered}
  fixture = {
      "meta": {
          "generator": "tools/t5_reference/make_fixture.py",
          "versions": versions(),
          "tasks_requested_but_not_registered": missing,
          "registered_glue_superglue_squad_tasks": sorted(
              n for n in registered if "glue" in n or "squad" in n),
          "notes": [
              "tasks.*.examples[].outputs are the task's preprocessors applied up to (excluding) "
              "seqio.preprocessors.tokenize; strings are UTF-8 decoded, ints/floats as JSON.",
              "raw float32 values are recorded as the exact float64 value of the float32.",
              "task_metrics: each case's target is postprocess_fn(targets_pretokenized, "
              "example=ex, is_target=True), each prediction postprocess_fn(pred, example=ex, "
              "is_target=False), metrics = union of metric_fn(targets, predictions), as in "
              "seqio.metrics.LegacyMetric.",
              "NaN / inf are written as the strings 'nan' / 'inf' / '-inf'.",
          ],
      },
      "tasks": preprocessing_section(runners),
      "task_metrics": metrics_section(runners),
      "metric_fns": metric_fn_calls(),
      "glue_average": glue_average_section(),
      "errors": errors_section(runners),
      "prefix_lm": prefix_lm_section(),
      "mixture_weights": {
          "GLUE_WEIGHT_MAPPING": glue_utils.GLUE_WEIGHT_MAPPING,
          "SUPER_GLUE_WEIGHT_MAPPING": glue_utils.SUPER_GLUE_WEIGHT_MAPPING,
      },
  }
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  text = json.dumps(jsonable(fixture), sort_keys=True, ensure_ascii=False, indent=1,
                    allow_nan=False)
  with open(out_path, "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(f"wrote {out_path} ({len(text.encode('utf-8'))} bytes)", file=sys.stderr)


if __name__ == "__main__":
  main()
