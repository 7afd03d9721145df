"""Device mesh and logical-axis rules: the one place that decides where arrays live.

Why: the model only names axes ('embed', 'mlp', 'heads', ...); this module maps those names onto a
`('data', 'model')` mesh with t5x's standard rules, so the same code runs on 1 CPU device, 8 fake
devices, or a TPU pod, and gives the same numbers. The prompt and its optimizer state are tiny and
replicated; frozen weights are split over 'model'; batches over 'data'.

The frozen T5 is placed on a mesh once (`place_frozen`): the trainer and evaluation get the very same
device arrays, so evaluating during training neither copies the model host->device per batch nor
keeps a second copy on the devices.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import weakref
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from spot_jax import errors
from spot_jax.models import t5

MESH_AXES = ("data", "model")

# t5x standard rules (partitioning.standard_logical_axis_rules), plus our own axes.
STANDARD_RULES: tuple[tuple[str, Optional[str]], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("kv", None),
    ("embed", None),
    ("length", None),
    ("relpos_buckets", None),
    ("layers", None),
    ("prompt", None),
    ("prompt_embed", None),
)


class MeshError(errors.UserError, ValueError):
  """A mesh shape that does not fit the devices available."""


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, int]:
  """(-1, 1) style shapes -> concrete (data, model); errors name the device count and the fix."""
  shape = list(mesh_shape)
  if len(shape) != 2:
    raise MeshError(f"mesh_shape must have 2 entries (data, model); got {tuple(mesh_shape)}.")
  if shape.count(-1) > 1:
    raise MeshError(f"mesh_shape {tuple(mesh_shape)} has more than one -1.")
  if -1 in shape:
    known = int(np.prod([s for s in shape if s != -1]))
    if known <= 0 or num_devices % known:
      raise MeshError(f"mesh_shape {tuple(mesh_shape)} cannot be filled with {num_devices} devices: "
                      f"{num_devices} is not a multiple of {known}.")
    shape[shape.index(-1)] = num_devices // known
  needed = int(np.prod(shape))
  if min(shape) < 1 or needed > num_devices or (needed < num_devices and jax.process_count() > 1):
    raise MeshError(f"mesh_shape {tuple(mesh_shape)} needs {needed} devices but {num_devices} are "
                    f"available. Use e.g. mesh_shape=(-1, 1) (all devices on 'data') or ({num_devices}, 1).")
  if needed < num_devices:
    logging.warning("mesh_shape %s uses %d of %d devices.", tuple(mesh_shape), needed, num_devices)
  return shape[0], shape[1]


def make_mesh(mesh_shape: Sequence[int] = (-1, 1), devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A ('data', 'model') mesh over all (or the given) devices, with Auto axis types so
  logical sharding constraints inside the model work."""
  devices = list(jax.devices()) if devices is None else list(devices)
  shape = resolve_mesh_shape(mesh_shape, len(devices))
  auto = (jax.sharding.AxisType.Auto,) * 2
  needed = shape[0] * shape[1]
  if needed == jax.device_count():
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
  return Mesh(np.asarray(devices[:needed]).reshape(shape), MESH_AXES, axis_types=auto)


