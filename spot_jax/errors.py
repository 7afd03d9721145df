"""Expected errors: bad input, bad config, refused workdir — the user's to fix, not a bug.

Why one base class: the `spot-jax` CLI prints an expected error as one or two lines (the problem and
the fix) and exits non-zero, while anything else keeps its full traceback. Every module raises a
subclass of `UserError` for what a user can cause and fix; the subclasses also derive from the
builtin type callers already catch (ValueError, RuntimeError, FileNotFoundError), so library code
that catches those keeps working.
"""

from __future__ import annotations

from typing import Sequence


class UserError(Exception):
  """An expected failure whose message names the problem and the way out."""


def is_expected(error: BaseException) -> bool:
  """A `UserError`, or the model package's `PromptShapeError` (models/ imports nothing of spot_jax,
  so that one derives from ValueError alone; looked up only if models/ is loaded, so that this module
  and the CLI's `--help` stay free of jax)."""
  import sys
  prompt_module = sys.modules.get("spot_jax.models.prompt")
  return isinstance(error, UserError) or (prompt_module is not None and
                                          isinstance(error, prompt_module.PromptShapeError))


def some_of(names: Sequence[str], limit: int) -> str:
  """'a, b, c and 7 more': the first `limit` names for an error message that must stay one line."""
  names = list(names)
  return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class ConfigError(UserError, ValueError):
  """A config field whose value is not allowed (names the field, the value and what is allowed)."""


class InputDataError(UserError, ValueError):
  """A dataset row or file that cannot be used (names the file, row/line and field)."""


class WorkdirError(UserError, RuntimeError):
  """A workdir that belongs to another run, is in use, or cannot be written."""


class TrainingDivergedError(UserError, FloatingPointError):
  """The loss became NaN or infinite: the run stops before it saves a broken state."""
