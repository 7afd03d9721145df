"""The `c4` task is T5's token-level prefix-LM (`c4_v220_prefix_lm`).

- Parity: T5's own `prefix_lm` + `append_eos_after_trim` on fabricated token sequences (empty, 1-3
  tokens, exactly the input length, much longer, longer than the 65536-token chunk), as recorded in
  tests/fixtures/t5_reference.json by tools/t5_reference/make_fixture.py together with the seeds each
  step got -> spot_jax's `prefix_lm_tokens` with those seeds, through the pipeline's trimming and EOS
  -> the same ids. `select_random_chunk` alone, at small chunk lengths, likewise.
- End to end: the `c4` task under `tfds.testing.mock_data` through the pipeline: every example is a
  contiguous piece of its tokenized document, split into a non-empty prefix and continuation.
"""

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from spot_jax import errors
from spot_jax.data import pipeline, tasks, vocab
from spot_jax.data import preprocessors as pp

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "t5_reference.json")
with open(FIXTURE, encoding="utf-8") as _f:
  REF = json.load(_f)["prefix_lm"]

CASES = {case["name"]: case for case in REF["cases"]}


def _fabricated_tokens(n, salt):
  """The fixture's token sequences (its notes give the formula)."""
  return [3 + (i * 7919 + salt * 104729) % 31997 for i in range(n)]


def _digest(ids):
  arr = np.asarray(ids, dtype="<i4")
  return {"length": int(arr.size), "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
          "head": [int(v) for v in arr[:8]]}


def _row(ids):
  """A padded batch row -> its ids up to and including EOS (then only padding)."""
  n = int(np.nonzero(ids == vocab.EOS_ID)[0][0]) + 1
  assert not ids[n:].any()
  return [int(i) for i in ids[:n]]


def test_fixture_is_t5s_c4_prefix_lm_task():
  assert REF["task"] == "c4_v220_prefix_lm" and REF["tfds_name"] == "c4/en:2.2.0"
  assert [p["name"] for p in REF["preprocessors"]] == [
      "rekey", "tokenize", "CacheDatasetPlaceholder", "prefix_lm", "append_eos_after_trim"]
  assert all(f["add_eos"] for f in REF["output_features"].values())
  assert tasks.get_task("c4").source.datasets == ("c4/en:2.2.0",)


@pytest.mark.parametrize("name", sorted(CASES))
def test_prefix_lm_matches_t5(name):
  case = CASES[name]
  tokens = _fabricated_tokens(case["num_tokens"], case["token_salt"])
  if case["tokens"] is not None:
    assert tokens == case["tokens"]
  seeds = case["seeds"]
  chunk_seed = seeds["select_random_chunk"][0] if tokens else None
  pairs = pp.prefix_lm_tokens(tokens, case["sequence_length"]["inputs"], chunk_seed, lambda i: seeds["denoise"][i])
  assert len(pairs) == len(case["outputs"])
  if not pairs:
    return
  examples = [{"inputs": "", "targets": "", "inputs_ids": inputs, "targets_ids": targets} for inputs, targets in pairs]
  batch, _ = pipeline.tokenize_batch(examples, None, case["sequence_length"]["inputs"],
                                     case["sequence_length"]["targets"])  # vocab unused: ids given
  for i, expected in enumerate(case["outputs"]):
    ours = {"inputs": _row(batch["encoder_input_tokens"][i]), "targets": _row(batch["decoder_target_tokens"][i])}
    for k in ("inputs", "targets"):
      assert (_digest(ours[k]) if isinstance(expected[k], dict) else ours[k]) == expected[k], (name, i, k)


def test_select_random_chunk_matches_t5():
  for case in REF["select_random_chunk"]:
    tokens = _fabricated_tokens(case["num_tokens"], case["token_salt"])
    assert tokens == case["tokens"]
    chunk = pp.select_random_chunk(tokens, case["seed"], case["max_length"])
    assert chunk.tolist() == case["chunk"], case


# ----------------------------------------------------------------------------- the c4 task


