#!/usr/bin/env bash
# The main job on a fresh machine: set up, then run the Qdrant demo (latent thinking vs rewrite-then-retrieve)
# on the offline SmolLM2 model.
# Extra arguments go to the demo command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${LASER_VENV:-.venv}/bin/activate"
laser demo "$@"
