"""``python -m fleet_sim``."""

from __future__ import annotations

import sys

from fleet_sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
