"""T5 1.1 / LM-adapted (and original T5) encoder-decoder in flax.linen.

Why this exists: spot_jax keeps T5 frozen and trains only a soft prompt, so it needs a T5 that
(1) matches Hugging Face's `T5ForConditionalGeneration` numerically (the parity reference),
(2) names every parameter and main activation with t5x logical axes so `spot_jax.sharding` can
shard it on any `(data, model)` mesh without the model knowing about devices, and
(3) accepts prefix embeddings in the encoder (the soft prompt) without any prompt code here.

Call signature is the t5x one:
  logits = T5(cfg).apply({'params': p}, encoder_input_tokens, decoder_input_tokens,
                         decoder_target_tokens, enable_dropout=False)   # [batch, target_len, vocab]
Token id 0 is padding: padded encoder keys are masked everywhere; padded decoder keys are masked
(derived from `decoder_target_tokens > 0`), on top of the causal mask.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spot_jax.models.dropout import Dropout

Array = jax.Array
NEG_INF = -1e10  # additive mask value (t5x); exp() of it underflows to exactly 0 in fp32.

_FEED_FORWARD_KINDS = ("gated-gelu", "relu")
_REMAT_POLICIES = ("none", "full", "minimal")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Shapes and numerics of one T5. Defaults are T5 1.1 small."""

  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 6
  d_kv: int = 64
  d_ff: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  # "gated-gelu": T5 1.1 / LM-adapted (gelu(x W_0) * (x W_1)) W_o; "relu": original T5.
  feed_forward_proj: str = "gated-gelu"
  # Tied: logits = h @ embedding.T (original T5). Untied: a separate `logits_dense` (T5 1.1).
  tie_word_embeddings: bool = False
  # Multiply the final decoder hidden state by d_model**-0.5 before the (tied) logits: original T5.
  scale_decoder_outputs: bool = False
  dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"  # activation dtype ("float32" or "bfloat16"); params are always float32
  remat_policy: str = "none"  # "none" | "full" (save nothing) | "minimal" (save matmul outputs)
  scan_layers: bool = False  # nn.scan over layers: params get a leading 'layers' axis

  def __post_init__(self):
    if self.feed_forward_proj not in _FEED_FORWARD_KINDS:
      raise ValueError(
          f"Unsupported feed_forward_proj {self.feed_forward_proj!r}; spot_jax implements "
          f"{_FEED_FORWARD_KINDS} (T5 1.1 and original T5).")
    if self.remat_policy not in _REMAT_POLICIES:
      raise ValueError(f"Unknown remat_policy {self.remat_policy!r}; choose one of {_REMAT_POLICIES}.")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"Unknown activation dtype {self.dtype!r}; choose 'float32' or 'bfloat16'.")

  def replace(self, **changes: Any) -> "T5Config":
    return dataclasses.replace(self, **changes)

  @property
  def is_gated(self) -> bool:
    return self.feed_forward_proj.startswith("gated")


# T5 1.1 shapes: (d_model, num_heads, layers per stack, d_ff); head dim 64, vocab 32128.
_T5_1_1_SHAPES = {
    "small": (512, 6, 8, 1024),
    "base": (768, 12, 12, 2048),
    "large": (1024, 16, 24, 2816),
    "xl": (2048, 32, 24, 5120),
    "xxl": (4096, 64, 24, 10240),
}
# Original T5 shapes (ReLU, tied embeddings, d_ff = 4 d_model).
_T5_ORIGINAL_SHAPES = {"small": (512, 8, 6, 2048), "base": (768, 12, 12, 3072), "large": (1024, 16, 24, 4096)}


