"""Prometheus configuration, alert rules and their unit tests, and every PromQL expression of Grafana."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "monitoring" / "prometheus"
GRAFANA = ROOT / "monitoring" / "grafana"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    return path


def run(cmd, cwd=ROOT):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_check_config(promtool):
    assert "SUCCESS" in run([promtool, "check", "config", "prometheus.yml"], cwd=PROMETHEUS)


def test_promtool_check_rules(promtool):
    assert "SUCCESS: 6 rules found" in run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS)


def test_promtool_unit_tests_cover_every_alert(promtool):
    tests = sorted(PROMETHEUS.glob("tests/*.yml"))
    assert tests
    out = run([promtool, "test", "rules", *map(str, tests)], cwd=PROMETHEUS)
    assert "SUCCESS" in out
    alerts = {r["alert"] for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tested = {t["alertname"] for f in tests for case in yaml.safe_load(f.read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert len(alerts) >= 5 and alerts == tested


def test_every_grafana_promql_expression_parses(promtool):
    out = run([sys.executable, "scripts/check_promql.py"])
    assert re.search(r"^\d+ PromQL expressions .*: all parse$", out, re.M)


def test_grafana_alert_rules_mirror_prometheus_alerts():
    prom = {r["alert"]: r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    grafana = {r["title"]: r for g in yaml.safe_load((GRAFANA / "provisioning/alerting/alerts.yml").read_text())["groups"]
               for r in g["rules"]}
    assert grafana.keys() == prom.keys()
    for name, rule in prom.items():
        assert grafana[name]["for"] == rule["for"] and grafana[name]["labels"] == rule["labels"]


def test_dashboards_have_a_panel_for_every_metric():
    exprs = " ".join(t["expr"] for p in (GRAFANA / "dashboards").glob("*.json")
                     for panel in json.loads(p.read_text())["panels"] for t in panel["targets"])
    for metric in ["flask_http_request_total", "flask_http_request_duration_seconds_bucket",
                   "flask_http_request_exceptions_total", "http_requests_in_flight", "model_predictions_total",
                   "model_prediction_score_bucket", "model_input_score_bucket", "model_input_category_total",
                   "model_validation_failures_total", "model_info", "model_ready", "model_test_r2", "model_test_mae",
                   "model_load_duration_seconds", "model_last_load_timestamp_seconds", "model_feature_drift",
                   "model_prediction_drift", "model_drift_detected", "model_drift_window_students",
                   "process_cpu_seconds_total", "process_resident_memory_bytes"]:
        assert metric in exprs, metric
