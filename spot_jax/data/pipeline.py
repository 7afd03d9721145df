"""Input pipeline: task/mixture -> tokenized, fixed-length, per-host batches with a savable position.

Why this exists: the trainer needs an infinite stream of per-host numpy batches that is
(1) deterministic given a seed, (2) disjoint across JAX processes, and (3) restorable exactly from
a small JSON state stored in the checkpoint, so that a preempted run continues with the very
batches it would have seen. tf.data gives (1) and (2) but its position is not JSON and skipping is
O(steps); so this pipeline reads its sources by random access and computes the order:

  epoch e of a task = a keyed pseudo-random permutation of range(n) (a Feistel network with cycle
  walking: O(1) memory, so C4-sized sources are fine); host h of P takes global positions
  h, h+P, h+2P, ... of it. The position of a task is (epoch, pos, sub) — `sub` counts outputs
  already taken from a raw example that gave several (RACE questions, ReCoRD answers).

A mixture draws the task of every batch slot from its rates with an RNG keyed by (seed, host,
batch index), so the draw needs no state either. Tokenization is SentencePiece in one batched call
(formats that tokenize themselves, T5's token-level prefix-LM of C4, hand over `inputs_ids` /
`targets_ids` instead: preprocessors get the vocabulary and input length in their `Context`);
EOS (1) is appended after truncation, as T5's `append_eos_after_trim`; truncated examples are
counted (`BatchIterator.truncation`). A background thread prepares `prefetch` batches ahead while
the accelerator runs the step; `get_state()` is the position after the last batch *returned*, not
the last one prepared. An exception in that thread is raised by the `next()` that would have
returned the batch it was making (the same exception; the thread ends, `close()` never waits on it).

Bad rows: a row the task cannot use (a field missing or unparseable, a label outside the task's
label set: `preprocessors.InvalidRow`) is an `errors.InputDataError` naming the file and line (local
files) or the row index (TFDS, in-memory), the field and what was expected — never a silently
shrunken dataset. Local files are small, so every row is checked once when a split is opened and
the error counts all bad rows; with `skip_invalid_examples=True` they are left out and the count is
logged (a warning). Unlabelled rows (label -1, as in TFDS test splits) are dropped, as T5 does.

Batch (B = per-host batch size, S = input_length, T = target_length):
  encoder_input_tokens  [B, S] int32   input ids, EOS, then 0 padding
  decoder_input_tokens  [B, T] int32   targets shifted right, 0 as the start token
  decoder_target_tokens [B, T] int32   target ids, EOS, then 0 padding
  decoder_loss_weights  [B, T] float32 1 on real target tokens (incl. EOS), 0 on padding
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import weakref
import zlib
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from spot_jax import errors
from spot_jax.data import mixtures as mixtures_lib
from spot_jax.data import preprocessors as pp
from spot_jax.data import tasks as tasks_lib
from spot_jax.data.vocab import EOS_ID

_STATE_VERSION = 1
_CHUNK = 256  # positions whose source indices are computed at once
_READ_AHEAD = 256  # raw examples read per source call (TFDS batched reads cost ~1 ms per call)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_POLL_S = 0.05  # how often a waiting next() checks that the prefetch thread is still alive
_SKIP_HINT = ("Fix the data, or set config.data.skip_invalid_examples=True to skip such rows (the count is "
              "logged).")


# ----------------------------------------------------------------------------- keyed permutation


def _hash64(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
  x = x ^ (x >> np.uint64(30))
  x = x * np.uint64(0xBF58476D1CE4E5B9)
  x = x ^ (x >> np.uint64(27))
  x = x * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def permute(positions: np.ndarray, n: int, key: int, rounds: int = 4) -> np.ndarray:
  """Image of `positions` (ints in [0, n)) under a pseudo-random permutation of range(n) chosen by `key`.

  A balanced Feistel network on the smallest even-bit domain >= n, with cycle walking (re-apply
  until the value lands below n), is a bijection on range(n) and needs no table.
  """
  if n <= 1:
    return np.zeros_like(np.asarray(positions, np.int64))
  bits = max(2, int(n - 1).bit_length())
  bits += bits % 2
  half = np.uint64(bits // 2)
  mask = np.uint64((1 << (bits // 2)) - 1)
  keys = _hash64(np.arange(1, rounds + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                 ^ np.uint64(key & 0xFFFFFFFFFFFFFFFF))

  def feistel(x: np.ndarray) -> np.ndarray:
    left, right = x >> half, x & mask
    for k in keys:
      left, right = right, left ^ (_hash64(right ^ k) & mask)
    return (left << half) | right

  with np.errstate(over="ignore"):
    x = feistel(np.asarray(positions, np.uint64))
    out_of_range = x >= np.uint64(n)
    while np.any(out_of_range):
      x[out_of_range] = feistel(x[out_of_range])
      out_of_range = x >= np.uint64(n)
  return x.astype(np.int64)


def _key(*parts: Any) -> int:
  """Stable 64-bit key of ints and strings (independent of PYTHONHASHSEED)."""
  ints = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
  return pp.mix_hash(*ints)


# ----------------------------------------------------------------------------- bad rows


def _outputs(task: tasks_lib.Task, source: tasks_lib.RandomAccess, split: str, index: int, raw: Any,
             ctx: pp.Context) -> list[dict]:
  """`task.preprocess(raw)`; a row it cannot use raises `pp.InvalidRow` located at the row (file and
  line, or row index), whatever the preprocessor raised: KeyError, ValueError, TypeError and
  IndexError from a (user) preprocessor are how a bad row shows, so they become InvalidRow too."""
  if isinstance(raw, pp.InvalidRow):  # the source could not read it (see _TaskStream._read)
    raise raw.at(tasks_lib.row_location(source, index, task.name, split))
  try:
    return task.preprocess(raw, ctx)
  except pp.InvalidRow as e:
    where = tasks_lib.row_location(source, index, task.name, split)
    raise e.at(where, _expected(task, e.field)) from e
  except errors.InputDataError:
    raise
  except KeyError as e:
    key = e.args[0] if e.args else None
    where = tasks_lib.row_location(source, index, task.name, split)
    raise pp.InvalidRow(str(key), "is missing", _expected(task, key), where) from e
  except (ValueError, TypeError, IndexError) as e:
    where = tasks_lib.row_location(source, index, task.name, split)
    raise pp.InvalidRow(None, f"cannot be preprocessed by task {task.name!r} ({type(e).__name__}: {e})",
                        where=where) from e


def _expected(task: tasks_lib.Task, column: Any) -> str:
  expected = getattr(task.source, "expected", None)
  return expected(column) if expected is not None and isinstance(column, str) else ""


def _scan(task: tasks_lib.Task, source: tasks_lib.RandomAccess, split: str, training: bool, vocab=None,
          input_length: Optional[int] = None) -> tuple[list[int], Optional[pp.InvalidRow]]:
  """Indices of all rows the task cannot use, and the first one's error (a local file: every row)."""
  ctx = pp.Context(seed=0, training=training, vocab=vocab, input_length=input_length)
  bad: list[int] = []
  first = None
  for index in range(len(source)):
    try:
      _outputs(task, source, split, index, source[index], ctx)
    except pp.InvalidRow as e:
      bad.append(index)
      first = first or e
  return bad, first


