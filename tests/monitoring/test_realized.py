"""Realized performance counters: exact across gunicorn workers, on /model, and never a student's data kept."""

from __future__ import annotations

import csv
import io
import json
import logging
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from src.config import AppConfig
from src.schema import CATEGORICAL_FEATURES
from src.synthetic import generate_students
from tests.servers import BIN, gunicorn_bind, listening_socket, start, stop, wait_for

CUT = 50.0
COUNTERS = {
    "students": "model_realized_students_total",
    "absolute_error": "model_realized_absolute_error_total",
    "inside": "model_realized_inside_range_total",
    "below_cut": "model_realized_below_cut_total",
}


def labeled_classes(count: int = 12, size: int = 25, seed: int = 5, first: int = 0) -> list[tuple[str, list[dict]]]:
    """Class lists (CSV text, their rows) with ids and distinctive real scores (quarter points); some blank.
    ``first``: the number of the first class (its ids and its seed's offset)."""
    classes = []
    for k in range(first, first + count):
        students = generate_students(size, seed + k)
        rows = []
        for i, student in enumerate(students.to_dict("records")):
            real = "" if i % 6 == 5 else f"{float(student.pop('math_score')) % 100 + 0.25:.2f}"
            student.pop("math_score", None)
            rows.append({"student_id": f"pupil-{k:02d}-{i:02d}-zq", **student, "math score": real})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        classes.append((out.getvalue(), rows))
    return classes


