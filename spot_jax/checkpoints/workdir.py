"""A workdir belongs to one run: its identity (`run.json`) and one writer at a time (`.lock`).

Why: resuming is automatic (the trainer continues from the newest checkpoint), so a workdir reused
with another config would silently mix two runs — resume the old checkpoint, return the old prompt,
or finish half of one run with the settings of another. `claim()` therefore
1. takes an exclusive lock on the workdir, so a second process fails at once and names the first;
2. compares the run's identity (the settings that change its result, and the frozen model's
   fingerprint) with the one recorded in `run.json`, and refuses a difference, naming each differing
   field and the way out (a new workdir, or `allow_changes` naming the fields the user means to change,
   e.g. a longer `num_train_steps`); an allowed change is recorded in `run.json`'s history.

Locks: on a local file system `.lock` is held with `flock`, which the OS releases when the process
dies (kill -9 included), so a crashed run never blocks its own resume. `gs://` has no such lock:
there an owner marker `.lock.json` (host, pid, command, start time) is written and removed on
release. It stops a second run that starts while the first one runs; a marker left by a process
that died on this same host is taken over, one from another host must be removed by hand (the
error says how). Two processes starting within the same second could both pass: GCS offers no
atomic create through the file API used here.

Multi-host: process 0 takes the lock and writes `run.json`; every process reads and compares, so
every process fails the same way.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from typing import Any, Mapping, Optional, Sequence

from etils import epath

from spot_jax import distributed, errors, fileio

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
GCS_LOCK_FILE = ".lock.json"
FORMAT_VERSION = 1

_HELD: dict[str, "Claim"] = {}  # workdirs this process holds, by absolute path


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'train': {'seed': 0}} -> {'train.seed': 0}; tuples become lists (as JSON reads them back)."""
  flat: dict[str, Any] = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, name + "."))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


def _owner() -> dict:
  return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500],
          "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _describe_owner(owner: Optional[dict]) -> str:
  if not owner:
    return "another process (its owner record is unreadable)"
  return (f"process {owner.get('pid')} on host {owner.get('host')} (started {owner.get('started')}: "
          f"{owner.get('command')})")


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def storage_error(path: Any, error: OSError, doing: str = "write to") -> errors.WorkdirError:
  """One line naming the path and the OS error (read-only place, full disk, missing permission)."""
  reason = error.strerror or str(error)
  return errors.WorkdirError(f"Cannot {doing} {os.fspath(path)}: [Errno {error.errno}] {reason}. Choose a "
                             "writable --workdir (or free space there).")


class Claim:
  """A held workdir; release() (or leaving the `with` block) unlocks it once every holder in this
  process has released it (claims nest: the CLI locks early, the trainer then checks the identity)."""

  def __init__(self, path: epath.Path, lock_fd: Optional[int], gcs_marker: Optional[epath.Path]):
    self.path, self._lock_fd, self._gcs_marker = path, lock_fd, gcs_marker
    self.depth = 1

  def release(self) -> None:
    self.depth -= 1
    if self.depth > 0:
      return
    _HELD.pop(os.fspath(self.path), None)
    if self._lock_fd is not None:
      os.close(self._lock_fd)  # closing the descriptor drops the flock
      self._lock_fd = None
    if self._gcs_marker is not None:
      try:
        self._gcs_marker.unlink()
      except OSError:
        pass
      self._gcs_marker = None

  def __enter__(self) -> "Claim":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _lock_local(path: epath.Path) -> int:
  lock_path = os.path.join(os.fspath(path), LOCK_FILE)
  try:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise storage_error(lock_path, e) from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    try:
      owner = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
      owner = None
    os.close(fd)
    raise errors.WorkdirError(
        f"Workdir {path} is in use by {_describe_owner(owner)}. One run writes a workdir at a time: wait "
        "for it to finish, or use another --workdir.") from None
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_owner()).encode(), 0)
  except OSError as e:
    os.close(fd)
    raise storage_error(lock_path, e) from e
  return fd


def _lock_gcs(path: epath.Path) -> epath.Path:
  marker = path / GCS_LOCK_FILE
  if marker.exists():
    try:
      owner = json.loads(marker.read_text())
    except (OSError, ValueError):
      owner = None
    same_host_dead = (owner and owner.get("host") == socket.gethostname()
                      and not _pid_alive(int(owner.get("pid", -1))))
    if not same_host_dead:
      raise errors.WorkdirError(
          f"Workdir {path} is in use by {_describe_owner(owner)} (owner marker {marker}). One run writes a "
          f"workdir at a time: wait for it to finish, or use another --workdir. If that process is gone, "
          f"remove the marker: gsutil rm {marker}")
  fileio.atomic_write(marker, json.dumps(_owner()))
  return marker


def _absolute(workdir: str | os.PathLike) -> epath.Path:
  """The workdir as locks are keyed: absolute when local, as given on gs://."""
  return epath.Path(os.path.abspath(workdir) if fileio.is_local(workdir) else os.fspath(workdir))


