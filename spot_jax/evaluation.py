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
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from spot_jax import decoding, errors, sharding
from spot_jax.data import pipeline, tasks as tasks_lib, vocab as vocab_lib
from spot_jax.models import t5


EVAL_MODES = ("generate", "rank")


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

  def evaluate(prompt: np.ndarray) -> dict[str, float]:
    predictions: list[str] = []
    for start in range(0, len(tokens), batch_size):
      chunk = _pad_rows(tokens[start:start + batch_size], batch_size)
      count = min(batch_size, len(tokens) - start)
      if label_ids is not None:
        best, _ = decoding.rank_classification(model, backbone.params, chunk, label_ids, prefix_embeddings=prompt,
                                               mesh=mesh)
        predictions += [task.label_words[i] for i in np.asarray(best)[:count]]
      else:
        out = decoding.greedy_decode(model, backbone.params, chunk, max_decode_length=data.target_length,
                                     prefix_embeddings=prompt, mesh=mesh)
        predictions += [vocab.decode([int(t) for t in row]) for row in np.asarray(out)[:count]]
    return task.evaluate(examples, predictions)

  return evaluate


def eval_mode(config: ml_collections.ConfigDict) -> str:
  """config.eval.mode ('generate', the papers' scoring, unless a config says 'rank')."""
  return config.get("eval", {}).get("mode", "generate")


def _pad_rows(tokens: np.ndarray, rows: int) -> np.ndarray:
  """Pads a batch to a fixed row count (one compiled shape; padded rows are dropped after)."""
  if len(tokens) == rows:
    return tokens
  return np.concatenate([tokens, np.zeros((rows - len(tokens),) + tokens.shape[1:], tokens.dtype)])
