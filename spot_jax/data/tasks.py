"""Task registry: where a task's data comes from, how it becomes text-to-text, how it is scored.

Why this exists: SPoT trains prompts on dozens of tasks and compares them on one scale, so every
task must answer the same questions the same way — which examples (a TFDS dataset or local files),
which text format (`preprocessors`), which label words (rank classification, class-label prompt
init), how a decoded string becomes a prediction (`postprocess`), which metrics, and the ONE
validation number (`score`, 0-100) used for best-checkpoint selection and relative error reduction.
A small seqio-like registry answers them without seqio's dependencies.

Sources are random-access (`len(source)`, `source[i]`): that is what makes the pipeline's order
deterministic, its per-host shards disjoint and its position a couple of integers.
- `TfdsSource`: a prepared TFDS dataset. array_record (and parquet) datasets are read through
  `tfds.data_source`; TFRecord datasets (C4 and most of the catalog) through `data.tfrecord`, which
  indexes each file's record offsets on first use (4 bytes per record in memory). For very large
  TFRecord datasets converting is cheaper on memory:
  `tfds convert_format --root_data_dir=DATA_DIR --out_file_format=array_record`.
- `LocalFileSource`: `<data_dir>/<dir>/<split>.jsonl` (or `.tsv` / `.csv` with a header row), one
  example per line. Use it for your own tasks, e.g.

      register_task(Task("my_task", LocalFileSource("my_task", fields={"inputs": "str", ...}),
                         preprocessors.passthrough(), metric_names=("accuracy",)))

  and put files under `$SPOT_JAX_DATA_DIR/my_task/{train,validation}.jsonl`.
- `InMemorySource`: examples built in Python (tests, generated data).

Data directories: an explicit `data_dir` argument wins; then `set_data_dir(dataset, path)` (the
synthetic tasks' `prepare(data_dir)` calls it); then `$TFDS_DATA_DIR` (TFDS) or
`$SPOT_JAX_DATA_DIR` (local files); then TFDS's default / `~/spot_jax_data`.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import math
import os
import re
import string
from collections import Counter
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np

from spot_jax import errors
from spot_jax.data import preprocessors as pp


class DataNotFoundError(errors.UserError, FileNotFoundError):
  """A task's data is not on disk (or not in a readable format); the message says how to fix it."""


# ----------------------------------------------------------------------------- data directories

_DATA_DIRS: dict[str, str] = {}


def set_data_dir(dataset: str, path: Optional[str]) -> None:
  """Default data directory for one dataset (TFDS name without config, or a local-file dir)."""
  if path is None:
    _DATA_DIRS.pop(dataset, None)
  else:
    _DATA_DIRS[dataset] = str(path)


def _tfds_data_dir(dataset: str, data_dir: Optional[str]) -> Optional[str]:
  return data_dir or _DATA_DIRS.get(dataset.split("/")[0]) or os.environ.get("TFDS_DATA_DIR") or None


def local_data_dir(dataset: str, data_dir: Optional[str] = None) -> str:
  return (data_dir or _DATA_DIRS.get(dataset) or os.environ.get("SPOT_JAX_DATA_DIR")
          or os.path.expanduser("~/spot_jax_data"))


# ----------------------------------------------------------------------------- sources


class RandomAccess(Protocol):
  """What `Source.open` returns. Optional extras the pipeline uses where present: `where(index)`
  (the row's place for error messages, e.g. 'path line 12'), `read_many(indices)` (batched reads)
  and `scannable = True` (small enough that every row is checked once when the split is opened)."""

  def __len__(self) -> int: ...
  def __getitem__(self, index: int) -> Mapping[str, Any]: ...


def row_location(source: RandomAccess, index: int, task_name: str, split: str) -> str:
  """Where row `index` of a split is, for error messages: the file and line of local files, else the
  task, split and row index (TFDS, in-memory)."""
  where = getattr(source, "where", None)
  return where(index) if where is not None else f"task {task_name!r} split {split!r} row {index}"


def split_location(source: RandomAccess, task_name: str, split: str) -> str:
  """The file of a local-file split, else the task and split."""
  path = getattr(source, "path", None)
  return str(path) if path else f"task {task_name!r} split {split!r}"


class Source(Protocol):
  """Where a task's raw examples come from."""

  name: str

  def open(self, split: str, data_dir: Optional[str] = None) -> RandomAccess: ...


