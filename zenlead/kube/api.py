"""Every Kubernetes API call zen-lead makes, as raw JSON, under a timeout and a client-side rate.

`Api` wraps the official client's generated methods with ``_preload_content=False`` so objects
stay plain dicts (no model deserialisation on the hot path), translates failures into the
`errors.KubeError` tree once (a 429 carries its Retry-After), applies a QPS/burst token bucket
like client-go's, and reports each call to an optional observer (the metrics module). Methods
block: informers call them from their own threads; everything on the event loop goes through
`kube.lanes`, which takes the rate token on the loop and passes per-call options (`Call`:
already paced, a timeout capped by the Lease's validity).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client import exceptions as kube_exceptions

from zenlead import errors, tracing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = (
    "ENDPOINTSLICES",
    "EVENTS",
    "LEASES",
    "PODS",
    "SERVICES",
    "Api",
    "Call",
    "CallObserver",
    "Resource",
    "TokenBucket",
)

MERGE_PATCH = "application/merge-patch+json"
RETRY_AFTER_MAX_SECONDS = 60
"""Longest Retry-After honoured; a larger value is capped (a broken server must not park us)."""
_MAX_EVENT_BYTES = 16 * 1024 * 1024  # One watch event larger than this is treated as an error.
_STATUS_ERRORS: dict[int, type[errors.KubeError]] = {
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    410: errors.GoneError,
    422: errors.InvalidError,
}


@dataclasses.dataclass(frozen=True)
class Resource:
    """A resource kind and where its methods live in the generated client."""

    plural: str
    api_class: str
    singular: str


SERVICES = Resource("services", "CoreV1Api", "service")
PODS = Resource("pods", "CoreV1Api", "pod")
EVENTS = Resource("events", "CoreV1Api", "event")
ENDPOINTSLICES = Resource("endpointslices", "DiscoveryV1Api", "endpoint_slice")
LEASES = Resource("leases", "CoordinationV1Api", "lease")


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """Per-call options.

    Attributes:
        paced: Wait for a client-side rate token in this thread first. False when the caller
            took its token already (`kube.lanes` waits for it on the event loop).
        timeout_seconds: Request timeout; None means the `Api`'s default.
        namespace: Set for list and watch calls (None: all namespaces).

    """

    paced: bool = True
    timeout_seconds: float | None = None
    namespace: str | None = None


class CallObserver(Protocol):
    """Receives one report per API call attempt (used for latency metrics)."""

    def __call__(self, *, operation: str, resource: str, result: str, seconds: float) -> None:
        """Record that `operation` on `resource` ended with `result` after `seconds`."""


class TokenBucket:
    """Client-side rate limit: `qps` tokens per second, up to `burst` saved (thread-safe).

    `reserve` takes a token and says how long to wait for it; the caller waits where it runs
    (a thread sleeps, the event loop awaits), so no thread is held just to wait for a token. An
    urgent reservation (a write that moves traffic, the Lease) never waits; the debt it leaves
    is paid by the next ordinary calls (Events, metadata syncs, start-up creates, relists), so
    ordinary work is paced at `qps` while a failover never queues behind bookkeeping.
    """

    def __init__(self, qps: float, burst: int) -> None:
        """Start full: `burst` tokens."""
        self._qps = qps
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, *, urgent: bool = False) -> float:
        """Take one token; return the seconds to wait before using it (0 when urgent)."""
        if self._qps <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._qps)
            self._stamp = now
            self._tokens -= 1.0
            return -self._tokens / self._qps if self._tokens < 0 and not urgent else 0.0

    def take(self) -> None:
        """Take one token, sleeping this thread until it is due (for blocking callers)."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)  # Rate limiting is waiting by definition; callers are threads.


