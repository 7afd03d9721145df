"""Evaluation throughput: spot_jax's decoding vs Hugging Face transformers (PyTorch), side by side.

    .venv/bin/python benchmarks/eval_step.py [--shapes tiny,small] [--tasks greedy,rank] [--repeats 5]
        [--window 3] [--batch 32] [--cores N]

Both sides run the same random, untied T5 1.1 weights (written once with `checkpoints.hf.save_hf_t5`;
spot_jax reads them back with `load_hf_t5`, PyTorch loads the same safetensors into a
`T5ForConditionalGeneration` whose output layer is untied by hand), on the same inputs: batch 32
(--batch), inputs of 128 tokens (no padding) after a 100-row prompt, dropout off.

- greedy: 8 new tokens. spot_jax: `decoding.greedy_decode` (encoder once, KV cache inside one
  `lax.while_loop`) exactly as evaluation calls it: on the evaluator's mesh (all devices on 'data'),
  frozen params placed once with `sharding.place_frozen`. HF: `model.generate(inputs_embeds=[prompt;
  embedded tokens], max_new_tokens=8, do_sample=False, num_beams=1)` (KV cache on, its default).
- rank: 3 labels of 1-2 tokens (+ EOS). spot_jax: `decoding.rank_classification` (encoder once,
  decoder vmapped over the labels). HF: the encoder once, then one teacher-forced forward per label
  with `encoder_outputs=` and `labels=`, summing the label's token log-probabilities per row (the
  encoder is not run again per label: that would be a strawman).
- encode (`--tasks greedy,rank,encode`): the encoder pass alone on both sides. Both sides spend most
  of a call there (the same FLOPs, matmul-bound on a CPU), so HF's call time / spot_jax's encoder
  time bounds the ratio any decoding change can reach.
Each side's time covers one whole call from host inputs to host results. Correctness is checked on
the first call: the greedy tokens of both sides (rows identical, tokens equal) and the rank choices
(and the largest score difference).

`tiny` is the spot_jax preset (d_model 128); `small` is T5 1.1 small's shape. Each (framework,
shape) lives in its own worker process, compiled and warmed up once; the parent alternates timing
windows between them --repeats times and reports the median and the best window. PyTorch runs with as
many threads as the process has cores (XLA's CPU pool uses them all); `--cores 1` pins both to one.
This machine is shared: the load average is printed per round; trust best windows more under load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from side_by_side import Worker  # noqa: E402 - benchmarks/ is the script's directory

INPUT_LEN, PROMPT_LEN, DECODE_LEN = 128, 100, 8
LABELS = ((37,), (9, 1234), (5, 77))  # ids without EOS; 2 and 3 target tokens with EOS
SHAPES = {"tiny": "tiny", "small": "t5_1_1_small"}  # --shapes name -> spot_jax preset
TASKS = ("greedy", "rank", "encode")  # encode: the encoder pass alone (not run by default), for the bound below
TARGET = 1.5  # spot_jax/hf examples/s wanted on `small`


# ----------------------------------------------------------------------------- shared inputs


def model_config(shape: str):
  from spot_jax.models import t5
  return t5.get_config(SHAPES[shape], dropout_rate=0.0)


def random_params(cfg, seed: int = 0) -> dict:
  """Random weights with T5's init scales (t5.init_params' distributions), filled by numpy: the
  layout comes from `eval_shape`, so nothing is compiled."""
  import jax
  import numpy as np
  from spot_jax.models import t5
  rng = np.random.default_rng(seed)
  layout = jax.eval_shape(lambda: t5.init_params(cfg, jax.random.key(0)))

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['scale']"):
      return np.ones(leaf.shape, np.float32)
    if "token_embedder" in name:
      std = 1.0
    elif "rel_embedding" in name:
      std = cfg.d_model**-0.5
    elif "['query']" in name:
      std = (cfg.d_model * cfg.d_kv)**-0.5
    else:
      std = leaf.shape[-2]**-0.5  # fan-in of an [in, out] kernel
    return (rng.normal(size=leaf.shape) * std).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, layout)


def prepare(shape: str, directory: str, batch: int) -> None:
  """Writes the weights (HF layout) and the inputs (inputs.npz) of one shape into `directory`."""
  import numpy as np
  from spot_jax.checkpoints import hf
  cfg = model_config(shape)
  hf.save_hf_t5(cfg, random_params(cfg), os.path.join(directory, "model"))
  rng = np.random.default_rng(1)
  tokens = rng.integers(2, cfg.vocab_size, (batch, INPUT_LEN)).astype(np.int32)
  tokens[:, -1] = 1  # EOS
  prompt = rng.uniform(-0.5, 0.5, (PROMPT_LEN, cfg.d_model)).astype(np.float32)  # prompt_lib.random_uniform
  np.savez(os.path.join(directory, "inputs.npz"), tokens=tokens, prompt=prompt)


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ----------------------------------------------------------------------------- workers


class JaxEval:
  """spot_jax's decoding as evaluation runs it (mesh of all devices on 'data', params placed once)."""

  def __init__(self, shape: str, directory: str):
    import flax.linen as nn
    import jax
    import numpy as np
    from spot_jax import decoding, sharding
    from spot_jax.checkpoints import hf
    from spot_jax.models import t5
    self.jax, self.nn, self.sharding, self.decoding = jax, nn, sharding, decoding
    cfg, params = hf.load_hf_t5(os.path.join(directory, "model"), dropout_rate=0.0)
    assert cfg == model_config(shape), (cfg, model_config(shape))
    inputs = np.load(os.path.join(directory, "inputs.npz"))
    self.tokens, self.prompt = inputs["tokens"], inputs["prompt"]
    self.model = t5.T5(cfg)
    self.mesh = sharding.make_mesh((-1, 1))
    self.params = sharding.place_frozen(params, cfg, self.mesh)
    self._encode = jax.jit(lambda p, t, x: self.model.apply({"params": p}, t, prefix_embeddings=x,
                                                            method=t5.T5.encode)[0])

  def greedy(self):
    return self.decoding.greedy_decode(self.model, self.params, self.tokens, max_decode_length=DECODE_LEN,
                                       prefix_embeddings=self.prompt, mesh=self.mesh)

  def rank(self):
    return self.decoding.rank_classification(self.model, self.params, self.tokens, LABELS,
                                             prefix_embeddings=self.prompt, mesh=self.mesh)

  def encode(self):
    with self.jax.set_mesh(self.mesh), self.nn.logical_axis_rules(self.sharding.STANDARD_RULES):
      return self.jax.block_until_ready(self._encode(self.params, self.tokens, self.prompt))


