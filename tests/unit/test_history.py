"""The chaos-test checks over recorded history and audit events, on synthetic records."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from zenlead.testing import controlplane, history

WALL = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
WEB = history.selected_by_labels({"app": "web"})


def pod(at: float, name: str, **changes: object) -> history.PodVersion:
    """Return a qualifying pod `name` (label app=web, IP 10.244.0.<n>) with `changes`."""
    base = history.PodVersion(
        at=at,
        wall=WALL,
        name=name,
        uid=f"uid-{name}",
        ip=f"10.244.0.{name[-1]}",
        phase="Running",
        ready=True,
        deleting=False,
        labels=(("app", "web"),),
    )
    return dataclasses.replace(base, **changes)


def ep(name: str, *, ready: bool | None = True, uid: str | None = None) -> history.Endpoint:
    """Return an endpoint at the IP `pod` gives `name`."""
    return history.Endpoint(
        ip=f"10.244.0.{name[-1]}", pod_name=name, pod_uid=uid or f"uid-{name}", ready=ready
    )


def slc(at: float, *endpoints: history.Endpoint, source: str = "web") -> history.SliceVersion:
    """Return a version of `<source>-leader` with `endpoints`."""
    return history.SliceVersion(
        at=at,
        wall=WALL,
        name=f"{source}-leader",
        source=source,
        resource_version=int(at * 10),
        endpoints=endpoints,
    )


def lease(at: float, holder: str | None, *, name: str = "lock") -> history.LeaseVersion:
    """Return a version of Lease `name` held by `holder`."""
    return history.LeaseVersion(
        at=at, wall=WALL, name=name, holder=holder, renew_time=None, transitions=None
    )


class TestMultiEndpoint:
    """No slice may ever route to two pods at once."""

    def test_only_versions_with_two_or_more_endpoints(self) -> None:
        """Empty and single-endpoint versions pass; a version with two is returned."""
        two = slc(3, ep("p1"), ep("p2"))
        assert history.multi_endpoint_versions([slc(1), slc(2, ep("p1")), two, pod(4, "p1")]) == [
            two
        ]


class TestLeaseHolders:
    """The holder timeline keeps only changes."""

    def test_changes_only_in_time_order(self) -> None:
        """Renewals by the same holder are dropped; deletion is a change to None."""
        records = [lease(3, "b"), lease(1, "a"), lease(2, "a"), lease(4, "b", name="other")]
        deleted = dataclasses.replace(lease(5, "b"), deleted=True)
        timeline = history.lease_holders([*records, deleted], name="lock")
        assert [(r.at, None if r.deleted else r.holder) for r in timeline] == [
            (1, "a"),
            (3, "b"),
            (5, None),
        ]


class TestPredicates:
    """Selection and qualification of pod versions."""

    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            pytest.param({}, True, id="running-ready"),
            pytest.param({"ready": False}, False, id="not-ready"),
            pytest.param({"phase": "Pending"}, False, id="pending"),
            pytest.param({"deleting": True}, False, id="terminating"),
            pytest.param({"deleted": True}, False, id="deleted"),
            pytest.param({"ip": None}, False, id="no-ip"),
        ],
    )
    def test_pod_qualifies(self, changes: dict[str, object], *, expected: bool) -> None:
        """Only a Running, Ready, not deleting pod with an IP qualifies."""
        assert history.pod_qualifies(pod(1, "p1", **changes)) is expected

    def test_selected_by_labels_and_names(self) -> None:
        """Label selection needs every label; name selection matches names exactly."""
        other = pod(1, "p2", labels=(("app", "db"),))
        by_name = history.selected_by_names(["p2"])
        assert [WEB(pod(1, "p1")), WEB(other)] == [True, False]
        assert [by_name(other), by_name(pod(1, "p1"))] == [True, False]


class TestUnrouted:
    """Intervals where a qualifying pod existed but the Service's slice did not reach one."""

    @pytest.mark.parametrize(
        ("records", "expected"),
        [
            pytest.param([pod(1, "p1"), slc(1, ep("p1"))], [], id="routed-from-the-start"),
            pytest.param([pod(1, "p1"), slc(2), slc(3, ep("p1"))], [(1, 3)], id="empty-slice"),
            pytest.param([pod(1, "p1", ready=False), slc(2)], [], id="no-pod-qualifies"),
            pytest.param(
                [
                    *(pod(1, "p1"), pod(1, "p2"), slc(1, ep("p1"))),
                    *(pod(2, "p1", ready=False), slc(4, ep("p2"))),
                ],
                [(2, 4)],
                id="leader-unready-until-switch",
            ),
            pytest.param(
                [pod(1, "p1"), slc(1, ep("p1", ready=False)), slc(2, ep("p1"))],
                [(1, 2)],
                id="endpoint-not-ready",
            ),
            pytest.param(
                [pod(1, "p1", uid="new"), slc(1, ep("p1", uid="old")), slc(3, ep("p1", uid="new"))],
                [(1, 3)],
                id="recreated-pod-same-name",
            ),
            pytest.param(
                [pod(1, "p1"), pod(1, "x9", labels=()), slc(1, ep("x9")), slc(2, ep("p1"))],
                [(1, 2)],
                id="endpoint-on-unselected-pod",
            ),
            pytest.param(
                [pod(1, "p1"), slc(1, ep("p1")), slc(2, source="db")], [], id="other-service"
            ),
            pytest.param(
                [
                    *(pod(1, "p1"), slc(1, ep("p1"))),
                    *(pod(2, "p1", deleting=True), pod(2, "p2"), slc(2, ep("p2"))),
                ],
                [],
                id="same-time-records-together",
            ),
        ],
    )
    def test_intervals(
        self, records: list[history.Record], expected: list[tuple[float, float]]
    ) -> None:
        """Each case yields exactly the expected unrouted intervals."""
        assert history.unrouted_intervals(records, "web", selects=WEB) == expected

    def test_open_interval_closes_at_until(self) -> None:
        """An interval still open at the end of the recording closes at `until`."""
        records = [pod(1, "p1"), slc(1, ep("p1")), pod(3, "p1", ready=False), pod(3, "p2")]
        assert history.unrouted_intervals(records, "web", selects=WEB, until=9) == [(3, 9)]

    def test_custom_qualification(self) -> None:
        """A caller's `qualifies` replaces the default (here: Ready is not required)."""
        records = [pod(1, "p1", ready=False), slc(2)]

        def running(p: history.PodVersion, /) -> bool:
            return p.phase == "Running"

        assert history.unrouted_intervals(records, "web", selects=WEB, qualifies=running) == [
            (1, 2)
        ]


