"""Per-device memory of the trainer's step for T5 1.1 sizes on (data, model) meshes, without allocating.

    .venv/bin/python benchmarks/sharding_memory.py [--presets small,base,large,xl,xxl]
        [--meshes 8x1,1x8,2x4] [--batch-sizes 8,16,...,1024] [--budgets-gib 16,32] [--quick]
        [--eval-batch 32] [--eval-only | --no-eval]

Why: sharding.py promises that frozen weights split over 'model' and that the prompt and its optimizer
state stay tiny; this script shows what that means per device for Small..XXL, and which global batch
fits a 16 GiB or 32 GiB accelerator. It runs on this CPU with 8 fake devices: every array is a
`jax.ShapeDtypeStruct`, nothing is allocated. The step is the trainer's own (`train.jitted_step`:
`make_train_step` jitted with the trainer's in/out shardings, donation and XLA options), lowered and
compiled for each mesh; `compiled.memory_analysis()` gives XLA's per-device buffer assignment.

Shapes: encoder input 512 tokens + a 100-row prompt, targets 128 tokens, params fp32, activations in
`--dtype` (float32 by default: XLA:CPU upcasts bf16 activations, so a bf16 figure from this backend
would not show the halving TPUs/GPUs get). Per device: frozen/prompt/optimizer bytes come from the
shardings (shard shape x itemsize); "fits" means argument + output + temp - donated (aliased) bytes
<= budget. These are XLA:CPU's buffer assignments; TPU/GPU compilers fuse and schedule differently,
so treat them as estimates (same order of magnitude), not as a guarantee for other backends.

Layers run under `nn.scan` (`scan_layers=True`) unless --unrolled: measured here, an unrolled XXL
step compiles in ~150 s versus ~23 s scanned (temp within 10% of each other), which keeps the default
run at ~17 minutes (63 compiles) on this 2-core machine. Remat: each (model, mesh) row uses one policy of
--remat (default order: none, then `remat_policy='full'`): at the smallest budget where anything fits,
the first whose largest batch reaches --reference-batch (the paper's 32), else the one fitting most.

Search: memory is close to affine in the batch (checked below), so the candidate to compile is
predicted from the sizes already compiled. Every reported batch was compiled and fits; the next size
up is compiled too unless the fit puts it more than 25% over budget (listed under the table).

Evaluation: the functions evaluation runs on a mesh (`decoding.jit_on_mesh`: greedy decoding of
--eval-decode-length tokens with the KV cache, and rank classification of 3 labels of up to 2 tokens
+ EOS) are compiled the same way for --eval-batch rows of input 512 + prompt 100, with the frozen
params laid out by their logical axes as the trainer places them (evaluation reuses that copy).
The check: on a (1, n) mesh each device holds 1/n of the frozen params (+5% at most) during
evaluation (XLA's argument bytes: params + tokens + prompt), i.e. T5 XXL fits 8 devices' memory
split, not a full copy per device. About 2 s per compile (scanned layers); --eval-only skips the
train step (a ~1 minute run).
"""

from __future__ import annotations

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402 - jax must see XLA_FLAGS first
import dataclasses  # noqa: E402
import functools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Optional, Sequence  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from spot_jax import configs, decoding, sharding, train  # noqa: E402
from spot_jax.models import prompt as prompt_lib  # noqa: E402
from spot_jax.models import t5  # noqa: E402

GIB = 2**30
PRESETS = ("small", "base", "large", "xl", "xxl")  # t5_1_1_<size>; lm_adapt presets have the same shapes


@dataclasses.dataclass(frozen=True)
class Setup:
  """What one compile depends on besides the batch size."""

  preset: str
  mesh_shape: tuple[int, int]
  remat: str
  scan_layers: bool
  dtype: str
  prompt_length: int
  input_length: int
  target_length: int


@dataclasses.dataclass(frozen=True)
class Measurement:
  """Per-device bytes of one compiled step (XLA's buffer assignment) and our shard arithmetic."""

  batch: int
  argument: int
  output: int
  temp: int
  alias: int
  code: int
  sharded_argument: int  # frozen + prompt + opt state + batch + step, from shard shapes
  compile_s: float

  @property
  def total(self) -> int:
    return self.argument + self.output + self.temp - self.alias


