"""Thread-safe local copies of watched objects, by namespace and name.

Informer threads write (`replace` after a list, `upsert`/`remove` per watch event); the
reconciler and the event mapping read. Stored objects are shared, never copied on read: callers
must treat them as read-only (pods are frozen dataclasses; Services and slices are raw dicts
that nothing in zen-lead mutates, which tests check).

Our own writes are *pinned* (the EndpointSlice controller's tracker, by resourceVersion): the
reconciler puts what the API server returned into the store at once (`pin`, `pin_deleted`),
and until the informer has seen that version, a relist or watch event from before our write is
not allowed to take it back. Without this, a list taken just before our create (delivered just
after it) drops the new slice from the cache, and the next reconcile's create fails with
AlreadyExists: a false conflict. Versions are compared as integers (etcd revisions); an object
whose resourceVersion is not a number is never pinned.

Indexes (client-go's Indexer): each named indexer maps an object to the index values it files
under (a pod's label pairs, a slice's source Service, ...), and the store keeps, per namespace
and value, the names of the objects filed there, updated by every write under the same lock.
`find_any` and `find_all` answer "which objects carry one / all of these values" in time
proportional to the answer, not to the namespace, which is what lets a pod event find the
Services that select it among thousands. An indexer that raises files the object nowhere
(logged): a broken object must not break the store.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ("Store",)

T = TypeVar("T")
log = logging.getLogger(__name__)

PIN_SECONDS = 300.0
"""A pin the informer never confirms (a lost watch event) is dropped after this long."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Pin:
    uid: str
    version: int | None  # None: we deleted the object.
    at: float


def _version(raw: Any) -> int | None:
    text = str(raw or "")
    return int(text) if text.isascii() and text.isdigit() else None


def _meta(obj: Any) -> tuple[str, int | None]:
    """Return (uid, resourceVersion) of a raw object."""
    meta = (obj.get("metadata") or {}) if isinstance(obj, dict) else {}
    return str(meta.get("uid") or ""), _version(meta.get("resourceVersion"))


