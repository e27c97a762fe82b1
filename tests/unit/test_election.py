"""The elector never stays leader past its renew deadline, even when a Lease call hangs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from zenlead import election, errors


class HangingApi:
    """A Lease API whose every call blocks until released (a wedged API server)."""

    def __init__(self) -> None:
        """Start blocked."""
        self.release = threading.Event()

    def get(self, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        """Block, then fail like an unreachable server."""
        self.release.wait(10)
        raise errors.UnavailableError("gone")


@pytest.mark.anyio
async def test_hanging_renew_gives_up_at_the_deadline() -> None:
    """A renew that hangs returns 'not held' when the renew deadline is reached."""
    api = HangingApi()
    elector = election.Elector(
        api,  # type: ignore[arg-type]
        namespace="ns",
        name="lease",
        identity="me",
        lease_seconds=2.0,
        renew_deadline_seconds=0.3,
        retry_seconds=0.1,
    )
    elector.leading = True
    elector._last_renew = time.monotonic()
    start = time.monotonic()
    try:
        held = await elector._attempt()
    finally:
        api.release.set()
    assert held is False
    assert 0.2 < time.monotonic() - start < 1.0
