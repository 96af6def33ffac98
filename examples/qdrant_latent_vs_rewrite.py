"""Latent thinking vs explicit rewrite-then-retrieve through one Qdrant collection: the same as ``laser demo``.

    python examples/qdrant_latent_vs_rewrite.py                       # offline SmolLM2 (NOT a trained LaSER model)
    python examples/qdrant_latent_vs_rewrite.py --model laser-qwen3   # the real LaSER-Qwen3-0.6B (needs network once)
    python examples/qdrant_latent_vs_rewrite.py --limit 0 --qdrant-url http://localhost:6333

Every option of ``laser demo --help`` works here; :mod:`laser_integrations.evaluation.demo` has the steps, and
``run_demo(...)`` is the same from Python.
"""

from __future__ import annotations

import sys

from laser_integrations.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
