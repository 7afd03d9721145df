"""A tiny offline world for CLI tests: synthetic TFDS data, a SentencePiece vocab and a random tiny HF
backbone (holding spiece.model), plus `run_cli` to call `spot-jax` in a subprocess on it."""

import dataclasses
import os
import shutil
import subprocess
import sys

import jax

from spot_jax.checkpoints import hf
from spot_jax.data import synthetic, vocab as vocab_lib
from spot_jax.models import t5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Shapes small enough for a subprocess run of a few steps in seconds.
# The task modules every test config may need: the synthetic families and experiments/custom_task.py's.
TASK_MODULES = ("spot_jax.data.synthetic", os.path.join(ROOT, "experiments", "task_modules", "my_tasks.py"))
SMALL = (f"--config.data.task_modules={TASK_MODULES!r}", "--config.data.input_length=32",
         "--config.data.target_length=8", "--config.train.batch_size=8", "--config.train.prompt_length=4",
         "--config.train.log_every=2", "--config.data.eval_max_examples=16", "--config.data.eval_batch_size=16")


@dataclasses.dataclass(frozen=True)
class World:
  base: str
  data_dir: str
  backbone: str


def make_world(base: str) -> World:
  data_dir = os.path.join(base, "data")
  synthetic.prepare(data_dir)
  model_file = vocab_lib.train_sentencepiece(synthetic.corpus_lines(data_dir, per_task=50),
                                             os.path.join(base, "spm"), 128)
  vocab = vocab_lib.SentencePieceVocab(model_file)
  cfg = t5.get_config("tiny", vocab_size=vocab.vocab_size, d_model=32, d_ff=64, num_heads=2, d_kv=16)
  backbone = os.path.join(base, "backbone")
  hf.save_hf_t5(cfg, t5.init_params(cfg, jax.random.key(0)), backbone)
  shutil.copy(model_file, os.path.join(backbone, "spiece.model"))
  return World(base, data_dir, backbone)


def cli_command(world: World, *args: str) -> list[str]:
  """The `spot-jax` command line; commands with a --config get the small shapes and the world's data."""
  command = [sys.executable, "-m", "spot_jax.cli"]
  for arg in args:  # the small shapes right after --config, so the test's own overrides come later and win
    command.append(arg)
    if arg.startswith("--config="):
      command += [*SMALL, f"--config.data.data_dir={world.data_dir}"]
  return command


def cli_env(world: World) -> dict:
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", TFDS_DATA_DIR=world.data_dir)


# Runs the CLI under a file-size limit: a write past it fails with EFBIG, as on a full disk.
_LIMITED = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({0}, {0})); "
            "sys.argv = sys.argv[:1] + sys.argv[1:]; runpy.run_module('spot_jax.cli', run_name='__main__')")


def run_cli(world: World, *args: str, timeout: int = 600, file_size_limit: int = 0) -> subprocess.CompletedProcess:
  command = cli_command(world, *args)
  if file_size_limit:
    command[1:3] = ["-c", _LIMITED.format(file_size_limit)]
  return subprocess.run(command, capture_output=True, text=True, env=cli_env(world), timeout=timeout, cwd=ROOT)


def workdir_snapshot(directory) -> dict:
  """Every file's bytes under `directory`, but the lock file (its owner record changes per claim)."""
  from spot_jax.checkpoints import workdir as workdir_lib
  return {os.path.relpath(os.path.join(d, f), directory): open(os.path.join(d, f), "rb").read()
          for d, _, files in os.walk(directory) for f in files if f != workdir_lib.LOCK_FILE}


def register_yes_no_task(world: World, name: str, rows: int) -> vocab_lib.SentencePieceVocab:
  """An in-memory classification task `name` ('no'/'yes'; label 1 on every third row) and the
  world's vocabulary, in whose pieces neither label word repeats a token."""
  from spot_jax.data import preprocessors as pp
  from spot_jax.data import tasks
  labels = ("no", "yes")
  make = lambda split: [{"sentence": f"review number {i}", "label": int(i % 3 == 0)} for i in range(rows)]
  tasks.register_task(tasks.Task(name, tasks.InMemorySource(name, make),
                                 pp.classification(name, [("sentence", "sentence")], labels), ("accuracy",),
                                 label_words=labels, postprocessor="label"), overwrite=True)
  return vocab_lib.SentencePieceVocab(os.path.join(world.backbone, "spiece.model"))


def error_lines(stderr: str) -> list[str]:
  """stderr without the start-up noise TensorFlow/XLA print before logging is set up."""
  noise = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ", "E0000 ")
  return [line for line in stderr.splitlines() if line.strip() and not line.startswith(noise)]
