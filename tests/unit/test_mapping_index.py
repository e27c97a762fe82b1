"""The mapping's index lookups find exactly what a scan of the namespace would."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zenlead import mapping, model

NS = "ns"
LABELS = st.dictionaries(
    st.sampled_from(("app", "tier", "zone")), st.sampled_from("ab"), max_size=3
)


def source(name: str, selector: dict[str, str]) -> dict[str, Any]:
    """Return an opted-in Service selecting `selector`."""
    return {
        "metadata": {
            "namespace": NS,
            "name": name,
            "annotations": {"zen-lead.io/enabled": "true"},
        },
        "spec": {"selector": selector},
    }


def pod(name: str, labels: dict[str, str]) -> model.Pod:
    """Return a running pod with `labels`."""
    return model.Pod(
        namespace=NS,
        name=name,
        uid=f"uid-{name}",
        labels=labels,
        created=0.0,
        deleting=False,
        node_name=None,
        phase="Running",
        ip="10.244.0.1",
        ready=True,
        ready_since=None,
        ports=(),
    )


@settings(max_examples=200, deadline=None)
@given(selectors=st.lists(LABELS, max_size=8), pods=st.lists(LABELS, max_size=8))
def test_lookups_equal_a_scan(selectors: list[dict[str, str]], pods: list[dict[str, str]]) -> None:
    """Pod -> sources and source -> pods, through the indexes, equal the brute-force answer.

    Sources share pairs (``tier=a`` in many selectors) and some select on one pair only; each is
    filed under a single pair of its selector, which must still find every matching pod.
    """
    cache = mapping.new_cache()
    services = [source(f"s{i}", sel) for i, sel in enumerate(selectors)]
    made = [pod(f"p{i}", labels) for i, labels in enumerate(pods)]
    for svc in services:
        cache.services.upsert(svc)
    for p in made:
        cache.pods.upsert(p)
    for p in made:
        found = {s["metadata"]["name"] for s in mapping.sources_selecting(cache, NS, p.labels)}
        assert found == {s["metadata"]["name"] for s in services if mapping.selects(s, p.labels)}
    for svc in services:
        found = {p.name for p in mapping.selected_pods(cache, svc)}
        assert found == {p.name for p in made if mapping.selects(svc, p.labels)}