# ----------------------------------------------------------------------------- abstract state


def shard_bytes(shapes: Any, shardings: Any) -> int:
  """Bytes one device holds of a tree of ShapeDtypeStructs under a matching tree of shardings."""
  leaves = jax.tree.leaves(jax.tree.map(
      lambda x, s: math.prod(s.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize, shapes, shardings))
  return int(sum(leaves))


def total_bytes(shapes: Any) -> int:
  return int(sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(shapes)))


def model_config(setup: Setup) -> t5.T5Config:
  return t5.get_config(f"t5_1_1_{setup.preset}", scan_layers=setup.scan_layers, remat_policy=setup.remat,
                       dtype=setup.dtype)


@functools.lru_cache(maxsize=None)
def frozen_abstract(cfg: t5.T5Config) -> tuple[Any, Any]:
  """(ShapeDtypeStruct tree of the frozen T5 params, their logical axes) without initialising them."""
  return jax.eval_shape(lambda: t5.init_params(cfg, jax.random.key(0))), t5.logical_axes(cfg)


def trainer_config(setup: Setup, batch: int) -> ml_collections.ConfigDict:
  cfg = configs.train_defaults()
  cfg.batch_size, cfg.prompt_length, cfg.mesh_shape = batch, setup.prompt_length, setup.mesh_shape
  return cfg


@functools.lru_cache(maxsize=None)
def state_layout(setup: Setup) -> dict[str, tuple[Any, Any]]:
  """{'frozen'|'prompt'|'opt_state': (shapes, shardings)} exactly as `train.train` places them."""
  cfg = model_config(setup)
  mesh = sharding.make_mesh(setup.mesh_shape)
  frozen, axes = frozen_abstract(cfg)
  prompt = jax.ShapeDtypeStruct((setup.prompt_length, cfg.d_model), jnp.float32)
  opt_state = jax.eval_shape(train.make_optimizer(trainer_config(setup, 8)).init, prompt)
  return {"frozen": (frozen, sharding.logical_shardings(axes, frozen, mesh)),
          "prompt": (prompt, sharding.replicated(mesh)),
          "opt_state": (opt_state, train.state_shardings(opt_state, mesh))}  # the trainer's


def per_device(setup: Setup) -> dict[str, int]:
  """{'frozen'|'prompt'|'opt_state': bytes on one device}, from the shardings."""
  return {name: shard_bytes(shapes, shardings) for name, (shapes, shardings) in state_layout(setup).items()}


def abstract_batch(setup: Setup, batch: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The pipeline's batch: token ids int32 [batch, length], loss weights float32 [batch, target_length]."""
  enc, tgt = (batch, setup.input_length), (batch, setup.target_length)
  return {"encoder_input_tokens": jax.ShapeDtypeStruct(enc, jnp.int32),
          "decoder_input_tokens": jax.ShapeDtypeStruct(tgt, jnp.int32),
          "decoder_target_tokens": jax.ShapeDtypeStruct(tgt, jnp.int32),
          "decoder_loss_weights": jax.ShapeDtypeStruct(tgt, jnp.float32)}


# ----------------------------------------------------------------------------- compile and measure


def measure(setup: Setup, batch: int) -> Measurement:
  """Lowers and compiles the trainer's jitted step for `batch` (global) on `setup`'s mesh."""
  cfg = model_config(setup)
  tcfg = trainer_config(setup, batch)
  mesh = sharding.make_mesh(setup.mesh_shape)
  sharding.check_batch_fits(batch, mesh)
  layout = state_layout(setup)
  (frozen, frozen_sh), (prompt, prompt_sh), (opt_state, opt_sh) = (
      layout["frozen"], layout["prompt"], layout["opt_state"])
  model = prompt_lib.PromptedT5(cfg, setup.prompt_length)
  optimizer = train.make_optimizer(tcfg)
  start = time.perf_counter()
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.STANDARD_RULES):
    step = train.jitted_step(model, optimizer, tcfg, "prompt", mesh, prompt_sh, opt_sh, frozen_sh)
    data = abstract_batch(setup, batch)
    compiled = step.lower(prompt, opt_state, frozen, data, jax.ShapeDtypeStruct((), jnp.int32)).compile()
  seconds = time.perf_counter() - start
  stats = compiled.memory_analysis()
  sizes = per_device(setup)
  data_bytes = shard_bytes(data, jax.tree.map(lambda _: sharding.batch_sharding(mesh), data))
  return Measurement(batch=batch, argument=stats.argument_size_in_bytes, output=stats.output_size_in_bytes,
                     temp=stats.temp_size_in_bytes, alias=stats.alias_size_in_bytes,
                     code=stats.generated_code_size_in_bytes,
                     sharded_argument=sum(sizes.values()) + data_bytes + 4, compile_s=seconds)


