"""HttpChecker over TLS against a real HTTPS server with a probe.test certificate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from probes import http, types

if TYPE_CHECKING:
    from tests.probes.conftest import HttpServer, Probe

pytestmark = pytest.mark.anyio

CONFIG = types.FailureClass.CONFIG


def https_checker(server: HttpServer, closing: Any, **spec: Any) -> http.HttpChecker:
    """Return an HTTPS checker of /ok on `server`, closed after the test."""
    target = types.Target("127.0.0.1", server.port)
    checker: http.HttpChecker = closing(
        http.HttpChecker(target, types.HttpSpec(path="/ok", scheme="https", **spec))
    )
    return checker


@pytest.mark.usefixtures("trust_test_ca")
async def test_verified_with_server_name(
    https_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """With a trusted CA and the right server name the check passes and times the handshake."""
    result = await probe(https_checker(https_server, closing, server_name="probe.test"))
    assert (result.ok, result.detail) == (True, "HTTP 200")
    assert [name for name, _ in result.phases] == ["connect", "tls", "request", "transfer"]
    assert https_server.server_names == ["probe.test"]


@pytest.mark.usefixtures("trust_test_ca")
async def test_server_name_defaults_to_host_header(
    https_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """Without server_name, the Host header's host part is the SNI and verification name."""
    result = await probe(https_checker(https_server, closing, host="probe.test:8443"))
    assert result.ok
    assert https_server.server_names == ["probe.test"]
    assert https_server.requests[0].headers["host"] == "probe.test:8443"


@pytest.mark.usefixtures("trust_test_ca")
async def test_ip_is_verified_without_a_name(
    https_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """With no name at all the pod IP is verified against the certificate and no SNI is sent."""
    result = await probe(https_checker(https_server, closing))
    assert result.ok
    assert https_server.server_names == [None]


@pytest.mark.usefixtures("trust_test_ca")
async def test_wrong_name_is_config(https_server: HttpServer, closing: Any, probe: Probe) -> None:
    """A certificate that does not name server_name is a config failure."""
    result = await probe(https_checker(https_server, closing, server_name="other.test"))
    assert result.failure == CONFIG
    assert "other.test" in result.detail


@pytest.mark.usefixtures("untrusted_tls")
async def test_untrusted_certificate_is_config(
    https_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """A certificate from an unknown CA is a config failure."""
    result = await probe(https_checker(https_server, closing, server_name="probe.test"))
    assert result.failure == CONFIG
    assert result.detail.startswith("TLS: ")


@pytest.mark.usefixtures("untrusted_tls")
async def test_verification_off_still_sends_sni(
    https_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """With verify_tls False an untrusted certificate passes and SNI still names server_name."""
    spec = {"server_name": "probe.test", "verify_tls": False}
    assert (await probe(https_checker(https_server, closing, **spec))).ok
    assert https_server.server_names == ["probe.test"]


async def test_verification_off_without_name_sends_no_sni(
    https_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """With verify_tls False and no name, no SNI is sent (like kubelet's HTTPS probes)."""
    assert (await probe(https_checker(https_server, closing, verify_tls=False))).ok
    assert https_server.server_names == [None]


@pytest.mark.usefixtures("trust_test_ca")
async def test_tls_connection_is_kept(https_server: HttpServer, closing: Any, probe: Probe) -> None:
    """Consecutive HTTPS checks reuse one TLS connection (one handshake)."""
    checker = https_checker(https_server, closing, server_name="probe.test")
    results = [await probe(checker) for _ in range(3)]
    assert all(result.ok for result in results)
    assert https_server.connections == 1
    assert [name for name, _ in results[2].phases] == ["request", "transfer"]


async def test_plain_http_to_tls_port_fails(
    https_server: HttpServer, closing: Any, probe: Probe
) -> None:
    """Speaking plain HTTP to a TLS port fails as a network or negative failure, never passes."""
    target = types.Target("127.0.0.1", https_server.port)
    result = await probe(closing(http.HttpChecker(target, types.HttpSpec(path="/ok"))))
    assert not result.ok
