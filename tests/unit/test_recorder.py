"""Events are rate-limited per Service, deduplicated, and drops are counted by reason."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests import helpers
from zenlead import metrics, recorder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> helpers.FakeClock:
    """Return a fresh fake clock."""
    return helpers.FakeClock(500.0)


@pytest.fixture
def registry() -> metrics.Metrics:
    """Return a fresh metrics instance with its own registry."""
    return metrics.Metrics()


@pytest.fixture
async def rec(
    clock: helpers.FakeClock, registry: metrics.Metrics
) -> AsyncIterator[recorder.Recorder]:
    """Return a Recorder with default limits on the fake clock; its stream is closed after."""
    made = recorder.Recorder(object(), metrics_=registry, clock=clock)
    with made._send, made._receive:
        yield made


def source(name: str = "web", namespace: str = "ns") -> dict[str, Any]:
    """Return the metadata of a source Service."""
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"}}


def dropped(registry: metrics.Metrics, reason: str) -> float:
    """Return zen_lead_events_dropped_total for `reason` (0 when the series does not exist)."""
    value = registry.registry.get_sample_value("zen_lead_events_dropped_total", {"reason": reason})
    return value or 0.0


def queued(rec: recorder.Recorder) -> list[dict[str, Any]]:
    """Return every Event body queued so far (removing them from the stream)."""
    bodies = []
    while True:
        try:
            bodies.append(rec._receive.receive_nowait())
        except anyio.WouldBlock:
            return bodies


async def test_first_event_is_allowed(rec: recorder.Recorder) -> None:
    """A fresh Service may send an Event."""
    assert rec._allow(("ns", "web"), "Reason", "message")


async def test_identical_event_is_deduplicated(
    rec: recorder.Recorder, clock: helpers.FakeClock
) -> None:
    """The same reason and message for a Service is allowed once per 300 seconds."""
    key = ("ns", "web")
    assert rec._allow(key, "R", "m")
    clock.advance(299.0)
    assert not rec._allow(key, "R", "m")
    clock.advance(1.0)
    assert rec._allow(key, "R", "m")


@pytest.mark.parametrize(
    ("second", "allowed"),
    [
        pytest.param(("ns", "web", "R", "m"), False, id="same-everything"),
        pytest.param(("ns", "web", "R", "other message"), True, id="other-message"),
        pytest.param(("ns", "web", "Other", "m"), True, id="other-reason"),
        pytest.param(("ns", "api", "R", "m"), True, id="other-service"),
        pytest.param(("ns2", "web", "R", "m"), True, id="other-namespace"),
    ],
)
async def test_dedupe_key(
    rec: recorder.Recorder, second: tuple[str, str, str, str], *, allowed: bool
) -> None:
    """Only an identical (Service, reason, message) is a duplicate."""
    assert rec._allow(("ns", "web"), "R", "m")
    namespace, name, reason, message = second
    assert rec._allow((namespace, name), reason, message) is allowed


async def test_burst_then_refill(rec: recorder.Recorder, clock: helpers.FakeClock) -> None:
    """Ten distinct Events pass at once, the eleventh waits for one token per 30 seconds."""
    key = ("ns", "web")
    assert all(rec._allow(key, "R", f"m{i}") for i in range(10))
    assert not rec._allow(key, "R", "m10")
    clock.advance(29.0)
    assert not rec._allow(key, "R", "m11")
    clock.advance(1.0)
    assert rec._allow(key, "R", "m12")
    assert not rec._allow(key, "R", "m13")


async def test_tokens_are_capped_at_burst(rec: recorder.Recorder, clock: helpers.FakeClock) -> None:
    """A long quiet period refills the bucket to the burst size, not beyond."""
    key = ("ns", "web")
    assert all(rec._allow(key, "R", f"a{i}") for i in range(10))
    clock.advance(3600.0)
    results = [rec._allow(key, "R", f"b{i}") for i in range(12)]
    assert results == [True] * 10 + [False] * 2


async def test_buckets_are_per_service(rec: recorder.Recorder) -> None:
    """One Service exhausting its bucket does not limit another."""
    assert all(rec._allow(("ns", "web"), "R", f"m{i}") for i in range(10))
    assert not rec._allow(("ns", "web"), "R", "x")
    assert rec._allow(("ns", "api"), "R", "x")


async def test_deduplicated_event_costs_no_token(rec: recorder.Recorder) -> None:
    """A duplicate is rejected before the bucket is charged."""
    key = ("ns", "web")
    assert rec._allow(key, "R", "same")
    for _ in range(20):
        assert not rec._allow(key, "R", "same")
    assert all(rec._allow(key, "R", f"m{i}") for i in range(9))


async def test_rate_limited_event_is_not_remembered(
    rec: recorder.Recorder, clock: helpers.FakeClock
) -> None:
    """An Event dropped by the rate limit is not a duplicate once a token is back."""
    key = ("ns", "web")
    assert all(rec._allow(key, "R", f"m{i}") for i in range(10))
    assert not rec._allow(key, "R", "late")
    clock.advance(30.0)
    assert rec._allow(key, "R", "late")


async def test_forget_resets_the_bucket(rec: recorder.Recorder) -> None:
    """After forget a Service starts again with a full bucket and no remembered Events."""
    key = ("ns", "web")
    assert all(rec._allow(key, "R", f"m{i}") for i in range(10))
    rec.forget("ns", "web")
    assert rec._allow(key, "R", "m0")
    rec.forget("ns", "never-seen")


async def test_custom_limits(clock: helpers.FakeClock, registry: metrics.Metrics) -> None:
    """burst, refill_seconds and dedupe_seconds are honoured."""
    made = recorder.Recorder(
        object(),
        metrics_=registry,
        burst=2,
        refill_seconds=5.0,
        dedupe_seconds=1.0,
        clock=clock,
    )
    with made._send, made._receive:
        key = ("ns", "web")
        assert made._allow(key, "R", "a")
        assert made._allow(key, "R", "b")
        assert not made._allow(key, "R", "c")
        clock.advance(5.0)
        assert made._allow(key, "R", "a")
        assert not made._allow(key, "R", "b")


async def test_warning_queues_event_body(rec: recorder.Recorder) -> None:
    """An allowed warning is queued as a Warning Event on the source Service."""
    rec.warning(source(), "InvalidAnnotation", "zen-lead.io/sticky: bad")
    rec.normal(source(), "LeaderChanged", "web-1 leads")
    bodies = queued(rec)
    assert [(b["type"], b["reason"], b["message"]) for b in bodies] == [
        ("Warning", "InvalidAnnotation", "zen-lead.io/sticky: bad"),
        ("Normal", "LeaderChanged", "web-1 leads"),
    ]
    first = bodies[0]
    assert first["metadata"]["namespace"] == "ns"
    assert first["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Service",
        "name": "web",
        "namespace": "ns",
        "uid": "uid-web",
        "resourceVersion": "",
    }
    assert first["source"] == {"component": recorder.COMPONENT}


async def test_warning_message_is_truncated(rec: recorder.Recorder) -> None:
    """Messages longer than 1024 characters are cut to 1024."""
    rec.warning(source(), "R", "x" * 5000)
    assert len(queued(rec)[0]["message"]) == 1024


async def test_dropped_duplicates_are_counted(
    rec: recorder.Recorder, registry: metrics.Metrics
) -> None:
    """Each duplicate warning increments zen_lead_events_dropped_total for its reason."""
    for _ in range(3):
        rec.warning(source(), "InvalidAnnotation", "same")
    assert len(queued(rec)) == 1
    assert dropped(registry, "InvalidAnnotation") == 2.0
    assert dropped(registry, "Other") == 0.0


async def test_dropped_by_rate_limit_are_counted_per_reason(
    rec: recorder.Recorder, registry: metrics.Metrics, clock: helpers.FakeClock
) -> None:
    """Warnings beyond the burst are dropped and counted under their own reason."""
    for i in range(10):
        rec.warning(source(), "Flap", f"m{i}")
    rec.warning(source(), "Flap", "m10")
    rec.warning(source(), "Conflict", "c")
    rec.warning(source("api"), "Conflict", "c")
    assert len(queued(rec)) == 11
    assert dropped(registry, "Flap") == 1.0
    assert dropped(registry, "Conflict") == 1.0
    clock.advance(30.0)
    rec.warning(source(), "Flap", "m11")
    assert len(queued(rec)) == 1
    assert dropped(registry, "Flap") == 1.0


async def test_closed_stream_counts_as_dropped(
    clock: helpers.FakeClock, registry: metrics.Metrics
) -> None:
    """An Event that cannot be queued because the sender stopped is counted as dropped."""
    made = recorder.Recorder(object(), metrics_=registry, clock=clock)
    made._send.close()
    made._receive.close()
    made.warning(source(), "Late", "after shutdown")
    assert dropped(registry, "Late") == 1.0
