"""Generic SPoT source prompt, Table 1 row "Paraphrasing/semantic similarity (4 tasks)" of Vu et al. (2022):
the `spot_paraphrase` mixture.

  spot-jax train --config=experiments/spot_source_paraphrase.py:size=base --workdir=runs/src_paraphrase
Members: CxC, MRPC, QQP, STS-B; examples-proportional mixing with T5's cap 2**19. Validated on `qqp`
(`eval_task=` to change). All other settings are experiments/spot_source_glue.py's, which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=spot_paraphrase,eval_task=qqp", arg]))
  return configs.load_experiment(base, overrides)
