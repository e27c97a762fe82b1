"""Benchmark: a hung leader (accepts TCP, never answers) detected by active HTTP probing.

Run: ``.venv/bin/python -m bench.failover_probe`` (or ``make bench``). It re-executes itself in
a private network namespace where each fake pod's HTTP server listens on the pod's own IP.

Setup: a local etcd + kube-apiserver, the controller as a separate process with default probe
settings (interval 500 ms, timeout 250 ms, fall 3, fast interval 100 ms), and `--trials`
Services with 3 pods each. Then, one Service at a time, the leader's health endpoint hangs and
the bench's independent watch records when the slice points elsewhere. Trials start once the
controller has settled (every pod recorded as probed up), so start-up bookkeeping is excluded.
Per trial it also reads the controller's own two histograms (their sum and count move by
exactly one observation):
first failed probe -> slice write acknowledged, and deciding probe verdict -> write acknowledged.

Baseline in the same run: the Kubernetes readiness path for the same hang, computed from the
kubelet defaults (period 10 s, timeout 1 s, failure threshold 3) — no faster than 21 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

from kubernetes import client, config

from bench import common, report
from probes import testing as fakes
from zenlead.testing import controlplane, netns, pods

NS = common.NS
GOALS = {"hang_p99": 2.0, "decision_p99": 0.100}
# Kubelet readiness defaults: periodSeconds 10, timeoutSeconds 1, failureThreshold 3.
K8S_READINESS_MIN = 2 * 10 + 1.0  # The hang lands just before a probe: 2 more periods + timeout.
K8S_READINESS_MAX = 3 * 10 + 1.0  # The hang lands just after a probe: 3 periods + timeout.


def setup(api: Any, network: fakes.PodNetwork, trials: int) -> list[list[fakes.FakePod]]:
    """Create `trials` Services (HTTP probe on /healthz) with 3 live fake pods each."""
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    annotations = {
        "zen-lead.io/enabled": "true",
        "zen-lead.io/probe": "http",
        "zen-lead.io/probe-path": "/healthz",
    }
    made = []
    for i in range(trials):
        ips = [f"10.244.{i // 80 + 1}.{(i % 80) * 3 + j + 10}" for j in range(3)]
        made.append([network.add(ip) for ip in ips])
        pods.make_service_with_pods(api, NS, f"svc-{i:03d}", annotations=annotations, ips=ips)
    return made


def own_sums(port: int) -> tuple[float, float, float, float]:
    """Return (sum, count) of the failover and decision latency histograms, summed over labels."""
    text = common.scrape(port)
    _, fo_sum, fo_count = common.histogram(text, "zen_lead_failover_latency_seconds")
    _, de_sum, de_count = common.histogram(text, "zen_lead_failover_decision_latency_seconds")
    return fo_sum, fo_count, de_sum, de_count


def trial(
    api: Any, watcher: common.SliceWatcher, group: list[fakes.FakePod], name: str, port: int
) -> tuple[float, float, float]:
    """Hang the leader of `name`; return (hang->switched, own failover, own decision) seconds."""
    del api
    slice_name = f"{name}-leader"
    watcher.wait_for(slice_name, lambda r, _p: r == f"{name}-0", after=0, timeout=60)
    before = own_sums(port)
    start = time.monotonic()
    group[0].http_mode = "hang"
    seen = watcher.wait_for(
        slice_name, lambda r, _p: r is not None and r != f"{name}-0", after=start, timeout=30
    )
    deadline = time.monotonic() + 10
    while (after := own_sums(port))[1] < before[1] + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return seen - start, after[0] - before[0], after[2] - before[2]


def main() -> int:
    """Run the benchmark and print (and record) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    if not netns.active():
        netns.reexec([sys.executable, "-m", "bench.failover_probe", *sys.argv[1:]])
    with controlplane.ControlPlane() as plane, fakes.PodNetwork() as network:
        api = config.new_client_from_config(str(plane.kubeconfig))
        print(f"setting up {args.trials} Services x 3 pods with HTTP probes ...", flush=True)
        groups = setup(api, network, args.trials)
        watcher = common.SliceWatcher(api)
        watcher.start()
        mport, hport = common.free_port(), common.free_port()
        proc = common.start_controller(plane.kubeconfig, mport, hport, [])
        try:
            results, cpu = run_trials(api, watcher, groups, mport, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            watcher.stopping = True
    text = render(results, cpu, args.trials)
    print(text)
    if not args.no_docs:
        report.update_section("failover_probe", text)
    return 0


def settle(api: Any, services: int, timeout: float = 120.0) -> None:
    """Wait until the controller has recorded every pod of every Service as probed up.

    Right after start-up the controller creates every leader Service and records every first
    verdict, paced by its client-side rate limit; a failover in those first seconds can wait
    behind that bookkeeping. The benchmark measures the steady state.
    """
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = core.list_namespaced_service(
            NS, label_selector="app.kubernetes.io/managed-by=zen-lead"
        ).items
        states = [(s.metadata.annotations or {}).get("zen-lead.io/probe-state", "") for s in items]
        if len(states) == services and all(st.count('"up"') == 3 for st in states):  # noqa: PLR2004
            return
        time.sleep(0.2)
    raise TimeoutError("the controller did not settle")


def run_trials(
    api: Any, watcher: common.SliceWatcher, groups: list[list[fakes.FakePod]], port: int, pid: int
) -> tuple[list[tuple[float, float, float]], float]:
    """Run one trial per Service; return the results and controller CPU seconds per trial."""
    settle(api, len(groups))
    results = []
    cpu0 = common.cpu_seconds(pid)
    for i, group in enumerate(groups):
        results.append(trial(api, watcher, group, f"svc-{i:03d}", port))
        hang, own, decision = results[-1]
        print(f"trial {i:3d}: hang->switched {hang * 1000:6.0f} ms, own {own * 1000:5.0f} ms, "
              f"decision {decision * 1000:5.0f} ms", flush=True)  # fmt: skip
    return results, (common.cpu_seconds(pid) - cpu0) / max(len(groups), 1)


def render(results: list[tuple[float, float, float]], cpu: float, trials: int) -> str:
    """Return the markdown report."""
    hang = [r[0] for r in results]
    own = [r[1] for r in results]
    decision = [r[2] for r in results]
    rows = [
        ("hang -> slice switched (independent watch)", hang),
        ("first failed probe -> write acknowledged (zen-lead's own)", own),
        ("deciding probe verdict -> write acknowledged (zen-lead's own)", decision),
    ]
    lines = [
        (
            f"Run on {platform.node()} ({os.cpu_count()} cores), "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; "
            f"`python -m bench.failover_probe --trials {trials}`; default probe settings."
        ),
        "",
        "| what | n | p50 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    for label, values in rows:
        lines.append(
            f"| {label} | {len(values)} | {common.pct(values, 0.5) * 1000:.0f} ms | "
            f"{common.pct(values, 0.99) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |"
        )
    lines += [
        "",
        (
            f"Baseline (Kubernetes readiness defaults, arithmetic): {K8S_READINESS_MIN:.0f}-"
            f"{K8S_READINESS_MAX:.0f} s before the pod is even marked unready; "
            f"ratio to our p99: {K8S_READINESS_MIN / common.pct(hang, 0.99):.0f}x or more."
        ),
        (
            f"Controller CPU per trial (probing all {trials * 3} pods meanwhile, plus the "
            f"failover): {cpu * 1000:.0f} ms."
        ),
        (
            f"Goals: hang -> switched p99 <= {GOALS['hang_p99']:.0f} s: "
            f"{'met' if common.pct(hang, 0.99) <= GOALS['hang_p99'] else 'NOT met'}; "
            f"deciding probe -> switched p99 <= {GOALS['decision_p99'] * 1000:.0f} ms: "
            f"{'met' if common.pct(decision, 0.99) <= GOALS['decision_p99'] else 'NOT met'}."
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
