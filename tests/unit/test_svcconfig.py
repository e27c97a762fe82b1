"""Per-Service annotations parse into a ServiceConfig; bad values become Problems and defaults."""

from __future__ import annotations

import pytest

from zenlead import svcconfig, values
from zenlead.svcconfig import LEADER_SERVICE_NAME, MIN_READY_DURATION, STICKY, Problem


def test_defaults_without_annotations() -> None:
    """No annotations give the default leader name, sticky and no min-ready wait, no problems."""
    for given in (None, {}):
        config, problems = svcconfig.parse("web", given)
        assert config == svcconfig.ServiceConfig(
            leader_service_name="web-leader", sticky=True, min_ready_seconds=0.0
        )
        assert problems == []


def test_unrelated_annotations_are_ignored() -> None:
    """Annotations outside the zen-lead keys change nothing and raise no problem."""
    config, problems = svcconfig.parse("web", {"example.com/owner": "team-a", "zen-lead.io/x": "1"})
    assert config == svcconfig.ServiceConfig(leader_service_name="web-leader")
    assert problems == []


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param(
            {LEADER_SERVICE_NAME: "primary"},
            svcconfig.ServiceConfig(leader_service_name="primary"),
            id="leader-name",
        ),
        pytest.param(
            {STICKY: "false"},
            svcconfig.ServiceConfig(leader_service_name="web-leader", sticky=False),
            id="sticky-false",
        ),
        pytest.param(
            {STICKY: "true"},
            svcconfig.ServiceConfig(leader_service_name="web-leader", sticky=True),
            id="sticky-true",
        ),
        pytest.param(
            {MIN_READY_DURATION: "1m30s"},
            svcconfig.ServiceConfig(leader_service_name="web-leader", min_ready_seconds=90.0),
            id="min-ready-1m30s",
        ),
        pytest.param(
            {MIN_READY_DURATION: "24h"},
            svcconfig.ServiceConfig(leader_service_name="web-leader", min_ready_seconds=86400.0),
            id="min-ready-24h-is-the-limit",
        ),
        pytest.param(
            {MIN_READY_DURATION: "0"},
            svcconfig.ServiceConfig(leader_service_name="web-leader", min_ready_seconds=0.0),
            id="min-ready-zero",
        ),
        pytest.param(
            {LEADER_SERVICE_NAME: "active", STICKY: "false", MIN_READY_DURATION: "250ms"},
            svcconfig.ServiceConfig(
                leader_service_name="active", sticky=False, min_ready_seconds=0.25
            ),
            id="all-keys",
        ),
    ],
)
def test_valid_annotations(annotations: dict[str, str], expected: svcconfig.ServiceConfig) -> None:
    """Each valid annotation value sets its field and reports no problem."""
    config, problems = svcconfig.parse("web", annotations)
    assert config == expected
    assert problems == []


