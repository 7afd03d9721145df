"""Hugging Face T5 directory <-> spot_jax params, without importing torch.

Why: the frozen backbones users have (T5 1.1, LM-adapted, original T5) are Hugging Face
directories (config.json + model.safetensors, or shards + model.safetensors.index.json). This
module maps their names and layouts onto `spot_jax.models.t5` and back, so a model can be brought
in, frozen, prompt-tuned, and written out again.

Layouts: torch Linear weights are [out, in]; ours are [in, out] (transposed). The relative
attention bias is [buckets, heads] in HF and [heads, buckets] here.

Tied vs untied output layer (see ../shared/ENVIRONMENT.md): a file with `lm_head.weight` is untied
(T5 1.1); without it the logits reuse the input embedding. The d_model**-0.5 scaling applies iff
`scale_decoder_outputs` is true (transformers 5) or, in configs without that key,
`tie_word_embeddings` is true (transformers 4: original T5 is tied and scaled).

Reading works from local directories and from `gs://` (etils.epath; a TPU pod's hosts all read the
same bucket); writing is local.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from typing import Any, Iterator, Optional

import ml_dtypes
import numpy as np
import safetensors.numpy
from etils import epath

from spot_jax import errors, fileio
from spot_jax.models import t5

_SUPPORTED_MODEL_TYPES = ("t5", "mt5")
_SUPPORTED_ARCHITECTURES = ("T5ForConditionalGeneration", "MT5ForConditionalGeneration")
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_WEIGHTS_NAME = "model.safetensors"
_INDEX_NAME = "model.safetensors.index.json"
_RESAVE = ("The directory is not a complete Hugging Face T5 save: re-save it with "
           "`model.save_pretrained(dir)` or re-download it.")
_MISMATCH = ("config.json and the weights must come from the same save: re-save the model with "
             "`model.save_pretrained(dir)` or re-download it.")
# Weights a HF T5 file may hold that the model does not use: the tied copies of the embedding, and a
# relative-attention bias old checkpoints (t5-small, t5-base) carry on the cross-attention, which
# transformers itself ignores (`_keys_to_ignore_on_load_unexpected`).
_HARMLESS_EXTRAS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")
_REQUIRED_FIELDS = ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_layers")


class CheckpointFormatError(errors.UserError, ValueError):
  """A checkpoint directory that spot_jax cannot read as a T5."""


# ----------------------------------------------------------------------------- safetensors reading


def _read_safetensors(path: epath.Path) -> dict[str, np.ndarray]:
  """All tensors of one .safetensors file: read-only memory maps of a local file; views of one read of
  a remote (gs://) file.

  Own reader instead of `safetensors.numpy.load_file`: that one cannot represent bfloat16 (many T5
  checkpoints are bf16) and copies everything into memory (an XXL checkpoint is 44 GB). A file that
  is cut short or not safetensors at all fails here with the file named, not later inside numpy.
  """
  local = fileio.is_local(path)
  try:
    blob = None if local else path.read_bytes()
    size = os.path.getsize(path) if local else len(blob)
    with (open(path, "rb") if local else io.BytesIO(blob)) as f:
      header_len = int.from_bytes(f.read(8), "little")
      if size < 8 or header_len > size - 8:
        raise CheckpointFormatError(
            f"{path} is truncated or not a safetensors file: its header claims {header_len} bytes but the "
            f"file has {size}. {_RESAVE}")
      header_bytes = f.read(header_len)
  except OSError as e:
    raise CheckpointFormatError(f"Cannot read {path}: {e}. Check that the file exists and is readable.") from e
  try:
    header = json.loads(header_bytes)
    if not isinstance(header, dict):
      raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
  except ValueError as e:
    raise CheckpointFormatError(f"{path} is not a valid safetensors file (bad header: {e}). {_RESAVE}") from e
  data_start = 8 + header_len
  tensors = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype_name, shape = info["dtype"], [int(d) for d in info["shape"]]
      begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointFormatError(
          f"{path} is not a valid safetensors file: the header entry of tensor {name} lacks dtype, shape or "
          f"data_offsets ({info!r:.200}). {_RESAVE}") from e
    if dtype_name not in _SAFETENSORS_DTYPES:
      raise CheckpointFormatError(f"{path}: tensor {name} has unsupported dtype {dtype_name}.")
    if data_start + end > size:
      raise CheckpointFormatError(
          f"{path} is truncated: tensor {name} ends at byte {data_start + end} but the file has {size}. "
          "Re-download or re-save the checkpoint.")
    dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name])
    count = int(np.prod(shape, dtype=np.int64))
    if end - begin != count * dtype.itemsize or begin < 0:
      raise CheckpointFormatError(
          f"{path} is corrupt: tensor {name} ({dtype_name}, shape {tuple(shape)}) needs "
          f"{count * dtype.itemsize} bytes but its data_offsets span {end - begin}. {_RESAVE}")
    if not count:
      tensors[name] = np.zeros(shape, dtype)
    elif local:
      tensors[name] = np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin,
                                shape=(count,)).reshape(shape)
    else:
      tensors[name] = np.frombuffer(blob, dtype, count, offset=data_start + begin).reshape(shape)
  return tensors


def _read_json(path: epath.Path, what: str) -> dict:
  """A JSON object from `path`, or a CheckpointFormatError naming the file, the error and the fix."""
  try:
    text = path.read_text()
  except OSError as e:
    raise CheckpointFormatError(f"Cannot read {path}: {e}. Check that the file exists and is readable.") from e
  except UnicodeDecodeError as e:
    raise CheckpointFormatError(f"{path} is not a text {what} file ({e}). {_RESAVE}") from e
  try:
    data = json.loads(text)
  except ValueError as e:
    raise CheckpointFormatError(f"{path} is not valid JSON ({e}); is it truncated? {_RESAVE}") from e
  if not isinstance(data, dict):
    raise CheckpointFormatError(f"{path} holds a JSON {type(data).__name__}, not the object a {what} is. {_RESAVE}")
  return data


def _read_weights(path: epath.Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """-> (tensors by HF name, the file each tensor came from), from one file or the shards of an index."""
  single = path / _WEIGHTS_NAME
  index = path / _INDEX_NAME
  if single.exists():
    tensors = _read_safetensors(single)
    return tensors, dict.fromkeys(tensors, _WEIGHTS_NAME)
  if index.exists():
    weight_map = _read_json(index, "safetensors index").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
      raise CheckpointFormatError(
          f"{index} has no weight_map of tensor name -> shard file. {_RESAVE}")
    tensors: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for shard in sorted(set(weight_map.values())):
      shard_path = path / shard
      if not shard_path.exists():
        raise CheckpointFormatError(f"{index} lists shard {shard}, which is missing from {path}. {_RESAVE}")
      shard_tensors = _read_safetensors(shard_path)
      tensors.update(shard_tensors)
      origin.update(dict.fromkeys(shard_tensors, shard))
    return tensors, origin
  present = sorted(p.name for p in path.iterdir())
  hint = (" It has PyTorch .bin weights: re-save them with `model.save_pretrained(dir)` "
          "(safetensors is the default) to use them here." if any(p.endswith(".bin") for p in present)
          else f" {_RESAVE}")
  raise CheckpointFormatError(
      f"No {_WEIGHTS_NAME} or {_INDEX_NAME} in {path} (found: {present}).{hint}")


# ----------------------------------------------------------------------------- config


def _check_supported(hf_config: dict[str, Any]) -> None:
  """A T5 encoder-decoder with a feed-forward spot_jax implements (else: which ones it does)."""
  model_type = hf_config.get("model_type")
  architectures = hf_config.get("architectures") or []
  if model_type not in _SUPPORTED_MODEL_TYPES or (
      architectures and not set(architectures) & set(_SUPPORTED_ARCHITECTURES)):
    raise CheckpointFormatError(
        f"Unsupported architecture: model_type={model_type!r}, architectures={architectures}. "
        f"spot_jax loads T5 encoder-decoders ({', '.join(_SUPPORTED_ARCHITECTURES)}).")
  feed_forward = hf_config.get("feed_forward_proj", "relu")
  if feed_forward not in ("relu", "gated-gelu"):
    raise CheckpointFormatError(
        f"Unsupported feed_forward_proj {feed_forward!r}: spot_jax implements 'gated-gelu' "
        "(T5 1.1 / LM-adapted) and 'relu' (original T5).")


def config_from_hf(hf_config: dict[str, Any], untied: bool, **overrides: Any) -> t5.T5Config:
  """Translates an HF T5 config.json dict; `untied` says whether the file has `lm_head.weight`."""
  _check_supported(hf_config)
  feed_forward = hf_config.get("feed_forward_proj", "relu")
  if "scale_decoder_outputs" in hf_config:
    scale = bool(hf_config["scale_decoder_outputs"])
  else:
    scale = bool(hf_config.get("tie_word_embeddings", True))
  num_layers = hf_config["num_layers"]
  return t5.T5Config(
      vocab_size=hf_config["vocab_size"], d_model=hf_config["d_model"], num_heads=hf_config["num_heads"],
      d_kv=hf_config["d_kv"], d_ff=hf_config["d_ff"], num_encoder_layers=num_layers,
      num_decoder_layers=hf_config.get("num_decoder_layers") or num_layers,
      relative_attention_num_buckets=hf_config.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf_config.get("relative_attention_max_distance", 128),
      feed_forward_proj=feed_forward, tie_word_embeddings=not untied, scale_decoder_outputs=scale,
      dropout_rate=hf_config.get("dropout_rate", 0.1),
      layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-6)).replace(**overrides)


def config_to_hf(cfg: t5.T5Config) -> dict[str, Any]:
  """The config.json that transformers (4.x and 5.x) reads back as the same model."""
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff,
      "num_heads": cfg.num_heads, "num_layers": cfg.num_encoder_layers,
      "num_decoder_layers": cfg.num_decoder_layers,
      "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
      "relative_attention_max_distance": cfg.relative_attention_max_distance,
      "feed_forward_proj": cfg.feed_forward_proj, "dense_act_fn": "gelu_new" if cfg.is_gated else "relu",
      "is_gated_act": cfg.is_gated, "tie_word_embeddings": cfg.tie_word_embeddings,
      "scale_decoder_outputs": cfg.scale_decoder_outputs, "dropout_rate": cfg.dropout_rate,
      "layer_norm_epsilon": cfg.layer_norm_epsilon, "is_encoder_decoder": True,
      "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
  }


# ----------------------------------------------------------------------------- name mapping


def _name_map(cfg: t5.T5Config) -> Iterator[tuple[str, tuple[str, ...], bool]]:
  """Yields (HF name, spot_jax param path, transpose?) for every parameter of `cfg`'s model."""
  mlp = ("wi_0", "wi_1", "wo") if cfg.is_gated else ("wi", "wo")
  attention = (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))
  yield "shared.weight", ("token_embedder",), False
  for stack, n, attn_names in (
      ("encoder", cfg.num_encoder_layers, (("SelfAttention", "attention", "pre_attention_layer_norm"),)),
      ("decoder", cfg.num_decoder_layers, (("SelfAttention", "self_attention", "pre_self_attention_layer_norm"),
                                           ("EncDecAttention", "encoder_decoder_attention",
                                            "pre_cross_attention_layer_norm")))):
    yield (f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
           (stack, "relpos_bias", "rel_embedding"), True)
    for i in range(n):
      block = f"{stack}.block.{i}.layer"
      ours = (stack, f"layers_{i}")
      for sub, (hf_attn, our_attn, our_norm) in enumerate(attn_names):
        for hf_proj, our_proj in attention:
          yield f"{block}.{sub}.{hf_attn}.{hf_proj}.weight", ours + (our_attn, our_proj, "kernel"), True
        yield f"{block}.{sub}.layer_norm.weight", ours + (our_norm, "scale"), False
      ff = len(attn_names)
      for name in mlp:
        yield f"{block}.{ff}.DenseReluDense.{name}.weight", ours + ("mlp", name, "kernel"), True
      yield f"{block}.{ff}.layer_norm.weight", ours + ("pre_mlp_layer_norm", "scale"), False
    yield f"{stack}.final_layer_norm.weight", (stack, f"{stack}_norm", "scale"), False
  if not cfg.tie_word_embeddings:
    yield "lm_head.weight", ("decoder", "logits_dense", "kernel"), True


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: dict, path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


