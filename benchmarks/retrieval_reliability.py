"""How often does SPoT retrieval find a target's own family? Many seeds of the target embedding run.

    .venv/bin/python benchmarks/retrieval_reliability.py --workdir=runs/quickstart [--seeds=10] [--steps=20,40]

Needs a finished quickstart workdir (its backbone, vocabulary, data and library are reused; nothing
in it is changed). For every target task and seed s, the target's task embedding is the prompt after
N steps of prompt tuning with train.seed = s (so both the init draw and the data order vary with s),
ranked against the library's keys by each of the paper's measures. Printed: per seed, the rank of
the first same-family source for each target, and the hits (rank 1) over all (target, seed) pairs;
then the same with SPoT's averaged similarity over 3 runs (seeds s, s+1, s+2), which the quickstart
uses (retrieval.target_runs = 3, seeds 0-2).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import ml_collections

from spot_jax import configs, jobs, quickstart
from spot_jax.data import synthetic, tasks as tasks_lib
from spot_jax.spot import library as library_lib, retrieval

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def family_rank(target: str, ranking: list[retrieval.Ranked]) -> int:
  """1-based rank of the first source of the target's own family."""
  return 1 + [synthetic.FAMILY.get(r.task) for r in ranking].index(synthetic.FAMILY[target])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="runs/quickstart")
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--steps", default="20", help="comma-separated embedding steps")
  args = parser.parse_args()
  config = configs.load_experiment(os.path.join(ROOT, "experiments", "quickstart.py"))
  data_dir = os.path.join(args.workdir, "data")
  if not os.path.exists(os.path.join(args.workdir, "library", "library.json")):
    raise SystemExit(f"{args.workdir} has no finished library: run ./quickstart.sh (or spot-jax quickstart "
                     f"--workdir={args.workdir}) first.")
  tasks_lib.set_data_dir(synthetic.DATASET, data_dir)
  vocab = quickstart.prepare_vocab(args.workdir, data_dir, config.vocab_size)
  backbone = quickstart.prepare_backbone(config, args.workdir, vocab)
  keys = library_lib.PromptLibrary(os.path.join(args.workdir, "library"), model_fingerprint=backbone.fingerprint).keys()
  targets = list(config.grid.targets)
  print(f"targets (in this order): {', '.join(t.replace('synth_', '') for t in targets)}")
  for steps in [int(s) for s in args.steps.split(",")]:
    start = time.perf_counter()
    embeddings = {}  # (seed, target) -> key
    for seed in range(args.seeds):
      for target in targets:
        cfg = ml_collections.ConfigDict(config.to_dict())
        cfg.train.seed, cfg.train.embedding_step = seed, steps
        with tempfile.TemporaryDirectory() as run_dir:
          embeddings[(seed, target)] = jobs.target_embedding(cfg, run_dir, backbone=backbone, vocab=vocab,
                                                             task_name=target)
    print(f"embedding step {steps} ({time.perf_counter() - start:.0f} s):")
    for runs in (1, 3):
      firsts = range(args.seeds - runs + 1)
      print(f"  similarity {'of one run' if runs == 1 else f'averaged over {runs} runs (seeds s..s+{runs - 1})'}:")
      for measure in retrieval.MEASURES:
        ranks = [[family_rank(t, retrieval.rank_sources([embeddings[(s + i, t)] for i in range(runs)], keys, measure))
                  for t in targets] for s in firsts]
        hits = sum(r == 1 for per_seed in ranks for r in per_seed)
        print(f"    {measure:<22} hits {hits:>3}/{len(firsts) * len(targets)}   ranks per first seed: "
              + " ".join("".join(str(min(r, 9)) for r in per_seed) for per_seed in ranks))

if __name__ == "__main__":
  main()
