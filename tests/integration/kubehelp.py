"""Helpers for director tests: make Services, wait for slices, read Events and metrics."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client import exceptions

from tests import helpers

if TYPE_CHECKING:
    from collections.abc import Callable

APP = {"app": "web"}
ENABLED = {"zen-lead.io/enabled": "true"}


def make_service(
    core: client.CoreV1Api,
    namespace: str,
    name: str = "web",
    *,
    annotations: dict[str, str] | None = None,
    selector: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    spec: dict[str, Any] | None = None,
) -> Any:
    """Create a Service (opted in by default) selecting app=web on port 80 -> 8080."""
    body = {
        "metadata": {"name": name, "annotations": ENABLED if annotations is None else annotations},
        "spec": {
            "selector": APP if selector is None else selector,
            "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}],
        }
        | (spec or {}),
    }
    if body["spec"]["selector"] == {}:
        del body["spec"]["selector"]
    return core.create_namespaced_service(namespace, body)


def read_slice(api: Any, namespace: str, name: str) -> Any | None:
    """Return the EndpointSlice or None."""
    try:
        return client.DiscoveryV1Api(api).read_namespaced_endpoint_slice(name, namespace)
    except exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def leader_of(slice_obj: Any) -> str | None:
    """Return the name of the pod the slice points at, or None for an empty slice."""
    endpoints = slice_obj.endpoints or []
    assert len(endpoints) <= 1, "a leader slice never has more than one endpoint"
    return endpoints[0].target_ref.name if endpoints else None


def wait_leader(
    api: Any, namespace: str, expected: str | None, *, name: str = "web-leader", timeout: float = 15
) -> Any:
    """Wait until slice `name` exists and points at `expected` (None: no endpoint)."""

    def check() -> Any:
        obj = read_slice(api, namespace, name)
        return obj if obj is not None and leader_of(obj) == expected else None

    return helpers.poll(check, timeout=timeout, what=f"{name} to point at {expected}")


def events(core: client.CoreV1Api, namespace: str, *, reason: str, name: str = "web") -> list[Any]:
    """Return Events with `reason` about Service `name`."""
    found = core.list_namespaced_event(namespace).items
    return [e for e in found if e.reason == reason and e.involved_object.name == name]


def wait_event(
    core: client.CoreV1Api,
    namespace: str,
    *,
    reason: str,
    name: str = "web",
    contains: str = "",
    timeout: float = 15,
) -> Any:
    """Wait for an Event with `reason` (and `contains` in its message) on `name`; return it."""
    return helpers.poll(
        lambda: [
            e for e in events(core, namespace, reason=reason, name=name) if contains in e.message
        ],
        timeout=timeout,
        what=f"a {reason} Event on {name} mentioning {contains!r}",
    )[0]


def metric(text: str, name: str, **labels: str) -> float | None:
    """Return the value of the series `name{labels}` in exposition `text`, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_metric(
    scrape: Callable[[], str], name: str, *, at_least: float = 1, timeout: float = 15, **labels: str
) -> float:
    """Wait until the series reaches `at_least` and return its value."""

    def check() -> float | None:
        value = metric(scrape(), name, **labels)
        return value if value is not None and value >= at_least else None

    return helpers.poll(check, timeout=timeout, what=f"{name}{labels} >= {at_least}")
