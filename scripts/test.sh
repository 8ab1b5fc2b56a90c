#!/usr/bin/env bash
# Install everything (Graphviz, Chromium, wfnb[dev,dask]), then run the whole test
# suite: tests/, the notebooks under nbval, the browser test. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
set +e
python3 -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
