#!/usr/bin/env bash
# The one test command: set up the environment, lint, and run the whole test suite (tests/ and the
# doctests in src/). Extra arguments go to pytest. LASER_UPGRADE=1 tests against the newest releases.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${LASER_VENV:-.venv}/bin/activate"
ruff check src tests benchmarks examples scripts
ruff format --check src tests benchmarks examples scripts
python -m pytest "$@"
