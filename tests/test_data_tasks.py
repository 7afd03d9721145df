"""Task registry: every registered task yields well-formed tokenized examples (TFDS tasks under
`tfds.testing.mock_data`, local-file tasks on tiny files), clear errors, metrics and scores."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from spot_jax.data import pipeline, tasks, vocab
from spot_jax.data import preprocessors as pp

TFDS_TASKS = sorted(n for n in tasks.list_tasks()
                    if isinstance(tasks.get_task(n).source, tasks.TfdsSource) and not n.startswith("synth_"))
LOCAL_TASKS = sorted(n for n in tasks.list_tasks() if isinstance(tasks.get_task(n).source, tasks.LocalFileSource))
MOCK_EXAMPLES = 12


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
  """A tiny vocabulary covering task prefixes, label words and mock_data's random 'a'-'j' text."""
  rng = np.random.default_rng(0)
  words = set()
  for name in tasks.list_tasks():
    words.update((tasks.get_task(name).label_words or ()))
    words.add(name)
  words.update("question context passage premise hypothesis sentence options article review entities query "
               "answer paragraph span1 span2 text choice1 choice2 word".split())
  lines = [" ".join(sorted(words))] * 3
  for _ in range(300):
    lines.append("".join(rng.choice(list(" abcdefghij"), size=rng.integers(10, 40))) + ": ( ) , .")
  path = vocab.train_sentencepiece(lines, str(tmp_path_factory.mktemp("spm") / "m"), 250)
  return vocab.SentencePieceVocab(path)


def _fixed_mock_source(fix):
  """`as_data_source_fn` for datasets whose random mock values break their own invariants (a
  HellaSwag label past its endings, RACE answers that are not letters): random examples, fixed."""

  def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    del split, decoders, deserialize_method, kwargs
    gen = mocking.RandomFakeGenerator(builder.info.features, MOCK_EXAMPLES)
    return [fix(dict(gen[i]), i) for i in range(MOCK_EXAMPLES)]

  return as_data_source


def _fix_hellaswag(ex, i):
  ex["endings"] = ex["endings"][:4]
  ex["label"] = np.int32(i % len(ex["endings"]))
  return ex


def _fix_race(ex, i):
  n = min(len(ex["questions"]), 3)
  ex["questions"] = ex["questions"][:n]
  ex["options"] = np.array([["opt a", "opt b", "opt c", "opt d"]] * n)
  ex["answers"] = np.array([pp.LETTERS[(i + j) % 4] for j in range(n)])
  return ex


_FIXES = {"hellaswag": _fix_hellaswag, "race": _fix_race}


def _check_batch(batch, batch_size, input_length, target_length):
  assert batch["encoder_input_tokens"].shape == (batch_size, input_length)
  assert batch["decoder_target_tokens"].shape == (batch_size, target_length)
  for k, v in batch.items():
    assert v.dtype == (np.float32 if k == "decoder_loss_weights" else np.int32), k
  for row in batch["encoder_input_tokens"]:
    assert (row == vocab.EOS_ID).sum() >= 1 and row[0] != 0
  weights = batch["decoder_loss_weights"]
  assert (weights.sum(axis=1) >= 1).all()
  last = weights.sum(axis=1).astype(int) - 1
  assert (batch["decoder_target_tokens"][np.arange(batch_size), last] == vocab.EOS_ID).all()


