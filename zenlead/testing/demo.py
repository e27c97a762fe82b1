"""``zen-lead demo``: a live failover on a local control plane, with real health servers.

Runs inside a private network namespace (re-executing itself there if needed) where each fake
pod's HTTP, gRPC and TCP health servers listen on the pod's own IP. Two scenarios, each on its
own Service with three pods and the default probe settings:

1. HTTP probe; the leader hangs (accepts connections, never answers);
2. gRPC health probe; the leader turns NOT_SERVING (pushed by the Watch stream).

For each it prints a timeline (fault injected, first failed probe, leader judged down, slice
switched as seen by the demo's own polling) and the failover latency zen-lead measured itself.
With the real kube-proxy running in the namespace (it needs ``nft``), a client opens a
connection to the leader Service's ClusterIP every 20 ms, and the timeline adds when a client
request was first answered by the new pod and how many client requests failed meanwhile; where
kube-proxy cannot run, the demo says why and shows the slice-level timeline only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from kubernetes import client

from probes import testing as fakes
from zenlead import settings
from zenlead.kube import client as kube_client
from zenlead.testing import controlplane, dataplane, netns, pods, running

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("main",)

NS = "demo"
_PROBE_LOGGER = "zenlead.probing"
_ISOLATED = "ZEN_LEAD_DEMO_NETNS"
"""Set once the demo runs in its own network namespace."""


class _Timeline(logging.Handler):
    """Collects the pool's 'first failure' and 'judged down' log records with their times."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.events: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append((record.created, record.getMessage()))

    def first(self, needle: str, ip: str, after: float) -> tuple[float, str] | None:
        return next(
            ((t, m) for t, m in self.events if t >= after and ip in m and needle in m), None
        )


def main() -> int:
    """Run both scenarios and print their timelines; return the exit code."""
    if os.environ.get(_ISOLATED) != "1":
        # Always a namespace of its own: its kube-proxy and ClusterIPs must not meet another
        # control plane's (a test session's, say) in a shared namespace.
        os.environ[_ISOLATED] = "1"
        netns.reexec([sys.executable, "-m", "zenlead", "demo"])
    timeline = _Timeline()
    logging.getLogger(_PROBE_LOGGER).addHandler(timeline)
    logging.getLogger(_PROBE_LOGGER).setLevel(logging.INFO)
    print("starting etcd + kube-apiserver (local, in a private network namespace) ...", flush=True)
    with (
        controlplane.ControlPlane() as plane,
        fakes.PodNetwork() as network,
        tempfile.TemporaryDirectory() as work,
        contextlib.ExitStack() as stack,
    ):
        proxy = _kube_proxy(plane, pathlib.Path(work), stack)
        api = _api(plane)
        _core(api).create_namespace({"metadata": {"name": NS}})
        config = settings.Settings(
            kubeconfig=str(plane.kubeconfig),
            namespaces=(NS,),
            metrics_bind_address="127.0.0.1:0",
            health_probe_bind_address="127.0.0.1:0",
            leader_elect=False,  # One replica: nothing to elect.
        )
        with running.RunningController(config) as ctl:
            ctl.wait_synced()
            http = _scenario_setup(api, network, "web", 10, {"zen-lead.io/probe-path": "/healthz"})

            def hang() -> None:
                http[0].http_mode = "hang"

            title = "HTTP probe; the leader hangs"
            _run_scenario(api, timeline, "web", http, title, hang, clients=proxy)
            grpc_probe = {"zen-lead.io/probe": "grpc", "zen-lead.io/probe-port": "9090"}
            rpc = _scenario_setup(api, network, "rpc", 20, grpc_probe)

            def not_serving() -> None:
                network.set_serving(rpc[0].ip, serving=False)

            title = "gRPC health; the leader turns NOT_SERVING"
            _run_scenario(api, timeline, "rpc", rpc, title, not_serving, clients=proxy)
        api.close()
    print("done: control plane, controller and fake pods stopped")
    return 0


def _kube_proxy(
    plane: controlplane.ControlPlane, work: pathlib.Path, stack: contextlib.ExitStack
) -> bool:
    """Start kube-proxy for the clients' view; say why not and return False if it cannot run."""
    try:
        stack.enter_context(dataplane.KubeProxy(plane, workdir=work))
    except (dataplane.DataplaneError, OSError) as exc:
        print(f"kube-proxy cannot run here ({exc}); showing the EndpointSlice timeline only")
        return False
    print("kube-proxy (nftables mode) runs: clients reach <svc>-leader through it")
    return True


def _api(plane: controlplane.ControlPlane) -> Any:
    return kube_client.connect(str(plane.kubeconfig))


def _core(api: Any) -> Any:
    """Return CoreV1Api typed as Any: the demo passes plain dict bodies, which it accepts."""
    return client.CoreV1Api(api)


