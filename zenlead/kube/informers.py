"""List+watch loops that keep a `store.Store` current and report every change.

One `Informer` per (resource, namespace scope) runs in its own thread (`run`). It lists (in
pages), replaces the store and reports the differences, marks itself synced, then watches from
the list's resourceVersion with bookmarks. A 410 Gone (resourceVersion too old) or a broken
watch that cannot resume makes it relist; other failures back off exponentially (up to 30 s).
`stop` ends it promptly by closing the open watch response.
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

_MAX_BACKOFF = 30.0


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
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._response: Any = None
        self.name = f"{resource.plural}@{namespace or '*'}"

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
        """List and watch until `stop`; never raises for API failures."""
        backoff = 0.0
        rv: str | None = None
        while not self._stopping.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                    self.synced.set()
                rv = self._watch(rv)
                backoff = 0.0
            except errors.GoneError:
                log.info("%s: resourceVersion expired, relisting", self.name)
                rv = None
            except errors.KubeError as exc:
                if self._stopping.is_set():
                    break
                backoff = min(_MAX_BACKOFF, max(0.2, backoff * 2))
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, backoff)
                self._stopping.wait(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                if isinstance(exc, errors.UnavailableError):
                    rv = None  # Events may have been missed while the server was away.

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
            items += [self.transform(raw) for raw in page.get("items") or ()]
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                rv = str(meta.get("resourceVersion", ""))
                break
        seen_at = time.monotonic()
        for old, new in self.target.replace(items, scope=self.namespace):
            self.handler(old, new, seen_at)
        return rv

    def _watch(self, rv: str) -> str:
        """Watch from `rv` until the server ends the stream; return the last resourceVersion."""

        def keep(response: Any) -> None:
            self._response = response

        events = self.client.watch(
            self.resource,
            self.namespace,
            resource_version=rv,
            label_selector=self.label_selector,
            timeout_seconds=random.randint(240, 300),  # noqa: S311 - spread reconnects
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
        obj = self.transform(raw)
        meta = raw.get("metadata") or {}
        old = self.target.get(meta.get("namespace", ""), meta.get("name", ""))
        new = None if kind == "DELETED" else obj
        if old == new:
            return str(rv) if rv else None
        if self.before is not None:
            self.before(old, new, seen_at)
        if new is None:
            self.target.remove(meta.get("namespace", ""), meta.get("name", ""))
            self.handler(old or obj, None, seen_at)
        else:
            self.target.upsert(new)
            self.handler(old, new, seen_at)
        return str(rv) if rv else None
