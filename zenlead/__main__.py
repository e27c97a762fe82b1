"""``python -m zenlead``: the same entry point as the ``zen-lead`` console script."""

from __future__ import annotations

import sys

from zenlead import cli

if __name__ == "__main__":
    sys.exit(cli.main())
