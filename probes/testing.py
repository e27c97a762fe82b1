"""Fake pods for tests and the demo: real HTTP, gRPC health and TCP servers on a pod IP.

`PodNetwork` runs an asyncio loop in a background thread; `PodNetwork.add(ip)` starts a
`FakePod` whose servers listen on that IP (which must be a local address: inside the test
network namespace every 10.244.0.0/16 address is). Behaviour is switched from any thread:

- HTTP on ``:8080``: ``GET /healthz`` answers per `FakePod.http_mode`: ``ok`` (200),
  ``error`` (503), ``hang`` (reads the request, never answers), ``endless`` (200 with a chunked
  body that never ends), ``redirect`` (302 to another host). Answers name the pod in an
  ``X-Pod`` header, and every accepted connection is recorded (`FakePod.accepted`), so a
  client behind kube-proxy can tell which pod it reached, even one that never answers.
- Noise, for soak tests of the failure detectors (`FakePod.noise`, `FakePod.pause`): each HTTP
  answer waits a random latency drawn from a `Noise` profile, or is cut by a connection reset
  (RST) at the profile's rate; `pause` freezes every answer of the pod for a while, like a
  stop-the-world GC or a CPU-throttled container.
- gRPC health on ``:9090``: `FakePod.set_grpc_serving` flips the overall status
  (``Watch`` subscribers are told at once).
- TCP on ``:6379``: answers ``ROLE`` with `FakePod.tcp_role` (``master`` or ``slave``).

It imports grpc, which is why it lives in `probes` (the only package allowed to).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

if TYPE_CHECKING:
    import concurrent.futures
    import types
    from collections.abc import Coroutine

__all__ = ("FakePod", "Noise", "PodNetwork")

HTTP_PORT, GRPC_PORT, TCP_PORT = 8080, 9090, 6379


@dataclasses.dataclass(frozen=True)
class Noise:
    """How a healthy pod's HTTP answers vary: lognormal latency, and occasional resets.

    Attributes:
        median_seconds: Median answer latency.
        p99_seconds: 99th percentile of the latency (sets the lognormal's spread).
        reset_rate: Share of requests answered by a connection reset instead.
        seed: Seed of the pod's own random source (reproducible noise).

    """

    median_seconds: float
    p99_seconds: float
    reset_rate: float = 0.0
    seed: int = 0

    def sampler(self) -> tuple[random.Random, float]:
        """Return a seeded random source and the lognormal's sigma."""
        z99 = statistics.NormalDist().inv_cdf(0.99)
        return random.Random(self.seed), math.log(self.p99_seconds / self.median_seconds) / z99  # noqa: S311


class FakePod:
    """The servers of one fake pod; switch `http_mode`, gRPC status and `tcp_role` freely."""

    def __init__(self, ip: str) -> None:
        """Prepare servers for `ip`; `PodNetwork.add` starts them."""
        self.ip = ip
        self.http_mode = "ok"
        self.tcp_role = "master"
        self.http_requests = 0
        self.accepted: list[tuple[float, str, int]] = []
        """Every HTTP connection accepted: (monotonic time, client IP, client port)."""
        self._servers: list[asyncio.AbstractServer] = []
        self._grpc: Any = None
        self._health: Any = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._noise: tuple[Noise, random.Random, float] | None = None
        self._paused_until = 0.0
        self.resets = 0
        """Requests answered by a connection reset (noise)."""

    @property
    def noise(self) -> Noise | None:
        """The pod's latency and reset profile (None: answers at once)."""
        return None if self._noise is None else self._noise[0]

    @noise.setter
    def noise(self, noise: Noise | None) -> None:
        self._noise = None if noise is None else (noise, *noise.sampler())

    def pause(self, seconds: float) -> None:
        """Hold every HTTP answer for `seconds` from now (any thread)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def start(self) -> None:
        """Start the HTTP, gRPC and TCP servers (on the network's loop)."""
        self._servers.append(await asyncio.start_server(self._http, self.ip, HTTP_PORT))
        self._servers.append(await asyncio.start_server(self._tcp, self.ip, TCP_PORT))
        self._health = health.aio.HealthServicer()
        self._grpc = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        self._grpc.add_insecure_port(f"{self.ip}:{GRPC_PORT}")
        await self._grpc.start()
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        """Stop every server and drop open connections."""
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for server in self._servers:
            await server.wait_closed()
        if self._grpc is not None:
            await self._grpc.stop(grace=None)

    async def set_serving(self, serving: bool) -> None:  # noqa: FBT001 - mirrors health.set.
        """Set the gRPC overall status to SERVING or NOT_SERVING."""
        status = health_pb2.HealthCheckResponse
        await self._health.set("", status.SERVING if serving else status.NOT_SERVING)

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername") or ("", 0)
        self.accepted.append((time.monotonic(), str(peer[0]), int(peer[1])))
        try:
            while await _read_request(reader):
                self.http_requests += 1
                if not await self._answer(reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        mode = self.http_mode
        if mode == "hang":
            while await reader.read(65536):  # Never answer; return when the client goes away.
                pass
            return False
        if mode == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
                await writer.drain()
        if not await self._noisy(writer):
            return False
        status = {"ok": b"200 OK", "error": b"503 Service Unavailable", "redirect": b"302 Found"}
        extra = b"Location: http://other.invalid/\r\n" if mode == "redirect" else b""
        extra += b"X-Pod: " + self.ip.encode() + b"\r\n"  # Who answered, for data-plane tests.
        writer.write(b"HTTP/1.1 " + status[mode] + b"\r\n" + extra + b"Content-Length: 2\r\n\r\nok")
        await writer.drain()
        return True

    async def _noisy(self, writer: asyncio.StreamWriter) -> bool:
        """Wait out the noise's latency and any pause; False if the request is reset instead."""
        if self._noise is not None:
            noise, rng, sigma = self._noise
            if rng.random() < noise.reset_rate:
                self.resets += 1
                writer.transport.abort()  # RST: the client sees "connection reset".
                return False
            await asyncio.sleep(noise.median_seconds * math.exp(sigma * rng.gauss(0.0, 1.0)))
        while (left := self._paused_until - time.monotonic()) > 0:  # noqa: ASYNC110 - extendable
            await asyncio.sleep(left)
        return True

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if line.strip() == b"ROLE":
                writer.write(f"*1\r\n${len(self.tcp_role)}\r\n{self.tcp_role}\r\n".encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request head; return False at a clean end of the connection."""
    try:
        await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return False
    return True


class PodNetwork:
    """Fake pods served from one background event loop; a context manager."""

    def __init__(self) -> None:
        """Prepare the loop thread (started on enter)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.pods: dict[str, FakePod] = {}

    def __enter__(self) -> Self:
        """Start the loop thread."""
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Stop every pod and the loop."""
        for pod in list(self.pods.values()):
            with contextlib.suppress(Exception):
                self.run(pod.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run `coro` on the network's loop and return its result."""
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=timeout)

    def add(self, ip: str) -> FakePod:
        """Start a fake pod on `ip` and return it."""
        pod = FakePod(ip)
        self.run(pod.start())
        self.pods[ip] = pod
        return pod

    def set_serving(self, ip: str, serving: bool) -> None:  # noqa: FBT001 - mirrors health.set.
        """Flip pod `ip`'s gRPC status from any thread."""
        self.run(self.pods[ip].set_serving(serving))
