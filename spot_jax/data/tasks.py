"""Task registry: where a task's data comes from, how it becomes text-to-text, how it is scored.

Why this exists: SPoT trains prompts on dozens of tasks and compares them on one scale, so every
task must answer the same questions the same way — which examples (a TFDS dataset or local files),
which text format (`preprocessors`), which label words (rank classification, class-label prompt
init), how a decoded string becomes a prediction (`postprocess`), which metrics, and the ONE
validation number (`score`, 0-100) used for best-checkpoint selection and relative error reduction.
A small seqio-like registry answers them without seqio's dependencies.

The GLUE/SuperGLUE/SQuAD tasks are T5's (`T5_TASK_NAMES`: glue_<task>_v002, super_glue_<task>_v102,
WSC simple, squad_v010_allanswers): the same inputs and targets byte for byte (`preprocessors`), T5's
postprocessors (`postprocessors`) and T5's metrics (`spot_jax.metrics`, `METRICS`), checked against
t5 itself by tests/test_t5_formats.py. Other formats stay available only as opt-in variant tasks
(`boolq_question_first`, `wsc_binary`). TFDS versions are pinned as the references pin them
(`TFDS_VERSIONS`; `set_tfds_version` changes one task's).

The other members of generic SPoT's Table-1 mixtures (NLI, sentiment, MRQA, RAINBOW, WMT,
summarization, GEM) are described in `spot_tasks`, in their references' formats (prompt-tuning's SPoT
tasks, T5's WMT tasks), and registered here by `_register_table_1`.

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
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np

from spot_jax import errors
from spot_jax.data import postprocessors as post
from spot_jax.data import preprocessors as pp
from spot_jax.data import spot_tasks


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
  return data_dir or _DATA_DIRS.get(dataset.split(":")[0].split("/")[0]) or os.environ.get("TFDS_DATA_DIR") or None


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
  """A TFDS dataset (or several configs read one after another) through `tfds.data_source`.

  Each dataset is a TFDS name as `tfds.data_source` takes it, `name[/config][:version]`. The catalog
  pins versions as the references do (`TFDS_VERSIONS`); `with_version` / `set_tfds_version` change
  one task's. TFDS reads any version that is prepared in the data dir, but builds only the versions
  its code defines.
  """

  datasets: tuple[str, ...]
  split_map: tuple[tuple[str, str], ...] = ()  # task split name -> TFDS split name, e.g. dev

  @property
  def name(self) -> str:
    return "+".join(self.datasets)

  @property
  def versions(self) -> tuple[Optional[str], ...]:
    """The pinned version of each dataset (None: TFDS's default for the installed code)."""
    return tuple(d.split(":", 1)[1] if ":" in d else None for d in self.datasets)

  def with_version(self, version: Optional[str]) -> "TfdsSource":
    """The same datasets at `version` (None: unpinned, TFDS's default)."""
    bases = [d.split(":", 1)[0] for d in self.datasets]
    return dataclasses.replace(self, datasets=tuple(b if version is None else f"{b}:{version}" for b in bases))

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
        builder = _tfds_builder(tfds, dataset, data_dir)
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
    except AssertionError as e:  # TFDS's way to say the code cannot make that version
      raise _version_error(dataset, data_dir, e) or e
    except (ValueError, KeyError) as e:
      if "split" in str(e).lower():
        raise DataNotFoundError(f"TFDS dataset {dataset!r} has no split {split!r}: {e}") from e
      raise _version_error(dataset, data_dir, e) or e


def _version_error(dataset: str, data_dir: Optional[str], e: Exception) -> Optional[DataNotFoundError]:
  """The error for a pinned version that is neither prepared nor buildable, else None."""
  if ":" not in dataset or "version" not in str(e).lower():
    return None
  error = DataNotFoundError(
      f"TFDS dataset {dataset!r} is not prepared in data_dir {data_dir or '(TFDS default)'!r}, and the "
      f"installed TFDS cannot build that version ({e}). Copy a prepared copy of that version there, or "
      "choose another version for the task: spot_jax.data.tasks.set_tfds_version(TASK, VERSION) "
      "(scores may then differ from the references').")
  error.__cause__ = e
  return error


def _tfds_builder(tfds, dataset: str, data_dir: Optional[str]):
  """`tfds.builder`, or a DataNotFoundError when a pinned version is neither prepared nor buildable."""
  try:
    return tfds.builder(dataset, data_dir=data_dir)
  except (AssertionError, ValueError) as e:
    raise _version_error(dataset, data_dir, e) or e


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
# One metrics module: `spot_jax.metrics` (T5's functions with T5's semantics). A task names its metrics
# here; each name gives, for a task, a function (targets, predictions) -> {key: value in 0-100}.


def _metric(name: str, *args_from_task: Callable[["Task"], Any]) -> Callable[["Task"], Callable]:
  def factory(task: "Task") -> Callable:
    from spot_jax import metrics  # pylint: disable=import-outside-toplevel
    fn = getattr(metrics, name)
    return fn(*(a(task) for a in args_from_task)) if args_from_task else fn
  return factory


def _group_all_match(task: "Task") -> Callable:
  from spot_jax import metrics  # pylint: disable=import-outside-toplevel
  return metrics.mean_group_metric(metrics.all_match)


def _deduplicate_squad(task: "Task") -> Callable:
  from spot_jax import metrics  # pylint: disable=import-outside-toplevel
  return metrics.deduplicate_metric(metrics.squad)


# name -> factory(task) -> metric function. T5's GLUE_METRICS / SUPERGLUE_METRICS use: accuracy,
# matthews_corrcoef (CoLA), f1_score_with_invalid + accuracy (MRPC, QQP), pearson + spearman (STS-B),
# mean_multiclass_f1(num_classes = number of label words) + accuracy (CB), multirc_f1_over_all_answers +
# mean_group_metric(all_match) (MultiRC), deduplicate_metric(squad) (ReCoRD), squad (SQuAD).
METRICS: dict[str, Callable[["Task"], Callable]] = {
    "accuracy": _metric("accuracy"),
    "matthews_corrcoef": _metric("matthews_corrcoef"),
    "f1_score_with_invalid": _metric("f1_score_with_invalid"),
    "mean_multiclass_f1": _metric("mean_multiclass_f1", lambda task: len(task.label_words or ())),
    "pearson_corrcoef": _metric("pearson_corrcoef"),
    "spearman_corrcoef": _metric("spearman_corrcoef"),
    "squad": _metric("squad"),
    "multirc_f1_over_all_answers": _metric("multirc_f1_over_all_answers"),
    "mean_group_all_match": _group_all_match,
    "deduplicate_squad": _deduplicate_squad,
    "sequence_accuracy": _metric("sequence_accuracy"),
    "bleu": _metric("bleu"),  # T5's for WMT and GEM (sacrebleu)
    "rouge": _metric("rouge"),  # T5's for summarization and GEM (rouge-score)
}
# Earlier spellings, still accepted in `Task.metric_names`.
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "mcc": ("matthews_corrcoef",), "f1": ("f1_score_with_invalid",), "f1_macro": ("mean_multiclass_f1",),
    "pearson": ("pearson_corrcoef",), "spearman": ("spearman_corrcoef",),
    "multirc": ("multirc_f1_over_all_answers", "mean_group_all_match"), "record": ("deduplicate_squad",),
}


