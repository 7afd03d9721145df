"""The input pipeline: batch format, determinism, exact resume, disjoint per-host shards, mixture rates."""

import json

import numpy as np
import pytest

from spot_jax import configs
from spot_jax.data import mixtures, pipeline, tasks, vocab
from spot_jax.data import preprocessors as pp

WORDS = ("alpha", "beta", "gamma", "delta", "echo", "fox", "golf", "hotel")


def _make(split):
  """Example i of a split: a unique id in words and digits, and a short or long target."""
  n = 37 if split == "train" else 11
  return [{"inputs": f"item {i} {WORDS[i % 8]} {WORDS[(i // 8) % 8]}", "targets": WORDS[i % 8] + (" x" * (i % 3)),
           "label": i % 2} for i in range(n)]


def _expand(ex, ctx):
  """Several outputs per raw example (like RACE questions), to test mid-example resume."""
  del ctx
  return [{"inputs": f"{pp.as_text(ex['inputs'])} part {j}", "targets": pp.as_text(ex["targets"])}
          for j in range(1 + int(ex["label"]) * 2)]


def _sized(n):
  return lambda split: [{"inputs": f"task{n} item {i}", "targets": "yes"} for i in range(n)]


@pytest.fixture(scope="module", autouse=True)
def registered():
  tasks.register_task(tasks.Task("test_pipe_plain", tasks.InMemorySource("plain", _make), pp.passthrough()),
                      overwrite=True)
  tasks.register_task(tasks.Task("test_pipe_expand", tasks.InMemorySource("expand", _make), _expand), overwrite=True)
  for n in (100, 400, 2000):
    tasks.register_task(tasks.Task(f"test_pipe_n{n}", tasks.InMemorySource(f"n{n}", _sized(n)), pp.passthrough()),
                        overwrite=True)
  mixtures.register_mixture(mixtures.Mixture("test_pipe_mix", ("test_pipe_n100", "test_pipe_n400", "test_pipe_n2000"),
                                             cap=1000, temperature=2.0), overwrite=True)
  mixtures.register_mixture(mixtures.Mixture("test_pipe_fixed", ("test_pipe_plain", "test_pipe_expand"), (3.0, 1.0)),
                            overwrite=True)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
  lines = [ex["inputs"] + " " + ex["targets"] + " part task100 task400 task2000 yes" for ex in _make("train")] * 4
  path = vocab.train_sentencepiece(lines, str(tmp_path_factory.mktemp("spm") / "m"), 80)
  return vocab.SentencePieceVocab(path)


def _it(voc, name="test_pipe_plain", **kw):
  args = dict(batch_size=4, input_length=16, target_length=6, seed=3, prefetch=0)
  args.update(kw)
  return pipeline.make_train_iterator(name, voc, **args)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batch_format_follows_t5(voc):
  batch = next(_it(voc, input_length=64, target_length=8))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      "encoder_input_tokens": ((4, 64), np.int32), "decoder_input_tokens": ((4, 8), np.int32),
      "decoder_target_tokens": ((4, 8), np.int32), "decoder_loss_weights": ((4, 8), np.float32)}
  for row in range(4):
    enc, tgt = batch["encoder_input_tokens"][row], batch["decoder_target_tokens"][row]
    n_in, n_tgt = int((enc > 0).sum()), int((tgt > 0).sum())
    assert enc[n_in - 1] == vocab.EOS_ID and not enc[n_in:].any()  # ids, EOS, then padding
    assert tgt[n_tgt - 1] == vocab.EOS_ID and not tgt[n_tgt:].any()
    np.testing.assert_array_equal(batch["decoder_loss_weights"][row], (np.arange(8) < n_tgt).astype(np.float32))
    np.testing.assert_array_equal(batch["decoder_input_tokens"][row], np.concatenate([[0], tgt[:-1]]))
    assert voc.decode(enc).startswith("item ")


def test_truncation_keeps_eos_and_is_counted(voc):
  it = _it(voc, input_length=3, target_length=2)
  batches = _take(it, 5)
  for b in batches:
    assert (b["encoder_input_tokens"][:, -1] == vocab.EOS_ID).all()  # every input is longer than 2 ids
    assert (b["decoder_target_tokens"][:, -1] == vocab.EOS_ID).all()
  t = it.truncation
  assert t["examples"] == 20 and t["inputs_truncated"] == 20
  assert 0 < t["targets_truncated"] <= 20 and t["input_tokens_dropped"] > 20
  assert _it(voc, input_length=64, target_length=16).truncation["inputs_truncated"] == 0


def test_same_seed_same_batches_other_seed_other_order(voc):
  _assert_batches_equal(_take(_it(voc), 12), _take(_it(voc, prefetch=2), 12))
  a = np.concatenate([b["encoder_input_tokens"] for b in _take(_it(voc), 9)])
  b = np.concatenate([b["encoder_input_tokens"] for b in _take(_it(voc, seed=4), 9)])
  assert not np.array_equal(a, b)


@pytest.mark.parametrize("name,prefetch", [("test_pipe_plain", 0), ("test_pipe_expand", 2), ("test_pipe_fixed", 2)])
def test_restored_iterator_continues_with_identical_batches(voc, name, prefetch):
  original = _it(voc, name, prefetch=prefetch)
  _take(original, 7)  # crosses an epoch boundary (37 raw examples, batch 4) and, for expand, raw examples
  state = json.loads(json.dumps(original.get_state()))  # what a checkpoint stores
  expected = _take(original, 15)
  restored = _it(voc, name, prefetch=prefetch)
  _take(restored, 2)  # a restored iterator may have moved already: set_state must override that
  restored.set_state(state)
  _assert_batches_equal(_take(restored, 15), expected)
  assert restored.truncation == original.truncation
  original.close()
  restored.close()


