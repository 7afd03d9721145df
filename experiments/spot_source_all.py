"""Generic SPoT source prompt, Table 1 row "All" of Vu et al. (2022): the `spot_all` mixture.

  spot-jax train --config=experiments/spot_source_all.py:size=base --workdir=runs/src_all
Members: every member of the rows above (57 tasks); examples-proportional mixing with T5's cap 2**19.
Validated on `mnli` (`eval_task=` to change). All other settings are experiments/spot_source_glue.py's,
which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=spot_all,eval_task=mnli", arg]))
  return configs.load_experiment(base, overrides)
