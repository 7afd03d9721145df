"""Task registry: every registered task yields well-formed tokenized examples (TFDS tasks under
`tfds.testing.mock_data`, local-file tasks on tiny files), clear errors, metrics and scores."""

import ast
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from spot_jax import errors
from spot_jax.data import pipeline, tasks, vocab
from spot_jax.data import preprocessors as pp
from spot_jax.data import spot_tasks

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
  ex["endings"] = np.array([f"ending {j}" for j in range(4)])  # HellaSwag has four endings
  ex["label"] = np.int32(i % 4)
  return ex


def _fix_sentiment140(ex, i):
  ex["polarity"] = np.int32((0, 2, 4)[i % 3])  # Sentiment140's polarities
  return ex


def _fix_mrqa(ex, i):
  ex["answers"] = np.array([f"answer {i}", "other"])  # every MRQA question has an answer
  return ex


def _fix_race(ex, i):
  n = min(len(ex["questions"]), 3)
  ex["questions"] = ex["questions"][:n]
  ex["options"] = np.array([["opt a", "opt b", "opt c", "opt d"]] * n)
  ex["answers"] = np.array([pp.LETTERS[(i + j) % 4] for j in range(n)])
  return ex


def _fix_wsc(ex, i):
  """T5's wsc_simple needs the pronoun at span2_index (> 0) of the space-split text."""
  ex["text"], ex["span1_text"], ex["span2_text"], ex["span2_index"] = "Ann told Bea that she won", "Ann", "she", 4
  ex["label"] = np.int64(i % 2)
  return ex


_FIXES = {"hellaswag": _fix_hellaswag, "race": _fix_race, "wsc": _fix_wsc, "sentiment140": _fix_sentiment140,
          **{f"mrqa_{d}": _fix_mrqa for d in spot_tasks.MRQA_DATASETS}}


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
  assert 0.0 <= result["score"] <= 100.0 + 1e-9 or math.isnan(result["score"])  # BLEU may give 100 + 4e-14


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
  assert "Unknown task 'rtee'" in msg and "did you mean 'rte'" in msg and "boolq" in msg
  assert "config.data.task_modules" in msg and "'spot_jax.data.synthetic'" in msg  # where other tasks come from


# ----------------------------------------------------------------------------- explicit task modules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_importing_tasks_registers_the_catalogue_only_and_no_tfds():
  """A real run's import of the task API registers the built-in tasks, not the synthetic ones, and
  imports neither TensorFlow Datasets nor TensorFlow; listing the synthetic module registers them."""
  code = textwrap.dedent("""
      import json, sys
      from spot_jax.data import mixtures, tasks
      before = dict(rte="rte" in tasks.list_tasks(), synth=[t for t in tasks.list_tasks() if t.startswith("synth_")],
                    synth_mixture=mixtures.is_mixture("synth_sources"), mixtures=len(mixtures.list_mixtures()))
      # after listing and looking up (the old registry imported the synthetic module, and TFDS, there)
      before["heavy"] = [m for m in ("spot_jax.data.synthetic", "tensorflow_datasets", "tensorflow")
                         if m in sys.modules]
      tasks.import_task_modules(("spot_jax.data.synthetic",))
      after = dict(synth=len([t for t in tasks.list_tasks() if t.startswith("synth_")]),
                   synth_mixture=mixtures.is_mixture("synth_sources"))
      print(json.dumps(dict(before=before, after=after)))
  """)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["before"] == {"heavy": [], "rte": True, "synth": [], "synth_mixture": False, "mixtures": 15}
  assert out["after"] == {"synth": 24, "synth_mixture": True}


_MY_TASKS = """
from spot_jax.data import preprocessors as pp
from spot_jax.data import tasks

rows = lambda split: [{{"inputs": "a", "targets": "b"}}]
tasks.register_task(tasks.Task("{name}", tasks.InMemorySource("{name}", rows), pp.passthrough()))
"""


