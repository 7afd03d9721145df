"""The README's main command, scaled down: `spot-jax quickstart` with the `fast` config end to end."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fast_quickstart_prints_the_table_and_writes_its_files(tmp_path):
  workdir = tmp_path / "qs"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-m", "spot_jax.cli", "quickstart", "--config=experiments/quickstart.py:fast",
                        f"--workdir={workdir}"], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  for row in ("baseline (prompt tuning)", "oracle", "prompt tuning, vocab init", "SPoT: retrieved top-1",
              "SPoT: top-3 weighted average", "SPoT: top-3 multi-task mixture", "best of top-3"):
    assert row in out.stdout, row
  assert "first same-family source at rank" in out.stdout
  results = workdir / "results"
  for name in ("summary.txt", "headline.csv", "table_seed_mean.csv", "retrieval_table.csv", "transfer_scores.png",
               "transfer_rer.png", "transfer_rer.csv", "task_similarity.png", "zero_shot_relative.png", "indicator_correlations.csv",
               "ranking_synth_seven_target.csv"):
    assert (results / name).exists(), name
  assert "scores: eval mode 'generate' (greedy decoding, an output that is no label counts as wrong)" in out.stdout
  assert "eval_mode" in (results / "table_seed_mean.csv").read_text().splitlines()[0]
  written = json.loads((results / "scores.json").read_text())
  assert written["eval_mode"] == "generate"
  scores = written["scores"]
  methods = {key.split("/")[0] for key in scores}
  assert {"baseline", "vocab_init", "weighted_average", "mixture", "from_synth_seven_comma"} <= methods
  assert all(0 <= v <= 100 for v in scores.values())
  mixture_run = workdir / "targets" / "synth_seven_target" / "seed0" / "mixture_source"
  assert (mixture_run / "prompts" / "best.npy").exists()