def lock(workdir: str | os.PathLike) -> Claim:
  """Takes the workdir's exclusive lock for this process (creating the directory), or fails at once
  naming the process that holds it. Re-entrant within a process."""
  local = fileio.is_local(workdir)
  path = _absolute(workdir)
  if os.fspath(path) in _HELD:
    held = _HELD[os.fspath(path)]
    held.depth += 1
    return held
  lock_fd, marker = None, None
  if distributed.is_primary():
    try:
      path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise storage_error(path, e, "create the workdir") from e
    if local:
      lock_fd = _lock_local(path)
    else:
      marker = _lock_gcs(path)
  held = Claim(path, lock_fd, marker)
  _HELD[os.fspath(path)] = held
  return held


def claim(workdir: str | os.PathLike, kind: str, identity: Mapping[str, Any],
          allow_changes: Sequence[str] = (), never_changeable: Sequence[str] = ()) -> Claim:
  """Locks `workdir` for this process and checks (or records) that it holds the run `identity`.

  `identity` is a (nested) JSON-able mapping of what decides the run's result. A recorded identity
  that differs is refused unless every differing field is named in `allow_changes` and none is in
  `never_changeable` (e.g. the frozen model: a prompt cannot continue on another model). Raises
  `errors.WorkdirError` before writing anything of its own when the workdir is refused.
  """
  held = lock(workdir)
  try:
    _check_identity(held.path, kind, identity, allow_changes, never_changeable, distributed.is_primary())
  except BaseException:
    held.release()
    raise
  return held


def is_held(workdir: str | os.PathLike) -> bool:
  """Whether this process holds `workdir`'s lock."""
  return os.fspath(_absolute(workdir)) in _HELD


def read_record(workdir: str | os.PathLike) -> Optional[dict]:
  """The `run.json` of a workdir, or None (no run, or one made before spot_jax recorded identities)."""
  record = epath.Path(workdir) / RUN_FILE
  if not record.exists():
    return None
  try:
    return json.loads(record.read_text())
  except ValueError as e:
    raise errors.WorkdirError(f"{record} is not valid JSON ({e}); it records which run owns the workdir. "
                              "Restore it, or use another --workdir.") from e


def _check_identity(path: epath.Path, kind: str, identity: Mapping[str, Any], allow_changes: Sequence[str],
                    never_changeable: Sequence[str], primary: bool) -> None:
  wanted = json.loads(json.dumps(dict(identity), default=str))  # as it would read back from disk
  distributed.sync("spot_jax_workdir_locked")  # process 0 made and locked the directory
  record = read_record(path)
  distributed.sync("spot_jax_workdir_read")  # every process read the record before process 0 rewrites it
  if record is None:
    if primary and (path / "checkpoints").exists():
      logging.warning("Workdir %s holds checkpoints but no %s (made before spot_jax recorded runs): recording this "
                      "run's identity now; it cannot be checked against the run that wrote them.", path, RUN_FILE)
    record = {"format": FORMAT_VERSION, "kind": kind, "identity": wanted,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "changes": []}
  elif record.get("kind") != kind:
    raise errors.WorkdirError(f"Workdir {path} holds a '{record.get('kind')}' run, not a '{kind}' run. A workdir "
                              "belongs to one run: use another --workdir.")
  else:
    old, new = flatten(record.get("identity", {})), flatten(wanted)
    differing = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    if not differing:
      return
    lines = "; ".join(f"{k}: {old.get(k, '<unset>')!r} in the workdir, {new.get(k, '<unset>')!r} now"
                      for k in differing)
    fixed = [k for k in differing if k in never_changeable]
    if fixed:
      raise errors.WorkdirError(f"Workdir {path} holds a run made with different settings ({lines}). "
                                f"{', '.join(fixed)} cannot change within a run: use another --workdir.")
    allowed = set(allow_changes)
    if any(k not in allowed and k.split(".")[-1] not in allowed for k in differing):
      names = ",".join(dict.fromkeys(k.split(".")[-1] for k in differing))
      raise errors.WorkdirError(
          f"Workdir {path} holds a run made with different settings ({lines}). A workdir belongs to one run: "
          f"use another --workdir, or continue this run with the changed settings by adding "
          f"--config.train.allow_changes={names}")
    record["identity"] = wanted
    record.setdefault("changes", []).append(
        {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "fields": {k: [old.get(k), new.get(k)] for k in differing}})
  if primary:
    _write_record(path, record)
  distributed.sync("spot_jax_workdir_recorded")


def _write_record(path: epath.Path, record: dict) -> None:
  try:
    fileio.atomic_write(path / RUN_FILE, json.dumps(record, indent=2, sort_keys=True))
  except OSError as e:
    raise storage_error(path / RUN_FILE, e) from e


def parse_allow_changes(value: str | Sequence[str]) -> tuple[str, ...]:
  """'num_train_steps, eval_every' -> ('num_train_steps', 'eval_every')."""
  items = value.split(",") if isinstance(value, str) else value
  return tuple(i.strip() for i in items if i.strip())


STORAGE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
