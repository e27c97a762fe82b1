"""Regular expressions whose matching time is bounded, for pod-controlled bodies and replies.

Probe patterns come from Service annotations and the text they run on comes from pods, so
either side may be hostile: a pattern like ``^(a+)+$`` on a reply of ``aaaa...!`` backtracks
for seconds or forever, synchronously, on the controller's event loop (a probe deadline cannot
interrupt it). Patterns are compiled with the ``regex`` package, whose matcher accepts a
timeout; a match that runs longer than `TIMEOUT_SECONDS` fails the probe as a CONFIG error
instead of stalling every other probe and reconcile.
"""

from __future__ import annotations

from typing import Any

import regex

__all__ = ("TIMEOUT_SECONDS", "RegexTimeoutError", "compile_bytes", "search")

TIMEOUT_SECONDS = 0.01
"""Longest time one search may take (the text is at most the probe's read cap)."""


class RegexTimeoutError(Exception):
    """A search ran past `TIMEOUT_SECONDS` (catastrophic backtracking)."""


def compile_bytes(pattern: bytes | str) -> Any:
    """Compile `pattern` for bytes input; raise ValueError with the reason if invalid."""
    raw = pattern.encode() if isinstance(pattern, str) else pattern
    try:
        return regex.compile(raw)
    except regex.error as exc:
        raise ValueError(str(exc)) from exc


def search(compiled: Any, data: bytes | bytearray) -> Any:
    """Return the first match of `compiled` in `data` (or None) within the time bound."""
    try:
        return compiled.search(bytes(data), timeout=TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise RegexTimeoutError(
            f"regex took over {TIMEOUT_SECONDS * 1000:.0f} ms (catastrophic backtracking?)"
        ) from exc
