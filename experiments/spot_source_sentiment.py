"""Generic SPoT source prompt, Table 1 row "Sentiment analysis (5 tasks)" of Vu et al. (2022):
the `spot_sentiment` mixture.

  spot-jax train --config=experiments/spot_source_sentiment.py:size=base --workdir=runs/src_sentiment
Members: GoEmotions, IMDB, Sentiment140, Yelp-2, CR (prompt-tuning's sentiment.py); examples-
proportional mixing with T5's cap 2**19. Validated on `yelp_polarity` (`eval_task=` to change). All
other settings are experiments/spot_source_glue.py's, which this reuses.
"""

import os

from spot_jax import configs


def get_config(arg=None):
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spot_source_glue.py")
  overrides = ",".join(filter(None, ["source=spot_sentiment,eval_task=yelp_polarity", arg]))
  return configs.load_experiment(base, overrides)
