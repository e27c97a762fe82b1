"""Suite-wide setup: the stray-process check, and pytester for testing that check."""

from __future__ import annotations

pytest_plugins = ["zenlead.testing.pytest_plugin", "pytester"]