EVAL_KINDS = ("greedy", "rank")
EVAL_LABEL_LENGTH = 3  # label targets [3 labels, up to 2 ids + EOS]


@dataclasses.dataclass(frozen=True)
class EvalMeasurement:
  """Per-device bytes of one compiled evaluation function."""

  kind: str
  argument: int
  output: int
  temp: int
  code: int
  sharded_frozen: int  # frozen params on one device, from the shardings
  compile_s: float

  @property
  def total(self) -> int:
    return self.argument + self.output + self.temp


def measure_eval(setup: Setup, kind: str, batch: int, decode_length: int) -> EvalMeasurement:
  """Lowers and compiles evaluation's jitted `kind` ('greedy' | 'rank') on `setup`'s mesh."""
  cfg = model_config(setup)
  mesh = sharding.make_mesh(setup.mesh_shape)
  sharding.check_batch_fits(batch, mesh)
  frozen, _ = state_layout(setup)["frozen"]
  tokens = jax.ShapeDtypeStruct((batch, setup.input_length), jnp.int32)
  prompt = jax.ShapeDtypeStruct((setup.prompt_length, cfg.d_model), jnp.float32)
  extra = (jax.ShapeDtypeStruct((3, EVAL_LABEL_LENGTH), jnp.int32),) if kind == "rank" else ()
  start = time.perf_counter()
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.STANDARD_RULES):
    fn = decoding.jit_on_mesh(kind, t5.T5(cfg), mesh, frozen,
                              max_decode_length=decode_length if kind == "greedy" else None)
    compiled = fn.lower(frozen, tokens, prompt, *extra).compile()
  stats = compiled.memory_analysis()
  return EvalMeasurement(kind=kind, argument=stats.argument_size_in_bytes, output=stats.output_size_in_bytes,
                         temp=stats.temp_size_in_bytes, code=stats.generated_code_size_in_bytes,
                         sharded_frozen=per_device(setup)["frozen"], compile_s=time.perf_counter() - start)


def check_eval_sharding(setup: Setup, m: EvalMeasurement, margin: float = 0.05) -> tuple[bool, str]:
  """On a (1, n) mesh evaluation holds 1/n of the frozen params per device (+margin): XLA's argument
  bytes (frozen shards + tokens + prompt) <= (1 + margin) x frozen / n."""
  frozen, _ = state_layout(setup)["frozen"]
  whole, n = total_bytes(frozen), setup.mesh_shape[1]
  ok = m.argument <= (1 + margin) * whole / n
  return ok, (f"evaluation ({m.kind}) t5_1_1_{setup.preset} {mesh_name(setup.mesh_shape)}: arguments per device "
              f"{fmt(m.argument)} = {m.argument / whole:.5f} of the frozen params ({fmt(whole)}); limit "
              f"1/{n} + {margin:.0%} = {fmt((1 + margin) * whole / n)}: "
              f"{'holds' if ok else 'DOES NOT hold'} (temp {fmt(m.temp)}, total {fmt(m.total)})")


