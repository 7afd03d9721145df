"""Evaluation modes end to end on a real (hand-set) T5: `generate` scores what the model writes (an
invalid output is wrong), `rank` picks the likeliest label word; the two agree when the model writes
a valid label."""

import dataclasses

import numpy as np
import pytest

from spot_jax import errors, evaluation
from spot_jax.data import preprocessors as pp
from spot_jax.data import tasks
from spot_jax.data.vocab import EOS_ID
from spot_jax.models import t5
from tests import cli_world as world_lib
from tests import train_fixtures as fx

LABELS = ("no", "yes")  # their pieces in the test vocab repeat no token (the bigram writer needs that)
TASK = "test_eval_modes"


@dataclasses.dataclass(frozen=True)
class _Backbone:
  config: t5.T5Config
  params: dict
  fingerprint: str = "hand-set"


@pytest.fixture(scope="module")
def vocab(cli_world):
  # 'no'/'yes'; 4 of 12 rows are 'yes'
  return world_lib.register_yes_no_task(cli_world, TASK, rows=12)


def _writer_of(chain, vocab_size):
  """A T5 whose decoder ignores its input and writes `chain` then EOS, whatever the input.

  Every decoder sublayer's output projection is zero, so the decoder state at a position is the
  embedding of the previous token: the logits are a bigram table over the chain [0, chain...].
  """
  cfg = t5.get_config("tiny", vocab_size=vocab_size, d_model=32, num_heads=4, d_kv=8, d_ff=64,
                      num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0)
  params = fx.random_params(cfg)
  layer = params["decoder"]["layers_0"]
  for sub in ("self_attention", "encoder_decoder_attention"):
    layer[sub]["out"]["kernel"] = np.zeros_like(layer[sub]["out"]["kernel"])
  layer["mlp"]["wo"]["kernel"] = np.zeros_like(layer["mlp"]["wo"]["kernel"])
  previous = [0, *chain]
  assert len(set(previous)) == len(previous) <= cfg.d_model
  embedding, logits = np.array(params["token_embedder"]), np.zeros_like(params["decoder"]["logits_dense"]["kernel"])
  for row, (token, following) in enumerate(zip(previous, [*chain, EOS_ID])):
    embedding[token] = np.eye(cfg.d_model)[row]  # the decoder state after `token` is one-hot `row`
    logits[row, following] = 5.0
  params["token_embedder"], params["decoder"]["logits_dense"]["kernel"] = embedding, logits
  return _Backbone(cfg, params)


def _data(**overrides):
  from spot_jax import configs
  data = configs.base_config().data
  data.update(dict(input_length=16, target_length=8, eval_batch_size=8, **overrides))
  return data


def test_generate_and_rank_agree_when_the_model_writes_a_label(vocab):
  backbone = _writer_of(vocab.encode("no"), vocab.vocab_size)
  prompt = np.zeros((2, 32), np.float32)
  generated = evaluation.make_evaluator(TASK, vocab, backbone, _data(), "generate")(prompt)
  ranked = evaluation.make_evaluator(TASK, vocab, backbone, _data(), "rank")(prompt)
  assert generated == ranked
  assert generated["accuracy"] == pytest.approx(100 * 8 / 12)  # always 'no'; 8 of 12 are label 0


def test_an_invalid_output_counts_as_wrong_in_generate_mode(vocab):
  backbone = _writer_of(vocab.encode("seven"), vocab.vocab_size)
  prompt = np.zeros((2, 32), np.float32)
  assert evaluation.make_evaluator(TASK, vocab, backbone, _data(), "generate")(prompt)["accuracy"] == 0.0
  ranked = evaluation.make_evaluator(TASK, vocab, backbone, _data(), "rank")(prompt)["accuracy"]
  assert ranked in (pytest.approx(100 * 8 / 12), pytest.approx(100 * 4 / 12))  # rank always yields a label


def test_rank_needs_label_words_and_unknown_modes_are_refused(vocab):
  backbone = _writer_of(vocab.encode("no"), vocab.vocab_size)
  with pytest.raises(errors.ConfigError, match="config.eval.mode = 'greedy' is not allowed"):
    evaluation.make_evaluator(TASK, vocab, backbone, _data(), "greedy")
  tasks.register_task(tasks.Task(TASK + "_text", tasks.get_task(TASK).source,
                                 pp.classification(TASK, [("sentence", "sentence")], LABELS), ("accuracy",)),
                      overwrite=True)
  with pytest.raises(errors.ConfigError, match="'rank' needs a classification task"):
    evaluation.make_evaluator(TASK + "_text", vocab, backbone, _data(), "rank")
