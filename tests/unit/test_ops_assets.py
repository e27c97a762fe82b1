"""Alert rules, dashboard and runbooks use only what the code exports, and every alert is tested.

Covers deploy/prometheus/rules.yaml (`promtool check rules` and `promtool test rules` on
deploy/prometheus/tests/), dashboards/zen-lead.json and docs/runbooks/. Every metric and label
named in a PromQL expression is checked against the live registry of `zenlead.metrics.Metrics`,
so a renamed metric, or a label the code does not have (the Go original's `pod`), fails here
instead of leaving someone's alert silent. promtool comes from `tests/controlplane/build.sh`;
without it these tests fail with the command that builds it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from prometheus_client import metrics as prom_metrics

from tests import helpers
from zenlead import metrics
from zenlead.testing import assets

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

RULES = helpers.ROOT / "deploy" / "prometheus" / "rules.yaml"
RULE_TESTS = sorted((helpers.ROOT / "deploy" / "prometheus" / "tests").glob("*.yaml"))
DASHBOARD = helpers.ROOT / "dashboards" / "zen-lead.json"
RUNBOOKS = helpers.ROOT / "docs" / "runbooks"
RUNBOOK_URL = "https://github.com/kube-zen/zen-lead/blob/main/docs/runbooks/{}.md"
RUNBOOK_SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
DOCS_WITH_PROMQL = [*sorted(RUNBOOKS.glob("*.md")), helpers.ROOT / "docs" / "observability.md"]

# Labels Prometheus attaches to every scraped series, and the series the scrape itself creates.
TARGET_LABELS = frozenset({"job", "instance"})
SCRAPE_SERIES = {"up": frozenset()}

# PromQL words that are not metric names. Functions are recognised by the "(" that follows them.
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "atan2", "inf", "nan", "start", "end"}
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# Aggregations may put their grouping first: `sum by (job) (...)`.
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
# Functions whose string arguments name labels; the checker would have to read those strings.
LABEL_FUNCTIONS = frozenset({"label_replace", "label_join", "sort_by_label", "sort_by_label_desc"})
# Grafana's interval macros, replaced by a duration so promtool can parse dashboard queries.
GRAFANA_MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<var>\$\{[^}]*\}|\$\w+)
    | (?P<number>0[xX][0-9a-fA-F]+
        |(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}@])
    """,
    re.VERBOSE,
)


# The registry ---------------------------------------------------------------------------------


def _touch(collector: prom_metrics.MetricWrapperBase) -> None:
    """Create one labelled sample, so the exposition shows the collector's series names."""
    labelnames = collector._labelnames
    if not labelnames:
        return
    child: Any = collector.labels(*(f"x{i}" for i in range(len(labelnames))))
    kind = collector._type
    if kind == "counter":
        child.inc()
    elif kind == "gauge":
        child.set(1)
    elif kind in {"histogram", "summary"}:
        child.observe(1)
    # Other kinds keep no sample; their names come from _SUFFIXES below.


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exported_series() -> dict[str, frozenset[str]]:
    """Return every series name `Metrics` exports, with the label names it carries."""
    instance = metrics.Metrics()
    declared: dict[str, set[str]] = {}
    for collector in list(instance.registry._collector_to_names):
        if isinstance(collector, prom_metrics.MetricWrapperBase):
            declared[collector._name] = set(collector._labelnames)
            _touch(collector)
    found: dict[str, set[str]] = {}
    for family in instance.registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
        if not family.samples:
            # Nothing to report yet (a custom collector, say): use the declared label names.
            labels = set(getattr(family, "_labelnames", ())) | declared.get(family.name, set())
            for suffix in _SUFFIXES.get(family.type, ("",)):
                extra = {"le"} if suffix == "_bucket" else set()
                found.setdefault(family.name + suffix, set()).update(labels | extra)
    found.update({name: set(labels) for name, labels in SCRAPE_SERIES.items()})
    return {name: frozenset(labels | TARGET_LABELS) for name, labels in found.items()}


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    """Return the series of a fresh `Metrics` registry (see `exported_series`)."""
    return exported_series()


