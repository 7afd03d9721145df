"""Evaluation of a prompt on a task's validation split, scored as the papers score it.

Why its own module: every number spot_jax reports (best-checkpoint selection, the transfer grid,
retrieval's relative error reduction) comes from here, so how a prompt is scored must be one
explicit choice: `generate` (default; greedy decoding, the task's postprocessor maps text to a label,
an invalid output is wrong: T5's evaluation and the papers') or `rank` (rank classification over the
label words; an option for classification tasks, never silently the default).

Sharded: the evaluator runs on a ('data', 'model') mesh (`mesh_shape`, the trainer's
`config.train.mesh_shape`): the frozen params are the trainer's placed copy (`sharding.place_frozen`
places them once per (params, mesh) and hands both the same device arrays), each batch is split over
'data' (padded to a multiple of it) and the params over their logical axes; nothing of the model is
copied host->device per batch. Every process of a multi-host run gets the same scores.

Prompt ensembling (Lester et al. 2021, §7): `make_ensemble_evaluator` scores several prompts of one
task with the same decoding, then a per-example majority vote over their predictions, as
`spot_jax.serving` votes (generate: postprocessed answers, a tie to the lowest prompt index; rank:
label votes, a tie to the highest score summed over the prompts).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import ml_collections
import numpy as np

from spot_jax import decoding, errors, serving, sharding
from spot_jax.data import pipeline, tasks as tasks_lib, vocab as vocab_lib
from spot_jax.models import t5


EVAL_MODES = ("generate", "rank")
ENSEMBLE_METHODS = ("vote",)


@dataclasses.dataclass(frozen=True)
class Predictions:
  """One prompt's predictions on the validation split, in example order."""

  texts: list[str]  # decoded text (rank mode: the chosen label word)
  labels: Optional[np.ndarray] = None  # rank mode: chosen label index [examples]
  scores: Optional[np.ndarray] = None  # rank mode: log-likelihood of each label [examples, labels]


def make_evaluator(task_name: str, vocab: vocab_lib.SentencePieceVocab, backbone: Any,  # a jobs.Backbone
                   data: ml_collections.ConfigDict, mode: str = "generate", *,
                   mesh_shape: Sequence[int] = (-1, 1)) -> Callable[[np.ndarray], dict[str, float]]:
  """-> evaluate(prompt) -> metrics incl. 'score', on the task's validation split.

  `mesh_shape` (data, model) as `config.train.mesh_shape`: pass the trainer's, so evaluation during
  training reuses the trainer's placed frozen params (the default puts every device on 'data').

  mode "generate" scores as the papers do (and T5's evaluation): greedy decoding (KV cache) up to
  `data.target_length` tokens, the task's postprocessor maps the text to a label, and a text that is
  no label word counts as wrong. mode "rank" (an option for classification tasks) picks the most
  likely label word by teacher-forced log-likelihood, so it never produces an invalid label.
  """
  task, examples, predict = make_predictor(task_name, vocab, backbone, data, mode, mesh_shape=mesh_shape)

  def evaluate(prompt: np.ndarray) -> dict[str, float]:
    return task.evaluate(examples, predict(prompt).texts)

  return evaluate


@dataclasses.dataclass(frozen=True)
class EnsembleResult:
  """Scores of N prompts alone and of their majority vote, on one task's validation split."""

  per_prompt: list[dict[str, float]]  # [N] metrics incl. 'score' of each prompt alone, in prompt order
  ensemble: dict[str, float]  # metrics incl. 'score' of the voted predictions
  predictions: list[list[str]]  # [N][examples] each prompt's decoded text (rank: label word)
  ensemble_predictions: list[str]  # [examples] the winning prompt's text
  winners: np.ndarray  # [examples] index of a prompt that gave the winning answer (the lowest such one)


