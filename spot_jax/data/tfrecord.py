"""Random access to TFRecord files: for TFDS datasets prepared as TFRecord (C4 and most of the catalog).

Why this exists: the input pipeline reads its sources by index (deterministic order, disjoint host
shards, a position of a few integers), and `tfds.data_source` only gives that for array_record or
parquet. Many prepared TFDS datasets, C4 among them, are TFRecord. TFRecord has no index, but its
framing makes one cheap to build:

  record = uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)

so one sequential pass over a file's headers (read in large chunks, so `gs://` works too) gives
every payload's offset. The index is built the first time a file is touched and kept in memory:
4 bytes per record (8 for files over 4 GiB), e.g. ~1.5 GB for all of C4 en's 365M records, so
converting a huge dataset to array_record (`tfds convert_format`) is still the better choice there.

Each length field's checksum is verified while indexing, and the scan must end exactly at the end
of the file; a file that fails either is reported as corrupted, naming the file and the offset.
Payload checksums are not verified (pure-Python CRC of every payload would cost more than the
read); a damaged payload surfaces when its tf.train.Example fails to parse.
"""

from __future__ import annotations

import collections
import dataclasses
import struct
import threading
from typing import BinaryIO, Optional, Sequence

import numpy as np
from etils import epath

from spot_jax import errors

_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FOOTER = 4  # uint32 masked CRC of the payload
_SCAN_CHUNK = 16 << 20  # bytes read per call while indexing
_MAX_OPEN_FILES = 32  # least recently used handles are closed beyond this (C4 has 1024 shards)


class CorruptedRecordFileError(errors.UserError, ValueError):
  """A TFRecord file does not parse as TFRecord (truncated, damaged or not TFRecord at all)."""


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli), the checksum TFRecord uses."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC: rotate right by 15 bits, add a constant (as tensorflow/core/lib/hash/crc32c.h)."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _open(path: str) -> BinaryIO:
  return epath.Path(path).open("rb")


def index_records(path: str) -> np.ndarray:
  """Start offsets of every record in the TFRecord file at `path`, plus the file size at the end
  (so record i's payload is bytes offsets[i] + _HEADER .. offsets[i+1] - _FOOTER)."""
  offsets: list[int] = []
  buffer, buffer_start, position = b"", 0, 0  # position: start of the next record's header
  with _open(path) as f:
    while True:
      if position + _HEADER > buffer_start + len(buffer):  # need more bytes for the next header
        f.seek(position)
        buffer, buffer_start = f.read(_SCAN_CHUNK), position
        if not buffer:
          break
        if len(buffer) < _HEADER:
          raise CorruptedRecordFileError(
              f"{path}: {len(buffer)} stray bytes at offset {position} after the last complete record (the file "
              "is truncated or not TFRecord). Re-create it, e.g. `tfds build ... --overwrite`.")
      at = position - buffer_start
      header = buffer[at:at + 8]
      (length,) = struct.unpack("<Q", header)
      (expected,) = struct.unpack("<I", buffer[at + 8:at + 12])
      if masked_crc32c(header) != expected:
        raise CorruptedRecordFileError(
            f"{path}: the record header at offset {position} fails its checksum (the file is damaged or not "
            "TFRecord). Re-create it, e.g. `tfds build ... --overwrite`.")
      offsets.append(position)
      position += _HEADER + length + _FOOTER
    size = f.seek(0, 2)
  if position != size:
    raise CorruptedRecordFileError(
        f"{path}: the last record claims to end at offset {position} but the file has {size} bytes (truncated). "
        "Re-create it, e.g. `tfds build ... --overwrite`.")
  offsets.append(size)
  return np.asarray(offsets, np.uint32 if size < 2**32 else np.int64)


@dataclasses.dataclass(frozen=True)
class Shard:
  """Records [skip, skip + take) of one TFRecord file (a TFDS FileInstruction)."""

  path: str
  skip: int
  take: int


class TfRecordReader:
  """Random access to the records of several TFRecord file slices read one after another.

  `reader[i]` is the serialized payload of record i; `read_many(indices)` (alias `__getitems__`,
  as array_record's data source names it) reads several, each file
  once, in offset order. Indexes are built lazily per file; reads are thread-safe.
  """

  def __init__(self, shards: Sequence[Shard]):
    self._shards = list(shards)
    self._ends = np.cumsum([s.take for s in self._shards], dtype=np.int64)
    self._offsets: dict[str, np.ndarray] = {}
    self._files: collections.OrderedDict[str, BinaryIO] = collections.OrderedDict()
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return int(self._ends[-1]) if len(self._ends) else 0

  def _locate(self, index: int) -> tuple[str, int]:
    if not 0 <= index < len(self):
      raise IndexError(f"Record {index} out of range for {len(self)} records.")
    part = int(np.searchsorted(self._ends, index, side="right"))
    start = int(self._ends[part - 1]) if part else 0
    shard = self._shards[part]
    return shard.path, shard.skip + index - start

  def _span(self, path: str, record: int) -> tuple[int, int]:
    offsets = self._offsets.get(path)
    if offsets is None:
      offsets = self._offsets[path] = index_records(path)
    if record + 1 >= len(offsets):
      raise CorruptedRecordFileError(f"{path} has {len(offsets) - 1} records, but its dataset info expects more "
                                     f"(record {record} asked for). Re-create the dataset.")
    start = int(offsets[record]) + _HEADER
    return start, int(offsets[record + 1]) - _FOOTER - start

  def _read(self, path: str, record: int) -> bytes:
    start, length = self._span(path, record)
    f = self._files.get(path)
    if f is None:
      if len(self._files) >= _MAX_OPEN_FILES:
        self._files.popitem(last=False)[1].close()
      f = self._files[path] = _open(path)
    self._files.move_to_end(path)
    f.seek(start)
    return f.read(length)

  def __getitem__(self, index: int) -> bytes:
    with self._lock:
      return self._read(*self._locate(int(index)))

  def read_many(self, indices: Sequence[int]) -> list[bytes]:
    with self._lock:
      located = [self._locate(int(i)) for i in indices]
      order = sorted(range(len(located)), key=lambda k: located[k])
      out: list[Optional[bytes]] = [None] * len(located)
      for k in order:
        out[k] = self._read(*located[k])
      return out  # type: ignore[return-value]

  __getitems__ = read_many  # the batched-read protocol of array_record's data source

  def close(self) -> None:
    with self._lock:
      for f in self._files.values():
        f.close()
      self._files.clear()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass
