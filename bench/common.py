"""Shared pieces of the failover benchmarks: a slice watcher, the controller process, metrics."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from kubernetes import client

NS = "bench"


class SliceWatcher:
    """Watches EndpointSlices in a namespace; records when each slice showed which leader."""

    def __init__(self, api: Any, namespace: str = NS) -> None:
        """Watch `namespace` with `api` once `start` is called."""
        self.api = api
        self.namespace = namespace
        self.seen: dict[str, list[tuple[float, str | None, str]]] = {}
        self.lock = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Start watching in a daemon thread."""
        self.thread.start()

    def _run(self) -> None:
        """Watch until stopped; a broken watch (an API server restart) is listed again."""
        while not self.stopping:
            try:
                self._watch()
            except Exception:  # noqa: BLE001 - reconnect whatever broke the stream
                if self.stopping:
                    return
                time.sleep(0.5)  # Back off before listing again.

    def _watch(self) -> None:
        discovery = client.DiscoveryV1Api(self.api)
        listed = discovery.list_namespaced_endpoint_slice(self.namespace)
        rv = listed.metadata.resource_version
        now = time.monotonic()
        with self.lock:  # After a broken watch, the list shows what changed meanwhile.
            for item in listed.items:
                first = (item.endpoints or [None])[0]
                ref = first.target_ref.name if first is not None and first.target_ref else None
                ports = ",".join(str(p.port) for p in item.ports or [])
                seen = self.seen.setdefault(item.metadata.name, [])
                if not seen or seen[-1][1:] != (ref, ports):
                    seen.append((now, ref, ports))
            self.lock.notify_all()
        while not self.stopping:
            resp = discovery.list_namespaced_endpoint_slice(
                self.namespace,
                watch=True,
                resource_version=rv,
                timeout_seconds=60,
                _preload_content=False,
            )
            for line in resp:
                now = time.monotonic()
                event = json.loads(line)
                obj = event["object"]
                rv = obj["metadata"]["resourceVersion"]
                endpoints = obj.get("endpoints") or []
                ref = endpoints[0].get("targetRef", {}).get("name") if endpoints else None
                ports = ",".join(str(p.get("port")) for p in obj.get("ports") or [])
                with self.lock:
                    self.seen.setdefault(obj["metadata"]["name"], []).append((now, ref, ports))
                    self.lock.notify_all()

    def wait_for(self, name: str, pred: Any, *, after: float, timeout: float = 30) -> float:
        """Return the first time after `after` that slice `name` satisfied `pred(ref, ports)`."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for at, ref, ports in self.seen.get(name, []):
                    if at >= after and pred(ref, ports):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"slice {name} never matched")
                self.lock.wait(left)


def descendants(pid: int) -> list[int]:
    """Return `pid` and its live descendants (the controller and its prober process)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in pathlib.Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in children.read_text().split()]
    return found


def own_cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds of process `pid` alone (0 once it is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds of process `pid` and its live descendants (from /proc)."""
    return sum(own_cpu_seconds(p) for p in descendants(pid))


def rss_mib(pid: int) -> float:
    """Return the resident set size of process `pid` in MiB (0 once it is gone)."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_controller(
    kubeconfig: pathlib.Path,
    metrics_port: int,
    health_port: int,
    extra: list[str],
    *,
    log: Any = None,
) -> Any:
    """Start ``zen-lead run`` (one replica, no election) as a child watching the bench namespace.

    Its output goes to `log` (an open file) when given, else to ours.
    """
    cmd = [
        sys.executable, "-m", "zenlead", "run",
        "--kubeconfig", str(kubeconfig), "--namespaces", NS,
        "--metrics-bind-address", f"127.0.0.1:{metrics_port}",
        "--health-probe-bind-address", f"127.0.0.1:{health_port}",
        "--leader-elect", "false", "--log-level", "warning", *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def scrape(port: int) -> str:
    """Return the controller's /metrics text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def histogram(text: str, name: str) -> tuple[list[tuple[float, float]], float, float]:
    """Sum the buckets of `name` over all label sets: (le, count) pairs, sum, count."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count{"):
            count += float(line.rsplit(" ", 1)[1])
    return sorted(buckets.items()), total, count


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus histogram_quantile: linear interpolation inside the bucket."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, cnt in buckets:
        if cnt >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(cnt - prev_count, 1e-9)
        prev_le, prev_count = le, cnt
    return prev_le


def pct(values: list[float], q: float) -> float:
    """Return the `q` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    """Return a free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