def make_ensemble_evaluator(task_name: str, vocab: vocab_lib.SentencePieceVocab, backbone: Any,
                            data: ml_collections.ConfigDict, mode: str = "generate", *,
                            mesh_shape: Sequence[int] = (-1, 1), method: str = "vote"
                            ) -> Callable[[Sequence[np.ndarray]], EnsembleResult]:
  """-> evaluate_ensemble(prompts [L_i, d_model] each) -> EnsembleResult (Lester et al.'s ensemble).

  Each prompt is decoded exactly as `make_evaluator` does (same mode, mesh and batches); then, per
  example, method "vote" keeps the answer most prompts gave, as `spot_jax.serving` votes:
  generate: answers are equal when the task's postprocessor maps them to the same value (so ' yes' and
  'yes' vote together where the task says so) and a tie goes to the answer of the lowest prompt index
  (`serving.winning_voter`); rank: each prompt votes for a label and a tie goes to the highest score
  summed over the prompts, then to the lowest label index (`serving.majority_vote`). The ensemble's
  text is that of the winning prompt, scored by the task like any prediction. Prompts may differ in
  length (each is decoded on its own).
  """
  if method not in ENSEMBLE_METHODS:
    raise errors.ConfigError(f"Ensemble method {method!r} is not known: choose one of {ENSEMBLE_METHODS}.")
  task, examples, predict = make_predictor(task_name, vocab, backbone, data, mode, mesh_shape=mesh_shape)
  t5_examples = [tasks_lib.t5_example(e) for e in examples]

  def evaluate_ensemble(prompts: Sequence[np.ndarray]) -> EnsembleResult:
    if len(prompts) == 0:
      raise ValueError("An ensemble needs at least one prompt; got none.")
    outputs = [predict(prompt) for prompt in prompts]
    texts = [o.texts for o in outputs]  # [N][examples]
    if mode == "rank":
      votes = np.stack([o.labels for o in outputs], axis=1)  # [examples, N]
      scores = np.stack([o.scores for o in outputs], axis=1)  # [examples, N, labels]
      label = serving.majority_vote(votes, scores.shape[-1], scores.sum(axis=1))
      winners = (votes == label[:, None]).argmax(axis=1)
    else:
      answers = [[task.postprocess(t[i], ex) for t in texts] for i, ex in enumerate(t5_examples)]
      same = np.array([[[bool(a == b) for b in row] for a in row] for row in answers], bool).reshape(
          len(examples), len(prompts), len(prompts))  # [examples, N, N]
      winners = serving.winning_voter(same)
    voted = [texts[int(w)][i] for i, w in enumerate(winners)]
    return EnsembleResult([task.evaluate(examples, t) for t in texts], task.evaluate(examples, voted), texts,
                          voted, np.asarray(winners))

  return evaluate_ensemble


def make_predictor(task_name: str, vocab: vocab_lib.SentencePieceVocab, backbone: Any,
                   data: ml_collections.ConfigDict, mode: str = "generate", *, mesh_shape: Sequence[int] = (-1, 1)
                   ) -> tuple[tasks_lib.Task, list[dict], Callable[[np.ndarray], Predictions]]:
  """-> (task, its validation examples, predict(prompt) -> Predictions): the decoding behind
  `make_evaluator` and `make_ensemble_evaluator` (arguments as `make_evaluator`'s)."""
  if mode not in EVAL_MODES:
    raise errors.ConfigError(f"config.eval.mode = {mode!r} is not allowed: it must be one of {EVAL_MODES}.")
  task = tasks_lib.get_task(task_name)
  if mode == "rank" and not task.label_words:
    raise errors.ConfigError(f"config.eval.mode = 'rank' needs a classification task with label words; task "
                             f"{task_name!r} generates free text. Use config.eval.mode='generate'.")
  examples = pipeline.load_eval_examples(task_name, vocab, input_length=data.input_length,
                                         max_examples=data.get("eval_max_examples") or None,
                                         data_dir=data.get("data_dir") or None,
                                         skip_invalid_examples=data.get("skip_invalid_examples", False))
  tokens = pipeline.pad_batch([e["encoder_input_tokens"] for e in examples], data.input_length)
  model = t5.T5(backbone.config)
  mesh = sharding.make_mesh(mesh_shape)
  data_axis = mesh.shape["data"]
  # One compiled shape: every batch (the last one padded) has `batch_size` rows, a multiple of 'data',
  # and no more than the split needs.
  batch_size = -(-min(data.get("eval_batch_size", 64), max(len(tokens), 1)) // data_axis) * data_axis
  label_ids = [vocab.encode(w) for w in task.label_words] if mode == "rank" else None

  def predict(prompt: np.ndarray) -> Predictions:
    predictions: list[str] = []
    labels, scores = [], []
    for start in range(0, len(tokens), batch_size):
      chunk = _pad_rows(tokens[start:start + batch_size], batch_size)
      count = min(batch_size, len(tokens) - start)
      if label_ids is not None:
        best, score = decoding.rank_classification(model, backbone.params, chunk, label_ids,
                                                   prefix_embeddings=prompt, mesh=mesh)
        labels.append(np.asarray(best)[:count])
        scores.append(np.asarray(score)[:count])
        predictions += [task.label_words[i] for i in labels[-1]]
      else:
        out = decoding.greedy_decode(model, backbone.params, chunk, max_decode_length=data.target_length,
                                     prefix_embeddings=prompt, mesh=mesh)
        predictions += [vocab.decode([int(t) for t in row]) for row in np.asarray(out)[:count]]
    if label_ids is None:
      return Predictions(predictions)
    return Predictions(predictions, np.concatenate(labels) if labels else np.zeros((0,), np.int64),
                       np.concatenate(scores) if scores else np.zeros((0, len(label_ids)), np.float32))

  return task, examples, predict


def eval_mode(config: ml_collections.ConfigDict) -> str:
  """config.eval.mode ('generate', the papers' scoring, unless a config says 'rank')."""
  return config.get("eval", {}).get("mode", "generate")


def _pad_rows(tokens: np.ndarray, rows: int) -> np.ndarray:
  """Pads a batch to a fixed row count (one compiled shape; padded rows are dropped after)."""
  if len(tokens) == rows:
    return tokens
  return np.concatenate([tokens, np.zeros((rows - len(tokens),) + tokens.shape[1:], tokens.dtype)])