# ----------------------------------------------------------------------------- checks


def _check_config_fields(hf_config: dict[str, Any], config_path: epath.Path) -> None:
  """Every size field the model needs is present and a positive integer (else the fields below would
  fail as a KeyError, or deep inside JAX)."""
  for name in _REQUIRED_FIELDS + ("num_decoder_layers", "relative_attention_num_buckets"):
    value = hf_config.get(name)
    if value is None and name not in _REQUIRED_FIELDS:
      continue
    if value is None:
      raise CheckpointFormatError(
          f"{config_path} lacks the field {name!r}, which a T5 config.json holds. {_RESAVE}")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
      raise CheckpointFormatError(
          f"{config_path}: field {name!r} is {value!r}; it must be a positive integer. {_RESAVE}")


def _expected_shape(hf_name: str, cfg: t5.T5Config) -> tuple[tuple[int, ...], str]:
  """-> (shape of `hf_name` in a HF file, in torch [out, in] layout; the config.json fields it follows)."""
  def fields(*names: str) -> str:  # T5Config uses config.json's names for these sizes
    return ", ".join(f"{n}={getattr(cfg, n)}" for n in names)
  inner = cfg.num_heads * cfg.d_kv
  last = hf_name.split(".")[-2]
  if hf_name in ("shared.weight", "lm_head.weight") or last == "embed_tokens":
    return (cfg.vocab_size, cfg.d_model), fields("vocab_size", "d_model")
  if last == "relative_attention_bias":
    return (cfg.relative_attention_num_buckets, cfg.num_heads), fields("relative_attention_num_buckets", "num_heads")
  if last in ("layer_norm", "final_layer_norm"):
    return (cfg.d_model,), fields("d_model")
  if last in ("q", "k", "v"):
    return (inner, cfg.d_model), fields("num_heads", "d_kv", "d_model")
  if last == "o":
    return (cfg.d_model, inner), fields("d_model", "num_heads", "d_kv")
  if last in ("wi", "wi_0", "wi_1"):
    return (cfg.d_ff, cfg.d_model), fields("d_ff", "d_model")
  if last == "wo":
    return (cfg.d_model, cfg.d_ff), fields("d_model", "d_ff")
  raise AssertionError(f"no expected shape for {hf_name}")  # _name_map yields only the names above


