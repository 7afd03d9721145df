"""Transferability indicators (Su et al., NAACL 2022) and how well each one predicts transfer.

Why: SPoT retrieves sources by prompt-embedding similarity; Su et al. found that the overlap of the
feed-forward neurons two prompts activate in the frozen model (ON) predicts cross-task transfer
better than any embedding similarity. This module computes both kinds for prompts [L, d_model] and
correlates each with a measured sources x targets transfer grid, so the claim can be checked on any
backbone spot_jax runs.

Embedding indicators (every one a similarity: larger = more similar; Su et al. turn a distance d
into 1 / (1 + d), a decreasing map, so Spearman's rho is that of -d). Su et al.'s definitions are
those of thunlp/Prompt-Transferability `caculate_metric_value_for_correlation.py`:

  average_tokens_cosine     cos(mean_i a_i, mean_j b_j)                     SPoT (Vu et al.), retrieval.py
  per_token_cosine          1/(L_a L_b) sum_ij cos(a_i, b_j)                SPoT = Su CosineSimilarity_per_token
  concat_cosine             cos(vec a, vec b), prompts flattened to [L d]   Su CosineSimilarity
  average_tokens_euclidean  1 / (1 + |mean_i a_i - mean_j b_j|)             Euclidean twin of SPoT's first
  per_token_euclidean       1 / (1 + 1/(L_a L_b) sum_ij |a_i - b_j|)        Su EuclideanDistances_per_token
  concat_euclidean          1 / (1 + |vec a - vec b|)                       Su EuclideanDistances

`concat_*` compare token i with token i (aligned tokens); `per_token_*` average over all pairs.

Activated-neuron overlap (ON), as Su et al.'s code computes it for T5 (`activate_neuron_T5.py`,
`prompt_hub/hub.py: activated_neuron`): the prompt followed by one token goes through the frozen
model; at the first decoder step (the position that emits the answer) each decoder layer's
feed-forward hidden is read; a neuron is active where its hidden is > 0 (Su et al. threshold the
`wi` output at 0, i.e. relu(x W_i) > 0; for T5 1.1 the hidden is gelu(x W_i0) * (x W_i1)). ON is the
cosine of the binary activation vectors, |A n B| / sqrt(|A| |B|), in [0, 1], over all layers or a
window of 3 layers (Su et al. report both). `stack="encoder"` reads the encoder's FFN at the token
right after the prompt instead (their commented-out encoder variant). The projections are read with
flax's `capture_intermediates` (outputs of `wi`, or `wi_0` and `wi_1`), so the model is not changed.

The token after the prompt is T5's sentinel `<extra_id_0>`, as in Su et al.'s formatter
(`formatter/activate_neuronPromptT5Formatter.py`: `prompt + tokenizer.encode("<extra_id_0>",
add_special_tokens=False)`, no EOS), when the vocabulary has sentinels (`on_input(vocab)`; T5's has:
id 32099); a vocabulary without them (the quickstart's tiny one) gets EOS instead. Which one was used
travels with the states (`ActivationStates.on_input`) into the correlation rows and their table.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial.distance

from spot_jax import fileio
from spot_jax.data import vocab as vocab_lib
from spot_jax.data.vocab import EOS_ID, PAD_ID
from spot_jax.models import t5
from spot_jax.models.prompt import PromptShapeError
from spot_jax.spot import retrieval, transferability

# ----------------------------------------------------------------------------- embedding indicators


@dataclasses.dataclass(frozen=True)
class Indicator:
  """A named similarity of two prompts [L, d] -> float."""

  fn: Callable[[np.ndarray, np.ndarray], float]
  higher_is_more_similar: bool
  source: str

  def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
    return self.fn(a, b)


def _f64(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float64)


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
  if np.shape(a) != np.shape(b):
    raise PromptShapeError(f"{what} compares token i with token i, so both prompts need one shape; got "
                           f"{np.shape(a)} and {np.shape(b)}. Use a per_token_* or average_tokens_* indicator.")


def _similarity_from_distance(distance: float) -> float:
  """Su et al.'s map of a distance to a similarity in (0, 1]."""
  return float(1.0 / (1.0 + distance))


