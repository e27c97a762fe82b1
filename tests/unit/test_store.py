"""The informer store keeps objects by namespace and name and reports what a relist changed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zenlead.kube.store import Store


def obj(namespace: str, name: str, version: str = "1") -> dict[str, Any]:
    """Return a minimal raw object."""
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


def key(raw: dict[str, Any]) -> tuple[str, str]:
    """Return (namespace, name) of a raw object."""
    return raw["metadata"]["namespace"], raw["metadata"]["name"]


def filled(*objs: dict[str, Any]) -> Store[dict[str, Any]]:
    """Return a store holding `objs`."""
    store: Store[dict[str, Any]] = Store(key)
    for item in objs:
        store.upsert(item)
    return store


def names(pairs: list[tuple[Any, Any]]) -> set[tuple[str | None, str | None]]:
    """Render (old, new) pairs as (old ns/name@version, new ns/name@version) for comparison."""

    def render(raw: dict[str, Any] | None) -> str | None:
        if raw is None:
            return None
        meta = raw["metadata"]
        return f"{meta['namespace']}/{meta['name']}@{meta['resourceVersion']}"

    return {(render(old), render(new)) for old, new in pairs}


def test_empty_store() -> None:
    """A new store holds nothing."""
    store = filled()
    assert store.get("ns", "a") is None
    assert store.values() == []
    assert store.values("ns") == []
    assert store.count() == 0
    assert store.count("ns") == 0
    assert store.namespaces() == []


def test_upsert_returns_replaced_object() -> None:
    """Store.upsert returns None for a new key and the previous object for an existing one."""
    store = filled()
    first, second = obj("ns", "a", "1"), obj("ns", "a", "2")
    assert store.upsert(first) is None
    assert store.upsert(second) is first
    assert store.get("ns", "a") is second
    assert store.count() == 1


def test_remove() -> None:
    """Store.remove returns the stored object once, then None."""
    item = obj("ns", "a")
    store = filled(item)
    assert store.remove("ns", "a") is item
    assert store.remove("ns", "a") is None
    assert store.remove("other", "a") is None
    assert store.get("ns", "a") is None
    assert store.count() == 0
    assert store.namespaces() == []


def test_values_and_count_by_namespace() -> None:
    """Store.values and Store.count list one namespace, or every namespace when none is given."""
    a, b, c = obj("ns1", "a"), obj("ns1", "b"), obj("ns2", "c")
    store = filled(a, b, c)
    assert store.values("ns1") == [a, b]
    assert store.values("ns2") == [c]
    assert store.values("absent") == []
    assert sorted(map(key, store.values())) == [("ns1", "a"), ("ns1", "b"), ("ns2", "c")]
    assert (store.count("ns1"), store.count("ns2"), store.count("absent")) == (2, 1, 0)
    assert store.count() == 3
    assert sorted(store.namespaces()) == ["ns1", "ns2"]


def test_same_name_in_two_namespaces() -> None:
    """Objects with the same name in different namespaces are distinct entries."""
    store = filled(obj("ns1", "a", "1"), obj("ns2", "a", "2"))
    assert store.get("ns1", "a") == obj("ns1", "a", "1")
    assert store.get("ns2", "a") == obj("ns2", "a", "2")
    store.remove("ns1", "a")
    assert store.get("ns2", "a") == obj("ns2", "a", "2")


def test_values_is_a_snapshot() -> None:
    """The list returned by values does not change when the store does."""
    store = filled(obj("ns", "a"))
    listed = store.values("ns")
    store.upsert(obj("ns", "b"))
    assert len(listed) == 1


@pytest.mark.parametrize(
    ("before", "relist", "scope", "changes", "after"),
    [
        pytest.param([], [], "ns1", set(), [], id="empty-stays-empty"),
        pytest.param(
            [],
            [obj("ns1", "a")],
            "ns1",
            {(None, "ns1/a@1")},
            [("ns1", "a")],
            id="added",
        ),
        pytest.param(
            [obj("ns1", "a")],
            [],
            "ns1",
            {("ns1/a@1", None)},
            [],
            id="removed",
        ),
        pytest.param(
            [obj("ns1", "a", "1")],
            [obj("ns1", "a", "2")],
            "ns1",
            {("ns1/a@1", "ns1/a@2")},
            [("ns1", "a")],
            id="changed",
        ),
        pytest.param(
            [obj("ns1", "a")],
            [obj("ns1", "a")],
            "ns1",
            set(),
            [("ns1", "a")],
            id="equal-object-is-no-change",
        ),
        pytest.param(
            [obj("ns1", "a", "1"), obj("ns1", "b"), obj("ns1", "keep")],
            [obj("ns1", "a", "2"), obj("ns1", "c"), obj("ns1", "keep")],
            "ns1",
            {("ns1/a@1", "ns1/a@2"), ("ns1/b@1", None), (None, "ns1/c@1")},
            [("ns1", "a"), ("ns1", "c"), ("ns1", "keep")],
            id="mixed",
        ),
        pytest.param(
            [obj("ns1", "a"), obj("ns2", "x")],
            [],
            "ns1",
            {("ns1/a@1", None)},
            [("ns2", "x")],
            id="scope-leaves-other-namespaces-alone",
        ),
        pytest.param(
            [obj("ns2", "x")],
            [obj("ns1", "a")],
            "ns1",
            {(None, "ns1/a@1")},
            [("ns1", "a"), ("ns2", "x")],
            id="scope-adds-without-touching-others",
        ),
        pytest.param(
            [],
            [obj("ns1", "a"), obj("ns2", "b")],
            None,
            {(None, "ns1/a@1"), (None, "ns2/b@1")},
            [("ns1", "a"), ("ns2", "b")],
            id="all-namespaces-added",
        ),
        pytest.param(
            [obj("ns1", "a"), obj("ns2", "x", "1"), obj("ns3", "gone")],
            [obj("ns2", "x", "2"), obj("ns4", "new")],
            None,
            {
                ("ns1/a@1", None),
                ("ns2/x@1", "ns2/x@2"),
                ("ns3/gone@1", None),
                (None, "ns4/new@1"),
            },
            [("ns2", "x"), ("ns4", "new")],
            id="all-namespaces-mixed",
        ),
        pytest.param(
            [obj("ns1", "a"), obj("ns2", "b")],
            [obj("ns1", "a"), obj("ns2", "b")],
            None,
            set(),
            [("ns1", "a"), ("ns2", "b")],
            id="all-namespaces-unchanged",
        ),
    ],
)
def test_replace(
    before: list[dict[str, Any]],
    relist: list[dict[str, Any]],
    scope: str | None,
    changes: set[tuple[str | None, str | None]],
    after: list[tuple[str, str]],
) -> None:
    """Store.replace makes the scope hold exactly the relist and returns only the changes."""
    store = filled(*before)
    result = store.replace(relist, scope=scope)
    assert len(result) == len(changes)
    assert names(result) == changes
    assert sorted(map(key, store.values())) == after
    assert store.count() == len(after)


def test_replace_returns_the_stored_objects() -> None:
    """The pairs carry the very objects that were stored and that are now stored."""
    old, new = obj("ns", "a", "1"), obj("ns", "a", "2")
    store = filled(old)
    assert store.replace([new], scope="ns") == [(old, new)]
    assert store.get("ns", "a") is new


def test_replace_empties_namespace_listing() -> None:
    """A namespace emptied by replace no longer appears in namespaces()."""
    store = filled(obj("ns1", "a"), obj("ns2", "b"))
    store.replace([], scope="ns1")
    assert store.namespaces() == ["ns2"]
    store.replace([], scope=None)
    assert store.namespaces() == []
    assert store.count() == 0


def ours(name: str, version: str, uid: str = "u1") -> dict[str, Any]:
    """Return a raw object with a uid, as the API server answers a write."""
    raw = obj("ns", name, version)
    raw["metadata"]["uid"] = uid
    return raw


class TestPins:
    """Our own writes are not taken back by a relist or watch event from before them."""

    def test_relist_older_than_our_create_keeps_it(self) -> None:
        """A list at version 5 delivered after our create at version 7 does not drop it."""
        store = filled()
        store.pin(ours("s", "7"))
        store.replace([], scope="ns", version="5")
        assert store.get("ns", "s") == ours("s", "7")
        store.replace([], scope="ns", version="8")
        assert store.get("ns", "s") is None, "a list after our write is believed"

    def test_relist_older_than_our_patch_keeps_the_patch(self) -> None:
        """A list showing the version before our patch does not roll the patch back."""
        store = filled(ours("s", "3"))
        store.pin(ours("s", "9"))
        store.replace([ours("s", "3")], scope="ns", version="6")
        assert store.get("ns", "s")["metadata"]["resourceVersion"] == "9"

    def test_watch_event_older_than_our_write_is_ignored(self) -> None:
        """A MODIFIED event below our version is refused; ours, or newer, is admitted."""
        store = filled()
        store.pin(ours("s", "9"))
        assert not store.admit(ours("s", "8"), deleted=False)
        assert store.admit(ours("s", "9"), deleted=False)
        assert store.admit(ours("s", "8"), deleted=False), "the pin is gone once confirmed"

    def test_deleted_object_does_not_come_back(self) -> None:
        """After our delete, a relist or event still showing the object does not restore it."""
        store = filled(ours("s", "3"))
        store.pin_deleted("ns", "s", "u1")
        store.replace([ours("s", "3")], scope="ns", version="4")
        assert store.get("ns", "s") is None
        assert not store.admit(ours("s", "3"), deleted=False)
        assert store.admit(ours("s", "5"), deleted=True)

    def test_new_object_of_that_name_is_admitted(self) -> None:
        """Someone creating a new object (new uid) under the deleted name is seen at once."""
        store = filled(ours("s", "3"))
        store.pin_deleted("ns", "s", "u1")
        store.replace([ours("s", "12", uid="u2")], scope="ns", version="12")
        assert store.get("ns", "s")["metadata"]["uid"] == "u2"

    def test_non_numeric_versions_are_not_pinned(self) -> None:
        """Without comparable versions there is no pin: the informer's view wins as before."""
        store = filled()
        store.pin(ours("s", "abc"))
        store.replace([], scope="ns", version="1")
        assert store.get("ns", "s") is None

    def test_unconfirmed_pins_expire(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A pin never confirmed by the informer is dropped after PIN_SECONDS."""
        from zenlead.kube import store as store_mod  # noqa: PLC0415

        now = [1000.0]
        monkeypatch.setattr(store_mod.time, "monotonic", lambda: now[0])
        store = filled()
        store.pin(ours("s", "7"))
        now[0] += store_mod.PIN_SECONDS + 1
        store.replace([], scope="ns", version="5")
        assert store.get("ns", "s") is None

    def test_late_pin_does_not_overwrite_a_newer_version(self) -> None:
        """If the watch already delivered our write and a newer change, the pin keeps those."""
        store = filled(ours("s", "101"))
        store.pin(ours("s", "100"))
        assert store.get("ns", "s")["metadata"]["resourceVersion"] == "101"
        assert store.admit(ours("s", "100"), deleted=False) is True, "no pin was left behind"


# Indexes ---------------------------------------------------------------------------------------

LABEL_KEYS = ("app", "tier", "zone")
LABEL_VALUES = ("a", "b")


def labelled(namespace: str, name: str, version: int, labels: dict[str, str]) -> dict[str, Any]:
    """Return a raw object with labels (filed under each ``key=value`` pair)."""
    item = obj(namespace, name, str(version))
    item["metadata"]["labels"] = labels
    item["metadata"]["uid"] = f"uid-{name}"
    return item


def pairs(raw: dict[str, Any]) -> list[str]:
    """File `raw` under each of its label pairs (the indexer under test)."""
    if raw["metadata"]["labels"].get("broken"):
        raise ValueError("an indexer that fails files nothing")
    return [f"{k}={v}" for k, v in raw["metadata"]["labels"].items()]


labels_st = st.dictionaries(
    st.sampled_from((*LABEL_KEYS, "broken")), st.sampled_from(LABEL_VALUES), max_size=3
)
objects_st = st.builds(
    labelled,
    st.sampled_from(("ns1", "ns2")),
    st.sampled_from(tuple("abcdef")),
    st.integers(1, 50),
    labels_st,
)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), objects_st),
        st.tuples(st.just("remove"), objects_st),
        st.tuples(st.just("pin"), objects_st),
        st.tuples(st.just("pin_deleted"), objects_st),
        st.tuples(st.just("replace"), st.lists(objects_st, max_size=6), st.integers(0, 60)),
    ),
    max_size=40,
)
queries_st = st.lists(st.sampled_from([f"{k}={v}" for k in LABEL_KEYS for v in LABEL_VALUES]))


def _apply(store: Store[dict[str, Any]], op: tuple[Any, ...]) -> None:
    kind, arg = op[0], op[1]
    if kind == "upsert":
        store.upsert(arg)
    elif kind == "remove":
        store.remove(*key(arg))
    elif kind == "pin":
        store.pin(arg)
    elif kind == "pin_deleted":
        store.pin_deleted(*key(arg), arg["metadata"]["uid"])
    else:
        unique = {key(o): o for o in arg}.values()
        store.replace(unique, scope=None, version=str(op[2]))


def _scan(store: Store[dict[str, Any]], ns: str, values: list[str], *, every: bool) -> list[str]:
    """Return what the index must answer, found the slow way: a scan of the namespace."""
    found = []
    for item in store.values(ns):
        try:
            filed = set(pairs(item))
        except ValueError:
            filed = set()
        wanted = set(values)
        hit = (wanted <= filed and bool(wanted)) if every else bool(wanted & filed)
        if hit:
            found.append(item["metadata"]["name"])
    return sorted(found)


@settings(max_examples=300, deadline=None)
@given(ops=ops_st, queries=queries_st)
def test_indexes_answer_what_a_scan_would(ops: list[tuple[Any, ...]], queries: list[str]) -> None:
    """After any sequence of writes, relists and pins, the index equals a full scan."""
    store: Store[dict[str, Any]] = Store(key, indexers={"pairs": pairs})
    for op in ops:
        _apply(store, op)
        for ns in ("ns1", "ns2"):
            names_any = [o["metadata"]["name"] for o in store.find_any("pairs", ns, queries)]
            names_all = [o["metadata"]["name"] for o in store.find_all("pairs", ns, queries)]
            assert names_any == _scan(store, ns, queries, every=False)
            assert names_all == _scan(store, ns, queries, every=True)
            for value in queries:
                assert store.index_count("pairs", ns, value) == len(
                    _scan(store, ns, [value], every=False)
                )


def test_a_failing_indexer_is_logged_and_files_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """An object the indexer cannot read is stored and found by name, never by index."""
    store: Store[dict[str, Any]] = Store(key, indexers={"pairs": pairs})
    broken = labelled("ns", "x", 1, {"broken": "a", "app": "a"})
    store.upsert(broken)
    assert store.get("ns", "x") is broken
    assert store.find_any("pairs", "ns", ["app=a"]) == []
    assert "indexer failed" in caplog.text
