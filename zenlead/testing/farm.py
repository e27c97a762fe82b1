"""A farm of minimal HTTP pods in a process of its own, for scale benchmarks.

`Farm(ips)` starts ``python -m zenlead.testing.farm`` in the current network namespace. The
child listens on ``<ip>:8080`` for every IP (each must be a local address: inside the test
network namespace every 10.244.0.0/16 address is) and answers every request with 200, an
``X-Pod`` header and keep-alive. `Farm.hang` makes one pod accept and read requests but never
answer; `Farm.heal` undoes it. `Farm.cpu_seconds` reports the child's CPU.

Why a process: thousands of pods answering hundreds of probes a second cost CPU, and in the
benchmark's own process that CPU (and its GIL) would compete with the measuring threads; in
the controller's it would be counted as the controller's. A separate process keeps the cost
where it belongs and reports it.

Protocol on the child's stdin, one line each: first a JSON list of IPs; then ``hang IP`` or
``heal IP``. The child prints ``ready`` once every server listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Coroutine

    _Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]

__all__ = ("PORT", "Farm")

PORT = 8080


class Farm:
    """A child process serving HTTP for many pod IPs; a context manager."""

    def __init__(self, ips: list[str]) -> None:
        """Serve `ips` once entered."""
        self.ips = ips
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        """Start the child and wait until every server listens."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "zenlead.testing.farm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._send(json.dumps(self.ips))
        line = _pipe(self._proc.stdout).readline()
        if line.strip() != "ready":
            self.__exit__(None, None, None)
            raise RuntimeError(f"farm did not start: {line!r}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Stop the child."""
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            _pipe(self._proc.stdin).close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._child().pid

    def hang(self, ip: str) -> None:
        """Make pod `ip` stop answering (new and kept connections alike)."""
        self._send(f"hang {ip}")

    def heal(self, ip: str) -> None:
        """Make pod `ip` answer again."""
        self._send(f"heal {ip}")

    def _send(self, line: str) -> None:
        stdin = _pipe(self._child().stdin)
        stdin.write(line + "\n")
        stdin.flush()

    def _child(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise RuntimeError("the farm is not running")
        return self._proc


def _pipe(pipe: IO[str] | None) -> IO[str]:
    if pipe is None:
        raise RuntimeError("the farm's pipe is closed")
    return pipe


def _raise_file_limit() -> None:
    """Allow as many open files as the hard limit: a listener and a connection per pod."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Pods:
    """The child's side: one server per IP, and the set of hung IPs."""

    def __init__(self) -> None:
        self.hung: set[str] = set()
        self.servers: list[asyncio.Server] = []

    async def serve(self, ips: list[str]) -> None:
        for ip in ips:
            handler = self._handler(ip)
            self.servers.append(await asyncio.start_server(handler, ip, PORT, backlog=256))

    def _handler(self, ip: str) -> _Handler:
        answer = f"HTTP/1.1 200 OK\r\nX-Pod: {ip}\r\nContent-Length: 2\r\n\r\nok".encode()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    if ip in self.hung:
                        while await reader.read(65536):  # Never answer; end with the client.
                            pass
                        return
                    writer.write(answer)
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

        return handle


def _control(
    pods: _Pods, loop: asyncio.AbstractEventLoop, stdin: IO[str], done: asyncio.Event
) -> None:
    """Apply ``hang``/``heal`` lines from `stdin` on `loop`; set `done` at end of input."""
    for line in stdin:
        verb, _, ip = line.strip().partition(" ")
        if verb == "hang":
            loop.call_soon_threadsafe(pods.hung.add, ip)
        elif verb == "heal":
            loop.call_soon_threadsafe(pods.hung.discard, ip)
    loop.call_soon_threadsafe(done.set)


async def _main() -> None:
    _raise_file_limit()
    ips = json.loads(sys.stdin.readline())
    pods = _Pods()
    await pods.serve(ips)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_control, args=(pods, loop, sys.stdin, done), daemon=True).start()
    await done.wait()
    for server in pods.servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(_main())
