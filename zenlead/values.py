"""Strict parsers for annotation values, and a reader that names the key of every problem.

Annotation values come from anyone who may edit a Service, so each parser here is total and
cheap: it checks the length first, accepts only ASCII digits (Python's ``int()`` and
``float()`` also take Unicode digits such as superscript two or Arabic-Indic digits, and a
regex digit class matches them), takes
enumerations exactly as written, and raises only `InvalidValueError`, whose message says why.
`Reader` binds each value to its key *by construction*: a problem is recorded under the key
that was read, never guessed from an error text. `svcconfig` and `probeconfig` parse through it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = (
    "MAX_VALUE_CHARS",
    "InvalidValueError",
    "Problem",
    "Reader",
    "boolean",
    "choice",
    "duration",
    "host",
    "human",
    "integer",
    "number",
    "path",
    "port",
    "server_name",
    "show",
    "text",
)

T = TypeVar("T")

MAX_VALUE_CHARS = 1024
"""Longest value any parser reads past its length check (everything else is rejected first)."""

_SHOWN_CHARS = 40
_INT = re.compile(r"[0-9]{1,9}", re.ASCII)
_NUMBER = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?", re.ASCII)
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign, as Go accepts
    "\u03bcs": 1e-6,  # Greek mu, as Go accepts
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_UNITS = "|".join(sorted(_UNIT_SECONDS, key=len, reverse=True))
_DURATION = re.compile(rf"(?:[0-9]{{1,9}}(?:\.[0-9]{{1,9}})?(?:{_UNITS})){{1,6}}")
_DURATION_PART = re.compile(rf"([0-9]{{1,9}}(?:\.[0-9]{{1,9}})?)({_UNITS})")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}"
    r"[A-Za-z0-9_])?)*\.?",
    re.ASCII,
)
_PORT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,13}[a-z0-9])?", re.ASCII)
_MAX_HOST_CHARS = 253
_MAX_PATH_CHARS = 2048
_MAX_PORT = 65535


class InvalidValueError(ValueError):
    """A value was rejected; the message says why (without the key: the reader adds it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """A rejected annotation: which key, and why (goes into a Warning Event verbatim)."""

    key: str
    reason: str

    def __str__(self) -> str:
        """Render as ``key: reason``."""
        return f"{self.key}: {self.reason}"


def show(raw: str) -> str:
    """Quote `raw` for a message: a short, escaped prefix, with the full length if cut."""
    if len(raw) <= _SHOWN_CHARS:
        return repr(raw)
    return f"{raw[:_SHOWN_CHARS]!r}... ({len(raw)} characters)"


def _bounded(raw: str, limit: int) -> str:
    if len(raw) > limit:
        raise InvalidValueError(f"{show(raw)} is longer than {limit} characters")
    return raw


def boolean(raw: str) -> bool:
    """Parse exactly ``true`` or ``false``."""
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise InvalidValueError(f"{show(raw)} is not true or false")


def choice(raw: str, allowed: tuple[str, ...]) -> str:
    """Return `raw` if it is exactly one of `allowed`."""
    if raw in allowed:
        return raw
    raise InvalidValueError(f"{show(raw)} is not one of {', '.join(allowed)}")


def integer(raw: str, *, low: int, high: int) -> int:
    """Parse a whole number in ASCII digits, from `low` to `high`."""
    if _INT.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise InvalidValueError(f"{show(raw)} is not a whole number from {low} to {high}")
    return int(raw)


def number(raw: str, *, low: float, high: float) -> float:
    """Parse a decimal number (``0.5``, ``1``) in ASCII digits, from `low` to `high`."""
    value = float(raw) if len(raw) <= 20 and _NUMBER.fullmatch(raw) else None  # noqa: PLR2004
    if value is None or not low <= value <= high:
        raise InvalidValueError(f"{show(raw)} is not a number from {low:g} to {high:g}")
    return value


def duration(raw: str, *, low: float, high: float) -> float:
    """Parse a Go-style duration (``0``, ``500ms``, ``1m30s``) into seconds within bounds."""
    if raw == "0":
        seconds = 0.0
    elif len(raw) <= 64 and _DURATION.fullmatch(raw):  # noqa: PLR2004
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(raw))
    else:
        raise InvalidValueError(f"{show(raw)} is not a duration like 30s, 1m30s or 500ms")
    if not low <= seconds <= high:
        raise InvalidValueError(f"{show(raw)} is not between {human(low)} and {human(high)}")
    return seconds