def _presets() -> dict[str, T5Config]:
  presets = {}
  for size, (d_model, heads, layers, d_ff) in _T5_1_1_SHAPES.items():
    cfg = T5Config(d_model=d_model, num_heads=heads, d_kv=64, d_ff=d_ff,
                   num_encoder_layers=layers, num_decoder_layers=layers)
    presets[f"t5_1_1_{size}"] = cfg
    presets[f"t5_1_1_lm_adapt_{size}"] = cfg  # LM-adapted = same shapes, other weights
  for size, (d_model, heads, layers, d_ff) in _T5_ORIGINAL_SHAPES.items():
    presets[f"t5_{size}"] = T5Config(
        d_model=d_model, num_heads=heads, d_kv=64, d_ff=d_ff, num_encoder_layers=layers,
        num_decoder_layers=layers, feed_forward_proj="relu", tie_word_embeddings=True,
        scale_decoder_outputs=True)
  # Tests, the offline quickstart and benchmarks: T5 1.1 layout at toy size.
  presets["tiny"] = T5Config(d_model=128, num_heads=4, d_kv=32, d_ff=256,
                             num_encoder_layers=2, num_decoder_layers=2)
  return presets


PRESETS: dict[str, T5Config] = _presets()


def get_config(name: str, **overrides: Any) -> T5Config:
  """Returns the preset `name` (e.g. 't5_1_1_base', 't5_1_1_lm_adapt_xxl', 'tiny') with overrides."""
  if name not in PRESETS:
    raise ValueError(f"Unknown T5 preset {name!r}. Available: {', '.join(sorted(PRESETS))}.")
  return PRESETS[name].replace(**overrides)


# ----------------------------------------------------------------------------- relative positions


@functools.lru_cache(maxsize=None)
def _bucket_table(bidirectional: bool, num_buckets: int, max_distance: int) -> np.ndarray:
  """Bucket of every relative position in [-max_distance, max_distance] (index rp + max_distance).

  Mirrors Hugging Face's `_relative_position_bucket` in float32 (no epsilon: that is what the
  released checkpoints were trained with). Beyond +-max_distance the bucket saturates, so callers
  clip relative positions into this range and look the bucket up.
  """
  rp = np.arange(-max_distance, max_distance + 1, dtype=np.int64)
  buckets = np.zeros_like(rp)
  if bidirectional:
    num_buckets //= 2
    buckets += (rp > 0).astype(np.int64) * num_buckets
    rp = np.abs(rp)
  else:
    rp = -np.minimum(rp, 0)
  max_exact = num_buckets // 2
  is_small = rp < max_exact
  with np.errstate(divide="ignore"):
    scaled = (np.log(rp.astype(np.float32) / np.float32(max_exact))
              / np.float32(np.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
  large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
  large = np.minimum(large, num_buckets - 1)
  return (buckets + np.where(is_small, rp, large)).astype(np.int32)


def relative_position_bucket(relative_position: Array, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
  """T5 bucket of `relative_position` = key_position - query_position (any int shape)."""
  table = jnp.asarray(_bucket_table(bidirectional, num_buckets, max_distance))
  rp = jnp.clip(relative_position, -max_distance, max_distance)
  return table[rp + max_distance]


class RelativePositionBias(nn.Module):
  """One bias table per stack [heads, buckets]; computed once per stack and shared by its layers."""

  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, query_positions: Array, key_positions: Array) -> Array:
    """[q] and [k] int positions -> additive bias [1, heads, q, k] (float32)."""
    cfg = self.config
    table = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(nn.initializers.normal(cfg.d_model**-0.5), ("heads", "relpos_buckets")),
        (cfg.num_heads, cfg.relative_attention_num_buckets), jnp.float32)
    buckets = relative_position_bucket(
        key_positions[None, :] - query_positions[:, None], bidirectional=self.bidirectional,
        num_buckets=cfg.relative_attention_num_buckets, max_distance=cfg.relative_attention_max_distance)
    return jnp.take(table, buckets, axis=1)[None]  # [1, heads, q, k]


# ----------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
  """T5 layer norm: scale only, no mean subtraction, no bias; computed in float32."""

  epsilon: float
  dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    return (x32 * scale).astype(self.dtype)


class Dense(nn.Module):
  """Bias-free linear layer whose kernel [in, out] carries logical axis names."""

  features: int
  axes: tuple[str, str]
  init_std: float
  dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(self.init_std), self.axes),
                        (x.shape[-1], self.features), jnp.float32)
    return jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))


