"""Data layer: task registry, mixtures, tokenized per-host batches, offline synthetic tasks.

    from spot_jax.data import pipeline, tasks, vocab
    v = vocab.SentencePieceVocab("spiece.model")
    it = pipeline.make_train_iterator("rte", v, batch_size=32, input_length=512, target_length=8, seed=0)

Importing `spot_jax.data.synthetic` (done lazily by `get_task` for `synth_*` names) registers the
synthetic tasks; TFDS and TensorFlow are imported only when data is read.
"""

from spot_jax.data.mixtures import Mixture, get_mixture, list_mixtures, register_mixture
from spot_jax.data.pipeline import BatchIterator, load_eval_examples, make_train_iterator
from spot_jax.data.tasks import Task, get_task, list_tasks, register_task
from spot_jax.data.vocab import SentencePieceVocab, train_sentencepiece

__all__ = [
    "BatchIterator", "Mixture", "SentencePieceVocab", "Task", "get_mixture", "get_task", "list_mixtures",
    "list_tasks", "load_eval_examples", "make_train_iterator", "register_mixture", "register_task",
    "train_sentencepiece",
]
