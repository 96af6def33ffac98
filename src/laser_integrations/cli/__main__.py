"""``python -m laser_integrations.cli``: the same as the ``laser`` command."""

from __future__ import annotations

import sys

from laser_integrations.cli import main

sys.exit(main())
