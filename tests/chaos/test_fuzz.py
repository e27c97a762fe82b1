"""Hostile annotations against a running controller: 500+ values, every one named, nothing hurt.

Values come from the classes that broke the first wave: regex bombs, Unicode digits and
look-alike letters, control characters, huge and negative numbers, empty and whitespace values,
10 KiB strings. Each of 100 Services gets five of them on five different keys; ten more
Services get a hostile ``zen-lead.io/enabled``. The controller runs as a real process; the test
then checks that it is alive and healthy, that its peak RSS stayed under 256 MiB, that every
value got an ``InvalidAnnotation`` Warning naming its key, that every Service is routed (on the
Ready rules, the fallback of an invalid probe setting), and that a control Service still fails
over on a pod deletion in under a second.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from tests import helpers
from tests.chaos.conftest import NS
from zenlead import svcconfig
from zenlead.testing import history

if TYPE_CHECKING:
    from tests.chaos.conftest import Cluster

P = "zen-lead.io/probe"
SERVICE_KEYS = [svcconfig.LEADER_SERVICE_NAME, svcconfig.STICKY, svcconfig.MIN_READY_DURATION]
GENERIC = [
    f"{P}-{k}"
    for k in (
        "port",
        "interval",
        "timeout",
        "fall",
        "rise",
        "fast-interval",
        "candidate-interval",
        "panic-threshold",
    )
]
BY_KIND = {
    "http": [
        f"{P}-{k}"
        for k in (
            "path",
            "method",
            "scheme",
            "host",
            "expected-status",
            "body-regex",
            "server-name",
            "tls-verify",
        )
    ],
    "grpc": [f"{P}-grpc-service", f"{P}-grpc-tls", f"{P}-server-name"],
    "tcp": [f"{P}-tcp-send", f"{P}-tcp-expect"],
}
BOMBS = [
    "(x{1000}){1000}",
    "(?:x{65535}){65535}",
    "(?#[)(?:x{1000}){1000}]",
    "(\\g{1000}){1000}",
    "(" * 40 + "a" + ")" * 40,
    "(?x)(a{100}) {100}",
]
LOOKALIKES = [
    "\u00b2",
    "\u0663",
    "\uff11\uff10",
    "3\u0663s",
    "tru\u0435",
    "\uff54\uff52\uff55\uff45",
    "\uff27\uff25\uff34",
    "\u04bbttp",
]
NUMBERS = ["-1", "-5s", "0", "65536", "1e309", "9" * 30, "99999999999999h", "nan"]
TEXTS = ["", " ", "\t", "\t \n", "\x00", "a\r\nX-Injected: 1", "[fe80::1%\r\nX: y]:80"]
CONTROL = ["\x1b[31mred"]
LONG = ["x" * 10240, "9" * 10240, "/" + "a" * 10240]
HOSTILE = [*BOMBS, *LOOKALIKES, *NUMBERS, *TEXTS, *CONTROL, *LONG]
"""Hostile by construction. Each key gets all of them except the few it legitimately accepts."""

_HOSTNAMES = {"0", "65536", "1e309", "9" * 30, "99999999999999h", "nan"}
_SHORT_TEXT = {*NUMBERS, *TEXTS, *LOOKALIKES}
ACCEPTED: dict[str, set[str]] = {
    svcconfig.LEADER_SERVICE_NAME: {"nan"},  # A valid DNS-1035 label.
    svcconfig.MIN_READY_DURATION: {"0"},
    f"{P}-host": _HOSTNAMES,
    f"{P}-server-name": _HOSTNAMES,
    f"{P}-port": {"1e309", "99999999999999h", "nan"},  # Port names (none of the pods has one).
    f"{P}-grpc-service": {"", *_HOSTNAMES, "-1", "-5s"},
    # Any short text is a valid regex or bytes to send; only bombs and 10 KiB are not.
    f"{P}-body-regex": _SHORT_TEXT,
    f"{P}-tcp-expect": _SHORT_TEXT,
    f"{P}-tcp-send": {*_SHORT_TEXT, *BOMBS, *CONTROL},
}
"""Hostile-looking values these keys accept (written out, so a parser that starts accepting
something else fails this test instead of quietly shrinking it)."""


def plan(rng: random.Random, services: int) -> list[tuple[str, str, dict[str, str]]]:
    """Return (service, kind, hostile annotations) for `services` Services, 5 values each."""
    planned = []
    for i in range(services):
        kind = rng.choice(["http", "grpc", "tcp"])
        keys = rng.sample([*SERVICE_KEYS, *GENERIC, *BY_KIND[kind], P], 5)
        values = {}
        for key in keys:
            choices = [v for v in HOSTILE if v not in ACCEPTED.get(key, set())]
            values[key] = rng.choice(choices)
        planned.append((f"f{i}", kind, values))
    return planned


def create(cluster: Cluster, name: str, annotations: dict[str, str], app: str) -> None:
    """Create a headless Service `name` selecting app=`app` with `annotations`."""
    cluster.apps[name] = app
    cluster.core.create_namespaced_service(
        NS,
        {
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "clusterIP": "None",
                "selector": {"app": app},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
    )


def test_hostile_annotations_on_a_running_controller(cluster: Cluster) -> None:
    """500+ hostile values: alive, < 256 MiB, every key named, routed, control fails over fast."""
    for i in range(3):
        cluster.add_pod("fuzz", f"fuzz-{i}")
    for i in range(2):
        cluster.add_pod("control", f"control-{i}")
    ctl = cluster.replica()
    ctl.wait_ready()
    create(cluster, "control", {"zen-lead.io/enabled": "true"}, "control")
    cluster.wait_routed(["control"])
    cluster.mark_steady()
    rng = random.Random(2026)  # noqa: S311 - a reproducible fuzz, not security.
    planned = plan(rng, 100)
    for name, kind, values in planned:
        base = {"zen-lead.io/enabled": "true", P: kind}
        create(cluster, name, base | values, "fuzz")
    enabled = [v for v in HOSTILE if v not in {"true", "false"}][:10]
    for i, value in enumerate(enabled):
        create(cluster, f"e{i}", {"zen-lead.io/enabled": value}, "fuzz")
    expected = {(name, key) for name, _, values in planned for key in values}
    expected |= {(f"e{i}", svcconfig.ENABLED) for i in range(len(enabled))}
    assert len(expected) >= 500
    warned = _wait_warnings(cluster, expected)
    services = [name for name, _, _ in planned]
    took = cluster.wait_routed(services, timeout=60)
    assert all(cluster.leader(f"e{i}") is None for i in range(len(enabled)))
    assert ctl.alive()
    assert ctl.get("/healthz") == 200
    peak = ctl.peak_rss_bytes()
    assert peak < 256 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MiB"
    failover = _control_failover(cluster)
    assert failover < 1.0, f"control Service failed over in {failover:.3f}s"
    cluster.check(
        [*services, "control"],
        name="annotation fuzz",
        hostile_values=len(expected),
        warnings_named=len(warned),
        peak_rss_mib=round(peak / 2**20, 1),
        rss_mib=round(ctl.rss_bytes() / 2**20, 1),
        routed_within_seconds=round(took, 2),
        control_failover_seconds=round(failover, 3),
    )


def _wait_warnings(cluster: Cluster, expected: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Wait until an InvalidAnnotation Warning names every expected (Service, key)."""
    seen: set[tuple[str, str]] = set()

    def check() -> bool:
        events = cluster.core.list_namespaced_event(
            NS, field_selector="reason=InvalidAnnotation"
        ).items
        for event in events:
            assert event.type == "Warning"
            key = event.message.split(": ", 1)[0]
            seen.add((event.involved_object.name, key))
        return expected <= seen

    helpers.poll(check, timeout=90, what="an InvalidAnnotation per hostile value", interval=1.0)
    return seen


def _control_failover(cluster: Cluster) -> float:
    """Delete the control Service's leader; return seconds until its slice points elsewhere."""
    leader = cluster.leader("control")
    start = time.monotonic()
    cluster.core.delete_namespaced_pod(leader, NS, grace_period_seconds=0)

    def moved(records: Any) -> bool:
        return any(
            isinstance(r, history.SliceVersion)
            and r.source == "control"
            and r.at >= start
            and r.endpoints
            and r.endpoints[0].pod_name != leader
            for r in records
        )

    records = cluster.watcher.wait_for(moved, timeout=10, what="the control Service to fail over")
    switched = min(
        r.at
        for r in records
        if isinstance(r, history.SliceVersion)
        and r.source == "control"
        and r.at >= start
        and r.endpoints
        and r.endpoints[0].pod_name != leader
    )
    return switched - start
