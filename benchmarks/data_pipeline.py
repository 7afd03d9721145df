"""Input-pipeline throughput on the synthetic tasks: examples/s and truncation counts.

    .venv/bin/python benchmarks/data_pipeline.py [--data_dir=/tmp/spot_synth] [--batches=300]

Builds the synthetic TFDS dataset and a 256-piece SentencePiece model if needed (offline), then
times `make_train_iterator` (batch 32, input 128, target 8 by default) on one task and on the
mixture of all synthetic source tasks, with and without the prefetch thread. The pipeline is not
the bottleneck if its examples/s is well above the train step's (batch_size / step time); the
`--step_ms` lines show how much of it the prefetch thread hides behind a step.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from spot_jax.data import pipeline, synthetic, vocab


def _time(name: str, v: vocab.SentencePieceVocab, args, prefetch: int, input_length: int) -> None:
  it = pipeline.make_train_iterator(name, v, batch_size=args.batch_size, input_length=input_length,
                                    target_length=args.target_length, seed=0, prefetch=prefetch)
  with it:
    for _ in range(args.warmup):
      next(it)
    start = time.perf_counter()
    for _ in range(args.batches):
      next(it)
    seconds = time.perf_counter() - start
    t = it.truncation
  rate = args.batches * args.batch_size / seconds
  print(f"{name:22s} prefetch={prefetch} S={input_length:<4d} {rate:9.0f} examples/s  "
        f"({1e3 * seconds / args.batches:.2f} ms/batch)  truncated inputs {t['inputs_truncated']}/{t['examples']}, "
        f"targets {t['targets_truncated']}/{t['examples']}")


def _time_with_step(name: str, v: vocab.SentencePieceVocab, args, prefetch: int) -> None:
  """Wall time per step when each step also spends `--step_ms` off the GIL (as a jitted train
  step does): with prefetch the pipeline's work hides behind it."""
  it = pipeline.make_train_iterator(name, v, batch_size=args.batch_size, input_length=args.input_length,
                                    target_length=args.target_length, seed=0, prefetch=prefetch)
  with it:
    for _ in range(args.warmup):
      next(it)
    start = time.perf_counter()
    for _ in range(args.batches // 3):
      next(it)
      time.sleep(args.step_ms / 1e3)
    seconds = time.perf_counter() - start
  print(f"{name:22s} prefetch={prefetch} with a {args.step_ms:.0f} ms step: "
        f"{1e3 * seconds / (args.batches // 3):.2f} ms/step (pipeline overhead "
        f"{1e3 * seconds / (args.batches // 3) - args.step_ms:+.2f} ms)")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "spot_jax_synthetic"))
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--input_length", type=int, default=128)
  parser.add_argument("--target_length", type=int, default=8)
  parser.add_argument("--batches", type=int, default=300)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--step_ms", type=float, default=5.0)
  args = parser.parse_args()

  start = time.perf_counter()
  synthetic.prepare(args.data_dir)
  print(f"synthetic dataset ready in {args.data_dir} ({time.perf_counter() - start:.1f} s)")
  model = os.path.join(args.data_dir, "spm_256.model")
  if not os.path.exists(model):
    vocab.train_sentencepiece(synthetic.corpus_lines(args.data_dir), model[:-len(".model")], 256)
  v = vocab.SentencePieceVocab(model)
  print(f"vocab: {v.vocab_size} pieces; batch {args.batch_size}, input {args.input_length}, "
        f"target {args.target_length}, {args.batches} batches timed")
  for name in (synthetic.SOURCE_TASKS[0], "synth_sources"):
    for prefetch in (0, 2):
      _time(name, v, args, prefetch, args.input_length)
  for prefetch in (0, 2):
    _time_with_step("synth_sources", v, args, prefetch)
  # Truncation is counted, not hidden: the same mixture with a too-short input length.
  _time("synth_sources", v, args, 2, 8)


if __name__ == "__main__":
  main()
