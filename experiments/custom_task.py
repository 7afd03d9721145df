"""Prompt tuning on your own task, read from local files: the pattern for adding any task.

The task is defined in experiments/task_modules/my_tasks.py, a task module: it registers the task
when imported. This config lists that module in `config.data.task_modules`, and the job imports it
before it looks the task up. Files: <data_dir>/my_sentiment/train.jsonl and validation.jsonl, one example per line:
{"sentence": "a gripping film", "label": 1}   (label 0 = negative, 1 = positive)

  spot-jax train --config=experiments/custom_task.py:size=base --config.data.data_dir=/path/to/data \
      --workdir=runs/my_sentiment
"""

import os

from spot_jax import configs


def get_config(arg=None):
  a = configs.parse_arg(arg, size="base", hf_path="", steps=30000)
  c = configs.base_config()
  configs.set_backbone(c, a.size, a.hf_path)
  # The module that registers "my_sentiment", next to this file (a module name works too).
  c.data.task_modules = (os.path.join(os.path.dirname(__file__), "task_modules", "my_tasks.py"),)
  c.task = "my_sentiment"
  c.prompt_init.kind = "class_labels"  # Lester et al.'s best init: label-word embeddings first
  c.train.num_train_steps = a.steps
  return c
