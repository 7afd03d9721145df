"""Input-pipeline throughput on the synthetic tasks: examples/s and truncation counts.

    .venv/bin/python benchmarks/data_pipeline.py [--data_dir=/tmp/spot_synth] [--batches=300]

Builds the synthetic TFDS dataset and a 256-piece SentencePiece model if needed (offline), then
times `make_train_iterator` (batch 32, input 128, target 8 by default) on one task and on the
mixture of all synthetic source tasks, with and without the prefetch thread. The pipeline is not
the bottleneck if its examples/s is well above the train step's (batch_size / step time); the
`--step_ms` lines show how much of it the prefetch thread hides behind a step. The last lines time
the TFRecord reader (TFDS datasets not prepared as array_record): indexing speed and examples/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Optional

from spot_jax.data import pipeline, synthetic, tfrecord, vocab


def _time(name: str, v: vocab.SentencePieceVocab, args, prefetch: int, input_length: int,
          data_dir: Optional[str] = None, label: str = "") -> None:
  it = pipeline.make_train_iterator(name, v, batch_size=args.batch_size, input_length=input_length,
                                    target_length=args.target_length, seed=0, prefetch=prefetch, data_dir=data_dir)
  with it:
    for _ in range(args.warmup):
      next(it)
    start = time.perf_counter()
    for _ in range(args.batches):
      next(it)
    seconds = time.perf_counter() - start
    t = it.truncation
  rate = args.batches * args.batch_size / seconds
  print(f"{name + label:22s} prefetch={prefetch} S={input_length:<4d} {rate:9.0f} examples/s  "
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


def _time_indexing(path: str, records: int, size: int) -> None:
  """The TFRecord reader indexes each file on first touch: records/s of that one pass (a C4 en
  train shard holds ~356k records)."""
  import tensorflow as tf
  if not os.path.exists(path):
    payload = b"x" * size
    with tf.io.TFRecordWriter(path) as writer:
      for _ in range(records):
        writer.write(payload)
  start = time.perf_counter()
  n = len(tfrecord.index_records(path)) - 1
  seconds = time.perf_counter() - start
  print(f"TFRecord indexing: {n} records of {size} B in {seconds:.2f} s = {n / seconds:,.0f} records/s")


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
  # The TFRecord reader (TFDS datasets not in array_record, e.g. C4): the same task from a TFRecord copy.
  tfrecord_dir = args.data_dir + "_tfrecord"
  config = synthetic.SOURCE_TASKS[0][len("synth_"):]
  synthetic.prepare(tfrecord_dir, file_format="tfrecord", configs=[config])  # read below with data_dir= only
  _time_indexing(os.path.join(tfrecord_dir, "index_benchmark.tfrecord"), records=200_000, size=512)
  for prefetch in (0, 2):
    _time(synthetic.SOURCE_TASKS[0], v, args, prefetch, args.input_length, tfrecord_dir, " (tfrecord)")


if __name__ == "__main__":
  main()
