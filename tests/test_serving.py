"""Serving on a tiny random T5: a mixed-task batch answers as each task's batch alone does, and a prompt
ensemble in one batch equals running each prompt separately and voting in numpy."""

import collections

import numpy as np
import pytest

from spot_jax import decoding, serving
from spot_jax.models import t5
from spot_jax.models.prompt import PromptShapeError
from tests import train_fixtures as fx

D_MODEL = 32
PROMPT_LEN = 4
MAX_LEN = 6
TASK_OF_ROW = np.array([0, 1, 2, 1, 0, 2], np.int32)  # a mixed batch: rows of 3 tasks, interleaved
TASK_LABELS = [[[5], [7, 9]], [[11, 12, 13], [5], [20]], [[7, 9], [30]]]  # per task; shared labels overlap


@pytest.fixture(scope="module")
def model_params():
  cfg = t5.get_config("tiny", vocab_size=64, dropout_rate=0.0, d_model=D_MODEL, num_heads=2, d_kv=16, d_ff=64,
                      num_encoder_layers=1, num_decoder_layers=2)
  params = fx.random_params(cfg)
  params["decoder"]["logits_dense"]["kernel"][:, 1] += 0.3  # EOS likely: rows stop at different steps
  return t5.T5(cfg), params


def _tokens(batch=6):
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 64, (batch, 9)).astype(np.int32)
  tokens[1, 4:] = 0
  tokens[3, 2:] = 0
  return tokens


def _prompts(count, seed=1):
  return np.random.default_rng(seed).uniform(-0.5, 0.5, (count, PROMPT_LEN, D_MODEL)).astype(np.float32)


def test_gather_prompts_gives_each_row_its_prompt():
  bank = _prompts(3)
  ids = np.array([2, 0, 2, 1])
  gathered = np.asarray(serving.gather_prompts(bank, ids))
  assert gathered.shape == (4, PROMPT_LEN, D_MODEL)
  np.testing.assert_array_equal(gathered, bank[ids])
  np.testing.assert_array_equal(serving.gather_prompts(list(bank), ids), gathered)  # a list works too


def test_mixed_greedy_equals_each_task_alone(model_params):
  model, params = model_params
  tokens, bank = _tokens(), _prompts(3)
  mixed = serving.mixed_greedy_decode(model, params, tokens, TASK_OF_ROW, bank, max_decode_length=MAX_LEN)
  assert mixed.shape == (6, MAX_LEN)
  for task in range(3):
    rows = TASK_OF_ROW == task
    alone = decoding.greedy_decode(model, params, tokens[rows], max_decode_length=MAX_LEN,
                                   prefix_embeddings=bank[task])
    np.testing.assert_array_equal(mixed[rows], alone)
  # Each row really uses its own prompt: one prompt for all rows changes some answers.
  same_prompt = serving.mixed_greedy_decode(model, params, tokens, np.zeros(6, np.int32), bank,
                                            max_decode_length=MAX_LEN)
  assert (same_prompt != mixed).any()


@pytest.mark.parametrize("length_normalize", [False, True])
def test_mixed_rank_classification_equals_each_task_alone(model_params, length_normalize):
  model, params = model_params
  tokens, bank = _tokens(), _prompts(3)
  best, scores = serving.mixed_rank_classification(model, params, tokens, TASK_OF_ROW, bank, TASK_LABELS,
                                                   length_normalize=length_normalize)
  assert best.shape == (6,) and scores.shape == (6, 3)
  for task, labels in enumerate(TASK_LABELS):
    rows = TASK_OF_ROW == task
    alone_best, alone_scores = decoding.rank_classification(model, params, tokens[rows], labels,
                                                            prefix_embeddings=bank[task],
                                                            length_normalize=length_normalize)
    np.testing.assert_array_equal(best[rows], alone_best)
    np.testing.assert_allclose(scores[rows][:, :len(labels)], alone_scores, atol=1e-5, rtol=0)
    assert np.isneginf(scores[rows][:, len(labels):]).all()  # labels of other tasks never win


def _vote_sequences(per_prompt):
  """Numpy reference: the most frequent sequence per row; ties -> the one the lowest prompt produced."""
  voted = []
  for row in per_prompt:
    counts = collections.Counter(tuple(seq) for seq in row)
    top = max(counts.values())
    voted.append(next(seq for seq in row if counts[tuple(seq)] == top))
  return np.stack(voted)