_WORDS = "the a cat dog sat on mat and ran to big red house tree sky blue green over under by".split()


def _documents(n):
  rng = np.random.default_rng(0)
  return [" ".join(rng.choice(_WORDS, size=int(rng.integers(3, 80)))) + "." for _ in range(n)]


DOCS = _documents(10)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
  path = vocab.train_sentencepiece(DOCS * 20 + [" ".join(_WORDS)] * 5, str(tmp_path_factory.mktemp("spm") / "m"), 60)
  return vocab.SentencePieceVocab(path)


def _mock_c4(builder, split, decoders=None, deserialize_method=None, **kwargs):
  del builder, split, decoders, deserialize_method, kwargs
  return [{"text": t, "timestamp": "2019-04-25", "url": f"https://example.com/{i}"} for i, t in enumerate(DOCS)]


def _contiguous_in(ids, documents):
  n = len(ids)
  return any(doc[j:j + n] == ids for doc in documents for j in range(len(doc) - n + 1))


def test_c4_task_through_the_pipeline(voc):
  tokenized = [voc.encode(t) for t in DOCS]
  input_length, target_length = 12, 6
  with tfds.testing.mock_data(num_examples=len(DOCS), as_data_source_fn=_mock_c4):
    with pipeline.make_train_iterator("c4", voc, batch_size=8, input_length=input_length,
                                      target_length=target_length, seed=0, prefetch=2) as it:  # TF in the thread
      batches = [next(it) for _ in range(6)]
    evals = pipeline.load_eval_examples("c4", voc, input_length=input_length, max_examples=5)
  with_inputs = 0
  for batch in batches:
    for enc, tgt in zip(batch["encoder_input_tokens"], batch["decoder_target_tokens"]):
      inputs, targets = _row(enc)[:-1], _row(tgt)[:-1]  # without EOS
      assert targets, "every segment has a continuation"
      assert len(inputs) <= input_length - 2 and len(targets) <= target_length - 1
      with_inputs += bool(inputs)  # only a 1-token last segment has no prefix (as in T5)
      assert _contiguous_in(inputs + targets, tokenized)
  assert with_inputs >= 0.75 * 6 * 8
  assert it.truncation["targets_truncated"] > 0 and it.truncation["inputs_truncated"] == 0
  assert evals
  for ex in evals:
    assert ex["encoder_input_tokens"].tolist() == ex["inputs_ids"] + [vocab.EOS_ID]
    assert ex["targets"] == voc.decode(ex["targets_ids"]) and ex["targets"]
  task = tasks.get_task("c4")
  assert task.evaluate(evals, [ex["targets"] for ex in evals])["score"] == 100.0


def test_c4_splits_per_seed_and_covers_the_document(voc):
  task = tasks.get_task("c4")
  doc = max(DOCS, key=len)
  ids = voc.encode(doc)
  ctx = pp.Context(seed=1, vocab=voc, input_length=len(ids) + 1)  # one segment: the whole document
  (out,) = task.preprocess({"text": doc}, ctx)
  assert out == task.preprocess({"text": doc}, ctx)[0]  # deterministic
  assert out["inputs_ids"] + out["targets_ids"] == ids and out["inputs_ids"] and out["targets_ids"]
  assert out["inputs"] == voc.decode(out["inputs_ids"])
  cuts = {len(task.preprocess({"text": doc}, pp.Context(seed=s, vocab=voc, input_length=len(ids) + 1))[0]["inputs_ids"])
          for s in range(8)}
  assert len(cuts) > 1  # other seeds (epochs, examples) split elsewhere
  segments = task.preprocess({"text": doc}, pp.Context(seed=1, vocab=voc, input_length=8))
  assert [i for o in segments for i in o["inputs_ids"] + o["targets_ids"]] == ids  # segments of 7 tokens, in order
  assert task.preprocess({"text": ""}, ctx) == []  # T5 drops empty texts


def test_c4_needs_the_vocabulary():
  with pytest.raises(errors.ConfigError, match="vocab"):
    tasks.get_task("c4").preprocess({"text": "some text"}, pp.Context(seed=0))