class _Concat:
  """Several random-access sequences read as one (RACE high + middle, ANLI rounds)."""

  def __init__(self, parts: Sequence[RandomAccess]):
    self._parts = list(parts)
    self._ends = np.cumsum([len(p) for p in self._parts])

  def __len__(self) -> int:
    return int(self._ends[-1]) if len(self._ends) else 0

  def __getitem__(self, index: int) -> Mapping[str, Any]:
    part = int(np.searchsorted(self._ends, index, side="right"))
    start = int(self._ends[part - 1]) if part else 0
    return self._parts[part][index - start]


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  """A TFDS dataset (or several configs read one after another) through `tfds.data_source`."""

  datasets: tuple[str, ...]
  split_map: tuple[tuple[str, str], ...] = ()  # task split name -> TFDS split name, e.g. dev

  @property
  def name(self) -> str:
    return "+".join(self.datasets)

  def tfds_split(self, split: str) -> str:
    return dict(self.split_map).get(split, split)

  def open(self, split: str, data_dir: Optional[str] = None) -> RandomAccess:
    parts = [self._open_one(d, self.tfds_split(split), data_dir) for d in self.datasets]
    return parts[0] if len(parts) == 1 else _Concat(parts)

  def _open_one(self, dataset: str, split: str, data_dir: Optional[str]) -> RandomAccess:
    import tensorflow_datasets as tfds  # heavy; only when data is actually read

    data_dir = _tfds_data_dir(dataset, data_dir)
    try:
      try:
        return _TfdsExamples.wrap(tfds.data_source(dataset, split=split, data_dir=data_dir, download=False))
      except NotImplementedError as e:  # not prepared, or prepared as TFRecord
        builder = tfds.builder(dataset, data_dir=data_dir)
        if builder.is_prepared() and builder.info.file_format == tfds.core.FileFormat.TFRECORD:
          return _TfdsExamples.from_tfrecord(builder, split)
        if builder.is_prepared():
          raise DataNotFoundError(
              f"TFDS dataset {dataset!r} in {builder.data_dir} is stored as {builder.info.file_format}, which "
              "spot_jax cannot read by index. Convert it with `tfds convert_format "
              f"--dataset_version_dir={builder.data_dir} --out_file_format=array_record`.") from e
        raise DataNotFoundError(
            f"TFDS dataset {dataset!r} is not prepared in data_dir {builder.data_dir_root!r} (no downloads "
            f"happen here). Prepare it with `tfds build {dataset} --file_format=array_record "
            "--data_dir=DIR` (or copy it there), then pass data_dir=DIR or set $TFDS_DATA_DIR.") from e
    except (ValueError, KeyError) as e:
      if "split" in str(e).lower():
        raise DataNotFoundError(f"TFDS dataset {dataset!r} has no split {split!r}: {e}") from e
      raise


class _TfdsExamples:
  """Random access to the serialized examples of a TFDS dataset, faster than TFDS's `__getitem__`.

  - `read_many` reads records in one batched call (array_record: ~25 us each instead of ~80;
    TFRecord: each file once, in offset order).
  - If every feature is a scalar (Text, ClassLabel, Scalar), records are decoded straight from the
    tf.train.Example proto (~10 us instead of TFDS's generic ~140 us); otherwise TFDS decodes.
  Values are what TFDS gives (`bytes` for text). Under `tfds.testing.mock_data` the records are
  already-decoded dicts and pass through unchanged.
  """

  _KINDS = {"Text": "bytes", "ClassLabel": "int", "Scalar": None, "Tensor": None}

  def __init__(self, records, features, decoders=None, length: Optional[int] = None):
    self._records = records
    self._length = len(records) if length is None else length  # a TFDS data source knows its own length
    # array_record's source and our TFRecord reader read a list of indices in one `__getitems__` call
    self._batched = type(records).__module__.startswith(("array_record", "spot_jax.data.tfrecord"))
    self._kinds = None if decoders else self._flat_kinds(features)
    self._features = features
    if self._kinds is not None:
      from tensorflow_datasets.proto import tf_example_pb2
      self._parse = tf_example_pb2.Example.FromString

  @classmethod
  def wrap(cls, source):
    """`source` wrapped if it is a TFDS data source with readable records; anything else as is."""
    if not (hasattr(source, "data_source") and hasattr(source, "dataset_info")):
      return source
    return cls(source.data_source, source.dataset_info.features, source.decoders, len(source))

  @classmethod
  def from_tfrecord(cls, builder, split: str) -> "_TfdsExamples":
    """A TFRecord-prepared TFDS dataset's split (slicing such as `train[:10%]` included), in the
    order `tfds.data_source` would give had it been array_record."""
    from spot_jax.data import tfrecord
    instructions = builder.info.splits[split].file_instructions
    shards = [tfrecord.Shard(str(fi.filename), int(fi.skip),
                             int(fi.take) if fi.take >= 0 else int(fi.examples_in_shard) - int(fi.skip))
              for fi in instructions]
    return cls(tfrecord.TfRecordReader(shards), builder.info.features)

  @classmethod
  def _flat_kinds(cls, features) -> Optional[dict[str, str]]:
    kinds = {}
    for key, feature in features.items():
      kind = cls._KINDS.get(type(feature).__name__, "unknown")
      if kind == "unknown" or tuple(feature.shape) != ():
        return None
      if kind is None:
        dtype = np.dtype(feature.np_dtype)
        if np.issubdtype(dtype, np.integer):
          kind = "int"
        elif np.issubdtype(dtype, np.floating):
          kind = "float"
        else:
          return None
      kinds[key] = kind
    return kinds

  def _decode(self, record: Any) -> Mapping[str, Any]:
    if not isinstance(record, (bytes, memoryview)):
      return record
    if self._kinds is None:
      return self._features.deserialize_example_np(record)
    feature = self._parse(record).features.feature
    out = {}
    for key, kind in self._kinds.items():
      f = feature[key]
      out[key] = (f.bytes_list.value[0] if kind == "bytes" else f.int64_list.value[0] if kind == "int"
                  else f.float_list.value[0])
    return out

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Mapping[str, Any]:
    return self._decode(self._records[int(index)])

  def read_many(self, indices: Sequence[int]) -> list[Mapping[str, Any]]:
    indices = [int(i) for i in indices]
    if not indices:
      return []
    records = self._records.__getitems__(indices) if self._batched else [self._records[i] for i in indices]
    return [self._decode(r) for r in records]


