"""TcpChecker against a real Redis-like TCP server on 127.0.0.1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from probes import tcp, types

if TYPE_CHECKING:
    from tests.probes.conftest import Probe, RedisLike

pytestmark = pytest.mark.anyio

NETWORK, TIMEOUT = types.FailureClass.NETWORK, types.FailureClass.TIMEOUT
NEGATIVE, CONFIG = types.FailureClass.NEGATIVE, types.FailureClass.CONFIG
ROLE_MASTER = types.TcpSpec(send=b"ROLE\r\n", expect=rb"\$\d+\r\nmaster\r\n")


def tcp_checker(port: int, closing: Any, spec: types.TcpSpec = ROLE_MASTER) -> tcp.TcpChecker:
    """Return a checker of 127.0.0.1:`port`, closed after the test."""
    checker: tcp.TcpChecker = closing(tcp.TcpChecker(types.Target("127.0.0.1", port), spec))
    return checker


async def test_expected_reply_passes(redis_like: RedisLike, closing: Any, probe: Probe) -> None:
    """ROLE answered with master matches the expect regex."""
    result = await probe(tcp_checker(redis_like.port, closing))
    assert result.ok
    assert result.detail.startswith("matched ")
    assert [name for name, _ in result.phases] == ["connect", "exchange"]


async def test_other_reply_is_negative_at_the_deadline(
    redis_like: RedisLike, closing: Any, probe: Probe
) -> None:
    """A replica (ROLE says slave) that keeps the connection open is negative at the deadline."""
    redis_like.role = b"slave"
    result = await probe(tcp_checker(redis_like.port, closing), budget=0.2)
    assert result.failure == NEGATIVE
    assert result.detail.startswith("expect not matched: got b'*3")


async def test_other_reply_then_close_is_negative_at_once(
    redis_like: RedisLike, closing: Any, probe: Probe
) -> None:
    """Sending QUIT after ROLE lets the server's close end a mismatch before the deadline."""
    redis_like.role = b"slave"
    spec = types.TcpSpec(send=b"ROLE\r\nQUIT\r\n", expect=ROLE_MASTER.expect)
    started = anyio.current_time()
    result = await probe(tcp_checker(redis_like.port, closing, spec), budget=5)
    assert result.failure == NEGATIVE
    assert anyio.current_time() - started < 2.5


async def test_each_check_uses_and_closes_its_own_connection(
    redis_like: RedisLike, closing: Any, probe: Probe
) -> None:
    """Every check opens a fresh connection and closes it when done."""
    checker = tcp_checker(redis_like.port, closing)
    for _ in range(3):
        assert (await probe(checker)).ok
    assert redis_like.connections == 3
    with anyio.fail_after(2):
        while redis_like.closed < 3:  # The server notices the closes on its next loop turns.
            await anyio.wait_all_tasks_blocked()
    assert redis_like.closed == 3


async def test_connect_only(redis_like: RedisLike, closing: Any, probe: Probe) -> None:
    """Without expect, a successful connect is the whole check."""
    result = await probe(tcp_checker(redis_like.port, closing, types.TcpSpec()))
    assert (result.ok, result.detail) == (True, "connected")


async def test_refused_is_network(refused_port: int, closing: Any, probe: Probe) -> None:
    """A refused connection is a network failure."""
    result = await probe(tcp_checker(refused_port, closing))
    assert (result.failure, result.detail) == (NETWORK, "connection refused")


async def test_silence_times_out_at_the_deadline(
    redis_like: RedisLike, closing: Any, probe: Probe
) -> None:
    """A server that never replies is a timeout when the deadline passes."""
    redis_like.mode = "silent"
    result = await probe(tcp_checker(redis_like.port, closing), budget=0.2)
    assert (result.failure, result.detail) == (TIMEOUT, "timeout after 200 ms")


async def test_close_before_reply_is_network(
    redis_like: RedisLike, closing: Any, probe: Probe
) -> None:
    """A server that closes without a byte of reply is a network failure, not a negative."""
    redis_like.mode = "close"
    result = await probe(tcp_checker(redis_like.port, closing))
    assert (result.failure, result.detail) == (NETWORK, "connection closed before reply")


async def test_reading_stops_at_the_cap(redis_like: RedisLike, closing: Any, probe: Probe) -> None:
    """A flood without a match stops at max_read_bytes with a negative result."""
    redis_like.mode = "flood"
    spec = types.TcpSpec(send=b"ROLE\r\n", expect=b"master", max_read_bytes=100)
    result = await probe(tcp_checker(redis_like.port, closing, spec))
    assert result.failure == NEGATIVE
    assert result.detail == f"expect not matched: got {b'x' * 60!r}..."


async def test_invalid_regex_is_config(redis_like: RedisLike, closing: Any, probe: Probe) -> None:
    """An expect regex that does not compile is a config failure and nothing is dialled."""
    result = await probe(tcp_checker(redis_like.port, closing, types.TcpSpec(expect=b"(")))
    assert result.failure == CONFIG
    assert redis_like.connections == 0
