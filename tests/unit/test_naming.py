"""Default leader Service names are valid, stable and unique; custom names are validated."""

from __future__ import annotations

import re

import pytest

from zenlead import naming

DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def _name(length: int, *, prefix: str = "svc-") -> str:
    """Return a valid DNS-1035 Service name of exactly `length` characters."""
    return (prefix + "a" * length)[:length]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("web", "web-leader", id="short"),
        pytest.param("a", "a-leader", id="one-char"),
        pytest.param("x" * 56, "x" * 56 + "-leader", id="56-chars-fits-exactly"),
    ],
)
def test_short_names_get_plain_suffix(source: str, expected: str) -> None:
    """Up to 56 characters the default is simply ``<svc>-leader``."""
    assert naming.default_leader_name(source) == expected


@pytest.mark.parametrize(
    "length",
    [
        pytest.param(1, id="1"),
        pytest.param(55, id="55"),
        pytest.param(56, id="56"),
        pytest.param(57, id="57"),
        pytest.param(58, id="58"),
        pytest.param(62, id="62"),
        pytest.param(63, id="63"),
    ],
)
def test_default_is_a_valid_service_name(length: int) -> None:
    """Every default is a DNS-1035 label of at most 63 characters ending in -leader."""
    source = _name(length)
    result = naming.default_leader_name(source)
    assert len(result) <= naming.MAX_NAME
    assert DNS1035.fullmatch(result)
    assert result.endswith("-leader")
    assert naming.invalid_leader_name(result, source=source) is None


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("b" * 57, id="57-chars"),
        pytest.param("c" * 63, id="63-chars"),
        pytest.param("d" * 46 + "-" + "e" * 16, id="dash-at-cut-point"),
        pytest.param("f" * 45 + "--" + "g" * 16, id="two-dashes-at-cut-point"),
    ],
)
def test_long_names_are_hashed(source: str) -> None:
    """Past 56 characters the default is ``<prefix>-<8 hex>-leader`` and still valid."""
    result = naming.default_leader_name(source)
    match = re.fullmatch(r"(?P<prefix>[-a-z0-9]+)-(?P<digest>[0-9a-f]{8})-leader", result)
    assert match is not None
    assert source.startswith(match["prefix"])
    assert not match["prefix"].endswith("-")
    assert len(result) <= naming.MAX_NAME
    assert DNS1035.fullmatch(result)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("web", "web-leader", id="short"),
        pytest.param("h" * 56, "h" * 56 + "-leader", id="56-chars"),
        pytest.param("h" * 57, "h" * 47 + "-51a3990a-leader", id="57-chars"),
        pytest.param("h" * 63, "h" * 47 + "-98918cd4-leader", id="63-chars"),
    ],
)
def test_default_is_stable(source: str, expected: str) -> None:
    """The default is a pure function of the name (pinned), so it survives restarts."""
    assert naming.default_leader_name(source) == expected


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("p" * 57, "p" * 58, id="57-vs-58"),
        pytest.param("p" * 62 + "a", "p" * 62 + "b", id="63-last-char-differs"),
        pytest.param("p" * 50 + "-one", "p" * 50 + "-two", id="shared-50-char-prefix"),
        pytest.param("p" * 56, "p" * 57, id="56-plain-vs-57-hashed"),
        pytest.param("q" * 60, "q" * 61, id="60-vs-61"),
    ],
)
def test_defaults_differ_for_shared_prefixes(first: str, second: str) -> None:
    """Different sources sharing a long prefix still get different leader names."""
    assert naming.default_leader_name(first) != naming.default_leader_name(second)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("a" * 64, "longer than 63 characters", id="64-chars"),
        pytest.param("Leader", "not a DNS-1035 label", id="upper-case"),
        pytest.param("1leader", "not a DNS-1035 label", id="starts-with-digit"),
        pytest.param("-leader", "not a DNS-1035 label", id="starts-with-dash"),
        pytest.param("leader-", "not a DNS-1035 label", id="ends-with-dash"),
        pytest.param("web.leader", "not a DNS-1035 label", id="dot"),
        pytest.param("web_leader", "not a DNS-1035 label", id="underscore"),
        pytest.param("web leader", "not a DNS-1035 label", id="space"),
        pytest.param("web", "is the source Service itself", id="same-as-source"),
    ],
)
def test_invalid_leader_names(name: str, fragment: str) -> None:
    """Each unusable name gets a reason that says what is wrong."""
    reason = naming.invalid_leader_name(name, source="web")
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a", id="one-letter"),
        pytest.param("web-leader", id="default-shape"),
        pytest.param("primary2", id="trailing-digit"),
        pytest.param("a" * 63, id="63-chars"),
        pytest.param("a--b", id="double-dash"),
    ],
)
def test_valid_leader_names(name: str) -> None:
    """DNS-1035 labels of at most 63 characters other than the source are accepted."""
    assert naming.invalid_leader_name(name, source="web") is None