def test_registry_introspection_sees_labels(exported: dict[str, frozenset[str]]) -> None:
    """The registry scan knows suffixed names and label names, including `le` on buckets only."""
    assert exported["zen_lead_failover_count_total"] >= {"namespace", "service", "reason"}
    assert "le" in exported["zen_lead_failover_latency_seconds_bucket"]
    assert "le" not in exported["zen_lead_failover_latency_seconds_count"]
    assert exported["zen_lead_store_objects"] >= {"resource", "namespace"}
    assert "process_start_time_seconds" in exported
    assert exported["zen_lead_leader_duration_seconds"] == {"namespace", "service", *TARGET_LABELS}


# A small PromQL reader ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Token:
    """One lexical token of a PromQL expression."""

    kind: str
    text: str


@dataclasses.dataclass
class Uses:
    """What one PromQL expression names: selectors, grouping labels and output labels."""

    selectors: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)
    """(metric name, label names in its matchers) per selector."""
    groupings: list[tuple[str, list[str], list[str]]] = dataclasses.field(default_factory=list)
    """(keyword, label names, metric names in the keyword's scope) per by/without/on/..."""
    problems: list[str] = dataclasses.field(default_factory=list)
    """Things the reader cannot vouch for; each fails the test."""

    def metrics(self) -> set[str]:
        """Return the metric names selected anywhere in the expression."""
        return {name for name, _ in self.selectors}

    def output_labels(self, known: dict[str, frozenset[str]]) -> set[str]:
        """Return the labels the result may carry: the `by` labels if any, else all labels."""
        by = {label for kw, labels, _ in self.groupings if kw == "by" for label in labels}
        if by:
            return by
        return {label for name in self.metrics() for label in known.get(name, ())}


def tokenize(expr: str) -> list[Token]:
    """Split `expr` into tokens (whitespace and comments dropped); fail on anything unknown."""
    tokens, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise AssertionError(f"cannot read PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind not in {"space", "comment"}:
            tokens.append(Token(kind, match.group()))
    return tokens


def _close(tokens: list[Token], start: int, pair: tuple[str, str] = ("(", ")")) -> int:
    """Return the index of the token that closes the bracket opened at `start`."""
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i].text == pair[0]:
            depth += 1
        elif tokens[i].text == pair[1]:
            depth -= 1
            if depth == 0:
                return i
    raise AssertionError(f"unbalanced {pair[0]} in {' '.join(t.text for t in tokens)}")


def _names_between(tokens: list[Token], start: int, end: int) -> list[str]:
    return [t.text for t in tokens[start:end] if t.kind == "name"]


def _matchers(tokens: list[Token], start: int, end: int) -> list[str]:
    """Return the label names of the matchers between `{` at `start` and `}` at `end`."""
    return [
        tokens[i].text
        for i in range(start + 1, end)
        if tokens[i].kind == "name" and tokens[i + 1].text in {"=", "!=", "=~", "!~"}
    ]


def _scope(tokens: list[Token], i: int) -> tuple[int, int]:
    """Return the token range a grouping keyword at `i` applies to."""
    keyword = tokens[i].text
    if keyword in {"by", "without"}:
        after_labels = _close(tokens, i + 1) + 1
        if i > 0 and tokens[i - 1].text == ")":  # sum (expr) by (labels)
            depth, j = 0, i - 1
            while j >= 0:
                depth += {")": 1, "(": -1}.get(tokens[j].text, 0)
                if depth == 0:
                    return j, i
                j -= 1
        if after_labels < len(tokens) and tokens[after_labels].text == "(":  # sum by (x) (expr)
            return after_labels, _close(tokens, after_labels)
    return 0, len(tokens)  # on/ignoring/group_*: either side of the operator; be generous.


