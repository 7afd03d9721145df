"""The synthetic TFDS builder: builds offline, its families follow their rules, its tasks tokenize."""

import collections
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from spot_jax.data import mixtures, pipeline, synthetic, tasks, vocab
from spot_jax.data import preprocessors as pp


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("synthetic_tfds"))
  start = time.perf_counter()
  synthetic.prepare(path)
  assert time.perf_counter() - start < 60  # the brief: all configs in under a minute on 2 cores
  return path


@pytest.fixture(scope="module")
def voc(data_dir, tmp_path_factory):
  model = vocab.train_sentencepiece(synthetic.corpus_lines(data_dir), str(tmp_path_factory.mktemp("spm") / "m"), 256)
  return vocab.SentencePieceVocab(model)


def test_prepare_builds_every_config_offline_and_is_idempotent(data_dir):
  for v in synthetic.VARIANTS:
    builder = synthetic.SpotSynthetic(config=v.config_name, data_dir=data_dir)
    assert builder.is_prepared() and builder.info.file_format.value == "array_record"
    assert builder.info.splits["train"].num_examples == v.train_size
    assert builder.info.splits["validation"].num_examples == synthetic.VALIDATION_SIZE
  start = time.perf_counter()
  synthetic.prepare(data_dir)
  assert time.perf_counter() - start < 5


def test_builder_is_a_real_tfds_builder(data_dir):
  assert issubclass(synthetic.SpotSynthetic, tfds.core.GeneratorBasedBuilder)
  assert {c.name for c in synthetic.SpotSynthetic.BUILDER_CONFIGS} == {v.config_name for v in synthetic.VARIANTS}
  ds = tfds.data_source("spot_synthetic/seven_comma", split="validation", data_dir=data_dir, download=False)
  key = lambda ex: (ex["inputs"], ex["targets"], ex["payload"], ex["label"])
  on_disk = sorted(key(pp.to_python(dict(ds[i]))) for i in range(len(ds)))
  assert on_disk == sorted(key(ex) for ex in synthetic.generate("seven_comma", "validation"))


def test_fast_record_decoding_matches_tfds(data_dir):
  fast = tasks.get_task("synth_first_bracket").source.open("train", data_dir)
  ref = tfds.data_source("spot_synthetic/first_bracket", split="train", data_dir=data_dir, download=False)
  indices = [0, 17, 2999, 5]
  assert [pp.to_python(dict(ex)) for ex in fast.read_many(indices)] == [pp.to_python(dict(ref[i])) for i in indices]
  assert pp.to_python(dict(fast[17])) == pp.to_python(dict(ref[17]))


def test_families_have_sources_and_held_out_targets():
  by_family = collections.defaultdict(lambda: collections.Counter())
  for v in synthetic.VARIANTS:
    by_family[v.family][v.role] += 1
  assert set(by_family) == set(synthetic.FAMILIES) and len(synthetic.FAMILIES) >= 3
  for family, roles in by_family.items():
    assert roles["source"] >= 2 and roles["target"] >= 1 and roles["base"] == 1, family
  assert not set(synthetic.SOURCE_TASKS) & set(synthetic.TARGET_TASKS)
  assert set(synthetic.FAMILY) == set(synthetic.SOURCE_TASKS) | set(synthetic.TARGET_TASKS) | set(
      synthetic.PRETRAIN_TASKS)
  for name in synthetic.FAMILY:
    assert name.startswith("synth_") and tasks.get_task(name).name == name
  assert mixtures.get_mixture("synth_sources").task_names == synthetic.SOURCE_TASKS


def test_only_base_tasks_name_the_rule():
  """Sources and targets of every family read alike (a bare payload): only a prompt can say the rule."""
  for v in synthetic.VARIANTS:
    for ex in synthetic.generate(v.config_name, "validation")[:50]:
      words = set(ex["inputs"].split()) - set("0123456789[],")
      assert words == (set(synthetic.RULE_WORDS[v.family].split()) if v.role == "base" else set()), ex
  formats = {(v.family, v.fmt) for v in synthetic.VARIANTS if v.role != "base"}
  assert formats == {(f, fmt) for f in synthetic.FAMILIES for fmt in synthetic.FORMATS}  # same surfaces everywhere


def _rule_holds(family, items, label, targets):
  xs = [int(x) for x in items]
  return {
      "seven": lambda: label == int(7 in xs),
      "big": lambda: label == int(xs[0] >= 5),
      "lowend": lambda: label == int(xs[-1] <= 4),
      "reverse": lambda: targets == " ".join(map(str, xs[::-1])),
      "first": lambda: targets == str(xs[0]),
      "last": lambda: targets == str(xs[-1]),
  }[family]()


@pytest.mark.parametrize("variant", synthetic.VARIANTS, ids=lambda v: v.task_name)
def test_examples_follow_the_family_rule(variant):
  train = synthetic.generate(variant.config_name, "train")
  validation = synthetic.generate(variant.config_name, "validation")
  assert len(train) == variant.train_size and len(validation) == synthetic.VALIDATION_SIZE
  assert variant.train_size == (synthetic.TARGET_TRAIN_SIZE if variant.role == "target" else synthetic.TRAIN_SIZE)
  assert validation == synthetic.generate(variant.config_name, "validation")  # deterministic
  for ex in train[:500] + validation:
    digits = ex["payload"].split()
    assert _rule_holds(variant.family, digits, ex["label"], ex["targets"]), ex
    assert ex["inputs"].endswith(synthetic.format_payload(digits, variant.fmt) if variant.fmt else ex["inputs"])
    if variant.label_words is not None:
      assert ex["targets"] == variant.label_words[ex["label"]]
  if variant.label_words is not None:
    assert 0.4 < np.mean([ex["label"] for ex in validation]) < 0.6  # balanced
  assert not {ex["payload"] for ex in validation} & {ex["payload"] for ex in train}


def test_synthetic_tasks_tokenize_without_unknown_pieces(data_dir, voc):
  assert voc.vocab_size <= 256
  for name in synthetic.FAMILY:  # base tasks have the longest inputs
    examples = pipeline.load_eval_examples(name, voc, input_length=64, data_dir=data_dir, max_examples=100)
    for ex in examples:
      ids = ex["encoder_input_tokens"]
      assert vocab.UNK_ID not in ids.tolist() and len(ids) <= 32, ex["inputs"]
      assert voc.decode(ids) == ex["inputs"]
      target_ids = voc.encode(ex["targets"])
      assert 1 <= len(target_ids) <= 8 and vocab.UNK_ID not in target_ids


def test_synthetic_mixture_trains_and_scores(data_dir, voc):
  it = pipeline.make_train_iterator("synth_sources", voc, batch_size=32, input_length=32, target_length=8, seed=0,
                                    data_dir=data_dir)
  batch = next(it)
  assert batch["encoder_input_tokens"].shape == (32, 32)
  assert it.truncation["inputs_truncated"] == 0 and it.truncation["targets_truncated"] == 0
  it.close()
  task = tasks.get_task(synthetic.TARGET_TASKS[0])
  examples = pipeline.load_eval_examples(task.name, voc, input_length=32, data_dir=data_dir)
  assert len(examples) == synthetic.VALIDATION_SIZE
  assert task.evaluate(examples, [e["targets"] for e in examples])["score"] == 100.0
  wrong = [task.label_words[1 - task.label_words.index(e["targets"])] for e in examples]
  assert task.evaluate(examples, wrong)["score"] == 0.0
