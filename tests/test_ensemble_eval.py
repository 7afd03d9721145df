"""Prompt ensembling at evaluation (Lester et al. 2021): the ensemble's predictions are the per-example
majority of the prompts' own predictions (ties to the lowest prompt), rank mode agrees with
`serving.ensemble_rank_classification`, and `spot-jax eval --prompts=... --ensemble=vote` prints each
prompt's score and the ensemble's, the same numbers as in-process."""

import collections
import os
import re

import numpy as np
import pytest

from spot_jax import configs, errors, evaluation, jobs, serving
from spot_jax.checkpoints import hf, prompts as prompt_io
from spot_jax.data import pipeline, tasks
from spot_jax.models import t5
from tests import cli_world as world_lib

TASK = "synth_reverse_target"  # free text (the 'text' postprocessor): the random model writes varied answers


@pytest.fixture(scope="module")
def world(cli_world):
  os.environ.setdefault("TFDS_DATA_DIR", cli_world.data_dir)
  cfg, params = hf.load_hf_t5(cli_world.backbone)
  vocab = world_lib.register_yes_no_task(cli_world, "test_ensemble_yes_no", rows=12)
  return cli_world, jobs.Backbone(cfg, params, "random"), vocab


def _data(world_dir):
  data = configs.base_config().data  # the shapes of cli_world.SMALL, so the CLI run scores the same examples
  data.update(dict(input_length=32, target_length=8, eval_max_examples=16, eval_batch_size=16, data_dir=world_dir))
  return data


def _prompts(backbone, count, seed=0, length=4):
  """Rows of the frozen embedding: prompts that change what the random model writes."""
  embedding = np.asarray(backbone.params["token_embedder"])
  rng = np.random.default_rng(seed)
  return [embedding[rng.choice(len(embedding), length)].astype(np.float32) for _ in range(count)]


def _hand_vote(task, examples, predictions):
  """Per example: the postprocessed answer most prompts gave; a tie goes to the lowest prompt's answer."""
  voted = []
  for i, example in enumerate(examples):
    answers = [task.postprocess(p[i], tasks.t5_example(example)) for p in predictions]
    counts = collections.Counter(answers)
    best = max(counts.values())
    voted.append(predictions[next(n for n, a in enumerate(answers) if counts[a] == best)][i])
  return voted


def test_ensemble_is_the_majority_of_the_prompts_predictions(world):
  cli_world, backbone, vocab = world
  data = _data(cli_world.data_dir)
  result = evaluation.make_ensemble_evaluator(TASK, vocab, backbone, data)(_prompts(backbone, 5))
  task, examples = tasks.get_task(TASK), pipeline.load_eval_examples(TASK, vocab, input_length=32, max_examples=16,
                                                                     data_dir=cli_world.data_dir)
  assert len(result.predictions) == 5 and all(len(p) == len(examples) == 16 for p in result.predictions)
  single = evaluation.make_evaluator(TASK, vocab, backbone, data)
  assert [single(p) for p in _prompts(backbone, 5)] == result.per_prompt  # each prompt scored as on its own
  assert result.ensemble_predictions == _hand_vote(task, examples, result.predictions)
  assert result.ensemble == task.evaluate(examples, result.ensemble_predictions)
  for i, winner in enumerate(result.winners):
    assert result.predictions[winner][i] == result.ensemble_predictions[i]
  assert len({tuple(p) for p in result.predictions}) == 5  # the prompts disagree ...
  assert any(w > 0 for w in result.winners)  # ... and the vote overrules prompt 0 somewhere
  # Majority, not first: two copies of prompt 3 outvote prompts 0-2 wherever those three disagree.
  p = _prompts(backbone, 5)
  twice = evaluation.make_ensemble_evaluator(TASK, vocab, backbone, data)([p[0], p[1], p[2], p[3], p[3]])
  assert twice.ensemble_predictions == _hand_vote(task, examples, twice.predictions)
  assert any(w == 3 for w in twice.winners)


def test_rank_mode_ensemble_agrees_with_serving(world):
  cli_world, backbone, vocab = world
  name = "test_ensemble_yes_no"
  prompts = _prompts(backbone, 3, seed=1)
  data = _data(cli_world.data_dir)
  result = evaluation.make_ensemble_evaluator(name, vocab, backbone, data, "rank")(prompts)
  examples = pipeline.load_eval_examples(name, vocab, input_length=32)
  tokens = pipeline.pad_batch([e["encoder_input_tokens"] for e in examples], 32)
  labels = [vocab.encode(w) for w in tasks.get_task(name).label_words]
  voted, per_prompt, _ = serving.ensemble_rank_classification(t5.T5(backbone.config), backbone.params, tokens,
                                                              prompts, labels)
  words = tasks.get_task(name).label_words
  assert result.ensemble_predictions == [words[i] for i in voted]
  assert result.predictions == [[words[i] for i in column] for column in per_prompt.T]


def test_unknown_method_and_no_prompts_are_refused(world):
  cli_world, backbone, vocab = world
  with pytest.raises(errors.ConfigError, match="Ensemble method 'mean' is not known"):
    evaluation.make_ensemble_evaluator(TASK, vocab, backbone, _data(cli_world.data_dir), method="mean")
  with pytest.raises(ValueError, match="needs at least one prompt"):
    evaluation.make_ensemble_evaluator(TASK, vocab, backbone, _data(cli_world.data_dir))([])


def test_cli_prints_each_prompts_score_and_the_ensembles(world, tmp_path):
  cli_world, backbone, vocab = world
  prompts = _prompts(backbone, 3, seed=2)
  paths = [str(tmp_path / f"p{i}.npy") for i in range(3)]
  for path, prompt in zip(paths, prompts):
    prompt_io.save_npy(path, prompt)
  out = world_lib.run_cli(cli_world, "eval", f"--config=experiments/prompt_tuning.py:task={TASK},"
                          f"hf_path={cli_world.backbone}", f"--prompts={','.join(paths)}", "--ensemble=vote")
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.strip().splitlines()[-5:]
  assert lines[0] == f"eval mode generate, task {TASK}, 3 prompts:"
  expected = evaluation.make_ensemble_evaluator(TASK, vocab, backbone, _data(cli_world.data_dir))(prompts)
  show = lambda metrics: ", ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items()))
  for i, (path, metrics) in enumerate(zip(paths, expected.per_prompt), start=1):
    assert lines[i] == f"  prompt {i} ({path}): {show(metrics)}"
  assert lines[4] == f"  ensemble (vote of 3 prompts): {show(expected.ensemble)}"
  assert re.search(r"score=\d+\.\d\d", lines[4])
