"""Test set-up: 8 fake CPU devices (must precede the first jax import) and shared fixtures."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cli_world(tmp_path_factory):
  """The offline world of tests/cli_world.py, made once per session (about 15 s)."""
  from tests import cli_world as world_lib
  return world_lib.make_world(str(tmp_path_factory.mktemp("cli_world")))


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """gs://bucket/... is stored under the returned local directory (tests/gcs_standin.py): epath's
  gs:// backend remapped, so code that writes through epath works offline."""
  from tests import gcs_standin
  with gcs_standin.local_gcs(tmp_path, monkeypatch) as root:
    yield root