def test_ensemble_greedy_equals_separate_prompts_and_numpy_vote(model_params):
  model, params = model_params
  tokens, prompts = _tokens(), _prompts(3, seed=2)
  prompts = np.concatenate([prompts, prompts[2:]])  # [a, b, c, c]: c has two votes, so votes differ from a
  voted, per_prompt = serving.ensemble_greedy_decode(model, params, tokens, prompts, max_decode_length=MAX_LEN)
  separate = np.stack([decoding.greedy_decode(model, params, tokens, max_decode_length=MAX_LEN,
                                              prefix_embeddings=p) for p in prompts], axis=1)
  assert per_prompt.shape == (6, 4, MAX_LEN)
  np.testing.assert_array_equal(per_prompt, separate)
  np.testing.assert_array_equal(voted, _vote_sequences(separate))
  assert (voted != separate[:, 0]).any(), "the vote should overrule prompt 0 somewhere"


def test_ensemble_rank_classification_equals_separate_prompts_and_numpy_vote(model_params):
  model, params = model_params
  tokens, prompts, labels = _tokens(), _prompts(5, seed=3), TASK_LABELS[1]
  voted, per_prompt, scores = serving.ensemble_rank_classification(model, params, tokens, prompts, labels)
  separate = [decoding.rank_classification(model, params, tokens, labels, prefix_embeddings=p) for p in prompts]
  sep_best = np.stack([b for b, _ in separate], axis=1)
  sep_scores = np.stack([s for _, s in separate], axis=1)
  np.testing.assert_array_equal(per_prompt, sep_best)
  np.testing.assert_allclose(scores, sep_scores, atol=1e-5, rtol=0)
  for i in range(6):
    counts = np.bincount(sep_best[i], minlength=len(labels))
    tied = np.flatnonzero(counts == counts.max())
    assert voted[i] == tied[np.argmax(sep_scores[i].sum(0)[tied])]
  assert len(set(sep_best.ravel().tolist())) > 1  # the prompts disagree somewhere


def test_majority_vote_tie_rules():
  votes = np.array([[1, 2, 2], [2, 1, 0]])
  np.testing.assert_array_equal(serving.majority_vote(votes, 3), [2, 0])  # majority; 3-way tie -> lowest
  tie = np.array([[0, 1, 1, 0]])
  np.testing.assert_array_equal(serving.majority_vote(tie, 2), [0])
  np.testing.assert_array_equal(serving.majority_vote(tie, 2, tie_scores=[[-3.0, -1.0]]), [1])
  # Tie scores only break ties: a real majority wins even with a lower score.
  np.testing.assert_array_equal(serving.majority_vote([[0, 0, 1]], 2, tie_scores=[[-9.0, 0.0]]), [0])


def test_ensemble_batch_is_example_major():
  tokens, ids = serving.ensemble_batch(np.array([[3, 4], [5, 0]]), 3)
  np.testing.assert_array_equal(tokens, [[3, 4]] * 3 + [[5, 0]] * 3)
  np.testing.assert_array_equal(ids, [0, 1, 2, 0, 1, 2])


def test_bad_inputs_name_the_problem(model_params):
  model, params = model_params
  tokens, bank = _tokens(), _prompts(3)
  with pytest.raises(PromptShapeError, match="must share"):
    serving.stack_prompts([bank[0], bank[1, :3]])
  with pytest.raises(PromptShapeError, match=r"shape \(4, 16\) but the model expects \(4, 32\)"):
    serving.mixed_greedy_decode(model, params, tokens, TASK_OF_ROW, bank[..., :16], max_decode_length=3)
  with pytest.raises(PromptShapeError, match=r"\[num_prompts >= 1, prompt_length, d_model\]"):
    serving.stack_prompts(bank[0])
  with pytest.raises(IndexError, match=r"prompt_ids \[-1, 3\] are out of range .* 3 prompts"):
    serving.mixed_greedy_decode(model, params, tokens, [0, 3, 1, -1, 0, 2], bank, max_decode_length=3)
  with pytest.raises(ValueError, match=r"one prompt index per row, shape \[6\]"):
    serving.mixed_greedy_decode(model, params, tokens, [0, 1], bank, max_decode_length=3)
  with pytest.raises(ValueError, match="integer indices"):
    serving.gather_prompts(bank, np.zeros(6))
  with pytest.raises(ValueError, match=r"one label set per prompt in the bank \(3\); got 2"):
    serving.mixed_rank_classification(model, params, tokens, TASK_OF_ROW, bank, TASK_LABELS[:2])
  with pytest.raises(ValueError, match="Labels of prompt 2: .*at least one label"):
    serving.mixed_rank_classification(model, params, tokens, TASK_OF_ROW, bank, TASK_LABELS[:2] + [[]])
  with pytest.raises(ValueError, match="at least one prompt"):
    serving.ensemble_batch(tokens, 0)
