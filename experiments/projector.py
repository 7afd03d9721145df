"""Cross-model prompt transfer with a projector (Su et al., NAACL 2022), T5 1.1 LM-adapted small -> base.

  spot-jax library build --config=experiments/library_16_sources.py:size=small,library=runs/lib_small \
      --workdir=runs/lib_small_runs                          # source-model prompts (and, for distance,
  spot-jax library build ... size=base,library=runs/lib_base  # the target model's)
  spot-jax project --config=experiments/projector.py:source=small,target=base,task=mnli --workdir=runs/proj

The projector (flattened prompt -> Dense(768) -> tanh -> Dense -> [100, d_target] -> LayerNorm) is
trained on one task by task tuning through the frozen target (Su et al.'s better objective;
`objective=distance` fits source/target prompt pairs instead), then every transfer task's source
prompt is projected and used zero-shot and as the init of target prompt tuning. Projector training:
AdamW lr 5e-3, eps 1e-6, batch 16, as their code. Transfer tasks: NLI (the projector is trained on
MNLI) and sentiment (another task type).
"""

import ml_collections

from spot_jax import configs


def get_config(arg=None):
  a = configs.parse_arg(arg, source="small", target="base", source_hf_path="", hf_path="", objective="task",
                        task="mnli", source_library="", target_library="", hidden=768, steps=10000,
                        init_steps=30000)
  c = configs.base_config()
  configs.set_backbone(c, a.target, a.hf_path)  # c.model: the frozen target model
  c.source_model = ml_collections.ConfigDict()
  c.source_model.hf_path = a.source_hf_path or f"checkpoints/t5-{a.source}-lm-adapt"  # checks the library
  c.task = a.task  # objective=task: the projector's training task (its source prompt is the input)

  c.projector = ml_collections.ConfigDict()
  c.projector.objective = a.objective  # task | distance
  c.projector.hidden_size = a.hidden
  c.projector.layer_norm = True  # LayerNorm per output token, as their code; keeps projections prompt-sized
  c.projector.source_library = a.source_library or f"runs/lib_{a.source}"
  c.projector.target_library = a.target_library or (  # target-model prompts: distance pairs; distances reported
      f"runs/lib_{a.target}" if a.objective == "distance" else "")
  c.projector.distance_tasks = ()  # distance: pairs of these tasks (empty = every task in both libraries)
  c.projector.transfer_tasks = ("mnli", "qnli", "docnli", "sst2", "yelp_polarity")
  c.projector.init_transfer = a.init_steps > 0
  c.projector.train = configs.train_defaults()
  c.projector.train.optimizer = "adamw"
  c.projector.train.learning_rate = 5e-3
  c.projector.train.batch_size = 16
  c.projector.train.num_train_steps = a.steps
  c.projector.train.eval_every = 1000  # zero-shot score of projector(source prompt of config.task)

  c.train.num_train_steps = max(a.init_steps, 1)  # target prompt tuning from the projected prompt
  c.train.embedding_step = 0
  return c
