"""Decoded text -> what the metrics compare: T5's postprocessors (t5/data/postprocessors.py, t5 0.9.4).

Why its own module: a task's score depends as much on how a decoded string becomes a label as on the
metric, so these are T5's functions with T5's semantics, in plain Python:

- `string_label_to_class_id`: the index of an *exact* label word (no stripping, case-sensitive);
  anything else is `default` (-1), which every metric counts as wrong.
- `string_to_float`: Python's `float()` (so ' 0.2 ', '3e0', '+4.6', '1_0' and 'nan' parse), else -1.0.
- `multirc`: `{'value': class id of False/True}`, plus `'group': example['idx/question']` for a target.
- `record`: a target is `{'value': all answers, 'group': (idx/passage, idx/query)}`, a prediction
  `{'value': text}`.
- `qa`: a target is the list of all answers, a prediction the text as is.
- `wsc_simple`: a target is `example['label']`; a prediction is 1 if its words (lowercased, stripped,
  split on single spaces, determiners dropped) are a subset or superset of the referent's
  (`example['targets_pretokenized']`) and both or neither contain an apostrophe, else 0; -1 if
  nothing is left.

`BY_NAME` maps the names a `Task` gives as its `postprocessor` ('label', 'float', 'text', 'qa',
'record', 'multirc', 'wsc_simple') to these functions.

`example` is the evaluation example as T5 hands it over: the preprocessor's output fields (`idx`,
`idx/question`, `answers`, `label`, ...) plus `targets_pretokenized`. Strings may be `bytes` (as in
T5) or `str`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def identity(text: str, **unused_kwargs) -> str:
  """No postprocessing (T5's default for tasks without a postprocess_fn)."""
  return text


def string_to_float(string: str, default: float = -1.0, **unused_kwargs) -> float:
  """Converts a string to a float, `default` when Python's `float()` cannot."""
  try:
    return float(string)
  except ValueError:
    return default


def lower_text(string: str, **unused_kwargs) -> str:
  return string.lower()


def string_label_to_class_id(string_label: str, label_classes: Sequence[str], default: int = -1,
                             **unused_kwargs) -> int:
  """The index of `string_label` in `label_classes` (exact match), `default` if it is not one."""
  label_classes = list(label_classes)
  if string_label in label_classes:
    return label_classes.index(string_label)
  return default


def multirc(string_label: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> dict:
  """The class (False/True) and, for a target, the question index the EM metric groups by."""
  res: dict = {"value": string_label_to_class_id(string_label, label_classes=("False", "True"))}
  if is_target:
    res["group"] = example["idx/question"]
  return res


def record(answer: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> dict:
  """A target: all answers and the (passage, query) group; a prediction: its text."""
  if is_target:
    return {"value": [_text(a) for a in example["answers"]],
            "group": (example["idx/passage"], example["idx/query"])}
  return {"value": answer}


def qa(answer: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> Any:
  """A target: all answers of the example; a prediction: the text."""
  if is_target:
    return [_text(a) for a in example["answers"]]
  return answer


_DETERMINERS = frozenset({
    "a", "an", "few", "her", "his", "each", "every", "many", "much", "my", "our", "some", "that", "the",
    "their", "these", "this", "those", "which", "whose", "your"})


def _wsc_clean(s: Any) -> str:
  """Lowercase and strip, split on single spaces, drop determiners."""
  s = _text(s).strip().lower()
  return " ".join(w for w in s.split(" ") if w not in _DETERMINERS)


def wsc_simple(prediction: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> int:
  """Whether the prediction names the example's referent candidate (see the module docstring)."""
  if is_target:
    return example["label"]
  prediction = _wsc_clean(prediction)
  if not prediction:
    return -1  # an empty prediction must not match label 0 by accident
  referent = _wsc_clean(example["targets_pretokenized"])
  if ("'" in prediction) != ("'" in referent):
    return 0  # "Bob" is not "Bob's hat"
  prediction_words, referent_words = set(prediction.split(" ")), set(referent.split(" "))
  return int(prediction_words.issubset(referent_words) or referent_words.issubset(prediction_words))


# A task names its postprocessor (`Task.postprocessor`); each name is fn(text, example, is_target,
# label_words) -> the value the metrics compare, one of T5's functions above.
BY_NAME: dict[str, Callable[[str, Optional[Mapping[str, Any]], bool, Sequence[str]], Any]] = {
    "label": lambda text, example, is_target, words: string_label_to_class_id(text, words),
    "float": lambda text, example, is_target, words: string_to_float(text),
    "text": lambda text, example, is_target, words: identity(text),
    "qa": lambda text, example, is_target, words: qa(text, example, is_target),
    "record": lambda text, example, is_target, words: record(text, example, is_target),
    "multirc": lambda text, example, is_target, words: multirc(text, example, is_target),
    "wsc_simple": lambda text, example, is_target, words: wsc_simple(text, example, is_target),
}
BY_NAME["squad"] = BY_NAME["drop"] = BY_NAME["qa"]  # earlier spellings
