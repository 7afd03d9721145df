"""T5X checkpoints, in both layouts t5x writes, load as the same model as the Hugging Face import of the
same weights; `spot-jax convert` round-trips them; gs:// paths work; bad checkpoints fail clearly.

The checkpoints are written here the way google-research/t5x `t5x/checkpoints.py` writes them (no t5x
import): the tensorstore layout (a flax msgpack `checkpoint` file whose large leaves are tensorstore zarr
specs with paths relative to the checkpoint directory) and the Orbax layout (`checkpoint_<step>/state/`,
an OCDBT PyTree of {'target', 'state'}), both with optimizer state that the loader must skip.
"""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts
from etils import epath
from etils.epath import gpath
from flax import serialization, traverse_util

from spot_jax import errors
from spot_jax.checkpoints import fingerprint, hf, t5x
from spot_jax.models import t5
from tests import gcs_standin, hf_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY_TOLERANCE = 1e-4  # tests/test_t5_parity.py's tolerance against PyTorch
STEP = 1100000  # the LM-adapted checkpoints' step


# ----------------------------------------------------------------------------- writing T5X checkpoints


def to_t5x(params: dict, *, split_heads: bool = False, num_heads: int = 0, dtype=None) -> dict:
  """spot_jax params -> the t5x `target` tree (token_embedder/embedding; optionally [d_model, heads, d_kv]
  attention kernels as some t5x checkpoints keep them)."""
  flat = {}
  for path, value in traverse_util.flatten_dict(params).items():
    value = np.asarray(value)
    if split_heads and path[-1] == "kernel" and path[-3].endswith("attention"):
      value = (value.reshape(num_heads, -1, value.shape[-1]) if path[-2] == "out"
               else value.reshape(value.shape[0], num_heads, -1))
    if dtype is not None:
      value = value.astype(dtype)
    flat[("token_embedder", "embedding") if path == ("token_embedder",) else path] = value
  return traverse_util.unflatten_dict(flat)


