"""The SLA alert rules shipped with the stack: valid, and each one unit-tested with ``promtool test rules``.

The rule tests (deploy/prometheus/rule-tests/*.test.yml) feed synthetic series and state when each
alert fires and when it must not. That the series names the rules use are the names a real run
exposes is checked in tests/test_stack_promql_data.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.processes import REPO_ROOT

RULES_DIR = REPO_ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS_DIR = REPO_ROOT / "deploy" / "prometheus" / "rule-tests"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")

#: The alerts issue 16 asks for; README "Operate" documents their thresholds.
EXPECTED_ALERTS = {"RQOldestJobTooOld", "RQBacklogGrowing", "RQFailureRateHigh", "RQNoWorkerForWaitingJobs"}


def _rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.rules.yml"))


def _test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.test.yml"))


def _alerts() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for path in _rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def _tested_alerts(path: Path) -> dict[str, list[Any]]:
    """{alertname: [its alert_rule_test cases]} of one promtool test file."""
    tested: dict[str, list[Any]] = {}
    for test in yaml.safe_load(path.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            tested.setdefault(case["alertname"], []).append(case)
    return tested


def test_the_expected_alerts_are_shipped() -> None:
    assert set(_alerts()) == EXPECTED_ALERTS
    for name, rule in _alerts().items():
        assert rule.get("for"), f"{name}: alert at once on one sample is noise; give it a `for`"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_alert_has_a_test_file_that_sees_it_fire_and_stay_quiet() -> None:
    by_file = {path.name: _tested_alerts(path) for path in _test_files()}
    for name in _alerts():
        files = [f for f, tested in by_file.items() if name in tested]
        assert len(files) == 1, f"{name}: tested in {files or 'no file'}; one promtool test file per rule"
        cases = by_file[files[0]][name]
        assert any(case["exp_alerts"] for case in cases), f"{name}: no case where it fires"
        assert any(not case["exp_alerts"] for case in cases), f"{name}: no case where it must not fire yet"
    for path in _test_files():
        rule_files = yaml.safe_load(path.read_text())["rule_files"]
        assert [(path.parent / f).resolve() for f in rule_files] == [p.resolve() for p in _rule_files()]


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", *map(str, _rule_files())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", _test_files(), ids=lambda p: p.name)
def test_promtool_test_rules(test_file: Path) -> None:
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", test_file.name],
        cwd=test_file.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_readme_documents_every_alert_and_threshold() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    operate = readme.split("## Operate", 1)[1].split("\n## ", 1)[0]
    for name, rule in _alerts().items():
        assert name in operate, f"README 'Operate' does not mention {name}"
        assert f"for {rule['for']}" in operate, f"README 'Operate' does not give {name}'s `for: {rule['for']}`"
