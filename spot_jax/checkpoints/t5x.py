"""T5X checkpoints <-> spot_jax params: the public T5 1.1 / LM-adapted checkpoints the papers started from.

Why: the SPoT and prompt-tuning papers froze the T5X checkpoints of T5 1.1 LM-adapted
(`gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_<size>/checkpoint_1100000`). This module reads
them (and any checkpoint t5x writes for a T5 of `spot_jax.models.t5`'s shape) without t5x itself.

Two layouts, both written by google-research/t5x `t5x/checkpoints.py`:
- tensorstore layout: `checkpoint_<step>/checkpoint` is a msgpack file (flax.serialization) of
  `{'version': 3, 'optimizer': {'target': params, 'state': {'step', 'param_states'}}}`; a large array's
  leaf is a tensorstore spec (a dict `{'driver': 'zarr', 'kvstore': {'path': 'target.encoder.…'}, …}`)
  whose path is relative to the checkpoint directory, a small array's leaf is the array itself.
  Version 0 files hold the optimizer dict at the top; versions <= 2 stored bfloat16 as uint16.
- Orbax layout: `checkpoint_<step>/state/` is an Orbax PyTree checkpoint (OCDBT) of
  `{'target': params, 'state': …}` (also accepted: a PyTree directory holding the params at the top).
Only `target` is read; optimizer state (`param_states`) is skipped.

Names: t5x's are spot_jax's (`encoder/layers_0/attention/query/kernel`, `…/mlp/wi_0/kernel`,
`encoder/relpos_bias/rel_embedding` [heads, buckets], `decoder/logits_dense/kernel`, …) except the
embedding, `token_embedder/embedding` here and `token_embedder` in spot_jax. Attention kernels are
[d_model, heads*d_kv] (t5x's "joined_kv"; `out` is [heads*d_kv, d_model]); checkpoints that keep the
heads axis ([d_model, heads, d_kv], [heads, d_kv, d_model]) are reshaped (C order, as t5x's
DenseGeneral does). T5X's T5 has no 1/sqrt(d_kv) in attention (folded into the query init), like Hugging
Face's, so the weights map one to one. No `logits_dense` = original T5: tied output layer, scaled by
d_model**-0.5. relative_attention_max_distance is not stored: 128, the value of every T5.

Paths are local or `gs://`: small files go through etils.epath, arrays through tensorstore (its
`gcs` kvstore driver for `gs://`, directly and inside Orbax). Arrays keep the dtype they were stored in
unless `param_dtype` asks for a cast. Writing (`save_t5x_t5`, `convert`) is local.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import shutil
import tempfile
from typing import Any, Optional

import jax
import ml_dtypes
import numpy as np
from etils import epath

from spot_jax import errors, fileio
from spot_jax.checkpoints import hf
from spot_jax.checkpoints.hf import CheckpointFormatError
from spot_jax.models import t5

MSGPACK = "tensorstore"  # t5x's `checkpoint` msgpack file + one zarr array per parameter
ORBAX = "orbax"  # t5x's Orbax/OCDBT `state/` directory
_MSGPACK_FILE = "checkpoint"
_ORBAX_STATE = "state"
_ORBAX_MARKERS = ("_METADATA", "manifest.ocdbt")
_STEP_DIR = re.compile(r"checkpoint_(\d+)")
_ATTENTION = {"attention", "self_attention", "encoder_decoder_attention"}
_HOW = ("Point the path at a t5x checkpoint directory (e.g. gs://t5-data/pretrained_models/t5x/"
        "t5_1_1_lm100k_base/checkpoint_1100000), the `checkpoint` file in it, or the model directory above it.")


class ConvertError(errors.UserError, ValueError):
  """A `convert` destination or source that cannot be used."""


Name = tuple[str, ...]  # a parameter's path under `target`, e.g. ('encoder', 'layers_0', 'mlp', 'wo', 'kernel')


@dataclasses.dataclass(frozen=True)
class Location:
  """A T5X checkpoint found on disk: its layout and the directory that holds it."""

  layout: str  # MSGPACK or ORBAX
  directory: str  # checkpoint_<step>/ (tensorstore layout) or the Orbax PyTree directory (.../state)


# ----------------------------------------------------------------------------- finding the checkpoint


def _is_file(path: epath.Path) -> bool:
  return path.exists() and not path.is_dir()


def _layout_of(directory: epath.Path) -> Optional[Location]:
  """The layout held directly in `directory` (or its Orbax `state/`), or None."""
  state = directory / _ORBAX_STATE
  if state.is_dir() and any(_is_file(state / m) for m in _ORBAX_MARKERS):
    return Location(ORBAX, os.fspath(state))
  if any(_is_file(directory / m) for m in _ORBAX_MARKERS):
    return Location(ORBAX, os.fspath(directory))
  if _is_file(directory / _MSGPACK_FILE):
    return Location(MSGPACK, os.fspath(directory))
  return None


def locate(path: str) -> Location:
  """Finds the checkpoint at `path`: a checkpoint_<step> directory, its `checkpoint` file, an Orbax
  `state/` directory, or a model directory (its highest checkpoint_<step> is taken)."""
  p = epath.Path(path)
  try:
    if not p.exists():
      raise CheckpointFormatError(f"{path} does not exist. {_HOW}")
    if not p.is_dir():
      if p.name == _MSGPACK_FILE:
        return Location(MSGPACK, os.fspath(p.parent))
      raise CheckpointFormatError(f"{path} is a file, not a T5X checkpoint directory. {_HOW}")
    found = _layout_of(p)
    if found:
      return found
    children = sorted(c.name for c in p.iterdir())
    steps = sorted((int(m.group(1)), n) for n in children if (m := _STEP_DIR.fullmatch(n)))
    for _, name in reversed(steps):
      found = _layout_of(p / name)
      if found:
        return found
  except OSError as e:
    raise CheckpointFormatError(f"Cannot read {path}: {e}. Check that it exists and is readable.") from e
  shown = errors.some_of(children, 8)
  raise CheckpointFormatError(
      f"{path} is not a T5X checkpoint: it has no `checkpoint` msgpack file (t5x's tensorstore layout), no "
      f"Orbax `state/` directory (t5x's Orbax layout) and no checkpoint_<step> directory holding either "
      f"(found: {shown or 'nothing'}). {_HOW}")


def is_t5x_checkpoint(path: str) -> bool:
  """True iff `path` (local or gs://) holds a T5X checkpoint in either layout (see `locate`)."""
  try:
    locate(path)
  except CheckpointFormatError:
    return False
  return True


# ----------------------------------------------------------------------------- reading: tensorstore layout


def _kvstore(directory: str, relative: str) -> dict[str, Any]:
  """Tensorstore kvstore of `relative` (a parameter's array directory) under checkpoint `directory`."""
  if directory.startswith("gs://"):
    bucket, _, prefix = directory[len("gs://"):].partition("/")
    return {"driver": "gcs", "bucket": bucket, "path": posixpath.join(prefix, relative).rstrip("/") + "/"}
  if not fileio.is_local(directory):
    raise CheckpointFormatError(f"{directory}: only local paths and gs:// are supported for T5X checkpoints.")
  return {"driver": "file", "path": os.path.join(os.path.abspath(directory), relative).rstrip("/") + "/"}


def _is_spec(leaf: Any) -> bool:
  return isinstance(leaf, dict) and "driver" in leaf


def _flatten(tree: Any, prefix: Name = ()) -> dict[Name, Any]:
  """Nested dicts -> {path: leaf}; a tensorstore spec (a dict with 'driver') is a leaf."""
  if not isinstance(tree, dict) or _is_spec(tree):
    return {prefix: tree}
  out = {}
  for key, value in tree.items():
    out.update(_flatten(value, prefix + (str(key),)))
  return out


def _set(tree: dict, path: Name, value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: dict, path: Name) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _dtype(name: str) -> np.dtype:
  return np.dtype(ml_dtypes.bfloat16) if name in ("bfloat16", "bf16") else np.dtype(name)


def _params_subtree(tree: Any, where: str) -> dict:
  """The parameters of a t5x state dict: its 'target' (or 'params'), or the tree itself if it is one."""
  if isinstance(tree, dict):
    for key in ("target", "params"):
      if isinstance(tree.get(key), dict):
        return tree[key]
    if "token_embedder" in tree or "encoder" in tree:
      return tree
  keys = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
  raise CheckpointFormatError(
      f"{where} has no 'target' parameters (top-level keys: {keys}): not a T5X checkpoint of a model.")


class _MsgpackReader:
  """Parameter shapes/dtypes from the msgpack file; arrays read from tensorstore (or inline)."""

  def __init__(self, directory: str):
    from flax import serialization
    self.directory = directory
    file = epath.Path(directory) / _MSGPACK_FILE
    try:
      contents = serialization.msgpack_restore(file.read_bytes())
    except OSError as e:
      raise CheckpointFormatError(f"Cannot read {file}: {e}.") from e
    except Exception as e:  # msgpack raises its own types for a truncated or foreign file
      raise CheckpointFormatError(
          f"{file} is not a t5x msgpack checkpoint file ({type(e).__name__}: {e}); is it truncated?") from e
    if not isinstance(contents, dict):
      raise CheckpointFormatError(f"{file} is not a t5x checkpoint file (it holds a {type(contents).__name__}).")
    self.version = int(contents.get("version", 0) or 0)
    optimizer = contents.get("optimizer", contents) if self.version else contents
    self.leaves = _flatten(_params_subtree(optimizer, str(file)))
    self.info: dict[Name, tuple[tuple[int, ...], np.dtype]] = {}
    for name, leaf in self.leaves.items():
      if _is_spec(leaf):
        try:
          shape = tuple(int(d) for d in leaf["metadata"]["shape"])
          dtype = _dtype(leaf.get("dtype") or leaf["metadata"]["dtype"])
        except (KeyError, TypeError, ValueError) as e:
          raise CheckpointFormatError(
              f"{file}: the tensorstore spec of {'/'.join(name)} lacks a shape or dtype ({leaf!r:.300}).") from e
        if dtype == np.uint16 and self.version <= 2:  # t5x before version 3 wrote bfloat16 as uint16
          dtype = np.dtype(ml_dtypes.bfloat16)
        self.info[name] = (shape, dtype)
      elif isinstance(leaf, np.ndarray) or np.isscalar(leaf):
        array = np.asarray(leaf)
        self.info[name] = (array.shape, array.dtype)
      else:
        raise CheckpointFormatError(
            f"{file}: parameter {'/'.join(name)} is neither an array nor a tensorstore spec ({leaf!r:.200}).")

  def _spec(self, name: Name) -> dict[str, Any]:
    leaf = self.leaves[name]
    relative = (leaf.get("kvstore") or {}).get("path") or leaf.get("path")
    if not relative:
      raise CheckpointFormatError(
          f"{self.directory}: the tensorstore spec of {'/'.join(name)} has no path ({leaf!r:.300}).")
    stored = leaf.get("dtype") or leaf["metadata"].get("dtype")
    spec = {"driver": leaf.get("driver", "zarr"), "kvstore": _kvstore(self.directory, relative)}
    if stored and not str(stored).startswith(("<", ">", "|")):
      spec["dtype"] = stored
    return spec

  def read(self) -> dict[Name, np.ndarray]:
    import tensorstore as ts
    context = ts.Context({"file_io_concurrency": {"limit": 64}})
    opened = {}
    for name, leaf in self.leaves.items():
      if _is_spec(leaf):
        opened[name] = ts.open(self._spec(name), open=True, read=True, context=context)
    out = {name: np.asarray(leaf) for name, leaf in self.leaves.items() if not _is_spec(leaf)}
    pending = {}
    for name, future in opened.items():
      try:
        pending[name] = future.result().read()
      except Exception as e:  # tensorstore's errors are ValueError-like with the missing key in the text
        raise CheckpointFormatError(
            f"Cannot open the array of {'/'.join(name)} in {self.directory} ({e}). The checkpoint is incomplete: "
            "copy the whole checkpoint directory (the `checkpoint` file and every `target.*` directory).") from e
    for name, future in pending.items():
      array = np.asarray(future.result())
      if array.dtype == np.uint16 and self.info[name][1] == ml_dtypes.bfloat16:
        array = array.view(ml_dtypes.bfloat16)
      out[name] = array
    return out


# ----------------------------------------------------------------------------- reading: Orbax layout


class _OrbaxReader:
  """Parameter shapes/dtypes from Orbax's metadata; only the parameters are restored."""

  def __init__(self, directory: str):
    import orbax.checkpoint as ocp
    self.directory = directory
    self.handler = ocp.PyTreeCheckpointHandler()  # not a Checkpointer: no step metadata to warn about here
    try:
      tree = self.handler.metadata(epath.Path(directory)).tree
    except Exception as e:  # Orbax raises assorted types for a missing or foreign directory
      raise CheckpointFormatError(f"{directory} is not a readable Orbax checkpoint ({type(e).__name__}: {e}).") from e
    self.root_key = next((k for k in ("target", "params") if isinstance(tree, dict) and isinstance(tree.get(k), dict)),
                         None)
    params = _params_subtree(tree, directory)
    self.metadata = _flatten(params)
    try:
      self.info = {name: (tuple(m.shape), np.dtype(m.dtype)) for name, m in self.metadata.items()}
    except (AttributeError, TypeError) as e:
      bad = next(n for n, m in self.metadata.items() if not hasattr(m, "shape"))
      raise CheckpointFormatError(f"{directory}: parameter {'/'.join(bad)} is not an array ({self.metadata[bad]!r:.200}).") from e

  def read(self) -> dict[Name, np.ndarray]:
    import orbax.checkpoint as ocp
    item, restore_args = {}, {}
    for name, (shape, dtype) in self.info.items():
      _set(item, name, jax.ShapeDtypeStruct(shape, dtype))
      _set(restore_args, name, ocp.RestoreArgs(restore_type=np.ndarray))
    if self.root_key:
      item, restore_args = {self.root_key: item}, {self.root_key: restore_args}
    try:
      restored = self.handler.restore(
          epath.Path(self.directory),
          args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True))
    except Exception as e:
      raise CheckpointFormatError(f"Cannot restore the parameters of {self.directory} "
                                  f"({type(e).__name__}: {e}). Is the checkpoint complete?") from e
    finally:
      self.handler.close()
    if self.root_key:
      restored = restored[self.root_key]
    return {name: np.asarray(_get(restored, name)) for name in self.info}


