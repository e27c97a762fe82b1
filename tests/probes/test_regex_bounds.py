"""A catastrophic probe regex on a hostile reply fails fast instead of stalling the loop."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from probes import _match, http, types

EVIL = "^(a|aa)+$"
BODY = b"a" * 60 + b"!"  # Exponential backtracking: far beyond any probe deadline unbounded.


def test_search_is_time_bounded() -> None:
    """The bounded search gives up within a few times its limit and says why."""
    compiled = _match.compile_bytes(EVIL)
    start = time.monotonic()
    with pytest.raises(_match.RegexTimeoutError, match="catastrophic"):
        _match.search(compiled, BODY)
    assert time.monotonic() - start < 0.5


@pytest.mark.anyio
async def test_http_body_regex_cannot_stall_the_prober() -> None:
    """An HTTP probe with that regex on that body is a CONFIG failure, returned promptly."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    checker = http.HttpChecker(types.Target("127.0.0.1", port), types.HttpSpec(body_regex=EVIL))
    try:
        start = anyio.current_time()
        result = await checker.check(deadline=start + 2.0)
        elapsed = anyio.current_time() - start
    finally:
        await checker.aclose()
        server.close()
        await server.wait_closed()
    assert result.failure is types.FailureClass.CONFIG
    assert "catastrophic" in result.detail
    assert elapsed < 0.5
