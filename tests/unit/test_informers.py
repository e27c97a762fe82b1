"""Informer list+watch logic: sync, events, bookmarks, relist on 410 Gone (fake API, no I/O)."""

from __future__ import annotations

from typing import Any

from zenlead import errors
from zenlead.kube import api, informers, store


def _svc(name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv, "labels": labels}}


class FakeApi:
    """Serves scripted list pages and watch streams, and records what was asked."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[Any]) -> None:
        """Serve `lists` (the last one repeats) and `watches` in order, then stop."""
        self.lists = lists
        self.watches = watches
        self.watch_rvs: list[str] = []
        self.list_calls = 0
        self.informer: informers.Informer[Any] | None = None

    def list(self, res: api.Resource, namespace: str | None, **_kw: Any) -> dict[str, Any]:
        """Return the next scripted list page."""
        items = self.lists[min(self.list_calls, len(self.lists) - 1)]
        self.list_calls += 1
        return {"items": items, "metadata": {"resourceVersion": f"L{self.list_calls}"}}

    def watch(self, res: api.Resource, namespace: str | None, **kw: Any) -> Any:
        """Return the next scripted watch stream (or raise it); stop when none is left."""
        self.watch_rvs.append(kw["resource_version"])
        if not self.watches:
            assert self.informer is not None
            self.informer.stop()
            return iter(())
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        return iter(script)


def _run(fake: FakeApi) -> tuple[store.Store[dict[str, Any]], list[tuple[Any, Any]]]:
    target: store.Store[dict[str, Any]] = store.Store(
        lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])
    )
    seen: list[tuple[Any, Any]] = []
    informer = informers.Informer(
        fake,  # type: ignore[arg-type]
        api.SERVICES,
        namespace="ns",
        target=target,
        transform=lambda raw: raw,
        handler=lambda old, new, _at: seen.append((old, new)),
    )
    fake.informer = informer
    informer.run()
    assert informer.synced.is_set()
    return target, seen


def test_list_then_watch_events() -> None:
    """The list fills the store; ADDED, MODIFIED and DELETED events keep it current."""
    fake = FakeApi(
        lists=[[_svc("a", "1")]],
        watches=[
            [
                {"type": "ADDED", "object": _svc("b", "2")},
                {"type": "MODIFIED", "object": _svc("a", "3", x="y")},
                {"type": "DELETED", "object": _svc("b", "4")},
            ]
        ],
    )
    target, seen = _run(fake)
    assert [o["metadata"]["name"] for o in target.values()] == ["a"]
    assert target.get("ns", "a")["metadata"]["labels"] == {"x": "y"}
    kinds = [(old is None, new is None) for old, new in seen]
    assert kinds == [(True, False), (True, False), (False, False), (False, True)]
    assert fake.watch_rvs == ["L1", "4"]


def test_bookmark_moves_resource_version() -> None:
    """A BOOKMARK changes nothing in the store but the next watch resumes from its version."""
    fake = FakeApi(
        lists=[[]],
        watches=[[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "99"}}}]],
    )
    target, seen = _run(fake)
    assert target.count() == 0
    assert seen == []
    assert fake.watch_rvs == ["L1", "99"]


def test_gone_relists_and_reports_missed_changes() -> None:
    """A 410 ERROR event makes the informer list again; missed changes arrive as notifications."""
    fake = FakeApi(
        lists=[[_svc("a", "1")], [_svc("a", "5", new="1"), _svc("c", "6")]],
        watches=[[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]],
    )
    target, seen = _run(fake)
    assert fake.list_calls == 2
    assert sorted(o["metadata"]["name"] for o in target.values()) == ["a", "c"]
    changed = {(new or old)["metadata"]["name"] for old, new in seen[1:]}
    assert changed == {"a", "c"}


def test_outage_relists_after_backoff() -> None:
    """An unreachable API server makes the informer back off, then list again."""
    fake = FakeApi(
        lists=[[_svc("a", "1")], [_svc("a", "1")]],
        watches=[errors.UnavailableError("connection refused")],
    )
    _run(fake)
    assert fake.list_calls == 2
