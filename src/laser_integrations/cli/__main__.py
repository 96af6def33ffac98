"""``python -m laser_integrations.cli``: the same as the ``laser`` command."""

from __future__ import annotations

import sys

from laser_integrations.cli import main

if __name__ == "__main__":
    sys.exit(main())
