"""HttpChecker against a real scripted HTTP/1.1 server on 127.0.0.1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from probes import http, types

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.probes.conftest import HttpServer, Probe

pytestmark = pytest.mark.anyio

NETWORK, TIMEOUT = types.FailureClass.NETWORK, types.FailureClass.TIMEOUT
NEGATIVE, CONFIG = types.FailureClass.NEGATIVE, types.FailureClass.CONFIG


def checker_for(
    server: HttpServer, closing: Callable[[Any], Any], path: str, **spec: Any
) -> http.HttpChecker:
    """Return a checker of `path` on `server`, closed after the test."""
    target = types.Target("127.0.0.1", server.port)
    checker: http.HttpChecker = closing(http.HttpChecker(target, types.HttpSpec(path=path, **spec)))
    return checker


def phase_names(result: types.ProbeResult) -> list[str]:
    """Return the names of the phases a result reports, in order."""
    return [name for name, _ in result.phases]


async def test_ok_status_passes(http_server: HttpServer, closing: Any, probe: Probe) -> None:
    """A 200 passes with connect, request and transfer timings."""
    result = await probe(checker_for(http_server, closing, "/ok"))
    assert result == types.ProbeResult.success("HTTP 200", result.phases)
    assert phase_names(result) == ["connect", "request", "transfer"]
    assert all(seconds >= 0 for _, seconds in result.phases)


async def test_request_shape(http_server: HttpServer, closing: Any, probe: Probe) -> None:
    """The request has the spec's method and path, the ip:port Host, our User-Agent, keep-alive."""
    await probe(checker_for(http_server, closing, "/ok"))
    [request] = http_server.requests
    assert (request.method, request.path) == ("GET", "/ok")
    assert request.headers == {
        "host": f"127.0.0.1:{http_server.port}",
        "user-agent": "zen-lead-prober",
        "connection": "keep-alive",
    }


async def test_host_header_override(http_server: HttpServer, closing: Any, probe: Probe) -> None:
    """spec.host replaces the Host header."""
    await probe(checker_for(http_server, closing, "/ok", host="svc.example:8080"))
    assert http_server.requests[0].headers["host"] == "svc.example:8080"


async def test_bad_status_is_negative(http_server: HttpServer, closing: Any, probe: Probe) -> None:
    """A 503 is an explicit negative answer."""
    result = await probe(checker_for(http_server, closing, "/fail"))
    assert (result.ok, result.failure, result.detail) == (False, NEGATIVE, "HTTP 503")


async def test_expected_ranges_decide(http_server: HttpServer, closing: Any, probe: Probe) -> None:
    """A status passes when any configured inclusive range holds it."""
    spec = {"expected": ((200, 200), (503, 503))}
    assert (await probe(checker_for(http_server, closing, "/fail", **spec))).ok