class Api:
    """Blocking API calls on raw JSON with error translation, rate limit and timeouts."""

    def __init__(
        self,
        api_client: Any,
        *,
        timeout_seconds: float = 10.0,
        qps: float = 50.0,
        burst: int = 100,
        observer: CallObserver | None = None,
    ) -> None:
        """Wrap `api_client`; each call gets `timeout_seconds` and waits for a rate token."""
        self.api_client = api_client
        self.timeout_seconds = timeout_seconds
        self.bucket = TokenBucket(qps, burst)
        self._observer = observer
        self._apis: dict[str, Any] = {}

    def list(
        self,
        res: Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        """Return one page of a list (items, metadata.resourceVersion, metadata.continue)."""
        kwargs: dict[str, Any] = {"limit": limit}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        if continue_token:
            kwargs["_continue"] = continue_token
        method = self._list_method(res, namespace)
        return self._json("list", res, method, kwargs, Call(namespace=namespace))

    def get(self, res: Resource, namespace: str, name: str, **call: Any) -> dict[str, Any]:
        """Return one object (`call`: see `Call`)."""
        method = self._method(res, f"read_namespaced_{res.singular}")
        kwargs = {"name": name, "namespace": namespace}
        return self._json("get", res, method, kwargs, Call(**call))

    def create(
        self, res: Resource, namespace: str, body: dict[str, Any], **call: Any
    ) -> dict[str, Any]:
        """Create `body` and return the stored object."""
        method = self._method(res, f"create_namespaced_{res.singular}")
        kwargs = {"namespace": namespace, "body": body}
        return self._json("create", res, method, kwargs, Call(**call))

    def patch(
        self, res: Resource, namespace: str, name: str, body: dict[str, Any], **call: Any
    ) -> dict[str, Any]:
        """Apply a JSON merge patch; include metadata.resourceVersion in `body` to lock."""
        method = self._method(res, f"patch_namespaced_{res.singular}")
        kwargs = {"name": name, "namespace": namespace, "body": body, "_content_type": MERGE_PATCH}
        return self._json("patch", res, method, kwargs, Call(**call))

    def replace(
        self, res: Resource, namespace: str, name: str, body: dict[str, Any], **call: Any
    ) -> dict[str, Any]:
        """Replace the object (PUT); body.metadata.resourceVersion makes it conditional."""
        method = self._method(res, f"replace_namespaced_{res.singular}")
        kwargs = {"name": name, "namespace": namespace, "body": body}
        return self._json("replace", res, method, kwargs, Call(**call))

    def delete(
        self, res: Resource, namespace: str, name: str, *, uid: str | None = None, **call: Any
    ) -> None:
        """Delete the object; with `uid`, only if it is still that object (a precondition)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        method = self._method(res, f"delete_namespaced_{res.singular}")
        kwargs = {"name": name, "namespace": namespace, "body": body}
        self._json("delete", res, method, kwargs, Call(**call))

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        on_response: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield watch events (type, object) from `resource_version`, with bookmarks.

        `on_response` receives the open HTTP response so another thread can close it to stop
        the watch promptly.
        """
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
        }
        if label_selector:
            kwargs["label_selector"] = label_selector
        method = self._list_method(res, namespace)
        timeout = (self.timeout_seconds, timeout_seconds + self.timeout_seconds)
        response = self._call("watch", res, method, kwargs, Call(namespace=namespace), timeout)
        if on_response is not None:
            on_response(response)
        try:
            yield from _events(response)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise errors.UnavailableError(f"watch {res.plural} broke: {exc}") from exc
        finally:
            response.release_conn()

    # Internals -----------------------------------------------------------------------------

    def _api(self, res: Resource) -> Any:
        if res.api_class not in self._apis:
            self._apis[res.api_class] = getattr(client, res.api_class)(self.api_client)
        return self._apis[res.api_class]

    def _method(self, res: Resource, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self._api(res), name)
        return method

    def _list_method(self, res: Resource, namespace: str | None) -> Callable[..., Any]:
        if namespace is None:
            return self._method(res, f"list_{res.singular}_for_all_namespaces")
        return self._method(res, f"list_namespaced_{res.singular}")

    def _json(
        self,
        operation: str,
        res: Resource,
        method: Callable[..., Any],
        kwargs: dict[str, Any],
        call: Call,
    ) -> dict[str, Any]:
        timeout = call.timeout_seconds or self.timeout_seconds
        response = self._call(operation, res, method, kwargs, call, timeout)
        try:
            data = response.data
            decoded: dict[str, Any] = json.loads(data) if data else {}
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            # The headers came back; the body broke off or was not JSON. Same as no answer.
            raise errors.UnavailableError(f"{operation} {res.plural}: reading body: {exc}") from exc
        finally:
            response.release_conn()
        return decoded

    def _call(  # noqa: PLR0917 - private; every argument is needed per call.
        self,
        operation: str,
        res: Resource,
        method: Callable[..., Any],
        kwargs: dict[str, Any],
        call: Call,
        timeout: float | tuple[float, float],
    ) -> Any:
        if call.namespace is not None:
            kwargs = {"namespace": call.namespace, **kwargs}
        if call.paced:
            self.bucket.take()
        start = time.monotonic()
        result = "success"
        try:
            with tracing.span(f"api {operation} {res.plural}", namespace=call.namespace):
                return method(**kwargs, _preload_content=False, _request_timeout=timeout)
        except kube_exceptions.ApiException as exc:
            error = _translate(exc, f"{operation} {res.plural}")
            result = type(error).__name__.removesuffix("Error").lower()
            raise error from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            result = "unavailable"
            raise errors.UnavailableError(f"{operation} {res.plural}: {exc}") from exc
        finally:
            if self._observer is not None:
                self._observer(
                    operation=operation,
                    resource=res.plural,
                    result=result,
                    seconds=time.monotonic() - start,
                )