def _report_invalid(task: tasks_lib.Task, source: tasks_lib.RandomAccess, split: str, bad: int, checked: int,
                    first: Optional[pp.InvalidRow], skip: bool) -> None:
  """Raise (default) or warn (`skip`) about `bad` unusable rows among `checked`."""
  if not bad:
    return
  location = tasks_lib.split_location(source, task.name, split)
  first_text = str(first)
  if first_text.startswith(location + " "):  # 'path line 12: ...' -> 'line 12: ...' after 'path: '
    first_text = first_text[len(location) + 1:]
  summary = f"{location}: {bad} of {checked} rows cannot be used by task {task.name!r}; the first: {first_text}"
  if not skip:
    raise errors.InputDataError(f"{summary}. {_SKIP_HINT}") from first
  if bad == checked:
    raise errors.InputDataError(f"{summary}. That is every row, so nothing is left to skip to: fix the data or "
                                "check that the file belongs to this task.") from first
  logging.warning("%s. Skipping these %d rows (skip_invalid_examples=True).", summary, bad)


class _Subset:
  """The rows of a source that are not in `drop` (skip_invalid_examples=True); rows keep their
  file/line in messages."""

  def __init__(self, source: tasks_lib.RandomAccess, drop: Sequence[int]):
    self._source = source
    self._keep = np.setdiff1d(np.arange(len(source), dtype=np.int64), np.asarray(drop, np.int64))
    self.path = getattr(source, "path", None)

  def __len__(self) -> int:
    return len(self._keep)

  def __getitem__(self, index: int) -> Mapping[str, Any]:
    return self._source[int(self._keep[index])]

  def where(self, index: int) -> str:
    raw_index = int(self._keep[index])
    where = getattr(self._source, "where", None)
    return where(raw_index) if where is not None else f"row {raw_index}"


