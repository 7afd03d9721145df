"""Prompt-tuning train-step throughput: spot_jax vs Hugging Face `peft` (PyTorch), side by side.

    .venv/bin/python benchmarks/train_step.py [--shapes tiny,small] [--repeats 5] [--window 4] [--cores N]

Batch 8, inputs 128 tokens + a 100-row encoder prompt, targets 8 tokens, dropout 0.1 active, untied
output layer and Adafactor (lr 0.3, decay 0.8, clip 1.0, no parameter scaling, unfactored) on both
sides, random frozen weights. `tiny` is the spot_jax preset (d_model 128); `small` is T5 1.1 small's
shape. spot_jax runs the trainer's own step (`train.make_train_step`, jitted on one device with the
trainer's XLA options); peft runs `get_peft_model(T5ForConditionalGeneration,
PromptTuningConfig(num_transformer_submodules=1))` with `torch.set_num_threads(os.cpu_count())`.

Each (framework, shape) lives in its own worker process (so peak RSS is per framework), compiled and
warmed up once; the parent then alternates timing windows between them `--repeats` times (this
machine's figures move +-10-15% from run to run) and reports the median window and the best one.
Under load from other processes PyTorch's OpenMP threads spin at barriers and its step time can grow
tenfold while JAX's barely moves: look at the load column and the best windows before trusting a
ratio; `--cores 1` pins both to one core, a comparison that load cannot distort that way.
FLOP/s counts the matmul FLOPs of the forward pass and of the activation backward (no weight
gradients: the model is frozen), computed analytically (XLA's dot count agrees exactly); XLA's
`compiled.cost_analysis()` (all ops) is shown beside it. The matmul peak is a 2048^3 fp32 `jnp.dot`
(XLA's default options), measured between the timing windows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from typing import Optional

from side_by_side import Worker  # benchmarks/ is the script's directory

BATCH, INPUT_LEN, PROMPT_LEN, TARGET_LEN = 8, 128, 100, 8
SHAPES = {"tiny": "tiny", "small": "t5_1_1_small"}  # --shapes name -> spot_jax preset
PEAK_N = 2048


# ----------------------------------------------------------------------------- shared helpers


def model_config(shape: str):
  from spot_jax.models import t5
  return t5.get_config(SHAPES[shape], dropout_rate=0.1)


def make_batch(vocab_size: int, seed: int = 0) -> dict:
  """Full-length (unpadded) random inputs and targets; the same ids for both frameworks."""
  import numpy as np
  rng = np.random.default_rng(seed)
  enc = rng.integers(2, vocab_size, (BATCH, INPUT_LEN)).astype(np.int32)
  enc[:, -1] = 1  # EOS
  tgt = rng.integers(2, vocab_size, (BATCH, TARGET_LEN)).astype(np.int32)
  tgt[:, -1] = 1
  dec = np.zeros_like(tgt)
  dec[:, 1:] = tgt[:, :-1]
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec, "decoder_target_tokens": tgt,
          "decoder_loss_weights": np.ones(tgt.shape, np.float32)}


def matmul_flops(cfg, batch: int = BATCH, enc_len: int = INPUT_LEN + PROMPT_LEN, dec_len: int = TARGET_LEN) -> dict:
  """Matmul FLOPs of one step: forward, and backward for activations only (frozen weights).

  x @ W costs 2mkn forward and 2mkn backward (dx) when x depends on the prompt; an activation x
  activation product (scores, attention x values) costs 2mkn per operand that depends on it. The
  whole encoder depends on the prompt; in the decoder, layer 0's self-attention and its
  cross-attention query do not (both frameworks skip their backward).
  """
  d, inner, ff, vocab = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff, cfg.vocab_size
  mlp = (6 if cfg.is_gated else 4) * d * ff  # per token
  S, T = enc_len, dec_len
  fwd = bwd = 0
  # Encoder layer, per token: q, k, v, out projections; scores and weights @ values; MLP.
  proj, attn = 8 * d * inner + mlp, 4 * S * inner
  fwd += cfg.num_encoder_layers * S * (proj + attn)
  bwd += cfg.num_encoder_layers * S * (proj + 2 * attn)
  for layer in range(cfg.num_decoder_layers):
    self_proj, self_attn = 8 * d * inner, 4 * T * inner  # per decoder token
    cross_q, cross_out, cross_attn = 2 * d * inner, 2 * inner * d, 4 * S * inner
    cross_kv = S * 4 * d * inner  # per example, on the encoder output
    fwd += T * (self_proj + self_attn + cross_q + cross_out + cross_attn + mlp) + cross_kv
    if layer == 0:  # self-attention and the cross query do not depend on the prompt
      bwd += T * (cross_out + cross_attn * 3 // 2 + mlp) + cross_kv  # d(scores) via keys only: 1 + 2 of 4
    else:
      bwd += T * (self_proj + 2 * self_attn + cross_q + cross_out + 2 * cross_attn + mlp) + cross_kv
  fwd += T * 2 * d * vocab  # logits
  bwd += T * 2 * d * vocab
  return {"forward": batch * fwd, "backward": batch * bwd, "total": batch * (fwd + bwd)}


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ----------------------------------------------------------------------------- workers


class JaxStep:
  """The trainer's jitted step on one device."""

  def __init__(self, shape: str, compiler_options: Optional[dict] = None):
    import jax
    import jax.numpy as jnp
    from spot_jax import configs, train, xla_options
    from spot_jax.models import prompt as prompt_lib
    from spot_jax.models import t5

    self.jax = jax
    cfg = model_config(shape)
    tcfg = configs.train_defaults()
    tcfg.batch_size, tcfg.prompt_length = BATCH, PROMPT_LEN
    model = prompt_lib.PromptedT5(cfg, PROMPT_LEN)
    optimizer = train.make_optimizer(tcfg)
    self.frozen = t5.init_params(cfg, jax.random.key(0))
    self.prompt = prompt_lib.random_uniform()(jax.random.key(1), (PROMPT_LEN, cfg.d_model))
    self.opt_state = optimizer.init(self.prompt)
    self.batch = {k: jnp.asarray(v) for k, v in make_batch(cfg.vocab_size).items()}
    self.step_num = 0
    start = time.perf_counter()
    # The trainer's step and XLA options (train.jitted_step), on one device.
    options = xla_options.train_step_options() if compiler_options is None else compiler_options
    jitted = jax.jit(train.make_train_step(model, optimizer, tcfg), donate_argnums=(0, 1), compiler_options=options)
    self.compiled = jitted.lower(self.prompt, self.opt_state, self.frozen, self.batch,
                                 jnp.asarray(0, jnp.int32)).compile()
    self.compile_s = time.perf_counter() - start
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0

  def run(self, steps: int) -> list[float]:
    """Seconds of each of `steps` steps (each waited for, as torch's are)."""
    jnp = self.jax.numpy
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      self.prompt, self.opt_state, metrics = self.compiled(
          self.prompt, self.opt_state, self.frozen, self.batch, jnp.asarray(self.step_num, jnp.int32))
      self.jax.block_until_ready((self.prompt, metrics))
      times.append(time.perf_counter() - start)
      self.step_num += 1
    self.loss = float(metrics["loss"])
    return times