def expected_totals(answers: list[dict], classes: list[tuple[str, list[dict]]]) -> dict:
    """The counters' values recomputed from the answers sent and the real scores, per group too."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    groups = {(f.name, c): dict.fromkeys(COUNTERS, 0.0) for f in CATEGORICAL_FEATURES for c in f.categories}
    for body, (_, rows) in zip(answers, classes, strict=True):
        for item, row in zip(body["predictions"], rows, strict=True):
            if row["math score"] == "":
                continue
            real = float(row["math score"])
            add = {
                "students": 1,
                "absolute_error": abs(item["math_score"] - real),
                "inside": item["interval"]["low"] <= real <= item["interval"]["high"],
                "below_cut": real < CUT,
            }
            for key, value in add.items():
                totals[key] += value
                for feature in CATEGORICAL_FEATURES:
                    groups[(feature.name, row[feature.name])][key] += value
    return {"overall": totals, "groups": groups}


def scraped(text: str) -> dict:
    overall, groups = {}, {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, name in COUNTERS.items():
                if sample.name == name:
                    overall[key] = sample.value
                elif sample.name == name.replace("model_realized_", "model_realized_group_"):
                    groups.setdefault((sample.labels["feature"], sample.labels["group"]), {})[key] = sample.value
    return {"overall": overall, "groups": groups}


def check_equal(got: dict, expected: dict) -> None:
    for key in COUNTERS:
        assert got["overall"][key] == pytest.approx(expected["overall"][key], abs=1e-6), key
    assert set(got["groups"]) == set(expected["groups"])  # labels: the schema's categories, nothing else
    for group, values in expected["groups"].items():
        for key in COUNTERS:
            assert got["groups"][group][key] == pytest.approx(values[key], abs=1e-6), (group, key)


def test_realized_counters_are_exact_across_two_gunicorn_workers_and_shown_on_model(trained, tmp_path):
    multiproc = tmp_path / "multiproc"
    listener = listening_socket()
    port = listener.getsockname()[1]
    log = tmp_path / "gunicorn.log"
    env = {
        "WEB_CONCURRENCY": "2",
        "ARTIFACTS_DIR": trained.store,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "SUPPORT_CUT": str(CUT),
        "LOG_LEVEL": "DEBUG",
        "REALIZED_MIN_STUDENTS": "1",  # every upload published at once, so that the sums can be checked exactly
    }
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app", *gunicorn_bind(listener)]
    process = start(command, env=env, log=log, listeners=[listener])
    url = f"http://127.0.0.1:{port}"
    classes = labeled_classes()
    try:
        wait_for(f"{url}/ready", process, log=log)
        before = wait_for(f"{url}/model.json", process, log=log).json()["realized"]
        assert before["available"] is False and before["students"] == 0

        def post(text: str) -> dict:
            with requests.Session() as session:  # a new connection each: either worker may answer
                response = session.post(
                    f"{url}/predictdata",
                    data=text.encode(),
                    timeout=30,
                    headers={"Content-Type": "text/csv", "Connection": "close"},
                )
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, [text for text, _ in classes]))

        def answering() -> set[str]:
            """The workers whose own realized student count is above zero: each has answered a labeled class.
            (A worker's counter file exists from its start; its value is its own part of the sum.)"""
            out = set()
            for db in multiproc.glob("counter_*.db"):
                for key, value, *_ in MmapedDict.read_all_values_from_file(str(db)):
                    if value > 0 and json.loads(key)[0] == COUNTERS["students"].removesuffix("_total"):
                        out.add(db.name)
            return out

        def both_answered() -> bool:  # a worker writes its counts within a quarter of a second
            deadline = time.monotonic() + 2
            while len(answering()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            return len(answering()) >= 2

        # A busy machine may let one worker accept every connection: more classes, one at a time, each on a
        # new connection, until the other worker has answered one too (at most 24 more).
        for extra in labeled_classes(24, first=len(classes)):
            if both_answered():
                break
            answers.append(post(extra[0]))
            classes.append(extra)
        assert both_answered(), answering()
        expected = expected_totals(answers, classes)
        metrics_text = requests.get(f"{url}/metrics", timeout=10).text
        check_equal(scraped(metrics_text), expected)
        realized = requests.get(f"{url}/model.json", timeout=10).json()["realized"]
        n = expected["overall"]["students"]
        assert realized["students"] == n
        assert realized["mae"] == pytest.approx(expected["overall"]["absolute_error"] / n, abs=1e-9)
        assert realized["coverage"] == pytest.approx(expected["overall"]["inside"] / n, abs=1e-12)
        page = requests.get(f"{url}/model", timeout=10).text
        assert f'id="realized-coverage">{realized["coverage"] * 100:.0f}&nbsp;%<' in page
        drift = requests.get(f"{url}/drift", timeout=10).json()
        assert drift["realized"]["students"] == n
    finally:
        stop(process)
    # privacy: no id and no real score reached the log or any file the server wrote
    # (an aggregate the metrics publish may equal some student's score by chance: that value is not a leak)
    # Nor is a worker's own part of a counter (its value in its file), which only the sum over workers shows.
    # MmapedDict.read_all_values_from_file: prometheus_client's reader of those files (checked on 0.26.0).
    published = {sample.value for family in text_string_to_metric_families(metrics_text) for sample in family.samples}
    published |= {value for db in multiproc.glob("*.db") for _, value, *_ in MmapedDict.read_all_values_from_file(str(db))}
    leaks = _leaks(classes, [log, *multiproc.rglob("*")], published)
    assert not leaks, leaks[:5]


def _leaks(classes: list[tuple[str, list[dict]]], paths: list[Path], published: set[float] = frozenset()) -> list[str]:
    """Every student id or real score (as text, or as a stored double) found in the files; a double equal to a
    value the metrics publish as an aggregate is not counted."""
    needles: dict[bytes, str] = {}
    for _, rows in classes:
        for row in rows:
            needles[row["student_id"].encode()] = row["student_id"]
            if row["math score"]:
                real = float(row["math score"])
                needles[row["math score"].encode()] = row["math score"]
                if real not in published:
                    needles[struct.pack("<d", real)] = f"{real} as a double"
    found = []
    for path in paths:
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {what}" for needle, what in needles.items() if needle in data]
    return found


def test_a_labeled_upload_keeps_no_student_data_in_logs_files_or_labels(store_dir, tmp_path, caplog):
    from app import create_app

    caplog.set_level(logging.DEBUG)
    drift_dir = tmp_path / "drift"
    app = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=drift_dir, support_cut=CUT))
    client = app.test_client()
    classes = labeled_classes(count=2)
    for text, _ in classes:
        assert client.post("/predictdata", data=text.encode(), headers={"Content-Type": "text/csv"}).status_code == 200
    instances = [
        {k: v for k, v in row.items() if k not in ("student_id", "math score")}
        | {"math_score": float(row["math score"]) if row["math score"] else None}
        for row in classes[0][1]
    ]
    assert "evaluation" in client.post("/predictdata", json={"instances": instances}).get_json()
    metrics = client.get("/metrics").get_data(as_text=True)
    client.get("/model")
    client.get("/drift")
    assert not _leaks(classes, [*drift_dir.rglob("*")])
    logged = caplog.text
    for _, rows in classes:
        for row in rows:
            assert row["student_id"] not in logged and row["student_id"] not in metrics
            assert not row["math score"] or row["math score"] not in logged
    allowed = {(f.name, c) for f in CATEGORICAL_FEATURES for c in f.categories}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.startswith("model_realized_group_"):
                assert (sample.labels["feature"], sample.labels["group"]) in allowed
            elif sample.name.startswith("model_realized_"):
                assert sample.labels == {}


