"""One process of tests/test_multihost.py: the tiny prompt training of tests/train_fixtures.py,
started through `spot_jax.distributed` as one of `--num-processes` processes (1 = plain single-host).

Every process makes the same global batches (fx.ArrayIterator) and feeds the trainer its own
contiguous slice of rows, as a real per-host input pipeline would. Writes its train losses (and
evaluation scores) to `<workdir>/losses-<process>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ProcessShard:
  """This process's rows of a global iterator's batches; its position says whose it is.

  From batch `slow_from` on, each batch takes `delay` seconds more, so that a test can kill the run
  mid-way (after a checkpoint) without racing it.
  """

  def __init__(self, global_iter, process_index: int, process_count: int, slow_from: int = -1, delay: float = 0.0):
    self.inner, self.index, self.count = global_iter, process_index, process_count
    self.slow_from, self.delay = slow_from, delay

  def __next__(self):
    if 0 <= self.slow_from <= self.inner.position:
      time.sleep(self.delay)
    batch = next(self.inner)
    rows = len(batch["encoder_input_tokens"]) // self.count
    return {k: v[self.index * rows:(self.index + 1) * rows] for k, v in batch.items()}

  def get_state(self) -> dict:
    return {**self.inner.get_state(), "process_index": self.index}

  def set_state(self, state: dict) -> None:
    if state["process_index"] != self.index:
      raise ValueError(f"process {self.index} was handed the data position of process {state['process_index']}")
    self.inner.set_state({k: v for k, v in state.items() if k != "process_index"})


def make_evaluate(model_cfg, frozen):
  """evaluate(prompt) -> {'score'}: rank classification of fixed rows (the evaluation path of a real run)."""
  import numpy as np
  from spot_jax import decoding
  from spot_jax.models import t5
  from tests import train_fixtures as fx
  tokens = np.random.default_rng(1).integers(3, fx.VOCAB, (8, 12)).astype(np.int32)

  def evaluate(prompt):
    _, scores = decoding.rank_classification(t5.T5(model_cfg), frozen, tokens, [[5], [6, 7]],
                                             prefix_embeddings=prompt)
    return {"score": float(np.mean(scores))}

  return evaluate


def config(steps: int, checkpoint_every: int, eval_every: int = 0):
  """The trainer config of every run of the test (the single-process reference included)."""
  from tests import train_fixtures as fx
  return fx.small_config(num_train_steps=steps, checkpoint_every=checkpoint_every, keep_checkpoints=10,
                         mesh_shape=(4, 2), eval_every=eval_every)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--heartbeat-timeout", type=int, default=10)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--checkpoint-every", type=int, default=2)
  parser.add_argument("--slow-from", type=int, default=-1, help="batches from this one on take --delay s more")
  parser.add_argument("--delay", type=float, default=0.0)
  parser.add_argument("--eval-every", type=int, default=0)
  parser.add_argument("--frozen", default="", help="pickled (T5Config, params) of fx.tiny_model(); skips its init")
  args = parser.parse_args()

  from spot_jax import configs, distributed
  dist = configs.distributed_defaults()
  if args.num_processes > 1:
    dist.enabled = True
    dist.coordinator_address = f"127.0.0.1:{args.port}"
    dist.num_processes, dist.process_id = args.num_processes, args.process_id
    dist.initialization_timeout, dist.heartbeat_timeout, dist.shutdown_timeout = 60, args.heartbeat_timeout, 30
  distributed.maybe_initialize(dist)  # before any JAX computation

  import jax
  from spot_jax import train
  from spot_jax.models import prompt as prompt_lib
  from tests import train_fixtures as fx

  if args.frozen:
    with open(args.frozen, "rb") as f:
      model_cfg, frozen = pickle.load(f)
  else:
    model_cfg, frozen = fx.tiny_model()
  cfg = config(args.steps, args.checkpoint_every, args.eval_every)
  batches = ProcessShard(fx.ArrayIterator(cfg.batch_size), jax.process_index(), jax.process_count(),
                         args.slow_from, args.delay)
  result = train.train(cfg, args.workdir, model_config=model_cfg, frozen_params=frozen, train_iter=batches,
                       prompt_init=prompt_lib.random_uniform(), name=f"p{jax.process_index()}",
                       evaluate=make_evaluate(model_cfg, frozen) if args.eval_every else None)
  losses = {h["step"]: h["train/loss"] for h in result.train_history}
  scores = {h["step"]: h["score"] for h in result.eval_history}
  with open(os.path.join(args.workdir, f"losses-{jax.process_index()}.json"), "w") as f:
    json.dump({"devices": jax.device_count(), "processes": jax.process_count(), "losses": losses,
               "scores": scores}, f)


if __name__ == "__main__":
  main()