class MultiHeadAttention(nn.Module):
  """T5 attention: no 1/sqrt(d) scaling (folded into the query init), additive biases.

  With `decode=True` it keeps a KV cache (`cache` collection): the first call (with the full-length
  decoder input) only creates zeroed buffers; each later call takes one token [batch, 1, d_model]
  and writes its key/value at `decode_position`.
  """

  config: T5Config
  enable_dropout: bool = False
  decode: bool = False

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, bias: Array, mask_bias: Array,
               decode_position: Optional[Array] = None) -> Array:
    """inputs [B, q, d], [B, k, d]; bias [1|B, H, q, k]; mask_bias [B, 1, q|1, k] -> [B, q, d]."""
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    inner = cfg.num_heads * cfg.d_kv

    def project(name, x, std):
      y = Dense(inner, ("embed", "joined_kv"), std, dtype, name=name)(x)
      y = y.reshape(y.shape[:2] + (cfg.num_heads, cfg.d_kv))
      return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))

    query = project("query", inputs_q, (cfg.d_model * cfg.d_kv)**-0.5)
    key = project("key", inputs_kv, cfg.d_model**-0.5)
    value = project("value", inputs_kv, cfg.d_model**-0.5)

    if self.decode:
      initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      if initialized:
        start = (0, decode_position, 0, 0)
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
        key, value = cached_key.value, cached_value.value

    scores = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32)
    weights = jax.nn.softmax(scores + bias + mask_bias, axis=-1).astype(dtype)
    if self.enable_dropout and cfg.dropout_rate > 0:
      weights = Dropout(cfg.dropout_rate)(weights, deterministic=False)
    # Heads-major product, then back to [B, q, H, d]: XLA's layout for it is ~5% faster on CPU.
    out = jnp.swapaxes(jnp.einsum("bhqk,bkhd->bhqd", weights, value), 1, 2)
    out = out.reshape(out.shape[:2] + (inner,))
    return Dense(cfg.d_model, ("joined_kv", "embed"), inner**-0.5, dtype, name="out")(out)


class MlpBlock(nn.Module):
  """Feed-forward: gated-GELU (wi_0, wi_1, wo) for T5 1.1, ReLU (wi, wo) for original T5."""

  config: T5Config
  enable_dropout: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    wi_std = cfg.d_model**-0.5
    if cfg.is_gated:
      gate = Dense(cfg.d_ff, ("embed", "mlp"), wi_std, dtype, name="wi_0")(x)
      linear = Dense(cfg.d_ff, ("embed", "mlp"), wi_std, dtype, name="wi_1")(x)
      hidden = nn.gelu(gate, approximate=True) * linear  # HF "gelu_new" = tanh approximation
    else:
      hidden = nn.relu(Dense(cfg.d_ff, ("embed", "mlp"), wi_std, dtype, name="wi")(x))
    hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
    if self.enable_dropout and cfg.dropout_rate > 0:
      hidden = Dropout(cfg.dropout_rate)(hidden, deterministic=False)
    return Dense(cfg.d_model, ("mlp", "embed"), cfg.d_ff**-0.5, dtype, name="wo")(hidden)


