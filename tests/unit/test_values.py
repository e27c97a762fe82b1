"""Strict annotation parsers: exact tables, then properties over arbitrary and hostile text."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
import unicodedata
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest
from hypothesis import strategies as st

import probes
from probes import _match
from zenlead import probeconfig, svcconfig, values

if TYPE_CHECKING:
    from collections.abc import Callable

UNICODE_DIGITS = "".join(
    chr(c) for c in range(0x80, 0x110000) if unicodedata.category(chr(c)) == "Nd"
)
"""Every non-ASCII decimal digit: int() and float() accept them, the parsers must not."""

HOSTILE = [
    "(x{1000}){1000}",
    "(?:x{65535}){65535}",
    "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))",
    "^(a+)+$",
    "\u00b2",
    "\u0663",
    "\uff11\uff10",
    "1e3",
    "-1",
    "+5",
    "0x10",
    "1_000",
    "nan",
    "inf",
    "99999999999999999999999",
    "tru\u0435",  # Cyrillic e
    "\uff54\uff52\uff55\uff45",
    "",
    " ",
    "\t\n",
    "\x00",
    "a\r\nX-Injected: 1",
    "x" * 10240,
]
"""Values every parser must turn away (or accept only when valid), quickly and by name."""

BOUNDS_SECONDS = 0.5
BOUNDS_BYTES = 16 * 1024 * 1024
"""Generous ceilings: a regex bomb costs seconds and hundreds of MiB, a parse microseconds."""


def bounded(call: Callable[[], Any]) -> Any:
    """Run `call`, failing if it takes more than the CPU-time or memory ceiling."""
    tracemalloc.start()
    start = time.process_time()
    try:
        return call()
    finally:
        spent = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert spent < BOUNDS_SECONDS, f"took {spent:.3f}s of CPU"
        assert peak < BOUNDS_BYTES, f"allocated {peak} bytes at peak"


PARSERS: dict[str, Callable[[str], Any]] = {
    "boolean": values.boolean,
    "choice": lambda raw: values.choice(raw, ("GET", "HEAD")),
    "integer": lambda raw: values.integer(raw, low=1, high=10),
    "number": lambda raw: values.number(raw, low=0.01, high=1.0),
    "duration": lambda raw: values.duration(raw, low=0.0, high=86400.0),
    "port": values.port,
    "host": values.host,
    "path": values.path,
    "server_name": values.server_name,
    "text": values.text,
}

hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="ascii"), max_size=300),
    st.text(alphabet="0123456789.,-:[]/{}()xa" + UNICODE_DIGITS[:200], max_size=40),
    st.sampled_from(HOSTILE),
    st.builds(lambda n: "9" * n, st.integers(0, 10240)),
)


class TestExact:
    """Each parser's accepted forms, and the forms it refuses."""

    @pytest.mark.parametrize(
        ("parser", "raw", "expected"),
        [
            pytest.param("integer", "10", 10, id="int-max"),
            pytest.param("integer", "007", 7, id="int-leading-zeros"),
            pytest.param("number", "0.5", 0.5, id="number-fraction"),
            pytest.param("number", "1", 1.0, id="number-whole"),
            pytest.param("duration", "1m30s", 90.0, id="duration-two-parts"),
            pytest.param("duration", "250ms", 0.25, id="duration-ms"),
            pytest.param("duration", "1500µs", 0.0015, id="duration-micro-sign"),
            pytest.param("duration", "0", 0.0, id="duration-zero"),
            pytest.param("port", "8080", 8080, id="port-number"),
            pytest.param("port", "http-alt", "http-alt", id="port-name"),
            pytest.param("host", "example.com", "example.com", id="host-name"),
            pytest.param("host", "example.com:8443", "example.com:8443", id="host-port"),
            pytest.param("host", "10.1.2.3:80", "10.1.2.3:80", id="host-ipv4"),
            pytest.param("host", "[fd00::1]:80", "[fd00::1]:80", id="host-ipv6"),
            pytest.param("path", "/healthz?full=1", "/healthz?full=1", id="path-query"),
            pytest.param("server_name", "db.internal", "db.internal", id="sni-name"),
            pytest.param("boolean", "false", False, id="bool-false"),
        ],
    )
    def test_accepts(self, parser: str, raw: str, expected: object) -> None:
        """Valid values parse to their meaning."""
        assert PARSERS[parser](raw) == expected

    @pytest.mark.parametrize(
        ("parser", "raw"),
        [
            pytest.param("integer", "\u00b2", id="int-superscript-two"),
            pytest.param("integer", "\u0661", id="int-arabic-indic"),
            pytest.param("integer", "11", id="int-over-max"),
            pytest.param("integer", "-1", id="int-negative"),
            pytest.param("integer", " 3", id="int-space"),
            pytest.param("integer", "3" * 10240, id="int-10k"),
            pytest.param("number", "nan", id="number-nan"),
            pytest.param("number", "1e-1", id="number-exponent"),
            pytest.param("number", "\uff10.5", id="number-fullwidth"),
            pytest.param("duration", "-5s", id="duration-negative"),
            pytest.param("duration", "99999999999999h", id="duration-huge"),
            pytest.param("duration", "\u0665s", id="duration-unicode-digit"),
            pytest.param("port", "0", id="port-zero"),
            pytest.param("port", "65536", id="port-too-big"),
            pytest.param("port", "\u00b2", id="port-superscript"),
            pytest.param("port", "web--ui", id="port-double-hyphen"),
            pytest.param("port", "a" * 16, id="port-name-too-long"),
            pytest.param("host", "evil /path", id="host-space"),
            pytest.param("host", "a\r\nX: y", id="host-crlf"),
            pytest.param("host", "[::1", id="host-open-bracket"),
            pytest.param("host", "[fe80::1%\r\nX-Evil: 1]:80", id="host-zone-injection"),
            pytest.param("server_name", "fe80::1%\r\nX: y", id="sni-zone-injection"),
            pytest.param("host", "example.com:0", id="host-port-zero"),
            pytest.param("host", "example.com:", id="host-empty-port"),
            pytest.param("path", "healthz", id="path-relative"),
            pytest.param("path", "/a b", id="path-space"),
            pytest.param("path", "/\u00e9", id="path-non-ascii"),
            pytest.param("boolean", "True", id="bool-capitalised"),
            pytest.param("boolean", "tru\u0435", id="bool-cyrillic-e"),
            pytest.param("choice", "get", id="choice-lower-case"),
        ],
    )
    def test_refuses(self, parser: str, raw: str) -> None:
        """Invalid values raise InvalidValueError quoting (a prefix of) the value."""
        with pytest.raises(values.InvalidValueError) as caught:
            PARSERS[parser](raw)
        assert values.show(raw) in str(caught.value)

    def test_show_cuts_long_values(self) -> None:
        """A long value is quoted by its first 40 characters and its length."""
        shown = values.show("x" * 10240)
        assert len(shown) < 80
        assert "10240 characters" in shown

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0.25, "250ms"), (2.0, "2s"), (90.0, "1m30s"), (86400.0, "24h"), (0.0, "0ms")],
    )
    def test_human(self, seconds: float, text: str) -> None:
        """Durations render in Go style for messages."""
        assert values.human(seconds) == text


