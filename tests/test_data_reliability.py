"""Bad input data: a bad row stops the run with its file, line and field (never a hang), labels outside
the label set are counted and refused (or skipped with a logged count), and any exception of the
prefetch thread reaches next() in the main thread (issue #17 item 3)."""

import json
import logging
import threading
import time

import pytest

from spot_jax import errors
from spot_jax.data import pipeline, tasks, vocab
from spot_jax.data import preprocessors as pp

LOCAL = "test_rel_local"
MEMORY = "test_rel_memory"
LABELS = ("negative", "positive")
N = 300
BAD_INDEX = 199  # row 200 of the file (line 200 of a JSONL file, line 201 of a CSV under its header)


def _rows(bad=None):
  """N labelled rows; `bad(i, row)` may change row i (return None to keep it)."""
  rows = [{"sentence": f"good {i % 7}", "label": i % 2} for i in range(N)]
  if bad is not None:
    for i in range(N):
      rows[i] = bad(i, rows[i]) or rows[i]
  return rows


_MEMORY_ROWS: list = []


@pytest.fixture(scope="module", autouse=True)
def registered():
  fields = (("sentence", "str"), ("label", "0 = negative, 1 = positive"))
  classify = pp.classification("rel", [("sentence", "sentence")], LABELS)
  tasks.register_task(tasks.Task(LOCAL, tasks.LocalFileSource(LOCAL, fields), classify, label_words=LABELS,
                                 postprocessor="label"), overwrite=True)
  tasks.register_task(tasks.Task(MEMORY, tasks.InMemorySource(MEMORY, lambda split: _MEMORY_ROWS), classify,
                                 label_words=LABELS, postprocessor="label"), overwrite=True)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
  lines = ["rel sentence: good bad row 0 1 2 3 4 5 6 negative positive"] * 20
  return vocab.SentencePieceVocab(vocab.train_sentencepiece(lines, str(tmp_path_factory.mktemp("spm") / "m"), 40))


def _write_jsonl(data_dir, split, rows):
  (data_dir / LOCAL).mkdir(exist_ok=True)
  path = data_dir / LOCAL / f"{split}.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _in_thread(fn, timeout=20.0):
  """fn() in a helper thread joined with a timeout: (result, exception); fails if it hangs."""
  box = {}

  def run():
    try:
      box["result"] = fn()
    except BaseException as e:  # pylint: disable=broad-except
      box["error"] = e

  t = threading.Thread(target=run, daemon=True)
  t.start()
  t.join(timeout)
  assert not t.is_alive(), f"{fn} did not finish within {timeout} s (a hang)"
  return box.get("result"), box.get("error")


def _train(voc, name, prefetch, steps=30, **kw):
  """Make an iterator, take `steps` batches, close it: the error raised on the way, if any."""
  def run():
    it = pipeline.make_train_iterator(name, voc, batch_size=32, input_length=12, target_length=4, seed=0,
                                      prefetch=prefetch, **kw)
    try:
      return [next(it) for _ in range(steps)]
    finally:
      it.close()
  return _in_thread(run)


# ----------------------------------------------------------------------------- a bad row names its place


@pytest.mark.parametrize("prefetch", [0, 2])
def test_missing_label_in_jsonl_names_file_line_and_field(voc, tmp_path, prefetch):
  path = _write_jsonl(tmp_path, "train", _rows(lambda i, r: {"sentence": r["sentence"]} if i == BAD_INDEX else None))
  _, error = _train(voc, LOCAL, prefetch, data_dir=str(tmp_path))
  assert isinstance(error, errors.InputDataError), error
  msg = str(error)  # local files are checked when the split is opened: before the first batch
  assert msg.startswith(f"{path}: 1 of 300 rows cannot be used by task '{LOCAL}'; the first: line 200: ")
  assert "field 'label' is missing (expected int 0 = negative, 1 = positive)" in msg
  assert "skip_invalid_examples=True" in msg


