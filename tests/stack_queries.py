"""Read the Grafana dashboards and list every query and every telemetry name they use.

This is the one place that knows which Prometheus metric/label names and which Loki
labels/structured-metadata keys the viewing stack depends on: ``promql_names()`` /
``logql_names()`` extract what the dashboards *use*. What the package *emits* is taken from a
real instrumented run, never from a list: tests/test_stack_promql_data.py checks used <= emitted
against the worker's /metrics and the real OTLP log records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = REPO_ROOT / "dashboards"
DATASOURCES_FILE = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yaml"

# --------------------------------------------------------------------------------------------
# Loki configuration fact (deploy/loki/config.yaml keeps Loki 3's default OTLP mapping): the
# resource attribute service.name is the only stream label the clues processes get; everything
# else is structured metadata. What is *emitted* is never listed here: the names come from a real
# instrumented run (tests/test_stack_promql_data.py, tests/stack_run.py).
# --------------------------------------------------------------------------------------------

LOKI_STREAM_LABELS = frozenset({"service_name"})

# --------------------------------------------------------------------------------------------
# Template variables: sample values substituted before parsing.
# --------------------------------------------------------------------------------------------

SAMPLE_VALUES: dict[str, str] = {
    "queue": "default",
    "worker_class": "app.jobs.send_email",
    "sla_threshold": "1",
    "event_type": "failed",
    "event_hash": "4bf92f3577b34da6a3ce929d0e0e4736",
    "service": "rq-worker",
    "error_type": "ValueError",
    # Grafana built-ins
    "__rate_interval": "1m",
    "__interval": "30s",
    "__auto": "30s",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "30000",
}

_VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana template variables ($x, ${x}, ${x:fmt}, [[x]]) by sample values."""
    values = SAMPLE_VALUES if values is None else values

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"no sample value for template variable ${name} in {expr!r}")
        return values[name]

    return _VAR_RE.sub(repl, expr)


def variables_used(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) or m.group(3) for m in _VAR_RE.finditer(expr)}


# --------------------------------------------------------------------------------------------
# Walking dashboards
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    dashboard: str  # file name
    where: str  # panel title or "variable <name>"
    datasource_type: str
    datasource_uid: str
    expr: str  # raw, with template variables

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.where}: {self.expr}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in dashboard_files()}


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    yield from walk(dashboard.get("panels", []))


def iter_datasource_refs(dashboard: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every datasource reference in a dashboard: panels, targets, variables, annotations."""
    for panel in iter_panels(dashboard):
        if "datasource" in panel:
            yield f"panel {panel.get('title')!r}", panel["datasource"]
        for target in panel.get("targets", []):
            if "datasource" in target:
                yield f"panel {panel.get('title')!r} target {target.get('refId')}", target["datasource"]
    for var in dashboard.get("templating", {}).get("list", []):
        if "datasource" in var:
            yield f"variable {var['name']}", var["datasource"]
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "datasource" in ann:
            yield f"annotation {ann.get('name')}", ann["datasource"]


def iter_queries(dashboards: dict[str, dict[str, Any]] | None = None) -> Iterator[Query]:
    dashboards = load_dashboards() if dashboards is None else dashboards
    for fname, dash in dashboards.items():
        for panel in iter_panels(dash):
            panel_ds = panel.get("datasource") or {}
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel_ds
                if target.get("expr"):
                    yield Query(fname, str(panel.get("title")), ds.get("type", ""), ds.get("uid", ""), target["expr"])
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            ds = var.get("datasource") or {}
            q = var.get("query")
            if isinstance(q, dict):
                q = q.get("query") or q.get("expr") or ""
            yield Query(fname, f"variable {var['name']}", ds.get("type", ""), ds.get("uid", ""), q)


def prom_queries() -> list[Query]:
    return [q for q in iter_queries() if q.datasource_type == "prometheus"]


def loki_queries() -> list[Query]:
    return [q for q in iter_queries() if q.datasource_type == "loki"]


# --------------------------------------------------------------------------------------------
# PromQL
# --------------------------------------------------------------------------------------------

_LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(?P<sel>.*),)?\s*(?P<label>\w+)\s*\)\s*$", re.S)


def promql_for_parsing(expr: str, values: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """Turn a dashboard PromQL query into parseable PromQL.

    Grafana's ``label_values([selector,] label)`` variable function is not PromQL: its selector
    is returned for parsing and its label reported separately.
    """
    extra_labels: set[str] = set()
    m = _LABEL_VALUES_RE.match(expr)
    if m:
        extra_labels.add(m.group("label"))
        expr = m.group("sel") or ""
    return substitute(expr, values).strip(), extra_labels


def promql_names_of(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) referenced by one PromQL expression (raises if it does not parse)."""
    import promql_parser

    text, labels = promql_for_parsing(expr)
    metrics: set[str] = set()
    if not text:
        return metrics, labels
    ast = promql_parser.parse(text)

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                metrics.add(node.name)
            if node.matchers is not None:
                for matcher in node.matchers.matchers:
                    if matcher.name == "__name__":
                        metrics.add(matcher.value)
                    else:
                        labels.add(matcher.name)
        elif isinstance(node, promql_parser.AggregateExpr):
            if node.modifier is not None:
                labels.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr):
            mod = node.modifier
            if mod is not None:
                if mod.matching is not None:
                    labels.update(mod.matching.labels)
                labels.update(mod.group_labels or [])
        return True

    promql_parser.walk(ast, visit)
    return metrics, labels