def test_import_task_modules_registers_a_modules_tasks_by_name_or_file(tmp_path, monkeypatch):
  (tmp_path / "my_tasks_by_name.py").write_text(_MY_TASKS.format(name="test_module_by_name"))
  (tmp_path / "my_tasks_by_file.py").write_text(_MY_TASKS.format(name="test_module_by_file"))
  monkeypatch.syspath_prepend(str(tmp_path))
  assert "test_module_by_name" not in tasks.list_tasks() and not tasks.is_registered("test_module_by_file")
  modules = tasks.import_task_modules(("my_tasks_by_name", str(tmp_path / "my_tasks_by_file.py")))
  assert [m.__name__ for m in modules] == ["my_tasks_by_name", "my_tasks_by_file"]
  assert tasks.is_registered("test_module_by_name") and tasks.is_registered("test_module_by_file")
  assert tasks.get_task("test_module_by_file").source.open("train") == [{"inputs": "a", "targets": "b"}]
  # Importing again (each job of a process does) neither re-runs the file nor clashes with its registrations.
  assert tasks.import_task_modules((str(tmp_path / "my_tasks_by_file.py"),))[0] is modules[1]
  assert tasks.import_task_modules(()) == []


def test_import_task_modules_names_the_module_that_fails(tmp_path, monkeypatch):
  with pytest.raises(errors.ConfigError) as e:
    tasks.import_task_modules(("spot_jax.data.no_such_tasks",))
  msg = str(e.value)
  assert "task module 'spot_jax.data.no_such_tasks' (config.data.task_modules)" in msg
  assert "no module named 'spot_jax.data.no_such_tasks'" in msg and "'spot_jax.data.synthetic'" in msg
  with pytest.raises(errors.ConfigError, match="no file .*missing_tasks.py"):
    tasks.import_task_modules((str(tmp_path / "missing_tasks.py"),))
  (tmp_path / "needs_a_package.py").write_text("import not_an_installed_package_xyz\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(errors.ConfigError, match="'needs_a_package'.*not_an_installed_package_xyz"):
    tasks.import_task_modules(("needs_a_package",))
  with pytest.raises(errors.ConfigError, match=r"a tuple of module names.*\('spot_jax.data.synthetic',\)"):
    tasks.import_task_modules("spot_jax.data.synthetic")


def _private_reach_through(path):
  """`alias._name` uses (and `from module import _name`) of another spot_jax module in one file."""
  tree = ast.parse(open(path).read(), path)
  aliases, found = set(), []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spot_jax"):
      for a in node.names:
        if a.name.startswith("_"):
          found.append(f"from {node.module} import {a.name}")
        aliases.add(a.asname or a.name)  # `from spot_jax.data import tasks as tasks_lib` binds a module
    elif isinstance(node, ast.Import):
      aliases.update(a.asname for a in node.names if a.name.startswith("spot_jax") and a.asname)
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
        and node.attr.startswith("_") and not node.attr.startswith("__")):
      found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
  return found


def test_no_data_module_uses_another_modules_private_names():
  data_dir = os.path.join(ROOT, "spot_jax", "data")
  found = {f: _private_reach_through(os.path.join(data_dir, f)) for f in sorted(os.listdir(data_dir))
           if f.endswith(".py")}
  assert {f: uses for f, uses in found.items() if uses} == {}


