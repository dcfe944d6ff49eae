#!/usr/bin/env bash
# Create the project's virtual environment and install keraffe with its test tools.
#
# Works on a fresh Debian 12 with Python 3.11: Debian ships python3.11 without
# ensurepip, so when `venv` cannot bootstrap pip we install python3.11-venv
# (with sudo when not root). Re-running is cheap: pip is skipped while the
# stamp is newer than pyproject.toml.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3.11}
venv=$here/.venv
stamp=$venv/.keraffe-installed

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

command -v "$python" >/dev/null || { echo "bootstrap: $python not found; install Python 3.11" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        echo "bootstrap: installing python3-venv (Debian ships Python without ensurepip)" >&2
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3.11-venv || \
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
        "$python" -m venv "$venv"
    fi
fi
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    # torch is pinned in pyproject to a CPU build that installs offline on CI machines.
    "$venv/bin/python" -m pip install -q -e "$here[dev]"
    touch "$stamp"
fi
