"""`spot-jax` console entry: one subcommand per job, each an absl app with its own flags.

Why a dispatcher in front of absl: absl parses one flat flag set per process; spot-jax has several
jobs (`spot-jax <command> --flag=...`), so the first argument picks the job and absl parses the rest.
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags

_COMMANDS: dict[str, tuple[str, Callable[[], None]]] = {}


def command(name: str, help_text: str):
  """Registers `fn` (which defines its flags and runs absl) as `spot-jax <name>`."""
  def register(fn: Callable[[], None]) -> Callable[[], None]:
    _COMMANDS[name] = (help_text, fn)
    return fn
  return register


@command("model-info", "Load a Hugging Face T5 directory and print its config and parameter count.")
def _model_info() -> None:
  flags.DEFINE_string("hf_path", None, "Local Hugging Face T5 directory (config.json + *.safetensors).",
                      required=True)

  def main(argv):
    del argv
    import numpy as np
    from spot_jax.checkpoints import hf
    cfg, params = hf.load_hf_t5(flags.FLAGS.hf_path)
    import jax
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    print(cfg)
    print(f"parameters: {count:,}")

  app.run(main)


def _usage() -> str:
  lines = ["usage: spot-jax <command> [--flags]   (spot-jax <command> --help for its flags)", "", "commands:"]
  lines += [f"  {name:<14} {help_text}" for name, (help_text, _) in sorted(_COMMANDS.items())]
  return "\n".join(lines)


def run() -> None:
  """Console-script entry point."""
  if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(sys.argv) >= 2 else 2)
  name = sys.argv[1]
  if name not in _COMMANDS:
    print(f"Unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
    sys.exit(2)
  sys.argv = [f"spot-jax {name}"] + sys.argv[2:]
  _COMMANDS[name][1]()


if __name__ == "__main__":
  run()
