"""Real loopback servers for the prober tests: scripted HTTP(S), gRPC health and a TCP "Redis".

Every server listens on 127.0.0.1 port 0 inside the test's event loop and counts the
connections it accepts, so tests can assert keep-alive reuse and that nothing reached a host it
should not. Fixtures stop their servers and cancel their handlers, so no socket or task outlives
a test (the suite turns warnings, ResourceWarning included, into errors).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from probes import _tls
from probes.types import ProbeResult

if TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator

T = TypeVar("T")

TLS_NAME = "probe.test"
"""The DNS name in the test certificate."""


class _Handlers:
    """Tracks a server's connection handlers so a fixture can end them all."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def wrap(
        self, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            self._writers.add(writer)
            try:
                await handle(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass  # The prober hung up, as it may.
            finally:
                self._writers.discard(writer)
                self._tasks.discard(task)
                writer.transport.abort()

        return run

    async def stop(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()


# --- HTTP -------------------------------------------------------------------------------------

HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclasses.dataclass
class Request:
    """A request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    connection: int
    """Which accepted connection (1-based) carried it."""


class HttpServer:
    """An HTTP/1.1 server whose answer is scripted by the request path.

    ``/ok`` 200 · ``/fail`` 503 · ``/redirect`` 301 to `redirect_to` · ``/huge`` 10 MB body ·
    ``/endless`` endless chunked body · ``/drip`` one byte per 100 ms · ``/hang`` never answers ·
    ``/close`` closes at once · ``/malformed`` bad status line · ``/giant-headers`` 20 KiB of
    headers · ``/chunked`` small chunked body · ``/until-close`` body framed by closing ·
    ``/conn-close`` 200 with ``Connection: close`` · ``/close-idle`` 200 then closes ·
    ``/once`` answers one request per connection, closes at the second · ``/hang-first`` hangs
    on the first connection only · ``/head`` Content-Length without a body (for HEAD) ·
    ``/switch`` waits `delay()` seconds, then answers 200, or never while `hanging` is set.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        """Serve with TLS when `tls` is given."""
        self.tls = tls
        self.requests: list[Request] = []
        self.redirect_to = "http://192.0.2.1/"
        self.server_names: list[str | None] = []
        self.delay: Callable[[], float] = lambda: 0.0
        self.hanging = False
        self._handlers = _Handlers()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return self._handlers.connections

    async def start(self) -> None:
        """Listen on 127.0.0.1, port chosen by the kernel."""
        if self.tls is not None:
            self.tls.sni_callback = self._record_sni
        self._server = await asyncio.start_server(
            self._handlers.wrap(self._serve), "127.0.0.1", 0, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        assert self._server is not None
        await self._handlers.stop(self._server)

    def _record_sni(self, _obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.server_names.append(name)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        served = 0
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head[:-4].split("\r\n")
            method, path, _ = request_line.split(" ")
            headers = dict(line.split(": ", 1) for line in header_lines)
            self.requests.append(
                Request(method, path, {k.lower(): v for k, v in headers.items()}, connection)
            )
            served += 1
            if not await self._answer(path, writer, served=served, connection=connection):
                return

    async def _answer(
        self, path: str, writer: asyncio.StreamWriter, *, served: int, connection: int
    ) -> bool:
        """Answer one request; return whether to keep the connection open."""
        simple = {
            "/ok": HTTP_OK,
            "/fail": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
            "/redirect": (
                b"HTTP/1.1 301 Moved Permanently\r\nLocation: "
                + self.redirect_to.encode()
                + b"\r\nContent-Length: 0\r\n\r\n"
            ),
            "/malformed": b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
            "/giant-headers": b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100) for i in range(200))
            + b"Content-Length: 0\r\n\r\n",
            "/chunked": (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"6\r\nstatus\r\n7;ext=1\r\n: green\r\n0\r\nX-Trailer: 1\r\n\r\n"
            ),
            "/head": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        }
        if path in simple:
            writer.write(simple[path])
            return True
        if path == "/once" and served > 1:
            return False
        if path == "/once":
            writer.write(HTTP_OK)
            return True
        if path == "/hang-first" and connection > 1:
            writer.write(HTTP_OK)
            return True
        return await self._answer_special(path, writer)

    async def _answer_special(self, path: str, writer: asyncio.StreamWriter) -> bool:
        """Give the answers that take time, write a lot or close the connection."""
        if path == "/close":
            return False
        if path == "/switch":
            await asyncio.sleep(self.delay())
            if not self.hanging:
                writer.write(HTTP_OK)
                return True
        if path in {"/hang", "/hang-first", "/switch"}:
            await asyncio.Event().wait()
        if path == "/drip":
            for byte in HTTP_OK:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)
            return True
        if path in {"/conn-close", "/until-close", "/close-idle"}:
            framing = {
                "/conn-close": b"Connection: close\r\nContent-Length: 2\r\n\r\nok",
                "/until-close": b"\r\nstatus: green until close",
                "/close-idle": b"Content-Length: 2\r\n\r\nok",
            }[path]
            writer.write(b"HTTP/1.1 200 OK\r\n" + framing)
            await writer.drain()
            return False
        if path == "/huge":
            await self._huge(writer)
            return False
        if path == "/endless":
            await self._endless(writer)
        raise AssertionError(f"unscripted path {path}")

    @staticmethod
    async def _huge(writer: asyncio.StreamWriter) -> None:
        size = 10 * 1024 * 1024
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"a" * 65536
        for _ in range(size // len(piece) - 1):
            writer.write(piece)
            await writer.drain()
        writer.write(piece[:-4] + b"TAIL")
        await writer.drain()

    @staticmethod
    async def _endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1000\r\n" + b"b" * 4096 + b"\r\n")
            await writer.drain()


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    """Serve scripted plain HTTP on 127.0.0.1."""
    server = HttpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def other_http_server() -> AsyncIterator[HttpServer]:
    """Serve a second HTTP server: the "other host" a redirect points to."""
    server = HttpServer()
    await server.start()
    yield server
    await server.stop()


# --- TLS --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pki:
    """A test CA and a server certificate for `TLS_NAME` (and 127.0.0.1) signed by it."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    cert_file: pathlib.Path
    key_file: pathlib.Path

    def server_context(self) -> ssl.SSLContext:
        """Return a server-side context presenting the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def trusting_context(self) -> ssl.SSLContext:
        """Return a verifying client context that trusts the test CA."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode())
        context.set_alpn_protocols(["http/1.1"])
        return context


def _certificate(
    *,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    """Build a CA certificate (`issuer` None) or a server certificate signed by `issuer`."""
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, signing_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
    )
    if issuer is None:
        usage = x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    else:
        names = [x509.DNSName(TLS_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Make a CA and a certificate for probe.test once per session."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(subject="zen-lead probe test CA", key=ca_key, issuer=None)
    cert = _certificate(subject=TLS_NAME, key=key, issuer=("zen-lead probe test CA", ca_key))
    folder = tmp_path_factory.mktemp("pki")
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    (folder / "key.pem").write_bytes(key_pem)
    return Pki(
        ca_pem=ca.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key_pem,
        cert_file=folder / "cert.pem",
        key_file=folder / "key.pem",
    )


@pytest.fixture
def trust_test_ca(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the shared verifying context trust the test CA (restored afterwards)."""
    monkeypatch.setattr(_tls, "_CONTEXTS", {True: pki.trusting_context()})


@pytest.fixture
def untrusted_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the shared verifying context a fresh default one (system CAs only)."""
    monkeypatch.setattr(_tls, "_CONTEXTS", {})


@pytest.fixture
async def https_server(pki: Pki) -> AsyncIterator[HttpServer]:
    """Serve scripted HTTPS with the probe.test certificate."""
    server = HttpServer(tls=pki.server_context())
    await server.start()
    yield server
    await server.stop()


# --- gRPC -------------------------------------------------------------------------------------


@dataclasses.dataclass
class GrpcServer:
    """A grpc.aio server on 127.0.0.1 with its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer | None


async def _grpc_server(
    register: Callable[[grpc.aio.Server], health.aio.HealthServicer | None],
    *,
    credentials: Any = None,
    port: int = 0,
) -> GrpcServer:
    server = grpc.aio.server()
    servicer = register(server)
    address = f"127.0.0.1:{port}"
    port = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    await server.start()
    return GrpcServer(server, port, servicer)


def _standard_health(server: grpc.aio.Server) -> health.aio.HealthServicer:
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


@pytest.fixture
async def grpc_server() -> AsyncIterator[GrpcServer]:
    """Serve gRPC health with the standard async HealthServicer (overall: SERVING)."""
    started = await _grpc_server(_standard_health)
    yield started
    await started.server.stop(None)


@pytest.fixture
async def start_health_server() -> AsyncIterator[Callable[..., Awaitable[GrpcServer]]]:
    """Return ``start(port=0)``, starting standard health servers that are stopped afterwards."""
    started: list[GrpcServer] = []

    async def start(port: int = 0) -> GrpcServer:
        server = await _grpc_server(_standard_health, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.server.stop(None)


@pytest.fixture
async def grpc_tls_server(pki: Pki) -> AsyncIterator[GrpcServer]:
    """Serve the standard health service over TLS with the probe.test certificate."""
    credentials = grpc.ssl_server_credentials([(pki.key_pem, pki.cert_pem)])
    started = await _grpc_server(_standard_health, credentials=credentials)
    yield started
    await started.server.stop(None)


def _check_only(*, hang: bool) -> Callable[[grpc.aio.Server], None]:
    """Register a Health service with Check alone (Watch is then UNIMPLEMENTED)."""

    async def check(_request: Any, _context: Any) -> Any:
        if hang:
            await asyncio.Event().wait()
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(health.SERVICE_NAME, {"Check": handler}),)
        )

    return register


@pytest.fixture
async def grpc_check_only_server() -> AsyncIterator[GrpcServer]:
    """Serve a Health service that implements Check (SERVING) but not Watch."""
    started = await _grpc_server(_check_only(hang=False))
    yield started
    await started.server.stop(None)


@pytest.fixture
async def grpc_hanging_server() -> AsyncIterator[GrpcServer]:
    """Serve a Health/Check that never answers."""
    started = await _grpc_server(_check_only(hang=True))
    yield started
    await started.server.stop(None)


# --- TCP --------------------------------------------------------------------------------------


class RedisLike:
    """Answers ``ROLE`` like Redis with `role`; or stays silent, closes, or floods, per `mode`."""

    def __init__(self) -> None:
        """Start as a master that answers."""
        self.role = b"master"
        self.mode = "answer"
        self.closed = 0
        self._handlers = _Handlers()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return self._handlers.connections

    async def start(self) -> None:
        """Listen on 127.0.0.1, port chosen by the kernel."""
        self._server = await asyncio.start_server(self._handlers.wrap(self._serve), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        assert self._server is not None
        await self._handlers.stop(self._server)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        finally:
            self.closed += 1

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "close":
            await reader.readline()  # Read the query first, so that closing sends FIN, not RST.
            return
        while line := await reader.readline():
            if self.mode == "silent":
                continue
            if self.mode == "flood":
                writer.write(b"x" * 10000)
            elif line.strip().upper() == b"ROLE":
                writer.write(b"*3\r\n$%d\r\n%s\r\n:0\r\n*0\r\n" % (len(self.role), self.role))
            elif line.strip().upper() == b"QUIT":
                writer.write(b"+OK\r\n")
                await writer.drain()
                return
            await writer.drain()
        # The client closed its side: the check is over.


@pytest.fixture
async def redis_like() -> AsyncIterator[RedisLike]:
    """Serve a TCP "Redis" answering ROLE (master by default)."""
    server = RedisLike()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def refused_port() -> int:
    """Return a loopback port with no listener (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- Running checks ---------------------------------------------------------------------------

LATE_SLACK_SECONDS = 0.1
"""How long after its deadline a check may return (loop scheduling, not probe work)."""


class _Checker(Protocol):
    async def check(self, *, deadline: float) -> ProbeResult: ...

    async def aclose(self) -> None: ...


Probe = Callable[..., Awaitable[ProbeResult]]


@pytest.fixture
def probe() -> Probe:
    """Return ``run(checker, budget=...)``: one check, asserted to return by its deadline."""

    async def run(checker: _Checker, *, budget: float = 2.0) -> ProbeResult:
        deadline = anyio.current_time() + budget
        result = await checker.check(deadline=deadline)
        late = anyio.current_time() - deadline
        assert late <= LATE_SLACK_SECONDS, f"returned {late * 1000:.0f} ms after the deadline"
        return result

    return run


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[T], T]]:
    """Return ``keep(checker)``: every checker passed to it is closed after the test."""
    opened: list[Any] = []

    def keep(checker: T) -> T:
        opened.append(checker)
        return checker

    yield keep
    for checker in opened:
        await checker.aclose()
