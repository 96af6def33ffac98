"""Deprecated: ``laser_integrations.demo`` moved to :mod:`laser_integrations.evaluation.demo` (removed in 0.3)."""

from __future__ import annotations

import warnings

from laser_integrations.evaluation.demo import DEFAULT_LIMIT, DEFAULT_OUTPUT_DIR, run_demo

__all__ = ["DEFAULT_LIMIT", "DEFAULT_OUTPUT_DIR", "run_demo"]

warnings.warn(
    "laser_integrations.demo is deprecated; import run_demo from laser_integrations.evaluation.demo",
    DeprecationWarning,
    stacklevel=2,
)
