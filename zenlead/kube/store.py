"""Thread-safe local copies of watched objects, by namespace and name.

Informer threads write (`replace` after a list, `upsert`/`remove` per watch event); the
reconciler and the event mapping read. Stored objects are shared, never copied on read: callers
must treat them as read-only (pods are frozen dataclasses; Services and slices are raw dicts
that nothing in zen-lead mutates, which tests check).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ("Store",)

T = TypeVar("T")


class Store(Generic[T]):
    """Objects keyed by (namespace, name), with per-namespace listing."""

    def __init__(
        self,
        key: Callable[[T], tuple[str, str]],
        *,
        on_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        """Create an empty store; `key` extracts (namespace, name) from an object.

        `on_lookup(hit)` (optional) hears about every `get`, for cache hit/miss metrics.
        """
        self._key = key
        self._lock = threading.Lock()
        self._by_ns: dict[str, dict[str, T]] = {}
        self._on_lookup = on_lookup

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
            return old

    def remove(self, namespace: str, name: str) -> T | None:
        """Drop the object; return it, or None if it was not stored."""
        with self._lock:
            return self._by_ns.get(namespace, {}).pop(name, None)

    def replace(self, objs: Iterable[T], *, scope: str | None) -> list[tuple[T | None, T | None]]:
        """Make `scope` (a namespace, or everything when None) hold exactly `objs`.

        Returns the (old, new) pairs that changed, so a relist after a broken watch produces
        the same notifications the missed events would have.
        """
        fresh: dict[str, dict[str, T]] = {}
        for obj in objs:
            namespace, name = self._key(obj)
            fresh.setdefault(namespace, {})[name] = obj
        changes: list[tuple[T | None, T | None]] = []
        with self._lock:
            scopes = [scope] if scope is not None else list(self._by_ns) + list(fresh)
            for ns in dict.fromkeys(scopes):
                before, after = self._by_ns.get(ns, {}), fresh.get(ns, {})
                changes += [(before[n], None) for n in before if n not in after]
                changes += [(before.get(n), o) for n, o in after.items() if before.get(n) != o]
                self._by_ns[ns] = after
        return changes