def _metric_names(names: Sequence[str]) -> tuple[str, ...]:
  return tuple(dict.fromkeys(m for n in names for m in METRIC_ALIASES.get(n, (n,))))


# ----------------------------------------------------------------------------- postprocessors
# Signature: fn(text, example, is_target, label_words) -> value the metrics compare. `example` is the
# evaluation example as T5 gives it to its postprocessors: the preprocessor's output fields plus
# `targets_pretokenized`. The functions are T5's (`spot_jax.data.postprocessors`).

POSTPROCESSORS: dict[str, Callable[[str, Optional[Mapping[str, Any]], bool, Sequence[str]], Any]] = {
    "label": lambda text, example, is_target, words: post.string_label_to_class_id(text, words),
    "float": lambda text, example, is_target, words: post.string_to_float(text),
    "text": lambda text, example, is_target, words: post.identity(text),
    "qa": lambda text, example, is_target, words: post.qa(text, example, is_target),
    "record": lambda text, example, is_target, words: post.record(text, example, is_target),
    "multirc": lambda text, example, is_target, words: post.multirc(text, example, is_target),
    "wsc_simple": lambda text, example, is_target, words: post.wsc_simple(text, example, is_target),
}
POSTPROCESSORS["squad"] = POSTPROCESSORS["drop"] = POSTPROCESSORS["qa"]  # earlier spellings

# Fields of a `load_eval_examples` entry that are spot_jax's, not the preprocessor's output.
_PIPELINE_FIELDS = ("example", "index", "encoder_input_tokens")


def t5_example(eval_example: Mapping[str, Any]) -> dict:
  """A `load_eval_examples` entry as T5 hands an example to its postprocessor: the preprocessor's
  output fields plus `targets_pretokenized`."""
  out = {k: v for k, v in eval_example.items() if k not in _PIPELINE_FIELDS}
  out["targets_pretokenized"] = eval_example["targets"]
  return out