def concat_cosine(a: np.ndarray, b: np.ndarray) -> float:
  """cos(vec a, vec b) of two prompts [L, d] flattened to [L*d] (Su et al.'s cosine)."""
  _same_shape(a, b, "concat_cosine")
  x, y = _f64(a).ravel(), _f64(b).ravel()
  return float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-12))


def concat_euclidean(a: np.ndarray, b: np.ndarray) -> float:
  """1 / (1 + |vec a - vec b|) of two prompts [L, d] (Su et al.'s Euclidean similarity)."""
  _same_shape(a, b, "concat_euclidean")
  return _similarity_from_distance(np.linalg.norm(_f64(a) - _f64(b)))


def average_tokens_euclidean(a: np.ndarray, b: np.ndarray) -> float:
  """1 / (1 + |mean_i a_i - mean_j b_j|) of prompts [L_a, d], [L_b, d]."""
  return _similarity_from_distance(np.linalg.norm(_f64(a).mean(0) - _f64(b).mean(0)))


def per_token_euclidean(a: np.ndarray, b: np.ndarray) -> float:
  """1 / (1 + mean over all token pairs of |a_i - b_j|) of prompts [L_a, d], [L_b, d] (Su et al.)."""
  return _similarity_from_distance(scipy.spatial.distance.cdist(_f64(a), _f64(b)).mean())  # [L_a, L_b]


_SU = "Su et al. 2022 (thunlp/Prompt-Transferability)"
INDICATORS: dict[str, Indicator] = {
    "average_tokens_cosine": Indicator(retrieval.average_tokens_cosine, True, "Vu et al. 2022 (SPoT)"),
    "per_token_cosine": Indicator(retrieval.per_token_cosine, True, f"Vu et al. 2022 (SPoT); {_SU}"),
    "concat_cosine": Indicator(concat_cosine, True, _SU),
    "average_tokens_euclidean": Indicator(average_tokens_euclidean, True, "Euclidean twin of SPoT's average tokens"),
    "per_token_euclidean": Indicator(per_token_euclidean, True, _SU),
    "concat_euclidean": Indicator(concat_euclidean, True, _SU),
}


def indicator(name: str) -> Indicator:
  if name not in INDICATORS:
    raise ValueError(f"Unknown indicator {name!r}; choose one of {sorted(INDICATORS)}.")
  return INDICATORS[name]


# ----------------------------------------------------------------------------- activated neurons (ON)

ON_STACKS = ("decoder", "encoder")
ON_THRESHOLD = 0.0  # a neuron is active where its feed-forward hidden is > 0 (Su et al.)
SENTINEL_PIECE = "<extra_id_0>"
EOS_PIECE = "</s>"


@dataclasses.dataclass(frozen=True)
class OnInput:
  """The one token fed after the prompt when reading activated neurons: its id and its piece."""

  token_id: int
  piece: str  # SENTINEL_PIECE (Su et al.'s input) or EOS_PIECE (the fallback)


def on_input(vocab: Optional[vocab_lib.SentencePieceVocab] = None) -> OnInput:
  """`<extra_id_0>` when `vocab` has T5's sentinels (Su et al.'s input), else EOS (also with no vocab)."""
  sentinel = vocab.sentinel_id(0) if vocab is not None else None
  return OnInput(EOS_ID, EOS_PIECE) if sentinel is None else OnInput(int(sentinel), SENTINEL_PIECE)


class ActivationStates(dict):
  """prompt name -> bool [layers, d_ff] (what `activation_states` returns), plus `on_input`: the token
  that followed each prompt, and `stack`: the stack that was read."""

  def __init__(self, states: Mapping[str, np.ndarray], on_input: OnInput, stack: str):
    super().__init__(states)
    self.on_input = on_input
    self.stack = stack


def _is_ffn_input_projection(module: nn.Module, method: str) -> bool:
  """capture_intermediates filter: outputs of the FFN's input projections (wi, or wi_0 and wi_1)."""
  return method == "__call__" and module.name in ("wi", "wi_0", "wi_1")


