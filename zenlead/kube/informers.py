"""List+watch loops that keep a `store.Store` current and report every change.

One `Informer` per (resource, namespace scope) runs in its own thread (`run`). It lists (in
pages), replaces the store and reports the differences, marks itself synced, then watches from
the list's resourceVersion with bookmarks. Any failure makes it list again, since only a
fresh list proves the cache current: a first 410 Gone (resourceVersion too old) at once,
everything else (and repeated 410s) after a backoff growing from 0.2 s to 5 s. The backoff
resets once a watch works again (delivers an event or ends normally), so a 403 during an API
server's RBAC bootstrap cannot leave a failover controller blind for half a minute, while a
watch that keeps failing right after a good list cannot turn into a loop of full lists.
`stop` ends it promptly by closing the open watch response.

Nothing ends the loop but `stop`: a handler or transform that raises is logged and counted
(the object is skipped), and an unexpected error backs off and relists like an API failure.
`staleness` says how long the informer has been out of touch: from its first failure until a
list succeeds again. The controller does not lead on a cache that is stale for too long. (A
watch that silently stops delivering, with no error, is noticed only when its read times out.)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from zenlead import errors

if TYPE_CHECKING:
    from collections.abc import Callable

    from zenlead.kube import api, store

__all__ = ("Informer",)

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_BACKOFF = 5.0
_MIN_BACKOFF = 0.2


class Informer(Generic[T]):
    """Keeps `target` equal to the API server's view of one resource in one scope."""

    def __init__(
        self,
        client: api.Api,
        resource: api.Resource,
        *,
        namespace: str | None,
        target: store.Store[T],
        transform: Callable[[dict[str, Any]], T],
        handler: Callable[[T | None, T | None, float], None],
        label_selector: str | None = None,
        before: Callable[[T | None, T | None, float], None] | None = None,
        watch_seconds: float = 300.0,
    ) -> None:
        """Watch `resource` in `namespace` (all when None); call `handler(old, new, seen_at)`.

        `before` (optional) sees each watch event before the store changes, `handler` after;
        anything a reconcile must find when it runs belongs in `before`.
        """
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.target = target
        self.transform = transform
        self.handler = handler
        self.label_selector = label_selector
        self.before = before
        self.watch_seconds = watch_seconds
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._response: Any = None
        self.name = f"{resource.plural}@{namespace or '*'}"
        self.scope = namespace or "*"
        self.resource_name = resource.plural
        self.relists = 0
        self.failures = 0
        self.handler_errors = 0
        self._lost_at: float | None = time.monotonic()  # Out of touch until the first list.
        self._delivered = False  # The current watch delivered an event or bookmark.

    def staleness(self) -> float:
        """Return seconds since this informer lost touch with the API server (0 while in touch)."""
        lost = self._lost_at
        return 0.0 if lost is None else time.monotonic() - lost

    def stop(self) -> None:
        """Ask `run` to return, closing the open watch so it does not wait for the timeout."""
        self._stopping.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:
                log.debug("closing watch %s failed", self.name, exc_info=True)

    def run(self) -> None:
        """List and watch until `stop`; never raises."""
        backoff = 0.0
        rv: str | None = None
        expired = 0
        while not self._stopping.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                    self.synced.set()
                self._delivered = False
                rv = self._watch(rv)
                backoff, expired = 0.0, 0  # The watch ran its course: a healthy stream.
            except Exception as exc:  # The loop must survive anything...
                if self._stopping.is_set():
                    break
                if self._delivered:
                    backoff = 0.0  # The watch worked for a while before this failure.
                self._delivered = False  # Until a watch delivers again: failed lists back off.
                self._lose()
                rv = None  # Only a fresh list proves the cache current again.
                if isinstance(exc, errors.GoneError):
                    expired += 1
                    log.info("%s: resourceVersion expired, relisting", self.name)
                    if expired == 1:
                        continue  # Relist at once; back off only if it keeps expiring.
                else:
                    self.failures += 1
                backoff = min(_MAX_BACKOFF, max(_MIN_BACKOFF, backoff * 2))
                if isinstance(exc, errors.ThrottledError):
                    backoff = max(backoff, exc.retry_after)  # The server said how long.
                if isinstance(exc, errors.KubeError):
                    log.warning("%s: %s; retrying in %.1fs", self.name, exc, backoff)
                else:
                    log.exception("%s failed; retrying in %.1fs", self.name, backoff)
                self._stopping.wait(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter

    def _lose(self) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()

    def _touch(self) -> None:
        self._lost_at = None

    def _relist(self) -> str:
        items: list[T] = []
        token: str | None = None
        while True:
            page = self.client.list(
                self.resource,
                self.namespace,
                label_selector=self.label_selector,
                continue_token=token,
            )
            items += [obj for raw in page.get("items") or () if (obj := self._project(raw))]
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                rv = str(meta.get("resourceVersion", ""))
                break
        self.relists += 1
        seen_at = time.monotonic()
        for old, new in self.target.replace(items, scope=self.namespace, version=rv):
            self._call(self.handler, old, new, seen_at)
        self._touch()
        return rv

    def _project(self, raw: dict[str, Any]) -> T | None:
        """Return `transform(raw)`, or None (logged, counted) when it fails."""
        try:
            return self.transform(raw)
        except Exception:
            self.handler_errors += 1
            log.exception("%s: cannot read %s", self.name, _name(raw))
            return None

    def _call(
        self, hook: Callable[[T | None, T | None, float], None], old: Any, new: Any, at: float
    ) -> None:
        """Run a handler; an exception is logged and counted, never raised into the loop."""
        try:
            hook(old, new, at)
        except Exception:
            self.handler_errors += 1
            log.exception("%s: handler failed for %s", self.name, _name(new or old))

    def _watch(self, rv: str) -> str:
        """Watch from `rv` until the server ends the stream; return the last resourceVersion."""

        def keep(response: Any) -> None:
            self._response = response

        events = self.client.watch(
            self.resource,
            self.namespace,
            resource_version=rv,
            label_selector=self.label_selector,
            # The server ends each watch after this long (spread, so reconnects do not align).
            timeout_seconds=max(1, round(self.watch_seconds * random.uniform(0.8, 1.0))),  # noqa: S311
            on_response=keep,
        )
        try:
            for event in events:
                if self._stopping.is_set():
                    break
                rv = self._apply(event) or rv
        finally:
            self._response = None
        return rv

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        raw = event.get("object") or {}
        if kind != "ERROR":
            self._delivered = True
        if kind == "ERROR":
            code = int(raw.get("code") or 0)
            message = f"watch {self.name}: {raw.get('message', raw)}"
            if code == 410:  # noqa: PLR2004 - HTTP Gone
                raise errors.GoneError(message, status=code)
            raise errors.KubeError(message, status=code)
        rv = (raw.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return str(rv) if rv else None
        seen_at = time.monotonic()
        deleted = kind == "DELETED"
        if not self.target.admit(raw, deleted=deleted):
            return str(rv) if rv else None  # Older than a write of ours already in the store.
        obj = self._project(raw)
        if obj is None:
            return str(rv) if rv else None
        meta = raw.get("metadata") or {}
        old = self.target.get(meta.get("namespace", ""), meta.get("name", ""))
        new = None if deleted else obj
        if old == new:
            return str(rv) if rv else None
        if self.before is not None:
            self._call(self.before, old, new, seen_at)
        if new is None:
            self.target.remove(meta.get("namespace", ""), meta.get("name", ""))
            self._call(self.handler, old or obj, None, seen_at)
        else:
            self.target.upsert(new)
            self._call(self.handler, old, new, seen_at)
        return str(rv) if rv else None


def _name(raw: Any) -> str:
    meta = (raw.get("metadata") or {}) if isinstance(raw, dict) else {}
    if not meta and raw is not None:
        return repr(raw)[:80]
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