class TestRegexBounds:
    """Patterns are refused before compiling when they would expand, nest or run long."""

    @pytest.mark.parametrize(
        ("pattern", "why"),
        [
            pytest.param("(x{1000}){1000}", "expands", id="nested-count"),
            pytest.param("(?:x{65535}){65535}", "repeats more than", id="huge-count"),
            pytest.param("x{0000000000000000000000001001}", "repeats more", id="zero-padded"),
            pytest.param("(?#[)(?:x{1000}){1000}]", "expands", id="class-in-comment"),
            pytest.param("(?#(?x)(a{100}) {100}", "expands", id="comment-hides-nothing"),
            pytest.param(r"(\g{1000}){1000}", "expands", id="count-after-escape"),
            pytest.param("(x{100}){100}", "expands", id="ten-thousand-atoms"),
            pytest.param("[[](x{1000}){1000}", "expands", id="bracket-in-class"),
            pytest.param("(?x)(a{100}) {100}", "verbose", id="verbose-spacing"),
            pytest.param("(" * 40 + "a" + ")" * 40, "nests", id="deep-nesting"),
            pytest.param("a" * 513, "longer than", id="too-long"),
            pytest.param("(", "missing", id="unbalanced"),
        ],
    )
    def test_refused(self, pattern: str, why: str) -> None:
        """Bombs and broken patterns raise ValueError with the reason, without compiling."""
        with pytest.raises(ValueError, match=why):
            bounded(lambda: probes.compile_pattern(pattern))

    @pytest.mark.parametrize(
        "pattern",
        ["master", r"role:(master|slave)", "(x{10}){100}", r"\p{L}{3}", "[a-z]{2,5}", "(?#c)ok"],
    )
    def test_accepted(self, pattern: str) -> None:
        """Ordinary patterns, and counted ones within the bounds, compile."""
        assert bounded(lambda: probes.compile_pattern(pattern)) is not None


