# Sourced by test.sh / quickstart.sh: create .venv and install the package (with the given extras)
# when the venv is missing or pyproject.toml changed since the last install.
_extras="${1:-}"
_python="${PYTHON:-python3.11}"
command -v "$_python" >/dev/null 2>&1 || _python=python3
_stamp=".venv/.spot_jax_install_${_extras:-base}"
_want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($_python --version)" >&2
  "$_python" -m venv .venv
fi
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want" ]; then
  echo "[setup] installing spot_jax${_extras:+[$_extras]} into .venv (first run: a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ -n "$_extras" ]; then _spec=".[$_extras]"; else _spec="."; fi
  .venv/bin/python -m pip install --quiet -e "$_spec"
  echo "$_want" > "$_stamp"
fi
