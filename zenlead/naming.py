"""Names of the objects zen-lead creates.

The leader Service is named ``<svc>-leader``. Service names are DNS-1035 labels of at most 63
characters, so for a source name longer than 56 characters the default keeps a prefix of the
source name and adds a hash of the whole name (``<prefix>-<8 hex>-leader``): unique, stable
across restarts, and always valid (upstream zen-lead broke on such names).
"""

from __future__ import annotations

import hashlib
import re

from zenlead import values

__all__ = ("MAX_NAME", "default_leader_name", "invalid_leader_name")

MAX_NAME = 63
"""Longest valid Service name (DNS-1035 label)."""

_SUFFIX = "-leader"
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def default_leader_name(source: str) -> str:
    """Return the default leader Service name for source Service `source`."""
    name = source + _SUFFIX
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(_SUFFIX) - len(digest) - 1
    return f"{source[:keep].rstrip('-')}-{digest}{_SUFFIX}"


def invalid_leader_name(name: str, *, source: str) -> str | None:
    """Return why `name` cannot be the leader Service of `source`, or None if it can."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME:
        return f"{values.show(name)} is longer than {MAX_NAME} characters"
    if not _DNS1035.fullmatch(name):
        return (
            f"{values.show(name)} is not a DNS-1035 label (lower-case letters, digits and '-', "
            "starting with a letter)"
        )
    if name == source:
        return f"{name!r} is the source Service itself"
    return None
