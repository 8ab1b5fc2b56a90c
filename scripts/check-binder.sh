#!/usr/bin/env bash
# What mybinder.org does with binder/, in a fresh virtual environment: install the
# pinned requirements, run postBuild, then import wfnb and its notebook side.
# A real install from the package index (about 2-4 minutes), so CI runs it as a
# step of its own, not inside the test suite. graphviz (binder/apt.txt) is the
# Debian package scripts/install.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONPATH  # the import must come from the install, not from this checkout's path
venv="$(mktemp -d)/binder-venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
export PATH="$venv/bin:$PATH"
python3 -m pip install -q --disable-pip-version-check --no-cache-dir -r binder/requirements.txt
bash binder/postBuild
cd "$(dirname "$venv")"  # not the repository's directory either
python3 - "$OLDPWD" <<'PY'
import sys
from pathlib import Path

import duckdb
import jupyterlab
import wfnb
import wfnb.notebook.magics  # IPython, ipywidgets, graphviz

repo = Path(sys.argv[1]).resolve()
assert Path(wfnb.__file__).resolve().is_relative_to(repo), wfnb.__file__
assert sys.prefix != sys.base_prefix, "not running in the fresh venv"
print(f"binder env ok: wfnb from {Path(wfnb.__file__).parent}, duckdb {duckdb.__version__},"
      f" jupyterlab {jupyterlab.__version__}, python {sys.version.split()[0]}")
PY
