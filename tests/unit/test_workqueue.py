"""The work queue deduplicates keys, serialises each key, delays adds and backs off failures."""

from __future__ import annotations

import anyio
import pytest

from tests import helpers
from zenlead.workqueue import WorkQueue

pytestmark = pytest.mark.anyio


async def drain(queue: WorkQueue[str]) -> list[str]:
    """Take every waiting key (without blocking) and mark each done; return them in order."""
    keys = []
    while len(queue):
        key = await queue.get()
        assert key is not None
        keys.append(key)
        queue.done(key)
    return keys


@pytest.mark.parametrize(
    ("adds", "expected"),
    [
        pytest.param(["a"], ["a"], id="one"),
        pytest.param(["a", "a", "a"], ["a"], id="same-key-thrice"),
        pytest.param(["a", "b", "a", "c", "b"], ["a", "b", "c"], id="fifo-first-add-wins"),
    ],
)
async def test_adds_are_deduplicated(adds: list[str], expected: list[str]) -> None:
    """A key waiting in the queue is stored once however often it is added, in FIFO order."""
    queue: WorkQueue[str] = WorkQueue()
    for key in adds:
        queue.add(key)
    assert len(queue) == len(expected)
    assert await drain(queue) == expected


async def test_processing_key_is_not_handed_out_twice() -> None:
    """A key added while it is processed waits; other keys are handed out meanwhile."""
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0
    queue.add("b")
    assert await queue.get() == "b"
    assert len(queue) == 0
    queue.done("b")
    queue.done("a")
    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_done_without_re_add_does_not_requeue() -> None:
    """A processed key that was not added meanwhile leaves the queue for good."""
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_key_can_be_added_again_after_get() -> None:
    """Once handed out, the key is no longer dirty, so a later add queues it (after done)."""
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    assert key == "a"
    queue.done(key)
    queue.add("a")
    assert await drain(queue) == ["a"]


async def test_add_after_waits_for_the_clock() -> None:
    """A delayed key is queued by promote_due only once the injected clock reaches its time."""
    clock = helpers.FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 5.0)
    assert len(queue) == 0
    assert queue.delayed == 1
    assert queue.promote_due() == pytest.approx(5.0)
    clock.advance(4.0)
    assert queue.promote_due() == pytest.approx(1.0)
    assert len(queue) == 0
    clock.advance(1.0)
    assert queue.promote_due() is None
    assert queue.delayed == 0
    assert await drain(queue) == ["a"]


async def test_promote_due_orders_by_due_time() -> None:
    """Due keys are queued soonest first and the next wait is reported for the rest."""
    clock = helpers.FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("late", 3.0)
    queue.add_after("early", 1.0)
    queue.add_after("later", 10.0)
    clock.advance(3.0)
    assert queue.promote_due() == pytest.approx(7.0)
    assert await drain(queue) == ["early", "late"]
    assert queue.delayed == 1


async def test_promote_due_with_nothing_scheduled() -> None:
    """With no timers promote_due adds nothing and returns None."""
    queue: WorkQueue[str] = WorkQueue(clock=helpers.FakeClock())
    assert queue.promote_due() is None
    assert len(queue) == 0


async def test_delayed_adds_are_deduplicated() -> None:
    """Two delayed adds of one key that come due together queue it once."""
    clock = helpers.FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add("a")
    queue.add_after("a", 1.0)
    queue.add_after("a", 2.0)
    clock.advance(2.0)
    queue.promote_due()
    assert await drain(queue) == ["a"]


@pytest.mark.parametrize(
    "delay",
    [pytest.param(0.0, id="zero"), pytest.param(-1.0, id="negative")],
)
async def test_add_after_non_positive_adds_now(delay: float) -> None:
    """A delay that is not positive queues the key at once, without a timer."""
    queue: WorkQueue[str] = WorkQueue(clock=helpers.FakeClock())
    queue.add_after("a", delay)
    assert len(queue) == 1
    assert queue.delayed == 0


async def test_rate_limited_backoff_doubles_and_caps() -> None:
    """Each failure doubles the delay from the base up to the maximum."""
    queue: WorkQueue[str] = WorkQueue(
        clock=helpers.FakeClock(), base_delay_seconds=1.0, max_delay_seconds=10.0
    )
    delays = [queue.add_rate_limited("a") for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert queue.failures("a") == 6
    assert queue.delayed == 1  # One pending timer per key: the earliest.


async def test_add_after_keeps_the_earliest_timer_per_key() -> None:
    """Repeated delayed adds of one key leave one timer, due at the earliest time asked."""
    clock = helpers.FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 5.0)
    queue.add_after("a", 9.0)
    queue.add_after("a", 2.0)
    assert queue.delayed == 1
    clock.now += 2.0
    assert queue.promote_due() is None
    assert len(queue) == 1
    assert queue.delayed == 0