def _realized_samples(client, headers: dict | None = None) -> dict:
    text = client.get("/metrics", headers=headers or {}).get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("model_realized_")
    }


def test_a_tokenless_labeled_upload_is_evaluated_but_moves_no_realized_counter(store_dir, tmp_path):
    import hashlib

    from app import create_app

    token = "a-token-of-this-server-0123456789"
    config = AppConfig(
        artifacts_dir=store_dir,
        drift_dir=tmp_path / "drift",
        support_cut=CUT,
        api_token_sha256=(hashlib.sha256(token.encode()).digest(),),
    )
    client = create_app(config).test_client()
    (text, rows), *_ = labeled_classes(count=1)
    before = _realized_samples(client)
    page = client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(text.encode()), "class.csv")},
        content_type="multipart/form-data",
    )
    assert page.status_code == 200 and "real score" in page.get_data(as_text=True)  # its own evaluation shown
    assert _realized_samples(client) == before
    signed = client.post(
        "/predictdata",
        data=text.encode(),
        headers={"Content-Type": "text/csv", "Authorization": f"Bearer {token}"},
    )
    assert signed.status_code == 200 and "evaluation" in signed.get_json()
    labeled = sum(1 for row in rows if row["math score"])
    assert _realized_samples(client)[("model_realized_students_total", ())] == labeled


def test_with_sign_in_on_a_signed_in_teachers_labeled_upload_counts(store_dir, tmp_path):
    import hashlib

    from app import create_app

    digest = hashlib.sha256(b"a-token-of-this-server-0123456789").digest()
    config = AppConfig(
        artifacts_dir=store_dir, drift_dir=tmp_path / "drift", support_cut=CUT, api_token_sha256=(digest,), sign_in=True
    )
    client = create_app(config).test_client()
    (text, rows), *_ = labeled_classes(count=1)
    page = client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(text.encode()), "class.csv")},
        content_type="multipart/form-data",
    )
    assert page.status_code == 200
    labeled = sum(1 for row in rows if row["math score"])
    assert _realized_samples(client)[("model_realized_students_total", ())] == labeled


def test_one_labeled_students_real_score_cannot_be_read_back_from_metrics(store_dir, tmp_path, student):
    """The attack: read /metrics, upload one labeled student whose prediction one knows, read again, and take
    |prediction - real| from the change of a sum. Nothing changes until ten students are pooled; then the change
    is their sum."""
    from app import create_app

    client = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "drift", support_cut=CUT)).test_client()
    errors = []
    before = _realized_samples(client)
    for i in range(10):
        real = 30.0 + 4 * i
        answer = client.post("/predictdata", json={"instances": [{**student, "math_score": real}]}).get_json()
        errors.append(abs(answer["predictions"][0]["math_score"] - real))
        after = _realized_samples(client)
        if i < 9:
            changed = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
            assert not any(changed.values()), (i, {k: v for k, v in changed.items() if v})
    assert after[("model_realized_students_total", ())] == 10
    assert after[("model_realized_absolute_error_total", ())] == pytest.approx(sum(errors), abs=1e-9)
    published = after[("model_realized_absolute_error_total", ())] - before.get(
        ("model_realized_absolute_error_total", ()), 0.0
    )
    assert all(abs(published - error) > 1e-6 for error in errors)  # no single student's error was published