def _data_imports(path):
  """The spot_jax.data modules one file imports, at the top or inside a function (a lazy import is
  still a dependency: the old registry imported the synthetic tasks lazily, in a cycle)."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.ImportFrom) and node.module == "spot_jax.data":
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spot_jax.data."):
      found.add(node.module.split(".")[2])
    elif isinstance(node, ast.Import):
      found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("spot_jax.data."))
  return found


def test_data_modules_import_each_other_without_a_cycle():
  data_dir = os.path.join(ROOT, "spot_jax", "data")
  graph = {f[:-3]: _data_imports(os.path.join(data_dir, f)) for f in os.listdir(data_dir)
           if f.endswith(".py") and f != "__init__.py"}
  assert "synthetic" not in set().union(*(deps for name, deps in graph.items() if name != "synthetic"))
  order = []  # topological order: a module after everything it imports
  while len(order) < len(graph):
    ready = sorted(m for m in graph if m not in order and graph[m] <= set(order))
    assert ready, f"import cycle among {sorted(set(graph) - set(order))}"
    order += ready
  assert order.index("registry") < order.index("catalog") < order.index("tasks") < order.index("pipeline")


def test_the_private_name_check_catches_a_use(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("from spot_jax.data import registry as reg\nfrom spot_jax.data.registry import _FILE_MODULES\n"
                  "x = reg._FILE_MODULES\ny = reg.__name__\n")
  assert _private_reach_through(str(path)) == ["from spot_jax.data.registry import _FILE_MODULES",
                                               "reg._FILE_MODULES (line 3)"]


def _write_jsonl(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n\n")  # blank lines are skipped


_LOCAL_ROWS = {  # a row of each local-file task, in the reference's columns
    "cr": lambda i: {"text": f"great phone {i}", "label": i % 2},
    "cxc": lambda i: {"sentence1": f"a dog {i}", "sentence2": "a cat", "label": (i % 6) * 0.93},
    "abductive_nli": lambda i: {"obs1": f"Ann woke {i}.", "obs2": "She was late.", "hyp1": "She slept in.",
                                "hyp2": "She ran.", "label": 2 + i % 2},
    "social_iqa": lambda i: {"context": f"Kim paid {i}.", "question": "Why?", "answerA": "to be kind",
                             "answerB": "to leave", "answerC": "no reason", "label": i % 3},
}


@pytest.mark.parametrize("name", LOCAL_TASKS)
def test_local_file_task_reads_jsonl(voc, tmp_path, name):
  assert set(LOCAL_TASKS) == set(_LOCAL_ROWS)
  row = _LOCAL_ROWS[name]
  for split in ("train", "validation"):
    _write_jsonl(str(tmp_path / name / f"{split}.jsonl"), [row(i) for i in range(9)])
  it = pipeline.make_train_iterator(name, voc, batch_size=3, input_length=24, target_length=6, seed=0,
                                    data_dir=str(tmp_path), prefetch=0)
  _check_batch(next(it), 3, 24, 6)
  examples = pipeline.load_eval_examples(name, voc, input_length=24, data_dir=str(tmp_path))
  assert len(examples) == 9
  if name == "cxc":
    assert [e["targets"] for e in examples[:3]] == ["0.0", "1.0", "1.8"]  # rounded to 0.2, as STS-B
  elif name == "cr":
    assert examples[1]["inputs"] == "cr text: great phone 1" and examples[1]["targets"] == "positive"
  elif name == "abductive_nli":  # choices[label] over [obs1, obs2, hyp1, hyp2], as the reference
    assert [e["targets"] for e in examples[:2]] == ["She slept in.", "She ran."]
  else:
    assert examples[1]["targets"] == "to leave"


def test_local_file_task_reads_tsv(voc, tmp_path):
  """The reference's TSV layout (an index column, then the fields; a header row)."""
  (tmp_path / "cr").mkdir()
  (tmp_path / "cr" / "train.tsv").write_text("index\ttext\tlabel\n0\tbad battery\t0\n1\tnice screen\t1\n")
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
  _write_jsonl(str(tmp_path / "cr" / "train.jsonl"), [{"sentence": "x", "label": 1}])
  with pytest.raises(ValueError, match="lacks fields \\['text'\\]"):
    tasks.get_task("cr").source.open("train", str(tmp_path))


def test_unprepared_tfds_dataset_error_says_how_to_prepare(tmp_path):
  with pytest.raises(tasks.DataNotFoundError, match="tfds build glue/rte:2.0.0 --file_format=array_record"):
    tasks.get_task("rte").source.open("train", str(tmp_path))


# ----------------------------------------------------------------------------- formats


def _one(task_name, example, training=True):
  return tasks.get_task(task_name).preprocess(example, pp.Context(seed=1, training=training))