@pytest.mark.parametrize(
    ("annotations", "key", "fragments", "expected"),
    [
        pytest.param(
            {LEADER_SERVICE_NAME: ""},
            LEADER_SERVICE_NAME,
            ("must not be empty", "'web-leader'"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="leader-name-empty",
        ),
        pytest.param(
            {LEADER_SERVICE_NAME: "Primary"},
            LEADER_SERVICE_NAME,
            ("'Primary'", "DNS-1035", "'web-leader'"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="leader-name-upper-case",
        ),
        pytest.param(
            {LEADER_SERVICE_NAME: "a" * 64},
            LEADER_SERVICE_NAME,
            ("longer than 63", "'web-leader'"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="leader-name-too-long",
        ),
        pytest.param(
            {LEADER_SERVICE_NAME: "web"},
            LEADER_SERVICE_NAME,
            ("source Service itself", "'web-leader'"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="leader-name-is-source",
        ),
        pytest.param(
            {STICKY: "yes"},
            STICKY,
            ("'yes'", "not true or false", "using true"),
            svcconfig.ServiceConfig(leader_service_name="web-leader", sticky=True),
            id="sticky-yes",
        ),
        pytest.param(
            {STICKY: ""},
            STICKY,
            ("''", "not true or false"),
            svcconfig.ServiceConfig(leader_service_name="web-leader", sticky=True),
            id="sticky-empty",
        ),
        pytest.param(
            {STICKY: " FALSE "},
            STICKY,
            ("' FALSE '", "not true or false", "using true"),
            svcconfig.ServiceConfig(leader_service_name="web-leader", sticky=True),
            id="sticky-exact-words-only",
        ),
        pytest.param(
            {MIN_READY_DURATION: "   "},
            MIN_READY_DURATION,
            ("'   '", "not a duration", "using 0s"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="min-ready-blank",
        ),
        pytest.param(
            {MIN_READY_DURATION: "²s"},
            MIN_READY_DURATION,
            ("'²s'", "not a duration", "using 0s"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="min-ready-unicode-digit",
        ),
        pytest.param(
            {MIN_READY_DURATION: "soon"},
            MIN_READY_DURATION,
            ("'soon'", "not a duration", "using 0s"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="min-ready-word",
        ),
        pytest.param(
            {MIN_READY_DURATION: "30"},
            MIN_READY_DURATION,
            ("'30'", "not a duration"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="min-ready-no-unit",
        ),
        pytest.param(
            {MIN_READY_DURATION: "25h"},
            MIN_READY_DURATION,
            ("'25h'", "between 0ms and 24h", "using 0s"),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="min-ready-over-24h",
        ),
        pytest.param(
            {MIN_READY_DURATION: "24h1ms"},
            MIN_READY_DURATION,
            ("between 0ms and 24h",),
            svcconfig.ServiceConfig(leader_service_name="web-leader"),
            id="min-ready-just-over-24h",
        ),
    ],
)
def test_invalid_annotations(
    annotations: dict[str, str],
    key: str,
    fragments: tuple[str, ...],
    expected: svcconfig.ServiceConfig,
) -> None:
    """A bad value yields one Problem naming its key and reason, and the default is used."""
    config, problems = svcconfig.parse("web", annotations)
    assert config == expected
    assert [p.key for p in problems] == [key]
    message = str(problems[0])
    assert message.startswith(f"{key}: ")
    for fragment in fragments:
        assert fragment in message


def test_problems_are_independent() -> None:
    """Three bad keys give three Problems, one per key, and only those keys fall back."""
    annotations = {LEADER_SERVICE_NAME: "-bad", STICKY: "maybe", MIN_READY_DURATION: "1x"}
    config, problems = svcconfig.parse("web", annotations)
    assert config == svcconfig.ServiceConfig(leader_service_name="web-leader")
    assert sorted(p.key for p in problems) == sorted(
        [LEADER_SERVICE_NAME, STICKY, MIN_READY_DURATION]
    )


def test_long_source_name_gets_a_valid_default() -> None:
    """A 63-character source name still gets a default leader name of at most 63 characters."""
    config, problems = svcconfig.parse("s" * 63, None)
    assert len(config.leader_service_name) <= 63
    assert config.leader_service_name.endswith("-leader")
    assert problems == []


def test_problem_renders_key_and_reason() -> None:
    """str(Problem) is ``key: reason``, the text of the Warning Event."""
    assert str(Problem("zen-lead.io/sticky", "bad")) == "zen-lead.io/sticky: bad"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("0", 0.0, id="bare-zero"),
        pytest.param("0s", 0.0, id="zero-seconds"),
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("1m30s", 90.0, id="minutes-and-seconds"),
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param("1.5h", 5400.0, id="fractional-hours"),
        pytest.param("2h45m", 9900.0, id="hours-and-minutes"),
        pytest.param("1h1m1s1ms", 3661.001, id="four-units"),
        pytest.param("1500us", 0.0015, id="microseconds-us"),
        pytest.param("1500µs", 0.0015, id="microseconds-micro-sign"),
        pytest.param("1000000ns", 0.001, id="nanoseconds"),
    ],
)
def test_parse_duration_valid(text: str, seconds: float) -> None:
    """Go-style durations convert to float seconds."""
    assert svcconfig.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("soon", id="word"),
        pytest.param("", id="empty"),
        pytest.param("10", id="number-without-unit"),
        pytest.param("00", id="double-zero"),
        pytest.param("1h1x", id="trailing-unknown-unit"),
        pytest.param("x1h", id="leading-garbage"),
        pytest.param("1d", id="days-unsupported"),
        pytest.param("-5s", id="negative"),
        pytest.param("1 h", id="inner-space"),
        pytest.param("1H", id="upper-case-unit"),
        pytest.param(" 10s ", id="surrounding-space"),
        pytest.param("\u0661s", id="arabic-indic-digit"),
        pytest.param("1" * 70 + "s", id="too-long"),
    ],
)
def test_parse_duration_invalid(text: str) -> None:
    """Anything that is not a whole sequence of number+unit parts raises ValueError quoting it."""
    with pytest.raises(ValueError, match="is not a duration") as caught:
        svcconfig.parse_duration(text)
    assert values.show(text) in str(caught.value)


@pytest.mark.parametrize(
    ("annotations", "enabled"),
    [
        pytest.param({svcconfig.ENABLED: "true"}, True, id="true"),
        pytest.param({svcconfig.ENABLED: "True"}, False, id="capitalised"),
        pytest.param({svcconfig.ENABLED: "TRUE"}, False, id="upper-case"),
        pytest.param({svcconfig.ENABLED: " true"}, False, id="leading-space"),
        pytest.param({svcconfig.ENABLED: "1"}, False, id="one"),
        pytest.param({svcconfig.ENABLED: "yes"}, False, id="yes"),
        pytest.param({svcconfig.ENABLED: "false"}, False, id="false"),
        pytest.param({svcconfig.ENABLED: ""}, False, id="empty"),
        pytest.param({"zen-lead.io/enable": "true"}, False, id="misspelt-key"),
        pytest.param({}, False, id="no-annotations"),
        pytest.param(None, False, id="none"),
    ],
)
def test_is_enabled(annotations: dict[str, str] | None, *, enabled: bool) -> None:
    """Only the exact string "true" on zen-lead.io/enabled opts a Service in."""
    assert svcconfig.is_enabled(annotations) is enabled
