"""Prompt tuning on your own task, read from local files: the pattern for adding any task.

Files: <data_dir>/my_sentiment/train.jsonl and validation.jsonl (or .tsv/.csv with a header row),
one example per line: {"sentence": "a gripping film", "label": 1}   (label 0 = negative, 1 = positive)

  spot-jax train --config=experiments/custom_task.py:size=base --config.data.data_dir=/path/to/data \
      --workdir=runs/my_sentiment

The task is registered when this config is loaded (re-loading replaces the definition).
For a TFDS dataset use `tasks.TfdsSource(...)` instead of `LocalFileSource` (see spot_jax/data/tasks.py).
"""

from spot_jax import configs
from spot_jax.data import preprocessors, tasks

LABEL_WORDS = ("negative", "positive")

tasks.register_task(tasks.Task(
    name="my_sentiment",
    source=tasks.LocalFileSource("my_sentiment", (("sentence", "the text"), ("label", "0 negative, 1 positive"))),
    preprocessor=preprocessors.classification("my_sentiment", (("sentence", "sentence"),), LABEL_WORDS),
    metric_names=("accuracy",),
    label_words=LABEL_WORDS,
    postprocessor="label",
    description="Example local-file task (experiments/custom_task.py).",
), overwrite=True)


def get_config(arg=None):
  a = configs.parse_arg(arg, size="base", hf_path="", steps="30000")
  c = configs.base_config()
  configs.set_backbone(c, a["size"], a["hf_path"])
  c.task = "my_sentiment"
  c.prompt_init.kind = "class_labels"  # Lester et al.'s best init: label-word embeddings first
  c.train.num_train_steps = int(a["steps"])
  return c
