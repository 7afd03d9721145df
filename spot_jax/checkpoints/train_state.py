"""Orbax checkpoints of a prompt-tuning run: prompt + optimizer state + step + data position.

Why a wrapper: the trainer needs three guarantees Orbax gives only when used a certain way —
(1) only prompt-sized state is written (the frozen model is never part of a checkpoint),
(2) the input iterator's position is saved with the state, so a resumed run sees the same batches,
(3) a corrupted or partial latest checkpoint does not kill the run: it is moved aside (never
deleted) and the previous one is used. Orbax itself writes each step to a temporary directory and
renames it when complete, so a `kill -9` mid-save leaves only an ignored temporary directory.

Multi-host: every process calls `save` and `restore_latest` (Orbax writes the arrays collectively).
Each host reads its own shard of the data, so each has its own input position: `save` gathers all
of them into the checkpoint and `restore_latest` hands each process back its own.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from spot_jax import distributed, errors, fileio

QUARANTINE_DIR = "corrupt_checkpoints"


class CheckpointRestoreError(errors.UserError, RuntimeError):
  """No checkpoint in the directory could be restored."""


class TrainCheckpointer:
  """Saves every `save_every` steps, keeps the last `keep`; restores the newest readable one."""

  def __init__(self, directory: str, save_every: int, keep: int):
    # Orbax wants absolute paths (`runs/x` fails inside tensorstore); gs:// paths stay as given.
    self.directory = epath.Path(os.path.abspath(directory) if fileio.is_local(directory) else directory)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every, max_to_keep=keep, create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))
    self.started_over = False  # restore_latest found only unreadable checkpoints and fresh_start allowed it

  def save(self, step: int, state: Any, data_state: dict, force: bool = False) -> bool:
    """Writes `state` (a pytree of arrays) and `data_state` (JSON) as step `step`, if due or forced."""
    if step in self._manager.all_steps():
      return False  # already on disk (e.g. re-reaching a step after resume): never overwrite
    data = {"per_process": _gather_json(data_state)}  # a collective: every process calls save
    return self._manager.save(step, force=force, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)))

  def restore_latest(self, abstract_state: Any, fresh_start: bool = False) -> Optional[tuple[int, Any, dict]]:
    """-> (step, state, data_state) of the newest restorable checkpoint, or None if there is none.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct (with shardings) describing the state.
    Unreadable checkpoints are moved to `corrupt_checkpoints/` (never deleted). When none is left
    readable, the run would start over at step 0 and overwrite what the old run wrote: that is
    refused with `CheckpointRestoreError` unless `fresh_start` (then `started_over` is True and the
    quarantined checkpoints are kept under a dated name, so a later retry is not refused again).
    """
    failures = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      except Exception as e:  # Orbax raises many types for damaged files; all mean "unreadable".
        failures.append(f"step {step}: {type(e).__name__}: {str(e)[:200]}")
        self._quarantine(step)
        continue
      if failures:
        logging.warning("Fell back to checkpoint step %d; unreadable newer checkpoints were moved to %s: %s",
                        step, self.directory / QUARANTINE_DIR, failures)
      return step, restored["state"], self._own_data_state(step, restored["data"])
    quarantine = self.directory / QUARANTINE_DIR
    unreadable = sorted(p.name for p in quarantine.iterdir()) if quarantine.exists() else []
    if not unreadable:
      return None
    if not fresh_start:
      found = f" ({'; '.join(failures)})" if failures else ""
      raise CheckpointRestoreError(
          f"No checkpoint in {self.directory} can be restored{found}: {len(unreadable)} unreadable checkpoint(s) "
          f"are in {quarantine}. Starting over from step 0 would overwrite this run's named prompts. Repair "
          "them, use a new --workdir, or start this run again from step 0 with --config.train.fresh_start=true "
          "(the old named prompts are kept aside).")
    if distributed.is_primary():
      quarantine.rename(self.directory / f"{QUARANTINE_DIR}-before-fresh-start-{int(time.time())}")
    distributed.sync("spot_jax_fresh_start")
    self.started_over = True
    return None

  def _own_data_state(self, step: int, data: dict) -> dict:
    """This process's input position out of the checkpoint's `data` item."""
    if "per_process" not in data:
      return data  # written before positions were kept per process: single-process checkpoints
    states, count = data["per_process"], jax.process_count()
    if len(states) != count:
      raise CheckpointRestoreError(
          f"Checkpoint step {step} in {self.directory} was written by {len(states)} processes; this run has "
          f"{count}. Each host's input position is saved separately, so resume with {len(states)} processes "
          "(or start a fresh run with a new --workdir).")
    return states[jax.process_index()]

  def _quarantine(self, step: int) -> None:
    if distributed.is_primary():  # one process moves it; the others wait, then all re-list the steps
      source = self.directory / str(step)
      target_dir = self.directory / QUARANTINE_DIR
      target_dir.mkdir(parents=True, exist_ok=True)
      if source.exists():
        source.rename(target_dir / f"{step}-{int(time.time())}")
    distributed.sync(f"spot_jax_quarantine_{step}")
    self._manager.reload()

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _gather_json(obj: Any) -> list:
  """[obj of process 0, obj of process 1, ...] on every process (a JSON-serialisable obj each)."""
  if jax.process_count() == 1:
    return [obj]
  data = np.frombuffer(json.dumps(obj, sort_keys=True).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.int32(data.size))).reshape(-1)
  padded = np.zeros(-(-int(sizes.max()) // 1024) * 1024, np.uint8)  # few distinct shapes: few compiles
  padded[:data.size] = data
  everything = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(everything[i, :sizes[i]].tobytes()) for i in range(len(sizes))]
