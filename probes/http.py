"""HTTP(S) health checks: hand-written HTTP/1.1 over one keep-alive asyncio stream per target.

`HttpChecker` is what ``probes.PROBERS["http"]`` builds for one pod; the prober pool calls
``check(deadline=...)`` about once a second and gets a `types.ProbeResult` back: ok when the
status is in ``spec.expected`` (and the capped body matches ``spec.body_regex`` if set), else a
failure class (``NETWORK``, ``TIMEOUT``, ``NEGATIVE``, ``CONFIG``) and a short detail such as
``HTTP 503`` or ``connection refused``.

Why not httpx: at thousands of targets per second a generic client spends milliseconds per
request on pools, models and its own timeouts (see the measurements in shared/README.md), while a
fixed request on a raw stream costs tens of microseconds. A probe needs very little of HTTP:

- One request shape, built once: ``<method> <path> HTTP/1.1`` with ``Host``, a fixed
  ``User-Agent`` and ``Connection: keep-alive``, no body.
- Bounded reads. The status line and headers may take ``HEADER_LIMIT`` bytes (more is a
  ``NEGATIVE`` "headers too large"); the body (Content-Length, chunked or until close) is read up
  to ``spec.max_body_bytes`` and then the connection is closed instead of read further. The status
  decides; a ``body_regex`` must match within what was read.
- Strict parsing: a status line or header that is not HTTP/1.x is a ``NEGATIVE`` "malformed
  response" (a pod answering garbage is not healthy).
- Redirects are never followed: a 3xx is a status like any other, compared with
  ``spec.expected`` (200-399 pass by default, as for kubelet). So no probe ever reaches a host
  other than the pod it was built for, whatever a ``Location`` header says.
- Keep-alive: one connection per checker, reused while the server keeps it open. It is dropped
  after any failure, timeout or cancellation (a connection whose reply may still be in flight is
  never reused), when the server asks to close, or when a body was cut at the cap. A reused
  connection that the server closed while idle is retried once on a fresh one, within the same
  deadline, so an idle-timeout race is not reported as a failure.
- Deadline: everything (connect, TLS, request, body) runs under one ``asyncio.timeout_at`` on the
  caller's absolute deadline; the anyio clock *is* the loop clock on the asyncio backend, and a
  raw asyncio timeout costs less than a cancel scope per probe. A server dripping one byte at a
  time still ends at the deadline with ``TIMEOUT``.
- TLS (``scheme="https"``): the shared contexts of `probes._tls`, upgraded after connecting so
  ``connect`` and ``tls`` are timed apart. The server name (SNI and verification) is
  ``spec.server_name``, else the host part of the Host header; with verification on and no name,
  the pod IP is verified (no SNI is sent for an IP). Certificate or name errors are ``CONFIG``.

Phases reported: ``connect`` and ``tls`` (only when a connection was opened by this check),
``request`` (request sent until the headers are parsed) and ``transfer`` (the body).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import TYPE_CHECKING, Any

from probes import _match, _tls, types

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("HEADER_LIMIT", "USER_AGENT", "HttpChecker")

HEADER_LIMIT = 16 * 1024
"""Bytes allowed for the status line plus headers (and, separately, for chunk trailers)."""
USER_AGENT = "zen-lead-prober"

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [^\r\n]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_SWITCHING_PROTOCOLS = 101
_FIRST_FINAL_STATUS = 200
_NO_BODY_STATUSES = frozenset({204, 304})
_FIRST_PRINTABLE = 0x21  # Below it: space and control characters, never valid in a request line.
_Phases = list[tuple[str, float]]


class _ProbeError(Exception):
    """A target failure found mid-probe, carrying the result's class and detail."""

    def __init__(self, failure: types.FailureClass, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class _StaleError(_ProbeError):
    """The connection ended before any byte of the response: retry once if it was reused."""

    def __init__(self, detail: str) -> None:
        super().__init__(types.FailureClass.NETWORK, detail)


def _malformed() -> _ProbeError:
    return _ProbeError(types.FailureClass.NEGATIVE, "malformed response")


class _Head:
    """What the probe needs from a parsed status line and header block."""

    __slots__ = ("chunked", "keep_alive", "length", "status")

    def __init__(self, status: int, *, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive
        self.length: int | None = None
        self.chunked = False


def _parse_head(head: bytes) -> _Head:
    """Parse ``head`` (status line and headers, ending in an empty line) strictly."""
    lines = head[:-4].split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise _malformed()
    parsed = _Head(int(match[2]), keep_alive=match[1] == b"1")
    for line in lines[1:]:
        name, colon, raw_value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise _malformed()
        _apply_header(parsed, name.lower(), raw_value.strip(b" \t").lower())
    return parsed


def _apply_header(head: _Head, name: bytes, value: bytes) -> None:
    """Record the framing headers; every other header is ignored."""
    if name == b"content-length":
        if _DIGITS.fullmatch(value) is None or head.length not in {None, int(value)}:
            raise _malformed()
        head.length = int(value)
    elif name == b"transfer-encoding":
        # Only a final "chunked" frames the body; any other coding runs until close (RFC 9112).
        head.chunked = value.rsplit(b",", 1)[-1].strip() == b"chunked"
        head.keep_alive = head.keep_alive and head.chunked
        head.length = -1  # Transfer-Encoding overrides Content-Length.
    elif name == b"connection":
        tokens = {token.strip() for token in value.split(b",")}
        if b"close" in tokens:
            head.keep_alive = False
        elif b"keep-alive" in tokens:
            head.keep_alive = True


def _host_header(target: types.Target, spec: types.HttpSpec) -> str:
    """Return the Host header: ``spec.host``, else the target as ``ip:port``."""
    if spec.host:
        return spec.host
    return f"[{target.ip}]:{target.port}" if ":" in target.ip else f"{target.ip}:{target.port}"


def _host_part(host: str) -> str:
    """Return `host` without its port (and without brackets around an IPv6 address)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


def problem(spec: types.HttpSpec) -> str | None:
    """Return why `spec` could never make a valid request (for config validation), or None."""
    return _config_problem(spec, spec.host or "127.0.0.1:80")


def _config_problem(spec: types.HttpSpec, host: str) -> str | None:
    """Return why `spec` cannot make a valid request, or None when it can."""
    if spec.scheme not in {"http", "https"}:
        return f"unsupported scheme {spec.scheme!r}"
    if _TOKEN.fullmatch(spec.method.encode("ascii", "replace")) is None:
        return f"invalid method {spec.method!r}"
    if not spec.path.startswith("/") or not _printable(spec.path):
        return f"invalid path {spec.path!r}"
    if not host or not _printable(host):
        return f"invalid host {host!r}"
    if spec.max_body_bytes < 0:
        return "max_body_bytes must not be negative"
    return None


def _printable(text: str) -> bool:
    """Tell whether `text` is free of spaces and control characters (no header injection)."""
    return all(ord(c) >= _FIRST_PRINTABLE and not c.isspace() for c in text)


def _compile_body_regex(spec: types.HttpSpec) -> tuple[Any, str | None]:
    """Compile ``spec.body_regex`` for bytes (time-bounded matching); return (pattern, problem)."""
    if spec.body_regex is None:
        return None, None
    try:
        return _match.compile_bytes(spec.body_regex), None
    except ValueError as error:
        return None, f"invalid body_regex: {error}"


class HttpChecker:
    """Probes one target over HTTP/1.1 (or HTTPS), keeping one connection open between checks."""

    def __init__(self, target: types.Target, spec: types.HttpSpec) -> None:
        """Prepare the request for `target`; no connection is opened until the first check."""
        self._target = target
        self._spec = spec
        host = _host_header(target, spec)
        self._body_regex, regex_problem = _compile_body_regex(spec)
        self._problem = _config_problem(spec, host) or regex_problem
        self._request = (
            f"{spec.method} {spec.path} HTTP/1.1\r\nHost: {host}\r\n"
            f"User-Agent: {USER_AGENT}\r\nConnection: keep-alive\r\n\r\n"
        ).encode("latin-1", "replace")
        self._head_only = spec.method == "HEAD"
        self._tls_name = spec.server_name or _host_part(spec.host or "") or None
        if self._tls_name is None and spec.verify_tls:
            self._tls_name = target.ip  # Verified against the certificate's IP addresses.
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def check(self, *, deadline: float) -> types.ProbeResult:
        """Send one request and judge the response; return by `deadline` (loop clock)."""
        if self._problem is not None:
            return types.ProbeResult.fail(types.FailureClass.CONFIG, self._problem)
        loop = asyncio.get_running_loop()
        start = loop.time()
        phases: _Phases = []
        if deadline <= start:
            return types.ProbeResult.fail(types.FailureClass.TIMEOUT, "timeout after 0 ms")
        used = False  # Whether this call got to use the connection (and so must drop it).
        try:
            async with asyncio.timeout_at(deadline), self._lock:
                used = True
                return await self._exchange(loop, phases)
        except TimeoutError:
            failure, detail = types.FailureClass.TIMEOUT, _timeout_detail(deadline - start)
        except _ProbeError as error:
            failure, detail = error.failure, error.detail
        except ssl.SSLCertVerificationError as error:
            failure, detail = types.FailureClass.CONFIG, f"TLS: {error.verify_message}"
        except (OSError, EOFError) as error:
            failure, detail = types.FailureClass.NETWORK, _os_error_detail(error)
        except BaseException:
            if used:
                self._drop()  # Cancelled mid-exchange: the reply may still arrive on it.
            raise
        if used:
            self._drop()
        return types.ProbeResult.fail(failure, detail, tuple(phases))

    async def watch(self, callback: Callable[[types.ProbeResult], None]) -> None:
        """Return at once: HTTP has no push channel, the pool polls `check`."""
        del callback

    async def aclose(self) -> None:
        """Drop the connection (at once: a prober owes the server no graceful close)."""
        self._drop()

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None

    def _kept(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Return the kept connection if it may carry another request, else drop it."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None or reader.at_eof() or reader.exception() is not None:
            self._drop()
            return None
        return reader, writer

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, phases: _Phases
    ) -> types.ProbeResult:
        """Run one request on the kept connection, or on a new one; retry a stale reuse once."""
        kept = self._kept()
        connection = kept or await self._open(loop, phases)
        try:
            return await self._request_once(*connection, loop=loop, phases=phases)
        except _StaleError:
            if kept is None:
                raise
        # The server closed the idle connection just before our request: not a failure yet.
        self._drop()
        connection = await self._open(loop, phases)
        return await self._request_once(*connection, loop=loop, phases=phases)

    async def _open(
        self, loop: asyncio.AbstractEventLoop, phases: _Phases
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect (and upgrade to TLS for https), recording the connect and tls phases."""
        started = loop.time()
        try:
            self._reader, self._writer = await asyncio.open_connection(
                self._target.ip, self._target.port, limit=HEADER_LIMIT
            )
        finally:
            phases.append(("connect", loop.time() - started))
        if self._spec.scheme == "https":
            started = loop.time()
            context = _tls.client_context(verify=self._spec.verify_tls)
            try:
                await self._writer.start_tls(context, server_hostname=self._tls_name)
            except ValueError as error:
                if isinstance(error, ssl.SSLError):
                    raise  # Certificate errors are ValueErrors too; check() classifies them.
                problem = f"invalid TLS server name {self._tls_name!r}"
                raise _ProbeError(types.FailureClass.CONFIG, problem) from error
            finally:
                phases.append(("tls", loop.time() - started))
        return self._reader, self._writer

    async def _request_once(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        loop: asyncio.AbstractEventLoop,
        phases: _Phases,
    ) -> types.ProbeResult:
        """Send the request, read the bounded response and judge it."""
        started = loop.time()
        writer.write(self._request)
        head = await _read_final_head(reader)
        transfer_started = loop.time()
        phases.append(("request", transfer_started - started))
        body, complete = await self._read_body(reader, head)
        phases.append(("transfer", loop.time() - transfer_started))
        if not (head.keep_alive and complete):
            self._drop()
        return self._judge(head.status, body, tuple(phases))

    async def _read_body(self, reader: asyncio.StreamReader, head: _Head) -> tuple[bytes, bool]:
        """Read the body up to the cap; return it and whether the connection may be reused."""
        cap = self._spec.max_body_bytes
        if self._head_only or head.status in _NO_BODY_STATUSES or head.status < _FIRST_FINAL_STATUS:
            return b"", True
        try:
            if head.chunked:
                return await _read_chunked(reader, cap)
            if head.length is not None and head.length >= 0:
                take = min(head.length, cap)
                return (await reader.readexactly(take) if take else b""), take == head.length
            body, _ = await _read_until_close(reader, cap)
        except asyncio.IncompleteReadError as error:
            raise _ProbeError(types.FailureClass.NETWORK, "connection closed mid-body") from error
        except asyncio.LimitOverrunError as error:
            raise _malformed() from error
        return body, False  # Framed by the close itself: never reusable.

    def _judge(
        self, status: int, body: bytes, phases: tuple[tuple[str, float], ...]
    ) -> types.ProbeResult:
        detail = f"HTTP {status}"
        if not any(low <= status <= high for low, high in self._spec.expected):
            return types.ProbeResult.fail(types.FailureClass.NEGATIVE, detail, phases)
        if self._body_regex is not None:
            try:
                matched = _match.search(self._body_regex, body)
            except _match.RegexTimeoutError as error:
                return types.ProbeResult.fail(types.FailureClass.CONFIG, str(error), phases)
            if matched is None:
                return types.ProbeResult.fail(
                    types.FailureClass.NEGATIVE, f"{detail}, body does not match", phases
                )
        return types.ProbeResult.success(detail, phases)


async def _read_head(reader: asyncio.StreamReader) -> _Head:
    """Read and parse one status line plus headers, within `HEADER_LIMIT` bytes."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as error:
        raise _ProbeError(types.FailureClass.NEGATIVE, "headers too large") from error
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise _StaleError("connection closed before response") from error
        if not b"HTTP/".startswith(error.partial[:5]):
            raise _malformed() from error
        raise _ProbeError(types.FailureClass.NETWORK, "connection closed mid-response") from error
    except ConnectionResetError as error:
        raise _StaleError("connection reset") from error
    return _parse_head(head)


async def _read_final_head(reader: asyncio.StreamReader) -> _Head:
    """Read heads until a final one, skipping interim 1xx responses (other than 101)."""
    head = await _read_head(reader)
    while head.status < _FIRST_FINAL_STATUS and head.status != _SWITCHING_PROTOCOLS:
        head = await _read_head(reader)
    if head.status == _SWITCHING_PROTOCOLS:
        head.keep_alive = False  # The connection now speaks another protocol.
    return head


async def _read_chunked(reader: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Read a chunked body up to `cap` bytes; return it and whether it was read to its end."""
    parts: list[bytes] = []
    room = cap
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
        if _HEX.fullmatch(size_text) is None:
            raise _malformed()
        size = int(size_text, 16)
        if size == 0:
            await _skip_trailers(reader)
            return b"".join(parts), True
        take = min(size, room)
        if take:
            parts.append(await reader.readexactly(take))
            room -= take
        if take < size:
            return b"".join(parts), False  # Cap reached: stop reading, drop the connection.
        if await reader.readexactly(2) != b"\r\n":
            raise _malformed()


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    """Consume trailer fields up to the empty line, within `HEADER_LIMIT` bytes in total."""
    total = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        total += len(line)
        if total > HEADER_LIMIT:
            raise _ProbeError(types.FailureClass.NEGATIVE, "headers too large")


async def _read_until_close(reader: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Read until EOF or `cap` bytes; return the bytes and whether EOF came first."""
    parts: list[bytes] = []
    room = cap
    while room > 0:
        chunk = await reader.read(room)
        if not chunk:
            return b"".join(parts), True
        parts.append(chunk)
        room -= len(chunk)
    return b"".join(parts), False


def _timeout_detail(budget_seconds: float) -> str:
    return f"timeout after {round(budget_seconds * 1000)} ms"


def _os_error_detail(error: BaseException) -> str:
    """Name a network error briefly: "connection refused", "connection reset", "TLS: ..."."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, (EOFError, asyncio.IncompleteReadError)):
        return "connection closed"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    return str(error.strerror if isinstance(error, OSError) and error.strerror else error)