# ----------------------------------------------------------------------------- names, shapes, config


def _ours(name: Name) -> tuple[str, ...]:
  """t5x parameter name -> spot_jax param path (only the embedding differs)."""
  return ("token_embedder",) if name == ("token_embedder", "embedding") else name


def _joined_attention(name: Name) -> Optional[str]:
  """'in' for a query/key/value kernel, 'out' for an out kernel, None for any other parameter."""
  if len(name) >= 3 and name[-3] in _ATTENTION and name[-1] == "kernel":
    return "out" if name[-2] == "out" else "in"
  return None


def expected_shapes(cfg: t5.T5Config) -> dict[Name, tuple[int, ...]]:
  """Every parameter of `cfg`'s model under its t5x name, with its shape (attention kernels joined)."""
  inner = cfg.num_heads * cfg.d_kv
  mlp = ({"wi_0": (cfg.d_model, cfg.d_ff), "wi_1": (cfg.d_model, cfg.d_ff)} if cfg.is_gated
         else {"wi": (cfg.d_model, cfg.d_ff)})
  mlp["wo"] = (cfg.d_ff, cfg.d_model)
  shapes: dict[Name, tuple[int, ...]] = {("token_embedder", "embedding"): (cfg.vocab_size, cfg.d_model)}
  stacks = (("encoder", cfg.num_encoder_layers, ("attention",), ("pre_attention_layer_norm",)),
            ("decoder", cfg.num_decoder_layers, ("self_attention", "encoder_decoder_attention"),
             ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm")))
  for stack, layers, attentions, norms in stacks:
    shapes[(stack, "relpos_bias", "rel_embedding")] = (cfg.num_heads, cfg.relative_attention_num_buckets)
    for i in range(layers):
      layer = (stack, f"layers_{i}")
      for attention in attentions:
        for proj in ("query", "key", "value"):
          shapes[layer + (attention, proj, "kernel")] = (cfg.d_model, inner)
        shapes[layer + (attention, "out", "kernel")] = (inner, cfg.d_model)
      for norm in norms + ("pre_mlp_layer_norm",):
        shapes[layer + (norm, "scale")] = (cfg.d_model,)
      for proj, shape in mlp.items():
        shapes[layer + ("mlp", proj, "kernel")] = shape
    shapes[(stack, f"{stack}_norm", "scale")] = (cfg.d_model,)
  if not cfg.tie_word_embeddings:
    shapes[("decoder", "logits_dense", "kernel")] = (cfg.d_model, cfg.vocab_size)
  return shapes


def _shape_ok(name: Name, have: tuple[int, ...], want: tuple[int, ...], cfg: t5.T5Config) -> bool:
  if have == want:
    return True
  joined = _joined_attention(name)
  if joined == "in":  # t5x DenseGeneral with the heads axis kept: [d_model, heads, d_kv]
    return have == (cfg.d_model, cfg.num_heads, cfg.d_kv)
  if joined == "out":
    return have == (cfg.num_heads, cfg.d_kv, cfg.d_model)
  return False


def _show(name: Name) -> str:
  return "target/" + "/".join(name)


def infer_config(shapes: dict[Name, tuple[int, ...]], where: str, **runtime: Any) -> t5.T5Config:
  """The T5Config implied by the parameters' shapes (t5x names -> shapes); `runtime` sets dtype etc."""
  def dims(name: Name, ndims: tuple[int, ...]) -> tuple[int, ...]:
    if name not in shapes:
      hint = ""
      if name[1:2] == ("layers_0",) and any(n[:2] == (name[0], "layers") for n in shapes):
        hint = (" It has scanned layers (`layers` with a stacked axis), which spot_jax does not read: "
                "export the checkpoint from t5x with unscanned layers.")
      raise CheckpointFormatError(
          f"{where} lacks parameter {_show(name)}, which every T5 has: it is not a T5 checkpoint of the "
          f"t5x network.py layout (parameters found: {', '.join(_show(n) for n in sorted(shapes)[:6])}, ...).{hint}")
    if len(shapes[name]) not in ndims:
      raise CheckpointFormatError(
          f"{_show(name)} in {where} has shape {shapes[name]}; a T5 has {ndims[0]} dimensions there.")
    return shapes[name]

  vocab, d_model = dims(("token_embedder", "embedding"), (2,))
  heads, buckets = dims(("encoder", "relpos_bias", "rel_embedding"), (2,))
  query = dims(("encoder", "layers_0", "attention", "query", "kernel"), (2, 3))
  inner = query[1] if len(query) == 2 else query[1] * query[2]
  if inner % heads:
    raise CheckpointFormatError(
        f"{_show(('encoder', 'layers_0', 'attention', 'query', 'kernel'))} in {where} has shape {query}, which "
        f"does not split into the {heads} heads of encoder/relpos_bias/rel_embedding {shapes[('encoder', 'relpos_bias', 'rel_embedding')]}.")
  gated = ("encoder", "layers_0", "mlp", "wi_0", "kernel") in shapes
  d_ff = dims(("encoder", "layers_0", "mlp", "wi_0" if gated else "wi", "kernel"), (2,))[1]

  def layers(stack: str) -> int:
    found = [int(m.group(1)) for n in shapes if n[0] == stack and (m := re.fullmatch(r"layers_(\d+)", n[1]))]
    return max(found) + 1 if found else 0

  return t5.T5Config(
      vocab_size=vocab, d_model=d_model, num_heads=heads, d_kv=inner // heads, d_ff=d_ff,
      num_encoder_layers=layers("encoder"), num_decoder_layers=layers("decoder"),
      relative_attention_num_buckets=buckets, feed_forward_proj="gated-gelu" if gated else "relu",
      tie_word_embeddings=("decoder", "logits_dense", "kernel") not in shapes,
      scale_decoder_outputs=("decoder", "logits_dense", "kernel") not in shapes).replace(**runtime)


def check_shapes(cfg: t5.T5Config, shapes: dict[Name, tuple[int, ...]], where: str) -> None:
  """Every parameter `cfg` implies is there with its shape, and nothing else: else one error naming the
  first parameter (model order) that is missing, has another shape, or is not used."""
  expected = expected_shapes(cfg)
  fields = (f"vocab_size={cfg.vocab_size}, d_model={cfg.d_model}, num_heads={cfg.num_heads}, d_kv={cfg.d_kv}, "
            f"d_ff={cfg.d_ff}, layers={cfg.num_encoder_layers}/{cfg.num_decoder_layers}, "
            f"feed_forward_proj={cfg.feed_forward_proj!r}, tie_word_embeddings={cfg.tie_word_embeddings}")
  for name, want in expected.items():
    if name not in shapes:
      raise CheckpointFormatError(
          f"{where} lacks parameter {_show(name)} (shape {want}), which the model ({fields}) requires: the "
          "checkpoint is incomplete or belongs to a model of another shape.")
    if not _shape_ok(name, shapes[name], want, cfg):
      raise CheckpointFormatError(
          f"{_show(name)} has shape {shapes[name]} in {where} but the model ({fields}) needs {want}.")
  unused = sorted(set(shapes) - set(expected))
  if unused:
    listed = errors.some_of([_show(n) for n in unused], 5)
    raise CheckpointFormatError(
        f"{where} has {len(unused)} parameter(s) that the model ({fields}) does not use: {listed}. Loading "
        "would silently drop them: the checkpoint is not a T5 of this shape.")


# ----------------------------------------------------------------------------- public API


def load_t5x_t5(path: str, *, dtype: Optional[str] = None, dropout_rate: Optional[float] = None,
                config: Optional[t5.T5Config] = None, param_dtype: Optional[str] = None
                ) -> tuple[t5.T5Config, dict]:
  """Reads a T5X checkpoint (either layout, local or gs://) -> (T5Config, params as numpy arrays).

  The config is inferred from the parameters' shapes unless `config` is given (then the checkpoint must
  match it). `dtype` (activations) and `dropout_rate` override the config's (default float32, 0.1).
  Arrays keep their stored dtype (float32 or bfloat16) unless `param_dtype` names one to cast to.
  Every parameter is checked against the config before any array is read.
  """
  location = locate(path)
  reader = (_MsgpackReader if location.layout == MSGPACK else _OrbaxReader)(location.directory)
  where = f"the T5X checkpoint {location.directory}"
  shapes = {name: shape for name, (shape, _) in reader.info.items()}
  runtime = {"dtype": dtype or (config.dtype if config else "float32"),
             "dropout_rate": dropout_rate if dropout_rate is not None else (config.dropout_rate if config else 0.1)}
  cfg = config.replace(**runtime) if config else infer_config(shapes, where, **runtime)
  check_shapes(cfg, shapes, where)
  cast = np.dtype(ml_dtypes.bfloat16) if param_dtype == "bfloat16" else (np.dtype(param_dtype) if param_dtype else None)
  params: dict = {}
  for name, array in reader.read().items():
    if tuple(array.shape) != shapes[name]:
      raise CheckpointFormatError(
          f"{_show(name)} in {where}: its array has shape {array.shape} but the checkpoint's metadata says "
          f"{shapes[name]}; the checkpoint is corrupt.")
    joined = _joined_attention(name)
    if joined and array.ndim == 3:
      array = array.reshape((array.shape[0], -1) if joined == "in" else (-1, array.shape[-1]))
    if cast is not None and array.dtype != cast:
      array = array.astype(cast)
    _set(params, _ours(name), np.ascontiguousarray(array))
  if cfg.scan_layers:
    params = t5.scan_params(params, cfg)
  return cfg, params


def save_t5x_t5(cfg: t5.T5Config, params: dict, path: str, *, step: int = 0) -> str:
  """Writes params in t5x's Orbax layout: `path/checkpoint_<step>/state/` holding
  {'target': params under t5x names, 'state': {'step': step}} (no optimizer state). Local only; the
  directory is assembled next to `path` and renamed into place; an existing `path` is refused.
  -> the checkpoint_<step> directory."""
  import orbax.checkpoint as ocp
  if not fileio.is_local(path):
    raise CheckpointFormatError(f"{path}: T5X checkpoints are written to local directories only; copy it after.")
  if os.path.exists(path):
    raise FileExistsError(f"{path} exists; choose a new directory (nothing was overwritten).")
  if cfg.scan_layers:
    params = t5.unscan_params(params, cfg)
  target: dict = {}
  for name in expected_shapes(cfg):
    _set(target, name, np.asarray(_get(params, _ours(name))))
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-t5x-", dir=parent)
  try:
    manager = ocp.CheckpointManager(tmp, item_names=(_ORBAX_STATE,),
                                    options=ocp.CheckpointManagerOptions(step_prefix="checkpoint"))
    state = {"target": target, "state": {"step": np.asarray(step, np.int32)}}
    manager.save(step, args=ocp.args.Composite(**{_ORBAX_STATE: ocp.args.PyTreeSave(state)}))
    manager.wait_until_finished()
    manager.close()
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return os.path.join(path, f"checkpoint_{step}")


def convert(source: str, destination: str) -> str:
  """T5X checkpoint -> Hugging Face T5 directory (float32 safetensors), or Hugging Face directory -> T5X
  (Orbax layout), by what `source` is. `destination` must be new (or an empty directory) and local.
  -> one line saying what was written."""
  if not fileio.is_local(destination):
    raise ConvertError(f"--to={destination}: convert writes to a local directory; copy the result to the "
                       "bucket afterwards (e.g. `gcloud storage cp -r`).")
  if os.path.exists(destination) and (not os.path.isdir(destination) or os.listdir(destination)):
    raise ConvertError(f"--to={destination} exists and is not empty; choose a new directory (nothing was written).")
  if is_t5x_checkpoint(source):
    location = locate(source)
    cfg, params = load_t5x_t5(source)
    _remove_if_empty(destination)
    hf.save_hf_t5(cfg, params, destination)
    return (f"wrote the Hugging Face T5 directory {destination} (float32 safetensors; {_describe(cfg)}) from the "
            f"T5X checkpoint {location.directory} ({location.layout} layout)")
  if (epath.Path(source) / "config.json").exists():
    cfg, params = hf.load_hf_t5(source)
    _remove_if_empty(destination)
    written = save_t5x_t5(cfg, params, destination)
    return f"wrote the T5X checkpoint {written} (Orbax layout; {_describe(cfg)}) from the Hugging Face directory {source}"
  try:
    locate(source)
  except CheckpointFormatError as e:
    raise ConvertError(f"--from={source} is neither a T5X checkpoint nor a Hugging Face T5 directory "
                       f"(no config.json): {e}") from None
  raise AssertionError("unreachable: is_t5x_checkpoint and locate disagree")


def _remove_if_empty(path: str) -> None:
  if os.path.isdir(path) and not os.listdir(path):
    os.rmdir(path)


def _describe(cfg: t5.T5Config) -> str:
  return (f"d_model {cfg.d_model}, {cfg.num_heads} heads x {cfg.d_kv}, d_ff {cfg.d_ff}, "
          f"{cfg.num_encoder_layers}+{cfg.num_decoder_layers} layers, vocab {cfg.vocab_size}, {cfg.feed_forward_proj}")