def _ffn_hidden(cfg: t5.T5Config, mlp: dict) -> jax.Array:
  """The hidden MlpBlock feeds to `wo`, from its captured projections: [B, len, d_ff]."""
  if cfg.is_gated:
    gate, linear = mlp["wi_0"]["__call__"][0], mlp["wi_1"]["__call__"][0]
    return nn.gelu(gate, approximate=True) * linear  # as t5.MlpBlock (HF "gelu_new")
  return nn.relu(mlp["wi"]["__call__"][0])


def _analysis_model(cfg: t5.T5Config, params: dict) -> tuple[t5.T5Config, dict]:
  """Per-layer params, no remat: inference only, and one capture per named layer."""
  if cfg.scan_layers:
    params = t5.unscan_params(params, cfg)
  return cfg.replace(scan_layers=False, remat_policy="none"), params


@functools.lru_cache(maxsize=16)
def _hidden_fn(cfg: t5.T5Config, stack: str) -> Callable[[dict, jax.Array, jax.Array], jax.Array]:
  """Cached, jitted (params, prompt [P, d], token [1, 1]) -> FFN hidden at the reading position of
  each layer [layers, d_ff]; the encoder input is [prompt; token]."""
  model = t5.T5(cfg)
  num_layers = cfg.num_decoder_layers if stack == "decoder" else cfg.num_encoder_layers

  def run(params: dict, prompt: jax.Array, tokens: jax.Array) -> jax.Array:
    kwargs = dict(prefix_embeddings=prompt, capture_intermediates=_is_ffn_input_projection,
                  mutable=["intermediates"])
    if stack == "decoder":
      _, state = model.apply({"params": params}, tokens, jnp.full((1, 1), PAD_ID, jnp.int32), **kwargs)
      position = 0  # first decoder step: the answer's first token
    else:
      _, state = model.apply({"params": params}, tokens, method=t5.T5.encode, **kwargs)
      position = prompt.shape[0]  # the token right after the prompt
    layers = state["intermediates"][stack]
    return jnp.stack([_ffn_hidden(cfg, layers[f"layers_{i}"]["mlp"])[0, position].astype(jnp.float32)
                      for i in range(num_layers)])

  return jax.jit(run)


def ffn_hidden(cfg: t5.T5Config, params: dict, prompts: Mapping[str, np.ndarray],
               stack: str = "decoder", *, input_token: int = EOS_ID) -> dict[str, np.ndarray]:
  """Each prompt [P, d_model] followed by the one token `input_token` (encoder input [prompt; token];
  `on_input(vocab).token_id` gives Su et al.'s `<extra_id_0>`) through the frozen T5 -> the
  feed-forward hidden of every layer of `stack` at its reading position, [layers, d_ff] float32
  (see module docstring)."""
  if stack not in ON_STACKS:
    raise ValueError(f"Unknown stack {stack!r}; choose one of {ON_STACKS}.")
  if not 0 <= int(input_token) < cfg.vocab_size:
    raise ValueError(f"Input token {input_token} is outside this model's vocabulary of {cfg.vocab_size} ids: "
                     "pass the vocabulary the model was trained with.")
  tokens = jnp.full((1, 1), int(input_token), jnp.int32)
  cfg, params = _analysis_model(cfg, params)
  run = _hidden_fn(cfg, stack)
  out = {}
  for name, prompt in prompts.items():
    if np.ndim(prompt) != 2 or np.shape(prompt)[1] != cfg.d_model:
      raise PromptShapeError(f"Prompt {name!r} has shape {np.shape(prompt)}; expected [prompt_length, "
                             f"{cfg.d_model}] for this model.")
    out[name] = np.asarray(run(params, jnp.asarray(prompt, jnp.float32), tokens))
  return out


def activation_states(cfg: t5.T5Config, params: dict, prompts: Mapping[str, np.ndarray],
                      stack: str = "decoder", *, vocab: Optional[vocab_lib.SentencePieceVocab] = None
                      ) -> ActivationStates:
  """Which feed-forward neurons each prompt activates: bool [layers, d_ff] (hidden > ON_THRESHOLD).

  Pass the model's `vocab`: the prompt is then followed by `<extra_id_0>` as in Su et al. when the
  vocabulary has sentinels, by EOS otherwise (and without a vocab); `.on_input` of the result says which.
  """
  token = on_input(vocab)
  hidden = ffn_hidden(cfg, params, prompts, stack, input_token=token.token_id)
  return ActivationStates({name: h > ON_THRESHOLD for name, h in hidden.items()}, token, stack)


