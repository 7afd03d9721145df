"""Su et al.'s cross-model prompt projector: a prompt of one frozen T5 -> a prompt for another.

Why: a prompt only means something to the frozen model it was trained on (a library refuses other
models). Su et al. (NAACL 2022, "On Transferability of Prompt Tuning", cross-model transfer) learn a
small projector and find that one trained by *task tuning* through the target model makes source-model
prompts work zero-shot on similar tasks, and speeds up target prompt tuning as an initialization.

Architecture, as their code builds it (thunlp/Prompt-Transferability, Prompt-Transferability-1.0/
`tools/projector.py: AE_1_layer_mutiple_100_paper`, chosen in `tools/train_tool_cross.py`):
  prompt [L, d_src] -> flatten [L*d_src] -> Dense(hidden, 768) -> tanh -> Dense(L*d_tgt) -> [L, d_tgt]
That class (and their T5-XXL -> Base one) also applies a LayerNorm over d_tgt to every output token
(`layer_norm=True`, on in experiments/projector.py); the paper's formula, W2 tanh(W1 p + b1) + b2, has
none, so the module's default is off. Without it a task-tuned projector's prompts can grow far larger
than the target model's own prompts and make poor inits. Weights start from flax's default
(LeCun normal, zero bias); their code draws T5 projector weights from N(0, 1), which saturates the tanh
at a fan-in of L*d_src.

Objectives; both are `train.Objective`s run by the one trainer, `train.run` (there is no second loop):
  task      their "task tuning" (their better one): the prompt fed to the frozen target T5 is
            projector(source prompt); cross-entropy on the target task; `prompt_fn` makes gradients,
            optimizer state and checkpoints the projector's only; source prompt and target model frozen.
  distance  their "distance minimizing": pairs (source-model prompt, target-model prompt) of the same
            tasks; minimise the mean squared error |projector(P_src) - P_tgt|^2 / (L d_tgt) (the
            `nn.MSELoss` between projected and target prompt in their `model/crossPrompt_proj_and_target.py`;
            the paper's L2 distance squared, up to a constant, so the same minimiser). Runs through the
            trainer with `loss_fn`; its batches are prompt pairs (`PromptPairs`), not text.
Optimizer: their `optimizer_AE`, AdamW lr 5e-3, eps 1e-6, no weight decay (`train.optimizer="adamw"`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from spot_jax import train
from spot_jax.models import t5
from spot_jax.models.prompt import PromptShapeError

Array = jax.Array


class Projector(nn.Module):
  """Flattened prompt -> Dense(hidden) -> tanh -> Dense -> prompt of the target model.

  Params: {'hidden': {kernel [L*d_source, hidden], bias}, 'output': {kernel [hidden, L*d_target], bias}}
  (+ 'norm' with layer_norm). The prompt length L is kept: token i of the output is a function of
  the whole source prompt.
  """

  prompt_length: int
  d_source: int
  d_target: int
  hidden_size: int = 768
  layer_norm: bool = False

  @nn.compact
  def __call__(self, prompt: Array) -> Array:
    """[..., L, d_source] -> [..., L, d_target]."""
    if tuple(prompt.shape[-2:]) != (self.prompt_length, self.d_source):
      raise PromptShapeError(
          f"The projector maps [prompt_length, d_source] = {(self.prompt_length, self.d_source)} prompts; got "
          f"{tuple(prompt.shape)}. Use a source prompt of that shape, or a projector built for it.")
    batch_shape = prompt.shape[:-2]
    x = prompt.reshape(batch_shape + (-1,)).astype(jnp.float32)
    x = jnp.tanh(nn.Dense(self.hidden_size, name="hidden")(x))
    x = nn.Dense(self.prompt_length * self.d_target, name="output")(x)
    x = x.reshape(batch_shape + (self.prompt_length, self.d_target))
    return nn.LayerNorm(epsilon=1e-5, name="norm")(x) if self.layer_norm else x


def init_params(projector: Projector, seed: int = 0) -> Any:
  """Fresh projector params (host numpy arrays)."""
  dummy = jnp.zeros((projector.prompt_length, projector.d_source), jnp.float32)
  return jax.tree.map(np.asarray, projector.init(jax.random.key(seed), dummy)["params"])


def project(projector: Projector, params: Any, source_prompt: np.ndarray) -> np.ndarray:
  """Source prompt(s) [..., L, d_source] -> projected prompt(s) [..., L, d_target]."""
  return np.asarray(jax.jit(projector.apply)({"params": params}, jnp.asarray(source_prompt, jnp.float32)))


def distance(a: np.ndarray, b: np.ndarray) -> float:
  """Euclidean distance of two prompts [L, d] (flattened): the paper's L2 distance."""
  return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def projected_prompt_fn(projector: Projector, source_prompt: np.ndarray) -> Callable[[Any], Array]:
  """-> prompt_fn(projector params) = projector(source_prompt) [L, d_target], for `train.train`.
  The source prompt is a constant of the step: frozen, never differentiated."""
  source = np.asarray(source_prompt, np.float32)
  if source.shape != (projector.prompt_length, projector.d_source):
    raise PromptShapeError(f"Source prompt has shape {source.shape}; this projector maps "
                           f"{(projector.prompt_length, projector.d_source)} [prompt_length, d_source] prompts.")

  def prompt_fn(params: Any) -> Array:
    return projector.apply({"params": params}, source)

  return prompt_fn


