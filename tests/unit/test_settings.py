"""Settings merge flags > environment > config file > defaults and reject bad values by name."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from zenlead import errors, settings

if TYPE_CHECKING:
    import pathlib


def write_config(tmp_path: pathlib.Path, text: str) -> str:
    """Write a YAML config file and return its path."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    """Without flags, environment or file every setting has its documented default."""
    loaded = settings.load({}, {})
    assert loaded == settings.Settings()
    for field in settings.FIELDS:
        assert getattr(loaded, field.name) == field.default, field.name


def test_fields_match_settings() -> None:
    """The FIELDS table and the Settings dataclass list the same settings with equal defaults."""
    table = {f.name: f.default for f in settings.FIELDS}
    dataclass = {f.name: f.default for f in dataclasses.fields(settings.Settings)}
    assert table == dataclass


@pytest.mark.parametrize(
    ("flag", "env", "file", "expected"),
    [
        pytest.param("3", "4", 5, 3, id="flag-wins"),
        pytest.param(None, "4", 5, 4, id="env-beats-file"),
        pytest.param(None, None, 5, 5, id="file-beats-default"),
        pytest.param(None, None, None, 10, id="default"),
        pytest.param("3", None, 5, 3, id="flag-beats-file"),
        pytest.param("3", "4", None, 3, id="flag-beats-env"),
    ],
)
def test_precedence(
    tmp_path: pathlib.Path, flag: str | None, env: str | None, file: int | None, expected: int
) -> None:
    """A flag beats the environment, which beats the config file, which beats the default."""
    config = write_config(tmp_path, "" if file is None else f"max_concurrent_reconciles: {file}\n")
    loaded = settings.load(
        {"max_concurrent_reconciles": flag},
        {} if env is None else {"ZEN_LEAD_MAX_CONCURRENT_RECONCILES": env},
        config_path=config,
    )
    assert loaded.max_concurrent_reconciles == expected


def test_precedence_is_per_setting(tmp_path: pathlib.Path) -> None:
    """Each setting takes its own highest source, so sources combine."""
    config = write_config(tmp_path, "qps: 5\nburst: 7\nlog_level: debug\n")
    loaded = settings.load(
        {"qps": "1.5", "burst": None},
        {"ZEN_LEAD_BURST": "9", "ZEN_LEAD_LOG_FORMAT": "json"},
        config_path=config,
    )
    assert (loaded.qps, loaded.burst, loaded.log_level, loaded.log_format) == (
        1.5,
        9,
        "debug",
        "json",
    )


def test_config_path_from_environment(tmp_path: pathlib.Path) -> None:
    """ZEN_LEAD_CONFIG names the config file when --config is not given."""
    config = write_config(tmp_path, "burst: 7\n")
    assert settings.load({}, {"ZEN_LEAD_CONFIG": config}).burst == 7


def test_config_path_argument_beats_environment(tmp_path: pathlib.Path) -> None:
    """An explicit config_path wins over ZEN_LEAD_CONFIG."""
    config = write_config(tmp_path, "burst: 7\n")
    other = tmp_path / "other.yaml"
    other.write_text("burst: 8\n")
    loaded = settings.load({}, {"ZEN_LEAD_CONFIG": str(other)}, config_path=config)
    assert loaded.burst == 7


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        pytest.param("leader_elect: false\n", "leader_elect", False, id="yaml-bool"),
        pytest.param("qps: 5\n", "qps", 5.0, id="yaml-int-for-float"),
        pytest.param("namespaces: [a, b]\n", "namespaces", ("a", "b"), id="yaml-list"),
        pytest.param("namespaces: a, b\n", "namespaces", ("a", "b"), id="yaml-comma-string"),
        pytest.param(
            "max-concurrent-reconciles: 4\n", "max_concurrent_reconciles", 4, id="dashed-key"
        ),
        pytest.param(
            "metrics_bind_address: '127.0.0.1:9000'\n",
            "metrics_bind_address",
            "127.0.0.1:9000",
            id="address",
        ),
        pytest.param("kubeconfig: /etc/kube.yaml\n", "kubeconfig", "/etc/kube.yaml", id="path"),
    ],
)
def test_config_file_values(tmp_path: pathlib.Path, text: str, name: str, expected: Any) -> None:
    """YAML numbers, booleans and lists are accepted, and dashes in keys mean underscores."""
    loaded = settings.load({}, {}, config_path=write_config(tmp_path, text))
    assert getattr(loaded, name) == expected


@pytest.mark.parametrize(
    "text",
    [pytest.param("", id="empty"), pytest.param("# only a comment\n", id="comment-only")],
)
def test_empty_config_file_means_defaults(tmp_path: pathlib.Path, text: str) -> None:
    """An empty config file changes nothing."""
    assert settings.load({}, {}, config_path=write_config(tmp_path, text)) == settings.Settings()


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        pytest.param("leader_elect", "true", True, id="bool-true"),
        pytest.param("leader_elect", "Yes", True, id="bool-yes"),
        pytest.param("leader_elect", "1", True, id="bool-one"),
        pytest.param("leader_elect", "FALSE", False, id="bool-false"),
        pytest.param("leader_elect", "no", False, id="bool-no"),
        pytest.param("leader_elect", "0", False, id="bool-zero"),
        pytest.param("namespaces", " a , ,b ", ("a", "b"), id="namespaces-trimmed"),
        pytest.param("namespaces", "", (), id="namespaces-empty-means-all"),
        pytest.param("max_concurrent_reconciles", "1", 1, id="reconciles-min"),
        pytest.param("max_concurrent_reconciles", "1000", 1000, id="reconciles-max"),
        pytest.param("qps", "0", 0.0, id="qps-zero"),
        pytest.param("api_timeout_seconds", "0.1", 0.1, id="timeout-min"),
        pytest.param("metrics_bind_address", ":9090", ":9090", id="port-only"),
        pytest.param("health_probe_bind_address", "[::1]:8081", "[::1]:8081", id="ipv6-address"),
        pytest.param("log_format", "json", "json", id="log-format"),
        pytest.param("log_level", "warning", "warning", id="log-level"),
        pytest.param("leader_election_namespace", "ops", "ops", id="lease-namespace"),
    ],
)
def test_valid_flag_values(name: str, raw: str, expected: Any) -> None:
    """Flag strings are parsed into each setting's type."""
    assert getattr(settings.load({name: raw}, {}), name) == expected


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        pytest.param("max_concurrent_reconciles", "0", "between 1 and 1000", id="reconciles-0"),
        pytest.param(
            "max_concurrent_reconciles", "1001", "between 1 and 1000", id="reconciles-big"
        ),
        pytest.param("max_concurrent_reconciles", "ten", "invalid literal", id="reconciles-word"),
        pytest.param("max_concurrent_reconciles", "2.5", "invalid literal", id="reconciles-float"),
        pytest.param("max_cache_size_per_namespace", "0", "between 1 and 100000", id="cache-0"),
        pytest.param(
            "max_cache_size_per_namespace", "100001", "between 1 and 100000", id="cache-big"
        ),
        pytest.param("qps", "-1", "between 0 and 10000", id="qps-negative"),
        pytest.param("qps", "10001", "between 0 and 10000", id="qps-big"),
        pytest.param("qps", "nan", "between 0 and 10000", id="qps-nan"),
        pytest.param("qps", "fast", "could not convert", id="qps-word"),
        pytest.param("burst", "0", "between 1 and 100000", id="burst-0"),
        pytest.param("api_timeout_seconds", "0.05", "between 0.1 and 300", id="timeout-small"),
        pytest.param("api_timeout_seconds", "301", "between 0.1 and 300", id="timeout-big"),
        pytest.param("metrics_bind_address", "8080", "not HOST:PORT", id="metrics-no-colon"),
        pytest.param("metrics_bind_address", "host:", "not HOST:PORT", id="metrics-no-port"),
        pytest.param("metrics_bind_address", ":http", "not HOST:PORT", id="metrics-named-port"),
        pytest.param("metrics_bind_address", ":65536", "not HOST:PORT", id="metrics-port-big"),
        pytest.param("health_probe_bind_address", "x", "not HOST:PORT", id="health-address"),
        pytest.param("leader_elect", "maybe", "not true or false", id="leader-elect"),
        pytest.param("lease_duration_seconds", "1", "between 2 and 300", id="lease-small"),
        pytest.param("lease_duration_seconds", "301", "between 2 and 300", id="lease-big"),
        pytest.param("renew_deadline_seconds", "0.5", "between 1 and 299", id="renew-small"),
        pytest.param("retry_period_seconds", "0.01", "between 0.1 and 60", id="retry-small"),
        pytest.param("retry_period_seconds", "61", "between 0.1 and 60", id="retry-big"),
        pytest.param("log_format", "xml", "one of text, json", id="log-format"),
        pytest.param("log_level", "trace", "one of debug, info, warning, error", id="log-level"),
        pytest.param("log_level", "INFO", "one of debug", id="log-level-case"),
    ],
)
@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_invalid_values(
    tmp_path: pathlib.Path, name: str, raw: str, fragment: str, where: str
) -> None:
    """Every invalid value raises ConfigError naming the setting, its source and the reason."""
    field = next(f for f in settings.FIELDS if f.name == name)
    flags: dict[str, Any] = {}
    env: dict[str, str] = {}
    config = None
    if where == "flag":
        flags[name] = raw
        source = f"flag {field.flag}"
    elif where == "env":
        env[field.env] = raw
        source = f"environment {field.env}"
    else:
        config = write_config(tmp_path, f"{name}: '{raw}'\n")
        source = f"config file {config}"
    with pytest.raises(errors.ConfigError) as caught:
        settings.load(flags, env, config_path=config)
    message = str(caught.value)
    assert message.startswith(f"{name} ({source}): ")
    assert fragment in message


