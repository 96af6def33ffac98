"""Latent thinking vs explicit rewrite-then-retrieve through one Qdrant collection: the same as ``laser demo``.

    python examples/qdrant_latent_vs_rewrite.py                       # offline SmolLM2 (NOT a trained LaSER model)
    python examples/qdrant_latent_vs_rewrite.py --model laser-qwen3   # the real LaSER-Qwen3-0.6B (needs network once)
    python examples/qdrant_latent_vs_rewrite.py --limit 0 --qdrant-url http://localhost:6333

Every option of ``laser demo --help`` works here; see :mod:`laser_integrations.demo` for the steps.
"""

from __future__ import annotations

from laser_integrations.demo import main

if __name__ == "__main__":
    main()
