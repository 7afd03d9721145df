"""THE trainer: prompt tuning on a frozen T5, sharded with jax.jit + NamedSharding.

Every job (source prompt, target transfer, library build, grid, quickstart, projector, the
quickstart's backbone) trains through `_loop`; none has a loop of its own. What is trained and how is
one value, an `Objective` (`prompt_tuning`, `model_tuning`, the projector's); `train` trains one
prompt, `train_prompts` several (`config.train.prompts_per_step` per step), `run` any objective.
Reading order, big_vision style: mesh -> model and frozen params -> state (restored or fresh) ->
`for step in ...`: train step / log / eval + best prompt / checkpoint.

The step is `train_step(prompt, opt_state, frozen_params, batch, step)`: gradients are taken with
respect to the prompt only (the frozen params are a non-differentiated argument, so XLA never
builds gradient buffers for them), and the optimizer state is the prompt's alone.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from typing import Any, Callable, Optional, Protocol, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import metric_writers, periodic_actions
from etils import epath

from spot_jax import configs, distributed, errors, sharding, xla_options
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.checkpoints import fingerprint, train_state
from spot_jax.checkpoints import workdir as workdir_lib
from spot_jax.models import prompt as prompt_lib
from spot_jax.models import t5

Array = jax.Array
# (trainable, frozen, batch, rng) -> (summed loss, (summed reported loss, summed weight)); see make_train_step.
LossFn = Callable[[Any, Any, dict, Array], tuple[Array, tuple[Array, Array]]]


class BatchIterator(Protocol):
  """What the trainer needs from an input pipeline: per-host numpy batches and a savable position."""

  def __next__(self) -> dict[str, np.ndarray]: ...
  def get_state(self) -> dict: ...
  def set_state(self, state: dict) -> None: ...


@dataclasses.dataclass
class TrainResult:
  prompt: Optional[np.ndarray]  # final prompt [prompt_length, d_model] (prompt tuning; prompt_fn(trainable))
  params: Optional[Any]  # final trainable other than a prompt: T5 params (model tuning), projector params
  step: int
  best_score: Optional[float]
  best_step: Optional[int]
  eval_history: list[dict]  # [{'step', 'score', ...metrics}] per evaluation
  train_history: list[dict]  # [{'step', 'train/loss', ...}] per logged step of this process's run


# ----------------------------------------------------------------------------- optimizer and loss


def make_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  lr, warmup = cfg.learning_rate, cfg.warmup_steps
  if cfg.schedule == "constant":
    return optax.constant_schedule(lr)
  if cfg.schedule == "warmup_constant":
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  if cfg.schedule == "warmup_rsqrt":
    return lambda step: lr * jnp.minimum((step + 1) / max(warmup, 1), jnp.sqrt(max(warmup, 1) / (step + 1.0)))
  raise ValueError(f"Unknown schedule {cfg.schedule!r}; choose constant, warmup_constant or warmup_rsqrt.")


def make_model_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adafactor as T5 (pre-)training uses it: factored second moments, updates scaled by each
  parameter's RMS (t5x's default), lr from cfg."""
  return optax.adafactor(learning_rate=make_schedule(cfg), decay_rate=cfg.adafactor_decay_rate,
                         clipping_threshold=cfg.clipping_threshold, multiply_by_parameter_scale=True)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """t5x's Adafactor exactly as prompt-tuning's gin sets it (values and citations: configs.py): no
  parameter scaling, weight decay, the step count continuing from the checkpoint's, factored only
  where t5x factors (tests/test_train.py checks it against t5x's update rule). `optimizer="adamw"`:
  AdamW with eps 1e-6 and no weight decay, as Su et al. train their cross-model projector (a 2-layer MLP)."""
  kind = cfg.get("optimizer", "adafactor")
  if kind == "adamw":
    return optax.adamw(make_schedule(cfg), eps=1e-6, weight_decay=0.0)
  if kind != "adafactor":
    raise ValueError(f"Unknown optimizer {kind!r}; choose adafactor (prompt tuning) or adamw (projector).")
  return optax.adafactor(learning_rate=make_schedule(cfg), decay_rate=cfg.adafactor_decay_rate,
                         decay_offset=-cfg.get("adafactor_start_step", 0), clipping_threshold=cfg.clipping_threshold,
                         multiply_by_parameter_scale=False, weight_decay_rate=cfg.get("weight_decay_rate") or None,
                         factored=True, min_dim_size_to_factor=128, momentum=None, eps=1e-30)