def promql_names() -> tuple[set[str], set[str]]:
    """All metric names and label names used by the dashboards' PromQL."""
    metrics: set[str] = set()
    labels: set[str] = set()
    for q in prom_queries():
        m, lab = promql_names_of(q.expr)
        metrics |= m
        labels |= lab
    return metrics, labels


# --------------------------------------------------------------------------------------------
# LogQL (no LogQL parser on PyPI: a small, strict-enough scanner)
# --------------------------------------------------------------------------------------------

_STRING_RE = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`')
_TEMPLATE_FIELDS_ALL_RE = re.compile(r"\.(\w+)")
_TEMPLATE_BLOCK_RE = re.compile(r"\{\{(.*?)\}\}", re.S)
_MATCHER_RE = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"\"")
_LABEL_FILTER_RE = re.compile(r"\|\s*(\w+)\s*(=~|!~|!=|==|=|>=|<=|>|<)")
_GROUPING_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_UNWRAP_RE = re.compile(r"\|\s*unwrap\s+(?:\w+\()?(\w+)")
_STAGE_RE = re.compile(r"\|\s*(?:=|~)|\|\s*(\w+)")
_KNOWN_STAGES = {
    "line_format",
    "label_format",
    "json",
    "logfmt",
    "regexp",
    "pattern",
    "unpack",
    "unwrap",
    "drop",
    "keep",
    "decolorize",
}


def logql_names_of(expr: str) -> set[str]:
    """Label / structured-metadata names one LogQL query refers to. Raises ValueError on
    obviously malformed queries (unbalanced brackets, missing stream selector, unknown stage)."""
    text = substitute(expr)
    names: set[str] = set()
    # Fields referenced from line_format / label_format templates.
    for s in _STRING_RE.findall(text):
        for block in _TEMPLATE_BLOCK_RE.findall(s):
            names.update(n for n in _TEMPLATE_FIELDS_ALL_RE.findall(block))
    bare = _STRING_RE.sub('""', text)
    for opening, closing in ("{}", "()", "[]"):
        if bare.count(opening) != bare.count(closing):
            raise ValueError(f"unbalanced {opening}{closing} in LogQL: {expr!r}")
    selectors = re.findall(r"\{([^{}]*)\}", bare)
    if not selectors:
        raise ValueError(f"no stream selector in LogQL: {expr!r}")
    for sel in selectors:
        matchers = [m for m in sel.split(",") if m.strip()]
        if not matchers:
            raise ValueError(f"empty stream selector in LogQL: {expr!r}")
        for m in matchers:
            mm = _MATCHER_RE.fullmatch(m.strip())
            if not mm:
                raise ValueError(f"bad stream matcher {m.strip()!r} in LogQL: {expr!r}")
            names.add(mm.group(1))
    for stage in _STAGE_RE.finditer(bare):
        word = stage.group(1)
        if word is None:
            continue  # line filter |= / |~
        if word in _KNOWN_STAGES:
            continue
        if not _LABEL_FILTER_RE.match(bare, stage.start()):
            raise ValueError(f"unknown pipeline stage {word!r} in LogQL: {expr!r}")
    names.update(m.group(1) for m in _LABEL_FILTER_RE.finditer(bare))
    for group in _GROUPING_RE.findall(bare):
        names.update(n.strip() for n in group.split(",") if n.strip())
    names.update(_UNWRAP_RE.findall(bare))
    return names


def logql_variable_names_of(expr: str) -> set[str]:
    """Names used by a Loki *variable* query (``label_values([selector,] label)`` / ``label_names()``)."""
    m = _LABEL_VALUES_RE.match(expr)
    if m:
        names = {m.group("label")}
        if m.group("sel"):
            names |= logql_names_of(m.group("sel"))
        return names
    if re.fullmatch(r"\s*label_names\(\s*\)\s*", expr):
        return set()
    return logql_names_of(expr)


def logql_names() -> set[str]:
    names: set[str] = set()
    for q in loki_queries():
        if q.where.startswith("variable "):
            names |= logql_variable_names_of(q.expr)
        else:
            names |= logql_names_of(q.expr)
    return names