def _scenario_setup(
    api: Any, network: fakes.PodNetwork, name: str, subnet: int, probe: dict[str, str]
) -> list[fakes.FakePod]:
    ips = [f"10.244.{subnet}.{10 + i}" for i in range(3)]
    made = [network.add(ip) for ip in ips]
    annotations = {"zen-lead.io/enabled": "true", "zen-lead.io/probe": "http"} | probe
    pods.make_service_with_pods(api, NS, name, annotations=annotations, ips=ips)
    return made


def _leader(api: Any, name: str) -> str | None:
    discovery: Any = client.DiscoveryV1Api(api)
    try:
        obj = discovery.read_namespaced_endpoint_slice(f"{name}-leader", NS)
    except client.exceptions.ApiException:
        return None
    endpoints = obj.endpoints or []
    name_: str | None = endpoints[0].target_ref.name if endpoints else None
    return name_


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(f"demo: timed out waiting for {what}")


def _run_scenario(  # noqa: PLR0917 - one call per scenario, in story order.
    api: Any,
    timeline: _Timeline,
    name: str,
    fake_pods: list[fakes.FakePod],
    title: str,
    inject: Callable[[], None],
    *,
    clients: bool,
) -> None:
    print(f"\n== {title} (Service {name}, pods {name}-0..2) ==", flush=True)
    _wait(lambda: _leader(api, name) == f"{name}-0", 30, f"{name}-0 to lead")
    _wait(lambda: _all_up(api, name), 30, "all pods probed up")
    print(f"   {name}-0 leads; all three pods pass their probes")
    ip = _core(api).read_namespaced_service(f"{name}-leader", NS).spec.cluster_ip
    with dataplane.Client(ip, 80) if clients else contextlib.nullcontext() as seen:
        if seen is not None:
            _quiet(seen, fake_pods[0].ip)
        start_mono, start = time.monotonic(), time.time()
        inject()
        leader = _wait(lambda: (lead := _leader(api, name)) != f"{name}-0" and lead, 30, "failover")
        switched = time.time()
        rows = _probe_rows(timeline, fake_pods[0].ip, start)
        rows.append(
            (switched - start, f"EndpointSlice {name}-leader points at {leader} (seen by the demo)")
        )
        if seen is not None:
            new_ip = fake_pods[int(leader.rsplit("-", 1)[1])].ip
            first = _wait(
                lambda: next((a for a in seen.attempts() if a.pod == new_ip), None), 10, "a client"
            )
    if seen is not None:  # Counted once every request in flight has ended (1 s timeout).
        rows += _client_rows(seen, first, leader, start_mono)
    rows.append((0.0, f"fault injected into {name}-0 ({fake_pods[0].ip})"))
    for offset, text in sorted(rows):
        print(f"   +{offset:6.3f}s  {text}")
    latency = _wait(
        lambda: _annotation(api, name, "zen-lead.io/last-failover-latency-seconds"), 10, "latency"
    )
    print(f"   zen-lead measured: failover latency {float(latency):.3f}s "
          "(first failed probe -> EndpointSlice write acknowledged)")  # fmt: skip


def _probe_rows(timeline: _Timeline, ip: str, start: float) -> list[tuple[float, str]]:
    rows = []
    for needle, label in (("failed", "first failed probe"), ("-> down", "judged down")):
        found = timeline.first(needle, ip, start)
        if found:
            rows.append((found[0] - start, f"{label}: {found[1].split(': ', 1)[-1]}"))
    return rows


def _quiet(seen: dataplane.Client, ip: str) -> None:
    """Wait until clients have reached the leader for 1.5 s.

    kube-proxy syncs at most once per second (minSyncPeriod): right after the Service was set
    up, the failover's sync would wait for that; a real cluster with such churn is the busy
    case measured by bench/failover_dataplane.
    """

    def settled() -> bool:
        answered = [a.at for a in seen.attempts() if a.pod == ip]
        return bool(answered) and time.monotonic() - answered[0] > 1.5  # noqa: PLR2004

    _wait(settled, 30, "clients to reach the leader")


def _client_rows(
    seen: dataplane.Client, first: dataplane.Attempt, leader: str, start: float
) -> list[tuple[float, str]]:
    """Return the client's part of the timeline (after every attempt has ended)."""
    failed = sum(1 for a in seen.attempts() if start <= a.at <= first.at and a.error)
    answered = first.at + first.seconds - start
    return [
        (answered, f"first client request answered by {leader} (through kube-proxy)"),
        (answered, f"client requests that failed meanwhile (one every 20 ms): {failed}"),
    ]


def _annotation(api: Any, name: str, key: str) -> str | None:
    svc = _core(api).read_namespaced_service(f"{name}-leader", NS)
    value: str | None = (svc.metadata.annotations or {}).get(key)
    return value


def _all_up(api: Any, name: str) -> bool:
    import json  # noqa: PLC0415

    states = json.loads(_annotation(api, name, "zen-lead.io/probe-state") or "{}")
    return len(states) == 3 and all(s == "up" for s in states.values())  # noqa: PLR2004
