"""Regular expressions from annotations: bounded to compile, and bounded to match.

Probe patterns come from Service annotations and the text they run on comes from pods, so
either side may be hostile, and both compiling and matching happen synchronously on the
controller's event loop:

- *Compiling* expands counted repetitions: ``(x{1000}){1000}`` takes a third of a second and
  hundreds of MiB, ``(?:x{65535}){65535}`` exhausts memory, and deep nesting overflows the
  parser's recursion. `compile_bytes` therefore scans the pattern first, without compiling it:
  at most `MAX_PATTERN_CHARS` characters, `MAX_NESTING` open groups, `MAX_REPEAT` per counted
  repetition, and at most `MAX_EXPANSION` atoms once every counted repetition is multiplied
  out. The scan errs on the side of counting too much: comments end at their first ``)`` as
  the regex package reads them, a class ends at its first unescaped ``]``, and braces after an
  escape are weighed as a count. Only a pattern within those bounds is compiled, and any
  exception the compiler still raises (MemoryError and RecursionError included) becomes a
  `ValueError` with the reason. Compiled patterns are cached (at most `_CACHE_SIZE`), so each
  pod's checker reuses the parse-time compile.
- *Matching* uses the ``regex`` package, whose matcher accepts a timeout: a search that runs
  longer than `TIMEOUT_SECONDS` (``^(a+)+$`` on ``aaaa...!``) fails the probe as a CONFIG error
  instead of stalling every other probe and reconcile.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import regex

__all__ = (
    "MAX_EXPANSION",
    "MAX_NESTING",
    "MAX_PATTERN_CHARS",
    "MAX_REPEAT",
    "TIMEOUT_SECONDS",
    "RegexTimeoutError",
    "compile_bytes",
    "search",
)

TIMEOUT_SECONDS = 0.01
"""Longest time one search may take (the text is at most the probe's read cap)."""
MAX_PATTERN_CHARS = 512
"""Longest pattern accepted."""
MAX_NESTING = 32
"""Most groups open at once."""
MAX_REPEAT = 1000
"""Largest bound of one counted repetition (``{n}``, ``{m,n}``)."""
MAX_EXPANSION = 2000
"""Most atoms the pattern may stand for once counted repetitions are multiplied out.

A compiled pattern keeps roughly 430 bytes per atom, so one pattern stays under 1 MiB and
the compile cache (`_CACHE_SIZE` patterns) under about 30 MiB (measured: 64 such patterns
added 59 MiB), whatever annotations say."""
_CACHE_SIZE = 32

_DIGITS = frozenset("0123456789")
_VERBOSE = re.compile(r"\(\?[a-zA-Z0-9^-]*x")


class RegexTimeoutError(Exception):
    """A search ran past `TIMEOUT_SECONDS` (catastrophic backtracking)."""


def compile_bytes(pattern: bytes | str) -> Any:
    """Compile `pattern` for bytes input; raise ValueError with the reason if it is refused."""
    text = pattern.decode("utf-8", "replace") if isinstance(pattern, bytes) else pattern
    check(text)
    return _compile(text.encode())


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(raw: bytes) -> Any:
    try:
        return regex.compile(raw)
    except regex.error as exc:
        raise ValueError(str(exc)) from exc
    except (MemoryError, RecursionError, OverflowError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot be compiled ({type(exc).__name__})") from exc


def check(pattern: str) -> None:
    """Raise ValueError if `pattern` is longer, deeper or expands further than the bounds."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"is longer than {MAX_PATTERN_CHARS} characters")
    _Scanner(pattern).run()


class _Scanner:
    """One pass over a pattern, weighing it as if every counted repetition were expanded."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.groups = [0]  # Weight so far of each open group (the outermost is the pattern).
        self.last = 0  # Weight of the atom a quantifier would apply to.

    def run(self) -> None:
        while self.i < len(self.p):
            self._step(self.p[self.i])
        if sum(self.groups) > MAX_EXPANSION:
            raise ValueError(f"expands to more than {MAX_EXPANSION} atoms")

    def _atom(self, weight: int, width: int) -> None:
        self.groups[-1] += weight
        self.last = weight
        self.i += width

    def _step(self, c: str) -> None:
        if c == "\\":
            # Every escape is two characters. Braces after one (\p{L}, \g{3}) are weighed as
            # a count when they hold digits: an over-estimate at worst, never a hidden count.
            self._atom(1, 2)
        elif c == "[":
            self._atom(1, self._class_width())
        elif c == "(":
            self._open()
        elif c == ")" and len(self.groups) > 1:
            self._atom(self.groups.pop(), 1)
        elif c == "{" and (count := self._count()) is not None:
            self._repeat(*count)
        elif c in "*+?" or c.isspace():
            # Not an atom of its own for what follows: a count after it still multiplies the
            # atom before it (an over-estimate where it is literal, never an under-estimate).
            self.groups[-1] += 1
            self.i += 1
        else:
            self._atom(1, 1)

    def _open(self) -> None:
        """Enter a group, or skip a comment (it ends at its first ")", as regex reads it)."""
        if self.p.startswith("(?#", self.i):
            end = self.p.find(")", self.i)
            self.i = len(self.p) if end < 0 else end + 1
            return
        if len(self.groups) > MAX_NESTING:
            raise ValueError(f"nests more than {MAX_NESTING} groups")
        if _VERBOSE.match(self.p, self.i):
            raise ValueError("verbose mode (?x) is not supported")
        self.groups.append(0)
        self.i += 1

    def _repeat(self, bound: int, width: int) -> None:
        """Multiply the last atom by a counted repetition of `bound` (`width` characters)."""
        self.groups[-1] += self.last * (bound - 1)
        self.last *= bound
        self.i += width
        if self.groups[-1] > MAX_EXPANSION or self.last > MAX_EXPANSION:
            raise ValueError(f"expands to more than {MAX_EXPANSION} atoms")

    def _class_width(self) -> int:
        """Width of the character class at `i`, ending at its first unescaped ``]``.

        Nested sets (``[[a-z]--[aeiou]]``) end early here and their rest is scanned as pattern
        text: an over-estimate at worst, never a hidden count.
        """
        j = self.i + 1
        if self.p[j : j + 1] == "^":
            j += 1
        if self.p[j : j + 1] == "]":
            j += 1
        while j < len(self.p) and self.p[j] != "]":
            j += 2 if self.p[j] == "\\" else 1
        return min(j + 1, len(self.p)) - self.i

    def _count(self) -> tuple[int, int] | None:
        """Return (largest repeat, width) of a counted repetition at `i`, or None if literal."""
        j = self.i + 1
        while j < len(self.p) and (self.p[j] in _DIGITS or self.p[j] == ","):
            j += 1
        if j >= len(self.p) or self.p[j] != "}":
            return None
        low, comma, high = self.p[self.i + 1 : j].partition(",")
        if "," in high or not (low or high):
            return None
        bounds = [int(b) for b in (low, high) if b]
        if max(bounds) > MAX_REPEAT:
            raise ValueError(f"repeats more than {MAX_REPEAT} times in one count")
        # An open upper bound ({m,}) repeats without expanding further: weigh it like m + 1.
        largest = max(bounds) + (1 if comma and not high else 0)
        return max(1, largest), j - self.i + 1


def search(compiled: Any, data: bytes | bytearray) -> Any:
    """Return the first match of `compiled` in `data` (or None) within the time bound."""
    try:
        return compiled.search(bytes(data), timeout=TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise RegexTimeoutError(
            f"regex took over {TIMEOUT_SECONDS * 1000:.0f} ms (catastrophic backtracking?)"
        ) from exc