def _zarr_leaf(directory: str, name: str, array: np.ndarray) -> dict:
  """Writes `array` as t5x does (zarr, gzip, chunks that split it) -> the spec dict the msgpack holds."""
  chunks = [max(1, array.shape[0] // 2), *array.shape[1:]]
  spec = ts.Spec({"driver": "zarr", "dtype": np.dtype(array.dtype).name,
                  "kvstore": {"driver": "file", "path": name},
                  "metadata": {"compressor": {"id": "gzip"}, "shape": list(array.shape), "chunks": chunks}})
  absolute = spec.to_json()
  absolute["kvstore"]["path"] = os.path.join(directory, name)
  ts.open(absolute, create=True).result().write(array).result()
  return spec.to_json()  # relative path, as t5x stores it


def write_tensorstore_checkpoint(model_dir: str, target: dict, step: int = STEP, version: int = 3) -> str:
  """t5x's tensorstore layout; the layer-norm scales inline in the msgpack (t5x's small-array case)."""
  directory = os.path.join(model_dir, f"checkpoint_{step}")
  os.makedirs(directory)
  leaves = {}
  for path, array in traverse_util.flatten_dict(target).items():
    name = "target." + ".".join(path)
    leaves[path] = array if path[-1] == "scale" else _zarr_leaf(directory, name, array)
  wi = np.ones((3,), np.float32)  # a factored optimizer moment, to be skipped
  state = {"step": np.asarray(step, np.int32),
           "param_states": {"encoder": {"layers_0": {"mlp": {"wo": {"kernel": {
               "v_row": _zarr_leaf(directory, "state.param_states.encoder.layers_0.mlp.wo.kernel.v_row", wi)}}}}}}}
  contents = {"version": version, "optimizer": {"target": traverse_util.unflatten_dict(leaves), "state": state}}
  with open(os.path.join(directory, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(contents))
  return directory


def write_orbax_checkpoint(model_dir: str, target: dict, step: int = STEP) -> str:
  """t5x's Orbax layout: a CheckpointManager with step prefix 'checkpoint' and the item 'state'."""
  manager = ocp.CheckpointManager(model_dir, item_names=("state",),
                                  options=ocp.CheckpointManagerOptions(step_prefix="checkpoint"))
  moments = jax.tree.map(lambda x: np.zeros(x.shape[-1:], np.float32), target)
  state = {"target": target, "state": {"step": np.asarray(step, np.int32), "param_states": moments}}
  manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
  manager.wait_until_finished()
  manager.close()
  return os.path.join(model_dir, f"checkpoint_{step}")


WRITERS = {"tensorstore": write_tensorstore_checkpoint, "orbax": write_orbax_checkpoint}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """A random HF T5 1.1 (odd shapes: 3 heads, d_kv 16, 2 encoder / 3 decoder layers) and its HF import."""
  model = hf_reference.build_t5("t5_1_1")
  path = str(tmp_path_factory.mktemp("hf"))
  model.save_pretrained(path)
  cfg, params = hf.load_hf_t5(path)
  return model, path, cfg, params


@functools.lru_cache(maxsize=None)
def _jitted_apply(cfg):
  return jax.jit(t5.T5(cfg).apply)


def _logits(cfg, params, batch):
  enc, dec_in, tgt = batch
  return np.asarray(_jitted_apply(cfg)({"params": params}, jnp.asarray(enc), jnp.asarray(dec_in), jnp.asarray(tgt)))


# ----------------------------------------------------------------------------- loading


def test_expected_shapes_are_the_models_params():
  for cfg in (t5.get_config("tiny", vocab_size=50, num_decoder_layers=3),
              t5.get_config("t5_small", vocab_size=50, num_encoder_layers=1, num_decoder_layers=1)):
    model = traverse_util.flatten_dict(jax.eval_shape(lambda c=cfg: t5.init_params(c, jax.random.key(0))))
    ours = {("token_embedder", "embedding") if k == ("token_embedder",) else k: v.shape for k, v in model.items()}
    assert t5x.expected_shapes(cfg) == ours


@pytest.mark.parametrize("layout", ["tensorstore", "orbax"])
def test_logits_equal_the_hf_import(reference, layout, tmp_path):
  model, _, hf_cfg, hf_params = reference
  directory = WRITERS[layout](str(tmp_path / "model"), to_t5x(hf_params))
  assert t5x.locate(str(tmp_path / "model")) == t5x.Location(
      t5x.MSGPACK if layout == "tensorstore" else t5x.ORBAX,
      directory if layout == "tensorstore" else os.path.join(directory, "state"))
  cfg, params = t5x.load_t5x_t5(str(tmp_path / "model"), dropout_rate=hf_cfg.dropout_rate)
  assert cfg == hf_cfg  # inferred from the shapes: gated-gelu, untied, 3 heads x 16, 2/3 layers
  assert jax.tree.structure(params) == jax.tree.structure(hf_params)
  jax.tree.map(np.testing.assert_array_equal, params, hf_params)
  # the same frozen model for prompts and libraries, whichever format it was loaded from
  assert fingerprint.model_fingerprint(cfg, params) == fingerprint.model_fingerprint(hf_cfg, hf_params)
  batch = hf_reference.padded_batch(cfg.vocab_size)
  ours = _logits(cfg, params, batch)
  np.testing.assert_allclose(ours, _logits(hf_cfg, hf_params, batch), rtol=0, atol=1e-5)
  torch_diff = np.abs(ours - hf_reference.hf_logits(model, *batch)).max()
  print(f"[t5x {layout}] max |logits - HF PyTorch| = {torch_diff:.2e}")
  assert torch_diff <= PARITY_TOLERANCE


def test_a_config_may_name_a_t5x_checkpoint_as_its_backbone(reference, tmp_path):
  import ml_collections
  from spot_jax import jobs
  _, _, hf_cfg, hf_params = reference
  write_orbax_checkpoint(str(tmp_path / "model"), to_t5x(hf_params, dtype=ml_dtypes.bfloat16))
  backbone = jobs.load_backbone(ml_collections.ConfigDict(dict(hf_path=str(tmp_path / "model"), dtype="float32",
                                                               dropout_rate=hf_cfg.dropout_rate)))
  assert backbone.config == hf_cfg
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(backbone.params))  # as a HF import: float32 params
  bf16 = jax.tree.map(lambda x: np.asarray(x, ml_dtypes.bfloat16).astype(np.float32), hf_params)
  jax.tree.map(np.testing.assert_array_equal, backbone.params, bf16)


@pytest.mark.parametrize("layout", ["tensorstore", "orbax"])
def test_bfloat16_and_split_heads_load_as_stored(reference, layout, tmp_path):
  _, _, hf_cfg, hf_params = reference
  target = to_t5x(hf_params, split_heads=True, num_heads=hf_cfg.num_heads, dtype=ml_dtypes.bfloat16)
  assert target["encoder"]["layers_0"]["attention"]["out"]["kernel"].shape == (3, 16, 40)
  directory = WRITERS[layout](str(tmp_path / "model"), target)
  cfg, params = t5x.load_t5x_t5(directory)
  assert (cfg.num_heads, cfg.d_kv, cfg.dtype) == (3, 16, "float32")
  assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype(ml_dtypes.bfloat16)}
  expected = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16), hf_params)
  jax.tree.map(np.testing.assert_array_equal, params, expected)
  _, as_f32 = t5x.load_t5x_t5(directory, param_dtype="float32", dtype="bfloat16")
  assert {x.dtype for x in jax.tree.leaves(as_f32)} == {np.dtype(np.float32)}


