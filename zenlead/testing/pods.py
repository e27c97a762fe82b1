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

__all__ = ("make_service_with_pods", "mark_running", "pod_manifest")

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


def make_service_with_pods(
    api: Any,
    namespace: str,
    name: str,
    *,
    annotations: dict[str, str],
    ips: list[str],
) -> None:
    """Create Service `name` (port 80 -> 8080, selector app=`name`) and one running pod per IP.

    Pods are named ``<name>-0``, ``<name>-1``... in the order of `ips` (so ``-0`` is the
    oldest) and declare container ports ``http`` 8080 and ``grpc`` 9090.
    """
    core: Any = client.CoreV1Api(api)  # Plain dict bodies are accepted at run time.
    body = {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    core.create_namespaced_service(namespace, body)
    for i, ip in enumerate(ips):
        pod = f"{name}-{i}"
        manifest = pod_manifest(pod, labels={"app": name}, ports={"http": 8080, "grpc": 9090})
        core.create_namespaced_pod(namespace, manifest)
        mark_running(api, namespace, pod, ip=ip)
