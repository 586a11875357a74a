import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from src.config import AppConfig


def families(client) -> dict:
    text = client.get("/metrics").get_data(as_text=True)
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, name, **labels) -> float:
    for sample in fams[name].samples:
        if sample.name == name + ("_total" if fams[name].type == "counter" else "") or sample.name == name:
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise KeyError((name, labels))


def test_metrics_has_at_least_15_families(client, student):
    client.post("/predictdata", json=student)
    names = set(families(client))
    assert len(names) >= 15, sorted(names)
    assert {
        "flask_http_request",
        "flask_http_request_duration_seconds",
        "http_requests_in_flight",
        "model_predictions",
        "model_score_students",
        "model_input_category",
        "model_validation_failures",
        "model_info",
        "model_test_r2",
        "model_test_mae",
        "model_load_duration_seconds",
        "model_last_load_timestamp_seconds",
        "model_feature_drift",
        "model_drift_detected",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= names


def test_predictions_are_counted_per_student_and_channel(client, student):
    client.post("/predictdata", json=student)
    client.post("/predictdata", json={"instances": [student] * 40})
    client.post("/predictdata", data={k: str(v) for k, v in student.items()}, follow_redirects=True)
    fams = families(client)
    assert value(fams, "model_predictions", channel="json") == 1
    assert value(fams, "model_predictions", channel="batch") == 40
    assert value(fams, "model_predictions", channel="form") == 1
    assert value(fams, "model_input_category", feature="gender", category="female") == 42
    binned = {
        feature: sum(
            s.value
            for s in fams["model_score_students"].samples
            if s.name.endswith("_total") and s.labels["feature"] == feature
        )
        for feature in ("prediction", "reading_score", "writing_score")
    }
    assert binned == {"prediction": 42, "reading_score": 42, "writing_score": 42}
    reading = student["reading_score"]  # its 1-point bin: (reading - 1, reading]
    assert value(fams, "model_score_students", feature="reading_score", bin=f"{reading:g}") == 42


def test_a_form_prediction_is_counted_once_when_submitted_not_when_its_page_is_shown_again(client, student):
    location = client.post("/predictdata", data={k: str(v) for k, v in student.items()}).headers["Location"]
    assert value(families(client), "model_predictions", channel="form") == 1
    before = client.get("/drift").get_json()
    for _ in range(3):  # a reload, a bookmark, a restored tab
        assert client.get(location).status_code == 200
    assert value(families(client), "model_predictions", channel="form") == 1
    assert client.get("/drift").get_json() == before


def test_observing_many_equals_one_by_one_observation(client, student):
    from prometheus_client import CollectorRegistry, Histogram

    from src.monitoring.metrics import LATENCY_BUCKETS, observe_many

    values = [0.0, 0.0005, 0.0007, 0.004, 0.3, 2.5, 7.0] * 10
    registry = CollectorRegistry()
    bulk = Histogram("bulk", "", buckets=LATENCY_BUCKETS, registry=registry)
    single = Histogram("single", "", buckets=LATENCY_BUCKETS, registry=registry)
    observe_many(bulk, values)
    for v in values:
        single.observe(v)

    def samples(name):
        metric = next(m for m in registry.collect() if m.name == name)
        return {
            (s.name.replace(name, ""), s.labels.get("le")): s.value
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    bulk_samples, single_samples = samples("bulk"), samples("single")
    assert bulk_samples.pop(("_sum", None)) == pytest.approx(single_samples.pop(("_sum", None)))
    assert bulk_samples == single_samples


def test_validation_failures_are_counted_by_field(client, student):
    client.post("/predictdata", json={**student, "reading_score": 300, "gender": "x"})
    fams = families(client)
    assert value(fams, "model_validation_failures", field="reading_score") == 1
    assert value(fams, "model_validation_failures", field="gender") == 1


def test_model_info_and_quality_gauges(client, trained):
    fams = families(client)
    version = trained.manifest["model_version"]
    assert value(fams, "model_info", version=version, model=trained.manifest["model"]) == 1
    assert value(fams, "model_test_r2") == trained.manifest["metrics"]["test"]["r2"]
    assert value(fams, "model_ready") == 1
    assert value(fams, "process_resident_memory_bytes") > 10_000_000


def test_latency_histogram_has_millisecond_buckets(client, student):
    client.post("/predictdata", json=student)
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(
        r'flask_http_request_duration_seconds_bucket\{le="0\.001",method="POST",status="200",'
        r'url_rule="/predictdata"\} ',
        text,
    )


def test_two_apps_in_one_process_have_their_own_registries(store_dir, trained, tmp_path, student):
    from app import create_app

    first = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "a"))
    second = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "b"))
    first.test_client().post("/predictdata", json=student)
    assert value(families(first.test_client()), "model_predictions", channel="json") == 1
    assert value(families(second.test_client()), "model_predictions", channel="json") == 0


