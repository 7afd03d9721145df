"""The 16 x 10 transferability grid of SPoT (sources x targets x seeds), with heatmap and correlation.

  spot-jax grid --config=experiments/transferability_grid.py:size=base --workdir=runs/grid
Needs the library of experiments/library_16_sources.py. Each cell is one target prompt-tuning run
initialised from the source prompt; the baseline (sampled-vocab init) gives the target's task embedding.
"""

from spot_jax import configs
from spot_jax.data import tasks


def get_config(arg=None):
  a = configs.parse_arg(arg, size="base", hf_path="", library="runs/library/prompts", seeds=(0, 1, 2), steps=30000)
  c = configs.base_config()
  configs.set_backbone(c, a.size, a.hf_path)
  c.library.path = a.library
  c.grid.sources = tasks.SPOT_SOURCE_TASKS
  c.grid.targets = tasks.SPOT_TARGET_TASKS
  c.grid.seeds = a.seeds
  c.train.num_train_steps = a.steps
  c.train.embedding_step = 10_000
  return c