class Prober:
  """Memoised `measure`, printing one progress line per compile."""

  def __init__(self):
    self.cache: dict[tuple[Setup, int], Measurement] = {}
    self.predicted: list[tuple[Setup, int, float, int]] = []  # (setup, batch, predicted total, budget)
    self.searched: dict[tuple, Optional[int]] = {}  # (setup, batches, budget) -> largest fitting batch

  def __call__(self, setup: Setup, batch: int) -> Measurement:
    key = (setup, batch)
    if key not in self.cache:
      m = measure(setup, batch)
      self.cache[key] = m
      print(f"  compiled {setup.preset:>5} mesh {mesh_name(setup.mesh_shape)} remat={setup.remat:<7} "
            f"batch {batch:>4}: total {fmt(m.total)} (temp {fmt(m.temp)}) in {m.compile_s:.0f}s", flush=True)
    return self.cache[key]

  def known(self, setup: Setup) -> list[Measurement]:
    return [m for (s, _), m in self.cache.items() if s == setup]


def affine_fit(known: Sequence[Measurement]) -> Optional[Callable[[int], float]]:
  """total(b) ~ a + c*b from >= 2 compiled batch sizes (activations grow linearly with the batch)."""
  points = sorted({m.batch: m.total for m in known}.items())
  if len(points) < 2:
    return None
  slope, intercept = np.polyfit([b for b, _ in points], [t for _, t in points], 1)
  return lambda b: intercept + slope * b


def first_guess(known: Sequence[Measurement], candidates: Sequence[int], budget: int) -> int:
  """The candidate to compile next: the largest one the fit says fits, else the smallest. With one
  compiled point, temp is taken as proportional to the batch (its intercept is ~0)."""
  predict = affine_fit(known)
  if predict is None:
    m = known[0]
    fixed = m.argument + m.output - m.alias
    predict = lambda b: fixed + m.temp * b / m.batch  # noqa: E731
  fitting = [b for b in candidates if predict(b) <= budget]
  return fitting[-1] if fitting else candidates[0]


SKIP_MARGIN = 0.25  # skip compiling a size the affine fit puts this far over budget


def search(prober: Prober, setup: Setup, batches: Sequence[int], budget: int) -> Optional[int]:
  """Memoised `_search`."""
  key = (setup, tuple(batches), budget)
  if key not in prober.searched:
    prober.searched[key] = _search(prober, setup, batches, budget)
  return prober.searched[key]


def _search(prober: Prober, setup: Setup, batches: Sequence[int], budget: int,
            margin: float = SKIP_MARGIN) -> Optional[int]:
  """Largest global batch of `batches` whose step fits `budget` bytes per device (None: not even the
  smallest fits). Every answer is a compiled measurement; the next size up is compiled too unless the
  affine fit puts it more than `margin` over budget (recorded in `prober.predicted`). Skips
  compiling when the sharded arguments alone are over budget."""
  mesh = sharding.make_mesh(setup.mesh_shape)
  batches = sorted(b for b in batches if b % mesh.shape["data"] == 0)
  if not batches or sum(per_device(setup).values()) > budget:
    return None
  while True:
    known = prober.known(setup) or [prober(setup, batches[min(2, len(batches) - 1)])]
    fit = [m.batch for m in known if m.total <= budget]
    over = [m.batch for m in known if m.total > budget]
    lo, hi = max(fit, default=0), min(over, default=math.inf)
    candidates = [b for b in batches if lo < b < hi]
    if not candidates:
      return lo or None
    predict = affine_fit(known)
    if lo and predict is not None and predict(candidates[0]) > (1 + margin) * budget:
      prober.predicted.append((setup, candidates[0], predict(candidates[0]), budget))
      return lo
    prober(setup, first_guess(known, candidates, budget))


