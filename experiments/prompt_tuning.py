"""Prompt tuning baseline (Lester et al. 2021) on one target task, T5 1.1 LM-adapted.

  spot-jax train --config=experiments/prompt_tuning.py:task=rte,size=base --workdir=runs/pt_rte
  spot-jax train --config=experiments/prompt_tuning.py:task=rte,steps=1000 ...   # typed arguments
"""

from spot_jax import configs


def get_config(arg=None):
  a = configs.parse_arg(arg, task="rte", size="base", hf_path="", init="sampled_vocab", steps=30000)
  c = configs.base_config()
  configs.set_backbone(c, a.size, a.hf_path)
  c.task = a.task

  # The paper's settings (Lester et al. 2021, sec. 3; Vu et al. 2022, sec. 2.2), as prompt-tuning's gin
  # (prompt_tuning/configs/models/t5_1_1_prompt.gin, runs/prompt_finetune.gin) sets them:
  c.prompt_init.kind = a.init  # sampled vocabulary: 5,000 most frequent tokens
  c.train.prompt_length = 100
  c.train.optimizer = "adafactor"
  c.train.learning_rate = 0.3  # constant
  c.train.adafactor_decay_rate = 0.8
  c.train.clipping_threshold = 1.0
  c.train.weight_decay_rate = 1e-5
  c.train.batch_size = 32
  c.train.num_train_steps = a.steps  # 30K
  c.train.eval_every = 1000  # best checkpoint by validation score
  c.train.checkpoint_every = 1000
  c.train.embedding_step = 0
  return c