def human(seconds: float) -> str:
    """Render `seconds` as the shortest Go-style duration: ``250ms``, ``2s``, ``1m30s``, ``24h``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole, parts = round(seconds, 3), []
    for unit, size in (("h", 3600), ("m", 60)):
        if whole >= size:
            count, whole = divmod(whole, size)
            parts.append(f"{count:g}{unit}")
    if whole or not parts:
        parts.append(f"{whole:g}s")
    return "".join(parts)


def port(raw: str) -> int | str:
    """Parse a port number (1-65535) or a container port name (IANA service name)."""
    if raw.isascii() and raw.isdigit():
        return integer(raw, low=1, high=_MAX_PORT)
    name = len(raw) <= 15 and _PORT_NAME.fullmatch(raw) and "--" not in raw  # noqa: PLR2004
    if name and any(c.isalpha() for c in raw):
        return raw
    raise InvalidValueError(
        f"{show(raw)} is neither a port number (1-65535) nor a container port name "
        "(up to 15 lower-case letters, digits and '-', with at least one letter)"
    )


def server_name(raw: str) -> str:
    """Parse a DNS name or an IP address (TLS server names, hosts without port).

    IPv6 zone ids (``fe80::1%eth0``) are refused: they may hold any character.
    """
    _bounded(raw, _MAX_HOST_CHARS)
    if _HOSTNAME.fullmatch(raw):
        return raw
    if "%" in raw:
        raise InvalidValueError(f"{show(raw)}: IPv6 zone ids are not accepted")
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise InvalidValueError(f"{show(raw)} is not a DNS name or an IP address") from None
    return raw


def host(raw: str) -> str:
    """Parse an HTTP Host header value: ``name``, ``name:port``, ``ip:port`` or ``[ipv6]:port``."""
    _bounded(raw, _MAX_HOST_CHARS + 8)
    name, port_text = raw, ""
    if raw.startswith("["):
        inside, bracket, rest = raw[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidValueError(f"{show(raw)} is not a host like name:port or [ipv6]:port")
        name, port_text = inside, rest[1:]
        if ":" not in name:
            raise InvalidValueError(f"{show(raw)}: only IPv6 addresses go in brackets")
    elif ":" in raw:
        name, _, port_text = raw.rpartition(":")
    if "%" in raw:  # An IPv6 zone id may hold any character.
        raise InvalidValueError(f"{show(raw)}: IPv6 zone ids are not accepted")
    try:
        if raw.startswith("["):
            ipaddress.IPv6Address(name)
        else:
            server_name(name)
        if raw.endswith(":") or port_text:
            integer(port_text, low=1, high=_MAX_PORT)
    except (InvalidValueError, ValueError):
        raise InvalidValueError(f"{show(raw)} is not a host like name:port") from None
    return raw


def path(raw: str) -> str:
    """Parse an HTTP request target: starts with ``/``, visible ASCII only (no header injection)."""
    _bounded(raw, _MAX_PATH_CHARS)
    if not raw.startswith("/") or not all("!" <= c <= "~" for c in raw) or "#" in raw:
        raise InvalidValueError(
            f"{show(raw)} is not a request path (starts with /; visible ASCII, no spaces or #)"
        )
    return raw


def text(raw: str, *, limit: int = MAX_VALUE_CHARS, allowed: str | None = None) -> str:
    """Return `raw` if it is at most `limit` characters (and only `allowed` ones, if given)."""
    _bounded(raw, limit)
    if allowed is not None and re.fullmatch(allowed, raw, re.ASCII) is None:
        raise InvalidValueError(f"{show(raw)} has characters outside {allowed}")
    return raw


class Reader:
    """Reads annotation values through parsers; records one `Problem` per rejected key."""

    def __init__(self, values: Mapping[str, str] | None) -> None:
        """Read from `values` (an annotation mapping; None means no annotations)."""
        self.values: Mapping[str, str] = values or {}
        self.problems: list[Problem] = []

    def read(self, key: str, parse: Callable[[str], T], default: T, *, fallback: str = "") -> T:
        """Return `parse(value of key)`, or `default` when it is absent or rejected.

        A rejected value is recorded as a `Problem` naming `key`, with `fallback` (what is
        used instead; default: "using <default>") at the end of the reason.
        """
        raw = self.values.get(key)
        if raw is None:
            return default
        try:
            return parse(raw) if isinstance(raw, str) else parse(str(raw))
        except InvalidValueError as exc:
            self.reject(key, f"{exc}; {fallback or f'using {default!r}'}")
            return default

    def reject(self, key: str, reason: str) -> None:
        """Record that the value of `key` is unusable, and why (once per key)."""
        if all(problem.key != key for problem in self.problems):
            self.problems.append(Problem(key, reason))
