#!/usr/bin/env bash
# Install what the demo needs (Graphviz and wfnb, no test extras), then run the
# example workflow end to end on the default embedded store (.wfnb/wfnb.duckdb
# under the current directory).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh demo
python3 examples/etl.py