def test_drift_endpoint_reports_the_window(client, student):
    for _ in range(3):
        client.post("/predictdata", json=student)
    report = client.get("/drift").get_json()
    assert report["available"] and report["window_size"] == 3 and report["window_capacity"] == 500
    assert report["enough_data"] is False and report["drift_detected"] is False
    assert set(report["features"]) == set(student) and report["threshold"] == 0.2


def test_metrics_can_be_switched_off(store_dir, trained, tmp_path):
    from app import create_app

    app = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path, metrics_enabled=False))
    assert app.test_client().get("/metrics").status_code == 404


def test_a_handler_that_raises_is_counted_as_an_exception_and_a_500(app, student):
    def broken():
        raise RuntimeError("boom")

    app.add_url_rule("/broken", "broken", broken, methods=["POST"])
    client = app.test_client()
    response = client.post("/broken", json=student)
    assert response.status_code == 500
    client.post("/predictdata", json=student)
    fams = families(client)
    assert value(fams, "flask_http_request_exceptions", method="POST", status="500") == 1
    assert value(fams, "flask_http_request", method="POST", status="500") == 1
    assert value(fams, "flask_http_request", method="POST", status="200") == 1
    counts = {
        s.labels["url_rule"]: s.value
        for s in fams["flask_http_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["status"] == "500"
    }
    assert counts == {"/broken": 1}


def test_unusual_methods_do_not_create_series(client):
    for method in ("BREW", "PROPFIND", "X-ANYTHING"):
        client.open("/predictdata", method=method)
    fams = families(client)
    methods = {s.labels["method"] for s in fams["flask_http_request"].samples}
    assert "other" in methods and not methods & {"BREW", "PROPFIND", "X-ANYTHING"}
    assert value(fams, "flask_http_request", method="other", status="405") == 3


def test_a_monitoring_token_guards_metrics_and_drift_only(store_dir, trained, tmp_path, student):
    from app import create_app

    token = "scrape-token-0123456789"
    app = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path, metrics_token=token))
    client = app.test_client()
    for path in ("/metrics", "/drift"):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {token}"}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.get_json()["error"] == "unauthorized"
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.post("/predictdata", json=student).status_code == 200
    assert client.get("/ready").status_code == 200


def unknown_keys_bodies(requests: int = 100, keys: int = 20_000) -> list[bytes]:
    """``requests`` JSON objects of ``keys`` field names each, no name used twice."""
    import json

    template = json.dumps({f"field-@@@@-{i:05d}-{'x' * 40}": i for i in range(keys)}).encode()
    return [template.replace(b"@@@@", b"%04d" % n) for n in range(requests)]


def test_unknown_field_names_never_become_series_and_metrics_stay_small(client):
    before = len(client.get("/metrics").get_data())
    for body in unknown_keys_bodies():
        response = client.post("/predictdata", data=body, content_type="application/json")
        assert response.status_code == 422
    body = response.get_json()
    assert len(body["details"]) == 50 and body["more_details"] == 20_000 + 7 - 50
    assert all(len(d["field"]) <= 64 for d in body["details"])
    text = client.get("/metrics").get_data()
    # 2,000,000 rejected unknown fields add no series of their own: only the 422 answers' request series.
    assert len(text) < before + 8 * 1024, (before, len(text))
    assert before < 128 * 1024, before
    fams = families(client)
    labels = {s.labels["field"] for s in fams["model_validation_failures"].samples}
    from src.schema import FEATURE_NAMES, TARGET

    assert labels == set(FEATURE_NAMES) | {TARGET.name, "other"}  # a broken real score counts as math_score
    assert value(fams, "model_validation_failures", field="other") == 100 * 20_000
    assert value(fams, "model_validation_failures", field="reading_score") == 100  # missing in each


