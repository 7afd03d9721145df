"""SentencePiece vocabulary with T5's id conventions, and a trainer for tiny offline vocabularies.

Why this exists: every T5 checkpoint assumes pad=0, eos=1, unk=2 and no BOS, and its SentencePiece
model is a plain `.model` file. The pipeline needs exactly three things from a vocabulary — encode
text without EOS (the pipeline appends it after truncation, as T5 does), decode ids up to EOS, and
the vocabulary size — so this wraps `sentencepiece` directly instead of pulling in seqio.

The offline quickstart and the tests have no T5 vocabulary to download, so `train_sentencepiece`
trains a small unigram model with the same id layout from a few hundred lines of text.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

import sentencepiece as spm
from etils import epath

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2


class SentencePieceVocab:
  """A SentencePiece `.model` with T5's ids (pad 0, eos 1, unk 2, no BOS).

  `extra_ids` appends T5's sentinel ids (`<extra_id_0>` is the *last* id, as in T5); the released
  T5 vocabulary is used with `extra_ids=100` (32000 pieces + 100 = 32100; checkpoints pad the
  embedding to 32128).
  """

  pad_id: int = PAD_ID
  eos_id: int = EOS_ID
  unk_id: int = UNK_ID

  def __init__(self, model_path: str, extra_ids: int = 0):
    if not epath.Path(model_path).exists():  # local or gs:// (read through etils.epath)
      raise FileNotFoundError(
          f"SentencePiece model {model_path!r} does not exist. Pass the path of a `.model` file "
          "(the T5 vocabulary's `spiece.model`, or one made by spot_jax.data.vocab.train_sentencepiece).")
    self.model_path = str(model_path)
    self.extra_ids = int(extra_ids)
    self._sp = spm.SentencePieceProcessor(model_proto=epath.Path(model_path).read_bytes())
    if (self._sp.pad_id(), self._sp.eos_id()) != (PAD_ID, EOS_ID):
      raise ValueError(
          f"{model_path!r} has pad_id={self._sp.pad_id()}, eos_id={self._sp.eos_id()}; T5 needs pad 0 and "
          "eos 1. Retrain it with train_sentencepiece (or sentencepiece's --pad_id=0 --eos_id=1 --unk_id=2 "
          "--bos_id=-1).")
    self._num_pieces = self._sp.get_piece_size()

  @property
  def vocab_size(self) -> int:
    """Number of ids the model must embed: SentencePiece pieces plus sentinel extra ids."""
    return self._num_pieces + self.extra_ids

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without EOS (the pipeline appends EOS after truncation)."""
    return self._sp.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` over many strings. A plain loop: for batch-sized lists of short texts it beat
    sentencepiece's batched call here (thread pool start-up costs more than it saves)."""
    encode = self._sp.encode
    return [encode(t) for t in texts]

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids` up to the first EOS; padding (0) and sentinel ids are skipped."""
    kept = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      if i == PAD_ID or i >= self._num_pieces:
        continue
      kept.append(i)
    return self._sp.decode(kept)

  def sentinel_id(self, index: int = 0) -> Optional[int]:
    """Id of T5's sentinel `<extra_id_{index}>`, or None when this vocabulary has no such sentinel.

    With `extra_ids` (T5's layout) the sentinels count down from the last id: `<extra_id_0>` is
    `vocab_size - 1`, i.e. 32099 in T5's 32000 + 100 ids. A SentencePiece model that defines the piece
    `<extra_id_{index}>` itself (a user-defined symbol) gives that piece's id.
    """
    if index < 0:
      raise ValueError(f"Sentinel index must be >= 0; got {index}.")
    if index < self.extra_ids:
      return self.vocab_size - 1 - index
    piece = f"<extra_id_{index}>"
    i = self._sp.piece_to_id(piece)
    return i if i != UNK_ID and self._sp.id_to_piece(i) == piece else None

  def id_to_piece(self, i: int) -> str:
    if i >= self._num_pieces:
      return f"<extra_id_{self.vocab_size - 1 - i}>"
    return self._sp.id_to_piece(int(i))

  def __repr__(self) -> str:
    return f"SentencePieceVocab({self.model_path!r}, vocab_size={self.vocab_size})"


def train_sentencepiece(lines: Iterable[str], model_prefix: str, vocab_size: int) -> str:
  """Trains a unigram SentencePiece model with T5's id layout; returns the `.model` path.

  Deterministic (one thread, no sentence sampling or shuffling), so the same lines give the same
  file. `vocab_size` is a soft limit: on tiny corpora SentencePiece may find fewer pieces and
  returns a smaller vocabulary instead of failing. Read the real size from
  `SentencePieceVocab(path).vocab_size`.
  """
  lines = [l.strip() for l in lines if l and l.strip()]
  if not lines:
    raise ValueError("train_sentencepiece got no non-empty lines; pass the text the vocabulary should cover.")
  os.makedirs(os.path.dirname(os.path.abspath(model_prefix)), exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines),
      model_prefix=model_prefix,
      vocab_size=int(vocab_size),
      model_type="unigram",
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      character_coverage=1.0,
      hard_vocab_limit=False,
      num_threads=1,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      minloglevel=2,
  )
  return model_prefix + ".model"
