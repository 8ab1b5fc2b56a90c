#!/usr/bin/env bash
# Re-take the pictures in docs/images/ (the README's screenshot among them): the
# browser test saves what JupyterLab shows there instead of in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WFNB_SCREENSHOTS="$PWD/docs/images" python3 -m pytest -q -p no:cacheprovider tests/browser "$@"
