"""Everything at once: reconciles racing pod churn, relists, prober crashes and a handover."""

from __future__ import annotations

import os
import pathlib
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from probes import testing as fakes
from tests import helpers
from tests.chaos.conftest import SETTLE
from tests.chaos.test_load import FAST_HTTP, Churn
from tests.chaos.test_outages import hold

if TYPE_CHECKING:
    from tests.chaos.conftest import Cluster
    from zenlead.testing import replica

RECONCILERS = "--max-concurrent-reconciles=50"
LEASE_SECONDS = 3.0
"""The chaos replicas' Lease duration (replica.FAST_ELECTION)."""


def prober_pids(rep: replica.Replica) -> list[int]:
    """Return the pids of `rep`'s child processes (its prober process)."""
    found = []
    for children in pathlib.Path(f"/proc/{rep.pid}/task").glob("*/children"):
        found += [int(pid) for pid in children.read_text().split()]
    return found


def leading(rep: replica.Replica) -> bool:
    """Tell whether `rep` holds the Lease."""
    return "zen_lead_controller_is_leader 1.0" in rep.scrape()


def prober_restarts(rep: replica.Replica) -> float:
    """Return how often `rep` restarted its prober."""
    for line in rep.scrape().splitlines():
        if line.startswith('zen_lead_task_restarts_total{task="prober"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Faults:
    """The fault schedule; records what it did.

    It runs in the test's main thread, the churn beside it: a kube-apiserver started from a
    thread that then ends would get the parent-death signal with that thread.
    """

    def __init__(self, cluster: Cluster, replicas: tuple[replica.Replica, replica.Replica]) -> None:
        """Act on `cluster` and its two `replicas`."""
        self.cluster = cluster
        self.replicas = replicas
        self.done: list[str] = []

    def _active(self) -> replica.Replica:
        return helpers.poll(
            lambda: next((r for r in self.replicas if r.alive() and leading(r)), None),
            timeout=15,
            what="a leading replica",
        )

    def _kill_prober(self) -> None:
        active = self._active()
        pids = prober_pids(active)
        assert pids, "the leading replica runs no prober process"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        self.done.append(f"prober of pid {active.pid} killed")

    def _restart_apiserver(self) -> None:
        start = time.monotonic()
        self.cluster.plane.stop_apiserver()
        self.cluster.plane.start_apiserver()
        self.cluster.wait_serving()
        self.cluster.fault(start, time.monotonic())
        self.done.append("kube-apiserver restarted")

    def _kill_leader(self) -> None:
        active = self._active()
        start = time.monotonic()
        active.kill()
        self.cluster.fault(start, start + LEASE_SECONDS)
        self.done.append(f"leading replica {active.pid} SIGKILLed")

    def run(self) -> None:
        """Apply each fault, 6 s apart."""
        for act in (
            self._kill_prober,
            self._restart_apiserver,
            self._kill_prober,
            self._kill_leader,
            self._kill_prober,
        ):
            hold(6)
            act()


def test_reconciles_race_churn_relists_prober_kills_and_a_handover(make_cluster: Any) -> None:
    """20 probed Services, 2 replicas with 50 reconcilers each, 40 s of churn at 20/s.

    Meanwhile the leading replica's prober process is SIGKILLed three times, the kube-apiserver
    is restarted (every informer relists) and the leading replica is SIGKILLed (the standby
    takes over). Every recorded slice version has at most one endpoint, every write came from
    the Lease holder, and no Service stays unrouted beyond the faults' allowance.
    """
    with fakes.PodNetwork() as network:
        cluster = make_cluster()
        cluster.network = network
        services = [f"s{i}" for i in range(20)]
        for name in services:
            cluster.add_service(name, annotations=FAST_HTTP)
        replicas = (cluster.replica(RECONCILERS), cluster.replica(RECONCILERS))
        for made in replicas:
            made.wait_ready()
        cluster.wait_routed(services, timeout=60)
        cluster.mark_steady()
        churn = Churn(cluster, services, seed=11)
        churning = threading.Thread(target=churn.run, kwargs={"rate": 20, "seconds": 40})
        churning.start()
        faults = Faults(cluster, replicas)
        try:
            faults.run()
        finally:
            churning.join(timeout=120)
        assert len(faults.done) == 5, faults.done
        took = cluster.wait_routed(services, timeout=SETTLE + 10)
        survivor = next(r for r in replicas if r.alive())
        assert leading(survivor)
        restarts = prober_restarts(survivor)
        assert restarts >= 1, "the survivor's prober was killed and must have been restarted"
        cluster.check(
            services,
            name="reconciles x churn x relist x prober kills x handover",
            operations=sum(churn.ops.values()),
            churn_errors=churn.errors,
            faults=faults.done,
            survivor_prober_restarts=restarts,
            routed_after_seconds=round(took, 2),
        )