class HfEval:
  """transformers' T5ForConditionalGeneration (untied) on the same weights."""

  def __init__(self, shape: str, directory: str):
    import numpy as np
    import safetensors.torch
    import torch
    import transformers
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores XLA uses (all, or --cores)
    self.torch = torch
    cfg = model_config(shape)
    hf_config = transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff, num_heads=cfg.num_heads,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance, dropout_rate=0.0,
        feed_forward_proj=cfg.feed_forward_proj, tie_word_embeddings=False, scale_decoder_outputs=False,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = transformers.T5ForConditionalGeneration(hf_config).eval()
    # transformers 5 always ties T5's output layer (../shared/ENVIRONMENT.md): untie, then load.
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    state = safetensors.torch.load_file(os.path.join(directory, "model", "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}, (
        missing, unexpected)
    assert not torch.equal(model.lm_head.weight, model.shared.weight), "the output layer must be untied"
    self.model = model
    inputs = np.load(os.path.join(directory, "inputs.npz"))
    self.tokens = torch.tensor(inputs["tokens"], dtype=torch.long)
    self.prompt = torch.tensor(inputs["prompt"])
    self.labels = [torch.tensor([*ids, 1], dtype=torch.long) for ids in LABELS]

  def _embedded(self):
    """[prompt; embedded tokens] and its mask, as the prompt-tuning encoder input."""
    batch = self.tokens.shape[0]
    embedded = self.torch.cat([self.prompt[None].expand(batch, -1, -1), self.model.shared(self.tokens)], dim=1)
    mask = self.torch.cat([self.torch.ones(batch, PROMPT_LEN, dtype=self.torch.long), (self.tokens > 0).long()], 1)
    return embedded, mask

  def greedy(self):
    import numpy as np
    with self.torch.inference_mode():
      embedded, mask = self._embedded()
      out = self.model.generate(inputs_embeds=embedded, attention_mask=mask, max_new_tokens=DECODE_LEN,
                                min_new_tokens=0, do_sample=False, num_beams=1, use_cache=True)
    out = out[:, 1:].numpy()  # drop the decoder start token
    return np.pad(out, ((0, 0), (0, DECODE_LEN - out.shape[1])))  # all rows stopped early: pad as spot_jax

  def rank(self):
    torch = self.torch
    with torch.inference_mode():
      embedded, mask = self._embedded()
      encoded = self.model.get_encoder()(inputs_embeds=embedded, attention_mask=mask)
      scores = []
      for label in self.labels:
        labels = label[None].repeat(self.tokens.shape[0], 1)
        logits = self.model(encoder_outputs=encoded, attention_mask=mask, labels=labels).logits
        scores.append(torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0].sum(-1))
      scores = torch.stack(scores, 1).numpy()
    return scores.argmax(1), scores

  def encode(self):
    with self.torch.inference_mode():
      embedded, mask = self._embedded()
      return self.model.get_encoder()(inputs_embeds=embedded, attention_mask=mask).last_hidden_state