def _dropout(cfg: T5Config, enable: bool, x: Array) -> Array:
  if enable and cfg.dropout_rate > 0:
    return Dropout(cfg.dropout_rate)(x, deterministic=False)
  return x


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + feed-forward. Returns (x, None) so nn.scan can run it."""

  config: T5Config
  enable_dropout: bool = False

  @nn.compact
  def __call__(self, x: Array, bias: Array, mask_bias: Array):
    cfg = self.config
    norm = functools.partial(RMSNorm, cfg.layer_norm_epsilon, jnp.dtype(cfg.dtype))
    h = norm(name="pre_attention_layer_norm")(x)
    h = MultiHeadAttention(cfg, self.enable_dropout, name="attention")(h, h, bias, mask_bias)
    x = x + _dropout(cfg, self.enable_dropout, h)
    h = MlpBlock(cfg, self.enable_dropout, name="mlp")(norm(name="pre_mlp_layer_norm")(x))
    x = x + _dropout(cfg, self.enable_dropout, h)
    return nn.with_logical_constraint(x, ("batch", "length", "embed")), None


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention + cross-attention + feed-forward; returns (y, None)."""

  config: T5Config
  enable_dropout: bool = False
  decode: bool = False

  @nn.compact
  def __call__(self, y: Array, bias: Array, mask_bias: Array, encoded: Array, cross_mask_bias: Array,
               decode_position: Optional[Array] = None):
    cfg = self.config
    norm = functools.partial(RMSNorm, cfg.layer_norm_epsilon, jnp.dtype(cfg.dtype))
    h = norm(name="pre_self_attention_layer_norm")(y)
    h = MultiHeadAttention(cfg, self.enable_dropout, self.decode, name="self_attention")(
        h, h, bias, mask_bias, decode_position)
    y = y + _dropout(cfg, self.enable_dropout, h)
    h = norm(name="pre_cross_attention_layer_norm")(y)
    h = MultiHeadAttention(cfg, self.enable_dropout, name="encoder_decoder_attention")(
        h, encoded, jnp.zeros((), jnp.float32), cross_mask_bias)
    y = y + _dropout(cfg, self.enable_dropout, h)
    h = MlpBlock(cfg, self.enable_dropout, name="mlp")(norm(name="pre_mlp_layer_norm")(y))
    y = y + _dropout(cfg, self.enable_dropout, h)
    return nn.with_logical_constraint(y, ("batch", "length", "embed")), None


