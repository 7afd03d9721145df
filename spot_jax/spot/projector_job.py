"""`spot-jax project`: Su et al.'s cross-model transfer as a job, next to the projector it trains.

Why its own module: spot/projector.py is the projector and its two objectives (what is trained);
this is the job around it (libraries of source and target prompts in, a trained projector and the
zero-shot / init-transfer table out), composed of the same jobs functions as every other command.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from spot_jax import evaluation, fileio, jobs
from spot_jax.data import pipeline, vocab as vocab_lib
from spot_jax.models import prompt as prompt_lib
from spot_jax.spot import library as library_lib
from spot_jax.spot import projector as projector_lib


def source_model_fingerprint(config: ml_collections.ConfigDict) -> Optional[str]:
  """The fingerprint of the source model at `config.source_model.hf_path` (None when not given): the
  source library is checked against it."""
  source = config.get("source_model", {}).get("hf_path")
  return jobs.load_backbone(config.source_model).fingerprint if source else None


def run_projector(config: ml_collections.ConfigDict, workdir: str, *, backbone: jobs.Backbone,
                  vocab: vocab_lib.SentencePieceVocab, source_fingerprint: Optional[str] = None,
                  verbose: bool = True) -> dict[str, Any]:
  """`spot-jax project`: Su et al.'s cross-model transfer onto `backbone` (the target model).

  1. Train a projector from the source model's prompts (`projector.source_library`) to the target:
     objective 'task' tunes it on `config.task` through the frozen target; 'distance' fits the pairs
     of `projector.distance_tasks` (default: every task in both libraries) to `projector.target_library`.
  2. For every `projector.transfer_tasks`: the projected source prompt zero-shot on the target task,
     against a `config.prompt_init` prompt; with `projector.init_transfer`, target prompt tuning
     (`config.train`) from each of the two. Writes `projector.msgpack` and `results.json` in `workdir`.
  With `source_fingerprint` (`source_model_fingerprint(config)`), the source library must be that
  model's.
  """
  with jobs.claim_job_workdir(config, workdir, "projector", backbone.fingerprint):
    p = config.projector
    sources = library_lib.PromptLibrary(p.source_library, model_fingerprint=source_fingerprint)
    length, d_source = sources.shape
    projector = projector_lib.Projector(length, d_source, backbone.config.d_model, p.hidden_size, p.layer_norm)
    proj_cfg = ml_collections.ConfigDict(p.train.to_dict())
    proj_cfg.prompt_length = length  # the projector keeps the source prompt's length
    initial = projector_lib.init_params(projector, proj_cfg.seed)
    eval_task = config.get("eval_task") or config.task
    evaluate = (evaluation.make_evaluator(eval_task, vocab, backbone, config.data, evaluation.eval_mode(config),
                                          mesh_shape=proj_cfg.mesh_shape)
                if eval_task and proj_cfg.eval_every else None)
    targets = (library_lib.PromptLibrary(p.target_library, model_fingerprint=backbone.fingerprint, prompt_length=length)
               if p.get("target_library") else None)
    common = dict(projector=projector, params=initial, model_config=backbone.config, frozen_params=backbone.params,
                  evaluate=evaluate, verbose=verbose)
    run_dir = os.path.join(workdir, "projector")
    if p.objective == "task":
      seen = [config.task]
      iterator = pipeline.make_train_iterator(
          config.task, vocab, batch_size=proj_cfg.batch_size // jax.process_count(),
          input_length=config.data.input_length, target_length=config.data.target_length, seed=proj_cfg.seed,
          process_index=jax.process_index(), process_count=jax.process_count(),
          data_dir=config.data.get("data_dir") or None,
          skip_invalid_examples=config.data.get("skip_invalid_examples", False))
      try:
        result = projector_lib.tune_on_task(proj_cfg, run_dir, source_prompt=sources.get(config.task).value,
                                            train_iter=iterator, **common)
      finally:
        iterator.close()
    elif p.objective == "distance":
      if targets is None:
        raise ValueError("projector.objective='distance' needs projector.target_library: the target model's prompts "
                         "for the same tasks (build it with `spot-jax library build` on the target model).")
      seen = list(p.distance_tasks) or [t for t in sources.names() if t in targets]
      if not seen:
        raise ValueError(f"No task has a prompt in both {sources.path} and {targets.path}; the distance objective "
                         "needs (source prompt, target prompt) pairs of the same tasks.")
      result = projector_lib.fit_distance(
          proj_cfg, run_dir, source_prompts=np.stack([sources.get(t).value for t in seen]),
          target_prompts=np.stack([targets.get(t).value for t in seen]),
          shown_source_prompt=sources.get(eval_task).value if eval_task else None, **common)
    else:
      raise ValueError(f"Unknown projector.objective {p.objective!r}; choose task (Su et al.'s task tuning) or "
                       "distance (distance minimizing).")
    params = result.params
    projector_lib.save_params(os.path.join(workdir, "projector.msgpack"), params)

    target_cfg = ml_collections.ConfigDict(config.to_dict())
    target_cfg.train.prompt_length, target_cfg.train.embedding_step = length, 0
    rows = []
    for task in p.transfer_tasks:
      source_prompt = sources.get(task).value
      projected = projector_lib.project(projector, params, source_prompt)
      baseline = np.asarray(jobs.make_prompt_init(config.prompt_init, backbone, vocab, task)(
          jax.random.key(target_cfg.train.seed), projected.shape))
      evaluate_task = evaluation.make_evaluator(task, vocab, backbone, config.data, evaluation.eval_mode(config),
                                                mesh_shape=config.train.mesh_shape)
      row = {"task": task, "seen": task in seen, "zero_shot_projected": evaluate_task(projected)["score"],
             "zero_shot_baseline": evaluate_task(baseline)["score"]}
      if targets is not None and task in targets:
        target_prompt = targets.get(task).value
        row["distance_before"] = projector_lib.distance(projector_lib.project(projector, initial, source_prompt),
                                                        target_prompt)
        row["distance_after"] = projector_lib.distance(projected, target_prompt)
      if p.init_transfer:
        for method, start in (("projected", projected), ("baseline", baseline)):
          run = jobs.train_prompt(target_cfg, os.path.join(workdir, "targets", task, method), backbone=backbone,
                             vocab=vocab, task_name=task, prompt_init=prompt_lib.from_array(start),
                             name=f"{task}/from_{method}", verbose=verbose)
          row[f"init_{method}"] = run.best_score
          row[f"init_{method}_history"] = [{"step": h["step"], "score": h["score"]} for h in run.eval_history]
      rows.append(row)
      if verbose:
        print(f"[project] {task}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in row.items() if not k.endswith("_history")), flush=True)
    losses = [h["train/loss"] for h in result.train_history]
    fileio.write_json(os.path.join(workdir, "results.json"),
                      {"objective": p.objective, "trained_on": seen, "rows": rows, "projector_train_loss": losses})
    return {"rows": rows, "params": params, "projector": projector, "train_result": result}


