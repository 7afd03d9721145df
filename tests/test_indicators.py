"""Su et al.'s transferability indicators: embedding similarities against scipy, the captured
feed-forward hiddens against a by-hand recomputation and against hooks on Hugging Face's PyTorch T5
(Su et al.'s own way of reading them), ON's input (prompt + `<extra_id_0>` when the vocabulary has
sentinels, else EOS, and the output says which), ON's properties, and the correlation table against
scipy."""

import csv

import jax
import numpy as np
import pytest
import scipy.spatial.distance as sd
import scipy.stats
import torch

from spot_jax.checkpoints import hf
from spot_jax.data import vocab as vocab_lib
from spot_jax.models import t5
from spot_jax.models.prompt import PromptShapeError
from spot_jax.spot import indicators as ind
from spot_jax.spot import retrieval
from tests import hf_reference
from tests import train_fixtures as fx

# ----------------------------------------------------------------------------- embedding indicators


def _prompts(seed=0, shapes=((5, 8), (5, 8))):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=s) for s in shapes]


def test_embedding_indicators_match_scipy():
  a, b = _prompts()
  expected = {
      "average_tokens_cosine": 1 - sd.cosine(a.mean(0), b.mean(0)),
      "per_token_cosine": np.mean(1 - sd.cdist(a, b, "cosine")),
      "concat_cosine": 1 - sd.cosine(a.ravel(), b.ravel()),
      "average_tokens_euclidean": 1 / (1 + sd.euclidean(a.mean(0), b.mean(0))),
      "per_token_euclidean": 1 / (1 + np.mean([[sd.euclidean(x, y) for y in b] for x in a])),
      "concat_euclidean": 1 / (1 + sd.euclidean(a.ravel(), b.ravel())),
  }
  assert set(ind.INDICATORS) == set(expected)
  for name, value in expected.items():
    assert ind.INDICATORS[name](a, b) == pytest.approx(value, rel=1e-9), name


def test_per_token_and_average_indicators_take_prompts_of_different_lengths():
  a, b = _prompts(1, ((3, 8), (7, 8)))
  assert ind.per_token_euclidean(a, b) == pytest.approx(1 / (1 + sd.cdist(a, b).mean()))
  assert ind.average_tokens_euclidean(a, b) == pytest.approx(1 / (1 + sd.euclidean(a.mean(0), b.mean(0))))
  with pytest.raises(PromptShapeError, match="concat_cosine compares token i with token i"):
    ind.concat_cosine(a, b)


def test_spot_measures_are_reused_and_every_indicator_is_a_similarity():
  assert ind.INDICATORS["average_tokens_cosine"].fn is retrieval.average_tokens_cosine
  assert ind.INDICATORS["per_token_cosine"].fn is retrieval.per_token_cosine
  a, b = _prompts(2)
  for name, indicator in ind.INDICATORS.items():
    assert indicator.higher_is_more_similar, name
    # Larger = more similar: a prompt is at least as similar to itself as to another prompt. (Per-token
    # measures average over all pairs, so a single-token prompt is used for them.)
    x, y = (a[:1], b[:1]) if name.startswith("per_token") else (a, b)
    assert indicator(x, x) == pytest.approx(1.0) and indicator(x, y) < 1.0, name
  with pytest.raises(ValueError, match="Unknown indicator 'cos'"):
    ind.indicator("cos")


# ----------------------------------------------------------------------------- activated neurons


@pytest.fixture(scope="module")
def tiny():
  cfg = t5.get_config("tiny", vocab_size=64, num_encoder_layers=2, num_decoder_layers=3)
  return cfg, fx.random_params(cfg, scale_std=0.3)


def _random_prompts(cfg, n=3, length=3, seed=0):
  rng = np.random.default_rng(seed)
  return {f"p{i}": rng.uniform(-0.5, 0.5, size=(length, cfg.d_model)).astype(np.float32) for i in range(n)}


