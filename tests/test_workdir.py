"""A workdir belongs to one run (checkpoints/workdir.py + the trainer): identity, lock, fresh starts."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from spot_jax import configs, errors, jobs, train
from spot_jax.checkpoints import fingerprint
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.checkpoints import workdir as workdir_lib
from spot_jax.models import prompt as prompt_lib
from spot_jax.models import t5
from tests import cli_world as world_lib
from tests import train_fixtures as fx


@pytest.fixture(scope="module")
def tiny():
  return fx.tiny_model()


def _train(tiny, workdir, frozen=None, **overrides):
  model_cfg, params = tiny
  return train.train(fx.small_config(**overrides), str(workdir), model_config=model_cfg,
                     frozen_params=params if frozen is None else frozen, train_iter=fx.ArrayIterator(8),
                     prompt_init=prompt_lib.random_uniform(), verbose=False)


def test_a_different_config_is_refused_and_nothing_is_touched(tiny, tmp_path):
  _train(tiny, tmp_path / "run", num_train_steps=4, checkpoint_every=2)
  before = world_lib.workdir_snapshot(tmp_path / "run")
  for change, named in (({"seed": 1}, "train.seed: 0 in the workdir, 1 now"),
                        ({"learning_rate": 0.1}, "train.learning_rate: 0.3 in the workdir, 0.1 now"),
                        ({"num_train_steps": 6}, "train.num_train_steps: 4 in the workdir, 6 now")):
    with pytest.raises(errors.WorkdirError, match="holds a run made with different settings") as e:
      _train(tiny, tmp_path / "run", **{"num_train_steps": 4, "checkpoint_every": 2, **change})
    assert named in str(e.value)
    suggestion = str(e.value).rsplit("--config.train.allow_changes=", 1)[1]
    assert next(iter(change)) in suggestion.split(",")
    assert world_lib.workdir_snapshot(tmp_path / "run") == before
  # The way out for a longer run: name the field; the change is recorded.
  longer = _train(tiny, tmp_path / "run", num_train_steps=6, checkpoint_every=2, allow_changes="num_train_steps")
  assert longer.step == 6
  record = json.loads((tmp_path / "run" / "run.json").read_text())
  assert record["identity"]["train"]["num_train_steps"] == 6
  assert record["changes"][0]["fields"] == {"train.num_train_steps": [4, 6]}


def test_another_frozen_model_or_prompt_length_can_never_continue(tiny, tmp_path):
  model_cfg, params = tiny
  _train(tiny, tmp_path / "run")
  other = t5.init_params(model_cfg, jax.random.key(7))
  with pytest.raises(errors.WorkdirError, match="frozen_model cannot change within a run"):
    _train(tiny, tmp_path / "run", frozen=other, allow_changes="frozen_model")
  with pytest.raises(errors.WorkdirError, match="train.prompt_length cannot change"):
    _train(tiny, tmp_path / "run", prompt_length=6, allow_changes="prompt_length,initial_prompt_digest")


def test_record_holds_the_frozen_model_fingerprint(tiny, tmp_path):
  model_cfg, params = tiny
  _train(tiny, tmp_path / "run")
  record = workdir_lib.read_record(tmp_path / "run")
  assert record["kind"] == "train"
  assert record["identity"]["frozen_model"] == fingerprint.model_fingerprint(model_cfg, params)


def test_config_values_are_refused_before_any_file(tiny, tmp_path):
  cases = {"log_every": 0, "checkpoint_every": 0, "grad_accum_steps": 0, "num_train_steps": -3, "prompt_length": 0,
           "learning_rate": 0.0, "keep_checkpoints": 0, "mesh_shape": (0, 1), "embedding_step": 99,
           "adafactor_decay_rate": 1.5}
  for field, value in cases.items():
    with pytest.raises(errors.ConfigError, match=f"config.train.{field} = "):
      _train(tiny, tmp_path / field, **{field: value})
    assert not (tmp_path / field).exists()
  with pytest.raises(errors.ConfigError, match="batch_size = 8 is not divisible by config.train.grad_accum_steps = 3"):
    _train(tiny, tmp_path / "accum", grad_accum_steps=3)


@pytest.mark.parametrize("section,field,value", [
    ("data", "input_length", 0), ("data", "eval_batch_size", 0), ("data", "eval_max_examples", -1),
    ("data", "target_length", 0), ("prompt_init", "kind", "vocab"), ("prompt_init", "population", 0),
    ("model", "dtype", "float16"), ("model", "dropout_rate", 1.0), ("retrieval", "k", 0),
    ("retrieval", "strategy", "best"), ("retrieval", "measure", "dot"), ("grid", "seeds", ())])
def test_validate_names_field_value_and_what_is_allowed(section, field, value):
  config = configs.base_config()
  with config.unlocked():
    config[section][field] = value
  with pytest.raises(errors.ConfigError) as e:
    configs.validate(config)
  assert str(e.value).startswith(f"config.{section}.{field} = {value!r} is not allowed: it must be")


def test_defaults_and_experiments_validate():
  configs.validate(configs.base_config())
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  required = {"spot_transfer.py": "source_run=runs/source"}  # arguments without a usable default
  for name in sorted(os.listdir(os.path.join(root, "experiments"))):
    if name.endswith(".py"):
      configs.validate(configs.load_experiment(os.path.join(root, "experiments", name), required.get(name)))
  with pytest.raises(errors.ConfigError, match="config.prompt_init.kind = 'checkpoint' needs config.prompt_init.path"):
    configs.validate(configs.load_experiment(os.path.join(root, "experiments", "spot_transfer.py")))


def test_all_checkpoints_unreadable_needs_fresh_start(tiny, tmp_path):
  _train(tiny, tmp_path / "run", num_train_steps=4, checkpoint_every=2, keep_checkpoints=2)
  old_final = prompt_io.load_prompt(str(tmp_path / "run"), "final")
  for step in ("2", "4"):
    for f in (tmp_path / "run" / "checkpoints" / step / "state").rglob("*"):
      if f.is_file():
        f.write_bytes(b"\x00garbage")
  for attempt in range(2):  # the first attempt quarantines them; a retry must not start over silently
    with pytest.raises(errors.UserError, match="--config.train.fresh_start=true"):
      _train(tiny, tmp_path / "run", num_train_steps=4, checkpoint_every=2, keep_checkpoints=2)
  np.testing.assert_array_equal(prompt_io.load_prompt(str(tmp_path / "run"), "final"), old_final)
  fresh = _train(tiny, tmp_path / "run", num_train_steps=4, checkpoint_every=2, keep_checkpoints=2, fresh_start=True)
  reference = _train(tiny, tmp_path / "reference", num_train_steps=4, checkpoint_every=2, keep_checkpoints=2)
  np.testing.assert_array_equal(fresh.prompt, reference.prompt)
  kept = [p for p in (tmp_path / "run").iterdir() if p.name.startswith("prompts-before-fresh-start-")]
  assert len(kept) == 1
  np.testing.assert_array_equal(np.load(kept[0] / "final.npy"), old_final)
  # Later retries resume normally (the quarantined checkpoints were acknowledged).
  again = _train(tiny, tmp_path / "run", num_train_steps=4, checkpoint_every=2, keep_checkpoints=2)
  np.testing.assert_array_equal(again.prompt, reference.prompt)


_HOLD_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from spot_jax.checkpoints import workdir
workdir.lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_second_writer_fails_at_once_naming_the_first(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_SCRIPT.format(root=root), str(tmp_path / "run")],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(errors.WorkdirError, match=f"in use by process {holder.pid} on host"):
      workdir_lib.lock(tmp_path / "run")
  finally:
    holder.kill()
    holder.wait()
  workdir_lib.lock(tmp_path / "run").release()  # the OS dropped the dead holder's lock


def test_locks_nest_within_a_process(tmp_path):
  outer = workdir_lib.lock(tmp_path / "run")
  inner = workdir_lib.claim(tmp_path / "run", "train", {"a": 1})
  assert inner is outer
  inner.release()
  assert workdir_lib.is_held(tmp_path / "run")  # still held by the outer claim
  outer.release()
  assert not workdir_lib.is_held(tmp_path / "run")


def test_gcs_owner_marker(bucket):
  held = workdir_lib.lock("gs://bucket/run")
  marker = bucket / "bucket" / "run" / workdir_lib.GCS_LOCK_FILE
  assert json.loads(marker.read_text())["pid"] == os.getpid()
  held.release()
  assert not marker.exists()
  marker.write_text(json.dumps({"pid": 1, "host": "another-host", "command": "spot-jax train", "started": "x"}))
  with pytest.raises(errors.WorkdirError, match="in use by process 1 on host another-host .*gsutil rm gs://bucket/run/"):
    workdir_lib.lock("gs://bucket/run")
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  marker.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
  workdir_lib.lock("gs://bucket/run").release()  # a dead process of this host: taken over


def test_unwritable_workdir_is_one_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(errors.WorkdirError, match=f"Cannot create the workdir {blocker}/run: \\[Errno 20\\]"):
    workdir_lib.lock(blocker / "run")


def test_prompt_from_a_run_on_another_model_is_refused(tiny, tmp_path):
  model_cfg, params = tiny
  _train(tiny, tmp_path / "source")
  other = t5.init_params(model_cfg, jax.random.key(3))
  backbone = jobs.Backbone(model_cfg, other, fingerprint.model_fingerprint(model_cfg, other))
  init = configs.base_config().prompt_init
  init.kind, init.path, init.which = "checkpoint", str(tmp_path / "source"), "final"
  with pytest.raises(errors.ConfigError, match="was trained on frozen model .* not on this one"):
    jobs.make_prompt_init(init, backbone, vocab=None)
  init.kind, init.path = "npy", str(tmp_path / "source" / "prompts" / "final.npy")
  with pytest.raises(errors.ConfigError, match="allow_other_model=true"):
    jobs.make_prompt_init(init, backbone, vocab=None)
  init.allow_other_model = True
  assert jobs.make_prompt_init(init, backbone, vocab=None)(jax.random.key(0), (5, model_cfg.d_model)).shape == (5, 32)
  same = jobs.Backbone(model_cfg, params, fingerprint.model_fingerprint(model_cfg, params))
  init.allow_other_model, init.kind, init.path = False, "checkpoint", str(tmp_path / "source")
  jobs.make_prompt_init(init, same, vocab=None)
