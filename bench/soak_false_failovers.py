"""Benchmark: false failovers while healthy pods are noisy, for the fixed and the phi detector.

Run: ``.venv/bin/python -m bench.soak_false_failovers`` (20 minutes by default; not part of
``make bench`` or CI). It re-executes itself in the private network namespace, where the fake
pods, the control plane and the controller (a separate process, default settings) live.

Setup: `--services` Services probe HTTP ``/healthz`` with the fixed detector and as many with
``zen-lead.io/probe-detector: phi``; each has 3 pods that never fail but are noisy:

- latency: half of each detector's Services have a *long-tail* profile (lognormal, median 10 ms,
  p99 150 ms), half a *tight* one (median 2 ms, p99 10 ms: the pods phi can judge sooner);
- pauses: every pod freezes all its answers for 200 ms at random times, on average every 5 s
  (a pod's next pause starts an exponential time, mean 5 s, after its last one ended: pauses
  never run into each other; about 60 pauses a second over 300 pods);
- resets: 0.2 % of requests are answered by a connection reset.

Nothing is ever broken, so every leader change is a false failover. An independent watch
records every version of every leader slice; the report counts leader changes per detector and
cross-checks them with the controller's own ``zen_lead_failover_count``. It also shows how much
noise the probes met (timeouts, resets), the phi detector's suspicions, every probe-down verdict
the controller logged (each is a near miss, or the cause of a false failover) and the
controller's CPU. ``--overlap`` lets a pod's pauses run into each other (a pause that starts
during another extends it, so freezes reach 400 ms and more): the case the phi detector's
acceptable pause is about.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import os
import platform
import random
import re
import sys
import tempfile
import threading
import time
from typing import Any

from kubernetes import client, config

from bench import common, report
from probes import testing as fakes
from zenlead.testing import controlplane, netns, pods

NS = common.NS
HTTP_PROBE = {"zen-lead.io/probe": "http", "zen-lead.io/probe-path": "/healthz"}
DETECTORS = {"fixed": HTTP_PROBE, "phi": HTTP_PROBE | {"zen-lead.io/probe-detector": "phi"}}
PROFILES = {
    "long tail": fakes.Noise(median_seconds=0.010, p99_seconds=0.150, reset_rate=0.002),
    "tight": fakes.Noise(median_seconds=0.002, p99_seconds=0.010, reset_rate=0.002),
}
PAUSE_SECONDS = 0.2
PAUSE_EVERY_SECONDS = 5.0
"""Mean gap between two pauses of one pod."""


@dataclasses.dataclass
class Soak:
    """The Services of the soak: name -> (detector, noise profile), and their pods."""

    services: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    pods: list[fakes.FakePod] = dataclasses.field(default_factory=list)
    pauses: int = 0
    overlap: bool = False


def setup(api: Any, network: fakes.PodNetwork, per_detector: int) -> Soak:
    """Create the Services and their noisy pods."""
    soak = Soak()
    index = 0
    for detector, probe in DETECTORS.items():
        for i in range(per_detector):
            profile = list(PROFILES)[i % len(PROFILES)]
            name = f"{detector}-{i:03d}"
            ips = [f"10.244.{index // 80 + 1}.{(index % 80) * 3 + j + 10}" for j in range(3)]
            for j, ip in enumerate(ips):
                pod = network.add(ip)
                pod.noise = dataclasses.replace(PROFILES[profile], seed=index * 3 + j)
                soak.pods.append(pod)
            pods.make_service_with_pods(
                api, NS, name, annotations={"zen-lead.io/enabled": "true"} | probe, ips=ips
            )
            soak.services[name] = (detector, profile)
            index += 1
    return soak


def pauser(soak: Soak, stop: threading.Event) -> None:
    """Pause random pods for PAUSE_SECONDS, each on average every PAUSE_EVERY_SECONDS."""
    rng = random.Random(1)  # noqa: S311 - noise, not secrets
    now = time.monotonic()
    queue = [(now + rng.expovariate(1 / PAUSE_EVERY_SECONDS), i) for i in range(len(soak.pods))]
    heapq.heapify(queue)
    while not stop.is_set():
        at, i = heapq.heappop(queue)
        if stop.wait(max(0.0, at - time.monotonic())):
            return
        soak.pods[i].pause(PAUSE_SECONDS)
        soak.pauses += 1
        gap = rng.expovariate(1 / PAUSE_EVERY_SECONDS)
        heapq.heappush(queue, (at + gap + (0.0 if soak.overlap else PAUSE_SECONDS), i))


def leader_changes(watcher: common.SliceWatcher, service: str, after: float) -> int:
    """Return how often the leader slice of `service` pointed somewhere new after `after`."""
    with watcher.lock:
        seen = list(watcher.seen.get(f"{service}-leader", []))
    before = [ref for at, ref, _ in seen if at < after]
    last = before[-1] if before else None
    changes = 0
    for at, ref, _ in seen:
        if at >= after and ref != last:
            changes += 1
            last = ref
    return changes


def main() -> int:
    """Run the soak and print (and record) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--services", type=int, default=50, help="Services per detector")
    parser.add_argument("--overlap", action="store_true", help="let pauses run into each other")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    if not netns.active():
        netns.reexec([sys.executable, "-m", "bench.soak_false_failovers", *sys.argv[1:]])
    with controlplane.ControlPlane() as plane, fakes.PodNetwork() as network:
        api = config.new_client_from_config(str(plane.kubeconfig))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        print("setting up Services ...", flush=True)
        soak = setup(api, network, args.services)
        soak.overlap = args.overlap
        results = run(api, plane, soak, args.minutes)
    text = render(soak, results, args)
    print(text)
    if not args.no_docs and not args.overlap:
        report.update_section("soak_false_failovers", text)
    return 0


