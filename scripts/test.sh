#!/usr/bin/env bash
# The one test command: set up the environment, lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${LASER_VENV:-.venv}/bin/activate"
ruff check src tests benchmarks examples scripts
ruff format --check src tests benchmarks examples scripts
python -m pytest "$@"