def _rms(x, scale, eps):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * scale


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _encoder_layer0_hidden(cfg, params, prompt, token=1):
  """Encoder layer 0's FFN hidden [S, d_ff] for input [prompt; token], written out from the params.
  Sequences here are shorter than 8, where T5's bidirectional buckets are exact: k - q > 0 ->
  16 + (k - q), else q - k (32 buckets, 16 per direction)."""
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  enc, layer = p["encoder"], p["encoder"]["layers_0"]
  x = np.concatenate([prompt, p["token_embedder"][[token]]], 0)  # [S, d]
  s, heads, d_kv = x.shape[0], cfg.num_heads, cfg.d_kv
  rel = np.arange(s)[None, :] - np.arange(s)[:, None]  # key - query
  bias = enc["relpos_bias"]["rel_embedding"][:, np.where(rel > 0, 16 + rel, -rel)]  # [H, q, k]
  h = _rms(x, layer["pre_attention_layer_norm"]["scale"], cfg.layer_norm_epsilon)
  att = layer["attention"]
  q, k, v = (h @ att[n]["kernel"] for n in ("query", "key", "value"))
  q, k, v = (z.reshape(s, heads, d_kv) for z in (q, k, v))
  scores = np.einsum("qhd,khd->hqk", q, k) + bias
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum("hqk,khd->qhd", weights, v).reshape(s, heads * d_kv) @ att["out"]["kernel"]
  h = _rms(x + out, layer["pre_mlp_layer_norm"]["scale"], cfg.layer_norm_epsilon)
  mlp = layer["mlp"]
  return _gelu_tanh(h @ mlp["wi_0"]["kernel"]) * (h @ mlp["wi_1"]["kernel"])