def audit(
    rv: int | None,
    *,
    resource: str = "endpointslices",
    agent: str = "zen-lead/0.1.0 (a)",
    verb: str = "update",
    holder: str | None = None,
    name: str = "web-leader",
    code: int = 200,
) -> controlplane.AuditEvent:
    """Return a completed write with response resourceVersion `rv`."""
    return controlplane.AuditEvent(
        verb=verb,
        resource=resource,
        subresource="",
        namespace="ns",
        name=name,
        user="zen-lead",
        groups=(),
        user_agent=agent,
        code=code,
        request_received=WALL,
        stage_timestamp=WALL,
        stage="ResponseComplete",
        resource_version=rv,
        holder=holder,
    )


def held(
    rv: int, holder: str | None, *, verb: str = "update", name: str = "lock"
) -> controlplane.AuditEvent:
    """Return a successful write of Lease `name` leaving `holder` in it."""
    return audit(rv, resource="leases", holder=holder, verb=verb, name=name)


class TestAgentIdentity:
    """The replica identity is read from the User-Agent."""

    @pytest.mark.parametrize(
        ("agent", "expected"),
        [
            pytest.param("zen-lead/0.1.0 (host_1a2b3c4d)", "host_1a2b3c4d", id="identity"),
            pytest.param("zen-lead/0.1.0 (a b) extra", "a b", id="trailing-text"),
            pytest.param("zen-lead/0.1.0", None, id="no-identity"),
            pytest.param("OpenAPI-Generator/37.0.2/python", None, id="other-client"),
        ],
    )
    def test_extraction(self, agent: str, expected: str | None) -> None:
        """``product/version (identity)`` yields the identity; anything else None."""
        assert history.agent_identity(agent) == expected


class TestSingleWriter:
    """Controller writes to Services and slices must come from the Lease holder."""

    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            pytest.param([held(1, "a"), audit(2)], [], id="holder-writes"),
            pytest.param(
                [held(1, "b"), audit(2)], [(2, "a", "b", "not the holder")], id="non-holder"
            ),
            pytest.param([audit(2)], [(2, "a", None, "no holder")], id="before-any-lease"),
            pytest.param(
                [audit(11), held(10, "b"), audit(9), held(1, "a")],
                [(11, "a", "b", "not the holder")],
                id="ordered-by-revision-not-by-log",
            ),
            pytest.param(
                [held(1, "a"), held(2, None, verb="delete"), audit(3, resource="services")],
                [(3, "a", None, "no holder")],
                id="lease-deleted",
            ),
            pytest.param(
                [held(1, "a"), held(2, "b", name="other"), audit(3)], [], id="other-lease-ignored"
            ),
            pytest.param(
                [held(1, "b"), audit(2, agent="kubectl/v1.36"), audit(3, code=409)],
                [],
                id="test-writes-and-failures-ignored",
            ),
            pytest.param(
                [held(1, "a"), audit(None)], [(None, "a", None, "no resourceVersion")], id="no-rv"
            ),
        ],
    )
    def test_violations(
        self,
        events: list[controlplane.AuditEvent],
        expected: list[tuple[int | None, str | None, str | None, str]],
    ) -> None:
        """Exactly the writes not made by the holder at their revision are reported."""
        found = history.single_writer_violations(events, lease_name="lock")
        assert [(v.event.resource_version, v.writer, v.holder, v.reason) for v in found] == expected
