"""Probe annotations, verdict hysteresis and the panic guard (pure logic, no servers)."""

from __future__ import annotations

import pytest

import probes
from zenlead import model, probeconfig, probeview, probing

ON = {"zen-lead.io/probe": "http"}


def _config(**annotations: str) -> probeconfig.ProbeConfig:
    config, problems = probeconfig.parse(ON | annotations)
    assert config is not None, problems
    return config


class TestProbeConfig:
    """The probe annotations: defaults, validation, detection bounds."""

    def test_defaults_detect_a_hung_leader_within_two_seconds(self) -> None:
        """With no timing annotations, a hung leader is judged down in under 2 s."""
        config = _config()
        assert (config.interval_seconds, config.timeout_seconds, config.fall) == (0.5, 0.25, 3)
        assert config.detection_bounds()["hung"] < 2.0
        assert config.detection_bounds()["negative"] <= 0.55

    def test_no_probe_is_ready_only(self) -> None:
        """Without zen-lead.io/probe there is no probe config and no problem."""
        assert probeconfig.parse({}) == (None, [])

    @pytest.mark.parametrize(
        ("annotations", "key"),
        [
            pytest.param({"zen-lead.io/probe": "icmp"}, "zen-lead.io/probe", id="unknown-kind"),
            pytest.param(
                ON | {"zen-lead.io/probe-timeout": "1s", "zen-lead.io/probe-interval": "1s"},
                "zen-lead.io/probe-timeout",
                id="timeout-not-below-interval",
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-fall": "0"}, "zen-lead.io/probe-fall", id="fall-0"
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-expected-status": "5xx"},
                "zen-lead.io/probe-expected-status",
                id="bad-status",
            ),
            pytest.param(ON | {"zen-lead.io/probe-path": "x"}, "zen-lead.io/probe-path", id="path"),
            pytest.param(
                ON | {"zen-lead.io/probe-path": "/a b"}, "zen-lead.io/probe-path", id="path-space"
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-host": "a b"}, "zen-lead.io/probe-host", id="host-space"
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-body-regex": "("},
                "zen-lead.io/probe-body-regex",
                id="regex",
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-port": "Web!"}, "zen-lead.io/probe-port", id="port"
            ),
            pytest.param(
                {"zen-lead.io/probe-path": "/x"}, "zen-lead.io/probe-path", id="stray-without-probe"
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-panic-threshold": "2"},
                "zen-lead.io/probe-panic-threshold",
                id="panic-over-1",
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-detector": "Phi"},
                "zen-lead.io/probe-detector",
                id="detector-case",
            ),
            pytest.param(
                ON | {"zen-lead.io/probe-phi-threshold": "8"},
                "zen-lead.io/probe-phi-threshold",
                id="phi-setting-without-phi",
            ),
            pytest.param(
                ON
                | {"zen-lead.io/probe-detector": "phi", "zen-lead.io/probe-phi-threshold": "0.5"},
                "zen-lead.io/probe-phi-threshold",
                id="phi-threshold-below-1",
            ),
            pytest.param(
                ON
                | {
                    "zen-lead.io/probe-detector": "phi",
                    "zen-lead.io/probe-phi-acceptable-pause": "10ms",
                },
                "zen-lead.io/probe-phi-acceptable-pause",
                id="phi-pause-too-short",
            ),
        ],
    )
    def test_invalid(self, annotations: dict[str, str], key: str) -> None:
        """Each bad value is reported with its key, and the Service falls back to Ready-only."""
        config, problems = probeconfig.parse(annotations)
        assert config is None
        assert problems[0].key == key

    def test_phi_detector_settings(self) -> None:
        """The phi detector is opt-in; its bound for a hung pod is interval + acceptable pause."""
        assert _config().detector == "fixed"
        assert "hung_phi" not in _config().detection_bounds()
        config = _config(
            **{
                "zen-lead.io/probe-detector": "phi",
                "zen-lead.io/probe-phi-threshold": "10",
                "zen-lead.io/probe-phi-acceptable-pause": "200ms",
            }
        )
        assert (config.detector, config.phi_threshold, config.phi_pause_seconds) == (
            "phi",
            10.0,
            0.2,
        )
        bounds = config.detection_bounds()
        assert bounds["hung_phi"] == pytest.approx(0.5 + 0.2 + 0.05)
        assert bounds["hung_phi"] < bounds["hung"]
        assert config.fixed_silence_seconds == pytest.approx(0.25 + 2 * (0.1 + 0.25))

    def test_tcp_escapes_and_expect(self) -> None:
        r"""TCP send understands \r\n escapes; expect becomes a bytes regex."""
        config = _config(
            **{
                "zen-lead.io/probe": "tcp",
                "zen-lead.io/probe-tcp-send": "ROLE\\r\\n",
                "zen-lead.io/probe-tcp-expect": "master",
            }
        )
        assert config.spec == probes.TcpSpec(send=b"ROLE\r\n", expect=b"master")

    def test_status_ranges(self) -> None:
        """Expected statuses accept single codes and ranges."""
        config = _config(**{"zen-lead.io/probe-expected-status": "200-204, 304"})
        assert isinstance(config.spec, probes.HttpSpec)
        assert config.spec.expected == ((200, 204), (304, 304))


OK = probes.ProbeResult.success()
TIMEOUT = probes.ProbeResult.fail(probes.FailureClass.TIMEOUT, "timeout")
NEGATIVE = probes.ProbeResult.fail(probes.FailureClass.NEGATIVE, "HTTP 503")


def _run(results: list[probes.ProbeResult], start: probing.Health | None = None) -> list[str]:
    config = _config()
    health = start or probing.Health()
    states = []
    for i, result in enumerate(results):
        health = probing.judge(health, result, config, at=float(i))
        states.append(health.state)
    return states


class TestJudge:
    """Verdict hysteresis: first success up, fall for timeouts, negative at once, rise back."""

    @pytest.mark.parametrize(
        ("results", "expected"),
        [
            pytest.param([OK], ["up"], id="first-success-up-at-once"),
            pytest.param([OK, TIMEOUT, TIMEOUT, TIMEOUT], ["up", "up", "up", "down"], id="fall-3"),
            pytest.param([OK, TIMEOUT, OK, TIMEOUT], ["up"] * 4, id="streak-resets"),
            pytest.param([OK, NEGATIVE], ["up", "down"], id="negative-at-once"),
            pytest.param([NEGATIVE, OK, OK], ["down", "down", "up"], id="rise-2"),
            pytest.param([TIMEOUT], ["unknown"], id="unknown-until-evidence"),
        ],
    )
    def test_sequences(self, results: list[probes.ProbeResult], expected: list[str]) -> None:
        """Each sequence of results gives the expected states."""
        assert _run(results) == expected

    def test_an_improbable_silence_needs_two_failed_probes(self) -> None:
        """The phi detector's verdict makes a pod down early, but never on one probe."""
        config = _config()
        up = probing.judge(probing.Health(), OK, config, at=0.0)
        once = probing.judge(up, TIMEOUT, config, at=1.0, silent=True)
        assert once.state == "up"
        twice = probing.judge(once, TIMEOUT, config, at=2.0, silent=True)
        assert (twice.state, twice.failures, twice.first_failure_at) == ("down", 2, 1.0)
        assert probing.judge(once, TIMEOUT, config, at=2.0).state == "up"

    def test_first_failure_time_is_kept_for_the_streak(self) -> None:
        """The streak remembers when its first failure ended (where latency starts)."""
        config = _config()
        health = probing.judge(probing.Health(), OK, config, at=0.0)
        for at in (1.0, 2.0, 3.0):
            health = probing.judge(health, TIMEOUT, config, at=at)
        assert (health.state, health.first_failure_at) == ("down", 1.0)


def _pod(name: str) -> model.Pod:
    return model.Pod(
        namespace="ns", name=name, uid=f"uid-{name}", labels={}, created=0.0, deleting=False,
        node_name="n", phase="Running", ip="10.244.0.1", ready=True, ready_since=0.0, ports=(),
    )  # fmt: skip


class TestPanic:
    """Panic needs two or more pods failing together, at or over the threshold."""

    @pytest.mark.parametrize(
        ("first_failures", "panic"),
        [
            pytest.param({"a": 99.0}, False, id="one-down"),
            pytest.param({"a": 99.0, "b": 99.5}, True, id="two-of-three-together"),
            pytest.param({"a": 99.0, "b": 10.0}, False, id="two-down-far-apart"),
            pytest.param({"a": 99.0, "b": 99.0, "c": 99.0}, True, id="all-together"),
        ],
    )
    def test_panic(self, first_failures: dict[str, float], panic: bool) -> None:  # noqa: FBT001
        """Only correlated failures (inside the window before now=100) cause panic."""
        config = _config()
        pods = [_pod(n) for n in "abc"]
        wanted = {p.uid: probing.ProbeTarget("10.244.0.1", 80, leader=False) for p in pods}
        health = {p.uid: probing.Health(state="up") for p in pods}
        for name, at in first_failures.items():
            health[f"uid-{name}"] = probing.Health(
                state="down", failures=3, first_failure_at=at, failure=probes.FailureClass.TIMEOUT
            )
        view = probeview.view(pods, health, wanted, config, now=100.0)
        assert view.panic is panic
        assert view.down_count == len(first_failures)

    def test_panic_lasts_while_the_failing_share_stays_high(self) -> None:
        """Once in panic, time alone never clears it; a heal below the threshold does."""
        config = _config()
        pods = [_pod(n) for n in "abc"]
        wanted = {p.uid: probing.ProbeTarget("10.244.0.1", 80, leader=False) for p in pods}
        down = probing.Health(
            state="down", failures=30, first_failure_at=100.0, failure=probes.FailureClass.TIMEOUT
        )
        health = dict.fromkeys((p.uid for p in pods), down)
        late = 100.0 + 10 * config.panic_window_seconds  # A partition far longer than a window.

        def panic(*, was: bool) -> bool:
            return probeview.view(pods, health, wanted, config, now=late, was_panic=was).panic

        assert panic(was=True), "every pod still fails: still panic"
        assert not panic(was=False), "without hysteresis the window would have cleared it"
        health["uid-a"] = probing.Health(state="up")
        assert panic(was=True), "partial heal: 2 of 3 still fail, over the 0.5 threshold"
        health["uid-b"] = probing.Health(state="up")
        assert not panic(was=True), "1 of 3 fails: below the threshold, cleared"

    def test_explicit_answers_never_panic(self) -> None:
        """Pods that answer 'no' (a 503, a replica's role) prove the network works: no panic."""
        config = _config()
        pods = [_pod(n) for n in "abc"]
        wanted = {p.uid: probing.ProbeTarget("10.244.0.1", 80, leader=False) for p in pods}
        negative = probing.Health(
            state="down", failures=1, first_failure_at=99.5, failure=probes.FailureClass.NEGATIVE
        )
        health = {"uid-a": probing.Health(state="up"), "uid-b": negative, "uid-c": negative}
        view = probeview.view(pods, health, wanted, config, now=100.0, was_panic=True)
        assert not view.panic
        assert view.down_count == 2


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        pytest.param(None, '{"a":"unknown","b":"up","c":"down"}', id="nothing-published"),
        pytest.param(
            '{"a":"down","b":"down","c":"up"}',
            '{"a":"down","b":"up","c":"down"}',
            id="unknown-keeps-its-last-known",
        ),
        pytest.param('{"a":"weird"}', '{"a":"unknown","b":"up","c":"down"}', id="not-a-state"),
        pytest.param("[1, 2]", '{"a":"unknown","b":"up","c":"down"}', id="not-a-mapping"),
        pytest.param("{not json", '{"a":"unknown","b":"up","c":"down"}', id="not-json"),
        pytest.param("[" * 100_000, '{"a":"unknown","b":"up","c":"down"}', id="deep-nesting"),
        pytest.param(
            '{"a":"up","\u0661":"down"}', '{"a":"up","b":"up","c":"down"}', id="unicode-key"
        ),
    ],
)
def test_state_annotation_keeps_last_known_states(published: str | None, expected: str) -> None:
    """A pod with no verdict yet keeps its published state: a restart writes nothing new."""
    view = probeview.ProbeView(
        unhealthy={},
        up=set(),
        panic=False,
        stale=set(),
        states={"a": "unknown", "b": "up", "c": "down"},
        down_count=1,
        probed_count=2,
    )
    assert view.state_annotation(published) == expected
