"""Controller settings from flags, environment and an optional config file, validated.

Precedence, highest first: command-line flag, environment variable (``ZEN_LEAD_`` + the
setting's name in upper case, e.g. ``ZEN_LEAD_MAX_CONCURRENT_RECONCILES``), config file (YAML
mapping of setting names, e.g. a mounted ConfigMap; ``--config`` or ``ZEN_LEAD_CONFIG``),
built-in default. `FIELDS` is the single table of settings: the CLI builds its flags from it
and docs/configuration.md documents each entry. An invalid value raises `errors.ConfigError`
naming the setting, where it came from, and why.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import TYPE_CHECKING, Any

import yaml

from zenlead import errors

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping

__all__ = ("FIELDS", "Field", "Settings", "add_flags", "load")

ENV_PREFIX = "ZEN_LEAD_"
_SA_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclasses.dataclass(frozen=True)
class Field:
    """One setting: name, parser, default, help, and a check that returns an error or None."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    check: Callable[[Any], str | None] = lambda _v: None

    @property
    def flag(self) -> str:
        """Return the command-line flag, e.g. ``--max-concurrent-reconciles``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """Return the environment variable, e.g. ``ZEN_LEAD_MAX_CONCURRENT_RECONCILES``."""
        return ENV_PREFIX + self.name.upper()


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no"}:
        return False
    raise ValueError(f"{text!r} is not true or false")


def _namespaces(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in str(text).split(",") if n.strip())


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"

    return check


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _address(text: str) -> str:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004 - port range
        raise ValueError(f"{text!r} is not HOST:PORT or :PORT")
    del host
    return str(text)


FIELDS: tuple[Field, ...] = (
    Field("kubeconfig", str, None, "kubeconfig file; default: $KUBECONFIG, else in-cluster"),
    Field(
        "namespaces",
        _namespaces,
        (),
        "comma-separated namespaces to watch; empty means all namespaces",
    ),
    Field(
        "max_concurrent_reconciles",
        int,
        10,
        "Services reconciled in parallel (1-1000)",
        _between(1, 1000),
    ),
    Field(
        "max_cache_size_per_namespace",
        int,
        1000,
        "opted-in Services managed per namespace; the newest beyond it get a "
        "CacheLimitExceeded Warning and are not managed (1-100000)",
        _between(1, 100000),
    ),
    Field(
        "max_probes_in_flight",
        int,
        256,
        "active health probes running at once, over all Services (1-10000)",
        _between(1, 10000),
    ),
    Field(
        "prober_process",
        _bool,
        True,  # noqa: FBT003 - a default value, not a flag argument.
        "run the prober pool in a process of its own (own event loop and GIL), so that "
        "control-plane load (relists, reconciles, /metrics scrapes) cannot delay probes; "
        "false probes from the controller's own event loop",
    ),
    Field(
        "qps",
        float,
        50.0,
        "client-side API rate, requests per second (0-10000)",
        _between(0, 10000),
    ),
    Field("burst", int, 100, "client-side API burst (1-100000)", _between(1, 100000)),
    Field(
        "api_timeout_seconds",
        float,
        10.0,
        "timeout of every API call except watches (0.1-300)",
        _between(0.1, 300),
    ),
    Field(
        "watch_timeout_seconds",
        float,
        300.0,
        "the API server ends each watch after 80-100 % of this, and the informer resumes it "
        "from its last resourceVersion; lower it behind load balancers that cut idle "
        "connections (5-3600)",
        _between(5, 3600),
    ),
    Field("metrics_bind_address", _address, ":8080", "HOST:PORT of /metrics"),
    Field("health_probe_bind_address", _address, ":8081", "HOST:PORT of /healthz and /readyz"),
    Field("leader_elect", _bool, default=True, help="use a Lease so only one replica writes"),
    Field(
        "leader_election_id",
        str,
        "zen-lead-controller-leader-election",
        "name of the Lease",
    ),
    Field(
        "leader_election_namespace",
        str,
        None,
        "namespace of the Lease; default: $POD_NAMESPACE, the service account's namespace, "
        "the first watched namespace, or default",
    ),
    Field("lease_duration_seconds", float, 15.0, "Lease duration (2-300)", _between(2, 300)),
    Field(
        "renew_deadline_seconds",
        float,
        10.0,
        "give up leading after failing to renew this long (1-299)",
        _between(1, 299),
    ),
    Field(
        "retry_period_seconds",
        float,
        2.0,
        "Lease acquire/renew interval (0.1-60)",
        _between(0.1, 60),
    ),
    Field(
        "max_cache_staleness_seconds",
        float,
        10.0,
        "an informer out of touch with the API server for longer than this makes the cache "
        "stale: /readyz fails and this replica neither leads nor reconciles (1-300)",
        _between(1, 300),
    ),
    Field(
        "dead_letter_after_seconds",
        float,
        30.0,
        "a Service whose reconcile has failed 8 times in a row over at least this long is "
        "parked (Warning ReconcileFailing, zen_lead_dead_letter_services): retried slowly, "
        "last routing kept (1-3600)",
        _between(1, 3600),
    ),
    Field(
        "dead_letter_retry_seconds",
        float,
        300.0,
        "retry interval of a parked Service; its Service and pod events still retry at once "
        "(1-3600)",
        _between(1, 3600),
    ),
    Field(
        "trace_sample_ratio",
        float,
        0.0,
        "share of traces recorded, 0-1; 0 turns tracing off (needs the otel extra)",
        _between(0, 1),
    ),
    Field(
        "otlp_endpoint",
        str,
        None,
        "OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces",
    ),
    Field("log_format", str, "text", "text or json", _one_of("text", "json")),
    Field(
        "log_level",
        str,
        "info",
        "debug, info, warning or error",
        _one_of("debug", "info", "warning", "error"),
    ),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated controller settings; see `FIELDS` for each one's meaning and default."""

    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    max_concurrent_reconciles: int = 10
    max_cache_size_per_namespace: int = 1000
    max_probes_in_flight: int = 256
    prober_process: bool = True
    qps: float = 50.0
    burst: int = 100
    api_timeout_seconds: float = 10.0
    watch_timeout_seconds: float = 300.0
    metrics_bind_address: str = ":8080"
    health_probe_bind_address: str = ":8081"
    leader_elect: bool = True
    leader_election_id: str = "zen-lead-controller-leader-election"
    leader_election_namespace: str | None = None
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    max_cache_staleness_seconds: float = 10.0
    dead_letter_after_seconds: float = 30.0
    dead_letter_retry_seconds: float = 300.0
    trace_sample_ratio: float = 0.0
    otlp_endpoint: str | None = None
    log_format: str = "text"
    log_level: str = "info"

    def lease_namespace(self) -> str:
        """Return where the Lease lives (see the setting's help for the order)."""
        if self.leader_election_namespace:
            return self.leader_election_namespace
        if os.environ.get("POD_NAMESPACE"):
            return os.environ["POD_NAMESPACE"]
        try:
            return _SA_NAMESPACE.read_text().strip()
        except OSError:
            return self.namespaces[0] if self.namespaces else "default"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting (default None, so unset flags fall through to env and file)."""
    parser.add_argument("--config", help="YAML config file (default: $ZEN_LEAD_CONFIG)")
    for field in FIELDS:
        default = field.default if field.default not in ((), None) else "none"
        parser.add_argument(
            field.flag,
            dest=field.name,
            default=None,
            metavar="VALUE",
            help=f"{field.help} [env {field.env}; default {default}]",
        )


def load(
    flags: Mapping[str, Any], env: Mapping[str, str], *, config_path: str | None = None
) -> Settings:
    """Merge flags > env > config file > defaults, validate, and return `Settings`."""
    path = config_path or env.get(ENV_PREFIX + "CONFIG")
    file_values = _read_file(path) if path else {}
    unknown = set(file_values) - {f.name for f in FIELDS}
    if unknown:
        raise errors.ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}"
        )
    values: dict[str, Any] = {}
    for field in FIELDS:
        for source, raw in (
            (f"flag {field.flag}", flags.get(field.name)),
            (f"environment {field.env}", env.get(field.env)),
            (f"config file {path}", file_values.get(field.name)),
        ):
            if raw is not None:
                values[field.name] = _parse(field, raw, source)
                break
    if "kubeconfig" not in values and env.get("KUBECONFIG"):
        values["kubeconfig"] = env["KUBECONFIG"].split(os.pathsep)[0]
    settings = Settings(**values)
    _check_lease_timings(settings)
    return settings


def _parse(field: Field, raw: Any, source: str) -> Any:
    # Flags and env are strings; YAML may give numbers, booleans or lists: parse their text.
    text = ",".join(str(x) for x in raw) if isinstance(raw, list) else str(raw)
    try:
        value = field.parse(text)
    except (TypeError, ValueError) as exc:
        raise errors.ConfigError(f"{field.name} ({source}): {exc}") from exc
    problem = field.check(value)
    if problem:
        raise errors.ConfigError(f"{field.name} ({source}): {value!r} {problem}")
    return value


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(pathlib.Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise errors.ConfigError(f"config file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise errors.ConfigError(f"config file {path}: must be a mapping of setting names")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _check_lease_timings(s: Settings) -> None:
    if not s.lease_duration_seconds > s.renew_deadline_seconds > s.retry_period_seconds:
        raise errors.ConfigError(
            "lease_duration_seconds > renew_deadline_seconds > retry_period_seconds must hold "
            f"(got {s.lease_duration_seconds:g}, {s.renew_deadline_seconds:g}, "
            f"{s.retry_period_seconds:g})"
        )
