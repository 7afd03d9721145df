"""Targeted SPoT, step 2: retrieve sources for a target by task-embedding similarity, then transfer.

  spot-jax retrieve --config=experiments/targeted_spot.py:task=cb --workdir=runs/retrieve_cb
  spot-jax train --config=experiments/spot_transfer.py:task=cb ... --config.prompt_init.kind=npy \
      --config.prompt_init.path=runs/retrieve_cb/init_top1_<source>.npy
strategy: best_of_top_k (k runs, from init_top<r>_<source>.npy), weighted_average (one run from
init_weighted_average_top<k>.npy, the similarity-weighted average), mixture (retrieve tunes a prompt
on the top-k sources' data + the target's for retrieval.mixture_steps steps -> init_mixture_top<k>.npy,
then one transfer run from it).
"""

from spot_jax import configs


def get_config(arg=None):
  a = configs.parse_arg(arg, task="cb", size="base", hf_path="", library="runs/library/prompts",
                        measure="average_tokens_cosine", strategy="best_of_top_k", k=1, embedding_step=10000)
  c = configs.base_config()
  configs.set_backbone(c, a.size, a.hf_path)
  c.task = a.task
  c.library.path = a.library
  c.retrieval.measure = a.measure
  c.retrieval.strategy = a.strategy
  c.retrieval.k = a.k
  c.train.embedding_step = a.embedding_step
  return c
