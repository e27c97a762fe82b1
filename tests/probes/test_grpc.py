"""GrpcChecker against real grpc.aio health servers on 127.0.0.1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import grpc
import pytest
from grpc_health.v1 import health_pb2

from probes import grpc as grpc_probe
from probes import types

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.probes.conftest import GrpcServer, Pki, Probe

pytestmark = pytest.mark.anyio

NETWORK, TIMEOUT = types.FailureClass.NETWORK, types.FailureClass.TIMEOUT
NEGATIVE, CONFIG = types.FailureClass.NEGATIVE, types.FailureClass.CONFIG
Status = health_pb2.HealthCheckResponse


def grpc_checker(port: int, closing: Any, **spec: Any) -> grpc_probe.GrpcChecker:
    """Return a checker of 127.0.0.1:`port`, closed after the test."""
    target = types.Target("127.0.0.1", port)
    checker: grpc_probe.GrpcChecker = closing(
        grpc_probe.GrpcChecker(target, types.GrpcSpec(**spec))
    )
    return checker


class Pushed:
    """Collects watch() results and lets a test wait, with a timeout, for a particular one."""

    def __init__(self) -> None:
        """Start with nothing received."""
        self.results: list[types.ProbeResult] = []
        self._arrived = anyio.Event()

    def __call__(self, result: types.ProbeResult) -> None:
        """Record `result` (the watch callback) and wake the waiters."""
        self.results.append(result)
        self._arrived.set()
        self._arrived = anyio.Event()

    async def wait_for(
        self, wanted: Callable[[types.ProbeResult], bool], *, within: float, since: int = 0
    ) -> types.ProbeResult:
        """Return the first result from index `since` on that is `wanted`, within `within` s."""
        with anyio.fail_after(within):
            while True:
                found = [result for result in self.results[since:] if wanted(result)]
                if found:
                    return found[0]
                await self._arrived.wait()


def detail_is(detail: str) -> Callable[[types.ProbeResult], bool]:
    """Return a predicate: the result's detail is `detail`."""
    return lambda result: result.detail == detail


async def test_serving_passes(grpc_server: GrpcServer, closing: Any, probe: Probe) -> None:
    """SERVING from Health/Check passes, with the check phase timed."""
    result = await probe(grpc_checker(grpc_server.port, closing))
    assert (result.ok, result.detail) == (True, "SERVING")
    assert [name for name, _ in result.phases] == ["check"]


@pytest.mark.parametrize("status", [Status.NOT_SERVING, Status.UNKNOWN])
async def test_not_serving_is_negative(
    grpc_server: GrpcServer, closing: Any, probe: Probe, status: int
) -> None:
    """NOT_SERVING and UNKNOWN are explicit negative answers."""
    assert grpc_server.health is not None
    await grpc_server.health.set("", status)
    result = await probe(grpc_checker(grpc_server.port, closing))
    assert (result.failure, result.detail) == (NEGATIVE, Status.ServingStatus.Name(status))


async def test_named_service(grpc_server: GrpcServer, closing: Any, probe: Probe) -> None:
    """spec.service asks about that service, not the server's overall health."""
    assert grpc_server.health is not None
    await grpc_server.health.set("app.v1.Api", Status.NOT_SERVING)
    assert (await probe(grpc_checker(grpc_server.port, closing))).ok
    result = await probe(grpc_checker(grpc_server.port, closing, service="app.v1.Api"))
    assert result.detail == "NOT_SERVING"


async def test_unknown_service_is_config(
    grpc_server: GrpcServer, closing: Any, probe: Probe
) -> None:
    """Check on an unregistered service (NOT_FOUND) is a config failure."""
    result = await probe(grpc_checker(grpc_server.port, closing, service="nope"))
    assert (result.failure, result.detail) == (CONFIG, "unknown service 'nope'")


async def test_refused_is_network(refused_port: int, closing: Any, probe: Probe) -> None:
    """A port with no server is a network failure (UNAVAILABLE)."""
    result = await probe(grpc_checker(refused_port, closing))
    assert (result.failure, result.detail) == (NETWORK, "connection refused")


async def test_hung_check_times_out_at_the_deadline(
    grpc_hanging_server: GrpcServer, closing: Any, probe: Probe
) -> None:
    """A Check that never answers is a timeout by the deadline."""
    result = await probe(grpc_checker(grpc_hanging_server.port, closing), budget=0.3)
    assert result.failure == TIMEOUT


async def test_channel_is_kept_between_checks(
    grpc_server: GrpcServer, closing: Any, probe: Probe
) -> None:
    """Checks reuse the checker's channel and follow status changes."""
    assert grpc_server.health is not None
    checker = grpc_checker(grpc_server.port, closing)
    assert (await probe(checker)).ok
    channel = checker._channel
    await grpc_server.health.set("", Status.NOT_SERVING)
    assert (await probe(checker)).detail == "NOT_SERVING"
    assert checker._channel is channel