def test_t5_text_formats():
  """T5's formats (tests/test_t5_formats.py checks them all against t5 itself): sorted field names,
  raw whitespace kept, the id passed through, label -1 dropped."""
  assert _one("rte", {"sentence1": b"A man sleeps.", "sentence2": "A man\nrests.", "label": np.int64(0), "idx": 3}) == [
      {"inputs": "rte sentence1: A man sleeps. sentence2: A man\nrests.", "targets": "entailment", "label": 0,
       "idx": 3}]
  mnli = _one("mnli", {"premise": "p  p", "hypothesis": "h", "label": 2, "idx": np.int32(7)})[0]
  assert mnli["inputs"] == "mnli hypothesis: h premise: p  p" and mnli["targets"] == "contradiction"
  assert _one("stsb", {"sentence1": "a", "sentence2": "b", "label": np.float32(3.47)})[0]["targets"] == "3.4"
  assert _one("stsb", {"sentence1": "a", "sentence2": "b", "label": np.float32(3.51)})[0]["targets"] == "3.6"
  assert _one("stsb", {"sentence1": "a", "sentence2": "b", "label": np.float32(2.5)})[0]["targets"] == "2.4"
  assert _one("cola", {"sentence": "x", "label": -1}) == []  # unlabelled test examples are dropped
  copa = _one("copa", {"premise": "p", "question": "cause", "choice1": "c1", "choice2": "c2", "label": 1})[0]
  assert copa == {"inputs": "copa choice1: c1 choice2: c2 premise: p question: cause", "targets": "choice2", "label": 1}
  boolq = _one("boolq", {"question": "q?", "passage": "P.", "label": 1, "idx": 0})[0]["inputs"]
  assert boolq == "boolq passage: P. question: q?"
  assert _one("boolq_question_first", {"question": "q?", "passage": "P.", "label": 1})[0]["inputs"] == (
      "boolq question: q? passage: P.")
  multirc = _one("multirc", {"question": "Q", "answer": "<b>A</b>", "paragraph": "x<br>y", "label": 1,
                             "idx": {"paragraph": 2, "question": 5, "answer": 9}})[0]
  assert multirc == {"inputs": "multirc question: Q answer: A paragraph: x y", "targets": "True", "label": 1,
                     "idx/paragraph": 2, "idx/question": 5, "idx/answer": 9}


def test_wsc_trains_on_correct_referents_and_evaluates_every_row():
  ex = {"text": "Ann told Bea that she won .", "span1_text": "Bea", "span1_index": 2, "span2_text": "she",
        "span2_index": 4, "label": 0, "idx": 1}
  assert _one("wsc", ex) == []  # label 0: the candidate is not the referent, nothing to learn to write
  out = _one("wsc", ex, training=False)
  assert out == [{"inputs": "wsc: Ann told Bea that *she* won .", "targets": "Bea", "label": 0, "idx": 1}]
  task = tasks.get_task("wsc")
  assert task.evaluate(out, ["Bea"])["accuracy"] == 0.0  # names the candidate, but the label says it is wrong
  assert task.evaluate(out, ["Ann"])["accuracy"] == 100.0
  with pytest.raises(pp.InvalidRow, match="span2_text"):
    _one("wsc", {**ex, "span2_index": 3, "label": 1})
  assert _one("wsc_binary", {**ex, "label": 1})[0]["targets"] == "True"


