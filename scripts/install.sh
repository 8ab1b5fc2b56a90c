#!/usr/bin/env bash
# Install what wfnb needs on a fresh Debian/Ubuntu machine.
#   bash scripts/install.sh demo   Graphviz's `dot` (the DAG) and wfnb
#   bash scripts/install.sh test   also Chromium (the browser test) and wfnb[dev,dask]
# Debian packages are installed only when missing, waiting up to 5 minutes for
# another apt or dpkg to let go of its lock.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-test}"
packages=()
command -v dot >/dev/null 2>&1 || packages+=(graphviz)
if [ "$mode" = test ] && [ ! -x /usr/bin/chromium ]; then packages+=(chromium); fi
if [ "${#packages[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
    $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${packages[@]}" >/dev/null
fi
case "$mode" in
    demo) extras="" ;;
    test) extras="[dev,dask]" ;;
    *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
python3 -m pip install -q --disable-pip-version-check -e ".$extras"
