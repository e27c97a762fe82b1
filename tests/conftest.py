"""Suite-wide setup: the stray-process check, pytester for testing it, the async backend."""

from __future__ import annotations

import pytest

pytest_plugins = ["zenlead.testing.pytest_plugin", "pytester"]


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only, as the controller does (grpc.aio needs it)."""
    return "asyncio"