@pytest.mark.parametrize("ext,sep", [("csv", ","), ("tsv", "\t")])
def test_unparseable_label_in_csv_names_the_line(voc, tmp_path, ext, sep):
  rows = _rows(lambda i, r: {**r, "label": "abc"} if i == BAD_INDEX else None)
  (tmp_path / LOCAL).mkdir()
  path = tmp_path / LOCAL / f"train.{ext}"
  path.write_text(f"sentence{sep}label\n" + "".join(f"{r['sentence']}{sep}{r['label']}\n" for r in rows))
  _, error = _train(voc, LOCAL, 2, data_dir=str(tmp_path))
  assert isinstance(error, errors.InputDataError), error
  assert f"{path}: 1 of 300 rows" in str(error)
  assert "line 201: field 'label' is 'abc', not an int (expected int 0 = negative, 1 = positive)" in str(error)


def test_short_csv_row_names_the_line(voc, tmp_path):
  (tmp_path / LOCAL).mkdir()
  (tmp_path / LOCAL / "validation.csv").write_text("sentence,label\ngood 1,1\n\ngood 2\n")
  with pytest.raises(errors.InputDataError, match="line 4: has 1 values but the header names 2 columns"):
    pipeline.load_eval_examples(LOCAL, voc, input_length=12, data_dir=str(tmp_path))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_bad_row_met_while_streaming_reaches_next_with_its_row(voc, prefetch):
  """Sources not checked up front (TFDS, in-memory): the error comes from the stream, in the
  prefetch thread or not, with the row index; next() after it meets it again; close() returns."""
  _MEMORY_ROWS[:] = _rows(lambda i, r: {"sentence": r["sentence"]} if i == BAD_INDEX else None)

  def run():
    it = pipeline.make_train_iterator(MEMORY, voc, batch_size=32, input_length=12, target_length=4, seed=0,
                                      prefetch=prefetch)
    taken, messages = 0, []
    for _ in range(30):
      try:
        next(it)
        taken += 1
      except errors.InputDataError as e:
        messages.append(str(e))
        if len(messages) == 2:
          break
    it.close()
    return taken, messages

  (taken, messages), error = _in_thread(run)
  assert error is None, error
  assert len(messages) == 2 and messages[0] == messages[1] and taken < 10
  assert f"task '{MEMORY}' split 'train' row {BAD_INDEX}: field 'label' is missing" in messages[0]


# ----------------------------------------------------------------------------- labels outside the label set


def _one_based(i, row):
  """Five rows (the first at line 37) labelled as if the task were 1-based."""
  return {"sentence": "bad row", "label": 2} if i in (36, 80, 81, 150, 299) else None


def test_out_of_set_labels_are_counted_and_refused(voc, tmp_path):
  path = _write_jsonl(tmp_path, "train", _rows(_one_based))
  _, error = _train(voc, LOCAL, 2, data_dir=str(tmp_path))
  assert isinstance(error, errors.InputDataError), error
  msg = str(error)
  assert msg.startswith(f"{path}: 5 of 300 rows cannot be used by task '{LOCAL}'")
  assert "line 37: field 'label' is 2, outside the task's label set (expected int 0 = negative, 1 = positive)" in msg
  assert "Fix the data, or set config.data.skip_invalid_examples=True" in msg


def test_out_of_set_labels_are_skipped_with_a_logged_count(voc, tmp_path, caplog):
  _write_jsonl(tmp_path, "train", _rows(_one_based))
  with caplog.at_level(logging.WARNING):
    batches, error = _train(voc, LOCAL, 2, steps=20, data_dir=str(tmp_path), skip_invalid_examples=True)
  assert error is None, error
  texts = [voc.decode(row) for b in batches for row in b["encoder_input_tokens"]]
  assert len(texts) == 20 * 32 and not any("bad" in t for t in texts)  # two epochs of the 295 good rows
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any("5 of 300 rows" in w and "Skipping these 5 rows" in w for w in warnings), warnings


def test_out_of_set_labels_while_streaming_are_skipped_with_a_warning(voc, caplog):
  _MEMORY_ROWS[:] = _rows(_one_based)
  _, error = _train(voc, MEMORY, 0, steps=3)
  assert isinstance(error, errors.InputDataError) and "is 2, outside the task's label set" in str(error)
  with caplog.at_level(logging.WARNING):
    batches, error = _train(voc, MEMORY, 2, steps=20, skip_invalid_examples=True)
  assert error is None, error
  assert not any("bad" in voc.decode(row) for b in batches for row in b["encoder_input_tokens"])
  assert any("skipped 1 rows" in r.getMessage() for r in caplog.records), caplog.records