def _checked_source(task: tasks_lib.Task, source: tasks_lib.RandomAccess, split: str, skip: bool, vocab=None,
                    input_length: Optional[int] = None) -> tasks_lib.RandomAccess:
  """A scannable (local-file) split checked row by row up front: an error counting the bad rows, or
  (skip) the split without them. Other sources are checked as rows are read."""
  if not getattr(source, "scannable", False):
    return source
  bad, first = _scan(task, source, split, training=True, vocab=vocab, input_length=input_length)
  _report_invalid(task, source, split, len(bad), len(source), first, skip)
  return _Subset(source, bad) if bad else source


# ----------------------------------------------------------------------------- one task's stream


class _TaskStream:
  """Endless examples of one task on this host: shuffled per epoch, position = (epoch, pos, sub)."""

  def __init__(self, task: tasks_lib.Task, source: tasks_lib.RandomAccess, split: str, seed: int,
               process_index: int, process_count: int, skip_invalid_examples: bool = False, vocab=None,
               input_length: Optional[int] = None):
    self.task, self.source, self.split = task, source, split
    self.vocab, self.input_length = vocab, input_length  # for formats that tokenize (pp.Context)
    self.skip_invalid_examples = skip_invalid_examples
    self.skipped = 0  # bad rows skipped while reading (sources not checked up front)
    self.seed, self.process_index, self.process_count = seed, process_index, process_count
    self.n = len(source)
    self.shard_size = len(range(process_index, self.n, process_count))
    if self.shard_size == 0:
      raise ValueError(f"Task {task.name!r} split {split!r} has {self.n} examples: too few for host "
                       f"{process_index} of {process_count}. Use a bigger split or fewer processes.")
    self.epoch = self.pos = self.sub = 0
    self._pending: list[dict] = []
    self._chunk: tuple[int, int, np.ndarray] = (-1, -1, np.zeros(0, np.int64))
    self._raw: tuple[int, int, list] = (-1, -1, [])  # (epoch, first pos, raw examples) read ahead

  def state(self) -> dict:
    return {"epoch": self.epoch, "pos": self.pos, "sub": self.sub}

  def set_state(self, state: Mapping[str, int]) -> None:
    self.epoch, self.pos, self.sub = int(state["epoch"]), int(state["pos"]), int(state["sub"])
    self._pending = []
    if self.sub:  # re-make the partly consumed raw example and drop what was already taken
      outputs = self._preprocess(self.epoch, self.pos - 1)
      self._pending = outputs[self.sub:]

  def _index(self, epoch: int, pos: int) -> int:
    c_epoch, c_start, c_idx = self._chunk
    if c_epoch != epoch or not c_start <= pos < c_start + len(c_idx):
      start = pos - pos % _CHUNK
      local = np.arange(start, min(start + _CHUNK, self.shard_size), dtype=np.int64)
      global_pos = local * self.process_count + self.process_index
      c_idx = permute(global_pos, self.n, _key(self.seed, self.task.name, self.split, epoch))
      self._chunk = (epoch, start, c_idx)
      c_start = start
    return int(c_idx[pos - c_start])

  def _read(self, epoch: int, pos: int) -> Mapping[str, Any]:
    """Raw example at (epoch, pos); reads _READ_AHEAD of them at once where the source can
    (`read_many` of TFDS sources amortises the per-call cost of array_record reads)."""
    r_epoch, r_start, r_examples = self._raw
    if r_epoch != epoch or not r_start <= pos < r_start + len(r_examples):
      end = min(pos + _READ_AHEAD, self.shard_size, pos - pos % _CHUNK + _CHUNK)
      indices = [self._index(epoch, p) for p in range(pos, end)]
      read_many = getattr(self.source, "read_many", None)
      try:
        r_examples = list(read_many(indices)) if read_many is not None else [self.source[i] for i in indices]
      except pp.InvalidRow:  # one unreadable row: read one by one, so that only that one fails
        r_examples = [self._read_one(i) for i in indices]
      self._raw = (epoch, pos, r_examples)
      r_start = pos
    return r_examples[pos - r_start]

  def _read_one(self, index: int) -> Any:
    try:
      return self.source[index]
    except pp.InvalidRow as e:
      return e

  def _preprocess(self, epoch: int, pos: int) -> list[dict]:
    index = self._index(epoch, pos)
    ctx = pp.Context(seed=_key(self.seed, self.task.name, epoch, index), training=True, vocab=self.vocab,
                     input_length=self.input_length)
    try:
      return _outputs(self.task, self.source, self.split, index, self._read(epoch, pos), ctx)
    except pp.InvalidRow as e:
      if not self.skip_invalid_examples:
        raise errors.InputDataError(f"{e}. {_SKIP_HINT}") from e
      self.skipped += 1
      if self.skipped in (1, 10, 100) or self.skipped % 1000 == 0:
        logging.warning("Task %r split %r: skipped %d rows it cannot use so far (skip_invalid_examples=True); "
                        "the latest: %s", self.task.name, self.split, self.skipped, e)
      return []

  def next(self) -> dict:
    empty_run = 0
    while not self._pending:
      if self.pos >= self.shard_size:
        self.epoch, self.pos = self.epoch + 1, 0
      self._pending = self._preprocess(self.epoch, self.pos)
      self.pos, self.sub = self.pos + 1, 0
      empty_run += 1
      if not self._pending and empty_run > self.shard_size:
        raise ValueError(f"Task {self.task.name!r} split {self.split!r} gave no examples in a whole epoch of "
                         f"{self.shard_size} raw examples (all unlabelled?). Choose a labelled split.")
    self.sub += 1
    out = self._pending.pop(0)
    if not self._pending:
      self.sub = 0
    return out


