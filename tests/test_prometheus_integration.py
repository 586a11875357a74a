"""gunicorn with 2 workers scraped by a real Prometheus server, all on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import unavailable
from tests.servers import BIN, PROJECT, gunicorn_bind, listening_port, listening_socket, start, stop, wait_for, wait_until


def query(prom: str, expr: str) -> list:
    response = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]


@pytest.fixture()
def stack(store_dir, trained, tmp_path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        unavailable("prometheus not installed (Debian package prometheus; .ci/run installs it)")
    listener = listening_socket()
    app_port = listener.getsockname()[1]
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    app_log, prom_log = tmp_path / "gunicorn.log", tmp_path / "prometheus.log"
    app = start(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app", *gunicorn_bind(listener)],
        log=app_log,
        listeners=[listener],
        env={
            "WEB_CONCURRENCY": "2",
            "ARTIFACTS_DIR": str(store_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        },
    )
    rules = tmp_path / "alerts.yml"
    shutil.copy(PROJECT / "monitoring/prometheus/alerts.yml", rules)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [{"job_name": "student-math", "static_configs": [{"targets": [f"127.0.0.1:{app_port}"]}]}],
            }
        )
    )
    prom = start(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--web.listen-address=127.0.0.1:0",  # the port it was given is read back
        ],
        log=prom_log,
    )
    try:
        wait_for(f"http://127.0.0.1:{app_port}/ready", app, log=app_log)
        prom_port = listening_port(prom, log=prom_log)
        wait_for(f"http://127.0.0.1:{prom_port}/-/ready", prom, log=prom_log)
        yield f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{prom_port}", multiproc
    finally:
        stop(prom)
        stop(app)


def predictions_by_worker(multiproc: Path) -> dict[str, float]:
    """model_predictions_total as each worker wrote it into its own multiprocess file."""
    from prometheus_client.mmap_dict import MmapedDict

    found: dict[str, float] = {}
    for path in multiproc.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        found[path.stem.split("_")[-1]] = sum(v for key, v, *_ in values if json.loads(key)[1] == "model_predictions_total")
    return found


def test_prometheus_counts_every_prediction_across_workers_and_sees_drift(stack, student):
    app, prom, multiproc = stack

    def predict(body):
        response = requests.post(f"{app}/predictdata", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response

    # Send rounds of single predictions from several threads until both workers have served some; a busy
    # worker (one 5,000-student batch per round) pushes the singles to the other. Everything sent is counted.
    sent = requests_sent = 0
    for _ in range(10):
        with ThreadPoolExecutor(max_workers=5) as pool:
            batch = pool.submit(predict, {"instances": [student] * 5000})
            list(pool.map(predict, [student] * 30))
            batch.result()
        sent += 5000 + 30
        requests_sent += 1 + 30
        time.sleep(1.5)  # single predictions reach the metric files within a second
        if sum(1 for v in predictions_by_worker(multiproc).values() if v > 0) == 2:
            break
    spread = predictions_by_worker(multiproc)
    assert sum(1 for v in spread.values() if v > 0) == 2, f"predictions not spread over both workers: {spread}"
    assert sum(spread.values()) == sent

    counted = wait_until(
        lambda: [r for r in query(prom, "sum(model_predictions_total)") if float(r["value"][1]) == sent],
        30,
        f"Prometheus reporting {sent} predictions",
    )
    assert float(counted[0]["value"][1]) == sent
    assert len(query(prom, "process_resident_memory_bytes")) == 2
    assert len(query(prom, "process_cpu_seconds_total")) == 2
    targets = requests.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
    http = 'sum(flask_http_request_duration_seconds_count{url_rule="/predictdata", method="POST", status="200"})'
    answered = wait_until(
        lambda: [r for r in query(prom, http) if float(r["value"][1]) == requests_sent],
        30,
        f"Prometheus reporting {requests_sent} answered prediction requests",
    )
    assert float(answered[0]["value"][1]) == requests_sent
    total = query(prom, 'sum(flask_http_request_total{method="POST", status="200"})')
    assert float(total[0]["value"][1]) == requests_sent

    skewed = {**student, "reading_score": 2, "writing_score": 3}
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(predict, [{"instances": [skewed] * 50}] * 8))
    drifted = wait_until(
        lambda: [r for r in query(prom, 'max(model_feature_drift{feature="reading_score"})') if float(r["value"][1]) >= 0.2],
        30,
        "reading_score drift over 0.2",
    )
    assert drifted
    wait_until(
        lambda: [r for r in query(prom, "max(model_drift_detected)") if float(r["value"][1]) == 1],
        30,
        "model_drift_detected == 1",
    )

    def alert_state():
        alerts = requests.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [
            a["state"]
            for a in alerts
            if a["labels"]["alertname"] == "StudentMathDriftDetected" and a["state"] in ("pending", "firing")
        ]

    assert wait_until(alert_state, 30, "StudentMathDriftDetected pending or firing")
