"""Benchmark: failover as clients see it, through the real kube-proxy (nftables mode).

Run: ``.venv/bin/python -m bench.failover_dataplane`` (or ``make bench``). It re-executes itself
in the private network namespace, where the fake pods' servers, the control plane, kube-proxy
(minSyncPeriod 1 s, its default) and the clients all live.

Each trial is one Service with 3 pods; a client opens a new connection to the leader Service's
ClusterIP every 20 ms (1 s timeout each). The leader is then broken and the bench measures:

- *break -> client on the new pod*: until a request is answered by the new leader;
- *slice -> client*: from the leader slice pointing at the new pod (independent watch) to that
  answer, which is kube-proxy's share;
- *failed requests*: client requests that timed out or failed during the failover;
- *old leader after switch*: connections the old leader accepted (its own record) that were
  opened after the first answer from the new leader. Must be 0;
- *behind kube-proxy's rate limit*: trials where kube-proxy began the sync that carried our
  change (the last one to begin before the first answer from the new pod, read from
  kube-proxy's own log) more than 100 ms after the slice changed: it held the change back
  because it had synced less than minSyncPeriod before (its periodic sync, every syncPeriod of
  30 s, or one for another change). On a quiet cluster that is luck, about 1 s in 30; on a
  busy one it is the rule.

Scenarios: a hung leader (HTTP probe, default settings; and on a quiet cluster once more with
``zen-lead.io/probe-detector: phi``) and a deleted leader, each on a quiet cluster (trials 1.5 s
apart, so kube-proxy's last sync is over its minSyncPeriod ago) and on a busy one, where another
Service's EndpointSlice changes every 0.3 s (so kube-proxy syncs often and its minSyncPeriod
delays ours). Baseline in the same run: a hung leader with Ready-only routing and kubelet's
readiness defaults, played by the bench (probe every 10 s, timeout 1 s, 3 failures mark the pod
NotReady); its trials run side by side.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import pathlib
import platform
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Self

from kubernetes import client, config

from bench import common, report
from probes import testing as fakes
from zenlead.testing import controlplane, dataplane, netns, pods

NS = common.NS
GOALS = {"hang_p99": 1.5, "phi_p99": 1.0, "delete_p99": 0.25}
HTTP_PROBE = {"zen-lead.io/probe": "http", "zen-lead.io/probe-path": "/healthz"}
PHI_PROBE = HTTP_PROBE | {"zen-lead.io/probe-detector": "phi"}
PHI_LABEL = "hang, quiet, phi detector"
SERVICE_CIDR = "10.96.0.0/16"  # Room for every trial's Service and leader Service.
QUIET_GAP = 1.5
"""Seconds between trials: more than kube-proxy's minSyncPeriod (1 s)."""
HELD_SECONDS = 0.1
"""A sync that began this long after the change means kube-proxy held the change back."""
AFTER = 25
"""Client requests watched after the first answer from the new leader (half a second)."""


class Trial:
    """One Service, its fake pods and, once run, what its client saw."""

    def __init__(self, name: str, group: list[fakes.FakePod]) -> None:
        """Remember the Service `name` and its pods (pod 0 leads first)."""
        self.name = name
        self.group = group
        self.result: dict[str, float] = {}


def setup(
    api: Any, network: fakes.PodNetwork, name: str, index: int, *, probe: dict[str, str]
) -> Trial:
    """Create Service `name` with 3 live fake pods, probed per the `probe` annotations."""
    ips = [f"10.244.{index // 80 + 1}.{(index % 80) * 3 + j + 10}" for j in range(3)]
    group = [network.add(ip) for ip in ips]
    annotations = {"zen-lead.io/enabled": "true"} | probe
    pods.make_service_with_pods(api, NS, name, annotations=annotations, ips=ips)
    return Trial(name, group)


