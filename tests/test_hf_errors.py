"""A broken or mismatched Hugging Face T5 directory fails at load time with the file, weight and fix named."""

import json
import re
import shutil

import jax
import numpy as np
import pytest
import safetensors.numpy

from spot_jax.checkpoints import hf
from spot_jax.models import t5

FFN = "encoder.block.0.layer.1.DenseReluDense"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A tiny random T5 1.1 (gated, untied) written by save_hf_t5: d_model 32, d_ff 64, 2 heads x 16."""
  cfg = t5.get_config("tiny", vocab_size=40, d_model=32, d_ff=64, num_heads=2, d_kv=16, num_encoder_layers=2,
                      num_decoder_layers=2)
  path = tmp_path_factory.mktemp("hf") / "model"
  rng = np.random.default_rng(0)  # random weights without compiling init_params: keeps the test fast
  shapes = jax.eval_shape(lambda: t5.init_params(cfg, jax.random.key(0)))
  hf.save_hf_t5(cfg, jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes), str(path))
  return path


@pytest.fixture
def model(saved, tmp_path):
  """A fresh copy of `saved` for a test to break."""
  return shutil.copytree(saved, tmp_path / "model")


def _edit_config(path, **changes):
  config = json.loads((path / "config.json").read_text())
  config.update(changes)
  (path / "config.json").write_text(json.dumps(config))


def _edit_weights(path, edit):
  tensors = safetensors.numpy.load_file(str(path / "model.safetensors"))
  edit(tensors)
  safetensors.numpy.save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def _error(path):
  with pytest.raises(hf.CheckpointFormatError) as error:
    hf.load_hf_t5(str(path))
  return str(error.value)


def test_intact_save_loads(saved):
  cfg, params = hf.load_hf_t5(str(saved))
  assert (cfg.d_ff, cfg.d_model, cfg.num_encoder_layers) == (64, 32, 2)
  assert params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"].shape == (32, 64)


def test_truncated_config_json_names_the_file_and_position(model):
  text = (model / "config.json").read_text()
  (model / "config.json").write_text(text[:len(text) // 2])
  message = _error(model)
  assert message.startswith(f"{model / 'config.json'} is not valid JSON (")
  assert re.search(r"line \d+ column \d+", message)
  assert "not a complete Hugging Face T5 save: re-save it with `model.save_pretrained(dir)` or re-download" in message


def test_missing_config_and_weights_files(model):
  (model / "model.safetensors").unlink()
  assert "No model.safetensors or model.safetensors.index.json in" in _error(model)
  assert "re-save it" in _error(model)
  (model / "config.json").unlink()
  assert _error(model).startswith(f"No config.json in {model}")


def test_config_missing_a_size_field(model):
  config = json.loads((model / "config.json").read_text())
  del config["d_ff"]
  (model / "config.json").write_text(json.dumps(config))
  assert _error(model).startswith(f"{model / 'config.json'} lacks the field 'd_ff'")
  _edit_config(model, d_ff="64")
  assert "field 'd_ff' is '64'; it must be a positive integer" in _error(model)


@pytest.mark.parametrize("content", [b"", b"\xff" * 64, b"\x12\x00\x00\x00\x00\x00\x00\x00[1, 2, 3, 4, 5, 6]"],
                         ids=["empty", "garbage", "list-header"])
def test_garbage_safetensors_file(model, content):
  (model / "model.safetensors").write_bytes(content)
  message = _error(model)
  assert str(model / "model.safetensors") in message
  assert "not a safetensors file" in message or "not a valid safetensors file" in message


def test_d_ff_contradicting_the_weights(model):
  _edit_config(model, d_ff=128)
  assert _error(model).startswith(
      f"{FFN}.wi_0.weight has shape (64, 32) in {model}/model.safetensors but config.json (d_ff=128, d_model=32) "
      "implies (128, 32): config.json does not describe these weights")


@pytest.mark.parametrize("field, value, weight, fields", [
    ("d_model", 48, "shared.weight", "vocab_size=40, d_model=48"),
    ("vocab_size", 41, "shared.weight", "vocab_size=41, d_model=32"),
    ("num_heads", 4, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
     "relative_attention_num_buckets=32, num_heads=4"),
    ("d_kv", 8, "encoder.block.0.layer.0.SelfAttention.q.weight", "num_heads=2, d_kv=8, d_model=32"),
])
def test_other_size_fields_contradicting_the_weights(model, field, value, weight, fields):
  _edit_config(model, **{field: value})
  message = _error(model)
  assert message.startswith(f"{weight} has shape "), message
  assert f"config.json ({fields}) implies" in message


def test_layer_count_contradicting_the_weights(model):
  _edit_config(model, num_layers=3, num_decoder_layers=None)
  assert _error(model).startswith(f"{model} lacks weight encoder.block.2.layer.0.SelfAttention.q.weight, which "
                                  "config.json (num_layers=3) requires.")
  _edit_config(model, num_layers=2, num_decoder_layers=1)
  message = _error(model)
  assert message.startswith(f"{model} has 14 weight(s) that config.json (num_decoder_layers=1) does not use: "
                            "decoder.block.1.layer.0.SelfAttention.k.weight, "), message
  assert "and 9 more" in message
  assert "Loading would silently drop them" in message


def test_missing_weight(model):
  _edit_weights(model, lambda t: t.pop(f"{FFN}.wi_1.weight"))
  assert _error(model).startswith(f"{model} lacks weight {FFN}.wi_1.weight, which config.json "
                                  "(num_layers=2, feed_forward_proj='gated-gelu') requires.")


def test_feed_forward_kind_contradicting_the_weights(model):
  _edit_config(model, feed_forward_proj="relu")
  assert "config.json's feed_forward_proj should be 'gated-gelu'" in _error(model)


def test_unknown_extra_weight_is_refused_and_hf_buffers_are_not(model):
  bias = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"  # old t5-small files have it
  _edit_weights(model, lambda t: t.update({bias: np.zeros((32, 2), np.float32),
                                           "encoder.embed_tokens.weight": t["shared.weight"]}))
  hf.load_hf_t5(str(model))
  _edit_weights(model, lambda t: t.update({"encoder.block.0.layer.0.SelfAttention.extra.weight": np.zeros(3)}))
  assert "does not use: encoder.block.0.layer.0.SelfAttention.extra.weight. Loading would" in _error(model)
  _edit_weights(model, lambda t: t.update({"encoder.embed_tokens.weight": np.zeros((40, 31), np.float32)}))
  assert _error(model).startswith("encoder.embed_tokens.weight has shape (40, 31)")


# ---------------------------------------------------------------------- saves made by transformers itself


@pytest.fixture(scope="module", params=["t5_1_1", "t5"])
def hf_saved(request, tmp_path_factory):
  from tests import hf_reference
  model = hf_reference.build_t5(request.param)
  path = tmp_path_factory.mktemp(request.param)
  model.save_pretrained(str(path / "single"))
  model.save_pretrained(str(path / "sharded"), max_shard_size="20KB")
  return request.param, path


def test_transformers_saves_load_without_false_alarms(hf_saved):
  kind, path = hf_saved
  for variant in ("single", "sharded"):
    cfg, _ = hf.load_hf_t5(str(path / variant))
    assert cfg.feed_forward_proj == ("gated-gelu" if kind == "t5_1_1" else "relu")


def test_transformers_save_with_contradicting_d_ff(hf_saved, tmp_path):
  kind, path = hf_saved
  broken = shutil.copytree(path / "sharded", tmp_path / "sharded")
  _edit_config(broken, d_ff=64)
  index = json.loads((broken / "model.safetensors.index.json").read_text())["weight_map"]
  wi = "encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if kind == "t5_1_1" else "wi") + ".weight"
  assert _error(broken).startswith(f"{wi} has shape (56, 40) in {broken}/{index[wi]} but config.json "
                                   "(d_ff=64, d_model=40) implies (64, 40): ")