def test_captured_hidden_matches_layer0_by_hand(tiny):
  cfg, params = tiny
  prompt = _random_prompts(cfg, n=1)["p0"]
  captured = ind.ffn_hidden(cfg, params, {"p": prompt}, stack="encoder")["p"]
  assert captured.shape == (cfg.num_encoder_layers, cfg.d_ff)
  by_hand = _encoder_layer0_hidden(cfg, params, prompt.astype(np.float64))[prompt.shape[0]]  # the EOS
  np.testing.assert_allclose(captured[0], by_hand, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def vocabs(tmp_path_factory):
  """(a vocabulary with T5's sentinels (3 extra ids), the same one without), both under the tiny model's 64."""
  lines = [f"the {w} sat on mat number {i}" for i, w in enumerate(["cat", "dog", "fox", "owl"] * 60)]
  path = vocab_lib.train_sentencepiece(lines, str(tmp_path_factory.mktemp("spm") / "tiny"), 40)
  with_sentinels = vocab_lib.SentencePieceVocab(path, extra_ids=3)
  assert with_sentinels.vocab_size < 64
  return with_sentinels, vocab_lib.SentencePieceVocab(path)


def test_sentinel_ids_follow_t5s_layout(vocabs):
  with_sentinels, plain = vocabs
  last = with_sentinels.vocab_size - 1
  assert [with_sentinels.sentinel_id(i) for i in range(4)] == [last, last - 1, last - 2, None]
  assert with_sentinels.id_to_piece(with_sentinels.sentinel_id(0)) == "<extra_id_0>"
  assert plain.sentinel_id(0) is None
  with pytest.raises(ValueError, match="Sentinel index must be >= 0"):
    plain.sentinel_id(-1)
  assert ind.on_input(with_sentinels) == ind.OnInput(last, "<extra_id_0>")
  assert ind.on_input(plain) == ind.on_input(None) == ind.OnInput(1, "</s>")
  # Jobs build the vocabulary from config.model: T5's experiment configs give it T5's 100 sentinels.
  from spot_jax import configs, jobs
  model = configs.base_config().model
  model.vocab_path = with_sentinels.model_path
  assert jobs.load_vocab(model).sentinel_id(0) is None
  configs.set_backbone(model_config := configs.base_config(), "base")
  model.extra_ids = model_config.model.extra_ids
  assert jobs.load_vocab(model).sentinel_id(0) == plain.vocab_size + 99


def test_on_input_is_the_prompt_then_the_sentinel_when_the_vocab_has_one(tiny, vocabs):
  cfg, params = tiny
  with_sentinels, plain = vocabs
  prompt = _random_prompts(cfg, n=1, seed=5)["p0"]
  sentinel = with_sentinels.sentinel_id(0)
  hidden = ind.ffn_hidden(cfg, params, {"p": prompt}, stack="encoder", input_token=sentinel)["p"]
  by_hand = _encoder_layer0_hidden(cfg, params, prompt.astype(np.float64), token=sentinel)
  np.testing.assert_allclose(hidden[0], by_hand[prompt.shape[0]], rtol=1e-4, atol=1e-5)  # [prompt; sentinel]
  eos = ind.ffn_hidden(cfg, params, {"p": prompt}, stack="encoder")["p"]
  assert not np.allclose(hidden, eos)
  for stack in ind.ON_STACKS:
    states = ind.activation_states(cfg, params, {"p": prompt}, stack, vocab=with_sentinels)
    assert states.on_input == ind.OnInput(sentinel, "<extra_id_0>") and states.stack == stack
    expected = ind.ffn_hidden(cfg, params, {"p": prompt}, stack, input_token=sentinel)["p"] > 0
    np.testing.assert_array_equal(states["p"], expected)
    fallback = ind.activation_states(cfg, params, {"p": prompt}, stack, vocab=plain)
    assert fallback.on_input == ind.OnInput(1, "</s>")
    np.testing.assert_array_equal(fallback["p"], ind.ffn_hidden(cfg, params, {"p": prompt}, stack)["p"] > 0)
  with pytest.raises(ValueError, match="outside this model's vocabulary of 64 ids"):
    ind.ffn_hidden(cfg, params, {"p": prompt}, input_token=64)


def test_correlation_rows_and_table_say_which_input_on_used(tiny, vocabs, tmp_path):
  cfg, params = tiny
  with_sentinels, plain = vocabs
  prompts = _random_prompts(cfg, n=4, seed=7)
  names = sorted(prompts)
  transfer = {(s, t): float(i) for i, (s, t) in enumerate((s, t) for s in names for t in names)}
  for vocab, piece, why in [(with_sentinels, "<extra_id_0>", "Su et al.'s input"),
                            (plain, "</s>", "the vocabulary has no sentinel")]:
    states = ind.activation_states(cfg, params, prompts, vocab=vocab)
    rows = ind.indicator_correlations(prompts, transfer, activations=states, window=None)
    assert {r.indicator: r.on_input for r in rows if r.on_input} == {"neuron_overlap": piece}
    assert all(r.on_input == "" for r in rows if r.indicator in ind.INDICATORS)
    last = ind.format_correlations(rows).splitlines()[-1]
    assert last.startswith("neuron_overlap*: activated neurons of the prompt followed by " + piece) and why in last
    csv_path, _ = ind.write_correlations(str(tmp_path / piece.strip("<>/")), rows)
    with open(csv_path) as f:
      assert {r["indicator"]: r["on_input"] for r in csv.DictReader(f)}["neuron_overlap"] == piece
  sentinel_states = ind.activation_states(cfg, params, prompts, vocab=with_sentinels)
  eos_states = ind.activation_states(cfg, params, prompts, vocab=plain)
  with pytest.raises(ValueError, match="read with <extra_id_0> after the prompt, target ones with </s>"):
    ind.indicator_correlations(prompts, transfer, activations=sentinel_states, target_activations=eos_states)
  plain_rows = ind.indicator_correlations(prompts, transfer, activations=dict(eos_states))  # not recorded
  assert all(r.on_input == "" for r in plain_rows) and "neuron_overlap*" not in ind.format_correlations(plain_rows)


def test_capture_leaves_the_params_untouched(tiny):
  cfg, params = tiny
  before, structure = jax.tree.map(np.array, params), jax.tree.structure(params)
  prompt = _random_prompts(cfg, n=1)["p0"]
  first = ind.ffn_hidden(cfg, params, {"p": prompt})["p"]
  assert jax.tree.structure(params) == structure  # no collection (e.g. flax's 'intermediates') added to the dict
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))
  np.testing.assert_array_equal(ind.ffn_hidden(cfg, params, {"p": prompt})["p"], first)  # nothing carried over


@pytest.fixture(scope="module", params=["t5_1_1", "t5"])
def hf_model(request, tmp_path_factory):
  model = hf_reference.build_t5(request.param)
  path = str(tmp_path_factory.mktemp(request.param))
  model.save_pretrained(path)
  cfg, params = hf.load_hf_t5(path)
  return model, cfg, params