# ----------------------------------------------------------------------------- the task


@dataclasses.dataclass(frozen=True)
class Task:
  """One text-to-text task.

  `metric_names` pick from `METRICS` (T5's metric functions; `METRIC_ALIASES` are accepted too).
  `score_keys` are the metric keys averaged into the task's one validation score (0-100); by default
  every key the metrics return, which is T5's convention (MRPC: mean of F1 and accuracy; CoLA: MCC).
  A NaN metric (pearson of a constant prediction) makes the score NaN, as T5 reports it.
  `postprocessor` is one of `POSTPROCESSORS` ('label' maps an exact label word to its index, -1 if
  the text is not one: an invalid output is wrong).
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
    unknown = [m for m in _metric_names(self.metric_names) if m not in METRICS]
    if unknown:
      raise ValueError(f"Task {self.name!r}: unknown metrics {unknown}; choose from {sorted(METRICS)} "
                       f"(or {sorted(METRIC_ALIASES)}).")
    if self.postprocessor not in POSTPROCESSORS:
      raise ValueError(f"Task {self.name!r}: unknown postprocessor {self.postprocessor!r}; "
                       f"choose from {sorted(POSTPROCESSORS)}.")
    if self.postprocessor == "label" and not self.label_words:
      raise ValueError(f"Task {self.name!r}: postprocessor {self.postprocessor!r} needs label_words.")
    if "mean_multiclass_f1" in _metric_names(self.metric_names) and not self.label_words:
      raise ValueError(f"Task {self.name!r}: metric 'mean_multiclass_f1' needs label_words (the classes).")

  def preprocess(self, example: Mapping[str, Any], ctx: pp.Context = pp.Context()) -> list[dict]:
    return self.preprocessor(example, ctx)

  def postprocess(self, text: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> Any:
    """Decoded text (or the target string, with `is_target=True`) -> what the metrics compare.
    `example` is as T5's (see `t5_example`)."""
    return POSTPROCESSORS[self.postprocessor](text, example, is_target, self.label_words or ())

  def metrics(self, targets: list, predictions: list) -> dict[str, float]:
    """Postprocessed targets and predictions -> {metric key: value in 0-100}, T5's keys
    ('accuracy', 'f1', 'matthews_corrcoef', 'pearson_corrcoef', 'em', 'exact_match', ...)."""
    if len(targets) != len(predictions):
      raise ValueError(f"Got {len(targets)} targets but {len(predictions)} predictions; they must pair up.")
    out: dict[str, float] = {}
    for name in _metric_names(self.metric_names):
      gold = targets
      if name == "squad":  # a single target string is one gold answer
        gold = [[t] if isinstance(t, str) else list(t) for t in targets]
      out.update({k: float(v) for k, v in METRICS[name](self)(gold, predictions).items()})
    return out

  def score(self, metrics: Mapping[str, float]) -> float:
    """The one validation number (0-100): the mean of `score_keys` (T5's and the papers' convention);
    NaN if a metric is NaN (or there are none)."""
    keys = self.score_keys or tuple(metrics)
    missing = [k for k in keys if k not in metrics]
    if missing:
      raise KeyError(f"Task {self.name!r} scores {keys} but the metrics lack {missing}; got {sorted(metrics)}.")
    values = [float(metrics[k]) for k in keys]
    return float(np.mean(values)) if values else math.nan

  def evaluate(self, eval_examples: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> dict[str, float]:
    """`load_eval_examples` output + decoded strings -> metrics with 'score' added. Targets and
    predictions go through the postprocessor as in T5 (`seqio`'s LegacyMetric): the target string
    with `is_target=True`, each prediction with the same example."""
    if len(predictions) != len(eval_examples):
      raise ValueError(f"Got {len(predictions)} predictions for {len(eval_examples)} examples.")
    examples = [t5_example(e) for e in eval_examples]
    targets = [self.postprocess(ex["targets_pretokenized"], ex, is_target=True) for ex in examples]
    preds = [self.postprocess(p, ex) for p, ex in zip(predictions, examples)]
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


def set_tfds_version(task_name: str, version: Optional[str]) -> Task:
  """Reads task `task_name` from another version of its TFDS dataset(s) (None: TFDS's default for
  the installed code) from now on; returns the re-registered task."""
  task = get_task(task_name)
  if not isinstance(task.source, TfdsSource):
    raise ValueError(f"Task {task_name!r} does not read TFDS (its source is {task.source!r}).")
  return register_task(dataclasses.replace(task, source=task.source.with_version(version)), overwrite=True)


# ----------------------------------------------------------------------------- built-in tasks

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