def test_eval_examples_refuse_or_skip_bad_rows(voc, tmp_path, caplog):
  path = _write_jsonl(tmp_path, "validation", _rows(_one_based))
  load = lambda **kw: pipeline.load_eval_examples(LOCAL, voc, input_length=12, data_dir=str(tmp_path), **kw)
  for max_examples in (None, 10):  # a local file is checked whole, even when only 10 examples are wanted
    with pytest.raises(errors.InputDataError) as e:
      load(max_examples=max_examples)
    assert str(e.value).startswith(f"{path}: 5 of 300 rows") and "line 37: field 'label' is 2" in str(e.value)
  with caplog.at_level(logging.WARNING):
    examples = load(skip_invalid_examples=True)
  assert len(examples) == 295 and 36 not in {ex["index"] for ex in examples}
  assert any("5 of 300 rows" in r.getMessage() for r in caplog.records)
  _write_jsonl(tmp_path, "validation", _rows(lambda i, r: {"sentence": r["sentence"]} if i == BAD_INDEX else None))
  with pytest.raises(errors.InputDataError, match="line 200: field 'label' is missing"):
    load()


def test_unlabelled_rows_are_still_dropped_as_t5_does(voc, tmp_path):
  """-1 marks an unlabelled row (TFDS test splits): dropped without an error, as T5 does."""
  _write_jsonl(tmp_path, "validation", _rows(lambda i, r: {**r, "label": -1} if i < 10 else None))
  assert len(pipeline.load_eval_examples(LOCAL, voc, input_length=12, data_dir=str(tmp_path))) == 290


# ----------------------------------------------------------------------------- the prefetch thread


def _failing_tokenize(monkeypatch, fail_on_call):
  calls = []
  real = pipeline.tokenize_batch

  def tokenize(*args, **kw):
    calls.append(1)
    if len(calls) == fail_on_call:
      raise RuntimeError("boom in the producer")
    return real(*args, **kw)

  monkeypatch.setattr(pipeline, "tokenize_batch", tokenize)
  return calls


def test_producer_exception_with_a_full_queue_does_not_hang_close(voc, monkeypatch):
  """The producer fails while the queue is full (the consumer stopped taking batches, as a run that
  ends): close() must still return."""
  _MEMORY_ROWS[:] = _rows()
  calls = _failing_tokenize(monkeypatch, fail_on_call=4)
  it = pipeline.make_train_iterator(MEMORY, voc, batch_size=8, input_length=12, target_length=4, seed=0, prefetch=2)
  next(it)  # batch 1; the producer makes 2 and 3 (queue full) and fails on 4
  deadline = time.time() + 10
  while len(calls) < 4 and time.time() < deadline:
    time.sleep(0.01)
  assert len(calls) == 4
  time.sleep(0.2)
  _, error = _in_thread(it.close, timeout=5)
  assert error is None, error


@pytest.mark.parametrize("prefetch", [0, 2])
def test_producer_exception_reaches_next_and_skips_nothing(voc, monkeypatch, prefetch):
  """Any exception while making a batch is raised by next(), in the main thread, as itself; the
  iterator is rewound to the last batch returned, so a retry gives the batch that failed."""
  _MEMORY_ROWS[:] = _rows()
  make = lambda: pipeline.make_train_iterator(MEMORY, voc, batch_size=8, input_length=12, target_length=4, seed=0,
                                              prefetch=prefetch)
  with make() as reference:
    expected = [next(reference) for _ in range(3)]
  _failing_tokenize(monkeypatch, fail_on_call=3)

  def run():
    with make() as it:
      next(it), next(it)
      state = it.get_state()
      with pytest.raises(RuntimeError, match="^boom in the producer$"):
        next(it)
      assert it.get_state() == state
      return next(it)

  batch, error = _in_thread(run)
  assert error is None, error
  for k, v in expected[2].items():
    assert (batch[k] == v).all(), k
