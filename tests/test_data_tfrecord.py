"""TFRecord-prepared TFDS datasets (C4 and most of the catalog) read by index, as array_record ones are."""

import os

import numpy as np
import pytest
import tensorflow as tf

from spot_jax.data import pipeline, synthetic, tasks, tfrecord, vocab
from spot_jax.data import preprocessors as pp

CONFIG = "seven_target"  # 64 train + 300 validation examples: quick to build in both formats


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
  """The same synthetic config prepared as array_record and as TFRecord."""
  dirs = {fmt: str(tmp_path_factory.mktemp(fmt)) for fmt in ("array_record", "tfrecord")}
  for fmt, path in dirs.items():
    synthetic.prepare(path, file_format=fmt, configs=[CONFIG])
  tasks.set_data_dir(synthetic.DATASET, None)
  return dirs


def _records(path: str) -> list[bytes]:
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def _write(path: str, payloads) -> None:
  with tf.io.TFRecordWriter(path) as writer:
    for p in payloads:
      writer.write(p)


def test_crc32c_known_answer():
  assert tfrecord.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720, B.4)
  assert tfrecord.crc32c(b"") == 0


def test_reader_matches_tf_data_on_sliced_multi_file_shards(tmp_path):
  rng = np.random.default_rng(0)
  files = []
  for f in range(3):
    payloads = [rng.bytes(int(n)) for n in rng.integers(0, 300, size=20 + 7 * f)]
    path = str(tmp_path / f"part-{f}.tfrecord")
    _write(path, payloads)
    assert _records(path) == payloads
    files.append((path, payloads))
  shards = [tfrecord.Shard(files[0][0], 3, 10), tfrecord.Shard(files[1][0], 0, 27), tfrecord.Shard(files[2][0], 30, 4)]
  expected = files[0][1][3:13] + files[1][1] + files[2][1][30:34]
  reader = tfrecord.TfRecordReader(shards)
  assert len(reader) == len(expected) == 41
  assert [reader[i] for i in range(len(reader))] == expected
  order = rng.permutation(len(expected)).tolist()
  assert reader.read_many(order) == [expected[i] for i in order]
  with pytest.raises(IndexError):
    reader[41]


def test_reader_keeps_few_files_open(tmp_path, monkeypatch):
  monkeypatch.setattr(tfrecord, "_MAX_OPEN_FILES", 2)
  shards = []
  for f in range(5):
    path = str(tmp_path / f"p{f}.tfrecord")
    _write(path, [f"{f}-{i}".encode() for i in range(3)])
    shards.append(tfrecord.Shard(path, 0, 3))
  reader = tfrecord.TfRecordReader(shards)
  assert reader.read_many([14, 0, 7, 3, 12]) == [b"4-2", b"0-0", b"2-1", b"1-0", b"4-0"]
  assert len(reader._files) == 2  # pylint: disable=protected-access


def test_truncated_or_damaged_files_are_named_and_left_alone(tmp_path):
  path = str(tmp_path / "data.tfrecord")
  _write(path, [b"a" * 50, b"b" * 60, b"c" * 70])
  original = open(path, "rb").read()
  truncated = str(tmp_path / "truncated.tfrecord")
  open(truncated, "wb").write(original[:-10])
  with pytest.raises(tfrecord.CorruptedRecordFileError, match="truncated.tfrecord.*truncated"):
    tfrecord.index_records(truncated)
  damaged = bytearray(original)
  damaged[50 + 16 + 1] ^= 0xFF  # the second record's length field
  damaged_path = str(tmp_path / "damaged.tfrecord")
  open(damaged_path, "wb").write(bytes(damaged))
  with pytest.raises(tfrecord.CorruptedRecordFileError, match="offset 66 fails its checksum"):
    tfrecord.TfRecordReader([tfrecord.Shard(damaged_path, 0, 3)])[2]
  assert open(path, "rb").read() == original
  assert len(tfrecord.index_records(path)) == 4


@pytest.mark.parametrize("split", ["train", "validation", "train[:25%]", "train[5:20]+validation[:10]"])
def test_tfds_tfrecord_dataset_reads_like_array_record(data_dirs, split):
  source = tasks.get_task("synth_seven_target").source
  by_format = {fmt: source.open(split, path) for fmt, path in data_dirs.items()}
  assert isinstance(by_format["tfrecord"]._records, tfrecord.TfRecordReader)  # pylint: disable=protected-access
  n = len(by_format["array_record"])
  assert n == len(by_format["tfrecord"]) > 0
  as_python = lambda s, idx: [pp.to_python(dict(ex)) for ex in s.read_many(idx)]
  indices = np.random.default_rng(1).permutation(n).tolist()
  assert as_python(by_format["tfrecord"], indices) == as_python(by_format["array_record"], indices)
  assert pp.to_python(dict(by_format["tfrecord"][n - 1])) == pp.to_python(dict(by_format["array_record"][n - 1]))


def test_pipeline_on_tfrecord_gives_the_same_batches_shards_and_position(data_dirs, tmp_path):
  lines = [ex["inputs"] + " " + ex["targets"] for ex in synthetic.generate(CONFIG, "train")]
  voc = vocab.SentencePieceVocab(vocab.train_sentencepiece(lines, str(tmp_path / "spm"), 40))
  make = lambda fmt, **kw: pipeline.make_train_iterator(
      "synth_seven_target", voc, batch_size=8, input_length=24, target_length=4, seed=3, prefetch=0,
      data_dir=data_dirs[fmt], **kw)
  reference, tf_records = make("array_record"), make("tfrecord")
  for _ in range(12):  # 96 examples: past the end of the 64-example epoch
    a, b = next(reference), next(tf_records)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  state = tf_records.get_state()
  resumed = make("tfrecord")
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["encoder_input_tokens"], next(tf_records)["encoder_input_tokens"])
  seen = []
  for host in range(2):  # per-host shards of one epoch: disjoint, covering
    it = make("tfrecord", process_index=host, process_count=2)
    stream = it._streams[0]  # pylint: disable=protected-access
    seen.append({stream._index(0, p) for p in range(stream.shard_size)})  # pylint: disable=protected-access
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(64))


def test_unreadable_format_still_names_the_fix(data_dirs, monkeypatch):
  """A prepared dataset in a format neither reader handles gets the convert command."""
  import tensorflow_datasets as tfds
  builder = synthetic.SpotSynthetic(config=CONFIG, data_dir=data_dirs["tfrecord"])
  monkeypatch.setattr(type(builder.info), "file_format", property(lambda self: tfds.core.FileFormat.RIEGELI))
  with pytest.raises(tasks.DataNotFoundError, match="tfds convert_format"):
    tasks.get_task("synth_seven_target").source.open("train", data_dirs["tfrecord"])
  assert os.path.exists(builder.data_dir)