_LOCAL_FORMATS = (".jsonl", ".tsv", ".csv")


class _Rows:
  """Rows of a JSONL file read on demand through a byte-offset index (big files stay on disk); the
  line number of each row is kept so that a bad row's error names its line."""

  scannable = True

  def __init__(self, path: str):
    self.path = path
    starts, ends, lines, pos = [], [], [], 0
    with open(path, "rb") as f:
      for lineno, line in enumerate(f, start=1):
        if line.strip():
          starts.append(pos)
          ends.append(pos + len(line))
          lines.append(lineno)
        pos += len(line)
    self._starts, self._ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    self._lines = np.asarray(lines, np.int64)
    self._file = None

  def __len__(self) -> int:
    return len(self._starts)

  def where(self, index: int) -> str:
    return f"{self.path} line {int(self._lines[index])}"

  def __getitem__(self, index: int) -> Mapping[str, Any]:
    if self._file is None:
      self._file = open(self.path, "rb")
    self._file.seek(int(self._starts[index]))
    raw = self._file.read(int(self._ends[index] - self._starts[index]))
    try:
      row = json.loads(raw)
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
      raise pp.InvalidRow(None, f"is not valid JSON ({e})", "one JSON object per line",
                          self.where(index)) from e
    if not isinstance(row, dict):
      raise pp.InvalidRow(None, f"is a JSON {type(row).__name__}, not an object", "one JSON object per line",
                          self.where(index))
    return row


class _TableRows:
  """Rows of a TSV/CSV file with a header row, as dicts; keeps each row's line (the header is line 1)."""

  scannable = True

  def __init__(self, path: str):
    self.path = path
    self._rows: list[list[str]] = []
    lines = []
    try:
      with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t" if path.endswith(".tsv") else ",")
        self.columns: list[str] = next(reader, [])
        start = reader.line_num + 1
        for row in reader:
          if row:  # blank lines are skipped
            self._rows.append(row)
            lines.append(start)
          start = reader.line_num + 1
    except (UnicodeDecodeError, csv.Error) as e:
      raise errors.InputDataError(f"{path} cannot be read as {'TSV' if path.endswith('.tsv') else 'CSV'} "
                                  f"(UTF-8, a header row, one example per row): {e}") from e
    self._lines = np.asarray(lines, np.int64)

  def __len__(self) -> int:
    return len(self._rows)

  def where(self, index: int) -> str:
    return f"{self.path} line {int(self._lines[index])}"

  def __getitem__(self, index: int) -> Mapping[str, Any]:
    row = self._rows[index]
    if len(row) != len(self.columns):
      raise pp.InvalidRow(None, f"has {len(row)} values but the header names {len(self.columns)} columns "
                          f"{self.columns} (a stray delimiter or an unclosed quote?)", where=self.where(index))
    return dict(zip(self.columns, row))