def choose_policy(prober: Prober, setups: Sequence[Setup], batches: Sequence[int], budgets: Sequence[int],
                  wanted: int) -> Setup:
  """One remat policy per (model, mesh): at the smallest budget where anything fits, the first policy
  whose largest batch reaches `wanted` (the paper's batch; remat costs compute, so only when needed),
  else the one that fits the largest batch."""
  for budget in sorted(budgets):
    fitting = []  # (largest batch, -index): ties go to the earlier (cheaper) policy
    for i, setup in enumerate(setups):
      fit = search(prober, setup, batches, budget)
      if fit is not None and fit >= wanted:
        return setup
      if fit is not None:
        fitting.append((fit, -i))
    if fitting:
      return setups[-max(fitting)[1]]
  return setups[-1]


# ----------------------------------------------------------------------------- checks


def check_model_sharding(setup: Setup) -> tuple[bool, str]:
  """Frozen params split over 'model' (data=1) cost ~1/model of the whole model per device."""
  frozen, _ = state_layout(setup)["frozen"]
  ratio = per_device(setup)["frozen"] / total_bytes(frozen)
  ideal = 1 / setup.mesh_shape[1]
  ok = abs(ratio - ideal) <= 0.01 * ideal
  return ok, (f"{setup.preset} {mesh_name(setup.mesh_shape)}: frozen per device = {ratio:.5f} of the model "
              f"(ideal {ideal:.5f}; the rest is replicated norms/position biases)")


def check_optimizer_state(setup: Setup) -> tuple[bool, str]:
  """Optimizer state is the prompt's Adafactor state: replicated, one fp32 moment per prompt entry
  (unfactored) plus scalars, and independent of the frozen model's size."""
  layout = state_layout(setup)
  prompt, _ = layout["prompt"]
  expected = total_bytes(jax.eval_shape(train.make_optimizer(trainer_config(setup, 8)).init, prompt))
  sizes = per_device(setup)
  prompt_bytes = total_bytes(prompt)
  ok = sizes["opt_state"] == expected and prompt_bytes <= expected <= prompt_bytes + 64
  return ok, (f"{setup.preset} {mesh_name(setup.mesh_shape)}: optimizer state per device {sizes['opt_state']} B "
              f"= Adafactor state of a {prompt.shape} fp32 prompt ({expected} B; prompt {prompt_bytes} B); "
              f"frozen per device {fmt(sizes['frozen'])}")


def check_extrapolation(prober: Prober, margin: float = SKIP_MARGIN) -> tuple[bool, str]:
  """The skip rule's premise, tested on every compiled size that had >= 2 smaller ones: the affine fit
  of the smaller sizes never overestimates it by more than `margin` (an overestimate could skip a
  size that fits; an underestimate only costs a compile, since every reported batch is compiled)."""
  over, under, count = 0.0, 0.0, 0
  for setup in {s for s, _ in prober.cache}:
    known = sorted(prober.known(setup), key=lambda m: m.batch)
    for i in range(2, len(known)):
      ratio = affine_fit(known[:i])(known[i].batch) / known[i].total - 1
      over, under, count = max(over, ratio), min(under, ratio), count + 1
  return over <= margin, (f"affine extrapolation from smaller compiled batch sizes, {count} cases: worst "
                          f"overestimate {over:.1%} (limit {margin:.0%}), worst underestimate {abs(under):.1%} "
                          "(remat makes XLA:CPU's temp grow faster than linearly at large batches)")


def check_arguments(measurements: Sequence[Measurement]) -> tuple[bool, str]:
  """XLA's argument bytes match our shard arithmetic (frozen + prompt + opt state + batch + step), up to
  the few bytes of inputs jit drops as unused (the unfactored Adafactor's 1-element v_row/v_col)."""
  bad = [m for m in measurements if not 0 <= m.sharded_argument - m.argument <= 64]
  text = f"argument bytes from shardings == XLA argument_size_in_bytes (within 64 B of unused inputs) for " \
         f"{len(measurements) - len(bad)}/{len(measurements)} compiles"
  if bad:
    text += "; mismatches: " + ", ".join(f"batch {m.batch}: {m.sharded_argument} vs {m.argument}" for m in bad[:3])
  return not bad, text


# ----------------------------------------------------------------------------- printing