def _layer_field(hf_name: str, cfg: t5.T5Config, hf_config: dict[str, Any]) -> Optional[str]:
  """The config.json field(s) that decide whether weight `hf_name` exists (for error messages)."""
  parts = hf_name.split(".")
  if len(parts) > 2 and parts[1] == "block":
    stack = parts[0]
    field = ("num_decoder_layers" if stack == "decoder" and hf_config.get("num_decoder_layers") is not None
             else "num_layers")
    layers = cfg.num_decoder_layers if stack == "decoder" else cfg.num_encoder_layers
    text = f"{field}={layers}"
    if "DenseReluDense" in parts:
      text += f", feed_forward_proj={cfg.feed_forward_proj!r}"
    return text
  return None


def _check_weights(path: str, cfg: t5.T5Config, hf_config: dict[str, Any], tensors: dict[str, np.ndarray],
                   origin: dict[str, str]) -> None:
  """Every weight the config implies is present with the shape the config implies, and nothing else is
  there: a config.json that contradicts its weights fails here, naming the weight and the fields,
  instead of passing `model-info` and failing later inside JAX."""
  order = [hf_name for hf_name, _, _ in _name_map(cfg)]  # model order: the first mismatch is named
  expected = set(order)
  for hf_name in order:
    if hf_name not in tensors:
      hint = ""
      if hf_name.endswith(("wi_0.weight", "wi_1.weight")) and hf_name.replace(
          hf_name.split(".")[-2], "wi") in tensors:
        hint = (" The file has the ReLU feed-forward (wi) of original T5 instead: config.json's "
                "feed_forward_proj should be 'relu'.")
      elif hf_name.endswith("wi.weight") and hf_name.replace(".wi.", ".wi_0.") in tensors:
        hint = (" The file has the gated feed-forward (wi_0, wi_1) of T5 1.1 instead: config.json's "
                "feed_forward_proj should be 'gated-gelu'.")
      fields = _layer_field(hf_name, cfg, hf_config)
      required = f"which config.json ({fields}) requires" if fields else "which every T5 has"
      raise CheckpointFormatError(
          f"{path} lacks weight {hf_name}, {required}.{hint} Either config.json belongs to another model "
          f"or the weights are incomplete: {_MISMATCH}")
  for hf_name in order + [n for n in _HARMLESS_EXTRAS if n in tensors]:
    want, fields = _expected_shape(hf_name, cfg)
    have = tuple(tensors[hf_name].shape)
    if have != want:
      raise CheckpointFormatError(
          f"{hf_name} has shape {have} in {epath.Path(path) / origin.get(hf_name, _WEIGHTS_NAME)} but config.json "
          f"({fields}) implies {want}: config.json does not describe these weights (is it from another "
          f"model?). {_MISMATCH}")
  unused = sorted(set(tensors) - expected - set(_HARMLESS_EXTRAS), key=_natural_key)
  if unused:
    fields = _layer_field(unused[0], cfg, hf_config)
    listed = errors.some_of(unused, 5)
    raise CheckpointFormatError(
        f"{path} has {len(unused)} weight(s) that config.json{f' ({fields})' if fields else ''} does not "
        f"use: {listed}. Loading would silently drop them: config.json belongs to another model, or the "
        f"weights are not a T5 of this shape. {_MISMATCH}")


