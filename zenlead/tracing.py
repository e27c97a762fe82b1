"""Tracing and correlation ids: OpenTelemetry spans when enabled, no-ops otherwise.

Everything that wants a span calls `span(name, **attributes)`; with tracing off (the default,
or the ``otel`` extra not installed) it costs a context-manager call and nothing else.

A *correlation id* names the event that started a piece of work: the informer notification
that showed a pod failing, a probe verdict turning down. `Trigger` objects carry it, with the
span context of that first moment, from the informer thread to the reconcile it causes; the
reconcile binds it (`bound`) so that logs (`CorrelationFilter`), Events (an annotation) and
spans (an attribute) all carry the same id. A failover therefore produces one trace::

    event <kind>                      (informer thread or probe verdict; root)
    └── reconcile                     (zenlead.key, zenlead.correlation_id)
        ├── leader.decide             (zenlead.leader, zenlead.cause)
        ├── api patch endpointslices  (one per API call; also list/watch/get/create/delete)
        └── api patch services

Probe rounds are spans of their own traces (``probe <kind>``), linked to nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = (
    "Trigger",
    "bound",
    "configure",
    "correlation_id",
    "enabled",
    "span",
    "trigger",
)

_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zenlead_correlation_id", default=None
)
_tracer: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Trigger:
    """What started a reconcile: a correlation id and (when tracing) its span context."""

    correlation_id: str
    context: Any = None


def enabled() -> bool:
    """Return True when spans are recorded."""
    return _tracer is not None


def configure(*, sample_ratio: float, otlp_endpoint: str | None, exporter: Any = None) -> None:
    """Turn tracing on with `sample_ratio` (0 leaves it off); export via OTLP or `exporter`.

    Raises ImportError naming the missing extra when OpenTelemetry is not installed.
    """
    global _tracer  # noqa: PLW0603 - one tracer per process, set once at start-up.
    if sample_ratio <= 0:
        _tracer = None
        return
    try:
        from opentelemetry import trace  # noqa: PLC0415 - optional dependency.
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider, sampling  # noqa: PLC0415
        from opentelemetry.sdk.trace import export as sdk_export  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError("tracing needs the otel extra: pip install 'zen-lead[otel]'") from exc
    provider = TracerProvider(
        resource=Resource.create({"service.name": "zen-lead"}),
        sampler=sampling.ParentBased(sampling.TraceIdRatioBased(sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(sdk_export.SimpleSpanProcessor(exporter))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter  # noqa: PLC0415

        otlp = trace_exporter.OTLPSpanExporter(endpoint=otlp_endpoint)
        provider.add_span_processor(sdk_export.BatchSpanProcessor(otlp))
    _tracer = trace.get_tracer("zenlead", tracer_provider=provider)


@contextlib.contextmanager
def span(name: str, *, parent: Any = None, **attributes: Any) -> Iterator[Any]:
    """Record a span named `name` (a no-op when tracing is off); yields the span or None."""
    if _tracer is None:
        yield None
        return
    attrs = {f"zenlead.{k}": v for k, v in attributes.items() if v is not None}
    cid = _CORRELATION.get()
    if cid is not None:
        attrs["zenlead.correlation_id"] = cid
    with _tracer.start_as_current_span(name, context=parent, attributes=attrs) as current:
        yield current


def trigger(kind: str, **attributes: Any) -> Trigger:
    """Start the story of an event: a new correlation id and a short root span for it."""
    cid = uuid.uuid4().hex[:16]
    if _tracer is None:
        return Trigger(cid)
    from opentelemetry import trace  # noqa: PLC0415 - present whenever _tracer is set.

    token = _CORRELATION.set(cid)
    try:
        with span(f"event {kind}", **attributes) as root:
            context = trace.set_span_in_context(root)
    finally:
        _CORRELATION.reset(token)
    return Trigger(cid, context)


def correlation_id() -> str | None:
    """Return the correlation id of the work in progress, if any."""
    return _CORRELATION.get()


@contextlib.contextmanager
def bound(trig: Trigger | None) -> Iterator[str]:
    """Make `trig`'s correlation id (a fresh one when None) current for logs, Events, spans."""
    cid = trig.correlation_id if trig is not None else uuid.uuid4().hex[:16]
    token = _CORRELATION.set(cid)
    try:
        yield cid
    finally:
        _CORRELATION.reset(token)


class CorrelationFilter(logging.Filter):
    """Adds ``correlation_id``, ``trace_id`` and ``span_id`` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate `record`; never drops it."""
        record.correlation_id = _CORRELATION.get() or ""
        record.trace_id, record.span_id = _current_ids()
        return True


def _current_ids() -> tuple[str, str]:
    if _tracer is None:
        return "", ""
    from opentelemetry import trace  # noqa: PLC0415

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
