"""Retraining listens to the real scores: low realized coverage reported by the app starts a training."""

from __future__ import annotations

import io
import threading

import pytest
from werkzeug.serving import make_server

from src.config import AppConfig
from src.lifecycle.retraining import low_realized_coverage
from src.pipeline import retrain
from src.store import open_store
from tests.conftest import FAST_MODELS
from tests.monitoring.test_realized import labeled_classes


@pytest.fixture()
def serving(store_copy, tmp_path):
    """The app on 127.0.0.1, serving the store's champion, stopped after the test."""
    from app import create_app

    app = create_app(AppConfig(artifacts_dir=store_copy, drift_dir=tmp_path / "drift"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app.test_client(), f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _labeled(client, far: bool, classes: int) -> None:
    """Labeled class lists; ``far``: real scores 40 points from every prediction (never inside the range)."""
    for text, _ in labeled_classes(count=classes, size=25):
        answer = client.post("/predictdata", data=text.encode(), headers={"Content-Type": "text/csv"}).get_json()
        if far:  # post again with real scores far from the answers
            lines = text.splitlines()
            fixed = [lines[0]]
            for line, item in zip(lines[1:], answer["predictions"], strict=True):
                cells = line.split(",")
                cells[-1] = f"{(item['math_score'] + 40) % 100:.1f}"
                fixed.append(",".join(cells))
            client.post("/predictdata", data="\n".join(fixed).encode(), headers={"Content-Type": "text/csv"})


def _retrain_args(store) -> list[str]:
    return [
        "--store",
        str(store),
        "--synthetic-rows",
        "400",
        "--cv-folds",
        "3",
        "--models",
        ",".join(FAST_MODELS),
        "--no-tracking",
        "--n-jobs",
        "1",
    ]


def test_low_realized_coverage_starts_a_training_with_that_reason_in_the_decision_record(serving, store_copy):
    client, url = serving
    _labeled(client, far=True, classes=5)  # 250 students labeled twice: most real scores outside the range
    realized = client.get("/drift").get_json()["realized"]
    assert realized["students"] >= 200 and realized["coverage"] < 0.85 and realized["coverage_low"]
    out = io.StringIO()
    assert retrain.main([*_retrain_args(store_copy), "--drift-url", f"{url}/drift"], out=out) == 0, out.getvalue()
    assert "retraining: low realized coverage: the 90 % range held for" in out.getvalue()
    record = open_store(store_copy).decisions()[-1]
    assert record["trigger"].startswith("low realized coverage")
    assert f"of {realized['students']} labeled students" in record["trigger"]


def test_realized_coverage_as_promised_does_not_retrain(serving, store_copy):
    client, url = serving
    _labeled(client, far=False, classes=2)
    out = io.StringIO()
    before = len(open_store(store_copy).decisions())
    assert retrain.main([*_retrain_args(store_copy), "--drift-url", f"{url}/drift"], out=out) == 0
    assert out.getvalue().startswith("nothing to do: data unchanged"), out.getvalue()
    assert len(open_store(store_copy).decisions()) == before


@pytest.mark.parametrize(
    ("realized", "low"),
    [
        ({"students": 199, "coverage": 0.5}, False),  # too few to tell
        ({"students": 200, "coverage": 0.84}, True),
        ({"students": 200, "coverage": 0.85}, False),
        ({"students": 0, "coverage": None}, False),
        (None, False),
    ],
)
def test_the_rule_is_the_alerts(realized, low):
    assert (low_realized_coverage(realized) is not None) is low