def test_download_header_names_count_under_the_schema_name(client, student):
    given = {("reading score" if k == "reading_score" else k): v for k, v in student.items()}
    given["reading_score"] = 70  # the same field twice, in both header styles
    assert client.post("/predictdata", json=given).status_code == 422
    assert value(families(client), "model_validation_failures", field="reading_score") == 1


def test_a_drift_folder_made_for_a_single_process_is_removed_when_it_ends(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = "from src.web.monitoring import _default_drift_dir; d = _default_drift_dir(); (d / 'x').write_text('x'); print(d)"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    folder = Path(result.stdout.strip())
    assert folder.name.startswith("student-math-drift-") and not folder.exists()


def test_requests_in_flight_are_the_started_ones_not_yet_answered_as_of_the_last_flush():
    from prometheus_client import CollectorRegistry

    from src.monitoring.metrics import RequestMetrics

    registry = CollectorRegistry()
    requests = RequestMetrics(registry)
    requests.started()
    requests.started()
    requests.record("POST", "/predictdata", "200", 0.001)
    requests.flush()
    assert registry.get_sample_value("http_requests_in_flight") == 1
    assert registry.get_sample_value("flask_http_request_total", {"method": "POST", "status": "200"}) == 1
    requests.record("POST", "/predictdata", "200", 0.002)
    assert registry.get_sample_value("http_requests_in_flight") == 1  # written by the flush, not by the request
    requests.flush()
    assert registry.get_sample_value("http_requests_in_flight") == 0
    assert registry.get_sample_value("flask_http_request_total", {"method": "POST", "status": "200"}) == 2


def test_a_contract_test_with_the_monitoring_token_is_kept_out_of_drift_and_counters(store_dir, trained, tmp_path, student):
    from app import create_app

    token = "scrape-token-0123456789"
    client = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path, metrics_token=token)).test_client()
    auth = {"Authorization": f"Bearer {token}"}
    excluded = {"X-Monitoring-Exclude": "true", "X-Monitoring-Token": token}
    for headers in (excluded, {**excluded, "X-Monitoring-Token": "wrong-token-0123456789"}, {}):
        response = client.post("/predictdata", json=student, headers=headers)
        assert response.status_code == 200
        said = "true" if headers is excluded else ("false" if headers else None)
        assert response.headers.get("X-Monitoring-Excluded") == said, headers
        broken = client.post("/predictdata", json={**student, "reading_score": 300}, headers=headers)
        assert broken.status_code == 422
    assert client.get("/drift", headers=auth).get_json()["window_size"] == 2  # the wrong token's and the plain one's
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert value(fams, "model_predictions", channel="json") == 2
    assert value(fams, "model_validation_failures", field="reading_score") == 2


def test_every_channel_bins_the_score_it_reported(client, student):
    """The score distributions count the score each answer gave (one decimal), whichever channel asked."""
    from src.monitoring.bins import UPPER_BOUNDS, bin_counts, bin_label

    def answer(chosen):
        return client.post("/predictdata", json=chosen).get_json()

    # a student whose unrounded score rounds down onto a bin's bound: the bins of the two differ
    found = None
    candidates = ({**student, "reading_score": r, "writing_score": w} for w in (70, 50, 30) for r in range(101))
    for chosen in candidates:
        item = answer(chosen)
        raw = item["factors"]["unclipped_score"]
        if 0 < raw < 100 and round(raw, 1) != raw and round(raw, 1) == float(int(raw)) and round(raw, 1) < raw:
            found = chosen, item["math_score"], raw
            break
    assert found is not None, "no student among 303 has a score just above a whole number"
    chosen, reported, raw = found
    assert bin_counts([raw]).argmax() != bin_counts([reported]).argmax()
    before = value(families(client), "model_score_students", feature="prediction", bin=bin_label(reported))
    header = ",".join(chosen)
    row = ",".join(str(v) for v in chosen.values())
    assert client.post("/predictdata", json={"instances": [chosen] * 3}).status_code == 200
    assert client.post("/predictdata", data=f"{header}\n{row}\n{row}\n", content_type="text/csv").status_code == 200
    after = value(families(client), "model_score_students", feature="prediction", bin=bin_label(reported))
    assert after - before == 5  # 3 from the JSON batch, 2 from the class list; none in the raw score's bin
    assert UPPER_BOUNDS[bin_counts([reported]).argmax()] == reported
