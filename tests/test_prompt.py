"""Prompt initializers and prompt files."""

import jax
import numpy as np
import pytest

from spot_jax import errors, train
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.models import prompt as prompt_lib
from spot_jax.models import t5
from tests import train_fixtures as fx

SHAPE = (6, 16)
EMBEDDING = np.random.default_rng(0).normal(size=(7000, 16)).astype(np.float32)


def test_random_uniform_range_and_determinism():
  a = prompt_lib.random_uniform(0.5)(jax.random.key(0), SHAPE)
  assert a.shape == SHAPE and float(abs(a).max()) <= 0.5 and float(abs(a).max()) > 0.3
  np.testing.assert_array_equal(a, prompt_lib.random_uniform(0.5)(jax.random.key(0), SHAPE))


def test_sampled_vocab_rows_come_from_frequent_tokens():
  rows = np.asarray(prompt_lib.sampled_vocab(EMBEDDING, population=5000)(jax.random.key(1), SHAPE))
  for row in rows:
    matches = np.where((EMBEDDING == row).all(axis=1))[0]
    assert len(matches) == 1 and 3 <= matches[0] < 5000
  assert len({tuple(r) for r in rows}) == SHAPE[0]  # without replacement


def test_class_labels_put_label_embeddings_first():
  labels = [[10], [20, 30]]  # second label is two tokens: averaged
  rows = np.asarray(prompt_lib.class_labels(EMBEDDING, labels)(jax.random.key(2), SHAPE))
  np.testing.assert_allclose(rows[0], EMBEDDING[10])
  np.testing.assert_allclose(rows[1], (EMBEDDING[20] + EMBEDDING[30]) / 2, rtol=1e-6)
  for row in rows[2:]:
    assert (EMBEDDING[:5000] == row).all(axis=1).any()


def test_npy_round_trip_and_shape_check(tmp_path):
  prompt = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
  prompt_io.save_npy(tmp_path / "p.npy", prompt)
  init = prompt_lib.from_array(prompt_io.load_npy(str(tmp_path / "p.npy")))
  np.testing.assert_array_equal(init(jax.random.key(0), SHAPE), prompt)
  with pytest.raises(prompt_lib.PromptShapeError, match=r"\(6, 16\) but the model expects \(5, 16\)") as e:
    init(jax.random.key(0), (5, 16))
  assert "--config.train.prompt_length=6" in str(e.value)  # the field that exists (not config.prompt.length)
  assert errors.is_expected(e.value)  # the CLI prints it as one line


def test_corrupted_or_wrong_npy_is_a_clear_error(tmp_path):
  (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
  with pytest.raises(prompt_io.PromptFileError, match="corrupted or truncated"):
    prompt_io.load_npy(tmp_path / "bad.npy")
  np.save(tmp_path / "ints.npy", np.zeros((3,), np.int32))
  with pytest.raises(prompt_io.PromptFileError, match="float array"):
    prompt_io.load_npy(tmp_path / "ints.npy")
  with pytest.raises(prompt_io.PromptFileError, match="does not exist"):
    prompt_io.load_npy(tmp_path / "missing.npy")


def test_weighted_average_is_normalised():
  a, b = np.ones(SHAPE, np.float32), 3 * np.ones(SHAPE, np.float32)
  out = prompt_lib.weighted_average([a, b], [1.0, 3.0])(jax.random.key(0), SHAPE)
  np.testing.assert_allclose(out, 2.5 * np.ones(SHAPE), rtol=1e-6)
  with pytest.raises(ValueError, match="one weight per prompt"):
    prompt_lib.weighted_average([a, b], [1.0])
  with pytest.raises(prompt_lib.PromptShapeError, match="different shapes"):
    prompt_lib.weighted_average([a, np.ones((2, 2))], [1.0, 1.0])


def test_load_prompt_reads_a_runs_named_prompt(tmp_path):
  model_cfg, frozen = fx.tiny_model()
  cfg = fx.small_config(num_train_steps=2)
  result = train.train(cfg, str(tmp_path), model_config=model_cfg, frozen_params=frozen,
                       train_iter=fx.ArrayIterator(8), prompt_init=prompt_lib.random_uniform(), verbose=False)
  np.testing.assert_array_equal(prompt_io.load_prompt(str(tmp_path), "final"), result.prompt)
  with pytest.raises(prompt_io.PromptFileError, match="No prompt 'best'.*Available: \\['final'\\]"):
    prompt_io.load_prompt(str(tmp_path), "best")


def test_prompted_t5_equals_t5_with_prefix():
  cfg = t5.get_config("tiny", vocab_size=50, dropout_rate=0.0)
  frozen = t5.init_params(cfg, jax.random.key(0))
  prompt = np.random.default_rng(0).normal(size=(4, cfg.d_model)).astype(np.float32)
  enc = np.array([[5, 6, 7, 1, 0]]); dec = np.array([[0, 8, 9]]); tgt = np.array([[8, 9, 1]])
  a = prompt_lib.PromptedT5(cfg, 4).apply({"params": {"prompt": prompt, "t5": frozen}}, enc, dec, tgt)
  b = t5.T5(cfg).apply({"params": frozen}, enc, dec, tgt, prefix_embeddings=prompt)
  np.testing.assert_array_equal(a, b)
  variables = prompt_lib.PromptedT5(cfg, 4).init(jax.random.key(1), enc, dec, tgt)
  assert variables["params"]["prompt"].value.shape == (4, cfg.d_model)
