"""Generic SPoT source prompt, Table 1 row "Summarization" of Vu et al. (2022): the `spot_summarization` mixture.

  spot-jax train --config=experiments/spot_source_summarization.py:size=base --workdir=runs/src_summarization
Members: AESLC, BillSum, Gigaword, CNN/DailyMail, Multi-News, SAMSum, Newsroom; examples-proportional
mixing with T5's cap 2**19. Validated on `cnn_dailymail` (`eval_task=` to change). All other settings
are experiments/spot_source_glue.py's, which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=spot_summarization,eval_task=cnn_dailymail", arg]))
  return configs.load_experiment(base, overrides)
