r"""Synthetic TCP checks: connect, optionally send bytes and wait for a regex in the reply.

`TcpChecker` is what ``probes.PROBERS["tcp"]`` builds for one pod. ``check(deadline=...)``
connects to the target; with ``spec.expect`` unset a successful connect is the whole check
(kubelet ``tcpSocket`` semantics). Otherwise it sends ``spec.send`` and reads until
``re.search(spec.expect, reply)`` matches (ok), the peer ends the reply or ``max_read_bytes``
were read without a match (``NEGATIVE`` "expect not matched"), or the deadline passes.
HAProxy's Redis example is the model: send ``ROLE``, expect ``master``.

What the deadline means depends on what arrived. No byte at all: the target is hung
(``TIMEOUT``). Some reply that does not match: the target did answer, just not what we expect,
which is an explicit negative (``NEGATIVE``) rather than a hang. A server that keeps the
connection open after a non-matching answer (Redis does) therefore costs the whole deadline;
sending a closing command after the query (``ROLE\r\nQUIT\r\n``) makes the verdict immediate.

A peer that closes before sending a single byte has not answered at all: that is ``NETWORK``
("connection closed before reply"), like a reset or a refused connect, not a negative answer.

Unlike HTTP, each check opens a fresh connection and closes it afterwards (with a reset, which
leaves no TIME_WAIT socket per check behind). Synthetic checks such as Redis ``ROLE`` are cheap,
stateless request/reply exchanges, and many TCP services (and proxies in front of them) close
idle clients or expect one exchange per connection, so keeping a connection would buy little and
make every check depend on the previous one's leftovers.

Phases reported: ``connect`` and ``exchange`` (send plus reading until the verdict).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import TYPE_CHECKING, Any

from probes import _match, types

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("TcpChecker",)

_Phases = list[tuple[str, float]]
_SHOWN_BYTES = 60
"""Reply bytes quoted in a result's detail at most."""


class _FailedError(Exception):
    """How the exchange ended when it did not match: the result's class and detail."""

    def __init__(self, failure: types.FailureClass, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class TcpChecker:
    """Probes one target with a fresh TCP connection per check."""

    def __init__(self, target: types.Target, spec: types.TcpSpec) -> None:
        """Compile the expect regex; nothing is opened until a check."""
        self._target = target
        self._spec = spec
        self._expect: Any = None
        self._problem: str | None = None
        if spec.max_read_bytes <= 0 and spec.expect is not None:
            self._problem = "max_read_bytes must be positive"
        try:
            self._expect = None if spec.expect is None else _match.compile_bytes(spec.expect)
        except ValueError as error:
            self._problem = f"invalid expect regex: {error}"

    async def check(self, *, deadline: float) -> types.ProbeResult:
        """Connect, exchange and judge once; return by `deadline` (loop clock)."""
        if self._problem is not None:
            return types.ProbeResult.fail(types.FailureClass.CONFIG, self._problem)
        loop = asyncio.get_running_loop()
        start = loop.time()
        phases: _Phases = []
        reply = bytearray()
        try:
            async with asyncio.timeout_at(deadline):
                return await self._connect_and_exchange(loop, phases, reply)
        except TimeoutError:
            if reply:  # It answered, and not what we expect: a negative, not a hang.
                return types.ProbeResult.fail(
                    types.FailureClass.NEGATIVE, _not_matched(reply), tuple(phases)
                )
            detail = f"timeout after {max(0, round((deadline - start) * 1000))} ms"
            return types.ProbeResult.fail(types.FailureClass.TIMEOUT, detail, tuple(phases))
        except _FailedError as failed:
            return types.ProbeResult.fail(failed.failure, failed.detail, tuple(phases))
        except OSError as error:
            return types.ProbeResult.fail(
                types.FailureClass.NETWORK, _os_error_detail(error), tuple(phases)
            )

    async def watch(self, callback: Callable[[types.ProbeResult], None]) -> None:
        """Return at once: TCP checks are polled."""
        del callback

    async def aclose(self) -> None:
        """Nothing to release: each check closes its own connection."""

    async def _connect_and_exchange(
        self, loop: asyncio.AbstractEventLoop, phases: _Phases, reply: bytearray
    ) -> types.ProbeResult:
        started = loop.time()
        try:
            reader, writer = await asyncio.open_connection(self._target.ip, self._target.port)
        finally:
            phases.append(("connect", loop.time() - started))
        started = loop.time()
        try:
            detail = await self._exchange(reader, writer, reply)
        finally:
            phases.append(("exchange", loop.time() - started))
            _reset(writer)
        return types.ProbeResult.success(detail, tuple(phases))

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytearray
    ) -> str:
        """Send, then read into `reply` until the expect regex matches; return the detail."""
        if self._spec.send:
            writer.write(self._spec.send)
            await writer.drain()
        if self._expect is None:
            return "connected"
        while len(reply) < self._spec.max_read_bytes:
            chunk = await reader.read(self._spec.max_read_bytes - len(reply))
            if not chunk:
                if not reply:
                    raise _FailedError(types.FailureClass.NETWORK, "connection closed before reply")
                break
            reply += chunk
            try:
                match = _match.search(self._expect, reply)
            except _match.RegexTimeoutError as error:
                raise _FailedError(types.FailureClass.CONFIG, str(error)) from error
            if match is not None:
                return f"matched {_show(match[0])}"
        raise _FailedError(types.FailureClass.NEGATIVE, _not_matched(reply))


def _show(data: bytes | bytearray) -> str:
    """Render reply bytes briefly for a result detail."""
    text = repr(bytes(data[:_SHOWN_BYTES]))
    return text + "..." if len(data) > _SHOWN_BYTES else text


_LINGER_OFF = struct.pack("ii", 1, 0)
"""SO_LINGER on with a zero timeout: close() sends RST and leaves no TIME_WAIT behind."""


def _reset(writer: asyncio.StreamWriter) -> None:
    """End the check's connection at once with a reset, as HAProxy's checks do.

    The prober closes first, so a normal close would leave each check's socket in TIME_WAIT
    for a minute on our side: about 180,000 of them at 3,000 targets a second, beyond the
    kernel's default TIME_WAIT bucket limit. The exchange is complete, so a reset loses nothing.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
    writer.transport.abort()


def _not_matched(reply: bytearray) -> str:
    return f"expect not matched: got {_show(reply)}"


def _os_error_detail(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return str(error.strerror or error)
