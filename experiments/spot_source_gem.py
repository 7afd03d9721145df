"""Generic SPoT source prompt, Table 1 row "GEM" of Vu et al. (2022): the `spot_gem` mixture.

  spot-jax train --config=experiments/spot_source_gem.py:size=base --workdir=runs/src_gem
Members: CommonGen, DART, E2E, SGD, WebNLG, WikiAuto+ASSET+TURK, XSum, WikiLingua; examples-proportional
mixing with T5's cap 2**19. Validated on `gem_xsum` (`eval_task=` to change). All other settings are
experiments/spot_source_glue.py's, which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=spot_gem,eval_task=gem_xsum", arg]))
  return configs.load_experiment(base, overrides)
