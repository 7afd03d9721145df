"""Generic SPoT source prompt, Table 1 row "Translation" of Vu et al. (2022): the `spot_translation` mixture.

  spot-jax train --config=experiments/spot_source_translation.py:size=base --workdir=runs/src_translation
Members: WMT En-De, En-Fr, En-Ro (T5's WMT tasks); examples-proportional mixing with T5's cap 2**19.
Validated on `wmt16_enro` (`eval_task=` to change). All other settings are
experiments/spot_source_glue.py's, which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=spot_translation,eval_task=wmt16_enro", arg]))
  return configs.load_experiment(base, overrides)