def _remat_policy(name: str):
  return {"full": None, "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}[name]


def _run_stack(layer_cls, cfg: T5Config, num_layers: int, layer_kwargs: dict, x: Array, *args) -> Array:
  """Applies `num_layers` layers as a Python loop (params layers_0..N-1) or one nn.scan ('layers')."""
  if cfg.remat_policy != "none":
    layer_cls = nn.remat(layer_cls, policy=_remat_policy(cfg.remat_policy), prevent_cse=not cfg.scan_layers)
  if cfg.scan_layers:
    scanned = nn.scan(
        layer_cls, variable_axes={"params": 0, "cache": 0}, split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast,) * len(args), length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = scanned(cfg, **layer_kwargs, name="layers")(x, *args)
    return x
  for i in range(num_layers):
    x, _ = layer_cls(cfg, **layer_kwargs, name=f"layers_{i}")(x, *args)
  return x


def _mask_bias(key_mask: Array) -> Array:
  """[B, k] bool -> additive [B, 1, 1, k] (0 where attended, NEG_INF where masked)."""
  return jnp.where(key_mask[:, None, None, :], 0.0, NEG_INF).astype(jnp.float32)


class Encoder(nn.Module):
  """Embedded inputs [B, L, d] + mask [B, L] -> encoded [B, L, d] (bidirectional)."""

  config: T5Config

  @nn.compact
  def __call__(self, embedded: Array, mask: Array, enable_dropout: bool = False) -> Array:
    cfg = self.config
    positions = jnp.arange(embedded.shape[1])
    bias = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(positions, positions)
    x = _dropout(cfg, enable_dropout, embedded)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    # Position bias and padding mask summed once ([B, H, L, L]) and shared by all layers: XLA:CPU
    # otherwise materializes both, broadcast to [B, H, L, L], as inputs of each fused softmax.
    bias = bias + _mask_bias(mask)
    x = _run_stack(EncoderLayer, cfg, cfg.num_encoder_layers, {"enable_dropout": enable_dropout},
                   x, bias, jnp.zeros((), jnp.float32))
    x = RMSNorm(cfg.layer_norm_epsilon, jnp.dtype(cfg.dtype), name="encoder_norm")(x)
    return _dropout(cfg, enable_dropout, x)


class Decoder(nn.Module):
  """Embedded targets [B, T, d] + encoded [B, S, d] -> logits [B, T, vocab] (float32)."""

  config: T5Config

  @nn.compact
  def __call__(self, embedded: Array, encoded: Array, encoder_mask: Array, embedding: Array,
               decoder_mask: Optional[Array] = None, enable_dropout: bool = False,
               decode: bool = False) -> Array:
    cfg = self.config
    length = embedded.shape[1]
    relpos = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")
    decode_position = None
    if decode and self.has_variable("cache", "index"):
      # One new token at position `index`; keys are the whole cache, valid up to `index`.
      index = self.variable("cache", "index", lambda: jnp.array(0, jnp.int32))
      decode_position = index.value
      index.value = index.value + length
      key_positions = self.get_variable("cache", "key_positions")  # [max_length]
      bias = relpos(decode_position[None] + jnp.arange(length), key_positions)
      mask_bias = jnp.where(key_positions <= decode_position, 0.0, NEG_INF)[None, None, None, :]
    else:
      if decode:  # First call: create the cache and remember its length.
        self.variable("cache", "index", lambda: jnp.array(0, jnp.int32))
        self.variable("cache", "key_positions", lambda: jnp.arange(length, dtype=jnp.int32))
      positions = jnp.arange(length)
      bias = relpos(positions, positions)
      causal = positions[None, :] <= positions[:, None]  # [q, k]
      keep = causal[None] if decoder_mask is None else causal[None] & decoder_mask[:, None, :]
      mask_bias = jnp.where(keep[:, None], 0.0, NEG_INF).astype(jnp.float32)  # [B|1, 1, q, k]
    y = _dropout(cfg, enable_dropout, embedded)
    y = _run_stack(DecoderLayer, cfg, cfg.num_decoder_layers,
                   {"enable_dropout": enable_dropout, "decode": decode},
                   y, bias, mask_bias, encoded, _mask_bias(encoder_mask), decode_position)
    y = RMSNorm(cfg.layer_norm_epsilon, jnp.dtype(cfg.dtype), name="decoder_norm")(y)
    y = _dropout(cfg, enable_dropout, y)
    if cfg.tie_word_embeddings:
      if cfg.scale_decoder_outputs:
        y = y * (cfg.d_model**-0.5)
      logits = jnp.dot(y, embedding.T.astype(y.dtype))
    else:
      logits = Dense(cfg.vocab_size, ("embed", "vocab"), cfg.d_model**-0.5, jnp.dtype(cfg.dtype),
                     name="logits_dense")(y)
    return nn.with_logical_constraint(logits.astype(jnp.float32), ("batch", "length", "vocab"))


class T5(nn.Module):
  """The encoder-decoder. `prefix_embeddings` is the hook the soft prompt uses (see models/prompt.py)."""

  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = self.param(
        "token_embedder",
        nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
        (cfg.vocab_size, cfg.d_model), jnp.float32)
    self.encoder = Encoder(cfg)
    self.decoder = Decoder(cfg)

  def embed(self, tokens: Array) -> Array:
    """[B, L] int -> [B, L, d_model] in the activation dtype."""
    x = jnp.take(self.token_embedder, tokens, axis=0).astype(jnp.dtype(self.config.dtype))
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))

  def encode(self, encoder_input_tokens: Array, enable_dropout: bool = False,
             prefix_embeddings: Optional[Array] = None) -> tuple[Array, Array]:
    """Tokens [B, S] (+ prefix [P, d] or [B, P, d]) -> (encoded [B, P+S, d], encoder_mask [B, P+S]).

    Prefix rows go after the token embedding and before input dropout; the mask gets P ones in front
    (Lester et al.). Relative positions count the prefix rows.
    """
    x = self.embed(encoder_input_tokens)
    mask = encoder_input_tokens > 0
    if prefix_embeddings is not None:
      batch = x.shape[0]
      if prefix_embeddings.ndim == 2:
        prefix_embeddings = jnp.broadcast_to(prefix_embeddings[None], (batch,) + prefix_embeddings.shape)
      x = jnp.concatenate([prefix_embeddings.astype(x.dtype), x], axis=1)
      mask = jnp.concatenate([jnp.ones(prefix_embeddings.shape[:2], bool), mask], axis=1)
    return self.encoder(x, mask, enable_dropout), mask

  def decode(self, encoded: Array, encoder_mask: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Optional[Array] = None, enable_dropout: bool = False,
             decode: bool = False) -> Array:
    """-> logits [B, T, vocab]. With decode=True, run under `mutable=['cache']` (see decoding)."""
    decoder_mask = None if decoder_target_tokens is None else decoder_target_tokens > 0
    return self.decoder(self.embed(decoder_input_tokens), encoded, encoder_mask, self.token_embedder,
                        decoder_mask=decoder_mask, enable_dropout=enable_dropout, decode=decode)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Optional[Array] = None, enable_dropout: bool = False,
               prefix_embeddings: Optional[Array] = None) -> Array:
    """Teacher-forced forward pass -> logits [B, T, vocab] (float32)."""
    encoded, encoder_mask = self.encode(encoder_input_tokens, enable_dropout, prefix_embeddings)
    return self.decode(encoded, encoder_mask, decoder_input_tokens, decoder_target_tokens, enable_dropout)


