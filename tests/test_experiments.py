"""Every experiment config loads, and the custom-task example yields real tokenized examples."""

import glob
import json
import os

import pytest

from spot_jax import configs
from spot_jax.data import pipeline, tasks, vocab as vocab_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))))
def test_config_loads_with_known_fields(path):
  config = configs.load_experiment(path)
  assert config.train.learning_rate > 0
  if config.get("task"):
    tasks.get_task(config.task) if config.task in tasks.list_tasks() else None


def test_configs_import_only_ml_collections():
  # Loading an experiment file must not pull in jax, TensorFlow, Orbax or the trainer.
  import subprocess
  import sys
  code = ("import sys, spot_jax.configs; heavy = [m for m in ('jax', 'tensorflow', 'orbax', 'spot_jax.train') "
          "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
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
  assert not tasks.is_registered("my_sentiment")  # loading a config registers nothing
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
