"""Two code paths of the T5 that must agree: cached vs full decoding, scan/remat vs plain stack,
prefix embeddings vs prepended tokens; dtype option; errors on bad input."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spot_jax.checkpoints import hf
from spot_jax.models import dropout, t5
from tests import hf_reference


@pytest.fixture(scope="module")
def model_and_params():
  cfg = t5.get_config("tiny", vocab_size=97, dropout_rate=0.0, num_decoder_layers=3)
  return cfg, t5.init_params(cfg, jax.random.key(0))


def _batch(cfg):
  enc, dec_in, tgt = hf_reference.padded_batch(cfg.vocab_size, seed=3)
  return jnp.asarray(enc), jnp.asarray(dec_in), jnp.asarray(tgt)


def test_cached_incremental_decoding_equals_full_forward(model_and_params):
  cfg, params = model_and_params
  model = t5.T5(cfg)
  enc, dec_in, tgt = _batch(cfg)
  full = model.apply({"params": params}, enc, dec_in, None)  # causal only, as decoding sees it
  encoded, mask = model.apply({"params": params}, enc, method=t5.T5.encode)
  _, state = model.apply({"params": params}, encoded, mask, dec_in, decode=True, mutable=["cache"],
                         method=t5.T5.decode)
  step = jax.jit(lambda cache, tok: model.apply({"params": params, "cache": cache}, encoded, mask, tok,
                                                decode=True, mutable=["cache"], method=t5.T5.decode))
  cache = state["cache"]
  steps = []
  for i in range(dec_in.shape[1]):
    logits, state = step(cache, dec_in[:, i:i + 1])
    cache = state["cache"]
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize("scan,remat", [pytest.param(True, "none", marks=pytest.mark.slow),
                                        pytest.param(False, "full", marks=pytest.mark.slow), (True, "minimal")])
def test_scan_and_remat_equal_plain_stack(model_and_params, scan, remat):
  cfg, params = model_and_params
  enc, dec_in, tgt = _batch(cfg)
  variant = cfg.replace(scan_layers=scan, remat_policy=remat)
  variant_params = t5.scan_params(params, cfg) if scan else params
  plain_fn = lambda p: t5.T5(cfg).apply({"params": p}, enc, dec_in, tgt)
  variant_fn = lambda p: t5.T5(variant).apply({"params": p}, enc, dec_in, tgt)
  np.testing.assert_allclose(variant_fn(variant_params), plain_fn(params), atol=1e-5)
  # Gradients too: remat changes only what is stored for the backward pass.
  g_plain = jax.grad(lambda p: plain_fn(p).sum())(params)
  g_variant = jax.grad(lambda p: variant_fn(p).sum())(variant_params)
  if scan:
    g_variant = t5.unscan_params(g_variant, cfg)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4), g_variant, g_plain)


def test_scanned_params_carry_a_layers_axis(model_and_params):
  cfg, _ = model_and_params
  axes = t5.logical_axes(cfg.replace(scan_layers=True))
  assert tuple(axes["encoder"]["layers"]["mlp"]["wi_0"]["kernel"]) == ("layers", "embed", "mlp")
  plain = t5.logical_axes(cfg)
  assert tuple(plain["token_embedder"]) == ("vocab", "embed")
  assert tuple(plain["decoder"]["logits_dense"]["kernel"]) == ("embed", "vocab")
  assert tuple(plain["encoder"]["relpos_bias"]["rel_embedding"]) == ("heads", "relpos_buckets")


def test_prefix_embeddings_equal_prepended_tokens(model_and_params):
  """A prefix made of token embeddings must act exactly like those tokens in the input."""
  cfg, params = model_and_params
  enc, dec_in, tgt = _batch(cfg)
  enc = enc.at[:, 0].set(5)  # every row non-empty at position 0
  prefix_tokens = jnp.array([7, 8, 9])
  prefix = params["token_embedder"][prefix_tokens]
  model = t5.T5(cfg)
  with_prefix = model.apply({"params": params}, enc, dec_in, tgt, prefix_embeddings=prefix)
  prepended = jnp.concatenate([jnp.broadcast_to(prefix_tokens, (enc.shape[0], 3)), enc], axis=1)
  as_tokens = model.apply({"params": params}, prepended, dec_in, tgt)
  np.testing.assert_allclose(with_prefix, as_tokens, atol=1e-5)
  per_example = jnp.broadcast_to(prefix, (enc.shape[0],) + prefix.shape)
  np.testing.assert_allclose(model.apply({"params": params}, enc, dec_in, tgt, prefix_embeddings=per_example),
                             with_prefix, atol=1e-6)


def test_bfloat16_activations_close_to_float32(model_and_params):
  cfg, params = model_and_params
  enc, dec_in, tgt = _batch(cfg)
  f32 = t5.T5(cfg).apply({"params": params}, enc, dec_in, tgt)
  bf16 = t5.T5(cfg.replace(dtype="bfloat16")).apply({"params": params}, enc, dec_in, tgt)
  assert bf16.dtype == jnp.float32  # logits always come out in float32 for the loss
  scale = float(jnp.abs(f32).max())
  assert float(jnp.abs(bf16 - f32).max()) < 0.05 * scale


def test_dropout_changes_output_only_when_enabled(model_and_params):
  cfg, params = model_and_params
  enc, dec_in, tgt = _batch(cfg)
  model = t5.T5(cfg.replace(dropout_rate=0.1))
  a = model.apply({"params": params}, enc, dec_in, tgt, enable_dropout=True, rngs={"dropout": jax.random.key(1)})
  b = model.apply({"params": params}, enc, dec_in, tgt, enable_dropout=False)
  c = t5.T5(cfg).apply({"params": params}, enc, dec_in, tgt)
  assert float(jnp.abs(a - b).max()) > 1e-3
  np.testing.assert_allclose(b, c, atol=1e-6)


def test_unrolled_threefry_matches_known_answer():
  # Random123 known-answer vector (as in jax's own random tests).
  out = jax.jit(dropout.threefry2x32)(*map(np.uint32, (0x13198A2E, 0x03707344, 0x243F6A88, 0x85A308D3)))
  np.testing.assert_array_equal(np.array(out), np.array([0xC4923A9C, 0x483DF7A0], np.uint32))


@pytest.mark.parametrize("shape", [(), (5,), (4, 7, 9), (2, 3, 100, 100)])
@pytest.mark.parametrize("key", [jax.random.key(5), jax.random.PRNGKey(123)], ids=["typed", "raw"])
def test_bernoulli_mask_equals_jax_random(shape, key):
  ours = jax.jit(dropout.bernoulli_mask, static_argnums=(1, 2))(key, 0.9, shape)
  np.testing.assert_array_equal(ours, jax.random.bernoulli(key, 0.9, shape))


@pytest.mark.parametrize("dtype", [jnp.float32, pytest.param(jnp.bfloat16, marks=pytest.mark.slow)])
def test_dropout_equals_flax_dropout_values_and_grads(dtype):
  import flax.linen as nn
  x = jax.random.normal(jax.random.key(0), (4, 7, 9), dtype)

  def run(module):
    f = lambda x, k: module(0.3).apply({}, x, deterministic=False, rngs={"dropout": k})
    return jax.jit(lambda x, k: (f(x, k), jax.grad(lambda x: f(x, k).astype(jnp.float32).sum())(x)))

  for seed in range(3):
    ours, flax_ = (run(m)(x, jax.random.key(seed)) for m in (dropout.Dropout, nn.Dropout))
    jax.tree.map(np.testing.assert_array_equal, ours, flax_)


def test_presets_have_paper_shapes():
  xxl = t5.get_config("t5_1_1_lm_adapt_xxl")
  assert (xxl.d_model, xxl.num_heads, xxl.num_encoder_layers, xxl.d_ff, xxl.d_kv) == (4096, 64, 24, 10240, 64)
  assert t5.get_config("t5_1_1_base") == t5.get_config("t5_1_1_lm_adapt_base")
  with pytest.raises(ValueError, match="Unknown T5 preset 't5_1_1_hueg'"):
    t5.get_config("t5_1_1_hueg")
  with pytest.raises(ValueError, match="feed_forward_proj"):
    t5.T5Config(feed_forward_proj="gated-silu")


def _write_config(path, **overrides):
  config = hf.config_to_hf(t5.get_config("tiny", vocab_size=11))
  config.update(overrides)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)


def test_unknown_architecture_is_refused(tmp_path):
  cfg = t5.get_config("tiny", vocab_size=11, num_encoder_layers=1, num_decoder_layers=1)
  hf.save_hf_t5(cfg, t5.init_params(cfg, jax.random.key(0)), str(tmp_path / "m"))
  with open(tmp_path / "m" / "config.json") as f:
    config = json.load(f)
  config.update(model_type="bart", architectures=["BartForConditionalGeneration"])
  with open(tmp_path / "m" / "config.json", "w") as f:
    json.dump(config, f)
  with pytest.raises(hf.CheckpointFormatError, match="Unsupported architecture.*bart"):
    hf.load_hf_t5(str(tmp_path / "m"))


def test_missing_and_truncated_weights_give_clear_errors(tmp_path):
  _write_config(str(tmp_path / "empty"))
  with pytest.raises(hf.CheckpointFormatError, match="No model.safetensors"):
    hf.load_hf_t5(str(tmp_path / "empty"))
  cfg = t5.get_config("tiny", vocab_size=11, num_encoder_layers=1, num_decoder_layers=1)
  hf.save_hf_t5(cfg, t5.init_params(cfg, jax.random.key(0)), str(tmp_path / "m"))
  weights = tmp_path / "m" / "model.safetensors"
  data = weights.read_bytes()
  weights.write_bytes(data[: len(data) // 2])
  with pytest.raises(hf.CheckpointFormatError, match="truncated"):
    hf.load_hf_t5(str(tmp_path / "m"))


def test_save_refuses_to_overwrite(tmp_path):
  cfg = t5.get_config("tiny", vocab_size=11, num_encoder_layers=1, num_decoder_layers=1)
  params = t5.init_params(cfg, jax.random.key(0))
  (tmp_path / "m").mkdir()
  with pytest.raises(FileExistsError, match="nothing was overwritten"):
    hf.save_hf_t5(cfg, params, str(tmp_path / "m"))


def test_scan_layout_round_trips_through_hf(tmp_path):
  cfg = t5.get_config("tiny", vocab_size=11, scan_layers=True)
  params = t5.init_params(cfg, jax.random.key(0))
  hf.save_hf_t5(cfg, params, str(tmp_path / "m"))
  cfg2, params2 = hf.load_hf_t5(str(tmp_path / "m"), scan_layers=True)
  jax.tree.map(np.testing.assert_array_equal, params, params2)
