"""K prompts per step vs one run at a time: a SPoT library build, end to end.

    .venv/bin/python benchmarks/multi_prompt.py [--shape tiny|small] [--k 12] [--sources 12]

Builds the same library of `--sources` synthetic source prompts twice with `jobs.build_library` —
`train.prompts_per_step = K`, and K = 1 (the runs one after another) — with the quickstart's library
settings, read from experiments/quickstart.py (today: `source_steps` 100, evaluation every quarter of
them on 200 examples, one checkpoint at the end, batch 32, inputs of 20 tokens + a 10-row prompt,
`prompts_in_parallel` unless --in-parallel says otherwise). Each build runs in its own fresh
process (its compiles included, as a user meets them) on a frozen backbone of random weights
(`tiny`: the quickstart's d_model-64 T5; `small`: T5 1.1 small's layer shapes over the synthetic
256-piece vocabulary). Then the bare train step alone: K prompts in one step vs K single steps.

Prints, e.g.:
    multi-prompt tiny K=12: 3.40x faster than 12 sequential runs (joint 50.1 s, sequential 170.3 s)
    multi-prompt tiny K=12 train step: 2.05x examples/s (joint 1234 ex/s, single 602 ex/s)
The two builds' prompts are compared as well (they must agree up to float reassociation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def setup(workdir: str, shape: str):
  """Synthetic data + vocab (made once, shared) and a random frozen backbone -> (config, backbone, vocab)."""
  import jax
  from spot_jax import jobs, quickstart
  from spot_jax.checkpoints import fingerprint
  from spot_jax.data import synthetic, tasks as tasks_lib
  from spot_jax.models import t5
  from experiments import quickstart as quickstart_config

  config = quickstart_config.get_config()
  data_dir = os.path.join(workdir, "data")
  synthetic.prepare(data_dir)
  tasks_lib.set_data_dir(synthetic.DATASET, data_dir)
  vocab = quickstart.prepare_vocab(workdir, data_dir, config.vocab_size)
  b = config.backbone
  if shape == "tiny":
    model_cfg = t5.get_config(b.preset, vocab_size=vocab.vocab_size, dropout_rate=0.0, **dict(b.overrides))
  else:
    model_cfg = t5.get_config("t5_1_1_small", vocab_size=vocab.vocab_size, dropout_rate=0.0)
  params = jax.tree.map(lambda x: jax.device_get(x), t5.init_params(model_cfg, jax.random.key(0)))
  backbone = jobs.Backbone(model_cfg, params, fingerprint.model_fingerprint(model_cfg, params))
  return config, backbone, vocab


def library_config(config, k: int, in_parallel=None):
  """The quickstart's source-prompt settings (spot_jax/quickstart.py), with K prompts per step."""
  import ml_collections
  cfg = ml_collections.ConfigDict(config.to_dict())
  steps = config.source_steps
  cfg.train.update(dict(num_train_steps=steps, checkpoint_every=steps, eval_every=steps // 4,
                        log_every=steps // 4, prompts_per_step=k))
  if in_parallel is not None:
    cfg.train.prompts_in_parallel = in_parallel
  return cfg


def child(args) -> None:
  """One library build in this fresh process; prints {'seconds': ...} as the last line."""
  import numpy as np
  from spot_jax import jobs
  from spot_jax.data import synthetic
  config, backbone, vocab = setup(args.data, args.shape)
  sources = list(synthetic.SOURCE_TASKS[:args.sources])
  cfg = library_config(config, args.k, args.in_parallel)
  start = time.perf_counter()
  library = jobs.build_library(cfg, args.workdir, backbone=backbone, vocab=vocab, sources=sources,
                               library_path=os.path.join(args.workdir, "library"), verbose=False)
  seconds = time.perf_counter() - start
  np.save(os.path.join(args.workdir, "values.npy"), np.stack([library.get(s).value for s in sources]))
  print(json.dumps({"seconds": seconds}))


def step_ratio(args) -> tuple[float, float]:
  """Examples/s of the bare jitted step: K prompts per step vs one prompt per step."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from spot_jax import sharding, train
  from spot_jax.data import pipeline, synthetic
  from spot_jax.models import prompt as prompt_lib
  config, backbone, vocab = setup(args.data, args.shape)
  cfg = library_config(config, 1, args.in_parallel).train
  mesh = sharding.make_mesh((1, 1))
  model = prompt_lib.PromptedT5(backbone.config, cfg.prompt_length)
  optimizer = train.make_optimizer(cfg)
  it = pipeline.make_train_iterator(synthetic.SOURCE_TASKS[0], vocab, batch_size=cfg.batch_size,
                                    input_length=config.data.input_length, target_length=config.data.target_length,
                                    seed=0)
  batch = next(it)
  it.close()
  rates = {}
  with jax.set_mesh(mesh):
    frozen = sharding.place_frozen(backbone.params, backbone.config, mesh)
    frozen_sh = jax.tree.map(lambda x: x.sharding, frozen)
    repl = sharding.replicated(mesh)
    for k in (1, args.k):
      prompt = jnp.zeros((cfg.prompt_length, backbone.config.d_model)) + 0.1
      prompts = prompt if k == 1 else jnp.stack([prompt] * k)
      opt_state = jax.jit(optimizer.init if k == 1 else jax.vmap(optimizer.init))(prompts)
      step = train.jitted_step(model, optimizer, cfg, "prompt", mesh, repl, train.state_shardings(opt_state, mesh),
                               frozen_sh, prompts_per_step=k)
      if k == 1:
        data = sharding.global_batch(batch, mesh)
        extra = ()
      else:
        data = sharding.global_batch({key: np.stack([v] * k) for key, v in batch.items()}, mesh, stacked=True)
        extra = (jax.device_put(np.arange(k, dtype=np.int32), repl), jax.device_put(np.ones(k, bool), repl))
      for _ in range(3):  # compile + warm up
        prompts, opt_state, metrics = step(prompts, opt_state, frozen, data, jnp.int32(0), *extra)
      jax.block_until_ready(metrics)
      best = float("inf")
      for _ in range(5):
        t0, n = time.perf_counter(), 10
        for i in range(n):
          prompts, opt_state, metrics = step(prompts, opt_state, frozen, data, jnp.int32(i), *extra)
        jax.block_until_ready(metrics)
        best = min(best, (time.perf_counter() - t0) / n)
      rates[k] = k * cfg.batch_size / best
  return rates[args.k], rates[1]


def run_child(args, k: int, workdir: str) -> float:
  command = [sys.executable, os.path.abspath(__file__), "--child", "--shape", args.shape, "--k", str(k),
             "--sources", str(args.sources), "--data", args.data, "--workdir", workdir]
  if args.in_parallel is not None:
    command += ["--in-parallel", str(args.in_parallel)]
  out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--shape", default="tiny", choices=("tiny", "small"))
  parser.add_argument("--k", type=int, default=12)
  parser.add_argument("--sources", type=int, default=12)
  parser.add_argument("--in-parallel", type=int, default=None,
                      help="train.prompts_in_parallel (default: the quickstart's; 0 = all K vectorised at once)")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--data", help=argparse.SUPPRESS)
  parser.add_argument("--workdir", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return child(args)
  import numpy as np
  with tempfile.TemporaryDirectory() as tmp:
    args.data = os.path.join(tmp, "shared")
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    joint = run_child(args, args.k, os.path.join(tmp, "joint"))
    sequential = run_child(args, 1, os.path.join(tmp, "sequential"))
    difference = float(np.abs(np.load(os.path.join(tmp, "joint", "values.npy"))
                              - np.load(os.path.join(tmp, "sequential", "values.npy"))).max())
    joint_rate, single_rate = step_ratio(args)
  print(f"load after: {os.getloadavg()[0]:.2f}; largest prompt difference joint vs sequential: {difference:.2e}")
  print(f"multi-prompt {args.shape} K={args.k}: {sequential / joint:.2f}x faster than {args.sources} sequential runs "
        f"(joint {joint:.1f} s, sequential {sequential:.1f} s)")
  print(f"multi-prompt {args.shape} K={args.k} train step: {joint_rate / single_rate:.2f}x examples/s "
        f"(joint {joint_rate:.0f} ex/s, single {single_rate:.0f} ex/s)")


if __name__ == "__main__":
  main()