def _translate(exc: kube_exceptions.ApiException, what: str) -> errors.KubeError:
    status = int(exc.status or 0)
    reason, message = exc.reason or "", ""
    try:
        body = json.loads(exc.body or "{}")
        reason = body.get("reason") or reason
        message = body.get("message") or ""
    except (ValueError, AttributeError):
        message = str(exc.body or "")[:500]
    text = f"{what}: HTTP {status} {reason}: {message}".rstrip(": ")
    if status == 409 and reason == "AlreadyExists":  # noqa: PLR2004 - HTTP status
        return errors.AlreadyExistsError(text, status=status)
    if status == 0:  # The client's own wrapper of a connection or TLS failure: no answer.
        return errors.UnavailableError(text)
    if status == 429:  # noqa: PLR2004 - HTTP status
        return errors.ThrottledError(text, retry_after=_retry_after(exc.headers))
    kind = _STATUS_ERRORS.get(status)
    if kind is None:
        kind = errors.ServerError if status >= 500 else errors.KubeError  # noqa: PLR2004
    return kind(text, status=status)


def _retry_after(headers: Any) -> float:
    """Return the Retry-After of a 429 in seconds (1 when absent or not a number; at most 60)."""
    raw = str((headers or {}).get("Retry-After") or "")
    seconds = int(raw[:6]) if raw.isascii() and raw.isdigit() else 1
    return float(min(max(seconds, 1), RETRY_AFTER_MAX_SECONDS))


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """Split a watch stream into JSON events; refuse any single event over the size cap."""
    buffer = b""
    for chunk in response.stream(64 * 1024, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield _decode(line)
        if len(buffer) > _MAX_EVENT_BYTES:
            raise errors.UnavailableError(f"watch event larger than {_MAX_EVENT_BYTES} bytes")
    if buffer.strip():
        yield _decode(buffer)


def _decode(line: bytes) -> dict[str, Any]:
    try:
        event: dict[str, Any] = json.loads(line)
    except ValueError as exc:
        raise errors.UnavailableError(f"watch sent a line that is not JSON: {exc}") from exc
    return event