class TestProperties:
    """Arbitrary text never raises anything but the parser's own error, within bounds."""

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(name=st.sampled_from(sorted(PARSERS)), raw=hostile_text)
    def test_parsers_are_total(self, name: str, raw: str) -> None:
        """Each parser returns or raises InvalidValueError, quickly and in little memory."""
        try:
            result = bounded(lambda: PARSERS[name](raw))
        except values.InvalidValueError:
            return
        if name in {"host", "path", "server_name"}:
            assert all("!" <= c <= "~" for c in result), "header-safe output only"
        if name in {"integer", "port"} and isinstance(result, int):
            assert raw.isascii()

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(raw=hostile_text)
    def test_patterns_are_bounded(self, raw: str) -> None:
        """A pattern is compiled within bounds or refused with ValueError."""
        try:
            compiled = bounded(lambda: probes.compile_pattern(raw))
        except ValueError:
            return
        with contextlib.suppress(_match.RegexTimeoutError):
            bounded(lambda: _match.search(compiled, b"a" * 65536 + b"!"))

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(
        counts=st.lists(st.integers(0, 100_000), min_size=1, max_size=4),
        capturing=st.booleans(),
    )
    def test_nested_counts_are_bounded(self, counts: list[int], *, capturing: bool) -> None:
        """Nested counted repetitions ((x{a}){b}...) never compile past the bounds."""
        pattern = "x"
        for count in counts:
            pattern = f"({'' if capturing else '?:'}{pattern}){{{count}}}"
        try:
            bounded(lambda: probes.compile_pattern(pattern))
        except ValueError:
            return
        product = 1
        for count in counts:
            product *= max(count, 1)
        assert product <= _match.MAX_EXPANSION

    @hypothesis.settings(max_examples=400, deadline=None)
    @hypothesis.given(
        key=st.sampled_from(sorted(set(probeconfig.KEYS.values()) - {probeconfig.P})),
        kind=st.sampled_from(["http", "grpc", "tcp"]),
        raw=hostile_text,
    )
    def test_probe_problems_name_their_key(self, key: str, kind: str, raw: str) -> None:
        """Any value on one probe key is accepted or reported under exactly that key."""
        config, problems = bounded(lambda: probeconfig.parse({probeconfig.P: kind, key: raw}))
        assert [p.key for p in problems] in ([], [key])
        assert (config is None) == bool(problems)
        for problem in problems:
            assert "probing is off" in problem.reason

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        key=st.sampled_from(
            [svcconfig.LEADER_SERVICE_NAME, svcconfig.STICKY, svcconfig.MIN_READY_DURATION]
        ),
        raw=hostile_text,
    )
    def test_service_problems_name_their_key(self, key: str, raw: str) -> None:
        """Any value on one Service key is accepted or reported under that key with a default."""
        config, problems = bounded(lambda: svcconfig.parse("web", {key: raw}))
        assert [p.key for p in problems] in ([], [key])
        for problem in problems:
            assert "using " in problem.reason
        assert config.leader_service_name

    @hypothesis.settings(max_examples=100, deadline=None)
    @hypothesis.given(
        annotations=st.dictionaries(
            st.sampled_from(
                sorted({*probeconfig.KEYS.values(), svcconfig.STICKY, svcconfig.MIN_READY_DURATION})
            ),
            hostile_text,
        )
    )
    def test_any_mix_of_keys(self, annotations: dict[str, str]) -> None:
        """Any mix of annotations parses without raising; problem keys are keys that were set."""
        _, problems = bounded(lambda: probeconfig.parse(annotations))
        _, more = bounded(lambda: svcconfig.parse("web", annotations))
        assert {p.key for p in problems + more} <= set(annotations)


@pytest.mark.parametrize("raw", HOSTILE)
def test_enabled_other_than_true_or_false_is_a_problem(raw: str) -> None:
    """zen-lead.io/enabled with any value but "true"/"false" is reported, and not managed."""
    problem = svcconfig.enabled_problem({svcconfig.ENABLED: raw})
    assert problem is not None
    assert problem.key == svcconfig.ENABLED
    assert not svcconfig.is_enabled({svcconfig.ENABLED: raw})
