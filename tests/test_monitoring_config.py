"""Prometheus configuration, alert rules and their unit tests, and every PromQL expression of Grafana."""

import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "monitoring" / "prometheus"
GRAFANA = ROOT / "monitoring" / "grafana"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool not installed (Debian package prometheus; .ci/run installs it)")
    return path


def run(cmd, cwd=ROOT):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


ALERTMANAGER = ROOT / "monitoring" / "alertmanager"


def test_promtool_check_config(promtool, tmp_path):
    # As shipped: the syntax (its token file exists only on the monitoring instance) ...
    assert "SUCCESS" in run([promtool, "check", "config", "--syntax-only", "prometheus.yml"], cwd=PROMETHEUS)
    # ... and in full, rule files included, with the token file where this machine has one.
    for name in ("alerts.yml", "recording.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (tmp_path / "token").write_text("a-monitoring-token-of-the-app")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path)
    assert "SUCCESS: prometheus.yml is valid" in out and "SUCCESS: 8 rules found" in out


def test_amtool_check_config():
    amtool = shutil.which("amtool")
    if amtool is None:
        unavailable("amtool not installed (Debian package prometheus-alertmanager; .ci/run installs it)")
    out = run([amtool, "check-config", "alertmanager.yml"], cwd=ALERTMANAGER)
    assert "SUCCESS" in out and "1 receivers" in out


def test_every_instance_is_scraped_and_never_the_load_balancer():
    """One target per instance, found by EC2 discovery on the environment's tag: no static target at all, so no
    load balancer address (a scrape through it lands on a random instance)."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "student-math" and "static_configs" not in job
    [ec2] = job["ec2_sd_configs"]
    filters = {f["name"]: f["values"] for f in ec2["filters"]}
    assert filters["tag:elasticbeanstalk:environment-name"] == ["student-math-env"]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert {r["source_labels"][0] for r in keep} == {
        "__meta_ec2_tag_elasticbeanstalk_environment_name",
        "__meta_ec2_instance_state",
    }
    text = (PROMETHEUS / "prometheus.yml").read_text()
    for address in ("elb.amazonaws.com", "elasticbeanstalk.com", "https://"):
        assert address not in text
    # Alerts reach Alertmanager, which sends them to people.
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    receivers = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())["receivers"]
    assert [r["name"] for r in receivers] == ["operations"] and receivers[0]["sns_configs"]


def test_promtool_check_rules(promtool):
    assert "SUCCESS: 8 rules found" in run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS)
    assert "SUCCESS: 6 rules found" in run([promtool, "check", "rules", "recording.yml"], cwd=PROMETHEUS)


def test_the_realized_coverage_alert_uses_the_numbers_retrain_uses():
    from src.answers.evaluation import LOW_COVERAGE, LOW_COVERAGE_MIN_STUDENTS

    rule = next(
        r
        for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
        if r["alert"] == "StudentMathRealizedCoverageLow"
    )
    assert f") < {LOW_COVERAGE:g}" in rule["expr"] and f">= {LOW_COVERAGE_MIN_STUDENTS}" in rule["expr"]
    for config in ("prometheus.yml", "compose.yml"):
        assert "recording.yml" in yaml.safe_load((PROMETHEUS / config).read_text())["rule_files"]


def test_promtool_unit_tests_cover_every_alert(promtool):
    tests = sorted(PROMETHEUS.glob("tests/*.yml"))
    assert tests
    out = run([promtool, "test", "rules", *map(str, tests)], cwd=PROMETHEUS)
    assert "SUCCESS" in out
    alerts = {r["alert"] for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tested = {
        t["alertname"]
        for f in tests
        for case in yaml.safe_load(f.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert len(alerts) >= 5 and alerts == tested


def test_every_grafana_promql_expression_parses(promtool):
    out = run([sys.executable, "scripts/check_promql.py"])
    assert re.search(r"^\d+ PromQL expressions .*: all parse$", out, re.M)


def test_grafana_alert_rules_mirror_prometheus_alerts():
    prom = {r["alert"]: r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    grafana = {
        r["title"]: r
        for g in yaml.safe_load((GRAFANA / "provisioning/alerting/alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert grafana.keys() == prom.keys()
    for name, rule in prom.items():
        assert grafana[name]["for"] == rule["for"] and grafana[name]["labels"] == rule["labels"]


def test_dashboards_have_a_panel_for_every_metric():
    exprs = " ".join(
        t["expr"]
        for p in (GRAFANA / "dashboards").glob("*.json")
        for panel in json.loads(p.read_text())["panels"]
        for t in panel["targets"]
    )
    for metric in [
        "flask_http_request_total",
        "flask_http_request_duration_seconds_bucket",
        "flask_http_request_exceptions_total",
        "http_requests_in_flight",
        "model_predictions_total",
        "model_score_students_total",
        "model_input_category_total",
        "model_validation_failures_total",
        "model_info",
        "model_ready",
        "model_test_r2",
        "model_test_mae",
        "model_load_duration_seconds",
        "model_last_load_timestamp_seconds",
        "model_feature_drift",
        "model_prediction_drift",
        "model_drift_detected",
        "model_drift_window_students",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "student_math:realized_group_mae:30d",
        "student_math:realized_group_coverage:30d",
    ]:
        assert metric in exprs, metric


OUR_METRIC = re.compile(r"\b((?:flask|model|http|process)_[a-zA-Z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')
ADDED_BY_PROMETHEUS = {"job", "instance"}


def selectors() -> list[tuple[str, str, str]]:
    """(where, metric, matchers) for every series a dashboard, an alert or an alert's test refers to."""
    found = []
    expressions = runpy.run_path(str(ROOT / "scripts" / "check_promql.py"))["expressions"]  # a script, not a module
    sources = [(where, expr) for where, expr in expressions()]
    sources += [
        (f"alerts.yml: {r['alert']}", r["expr"])
        for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    ]
    for path in sorted(PROMETHEUS.glob("tests/*.yml")):
        for case in yaml.safe_load(path.read_text())["tests"]:
            sources += [(f"{path.name}: input series", s["series"]) for s in case.get("input_series", [])]
    for where, expr in sources:
        found += [(where, name, matchers or "") for name, matchers in OUR_METRIC.findall(expr)]
    return found


def test_every_metric_and_label_the_monitoring_refers_to_is_exported(client, student):
    """Dashboards, alerts and alert tests must select series the app really exports, with their labels."""
    from prometheus_client.parser import text_string_to_metric_families

    client.post("/predictdata", json=student)
    client.post("/predictdata", json={"instances": [student] * 3})
    client.post("/predictdata", data={k: str(v) for k, v in student.items()}, follow_redirects=True)
    client.post("/predictdata", json={**student, "reading_score": 300})
    client.get("/metrics")
    exported: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            exported.setdefault(sample.name, []).append(sample.labels)
    found = selectors()
    assert len(found) > 40
    problems = []
    for where, name, matchers in found:
        if name not in exported:
            problems.append(f"{where}: {name} is not exported")
            continue
        for label, op, value in MATCHER.findall(matchers):
            if label in ADDED_BY_PROMETHEUS:
                continue
            if not any(label in labels for labels in exported[name]):
                problems.append(f"{where}: {name} has no label {label}")
            elif (
                op == "="
                and "input series" not in where
                and not any(labels.get(label) == value for labels in exported[name])
            ):
                problems.append(f'{where}: {name} never has {label}="{value}"')
    assert not problems, "\n".join(problems)
