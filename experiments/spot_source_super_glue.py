"""Generic SPoT source prompt, Table 1 row "SuperGLUE (8 tasks)" of Vu et al. (2022): the `super_glue` mixture.

  spot-jax train --config=experiments/spot_source_super_glue.py:size=base --workdir=runs/src_super_glue
Members: BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC (T5's formats); examples-proportional mixing
with T5's cap 2**19. Validated on `boolq` (`eval_task=` to change). All other settings are
experiments/spot_source_glue.py's, which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=super_glue,eval_task=boolq", arg]))
  return configs.load_experiment(base, overrides)
