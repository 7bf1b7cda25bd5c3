"""``python -m instance_agent --help``."""

from __future__ import annotations

import sys

from instance_agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