def analyse(expr: str) -> Uses:
    """Return the metrics and labels `expr` names (a careful reading, not a full parser)."""
    tokens = tokenize(expr)
    uses = Uses()
    selected: list[tuple[int, str]] = []  # (token index, metric name)
    scopes: list[tuple[str, list[str], int, int]] = []  # (keyword, labels, first, last token)
    skip: set[int] = set()
    for i, tok in enumerate(tokens):
        if i in skip or tok.kind != "name":
            continue
        nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if tok.text in GROUPING:
            if nxt == "(":
                end = _close(tokens, i + 1)
                skip.update(range(i + 1, end + 1))
                scopes.append((tok.text, _names_between(tokens, i + 2, end), *_scope(tokens, i)))
        elif tok.text in KEYWORDS:
            continue
        elif nxt == "(" or (tok.text in AGGREGATIONS and nxt in {"by", "without"}):
            if tok.text in LABEL_FUNCTIONS:
                uses.problems.append(f"{tok.text}() names labels in strings: extend this checker")
        else:
            matchers: list[str] = []
            if nxt == "{":
                end = _close(tokens, i + 1, ("{", "}"))
                matchers = _matchers(tokens, i + 1, end)
                skip.update(range(i + 1, end + 1))
            selected.append((i, tok.text))
            uses.selectors.append((tok.text, matchers))
    if any(tok.text == "{" and i not in skip for i, tok in enumerate(tokens)):
        uses.problems.append("a selector without a metric name")
    uses.groupings = [
        (keyword, labels, [name for at, name in selected if first <= at <= last])
        for keyword, labels, first, last in scopes
    ]
    return uses


