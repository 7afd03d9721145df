"""Generic SPoT source prompt, Table 1 row "MRQA (6 tasks)" of Vu et al. (2022): the `spot_mrqa` mixture.

  spot-jax train --config=experiments/spot_source_mrqa.py:size=base --workdir=runs/src_mrqa
Members: SQuAD, NewsQA, TriviaQA, SearchQA, HotpotQA, NaturalQuestions (MRQA versions); examples-
proportional mixing with T5's cap 2**19. Validated on `mrqa_squad` (`eval_task=` to change). All other
settings are experiments/spot_source_glue.py's, which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=spot_mrqa,eval_task=mrqa_squad", arg]))
  return configs.load_experiment(base, overrides)