def distance_loss_fn(projector: Projector) -> train.LossFn:
  """The trainer's loss for distance minimizing: sum over the batch's pairs of each pair's mean
  squared error; the trainer divides by the number of pairs (the 'weight')."""
  def loss_fn(params, frozen, batch, rng):
    del frozen, rng  # no model in this objective
    projected = projector.apply({"params": params}, batch["source"])  # [B, L, d_target]
    per_pair = jnp.mean(jnp.square(projected - batch["target"]), axis=(-2, -1))
    total = jnp.sum(per_pair)
    return total, (total, jnp.asarray(per_pair.shape[0], jnp.float32))
  return loss_fn


class PromptPairs:
  """The distance objective's batches: {'source': [B, L, d_source], 'target': [B, L, d_target]},
  pairs of one task's prompts on the two models. Batch i is a pure function of (seed, i), so the
  position is the whole state (exact resume, as the trainer's text pipelines)."""

  def __init__(self, sources: np.ndarray, targets: np.ndarray, batch_size: int, seed: int = 0):
    if len(sources) != len(targets) or not len(sources):
      raise ValueError(f"PromptPairs needs one target prompt per source prompt; got {len(sources)} sources, "
                       f"{len(targets)} targets.")
    self.sources, self.targets = np.asarray(sources, np.float32), np.asarray(targets, np.float32)
    self.batch_size, self.seed, self.position = batch_size, seed, 0

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    rng = np.random.default_rng((self.seed, self.position))
    self.position += 1
    count = len(self.sources)
    rows = rng.choice(count, self.batch_size, replace=self.batch_size > count)
    return {"source": self.sources[rows], "target": self.targets[rows]}

  def get_state(self) -> dict:
    return {"position": self.position}

  def set_state(self, state: dict) -> None:
    self.position = int(state["position"])


# ----------------------------------------------------------------------------- the two objectives


def task_objective(projector: Projector, source_prompt: np.ndarray, model_config: t5.T5Config,
                   frozen_params: Any) -> train.Objective:
  """The trainer's objective for task tuning: the frozen target T5 runs with projector(source_prompt)
  and the T5 loss; only the projector learns (its optimizer: `config.train.optimizer`, AdamW)."""
  return dataclasses.replace(train.prompt_tuning(model_config, frozen_params, projector.prompt_length),
                             trainer="projector", prompt_fn=projected_prompt_fn(projector, source_prompt))


def distance_objective(projector: Projector, shown_source_prompt: np.ndarray, model_config: t5.T5Config,
                       frozen_params: Any) -> train.Objective:
  """The trainer's objective for distance minimizing: the loss is `distance_loss_fn` on prompt pairs;
  the named prompts and evaluation show projector(shown_source_prompt) on the frozen target T5."""
  return dataclasses.replace(task_objective(projector, shown_source_prompt, model_config, frozen_params),
                             loss_fn=distance_loss_fn(projector))


def tune_on_task(cfg: ml_collections.ConfigDict, workdir: str, *, projector: Projector, params: Any,
                 source_prompt: np.ndarray, model_config: t5.T5Config, frozen_params: Any,
                 train_iter: train.BatchIterator, evaluate: Optional[Callable[[np.ndarray], dict]] = None,
                 name: str = "projector/task", verbose: bool = True) -> train.TrainResult:
  """Task tuning: the frozen target T5 sees projector(source_prompt); only the projector learns.
  `TrainResult.params` = projector params; its named prompts (best/final.npy) are projected prompts."""
  return train.run(cfg, workdir, task_objective(projector, source_prompt, model_config, frozen_params), params,
                   model_config=model_config, train_iter=train_iter, evaluate=evaluate, name=name, verbose=verbose)


def fit_distance(cfg: ml_collections.ConfigDict, workdir: str, *, projector: Projector, params: Any,
                 source_prompts: np.ndarray, target_prompts: np.ndarray, model_config: t5.T5Config,
                 frozen_params: Any, shown_source_prompt: Optional[np.ndarray] = None,
                 evaluate: Optional[Callable[[np.ndarray], dict]] = None, name: str = "projector/distance",
                 verbose: bool = True) -> train.TrainResult:
  """Distance minimizing on pairs source_prompts [K, L, d_source] -> target_prompts [K, L, d_target].

  The target model (`model_config`, `frozen_params`) takes no part in the loss; it is what the named
  prompts and `evaluate` are for: they get projector(shown_source_prompt) (default: the first pair's).
  `train.loss` is the mean squared error per pair.
  """
  shown = source_prompts[0] if shown_source_prompt is None else shown_source_prompt
  pairs = PromptPairs(source_prompts, target_prompts, cfg.batch_size, cfg.seed)
  return train.run(cfg, workdir, distance_objective(projector, shown, model_config, frozen_params), params,
                   model_config=model_config, train_iter=pairs, evaluate=evaluate, name=name, verbose=verbose)


# ----------------------------------------------------------------------------- files


def save_params(path: str, params: Any) -> None:
  """Projector params as one msgpack file (flax serialization)."""
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.parent / f".{target.name}.tmp"
  tmp.write_bytes(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))
  tmp.rename(target)


def load_params(path: str) -> Any:
  """Projector params written by `save_params` (nested dict of numpy arrays)."""
  return flax.serialization.msgpack_restore(epath.Path(path).read_bytes())
