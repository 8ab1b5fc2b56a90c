#!/usr/bin/env bash
# Re-execute every notebook under notebooks/ in place (nbclient, the same kernel
# nbval uses), so their saved outputs are what the current code shows. Run it after
# a change to what the notebooks display, then `bash scripts/test.sh notebooks`.
# Extra arguments: the notebooks to refresh (default: all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$#" -eq 0 ]; then set -- notebooks/*.ipynb; fi
python3 - "$@" <<'PY'
import sys
from pathlib import Path

import nbclient
import nbformat

for name in sys.argv[1:]:
    path = Path(name)
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,  # no timestamps in the saved file
        store_widget_state=False,  # a saved widget model is no use to a reader
    ).execute()
    nbformat.write(notebook, path)
    print(f"refreshed {path}")
PY
