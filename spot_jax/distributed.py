"""Multi-host start-up: `jax.distributed.initialize` from config, once, before any JAX computation.

Why: on a Cloud TPU pod (or several GPU / CPU hosts) every host runs the same program. The hosts must
find each other before the first JAX call, so that `jax.devices()` lists every host's devices (one
global mesh), batches assemble from per-host shards, Orbax writes checkpoints collectively, and a
host that dies stops the others (heartbeats) instead of leaving them waiting in a collective.
Single-host runs leave `config.distributed.enabled` False (`configs.distributed_defaults`) and
nothing happens.

Also here: `is_primary()` (process 0 writes the files meant to exist once: named prompts, library
entries, CSVs, plots, JSON) and `sync()` (a barrier, so the other processes read them only after).
"""

from __future__ import annotations

import logging
from typing import Optional

import jax
import ml_collections
from jax.experimental import multihost_utils


def maybe_initialize(cfg: Optional[ml_collections.ConfigDict]) -> bool:
  """Calls `jax.distributed.initialize` if `cfg.enabled`; -> whether JAX runs distributed.

  Must run before anything touches a JAX backend (`jax.devices()`, a jit, a device_put). Explicit
  fields (coordinator_address, num_processes, process_id) are passed on; unset ones are left to
  JAX's cluster auto-detection, which needs none of them on Cloud TPU. A second call is a no-op.
  On CPU, cross-process collectives use gloo (jax 0.10's default `jax_cpu_collectives_implementation`).
  """
  if cfg is None or not cfg.get("enabled", False):
    return False
  if jax.distributed.is_initialized():
    return True
  explicit = {"coordinator_address": cfg.coordinator_address or None,
              "num_processes": cfg.num_processes if cfg.num_processes > 0 else None,
              "process_id": cfg.process_id if cfg.process_id >= 0 else None}
  if explicit["coordinator_address"] and None in explicit.values():
    missing = sorted(k for k, v in explicit.items() if v is None)
    raise ValueError(f"config.distributed.coordinator_address is set but {missing} are not: give all three "
                     "(e.g. --config.distributed.num_processes=2 --config.distributed.process_id=0), or none "
                     "on a cluster JAX detects by itself (Cloud TPU, Slurm, Open MPI).")
  logging.info("Initializing jax.distributed with %s", {k: v for k, v in explicit.items() if v is not None})
  jax.distributed.initialize(**explicit, initialization_timeout=cfg.initialization_timeout,
                             heartbeat_timeout_seconds=cfg.heartbeat_timeout,
                             shutdown_timeout_seconds=cfg.shutdown_timeout)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_primary() -> bool:
  """True on the process that writes files meant to exist once (process 0; the only one when single-host)."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """Barrier across processes (a no-op on one): e.g. after process 0 wrote a file the others read."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