async def test_keep_alive_reuses_one_connection(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """Consecutive checks share one connection; only the first one reports a connect phase."""
    checker = checker_for(http_server, closing, "/ok")
    results = [await probe(checker) for _ in range(5)]
    assert all(result.ok for result in results)
    assert http_server.connections == 1
    assert [phase_names(r)[0] for r in results] == ["connect"] + ["request"] * 4


async def test_redirect_is_a_status_and_is_not_followed(
    http_server: HttpServer, other_http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A 301 to another host is judged by its status and the other host is never contacted."""
    http_server.redirect_to = f"http://127.0.0.1:{other_http_server.port}/ok"
    default = await probe(checker_for(http_server, closing, "/redirect"))
    strict = await probe(checker_for(http_server, closing, "/redirect", expected=((200, 299),)))
    assert (default.ok, default.detail) == (True, "HTTP 301")
    assert (strict.ok, strict.failure, strict.detail) == (False, NEGATIVE, "HTTP 301")
    assert other_http_server.connections == 0


async def test_huge_body_stops_at_the_cap(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """Of a 10 MB body exactly max_body_bytes are read and judged, then the connection is closed."""
    exact = checker_for(
        http_server, closing, "/huge", max_body_bytes=1000, body_regex=r"\Aa{1000}\Z"
    )
    tail = checker_for(http_server, closing, "/huge", max_body_bytes=1000, body_regex="TAIL")
    assert (await probe(exact)).ok
    result = await probe(tail)
    assert (result.failure, result.detail) == (NEGATIVE, "HTTP 200, body does not match")
    assert (await probe(exact)).ok
    assert http_server.connections == 3


async def test_endless_chunked_body_stops_at_the_cap(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """An endless chunked body is read up to the cap, judged, and its connection closed."""
    checker = checker_for(
        http_server, closing, "/endless", max_body_bytes=1000, body_regex=r"\Ab{1000}\Z"
    )
    assert (await probe(checker)).ok
    assert (await probe(checker)).ok
    assert http_server.connections == 2


async def test_slow_drip_ends_at_the_deadline(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A response trickling one byte per 100 ms is a timeout at the deadline."""
    result = await probe(checker_for(http_server, closing, "/drip"), budget=0.35)
    assert (result.failure, result.detail) == (TIMEOUT, "timeout after 350 ms")


async def test_hang_times_out_and_the_connection_is_not_reused(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A server that never answers times out, and the next check uses a new connection."""
    checker = checker_for(http_server, closing, "/hang-first")
    result = await probe(checker, budget=0.2)
    assert (result.failure, result.detail) == (TIMEOUT, "timeout after 200 ms")
    assert phase_names(result) == ["connect"]
    assert (await probe(checker)).ok
    assert http_server.connections == 2


async def test_cancelled_check_drops_the_connection(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A check cancelled by its caller leaves no half-used connection behind."""
    checker = checker_for(http_server, closing, "/hang-first")
    with anyio.move_on_after(0.1) as scope:
        await checker.check(deadline=anyio.current_time() + 10)
    assert scope.cancelled_caught
    assert (await probe(checker)).ok
    assert http_server.connections == 2


async def test_concurrent_checks_take_turns(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """Overlapping checks of one checker take turns on its single connection."""
    checker = checker_for(http_server, closing, "/ok")
    results: list[types.ProbeResult] = []

    async def one() -> None:
        results.append(await probe(checker))

    async with anyio.create_task_group() as tasks:
        for _ in range(3):
            tasks.start_soon(one)
    assert [result.ok for result in results] == [True, True, True]
    assert http_server.connections == 1


async def test_past_deadline_times_out_without_connecting(
    http_server: HttpServer, closing: Any
) -> None:
    """A deadline already passed is a timeout and nothing is sent."""
    checker = checker_for(http_server, closing, "/ok")
    result = await checker.check(deadline=anyio.current_time() - 1)
    assert result.failure == TIMEOUT
    assert http_server.connections == 0


@pytest.mark.parametrize(
    ("path", "failure", "detail"),
    [
        pytest.param("/close", NETWORK, "connection closed before response", id="close"),
        pytest.param("/malformed", NEGATIVE, "malformed response", id="malformed"),
        pytest.param("/giant-headers", NEGATIVE, "headers too large", id="giant-headers"),
    ],
)
async def test_broken_responses(
    http_server: HttpServer,
    closing: Any,
    probe: Probe,
    path: str,
    failure: types.FailureClass,
    detail: str,
) -> None:
    """Closing at once is a network failure; garbage or oversized headers are negative."""
    result = await probe(checker_for(http_server, closing, path))
    assert (result.ok, result.failure, result.detail) == (False, failure, detail)


async def test_refused_is_network(refused_port: int, closing: Any, probe: Probe) -> None:
    """A refused connection is a network failure."""
    target = types.Target("127.0.0.1", refused_port)
    result = await probe(closing(http.HttpChecker(target, types.HttpSpec())))
    assert (result.failure, result.detail) == (NETWORK, "connection refused")
    assert phase_names(result) == ["connect"]


async def test_chunked_body_matches_and_keeps_the_connection(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A complete chunked body (with extensions and trailers) is matched and the connection kept."""
    checker = checker_for(http_server, closing, "/chunked", body_regex="^status: green$")
    assert (await probe(checker)).ok
    assert (await probe(checker)).ok
    assert http_server.connections == 1


@pytest.mark.parametrize("path", ["/until-close", "/conn-close", "/close-idle"])
async def test_connection_ended_by_server_is_replaced(
    http_server: HttpServer, closing: Any, probe: Probe, path: str
) -> None:
    """A body framed by close, Connection: close, or an idle close all lead to a new connection."""
    checker = checker_for(http_server, closing, path)
    assert [(await probe(checker)).ok for _ in range(2)] == [True, True]
    assert http_server.connections == 2


async def test_body_until_close_is_matched(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A body without length or chunking is read until the server closes and then matched."""
    result = await probe(checker_for(http_server, closing, "/until-close", body_regex="green"))
    assert result.ok


async def test_stale_keep_alive_is_retried_once(
    http_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A kept connection the server closes on our request is retried on a new one, not failed."""
    checker = checker_for(http_server, closing, "/once")
    assert [(await probe(checker)).ok for _ in range(2)] == [True, True]
    assert [request.connection for request in http_server.requests] == [1, 1, 2]


async def test_head_reads_no_body(http_server: HttpServer, closing: Any, probe: Probe) -> None:
    """HEAD responses carry no body even with a Content-Length, so the connection stays usable."""
    checker = checker_for(http_server, closing, "/head", method="HEAD")
    assert [(await probe(checker)).ok for _ in range(2)] == [True, True]
    assert http_server.connections == 1
    assert http_server.requests[0].method == "HEAD"


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"path": "healthz"}, id="relative-path"),
        pytest.param({"path": "/a b"}, id="space-in-path"),
        pytest.param({"host": "a\r\nX-Injected: 1"}, id="header-injection"),
        pytest.param({"method": "GE T"}, id="bad-method"),
        pytest.param({"scheme": "ftp"}, id="bad-scheme"),
        pytest.param({"body_regex": "("}, id="bad-regex"),
    ],
)
async def test_invalid_spec_is_config(
    http_server: HttpServer, closing: Any, probe: Probe, spec: dict[str, Any]
) -> None:
    """A spec that cannot make a valid request is a config failure and sends nothing."""
    target = types.Target("127.0.0.1", http_server.port)
    result = await probe(closing(http.HttpChecker(target, types.HttpSpec(**spec))))
    assert result.failure == CONFIG
    assert http_server.connections == 0


async def test_watch_returns_at_once(http_server: HttpServer, closing: Any) -> None:
    """HTTP has nothing to watch: watch() returns without calling back."""
    with anyio.fail_after(1):
        await checker_for(http_server, closing, "/ok").watch(lambda _: pytest.fail("called"))