def cross_entropy_sums(logits: Array, targets: Array, weights: Array, z_loss: float = 0.0,
                       label_smoothing: float = 0.0) -> tuple[Array, Array, Array]:
  """Token cross-entropy, summed: logits [B, T, V], targets/weights [B, T] ->
  (sum of loss incl. z-loss, sum of NLL, sum of weights). Sums (not means) so micro-batches add up."""
  log_z = jax.nn.logsumexp(logits, axis=-1)
  if label_smoothing:
    vocab = logits.shape[-1]
    confidence, low = 1.0 - label_smoothing, label_smoothing / (vocab - 1)
    soft = jax.nn.one_hot(targets, vocab) * (confidence - low) + low
    nll = log_z - jnp.sum(soft * logits, axis=-1)
  else:
    nll = log_z - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  loss = nll + z_loss * jnp.square(log_z)
  return jnp.sum(loss * weights), jnp.sum(nll * weights), jnp.sum(weights)


# ----------------------------------------------------------------------------- the step


def make_train_step(model: prompt_lib.PromptedT5, optimizer: optax.GradientTransformation,
                    cfg: ml_collections.ConfigDict, tune: str = "prompt", prompt_fn: Optional[Callable] = None,
                    loss_fn: Optional[LossFn] = None, prompts_per_step: int = 1) -> Callable:
  """-> step(trainable, opt_state, frozen, batch, step) -> (trainable, opt_state, metrics).

  tune="prompt": trainable is the prompt [L, d_model], frozen the T5 params (the default); with
  `prompt_fn` the trainable is any pytree and the prompt is `prompt_fn(trainable)` (e.g. a
  cross-model projector's params -> projected prompt), so gradients reach the trainable through it.
  tune="model": trainable is the T5 params, frozen the (possibly empty) prompt — model tuning, used
  to make the offline quickstart's backbone and as Lester et al.'s model-tuning baseline.
  `loss_fn(trainable, frozen, batch, rng) -> (summed loss, (summed reported loss, summed weight))`
  replaces the T5 cross-entropy (e.g. the projector's distance objective, whose batches are prompt pairs).

  `prompts_per_step` = K > 1: K prompts in one step, each run's own step vmapped over them (in groups
  of `cfg.prompts_in_parallel`, the groups one after another; 0 = all K at once) ->
  step(prompts [K, L, d], opt_states [K, ...], frozen, batches [K, B, ...], step, seeds [K], active [K]).
  Each prompt's gradient, Adafactor statistics and update clipping come from its own examples only,
  its dropout from its own seed: the update its own run would make. An inactive prompt (one whose
  run is already past `step`, e.g. after a resume) is left unchanged.
  """

  def t5_loss(trainable, frozen, batch, rng):
    prompt, t5_params = (trainable, frozen) if tune == "prompt" else (frozen, trainable)
    if prompt_fn is not None:
      prompt = prompt_fn(prompt)
    logits = model.apply({"params": {"prompt": prompt, "t5": t5_params}}, batch["encoder_input_tokens"],
                         batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                         enable_dropout=True, rngs={"dropout": rng})
    loss, nll, weight = cross_entropy_sums(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"],
                                           cfg.z_loss, cfg.label_smoothing)
    return loss, (nll, weight)

  grad_fn = jax.grad(loss_fn or t5_loss, has_aux=True)  # w.r.t. `trainable` only

  def update(trainable, opt_state, frozen, batch, step_num, base_rng):
    """One run's step; `base_rng` is its seed's key."""
    rng = jax.random.fold_in(base_rng, step_num)
    accum = cfg.grad_accum_steps
    if accum == 1:
      grads, (nll, weight) = grad_fn(trainable, frozen, batch, rng)
    else:
      micro = jax.tree.map(lambda x: x.reshape((accum, x.shape[0] // accum) + x.shape[1:]), batch)

      def body(carry, inputs):
        index, microbatch = inputs
        g, (n, w) = grad_fn(trainable, frozen, microbatch, jax.random.fold_in(rng, index))
        return jax.tree.map(jnp.add, carry, (g, n, w)), None

      zeros = (jax.tree.map(jnp.zeros_like, trainable), jnp.zeros(()), jnp.zeros(()))
      (grads, nll, weight), _ = jax.lax.scan(body, zeros, (jnp.arange(accum), micro))
    denominator = jnp.maximum(weight, 1.0)
    grads = jax.tree.map(lambda g: g / denominator, grads)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    metrics = {"loss": nll / denominator, "target_tokens": weight, "grad_norm": optax.tree.norm(grads)}
    return trainable, opt_state, metrics

  if prompts_per_step == 1:
    base_rng = jax.random.key(cfg.seed)
    return lambda trainable, opt_state, frozen, batch, step_num: update(
        trainable, opt_state, frozen, batch, step_num, base_rng)

  in_parallel = cfg.get("prompts_in_parallel", 0) or prompts_per_step

  def multi_step(prompts, opt_states, frozen, batches, step_num, seeds, active):
    new_prompts, new_states, metrics = jax.lax.map(  # vmapped groups of `in_parallel`, one after another
        lambda xs: update(xs[0], xs[1], frozen, xs[2], step_num, xs[3]),
        (prompts, opt_states, batches, jax.vmap(jax.random.key)(seeds)),
        batch_size=None if in_parallel >= prompts_per_step else in_parallel)
    keep = lambda new, old: jnp.where(active.reshape(active.shape + (1,) * (new.ndim - 1)), new, old)
    return (jax.tree.map(keep, new_prompts, prompts), jax.tree.map(keep, new_states, opt_states), metrics)

  return multi_step


def itstime(done: int, every: int, total: int) -> bool:
  """Periodic actions (log, eval, checkpoint) run every `every` steps and at the last step."""
  return bool(every) and (done % every == 0 or done == total)


# ----------------------------------------------------------------------------- the run


class _Progress(periodic_actions.ReportProgress):
  """clu's ReportProgress (rate, % done and ETA as the work unit's notes, at every log step and the
  last), which also prints that report as one console line with the loss: a run in a terminal must
  say when it ends. Called after every step; `loss` is set at the log steps before the call."""

  def __init__(self, name: str, total: int, every_steps: int, printing: bool):
    super().__init__(num_train_steps=total, every_steps=every_steps, every_secs=None)
    self.name, self.total, self.printing, self.loss = name, total, printing, float("nan")
    self._last: Optional[tuple[int, float]] = None  # (step, time) of the start or the previous report

  def __call__(self, step: int, t: Optional[float] = None) -> bool:
    t = time.monotonic() if t is None else t
    self._last = self._last or (step, t)  # the first call starts the clock (clu's too)
    return super().__call__(step, t)

  def _apply(self, step: int, t: float) -> None:  # the hook a PeriodicAction subclass implements
    super()._apply(step, t)
    (last_step, last_time), self._last = self._last, (step, t)
    if self.printing:
      rate = (step - last_step) / max(t - last_time, 1e-9)
      eta = (self.total - step) / rate if rate > 0 else float("inf")
      eta_text = f"{int(eta // 60)}m{int(eta % 60):02d}s" if math.isfinite(eta) else "?"
      print(f"[{self.name}] step {step}/{self.total} loss {self.loss:.4f} {rate:.2f} steps/s ETA {eta_text}",
            flush=True)


# Settings that do not change the compiled step: runs that differ only in these share one compile
# (the quickstart and grids run dozens of short trainings in one process).
_RUN_ONLY_FIELDS = ("num_train_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                    "embedding_step", "allow_changes", "fresh_start", "prompts_per_step")
# Settings that do not change a run's result: they may differ when a run resumes (the rest of
# config.train is the run's identity; see checkpoints/workdir.py). A prompt trained with others in
# one step (prompts_per_step) is the prompt its own run makes, so a run may resume either way.
NOT_IDENTITY_FIELDS = ("log_every", "checkpoint_every", "keep_checkpoints", "mesh_shape", "allow_changes",
                       "fresh_start", "prompts_per_step", "prompts_in_parallel")
_STEP_CACHE: dict = {}


def jitted_step(model: prompt_lib.PromptedT5, optimizer: optax.GradientTransformation, cfg: ml_collections.ConfigDict,
                tune: str, mesh: jax.sharding.Mesh, trainable_shardings: Any, opt_shardings: Any,
                frozen_shardings: Any, prompt_fn: Optional[Callable] = None, loss_fn: Optional[LossFn] = None,
                prompts_per_step: int = 1) -> Callable:
  """`make_train_step` jitted with the trainer's shardings (batches over 'data', state donated);
  cached, so runs that differ only in `_RUN_ONLY_FIELDS` share one compile. With K prompts per step
  the batches are [K, B, ...], B over 'data'."""
  # K prompts per step take their seeds as an argument: runs of any seeds share that compile.
  ignored = _RUN_ONLY_FIELDS + (("seed",) if prompts_per_step > 1 else ())
  step_fields = {k: v for k, v in cfg.items() if k not in ignored}
  key = (model.config, model.prompt_length, tune, repr(sorted(step_fields.items())), mesh.shape_tuple,
         tuple(d.id for d in mesh.devices.flat), jax.tree.structure(frozen_shardings), prompt_fn, loss_fn,
         prompts_per_step)
  if key not in _STEP_CACHE:
    if len(_STEP_CACHE) > 16:
      _STEP_CACHE.clear()
    repl = sharding.replicated(mesh)
    if prompts_per_step == 1:
      inputs = (trainable_shardings, opt_shardings, frozen_shardings, sharding.batch_sharding(mesh), repl)
    else:
      inputs = (trainable_shardings, opt_shardings, frozen_shardings, sharding.stacked_batch_sharding(mesh), repl,
                repl, repl)
    _STEP_CACHE[key] = jax.jit(
        make_train_step(model, optimizer, cfg, tune, prompt_fn, loss_fn, prompts_per_step),
        in_shardings=inputs, out_shardings=(trainable_shardings, opt_shardings, repl),
        donate_argnums=(0, 1), compiler_options=xla_options.train_step_options())
  return _STEP_CACHE[key]


def state_shardings(state: Any, mesh: jax.sharding.Mesh) -> Any:
  """Prompt-sized state (prompts, their optimizer state) is replicated on the mesh."""
  return jax.tree.map(lambda _: sharding.replicated(mesh), state)


@dataclasses.dataclass
class PromptRun:
  """One prompt of `train_prompts`: its own workdir, seed, data, initial prompt and evaluation, as
  the arguments of its own `train` call would be."""

  workdir: str
  seed: int
  train_iter: BatchIterator
  prompt_init: prompt_lib.Initializer
  evaluate: Optional[Callable[[np.ndarray], dict[str, float]]] = None
  name: str = "train"
  run_identity: Optional[dict] = None
  embedding_step: Optional[int] = None  # this run's config.train.embedding_step (None: the shared one)


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the one training loop trains and how, as one value. Built by `prompt_tuning` (a prompt on
  the frozen T5), `model_tuning` (the T5 itself) and spot/projector.py's `task_objective` /
  `distance_objective` (a projector whose output is the prompt); `run` trains any of them."""

  trainer: str  # recorded in the run's identity: "prompt" | "model" | "projector"
  tune: str  # "prompt": the trainable makes the prompt of the frozen T5; "model": the trainable is the T5
  prompt_length: int  # rows of prompt the T5 runs with (0: none)
  frozen: Any  # the step's non-differentiated argument: T5 params ("prompt") or the fixed prompt ("model")
  frozen_axes: Any  # its logical axes
  make_optimizer: Callable[[ml_collections.ConfigDict], optax.GradientTransformation]
  trainable_axes: Any = None  # logical axes of the trainable; None: replicated (prompt-sized)
  prompt_fn: Optional[Callable[[Any], Array]] = None  # trainable -> prompt; None: the trainable is the prompt
  loss_fn: Optional[LossFn] = None  # None: T5 cross-entropy (see make_train_step)

  @property
  def named_prompts(self) -> bool:
    """Whether runs write best/embedding/final prompts (everything but model tuning)."""
    return self.tune == "prompt"


def prompt_tuning(model_config: t5.T5Config, frozen_params: Any, prompt_length: int) -> Objective:
  """A prompt [prompt_length, d_model] on the frozen T5 (Lester et al.; SPoT)."""
  return Objective("prompt", "prompt", prompt_length, frozen_params, t5.logical_axes(model_config), make_optimizer)


def model_tuning(model_config: t5.T5Config) -> Objective:
  """All T5 weights, no prompt (the quickstart's backbone; Lester et al.'s model-tuning baseline)."""
  empty_prompt = np.zeros((0, model_config.d_model), np.float32)
  return Objective("model", "model", 0, empty_prompt, jax.sharding.PartitionSpec(), make_model_optimizer,
                   trainable_axes=t5.logical_axes(model_config))


def train(cfg: ml_collections.ConfigDict, workdir: str, *, model_config: t5.T5Config, frozen_params: Any,
          train_iter: BatchIterator, prompt_init: prompt_lib.Initializer,
          evaluate: Optional[Callable[[np.ndarray], dict[str, float]]] = None, name: str = "train",
          verbose: bool = True, run_identity: Optional[dict] = None,
          frozen_fingerprint: Optional[str] = None) -> TrainResult:
  """Trains one prompt on the frozen model; resumes from `workdir` if it holds checkpoints.

  `evaluate(prompt) -> metrics` must include 'score' (higher is better); the best-scoring prompt is
  written as `<workdir>/prompts/best.npy`. With `cfg.embedding_step > 0` the prompt at that step is
  written as `embedding.npy` (the SPoT task embedding). The final prompt is `final.npy`.

  The workdir belongs to this run (checkpoints/workdir.py): its identity is `cfg` (less the fields
  that do not change the result), the model config, the frozen model's fingerprint (computed unless
  `frozen_fingerprint` is given), a digest of the initial prompt, and the caller's `run_identity`
  (e.g. task and data settings). A workdir holding a different run is refused.
  """
  run_spec = PromptRun(workdir, cfg.seed, train_iter, prompt_init, evaluate, name, run_identity)
  return train_prompts(cfg, [run_spec], model_config=model_config, frozen_params=frozen_params, verbose=verbose,
                       frozen_fingerprint=frozen_fingerprint)[0]


def run(cfg: ml_collections.ConfigDict, workdir: str, objective: Objective, trainable_init: Any, *,
        model_config: t5.T5Config, train_iter: BatchIterator,
        evaluate: Optional[Callable[[Any], dict[str, float]]] = None, name: str = "train", verbose: bool = True,
        run_identity: Optional[dict] = None, frozen_fingerprint: Optional[str] = None) -> TrainResult:
  """Trains `trainable_init` (any pytree) for `objective`: the one loop behind `train`, `tune_model`
  and the projector. Gradients, optimizer state and checkpoints are the trainable's; with a prompt
  objective the named prompts and `evaluate` get the prompt it makes (`objective.prompt_fn`), and
  `TrainResult.params` is the final trainable unless the trainable is the prompt itself."""
  configs.check_train(cfg, prompt_tuning=objective.tune == "prompt")
  if objective.tune == "prompt":
    _check_prompt_cfg(cfg)
    made = jax.eval_shape(objective.prompt_fn, trainable_init) if objective.prompt_fn else trainable_init
    prompt_lib.check_prompt_shape(made, (cfg.prompt_length, model_config.d_model),
                                  "prompt_fn(trainable)" if objective.prompt_fn else "initial prompt")
  identity = {"trainer": objective.trainer, **(run_identity or {})}
  if objective.tune == "prompt":
    identity["frozen_model"] = frozen_fingerprint or fingerprint.model_fingerprint(model_config, objective.frozen)
  member = _Member(workdir, cfg, train_iter, evaluate, name, identity,
                   jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), trainable_init))
  return _run([member], objective, model_config=model_config, verbose=verbose)[0]


def train_prompts(cfg: ml_collections.ConfigDict, runs: Sequence[PromptRun], *, model_config: t5.T5Config,
                  frozen_params: Any, verbose: bool = True,
                  frozen_fingerprint: Optional[str] = None) -> list[TrainResult]:
  """Trains one prompt per `PromptRun` on the frozen model, `cfg.prompts_per_step` of them per step.

  Each run is exactly its own `train(cfg with its seed, run.workdir, ...)`: its workdir, identity,
  checkpoints, resume, named prompts (best by its own evaluation, embedding, final) and TensorBoard
  scalars are its own, and its updates come from its own examples (see `make_train_step`). Groups of
  K share the frozen model's forward and backward passes, one compile, and the loop's overheads. A
  run whose workdir is already further on (finished, or saved later before an interruption) waits
  unchanged until the others catch up, so any mix of fresh and resumed runs trains correctly.
  """
  configs.check_train(cfg)
  if not runs:
    return []
  prompt_shape = (cfg.prompt_length, model_config.d_model)
  frozen_fingerprint = frozen_fingerprint or fingerprint.model_fingerprint(model_config, frozen_params)
  members = []
  for run in runs:
    run_cfg = ml_collections.ConfigDict(cfg.to_dict())
    run_cfg.seed = run.seed
    if run.embedding_step is not None:
      run_cfg.embedding_step = run.embedding_step
    _check_prompt_cfg(run_cfg)
    initial = run.prompt_init(jax.random.key(run.seed + 1), prompt_shape)
    prompt_lib.check_prompt_shape(initial, prompt_shape, "initial prompt")
    identity = {"trainer": "prompt", **(run.run_identity or {}), "frozen_model": frozen_fingerprint}
    members.append(_Member(run.workdir, run_cfg, run.train_iter, run.evaluate, run.name, identity,
                           jnp.asarray(initial, jnp.float32)))
  objective = prompt_tuning(model_config, frozen_params, cfg.prompt_length)
  k = cfg.get("prompts_per_step", 1)
  results = []
  for first in range(0, len(members), k):
    results += _run(members[first:first + k], objective, model_config=model_config, verbose=verbose)
  return results


def _check_prompt_cfg(cfg: ml_collections.ConfigDict) -> None:
  configs.check_train(cfg)
  if cfg.embedding_step > cfg.num_train_steps:  # checked here: jobs set it per run (library keys, targets)
    raise errors.ConfigError(f"config.train.embedding_step = {cfg.embedding_step} is after the last step "
                             f"(num_train_steps = {cfg.num_train_steps}): it must be between 0 (no task "
                             "embedding) and num_train_steps.")


def tune_model(cfg: ml_collections.ConfigDict, workdir: str, *, model_config: t5.T5Config, params: Any,
               train_iter: BatchIterator, evaluate: Optional[Callable[[Any], dict[str, float]]] = None,
               name: str = "model-tuning", verbose: bool = True, run_identity: Optional[dict] = None) -> TrainResult:
  """Model tuning (all T5 weights, no prompt) through the same loop; `TrainResult.params` holds the
  tuned weights. The offline quickstart makes its frozen backbone this way."""
  return run(cfg, workdir, model_tuning(model_config), params, model_config=model_config, train_iter=train_iter,
             evaluate=evaluate, name=name, verbose=verbose, run_identity=run_identity)


# Parts of a run's identity that no `allow_changes` can change: the state would not fit or mean anything.
_NEVER_CHANGEABLE = ("trainer", "frozen_model", "train.prompt_length")


@dataclasses.dataclass
class _Member:
  """One run of a step (one prompt of K): what it was given, then its workdir claim and bookkeeping."""

  workdir: str
  cfg: ml_collections.ConfigDict  # the run's own config.train (its seed)
  train_iter: BatchIterator
  evaluate: Optional[Callable]
  name: str
  identity: dict
  initial: Any  # the initial trainable (host or device arrays)
  claim: Optional[workdir_lib.Claim] = None
  checkpointer: Optional[train_state.TrainCheckpointer] = None
  writer: Any = None
  start_step: int = 0
  best_score: Optional[float] = None
  best_step: Optional[int] = None
  eval_history: list = dataclasses.field(default_factory=list)
  train_history: list = dataclasses.field(default_factory=list)

  def result(self, prompt, params) -> TrainResult:
    return TrainResult(prompt=prompt, params=params, step=self.cfg.num_train_steps, best_score=self.best_score,
                       best_step=self.best_step, eval_history=self.eval_history, train_history=self.train_history)


def _run(members: list[_Member], objective: Objective, *, model_config: t5.T5Config,
         verbose: bool) -> list[TrainResult]:
  """Claims each member's workdir (its identity checked), then runs `_loop`: the only training loop."""
  cfg = members[0].cfg
  mesh = sharding.make_mesh(cfg.mesh_shape)
  sharding.check_batch_fits(cfg.batch_size, mesh)
  try:
    for member in members:
      identity = {**member.identity, "train": {k: v for k, v in member.cfg.items() if k not in NOT_IDENTITY_FIELDS},
                  "model": dataclasses.asdict(model_config),
                  "initial_prompt_digest": fingerprint.tree_digest(member.initial)}
      member.claim = workdir_lib.claim(member.workdir, "train", identity,
                                       workdir_lib.parse_allow_changes(member.cfg.allow_changes),
                                       never_changeable=_NEVER_CHANGEABLE)
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.STANDARD_RULES):
      return _loop(members, objective, mesh=mesh, model_config=model_config, verbose=verbose)
  finally:
    for member in members:
      if member.claim is not None:
        member.claim.release()


def _better(score: float, best: Optional[float]) -> bool:
  """Is `score` a new best? NaN (e.g. a correlation of constant predictions, as T5 reports it) is
  worse than any number, so an early NaN never blocks later real scores."""
  if best is None:
    return True
  if math.isnan(score):
    return False
  return math.isnan(best) or score > best


def _set_aside_named_prompts(workdir: epath.Path, is_writer: bool) -> None:
  """A fresh start keeps the old run's named prompts under prompts-before-fresh-start-<time>/."""
  old = workdir / prompt_io.PROMPTS_DIR
  if is_writer and old.exists():
    target = workdir / f"{prompt_io.PROMPTS_DIR}-before-fresh-start-{int(time.time())}"
    old.rename(target)
    logging.warning("Fresh start: the old run's named prompts were moved to %s", target)
  distributed.sync("spot_jax_prompts_set_aside")


class _Stack:
  """K members' states <-> the step's state: the state itself for one member, stacked on a new
  leading axis for several (prompt-sized, replicated arrays)."""

  def __init__(self, size: int, mesh: jax.sharding.Mesh):
    self.size = size
    self._join, self._take = _stack_functions(mesh)

  def join(self, states: list) -> Any:
    return states[0] if self.size == 1 else self._join(states)

  def part(self, state: Any, index: int) -> Any:
    return state if self.size == 1 else self._take(state, jnp.asarray(index, jnp.int32))


@functools.lru_cache(maxsize=None)
def _stack_functions(mesh: jax.sharding.Mesh) -> tuple[Callable, Callable]:
  """(join, take) jitted once per mesh, so that each group of K prompts reuses their compilation."""
  repl = sharding.replicated(mesh)
  join = jax.jit(lambda states: jax.tree.map(lambda *xs: jnp.stack(xs), *states), out_shardings=repl)
  take = jax.jit(lambda state, i: jax.tree.map(lambda x: x[i], state), out_shardings=repl)
  return join, take


def _loop(members: list[_Member], objective: Objective, *, mesh: jax.sharding.Mesh, model_config: t5.T5Config,
          verbose: bool) -> list[TrainResult]:
  """Restore or start each member, then `for step in ...`: train step / log / eval + best prompt /
  checkpoint, per member."""
  cfg = members[0].cfg
  k = len(members)
  tune, prompt_fn = objective.tune, objective.prompt_fn
  model = prompt_lib.PromptedT5(model_config, objective.prompt_length)
  optimizer = objective.make_optimizer(cfg)
  repl = sharding.replicated(mesh)
  is_writer = jax.process_index() == 0
  named_prompts = objective.named_prompts
  as_prompt = jax.jit(prompt_fn) if prompt_fn is not None else (lambda trainable: trainable)
  stack = _Stack(k, mesh)
  trainable_shardings = (sharding.logical_shardings(objective.trainable_axes, members[0].initial, mesh)
                         if objective.trainable_axes is not None else repl)

  frozen = objective.frozen
  # Placed once, never copied or updated; a prompt run's frozen T5 is the copy evaluation reuses.
  frozen = (sharding.place_frozen(frozen, model_config, mesh) if tune == "prompt"
            else jax.device_put(frozen, sharding.logical_shardings(objective.frozen_axes, frozen, mesh)))
  # Prompt optimizer state is replicated; that of model weights follows the weights (XLA decides).
  opt_init = jax.jit(optimizer.init, out_shardings=(
      state_shardings(jax.eval_shape(optimizer.init, members[0].initial), mesh) if tune == "prompt" else None))
  states = []
  for member in members:
    workdir_path = member.claim.path
    trainable = jax.device_put(member.initial, trainable_shardings)
    opt_state = opt_init(trainable)
    abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                                  {"trainable": trainable, "opt_state": opt_state,
                                   "step": jax.device_put(jnp.zeros((), jnp.int32), repl)})
    member.checkpointer = train_state.TrainCheckpointer(str(workdir_path / "checkpoints"), cfg.checkpoint_every,
                                                        cfg.keep_checkpoints)
    restored = member.checkpointer.restore_latest(abstract_state, fresh_start=member.cfg.fresh_start)
    if member.checkpointer.started_over:
      _set_aside_named_prompts(workdir_path, is_writer)
    if restored is not None:
      member.start_step, state, data_state = restored
      if member.start_step > cfg.num_train_steps:
        raise errors.WorkdirError(
            f"Workdir {workdir_path} holds a checkpoint at step {member.start_step}, past num_train_steps = "
            f"{cfg.num_train_steps}: a run cannot be shortened after the fact. Use another --workdir.")
      member.train_iter.set_state(data_state)
      trainable, opt_state = state["trainable"], state["opt_state"]
      logging.info("[%s] resumed from step %d", member.name, member.start_step)
      if verbose:
        print(f"[{member.name}] resumed from checkpoint at step {member.start_step}", flush=True)
    states.append((trainable, opt_state))
    member.writer = metric_writers.create_default_writer(
        str(workdir_path / "tensorboard"), just_logging=not is_writer, asynchronous=False)
    if member.start_step == 0:
      member.writer.write_hparams({key: str(v) for key, v in member.cfg.items()})
    best_meta = prompt_io.load_named_metadata(member.workdir, "best") if named_prompts else None
    member.best_score = best_meta["score"] if best_meta else None
    member.best_step = best_meta["step"] if best_meta else None
  trainable = stack.join([t for t, _ in states])
  opt_state = stack.join([o for _, o in states])
  del states
  opt_shardings = jax.tree.map(lambda x: x.sharding, opt_state)
  step_fn = jitted_step(model, optimizer, cfg, tune, mesh, jax.tree.map(lambda x: x.sharding, trainable),
                        opt_shardings, jax.tree.map(lambda x: x.sharding, frozen), prompt_fn, objective.loss_fn, k)
  seeds = jax.device_put(np.asarray([m.cfg.seed for m in members], np.int32), repl)

  start_step = min(m.start_step for m in members)
  name = members[0].name if k == 1 else f"{k} prompts: {members[0].name} .. {members[-1].name}"
  progress = _Progress(name, cfg.num_train_steps, cfg.log_every, printing=verbose and is_writer)
  progress(start_step)  # the first call only starts the clock
  window_start, window_steps = time.perf_counter(), 0
  schedule = make_schedule(cfg)

  def save_named(member, prompt, which, metadata):
    if named_prompts and is_writer:
      prompt_io.save_named_prompt(member.workdir, which, np.asarray(prompt), metadata)

  def host_prompts():  # every member's current prompt (model tuning: its params), on the host
    value = jax.device_get(as_prompt(trainable))
    return [value] if k == 1 else list(np.asarray(value))

  template = None
  for step in range(start_step, cfg.num_train_steps):
    active = [step >= m.start_step for m in members]
    local = [next(m.train_iter) if on else None for m, on in zip(members, active)]
    if k == 1:
      batch = sharding.global_batch(local[0], mesh)
      trainable, opt_state, metrics = step_fn(trainable, opt_state, frozen, batch, jnp.asarray(step, jnp.int32))
    else:
      template = template or next(b for b in local if b is not None)
      local = [b if b is not None else jax.tree.map(np.zeros_like, template) for b in local]
      batch = sharding.global_batch({key: np.stack([b[key] for b in local]) for key in template}, mesh, stacked=True)
      trainable, opt_state, metrics = step_fn(trainable, opt_state, frozen, batch, jnp.asarray(step, jnp.int32),
                                              seeds, jax.device_put(np.asarray(active), repl))
    done = step + 1
    window_steps += 1
    due = [m for m, on in zip(members, active) if on]
    prompts = None

    embedded = [i for i, m in enumerate(members) if active[i] and m.cfg.embedding_step == done]
    logging_now = itstime(done, cfg.log_every, cfg.num_train_steps)
    evaluating = itstime(done, cfg.eval_every, cfg.num_train_steps) and any(m.evaluate for m in due)
    saving = itstime(done, cfg.checkpoint_every, cfg.num_train_steps)
    if embedded or logging_now or evaluating or saving:
      # A NaN loss makes a NaN prompt for good: stop before such a state is logged, kept or saved.
      _check_finite(np.atleast_1d(jax.device_get(metrics["loss"])), members, active, done)

    if embedded:
      prompts = host_prompts()
      for i in embedded:
        save_named(members[i], prompts[i], "embedding", {"step": done})

    if logging_now:
      metrics = jax.device_get(metrics)
      elapsed = time.perf_counter() - window_start
      losses = np.atleast_1d(metrics["loss"])
      for i, member in enumerate(members):
        if not active[i]:
          continue
        scalars = {"train/loss": float(losses[i]), "train/grad_norm": float(np.atleast_1d(metrics["grad_norm"])[i]),
                   "train/learning_rate": float(schedule(step)), "train/steps_per_sec": window_steps / elapsed,
                   "train/examples_per_sec": window_steps * cfg.batch_size * len(due) / elapsed}
        member.writer.write_scalars(done, scalars)
        member.train_history.append({"step": done, **scalars})
      progress.loss = float(np.mean(losses[np.asarray(active)]))
      window_start, window_steps = time.perf_counter(), 0

    progress(done)

    if evaluating:
      prompts = prompts or host_prompts()
      for i, member in enumerate(members):
        if active[i] and member.evaluate is not None:
          _evaluate(member, prompts[i], done, verbose and is_writer, save_named)

    if saving:
      for i, member in enumerate(members):
        if active[i]:
          member.checkpointer.save(done, {"trainable": stack.part(trainable, i), "opt_state": stack.part(opt_state, i),
                                          "step": jnp.asarray(done, jnp.int32)},
                                   member.train_iter.get_state(), force=True)

  final = jax.device_get(trainable)
  prompts = [np.asarray(p) for p in host_prompts()] if named_prompts else [None] * k
  results = []
  for i, member in enumerate(members):
    save_named(member, prompts[i], "final", {"step": cfg.num_train_steps})
    member.writer.flush()
    member.checkpointer.close()
    results.append(member.result(prompts[i], final if prompt_fn is not None or not named_prompts else None))
  distributed.sync("spot_jax_train_end")  # every process sees the named prompts once train() returns
  return results


def _check_finite(losses: np.ndarray, members: list[_Member], active: list[bool], done: int) -> None:
  bad = [m for m, loss, on in zip(members, losses, active) if on and not np.isfinite(loss)]
  if bad:
    where = "; ".join(f"{m.name} ({m.workdir}, last checkpoint step {m.checkpointer.latest_step() or 'none'})"
                      for m in bad)
    raise errors.TrainingDivergedError(
        f"The training loss is {'/'.join(str(float(x)) for x in losses if not np.isfinite(x))} at step {done}: "
        f"the run diverged ({where}). Nothing of this step was saved. Lower config.train.learning_rate, check "
        "the data for empty or broken targets, or resume from the last checkpoint with other settings "
        "(--config.train.allow_changes=...).")


def _evaluate(member: _Member, prompt: np.ndarray, done: int, show: bool, save_named: Callable) -> None:
  """Evaluates one member's prompt; a new best is written as its `best` named prompt."""
  results = dict(member.evaluate(prompt))
  if "score" not in results:
    raise ValueError(f"evaluate() must return a 'score'; got keys {sorted(results)}.")
  member.writer.write_scalars(done, {f"eval/{key}": float(v) for key, v in results.items()})
  member.eval_history.append({"step": done, **{key: float(v) for key, v in results.items()}})
  if _better(float(results["score"]), member.best_score):
    member.best_score, member.best_step = float(results["score"]), done
    save_named(member, prompt, "best", {"step": done, "score": member.best_score, "metrics": results})
  if show:
    print(f"[{member.name}] eval at step {done}: " + ", ".join(f"{key}={v:.2f}" for key, v in results.items())
          + f" (best {member.best_score:.2f} at step {member.best_step})", flush=True)