def test_original_t5_is_inferred_relu_and_tied(tmp_path):
  """No wi_0/wi_1 and no logits_dense: original T5 (ReLU, tied output layer scaled by d_model**-0.5)."""
  model = hf_reference.build_t5("t5")
  model.save_pretrained(str(tmp_path / "hf"))
  hf_cfg, hf_params = hf.load_hf_t5(str(tmp_path / "hf"))
  write_orbax_checkpoint(str(tmp_path / "model"), to_t5x(hf_params))
  cfg, params = t5x.load_t5x_t5(str(tmp_path / "model"), dropout_rate=hf_cfg.dropout_rate)
  assert cfg == hf_cfg and cfg.feed_forward_proj == "relu" and cfg.tie_word_embeddings and cfg.scale_decoder_outputs
  jax.tree.map(np.testing.assert_array_equal, params, hf_params)


def test_old_version_uint16_bfloat16_and_given_config(reference, tmp_path):
  """t5x before version 3 stored bfloat16 as uint16; a given config is used (scanned here) and checked."""
  _, _, hf_cfg, hf_params = reference
  bf16 = to_t5x(hf_params, dtype=ml_dtypes.bfloat16)
  directory = write_tensorstore_checkpoint(str(tmp_path), jax.tree.map(lambda x: x.view(np.uint16), bf16), version=2)
  cfg, params = t5x.load_t5x_t5(directory, config=hf_cfg.replace(scan_layers=True))
  assert cfg.scan_layers and params["encoder"]["layers"]["mlp"]["wo"]["kernel"].shape == (2, 56, 40)
  np.testing.assert_array_equal(params["token_embedder"], bf16["token_embedder"]["embedding"])


# ----------------------------------------------------------------------------- gs://


class _FakeGcs(http.server.BaseHTTPRequestHandler):
  """The read side of the GCS JSON API that tensorstore's `gcs` driver uses, serving `root`/<bucket>/..."""

  root = ""
  served = 0  # requests answered: proves tensorstore read through its gcs driver
  protocol_version = "HTTP/1.1"  # keep-alive: one connection per tensorstore worker, not per request

  def log_message(self, *args):
    del args

  def _send(self, status, body=b"", headers=()):
    self.send_response(status)
    for key, value in headers:
      self.send_header(key, value)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  def do_GET(self):  # noqa: N802 - http.server's name
    type(self).served += 1
    url = urllib.parse.urlsplit(self.path)
    query = urllib.parse.parse_qs(url.query)
    match = re.fullmatch(r"/storage/v1/b/([^/]+)/o(?:/(.+))?", url.path)
    if not match:
      return self._send(404)
    bucket = os.path.join(self.root, match.group(1))
    if match.group(2) is None:  # list objects
      prefix = query.get("prefix", [""])[0]
      items = []
      for dirpath, _, files in os.walk(bucket):
        for name in files:
          key = os.path.relpath(os.path.join(dirpath, name), bucket)
          if key.startswith(prefix):
            stat = os.stat(os.path.join(dirpath, name))
            items.append({"name": key, "size": str(stat.st_size), "generation": str(stat.st_mtime_ns)})
      return self._send(200, json.dumps({"items": sorted(items, key=lambda i: i["name"])}).encode(),
                        [("Content-Type", "application/json")])
    key = urllib.parse.unquote(match.group(2))
    file = os.path.join(bucket, key)
    if not os.path.isfile(file):
      return self._send(404)
    generation = str(os.stat(file).st_mtime_ns)
    if query.get("ifGenerationNotMatch", [None])[0] == generation:
      return self._send(304, headers=[("x-goog-generation", generation)])
    with open(file, "rb") as f:
      data = f.read()
    if query.get("alt", [None])[0] != "media":
      return self._send(200, json.dumps({"name": key, "size": str(len(data)), "generation": generation}).encode(),
                        [("Content-Type", "application/json")])
    byte_range = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
    if byte_range:
      start = int(byte_range.group(1))
      end = min(int(byte_range.group(2) or len(data) - 1), len(data) - 1)
      return self._send(206, data[start:end + 1], [("x-goog-generation", generation),
                                                   ("Content-Range", f"bytes {start}-{end}/{len(data)}")])
    return self._send(200, data, [("x-goog-generation", generation)])


