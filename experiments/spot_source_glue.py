"""Generic SPoT, step 1: learn one source prompt on a source task or mixture (Vu et al. 2022, sec. 3).

  spot-jax train --config=experiments/spot_source_glue.py:source=glue,size=base --workdir=runs/src_glue
`source` is a task or a mixture. The rows of the paper's Table 1: the single tasks `c4` (prefix LM),
`mnli`, `squad`, and the mixtures `glue` (GLUE-8), `super_glue`, `spot_nli`, `spot_paraphrase`,
`spot_sentiment`, `spot_mrqa`, `spot_rainbow`, `spot_translation`, `spot_summarization`, `spot_gem`,
`spot_all` (spot_jax.data.mixtures.TABLE_1_MIXTURES); experiments/spot_source_<mixture>.py run each.
The prompt is validated on `eval_task` (MNLI matched by default) to pick the best checkpoint.
Then transfer with experiments/spot_transfer.py (init from this run's best prompt).
"""

from spot_jax import configs


def get_config(arg=None):
  a = configs.parse_arg(arg, source="glue", size="base", hf_path="", eval_task="mnli", steps=262144)
  c = configs.base_config()
  configs.set_backbone(c, a.size, a.hf_path)
  c.task = a.source
  c.eval_task = a.eval_task
  c.prompt_init.kind = "sampled_vocab"
  c.train.num_train_steps = a.steps  # source prompts are trained longer than target prompts
  c.train.embedding_step = 10_000  # also keep an early prompt: usable as this source's task embedding
  return c