async def test_watch_pushes_not_serving_within_a_second(
    grpc_server: GrpcServer, closing: Any
) -> None:
    """Watch pushes the current status, then NOT_SERVING within 1 s of set(NOT_SERVING)."""
    assert grpc_server.health is not None
    checker, pushed = grpc_checker(grpc_server.port, closing), Pushed()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(checker.watch, pushed)
        assert (await pushed.wait_for(detail_is("SERVING"), within=5)).ok
        since = len(pushed.results)
        await grpc_server.health.set("", Status.NOT_SERVING)
        result = await pushed.wait_for(detail_is("NOT_SERVING"), within=1, since=since)
        assert result.failure == NEGATIVE
        tasks.cancel_scope.cancel()


async def test_watch_unknown_service_is_config(grpc_server: GrpcServer, closing: Any) -> None:
    """Watch on an unregistered service pushes SERVICE_UNKNOWN as a config failure."""
    checker, pushed = grpc_checker(grpc_server.port, closing, service="nope"), Pushed()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(checker.watch, pushed)
        result = await pushed.wait_for(detail_is("SERVICE_UNKNOWN"), within=5)
        assert result.failure == CONFIG
        tasks.cancel_scope.cancel()


async def test_watch_returns_when_unimplemented(
    grpc_check_only_server: GrpcServer, closing: Any, probe: Probe
) -> None:
    """Against a server without Watch, watch() returns for good and Check still works."""
    checker, pushed = grpc_checker(grpc_check_only_server.port, closing), Pushed()
    with anyio.fail_after(5):
        await checker.watch(pushed)
    assert pushed.results == []
    assert (await probe(checker)).ok


async def test_aclose_ends_a_running_watch(grpc_server: GrpcServer, closing: Any) -> None:
    """Closing the checker makes a running watch() return instead of reconnecting."""
    checker, pushed = grpc_checker(grpc_server.port, closing), Pushed()
    with anyio.fail_after(5):  # The task group ends only once watch() has returned.
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(checker.watch, pushed)
            await pushed.wait_for(detail_is("SERVING"), within=5)
            await checker.aclose()
    assert checker._channel is None


async def test_watch_disabled_returns_at_once(grpc_server: GrpcServer, closing: Any) -> None:
    """With spec.watch False, watch() returns without opening a stream."""
    checker = grpc_checker(grpc_server.port, closing, watch=False)
    with anyio.fail_after(1):
        await checker.watch(lambda _: pytest.fail("called"))
    assert checker._channel is None


async def test_watch_reports_a_lost_server_and_reconnects(
    start_health_server: Callable[..., Awaitable[GrpcServer]], closing: Any
) -> None:
    """When the server goes away watch() pushes a network failure, then recovers on its return."""
    first = await start_health_server()
    checker, pushed = grpc_checker(first.port, closing), Pushed()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(checker.watch, pushed)
        await pushed.wait_for(detail_is("SERVING"), within=5)
        since = len(pushed.results)
        await first.server.stop(None)
        await pushed.wait_for(lambda r: r.failure == NETWORK, within=5, since=since)
        since = len(pushed.results)
        await start_health_server(port=first.port)
        await pushed.wait_for(detail_is("SERVING"), within=5, since=since)
        tasks.cancel_scope.cancel()


@pytest.fixture
def trust_grpc_test_ca(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the gRPC checkers' TLS credentials trust the test CA."""
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)
    monkeypatch.setattr(grpc_probe, "_channel_credentials", lambda: credentials)


@pytest.mark.usefixtures("trust_grpc_test_ca")
async def test_tls_with_server_name(
    grpc_tls_server: GrpcServer, closing: Any, probe: Probe
) -> None:
    """Over TLS, server_name is the name the certificate is verified against."""
    checker = grpc_checker(grpc_tls_server.port, closing, tls=True, server_name="probe.test")
    assert (await probe(checker)).ok


@pytest.mark.usefixtures("trust_grpc_test_ca")
async def test_tls_wrong_name_is_config(
    grpc_tls_server: GrpcServer, closing: Any, probe: Probe
) -> None:
    """A certificate that does not name server_name is a config failure."""
    checker = grpc_checker(grpc_tls_server.port, closing, tls=True, server_name="other.test")
    result = await probe(checker)
    assert (result.failure, result.detail) == (
        CONFIG,
        "TLS: certificate does not match the server name",
    )


async def test_tls_untrusted_is_config(
    grpc_tls_server: GrpcServer, closing: Any, probe: Probe
) -> None:
    """A certificate from a CA outside the default roots is a config failure."""
    checker = grpc_checker(grpc_tls_server.port, closing, tls=True, server_name="probe.test")
    result = await probe(checker)
    assert (result.failure, result.detail) == (CONFIG, "TLS: certificate verify failed")