def _hf_hiddens(model, prompt, stack, token=1):
  """Su et al.'s reading, on HF's T5: forward hooks on every FFN of `stack`; input = prompt + token
  (their formatter: `<extra_id_0>`), decoder input = the start token. Returns (hidden fed to wo,
  output of wi or None) per layer."""
  blocks = model.decoder.block if stack == "decoder" else model.encoder.block
  hidden, wi_out, hooks = [], [], []
  for block in blocks:
    ffn = block.layer[-1].DenseReluDense
    hooks.append(ffn.wo.register_forward_pre_hook(lambda m, args: hidden.append(args[0][0].numpy())))
    if hasattr(ffn, "wi"):
      hooks.append(ffn.wi.register_forward_hook(lambda m, args, out: wi_out.append(out[0].numpy())))
  embeds = torch.cat([torch.tensor(prompt)[None], model.shared.weight[[token]][None]], 1)
  with torch.no_grad():
    model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
          decoder_input_ids=torch.zeros((1, 1), dtype=torch.long))
  for hook in hooks:
    hook.remove()
  position = 0 if stack == "decoder" else prompt.shape[0]
  return np.stack([h[position] for h in hidden]), (np.stack([w[position] for w in wi_out]) if wi_out else None)


@pytest.mark.parametrize("last_id", [False, True], ids=["eos", "sentinel"])
@pytest.mark.parametrize("stack", ind.ON_STACKS)
def test_hidden_and_states_match_hooks_on_huggingface_t5(hf_model, stack, last_id):
  model, cfg, params = hf_model
  token = cfg.vocab_size - 1 if last_id else 1  # the last id stands in for <extra_id_0> (32099 of T5's 32100)
  prompt = _random_prompts(cfg, n=1, length=4, seed=3)["p0"]
  ours = ind.ffn_hidden(cfg, params, {"p": prompt}, stack, input_token=token)["p"]
  theirs, wi_out = _hf_hiddens(model, prompt, stack, token)
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  states = ind.ffn_hidden(cfg, params, {"p": prompt}, stack, input_token=token)["p"] > ind.ON_THRESHOLD
  active = np.abs(theirs) > 1e-4  # skip neurons on the threshold, where float noise decides
  np.testing.assert_array_equal(states[active], theirs[active] > 0)
  if wi_out is not None:  # ReLU T5: Su et al. threshold wi's output; same neurons
    np.testing.assert_array_equal(states[active], wi_out[active] > 0)


def _cosine01(a, b):
  """Cosine of two 0/1 arrays, by scipy (which needs floats: it reads bools as a boolean metric)."""
  return 1 - sd.cosine(np.ravel(a).astype(float), np.ravel(b).astype(float))


def test_neuron_overlap_by_hand():
  a = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)  # |A| = 3
  b = np.array([[1, 0, 1, 0], [1, 0, 0, 1]], bool)  # |B| = 4, |A n B| = 2
  assert ind.neuron_overlap(a, b) == pytest.approx(2 / np.sqrt(12))
  assert ind.neuron_overlap(a, b) == pytest.approx(_cosine01(a, b))
  assert ind.neuron_overlap(a, b, layers=[1]) == pytest.approx(1 / np.sqrt(2))
  assert ind.neuron_overlap(a, np.zeros_like(b)) == 0.0
  with pytest.raises(ValueError, match="different shapes"):
    ind.neuron_overlap(a, b[:1])


@pytest.mark.parametrize("stack", ind.ON_STACKS)
def test_neuron_overlap_properties_on_tiny_model(tiny, stack):
  cfg, params = tiny
  states = ind.activation_states(cfg, params, _random_prompts(cfg), stack)
  layers = cfg.num_decoder_layers if stack == "decoder" else cfg.num_encoder_layers
  assert all(s.shape == (layers, cfg.d_ff) and s.dtype == bool for s in states.values())
  assert all(0 < s.mean() < 1 for s in states.values())  # some neurons on, some off
  for x in states.values():
    assert ind.neuron_overlap(x, x) == pytest.approx(1.0)
    for y in states.values():
      on = ind.neuron_overlap(x, y)
      assert 0.0 <= on <= 1.0 + 1e-12
      assert on == pytest.approx(ind.neuron_overlap(y, x))
  assert ind.neuron_overlap(states["p0"], states["p1"]) < 1.0


def test_scanned_params_give_the_same_states(tiny):
  cfg, params = tiny
  prompts = _random_prompts(cfg, n=2)
  scanned = ind.ffn_hidden(cfg.replace(scan_layers=True), t5.scan_params(params, cfg), prompts)
  for name, hidden in ind.ffn_hidden(cfg, params, prompts).items():
    np.testing.assert_allclose(scanned[name], hidden, atol=1e-6)


def test_wrong_prompt_width_and_stack_are_refused(tiny):
  cfg, params = tiny
  with pytest.raises(PromptShapeError, match=r"expected \[prompt_length, 128\]"):
    ind.ffn_hidden(cfg, params, {"p": np.zeros((3, 64), np.float32)})
  with pytest.raises(ValueError, match="Unknown stack 'middle'"):
    ind.ffn_hidden(cfg, params, {}, stack="middle")


