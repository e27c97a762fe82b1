"""A TCP proxy in front of the API server that a test can pause, cut, slow down and heal.

Chaos tests point a controller's kubeconfig at `Proxy.url` (``ControlPlane.issue_user(...,
server_url=proxy.url)``) and then break the network between the two without touching either:

- `Proxy.pause` stops forwarding bytes both ways. Connections stay open and new ones are
  accepted, but nothing reaches the other side (a partition where packets are dropped):
  clients wait until their own timeouts fire.
- `Proxy.cut` resets every open connection (RST) and resets each new one at once until
  `Proxy.heal` (a partition that the kernel reports: ``ECONNRESET``).
- `Proxy.delay` adds latency to every chunk, both ways; ``delay(0)`` turns it off.

TLS passes through untouched (the API server's certificate covers 127.0.0.1, so clients still
verify it). The proxy runs its own asyncio event loop in a daemon thread, so it works the same
from synchronous tests and from code that has its own event loop; every control method returns
once the change is in force. Use it as a context manager, or call `start` and `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import types
    from collections.abc import Coroutine

__all__ = ("Proxy", "ProxyStats")

_CHUNK = 64 * 1024
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN.


@dataclasses.dataclass(frozen=True)
class ProxyStats:
    """Counters since the proxy started.

    Attributes:
        accepted: connections accepted from clients.
        open: connections open now.
        reset: connections reset by `Proxy.cut` (or at accept while cut).
        bytes_up: bytes forwarded from clients to the server.
        bytes_down: bytes forwarded from the server to clients.

    """

    accepted: int
    open: int
    reset: int
    bytes_up: int
    bytes_down: int


class _Link:
    """One client connection and, once forwarding starts, its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Reset both connections (RST)."""
        for writer in (self.client, self.server):
            if writer is not None:
                _reset(writer)


def _not_network(failure: BaseException) -> BaseException | None:
    """Return the part of `failure` that is not an OSError (a bug to report), or None."""
    if isinstance(failure, BaseExceptionGroup):
        return failure.split(OSError)[1]
    return None if isinstance(failure, OSError) else failure


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    writer.transport.abort()


class Proxy:
    """Forwards 127.0.0.1:<random port> to `target_host`:`target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        """Prepare a proxy to `target_host`:`target_port`; `start` opens the listening port."""
        self.target = (target_host, target_port)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._flowing: asyncio.Event | None = None
        self._cut = False
        self._delay = 0.0
        self._counts = {"accepted": 0, "reset": 0, "bytes_up": 0, "bytes_down": 0}

    @property
    def url(self) -> str:
        """HTTPS URL of the proxy, for a kubeconfig."""
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        """Start and return self."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Close every connection and stop the thread."""
        self.close()

    def start(self) -> None:
        """Start the event loop thread and listen on a free port of 127.0.0.1."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="proxy", daemon=True)
        self._thread.start()
        self._run(self._listen())

    def close(self) -> None:
        """Stop listening, reset open connections, stop the loop. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._run(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def pause(self) -> None:
        """Stop forwarding in both directions; connections stay open, new ones wait."""
        self._run(self._set_flowing(flowing=False))

    def resume(self) -> None:
        """Forward again, including whatever was held while paused."""
        self._run(self._set_flowing(flowing=True))

    def cut(self) -> None:
        """Reset every open connection with RST, and reset new ones until `heal`."""
        self._run(self._cut_all())

    def heal(self) -> None:
        """Accept and forward new connections again after `cut`."""
        self._run(self._set_cut(cut=False))

    def delay(self, seconds: float) -> None:
        """Hold every chunk `seconds` before forwarding it, both ways (0: no delay)."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, not {seconds}")
        self._delay = seconds

    def stats(self) -> ProxyStats:
        """Return the connection and byte counters."""
        return ProxyStats(open=len(self._links), **self._counts)

    # Everything below runs on the proxy's loop --------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut_all()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Let the aborted transports run their connection_lost callbacks and close sockets.
        for _ in range(3):
            await asyncio.sleep(0)

    async def _set_flowing(self, *, flowing: bool) -> None:
        if self._flowing is not None:
            (self._flowing.set if flowing else self._flowing.clear)()

    async def _set_cut(self, *, cut: bool) -> None:
        self._cut = cut

    async def _cut_all(self) -> None:
        self._cut = True
        links, self._links = self._links, set()
        tasks = []
        for link in links:
            link.reset()
            if link.task is not None:
                link.task.cancel()
                tasks.append(link.task)
        self._counts["reset"] += len(links)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._counts["accepted"] += 1
        if self._cut:
            self._counts["reset"] += 1
            _reset(writer)
            return
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        link = _Link(writer)
        # Forwarding runs in a task of its own: `cut` cancels it, never this handler, whose
        # cancellation asyncio's stream server (3.11) would report as an error.
        link.task = asyncio.create_task(self._forward(link, reader))
        self._links.add(link)
        try:
            await asyncio.wait([link.task])
            failure = None if link.task.cancelled() else link.task.exception()
            if failure is not None:
                link.reset()  # A reset or refusal on one side is passed on as a reset.
                unexpected = _not_network(failure)
                if unexpected is not None:
                    raise unexpected
        finally:
            self._links.discard(link)
            self._handlers.discard(handler)
            for side in (link.client, link.server):
                if side is not None:
                    side.close()  # Flushes what is left; a no-op after a reset.

    async def _forward(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        await self._wait_flowing()  # A paused proxy accepts, but does not connect onwards.
        server_reader, link.server = await asyncio.open_connection(*self.target)
        directions = (
            (client_reader, link.server, "bytes_up"),
            (server_reader, link.client, "bytes_down"),
        )
        async with asyncio.TaskGroup() as group:
            for reader, writer, counter in directions:
                queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
                group.create_task(self._receive(reader, queue))
                group.create_task(self._send(queue, writer, counter))

    async def _wait_flowing(self) -> None:
        if self._flowing is not None:
            await self._flowing.wait()

    async def _receive(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        """Read chunks into `queue` until EOF (queued as an empty chunk); not while paused."""
        while True:
            await self._wait_flowing()
            chunk = await reader.read(_CHUNK)
            # The deadline is stamped on arrival: latency, not a cap on throughput.
            await queue.put((time.monotonic() + self._delay, chunk))
            if not chunk:
                return

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, counter: str
    ) -> None:
        """Write each chunk of `queue` when it is due and the proxy flows; pass EOF on."""
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._wait_flowing()
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            self._counts[counter] += len(chunk)
            await writer.drain()
