"""The local stand-in for `gs://` that tests share: epath's gs:// backend remapped to a directory.

No network and no TensorFlow: `gs://bucket/...` is stored under a local root, and code that bypassed
epath (`open`, `os.path`, `savefig(path)`) would write under the working directory as `gs:/...`
instead, which `local_gcs` checks on exit.
"""

import contextlib
import os

from etils.epath import gpath, testing as epath_testing

_BACKEND_FNS = ("copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove", "rename",
                "replace", "rmtree", "stat", "walk")


@contextlib.contextmanager
def local_gcs(tmp_path, monkeypatch):
  """Yields the local directory that holds gs://; the working directory is a fresh `cwd/`."""
  root = tmp_path / "gcs"
  root.mkdir()
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  prefix = str(root) + "/"

  def local(value):
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    return text.replace("gs://", prefix, 1) if text and text.startswith("gs://") else value

  def remapped(name):
    def fn(original, *args, **kwargs):
      result = original(*[local(a) for a in args], **kwargs)
      return [r.replace(prefix, "gs://", 1) for r in result] if name == "glob" else result
    return fn

  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)  # else epath picks tf.io.gfile for gs://
  with epath_testing.mock_epath(**{name: remapped(name) for name in _BACKEND_FNS}):
    yield root
  assert not (cwd / "gs:").exists(), "something read or wrote a gs:// path without epath"