def _fit_spec(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
  """Drops mesh axes from dims they do not divide (e.g. a vocab of 97 on model=2) -> replicated dim."""
  fitted = []
  for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    axes = (axis,) if isinstance(axis, str) else tuple(axis or ())
    size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if axes and dim % size:
      logging.warning("Dimension of size %d is not divisible by mesh axes %s (%d); replicating it.",
                      dim, axes, size)
      fitted.append(None)
    else:
      fitted.append(axis)
  return P(*fitted)


def logical_shardings(logical_specs: Any, shapes: Any, mesh: Mesh,
                      rules: Sequence[tuple[str, Optional[str]]] = STANDARD_RULES) -> Any:
  """Tree of PartitionSpec(logical names) + tree of shapes -> tree of NamedSharding on `mesh`."""
  mesh_specs = nn.logical_to_mesh(logical_specs, rules)
  return jax.tree.map(lambda spec, x: NamedSharding(mesh, _fit_spec(spec, np.shape(x), mesh)),
                      mesh_specs, shapes, is_leaf=lambda x: isinstance(x, P))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dim over 'data'."""
  return NamedSharding(mesh, P("data"))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
  """K prompts' batches [K, B, ...] (train.train_prompts): each batch's rows over 'data'."""
  return NamedSharding(mesh, P(None, "data"))


def check_batch_fits(global_batch_size: int, mesh: Mesh) -> None:
  data = mesh.shape["data"]
  if global_batch_size % data:
    raise MeshError(f"batch_size {global_batch_size} is not divisible by the mesh's data axis ({data}). "
                    f"Use a batch size that is a multiple of {data} or change mesh_shape.")


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh, stacked: bool = False) -> dict[str, jax.Array]:
  """This process's rows -> one global array per key, split over 'data' (works single- and multi-host).
  `stacked`: K batches [K, rows, ...], each split over 'data'."""
  sharding = stacked_batch_sharding(mesh) if stacked else batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def put_global(value: Any, sharding: NamedSharding) -> jax.Array:
  """The same whole host array on every process -> one global array laid out by `sharding` (each
  process fills only its own devices' shards, so it also works on a multi-host mesh). An array
  already laid out so is returned as is."""
  if isinstance(value, jax.Array) and value.sharding == sharding:
    return value
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


# ----------------------------------------------------------------------------- the frozen model on a mesh


@functools.lru_cache(maxsize=64)
def _frozen_shardings(model_config: t5.T5Config, mesh: Mesh, treedef: Any, shapes: tuple) -> Any:
  shaped = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, np.float32) for s in shapes])
  return logical_shardings(t5.logical_axes(model_config), shaped, mesh)


def frozen_shardings(model_config: t5.T5Config, params: Any, mesh: Mesh) -> Any:
  """NamedSharding of every frozen T5 param on `mesh` (logical axes of `t5.logical_axes` under
  STANDARD_RULES): the layout the trainer's step and evaluation are compiled for."""
  leaves, treedef = jax.tree.flatten(params)
  return _frozen_shardings(model_config, mesh, treedef, tuple(tuple(np.shape(x)) for x in leaves))


@dataclasses.dataclass
class _Placement:
  host: list  # weak (else strong) references to the leaves that were placed
  placed: Any  # the placed tree, returned as is

  def holds(self, leaves: Sequence[Any]) -> bool:
    return (all(ref() is x for ref, x in zip(self.host, leaves))
            or all(p is x for p, x in zip(jax.tree.leaves(self.placed), leaves)))


_PLACED: dict[tuple, _Placement] = {}


def place_frozen(params: Any, model_config: t5.T5Config, mesh: Mesh) -> Any:
  """The frozen T5 params on `mesh`, placed once per (params, mesh): later calls with the same
  params (the same leaf objects, host or already placed) return the identical placed tree.

  The trainer places the frozen model with this and evaluation asks for it again, so both use one
  set of device arrays: no host->device copy of the model per evaluation batch and no second copy
  on the devices. Identity, not content, is the key: the cache holds only weak references to the
  host leaves (an entry is dropped when they are freed), and the params are frozen, so arrays
  changed in place after placement are not seen again. Works on multi-host meshes when every
  process passes the same whole params (as the trainer does).
  """
  leaves, treedef = jax.tree.flatten(params)
  key = (model_config, mesh, treedef, tuple(id(x) for x in leaves))
  entry = _PLACED.get(key)
  if entry is not None and entry.holds(leaves):
    return entry.placed
  placed = jax.device_put(params, frozen_shardings(model_config, params, mesh))
  if all(p is x for p, x in zip(jax.tree.leaves(placed), leaves)):
    return params  # already laid out so: nothing to remember (an entry would keep them alive)
  placed_key = (model_config, mesh, treedef, tuple(id(x) for x in jax.tree.leaves(placed)))
  keys = (key, placed_key)

  def forget(_ref, keys=keys):
    for k in keys:
      _PLACED.pop(k, None)

  host = []
  for x in leaves:
    try:
      host.append(weakref.ref(x, forget))
    except TypeError:  # not weak-referenceable (e.g. a Python scalar): keep it alive instead
      host.append(lambda x=x: x)
  entry = _Placement(host, placed)
  for k in keys:
    _PLACED[k] = entry
  return placed