class Store(Generic[T]):
    """Objects keyed by (namespace, name), with per-namespace listing."""

    def __init__(
        self,
        key: Callable[[T], tuple[str, str]],
        *,
        on_lookup: Callable[[bool], None] | None = None,
        indexers: Mapping[str, Callable[[T], Iterable[str]]] | None = None,
    ) -> None:
        """Create an empty store; `key` extracts (namespace, name) from an object.

        `on_lookup(hit)` (optional) hears about every `get`, for cache hit/miss metrics.
        `indexers` (optional): index name -> the values an object is filed under.
        """
        self._key = key
        self._lock = threading.Lock()
        self._by_ns: dict[str, dict[str, T]] = {}
        self._on_lookup = on_lookup
        self._pins: dict[tuple[str, str], _Pin] = {}
        self._indexers = dict(indexers or {})
        self._index: dict[str, dict[tuple[str, str], set[str]]] = {n: {} for n in self._indexers}

    def get(self, namespace: str, name: str) -> T | None:
        """Return the object, or None."""
        with self._lock:
            found = self._by_ns.get(namespace, {}).get(name)
        if self._on_lookup is not None:
            self._on_lookup(found is not None)
        return found

    def values(self, namespace: str | None = None) -> list[T]:
        """Return the objects of `namespace` (all namespaces when None)."""
        with self._lock:
            if namespace is not None:
                return list(self._by_ns.get(namespace, {}).values())
            return [obj for objs in self._by_ns.values() for obj in objs.values()]

    def count(self, namespace: str | None = None) -> int:
        """Return how many objects `namespace` (or the whole store) holds."""
        with self._lock:
            if namespace is not None:
                return len(self._by_ns.get(namespace, {}))
            return sum(len(objs) for objs in self._by_ns.values())

    def namespaces(self) -> list[str]:
        """Return the namespaces that hold at least one object."""
        with self._lock:
            return [ns for ns, objs in self._by_ns.items() if objs]

    def upsert(self, obj: T) -> T | None:
        """Store `obj`; return the object it replaced, if any."""
        namespace, name = self._key(obj)
        with self._lock:
            bucket = self._by_ns.setdefault(namespace, {})
            old = bucket.get(name)
            bucket[name] = obj
            self._refile(namespace, name, old, obj)
            return old

    def remove(self, namespace: str, name: str) -> T | None:
        """Drop the object; return it, or None if it was not stored."""
        with self._lock:
            old = self._by_ns.get(namespace, {}).pop(name, None)
            self._refile(namespace, name, old, None)
            return old

    def find_any(self, index: str, namespace: str, values: Iterable[str]) -> list[T]:
        """Return the objects of `namespace` filed under at least one of `values` in `index`."""
        with self._lock:
            table = self._index[index]
            found: set[str] = set()
            for value in values:
                found |= table.get((namespace, value), set())
            return self._objects(namespace, found)

    def find_all(self, index: str, namespace: str, values: Iterable[str]) -> list[T]:
        """Return the objects of `namespace` filed under every one of `values` (none: none)."""
        with self._lock:
            table = self._index[index]
            sets = [table.get((namespace, value), set()) for value in values]
            if not sets:
                return []
            smallest = min(sets, key=len)
            return self._objects(namespace, {n for n in smallest if all(n in s for s in sets)})

    def index_count(self, index: str, namespace: str, value: str) -> int:
        """Return how many objects of `namespace` are filed under `value` in `index`."""
        with self._lock:
            return len(self._index[index].get((namespace, value), ()))

    def _objects(self, namespace: str, found: Iterable[str]) -> list[T]:
        bucket = self._by_ns.get(namespace, {})
        return [bucket[name] for name in sorted(found) if name in bucket]

    def _refile(self, namespace: str, name: str, old: T | None, new: T | None) -> None:
        """Move `name` from `old`'s index values to `new`'s (lock held)."""
        if old is new or not self._indexers:
            return
        for index, indexer in self._indexers.items():
            table = self._index[index]
            before = self._values(indexer, old)
            after = self._values(indexer, new)
            for value in before - after:
                names = table.get((namespace, value))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del table[namespace, value]
            for value in after - before:
                table.setdefault((namespace, value), set()).add(name)

    @staticmethod
    def _values(indexer: Callable[[T], Iterable[str]], obj: T | None) -> set[str]:
        if obj is None:
            return set()
        try:
            return set(indexer(obj))
        except Exception:
            log.exception("indexer failed; the object is filed nowhere")
            return set()

    def replace(
        self, objs: Iterable[T], *, scope: str | None, version: str | None = None
    ) -> list[tuple[T | None, T | None]]:
        """Make `scope` (a namespace, or everything when None) hold exactly `objs`.

        `version` is the list's resourceVersion: pinned objects of ours newer than it are kept.
        Returns the (old, new) pairs that changed, so a relist after a broken watch produces
        the same notifications the missed events would have.
        """
        fresh: dict[str, dict[str, T]] = {}
        for obj in objs:
            namespace, name = self._key(obj)
            fresh.setdefault(namespace, {})[name] = obj
        listed = _version(version)
        changes: list[tuple[T | None, T | None]] = []
        with self._lock:
            scopes = [scope] if scope is not None else list(self._by_ns) + list(fresh)
            for ns in dict.fromkeys(scopes):
                before, after = self._by_ns.get(ns, {}), fresh.get(ns, {})
                self._keep_pinned(ns, before, after, listed)
                changes += [(before[n], None) for n in before if n not in after]
                changes += [(before.get(n), o) for n, o in after.items() if before.get(n) != o]
                for name in before.keys() | after.keys():
                    old, new = before.get(name), after.get(name)
                    if old != new:  # Equal objects file under equal values: nothing to move.
                        self._refile(ns, name, old, new)
                self._by_ns[ns] = after
        return changes

    def pin(self, obj: T) -> None:
        """Store `obj`, the API server's answer to our write, and pin its version.

        If the informer already stored that object at the same or a newer version (its watch
        event beat our answer back, perhaps with someone's later change), that is kept.
        """
        namespace, name = self._key(obj)
        uid, version = _meta(obj)
        with self._lock:
            bucket = self._by_ns.setdefault(namespace, {})
            held_uid, held_version = _meta(bucket.get(name))
            if version is not None and held_uid == uid and (held_version or -1) >= version:
                return
            self._refile(namespace, name, bucket.get(name), obj)
            bucket[name] = obj
            if version is not None:
                self._pins[namespace, name] = _Pin(uid, version, time.monotonic())

    def pin_deleted(self, namespace: str, name: str, uid: str) -> None:
        """Drop the object we deleted; older versions of it may not come back."""
        with self._lock:
            old = self._by_ns.get(namespace, {}).pop(name, None)
            self._refile(namespace, name, old, None)
            self._pins[namespace, name] = _Pin(uid, None, time.monotonic())

    def admit(self, obj: Any, *, deleted: bool) -> bool:
        """Tell whether a watch event about raw `obj` may change the store (pins permitting)."""
        meta = obj.get("metadata") or {}
        where = (meta.get("namespace", ""), meta.get("name", ""))
        uid, version = _meta(obj)
        with self._lock:
            pin = self._live_pin(where)
            if pin is None:
                return True
            if pin.version is None:  # We deleted it: only its deletion or a new object count.
                ok = deleted or uid != pin.uid
            else:
                ok = version is None or version >= pin.version
            if ok:
                del self._pins[where]
            return ok

    def _keep_pinned(
        self, ns: str, before: dict[str, T], after: dict[str, T], listed: int | None
    ) -> None:
        """Apply the pins of namespace `ns` to a relist (`after`, edited in place)."""
        for (pin_ns, name), pin in list(self._pins.items()):
            if pin_ns != ns or self._live_pin((pin_ns, name)) is None:
                continue
            if pin.version is None:
                if name in after and _meta(after[name])[0] == pin.uid:
                    del after[name]  # Listed before our delete went through.
                    continue
            elif listed is None or listed < pin.version:
                if name in before:
                    after[name] = before[name]  # Listed before our write: keep the write.
                continue
            del self._pins[pin_ns, name]

    def _live_pin(self, where: tuple[str, str]) -> _Pin | None:
        pin = self._pins.get(where)
        if pin is not None and time.monotonic() - pin.at > PIN_SECONDS:
            del self._pins[where]
            return None
        return pin