def test_invalid_lower_source_is_ignored_when_higher_wins() -> None:
    """A bad environment value does not matter when a flag sets the same setting."""
    loaded = settings.load({"burst": "5"}, {"ZEN_LEAD_BURST": "lots"})
    assert loaded.burst == 5


def test_unknown_config_keys_are_rejected(tmp_path: pathlib.Path) -> None:
    """Keys that are not settings are rejected, all of them named, with the file path."""
    config = write_config(tmp_path, "burst: 5\nqsp: 3\nmetrics-port: 1\n")
    with pytest.raises(errors.ConfigError) as caught:
        settings.load({}, {}, config_path=config)
    assert str(caught.value) == f"config file {config}: unknown setting(s) metrics_port, qsp"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("- burst\n- qps\n", "must be a mapping", id="list"),
        pytest.param("just text\n", "must be a mapping", id="scalar"),
        pytest.param("burst: [\n", "", id="broken-yaml"),
    ],
)
def test_bad_config_files(tmp_path: pathlib.Path, text: str, fragment: str) -> None:
    """A config file that is not a YAML mapping raises ConfigError naming the file."""
    config = write_config(tmp_path, text)
    with pytest.raises(errors.ConfigError) as caught:
        settings.load({}, {}, config_path=config)
    assert str(caught.value).startswith(f"config file {config}: ")
    assert fragment in str(caught.value)