def test_record_gives_one_example_per_answer_and_scores_each_query_once():
  ex = {"passage": "Obama met Merkel.\n@highlight\nTalks", "query": "@placeholder met Merkel",
        "entities": np.array([b"Obama", b"Merkel"]), "answers": np.array([b"Barack Obama", b"Obama"]),
        "idx": {"passage": 0, "query": 0}}
  for training in (True, False):
    out = _one("record", ex, training=training)
    assert [o["targets"] for o in out] == ["Barack Obama", "Obama"]
  assert out[0]["inputs"] == "record query: @placeholder met Merkel entities: Obama, Merkel passage: Obama met Merkel. Talks"
  task = tasks.get_task("record")
  assert task.postprocess("Obama", tasks.t5_example(out[0]), is_target=True) == {
      "value": ["Barack Obama", "Obama"], "group": (0, 0)}
  result = task.evaluate(out, ["obama", "wrong, but a duplicate of the query: ignored"])
  assert result["em"] == 100.0 and result["f1"] == 100.0 and result["score"] == 100.0
  assert _one("record", {**ex, "answers": np.array([], dtype=object)}) == []  # test split: unlabelled


def test_race_gives_one_example_per_question():
  ex = {"article": "A long story.", "questions": np.array([b"Who?", b"Why?"]),
        "options": np.array([[b"a", b"b", b"c", b"d"], [b"e", b"f", b"g", b"h"]]), "answers": np.array([b"B", b"D"]),
        "example_id": b"x"}
  out = _one("race", ex)
  assert [o["targets"] for o in out] == ["B", "D"]
  assert out[1]["inputs"] == "race question: Why? options: (A) e (B) f (C) g (D) h article: A long story."


# ----------------------------------------------------------------------------- metrics and scores


def _evaluate(name, rows, predictions):
  task = tasks.get_task(name)
  examples = [o for row in rows for o in task.preprocess(row, pp.Context(training=False))]
  return task.evaluate(examples, predictions)


def test_scores_average_t5s_metrics():
  pair = lambda label: {"sentence1": "a", "sentence2": "b", "label": label, "idx": 0}
  m = _evaluate("mrpc", [pair(1), pair(1), pair(0), pair(0)], ["equivalent", "not_equivalent", "not_equivalent",
                                                                "not_equivalent"])
  assert m["accuracy"] == 75.0 and m["f1"] == pytest.approx(200 / 3)
  assert m["score"] == pytest.approx((75 + 200 / 3) / 2)
  cola = _evaluate("cola", [{"sentence": "s", "label": i % 2} for i in range(4)], ["unacceptable", "acceptable"] * 2)
  assert cola == {"matthews_corrcoef": 100.0, "score": 100.0}
  stsb = tasks.get_task("stsb")
  s = stsb.metrics([1.0, 2.0, 3.0, 4.0], [1.2, 1.8, 3.4, 4.0])
  assert set(s) == {"pearson_corrcoef", "spearman_corrcoef"}
  assert stsb.score(s) == pytest.approx((s["pearson_corrcoef"] + s["spearman_corrcoef"]) / 2)
  constant = stsb.metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
  assert math.isnan(constant["pearson_corrcoef"]) and math.isnan(stsb.score(constant))  # as T5 reports it
  cb = tasks.get_task("cb")
  assert set(cb.metrics([0, 1, 2], [0, 1, 1])) == {"mean_3class_f1", "accuracy"}


def test_postprocess_is_t5s():
  rte = tasks.get_task("rte")
  assert rte.postprocess("not_entailment") == 1 and rte.postprocess("maybe") == -1
  assert rte.postprocess(" not_entailment ") == -1  # T5 matches exactly: no stripping
  assert tasks.get_task("stsb").postprocess("high") == -1.0  # T5's string_to_float default
  assert tasks.get_task("stsb").postprocess(" 3.4 ") == pytest.approx(3.4)
  assert math.isnan(tasks.get_task("stsb").postprocess("nan"))


def test_an_invalid_label_counts_as_wrong():
  rows = [{"sentence": "s", "label": 1, "idx": i} for i in range(4)]
  assert _evaluate("sst2", rows, ["positive", "Positive", "positive ", "banana"])["accuracy"] == 25.0


def test_multirc_scores_f1_and_question_exact_match():
  row = lambda q, a, label: {"question": f"q{q}", "answer": f"a{a}", "paragraph": "p", "label": label,
                             "idx": {"paragraph": 0, "question": q, "answer": a}}
  result = _evaluate("multirc", [row(0, 0, 1), row(0, 1, 0), row(1, 2, 1)], ["True", "False", "False"])
  assert result["exact_match"] == 50.0 and result["f1"] == pytest.approx(100 * 2 / 3)
  assert result["score"] == pytest.approx((50 + 200 / 3) / 2)