# ----------------------------------------------------------------------------- tokenization


def _fit(ids: Sequence[int], length: int) -> tuple[list[int], int]:
  """Truncate to length-1, append EOS -> (ids, number of tokens dropped)."""
  dropped = max(0, len(ids) + 1 - length)
  return list(ids[:length - 1]) + [EOS_ID], dropped


def _encode_all(vocab, texts: Sequence[str]) -> list[list[int]]:
  """`vocab.encode_batch` where it exists; any object with `encode(text) -> ids` works."""
  encode_batch = getattr(vocab, "encode_batch", None)
  return encode_batch(texts) if encode_batch is not None else [vocab.encode(t) for t in texts]


def _token_ids(vocab, examples: Sequence[Mapping[str, Any]], key: str) -> list[list[int]]:
  """Each example's ids for `key` ('inputs' or 'targets'): its `<key>_ids` where the preprocessor
  tokenized already (T5's token-level formats), else the vocabulary's encoding of its `key` text."""
  ids_key = f"{key}_ids"
  to_encode = [i for i, ex in enumerate(examples) if ex.get(ids_key) is None]
  encoded = {}
  if to_encode:
    encoded = dict(zip(to_encode, _encode_all(vocab, [examples[i][key] for i in to_encode])))
  return [encoded[i] if i in encoded else list(ex[ids_key]) for i, ex in enumerate(examples)]


