"""The scale benchmark's pod farm: real HTTP servers on many IPs, in a process of their own."""

from __future__ import annotations

import http.client

import pytest

from tests import helpers
from zenlead.testing import farm

IPS = ["127.0.0.71", "127.0.0.72"]


def _get(ip: str) -> tuple[int, str | None]:
    connection = http.client.HTTPConnection(ip, farm.PORT, timeout=0.5)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status, response.getheader("X-Pod")
    finally:
        connection.close()


def test_pods_answer_hang_and_heal() -> None:
    """Every IP answers 200 naming itself; a hung pod accepts but never answers, until healed."""
    with farm.Farm(IPS) as pods:
        assert [_get(ip) for ip in IPS] == [(200, ip) for ip in IPS]
        pods.hang(IPS[0])
        helpers.poll(lambda: _timed_out(IPS[0]), timeout=5, what="the pod to hang")
        assert _get(IPS[1]) == (200, IPS[1])
        pods.heal(IPS[0])
        helpers.poll(lambda: not _timed_out(IPS[0]), timeout=5, what="the pod to heal")
        assert pods.pid > 0


def _timed_out(ip: str) -> bool:
    try:
        _get(ip)
    except TimeoutError:
        return True
    return False


def test_a_farm_that_cannot_listen_says_so() -> None:
    """An address that is not local makes the farm fail at start, not hang."""
    with pytest.raises(RuntimeError, match="farm did not start"), farm.Farm(["192.0.2.1"]):
        pass
