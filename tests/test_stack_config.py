"""Static checks of the `docker compose up` viewing stack (no Docker engine needed).

docker-compose.yml against the Compose Specification schema, the collector and Jaeger
pipelines, Prometheus/Loki/Grafana configs, and every dashboard query (PromQL parsed with
promql-parser, LogQL scanned and parsed with Grafana's grammar). Whether the names the queries
use are names the package really emits is checked against a real instrumented run in
tests/test_stack_promql_data.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from opentelemetry_instrumentation_clues.event_types import EventType
from opentelemetry_instrumentation_clues.telemetry.metrics import DURATION_BUCKETS as PACKAGE_BUCKETS
from tests import stack_queries as sq

ROOT = sq.REPO_ROOT
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_COPY = ROOT / "deploy" / "schema" / "compose-spec.json"
SHARED_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
COLLECTOR_CONFIG = ROOT / "deploy" / "otel-collector" / "config.yaml"
JAEGER_CONFIG = ROOT / "deploy" / "jaeger" / "config.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "rules"
LOKI_CONFIG = ROOT / "deploy" / "loki" / "config.yaml"
DASHBOARD_PROVIDER = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
DOCS = ROOT / "docs" / "viewing-stack.md"

#: Pinned images (docs/viewing-stack.md explains how to bump them).
EXPECTED_IMAGES = {
    "otel-collector": "otel/opentelemetry-collector-contrib:0.159.0",
    "jaeger": "jaegertracing/jaeger:2.20.0",
    "prometheus": "prom/prometheus:v3.14.0",
    "loki": "grafana/loki:3.7.6",
    "grafana": "grafana/grafana:13.2.0",
}
#: Only UI and OTLP ports are published to the host.
EXPECTED_PUBLISHED = {
    3000: "grafana",
    16686: "jaeger",
    9090: "prometheus",
    4317: "otel-collector",
    4318: "otel-collector",
}
#: Images that cannot run any in-container probe (FROM scratch): no healthcheck possible.
NO_HEALTHCHECK_POSSIBLE = {"otel-collector"}
#: Services built from this repository.
LOCAL_SERVICES = {"worker", "demo", "monitor"}

WORKER_COMMAND = [
    "opentelemetry-instrument",
    "rq",
    "worker",
    "--with-scheduler",
    "-u",
    "redis://redis:6379",
    "default",
    "slow",
]
DEMO_COMMAND = ["opentelemetry-instrument", "python", "-m", "opentelemetry_instrumentation_clues.demo.producer"]
MONITOR_COMMAND = ["clues", "monitor", "--redis-url", "redis://redis:6379"]

#: Grafana built-in template variables that need no definition in a dashboard.
GRAFANA_BUILTIN_VARS = {
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__auto",
    "__range",
    "__range_s",
    "__url_time_range",
    "__all",
    "__value",
    "__data",
    "__field",
    "__series",
    "__from",
    "__to",
}

#: The package's histogram boundaries (seconds); the SLA threshold must be one of them. The real
#: run's buckets are checked against the dashboards in tests/test_stack_promql_data.py too.
DURATION_BUCKETS = set(PACKAGE_BUCKETS)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def datasources() -> list[dict[str, Any]]:
    return load_yaml(sq.DATASOURCES_FILE)["datasources"]


@pytest.fixture(scope="module")
def ds_by_uid(datasources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in datasources}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return sq.load_dashboards()


def _bind_source(volume: Any) -> str | None:
    """Host path of a bind mount (short or long syntax), None for named volumes."""
    if isinstance(volume, dict):
        return volume["source"] if volume.get("type") == "bind" else None
    source = str(volume).split(":", 1)[0]
    return source if source.startswith((".", "/", "~")) else None


def _named_source(volume: Any) -> str | None:
    if isinstance(volume, dict):
        return volume.get("source") if volume.get("type") == "volume" else None
    parts = str(volume).split(":")
    return parts[0] if len(parts) > 1 and not parts[0].startswith((".", "/", "~")) else None


def _as_list(command: Any) -> list[str]:
    return command if isinstance(command, list) else str(command).split()


# ============================================================================ docker-compose.yml


def test_schema_copy_is_the_shared_schema() -> None:
    copy = json.loads(SCHEMA_COPY.read_text())
    jsonschema.Draft202012Validator.check_schema(copy)  # a usable schema wherever the repo is checked out
    if SHARED_SCHEMA.exists():  # beside the project's checkout: the copy must not drift from it
        assert copy == json.loads(SHARED_SCHEMA.read_text())


def test_compose_validates_against_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_COPY.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_compose_has_every_service(services: dict[str, Any]) -> None:
    assert set(services) == {
        "redis",
        "otel-collector",
        "jaeger",
        "prometheus",
        "loki",
        "grafana",
        "worker",
        "demo",
        "monitor",
    }


def test_every_bind_mount_exists(services: dict[str, Any]) -> None:
    missing = []
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = _bind_source(volume)
            if source is not None and not (ROOT / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing


def test_build_context_and_dockerfile_exist(services: dict[str, Any]) -> None:
    for name in LOCAL_SERVICES:
        build = services[name].get("build")
        if build is None:
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context).is_dir()
        assert (ROOT / context / dockerfile).is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install [^\n]*/src", dockerfile), "the image must pip-install this repository"
    assert "opentelemetry-distro" in dockerfile


def test_named_volumes_declared_and_used(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {src for svc in services.values() for v in svc.get("volumes", []) if (src := _named_source(v))}
    declared = set(compose.get("volumes") or {})
    assert used, "stateful services should keep their data in named volumes"
    assert used == declared


def test_images_pinned(services: dict[str, Any]) -> None:
    for name, expected in EXPECTED_IMAGES.items():
        assert services[name]["image"] == expected
    for name, svc in services.items():
        image = svc.get("image")
        if name in LOCAL_SERVICES:
            continue
        assert image, f"{name} has no image"
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"


def test_only_ui_and_otlp_ports_published(services: dict[str, Any]) -> None:
    published: dict[int, str] = {}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                host, target = int(port["published"]), int(port["target"])
            else:
                parts = str(port).split(":")
                assert len(parts) == 2, f"{name}: publish as HOST:CONTAINER, got {port!r}"
                host, target = int(parts[0]), int(parts[1].split("/")[0])
            assert host == target, f"{name}: {port!r}"
            assert host not in published, f"port {host} published twice"
            published[host] = name
    assert published == EXPECTED_PUBLISHED


def test_depends_on_uses_conditions(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition")
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, but it has no check"
    # The telemetry path starts only once its backends are ready; workers need Redis ready.
    assert services["otel-collector"]["depends_on"]["jaeger"]["condition"] == "service_healthy"
    for name in LOCAL_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "otel-collector" in services[name]["depends_on"]


def test_healthchecks(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if name in LOCAL_SERVICES or name in NO_HEALTHCHECK_POSSIBLE:
            continue
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}
    # Loki >= 3.6 and the collector images have no shell/wget: never probe them with one.
    assert services["loki"]["healthcheck"]["test"][:2] == ["CMD", "/usr/bin/loki"]
    assert "healthcheck" not in services["otel-collector"]


def test_worker_and_demo_commands(services: dict[str, Any]) -> None:
    assert _as_list(services["worker"]["command"]) == WORKER_COMMAND
    assert _as_list(services["demo"]["command"]) == DEMO_COMMAND
    assert _as_list(services["monitor"]["command"]) == MONITOR_COMMAND
    assert services["worker"]["build"]
    assert services["demo"]["image"] == services["worker"]["image"]
    assert services["monitor"]["image"] == services["worker"]["image"]
    assert services["monitor"]["environment"]["OTEL_SERVICE_NAME"] == "rq-monitor"
    assert int(services["monitor"]["environment"]["OTEL_METRIC_EXPORT_INTERVAL"]) <= 15000  # fresh gauges


def test_apps_export_to_the_collector(services: dict[str, Any]) -> None:
    collector_cfg = load_yaml(COLLECTOR_CONFIG)
    protocols = collector_cfg["receivers"]["otlp"]["protocols"]
    for name in LOCAL_SERVICES:
        env = services[name]["environment"]
        assert env["OTEL_SERVICE_NAME"]
        for signal in ("TRACES", "METRICS", "LOGS"):
            assert env[f"OTEL_{signal}_EXPORTER"] == "otlp"
        url = urlparse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert url.hostname == "otel-collector"
        protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        key = "grpc" if protocol == "grpc" else "http"
        assert url.port == int(protocols[key]["endpoint"].rsplit(":", 1)[1])


def test_prometheus_otlp_receiver_enabled(services: dict[str, Any]) -> None:
    assert "--web.enable-otlp-receiver" in _as_list(services["prometheus"]["command"])


def test_prometheus_stores_exemplars(services: dict[str, Any]) -> None:
    features = {
        feature
        for flag in _as_list(services["prometheus"]["command"])
        if flag.startswith("--enable-feature=")
        for feature in flag.split("=", 1)[1].split(",")
    }
    assert "exemplar-storage" in features
    assert load_yaml(PROMETHEUS_CONFIG)["storage"]["exemplars"]["max_exemplars"] > 0


def test_prometheus_loads_the_mounted_alert_rules(services: dict[str, Any]) -> None:
    config_mount = next(
        v for v in services["prometheus"]["volumes"] if str(v).startswith("./deploy/prometheus/prometheus")
    )
    config_dir = str(config_mount).split(":")[1].rsplit("/", 1)[0]
    mounts = {str(v).split(":")[1]: (ROOT / str(v).split(":")[0]).resolve() for v in services["prometheus"]["volumes"]}
    rule_files = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert rule_files
    for pattern in rule_files:
        in_container = pattern if pattern.startswith("/") else f"{config_dir}/{pattern}"
        directory, glob = in_container.rsplit("/", 1)
        assert mounts.get(directory) == PROMETHEUS_RULES.resolve(), f"{in_container} is not the mounted rules"
        assert sorted(PROMETHEUS_RULES.glob(glob)), f"{pattern} matches no rule file"
        assert sorted((PROMETHEUS_CONFIG.parent / directory.rsplit("/", 1)[1]).glob(glob)) == sorted(
            PROMETHEUS_RULES.glob(glob)
        ), "the same files beside the repository's prometheus.yml (promtool check config)"


# ============================================================================ collector / Jaeger


def _pipeline_problems(cfg: dict[str, Any]) -> list[str]:
    problems = []
    service = cfg.get("service", {})
    for ext in service.get("extensions", []):
        if ext not in (cfg.get("extensions") or {}):
            problems.append(f"service.extensions: {ext} is not defined")
    connectors = set(cfg.get("connectors") or {})
    for pname, pipeline in service.get("pipelines", {}).items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"pipeline {pname} is incomplete"
        for kind in ("receivers", "processors", "exporters"):
            defined = set(cfg.get(kind) or {}) | (connectors if kind != "processors" else set())
            for comp in pipeline.get(kind, []):
                if comp not in defined:
                    problems.append(f"pipelines.{pname}.{kind}: {comp} is not defined")
    used = {
        c
        for p in service.get("pipelines", {}).values()
        for k in ("receivers", "processors", "exporters")
        for c in p.get(k, [])
    }
    for kind in ("receivers", "processors", "exporters", "connectors"):
        for comp in cfg.get(kind) or {}:
            if comp not in used:
                problems.append(f"{kind}.{comp} is defined but in no pipeline")
    return problems


def _listen_endpoints(node: Any, path: str = "") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "endpoint" and isinstance(value, str):
                found.append((f"{path}.{key}", value))
            else:
                found.extend(_listen_endpoints(value, f"{path}.{key}"))
    return found


@pytest.mark.parametrize("config", [COLLECTOR_CONFIG, JAEGER_CONFIG], ids=lambda p: p.parent.name)
def test_pipelines_reference_defined_components(config: Path) -> None:
    assert _pipeline_problems(load_yaml(config)) == []


@pytest.mark.parametrize("config", [COLLECTOR_CONFIG, JAEGER_CONFIG], ids=lambda p: p.parent.name)
def test_listening_endpoints_bind_all_interfaces(config: Path) -> None:
    cfg = load_yaml(config)
    endpoints = []
    for section in ("receivers", "extensions"):
        endpoints += _listen_endpoints(cfg.get(section) or {}, section)
    assert endpoints
    for where, endpoint in endpoints:
        assert endpoint.startswith("0.0.0.0:"), (
            f"{config.name} {where} = {endpoint!r} is unreachable from other containers"
        )


def test_collector_exporters_use_current_names_and_reach_backends(services: dict[str, Any]) -> None:
    exporters = load_yaml(COLLECTOR_CONFIG)["exporters"]
    types = {name.split("/")[0] for name in exporters}
    assert not types & {"otlp", "otlphttp"}, "use otlp_grpc / otlp_http (renamed in collector v0.144)"
    assert exporters["otlp_grpc/jaeger"]["endpoint"] == "jaeger:4317"
    assert exporters["otlp_http/prometheus"]["endpoint"] == "http://prometheus:9090/api/v1/otlp"
    assert exporters["otlp_http/loki"]["endpoint"] == "http://loki:3100/otlp"
    for name, exporter in exporters.items():
        endpoint = exporter.get("endpoint")
        if endpoint:
            host = urlparse(endpoint if "://" in endpoint else f"//{endpoint}").hostname
            assert host in services, f"exporter {name} targets {host}, not a compose service"
    pipelines = load_yaml(COLLECTOR_CONFIG)["service"]["pipelines"]
    # Exemplars reach Prometheus only if metrics stay OTLP end to end and no processor drops them.
    assert pipelines["metrics"]["exporters"] == ["otlp_http/prometheus"]
    assert set(pipelines["metrics"].get("processors", [])) <= {"memory_limiter", "batch"}
    assert "otlp_grpc/jaeger" in pipelines["traces"]["exporters"]
    assert "otlp_http/prometheus" in pipelines["metrics"]["exporters"]
    assert "otlp_http/loki" in pipelines["logs"]["exporters"]


def test_jaeger_storage_wiring() -> None:
    cfg = load_yaml(JAEGER_CONFIG)
    backends = set(cfg["extensions"]["jaeger_storage"]["backends"])
    assert cfg["extensions"]["jaeger_query"]["storage"]["traces"] in backends
    assert cfg["exporters"]["jaeger_storage_exporter"]["trace_storage"] in backends
    assert cfg["extensions"]["jaeger_query"]["http"]["endpoint"].endswith(":16686")
    assert cfg["extensions"]["healthcheckv2"]["http"]["endpoint"].endswith(":13133")


# ============================================================================ Prometheus / Loki


def test_prometheus_config_parses() -> None:
    cfg = load_yaml(PROMETHEUS_CONFIG)
    assert cfg["global"]["scrape_interval"]
    assert cfg["storage"]["tsdb"]["out_of_order_time_window"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_loki_config() -> None:
    cfg = load_yaml(LOKI_CONFIG)
    assert cfg["server"]["http_listen_port"] == 3100
    assert cfg["limits_config"]["allow_structured_metadata"] is True
    assert {c["schema"] for c in cfg["schema_config"]["configs"]} == {"v13"}, "structured metadata needs schema v13"
    assert all(c["store"] == "tsdb" for c in cfg["schema_config"]["configs"])


# ============================================================================ Grafana provisioning


def test_datasource_uids_fixed_and_unique(datasources: list[dict[str, Any]]) -> None:
    uids = [ds.get("uid") for ds in datasources]
    assert all(uids), "every provisioned datasource needs a fixed uid"
    assert len(uids) == len(set(uids))
    assert {ds["type"] for ds in datasources} >= {"prometheus", "loki", "jaeger"}


def test_datasource_urls_reach_compose_services(datasources: list[dict[str, Any]], services: dict[str, Any]) -> None:
    for ds in datasources:
        assert urlparse(ds["url"]).hostname in services


def test_provisioning_dollars_are_escaped() -> None:
    # A single `$` would be expanded as an environment variable by Grafana's provisioning.
    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    odd_dollar_run = re.compile(r"(?<!\$)\$(?:\$\$)*(?!\$)")
    for path in (sq.DATASOURCES_FILE, DASHBOARD_PROVIDER):
        for value in strings(load_yaml(path)):
            assert not odd_dollar_run.search(value), f"{path.name}: write $$ for a literal $ in {value!r}"
    assert "$${__value.raw}" in sq.DATASOURCES_FILE.read_text()


def test_exemplars_link_to_jaeger(ds_by_uid: dict[str, dict[str, Any]]) -> None:
    prometheus = next(ds for ds in ds_by_uid.values() if ds["type"] == "prometheus")
    destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    # Prometheus' OTLP receiver stores an exemplar's trace id under the label trace_id.
    assert [(d["name"], ds_by_uid[d["datasourceUid"]]["type"]) for d in destinations] == [("trace_id", "jaeger")]


def test_trace_logs_links(ds_by_uid: dict[str, dict[str, Any]]) -> None:
    jaeger = next(ds for ds in ds_by_uid.values() if ds["type"] == "jaeger")
    loki = next(ds for ds in ds_by_uid.values() if ds["type"] == "loki")
    t2l = jaeger["jsonData"]["tracesToLogsV2"]
    assert ds_by_uid[t2l["datasourceUid"]]["type"] == "loki"
    # Unescape `$$` the way Grafana does, then check the LogQL uses Loki's names.
    query = t2l["query"].replace("$$", "$")
    assert 'trace_id="${__trace.traceId}"' in query.replace(" ", "")
    assert {"key": "service.name", "value": "service_name"} in t2l["tags"]
    fields = loki["jsonData"]["derivedFields"]
    assert any(
        f["matcherType"] == "label"
        and f["matcherRegex"] == "trace_id"
        and ds_by_uid[f["datasourceUid"]]["type"] == "jaeger"
        for f in fields
    )


def test_dashboard_provider_points_at_mounted_dashboards(services: dict[str, Any]) -> None:
    providers = load_yaml(DASHBOARD_PROVIDER)["providers"]
    mounts = {}
    for volume in services["grafana"]["volumes"]:
        source = _bind_source(volume)
        if source:
            mounts[str(volume).split(":")[1]] = (ROOT / source).resolve()
    for provider in providers:
        assert mounts.get(provider["options"]["path"]) == sq.DASHBOARDS_DIR.resolve()
    assert mounts.get("/etc/grafana/provisioning") == (ROOT / "deploy" / "grafana" / "provisioning").resolve()
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_dir, home_file = home.rsplit("/", 1)
    assert mounts.get(home_dir) == sq.DASHBOARDS_DIR.resolve()
    assert (sq.DASHBOARDS_DIR / home_file).is_file()


# ============================================================================ dashboards


def test_dashboards_present(dashboards: dict[str, dict[str, Any]]) -> None:
    assert set(dashboards) == {"jobs-overview.json", "job-explorer.json", "failures.json"}


def test_dashboard_uids_fixed_and_unique(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [d.get("uid") for d in dashboards.values()]
    assert all(uids) and all(len(u) <= 40 for u in uids)
    assert len(uids) == len(set(uids))
    titles = [d["title"] for d in dashboards.values()]
    assert len(titles) == len(set(titles))


def test_dashboards_are_provisioning_ready(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dash in dashboards.items():
        text = (sq.DASHBOARDS_DIR / name).read_text()
        assert "__inputs" not in dash and "__requires" not in dash, name
        assert "${DS_" not in text and "$DS_" not in text, name
        assert dash.get("id") is None, f"{name}: exported numeric id must be removed"
        ids = [p["id"] for p in sq.iter_panels(dash)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in sq.iter_panels(dash):
            assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), f"{name}: {panel.get('title')}"


def test_every_datasource_reference_is_provisioned(
    dashboards: dict[str, dict[str, Any]], ds_by_uid: dict[str, dict[str, Any]]
) -> None:
    for name, dash in dashboards.items():
        refs = list(sq.iter_datasource_refs(dash))
        assert refs
        for where, ref in refs:
            assert isinstance(ref, dict), f"{name} {where}: datasource must be {{type, uid}}, got {ref!r}"
            if ref.get("uid") in {"-- Grafana --", "-- Mixed --", "-- Dashboard --"}:
                continue
            assert ref.get("uid") in ds_by_uid, f"{name} {where}: unknown datasource uid {ref.get('uid')!r}"
            assert ref.get("type") == ds_by_uid[ref["uid"]]["type"], f"{name} {where}: type mismatch"


def test_template_variables_defined(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dash in dashboards.items():
        defined = {v["name"] for v in dash["templating"]["list"]}
        text = json.dumps(dash["panels"]) + json.dumps(dash["templating"])
        used = sq.variables_used(text) - GRAFANA_BUILTIN_VARS
        assert used <= defined, f"{name}: undefined template variables {used - defined}"
        assert used <= set(sq.SAMPLE_VALUES), f"no sample value for {used - set(sq.SAMPLE_VALUES)}"


@pytest.mark.parametrize("query", sq.prom_queries(), ids=str)
def test_promql_parses(query: sq.Query) -> None:
    metrics, _labels = sq.promql_names_of(query.expr)
    assert metrics, f"{query}: refers to no metric"


def test_legend_labels_are_grouped_labels(dashboards: dict[str, dict[str, Any]]) -> None:
    _metrics, labels = sq.promql_names()
    for dash in dashboards.values():
        for panel in sq.iter_panels(dash):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") != "prometheus":
                    continue
                legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                assert legend_labels <= labels


@pytest.mark.parametrize("query", sq.loki_queries(), ids=str)
def test_logql_stream_selectors_use_stream_labels(query: sq.Query) -> None:
    if query.where.startswith("variable "):
        names = sq.logql_variable_names_of(query.expr)
    else:
        names = sq.logql_names_of(query.expr)
    assert names, f"{query}: refers to no label"
    stream_matchers = re.findall(r"\{([^{}]*)\}", re.sub(r'"(?:\\.|[^"\\])*"', '""', sq.substitute(query.expr)))
    for sel in stream_matchers:
        for matcher in sel.split(","):
            label = matcher.split("=")[0].split("!")[0].strip()
            assert label in sq.LOKI_STREAM_LABELS, f"{query}: {label} is structured metadata, not a stream label"


def _lezer_logql_available() -> bool:
    node = shutil.which("node")
    if node is None:
        return False
    probe = subprocess.run(
        [node, "-e", "require('@grafana/lezer-logql')"],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _lezer_logql_available(),
    reason="needs node and @grafana/lezer-logql 0.4 (npm install it elsewhere, set NODE_PATH)",
)
def test_logql_parses_with_grafana_grammar(ds_by_uid: dict[str, dict[str, Any]]) -> None:
    queries = [
        {"where": str(q), "expr": sq.substitute(q.expr)}
        for q in sq.loki_queries()
        if not q.where.startswith("variable ")
    ]
    jaeger = next(ds for ds in ds_by_uid.values() if ds["type"] == "jaeger")
    trace_to_logs = jaeger["jsonData"]["tracesToLogsV2"]["query"].replace("$$", "$")
    trace_to_logs = trace_to_logs.replace("${__tags}", 'service_name="rq-worker"').replace(
        "${__trace.traceId}", sq.SAMPLE_VALUES["event_hash"]
    )
    queries.append({"where": "Jaeger tracesToLogsV2", "expr": trace_to_logs})
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "logql_syntax.cjs")],
        input=json.dumps(queries),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_logql_scanner_rejects_bad_queries() -> None:
    with pytest.raises(ValueError):
        sq.logql_names_of('{service_name="a" | x="y"')
    with pytest.raises(ValueError):
        sq.logql_names_of('clues_event_type="failed"')
    with pytest.raises(ValueError):
        sq.logql_names_of('{service_name="a"} | bogus_stage')
    assert sq.logql_names_of('{service_name="a"} | exception_type=~"E.*" | line_format "{{.host_name}}"') == {
        "service_name",
        "exception_type",
        "host_name",
    }


# ----------------------------------------------------------------------------- dashboard content


def _vars(dash: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def _exprs(dash: dict[str, Any]) -> str:
    return "\n".join(t.get("expr", "") for p in sq.iter_panels(dash) for t in p.get("targets", []))


def test_jobs_overview_content(dashboards: dict[str, dict[str, Any]]) -> None:
    dash = dashboards["jobs-overview.json"]
    variables = _vars(dash)
    assert {"queue", "worker_class", "sla_threshold"} <= set(variables)
    exprs = _exprs(dash)
    for metric in ("rq_job_time_in_queue_seconds_bucket", "messaging_process_duration_seconds_bucket"):
        for q in ("0.5", "0.95", "0.99"):
            assert f"histogram_quantile({q}, sum by (le) (rate({metric}" in exprs
    assert 'clues_outcome="failure"' in exprs
    assert "sum by (messaging_destination_name, rq_job_func_name)" in exprs
    assert 'le=~"$sla_threshold' in exprs
    for option in variables["sla_threshold"]["options"]:
        assert float(option["value"]) in DURATION_BUCKETS
    # Duration panels show exemplars (each a link to a job's trace).
    duration_targets = [t for p in sq.iter_panels(dash) for t in p.get("targets", []) if "_seconds_bucket" in t["expr"]]
    assert duration_targets
    assert all(t.get("exemplar") is True for t in duration_targets if "histogram_quantile" in t["expr"])
    # Queue health from `clues monitor`.
    for metric in ("rq_queue_jobs{", "rq_queue_oldest_job_age_seconds{", "rq_workers{"):
        assert metric in exprs
    assert "rq_job_status" in exprs and "rq_worker_state" in exprs


def test_job_explorer_content(dashboards: dict[str, dict[str, Any]]) -> None:
    dash = dashboards["job-explorer.json"]
    variables = _vars(dash)
    assert {"queue", "worker_class", "event_type", "event_hash"} <= set(variables)
    assert {o["value"] for o in variables["event_type"]["options"]} == {e.value for e in EventType}
    logs = [p for p in sq.iter_panels(dash) if p["type"] == "logs"]
    assert logs
    expr = logs[0]["targets"][0]["expr"]
    for name, var in (
        ("clues_event_type", "event_type"),
        ("messaging_destination_name", "queue"),
        ("rq_job_func_name", "worker_class"),
        ("clues_event_hash", "event_hash"),
    ):
        assert f'{name}=~"${var}' in expr
    table = next(p for p in sq.iter_panels(dash) if p["type"] == "table")
    links = [
        link
        for o in table["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "trace_id"
        for prop in o["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert any("${__value.raw}" in link["url"] for link in links)


def test_failures_content(dashboards: dict[str, dict[str, Any]]) -> None:
    dash = dashboards["failures.json"]
    exprs = _exprs(dash)
    assert "topk(10, sum by (error_type)" in exprs
    assert "sum by (error_type) (count_over_time(" in exprs  # lifecycle events by error.type, like the metrics
    logs = [p for p in sq.iter_panels(dash) if p["type"] == "logs"]
    assert logs
    expr = logs[0]["targets"][0]["expr"]
    assert 'clues_event_type="failed"' in expr
    assert "{{.exception_message}}" in expr and "{{.exception_stacktrace}}" in expr


def test_docs_name_every_published_port() -> None:
    text = DOCS.read_text()
    for port in EXPECTED_PUBLISHED:
        assert f"localhost:{port}" in text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in text