def run_trial(api: Any, watcher: common.SliceWatcher, trial: Trial, how: str) -> None:
    """Break the leader of `trial` (`hang`, `delete` or `kubelet`) and record what clients saw."""
    core = client.CoreV1Api(api)
    slice_name = f"{trial.name}-leader"
    watcher.wait_for(slice_name, lambda r, _p: r == f"{trial.name}-0", after=0, timeout=120)
    ip = core.read_namespaced_service(slice_name, NS).spec.cluster_ip
    old, new = trial.group[0], trial.group[1]
    with dataplane.Client(ip, 80) as clients:
        _wait(lambda: any(a.pod == old.ip for a in clients.attempts()), 30, "first answer")
        start = time.monotonic()
        if how == "delete":
            core.delete_namespaced_pod(f"{trial.name}-0", NS, grace_period_seconds=0)
        else:
            old.http_mode = "hang"
            if how == "kubelet":
                _kubelet(api, trial)
        first = _wait(
            lambda: next((a for a in clients.attempts() if a.pod == new.ip), None),
            60,
            "an answer from the new leader",
        )
        _wait(lambda: sum(1 for a in clients.attempts() if a.at > first.at) >= AFTER, 10, "more")
    answered = first.at + first.seconds
    switched = watcher.wait_for(
        slice_name, lambda r, _p: r == f"{trial.name}-1", after=start, timeout=10
    )
    attempts = clients.attempts()
    ports = {a.local_port for a in attempts if a.at > first.at and a.local_port}
    trial.result = {
        "client": answered - start,
        "slice_to_client": answered - switched,
        "switched_wall": switched + time.time() - time.monotonic(),
        "answered_wall": answered + time.time() - time.monotonic(),
        "failed": sum(1 for a in attempts if start <= a.at <= first.at and a.error),
        # Ports get reused: only connections the old pod accepted after the switch count.
        "old_after": sum(1 for at, _, port in old.accepted if at > first.at and port in ports),
    }


def _kubelet(api: Any, trial: Trial) -> None:
    """Play kubelet's readiness probe on the leader (10 s period, 1 s timeout, 3 failures)."""
    pod, ip = f"{trial.name}-0", trial.group[0].ip
    time.sleep(random.uniform(0, 10))  # noqa: S311 - the hang lands at a random probe phase.
    failures = 0
    while failures < 3:  # noqa: PLR2004 - failureThreshold
        try:
            with urllib.request.urlopen(f"http://{ip}:8080/healthz", timeout=1):
                failures = 0
        except (urllib.error.URLError, OSError):
            failures += 1
        if failures < 3:  # noqa: PLR2004
            time.sleep(10)  # The readiness period.
    pods.mark_running(api, NS, pod, ip=ip, ready=False)


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)  # Polling the client's record.
    return found


