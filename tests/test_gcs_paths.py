"""Outputs and inputs on `gs://` paths go through etils.epath (what a TPU pod's workdir needs).

No network: the `gs://` backend of epath is replaced by one that keeps the bucket in a local
directory. Code that bypassed epath (`open`, `os.path`, `savefig(path)`) would instead write under
the working directory as `gs:/...`, or fail; each test checks that nothing landed there.
"""

import json

import jax
import numpy as np
import pytest
from etils import epath
from etils.epath import gpath

from spot_jax import fileio
from spot_jax.checkpoints import hf
from spot_jax.checkpoints import prompts as prompt_io
from spot_jax.models import t5
from spot_jax.spot import library as library_lib, retrieval, transferability as tr


def test_named_prompts_and_npy(bucket):
  prompt = np.arange(12, dtype=np.float32).reshape(3, 4)
  prompt_io.save_named_prompt("gs://bucket/run", "best", prompt, {"step": 7})
  assert (bucket / "bucket" / "run" / "prompts" / "best.npy").exists()
  np.testing.assert_array_equal(prompt_io.load_prompt("gs://bucket/run", "best"), prompt)
  assert prompt_io.load_named_metadata("gs://bucket/run", "best")["step"] == 7
  with pytest.raises(prompt_io.PromptFileError, match=r"Available: \['best'\]"):
    prompt_io.load_prompt("gs://bucket/run", "final")


def test_library(bucket):
  lib = library_lib.PromptLibrary("gs://bucket/lib", model_fingerprint="abc", prompt_length=2, d_model=3)
  assert lib.path == "gs://bucket/lib"
  key, value = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
  lib.add("mnli", key, value, {"validation_score": 80.0}, model_fingerprint="abc")
  lib.add("mnli", value, key, model_fingerprint="abc", replace=True)
  assert (bucket / "bucket" / "lib" / "entries" / "mnli" / "entry.json").exists()
  reopened = library_lib.PromptLibrary("gs://bucket/lib", model_fingerprint="abc")
  assert reopened.names() == ["mnli"]
  np.testing.assert_array_equal(reopened.get("mnli").key, value)
  assert len(list((bucket / "bucket" / "lib" / "replaced").iterdir())) == 1


def test_tables_plots_and_json(bucket):
  tr.save_heatmap("gs://bucket/results/rer", np.array([[0.5, -0.25]]), ["mnli"], ["rte", "cb"], "title", "RER")
  rows = tr.retrieval_table({"rte": 60.0}, {("mnli", "rte"): 70.0}, {"rte": []}, ks=[])
  tr.write_table_csv("gs://bucket/results/table.csv", rows)
  retrieval.write_ranking_csv("gs://bucket/results/ranking.csv", "rte",
                              {"average_tokens_cosine": [retrieval.Ranked("mnli", 0.9)]})
  fileio.write_json("gs://bucket/results/scores.json", {"baseline/rte/0": 60.0})
  out = bucket / "bucket" / "results"
  assert (out / "rer.png").read_bytes().startswith(b"\x89PNG")
  assert (out / "rer.csv").read_text().splitlines()[0] == ",rte,cb"
  assert (out / "table.csv").read_text().startswith("method,")
  assert "mnli" in (out / "ranking.csv").read_text()
  assert json.loads((out / "scores.json").read_text()) == {"baseline/rte/0": 60.0}


def test_hf_checkpoint_reads_from_gs(bucket):
  cfg = t5.get_config("tiny", vocab_size=32, d_model=16, num_heads=2, d_kv=8, d_ff=32, num_encoder_layers=1,
                      num_decoder_layers=1)
  shapes = jax.eval_shape(lambda: t5.init_params(cfg, jax.random.key(0)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
  hf.save_hf_t5(cfg, params, str(bucket / "bucket" / "t5"))  # writing is local
  loaded_cfg, loaded = hf.load_hf_t5("gs://bucket/t5")
  assert loaded_cfg == cfg
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  assert isinstance(epath.Path("gs://bucket/t5"), gpath.PosixGPath)
