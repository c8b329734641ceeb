"""deploy/prometheus/alerts.yml and deploy/grafana/stepup-hook.json (issue 13.4): Prometheus's
own promtool checks the rules and runs their unit tests (alerts.test.yml), and every metric
the alerts and the dashboard use is one the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.conftest import AppFactory
from tests.support import API_KEY, USER_ID, bearer, hook_body, sign_hook

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "stepup-hook.json"
NAME = re.compile(r"\bstepup_hook_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:  # a failure, not a skip: CI must run these (make test installs it)
        pytest.fail("promtool is required: apt-get install prometheus (make test does, as root)")
    return subprocess.run(
        [binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_the_alerts_unit_tests_pass() -> None:
    done = promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in rules} == fired


def expressions(node: Any) -> list[str]:
    """Every PromQL expression of a dashboard: its targets' and its variables' queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(expressions(item))
    return found


def used_names() -> dict[str, set[str]]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        "alerts.yml": {n for rule in rules for n in NAME.findall(rule["expr"])},
        "stepup-hook.json": {n for expr in expressions(dashboard) for n in NAME.findall(expr)},
    }


def exported(client: TestClient) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_the_alerts_and_the_dashboard_use_only_exported_metrics(make_app: AppFactory) -> None:
    # A real app after some traffic; with a rotation schedule, so that its gauge is there too.
    with TestClient(make_app(key_rotation_interval=86_400)) as client:
        body = hook_body(amount="1500")
        client.post("/hooks/stepup", content=body, headers=sign_hook(body))
        request = {"user_id": USER_ID, "challenge_id": "chl_1", "key": "kyc_review"}
        client.post("/verification-token", headers=bearer(API_KEY), json=request)
        names = exported(client)
    for where, used in used_names().items():
        assert used, where
        assert used - names == set(), f"{where} uses metrics the service does not export"


def test_the_dashboard_shows_every_metric_and_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in panels)
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used_names()["stepup-hook.json"]}
    documented = set(re.findall(r"^\| `(stepup_hook_\w+)`", (ROOT / "docs" / "operations.md")
                                .read_text(), re.M))  # fmt: skip
    assert documented - shown == set()