def tokenize_batch(examples: Sequence[Mapping[str, Any]], vocab, input_length: int,
                   target_length: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
  """Text-to-text examples -> (fixed-length batch as in the module docstring, truncation counts).
  Examples that carry `inputs_ids`/`targets_ids` are not encoded again (`_token_ids`)."""
  b = len(examples)
  inputs = _token_ids(vocab, examples, "inputs")
  targets = _token_ids(vocab, examples, "targets")
  enc = np.zeros((b, input_length), np.int32)
  tgt = np.zeros((b, target_length), np.int32)
  weights = np.zeros((b, target_length), np.float32)
  counts = {"examples": b, "inputs_truncated": 0, "targets_truncated": 0, "input_tokens_dropped": 0,
            "target_tokens_dropped": 0}
  for i in range(b):
    ids, dropped = _fit(inputs[i], input_length)
    enc[i, :len(ids)] = ids
    counts["inputs_truncated"] += dropped > 0
    counts["input_tokens_dropped"] += dropped
    ids, dropped = _fit(targets[i], target_length)
    tgt[i, :len(ids)] = ids
    weights[i, :len(ids)] = 1.0
    counts["targets_truncated"] += dropped > 0
    counts["target_tokens_dropped"] += dropped
  dec = np.zeros_like(tgt)
  dec[:, 1:] = tgt[:, :-1]
  batch = {"encoder_input_tokens": enc, "decoder_input_tokens": dec, "decoder_target_tokens": tgt,
           "decoder_loss_weights": weights}
  return batch, counts


# ----------------------------------------------------------------------------- the iterator


class BatchIterator:
  """Endless per-host batches of a task or mixture; `get_state`/`set_state` save and restore the
  position exactly (see the module docstring). Close it (or use it as a context manager) to stop
  the prefetch thread early; it is a daemon thread, so forgetting is harmless."""

  def __init__(self, name: str, streams: Sequence[_TaskStream], rates: np.ndarray, vocab, *, batch_size: int,
               input_length: int, target_length: int, seed: int, process_index: int, process_count: int,
               prefetch: int = 2):
    self.name = name
    self._streams = list(streams)
    self.task_names = tuple(s.task.name for s in streams)
    self.rates = np.asarray(rates, np.float64)
    self.vocab = vocab
    self.batch_size, self.input_length, self.target_length = batch_size, input_length, target_length
    self.seed, self.process_index, self.process_count = seed, process_index, process_count
    self.prefetch = int(prefetch)
    self._batches = 0
    self._counts = self._zero_counts()
    self._state = self._snapshot()  # position after the last batch returned
    self._thread: Optional[threading.Thread] = None
    self._queue: Optional[queue.Queue] = None
    self._stop = threading.Event()
    self._failure: list[BaseException] = []  # what ended the prefetch thread, if anything did

  # -- producing
  def _zero_counts(self) -> dict:
    return {"examples": 0, "inputs_truncated": 0, "targets_truncated": 0, "input_tokens_dropped": 0,
            "target_tokens_dropped": 0, "per_task": {n: 0 for n in self.task_names}}

  def _snapshot(self) -> dict:
    return {"version": _STATE_VERSION, "name": self.name, "seed": self.seed, "process_index": self.process_index,
            "process_count": self.process_count, "batch_size": self.batch_size, "batches": self._batches,
            "tasks": {s.task.name: s.state() for s in self._streams}, "counts": copy.deepcopy(self._counts)}

  def _choose_tasks(self) -> np.ndarray:
    if len(self._streams) == 1:
      return np.zeros(self.batch_size, np.int64)
    rng = np.random.default_rng([self.seed & 0xFFFFFFFF, self.process_index, self._batches, 0x5107])
    return rng.choice(len(self._streams), size=self.batch_size, p=self.rates)

  def _make_batch(self) -> tuple[dict[str, np.ndarray], dict]:
    choice = self._choose_tasks()
    examples = [self._streams[c].next() for c in choice]
    batch, counts = tokenize_batch(examples, self.vocab, self.input_length, self.target_length)
    for k, v in counts.items():
      self._counts[k] += int(v)
    for c in choice:
      self._counts["per_task"][self.task_names[c]] += 1
    self._batches += 1
    return batch, self._snapshot()

  @staticmethod
  def _produce(ref: "weakref.ReferenceType[BatchIterator]", q: queue.Queue, stop: threading.Event,
               failure: list) -> None:
    """Producer loop. Holds the iterator only weakly while waiting, so an iterator that is dropped
    without `close()` is garbage collected and its thread ends.

    An exception ends the thread at once, recorded in `failure` rather than put on the queue: a
    full queue (the consumer stopped taking batches) would otherwise block the thread forever, and
    with it `close()`. `__next__` raises it once the batches made before it are taken."""
    try:
      while not stop.is_set():
        it = ref()
        if it is None:
          return
        item = it._make_batch()  # pylint: disable=protected-access
        del it
        while not stop.is_set():
          try:
            q.put(item, timeout=0.1)
            break
          except queue.Full:
            if ref() is None:
              return
    except BaseException as e:  # pylint: disable=broad-except
      failure.append(e)

  def _start(self) -> None:
    self._stop = threading.Event()
    self._queue = queue.Queue(maxsize=self.prefetch)
    self._failure = []
    self._thread = threading.Thread(target=BatchIterator._produce,
                                    args=(weakref.ref(self), self._queue, self._stop, self._failure),
                                    daemon=True, name=f"spot_jax-data-{self.name}")
    self._thread.start()

  def _stop_thread(self) -> None:
    if self._thread is not None:
      self._stop.set()
      try:  # a producer waiting on a full queue gets its place at once and sees `stop` (no 0.1 s wait)
        while True:
          self._queue.get_nowait()
      except queue.Empty:
        pass
      self._thread.join()
      self._thread = None
      self._queue = None

  def close(self) -> None:
    """Stops the prefetch thread; the position is kept (the next `next()` restarts it)."""
    if self._thread is not None:
      self._stop_thread()
      self._restore(self._state)  # the producer ran ahead; rewind to what was returned

  def _take(self) -> tuple[dict[str, np.ndarray], dict]:
    """The next prepared batch; the producer's exception once it has died and the queue is empty
    (checked every _POLL_S, so a dead producer can never leave `next()` waiting)."""
    while True:
      try:
        return self._queue.get(timeout=_POLL_S)
      except queue.Empty:
        if self._thread.is_alive():
          continue
      try:  # it may have put a batch between the timeout and the liveness check
        return self._queue.get_nowait()
      except queue.Empty:
        pass
      error = self._failure[0] if self._failure else RuntimeError(
          f"The prefetch thread of data iterator {self.name!r} ended without a batch or an error; "
          "this is a bug in spot_jax.data.pipeline.")
      self.close()  # rewinds to the last batch returned: a next() after this one meets the same error
      raise error

  # -- the iterator protocol
  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self.prefetch <= 0:
      try:
        batch, self._state = self._make_batch()
      except BaseException:
        self._restore(self._state)  # a half-made batch moved the streams; rewind as the prefetch path does
        raise
      return batch
    if self._thread is None:
      self._start()
    batch, self._state = self._take()
    return batch

  def __enter__(self) -> "BatchIterator":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    try:
      self._stop.set()
    except Exception:  # pylint: disable=broad-except
      pass

  # -- position
  def get_state(self) -> dict:
    """JSON-serialisable position after the last batch returned (plus the counters)."""
    return copy.deepcopy(self._state)

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Continue exactly where the iterator that produced `state` was."""
    if state.get("version") != _STATE_VERSION:
      raise ValueError(f"Data state version {state.get('version')!r} is not {_STATE_VERSION}; it was saved by "
                       "another spot_jax version and cannot be restored exactly.")
    mismatched = {k: (state.get(k), getattr(self, k)) for k in ("name", "process_index", "process_count",
                                                                "batch_size") if state.get(k) != getattr(self, k)}
    if set(state.get("tasks", {})) != set(self.task_names):
      mismatched["tasks"] = (sorted(state.get("tasks", {})), sorted(self.task_names))
    if mismatched:
      raise ValueError(f"Data state does not belong to this iterator: (saved, current) = {mismatched}. Restore "
                       "with the same task/mixture, batch size and process layout.")
    self._stop_thread()
    self._restore(state)

  def _restore(self, state: Mapping[str, Any]) -> None:
    self._batches = int(state["batches"])
    self._counts = copy.deepcopy(dict(state["counts"]))
    for s in self._streams:
      s.set_state(state["tasks"][s.task.name])
    self._state = self._snapshot()

  @property
  def truncation(self) -> dict[str, Any]:
    """Counts over the batches returned so far: examples, inputs/targets truncated, tokens dropped,
    and examples per task."""
    return copy.deepcopy(self._state["counts"])

  @property
  def epochs(self) -> dict[str, int]:
    return {n: s["epoch"] for n, s in self._state["tasks"].items()}


# ----------------------------------------------------------------------------- entry points


def _check_lengths(**lengths: int) -> None:
  for k, v in lengths.items():
    if v is None or int(v) < 1:
      raise ValueError(f"{k} must be a positive int; got {v!r}.")


def make_train_iterator(task_or_mixture_name: str, vocab, *, batch_size: int, input_length: int,
                        target_length: int, seed: int, process_index: int = 0, process_count: int = 1,
                        split: Optional[str] = None, data_dir: Optional[str] = None,
                        prefetch: int = 2, skip_invalid_examples: bool = False) -> BatchIterator:
  """Endless, deterministic, per-host batches of a registered task or mixture (module docstring).

  `batch_size` is this host's batch. `split` defaults to each task's `train_split`; `data_dir`
  overrides where TFDS / local files are read from. A row a task cannot use is an
  `errors.InputDataError` (local files: raised here, counting all such rows); with
  `skip_invalid_examples=True` such rows are skipped and counted in a logged warning.
  """
  _check_lengths(batch_size=batch_size, input_length=input_length, target_length=target_length)
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, process_count={process_count}); got {process_index}.")
  if mixtures_lib.is_mixture(task_or_mixture_name):
    mixture = mixtures_lib.get_mixture(task_or_mixture_name)
    tasks = mixture.tasks()
  else:
    mixture, tasks = None, [tasks_lib.get_task(task_or_mixture_name)]
  streams = []
  for task in tasks:
    task_split = split or task.train_split
    source = _checked_source(task, task.source.open(task_split, data_dir), task_split, skip_invalid_examples,
                             vocab, input_length)
    streams.append(_TaskStream(task, source, task_split, seed, process_index, process_count,
                               skip_invalid_examples, vocab, input_length))
  rates = np.ones(1) if mixture is None else mixture.normalized_rates([s.n for s in streams])
  return BatchIterator(task_or_mixture_name, streams, rates, vocab, batch_size=batch_size, input_length=input_length,
                       target_length=target_length, seed=seed, process_index=process_index,
                       process_count=process_count, prefetch=prefetch)


def load_eval_examples(task_name: str, vocab, *, split: Optional[str] = None, input_length: int,
                       max_examples: Optional[int] = None, data_dir: Optional[str] = None,
                       skip_invalid_examples: bool = False) -> list[dict]:
  """Evaluation examples in dataset order (not sharded, not shuffled).

  Each: `encoder_input_tokens` [<= input_length] int32 (ids, EOS; truncated; *not* padded — see
  `pad_batch`), `inputs` and `targets` strings, `label` where the task has label words, `example`
  (the raw example as plain Python, for metrics that group or use all answers) and `index` (the
  row in the split). Rows the task cannot use raise an `errors.InputDataError` counting them (over
  the whole file for local files, over the rows read otherwise), or with `skip_invalid_examples=True`
  are skipped with a logged warning: a score over a silently smaller set is not comparable.
  """
  _check_lengths(input_length=input_length)
  task = tasks_lib.get_task(task_name)
  split = split or task.eval_split
  source = task.source.open(split, data_dir)
  check_all = getattr(source, "scannable", False)  # local files: count bad rows past max_examples too
  out: list[dict] = []
  ctx = pp.Context(seed=0, training=False, vocab=vocab, input_length=input_length)
  bad, checked, first = 0, 0, None
  for index in range(len(source)):
    full = max_examples is not None and len(out) >= max_examples
    if full and not check_all:
      break
    checked += 1
    try:
      raw = source[index]
      produced = _outputs(task, source, split, index, raw, ctx)
    except pp.InvalidRow as e:
      bad, first = bad + 1, first or e
      continue
    if not produced or full:
      continue
    example = pp.to_python(dict(raw))
    for ex in produced:
      out.append({**ex, "example": example, "index": index})
  _report_invalid(task, source, split, bad, checked, first, skip_invalid_examples)
  if max_examples is not None:
    out = out[:max_examples]
  token_lists = _token_ids(vocab, out, "inputs")
  for ex, ids in zip(out, token_lists):
    ex["encoder_input_tokens"] = np.asarray(_fit(ids, input_length)[0], np.int32)
  return out


def pad_batch(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
  """Variable-length id arrays -> [N, length] int32, zero padded (rows longer than `length` error)."""
  out = np.zeros((len(sequences), length), np.int32)
  for i, s in enumerate(sequences):
    if len(s) > length:
      raise ValueError(f"Sequence {i} has {len(s)} ids, more than length={length}; truncate first.")
    out[i, :len(s)] = s
  return out


def num_examples(task_name: str, split: Optional[str] = None, data_dir: Optional[str] = None) -> int:
  """Raw examples in a task's split (before preprocessing expands or drops any)."""
  task = tasks_lib.get_task(task_name)
  return len(task.source.open(split or task.train_split, data_dir))