def test_missing_config_file(tmp_path: pathlib.Path) -> None:
    """A config path that does not exist raises ConfigError naming it."""
    missing = str(tmp_path / "absent.yaml")
    with pytest.raises(errors.ConfigError, match=r"absent\.yaml"):
        settings.load({}, {}, config_path=missing)


@pytest.mark.parametrize(
    ("lease", "renew", "retry", "ok"),
    [
        pytest.param("15", "10", "2", True, id="defaults"),
        pytest.param("3", "2", "1", True, id="tight"),
        pytest.param("10", "10", "2", False, id="renew-equals-lease"),
        pytest.param("10", "12", "2", False, id="renew-above-lease"),
        pytest.param("15", "2", "2", False, id="retry-equals-renew"),
        pytest.param("15", "5", "10", False, id="retry-above-renew"),
    ],
)
def test_lease_timing_order(lease: str, renew: str, retry: str, *, ok: bool) -> None:
    """lease_duration > renew_deadline > retry_period must hold, else ConfigError with values."""
    flags = {
        "lease_duration_seconds": lease,
        "renew_deadline_seconds": renew,
        "retry_period_seconds": retry,
    }
    if ok:
        loaded = settings.load(flags, {})
        assert loaded.lease_duration_seconds == float(lease)
        return
    with pytest.raises(errors.ConfigError) as caught:
        settings.load(flags, {})
    message = str(caught.value)
    assert "lease_duration_seconds > renew_deadline_seconds > retry_period_seconds" in message
    assert f"(got {float(lease):g}, {float(renew):g}, {float(retry):g})" in message


@pytest.mark.parametrize(
    ("flags", "env", "file", "expected"),
    [
        pytest.param({}, {}, None, None, id="nothing-means-in-cluster"),
        pytest.param({}, {"KUBECONFIG": "/k/a"}, None, "/k/a", id="kubeconfig-env"),
        pytest.param({}, {"KUBECONFIG": "/k/a:/k/b"}, None, "/k/a", id="first-of-list"),
        pytest.param(
            {},
            {"KUBECONFIG": "/k/a", "ZEN_LEAD_KUBECONFIG": "/z"},
            None,
            "/z",
            id="zen-lead-env-wins",
        ),
        pytest.param(
            {"kubeconfig": "/flag"}, {"KUBECONFIG": "/k/a"}, None, "/flag", id="flag-wins"
        ),
        pytest.param({}, {"KUBECONFIG": "/k/a"}, "/file", "/file", id="config-file-wins"),
        pytest.param({}, {"KUBECONFIG": ""}, None, None, id="empty-kubeconfig-env"),
    ],
)
def test_kubeconfig_fallback(
    tmp_path: pathlib.Path,
    flags: dict[str, str],
    env: dict[str, str],
    file: str | None,
    expected: str | None,
) -> None:
    """$KUBECONFIG (its first entry) is used only when no zen-lead source sets kubeconfig."""
    config = write_config(tmp_path, f"kubeconfig: {file}\n") if file else None
    assert settings.load(flags, env, config_path=config).kubeconfig == expected


@pytest.mark.parametrize(
    ("name", "flag", "env"),
    [
        pytest.param("qps", "--qps", "ZEN_LEAD_QPS", id="short"),
        pytest.param(
            "max_concurrent_reconciles",
            "--max-concurrent-reconciles",
            "ZEN_LEAD_MAX_CONCURRENT_RECONCILES",
            id="long",
        ),
    ],
)
def test_field_flag_and_env_names(name: str, flag: str, env: str) -> None:
    """Each setting's flag and environment variable derive from its name."""
    field = next(f for f in settings.FIELDS if f.name == name)
    assert (field.flag, field.env) == (flag, env)
