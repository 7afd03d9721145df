"""Text-to-text formats: raw dataset examples -> `{'inputs': str, 'targets': str, ...}`.

Why this exists: prompt transfer only makes sense if every task speaks T5's text-to-text format
(`rte sentence1: ... sentence2: ...` -> `entailment`), so all task-specific formatting lives here as
small, pure factories. Each factory returns a `Preprocessor`:

    fn(example: Mapping, ctx: Context) -> list[dict]

One raw example may give zero outputs (an unlabelled test example: label -1 as in TFDS test splits;
WSC training keeps only correct referents), one (most tasks) or several (a RACE article has many
questions; a ReCoRD query gives one example per correct answer, as in T5). Outputs may carry extra
fields that the task's postprocessor reads at evaluation, as T5's do (`idx`, MultiRC's
`idx/question`, ReCoRD's and SQuAD's `answers`). A row that cannot be used — a field missing or not
parseable, a label outside the task's label words — raises `InvalidRow` instead of being dropped,
so that a bad file never silently shrinks the dataset; the pipeline adds the file and line.
Outputs always hold `inputs` and `targets` strings; classification outputs also hold `label` (the
index into the task's label words). `ctx.seed` is a deterministic per-(run seed, epoch, example)
integer for formats that randomise (the prefix-LM split of C4); the others ignore it. A format that
works on tokens, as T5's C4 prefix-LM does, tokenizes with `ctx.vocab` (its split depends on
`ctx.input_length`) and adds `inputs_ids`/`targets_ids`: the pipeline uses those ids instead of
encoding the strings (which are then only their decoded text, for metrics and display). Its ids
are T5's `c4_v220_prefix_lm` ids given the same seeds (checked by tests/test_prefix_lm.py).

T5's formats (`glue`, `stsb`, `wsc_simple`, `record`, `squad`): the GLUE/SuperGLUE/SQuAD tasks use
them by default, byte for byte what `t5.data` (0.9.4) makes of the same TFDS example (checked against
tests/fixtures/t5_reference.json by tests/test_t5_formats.py). That means T5's field order (feature
names sorted, unless T5 names them: MultiRC, WiC), T5's whitespace (GLUE/SuperGLUE/ReCoRD/WSC keep raw
tabs, newlines and runs of spaces; SQuAD pads ASCII punctuation and collapses `[\t\n\f\r ]+`), MultiRC's
markup removal, ReCoRD's `@highlight` rewrite, STS-B's float32 rounding. Two deliberate differences,
both about unlabelled rows: where T5 writes the target `<unk>` (label -1 in test splits, a ReCoRD
query without answers) these preprocessors give no example, so that nothing unlabelled is trained on
or scored; and rows T5 rejects (WSC's pronoun not at `span2_index`, SQuAD without answers) raise
`InvalidRow` naming the field.

The other formats (`classification`, `multiple_choice`, `race`, `drop`, ...: tasks T5 does not define)
collapse whitespace (`clean`) and put short fields (question, hypothesis) before long ones (passage,
document), so that truncation at `input_length` cuts the passage, not the question. Raw values may be
`str`, `bytes` or numpy arrays (TFDS random access gives `bytes` for a real dataset and `str` under
`tfds.testing.mock_data`); `as_text` accepts all of them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from spot_jax import errors


class InvalidRow(errors.InputDataError):
  """A row that a task cannot use: a field is missing or unparseable, or its label is outside the
  task's label set. Preprocessors raise it without `where` (they do not know the file and line);
  the pipeline re-raises it with `at(where)`, and counts or skips such rows."""

  def __init__(self, key: Optional[str], problem: str, expected: str = "", where: str = ""):
    self.field, self.problem, self.expected, self.where = key, problem, expected, where
    subject = f"field {key!r} {problem}" if key else problem
    super().__init__((f"{where}: " if where else "") + subject + (f" (expected {expected})" if expected else ""))

  def at(self, where: str, expected: str = "") -> "InvalidRow":
    """The same problem, located (`expected` fills in a missing expectation, e.g. the column's
    description in a local-file source)."""
    if self.where:
      return self
    return InvalidRow(self.field, self.problem, self.expected or expected, where)


@dataclasses.dataclass(frozen=True)
class Context:
  """What a preprocessor may depend on besides the example."""

  seed: int = 0  # deterministic per (run seed, epoch, example index)
  training: bool = True  # False when building evaluation examples
  vocab: Any = None  # the task's vocabulary, for formats that work on token ids (prefix_lm)
  input_length: Optional[int] = None  # the pipeline's encoder length, for the same formats


Preprocessor = Callable[[Mapping[str, Any], Context], list[dict]]
LETTERS = tuple(string.ascii_uppercase)


# ----------------------------------------------------------------------------- value helpers


def as_text(value: Any) -> str:
  """`str`, `bytes`, 0-d numpy arrays of either -> `str` (TFDS gives both, depending on backend)."""
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode("utf-8", errors="replace")
  return str(value)


def as_text_list(value: Any) -> list[str]:
  """A TFDS `Sequence(Text)` (numpy array, list, or a single string) -> list of `str`."""
  if value is None:
    return []
  if isinstance(value, (str, bytes, np.bytes_)):
    return [as_text(value)]
  return [as_text(v) for v in np.asarray(value, dtype=object).reshape(-1)]


def as_int(value: Any, default: int = -1) -> int:
  """Lenient int (ids, indices); labels go through `parse_label`, which refuses what it cannot read."""
  try:
    return int(np.asarray(value).reshape(-1)[0])
  except (TypeError, ValueError, IndexError):
    return default


def field(example: Mapping[str, Any], key: str, expected: str = "") -> Any:
  """`example[key]`, or `InvalidRow` naming the field if it is absent or null (JSON null, a short CSV row)."""
  value = example.get(key) if isinstance(example, Mapping) else None
  if value is None:
    raise InvalidRow(key, "is missing", expected)
  return value


def _scalar(value: Any, key: str, expected: str) -> Any:
  """One plain Python value (str, int, float, bool) out of a raw value, or `InvalidRow`."""
  if value is None:
    raise InvalidRow(key, "is missing", expected)
  arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
  if arr is not None:
    if arr.size != 1:
      raise InvalidRow(key, f"is {to_python(value)!r}, not one value", expected)
    value = arr.reshape(-1)[0]
    value = value.item() if isinstance(value, np.generic) else value
  if isinstance(value, bytes):
    value = value.decode("utf-8", errors="replace")
  if isinstance(value, str) and not value.strip():
    raise InvalidRow(key, "is empty", expected)
  return value


def parse_int(value: Any, key: str, expected: str = "an int") -> int:
  """An int from an int, an integral float or a string such as '1' (CSV cells are strings)."""
  value = _scalar(value, key, expected)
  if isinstance(value, (bool, int)):
    return int(value)
  if isinstance(value, str):
    try:
      return int(value.strip())
    except ValueError:
      try:
        number = float(value.strip())
      except ValueError:
        number = math.nan
      value = number if number.is_integer() else value
  if isinstance(value, float) and value.is_integer():
    return int(value)
  raise InvalidRow(key, f"is {value!r}, not an int", expected)


def parse_float(value: Any, key: str, expected: str = "a number") -> float:
  value = _scalar(value, key, expected)
  if isinstance(value, (bool, int, float, str)):
    try:
      return float(value)
    except ValueError:
      pass
  raise InvalidRow(key, f"is {value!r}, not a number", expected)


def label_set(label_words: Sequence[str]) -> str:
  """The allowed labels as an error message shows them: 'int 0 = negative, 1 = positive'."""
  return "int " + ", ".join(f"{i} = {w}" for i, w in enumerate(label_words))


def parse_label(value: Any, key: str, label_words: Sequence[str]) -> Optional[int]:
  """The index of a label into `label_words`; None for -1 (unlabelled, as TFDS test splits: T5 drops
  those, and so does every preprocessor here). Anything else outside the set is an `InvalidRow`
  (1-based labels for a 0-based task, a label word where an index is expected)."""
  label = parse_int(value, key, label_set(label_words))
  if label == -1:
    return None
  if not 0 <= label < len(label_words):
    raise InvalidRow(key, f"is {label}, outside the task's label set", label_set(label_words))
  return label


def clean(text: str) -> str:
  """Collapses whitespace (TFDS text often carries newlines that SentencePiece would keep)."""
  return " ".join(text.split())


def to_python(value: Any) -> Any:
  """Raw TFDS example -> plain Python (str, int, float, lists, dicts): kept beside eval examples."""
  if isinstance(value, Mapping):
    return {k: to_python(v) for k, v in value.items()}
  if isinstance(value, (bytes, np.bytes_)):
    return as_text(value)
  if isinstance(value, np.ndarray):
    if value.ndim == 0:
      return to_python(value.item())
    return [to_python(v) for v in value.tolist()]
  if isinstance(value, (list, tuple)):
    return [to_python(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def _label_target(value: Any, label_words: Sequence[str], key: str = "label") -> Optional[dict]:
  label = parse_label(value, key, label_words)
  if label is None:
    return None  # unlabelled (TFDS test splits use -1): nothing to train or score on
  return {"targets": label_words[label], "label": label}


def _labelled(example: Mapping[str, Any], label_words: Sequence[str], key: str = "label") -> Optional[dict]:
  """{'targets': the label's word, 'label': its index} of `example[key]`; None for an unlabelled row."""
  return _label_target(field(example, key, label_set(label_words)), label_words, key)


def _fields_text(prefix: str, example: Mapping[str, Any], fields: Sequence[tuple[str, str]]) -> str:
  parts = [prefix] if prefix else []
  for key, name in fields:
    parts.append(f"{name}: {clean(as_text(field(example, key)))}")
  return " ".join(parts)


# ----------------------------------------------------------------------------- T5's formats
# Plain-Python versions of t5.data.preprocessors (t5 0.9.4): glue, stsb, wsc_simple (+ _wsc_inputs),
# record, squad (+ _pad_punctuation, _string_join). T5 runs them as TensorFlow string ops; the
# regular expressions below are RE2's, spelled for Python's `re` (they match the same strings).


def _idx_fields(ex: Mapping[str, Any], key: str = "idx") -> dict:
  """T5's pass-through of the example id: `{'idx': int}`, or MultiRC-style `{'idx/paragraph': ...}`
  for a nested id. Absent id (a local copy without it): nothing."""
  value = ex.get(key) if isinstance(ex, Mapping) else None
  if value is None:
    return {}
  if isinstance(value, Mapping):
    return {f"{key}/{k}": as_int(v) for k, v in value.items()}
  return {key: as_int(value)}


def glue(benchmark_name: str, label_names: Sequence[str], feature_names: Optional[Sequence[str]] = None,
         id_key: Optional[str] = "idx") -> Preprocessor:
  """T5's `preprocessors.glue` (GLUE and SuperGLUE classification): `{benchmark} {key1}: {text1}
  {key2}: {text2} ...` -> `label_names[label]`, plus `label` (the index) and the example id.

  `feature_names` gives the field order; by default (as T5) every key but `label` and `idx`, sorted
  by name. Texts are joined with single spaces and never normalised (an empty field leaves two
  spaces). For `benchmark_name == 'multirc'`, as T5: `<br>` -> ' ' and `<b>`, `</b>` removed
  (case-sensitive) on the joined text, and the id is kept as `idx/paragraph`, `idx/question`,
  `idx/answer`. Label -1 (unlabelled; T5's target `<unk>`) gives no example.
  """
  label_names = tuple(label_names)

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    target = _labelled(ex, label_names)
    if target is None:
      return []
    keys = list(feature_names) if feature_names else sorted(set(ex) - {"label", "idx"})
    parts = [benchmark_name]
    for key in keys:
      parts += [f"{key}:", as_text(field(ex, key))]
    joined = " ".join(parts)
    out: dict = {}
    if benchmark_name == "multirc":
      joined = re.sub("<(/)?b>", "", joined.replace("<br>", " "))
      out.update(_idx_fields(ex))
    elif id_key:
      out.update({"idx": as_int(ex[id_key])} if ex.get(id_key) is not None else {})
    return [{**out, "inputs": joined, **target}]

  return fn


def stsb_target(label: Any) -> str:
  """T5's STS-B target: `tf.round(label * 5) / 5` in float32 (round half to even), printed with one
  decimal. float32 matters: 3.1 -> '3.2' (3.1f * 5 = 15.5 rounds to 16), 2.5 -> '2.4', 0.1 -> '0.0'."""
  x = np.float32(label)
  rounded = np.float32(np.round(np.float32(x * np.float32(5.0)))) / np.float32(5.0)
  return "%.1f" % float(np.float32(rounded))


def stsb() -> Preprocessor:
  """T5's `preprocessors.stsb`: `stsb sentence1: {s1} sentence2: {s2}` -> `stsb_target(label)`.
  A negative or NaN label (GLUE's test split uses -1; T5 writes '-1.0') gives no example."""
  expected = "a number; negative = unlabelled"

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    value = parse_float(field(ex, "label", expected), "label", expected)
    if not np.isfinite(value) or value < 0:
      return []
    inputs = " ".join(["stsb sentence1:", as_text(field(ex, "sentence1")), "sentence2:",
                       as_text(field(ex, "sentence2"))])
    return [{**_idx_fields(ex), "inputs": inputs, "targets": stsb_target(value)}]

  return fn


# T5's `_wsc_inputs` rewrites two texts of WSC by hand (their span2_index points at another word).
_WSC_SPECIAL_TEXTS = {
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite '
    'loud. "Good for him," he said. ':
        'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite '
        'loud. "Good for X ," he said.',
    'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in '
    'an iron safe . Some day they might want to use it , but really for now, what more could they wish for?':
        'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in '
        'an iron safe . Some day they might want to use X , but really for now, what more could they wish for?',
}


def _wsc_marked_pronoun(pronoun: str) -> str:
  r"""' *pronoun* ' as T5's RE2 rewrite string reads it: '\\' is a backslash, '\0' the match (' X ');
  any other backslash escape is an invalid rewrite in RE2 (T5 would write garbled text)."""
  out, i = [], 0
  while i < len(pronoun):
    ch = pronoun[i]
    if ch == "\\":
      nxt = pronoun[i + 1:i + 2]
      if nxt not in ("\\", "0"):
        raise InvalidRow("span2_text", f"is {pronoun!r}: a backslash escape T5's regex rewrite cannot use",
                         "a pronoun without backslashes")
      out.append("\\" if nxt == "\\" else " X ")
      i += 2
    else:
      out.append(ch)
      i += 1
  return " *" + "".join(out) + "* "


def wsc_simple(correct_referent_only: Optional[bool], label: str = "wsc:") -> Preprocessor:
  """T5's `preprocessors.wsc_simple`: `wsc: {text with the pronoun as *pronoun*}` -> the referent
  candidate `span1_text`, plus `label` and `idx` (the 'wsc_simple' postprocessor compares the decoded
  referent with `targets` and scores against `label`).

  As T5's `_wsc_inputs`: the text is split on single spaces, the word at `span2_index` becomes `X`
  (two hard-coded texts are rewritten by hand), then *every* ' X ' becomes ' *pronoun* '.
  `correct_referent_only=True` (T5's simple_train) keeps only rows with label 1, False (simple_eval)
  every labelled row; None decides by `ctx.training` (training: simple_train, evaluation:
  simple_eval), which is how the catalog's `wsc` task pairs the two. Rows T5 rejects
  raise `InvalidRow`: the pronoun the first word or past the end, or not the word at `span2_index`.
  Label -1 (unlabelled) gives no example.
  """
  words_tf = ("False", "True")

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    only_correct = ctx.training if correct_referent_only is None else correct_referent_only
    lab = parse_label(field(ex, "label", label_set(words_tf)), "label", words_tf)
    if lab is None or (only_correct and lab == 0):
      return []
    text = as_text(field(ex, "text"))
    pronoun = as_text(field(ex, "span2_text"))
    index = parse_int(field(ex, "span2_index"), "span2_index")
    words = text.split(" ")
    if not 0 < index < len(words):
      raise InvalidRow("span2_index", f"is {index}, not a word after the first of the text's {len(words)} "
                       "space-separated words", "the pronoun's word index, > 0 (T5's wsc_simple rejects others)")
    inputs = _WSC_SPECIAL_TEXTS.get(text)
    if inputs is None:
      if words[index] != pronoun:
        raise InvalidRow("span2_text", f"is {pronoun!r} but word {index} of the text is {words[index]!r}",
                         "the word at span2_index (T5's wsc_simple rejects others)")
      inputs = " ".join(words[:index]) + " X " + " ".join(words[index + 1:])
    inputs = f"{label} " + inputs.replace(" X ", _wsc_marked_pronoun(pronoun))
    return [{**_idx_fields(ex), "inputs": inputs, "targets": as_text(field(ex, "span1_text")), "label": lab}]

  return fn


_HIGHLIGHT_AFTER_PUNCT = re.compile(r"(\.|\?|\!|\"|\')\n@highlight\n")
_HIGHLIGHT = re.compile(r"\n@highlight\n")


def record() -> Preprocessor:
  """T5's `preprocessors.record`: `record query: {query} entities: {e1, e2, ...} passage: {passage}`,
  one example per answer (targets = that answer, in the order TFDS stores them), each with all
  `answers` and `idx/passage`, `idx/query` for the metric. The passage's highlights become sentences:
  `(.|?|!|"|')\\n@highlight\\n` -> `\\1 `, then `\\n@highlight\\n` -> `. `. A query without answers (test
  split; T5's target `<unk>`) gives no example."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    answers = as_text_list(ex.get("answers"))
    if not answers:
      return []
    passage = _HIGHLIGHT.sub(". ", _HIGHLIGHT_AFTER_PUNCT.sub(r"\1 ", as_text(field(ex, "passage"))))
    inputs = " ".join(["record query:", as_text(field(ex, "query")), "entities:",
                       ", ".join(as_text_list(field(ex, "entities"))), "passage:", passage])
    ids = _idx_fields(ex)
    return [{**ids, "inputs": inputs, "targets": a, "answers": answers} for a in answers]

  return fn


_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # RE2's [[:punct:]]: ASCII punctuation only
_WHITESPACE = re.compile(r"[\t\n\f\r ]+")  # RE2's \s (no \v, no unicode spaces)


def pad_punctuation(text: str) -> str:
  """T5's `_pad_punctuation`: spaces around every ASCII punctuation character, whitespace runs
  collapsed to one space (not stripped: 'U.S.' -> 'U . S . ')."""
  return _WHITESPACE.sub(" ", _PUNCTUATION.sub(r" \1 ", text))


def squad() -> Preprocessor:
  """T5's `preprocessors.squad` (task squad_v010_allanswers): `question: {q} context: {c}` with
  punctuation padded (`pad_punctuation`) and whitespace collapsed -> the first answer (padded); `id`,
  `question`, `context` and all `answers` (padded) are kept, and the metric takes the max over them.
  A question without answers raises `InvalidRow` (T5 fails on it)."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    answers = [pad_punctuation(a) for a in as_text_list(field(field(ex, "answers"), "text"))]
    if not answers:
      raise InvalidRow("answers", "has no answer text", "at least one answer (T5's squad needs answers[0])")
    question = pad_punctuation(as_text(field(ex, "question")))
    context = pad_punctuation(as_text(field(ex, "context")))
    inputs = _WHITESPACE.sub(" ", " ".join(["question:", question, "context:", context]))
    return [{"inputs": inputs, "targets": answers[0], "id": as_text(ex.get("id", "")), "context": context,
             "question": question, "answers": answers}]

  return fn


# ----------------------------------------------------------------------------- classification


def classification(prefix: str, fields: Sequence[tuple[str, str]], label_words: Sequence[str],
                   label_key: str = "label") -> Preprocessor:
  """GLUE-style: `{prefix} {name1}: {text1} {name2}: {text2}` -> `label_words[label]`.

  `fields` are `(example key, name shown in the input)` pairs, in input order.
  """
  label_words = tuple(label_words)

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    target = _labelled(ex, label_words, label_key)
    if target is None:
      return []
    return [{"inputs": _fields_text(prefix, ex, fields), **target}]

  return fn


def round_to(value: float, step: float = 0.2) -> str:
  """STS-B style text-regression target: round to the nearest `step`, one decimal ('3.4')."""
  return f"{round(float(value) / step) * step:.1f}"


def regression(prefix: str, fields: Sequence[tuple[str, str]], label_key: str = "label",
               scale: float = 1.0, step: float = 0.2) -> Preprocessor:
  """Text regression as T5 does STS-B: target = `label * scale` rounded to `step`, as a string.
  A negative or NaN label is unlabelled (GLUE's STS-B test split uses -1) and gives no example."""
  expected = "a number; negative = unlabelled"

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    value = parse_float(field(ex, label_key, expected), label_key, expected) * scale
    if not np.isfinite(value) or value < 0:
      return []
    return [{"inputs": _fields_text(prefix, ex, fields), "targets": round_to(value, step)}]

  return fn


def wsc(prefix: str = "wsc") -> Preprocessor:
  """SuperGLUE WSC as binary classification (the opt-in task `wsc_binary`; the default `wsc` is T5's
  `wsc_simple`): the pronoun (span2) is marked with `*` in the text; does it refer to span1?"""
  words = ("False", "True")

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    target = _labelled(ex, words)
    if target is None:
      return []
    tokens = clean(as_text(ex["text"])).split(" ")
    i = as_int(ex["span2_index"])
    if 0 <= i < len(tokens):
      tokens[i] = f"*{tokens[i]}*"
    inputs = (f"{prefix} span1: {clean(as_text(ex['span1_text']))} span2: {clean(as_text(ex['span2_text']))} "
              f"text: {' '.join(tokens)}")
    return [{"inputs": inputs, **target}]

  return fn


def multiple_choice(prefix: str, fields: Sequence[tuple[str, str]], choices: Callable[[Mapping], list[str]],
                    label: Callable[[Mapping], Any], num_choices: int) -> Preprocessor:
  """`{prefix} {fields...} options: (A) .. (B) ..` -> the letter of the right option.

  `label(ex)` gives the raw label (an int index of the right option, -1 if unlabelled); an index
  past the options is an `InvalidRow`.

  Options go after the short fields and before long passages (the last entries of `fields` whose
  name is 'context', 'article' or 'passage'), so truncation removes passage text first.
  """
  long_names = ("context", "article", "passage")
  short = [f for f in fields if f[1] not in long_names]
  long = [f for f in fields if f[1] in long_names]
  words = LETTERS[:num_choices]

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    opts = choices(ex)
    target = _label_target(label(ex), words[:len(opts)])
    if target is None:
      return []
    options = " ".join(f"({words[i]}) {clean(o)}" for i, o in enumerate(opts[:num_choices]))
    text = _fields_text(prefix, ex, short) + f" options: {options}"
    if long:
      text += " " + _fields_text("", ex, long)
    return [{"inputs": text, **target}]

  return fn


def race(prefix: str = "race") -> Preprocessor:
  """RACE: one article, many questions -> one example per question, target = answer letter."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    article = clean(as_text(ex["article"]))
    questions = as_text_list(ex["questions"])
    answers = as_text_list(ex["answers"])
    options = np.asarray(ex["options"], dtype=object)
    out = []
    for i, (q, a) in enumerate(zip(questions, answers)):
      opts = as_text_list(options[i]) if i < len(options) else []
      allowed = LETTERS[:min(len(opts), 4)]
      if not a.strip():
        continue  # unlabelled question
      if a.strip() not in allowed:
        raise InvalidRow("answers", f"of question {i} is {a!r}, not one of its options",
                         f"one of {', '.join(allowed) or 'no options'}")
      label = LETTERS.index(a.strip())
      choice_text = " ".join(f"({LETTERS[j]}) {clean(o)}" for j, o in enumerate(opts[:4]))
      out.append({"inputs": f"{prefix} question: {clean(q)} options: {choice_text} article: {article}",
                  "targets": LETTERS[label], "label": label})
    return out

  return fn


# ----------------------------------------------------------------------------- reading comprehension


def drop(prefix: str = "drop") -> Preprocessor:
  """DROP: `drop question: .. passage: ..` -> answer; `answers` (answer + validated answers) is what
  the 'qa' postprocessor gives the SQuAD metric (max over answers)."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    answer = clean(as_text(ex["answer"]))
    inputs = f"{prefix} question: {clean(as_text(ex['question']))} passage: {clean(as_text(ex['passage']))}"
    answers = [answer] + [clean(a) for a in as_text_list(ex.get("validated_answers"))]
    answers = list(dict.fromkeys(a for a in answers if a)) or [answer]
    return [{"inputs": inputs, "targets": answer, "answers": answers}]

  return fn


# ----------------------------------------------------------------------------- language modelling


def mix_hash(*values: int) -> int:
  """A cheap deterministic 64-bit hash of ints (splitmix64 steps); the pipeline keys its orders with it too."""
  h = 0x9E3779B97F4A7C15
  for v in values:
    h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 29
  return h


# T5's `prefix_lm` (t5.data.preprocessors, task c4_v220_prefix_lm) works on token ids, so these steps
# take ids from the task's vocabulary (`ctx.vocab`) and hand the pipeline `inputs_ids`/`targets_ids`.
# Each step is T5's, on the same TF stateless random ops with the same seed handling; a seed is what
# seqio hands a map function: an int64 pair ([2]).
PREFIX_LM_MAX_CHUNK = 65536  # T5's prefix_lm: select_random_chunk(max_length=65536)


def seed_pair(seed: int, *path: int) -> np.ndarray:
  """A stateless seed ([2] int64, the form seqio gives T5's map functions) for step `path` of the
  example whose spot_jax seed is `seed` (`ctx.seed`: per run seed, epoch and example)."""
  h = mix_hash(seed, *path)
  return np.array([h >> 32, h & 0xFFFFFFFF], np.int64)


def _split_seed(seed: Any, num: int) -> list:
  """`tf.unstack(tf.random.experimental.stateless_split(seed, num))`, as T5's steps split their seed."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only the token-level formats need TF)
  return tf.unstack(tf.random.experimental.stateless_split(tf.constant(np.asarray(seed, np.int64)), num))


def _stateless_randint(minval: int, maxval: int, seed: Any) -> int:
  """`tf.random.stateless_uniform([], minval, maxval, dtype=tf.int32, seed=seed)` as a Python int."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return int(tf.random.stateless_uniform([], minval=minval, maxval=maxval, dtype=tf.int32, seed=seed))


def select_random_chunk(tokens: Sequence[int], seed: Any, max_length: int = PREFIX_LM_MAX_CHUNK) -> np.ndarray:
  """T5's `single_example_select_random_chunk` (defaults: no min_length, no uniform_random_start):
  tokens [n] -> one of the ceil(n / max_length) consecutive max_length-token chunks, chosen with
  `seed` ([2] int64) -> [<= max_length]. A text of at most max_length tokens is returned whole (T5
  draws from one chunk then, which always gives the first)."""
  tokens = np.asarray(tokens, np.int32)
  n = len(tokens)
  num_segments = int(np.ceil(np.float32(n) / np.float32(max_length)))  # float32, as T5 computes it
  if num_segments <= 1:
    return tokens
  start = max_length * _stateless_randint(0, num_segments, _split_seed(seed, 2)[1])
  return tokens[start:min(start + max_length, n)]


def split_tokens(tokens: Sequence[int], max_tokens_per_segment: int) -> list[np.ndarray]:
  """T5's `split_tokens` with a fixed segment length: [n] -> consecutive segments of
  `max_tokens_per_segment` tokens, the last one shorter; none for an empty text."""
  tokens = np.asarray(tokens, np.int32)
  return [tokens[i:i + max_tokens_per_segment] for i in range(0, len(tokens), max_tokens_per_segment)]


def random_prefix_split(tokens: Sequence[int], seed: Any, noise_density: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """T5's `denoise` with `random_prefix_noise_mask`, inputs `drop_nonnoise_tokens`, targets
  `drop_noise_tokens`: [n] -> (inputs = the first k tokens, targets = the rest), k uniform in
  [min_k, n-1] where min_k = min(n-1, max(1, round((1 - 2 * noise_density) * (n-1)))) (1 at T5's 0.5).
  A 1-token segment gives no inputs and that token as the target, as in T5."""
  if noise_density > 0.5:
    raise NotImplementedError("noise density must not exceed 0.5 for random_prefix_noise_mask (as in T5)")
  tokens = np.asarray(tokens, np.int32)
  max_inputs = len(tokens) - 1
  scaled = np.float32(1 - 2 * noise_density) * np.float32(max_inputs)  # float32, rounded half to even
  min_inputs = min(max_inputs, max(1, int(np.round(scaled))))
  denoise_seeds = _split_seed(seed, 6)  # T5: noise mask seeds[:2] (uses [0]); the drop fns ignore theirs
  k = _stateless_randint(min_inputs, max_inputs + 1, denoise_seeds[0])
  return tokens[:k], tokens[k:]


def prefix_lm_tokens(tokens: Sequence[int], input_length: int, chunk_seed: Any, segment_seed: Callable[[int], Any],
                     noise_density: float = 0.5,
                     max_chunk_length: int = PREFIX_LM_MAX_CHUNK) -> list[tuple[np.ndarray, np.ndarray]]:
  """T5's `prefix_lm` on one tokenized text [n]: `select_random_chunk` (seed `chunk_seed`),
  `split_tokens` into segments of input_length - 1 (room for EOS), and `random_prefix_split` of
  segment i (seed `segment_seed(i)`) -> [(inputs, targets)], one pair per segment, without EOS (the
  pipeline appends it after trimming to the lengths, as T5's `append_eos_after_trim`)."""
  if input_length < 2:
    raise ValueError(f"prefix_lm needs input_length >= 2 (segments of input_length - 1 tokens); got {input_length}.")
  if len(tokens) == 0:  # T5 filters empty texts out
    return []
  chunk = select_random_chunk(tokens, chunk_seed, max_chunk_length)
  return [random_prefix_split(segment, segment_seed(i), noise_density)
          for i, segment in enumerate(split_tokens(chunk, input_length - 1))]


def prefix_lm(text_key: str = "text", noise_density: float = 0.5) -> Preprocessor:
  """T5's C4 prefix-LM (`c4_v220_prefix_lm`, the LM-adapted T5 objective), token-level: the text is
  tokenized with `ctx.vocab`, a random chunk of <= 65536 tokens is cut into segments of
  `ctx.input_length` - 1 tokens, and each segment is split at a uniformly random point: inputs = the
  prefix, targets = the continuation (`prefix_lm_tokens`). One output per segment, with the ids
  (`inputs_ids`, `targets_ids`: what the pipeline feeds the model) and their decoded text (for
  metrics and display).

  The draws are T5's TF stateless ops; their seeds come from `ctx.seed` (`seed_pair`), so each
  epoch splits differently, reproducibly, and the same seeds give T5's ids exactly.
  """

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    if ctx.vocab is None or ctx.input_length is None:
      raise errors.ConfigError(
          "The prefix-LM format tokenizes in its preprocessor (T5's token-level prefix_lm): it needs the "
          "vocabulary and the input length. Pass preprocessors.Context(vocab=..., input_length=...) (the "
          "pipeline does).")
    vocab = ctx.vocab
    tokens = vocab.encode(as_text(field(ex, text_key, "a text")))
    pairs = prefix_lm_tokens(tokens, ctx.input_length, seed_pair(ctx.seed, 0),
                             lambda i: seed_pair(ctx.seed, 1, i), noise_density)
    return [{"inputs": vocab.decode(inputs), "targets": vocab.decode(targets), "inputs_ids": inputs.tolist(),
             "targets_ids": targets.tolist()} for inputs, targets in pairs]

  return fn


def passthrough(inputs_key: str = "inputs", targets_key: str = "targets",
                label_key: Optional[str] = None) -> Preprocessor:
  """Examples that are already text-to-text (local files, the synthetic tasks)."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    out = {"inputs": clean(as_text(field(ex, inputs_key))), "targets": clean(as_text(field(ex, targets_key)))}
    if label_key is not None:
      label = parse_int(field(ex, label_key), label_key)
      if label >= 0:
        out["label"] = label
    return [out]

  return fn


# ----------------------------------------------------------------------------- SPoT's formats
# Plain-Python versions of the formats of google-research/prompt-tuning's SPoT tasks (the members of
# the Table-1 mixtures; prompt_tuning/spot/data/*.py and prompt_tuning/data/preprocessors.py) and of
# T5's `translate` (WMT). Their whitespace is T5's `_string_join`: parts joined with single spaces,
# then every run of `[\t\n\f\r ]` collapsed to one space (not stripped). Where the reference writes
# `<unk>` for an unlabelled row (label -1), these give no example, as the T5 formats above.


def string_join(parts: Sequence[str]) -> str:
  """T5's `_string_join`: join on ' ', then collapse whitespace runs (RE2's \\s) to one space."""
  return _WHITESPACE.sub(" ", " ".join(parts))


def spot_classification(task_name: str, text_a_key: str, text_b_key: Optional[str],
                        label_names: Sequence[str]) -> Preprocessor:
  """prompt-tuning's `preprocess_text_classification`: `{task_name} {text_a_key}: {a} [{text_b_key}:
  {b}]` (`string_join`) -> `label_names[label]`, plus `label`. A string label ('1') is read as an int
  (the reference's TSV sources); -1 gives no example."""
  label_names = tuple(label_names)

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    target = _labelled(ex, label_names)
    if target is None:
      return []
    parts = [task_name, f"{text_a_key}:", as_text(field(ex, text_a_key))]
    if text_b_key is not None:
      parts += [f"{text_b_key}:", as_text(field(ex, text_b_key))]
    return [{"inputs": string_join(parts), **target}]

  return fn


def spot_similarity(task_name: str, text_a_key: str = "sentence1", text_b_key: str = "sentence2",
                    id_key: Optional[str] = "idx") -> Preprocessor:
  """prompt-tuning's `preprocess_text_similarity` (CxC): `{task_name} sentence1: {a} sentence2: {b}`
  -> the label rounded to 0.2 in float32 with one decimal (`stsb_target`, as T5's STS-B), plus `idx`
  (from `id_key`, when the row has it)."""
  expected = "a similarity score, 0-5"

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    value = parse_float(field(ex, "label", expected), "label", expected)
    inputs = string_join([task_name, f"{text_a_key}:", as_text(field(ex, text_a_key)), f"{text_b_key}:",
                          as_text(field(ex, text_b_key))])
    out = {"inputs": inputs, "targets": stsb_target(value)}
    if id_key and ex.get(id_key) is not None:
      out["idx"] = parse_int(ex[id_key], id_key)
    return [out]

  return fn


GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief", "joy",
    "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise",
    "neutral")  # the order of TFDS goemotions' features


def goemotions(separator: str = " \\n ") -> Preprocessor:
  """prompt-tuning's `preprocess_goemotions`: `goemotions comment: {comment_text}` -> the names of
  the emotions marked true, in the order of TFDS's features (`GOEMOTIONS_LABELS`), joined by
  ' \\n ' (a literal backslash and n, as the reference writes it). Multi-label: scored by exact match."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    names = [name for name in GOEMOTIONS_LABELS if bool(_scalar(field(ex, name), name, "a bool"))]
    inputs = string_join(["goemotions", "comment:", as_text(field(ex, "comment_text"))])
    return [{"inputs": inputs, "targets": separator.join(names)}]

  return fn


def sentiment140(task_name: str = "sentiment140",
                 label_names: Sequence[str] = ("negative", "neutral", "positive")) -> Preprocessor:
  """prompt-tuning's `preprocess_sentiment140`: `sentiment140 text: {text}` -> `label_names[polarity
  // 2]` (polarity 0, 2, 4), plus `label`; polarity -1 gives no example."""
  label_names = tuple(label_names)
  expected = "polarity 0 (negative), 2 (neutral) or 4 (positive)"

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    polarity = parse_int(field(ex, "polarity", expected), "polarity", expected)
    if polarity == -1:
      return []
    if polarity not in (0, 2, 4)[:len(label_names)]:
      raise InvalidRow("polarity", f"is {polarity}", expected)
    label = polarity // 2
    return [{"inputs": string_join([task_name, "text:", as_text(field(ex, "text"))]),
             "targets": label_names[label], "label": label}]

  return fn


def spot_multiple_choice(task_name: str, choice_keys: Sequence[str],
                         choice_nested_keys: Optional[Sequence[int]] = None, question_key: Optional[str] = None,
                         context_key: Optional[str] = None) -> Preprocessor:
  """prompt-tuning's `preprocess_multiple_choice` (RAINBOW): `{task_name} {question_key}: {q}
  {choice_key}: {choice} ... {context_key}: {context}` -> the text of the right choice (`choices[label]`).

  With `choice_nested_keys` the choices are `ex[choice_key][nested_key]`, shown as `{choice_key}
  {nested_key}:` (HellaSwag: `endings 0: ...`). The context goes last: the reference means to append
  it but assigns the result of `list.extend` (None), so it fails on CosmosQA; this appends it. A
  label -1 gives no example; a label past the choices is an `InvalidRow`."""
  choice_keys = tuple(choice_keys)

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    if choice_nested_keys is None:
      named = [(f"{k}:", as_text(field(ex, k))) for k in choice_keys]
    else:
      named = []
      for k, j in zip(choice_keys, choice_nested_keys):
        values = as_text_list(field(ex, k))
        if j >= len(values):
          raise InvalidRow(k, f"has {len(values)} entries, no entry {j}", f"at least {j + 1} choices")
        named.append((f"{k} {j}:", values[j]))
    choices = [text for _, text in named]
    label = parse_label(field(ex, "label"), "label", [str(i) for i in range(len(choices))])
    if label is None:
      return []
    parts = [task_name] if task_name else []
    if question_key is not None:
      parts += [f"{question_key}:", as_text(field(ex, question_key))]
    for name, text in named:
      parts += [name, text]
    if context_key is not None:
      parts += [f"{context_key}:", as_text(field(ex, context_key))]
    return [{"inputs": string_join(parts), "targets": choices[label]}]

  return fn


def mrqa(task_name: Optional[str]) -> Preprocessor:
  """prompt-tuning's `mrqa` (SQuAD's format for the MRQA datasets): `{task_name} question: {q}
  context: {c}` with punctuation padded (`pad_punctuation`) -> the first answer (padded); `idx` (the
  qid), `question`, `context` and all `answers` (padded) are kept for the 'qa' postprocessor."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    answers = [pad_punctuation(a) for a in as_text_list(field(ex, "answers"))]
    if not answers:
      raise InvalidRow("answers", "is empty", "at least one answer (the reference takes answers[0])")
    question = pad_punctuation(as_text(field(ex, "question")))
    context = pad_punctuation(as_text(field(ex, "context")))
    parts = ([task_name] if task_name else []) + ["question:", question, "context:", context]
    return [{"inputs": string_join(parts), "targets": answers[0], "idx": as_text(ex.get("qid", "")),
             "question": question, "context": context, "answers": answers}]

  return fn


def _nested(ex: Mapping[str, Any], key: str, nested_key: Optional[str]) -> Any:
  value = field(ex, key)
  if nested_key is None:
    return value
  if not isinstance(value, Mapping) or value.get(nested_key) is None:
    raise InvalidRow(key, f"has no entry {nested_key!r}", f"a dict with {nested_key!r}")
  return value[nested_key]


def text_generation(source_key: str, target_key: str, task_name: Optional[str] = None,
                    prefix: Optional[str] = None, source_nested_key: Optional[str] = None,
                    target_nested_key: Optional[str] = None, source_segment: Optional[str] = None) -> Preprocessor:
  """prompt-tuning's `preprocess_text_generation` (summarization, GEM): `{task_name} {prefix}
  {source}` (`string_join`) -> the target text as is.

  A source that is a list (GEM's concepts, triples) is joined with `source_segment` and appended
  *after* the whitespace collapsing, so its own whitespace stays: `string_join([task_name, prefix,
  ' ']) + source_segment.join(source)`, e.g. 'common_gen ski \\\\n mountain' (the reference's GEM
  segment is a space, two backslashes, 'n', a space). `*_nested_key` read a dict-valued feature
  (WikiLingua's `source_aligned['en']`)."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    source = _nested(ex, source_key, source_nested_key)
    target = as_text(_nested(ex, target_key, target_nested_key))
    head = [s for s in (task_name, prefix) if s is not None]
    is_list = not isinstance(source, (str, bytes, np.bytes_)) and np.ndim(np.asarray(source, dtype=object)) > 0
    if is_list:
      if source_segment is None:
        raise InvalidRow(source_key, "is a list of texts, but the task gives no source_segment to join them",
                         "one text")
      inputs = string_join(head + ([" "] if head else [])) + source_segment.join(as_text_list(source))
    else:
      inputs = string_join(head + [as_text(source)])
    return [{"inputs": inputs, "targets": target}]

  return fn


def gem_schema_guided_dialog(task_name: Optional[str] = "schema_guided_dialog",
                             separator: str = " \\n ") -> Preprocessor:
  """prompt-tuning's `preprocess_gem_schema_guided_dialog`: `{task_name} prompt: {prompt} context: `
  followed by the dialogue turns joined with ' \\n ' (a literal backslash and n) -> the target."""

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    head = ([task_name] if task_name else []) + ["prompt:", as_text(field(ex, "prompt")), "context:", " "]
    inputs = string_join(head) + separator.join(as_text_list(field(ex, "context")))
    return [{"inputs": inputs, "targets": as_text(field(ex, "target"))}]

  return fn


# babel's English names of the WMT languages (T5's `translate` asks babel for them).
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "ro": "Romanian"}


def translate(source_language: str, target_language: str) -> Preprocessor:
  """T5's `translate` (wmt_t2t_ende_v003, wmt15_enfr_v003, wmt16_enro_v003): `translate English to
  German: {en}` -> `{de}`, texts as they are (no whitespace change)."""
  prompt = f"translate {LANGUAGE_NAMES[source_language]} to {LANGUAGE_NAMES[target_language]}: "

  def fn(ex: Mapping[str, Any], ctx: Context) -> list[dict]:
    del ctx
    return [{"inputs": prompt + as_text(field(ex, source_language)),
             "targets": as_text(field(ex, target_language))}]

  return fn
