#!/usr/bin/env bash
# Install what wfnb needs on a fresh Debian/Ubuntu machine: the Graphviz `dot`
# program (the live DAG), then wfnb with its test and cluster extras.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v dot >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq graphviz >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e ".[dev,dask]"
