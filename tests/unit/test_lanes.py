"""The API seam: fencing at send time, thread lanes, pacing on the loop, 429s and the breaker."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import anyio
import pytest

from tests import helpers
from zenlead import errors
from zenlead.kube import api, lanes

pytestmark = pytest.mark.anyio


class FakeApi:
    """Records each call's options; `block` holds calls in their thread until set."""

    def __init__(self, *, qps: float = 0.0, burst: int = 1) -> None:
        """Answer every call with its arguments; pace with `qps`/`burst` (0: unlimited)."""
        self.bucket = api.TokenBucket(qps, burst)
        self.timeout_seconds = 10.0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.block = threading.Event()
        self.block.set()
        self.fail: Exception | None = None

    def _record(self, op: str, **kwargs: Any) -> dict[str, Any]:
        self.block.wait(5)
        self.calls.append((op, kwargs))
        if self.fail is not None:
            raise self.fail
        return {"op": op}

    def get(self, *_args: Any, **kwargs: Any) -> dict[str, Any]:
        """GET."""
        return self._record("get", **kwargs)

    def create(self, *_args: Any, **kwargs: Any) -> dict[str, Any]:
        """POST."""
        return self._record("create", **kwargs)

    def patch(self, *_args: Any, **kwargs: Any) -> dict[str, Any]:
        """PATCH."""
        return self._record("patch", **kwargs)


async def test_writes_are_fenced_and_their_timeout_capped() -> None:
    """A write gets min(API timeout, time left of the Lease) as its timeout; none when none."""
    fake = FakeApi()
    left = [3.5]
    seam = lanes.Lanes(fake, fence=lambda: left[0])  # type: ignore[arg-type]
    await seam.patch(api.ENDPOINTSLICES, "ns", "s", {}, lane=lanes.Lane.TRAFFIC)
    assert fake.calls[-1] == ("patch", {"paced": False, "timeout_seconds": 3.5})
    left[0] = 0.0
    with pytest.raises(errors.NotLeadingError):
        await seam.patch(api.SERVICES, "ns", "s", {}, lane=lanes.Lane.ORDINARY)
    assert len(fake.calls) == 1
    await seam.create(api.EVENTS, "ns", {}, lane=lanes.Lane.ORDINARY)
    await seam.get(api.SERVICES, "ns", "s", lane=lanes.Lane.ORDINARY)
    assert [op for op, _ in fake.calls] == ["patch", "create", "get"]
    assert fake.calls[-1][1]["timeout_seconds"] == 10.0


async def test_token_wait_holds_no_thread() -> None:
    """Ordinary calls waiting for rate tokens leave the traffic lane free to write at once."""
    fake = FakeApi(qps=2.0, burst=1)
    seam = lanes.Lanes(fake, sizes={lanes.Lane.ORDINARY: 1})  # type: ignore[arg-type]
    done: list[float] = []
    start = time.monotonic()

    async def ordinary() -> None:
        await seam.get(api.SERVICES, "ns", "s", lane=lanes.Lane.ORDINARY)

    async with anyio.create_task_group() as tg:
        for _ in range(3):  # 1 token now, then one per 0.5 s: the last is due at 1 s.
            tg.start_soon(ordinary)
        await anyio.sleep(0.05)
        await seam.patch(api.ENDPOINTSLICES, "ns", "s", {}, lane=lanes.Lane.TRAFFIC)
        done.append(time.monotonic() - start)
    assert done[0] < 0.3, "the traffic write did not wait behind paced calls"
    assert time.monotonic() - start >= 0.9


async def test_throttled_call_pauses_ordinary_calls() -> None:
    """A 429 with Retry-After holds later ordinary calls; the traffic lane is not paused."""
    fake = FakeApi()
    seen: list[tuple[str, float]] = []
    seam = lanes.Lanes(fake, on_throttle=lambda op, wait: seen.append((op, wait)))  # type: ignore[arg-type]
    fake.fail = errors.ThrottledError("slow down", retry_after=1.0)
    with pytest.raises(errors.ThrottledError):
        await seam.get(api.SERVICES, "ns", "s", lane=lanes.Lane.ORDINARY)
    assert seen == [("get", 1.0)]
    fake.fail = None
    start = time.monotonic()
    await seam.patch(api.ENDPOINTSLICES, "ns", "s", {}, lane=lanes.Lane.TRAFFIC)
    assert time.monotonic() - start < 0.3
    await seam.get(api.SERVICES, "ns", "s", lane=lanes.Lane.ORDINARY)
    assert time.monotonic() - start >= 0.8