def test_squad_metrics_use_t5s_padded_answers():
  ex = {"question": "Where?", "context": "The Eiffel Tower, Paris.", "id": "x", "title": "t",
        "answers": {"text": ["The Eiffel Tower", "Eiffel tower"], "answer_start": [0, 4]}}
  result = _evaluate("squad", [ex], ["eiffel tower!"])
  assert result["em"] == 100.0 and result["f1"] == 100.0
  result = _evaluate("squad", [ex], ["tower"])
  assert result["em"] == 0.0 and result["f1"] == pytest.approx(100 * 2 / 3)
  dotted = {**ex, "answers": {"text": ["U.S."], "answer_start": [0]}}
  assert _evaluate("squad", [dotted], ["US"])["em"] == 0.0  # T5 scores against 'U . S . ' -> 'u s'


def test_tfds_versions_are_pinned_and_overridable():
  assert tasks.get_task("cola").source.datasets == ("glue/cola:2.0.0",)
  assert tasks.get_task("boolq").source.datasets == ("super_glue/boolq:1.0.2",)
  assert tasks.get_task("squad").source.datasets == ("squad/v1.1:3.0.0",)
  assert tasks.get_task("docnli").source.datasets == ("doc_nli:1.0.0",)
  assert tasks.get_task("anli").source.versions == ("0.1.0",) * 3
  original = tasks.get_task("rte")
  try:
    assert tasks.set_tfds_version("rte", "1.0.0").source.datasets == ("glue/rte:1.0.0",)
    assert tasks.get_task("rte").source.datasets == ("glue/rte:1.0.0",)
    assert tasks.set_tfds_version("rte", None).source.datasets == ("glue/rte",)
  finally:
    tasks.register_task(original, overwrite=True)


def test_task_definition_errors_name_the_choices():
  with pytest.raises(ValueError, match="unknown metrics"):
    tasks.Task("x", None, pp.passthrough(), metric_names=("meteor",))
  with pytest.raises(ValueError, match="needs label_words"):
    tasks.Task("x", None, pp.passthrough(), postprocessor="label")
  with pytest.raises(ValueError, match="already registered"):
    tasks.register_task(tasks.Task("rte", None, pp.passthrough()))


def test_a_pinned_tfds_version_opens_when_prepared_even_if_not_the_codes(tmp_path):
  """TFDS reads any prepared version named as `name:version` (from its files, not the builder code);
  a version neither prepared nor buildable says how to override it."""
  from spot_jax.data import synthetic
  config = "seven_target"
  synthetic.prepare(str(tmp_path), configs=[config])
  tasks.set_data_dir(synthetic.DATASET, None)
  root = tmp_path / synthetic.DATASET / config
  current = synthetic.SpotSynthetic.VERSION
  old = root / "1.5.0"  # a version the builder code does not define, as if prepared by an older release
  old.mkdir()
  for f in (root / str(current)).iterdir():
    text = f.read_bytes()
    if f.name == "dataset_info.json":
      info = json.loads(text)
      info["version"] = "1.5.0"
      text = json.dumps(info).encode()
    (old / f.name).write_bytes(text)
  unpinned = tasks.TfdsSource((f"{synthetic.DATASET}/{config}",))
  expected = [r["inputs"] for r in unpinned.open("validation", str(tmp_path)).read_many(range(3))]
  for version in (str(current), "1.5.0"):
    source = unpinned.with_version(version)
    assert source.versions == (version,)
    assert [r["inputs"] for r in source.open("validation", str(tmp_path)).read_many(range(3))] == expected
  with pytest.raises(tasks.DataNotFoundError, match="set_tfds_version"):
    unpinned.with_version("0.9.0").open("validation", str(tmp_path))