@pytest.mark.parametrize("name", TFDS_TASKS)
def test_tfds_task_yields_tokenized_examples(voc, name):
  task = tasks.get_task(name)
  fix = _FIXES.get(name)
  kwargs = {"as_data_source_fn": _fixed_mock_source(fix)} if fix else {}
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, **kwargs):
    it = pipeline.make_train_iterator(name, voc, batch_size=4, input_length=48, target_length=12, seed=0,
                                      prefetch=0)
    _check_batch(next(it), 4, 48, 12)
    _check_batch(next(it), 4, 48, 12)
    examples = pipeline.load_eval_examples(name, voc, input_length=48, max_examples=3)
  assert examples, f"{name}: no eval examples from {task.eval_split}"
  for ex in examples:
    assert ex["inputs"] and isinstance(ex["targets"], str)
    assert ex["encoder_input_tokens"].dtype == np.int32 and ex["encoder_input_tokens"][-1] == vocab.EOS_ID
    json.dumps(ex["example"])  # raw example kept as plain Python
    if task.label_words is not None and task.postprocessor == "label":
      assert ex["targets"] in task.label_words and task.label_words[ex["label"]] == ex["targets"]
  # Scoring a perfect prediction of the eval examples works end to end.
  result = task.evaluate(examples, [ex["targets"] for ex in examples])
  assert 0.0 <= result["score"] <= 100.0 or math.isnan(result["score"])


def test_registry_holds_glue_super_glue_and_the_26_spot_tasks():
  names = set(tasks.list_tasks())
  assert set(tasks.GLUE_TASKS) <= names and set(tasks.SUPER_GLUE_TASKS) <= names
  assert len(tasks.SPOT_SOURCE_TASKS) == 16 and len(tasks.SPOT_TARGET_TASKS) == 10
  assert set(tasks.SPOT_SOURCE_TASKS) | set(tasks.SPOT_TARGET_TASKS) <= names
  assert tasks.get_task("mnli").eval_split == "validation_matched"
  assert tasks.get_task("mnli_mismatched").eval_split == "validation_mismatched"


def test_glue_and_super_glue_label_words_are_the_tfds_class_names():
  """T5 writes targets with the dataset's ClassLabel names; so must we, or T5 checkpoints disagree."""
  with tfds.testing.mock_data(num_examples=1):
    for name in tasks.GLUE_TASKS + tasks.SUPER_GLUE_TASKS:
      task = tasks.get_task(name)
      if task.postprocessor != "label":
        continue
      info = tfds.builder(task.source.datasets[0]).info
      assert task.label_words == tuple(info.features["label"].names), name


def test_unknown_task_lists_registered_tasks_and_suggests():
  with pytest.raises(ValueError) as e:
    tasks.get_task("rtee")
  msg = str(e.value)
  assert "Unknown task 'rtee'" in msg and "did you mean 'rte'" in msg and "boolq" in msg and "synth_" in msg


