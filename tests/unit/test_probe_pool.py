"""The prober pool contains failures: a crashing probe loop never stops its siblings or the pool."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import probes
from zenlead import metrics, model, probeconfig, probing

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

KEY = model.ServiceKey("ns", "web")


class Checker:
    """A checker whose `check` runs `behaviour(n)`; n counts calls over its kind's checkers."""

    def __init__(self, behaviour: Callable[[int], probes.ProbeResult], total: list[int]) -> None:
        """Probe by calling `behaviour`; `total` is the shared call counter of the kind."""
        self.behaviour = behaviour
        self.total = total
        self.calls = 0

    async def check(self, *, deadline: float) -> probes.ProbeResult:
        """Count the call and act out the behaviour."""
        del deadline
        self.calls += 1
        self.total[0] += 1
        await anyio.lowlevel.checkpoint()
        return self.behaviour(self.total[0])

    async def watch(self, callback: Any) -> None:
        """Nothing is pushed."""

    async def aclose(self) -> None:
        """Nothing to release."""


def ok(_call: int) -> probes.ProbeResult:
    """Pass, always."""
    return probes.ProbeResult.success("ok")


def crash_twice(call: int) -> probes.ProbeResult:
    """Raise like a prober bug on the first two calls (of each checker), then pass."""
    if call <= 2:
        raise RecursionError("maximum recursion depth exceeded")
    return ok(call)


def foreign_cancel(call: int) -> probes.ProbeResult:
    """Raise a bare CancelledError (as grpc.aio does for a cancelled RPC) on the first call."""
    if call == 1:
        raise asyncio.CancelledError
    return ok(call)


def config(kind: str) -> probeconfig.ProbeConfig:
    """Return a fast probe config of `kind`."""
    return probeconfig.ProbeConfig(
        kind=kind,
        port=80,
        spec=probes.TcpSpec(),
        interval_seconds=0.1,
        timeout_seconds=0.05,
        candidate_interval_seconds=0.1,
    )


class Harness:
    """A pool with fake probers by kind, recording verdict changes."""

    def __init__(self, behaviours: dict[str, Callable[[int], probes.ProbeResult]]) -> None:
        """Register one fake prober per kind."""
        self.metrics = metrics.Metrics()
        self.changes: list[tuple[str, str]] = []
        self.checkers: dict[str, list[Checker]] = {kind: [] for kind in behaviours}
        totals = {kind: [0] for kind in behaviours}

        def factory(kind: str) -> Any:
            def make(target: probes.Target, spec: Any) -> Checker:
                del target, spec
                if behaviours[kind] is None:  # type: ignore[comparison-overlap]
                    raise ValueError("factory bug")
                made = Checker(behaviours[kind], totals[kind])
                self.checkers[kind].append(made)
                return made

            return make

        self.pool = probing.Pool(
            on_change=lambda _key, uid, _old, new: self.changes.append((uid, new.state)),
            metrics_=self.metrics,
            probers={kind: factory(kind) for kind in behaviours},
        )

    def restarts(self, kind: str) -> float:
        """Return zen_lead_probe_loop_restarts_total for `kind`."""
        value = self.metrics.registry.get_sample_value(
            "zen_lead_probe_loop_restarts_total", {"kind": kind}
        )
        return value or 0.0

    async def until(self, check: Callable[[], bool]) -> None:
        """Poll `check()` until it holds (fail after 5 s): the pool has no event to await."""
        with anyio.fail_after(5.0):
            while not check():  # noqa: ASYNC110 - polling state that nothing signals.
                await anyio.sleep(0.02)


def targets(*uids: str) -> dict[str, probing.ProbeTarget]:
    """Return probe targets for `uids` on distinct addresses."""
    return {
        uid: probing.ProbeTarget(f"10.244.0.{i}", 80, leader=False) for i, uid in enumerate(uids)
    }


