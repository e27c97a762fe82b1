"""The prober pool in a process of its own (`probehost.RemotePool` + `zenlead.probeworker`).

Real child processes probe a real HTTP server on loopback. Every test records the verdict
changes the controller would act on and asserts on them, on the mirrored `health`, on the
probe metrics served from the child's reports, and on what happens when the child dies or
stops talking.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.probes import test_phi_pool
from zenlead import metrics, model, probehost, probing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.probes.conftest import HttpServer

pytestmark = pytest.mark.anyio

KEY = model.ServiceKey("ns", "svc")
CONFIG = test_phi_pool.BASE
"""Fast timings: 100 ms intervals, 90 ms timeout, on the scripted server's /switch path."""


@dataclasses.dataclass
class Change:
    """One verdict change as the controller saw it."""

    at: float
    uid: str
    old: str
    new: str
    detail: str


class Host:
    """A RemotePool whose reports are recorded."""

    def __init__(self, **kwargs: object) -> None:
        """Build the pool (keyword arguments go to `RemotePool`)."""
        self.metrics = metrics.Metrics()
        self.changes: list[Change] = []
        self.pool = probehost.RemotePool(
            on_change=self._changed,
            metrics_=self.metrics,
            **kwargs,  # type: ignore[arg-type]
        )

    def _changed(
        self, _key: model.ServiceKey, uid: str, old: probing.Health, new: probing.Health
    ) -> None:
        self.changes.append(Change(time.monotonic(), uid, old.state, new.state, new.detail))

    def states(self, uid: str) -> list[str]:
        """Return the successive verdicts reported for `uid` (changes only)."""
        return [c.new for c in self.changes if c.uid == uid and c.old != c.new]

    def sample(self, name: str, **labels: str) -> float:
        """Return a sample of the served metrics (0 when absent)."""
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def until(self, check: Callable[[], object], seconds: float = 15.0) -> None:
        """Poll `check()` until true, failing after `seconds`."""
        with anyio.fail_after(seconds):
            while not check():  # noqa: ASYNC110 - polling state that nothing signals.
                await anyio.sleep(0.02)


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    """Yield a RemotePool whose process runs (restarted like the controller's supervisor)."""
    made = Host()
    async with anyio.create_task_group() as tg:

        async def supervise() -> None:
            while True:
                try:
                    await made.pool.run()
                except probehost.ProberGoneError:
                    await anyio.sleep(0.05)

        tg.start_soon(supervise)
        await made.until(lambda: made.pool.running)
        yield made
        tg.cancel_scope.cancel()


def _target(server: HttpServer, *, leader: bool = True) -> probing.ProbeTarget:
    return probing.ProbeTarget("127.0.0.1", server.port, leader=leader)


async def test_verdicts_metrics_and_changes_cross_the_process(
    host: Host, http_server: HttpServer
) -> None:
    """A pod is judged up, then down when it hangs, in the child; the parent sees both."""
    host.pool.ensure(KEY, CONFIG, {"a": _target(http_server)})
    await host.until(lambda: host.pool.health(KEY)["a"].state == probing.UP)
    assert host.pool.pid is not None
    assert host.pool.pid != os.getpid()
    await host.until(lambda: host.sample("zen_lead_probes_total", kind="http", result="success"))
    assert host.sample("zen_lead_probe_targets") == 1
    http_server.hanging = True
    await host.until(lambda: host.pool.health(KEY)["a"].state == probing.DOWN)
    assert host.states("a") == [probing.UP, probing.DOWN]
    assert host.changes[-1].detail.startswith("timeout")
    # The leader's failures were mirrored one by one, as a decision needs them.
    assert host.pool.health(KEY)["a"].failures >= CONFIG.fall
    http_server.hanging = False
    await host.until(lambda: host.pool.health(KEY)["a"].state == probing.UP)
    host.pool.forget(KEY)
    assert host.pool.health(KEY) == {}
    await host.until(lambda: host.sample("zen_lead_probe_targets") == 0)


async def test_a_killed_prober_is_restarted_and_resumes_its_verdicts(
    host: Host, http_server: HttpServer
) -> None:
    """SIGKILL the child: a new one starts, every target resumes from its last verdict."""
    host.pool.ensure(KEY, CONFIG, {"a": _target(http_server)})
    await host.until(lambda: host.pool.health(KEY)["a"].state == probing.UP)
    first = host.pool.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await host.until(lambda: host.pool.running and host.pool.pid != first)
    assert host.pool.starts == 2
    assert host.pool.health(KEY)["a"].state == probing.UP, "the verdict survived the restart"
    before = host.sample("zen_lead_probes_total", kind="http", result="success")
    await host.until(
        lambda: host.sample("zen_lead_probes_total", kind="http", result="success") != before
    )
    # Resumed, not restarted from unknown: no second "unknown -> up" change was reported.
    assert host.states("a") == [probing.UP]
    http_server.hanging = True
    await host.until(lambda: host.pool.health(KEY)["a"].state == probing.DOWN)


async def test_a_replaced_target_never_takes_a_late_verdict(host: Host) -> None:
    """A report about a target's older generation (old IP) is dropped, not mirrored."""
    old = probing.ProbeTarget("127.0.0.1", 1, leader=True)
    host.pool.ensure(KEY, CONFIG, {"a": old})
    gen = host.pool._gens[KEY]["a"]
    host.pool.ensure(KEY, CONFIG, {"a": dataclasses.replace(old, port=2)})
    assert host.pool._gens[KEY]["a"] != gen
    late = probing.Health(state=probing.DOWN, failures=3, detail="late")
    host.pool._handle(("change", KEY, "a", gen, probing.Health(), late))
    assert host.pool.health(KEY)["a"].detail != "late"
    assert not [c for c in host.changes if c.detail == "late"]
    # A role change is the same target: it keeps its generation.
    current = host.pool._gens[KEY]["a"]
    host.pool.ensure(KEY, CONFIG, {"a": probing.ProbeTarget("127.0.0.1", 2, leader=False)})
    assert host.pool._gens[KEY]["a"] == current
    host.pool.forget_all()


async def test_a_silent_prober_is_killed_and_reported() -> None:
    """A child that says ready and then never reports is declared gone after stall_seconds."""
    script = (
        "import os, sys, time\n"
        "from zenlead import frames\n"
        "os.write(1, frames.encode(('ready', os.getpid())))\n"
        "time.sleep(60)\n"
    )
    made = Host(command=[sys.executable, "-c", script], stall_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(probehost.ProberGoneError, match="silent"):
        await made.pool.run()
    assert time.monotonic() - started < 10
    assert not made.pool.running
    pid = made.pool.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # Reaped: killed, not left behind.


async def test_a_prober_that_exits_is_reported() -> None:
    """A child that dies before saying ready raises at once."""
    made = Host(command=[sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(probehost.ProberGoneError, match="exited"):
        await made.pool.run()
