"""SentencePiece vocabulary with T5's ids; the tiny-vocabulary trainer is deterministic."""

import pytest

from spot_jax.data import vocab

LINES = [f"the {w} sat on mat number {i}" for i, w in enumerate(["cat", "dog", "fox", "owl"] * 60)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  return vocab.train_sentencepiece(LINES, str(tmp_path_factory.mktemp("spm") / "tiny"), 60)


def test_t5_special_ids(model_path):
  v = vocab.SentencePieceVocab(model_path)
  assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
  assert [v.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
  assert v.vocab_size <= 60


def test_encode_has_no_eos_and_decode_stops_at_eos(model_path):
  v = vocab.SentencePieceVocab(model_path)
  ids = v.encode("the cat sat on mat number 7")
  assert ids and vocab.EOS_ID not in ids and vocab.PAD_ID not in ids
  assert v.decode(ids) == "the cat sat on mat number 7"
  assert v.decode([0] + ids + [1] + v.encode("dog") + [0, 0]) == "the cat sat on mat number 7"
  assert v.encode_batch(["the dog", "owl"]) == [v.encode("the dog"), v.encode("owl")]


def test_extra_ids_extend_the_vocabulary_and_are_skipped_when_decoding(model_path):
  v = vocab.SentencePieceVocab(model_path, extra_ids=3)
  base = vocab.SentencePieceVocab(model_path).vocab_size
  assert v.vocab_size == base + 3
  assert v.id_to_piece(base + 2) == "<extra_id_0>"  # T5 counts sentinels down from the last id
  assert v.decode(v.encode("the owl") + [base]) == "the owl"


def test_training_is_deterministic(model_path, tmp_path):
  again = vocab.SentencePieceVocab(vocab.train_sentencepiece(LINES, str(tmp_path / "again"), 60))
  first = vocab.SentencePieceVocab(model_path)
  assert [again.id_to_piece(i) for i in range(again.vocab_size)] == [
      first.id_to_piece(i) for i in range(first.vocab_size)]


def test_errors_say_what_to_pass(tmp_path):
  with pytest.raises(FileNotFoundError, match="train_sentencepiece"):
    vocab.SentencePieceVocab(str(tmp_path / "missing.model"))
  with pytest.raises(ValueError, match="no non-empty lines"):
    vocab.train_sentencepiece(["", "  "], str(tmp_path / "m"), 60)
