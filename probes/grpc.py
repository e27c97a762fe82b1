"""gRPC health checks (grpc.health.v1): unary ``Check`` per poll, ``Watch`` for pushed changes.

`GrpcChecker` is what ``probes.PROBERS["grpc"]`` builds for one pod. It owns one ``grpc.aio``
channel to ``ip:port``, created on first use inside the running event loop (grpc.aio channels
belong to the loop that created them) and closed by ``aclose()``.

- ``check(deadline=...)``: ``Health/Check`` for ``spec.service`` with the remaining time as the
  gRPC deadline (and the same absolute deadline on the asyncio side), so the server is told how
  long we wait: the lesson of blackbox_exporter's ``context.Background()`` bug. SERVING is ok;
  NOT_SERVING or UNKNOWN is ``NEGATIVE``; NOT_FOUND (service not registered) is ``CONFIG``;
  UNAVAILABLE is ``NETWORK`` (``CONFIG`` when the cause is the TLS name or certificate);
  DEADLINE_EXCEEDED is ``TIMEOUT``.
- ``watch(callback)``: when ``spec.watch`` is set, ``Health/Watch`` pushes every status change,
  so NOT_SERVING is known one network trip after the server sets it, without polling. Each
  message becomes a result for `callback` (SERVICE_UNKNOWN is ``CONFIG``). UNIMPLEMENTED means
  the server only has ``Check``: ``watch`` returns for good and polling alone decides. Any other
  end of the stream is reported as a failure and the stream reopened with exponential backoff
  (0.1 s doubling to 5 s, reset by a received message) until the caller cancels. A wedged server
  may simply go quiet on a Watch stream (gRFC A17), which is why the pool keeps polling ``check``
  as a backstop.

Channel options favour a prober over an application: reconnect backoff capped at 1 s (gRPC's
default grows to 120 s, which would hide a restarted pod for minutes), no transparent retries, a
subchannel per channel (so ``aclose`` really closes the connection), and tiny message limits.
TLS uses ``grpc.ssl_channel_credentials()`` with the default roots, created once per process;
``spec.server_name`` overrides the TLS name (``grpc.ssl_target_name_override``) and, in
plaintext, the ``:authority`` (``grpc.default_authority``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from probes import types

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("WATCH_BACKOFF_MAX_SECONDS", "WATCH_BACKOFF_MIN_SECONDS", "GrpcChecker")

WATCH_BACKOFF_MIN_SECONDS = 0.1
"""First wait before reopening a Watch stream that ended; doubles per failed attempt."""
WATCH_BACKOFF_MAX_SECONDS = 5.0
"""Longest wait between Watch reopen attempts."""

_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 * 1024),
    ("grpc.max_send_message_length", 64 * 1024),
)
_TLS_PROBLEMS = {
    "CERTIFICATE_VERIFY_FAILED": "certificate verify failed",
    "Hostname Verification Check failed": "certificate does not match the server name",
    "not in peer certificate": "certificate does not match the server name",
}
"""Fragments of gRPC error details that mean the TLS name or certificate is wrong."""
_NO_ADDRESS = "failed to connect to all addresses; last error: "

_STATUS = health_pb2.HealthCheckResponse.ServingStatus


@functools.cache
def _channel_credentials() -> Any:
    """Return the process-wide TLS credentials (default roots); loading them is not free."""
    return grpc.ssl_channel_credentials()


def _timeout(budget_seconds: float) -> types.ProbeResult:
    detail = f"timeout after {round(budget_seconds * 1000)} ms"
    return types.ProbeResult.fail(types.FailureClass.TIMEOUT, detail)


def _status_result(status: int) -> types.ProbeResult:
    """Turn a health status (from Check or Watch) into a result."""
    name = str(_STATUS.Name(status)) if status in _STATUS.values() else f"status {status}"
    if status == _STATUS.SERVING:
        return types.ProbeResult.success(name)
    if status == _STATUS.SERVICE_UNKNOWN:
        return types.ProbeResult.fail(types.FailureClass.CONFIG, name)
    return types.ProbeResult.fail(types.FailureClass.NEGATIVE, name)


def _error_result(error: grpc.aio.AioRpcError, *, service: str) -> types.ProbeResult:
    """Turn a failed RPC into a result with the failure class of its status code."""
    code, details = error.code(), str(error.details() or "")
    if code == grpc.StatusCode.NOT_FOUND:
        return types.ProbeResult.fail(types.FailureClass.CONFIG, f"unknown service {service!r}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return types.ProbeResult.fail(types.FailureClass.TIMEOUT, "DEADLINE_EXCEEDED")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return types.ProbeResult.fail(types.FailureClass.CONFIG, "health service UNIMPLEMENTED")
    for fragment, problem in _TLS_PROBLEMS.items():
        if fragment in details:
            return types.ProbeResult.fail(types.FailureClass.CONFIG, f"TLS: {problem}")
    if "Connection refused" in details:
        return types.ProbeResult.fail(types.FailureClass.NETWORK, "connection refused")
    details = details.removeprefix(_NO_ADDRESS)
    return types.ProbeResult.fail(types.FailureClass.NETWORK, f"{code.name}: {details}")


class GrpcChecker:
    """Probes one target's grpc.health.v1 service over a channel kept between checks."""

    def __init__(self, target: types.Target, spec: types.GrpcSpec) -> None:
        """Remember `target` and `spec`; the channel is created on first use, in the loop."""
        host = f"[{target.ip}]" if ":" in target.ip else target.ip
        self._address = f"{host}:{target.port}"
        self._spec = spec
        self._request = health_pb2.HealthCheckRequest(service=spec.service)
        self._channel: Any = None
        self._stub: Any = None
        self._closed = False

    async def check(self, *, deadline: float) -> types.ProbeResult:
        """Call Health/Check once with the time left until `deadline` (loop clock)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        budget = deadline - start
        if budget <= 0:
            return types.ProbeResult.fail(types.FailureClass.TIMEOUT, "timeout after 0 ms")
        stub = self._ensure_stub()
        try:
            async with asyncio.timeout_at(deadline):
                response = await stub.Check(self._request, timeout=budget)
        except asyncio.CancelledError:
            if _cancelling():
                raise  # Our caller cancels us: pass it on.
            # grpc.aio raises a bare CancelledError when the RPC itself was cancelled (the
            # channel closed under it); that is a failed probe, not a cancellation of ours.
            result = types.ProbeResult.fail(types.FailureClass.NETWORK, "RPC cancelled")
        except TimeoutError:
            result = _timeout(budget)
        except grpc.aio.AioRpcError as error:
            # gRPC enforces the same deadline; and our own cancellation at the deadline can
            # surface as CANCELLED. Both are this probe's timeout.
            code = error.code()
            late = code == grpc.StatusCode.DEADLINE_EXCEEDED or (
                code == grpc.StatusCode.CANCELLED and loop.time() >= deadline
            )
            result = _timeout(budget) if late else _error_result(error, service=self._spec.service)
        else:
            result = _status_result(response.status)
        return dataclasses.replace(result, phases=(("check", loop.time() - start),))

    async def watch(self, callback: Callable[[types.ProbeResult], None]) -> None:
        """Push every Watch status to `callback` until cancelled (or UNIMPLEMENTED)."""
        if not self._spec.watch:
            return
        backoff = WATCH_BACKOFF_MIN_SECONDS
        while not self._closed:
            ended, received = await self._watch_once(callback)
            if ended is None or self._closed:
                return  # UNIMPLEMENTED (Check only, never ask again), or closed under us.
            callback(ended)
            backoff = WATCH_BACKOFF_MIN_SECONDS if received else backoff
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, WATCH_BACKOFF_MAX_SECONDS)

    async def aclose(self) -> None:
        """Close the channel, cancelling any RPC still running on it; a watch then returns."""
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _ensure_stub(self) -> Any:
        """Create the channel and stub on first use (inside the running event loop)."""
        if self._stub is None:
            options = list(_OPTIONS)
            if self._spec.tls:
                if self._spec.server_name:
                    options.append(("grpc.ssl_target_name_override", self._spec.server_name))
                credentials = _channel_credentials()
                self._channel = grpc.aio.secure_channel(self._address, credentials, options)
            else:
                if self._spec.server_name:
                    options.append(("grpc.default_authority", self._spec.server_name))
                self._channel = grpc.aio.insecure_channel(self._address, options)
            self._stub = health_pb2_grpc.HealthStub(self._channel)
        return self._stub

    async def _watch_once(
        self, callback: Callable[[types.ProbeResult], None]
    ) -> tuple[types.ProbeResult | None, bool]:
        """Follow one Watch stream to its end; return (why it ended, whether it said anything).

        The first item is None when the server does not implement Watch.
        """
        call = self._ensure_stub().Watch(self._request)
        received = False
        try:
            async for response in call:
                received = True
                callback(_status_result(response.status))
        except asyncio.CancelledError:
            if _cancelling():
                raise
            return types.ProbeResult.fail(types.FailureClass.NETWORK, "watch cancelled"), received
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None, received
            return _error_result(error, service=self._spec.service), received
        finally:
            call.cancel()  # A no-op once finished; stops the RPC when we are cancelled.
        return types.ProbeResult.fail(types.FailureClass.NETWORK, "watch stream ended"), received


def _cancelling() -> bool:
    """Tell whether our own task is being cancelled (rather than grpc cancelling its RPC)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
