"""Make a pod look scheduled and running without a kubelet, by patching ``pods/status``.

The test control plane has no scheduler or kubelet, so a created Pod stays Pending forever.
Tests (and later the demo) call `mark_running` to give it what a kubelet would report: phase
Running, a pod IP and a Ready condition with its transition time. The patch goes through the
real ``pods/status`` subresource, so the API server validates it like a kubelet's.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes import client

__all__ = ("mark_running", "pod_manifest")

_ALWAYS_TRUE = frozenset({"PodScheduled", "Initialized"})


def pod_manifest(
    name: str,
    *,
    labels: dict[str, str],
    node_name: str = "node-a",
    ports: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Return a minimal Pod body bound to `node_name`, with named container ports."""
    container: dict[str, Any] = {"name": "app", "image": "registry.invalid/zen-lead/app:test"}
    if ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in ports.items()]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node_name, "containers": [container]},
    }


def mark_running(
    api: Any,
    namespace: str,
    name: str,
    *,
    ip: str,
    ready: bool = True,
    since: datetime.datetime | None = None,
) -> Any:
    """Patch the pod's status to Running with `ip` and Ready=`ready` since `since` (now)."""
    when = (since or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    flag = "True" if ready else "False"
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": when,
        "conditions": [
            {"type": t, "status": "True" if t in _ALWAYS_TRUE else flag, "lastTransitionTime": when}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
    }
    return client.CoreV1Api(api).patch_namespaced_pod_status(name, namespace, {"status": status})
