"""spot_jax's T5 against Hugging Face's PyTorch T5 on the same (random) weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from spot_jax.checkpoints import hf
from spot_jax.models import t5
from tests import hf_reference

TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=["t5_1_1", "t5"])
def saved_model(request, tmp_path_factory):
  model = hf_reference.build_t5(request.param)
  path = str(tmp_path_factory.mktemp(request.param))
  model.save_pretrained(path)
  return request.param, model, path


def _logits(cfg, params, enc, dec_in, tgt):
  return np.asarray(t5.T5(cfg).apply({"params": params}, jnp.asarray(enc), jnp.asarray(dec_in), jnp.asarray(tgt)))


def test_loaded_config_matches_kind(saved_model):
  kind, _, path = saved_model
  cfg, _ = hf.load_hf_t5(path)
  assert cfg.feed_forward_proj == ("gated-gelu" if kind == "t5_1_1" else "relu")
  assert cfg.tie_word_embeddings == (kind == "t5")
  assert cfg.scale_decoder_outputs == (kind == "t5")
  assert (cfg.num_heads, cfg.d_kv, cfg.num_encoder_layers, cfg.num_decoder_layers) == (3, 16, 2, 3)


def test_logits_match_huggingface_with_padding(saved_model):
  kind, model, path = saved_model
  cfg, params = hf.load_hf_t5(path)
  enc, dec_in, tgt = hf_reference.padded_batch(cfg.vocab_size)
  ours = _logits(cfg, params, enc, dec_in, tgt)
  theirs = hf_reference.hf_logits(model, enc, dec_in, tgt)
  diff = np.abs(ours - theirs).max()
  print(f"[parity] {kind}: max |logits - HF| = {diff:.2e} (logit scale {np.abs(theirs).max():.1f})")
  assert ours.shape == (4, 6, cfg.vocab_size)
  assert diff <= TOLERANCE


def test_sharded_safetensors_load_the_same(saved_model, tmp_path):
  _, model, path = saved_model
  sharded = str(tmp_path / "sharded")
  model.save_pretrained(sharded, max_shard_size="20KB")
  import os
  assert os.path.exists(os.path.join(sharded, "model.safetensors.index.json"))
  _, a = hf.load_hf_t5(path)
  _, b = hf.load_hf_t5(sharded)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_round_trip_is_bit_exact(saved_model, tmp_path):
  _, _, path = saved_model
  cfg, params = hf.load_hf_t5(path)
  hf.save_hf_t5(cfg, params, str(tmp_path / "out"))
  cfg2, params2 = hf.load_hf_t5(str(tmp_path / "out"))
  assert cfg2 == cfg
  assert jax.tree.structure(params) == jax.tree.structure(params2)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), params, params2)


def test_saved_model_loads_back_in_transformers(saved_model, tmp_path):
  kind, model, path = saved_model
  cfg, params = hf.load_hf_t5(path)
  hf.save_hf_t5(cfg, params, str(tmp_path / "out"))
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path / "out")).eval()
  enc, dec_in, tgt = hf_reference.padded_batch(cfg.vocab_size, seed=1)
  if kind == "t5_1_1":  # both embeddings present with different values: transformers keeps them untied
    assert not torch.equal(reloaded.lm_head.weight, reloaded.shared.weight)
  np.testing.assert_allclose(_logits(cfg, params, enc, dec_in, tgt),
                             hf_reference.hf_logits(reloaded, enc, dec_in, tgt), atol=TOLERANCE)


def test_relative_position_buckets_match_huggingface():
  from transformers.models.t5.modeling_t5 import T5Attention
  rp = np.arange(-600, 601)
  for bidirectional in (True, False):
    ours = np.asarray(t5.relative_position_bucket(jnp.asarray(rp), bidirectional=bidirectional,
                                                  num_buckets=32, max_distance=128))
    theirs = T5Attention._relative_position_bucket(torch.tensor(rp), bidirectional=bidirectional,
                                                   num_buckets=32, max_distance=128).numpy()
    np.testing.assert_array_equal(ours, theirs)
