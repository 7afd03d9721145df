"""Prompt tuning baseline (Lester et al. 2021) on one target task, T5 1.1 LM-adapted.

  spot-jax train --config=experiments/prompt_tuning.py:task=rte,size=base --workdir=runs/pt_rte
Paper settings: prompt length 100, Adafactor lr 0.3 (decay 0.8, clip 1.0), batch 32, 30K steps,
sampled-vocabulary init, best checkpoint by validation score.
"""

from spot_jax import configs


def get_config(arg=None):
  a = configs.parse_arg(arg, task="rte", size="base", hf_path="", init="sampled_vocab", steps="30000")
  c = configs.base_config()
  configs.set_backbone(c, a["size"], a["hf_path"])
  c.task = a["task"]
  c.prompt_init.kind = a["init"]
  c.train.num_train_steps = int(a["steps"])
  c.train.embedding_step = 0
  return c