@pytest.mark.parametrize("behaviour", [crash_twice, foreign_cancel], ids=["raises", "cancelled"])
async def test_crashing_loop_is_restarted_and_siblings_carry_on(
    behaviour: Callable[[int], probes.ProbeResult],
) -> None:
    """A loop that raises (or gets a library's CancelledError) restarts; its sibling keeps going."""
    h = Harness({"bad": behaviour, "good": ok})
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.pool.run)
        await h.until(lambda: h.pool.running)
        h.pool.ensure(KEY, config("good"), targets("g"))
        h.pool.ensure(model.ServiceKey("ns", "other"), config("bad"), targets("b"))
        await h.until(lambda: ("b", probing.UP) in h.changes and ("g", probing.UP) in h.changes)
        assert h.restarts("bad") >= 1
        assert h.restarts("good") == 0
        assert h.pool.running
        await h.until(lambda: h.checkers["good"][0].calls >= 2)  # The sibling keeps probing.
        assert h.restarts("good") == 0
        tg.cancel_scope.cancel()


async def test_factory_that_raises_is_contained() -> None:
    """A checker factory that raises is retried with backoff; the pool keeps running."""
    h = Harness({"broken": None, "good": ok})  # type: ignore[dict-item]
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.pool.run)
        await h.until(lambda: h.pool.running)
        h.pool.ensure(KEY, config("broken"), targets("x"))
        h.pool.ensure(model.ServiceKey("ns", "b"), config("good"), targets("g"))
        await h.until(lambda: h.restarts("broken") >= 2 and ("g", probing.UP) in h.changes)
        assert h.pool.health(KEY)["x"].state == probing.UNKNOWN, "a crash is no evidence"
        tg.cancel_scope.cancel()


async def test_targets_survive_a_pool_restart() -> None:
    """Targets added while the pool is down start when it runs again, with verdicts kept."""
    h = Harness({"good": ok})
    with anyio.CancelScope() as first:
        async with anyio.create_task_group() as tg:
            tg.start_soon(h.pool.run)
            await h.until(lambda: h.pool.running)
            h.pool.ensure(KEY, config("good"), targets("a"))
            await h.until(lambda: ("a", probing.UP) in h.changes)
            first.cancel()
    assert not h.pool.running
    h.pool.ensure(KEY, config("good"), targets("a", "b"))  # Must not raise while down.
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.pool.run)
        await h.until(lambda: ("b", probing.UP) in h.changes)
        assert h.pool.health(KEY)["a"].state == probing.UP
        tg.cancel_scope.cancel()


async def test_dropping_a_target_cancels_only_that_loop() -> None:
    """Forgetting one Service stops its probes; another Service's probes carry on."""
    h = Harness({"good": ok})
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.pool.run)
        await h.until(lambda: h.pool.running)
        h.pool.ensure(KEY, config("good"), targets("a"))
        h.pool.ensure(model.ServiceKey("ns", "b"), config("good"), targets("b"))
        await h.until(lambda: len(h.checkers["good"]) == 2)
        h.pool.forget(KEY)
        dropped, kept = h.checkers["good"]
        frozen = dropped.calls
        before = kept.calls
        await h.until(lambda: kept.calls >= before + 3)
        assert dropped.calls <= frozen + 1
        assert h.restarts("good") == 0
        tg.cancel_scope.cancel()


async def test_a_failed_notification_is_repeated() -> None:
    """If reporting a verdict change fails, the next probe reports again (no lost failover)."""
    h = Harness({"good": ok})
    calls: list[str] = []

    def flaky(_key: Any, _uid: str, _old: Any, new: probing.Health) -> None:
        calls.append(new.state)
        if len(calls) == 1:
            raise RuntimeError("enqueue failed")

    h.pool._on_change = flaky
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.pool.run)
        await h.until(lambda: h.pool.running)
        h.pool.ensure(KEY, config("good"), targets("a"))
        await h.until(lambda: len(calls) >= 2)
        assert calls[:2] == [probing.UP, probing.UP]
        assert h.restarts("good") == 1
        tg.cancel_scope.cancel()


