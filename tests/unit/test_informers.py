"""Informer list+watch logic: sync, events, bookmarks, relist on 410 Gone (fake API, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

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


def test_handler_that_raises_is_contained() -> None:
    """A handler that raises for one object is counted; later objects are still handled."""
    fake = FakeApi(
        lists=[[]],
        watches=[
            [
                {"type": "ADDED", "object": _svc("bad", "2")},
                {"type": "ADDED", "object": _svc("good", "3")},
            ]
        ],
    )
    target: store.Store[dict[str, Any]] = store.Store(
        lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])
    )
    seen: list[str] = []

    def handler(_old: Any, new: Any, _at: float) -> None:
        name = new["metadata"]["name"]
        if name == "bad":
            raise RecursionError("maximum recursion depth exceeded")
        seen.append(name)

    informer = informers.Informer(
        fake,  # type: ignore[arg-type]
        api.SERVICES,
        namespace="ns",
        target=target,
        transform=lambda raw: raw,
        handler=handler,
    )
    fake.informer = informer
    informer.run()
    assert seen == ["good"]
    assert informer.handler_errors == 1
    assert sorted(o["metadata"]["name"] for o in target.values()) == ["bad", "good"]


def test_unexpected_error_relists_instead_of_ending() -> None:
    """An error that is no API error (a bug) backs off and relists; the loop never ends."""
    fake = FakeApi(lists=[[_svc("a", "1")], [_svc("a", "1")]], watches=[ValueError("bug")])
    _run(fake)
    assert fake.list_calls == 2


def test_staleness_counts_from_the_failure_until_back_in_touch() -> None:
    """Out of touch from the first failure; a successful list puts it back in touch."""
    fake = FakeApi(lists=[[]], watches=[])
    informer = _informer(fake)
    assert informer.staleness() >= 0  # Not in touch before the first list.
    informer._lose()
    informer._lost_at = informer._lost_at - 12.0  # type: ignore[operator]
    assert informer.staleness() >= 12.0
    fake.informer = informer
    informer.run()
    assert informer.staleness() == 0.0
    assert informer.relists == 1


def test_backoff_resets_once_a_watch_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failures right after good lists keep backing off; a watch that delivers resets it."""
    monkeypatch.setattr(informers.random, "uniform", lambda _low, _high: 1.0)
    waits: list[float] = []

    forbidden = errors.ForbiddenError("rbac bootstrap", status=403)
    fake = FakeApi(lists=[[]], watches=[forbidden, forbidden, _delivers_then_breaks(), forbidden])
    _run_recording_waits(fake, waits)
    assert waits == pytest.approx([0.2, 0.4, 0.2, 0.4])
    assert fake.list_calls == 5, "every failure relists: only a list proves the cache current"


def test_repeated_expiry_backs_off() -> None:
    """A first 410 relists at once; a second in a row waits (no loop of full lists)."""
    waits: list[float] = []
    gone = errors.GoneError("too old", status=410)
    fake = FakeApi(lists=[[]], watches=[gone, gone, gone])
    _run_recording_waits(fake, waits)
    assert len(waits) == 2
    assert waits[0] > 0


def test_failed_relists_keep_backing_off_after_a_good_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A watch that delivered, then broke, resets the backoff once; failed relists then grow it."""
    monkeypatch.setattr(informers.random, "uniform", lambda _low, _high: 1.0)
    waits: list[float] = []

    class Failing(FakeApi):
        def list(self, res: api.Resource, namespace: str | None, **kw: Any) -> dict[str, Any]:
            if self.list_calls >= 1:
                self.list_calls += 1
                if self.list_calls > 6:
                    assert self.informer is not None
                    self.informer.stop()
                raise errors.ServerError("etcd gone", status=500)
            return super().list(res, namespace, **kw)

    fake = Failing(lists=[[]], watches=[_delivers_then_breaks()])
    _run_recording_waits(fake, waits)
    assert waits[:5] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2])


def _informer(fake: FakeApi) -> informers.Informer[Any]:
    """Return an informer of Services in "ns" on `fake` that ignores what it hears."""
    made: informers.Informer[Any] = informers.Informer(
        fake,  # type: ignore[arg-type]
        api.SERVICES,
        namespace="ns",
        target=store.Store(lambda o: ("ns", o["metadata"]["name"])),
        transform=lambda raw: raw,
        handler=lambda *_args: None,
    )
    fake.informer = made
    return made


def _run_recording_waits(fake: FakeApi, waits: list[float]) -> informers.Informer[Any]:
    """Run an informer on `fake` to its end, recording each backoff it waited instead."""
    informer = _informer(fake)
    informer._stopping.wait = lambda seconds: waits.append(seconds) or False  # type: ignore[method-assign,func-returns-value]
    informer.run()
    return informer


def _delivers_then_breaks() -> Any:
    """Yield one watch event, then fail like an API server going away."""
    yield {"type": "ADDED", "object": _svc("a", "5")}
    raise errors.UnavailableError("API server restarting")