def test_state_of_a_fresh_iterator_restores_to_the_start(voc):
  it = _it(voc, "test_pipe_expand")
  state = it.get_state()
  first = _take(it, 3)
  it.set_state(state)
  _assert_batches_equal(_take(it, 3), first)


def test_state_from_another_setup_is_refused(voc):
  state = _it(voc).get_state()
  with pytest.raises(ValueError, match="batch_size"):
    _it(voc, batch_size=8).set_state(state)
  with pytest.raises(ValueError, match="tasks"):
    _it(voc, "test_pipe_fixed").set_state({**state, "name": "test_pipe_fixed"})


@pytest.mark.parametrize("process_count", [1, 3, 4])
def test_host_shards_are_disjoint_and_cover_an_epoch(voc, process_count):
  seen = []
  for host in range(process_count):
    it = _it(voc, batch_size=1, input_length=32, process_index=host, process_count=process_count)
    n = len(range(host, 37, process_count))  # this host's share of the 37 examples
    texts = [voc.decode(next(it)["encoder_input_tokens"][0]) for _ in range(n)]
    assert len(set(texts)) == n  # no repeats within the host's epoch
    seen.append(set(texts))
  union = set().union(*seen)
  assert len(union) == 37 == sum(len(s) for s in seen)  # disjoint and complete
  assert union == {ex["inputs"] for ex in _make("train")}


def test_epochs_reshuffle(voc):
  it = _it(voc, batch_size=1)
  first = [voc.decode(next(it)["encoder_input_tokens"][0]) for _ in range(37)]
  second = [voc.decode(next(it)["encoder_input_tokens"][0]) for _ in range(37)]
  assert sorted(first) == sorted(second) and first != second
  assert it.epochs == {"test_pipe_plain": 1}


@pytest.mark.parametrize("n", [1, 2, 5, 64, 1000, 4097])
def test_permutation_is_a_bijection(n):
  out = pipeline.permute(np.arange(n), n, key=12345)
  assert sorted(out.tolist()) == list(range(n))
  if n > 5:
    assert not np.array_equal(out, np.arange(n))
    assert not np.array_equal(out, pipeline.permute(np.arange(n), n, key=54321))


def test_proportional_rates_with_cap_and_temperature():
  rates = mixtures.examples_proportional_rates([100, 400, 2000], cap=1000, temperature=2.0)
  expected = np.sqrt([100, 400, 1000]) / np.sqrt([100, 400, 1000]).sum()
  np.testing.assert_allclose(rates, expected)
  np.testing.assert_allclose(mixtures.examples_proportional_rates([10, 30], cap=None), [0.25, 0.75])
  assert mixtures.DEFAULT_CAP == 2 ** 19 == configs.base_config().retrieval.mixture_cap


@pytest.mark.parametrize("name,expected", [
    ("test_pipe_mix", np.sqrt([100, 400, 1000]) / np.sqrt([100, 400, 1000]).sum()),
    ("test_pipe_fixed", [0.75, 0.25])])
def test_mixture_hits_its_rates(voc, name, expected):
  it = _it(voc, name, batch_size=32, prefetch=2)
  np.testing.assert_allclose(it.rates, expected)
  _take(it, 100)
  counts = it.truncation["per_task"]
  observed = np.array([counts[t] for t in it.task_names]) / 3200
  # 3200 draws: a binomial standard deviation is at most 0.009; allow ~3.5 of them.
  np.testing.assert_allclose(observed, expected, atol=0.03)
  it.close()


def test_mixture_is_deterministic_and_hosts_differ(voc):
  a = _take(_it(voc, "test_pipe_mix", process_count=2), 5)
  _assert_batches_equal(a, _take(_it(voc, "test_pipe_mix", process_count=2, prefetch=2), 5))
  b = _take(_it(voc, "test_pipe_mix", process_index=1, process_count=2), 5)
  assert not np.array_equal(a[0]["encoder_input_tokens"], b[0]["encoder_input_tokens"])


def test_eval_examples_keep_order_raw_example_and_unpadded_tokens(voc):
  examples = pipeline.load_eval_examples("test_pipe_expand", voc, input_length=8, max_examples=6)
  assert len(examples) == 6
  assert [e["index"] for e in examples] == [0, 1, 1, 1, 2, 3]  # odd labels give 3 outputs each
  for e in examples:
    toks = e["encoder_input_tokens"]
    assert toks.dtype == np.int32 and len(toks) <= 8 and toks[-1] == vocab.EOS_ID
    assert e["example"]["inputs"].startswith("item ")
  padded = pipeline.pad_batch([e["encoder_input_tokens"] for e in examples], 8)
  assert padded.shape == (6, 8)
  with pytest.raises(ValueError, match="truncate"):
    pipeline.pad_batch([np.ones(9, np.int32)], 8)


def test_bad_arguments_say_what_to_do(voc):
  with pytest.raises(ValueError, match="process_index"):
    _it(voc, process_index=2, process_count=2)
  with pytest.raises(ValueError, match="input_length"):
    _it(voc, input_length=0)
  with pytest.raises(ValueError, match="too few"):
    _it(voc, process_index=40, process_count=41)
  with pytest.raises(ValueError, match="Unknown task 'test_pipe_plian'.*did you mean 'test_pipe_plain'"):
    _it(voc, "test_pipe_plian")
