"""Sources: where a task's raw examples come from, read by index.

Why this exists: a task names its data once (a TFDS dataset, local files, or examples built in
Python) and everything downstream reads it the same way. Sources are random-access (`len(source)`,
`source[i]`): that is what makes the pipeline's order deterministic, its per-host shards disjoint
and its position a couple of integers.
- `TfdsSource`: a prepared TFDS dataset. array_record (and parquet) datasets are read through
  `tfds.data_source`; TFRecord datasets (C4 and most of the catalog) through `data.tfrecord`, which
  indexes each file's record offsets on first use (4 bytes per record in memory). For very large
  TFRecord datasets converting is cheaper on memory:
  `tfds convert_format --root_data_dir=DATA_DIR --out_file_format=array_record`.
  TensorFlow Datasets is imported only when a split is opened.
- `LocalFileSource`: `<data_dir>/<dir>/<split>.jsonl` (or `.tsv` / `.csv` with a header row), one
  example per line. Use it for your own tasks (experiments/task_modules/my_tasks.py shows one), e.g.

      register_task(Task("my_task", LocalFileSource("my_task", (("inputs", "the text"), ("targets", "the answer"))),
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
import json
import os
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
  pins versions as the references do (`catalog.TFDS_VERSIONS`); `with_version` / `set_tfds_version` change
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