def run(api: Any, plane: Any, soak: Soak, minutes: float) -> dict[str, Any]:
    """Run the controller under noise for `minutes`; return what was counted."""
    watcher = common.SliceWatcher(api)
    watcher.start()
    mport, hport = common.free_port(), common.free_port()
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read back after the run
    proc = common.start_controller(plane.kubeconfig, mport, hport, ["--log-level", "info"], log=log)
    stop = threading.Event()
    noise = threading.Thread(target=pauser, args=(soak, stop), daemon=True)
    try:
        _settle(api, len(soak.services))
        noise.start()
        start, cpu0 = time.monotonic(), common.cpu_seconds(proc.pid)
        end = start + minutes * 60
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(60.0, left))  # Progress once a minute; nothing to wait for.
            changed = sum(leader_changes(watcher, s, start) for s in soak.services)
            print(f"{(time.monotonic() - start) / 60:5.1f} min: {changed} leader changes, "
                  f"{soak.pauses} pauses", flush=True)  # fmt: skip
        stop.set()
        elapsed, cpu = time.monotonic() - start, common.cpu_seconds(proc.pid) - cpu0
        metrics = common.scrape(mport)
        changes = {s: leader_changes(watcher, s, start) for s in soak.services}
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=30)
        watcher.stopping = True
    log.seek(0)
    downs = [m.groups() for m in _DOWN.finditer(log.read())]
    return {"elapsed": elapsed, "cpu": cpu, "metrics": metrics, "changes": changes, "downs": downs}


_DOWN = re.compile(r"probe http bench/([a-z]+)-(\d+)/\S+: \w+ -> down \((.*)\)")
"""A probe-down verdict in the controller's log: detector, Service number, detail."""


def _settle(api: Any, services: int) -> None:
    """Wait until every leader slice is written and every probed pod is up."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        items = core.list_namespaced_service(
            NS, label_selector="app.kubernetes.io/managed-by=zen-lead"
        ).items
        states = [(s.metadata.annotations or {}).get("zen-lead.io/probe-state", "") for s in items]
        if len(items) == services and all(st.count('"up"') == 3 for st in states):  # noqa: PLR2004
            return
        time.sleep(0.5)  # Polling another process's state.
    raise TimeoutError("the controller did not settle")


def render(soak: Soak, results: dict[str, Any], args: argparse.Namespace) -> str:
    """Return the markdown report."""
    hours = results["elapsed"] / 3600
    metrics = results["metrics"]
    lines = [
        (
            f"Run on {platform.node()} ({os.cpu_count()} cores), Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; `python -m "
            f"bench.soak_false_failovers --minutes {args.minutes:g} --services "
            f"{args.services}{' --overlap' if args.overlap else ''}`; "
            f"{results['elapsed'] / 60:.1f} minutes of noise; default probe "
            "settings (HTTP, interval 500 ms, timeout 250 ms, fall 3)."
        ),
        "",
        (
            "| detector | noise profile | Services | leader changes seen (false failovers) "
            "| per hour | zen_lead_failover_count |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for detector in DETECTORS:
        for profile in PROFILES:
            names = [n for n, (d, p) in soak.services.items() if (d, p) == (detector, profile)]
            changes = sum(results["changes"][n] for n in names)
            counted = sum(_sample(metrics, "zen_lead_failover_count_total", n) for n in names)
            lines.append(
                f"| {detector} | {profile} | {len(names)} | {changes} | {changes / hours:.1f} "
                f"| {counted:.0f} |"
            )
    return "\n".join([*lines, "", *_noise_lines(soak, results, hours)])


def _noise_lines(soak: Soak, results: dict[str, Any], hours: float) -> list[str]:
    """Return how much noise the probes met, phi's suspicions, the CPU and the goal."""
    metrics = results["metrics"]
    probes = {r: _sample(metrics, "zen_lead_probes_total", r) for r in ("success", "timeout")}
    probes["network"] = _sample(metrics, "zen_lead_probes_total", "network")
    suspicions = {
        o: _sample(metrics, "zen_lead_probe_suspicions_total", o) for o in ("cleared", "confirmed")
    }
    false = sum(results["changes"].values())
    downs = results["downs"]
    by_detector = {d: sum(1 for found, *_ in downs if found == d) for d in DETECTORS}
    return [
        (
            f"Probe-down verdicts on these healthy pods: fixed {by_detector['fixed']}, phi "
            f"{by_detector['phi']}"
            + "".join(f"; {d}-{n}: {detail}" for d, n, detail in downs[:10])
            + "."
        ),
        (
            f"Noise met by the probes: {probes['success']:.0f} passed, {probes['timeout']:.0f} "
            f"timed out, {probes['network']:.0f} network errors (resets); {soak.pauses} pauses "
            f"of {PAUSE_SECONDS * 1000:.0f} ms and {sum(p.resets for p in soak.pods)} resets "
            "injected."
        ),
        (
            f"Phi detector suspicions: {suspicions['cleared']:.0f} cleared (the pod answered), "
            f"{suspicions['confirmed']:.0f} confirmed."
        ),
        (
            f"Controller CPU: {results['cpu']:.0f} s over {results['elapsed']:.0f} s "
            f"({results['cpu'] / results['elapsed'] * 100:.0f} % of a core)."
        ),
        (
            f"Goal: 0 false failovers for both detectors: {'met' if false == 0 else 'NOT met'} "
            f"({false / hours:.1f} per hour overall)."
        ),
    ]


def _sample(text: str, name: str, label: str) -> float:
    """Sum the samples of `name` whose labels contain the value `label`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'="{label}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


if __name__ == "__main__":
    raise SystemExit(main())
