"""Every experiment config loads, and the custom-task example yields real tokenized examples."""

import glob
import json
import os

import pytest

from spot_jax import configs, errors
from spot_jax.data import mixtures, pipeline, tasks, vocab as vocab_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))
REQUIRED_ARGS = {"spot_transfer.py": "source_run=runs/src_glue"}  # what the file's usage line gives


@pytest.mark.parametrize("path", EXPERIMENTS)
def test_config_is_valid_and_names_known_tasks(path):
  config = configs.load_experiment(path, REQUIRED_ARGS.get(os.path.basename(path)))
  configs.validate(config)  # every field a job reads holds an allowed value
  tasks.import_task_modules(config.data.task_modules)  # as a job does first
  named = [config.get("task"), config.get("eval_task"), *config.library.sources, *config.grid.sources,
           *config.grid.targets, *config.get("projector", {}).get("transfer_tasks", ())]
  unknown = [n for n in filter(None, named) if n not in tasks.list_tasks() and not mixtures.is_mixture(n)]
  assert not unknown, f"{os.path.basename(path)} names tasks nobody registers: {unknown}"


def test_typed_experiment_arguments():
  a = configs.parse_arg("steps=1000,fast,rate=0.5,seeds=3:4", steps=30000, fast=False, rate=0.3, seeds=(0, 1, 2),
                        task="rte")
  assert (a.steps, a.fast, a.rate, a.seeds, a.task) == (1000, True, 0.5, (3, 4), "rte")
  assert configs.parse_arg("fast=false", fast=True).fast is False
  for arg, message in (("steps=lots", "steps='lots' is not int"), ("fast=maybe", "fast='maybe' is not bool"),
                       ("size", "is not key=value"), ("sise=base", "Unknown config argument 'sise'")):
    with pytest.raises(errors.ConfigError, match=message):
      configs.parse_arg(arg, steps=30000, fast=False, size="base")
  grid = configs.load_experiment(os.path.join(ROOT, "experiments", "transferability_grid.py"), "seeds=5:6,steps=10")
  assert (grid.grid.seeds, grid.train.num_train_steps) == ((5, 6), 10)


def test_configs_import_only_ml_collections():
  # Loading configs.py and every experiment file must not pull in jax, flax, TensorFlow, Orbax or the trainer,
  # nor register a config's own task (experiments/custom_task.py's module is a job's to import).
  import subprocess
  import sys
  code = ("import sys; from spot_jax import configs; [configs.load_experiment(p) for p in sys.argv[1:]]; "
          "heavy = [m for m in ('jax', 'flax', 'tensorflow', 'orbax', 'spot_jax.train') if m in sys.modules]; "
          "registry = sys.modules.get('spot_jax.data.registry'); "
          "heavy += ['my_sentiment registered'] if registry and registry.is_registered('my_sentiment') else []; "
          "print(heavy); sys.exit(1 if heavy else 0)")
  result = subprocess.run([sys.executable, "-c", code, *EXPERIMENTS], capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0, result.stdout + result.stderr


def test_paper_defaults():
  config = configs.load_experiment(os.path.join(ROOT, "experiments", "prompt_tuning.py"), "task=rte,size=xxl")
  assert (config.train.prompt_length, config.train.learning_rate, config.train.batch_size) == (100, 0.3, 32)
  assert (config.train.adafactor_decay_rate, config.train.clipping_threshold) == (0.8, 1.0)
  assert config.model.hf_path.endswith("t5-xxl-lm-adapt") and config.model.dtype == "bfloat16"
  grid = configs.load_experiment(os.path.join(ROOT, "experiments", "transferability_grid.py"))
  assert len(grid.grid.sources) == 16 and len(grid.grid.targets) == 10


def test_custom_task_example_reads_local_files(tmp_path):
  config = configs.load_experiment(os.path.join(ROOT, "experiments", "custom_task.py"))
  assert config.data.task_modules == (os.path.join(ROOT, "experiments", "task_modules", "my_tasks.py"),)
  tasks.import_task_modules(config.data.task_modules)  # what a job does first
  assert tasks.get_task(config.task).source.directory == "my_sentiment"
  directory = tmp_path / "my_sentiment"
  directory.mkdir()
  rows = [{"sentence": f"film number {i} was {'great' if i % 2 else 'dull'}", "label": i % 2} for i in range(20)]
  for split in ("train", "validation"):
    (directory / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
  model = vocab_lib.train_sentencepiece([r["sentence"] for r in rows] * 5 + ["negative positive sentence"] * 5,
                                        str(tmp_path / "spm"), 40)
  v = vocab_lib.SentencePieceVocab(model)
  it = pipeline.make_train_iterator("my_sentiment", v, batch_size=4, input_length=16, target_length=12, seed=0,
                                    data_dir=str(tmp_path))
  batch = next(it)
  it.close()
  assert batch["encoder_input_tokens"].shape == (4, 16)
  texts = {v.decode(list(t)) for t in batch["decoder_target_tokens"]}
  assert texts <= {"negative", "positive"}
