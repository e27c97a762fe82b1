"""Benchmark: the informer stores and their indexes at 10,000 and 100,000 pods.

Run: ``.venv/bin/python -m bench.cache`` (about a minute; ``--sizes`` to change). One namespace
holds N pods and N/3 opted-in Services, each selecting 3 pods by ``app=<name>`` (and every pod
also carries ``tier=web``, a label every pod shares, as real workloads do). For each operation
the CPU time per call is measured with the indexed stores the controller uses
(`mapping.new_cache`) and, as the same-run baseline, with what the controller did before the
indexes: a scan of the namespace (for the lookups) or a store without indexes (for the
writes). Reported: CPU per operation and the ratio baseline / indexed (above 1: the indexes
win; below 1: what maintaining them costs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from typing import TYPE_CHECKING, Any

from bench import report
from zenlead import mapping, model
from zenlead.kube import store

if TYPE_CHECKING:
    from collections.abc import Callable

NS = "bench"
_MIN_CPU_SECONDS = 0.3


def make_pod(i: int, *, version: int = 1) -> model.Pod:
    """Return pod ``p<i>``, the ``i % 3``-th pod of Service ``s<i // 3>``."""
    return model.Pod(
        namespace=NS,
        name=f"p{i}",
        uid=f"uid-{i}-{version}",
        labels={"app": f"s{i // 3}", "tier": "web"},
        created=1.0e9 + i,
        deleting=False,
        node_name="node",
        phase="Running",
        ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        ready=True,
        ready_since=1.0e9 + i,
        ports=(),
    )


def make_service(i: int) -> dict[str, Any]:
    """Return opted-in Service ``s<i>`` selecting ``app=s<i>``."""
    return {
        "metadata": {
            "namespace": NS,
            "name": f"s{i}",
            "uid": f"svc-{i}",
            "resourceVersion": "1",
            "annotations": {"zen-lead.io/enabled": "true"},
        },
        "spec": {"selector": {"app": f"s{i}"}, "ports": [{"port": 80}]},
    }


def per_op(op: Callable[[int], object]) -> float:
    """Return the CPU microseconds one call of `op(i)` takes (calls repeated until measurable)."""
    calls, spent = 1, 0.0
    while True:
        start = time.process_time()
        for i in range(calls):
            op(i)
        spent = time.process_time() - start
        if spent >= _MIN_CPU_SECONDS:
            return spent / calls * 1e6
        calls *= 4


def scan_sources(cache: mapping.Cache, labels: dict[str, str]) -> list[dict[str, Any]]:
    """Find the sources selecting `labels` the old way: every Service of the namespace."""
    return [
        s for s in cache.services.values(NS) if mapping.is_source(s) and mapping.selects(s, labels)
    ]


def scan_pods(cache: mapping.Cache, source: dict[str, Any]) -> list[model.Pod]:
    """Find a Service's pods the old way: every pod of the namespace."""
    return [p for p in cache.pods.values(NS) if mapping.selects(source, p.labels)]


def run_size(pods: int) -> dict[str, tuple[float, float]]:
    """Return operation -> (indexed µs, baseline µs) at `pods` pods."""
    services = pods // 3
    indexed = mapping.new_cache()
    plain = mapping.Cache(
        store.Store(mapping.object_key),
        store.Store(mapping.object_key),
        store.Store(mapping.object_key),
    )
    all_pods = [make_pod(i) for i in range(pods)]
    # A relist decodes new objects: alternate two equal lists so every relist refiles.
    lists = (all_pods, [make_pod(i) for i in range(pods)])
    all_services = [make_service(i) for i in range(services)]
    for cache in (indexed, plain):
        cache.pods.replace(all_pods, scope=None)
        cache.services.replace(all_services, scope=None)
    sample = [all_pods[(i * 7919) % pods] for i in range(1024)]
    sources = [all_services[(i * 7919) % services] for i in range(1024)]

    def updated(i: int) -> model.Pod:
        return make_pod((i * 7919) % pods, version=2 + i)

    out = {}
    for name, on in (("indexed", indexed), ("baseline", plain)):
        out[name] = {
            "pod event -> Services selecting it": per_op(
                (lambda i, c=on: mapping.sources_selecting(c, NS, sample[i % 1024].labels))
                if name == "indexed"
                else (lambda i, c=on: scan_sources(c, sample[i % 1024].labels))
            ),
            "reconcile -> the Service's pods": per_op(
                (lambda i, c=on: mapping.selected_pods(c, sources[i % 1024]))
                if name == "indexed"
                else (lambda i, c=on: scan_pods(c, sources[i % 1024]))
            ),
            "pod update (store write)": per_op(lambda i, c=on: c.pods.upsert(updated(i))),
            "pod lookup by name": per_op(lambda i, c=on: c.pods.get(NS, sample[i % 1024].name)),
            "relist of every pod (none changed)": per_op(
                lambda i, c=on: c.pods.replace(lists[i % 2], scope=None)
            ),
        }
    return {op: (out["indexed"][op], out["baseline"][op]) for op in out["indexed"]}


def render(results: dict[int, dict[str, tuple[float, float]]], sizes: str) -> str:
    """Return the markdown table."""
    heads = " | ".join(f"{n:,} pods: indexed / without (ratio)" for n in results)
    lines = [
        (
            f"Run on {platform.node()} ({os.cpu_count()} cores), Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; `python -m bench.cache "
            f"--sizes {sizes}`; CPU µs per operation, one namespace, a third as many opted-in "
            "Services as pods. The second figure is the same operation without the indexes (what "
            "the controller did before), measured in the same run; the ratio is second / first."
        ),
        "",
        f"| operation | {heads} |",
        "|---|" + "---|" * len(results),
    ]
    ops = next(iter(results.values()))
    for op in ops:
        cells = []
        for figures in results.values():
            fast, slow = figures[op]
            cells.append(f"{_us(fast)} / {_us(slow)} ({slow / fast:,.1f}x)")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _us(value: float) -> str:
    return f"{value / 1000:,.1f} ms" if value >= 10_000 else f"{value:,.1f} µs"  # noqa: PLR2004


def main() -> int:
    """Run each size, print the table and record it in docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated pod counts")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    results = {int(n): run_size(int(n)) for n in args.sizes.split(",")}
    text = render(results, args.sizes)
    print(text)
    if not args.no_docs:
        report.update_section("cache", text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