class Churn:
    """Another Service's EndpointSlice changes every 0.3 s: a busy cluster for kube-proxy."""

    def __init__(self, api: Any) -> None:
        """Create the noise Service and its slice."""
        self.discovery = client.DiscoveryV1Api(api)
        client.CoreV1Api(api).create_namespaced_service(
            NS, {"metadata": {"name": "noise"}, "spec": {"ports": [{"port": 80}]}}
        )
        self.discovery.create_namespaced_endpoint_slice(NS, self._slice(1))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.changes = 0

    @staticmethod
    def _slice(n: int) -> dict[str, Any]:
        return {
            "metadata": {"name": "noise-1", "labels": {"kubernetes.io/service-name": "noise"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.244.250.{n % 200 + 1}"]}],
            "ports": [{"port": 80, "protocol": "TCP"}],
        }

    def _run(self) -> None:
        while not self.stop.wait(0.3):
            self.changes += 1
            body = {"endpoints": self._slice(self.changes)["endpoints"]}
            self.discovery.patch_namespaced_endpoint_slice("noise-1", NS, body)

    def __enter__(self) -> Self:
        """Start changing the noise slice."""
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop changing it."""
        self.stop.set()
        self.thread.join(timeout=5)


def main() -> int:
    """Run every scenario and print (and record) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--baseline-trials", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    if not netns.active():
        netns.reexec([sys.executable, "-m", "bench.failover_dataplane", *sys.argv[1:]])
    options = controlplane.Options(service_cidr=SERVICE_CIDR)
    with (
        controlplane.ControlPlane(options) as plane,
        fakes.PodNetwork() as network,
        tempfile.TemporaryDirectory() as work,
        dataplane.KubeProxy(plane, workdir=pathlib.Path(work)) as proxy,
    ):
        api = config.new_client_from_config(str(plane.kubeconfig))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        results = measure(api, network, plane, args.trials, args.baseline_trials)
        programming = proxy.metrics()
        mark_rate_limited(results, sync_starts(proxy.log_path.read_text()))
    text = render(results, args, programming)
    print(text)
    if not args.no_docs:
        report.update_section("failover_dataplane", text)
    return 0


def measure(
    api: Any, network: fakes.PodNetwork, plane: Any, trials: int, baseline: int
) -> dict[str, list[dict[str, float]]]:
    """Run the scenarios with one controller process; return each scenario's trial results."""
    scenarios = [
        ("hang, quiet", "hang", HTTP_PROBE, False, trials),
        (PHI_LABEL, "hang", PHI_PROBE, False, trials),
        ("hang, busy", "hang", HTTP_PROBE, True, trials),
        ("delete, quiet", "delete", {}, False, trials),
        ("delete, busy", "delete", {}, True, trials),
        ("baseline: Ready-only, kubelet readiness defaults", "kubelet", {}, False, baseline),
    ]
    planned = []
    index = 0
    print("setting up Services ...", flush=True)
    for label, how, probe, busy, n in scenarios:
        made = [setup(api, network, f"s{index + i:03d}", index + i, probe=probe) for i in range(n)]
        index += n
        planned.append((label, how, busy, made))
    watcher = common.SliceWatcher(api)
    watcher.start()
    mport, hport = common.free_port(), common.free_port()
    proc = common.start_controller(plane.kubeconfig, mport, hport, [])
    results: dict[str, list[dict[str, float]]] = {}
    try:
        _settle(api, index)
        for label, how, busy, made in planned:
            with Churn(api) if busy else contextlib.nullcontext():
                results[label] = _scenario(api, watcher, made, how, label)
            if busy:
                client.DiscoveryV1Api(api).delete_namespaced_endpoint_slice("noise-1", NS)
                client.CoreV1Api(api).delete_namespaced_service("noise", NS)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        watcher.stopping = True
    return results


def _scenario(
    api: Any, watcher: common.SliceWatcher, made: list[Trial], how: str, label: str
) -> list[dict[str, float]]:
    if how == "kubelet":  # Each trial waits tens of seconds: run them side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(made)) as pool:
            list(pool.map(lambda t: run_trial(api, watcher, t, how), made))
    else:
        for trial in made:
            # Quiet means quiet: the last trial's sync is over a minSyncPeriod ago, so only the
            # busy scenario measures kube-proxy's rate limit.
            time.sleep(QUIET_GAP)
            run_trial(api, watcher, trial, how)
            print(f"{label}: {trial.name} client on new pod after "
                  f"{trial.result['client'] * 1000:6.0f} ms", flush=True)  # fmt: skip
    return [t.result for t in made]


def _settle(api: Any, services: int) -> None:
    """Wait until every Service is routed and every probed pod recorded up (steady state)."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        items = core.list_namespaced_service(
            NS, label_selector="app.kubernetes.io/managed-by=zen-lead"
        ).items
        states = [(s.metadata.annotations or {}).get("zen-lead.io/probe-state") for s in items]
        if len(items) == services and all(st is None or st.count('"up"') == 3 for st in states):  # noqa: PLR2004
            return
        time.sleep(0.2)  # Polling another process's state.
    raise TimeoutError("the controller did not settle")


_SYNC = re.compile(
    r'^I(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2}\.\d+)\s.*"SyncProxyRules complete".*'
    r'elapsed="([\d.]+)(µs|ms|s)"',
    re.MULTILINE,
)


def sync_starts(log: str) -> list[float]:
    """Return the wall-clock start of each kube-proxy sync, from its ``--v=2`` log."""
    year = time.localtime().tm_year
    starts = []
    for m in _SYNC.finditer(log):
        month, day, hour, minute, sec, elapsed, unit = m.groups()
        whole = time.mktime((year, int(month), int(day), int(hour), int(minute), 0, 0, 0, -1))
        scale = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
        starts.append(whole + float(sec) - float(elapsed) * scale)
    return sorted(starts)


def mark_rate_limited(results: dict[str, list[dict[str, float]]], starts: list[float]) -> None:
    """Mark each trial whose change kube-proxy did not begin to sync at once.

    The sync that carried the change is the last one that began before a client was first
    answered by the new pod (the answer needs the rules that sync wrote). An idle kube-proxy
    begins it within milliseconds of the change; one that began later held the change back.
    """
    for rows in results.values():
        for row in rows:
            before = [s for s in starts if s <= row["answered_wall"]]
            waited = before[-1] - row["switched_wall"] if before else 0.0
            row["rate_limited"] = float(waited > HELD_SECONDS)


def render(
    results: dict[str, list[dict[str, float]]], args: argparse.Namespace, programming: str
) -> str:
    """Return the markdown report."""
    lines = [
        (
            f"Run on {platform.node()} ({os.cpu_count()} cores), Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; `python -m "
            f"bench.failover_dataplane --trials {args.trials} --baseline-trials "
            f"{args.baseline_trials}`; kube-proxy v1.36 nftables, minSyncPeriod 1 s; default "
            "probe settings; a client connection every 20 ms."
        ),
        "",
        (
            "| scenario | n | break -> client on new pod p50 | p99 | max | slice -> client p50 "
            "| p99 | failed requests per failover (mean / max) | old leader reached after switch "
            "| behind kube-proxy's rate limit |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        client_s = [r["client"] for r in rows]
        kube = [r["slice_to_client"] for r in rows]
        failed = [r["failed"] for r in rows]
        lines.append(
            f"| {label} | {len(rows)} | {_ms(common.pct(client_s, 0.5))} | "
            f"{_ms(common.pct(client_s, 0.99))} | {_ms(max(client_s))} | "
            f"{_ms(common.pct(kube, 0.5))} | {_ms(common.pct(kube, 0.99))} | "
            f"{statistics.mean(failed):.1f} / {max(failed):.0f} | "
            f"{sum(r['old_after'] for r in rows):.0f} | "
            f"{sum(r.get('rate_limited', 0) for r in rows):.0f} |"
        )
    return "\n".join([*lines, "", *_summary(results, programming)])


def _summary(results: dict[str, list[dict[str, float]]], programming: str) -> list[str]:
    """Return the baseline ratio, kube-proxy's own latency and the goals, one line each."""
    hang = [r["client"] for r in results["hang, quiet"]]
    phi = [r["client"] for r in results[PHI_LABEL]]
    delete = [r["client"] for r in results["delete, quiet"]]
    base = [r["client"] for r in results["baseline: Ready-only, kubelet readiness defaults"]]
    _, psum, pcount = common.histogram(
        programming, "kubeproxy_network_programming_duration_seconds"
    )
    reached = sum(r["old_after"] for rows in results.values() for r in rows)
    hang_ok = common.pct(hang, 0.99) <= GOALS["hang_p99"]
    phi_ok = common.pct(phi, 0.99) <= GOALS["phi_p99"]
    delete_ok = common.pct(delete, 0.99) <= GOALS["delete_p99"]
    ratio = common.pct(base, 0.5) / common.pct(hang, 0.5)
    mean_ms = psum / max(pcount, 1) * 1000
    return [
        f"Ratio of the Ready-only baseline's p50 to ours (hang, quiet): {ratio:.0f}x.",
        *_rate_limit_lines(results),
        (
            "kube-proxy's own network programming latency (from zen-lead's trigger time): "
            f"{pcount:.0f} observations, mean {mean_ms:.0f} ms."
        ),
        (
            f"Goals (quiet): hang p99 <= {GOALS['hang_p99']} s: {_met(hang_ok)}; hang with the "
            f"phi detector p99 <= {GOALS['phi_p99']} s: {_met(phi_ok)}; delete p99 <= "
            f"{GOALS['delete_p99'] * 1000:.0f} ms: {_met(delete_ok)}; old leader reached "
            f"after switch: {reached:.0f} ({_met(reached == 0)})."
        ),
    ]


def _rate_limit_lines(results: dict[str, list[dict[str, float]]]) -> list[str]:
    """Split the quiet scenarios' client times by whether kube-proxy's rate limit held them."""
    lines = []
    for label in ("hang, quiet", PHI_LABEL, "delete, quiet"):
        held = [r["client"] for r in results[label] if r.get("rate_limited")]
        free = [r["client"] for r in results[label] if not r.get("rate_limited")]
        if held and free:
            lines.append(
                f"{label}: {len(held)} of {len(held) + len(free)} trials behind kube-proxy's "
                f"rate limit ({', '.join(_ms(c) for c in sorted(held))}); the other "
                f"{len(free)}: p99 {_ms(common.pct(free, 0.99))}."
            )
    return lines


def _met(ok: bool) -> str:  # noqa: FBT001 - a formatting helper.
    return "met" if ok else "NOT met"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
