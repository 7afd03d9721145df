"""Targeted SPoT, step 1: the prompt library over the 16 source tasks of the transferability study.

  spot-jax library build --config=experiments/library_16_sources.py:size=base --workdir=runs/library
Each source gets one prompt-tuning run: key = the prompt after `embedding_step` steps (task
embedding), value = the best prompt by the source's validation score.
"""

from spot_jax import configs
from spot_jax.data import tasks


def get_config(arg=None):
  a = configs.parse_arg(arg, size="base", hf_path="", library="runs/library/prompts", steps=30000,
                        embedding_step=10000)
  c = configs.base_config()
  configs.set_backbone(c, a.size, a.hf_path)
  c.library.path = a.library
  c.library.sources = tasks.SPOT_SOURCE_TASKS
  c.train.num_train_steps = a.steps
  c.train.embedding_step = a.embedding_step
  return c