class PeftStep:
  """peft prompt tuning of a random, untied T5 1.1 of the same shape."""

  def __init__(self, shape: str):
    import peft
    import torch
    import transformers

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # os.cpu_count() unless --cores pins it
    torch.manual_seed(0)
    self.torch = torch
    cfg = model_config(shape)
    hf_config = transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff, num_heads=cfg.num_heads,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance, dropout_rate=cfg.dropout_rate,
        feed_forward_proj=cfg.feed_forward_proj, tie_word_embeddings=False, scale_decoder_outputs=False,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    hf = transformers.T5ForConditionalGeneration(hf_config)
    # transformers 5 always ties T5's output layer (../shared/ENVIRONMENT.md): untie by hand.
    hf.lm_head.weight = torch.nn.Parameter(hf.shared.weight.detach().clone())
    self.model = peft.get_peft_model(hf, peft.PromptTuningConfig(
        task_type=peft.TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=PROMPT_LEN, num_transformer_submodules=1))
    self.model.train()  # dropout 0.1 active, as in spot_jax's step
    trainable = [p for p in self.model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == PROMPT_LEN * cfg.d_model, "expected an encoder-only prompt"

    class UnfactoredAdafactor(transformers.optimization.Adafactor):
      @staticmethod
      def _get_options(param_group, param_shape):  # spot_jax's prompt Adafactor is unfactored
        return False, param_group["beta1"] is not None

    self.optimizer = UnfactoredAdafactor(trainable, lr=0.3, clip_threshold=1.0, decay_rate=-0.8, beta1=None,
                                         weight_decay=0.0, scale_parameter=False, relative_step=False,
                                         warmup_init=False)
    batch = make_batch(cfg.vocab_size)
    enc = torch.tensor(batch["encoder_input_tokens"], dtype=torch.long)
    self.inputs = {"input_ids": enc, "attention_mask": (enc > 0).long(),
                   "decoder_input_ids": torch.tensor(batch["decoder_input_tokens"], dtype=torch.long),
                   "labels": torch.tensor(batch["decoder_target_tokens"], dtype=torch.long)}
    self.compile_s = 0.0
    self.xla_flops = 0.0

  def run(self, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      loss = self.model(**self.inputs).loss
      loss.backward()
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
      times.append(time.perf_counter() - start)
    self.loss = float(loss.detach())
    return times


def matmul_peak(seconds: float) -> float:
  """fp32 FLOP/s of a 2048^3 jnp.dot (best of several)."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (PEAK_N, PEAK_N), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  best, start = float("inf"), time.perf_counter()
  while time.perf_counter() - start < seconds:
    t = time.perf_counter()
    dot(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * PEAK_N**3 / best


def worker(kind: str, shape: str, cores: int) -> None:
  """Answers JSON commands on stdin; anything else the libraries print goes to stderr."""
  if cores:  # before jax/torch start their thread pools
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
  out = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  reply = lambda **kw: (out.write(json.dumps(kw) + "\n"), out.flush())
  if kind == "peak":
    runner = None
    reply(ready=True)
  else:
    runner = (JaxStep if kind == "jax" else PeftStep)(shape)
    warm = min(runner.run(3))  # warm-up (first calls allocate)
    reply(ready=True, compile_s=runner.compile_s, xla_flops=runner.xla_flops, warm_step_s=warm)
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "run":
      reply(times=runner.run(cmd["steps"]), loss=runner.loss)
    elif cmd["op"] == "peak":
      reply(flops=matmul_peak(cmd["seconds"]))
    elif cmd["op"] == "rss":
      reply(rss_mb=peak_rss_mb())
    elif cmd["op"] == "quit":
      return


# ----------------------------------------------------------------------------- main


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shapes", default="tiny,small", help="comma-separated: tiny, small")
  parser.add_argument("--repeats", type=int, default=5, help="alternating timing windows per framework")
  parser.add_argument("--window", type=float, default=4.0, help="seconds per timing window")
  parser.add_argument("--cores", type=int, default=0,
                      help="pin every worker to the first N cores (torch threads = N); 0 = all cores")
  parser.add_argument("--worker", choices=("jax", "peft", "peak"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args.worker, args.shapes, args.cores)

  shapes = [s for s in args.shapes.split(",") if s]
  for s in shapes:
    if s not in SHAPES:
      parser.error(f"unknown shape {s!r}; choose from {', '.join(SHAPES)}")
  cores = args.cores or len(os.sched_getaffinity(0))
  print(f"batch {BATCH}, inputs {INPUT_LEN} + prompt {PROMPT_LEN}, targets {TARGET_LEN}; {args.repeats} "
        f"alternating windows of ~{args.window:.0f} s; {cores} of {os.cpu_count()} cores; "
        f"load {os.getloadavg()[0]:.2f}", flush=True)
  peak_worker = Worker("peak", __file__, "--worker", "peak", "--shapes", "tiny", "--cores", str(args.cores))
  peaks, rows, loads = [], [], []
  for shape in shapes:
    flops = matmul_flops(model_config(shape))
    workers = {}
    for kind in ("jax", "peft"):
      workers[kind] = Worker(kind, __file__, "--worker", kind, "--shapes", shape, "--cores", str(args.cores))
      info = workers[kind].info
      print(f"[{shape}] {kind}: ready (compile {info['compile_s']:.1f} s, warm-up step "
            f"{info['warm_step_s'] * 1e3:.0f} ms)", flush=True)
    windows = {k: [] for k in workers}  # per window: list of step seconds
    for r in range(args.repeats):
      order = ("jax", "peft") if r % 2 == 0 else ("peft", "jax")
      for kind in order:
        w = workers[kind]
        steps = max(2, round(args.window / max(w.info["warm_step_s"], 1e-3)))
        windows[kind].append(w.ask(op="run", steps=steps)["times"])
      peaks.append(peak_worker.ask(op="peak", seconds=1.0)["flops"])
      loads.append(os.getloadavg()[0])
      print(f"[{shape}] round {r + 1}: " + ", ".join(
          f"{k} {statistics.median(windows[k][-1]) * 1e3:.0f} ms/step" for k in order)
            + f", matmul peak {peaks[-1] / 1e9:.0f} GFLOP/s, load {loads[-1]:.2f}", flush=True)
    for kind, w in workers.items():
      window_means = [sum(t) / len(t) for t in windows[kind]]
      rows.append(dict(shape=shape, kind=kind, median=statistics.median(window_means), best=min(window_means),
                       worst=max(window_means), rss=w.ask(op="rss")["rss_mb"], flops=flops["total"],
                       xla_flops=w.info["xla_flops"]))
      w.close()
  peak_worker.close()

  peak = statistics.median(peaks)
  print(f"\nmatmul peak (fp32 {PEAK_N}^3 jnp.dot): median {peak / 1e9:.0f}, best {max(peaks) / 1e9:.0f} GFLOP/s; "
        f"load average during the run {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores")
  print("Per framework: the median over windows of the window's mean step time; 'best' is the fastest "
        "window (least disturbed by other processes). FLOP/s = analytic matmul FLOPs (forward + activation "
        "backward) / median step time.")
  header = (f"{'shape':6s} {'framework':9s} {'steps/s':>8s} {'ex/s':>7s} {'ms/step':>8s} {'best':>6s} {'worst':>6s} "
            f"{'peak RSS':>9s} {'GFLOP/step':>10s} {'XLA GFLOP':>9s} {'GFLOP/s':>8s} {'of peak':>7s}")
  print(header)
  print("-" * len(header))
  for row in rows:
    achieved = row["flops"] / row["median"]
    name = "spot_jax" if row["kind"] == "jax" else "peft"
    xla = f"{row['xla_flops'] / 1e9:9.1f}" if row["xla_flops"] else f"{'-':>9s}"
    print(f"{row['shape']:6s} {name:9s} {1 / row['median']:8.2f} {BATCH / row['median']:7.1f} "
          f"{row['median'] * 1e3:8.0f} {row['best'] * 1e3:6.0f} {row['worst'] * 1e3:6.0f} {row['rss']:7.0f}MB "
          f"{row['flops'] / 1e9:10.1f} {xla} {achieved / 1e9:8.1f} {achieved / peak:7.0%}")
  print()
  for shape in shapes:
    target = 1.3 if shape == "tiny" else 1.0
    j, p = (next(r for r in rows if r["shape"] == shape and r["kind"] == k) for k in ("jax", "peft"))
    ratio, best_ratio = p["median"] / j["median"], p["best"] / j["best"]
    print(f"{shape}: spot_jax/peft examples/s = {ratio:.2f}x median, {best_ratio:.2f}x best windows "
          f"(target >= {target}x: {'met' if min(ratio, best_ratio) >= target else 'NOT met' if max(ratio, best_ratio) < target else 'met on one measure only'})")


if __name__ == "__main__":
  main()