# ----------------------------------------------------------------------------- params helpers


def init_params(cfg: T5Config, rng: Array, batch: int = 1, enc_len: int = 8, dec_len: int = 4,
                jit: bool = False) -> dict:
  """Random params (plain arrays, boxes removed) in the layout `cfg.scan_layers` asks for. `jit`: one
  compile of the whole init instead of op by op (the quickstart's backbone: 5.0 s -> 2.7 s; the values
  differ by float rounding, ~3e-8). Op by op is cheaper for many small models in one process (the
  tests): each op's compile is reused across shapes seen before."""
  model = T5(cfg)
  init = jax.jit(model.init) if jit else model.init
  variables = init(rng, jnp.ones((batch, enc_len), jnp.int32), jnp.ones((batch, dec_len), jnp.int32))
  return nn.meta.unbox(variables["params"])


@functools.lru_cache(maxsize=None)
def logical_axes(cfg: T5Config) -> dict:
  """Logical axis names of every param: a tree of PartitionSpec(logical names), shaped like params.
  Cached per config (tracing the model takes ~0.15 s, and every training run asks): do not mutate."""
  model = T5(cfg)
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.ones((1, 8), jnp.int32), jnp.ones((1, 4), jnp.int32)))
  return nn.get_partition_spec(abstract)["params"]


def _stack_names(cfg: T5Config) -> tuple[tuple[str, int], ...]:
  return (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers))


def scan_params(params: dict, cfg: T5Config) -> dict:
  """Per-layer params (layers_0..N-1) -> the nn.scan layout (one 'layers' entry, leading axis N)."""
  params = dict(params)
  for stack, n in _stack_names(cfg):
    sub = dict(params[stack])
    layers = [sub.pop(f"layers_{i}") for i in range(n)]
    sub["layers"] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *layers)
    params[stack] = sub
  return params


def unscan_params(params: dict, cfg: T5Config) -> dict:
  """Inverse of `scan_params`."""
  params = dict(params)
  for stack, n in _stack_names(cfg):
    sub = dict(params[stack])
    stacked = sub.pop("layers")
    for i in range(n):
      sub[f"layers_{i}"] = jax.tree.map(lambda x, i=i: np.asarray(x)[i], stacked)
    params[stack] = sub
  return params