def label_errors(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """Return why `expr` names something `known` does not have (empty when it is all real)."""
    uses = analyse(expr)
    errors = list(uses.problems)
    if not uses.selectors:
        errors.append("selects no metric")
    for name, matchers in uses.selectors:
        if name not in known:
            errors.append(f"metric {name} is not exported")
            continue
        errors.extend(
            f"{name} has no label {label}"
            for label in matchers
            if label not in known[name] and label != "__name__"
        )
    for keyword, labels, inside in uses.groupings:
        available = set().union(*(known.get(name, ()) for name in inside))
        errors.extend(
            f"{keyword} ({label}): no metric in its scope ({', '.join(inside)}) has it"
            for label in labels
            if label not in available
        )
    return errors


@pytest.mark.parametrize(
    ("expr", "wanted"),
    [
        pytest.param('rate(zen_lead_probes_total{kind="http"}[5m])', [], id="real-label"),
        pytest.param(
            'sum by (pod) (zen_lead_leader_duration_seconds{job="zen-lead"})',
            ["by (pod): no metric"],
            id="upstream-pod-label",
        ),
        pytest.param(
            'zen_lead_pods_available{pod="x"}',
            ["zen_lead_pods_available has no label pod"],
            id="unknown-matcher",
        ),
        pytest.param("zen_lead_failover_total", ["metric zen_lead_failover_total"], id="typo"),
        pytest.param(
            "histogram_quantile(0.9, sum by (le) (rate(zen_lead_probes_total[5m])))",
            ["by (le): no metric"],
            id="le-on-a-counter",
        ),
        pytest.param(
            "sum(rate(zen_lead_failover_latency_seconds_count[5m])) by (le)",
            ["by (le): no metric"],
            id="trailing-by",
        ),
        pytest.param(
            'label_replace(up, "a", "$1", "b", "(.*)")', ["label_replace() names"], id="label-fn"
        ),
    ],
)
def test_checker_catches_bad_names(
    exported: dict[str, frozenset[str]], expr: str, wanted: list[str]
) -> None:
    """The checker reports unknown metrics and labels, so the checks below can fail."""
    errors = label_errors(expr, exported)
    assert len(errors) == len(wanted), errors
    for error, prefix in zip(errors, wanted, strict=True):
        assert error.startswith(prefix), errors


# Rules ----------------------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


ALERT_NAMES = sorted({rule["alert"] for rule in _alerts()})


def _recorded(known: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Return the recording rules' series with the labels they keep."""
    series = dict(known)
    for rule in _rules():
        if "record" in rule:
            kept = analyse(rule["expr"]).output_labels(series) | set(rule.get("labels") or {})
            series[rule["record"]] = frozenset(kept | TARGET_LABELS)
    return series


def _rule_id(rule: dict[str, Any]) -> str:
    severity = (rule.get("labels") or {}).get("severity", "")
    return f"{rule.get('alert') or rule.get('record')}-{severity}".rstrip("-")


@pytest.mark.parametrize("rule", _rules(), ids=_rule_id)
def test_rule_names_only_exported_metrics_and_labels(
    exported: dict[str, frozenset[str]], rule: dict[str, Any]
) -> None:
    """Each rule selects exported metrics (or recorded ones) by labels those series carry."""
    known = _recorded(exported)
    assert label_errors(rule["expr"], known) == []
    if "alert" in rule:
        # Annotations may only print labels the alert has.
        has = analyse(rule["expr"]).output_labels(known) | set(rule.get("labels") or {})
        for text in (rule.get("annotations") or {}).values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in has, f"{rule['alert']} prints $labels.{label}, not in {has}"


@pytest.mark.parametrize("rule", _alerts(), ids=_rule_id)
def test_alert_is_documented(rule: dict[str, Any]) -> None:
    """Each alert has a severity, summary, description and a runbook with the four sections."""
    name = rule["alert"]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    notes = rule["annotations"]
    assert notes["summary"]
    assert notes["description"]
    assert notes["runbook_url"] == RUNBOOK_URL.format(name)
    runbook = RUNBOOKS / f"{name}.md"
    assert runbook.is_file(), f"missing {runbook.relative_to(helpers.ROOT)}"
    headings = re.findall(r"^## (.+?)\s*$", runbook.read_text(), flags=re.MULTILINE)
    assert [h for h in headings if h in RUNBOOK_SECTIONS] == list(RUNBOOK_SECTIONS), headings


def test_every_runbook_belongs_to_an_alert() -> None:
    """No runbook is left behind for an alert that was renamed or removed."""
    files = {p.stem for p in RUNBOOKS.glob("*.md")} - {"troubleshooting"}
    assert files == set(ALERT_NAMES)


def test_troubleshooting_covers_the_common_scenarios() -> None:
    """docs/runbooks/troubleshooting.md has a section per scenario the issue lists."""
    text = (RUNBOOKS / "troubleshooting.md").read_text().lower()
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    for topic in (
        "no endpoints",
        "leader does not change",
        "flapping",
        "probe misconfiguration",
        "named-port",
        "rbac",
        "throttling",
        "panic",
        "not leading",
    ):
        assert any(topic in h for h in headings), (topic, headings)


def _alert_tests() -> Iterator[dict[str, Any]]:
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            yield from group.get("alert_rule_test") or []


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_has_firing_and_quiet_unit_tests(name: str) -> None:
    """Every alert rule has a promtool case where it fires and one where the alert is quiet."""
    cases = [case for case in _alert_tests() if case["alertname"] == name]
    fired = [alert for case in cases for alert in case.get("exp_alerts") or []]
    severities = {rule["labels"]["severity"] for rule in _alerts() if rule["alert"] == name}
    assert {alert["exp_labels"]["severity"] for alert in fired} == severities, name
    assert any(not case.get("exp_alerts") for case in cases), f"no quiet test for {name}"
    for alert in fired:
        assert alert["exp_annotations"]["runbook_url"] == RUNBOOK_URL.format(name)


@pytest.fixture(scope="module")
def promtool() -> pathlib.Path:
    """Return promtool built by tests/controlplane/build.sh (fails with the build command)."""
    return assets.find("promtool")


def _run(promtool: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_the_rules(promtool: pathlib.Path) -> None:
    """`promtool check rules` accepts rules.yaml."""
    done = _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_pass(promtool: pathlib.Path) -> None:
    """`promtool test rules` passes every file in deploy/prometheus/tests/."""
    assert RULE_TESTS
    done = _run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS), done.stdout


# Dashboard ------------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def _targets() -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets") or []
    ]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _dashboard()["templating"]["list"]}