def fmt(n: float) -> str:
  if abs(n) >= GIB:
    return f"{n / GIB:.2f} GiB"
  if abs(n) >= 2**20:
    return f"{n / 2**20:.1f} MiB"
  return f"{n / 2**10:.1f} KiB"


def mesh_name(shape: Sequence[int]) -> str:
  return f"({shape[0]},{shape[1]})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


# ----------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--presets", default=",".join(PRESETS), help="t5_1_1 sizes: small,base,large,xl,xxl")
  parser.add_argument("--meshes", default="8x1,1x8,2x4", help="(data)x(model) meshes over 8 fake devices")
  parser.add_argument("--batch-sizes", default="8,16,32,64,128,256,512,1024", help="global batch candidates")
  parser.add_argument("--budgets-gib", default="16,32", help="per-device memory budgets")
  parser.add_argument("--reference-batch", type=int, default=32, help="batch of the detailed table (paper: 32)")
  parser.add_argument("--remat", default="none,full", help="remat policies in order of preference")
  parser.add_argument("--unrolled", action="store_true", help="Python-loop layers (slow XXL compile)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="activation dtype")
  parser.add_argument("--prompt-length", type=int, default=100)
  parser.add_argument("--input-length", type=int, default=512)
  parser.add_argument("--target-length", type=int, default=128)
  parser.add_argument("--quick", action="store_true", help="small only, mesh 2x4, batches 8..64 (a smoke run)")
  parser.add_argument("--eval-batch", type=int, default=32, help="rows per evaluation batch")
  parser.add_argument("--eval-decode-length", type=int, default=8, help="greedy decoding: new tokens")
  parser.add_argument("--eval-only", action="store_true", help="only the evaluation functions (no train step)")
  parser.add_argument("--no-eval", action="store_true", help="only the train step")
  args = parser.parse_args(argv)
  if args.eval_only and args.no_eval:
    parser.error("--eval-only and --no-eval exclude each other")
  if args.quick:
    args.presets, args.meshes, args.batch_sizes = "small", "2x4", "8,16,32,64"
  return args


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  t0 = time.perf_counter()
  presets = args.presets.split(",")
  meshes = [tuple(int(x) for x in m.split("x")) for m in args.meshes.split(",")]
  batches = sorted(int(b) for b in args.batch_sizes.split(","))
  budgets = [int(g) for g in args.budgets_gib.split(",")]
  policies = args.remat.split(",")
  ref_batch = args.reference_batch if args.reference_batch in batches else batches[len(batches) // 2]

  def setup(preset, mesh, remat):
    return Setup(preset, mesh, remat, not args.unrolled, args.dtype, args.prompt_length, args.input_length,
                 args.target_length)

  print(f"jax {jax.__version__}, {jax.device_count()} {jax.default_backend()} devices; layers "
        f"{'unrolled' if args.unrolled else 'scanned (scan_layers=True)'}; activations {args.dtype}; "
        f"encoder {args.input_length}+{args.prompt_length} prompt, targets {args.target_length}", flush=True)
  prober = Prober()
  detail_rows, fit_rows, checks, best = [], [], [], {g: [] for g in budgets}
  eval_rows, eval_checks, eval_compiles = [], [], 0
  for preset in presets:
    for mesh in meshes:
      if args.no_eval:
        continue
      base = setup(preset, mesh, "none")  # inference: no remat
      for kind in EVAL_KINDS:
        m = measure_eval(base, kind, args.eval_batch, args.eval_decode_length)
        eval_compiles += 1
        print(f"  compiled {preset:>5} mesh {mesh_name(mesh)} evaluation {kind:<6} batch {args.eval_batch:>4}: "
              f"total {fmt(m.total)} (arguments {fmt(m.argument)}, temp {fmt(m.temp)}) in {m.compile_s:.0f}s",
              flush=True)
        eval_rows.append([preset, mesh_name(mesh), kind, fmt(m.sharded_frozen), fmt(m.argument), fmt(m.temp),
                          fmt(m.output), fmt(m.code), fmt(m.total), f"{m.compile_s:.0f}"])
        if mesh[0] == 1 and mesh[1] > 1:
          eval_checks.append(check_eval_sharding(base, m))
  for preset in presets:
    for mesh in meshes:
      if args.eval_only:
        continue
      base = setup(preset, mesh, policies[0])
      sizes = per_device(base)
      m = prober(base, ref_batch)
      detail_rows.append([preset, mesh_name(mesh), fmt(sizes["frozen"]), fmt(sizes["prompt"]),
                          fmt(sizes["opt_state"]), fmt(m.argument), fmt(m.temp), fmt(m.output), fmt(m.alias),
                          fmt(m.code), fmt(m.total), f"{m.compile_s:.0f}"])
      checks.append(check_optimizer_state(base))
      if mesh[0] == 1 and mesh[1] > 1:
        checks.append(check_model_sharding(base))
      chosen = choose_policy(prober, [setup(preset, mesh, p) for p in policies], batches,
                             [g * GIB for g in budgets], ref_batch)
      cells = []
      for gib in budgets:
        fit = search(prober, chosen, batches, gib * GIB)
        capped = "≥ " if fit == batches[-1] else ""  # the largest candidate fits
        cells.append(f"{capped}{fit}" if fit else "—")
        if fit:
          best[gib].append((PRESETS.index(preset) if preset in PRESETS else -1, fit, preset, mesh, chosen.remat))
      fit_rows.append([preset, mesh_name(mesh), fmt(sizes["frozen"]), chosen.remat] + cells)

  if eval_rows:
    print(f"\n### Per-device memory of evaluation (decoding.jit_on_mesh), batch {args.eval_batch}: greedy "
          f"{args.eval_decode_length} tokens, rank 3 labels\n")
    print(table(["model", "mesh (data,model)", "function", "frozen params (shardings)", "XLA arguments",
                 "XLA temp", "XLA output", "generated code", "total = args+out+temp", "lower+compile s"], eval_rows))
  if args.eval_only:
    print("\n### Checks")
    for ok, text in eval_checks:
      print(f"- [{'PASS' if ok else 'FAIL'}] {text}")
    print(f"\n{eval_compiles} compiles in {time.perf_counter() - t0:.0f}s")
    return 0 if all(ok for ok, _ in eval_checks) else 1
  checks.append(check_arguments(list(prober.cache.values())))
  checks.append(check_extrapolation(prober))
  checks += eval_checks
  print(f"\n### Per-device memory of one train step, global batch {ref_batch}, remat {policies[0]}\n")
  print(table(["model", "mesh (data,model)", "frozen params", "prompt", "optimizer state", "XLA arguments",
               "XLA temp (≈activations)", "XLA output", "donated (aliased)", "generated code",
               "total = args+out+temp−aliased", "lower+compile s"], detail_rows))
  print(f"\n### Largest global batch (of {', '.join(map(str, batches))}) that fits per device\n")
  print(table(["model", "mesh (data,model)", "frozen params/device", "remat"]
              + [f"≤ {g} GiB" for g in budgets], fit_rows))
  if prober.predicted:
    print(f"\nNot compiled (the affine fit puts them over budget by more than {SKIP_MARGIN:.0%}): " + "; ".join(
        f"{s.preset} {mesh_name(s.mesh_shape)} remat {s.remat} batch {b}: ~{fmt(t)} > {fmt(g)}"
        for s, b, t, g in prober.predicted))
  print()
  for gib in budgets:
    if best[gib]:
      _, batch, preset, mesh, policy = max(best[gib])
      print(f"Largest model x batch within {gib} GiB/device: t5_1_1_{preset}, global batch {batch}, "
            f"mesh {mesh_name(mesh)}, remat {policy}")
    else:
      print(f"Nothing fits within {gib} GiB/device.")
  print("\n### Checks")
  for ok, text in checks:
    print(f"- [{'PASS' if ok else 'FAIL'}] {text}")
  print(f"\n{len(prober.cache) + eval_compiles} compiles in {time.perf_counter() - t0:.0f}s")
  return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
  sys.exit(main())
