"""The chaos-test harness against a real control plane.

Restarts, compaction, audit, users, proxy, watcher and controller replicas.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import ssl
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from kubernetes.client import exceptions

from tests import helpers
from zenlead.kube import client as kube_client
from zenlead.testing import controlplane, history, pki, proxy, replica

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

CHAOS = controlplane.Options(audit=True)


@pytest.fixture(scope="module")
def plane() -> Iterator[controlplane.ControlPlane]:
    """Start a control plane of this module's own, which its tests stop and restart."""
    with controlplane.ControlPlane(CHAOS) as started:
        yield started


@pytest.fixture
def plane_ns(plane: controlplane.ControlPlane) -> str:
    """Create a fresh namespace on `plane`."""
    name = f"h-{uuid.uuid4().hex[:8]}"
    call(plane, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def tls(plane: controlplane.ControlPlane) -> ssl.SSLContext:
    """Return a client TLS context with the admin certificate of `plane`."""
    creds = plane.credentials
    context = ssl.create_default_context(cafile=str(creds.ca_cert))
    context.load_cert_chain(str(creds.admin_cert), str(creds.admin_key))
    return context


def call(
    plane: controlplane.ControlPlane,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    port: int | None = None,
    agent: str = "harness-test",
    timeout: float = 5,
) -> tuple[int, dict[str, Any]]:
    """Make one admin request (no retries) to `plane` or to `port`; return status and JSON."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port or plane.port, context=tls(plane), timeout=timeout
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        kind = "merge-patch+json" if method == "PATCH" else "json"
        headers = {"Content-Type": f"application/{kind}", "User-Agent": agent}
        conn.request(method, path, body=data, headers=headers)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def first_watch_event(plane: controlplane.ControlPlane, path: str, rv: str) -> dict[str, Any]:
    """Open a watch on `path` from `rv` and return its first event."""
    conn = http.client.HTTPSConnection("127.0.0.1", plane.port, context=tls(plane), timeout=5)
    try:
        conn.request("GET", f"{path}?watch=1&resourceVersion={rv}&timeoutSeconds=5")
        event: dict[str, Any] = json.loads(conn.getresponse().readline())
        return event
    finally:
        conn.close()


class TestRestarts:
    """API server and etcd restart on the same ports and data."""

    def test_apiserver_stop_kill_and_start(
        self, plane: controlplane.ControlPlane, plane_ns: str
    ) -> None:
        """Data and port survive SIGTERM and SIGKILL of kube-apiserver; requests fail between."""
        port = plane.port
        path = f"/api/v1/namespaces/{plane_ns}/configmaps"
        call(plane, "POST", path, {"metadata": {"name": "kept"}})
        for kill in (False, True):
            plane.stop_apiserver(kill=kill)
            with pytest.raises(ConnectionRefusedError):
                call(plane, "GET", "/version")
            plane.start_apiserver()
            assert plane.port == port
            assert call(plane, "GET", f"{path}/kept")[0] == 200

    def test_etcd_kill_and_start(self, plane: controlplane.ControlPlane, plane_ns: str) -> None:
        """With etcd SIGKILLed reads fail; after start_etcd they succeed on the old data."""
        path = f"/api/v1/namespaces/{plane_ns}/configmaps"
        call(plane, "POST", path, {"metadata": {"name": "kept"}})
        plane.kill_etcd()
        with pytest.raises(TimeoutError):
            call(plane, "GET", f"{path}/kept", timeout=2)
        plane.start_etcd()
        helpers.poll(
            lambda: call(plane, "GET", f"{path}/kept")[0] == 200, timeout=20, what="etcd back"
        )


class TestCompaction:
    """compact_etcd expires old resourceVersions, but the watch cache hides it."""

    def test_only_uncached_resources_get_410(self) -> None:
        """After compact_etcd an uncached resource's old RV gets 410; a cached one replays.

        A fresh control plane: after an etcd outage the caches may re-watch etcd from a
        compacted revision, reinitialise (429) and then answer 410 for cached resources too.
        """
        options = controlplane.Options(uncached_resources=("configmaps",))
        with controlplane.ControlPlane(options) as fresh:
            call(fresh, "POST", "/api/v1/namespaces", {"metadata": {"name": "c"}})
            old = {}
            for kind in ("configmaps", "secrets"):
                path = f"/api/v1/namespaces/c/{kind}"
                _, created = call(fresh, "POST", path, {"metadata": {"name": "a"}})
                old[kind] = created["metadata"]["resourceVersion"]
                status, _ = call(fresh, "PATCH", f"{path}/a", {"metadata": {"labels": {"v": "2"}}})
                assert status == 200
            assert fresh.compact_etcd() > int(old["secrets"])
            gone = first_watch_event(fresh, "/api/v1/namespaces/c/configmaps", old["configmaps"])
            replayed = first_watch_event(fresh, "/api/v1/namespaces/c/secrets", old["secrets"])
        assert (gone["type"], gone["object"]["code"]) == ("ERROR", 410)
        assert replayed.get("type") == "MODIFIED", json.dumps(replayed)


class TestAudit:
    """The audit log records writes with who, when and which revision."""

    def test_service_create_and_lease_holder(
        self, plane: controlplane.ControlPlane, plane_ns: str
    ) -> None:
        """A Service create and a Lease create are parsed with agent, code, RV and holder."""
        agent = "zen-lead/0.1.0 (replica-1)"
        service = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
        _, created = call(
            plane, "POST", f"/api/v1/namespaces/{plane_ns}/services", service, agent=agent
        )
        lease = {"metadata": {"name": "lock"}, "spec": {"holderIdentity": "replica-1"}}
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{plane_ns}/leases"
        call(plane, "POST", leases, lease)

        def mine() -> list[controlplane.AuditEvent]:
            events = [e for e in plane.audit_events() if e.namespace == plane_ns]
            return events if len(events) == 2 else []

        svc, lock = helpers.poll(mine, timeout=5, what="two audit events")
        assert (svc.verb, svc.resource, svc.name, svc.code) == ("create", "services", "web", 201)
        assert (svc.user, svc.user_agent, svc.stage) == (pki.ADMIN_USER, agent, "ResponseComplete")
        assert svc.resource_version == int(created["metadata"]["resourceVersion"])
        assert svc.request_received <= svc.stage_timestamp
        assert history.agent_identity(svc.user_agent) == "replica-1"
        assert (lock.resource, lock.holder, svc.holder) == ("leases", "replica-1", None)


class TestUsers:
    """issue_user makes ordinary, RBAC-bound identities."""

    def test_issued_user_is_authenticated_but_not_authorized(
        self, control_plane: controlplane.ControlPlane, namespace: str
    ) -> None:
        """The API server sees the user and groups; RBAC refuses what nothing grants."""
        kubeconfig = control_plane.issue_user("alice", groups=("devs",))
        with contextlib.closing(kube_client.connect(str(kubeconfig))) as alice:
            review = client.AuthenticationV1Api(alice).create_self_subject_review({})
            assert review.status.user_info.username == "alice"
            assert "devs" in review.status.user_info.groups
            with pytest.raises(exceptions.ApiException) as refused:
                client.CoreV1Api(alice).list_namespaced_pod(namespace)
        assert refused.value.status == 403


@pytest.fixture
def tcp_proxy(control_plane: controlplane.ControlPlane) -> Iterator[proxy.Proxy]:
    """Run a proxy in front of the session's API server."""
    with proxy.Proxy("127.0.0.1", control_plane.port) as started:
        yield started


class TestProxy:
    """The proxy passes TLS through and breaks the network on command."""

    def test_forwards_and_kubeconfig_points_at_it(
        self, control_plane: controlplane.ControlPlane, tcp_proxy: proxy.Proxy, namespace: str
    ) -> None:
        """A kubeconfig from issue_user(server_url=proxy.url) reaches the API server."""
        kubeconfig = control_plane.issue_user(
            pki.ADMIN_USER, groups=(pki.ADMIN_GROUP,), server_url=tcp_proxy.url
        )
        with contextlib.closing(kube_client.connect(str(kubeconfig))) as api:
            assert client.CoreV1Api(api).read_namespace(namespace).metadata.name == namespace
        stats = tcp_proxy.stats()
        assert stats.accepted >= 1
        assert stats.bytes_up > 0
        assert stats.bytes_down > 0

    def test_pause_then_resume(
        self, control_plane: controlplane.ControlPlane, tcp_proxy: proxy.Proxy
    ) -> None:
        """While paused a request times out; after resume it succeeds."""
        tcp_proxy.pause()
        with pytest.raises(TimeoutError):
            call(control_plane, "GET", "/version", port=tcp_proxy.port, timeout=0.5)
        tcp_proxy.resume()
        assert call(control_plane, "GET", "/version", port=tcp_proxy.port)[0] == 200

    def test_cut_resets_until_heal(
        self, control_plane: controlplane.ControlPlane, tcp_proxy: proxy.Proxy
    ) -> None:
        """Cut resets an open connection and every new one; heal lets new ones through."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1", tcp_proxy.port, context=tls(control_plane), timeout=5
        )
        with contextlib.closing(conn):
            conn.request("GET", "/version")
            assert conn.getresponse().read()
            tcp_proxy.cut()
            # The RST surfaces as a reset or, from OpenSSL on the write, as an unexpected EOF.
            with pytest.raises((ConnectionResetError, ssl.SSLEOFError)):
                _get_version(conn)
        with pytest.raises(ConnectionResetError):
            call(control_plane, "GET", "/version", port=tcp_proxy.port)
        tcp_proxy.heal()
        assert call(control_plane, "GET", "/version", port=tcp_proxy.port)[0] == 200
        assert tcp_proxy.stats().reset >= 2

    def test_delay_adds_latency(
        self, control_plane: controlplane.ControlPlane, tcp_proxy: proxy.Proxy
    ) -> None:
        """With delay(0.2) a request (handshake and answer: two round trips) takes >= 0.8 s."""
        tcp_proxy.delay(0.2)
        start = time.monotonic()
        assert call(control_plane, "GET", "/version", port=tcp_proxy.port)[0] == 200
        assert time.monotonic() - start >= 0.8
        tcp_proxy.delay(0)


def _get_version(conn: http.client.HTTPSConnection) -> bytes:
    conn.request("GET", "/version")
    return conn.getresponse().read()


def make_slice(name: str, ip: str, pod: str) -> dict[str, Any]:
    """Return a zen-lead-labelled EndpointSlice manifest with one endpoint."""
    return {
        "metadata": {
            "name": name,
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "zen-lead",
                "kubernetes.io/service-name": name,
                history.SOURCE_LABEL: "web",
            },
        },
        "addressType": "IPv4",
        "endpoints": [endpoint(ip, pod)],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def endpoint(ip: str, pod: str) -> dict[str, Any]:
    """Return a ready endpoint at `ip` for pod `pod`."""
    ref = {"kind": "Pod", "name": pod, "uid": f"uid-{pod}"}
    return {"addresses": [ip], "conditions": {"ready": True}, "targetRef": ref}


class TestWatcher:
    """The watcher records every version it sees, and gaps."""

    def test_records_every_slice_version(
        self, control_plane: controlplane.ControlPlane, api: Any, namespace: str
    ) -> None:
        """Create, two patches and delete of a slice are four versions with the API's RVs."""
        slices = client.DiscoveryV1Api(api)
        with history.Watcher(control_plane.kubeconfig, namespace) as watcher:
            rvs = [
                slices.create_namespaced_endpoint_slice(
                    namespace, make_slice("web-leader", "10.244.9.9", "p9")
                ).metadata.resource_version
            ]
            for ip, pod in (("10.244.9.8", "p8"), ("10.244.9.7", "p7")):
                patch = {"endpoints": [endpoint(ip, pod)]}
                updated = slices.patch_namespaced_endpoint_slice("web-leader", namespace, patch)
                rvs.append(updated.metadata.resource_version)
            slices.delete_namespaced_endpoint_slice("web-leader", namespace)
            recorded = watcher.wait_for(
                lambda h: len(_slices(h)) >= 4,
                timeout=10,
                what="four slice versions",
            )
        versions = _slices(recorded)
        assert [v.resource_version for v in versions[:3]] == [int(rv) for rv in rvs]
        assert [(v.endpoints[0].ip, v.endpoints[0].pod_name) for v in versions[:3]] == [
            ("10.244.9.9", "p9"),
            ("10.244.9.8", "p8"),
            ("10.244.9.7", "p7"),
        ]
        assert versions[0].source == "web"
        assert versions[0].endpoints[0].ready is True
        assert versions[3].deleted

    def test_records_pods_and_leases(
        self, control_plane: controlplane.ControlPlane, make_pod: Any, api: Any, namespace: str
    ) -> None:
        """A pod made to run and a Lease taken are recorded with IP, readiness and holder."""
        with history.Watcher(control_plane.kubeconfig, namespace) as watcher:
            make_pod("p1", ip="10.244.9.1", labels={"app": "web"})
            lease = {"metadata": {"name": "lock"}, "spec": {"holderIdentity": "r1"}}
            client.CoordinationV1Api(api).create_namespaced_lease(namespace, lease)
            recorded = watcher.wait_for(
                lambda h: any(history.lease_holders(h)) and any(_running(h)),
                timeout=10,
                what="a running pod and a Lease",
            )
        pod = _running(recorded)[0]
        assert (pod.name, pod.ip, pod.label("app")) == ("p1", "10.244.9.1", "web")
        assert history.pod_qualifies(pod)
        assert [v.holder for v in history.lease_holders(recorded)] == ["r1"]

    def test_apiserver_restart_is_a_gap(
        self, plane: controlplane.ControlPlane, plane_ns: str
    ) -> None:
        """A restarted API server breaks the watches: each relists and records a Gap first."""
        with history.Watcher(plane.kubeconfig, plane_ns) as watcher:
            plane.stop_apiserver(kill=True)
            stopped = time.monotonic()
            plane.start_apiserver()
            recorded = watcher.wait_for(
                lambda h: len(_gaps(h)) == 3, timeout=20, what="a gap in each of three watches"
            )
        gaps = _gaps(recorded)
        assert {g.resource for g in gaps} == {"endpointslices", "pods", "leases"}
        assert all(g.since <= g.at and g.at > stopped for g in gaps)


def _slices(records: Any) -> list[history.SliceVersion]:
    return [r for r in records if isinstance(r, history.SliceVersion)]


def _running(records: Any) -> list[history.PodVersion]:
    return [r for r in records if isinstance(r, history.PodVersion) and r.phase == "Running"]


def _gaps(records: Any) -> list[history.Gap]:
    return [r for r in records if isinstance(r, history.Gap)]


class TestReplica:
    """A controller replica in a child process starts, serves and dies on SIGKILL."""

    def test_ready_then_sigkill(
        self, control_plane: controlplane.ControlPlane, namespace: str, tmp_path: pathlib.Path
    ) -> None:
        """The replica becomes ready, serves metrics and memory figures, and SIGKILL ends it."""
        args = (f"--leader-election-namespace={namespace}", *replica.FAST_ELECTION)
        with replica.Replica(
            control_plane.kubeconfig,
            namespaces=[namespace],
            log_path=tmp_path / "replica.log",
            args=args,
        ) as one:
            one.wait_ready(timeout=30)
            assert "zen_lead_build_info" in one.scrape()
            assert one.get("/healthz") == 200
            assert one.rss_bytes() > 10 * 1024 * 1024
            assert one.peak_rss_bytes() > 10 * 1024 * 1024
            one.kill()
            assert not one.alive()
            assert one.returncode == -signal.SIGKILL
            assert one.get("/readyz") == 0