def neuron_overlap(states_a: np.ndarray, states_b: np.ndarray, layers: Optional[Sequence[int]] = None) -> float:
  """ON: cosine of two binary activation vectors [layers, d_ff] over `layers` (all if None), in [0, 1].

  For 0/1 vectors the cosine is |A n B| / sqrt(|A| |B|); it is 0 when either prompt activates nothing.
  """
  if np.shape(states_a) != np.shape(states_b):
    raise ValueError(f"Activation states of different shapes {np.shape(states_a)} and {np.shape(states_b)}: "
                     "compute both with the same model and stack.")
  a, b = np.asarray(states_a, bool), np.asarray(states_b, bool)
  if layers is not None:
    a, b = a[list(layers)], b[list(layers)]
  both, count_a, count_b = np.sum(a & b), np.sum(a), np.sum(b)
  return float(both / np.sqrt(count_a * count_b)) if count_a and count_b else 0.0


def layer_windows(num_layers: int, size: int = 3) -> list[tuple[int, ...]]:
  """Consecutive windows of `size` layers (the last one may be shorter), as Su et al.'s per-layer ON."""
  if size < 1:
    raise ValueError(f"Window size must be >= 1; got {size}.")
  return [tuple(range(start, min(start + size, num_layers))) for start in range(0, num_layers, size)]


def overlap_indicators(num_layers: int, window: Optional[int] = 3) -> dict[str, Optional[tuple[int, ...]]]:
  """Names of the ON indicators -> layers they use: 'neuron_overlap' (all) + one per window."""
  names: dict[str, Optional[tuple[int, ...]]] = {"neuron_overlap": None}
  if window:
    for layers in layer_windows(num_layers, window):
      names[f"neuron_overlap_layers_{layers[0]}-{layers[-1]}"] = layers
  return names


# ----------------------------------------------------------------------------- correlation with transfer


@dataclasses.dataclass(frozen=True)
class CorrelationRow:
  indicator: str
  pearson_r: float
  pearson_p: float
  spearman_rho: float
  spearman_p: float
  n: int
  on_input: str = ""  # ON rows: the token after the prompt ('<extra_id_0>' or '</s>'); "" otherwise


def grid_pairs(transfer: Mapping[tuple[str, str], float], exclude_self: bool = True) -> list[tuple[str, str]]:
  """(source, target) cells with a finite transfer value, sorted; source == target left out if asked."""
  return sorted(pair for pair, value in transfer.items()
                if np.isfinite(value) and not (exclude_self and pair[0] == pair[1]))


def _on_input_of(activations: Optional[Mapping[str, np.ndarray]],
                 target_activations: Optional[Mapping[str, np.ndarray]] = None) -> str:
  """The piece that followed the prompts of `activations` ("" when not recorded: a plain dict);
  refuses sources and targets read with different tokens (their ONs would not be comparable)."""
  pieces = [a.on_input.piece for a in (activations, target_activations) if isinstance(a, ActivationStates)]
  if len(set(pieces)) > 1:
    raise ValueError(f"Source activation states were read with {pieces[0]} after the prompt, target ones with "
                     f"{pieces[1]}: compute both with the same vocabulary.")
  return pieces[0] if pieces else ""


def _require(names: Sequence[str], available: Mapping[str, np.ndarray], what: str) -> None:
  missing = sorted(set(names) - set(available))
  if missing:
    raise ValueError(f"No {what} for {missing}; the transfer grid needs one for every source and target "
                     f"(have {sorted(available)}).")


