#!/usr/bin/env bash
# Install everything, then run the example workflow end to end on the default
# embedded store (.wfnb/wfnb.duckdb under the current directory).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python3 examples/etl.py
