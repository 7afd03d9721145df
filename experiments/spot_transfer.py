"""Generic SPoT, step 2: prompt tuning on a target, initialised from a source prompt run.

  spot-jax train --config=experiments/spot_transfer.py:task=boolq,source_run=runs/src_glue --workdir=runs/boolq
"""

from spot_jax import configs


def get_config(arg=None):
  a = configs.parse_arg(arg, task="boolq", source_run="", which="best", size="base", hf_path="", steps=30000)
  c = configs.base_config()
  configs.set_backbone(c, a.size, a.hf_path)
  c.task = a.task
  c.prompt_init.kind = "checkpoint"
  c.prompt_init.path = a.source_run
  c.prompt_init.which = a.which
  c.train.num_train_steps = a.steps
  return c