def _natural_key(name: str) -> list:
  """Sort key that puts block.2 before block.10 (the first unused weight named is the first in the model)."""
  return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split(".")]


# ----------------------------------------------------------------------------- public API


def load_hf_t5(path: str, **config_overrides: Any) -> tuple[t5.T5Config, dict]:
  """Reads a HF T5 directory (local or gs://) -> (T5Config, params as float32 numpy arrays).

  `config_overrides` set runtime options (dtype, dropout_rate, remat_policy, scan_layers); with
  `scan_layers=True` the params come in the scanned layout. Every weight is checked against the shape
  config.json implies before any is used, so a mismatched config fails here with a clear message.
  """
  config_path = epath.Path(path) / "config.json"
  if not config_path.exists():
    raise CheckpointFormatError(
        f"No config.json in {path}: expected a Hugging Face T5 directory (config.json + model.safetensors). "
        f"{_RESAVE}")
  hf_config = _read_json(config_path, "config.json")
  _check_supported(hf_config)
  _check_config_fields(hf_config, config_path)
  tensors, origin = _read_weights(epath.Path(path))
  cfg = config_from_hf(hf_config, untied="lm_head.weight" in tensors, **config_overrides)
  if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
    tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
    origin["shared.weight"] = origin["encoder.embed_tokens.weight"]
  _check_weights(path, cfg, hf_config, tensors, origin)
  params: dict = {}
  for hf_name, ours, transpose in _name_map(cfg):
    array = np.asarray(tensors[hf_name], dtype=np.float32)
    _set(params, ours, np.ascontiguousarray(array.T) if transpose else array)
  if cfg.scan_layers:
    params = t5.scan_params(params, cfg)
  return cfg, params


def save_hf_t5(cfg: t5.T5Config, params: dict, path: str) -> None:
  """Writes params as a HF T5 directory (config.json + model.safetensors), atomically.

  The directory is assembled next to `path` and renamed into place; an existing `path` is refused
  rather than overwritten.
  """
  if os.path.exists(path):
    raise FileExistsError(f"{path} exists; choose a new directory (nothing was overwritten).")
  if cfg.scan_layers:
    params = t5.unscan_params(params, cfg)
  tensors = {}
  for hf_name, ours, transpose in _name_map(cfg):
    array = np.asarray(_get(params, ours), dtype=np.float32)
    tensors[hf_name] = np.ascontiguousarray(array.T if transpose else array)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-hf-", dir=parent)
  try:
    safetensors.numpy.save_file(tensors, os.path.join(tmp, _WEIGHTS_NAME), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(config_to_hf(cfg), f, indent=2, sort_keys=True)
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