async def test_rate_limited_backoff_survives_many_failures() -> None:
    """A key failing for days keeps getting the capped delay instead of raising."""
    queue: WorkQueue[str] = WorkQueue(clock=helpers.FakeClock(), max_delay_seconds=120.0)
    delays = [queue.add_rate_limited("a") for _ in range(1100)]
    assert delays[-1] == 120.0
    assert queue.failures("a") == 1100


async def test_rate_limited_default_base() -> None:
    """The default backoff starts at 10 ms."""
    queue: WorkQueue[str] = WorkQueue(clock=helpers.FakeClock())
    assert queue.add_rate_limited("a") == pytest.approx(0.01)
    assert queue.add_rate_limited("a") == pytest.approx(0.02)


async def test_rate_limited_key_is_queued_after_its_delay() -> None:
    """A rate-limited key appears only once the clock passes its backoff delay."""
    clock = helpers.FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock, base_delay_seconds=2.0)
    queue.add_rate_limited("a")
    clock.advance(1.9)
    queue.promote_due()
    assert len(queue) == 0
    clock.advance(0.1)
    queue.promote_due()
    assert await drain(queue) == ["a"]


async def test_backoff_is_per_key_and_forget_resets_it() -> None:
    """Backoff is tracked per key, and forget starts that key over at the base delay."""
    queue: WorkQueue[str] = WorkQueue(
        clock=helpers.FakeClock(), base_delay_seconds=1.0, max_delay_seconds=100.0
    )
    for _ in range(3):
        queue.add_rate_limited("a")
    assert queue.add_rate_limited("b") == 1.0
    queue.forget("a")
    assert queue.failures("a") == 0
    assert queue.failures("b") == 1
    assert queue.add_rate_limited("a") == 1.0
    queue.forget("never-seen")
    assert queue.failures("never-seen") == 0


async def test_shutdown_wakes_waiting_getters_with_none() -> None:
    """shutdown(n) makes n blocked get calls return None."""
    queue: WorkQueue[str] = WorkQueue()
    results: list[str | None] = []

    async def worker() -> None:
        results.append(await queue.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        assert results == []
        queue.shutdown(2)
    assert results == [None, None]


async def test_shutdown_drops_waiting_keys_and_ignores_adds() -> None:
    """After shutdown waiting keys are dropped, new adds ignored and get returns None."""
    clock = helpers.FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add("a")
    queue.add("b")
    queue.shutdown(1)
    assert len(queue) == 0
    queue.add("c")
    queue.add_after("d", 1.0)
    clock.advance(1.0)
    queue.promote_due()
    assert len(queue) == 0
    assert await queue.get() is None


async def test_shutdown_does_not_requeue_processing_key() -> None:
    """A key re-added during processing is not queued again when done comes after shutdown."""
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.shutdown(0)
    queue.done("a")
    assert len(queue) == 0


async def test_run_timers_promotes_due_keys() -> None:
    """run_timers queues keys that are already due without anyone calling promote_due."""
    clock = helpers.FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 5.0)
    clock.advance(5.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run_timers)
        assert await queue.get() == "a"
        tg.cancel_scope.cancel()


async def test_an_urgent_key_goes_before_a_burst() -> None:
    """A failing leader's Service is handed out before 1,000 opt-ins queued ahead of it."""
    queue: WorkQueue[str] = WorkQueue()
    for i in range(1000):
        queue.add(f"burst-{i}")
    queue.add("failover", urgent=True)
    assert await queue.get() == "failover"
    queue.done("failover")
    assert len(queue) == 1000


async def test_an_urgent_add_moves_a_waiting_key_to_the_front_once() -> None:
    """Re-adding a waiting key urgently moves it (not duplicates it); a plain re-add does not."""
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "c"):
        queue.add(key)
    queue.add("c", urgent=True)
    queue.add("b")
    assert await drain(queue) == ["c", "a", "b"]


async def test_an_urgent_add_while_processing_runs_next_at_the_front() -> None:
    """A key made urgent while a worker holds it is the first handed out after `done`."""
    queue: WorkQueue[str] = WorkQueue()
    queue.add("x")
    assert await queue.get() == "x"
    queue.add("a")
    queue.add("x", urgent=True)
    queue.done("x")
    assert await drain(queue) == ["x", "a"]
    queue.add("y")
    queue.add("z")
    assert await drain(queue) == ["y", "z"], "urgency does not outlive the run it was for"