def worker(kind: str, shape: str, directory: str, cores: int, tasks) -> None:
  """Answers JSON commands on stdin; anything else the libraries print goes to stderr."""
  if cores:  # before jax/torch start their thread pools
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
  out = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  reply = lambda **kw: (out.write(json.dumps(kw) + "\n"), out.flush())  # noqa: E731
  start = time.perf_counter()
  runner = (JaxEval if kind == "jax" else HfEval)(shape, directory)
  info = {"load_s": time.perf_counter() - start}
  results = {}
  for task in tasks:  # first call: compiles (spot_jax), allocates; its result is the one checked
    start = time.perf_counter()
    result = getattr(runner, task)()
    info[f"{task}_first_s"] = time.perf_counter() - start
    start = time.perf_counter()
    getattr(runner, task)()
    info[f"{task}_warm_s"] = time.perf_counter() - start
    if task != "encode":
      results[task] = [r.tolist() for r in result] if isinstance(result, tuple) else result.tolist()
  reply(ready=True, info=info, results=results)
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "run":  # calls until the window is over (at least one)
      fn, times, begin = getattr(runner, cmd["task"]), [], time.perf_counter()
      while not times or time.perf_counter() - begin < cmd["seconds"]:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
      reply(times=times)
    elif cmd["op"] == "rss":
      reply(rss_mb=peak_rss_mb())
    elif cmd["op"] == "quit":
      return


# ----------------------------------------------------------------------------- main


