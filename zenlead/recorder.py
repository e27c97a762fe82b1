"""Kubernetes Events on source Services, rate-limited and sent off the hot path.

The reconciler calls `Recorder.normal` / `Recorder.warning`; they only queue. `Recorder.run`
sends the queue in the background, so an Event never delays an EndpointSlice write. Per
Service a token bucket (burst 10, one token per 30 s by default) bounds what a flapping Service
can send, and an identical (reason, message) pair is sent at most once per 5 minutes; dropped
Events are counted in ``zen_lead_events_dropped_total{reason}``. Failures to send are logged and
never retried: Events are advisory.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from zenlead import errors, tracing
from zenlead.kube import api, lanes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from zenlead import metrics

__all__ = ("COMPONENT", "Recorder")

COMPONENT = "zen-lead-controller"
"""Event source component (upstream value)."""

CORRELATION_ANNOTATION = "zen-lead.io/correlation-id"
"""Annotation on each Event naming the work that emitted it (also in logs and spans)."""

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Bucket:
    tokens: float
    stamp: float
    recent: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)


class Recorder:
    """Queues Events per Service under a rate limit; `run` sends them."""

    def __init__(
        self,
        client: lanes.Lanes,
        *,
        metrics_: metrics.Metrics,
        burst: int = 10,
        refill_seconds: float = 30.0,
        dedupe_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        instance: str = "",
    ) -> None:
        """Send through `client`; limits per Service are `burst` and one per `refill_seconds`."""
        self._client = client
        self._metrics = metrics_
        self._burst = float(burst)
        self._refill = refill_seconds
        self._dedupe = dedupe_seconds
        self._clock = clock
        self._instance = instance
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](1000)

    def normal(self, source: Mapping[str, Any], reason: str, message: str) -> None:
        """Queue a Normal Event on `source`."""
        self._queue(source, "Normal", reason, message)

    def warning(self, source: Mapping[str, Any], reason: str, message: str) -> None:
        """Queue a Warning Event on `source`."""
        self._queue(source, "Warning", reason, message)

    async def run(self) -> None:
        """Send queued Events until cancelled; no failure of one Event stops the others."""
        async for body in self._receive:  # The stream stays open: a restarted run resumes.
            namespace = body["metadata"]["namespace"]
            try:
                await self._client.create(api.EVENTS, namespace, body, lane=lanes.Lane.ORDINARY)
            except (errors.KubeError, errors.CircuitOpenError) as exc:
                log.warning("could not record Event %s: %s", body["reason"], exc)
            except Exception:
                # Events are advisory: an unexpected failure is logged, never fatal.
                log.exception("could not record Event %s", body["reason"])

    def close(self) -> None:
        """Close the queue (controller shutdown); Events queued later are dropped and counted."""
        self._send.close()
        self._receive.close()

    def _queue(self, source: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = source.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        log.log(
            logging.WARNING if kind == "Warning" else logging.INFO,
            "%s %s/%s: %s",
            reason,
            key[0],
            key[1],
            message,
        )
        if not self._allow(key, reason, message):
            self._metrics.events_dropped.labels(reason).inc()
            return
        body = _event(meta, kind, reason, message, self._instance)
        cid = tracing.correlation_id()
        if cid:
            body["metadata"]["annotations"] = {CORRELATION_ANNOTATION: cid}
        try:
            self._send.send_nowait(body)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            self._metrics.events_dropped.labels(reason).inc()

    def _allow(self, key: tuple[str, str], reason: str, message: str) -> bool:
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(self._burst, now))
        last = bucket.recent.get((reason, message))
        if last is not None and now - last < self._dedupe:
            return False
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) / self._refill)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        bucket.recent = {k: t for k, t in bucket.recent.items() if now - t < self._dedupe}
        bucket.recent[(reason, message)] = now
        return True

    def forget(self, namespace: str, name: str) -> None:
        """Drop the rate-limit state of a Service that is gone."""
        self._buckets.pop((namespace, name), None)


def _event(
    meta: Mapping[str, Any], kind: str, reason: str, message: str, instance: str
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'zen-lead')}.{uuid.uuid4().hex[:16]}",
            "namespace": meta.get("namespace", ""),
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Service",
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
