"""The phi detector in the prober pool, against a real HTTP server on loopback.

Each test runs a `probing.Pool` with the real HTTP checker and records every verdict change
with its time, so the assertions are on what the controller would act on: when a pod went
down, why (the verdict's detail), and the suspicion counters.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import TYPE_CHECKING

import anyio
import pytest

import probes
from zenlead import metrics, model, probeconfig, probing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.probes.conftest import HttpServer

pytestmark = pytest.mark.anyio

FIXED = model.ServiceKey("ns", "fixed")
PHI = model.ServiceKey("ns", "phi")

# Fast timings so a test gathers the 20 answers phi needs in about 2 s: the fixed detector
# needs 90 + 2 * (100 + 90) = 470 ms of silence, phi max(t*, 150 ms).
BASE = probeconfig.ProbeConfig(
    kind="http",
    port=None,
    spec=probes.HttpSpec(path="/switch", verify_tls=False),
    interval_seconds=0.1,
    timeout_seconds=0.09,
    fast_interval_seconds=0.1,
    candidate_interval_seconds=0.1,
)
PHI_CONFIG = dataclasses.replace(BASE, detector="phi", phi_pause_seconds=0.15)


@dataclasses.dataclass
class Change:
    """One verdict change as the controller saw it."""

    at: float
    key: model.ServiceKey
    state: str
    detail: str


class Run:
    """A running pool probing one server for a fixed-detector and a phi-detector Service."""

    def __init__(self, server: HttpServer) -> None:
        """Record changes; probe `server` once `start` is called."""
        self.server = server
        self.metrics = metrics.Metrics()
        self.changes: list[Change] = []
        self.pool = probing.Pool(on_change=self._changed, metrics_=self.metrics)

    def _changed(
        self, key: model.ServiceKey, _uid: str, old: probing.Health, new: probing.Health
    ) -> None:
        if old.state != new.state:
            self.changes.append(Change(time.monotonic(), key, new.state, new.detail))

    def start(self, *configs: tuple[model.ServiceKey, probeconfig.ProbeConfig]) -> None:
        """Probe the server as the leader of each (key, config)."""
        target = probing.ProbeTarget("127.0.0.1", self.server.port, leader=True)
        for key, config in configs:
            self.pool.ensure(key, config, {"pod": target})

    def suspicions(self, outcome: str) -> float:
        """Return zen_lead_probe_suspicions_total for `outcome`."""
        sample = self.metrics.registry.get_sample_value(
            "zen_lead_probe_suspicions_total", {"kind": "http", "outcome": outcome}
        )
        return sample or 0.0

    def probes(self) -> float:
        """Return how many probes passed so far."""
        sample = self.metrics.registry.get_sample_value(
            "zen_lead_probes_total", {"kind": "http", "result": "success"}
        )
        return sample or 0.0

    async def until(self, check: object, seconds: float = 10.0) -> None:
        """Poll `check()` until true, failing after `seconds`."""
        assert callable(check)
        with anyio.fail_after(seconds):
            while not check():  # noqa: ASYNC110 - polling state that nothing signals.
                await anyio.sleep(0.02)

    def down(self, key: model.ServiceKey) -> list[Change]:
        """Return the down verdicts of `key`."""
        return [c for c in self.changes if c.key == key and c.state == probing.DOWN]


@pytest.fixture
async def run(http_server: HttpServer) -> AsyncIterator[Run]:
    """Yield a running pool; stop it (and every probe) at the end."""
    harness = Run(http_server)
    async with anyio.create_task_group() as tg:
        tg.start_soon(harness.pool.run)
        await harness.until(lambda: harness.pool.running)
        yield harness
        harness.pool.forget_all()
        tg.cancel_scope.cancel()


async def test_a_hung_fast_pod_is_down_sooner_with_phi(run: Run) -> None:
    """Same pod, same hang: phi calls it down on an improbable silence, well before `fall`."""
    run.start((FIXED, BASE), (PHI, PHI_CONFIG))
    await run.until(lambda: run.probes() >= 2 * 30)  # History: 30 answers each.
    hung_at = time.monotonic()
    run.server.hanging = True
    await run.until(lambda: run.down(FIXED) and run.down(PHI))
    phi_down, fixed_down = run.down(PHI)[0], run.down(FIXED)[0]
    assert phi_down.at < fixed_down.at, (phi_down, fixed_down)
    assert fixed_down.at - hung_at >= BASE.fixed_silence_seconds - 0.02
    assert "improbable for this pod" in phi_down.detail
    assert fixed_down.detail.startswith("timeout")
    assert (run.suspicions("confirmed"), run.suspicions("cleared")) == (1.0, 0.0)


async def test_a_pause_shorter_than_acceptable_is_ridden_out(run: Run) -> None:
    """A 120 ms stall raises suspicions that clear; the pod is never called down."""
    run.start((PHI, PHI_CONFIG))
    await run.until(lambda: run.probes() >= 30)
    for pauses in range(1, 6):
        stalls = [0.12]  # The next request waits 120 ms, later ones are answered at once.
        run.server.delay = lambda stalls=stalls: stalls.pop() if stalls else 0.0
        await run.until(lambda n=pauses: run.suspicions("cleared") >= n, seconds=5.0)
    assert run.down(PHI) == []
    assert run.suspicions("confirmed") == 0.0


async def test_a_noisy_pod_is_judged_by_the_fixed_rules(run: Run) -> None:
    """Answers from 1 to 80 ms put t* past the timeout: phi waits like the fixed detector."""
    rng = random.Random(7)  # noqa: S311 - test noise
    run.server.delay = lambda: rng.choice((0.001, 0.002, 0.005, 0.08))
    run.start((PHI, PHI_CONFIG))
    await run.until(lambda: run.probes() >= 30)
    hung_at = time.monotonic()
    run.server.hanging = True
    await run.until(lambda: run.down(PHI))
    down = run.down(PHI)[0]
    assert down.detail.startswith("timeout"), down
    assert down.at - hung_at >= BASE.fixed_silence_seconds - 0.02
    assert run.suspicions("confirmed") == run.suspicions("cleared") == 0.0
