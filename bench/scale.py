"""Benchmark: one controller replica with thousands of Services and probed pods.

Run: ``.venv/bin/python -m bench.scale`` (``--sizes 1000,3000``; minutes per size, not in CI).
It re-executes itself in the private network namespace. Each size gets a fresh control plane
(Service range 10.96.0.0/16, room for 30,000 opted-in Services), `--sizes` Services with 3
pods each and HTTP probes at default settings. The pods are `zenlead.testing.farm` processes
(real HTTP servers on the pod IPs, their CPU reported apart); the controller is its own process.

Phases, in order, each reported:

1. **Converge**: controller start -> every leader slice written with an endpoint (independent
   watch), then -> every pod probed up, then -> the last write (leader Service metadata and
   Events follow routing at the client rate) and 5 s without one.
2. **Steady state** (`--steady` seconds, default 300) with a /metrics scrape every 15 s, as
   Prometheus would: probes/s, probe timeouts and network errors (all pods are healthy: each one
   is the controller's own doing), API writes per minute, 409 Conflicts, controller CPU and RSS,
   scrape size and duration.
3. **Relist**: kube-apiserver restarted; probe timeouts over the 60 s after it is back.
4. **Hangs**: 20 leaders hang, one at a time -> slice switched (independent watch).
5. **Deletions**: 100 leaders deleted, one at a time -> slice switched; baseline in the same
   run: a patch of another slice -> seen by the same watch.
6. **Restart**: the controller restarted with every object in place: time to ready, and the
   API writes it made in its first 10 s (should be 0).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import pathlib
import platform
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Self

from kubernetes import client, config

from bench import common, report
from zenlead.testing import controlplane, farm, netns, pods

NS = common.NS
SERVICE_CIDR = "10.96.0.0/16"
HTTP_PROBE = {"zen-lead.io/probe": "http", "zen-lead.io/probe-path": "/healthz"}
SCRAPE_EVERY = 15.0
WRITES = ("create_", "patch_", "replace_", "update_", "delete_")


def pod_ips(services: int) -> list[list[str]]:
    """Return 3 pod IPs per Service, unique, inside 10.244.0.0/16."""
    return [
        [f"10.244.{(i * 3 + j) // 250 + 1}.{(i * 3 + j) % 250 + 1}" for j in range(3)]
        for i in range(services)
    ]


def create(api: Any, ips: list[list[str]]) -> None:
    """Create Service ``s<i>`` with 3 running pods for each IP triple, 8 requests at a time."""

    def make(i: int) -> None:
        annotations = {"zen-lead.io/enabled": "true"} | HTTP_PROBE
        pods.make_service_with_pods(api, NS, f"s{i:05d}", annotations=annotations, ips=ips[i])

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(make, range(len(ips))))


class Controller:
    """The controller process and its metrics."""

    def __init__(
        self,
        kubeconfig: pathlib.Path,
        services: int,
        log: pathlib.Path | None = None,
        qps: float = 50.0,
    ) -> None:
        """Start `zen-lead run` on fresh ports; its log (at info) goes to `log` if given.

        All `services` live in one namespace, so the per-namespace cap (default 1,000) is
        raised to hold them.
        """
        self.metrics_port, self.health_port = common.free_port(), common.free_port()
        self._log = log.open("ab") if log is not None else None
        extra = ["--log-level", "info"] if log is not None else []
        extra += ["--qps", f"{qps:g}", "--burst", f"{max(100, int(qps * 2))}"]
        extra += ["--max-cache-size-per-namespace", str(max(1000, services))]
        self.proc = common.start_controller(
            kubeconfig, self.metrics_port, self.health_port, extra, log=self._log
        )
        self.started = time.monotonic()

    def scrape(self) -> str:
        """Return /metrics."""
        return common.scrape(self.metrics_port)

    def ready(self) -> bool:
        """Tell whether /readyz answers 200."""
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)  # noqa: PLR2004
        except (urllib.error.URLError, OSError):
            return False

    def pids(self) -> list[int]:
        """Return the controller's pid, then its prober process's (if it runs one)."""
        return common.descendants(self.proc.pid)

    def rss_mib(self) -> list[float]:
        """Return the resident set size in MiB of each process (controller, prober)."""
        return [common.rss_mib(pid) for pid in self.pids()]

    def cpu(self) -> list[float]:
        """Return the CPU seconds of each process (controller, prober)."""
        return [common.own_cpu_seconds(pid) for pid in self.pids()]

    def stop(self) -> None:
        """Stop the process."""
        self.proc.terminate()
        self.proc.wait(timeout=60)
        if self._log is not None:
            self._log.close()


def writes_by_operation(text: str) -> dict[str, float]:
    """Return the controller's API writes so far, by operation (``patch_services``...)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("zen_lead_api_call_duration_seconds_count{"):
            operation = line.split('operation="')[1].split('"')[0]
            if operation.startswith(WRITES):
                out[operation] = out.get(operation, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def quiescent(ctl: Controller, *, quiet: float = 5.0, timeout: float = 600.0) -> float:
    """Wait until the controller has made no API write for `quiet` seconds; return the wait.

    Routing comes first (traffic writes never wait for the rate limiter); the leader Services'
    metadata and the Events follow at the client rate. Steady state starts after them.
    """
    start = time.monotonic()
    last, since = -1.0, time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() - start > timeout:
            raise TimeoutError("the controller kept writing")
        writes = counters(ctl.scrape())["writes"]
        if writes != last:
            last, since = writes, time.monotonic()
        time.sleep(0.5)  # Polling another process's counters.
    return since - start


def counters(text: str) -> dict[str, float]:
    """Return the counters the report needs from one /metrics text."""
    out = {
        "timeout": 0.0,
        "network": 0.0,
        "success": 0.0,
        "writes": 0.0,
        "conflicts": 0.0,
        "failovers": 0.0,
    }
    for line in text.splitlines():
        if line.startswith("zen_lead_failover_count_total{"):
            out["failovers"] += float(line.rsplit(" ", 1)[1])
        if line.startswith("zen_lead_probes_total{"):
            for result in ("timeout", "network", "success"):
                if f'result="{result}"' in line:
                    out[result] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("zen_lead_api_call_duration_seconds_count{"):
            value = float(line.rsplit(" ", 1)[1])
            operation = line.split('operation="')[1].split('"')[0]
            if operation.startswith(WRITES):
                out["writes"] += value
            if 'result="conflict"' in line:
                out["conflicts"] += value
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Return after - before, key by key."""
    return {k: after[k] - before[k] for k in after}


class Scraper:
    """Scrapes /metrics every 15 s in a thread, recording each scrape's size and duration."""

    def __init__(self, controller: Controller) -> None:
        """Scrape `controller` once started."""
        self.controller = controller
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(SCRAPE_EVERY):
            start = time.monotonic()
            text = self.controller.scrape()
            self.samples.append((time.monotonic() - start, len(text)))

    def __enter__(self) -> Self:
        """Start scraping."""
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop scraping."""
        self.stop.set()
        self.thread.join(timeout=30)


def wait(check: Any, timeout: float, what: str, step: float = 0.5) -> float:
    """Poll `check()` until true; return the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(step)  # Polling other processes' state.
    return time.monotonic() - start


def routed(watcher: common.SliceWatcher, services: int) -> bool:
    """Tell whether every leader slice has shown an endpoint."""
    with watcher.lock:
        return sum(1 for seen in watcher.seen.values() if seen[-1][1]) >= services


def all_up(api: Any, services: int) -> bool:
    """Tell whether every probed pod of every Service is up."""
    items = (
        client.CoreV1Api(api)
        .list_namespaced_service(NS, label_selector="app.kubernetes.io/managed-by=zen-lead")
        .items
    )
    states = [(s.metadata.annotations or {}).get("zen-lead.io/probe-state", "") for s in items]
    return len(items) == services and all(st.count('"up"') == 3 for st in states)  # noqa: PLR2004


def switch_times(
    watcher: common.SliceWatcher, names: list[str], act: Any, *, gap: float = 1.0
) -> list[float]:
    """For each Service, run `act(i, name)` and return the seconds until its slice moved."""
    seconds = []
    for i, name in enumerate(names):
        start = time.monotonic()
        act(i, name)
        at = watcher.wait_for(
            f"{name}-leader", lambda r, _p, n=name: r not in {None, f"{n}-0"}, after=start
        )
        seconds.append(at - start)
        time.sleep(gap)  # Trials apart, so each is measured on its own.
    return seconds


def patch_baseline(api: Any, watcher: common.SliceWatcher, trials: int) -> list[float]:
    """Return patch -> seen-by-the-watch times of a slice of ours (no controller involved)."""
    discovery = client.DiscoveryV1Api(api)
    body = {
        "metadata": {"name": "baseline-1", "labels": {"kubernetes.io/service-name": "baseline"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.250.1"]}],
        "ports": [{"port": 80, "protocol": "TCP"}],
    }
    discovery.create_namespaced_endpoint_slice(NS, body)
    seconds = []
    for n in range(trials):
        address = f"10.244.250.{n % 200 + 2}"
        start = time.monotonic()
        discovery.patch_namespaced_endpoint_slice(
            "baseline-1", NS, {"endpoints": [{"addresses": [address]}]}
        )
        at = watcher.wait_for("baseline-1", lambda _r, _p: True, after=start)
        seconds.append(at - start)
        time.sleep(0.2)  # Apart, like the deletions.
    return seconds


def run_size(services: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run every phase for `services` Services; return the figures."""
    ips = pod_ips(services)
    flat = [ip for triple in ips for ip in triple]
    half = len(flat) // 2
    result: dict[str, Any] = {"services": services}
    options = controlplane.Options(service_cidr=SERVICE_CIDR)
    with (
        controlplane.ControlPlane(options) as plane,
        farm.Farm(flat[:half]) as farm_a,
        farm.Farm(flat[half:]) as farm_b,
    ):
        api = config.new_client_from_config(str(plane.kubeconfig))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        print(f"[{services}] creating {services} Services and {len(flat)} pods ...", flush=True)
        create(api, ips)
        watcher = common.SliceWatcher(api)
        watcher.start()
        farm_cpu = common.cpu_seconds(farm_a.pid) + common.cpu_seconds(farm_b.pid)
        ctl = Controller(plane.kubeconfig, services, args.log, args.qps)
        try:
            result["converge"] = wait(lambda: routed(watcher, services), 900, "every slice")
            result["all_up"] = wait(lambda: all_up(api, services), 900, "every pod up", step=2)
            result["quiescent"] = quiescent(ctl)
            print(f"[{services}] converged in {result['converge']:.0f} s", flush=True)
            result |= _steady(ctl, args.steady)
            result["farm_cores"] = (
                common.cpu_seconds(farm_a.pid) + common.cpu_seconds(farm_b.pid) - farm_cpu
            ) / max(result["steady_seconds"], 1.0)
            result |= _relist(plane, ctl)
            farms = (farm_a, farm_b)
            hung = [f"s{i:05d}" for i in range(args.hangs)]

            def hang(i: int, _name: str) -> None:
                ip = ips[i][0]
                farms[0 if flat.index(ip) < half else 1].hang(ip)

            result["hang"] = switch_times(watcher, hung, hang)
            core = client.CoreV1Api(api)
            deleted = [f"s{i:05d}" for i in range(args.hangs, args.hangs + args.deletions)]
            result["delete"] = switch_times(
                watcher,
                deleted,
                lambda _i, name: core.delete_namespaced_pod(
                    f"{name}-0", NS, grace_period_seconds=0
                ),
                gap=0.2,
            )
            result["baseline"] = patch_baseline(api, watcher, args.deletions)
        finally:
            ctl.stop()
        result |= _restart(plane, services, args.log, args.qps)
        watcher.stopping = True
    return result


def _steady(ctl: Controller, seconds: float) -> dict[str, Any]:
    """Measure `seconds` of steady state with scrapes every 15 s."""
    text = ctl.scrape()
    before, cpu0, ops0 = counters(text), ctl.cpu(), writes_by_operation(text)
    converged_conflicts = before["conflicts"]
    start = time.monotonic()
    with Scraper(ctl) as scraper:
        time.sleep(seconds)  # The steady state is the measurement.
    elapsed = time.monotonic() - start
    text = ctl.scrape()
    changed = delta(before, counters(text))
    ops = {k: v - ops0.get(k, 0.0) for k, v in writes_by_operation(text).items()}
    durations = [d for d, _ in scraper.samples] or [float("nan")]
    cpu1 = ctl.cpu()
    if len(cpu1) != len(cpu0):
        raise RuntimeError(f"controller processes changed during the steady state: {ctl.pids()}")
    return {
        "steady_seconds": elapsed,
        "steady": changed,
        "converge_conflicts": converged_conflicts,
        "steady_writes": {k: v for k, v in ops.items() if v},
        "cores": [(b - a) / elapsed for a, b in zip(cpu0, cpu1, strict=True)],
        "rss": ctl.rss_mib(),
        "scrape_max": max(durations),
        "scrape_bytes": max((b for _, b in scraper.samples), default=0),
    }


def _relist(plane: controlplane.ControlPlane, ctl: Controller) -> dict[str, Any]:
    """Restart kube-apiserver; count probe failures over the 60 s after it is back."""
    before = counters(ctl.scrape())
    plane.stop_apiserver()
    plane.start_apiserver()
    back = time.monotonic()
    time.sleep(60)  # The window the issue measures.
    changed = delta(before, counters(ctl.scrape()))
    return {"relist": changed, "relist_seconds": time.monotonic() - back}


def _restart(
    plane: controlplane.ControlPlane, services: int, log: pathlib.Path | None, qps: float
) -> dict[str, Any]:
    """Start a second controller with everything in place: time to ready, writes in 10 s."""
    ctl = Controller(plane.kubeconfig, services, log, qps)
    try:
        ready = wait(ctl.ready, 120, "readyz", step=0.1)
        remaining = ctl.started + 10 - time.monotonic()
        time.sleep(max(0.0, remaining))  # The window: the first 10 s of the process.
        text = ctl.scrape()
    finally:
        ctl.stop()
    made = {k: v for k, v in writes_by_operation(text).items() if v}
    return {
        "restart_ready": ready,
        "restart_writes": counters(text)["writes"],
        "restart_writes_by_op": made,
    }


def main() -> int:
    """Run each size and print (and record) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000", help="comma-separated Service counts")
    parser.add_argument("--steady", type=float, default=300.0, help="steady-state seconds")
    parser.add_argument("--hangs", type=int, default=20)
    parser.add_argument("--deletions", type=int, default=100)
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--qps", type=float, default=50.0, help="the controller's --qps")
    parser.add_argument(
        "--log", type=pathlib.Path, help="append the controllers' logs (at info) to this file"
    )
    args = parser.parse_args()
    if not netns.active():
        netns.reexec([sys.executable, "-m", "bench.scale", *sys.argv[1:]])
    results = []
    for n in args.sizes.split(","):
        results.append(run_size(int(n), args))
        print(json.dumps(results[-1]), flush=True)  # Kept if a later size fails.
    text = render(results, args)
    print(text)
    if not args.no_docs:
        report.update_section("scale", text)
    return 0


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Return the markdown report: one column per size."""
    rows: list[tuple[str, Any]] = [
        ("controller start -> every leader slice written", lambda r: f"{r['converge']:.0f} s"),
        ("... -> every pod probed up", lambda r: f"{r['all_up']:.0f} s"),
        ("... -> last write (Events, metadata) + 5 s quiet", lambda r: f"{r['quiescent']:.0f} s"),
        ("steady state: probes/s", lambda r: _rate(r, "success")),
        ("steady state: probe timeouts (healthy pods)", lambda r: _count(r, "steady", "timeout")),
        ("steady state: probe network errors", lambda r: _count(r, "steady", "network")),
        ("steady state: API writes per minute", _steady_writes),
        ("409 Conflicts until converged", lambda r: f"{r['converge_conflicts']:.0f}"),
        ("steady state: 409 Conflicts", lambda r: _count(r, "steady", "conflicts")),
        (
            "steady state: failovers (all pods healthy: false)",
            lambda r: _count(r, "steady", "failovers"),
        ),
        ("controller CPU, cores (main + prober process)", lambda r: _split(r["cores"], "{:.2f}")),
        ("controller RSS, MiB (main + prober process)", lambda r: _split(r["rss"], "{:.0f}")),
        ("fake pods' CPU (cores, 2 processes)", lambda r: f"{r['farm_cores']:.2f}"),
        ("/metrics scrape: largest, slowest", _scrape),
        (
            "60 s after a kube-apiserver restart: probe timeouts",
            lambda r: _count(r, "relist", "timeout"),
        ),
        (
            "60 s after a kube-apiserver restart: failovers (false)",
            lambda r: _count(r, "relist", "failovers"),
        ),
        ("hang -> slice switched p50 / p99", lambda r: _pcts(r["hang"])),
        ("deletion -> slice switched p50 / p99", lambda r: _pcts(r["delete"])),
        ("baseline: slice patch -> seen by the watch p50 / p99", lambda r: _pcts(r["baseline"])),
        ("restart in place: ready after", lambda r: f"{r['restart_ready']:.1f} s"),
        ("restart in place: writes in its first 10 s", _restart_writes),
    ]
    sizes = " | ".join(f"{r['services']:,} Services" for r in results)
    lines = [
        (
            f"Run on {platform.node()} ({os.cpu_count()} cores), Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; `python -m bench.scale "
            f"--sizes {args.sizes} --steady {args.steady:g} --qps {args.qps:g}`; 3 pods per "
            "Service, HTTP probes "
            "at default settings, one controller replica."
        ),
        "",
        f"| measure | {sizes} |",
        "|---|" + "---|" * len(results),
    ]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |" for label, cell in rows]
    return "\n".join(lines)


def _restart_writes(r: dict[str, Any]) -> str:
    made = r["restart_writes_by_op"]
    detail = ", ".join(f"{op} {n:.0f}" for op, n in sorted(made.items()))
    return f"{r['restart_writes']:.0f}" + (f" ({detail})" if detail else "")


def _split(values: list[float], fmt: str) -> str:
    """Render the total, then each process's share: ``0.45 (0.10 + 0.35)``."""
    total = fmt.format(sum(values))
    if len(values) < 2:  # noqa: PLR2004 - no prober process: one figure.
        return total
    return f"{total} ({' + '.join(fmt.format(v) for v in values)})"


def _rate(r: dict[str, Any], key: str) -> str:
    return f"{r['steady'][key] / r['steady_seconds']:,.0f}"


def _steady_writes(r: dict[str, Any]) -> str:
    rate = r["steady"]["writes"] / r["steady_seconds"] * 60
    detail = ", ".join(f"{op} {n:.0f}" for op, n in sorted(r["steady_writes"].items()))
    return f"{rate:.1f}" + (f" ({detail} in all)" if detail else "")


def _count(r: dict[str, Any], phase: str, key: str) -> str:
    return f"{r[phase][key]:.0f}"


def _scrape(r: dict[str, Any]) -> str:
    return f"{r['scrape_bytes'] / 1e6:.1f} MB, {r['scrape_max'] * 1000:.0f} ms"


def _pcts(values: list[float]) -> str:
    return f"{common.pct(values, 0.5) * 1000:.0f} / {common.pct(values, 0.99) * 1000:.0f} ms"


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
