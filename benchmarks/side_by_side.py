"""A benchmark worker in its own process, spoken to in JSON lines (one command, one answer).

Why: the side-by-side benchmarks (train_step.py, eval_step.py) run spot_jax and PyTorch in separate
processes, so neither framework's threads or allocator disturb the other, and alternate timing
windows between them. The worker script answers its start-up line and then one JSON line per command.
"""

from __future__ import annotations

import json
import subprocess
import sys


class Worker:
  """`python <script> <args...>` whose first stdout line (JSON) is `info`."""

  def __init__(self, kind: str, script: str, *args: str):
    self.kind = kind
    self.proc = subprocess.Popen([sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
    self.info = self._read()

  def _read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"{self.kind} worker died (exit {self.proc.wait()}); see its stderr above.")
    return json.loads(line)

  def ask(self, **cmd) -> dict:
    self.proc.stdin.write(json.dumps(cmd) + "\n")
    self.proc.stdin.flush()
    return self._read()

  def close(self) -> None:
    self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
    self.proc.stdin.close()
    self.proc.wait()