async def test_breaker_opens_refuses_ordinary_calls_and_recovers() -> None:
    """Five outages open the circuit: ordinary calls fail fast, traffic still tries, then closes."""
    clock = helpers.FakeClock()
    states: list[str] = []
    breaker = lanes.Breaker(threshold=5, cooldown=2.0, clock=clock, on_change=states.append)
    fake = FakeApi()
    seam = lanes.Lanes(fake, breaker=breaker)  # type: ignore[arg-type]
    fake.fail = errors.UnavailableError("connection refused")
    for _ in range(5):
        with pytest.raises(errors.UnavailableError):
            await seam.get(api.SERVICES, "ns", "s", lane=lanes.Lane.ORDINARY)
    assert states == ["open"]
    with pytest.raises(errors.CircuitOpenError) as caught:
        await seam.get(api.SERVICES, "ns", "s", lane=lanes.Lane.ORDINARY)
    assert caught.value.retry_after == pytest.approx(2.0)
    assert len(fake.calls) == 5
    with pytest.raises(errors.UnavailableError):
        await seam.patch(api.ENDPOINTSLICES, "ns", "s", {}, lane=lanes.Lane.TRAFFIC)
    clock.advance(2.1)
    fake.fail = None
    await seam.get(api.SERVICES, "ns", "s", lane=lanes.Lane.ORDINARY)  # The trial call.
    assert states == ["open", "half-open", "closed"]


def test_breaker_failed_trial_doubles_the_cooldown() -> None:
    """A failed trial opens the circuit again for twice as long."""
    clock = helpers.FakeClock()
    breaker = lanes.Breaker(threshold=1, cooldown=2.0, clock=clock)
    breaker.record(errors.ServerError("500", status=500))
    clock.advance(2.0)
    assert breaker.admit() == 0.0
    breaker.record(errors.UnavailableError("timeout"))
    assert breaker.admit() == pytest.approx(4.0)


def test_breaker_ignores_answers_about_objects() -> None:
    """404, 409 and 422 are answers, not outages: they never open the circuit."""
    breaker = lanes.Breaker(threshold=1)
    for exc in (
        errors.NotFoundError("x", status=404),
        errors.ConflictError("x", status=409),
        errors.InvalidError("x", status=422),
    ):
        breaker.record(exc)
    assert breaker.state == "closed"


def test_lost_trial_does_not_hold_the_circuit() -> None:
    """A trial that never reports (cancelled) lets another trial through after a cooldown."""
    clock = helpers.FakeClock()
    breaker = lanes.Breaker(threshold=1, cooldown=2.0, clock=clock)
    breaker.record(errors.UnavailableError("x"))
    clock.advance(2.0)
    assert breaker.admit() == 0.0
    assert breaker.admit() > 0
    clock.advance(2.0)
    assert breaker.admit() == 0.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (None, 1.0),
        ("0", 1.0),
        ("soon", 1.0),
        ("\u00b2", 1.0),
        ("99999", 60.0),
        ("1234567", 60.0),
    ],
)
def test_retry_after_parsing(header: str | None, seconds: float) -> None:
    """Retry-After is whole ASCII seconds, 1 to 60 (larger is capped); anything else means 1."""
    assert api._retry_after({"Retry-After": header} if header else {}) == seconds
    assert api._retry_after({"Retry-After": "120"}) == 60.0
    assert math.isfinite(api._retry_after(None))


def test_status_zero_is_no_answer() -> None:
    """The client wraps a TLS or connection failure as status 0: an outage, not an answer."""
    from kubernetes.client import exceptions as kube_exceptions  # noqa: PLC0415

    error = api._translate(kube_exceptions.ApiException(status=0, reason="SSLError"), "get x")
    assert isinstance(error, errors.UnavailableError)
