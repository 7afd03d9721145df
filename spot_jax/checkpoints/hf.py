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
from typing import Any, Iterator

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


class CheckpointFormatError(errors.UserError, ValueError):
  """A checkpoint directory that spot_jax cannot read as a T5."""


# ----------------------------------------------------------------------------- safetensors reading


def _read_safetensors(path: epath.Path) -> dict[str, np.ndarray]:
  """All tensors of one .safetensors file: read-only memory maps of a local file; views of one read of
  a remote (gs://) file.

  Own reader instead of `safetensors.numpy.load_file`: that one cannot represent bfloat16 (many T5
  checkpoints are bf16) and copies everything into memory (an XXL checkpoint is 44 GB).
  """
  local = fileio.is_local(path)
  blob = None if local else path.read_bytes()
  with (open(path, "rb") if local else io.BytesIO(blob)) as f:
    header_len = int.from_bytes(f.read(8), "little")
    try:
      header = json.loads(f.read(header_len))
    except ValueError as e:
      raise CheckpointFormatError(f"{path} is not a valid safetensors file (bad header): {e}") from e
  data_start = 8 + header_len
  size = os.path.getsize(path) if local else len(blob)
  tensors = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _SAFETENSORS_DTYPES:
      raise CheckpointFormatError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}.")
    begin, end = info["data_offsets"]
    if data_start + end > size:
      raise CheckpointFormatError(
          f"{path} is truncated: tensor {name} ends at byte {data_start + end} but the file has {size}. "
          "Re-download or re-save the checkpoint.")
    dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
    count = int(np.prod(info["shape"], dtype=np.int64))
    if not count:
      tensors[name] = np.zeros(info["shape"], dtype)
    elif local:
      tensors[name] = np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin,
                                shape=(count,)).reshape(info["shape"])
    else:
      tensors[name] = np.frombuffer(blob, dtype, count, offset=data_start + begin).reshape(info["shape"])
  return tensors


def _read_weights(path: epath.Path) -> dict[str, np.ndarray]:
  single = path / _WEIGHTS_NAME
  index = path / _INDEX_NAME
  if single.exists():
    return _read_safetensors(single)
  if index.exists():
    weight_map = json.loads(index.read_text())["weight_map"]
    tensors: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
      shard_path = path / shard
      if not shard_path.exists():
        raise CheckpointFormatError(f"{index} lists shard {shard}, which is missing from {path}.")
      tensors.update(_read_safetensors(shard_path))
    return tensors
  present = sorted(p.name for p in path.iterdir())
  hint = (" It has PyTorch .bin weights: re-save them with `model.save_pretrained(dir)` "
          "(safetensors is the default) to use them here." if any(p.endswith(".bin") for p in present) else "")
  raise CheckpointFormatError(
      f"No {_WEIGHTS_NAME} or {_INDEX_NAME} in {path} (found: {present}).{hint}")


# ----------------------------------------------------------------------------- config


def config_from_hf(hf_config: dict[str, Any], untied: bool, **overrides: Any) -> t5.T5Config:
  """Translates an HF T5 config.json dict; `untied` says whether the file has `lm_head.weight`."""
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


# ----------------------------------------------------------------------------- public API


def load_hf_t5(path: str, **config_overrides: Any) -> tuple[t5.T5Config, dict]:
  """Reads a HF T5 directory (local or gs://) -> (T5Config, params as float32 numpy arrays).

  `config_overrides` set runtime options (dtype, dropout_rate, remat_policy, scan_layers); with
  `scan_layers=True` the params come in the scanned layout.
  """
  config_path = epath.Path(path) / "config.json"
  if not config_path.exists():
    raise CheckpointFormatError(f"No config.json in {path}: expected a Hugging Face T5 directory.")
  hf_config = json.loads(config_path.read_text())
  tensors = _read_weights(epath.Path(path))
  if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
    tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
  cfg = config_from_hf(hf_config, untied="lm_head.weight" in tensors, **config_overrides)
  params: dict = {}
  expected = set()
  for hf_name, ours, transpose in _name_map(cfg):
    expected.add(hf_name)
    if hf_name not in tensors:
      raise CheckpointFormatError(f"{path} lacks weight {hf_name} required by its config ({cfg}).")
    array = np.asarray(tensors[hf_name], dtype=np.float32)
    _set(params, ours, np.ascontiguousarray(array.T) if transpose else array)
  ignorable = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
  unused = sorted(set(tensors) - expected - ignorable)
  if unused:
    raise CheckpointFormatError(
        f"{path} has weights this T5 config does not use: {unused[:5]}{' ...' if len(unused) > 5 else ''}. "
        "Is config.json from the same model?")
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
