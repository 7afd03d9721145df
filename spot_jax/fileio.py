"""Whole-file writes to local or `gs://` paths (etils.epath), temporary file first, then renamed.

Why: a run's outputs (CSV tables, JSON, plots, prompts) go to a workdir that is often a bucket on a
TPU pod; `open()` and `os.path` only reach local disks. Writing to a temporary name and renaming it
into place means a crash never leaves half a file (atomic on POSIX; on GCS a copy of a complete object).
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from typing import Any, Sequence

from etils import epath


def atomic_write(path: str | os.PathLike, data: bytes | str) -> epath.Path:
  """Writes `data` (bytes, or text as UTF-8) to `path`, making parent directories; -> the path."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
  tmp.write_bytes(data.encode() if isinstance(data, str) else data)
  tmp.replace(path)
  return path


def write_json(path: str | os.PathLike, data: Any) -> epath.Path:
  """`data` as indented, key-sorted JSON, atomically; numpy scalars as numbers, anything else
  JSON lacks (paths, dates) as its text."""
  return atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
  try:
    return float(value)
  except (TypeError, ValueError):
    return str(value)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence]) -> epath.Path:
  """Header + rows as CSV, atomically."""
  text = io.StringIO(newline="")
  writer = csv.writer(text)
  writer.writerow(header)
  writer.writerows(rows)
  return atomic_write(path, text.getvalue())


def is_local(path: str | os.PathLike) -> bool:
  """True for a path on this machine's file system (not `gs://...` or another URL-style scheme)."""
  return "://" not in os.fspath(path)
