"""A fleet on loopback: two gunicorn instances, each with its own drift window and counters, a real Prometheus
discovering both through ``file_sd_configs`` (the stand-in for EC2 discovery, with the shipped relabelling), and
a real Alertmanager sending to a webhook receiver in this test.

The Prometheus and Alertmanager configurations are the shipped ones with only what a test must change: the
discovery's source, the token file's path, the intervals, the Alertmanager's receiver and address, and the
instance-down alert's ``for:`` (in the test's own copy of the rules).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from src.config import AppConfig
from src.monitoring.drift import WINDOW_COLUMNS, drift_report, encode_rows, reference_bin, report_from_counts
from src.monitoring.fleet import Prometheus, fleet_drift, fleet_realized
from src.pipeline import retrain
from src.store import open_store
from src.synthetic import generate_students
from tests.conftest import FAST_MODELS, unavailable
from tests.monitoring.test_realized import expected_totals, labeled_classes
from tests.servers import BIN, PROJECT, gunicorn_bind, listening_port, listening_socket, start, stop, wait_for, wait_until

pytestmark = [pytest.mark.server, pytest.mark.slow]

SHIPPED = PROJECT / "monitoring"
TOKEN = "fleet-monitoring-token-0123456789"
API_TOKEN = "fleet-school-system-token-0123456789"  # a trusted sender: its real scores count (src/web/security.py)
SENDER = {"Authorization": f"Bearer {API_TOKEN}"}
SCRAPE_SECONDS = 1
EVALUATION_SECONDS = 1
# increase() extrapolates each series to the window's end by up to 1.1 of its average scrape interval, a share of
# the series' life in the window: over days nothing, in a test of seconds a few percent. The figures are read
# once every instance's series have lived this long, and the share is bounded from the samples (``Fleet.settle``).
SERIES_LIFE_SECONDS = 30
QUERY_LAG_SECONDS = 3 * SCRAPE_SECONDS
DOWN_FOR_SECONDS = 5  # the test's copy of StudentMathInstanceDown's for: (2m shipped)
GROUP_WAIT_SECONDS = 1
WINDOW = "1h"  # longer than the test: every student sent is inside it
INSTANCES = {"a": "i-0aaaaaaaaaaaaaaa1", "b": "i-0bbbbbbbbbbbbbbb2"}


def ec2_target(port: int, instance_id: str, *, state: str = "running", environment: str = "student-math-env") -> dict:
    """A file_sd entry carrying the labels EC2 discovery gives an instance of the environment."""
    return {
        "targets": [f"127.0.0.1:{port}"],
        "labels": {
            "__meta_ec2_instance_id": instance_id,
            "__meta_ec2_instance_state": state,
            "__meta_ec2_tag_elasticbeanstalk_environment_name": environment,
            "__meta_ec2_availability_zone": "us-east-1a",
        },
    }


def prometheus_config(rules: list[Path], targets: Path, token: Path, alertmanager: str) -> dict:
    """The shipped prometheus.yml with file discovery in place of EC2's, and the test's paths and intervals."""
    config = yaml.safe_load((SHIPPED / "prometheus/prometheus.yml").read_text())
    scrape = f"{round(SCRAPE_SECONDS * 1000)}ms"
    config["global"] = {"scrape_interval": scrape, "scrape_timeout": scrape, "evaluation_interval": f"{EVALUATION_SECONDS}s"}
    config["rule_files"] = [str(r) for r in rules]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    [job] = config["scrape_configs"]
    assert job.pop("ec2_sd_configs")  # replaced below; the relabelling is kept as shipped
    job["file_sd_configs"] = [{"files": [str(targets)], "refresh_interval": "1s"}]
    job["authorization"]["credentials_file"] = str(token)
    return config


def alerts_copy() -> dict:
    """The shipped alerts with the instance-down alert's for: shortened (the test cannot wait 2 minutes)."""
    rules = yaml.safe_load((SHIPPED / "prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "StudentMathInstanceDown":
                rule["for"] = f"{DOWN_FOR_SECONDS}s"
    return rules


def alertmanager_config(webhook: str) -> dict:
    """The shipped alertmanager.yml: same routes and inhibitions, its receiver a webhook, short waits."""
    config = yaml.safe_load((SHIPPED / "alertmanager/alertmanager.yml").read_text())
    config["route"].update(group_wait=f"{GROUP_WAIT_SECONDS}s", group_interval="1s", repeat_interval="1m")
    for receiver in config["receivers"]:
        assert receiver.pop("sns_configs")
        receiver["webhook_configs"] = [{"url": webhook, "send_resolved": False}]
    return config


class Receiver(BaseHTTPRequestHandler):
    """The people's end of the alerts: records every notification with the time it arrived."""

    received: list[tuple[float, dict]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.server.received.append((time.monotonic(), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@dataclass
class Fleet:
    apps: dict[str, str]
    processes: dict[str, Any]
    prometheus: str
    received: list[tuple[float, dict]]
    # every student predicted by any test: (instance, students, predicted scores)
    sent: list[tuple[str, list[dict], list[float]]] = field(default_factory=list)

    def predict(self, name: str, students: list[dict]) -> list[float]:
        response = requests.post(f"{self.apps[name]}/predictdata", json={"instances": students}, headers=SENDER, timeout=60)
        assert response.status_code == 200, response.text
        scores = [p["math_score"] for p in response.json()["predictions"]]
        self.sent.append((name, students, scores))
        return scores

    def rows(self, name: str | None = None) -> np.ndarray:
        """Window rows of the students sent (to instance ``name``, or to any)."""
        sent = [(students, scores) for at, students, scores in self.sent if name in (None, at)]
        return encode_rows([r for students, _ in sent for r in students], [s for _, scores in sent for s in scores])

    def query_at(self, expr: str, at: float) -> dict[str, float]:
        """{instance: value} of ``expr`` evaluated at the Unix time ``at``."""
        params = {"query": expr, "time": f"{at:.3f}"}
        response = requests.get(f"{self.prometheus}/api/v1/query", params=params, timeout=10)
        response.raise_for_status()
        return {r["metric"]["instance"]: float(r["value"][1]) for r in response.json()["data"]["result"]}

    def query(self, expr: str) -> list:
        response = requests.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def settle(self, timeout: float = 60) -> float:
        """Wait until Prometheus' last scrapes hold every student sent (the counters themselves, summed) and every
        instance's series have lived SERIES_LIFE_SECONDS; return the most increase() can add (a share)."""
        expected = sum(len(scores) for _, _, scores in self.sent)
        expr = 'sum(model_score_students_total{job="student-math", feature="prediction"})'
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            result = self.query(expr)
            seen = float(result[0]["value"][1]) if result else None
            if seen == expected:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"Prometheus holds {seen} predicted students, {expected} were sent")
        series = 'model_score_students_total{job="student-math", feature="prediction", bin="+Inf"}[1h]'
        first = max(float(r["values"][0][0]) for r in self.query(series))
        # Queried later at now - QUERY_LAG_SECONDS: that moment must come after the scrapes that held everything.
        time.sleep(max(QUERY_LAG_SECONDS + 1, first + SERIES_LIFE_SECONDS - time.time()))
        shares = []
        for result in self.query(series):  # every series of an instance has its scrapes' timestamps
            stamps = [float(t) for t, _ in result["values"]]
            life = stamps[-1] - stamps[0]
            shares.append(1.2 * (life / (len(stamps) - 1)) / life)  # 1.1 average intervals, and a margin
        return max(shares)


@pytest.fixture(scope="module")
def fleet(store_dir, tmp_path_factory):
    prometheus_bin = shutil.which("prometheus")
    alertmanager_bin = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if prometheus_bin is None or alertmanager_bin is None:
        unavailable("prometheus or prometheus-alertmanager not installed (Debian packages; .ci/run installs them)")
    root = tmp_path_factory.mktemp("fleet")
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    receiver.received = []  # type: ignore[attr-defined]
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    processes: dict[str, Any] = {}
    try:
        apps = {}
        for name in INSTANCES:
            listener = listening_socket()
            port = listener.getsockname()[1]
            multiproc = root / f"multiproc-{name}"  # its own counters and its own drift window
            multiproc.mkdir()
            processes[name] = start(
                [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app", *gunicorn_bind(listener)],
                log=root / f"gunicorn-{name}.log",
                listeners=[listener],
                env={
                    "WEB_CONCURRENCY": "1",
                    "ARTIFACTS_DIR": str(store_dir),
                    "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
                    "METRICS_TOKEN": TOKEN,
                    "API_TOKEN_SHA256": hashlib.sha256(API_TOKEN.encode()).hexdigest(),
                    "MODEL_REFRESH_SECONDS": "0",
                },
            )
            apps[name] = f"http://127.0.0.1:{port}"
        token = root / "student-math.token"
        token.write_text(TOKEN)
        targets = root / "targets.json"
        ports = {name: int(url.rsplit(":", 1)[1]) for name, url in apps.items()}
        targets.write_text(
            json.dumps(
                [ec2_target(ports[name], instance) for name, instance in INSTANCES.items()]
                # What the relabelling must drop: another environment's instance, and a stopped one of ours.
                + [ec2_target(ports["a"], "i-0other000000000003", environment="other-env")]
                + [ec2_target(ports["b"], "i-0stopped0000000004", state="stopped")]
            )
        )
        alerts = root / "alerts.yml"
        alerts.write_text(yaml.safe_dump(alerts_copy()))
        recording = root / "recording.yml"
        shutil.copy(SHIPPED / "prometheus/recording.yml", recording)
        am_config = root / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(f"http://127.0.0.1:{receiver.server_port}/alerts")))
        processes["alertmanager"] = start(
            [
                alertmanager_bin,
                f"--config.file={am_config}",
                f"--storage.path={root / 'alertmanager'}",
                "--web.listen-address=127.0.0.1:0",
                "--cluster.listen-address=",
            ],
            log=root / "alertmanager.log",
        )
        am_port = listening_port(processes["alertmanager"], log=root / "alertmanager.log")
        prom_config = root / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(prometheus_config([alerts, recording], targets, token, f"127.0.0.1:{am_port}"))
        )
        processes["prometheus"] = start(
            [
                prometheus_bin,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                "--web.listen-address=127.0.0.1:0",
            ],
            log=root / "prometheus.log",
        )
        prom_port = listening_port(processes["prometheus"], log=root / "prometheus.log")
        for name, url in apps.items():
            wait_for(f"{url}/ready", processes[name], log=root / f"gunicorn-{name}.log", timeout=120)
        wait_for(f"http://127.0.0.1:{am_port}/-/ready", processes["alertmanager"], log=root / "alertmanager.log")
        wait_for(f"http://127.0.0.1:{prom_port}/-/ready", processes["prometheus"], log=root / "prometheus.log")
        yield Fleet(apps, processes, f"http://127.0.0.1:{prom_port}", receiver.received)  # type: ignore[attr-defined]
    finally:
        for process in processes.values():
            stop(process)
        receiver.shutdown()
        receiver.server_close()


def test_prometheus_discovers_each_instance_by_the_shipped_relabelling(fleet):
    def both_up():
        up = fleet.query('up{job="student-math"}')
        return up if len(up) == 2 and all(r["value"][1] == "1" for r in up) else None

    up = wait_until(both_up, 60, "both instances scraped")
    assert {r["metric"]["instance"] for r in up} == set(INSTANCES.values())  # named by instance id
    assert {r["metric"]["availability_zone"] for r in up} == {"us-east-1a"}
    targets = requests.get(f"{fleet.prometheus}/api/v1/targets", timeout=10).json()["data"]
    assert len(targets["activeTargets"]) == 2  # another environment's and a stopped instance: dropped
    assert len(targets["droppedTargets"]) == 2


def bin_counts_of(profile: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Students per reference bin of each column, as one server's drift report counts them."""
    counts = {}
    for j, name in enumerate(WINDOW_COLUMNS):
        ref = profile["features"][name]
        if ref["type"] == "categorical":
            counts[name] = np.bincount(rows[:, j].astype(int), minlength=len(ref["categories"])).astype(float)
        else:
            bins = [reference_bin(profile, name, v) for v in rows[:, j]]
            counts[name] = np.bincount(bins, minlength=len(ref["edges"]) + 1).astype(float)
    return counts


def _binned(rows: np.ndarray) -> np.ndarray:
    """Rows with each score at the upper bound of its 1-point bin: what the fleet's counters can tell apart."""
    out = rows.copy()
    for j, name in enumerate(WINDOW_COLUMNS):
        if name in ("reading_score", "writing_score", "prediction"):
            out[:, j] = np.clip(np.ceil(out[:, j]), 0, 101)
    return out


def test_the_fleets_drift_is_one_servers_drift_over_all_students_and_retrain_decides_from_it(fleet, store_copy):
    usual = generate_students(300, 11).drop(columns="math_score").to_dict("records")
    drifted = generate_students(300, 12).drop(columns="math_score").to_dict("records")
    for student in drifted:  # students whose reading scores are entered 35 points too low, at instance a only
        student["reading_score"] = max(0, int(student["reading_score"]) - 35)
    fleet.predict("a", drifted)
    fleet.predict("b", usual)
    share = fleet.settle()

    profile = json.loads(next(store_copy.glob("*/reference_profile.json")).read_text())  # the champion's
    config = AppConfig()
    rule = {"threshold": config.drift_threshold, "min_samples": config.drift_min_samples}
    one_server = drift_report(profile, fleet.rows(), **rule)
    at = time.time() - QUERY_LAG_SECONDS  # every query sees the same scrapes: none still being written
    fleet_report = fleet_drift(Prometheus(fleet.prometheus, at=at), profile, window=WINDOW, **rule)
    assert fleet_report["instances"] == 2
    n = len(fleet.rows())
    assert n <= fleet_report["window_size"] <= n * (1 + share)

    # What Prometheus counted for each instance, over what was sent there: increase()'s extrapolation alone.
    counted = fleet.query_at(
        f'sum by (instance) (increase(model_score_students_total{{feature="prediction"}}[{WINDOW}]))', at
    )
    scale = {name: counted[instance] / len(fleet.rows(name)) for name, instance in INSTANCES.items()}
    assert all(1 <= f <= 1 + share for f in scale.values()), scale
    # The fleet's PSI is one server's over all students, at the bins' resolution, each instance's students
    # weighted as increase() extrapolated them.
    counts = {
        name: sum(f * bin_counts_of(profile, _binned(fleet.rows(instance)))[name] for instance, f in scale.items())
        for name in WINDOW_COLUMNS
    }
    expected = report_from_counts(profile, counts, round(sum(counts["prediction"])), **rule)
    for name in one_server["features"]:
        assert fleet_report["features"][name] == pytest.approx(expected["features"][name], abs=1e-9), name
    # The answers give predicted scores rounded: one next to a bin's edge may be counted in the neighbouring bin.
    assert fleet_report["prediction"] == pytest.approx(expected["prediction"], abs=0.005)
    # ... and the bins change one server's exact PSI only a little.
    for name, value in one_server["features"].items():
        assert fleet_report["features"][name] == pytest.approx(value, abs=0.05), name
    assert fleet_report["drifted_features"] == one_server["drifted_features"]
    assert "reading_score" in fleet_report["drifted_features"] and fleet_report["drift_detected"]

    # Instance b, asked alone, has seen only usual students: the single-server fallback would not retrain.
    alone = requests.get(f"{fleet.apps['b']}/drift", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    assert alone["drift_detected"] is False

    out = io.StringIO()
    args = ["--store", str(store_copy), "--synthetic-rows", "400", "--cv-folds", "3", "--models", ",".join(FAST_MODELS)]
    args += ["--no-tracking", "--n-jobs", "1", "--prometheus-url", fleet.prometheus, "--drift-window", WINDOW]
    assert retrain.main(args, out=out) == 0, out.getvalue()
    assert "retraining: the fleet's students drifted (" in out.getvalue()
    assert "reading_score" in out.getvalue() and "on 2 instance(s)" in out.getvalue()
    assert open_store(store_copy).decisions()[-1]["trigger"].startswith("the fleet's students drifted")


def test_the_fleets_realized_coverage_is_the_coverage_over_all_real_scores(fleet):
    classes = labeled_classes(count=8, size=25, seed=40)
    sent_to = {"a": ([], []), "b": ([], [])}  # (answers, classes) of each instance
    for i, (text, rows) in enumerate(classes):  # half the class lists to each instance
        name = "a" if i % 2 == 0 else "b"
        response = requests.post(
            f"{fleet.apps[name]}/predictdata",
            data=text.encode(),
            headers={"Content-Type": "text/csv", **SENDER},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        sent_to[name][0].append(body)
        sent_to[name][1].append((text, rows))
        students = [{k: v for k, v in row.items() if k not in ("student_id", "math score")} for row in rows]
        fleet.sent.append((name, students, [p["math_score"] for p in body["predictions"]]))
    share = fleet.settle()
    exact = {name: expected_totals(answers, sent)["overall"] for name, (answers, sent) in sent_to.items()}
    students = sum(e["students"] for e in exact.values())
    coverage = sum(e["inside"] for e in exact.values()) / students
    assert students > 100 and 0 < coverage < 1

    at = time.time() - QUERY_LAG_SECONDS  # every query sees the same scrapes: none still being written
    totals = fleet_realized(Prometheus(fleet.prometheus, at=at), WINDOW)
    assert students <= totals["students"] <= students * (1 + share), (totals["students"], students, share)
    assert totals["inside"] / totals["students"] == pytest.approx(coverage, abs=0.01)
    # Exactly the coverage over all real scores, each instance's weighted as increase() extrapolated its counts.
    counted = fleet.query_at(f"sum by (instance) (increase(model_realized_students_total[{WINDOW}]))", at)
    scale = {name: counted[INSTANCES[name]] / e["students"] for name, e in exact.items()}
    assert all(1 <= f <= 1 + share for f in scale.values()), scale
    weighted = sum(f * exact[n]["inside"] for n, f in scale.items()) / sum(
        f * exact[n]["students"] for n, f in scale.items()
    )
    assert totals["inside"] / totals["students"] == pytest.approx(weighted, abs=1e-9)


def test_a_stopped_instance_reaches_the_receiver_within_for_plus_one_evaluation(fleet):
    fleet.received.clear()
    stopped_at = time.monotonic()
    stop(fleet.processes["b"])

    def notified():
        return [
            (at, alert)
            for at, body in fleet.received
            for alert in body["alerts"]
            if alert["labels"]["alertname"] == "StudentMathInstanceDown" and alert["status"] == "firing"
        ]

    # The scrape that fails (one interval), the for: period, one evaluation, then Alertmanager's group wait.
    bound = SCRAPE_SECONDS + DOWN_FOR_SECONDS + EVALUATION_SECONDS + GROUP_WAIT_SECONDS + 2
    [(at, alert)] = wait_until(notified, bound + 30, "StudentMathInstanceDown at the receiver")
    assert alert["labels"]["instance"] == INSTANCES["b"] and alert["labels"]["severity"] == "page"
    assert at - stopped_at <= bound, f"notified {at - stopped_at:.1f} s after the stop (bound {bound} s)"
    assert alert["annotations"]["description"].startswith(f"Instance {INSTANCES['b']} has not answered /metrics")