def test_layer_windows():
  assert ind.layer_windows(7, 3) == [(0, 1, 2), (3, 4, 5), (6,)]
  assert list(ind.overlap_indicators(4, 3)) == ["neuron_overlap", "neuron_overlap_layers_0-2",
                                                "neuron_overlap_layers_3-3"]
  assert list(ind.overlap_indicators(4, None)) == ["neuron_overlap"]


# ----------------------------------------------------------------------------- correlation table


def _grid(seed=0):
  rng = np.random.default_rng(seed)
  sources, targets = ["s0", "s1", "s2", "s3", "t0"], ["t0", "t1", "t2"]
  prompts = {name: rng.normal(size=(4, 6)) for name in sources + targets}
  activations = {name: rng.random((4, 16)) > 0.5 for name in prompts}
  transfer = {(s, t): float(rng.normal()) for s in sources for t in targets}
  transfer[("s0", "t1")] = float("nan")  # a cell that was not run
  return prompts, activations, transfer


def test_indicator_correlations_match_scipy(tmp_path):
  prompts, activations, transfer = _grid()
  rows = ind.indicator_correlations(prompts, transfer, activations=activations, window=3)
  pairs = [p for p in sorted(transfer) if np.isfinite(transfer[p]) and p[0] != p[1]]
  assert len(pairs) == 5 * 3 - 2  # NaN cell and the (t0, t0) self-pair left out
  ys = [transfer[p] for p in pairs]
  references = {name: [fn(prompts[s], prompts[t]) for s, t in pairs] for name, fn in ind.INDICATORS.items()}
  for name, layers in [("neuron_overlap", slice(None)), ("neuron_overlap_layers_0-2", slice(0, 3)),
                       ("neuron_overlap_layers_3-3", slice(3, 4))]:
    references[name] = [_cosine01(activations[s][layers], activations[t][layers]) for s, t in pairs]
  assert [r.indicator for r in rows] == list(references)
  for row in rows:
    r, p = scipy.stats.pearsonr(references[row.indicator], ys)
    rho, p_rho = scipy.stats.spearmanr(references[row.indicator], ys)
    assert (row.pearson_r, row.pearson_p, row.spearman_rho, row.spearman_p) == pytest.approx((r, p, rho, p_rho))
    assert row.n == len(pairs)

  csv_path, txt_path = ind.write_correlations(str(tmp_path / "indicators"), rows)
  with open(csv_path) as f:
    written = list(csv.DictReader(f))
  assert [w["indicator"] for w in written] == [r.indicator for r in rows]
  assert float(written[0]["spearman_rho"]) == pytest.approx(rows[0].spearman_rho, abs=1e-6)
  assert open(txt_path).read().splitlines()[0].split()[:3] == ["indicator", "pearson", "r"]


def test_target_task_embeddings_and_missing_prompts():
  prompts, _, transfer = _grid()
  sources = {k: v for k, v in prompts.items() if k.startswith("s")}
  targets = {k: 2 * v for k, v in prompts.items() if k.startswith("t")}  # e.g. the targets' task embeddings
  grid = {(s, t): v for (s, t), v in transfer.items() if s.startswith("s")}
  rows = {r.indicator: r for r in ind.indicator_correlations(sources, grid, target_prompts=targets,
                                                             indicators=["concat_euclidean"])}
  pairs = [p for p in sorted(grid) if np.isfinite(grid[p])]
  xs = [ind.concat_euclidean(sources[s], targets[t]) for s, t in pairs]
  assert rows["concat_euclidean"].pearson_r == pytest.approx(scipy.stats.pearsonr(xs, [grid[p] for p in pairs])[0])
  with pytest.raises(ValueError, match=r"No target prompt for \['t0', 't1', 't2'\]"):
    ind.indicator_correlations(sources, grid)


def test_undefined_correlations_are_nan():
  prompts, _, transfer = _grid()
  constant = {pair: 1.0 for pair in transfer}
  rows = ind.indicator_correlations(prompts, constant, indicators=["concat_cosine"])
  assert np.isnan(rows[0].pearson_r) and np.isnan(rows[0].spearman_p) and rows[0].n == 14
  assert "nan" in ind.format_correlations(rows)