@pytest.fixture(scope="module")
def fake_gcs_server():
  """tensorstore's gcs driver pointed at a local fake of the GCS API (its own testing hooks)."""
  class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # tensorstore connects many at once; a full backlog costs a 1 s SYN retry
    daemon_threads = True

  server = Server(("127.0.0.1", 0), _FakeGcs)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("TENSORSTORE_GCS_HTTP_URL", f"http://127.0.0.1:{server.server_port}")
    mp.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "fake-token")
    yield
  server.shutdown()


@pytest.fixture
def bucket(tmp_path, monkeypatch, fake_gcs_server):
  """gs://bucket/... stored under the returned local directory: epath's gs:// backend remapped
  (tests/gcs_standin.py), tensorstore's through the fake GCS server above."""
  with gcs_standin.local_gcs(tmp_path, monkeypatch) as root:
    monkeypatch.setattr(_FakeGcs, "root", str(root))
    yield root


@pytest.mark.parametrize("layout", ["tensorstore", "orbax"])
def test_reads_from_gs(reference, layout, bucket, tmp_path):
  _, _, hf_cfg, hf_params = reference
  WRITERS[layout](str(tmp_path / "written"), to_t5x(hf_params))  # outside the mock: Orbax writes via epath
  shutil.copytree(tmp_path / "written", bucket / "t5-data" / "t5x" / "lm100k")
  assert t5x.is_t5x_checkpoint("gs://t5-data/t5x/lm100k")
  assert isinstance(epath.Path("gs://t5-data/t5x/lm100k"), gpath.PosixGPath)
  served = _FakeGcs.served
  cfg, params = t5x.load_t5x_t5(f"gs://t5-data/t5x/lm100k/checkpoint_{STEP}", dropout_rate=hf_cfg.dropout_rate)
  assert _FakeGcs.served > served
  assert cfg == hf_cfg
  jax.tree.map(np.testing.assert_array_equal, params, hf_params)


# ----------------------------------------------------------------------------- convert


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "spot_jax.cli", "convert", *args], capture_output=True, text=True,
                        env=env, timeout=300, cwd=ROOT)


def test_convert_round_trip(reference, tmp_path):
  """T5X -> HF through the CLI (subprocess), HF -> T5X (Orbax) -> HF again in process: the same params."""
  _, hf_path, hf_cfg, hf_params = reference
  write_tensorstore_checkpoint(str(tmp_path / "t5x"), to_t5x(hf_params))
  (tmp_path / "hf").mkdir()  # an empty --to is fine
  done = _cli(f"--from={tmp_path / 't5x'}", f"--to={tmp_path / 'hf'}")
  assert done.returncode == 0, done.stderr
  assert "wrote the Hugging Face T5 directory" in done.stdout and "tensorstore layout" in done.stdout
  cfg, params = hf.load_hf_t5(str(tmp_path / "hf"))
  assert cfg == hf_cfg.replace(dropout_rate=0.1)
  jax.tree.map(np.testing.assert_array_equal, params, hf_params)

  line = t5x.convert(hf_path, str(tmp_path / "back"))
  assert line.startswith(f"wrote the T5X checkpoint {tmp_path / 'back' / 'checkpoint_0'} (Orbax layout")
  assert t5x.locate(str(tmp_path / "back")).layout == t5x.ORBAX
  cfg2, params2 = t5x.load_t5x_t5(str(tmp_path / "back"), dropout_rate=hf_cfg.dropout_rate)
  assert cfg2 == hf_cfg
  jax.tree.map(np.testing.assert_array_equal, params2, hf_params)
  t5x.convert(str(tmp_path / "back"), str(tmp_path / "hf2"))
  jax.tree.map(np.testing.assert_array_equal, hf.load_hf_t5(str(tmp_path / "hf2"))[1], hf_params)
  assert sorted(os.listdir(tmp_path)) == ["back", "hf", "hf2", "t5x"]  # no temporary directories left