@dataclasses.dataclass(frozen=True)
class LocalFileSource:
  """`<data_dir>/<directory>/<split>.jsonl|.tsv|.csv`; `fields` documents (and checks) the columns.

  JSONL: one JSON object per line. TSV/CSV: a header row naming the columns, one example per row.
  """

  directory: str
  fields: tuple[tuple[str, str], ...]  # (column, description) pairs, e.g. ("label", "0 or 1")

  @property
  def name(self) -> str:
    return f"local:{self.directory}"

  def describe(self) -> str:
    cols = ", ".join(f"{k!r} ({d})" for k, d in self.fields)
    return f"one example per line/row with fields {cols}"

  def path(self, split: str, data_dir: Optional[str] = None) -> str:
    root = os.path.join(local_data_dir(self.directory, data_dir), self.directory)
    for ext in _LOCAL_FORMATS:
      candidate = os.path.join(root, split + ext)
      if os.path.exists(candidate):
        return candidate
    available = sorted(os.listdir(root)) if os.path.isdir(root) else []
    raise DataNotFoundError(
        f"No local file for split {split!r} of {self.directory!r}: expected {os.path.join(root, split)}"
        f"{{{','.join(_LOCAL_FORMATS)}}} ({self.describe()}). "
        + (f"Files in {root}: {available}. " if available else f"{root} does not exist or is empty. ")
        + "Pass data_dir=DIR (files under DIR/" + self.directory + "/), or set $SPOT_JAX_DATA_DIR.")

  def open(self, split: str, data_dir: Optional[str] = None) -> RandomAccess:
    """The split's rows; a file whose header (or first JSON row) lacks a field is refused here, a
    single bad row later with its line (see `pipeline`)."""
    path = self.path(split, data_dir)
    rows: Any = _Rows(path) if path.endswith(".jsonl") else _TableRows(path)
    if not len(rows):
      return rows
    if isinstance(rows, _TableRows):
      where, present = f"{path} line 1 (the header)", rows.columns
    else:
      try:
        where, present = f"{path}: first example", rows[0]
      except pp.InvalidRow:
        return rows  # the first line is not JSON: reported with the other bad rows when the split is read
    missing = [k for k, _ in self.fields if k not in present]
    if missing:
      raise errors.InputDataError(f"{where} lacks fields {missing}; expected {self.describe()}. "
                                  f"It has {sorted(present)}.")
    return rows

  def expected(self, column: Optional[str]) -> str:
    """The description of a column ('0 = negative, 1 = positive'), for error messages."""
    return dict(self.fields).get(column, "") if column else ""


@dataclasses.dataclass(frozen=True)
class InMemorySource:
  """Examples produced by `make(split)` (called once per open): tests and generated data."""

  name: str
  make: Callable[[str], Sequence[Mapping[str, Any]]]

  def open(self, split: str, data_dir: Optional[str] = None) -> RandomAccess:
    del data_dir
    return list(self.make(split))


# ----------------------------------------------------------------------------- metrics
# Local definitions; `_metric_fn` prefers `spot_jax.metrics` when it provides the same function,
# so switching to the shared implementation is one place.


def _accuracy(targets: list, predictions: list) -> float:
  return 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)])) if targets else 0.0


def _f1_binary(targets: list, predictions: list) -> float:
  t, p = np.asarray(targets) == 1, np.asarray(predictions) == 1
  tp = float(np.sum(t & p))
  denom = float(np.sum(t) + np.sum(p))
  return 100.0 * 2 * tp / denom if denom else 0.0


def _f1_macro(targets: list, predictions: list) -> float:
  """Mean F1 over the classes seen in targets or predictions (-1, 'not a label word', is no class)."""
  labels = sorted(set(targets) | (set(predictions) - {-1}))
  scores = [_f1_binary([int(t == c) for t in targets], [int(p == c) for p in predictions]) for c in labels]
  return float(np.mean(scores)) if scores else 0.0


def _matthews_corrcoef(targets: list, predictions: list) -> float:
  from sklearn.metrics import matthews_corrcoef
  return 100.0 * float(matthews_corrcoef(targets, predictions))


def _correlation(kind: str, targets: list, predictions: list) -> float:
  import scipy.stats
  t, p = np.asarray(targets, np.float64), np.nan_to_num(np.asarray(predictions, np.float64))
  if len(t) < 2 or np.std(t) == 0 or np.std(p) == 0:
    return 0.0
  fn = scipy.stats.pearsonr if kind == "pearson" else scipy.stats.spearmanr
  return 100.0 * float(fn(t, p)[0])


