"""``python -m profiler`` and the ``dgdr-profiler`` console script."""

from __future__ import annotations

import sys

from profiler.cli import main

if __name__ == "__main__":
    sys.exit(main())