async def test_candidates_are_chased_while_the_leader_fails() -> None:
    """The leader's first failure wakes its candidates, then probes them at the fast pace."""
    failing = {"10.244.0.0": False}
    calls: dict[str, list[float]] = {"10.244.0.0": [], "10.244.0.1": []}

    class ByTarget:
        def __init__(self, target: probes.Target, _spec: Any) -> None:
            self.ip = target.ip

        async def check(self, *, deadline: float) -> probes.ProbeResult:
            del deadline
            calls[self.ip].append(anyio.current_time())
            await anyio.lowlevel.checkpoint()
            if failing.get(self.ip):
                return probes.ProbeResult.fail(probes.FailureClass.NEGATIVE, "HTTP 503")
            return probes.ProbeResult.success("ok")

        async def watch(self, callback: Any) -> None:
            del callback

        async def aclose(self) -> None:
            pass

    pool = probing.Pool(
        on_change=lambda *_a: None, metrics_=metrics.Metrics(), probers={"fake": ByTarget}
    )
    slow = dataclasses.replace(config("fake"), candidate_interval_seconds=5.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        with anyio.fail_after(5):
            while not pool.running:  # noqa: ASYNC110 - nothing signals this.
                await anyio.sleep(0.01)
        pool.ensure(
            KEY,
            slow,
            {
                "leader": probing.ProbeTarget("10.244.0.0", 80, leader=True),
                "candidate": probing.ProbeTarget("10.244.0.1", 80, leader=False),
            },
        )
        with anyio.fail_after(10):
            while not calls["10.244.0.1"] or len(calls["10.244.0.0"]) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        failing["10.244.0.0"] = True
        start = anyio.current_time()
        await anyio.sleep(1.0)  # Observing the pace: five candidate intervals would be 25 s.
        chased = [t for t in calls["10.244.0.1"] if t >= start]
        tg.cancel_scope.cancel()
    assert len(chased) >= 4, f"candidate probed {len(chased)} times in 1 s"
    assert chased[0] - start < 0.5, "the candidate was not woken by the leader's first failure"


async def test_a_late_timeout_never_makes_a_pod_down_early() -> None:
    """A timeout our own stalled loop noticed late is no improbable silence: `fall` decides."""
    calls = [0]

    class Stalling:
        def __init__(self, _target: probes.Target, _spec: Any) -> None:
            pass

        async def check(self, *, deadline: float) -> probes.ProbeResult:
            calls[0] += 1
            if calls[0] <= 25:  # A fast pod's history first.
                await anyio.lowlevel.checkpoint()
                return probes.ProbeResult.success("ok")
            await anyio.sleep(max(0.0, deadline - anyio.current_time()) + 0.1)  # We were late.
            return probes.ProbeResult.fail(probes.FailureClass.TIMEOUT, "timeout")

        async def watch(self, callback: Any) -> None:
            del callback

        async def aclose(self) -> None:
            pass

    downs: list[probing.Health] = []
    pool = probing.Pool(
        on_change=lambda _k, _u, old, new: downs.append(new) if new.state != old.state else None,
        metrics_=metrics.Metrics(),
        probers={"fake": Stalling},
    )
    phi = dataclasses.replace(
        config("fake"), detector="phi", interval_seconds=0.02, timeout_seconds=0.015
    )
    phi = dataclasses.replace(phi, fast_interval_seconds=0.01, phi_pause_seconds=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run)
        with anyio.fail_after(5):
            while not pool.running:  # noqa: ASYNC110 - nothing signals this.
                await anyio.sleep(0.01)
        pool.ensure(KEY, phi, {"pod": probing.ProbeTarget("10.244.0.0", 80, leader=True)})
        with anyio.fail_after(10):
            while not any(h.state == probing.DOWN for h in downs):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    down = next(h for h in downs if h.state == probing.DOWN)
    assert (down.failures, down.detail) == (phi.fall, "timeout: timeout")