def test_convert_refuses_a_non_empty_destination(reference, tmp_path):
  _, hf_path, _, _ = reference
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.txt").write_text("mine")
  done = _cli(f"--from={hf_path}", f"--to={tmp_path / 'out'}")
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      f"spot-jax convert: error: --to={tmp_path / 'out'} exists and is not empty; choose a new directory "
      "(nothing was written)."]
  assert os.listdir(tmp_path / "out") == ["keep.txt"]
  with pytest.raises(t5x.ConvertError, match="neither a T5X checkpoint nor a Hugging Face T5 directory"):
    t5x.convert(str(tmp_path / "out"), str(tmp_path / "new"))
  with pytest.raises(t5x.ConvertError, match="local directory"):
    t5x.convert(hf_path, "gs://bucket/out")


# ----------------------------------------------------------------------------- errors


def test_detection_and_errors(reference, tmp_path):
  _, hf_path, hf_cfg, hf_params = reference
  assert not t5x.is_t5x_checkpoint(hf_path) and not t5x.is_t5x_checkpoint(str(tmp_path / "missing"))
  with pytest.raises(hf.CheckpointFormatError, match=r"is not a T5X checkpoint: .*found: config.json"):
    t5x.load_t5x_t5(hf_path)
  assert issubclass(hf.CheckpointFormatError, errors.UserError)

  target = to_t5x(hf_params)
  directory = write_tensorstore_checkpoint(str(tmp_path / "model"), target)
  assert t5x.is_t5x_checkpoint(os.path.join(directory, "checkpoint"))
  with pytest.raises(hf.CheckpointFormatError,
                     match=r"target/encoder/layers_0/mlp/wi_0/kernel has shape \(40, 56\) in the T5X checkpoint .* "
                           r"but the model \(.*d_ff=64.*\) needs \(40, 64\)"):
    t5x.load_t5x_t5(directory, config=hf_cfg.replace(d_ff=64))
  with pytest.raises(hf.CheckpointFormatError, match=r"lacks parameter target/decoder/layers_3/self_attention/query"):
    t5x.load_t5x_t5(directory, config=hf_cfg.replace(num_decoder_layers=4))
  with pytest.raises(hf.CheckpointFormatError, match=r"1 parameter\(s\) that the model .* does not use: "
                                                     r"target/decoder/logits_dense/kernel"):
    t5x.load_t5x_t5(directory, config=hf_cfg.replace(tie_word_embeddings=True))

  del target["decoder"]["layers_1"]["mlp"]["wo"]
  incomplete = write_tensorstore_checkpoint(str(tmp_path / "incomplete"), target)
  with pytest.raises(hf.CheckpointFormatError, match=r"lacks parameter target/decoder/layers_1/mlp/wo/kernel \(shape "
                                                     r"\(56, 40\)\)"):
    t5x.load_t5x_t5(incomplete)
  os.rename(os.path.join(directory, "target.encoder.layers_1.mlp.wo.kernel"), os.path.join(directory, "moved"))
  with pytest.raises(hf.CheckpointFormatError, match=r"Cannot open the array of encoder/layers_1/mlp/wo/kernel"):
    t5x.load_t5x_t5(directory)
  with open(os.path.join(directory, "checkpoint"), "wb") as f:
    f.write(b"\xc1 not msgpack")
  with pytest.raises(hf.CheckpointFormatError, match="is not a t5x msgpack checkpoint file"):
    t5x.load_t5x_t5(directory)