def test_dashboard_shape() -> None:
    """The dashboard has a Prometheus datasource variable, job/namespace/service variables."""
    board = _dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    variables = _variables()
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "service"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"]
        assert variables[name]["multi"]
    ids = [panel["id"] for panel in _panels(board["panels"])]
    assert len(ids) == len(set(ids))
    for panel in _panels(board["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


@pytest.mark.parametrize(
    ("title", "target"),
    [pytest.param(title, target, id=f"{title} {target['refId']}") for title, target in _targets()],
)
def test_dashboard_query_names_only_exported_metrics_and_labels(
    exported: dict[str, frozenset[str]], title: str, target: dict[str, Any]
) -> None:
    """Each panel query uses exported series and labels, and its legend prints real labels."""
    known = _recorded(exported)
    expr = target["expr"]
    assert label_errors(expr, known) == [], title
    output = analyse(expr).output_labels(known)
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
        assert label in output, f"{title}: legend prints {{{{{label}}}}}, not in {output}"


def test_dashboard_variables_use_exported_labels(exported: dict[str, frozenset[str]]) -> None:
    """label_values(...) variables read labels the chosen metric has."""
    for variable in _variables().values():
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text)
        if variable["type"] != "query":
            continue
        assert match, f"variable {variable['name']}: unexpected query {text!r}"
        selector, label = match.groups()
        assert label_errors(selector, exported) == []
        (name,) = analyse(selector).metrics()
        assert label in exported[name], variable["name"]


def test_promtool_parses_every_dashboard_query(
    promtool: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Every dashboard query is valid PromQL (Grafana's macros replaced by durations)."""
    rules = []
    for n, (_, target) in enumerate(_targets()):
        expr = target["expr"]
        for macro, duration in GRAFANA_MACROS.items():
            expr = expr.replace(macro, duration)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = _run(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


# PromQL in the runbooks and docs --------------------------------------------------------------

_CONTINUES = ("-", "+", "/", "*", "and ", "or ", "unless ")


def _doc_queries() -> list[tuple[str, str]]:
    """Return (file name, expression) for each query in a ```promql block of the docs."""
    found = []
    for path in DOCS_WITH_PROMQL:
        for block in re.findall(r"```promql\n(.*?)```", path.read_text(), flags=re.DOTALL):
            exprs: list[str] = []
            for line in textwrap.dedent(block).splitlines():
                if exprs and (line[:1].isspace() or line.startswith(_CONTINUES)):
                    exprs[-1] += "\n" + line
                elif line.strip():
                    exprs.append(line)
            found += [(path.name, expr) for expr in exprs]
    return found


@pytest.mark.parametrize(
    ("doc", "expr"),
    [pytest.param(doc, expr, id=f"{doc}: {expr[:50]}") for doc, expr in _doc_queries()],
)
def test_doc_query_names_only_exported_metrics_and_labels(
    exported: dict[str, frozenset[str]], doc: str, expr: str
) -> None:
    """The PromQL a runbook tells someone to run at 3 a.m. uses real metrics and labels."""
    assert label_errors(expr, _recorded(exported)) == [], doc


def test_promtool_parses_every_doc_query(promtool: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Every PromQL query in the runbooks and docs is valid PromQL."""
    rules = [{"record": f"doc:query_{n}", "expr": e} for n, (_, e) in enumerate(_doc_queries())]
    assert len(rules) > 20
    path = tmp_path / "doc-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    done = _run(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