def normalize_answer(text: str) -> str:
  """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def _token_f1(target: str, prediction: str) -> float:
  t, p = normalize_answer(target).split(), normalize_answer(prediction).split()
  common = sum((Counter(t) & Counter(p)).values())
  if not t or not p:
    return float(t == p)
  if common == 0:
    return 0.0
  precision, recall = common / len(p), common / len(t)
  return 2 * precision * recall / (precision + recall)


def _squad_em_f1(targets: list[list[str]], predictions: list[str]) -> dict[str, float]:
  em = [max(normalize_answer(a) == normalize_answer(p) for a in answers) for answers, p in zip(targets, predictions)]
  f1 = [max(_token_f1(a, p) for a in answers) for answers, p in zip(targets, predictions)]
  return {"em": 100.0 * float(np.mean(em)) if em else 0.0, "f1": 100.0 * float(np.mean(f1)) if f1 else 0.0}


def _multirc_f1a_em(targets: list[dict], predictions: list[dict]) -> dict[str, float]:
  """F1 over all answer options (F1a) and per-question exact match (EM), as SuperGLUE."""
  t = [x["value"] for x in targets]
  p = [x["value"] for x in predictions]
  groups: dict[Any, bool] = {}
  for tgt, pred in zip(targets, predictions):
    groups[tgt["group"]] = groups.get(tgt["group"], True) and tgt["value"] == pred["value"]
  em = 100.0 * float(np.mean(list(groups.values()))) if groups else 0.0
  return {"f1a": _f1_binary(t, p), "em": em}


_LOCAL_METRICS: dict[str, Callable[[list, list], Any]] = {
    "accuracy": _accuracy,
    "f1_binary": _f1_binary,
    "f1_macro": _f1_macro,
    "matthews_corrcoef": _matthews_corrcoef,
    "pearson": lambda t, p: _correlation("pearson", t, p),
    "spearman": lambda t, p: _correlation("spearman", t, p),
    "squad_em_f1": _squad_em_f1,
    "multirc_f1a_em": _multirc_f1a_em,
    "record_em_f1": _squad_em_f1,  # max over answers, same normalization
}

# metric name in a Task -> (function name, key(s) of its result). Dict-valued functions are
# normalised to the keys below ('em', 'f1', 'f1a') whatever spelling the implementation uses.
_METRIC_SPECS: dict[str, str] = {
    "accuracy": "accuracy", "f1": "f1_binary", "f1_macro": "f1_macro", "mcc": "matthews_corrcoef",
    "pearson": "pearson", "spearman": "spearman", "squad": "squad_em_f1", "multirc": "multirc_f1a_em",
    "record": "record_em_f1",
}


def _metric_fn(fn_name: str) -> Callable[[list, list], Any]:
  try:
    from spot_jax import metrics as shared  # written concurrently; same definitions
  except ImportError:
    shared = None
  return getattr(shared, fn_name, None) or _LOCAL_METRICS[fn_name]


def _normalise_result(metric: str, value: Any) -> dict[str, float]:
  if not isinstance(value, Mapping):
    return {metric: float(value)}
  out = {}
  for k, v in value.items():
    key = k.lower()
    if key in ("em", "exact_match", "exact"):
      key = "em"
    elif key in ("f1a", "f1_a"):
      key = "f1a"
    elif key.startswith("f1"):
      key = "f1"
    out[key] = float(v)
  return out


def compute_metrics(metric_names: Sequence[str], targets: list, predictions: list) -> dict[str, float]:
  if len(targets) != len(predictions):
    raise ValueError(f"Got {len(targets)} targets but {len(predictions)} predictions; they must pair up.")
  out: dict[str, float] = {}
  for m in metric_names:
    gold = targets
    if m in ("squad", "record"):  # answer metrics take a list of gold answers per example
      gold = [[t] if isinstance(t, str) else list(t) for t in targets]
    out.update(_normalise_result(m, _metric_fn(_METRIC_SPECS[m])(gold, predictions)))
  return out


# ----------------------------------------------------------------------------- postprocessors
# Signature: fn(text, example, is_target, label_words) -> value the metrics compare.


def _pp_label(text, example, is_target, label_words):
  del example, is_target
  text = text.strip()
  return label_words.index(text) if text in label_words else -1


def _pp_float(text, example, is_target, label_words):
  del example, is_target, label_words
  try:
    return float(text.strip())
  except ValueError:
    return math.nan


def _pp_text(text, example, is_target, label_words):
  del example, is_target, label_words
  return text.strip()


def _pp_squad(text, example, is_target, label_words):
  del label_words
  if is_target and example is not None:
    return [pp.as_text(a) for a in pp.as_text_list(example["answers"]["text"])] or [text]
  return [text] if is_target else text.strip()


def _pp_drop(text, example, is_target, label_words):
  del label_words
  if is_target and example is not None:
    answers = [pp.clean(pp.as_text(example["answer"]))] + [pp.clean(a) for a in pp.as_text_list(
        example.get("validated_answers"))]
    return list(dict.fromkeys(a for a in answers if a)) or [text]
  return [text] if is_target else text.strip()


def _pp_record(text, example, is_target, label_words):
  del label_words
  if is_target and example is not None:
    return [pp.clean(a) for a in pp.as_text_list(example["answers"])] or [text]
  return [text] if is_target else text.strip()


def _pp_multirc(text, example, is_target, label_words):
  value = _pp_label(text, example, is_target, label_words)
  group = None
  if example is not None:
    idx = example.get("idx", {})
    group = (pp.as_int(idx.get("paragraph")), pp.as_int(idx.get("question"))) if isinstance(idx, Mapping) else None
  return {"group": group, "value": value}


POSTPROCESSORS = {"label": _pp_label, "float": _pp_float, "text": _pp_text, "squad": _pp_squad,
                  "drop": _pp_drop, "record": _pp_record, "multirc": _pp_multirc}


# ----------------------------------------------------------------------------- the task


@dataclasses.dataclass(frozen=True)
class Task:
  """One text-to-text task.

  `metric_names` pick from: accuracy, f1 (binary, positive = label 1), f1_macro, mcc, pearson,
  spearman, squad (em, f1), multirc (f1a, em), record (em, f1). `score_keys` are the metric keys
  averaged into the task's one validation score (0-100), e.g. ('f1', 'accuracy') for MRPC.
  `postprocessor` is one of `POSTPROCESSORS` ('label' maps a label word to its index, -1 if the
  text is not a label word).
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
    unknown = [m for m in self.metric_names if m not in _METRIC_SPECS]
    if unknown:
      raise ValueError(f"Task {self.name!r}: unknown metrics {unknown}; choose from {sorted(_METRIC_SPECS)}.")
    if self.postprocessor not in POSTPROCESSORS:
      raise ValueError(f"Task {self.name!r}: unknown postprocessor {self.postprocessor!r}; "
                       f"choose from {sorted(POSTPROCESSORS)}.")
    if self.postprocessor in ("label", "multirc") and not self.label_words:
      raise ValueError(f"Task {self.name!r}: postprocessor {self.postprocessor!r} needs label_words.")

  def preprocess(self, example: Mapping[str, Any], ctx: pp.Context = pp.Context()) -> list[dict]:
    return self.preprocessor(example, ctx)

  def postprocess(self, text: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> Any:
    """Decoded text (or the target string, with `is_target=True`) -> what the metrics compare."""
    return POSTPROCESSORS[self.postprocessor](text, example, is_target, self.label_words or ())

  def metrics(self, targets: list, predictions: list) -> dict[str, float]:
    """Postprocessed targets and predictions -> {metric: value in 0-100}."""
    return compute_metrics(self.metric_names, targets, predictions)

  def score(self, metrics: Mapping[str, float]) -> float:
    """The one validation number (0-100): the mean of `score_keys` (papers' convention)."""
    keys = self.score_keys or tuple(metrics)
    missing = [k for k in keys if k not in metrics]
    if missing:
      raise KeyError(f"Task {self.name!r} scores {keys} but the metrics lack {missing}; got {sorted(metrics)}.")
    return float(np.mean([metrics[k] for k in keys]))

  def evaluate(self, eval_examples: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> dict[str, float]:
    """`load_eval_examples` output + decoded strings -> metrics with 'score' added."""
    targets = [self.postprocess(e["targets"], e.get("example"), is_target=True) for e in eval_examples]
    preds = [self.postprocess(p, e.get("example")) for p, e in zip(predictions, eval_examples)]
    result = self.metrics(targets, preds)
    result["score"] = self.score(result)
    return result


# ----------------------------------------------------------------------------- registry

_TASKS: dict[str, Task] = {}


def register_task(task: Task, overwrite: bool = False) -> Task:
  if task.name in _TASKS and not overwrite and _TASKS[task.name] != task:
    raise ValueError(f"Task {task.name!r} is already registered; pick another name or pass overwrite=True.")
  _TASKS[task.name] = task
  return task


def _ensure_synthetic() -> None:
  from spot_jax.data import synthetic  # noqa: F401  (registers synth_* tasks on import)


def get_task(name: str) -> Task:
  if name not in _TASKS:
    _ensure_synthetic()
  if name not in _TASKS:
    close = difflib.get_close_matches(name, list(_TASKS), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ValueError(f"Unknown task {name!r}{hint}. Registered tasks: {', '.join(sorted(_TASKS))}. "
                     "Add your own with spot_jax.data.tasks.register_task.")
  return _TASKS[name]


def list_tasks() -> list[str]:
  _ensure_synthetic()
  return sorted(_TASKS)


# ----------------------------------------------------------------------------- built-in tasks


def _tfds(*datasets: str, **split_map: str) -> TfdsSource:
  return TfdsSource(tuple(datasets), tuple(split_map.items()))


def _classification(name: str, source, prefix: str, fields, label_words, metric_names=("accuracy",),
                    score_keys=None, **kw) -> Task:
  return register_task(Task(name, source, pp.classification(prefix, fields, label_words), metric_names,
                            score_keys, tuple(label_words), "label", **kw))


def _register_glue() -> None:
  g = "glue/"
  _classification("cola", _tfds(g + "cola"), "cola", [("sentence", "sentence")],
                  ("unacceptable", "acceptable"), ("mcc",), description="GLUE CoLA; score = MCC.")
  _classification("sst2", _tfds(g + "sst2"), "sst2", [("sentence", "sentence")], ("negative", "positive"))
  _classification("mrpc", _tfds(g + "mrpc"), "mrpc", [("sentence1", "sentence1"), ("sentence2", "sentence2")],
                  ("not_equivalent", "equivalent"), ("f1", "accuracy"),
                  description="GLUE MRPC; score = mean of F1 and accuracy.")
  _classification("qqp", _tfds(g + "qqp"), "qqp", [("question1", "question1"), ("question2", "question2")],
                  ("not_duplicate", "duplicate"), ("f1", "accuracy"),
                  description="GLUE QQP; score = mean of F1 and accuracy.")
  register_task(Task("stsb", _tfds(g + "stsb"),
                     pp.regression("stsb", [("sentence1", "sentence1"), ("sentence2", "sentence2")]),
                     ("pearson", "spearman"), postprocessor="float",
                     description="GLUE STS-B as text regression (targets rounded to 0.2, as T5); "
                                 "score = mean of Pearson and Spearman."))
  mnli_fields = [("premise", "premise"), ("hypothesis", "hypothesis")]
  mnli_words = ("entailment", "neutral", "contradiction")
  _classification("mnli", _tfds(g + "mnli"), "mnli", mnli_fields, mnli_words, eval_split="validation_matched",
                  description="GLUE MNLI; evaluated on validation_matched (see mnli_mismatched).")
  _classification("mnli_mismatched", _tfds(g + "mnli"), "mnli", mnli_fields, mnli_words,
                  eval_split="validation_mismatched", description="GLUE MNLI evaluated on validation_mismatched.")
  _classification("qnli", _tfds(g + "qnli"), "qnli", [("question", "question"), ("sentence", "sentence")],
                  ("entailment", "not_entailment"))
  _classification("rte", _tfds(g + "rte"), "rte", [("sentence1", "sentence1"), ("sentence2", "sentence2")],
                  ("entailment", "not_entailment"))
  _classification("wnli", _tfds(g + "wnli"), "wnli", [("sentence1", "sentence1"), ("sentence2", "sentence2")],
                  ("not_entailment", "entailment"))


def _register_super_glue() -> None:
  s = "super_glue/"
  tf = ("False", "True")
  _classification("boolq", _tfds(s + "boolq"), "boolq", [("question", "question"), ("passage", "passage")], tf)
  _classification("cb", _tfds(s + "cb"), "cb", [("hypothesis", "hypothesis"), ("premise", "premise")],
                  ("entailment", "contradiction", "neutral"), ("f1_macro", "accuracy"),
                  description="SuperGLUE CB; score = mean of macro-F1 and accuracy.")
  register_task(Task("copa", _tfds(s + "copa"), pp.copa(), label_words=("choice1", "choice2"),
                     postprocessor="label"))
  register_task(Task("multirc", _tfds(s + "multirc"), pp.multirc(), ("multirc",), ("f1a", "em"), tf, "multirc",
                     description="SuperGLUE MultiRC; score = mean of F1a and question-level EM."))
  register_task(Task("record", _tfds(s + "record"), pp.record(), ("record",), ("f1", "em"), None, "record",
                     description="SuperGLUE ReCoRD; score = mean of max-over-answers F1 and EM."))
  _classification("super_glue_rte", _tfds(s + "rte"), "rte", [("premise", "premise"), ("hypothesis", "hypothesis")],
                  ("entailment", "not_entailment"), description="SuperGLUE RTE (same data as GLUE rte).")
  _classification("wic", _tfds(s + "wic"), "wic",
                  [("sentence1", "sentence1"), ("sentence2", "sentence2"), ("word", "word")], tf)
  register_task(Task("wsc", _tfds(s + "wsc.fixed"), pp.wsc(), label_words=tf, postprocessor="label",
                     description="SuperGLUE WSC (wsc.fixed), as binary classification."))


def _register_spot() -> None:
  """The 26 tasks of the SPoT transferability study that GLUE/SuperGLUE do not already give."""
  register_task(Task("c4", _tfds("c4/en"), pp.prefix_lm(), ("squad",), ("f1",),
                     description="C4 (en) with the prefix-LM objective: a random split point; inputs = "
                                 "prefix, targets = continuation. Metric = token F1 of the continuation."))
  _classification("docnli", _tfds("doc_nli"), "docnli", [("hypothesis", "hypothesis"), ("premise", "premise")],
                  ("not_entailment", "entailment"))
  _classification("yelp_polarity", _tfds("yelp_polarity_reviews"), "yelp_polarity", [("text", "review")],
                  ("negative", "positive"), eval_split="test",
                  description="Yelp-2; TFDS has no validation split, so eval = test.")
  register_task(Task("squad", _tfds("squad/v1.1"), pp.squad(), ("squad",), ("em", "f1"), None, "squad",
                     description="SQuAD v1.1; score = mean of EM and F1 (max over answers)."))
  register_task(Task("drop", _tfds("drop", validation="dev"), pp.drop(), ("squad",), ("em", "f1"), None, "drop",
                     description="DROP; EM/F1 with SQuAD normalization over answer + validated answers "
                                 "(not DROP's number-aware F1)."))
  _classification("winogrande", _tfds("winogrande", train="train_xl"), "winogrande",
                  [("sentence", "sentence"), ("option1", "option1"), ("option2", "option2")],
                  ("option1", "option2"), description="WinoGrande (train_xl).")
  letters = pp.LETTERS[:4]
  register_task(Task("hellaswag", _tfds("hellaswag"), pp.multiple_choice(
      "hellaswag", [("activity_label", "activity"), ("context", "context")],
      lambda ex: pp.as_text_list(ex["endings"]), lambda ex: pp.field(ex, "label"), 4),
      label_words=letters, postprocessor="label"))
  register_task(Task("cosmos_qa", _tfds("cosmos_qa"), pp.multiple_choice(
      "cosmos_qa", [("question", "question"), ("context", "context")],
      lambda ex: [pp.as_text(ex[f"answer{i}"]) for i in range(4)], lambda ex: pp.field(ex, "label"), 4),
      label_words=letters, postprocessor="label"))
  register_task(Task("race", _tfds("race/high", "race/middle", validation="dev"), pp.race(),
                     label_words=letters, postprocessor="label",
                     description="RACE (high + middle); one example per question."))
  # Extra NLI / commonsense sources for the paper's mixtures.
  _classification("snli", _tfds("snli"), "snli", [("premise", "premise"), ("hypothesis", "hypothesis")],
                  ("entailment", "neutral", "contradiction"))
  _classification("anli", _tfds("anli/r1", "anli/r2", "anli/r3"), "anli",
                  [("hypothesis", "hypothesis"), ("context", "premise")], ("entailment", "neutral", "contradiction"),
                  description="ANLI rounds 1-3 concatenated.")
  _classification("piqa", _tfds("piqa"), "piqa", [("goal", "goal"), ("sol1", "sol1"), ("sol2", "sol2")],
                  ("sol1", "sol2"))
  # Not in TFDS: local files.
  register_task(Task(
      "cxc", LocalFileSource("cxc", (("sentence1", "str"), ("sentence2", "str"), ("score", "float in [0, 5]"))),
      pp.regression("cxc", [("sentence1", "sentence1"), ("sentence2", "sentence2")], label_key="score"),
      ("pearson", "spearman"), postprocessor="float",
      description="CxC (Crisscrossed Captions) semantic similarity, text regression like STS-B. Local JSONL: "
                  "$SPOT_JAX_DATA_DIR/cxc/{train,validation}.jsonl with fields sentence1, sentence2, "
                  "score (float 0-5)."))
  _classification("cr", LocalFileSource("cr", (("sentence", "str"), ("label", "0 = negative, 1 = positive"))),
                  "cr", [("sentence", "sentence")], ("negative", "positive"),
                  description="CR (customer reviews) sentiment. Local JSONL: "
                              "$SPOT_JAX_DATA_DIR/cr/{train,validation}.jsonl with fields sentence, label (0/1).")


GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "mnli_mismatched", "qnli", "rte", "wnli")
SUPER_GLUE_TASKS = ("boolq", "cb", "copa", "multirc", "record", "super_glue_rte", "wic", "wsc")
SPOT_SOURCE_TASKS = ("c4", "docnli", "yelp_polarity", "mnli", "qqp", "qnli", "record", "cxc", "squad", "drop",
                     "sst2", "winogrande", "hellaswag", "multirc", "cosmos_qa", "race")
SPOT_TARGET_TASKS = ("boolq", "cola", "stsb", "wic", "cr", "mrpc", "rte", "wsc", "copa", "cb")

_register_glue()
_register_super_glue()
_register_spot()