def _write_jsonl(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n\n")  # blank lines are skipped


@pytest.mark.parametrize("name", LOCAL_TASKS)
def test_local_file_task_reads_jsonl(voc, tmp_path, name):
  assert set(LOCAL_TASKS) == {"cr", "cxc"}
  row = {"cr": lambda i: {"sentence": f"great phone {i}", "label": i % 2},
         "cxc": lambda i: {"sentence1": f"a dog {i}", "sentence2": "a cat", "score": (i % 6) * 0.93}}[name]
  for split in ("train", "validation"):
    _write_jsonl(str(tmp_path / name / f"{split}.jsonl"), [row(i) for i in range(9)])
  it = pipeline.make_train_iterator(name, voc, batch_size=3, input_length=24, target_length=6, seed=0,
                                    data_dir=str(tmp_path), prefetch=0)
  _check_batch(next(it), 3, 24, 6)
  examples = pipeline.load_eval_examples(name, voc, input_length=24, data_dir=str(tmp_path))
  assert len(examples) == 9
  if name == "cxc":
    assert [e["targets"] for e in examples[:3]] == ["0.0", "1.0", "1.8"]  # rounded to 0.2, as STS-B
  else:
    assert examples[1]["inputs"] == "cr sentence: great phone 1" and examples[1]["targets"] == "positive"


def test_local_file_task_reads_tsv(voc, tmp_path):
  (tmp_path / "cr").mkdir()
  (tmp_path / "cr" / "train.tsv").write_text("sentence\tlabel\nbad battery\t0\nnice screen\t1\n")
  examples = pipeline.load_eval_examples("cr", voc, split="train", input_length=16, data_dir=str(tmp_path))
  assert [e["targets"] for e in examples] == ["negative", "positive"]


def test_missing_local_file_says_what_exists_and_what_is_expected(tmp_path):
  (tmp_path / "cxc").mkdir()
  (tmp_path / "cxc" / "dev.jsonl").write_text("{}\n")
  with pytest.raises(tasks.DataNotFoundError) as e:
    tasks.get_task("cxc").source.open("train", str(tmp_path))
  msg = str(e.value)
  assert "train" in msg and "dev.jsonl" in msg and "sentence1" in msg and "SPOT_JAX_DATA_DIR" in msg
  with pytest.raises(tasks.DataNotFoundError, match="does not exist"):
    tasks.get_task("cr").source.open("train", str(tmp_path / "nowhere"))


def test_local_file_with_wrong_fields_is_refused(tmp_path):
  _write_jsonl(str(tmp_path / "cr" / "train.jsonl"), [{"text": "x", "label": 1}])
  with pytest.raises(ValueError, match="lacks fields \\['sentence'\\]"):
    tasks.get_task("cr").source.open("train", str(tmp_path))


def test_unprepared_tfds_dataset_error_says_how_to_prepare(tmp_path):
  with pytest.raises(tasks.DataNotFoundError, match="tfds build glue/rte --file_format=array_record"):
    tasks.get_task("rte").source.open("train", str(tmp_path))


# ----------------------------------------------------------------------------- formats


def _one(task_name, example, training=True):
  return tasks.get_task(task_name).preprocess(example, pp.Context(seed=1, training=training))


def test_t5_text_formats():
  assert _one("rte", {"sentence1": b"A man sleeps.", "sentence2": "A man\nrests.", "label": np.int64(0), "idx": 3}) == [
      {"inputs": "rte sentence1: A man sleeps. sentence2: A man rests.", "targets": "entailment", "label": 0}]
  assert _one("stsb", {"sentence1": "a", "sentence2": "b", "label": np.float32(3.47)})[0]["targets"] == "3.4"
  assert _one("stsb", {"sentence1": "a", "sentence2": "b", "label": np.float32(3.51)})[0]["targets"] == "3.6"
  assert _one("cola", {"sentence": "x", "label": -1}) == []  # unlabelled test examples are dropped
  copa = _one("copa", {"premise": "p", "question": "cause", "choice1": "c1", "choice2": "c2", "label": 1})[0]
  assert copa == {"inputs": "copa choice1: c1 choice2: c2 premise: p question: cause", "targets": "choice2", "label": 1}


def test_record_trains_on_every_answer_and_evaluates_once():
  ex = {"passage": "Obama met Merkel.@highlight\nTalks", "query": "@placeholder met Merkel",
        "entities": np.array([b"Obama", b"Merkel"]), "answers": np.array([b"Obama", b"Barack Obama"]),
        "idx": {"passage": 0, "query": 0}}
  train = _one("record", ex)
  assert [o["targets"] for o in train] == ["Obama", "Barack Obama"]
  assert train[0]["inputs"].startswith("record query: @placeholder met Merkel entities: Obama, Merkel passage:")
  assert len(_one("record", ex, training=False)) == 1
  task = tasks.get_task("record")
  assert task.postprocess("Obama", pp.to_python(ex), is_target=True) == ["Obama", "Barack Obama"]
  assert task.evaluate([{"targets": "Obama", "example": pp.to_python(ex)}], ["barack obama"])["em"] == 100.0


def test_race_gives_one_example_per_question():
  ex = {"article": "A long story.", "questions": np.array([b"Who?", b"Why?"]),
        "options": np.array([[b"a", b"b", b"c", b"d"], [b"e", b"f", b"g", b"h"]]), "answers": np.array([b"B", b"D"]),
        "example_id": b"x"}
  out = _one("race", ex)
  assert [o["targets"] for o in out] == ["B", "D"]
  assert out[1]["inputs"] == "race question: Why? options: (A) e (B) f (C) g (D) h article: A long story."


def test_c4_prefix_lm_splits_deterministically_per_seed():
  ex = {"text": " ".join(f"w{i}" for i in range(600))}
  a = _one("c4", ex)[0]
  assert a == _one("c4", ex)[0]
  words = (a["inputs"] + " " + a["targets"]).split()
  assert len(words) == 256 and a["inputs"] and a["targets"]
  assert words == [f"w{i}" for i in range(int(words[0][1:]), int(words[0][1:]) + 256)]  # one contiguous window
  other = tasks.get_task("c4").preprocess(ex, pp.Context(seed=2))[0]
  assert other != a


# ----------------------------------------------------------------------------- metrics and scores


def test_scores_average_the_papers_metrics():
  mrpc = tasks.get_task("mrpc")
  t, p = [1, 1, 0, 0], [1, 0, 0, 0]
  m = mrpc.metrics(t, p)
  assert m["accuracy"] == 75.0 and m["f1"] == pytest.approx(200 / 3)
  assert mrpc.score(m) == pytest.approx((75 + 200 / 3) / 2)
  cola = tasks.get_task("cola")
  assert cola.score(cola.metrics([1, 0, 1, 0], [1, 0, 1, 0])) == pytest.approx(100.0)
  stsb = tasks.get_task("stsb")
  s = stsb.metrics([1.0, 2.0, 3.0, 4.0], [1.2, 1.8, 3.4, 4.0])
  assert set(s) == {"pearson", "spearman"} and stsb.score(s) == pytest.approx((s["pearson"] + s["spearman"]) / 2)
  cb = tasks.get_task("cb")
  assert set(cb.metrics([0, 1, 2], [0, 1, 1])) == {"f1_macro", "accuracy"}


def test_postprocess_maps_label_words_and_numbers():
  rte = tasks.get_task("rte")
  assert rte.postprocess(" not_entailment ") == 1 and rte.postprocess("maybe") == -1
  assert math.isnan(tasks.get_task("stsb").postprocess("high"))
  assert tasks.get_task("stsb").postprocess("3.4") == pytest.approx(3.4)


def test_multirc_scores_f1a_and_question_exact_match():
  task = tasks.get_task("multirc")
  ex = lambda q, a: {"idx": {"paragraph": 0, "question": q, "answer": a}}
  examples = [{"targets": "True", "example": ex(0, 0)}, {"targets": "False", "example": ex(0, 1)},
              {"targets": "True", "example": ex(1, 0)}]
  result = task.evaluate(examples, ["True", "False", "False"])
  assert result["em"] == 50.0 and result["f1a"] == pytest.approx(100 * 2 / 3)
  assert result["score"] == pytest.approx((50 + 200 / 3) / 2)


def test_squad_metrics_normalise_answers():
  task = tasks.get_task("squad")
  ex = {"answers": {"text": ["The Eiffel Tower", "Eiffel tower"], "answer_start": [0, 4]}}
  result = task.evaluate([{"targets": "The Eiffel Tower", "example": ex}], ["eiffel tower!"])
  assert result["em"] == 100.0 and result["f1"] == 100.0
  result = task.evaluate([{"targets": "The Eiffel Tower", "example": ex}], ["tower"])
  assert result["em"] == 0.0 and result["f1"] == pytest.approx(100 * 2 / 3)


def test_task_definition_errors_name_the_choices():
  with pytest.raises(ValueError, match="unknown metrics"):
    tasks.Task("x", None, pp.passthrough(), metric_names=("bleu",))
  with pytest.raises(ValueError, match="needs label_words"):
    tasks.Task("x", None, pp.passthrough(), postprocessor="label")
  with pytest.raises(ValueError, match="already registered"):
    tasks.register_task(tasks.Task("rte", None, pp.passthrough()))