def check(shape: str, jax_results: dict, hf_results: dict, tasks) -> list[str]:
  """Lines saying how far the two sides' outputs agree."""
  import numpy as np
  lines = []
  if "greedy" in tasks:
    ours, theirs = np.asarray(jax_results["greedy"]), np.asarray(hf_results["greedy"])
    rows = (ours == theirs).all(1)
    lines.append(f"[{shape}] greedy tokens: {rows.sum()}/{len(rows)} rows identical, first 8 rows "
                 f"{'identical' if rows[:8].all() else 'DIFFER'}; {(ours == theirs).mean():.1%} of tokens equal")
  if "rank" in tasks:
    (ours_best, ours_scores), (hf_best, hf_scores) = jax_results["rank"], hf_results["rank"]
    agree = (np.asarray(ours_best) == np.asarray(hf_best)).mean()
    diff = np.abs(np.asarray(ours_scores) - np.asarray(hf_scores)).max()
    lines.append(f"[{shape}] rank choices: {agree:.1%} agree; largest score difference {diff:.2e}")
  return lines


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shapes", default="tiny,small", help="comma-separated: tiny, small")
  parser.add_argument("--tasks", default="greedy,rank", help="comma-separated: greedy, rank, encode")
  parser.add_argument("--repeats", type=int, default=5, help="alternating timing windows per framework and task")
  parser.add_argument("--window", type=float, default=3.0, help="seconds per timing window (at least one call)")
  parser.add_argument("--batch", type=int, default=32, help="examples per call")
  parser.add_argument("--cores", type=int, default=0,
                      help="pin every worker to the first N cores (torch threads = N); 0 = all cores")
  parser.add_argument("--worker", choices=("jax", "hf"), help=argparse.SUPPRESS)
  parser.add_argument("--dir", help=argparse.SUPPRESS)
  args = parser.parse_args()
  tasks = [t for t in args.tasks.split(",") if t]
  if args.worker:
    return worker(args.worker, args.shapes, args.dir, args.cores, tasks)

  shapes = [s for s in args.shapes.split(",") if s]
  for s in shapes:
    if s not in SHAPES:
      parser.error(f"unknown shape {s!r}; choose from {', '.join(SHAPES)}")
  for t in tasks:
    if t not in TASKS:
      parser.error(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
  cores = args.cores or len(os.sched_getaffinity(0))
  print(f"batch {args.batch}, inputs {INPUT_LEN} + prompt {PROMPT_LEN}; greedy {DECODE_LEN} tokens, rank "
        f"{len(LABELS)} labels; {args.repeats} alternating windows of ~{args.window:.0f} s; {cores} of "
        f"{os.cpu_count()} cores (torch threads {cores}); load {os.getloadavg()[0]:.2f}", flush=True)
  rows, loads, verdicts = [], [], []
  with tempfile.TemporaryDirectory(prefix="eval_step-") as tmp:
    for shape in shapes:
      directory = os.path.join(tmp, shape)
      os.makedirs(directory)
      prepare(shape, directory, args.batch)
      workers = {kind: Worker(kind, __file__, "--worker", kind, "--shapes", shape, "--dir", directory,
                                      "--cores", str(args.cores), "--tasks", ",".join(tasks))
                 for kind in ("jax", "hf")}
      for kind, w in workers.items():
        info = w.info["info"]
        print(f"[{shape}] {'spot_jax' if kind == 'jax' else 'hf'}: ready (load {info['load_s']:.1f} s; " + ", ".join(
            f"{t} first call {info[f'{t}_first_s']:.1f} s, warm {info[f'{t}_warm_s'] * 1e3:.0f} ms" for t in tasks)
              + ")", flush=True)
      for line in check(shape, workers["jax"].info["results"], workers["hf"].info["results"], tasks):
        print(line, flush=True)
      windows = {(k, t): [] for k in workers for t in tasks}  # per window: seconds of each call
      for r in range(args.repeats):
        order = ("jax", "hf") if r % 2 == 0 else ("hf", "jax")
        for task in tasks:
          for kind in order:
            windows[(kind, task)].append(workers[kind].ask(op="run", task=task, seconds=args.window)["times"])
        loads.append(os.getloadavg()[0])
        print(f"[{shape}] round {r + 1}: " + ", ".join(
            f"{t} {k if k == 'hf' else 'spot_jax'} {statistics.median(windows[(k, t)][-1]) * 1e3:.0f} ms"
            for t in tasks for k in order) + f", load {loads[-1]:.2f}", flush=True)
      for kind, w in workers.items():
        rss = w.ask(op="rss")["rss_mb"]
        for task in tasks:
          means = [sum(t) / len(t) for t in windows[(kind, task)]]
          rows.append(dict(shape=shape, task=task, kind=kind, median=statistics.median(means), best=min(means),
                           worst=max(means), rss=rss))
        w.close()

  print(f"\nload average during the run {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores")
  print("Per framework: the median over windows of the window's mean call time; 'best' is the fastest window.")
  header = (f"{'task':6s} {'shape':6s} {'framework':9s} {'ex/s':>8s} {'best ex/s':>9s} {'ms/call':>8s} "
            f"{'best':>6s} {'worst':>6s} {'peak RSS':>9s}")
  print(header)
  print("-" * len(header))
  for row in rows:
    print(f"{row['task']:6s} {row['shape']:6s} {'spot_jax' if row['kind'] == 'jax' else 'hf':9s} "
          f"{args.batch / row['median']:8.1f} {args.batch / row['best']:9.1f} {row['median'] * 1e3:8.0f} "
          f"{row['best'] * 1e3:6.0f} {row['worst'] * 1e3:6.0f} {row['rss']:7.0f}MB")
  print()
  for shape in shapes:
    for task in tasks:
      ours, theirs = (next(r for r in rows if (r["shape"], r["task"], r["kind"]) == (shape, task, k))
                      for k in ("jax", "hf"))
      ratio, best_ratio = theirs["median"] / ours["median"], theirs["best"] / ours["best"]
      print(f"eval {task} {shape}: spot_jax/hf examples/s = {ratio:.2f}x median, {best_ratio:.2f}x best windows")
      if shape == "small" and task != "encode":
        verdicts.append(f"{task} small: target >= {TARGET}x "
                        + ("met" if min(ratio, best_ratio) >= TARGET else
                           "NOT met" if max(ratio, best_ratio) < TARGET else "met on one measure only"))
  if verdicts:
    print("; ".join(verdicts))


if __name__ == "__main__":
  main()
