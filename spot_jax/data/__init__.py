"""Data layer: tasks (registry, sources, built-in catalogue), mixtures, tokenized per-host batches.

    from spot_jax.data import pipeline, tasks, vocab
    v = vocab.SentencePieceVocab("spiece.model")
    it = pipeline.make_train_iterator("rte", v, batch_size=32, input_length=512, target_length=8, seed=0)

Importing the package registers the built-in tasks (`catalog`) and mixtures; other task modules
register theirs when imported: a run imports those its config lists in `config.data.task_modules`
(`tasks.import_task_modules`), e.g. `spot_jax.data.synthetic`, the offline synthetic tasks.
TFDS and TensorFlow are imported only when data is read.
"""

from spot_jax.data.mixtures import Mixture, get_mixture, list_mixtures, register_mixture
from spot_jax.data.pipeline import BatchIterator, load_eval_examples, make_train_iterator
from spot_jax.data.tasks import Task, get_task, import_task_modules, list_tasks, register_task
from spot_jax.data.vocab import SentencePieceVocab, train_sentencepiece

__all__ = [
    "BatchIterator", "Mixture", "SentencePieceVocab", "Task", "get_mixture", "get_task", "import_task_modules",
    "list_mixtures", "list_tasks", "load_eval_examples", "make_train_iterator", "register_mixture",
    "register_task", "train_sentencepiece",
]