def indicator_values(prompts: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str]], *,
                     target_prompts: Optional[Mapping[str, np.ndarray]] = None,
                     activations: Optional[Mapping[str, np.ndarray]] = None,
                     target_activations: Optional[Mapping[str, np.ndarray]] = None,
                     indicators: Optional[Sequence[str]] = None, window: Optional[int] = 3
                     ) -> dict[str, list[float]]:
  """indicator name -> its similarity(source, target) for each pair, in `pairs` order.

  Sources are looked up in `prompts` / `activations`; targets in `target_prompts` /
  `target_activations` (default: the same dicts), e.g. the targets' task embeddings. ON rows appear
  only when `activations` (from `activation_states`) are given.
  """
  target_prompts = prompts if target_prompts is None else target_prompts
  _require([s for s, _ in pairs], prompts, "source prompt")
  _require([t for _, t in pairs], target_prompts, "target prompt")
  values = {name: [indicator(name)(prompts[s], target_prompts[t]) for s, t in pairs]
            for name in (indicators or INDICATORS)}
  if activations is not None:
    target_activations = activations if target_activations is None else target_activations
    _on_input_of(activations, target_activations)
    _require([s for s, _ in pairs], activations, "source activation states")
    _require([t for _, t in pairs], target_activations, "target activation states")
    num_layers = np.shape(next(iter(activations.values())))[0]
    for name, layers in overlap_indicators(num_layers, window).items():
      values[name] = [neuron_overlap(activations[s], target_activations[t], layers) for s, t in pairs]
  return values


def indicator_correlations(prompts: Mapping[str, np.ndarray], transfer: Mapping[tuple[str, str], float], *,
                           exclude_self: bool = True, **indicator_kwargs) -> list[CorrelationRow]:
  """One row per indicator: Pearson r, p, Spearman rho, p and n over the grid's finite cells.

  `transfer` maps (source, target) to the measured transfer (score or relative error reduction;
  NaN cells are skipped). Keyword arguments go to `indicator_values`. Correlations are NaN where
  undefined (fewer than 3 cells, or a constant indicator or transfer). ON rows carry the token that
  followed the prompts (`on_input`) when the activations came from `activation_states`.
  """
  pairs = grid_pairs(transfer, exclude_self)
  transfers = [float(transfer[p]) for p in pairs]
  piece = _on_input_of(indicator_kwargs.get("activations"), indicator_kwargs.get("target_activations"))
  rows = []
  for name, sims in indicator_values(prompts, pairs, **indicator_kwargs).items():
    stats = transferability.correlation(sims, transfers) if len(pairs) > 2 else {}
    rows.append(CorrelationRow(name, stats.get("pearson_r", np.nan), stats.get("pearson_p", np.nan),
                               stats.get("spearman_rho", np.nan), stats.get("spearman_p", np.nan), len(pairs),
                               piece if name.startswith("neuron_overlap") else ""))
  return rows


def format_correlations(rows: Sequence[CorrelationRow]) -> str:
  """The rows as a table; when ON rows are there, a last line says which token followed the prompts."""
  width = max([len("indicator")] + [len(r.indicator) for r in rows])
  lines = [f"{'indicator':<{width}} {'pearson r':>9} {'p':>9} {'spearman':>9} {'p':>9} {'n':>4}"]
  lines += [f"{r.indicator:<{width}} {r.pearson_r:>+9.3f} {r.pearson_p:>9.2g} {r.spearman_rho:>+9.3f} "
            f"{r.spearman_p:>9.2g} {r.n:>4d}" for r in rows]
  pieces = sorted({r.on_input for r in rows if r.on_input})
  if pieces:
    why = "Su et al.'s input" if pieces == [SENTINEL_PIECE] else "the vocabulary has no sentinel <extra_id_0>"
    lines.append(f"neuron_overlap*: activated neurons of the prompt followed by {', '.join(pieces)} ({why})")
  return "\n".join(lines)


def write_correlations(path_stem: str, rows: Sequence[CorrelationRow]) -> tuple[str, str]:
  """Writes `<stem>.csv` and `<stem>.txt` (the formatted table); returns both paths."""
  fileio.write_csv(
      path_stem + ".csv", ["indicator", "pearson_r", "pearson_p", "spearman_rho", "spearman_p", "n", "on_input"],
      [[r.indicator, f"{r.pearson_r:.6f}", f"{r.pearson_p:.6g}", f"{r.spearman_rho:.6f}",
        f"{r.spearman_p:.6g}", r.n, r.on_input] for r in rows])
  fileio.atomic_write(path_stem + ".txt", format_correlations(rows) + "\n")
  return path_stem + ".csv", path_stem + ".txt"
