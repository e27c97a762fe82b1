"""A failover produces one trace, and its correlation id reaches logs and Events."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests import helpers
from tests.integration import kubehelp
from tests.integration.kubehelp import APP
from zenlead import tracing
from zenlead.testing import pods

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from kubernetes import client

    from zenlead.testing import running


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Record every span in memory for one test, then turn tracing off again."""
    exporter = InMemorySpanExporter()
    tracing.configure(sample_ratio=1.0, otlp_endpoint=None, exporter=exporter)
    yield exporter
    tracing.configure(sample_ratio=0.0, otlp_endpoint=None)


class _Records(logging.Handler):
    """Keeps records, annotated by the correlation filter as the controller's handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(tracing.CorrelationFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)


def test_failover_is_one_trace(
    core: client.CoreV1Api,
    api: Any,
    namespace: str,
    make_pod: Callable[..., Any],
    start_controller: Callable[..., running.RunningController],
    spans: InMemorySpanExporter,
) -> None:
    """Event -> reconcile -> decide/cache/API spans nest in one trace with one correlation id."""
    records = _Records()
    logger = logging.getLogger("zenlead.recorder")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(records)
    try:
        for i in range(2):
            make_pod(f"web-{i}", ip=f"10.244.0.{10 + i}", labels=APP)
        kubehelp.make_service(core, namespace)
        start_controller()
        kubehelp.wait_leader(api, namespace, "web-0")
        pods.mark_running(api, namespace, "web-0", ip="10.244.0.10", ready=False)
        kubehelp.wait_leader(api, namespace, "web-1")
        event = kubehelp.wait_event(core, namespace, reason="LeaderChanged")
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)

    def decisive() -> Any:
        return next(
            (
                s
                for s in spans.get_finished_spans()
                if s.name == "leader.decide"
                and s.attributes.get("zenlead.changed")
                and s.attributes.get("zenlead.leader") == "web-1"
            ),
            None,
        )

    decide = helpers.poll(decisive, timeout=10, what="the span of the failover decision")

    def finished_trace() -> dict[int, Any] | None:
        # The reconcile span ends after the decision's, once its writes are done.
        trace_id = decide.context.trace_id
        found = {
            s.context.span_id: s
            for s in spans.get_finished_spans()
            if s.context.trace_id == trace_id
        }
        return found if decide.parent.span_id in found else None

    by_id = helpers.poll(finished_trace, timeout=10, what="the failover's reconcile span to end")
    trace = list(by_id.values())
    reconcile = by_id[decide.parent.span_id]
    assert reconcile.name == "reconcile"
    root = by_id[reconcile.parent.span_id]
    assert root.name == "event pod"
    assert root.parent is None
    children = {s.name for s in trace if s.parent and s.parent.span_id == reconcile.context.span_id}
    assert {"cache.read", "leader.decide", "api patch endpointslices"} <= children
    cid = reconcile.attributes["zenlead.correlation_id"]
    assert {s.attributes.get("zenlead.correlation_id") for s in trace} == {cid}
    assert event.metadata.annotations["zen-lead.io/correlation-id"] == cid
    changed = [r for r in records.records if "LeaderChanged" in r.getMessage()]
    assert changed
    assert changed[0].correlation_id == cid
