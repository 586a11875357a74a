"""The registered MLflow model answers like the API: integer scores, factors as columns, bad rows as null + error.

In process (``mlflow.pyfunc.load_model``) and behind ``mlflow models serve`` (MLflow's local environment manager,
on 127.0.0.1, stopped by its PID), loaded by the line the data team's page gives:
``models:/student-math-score@champion``.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
import requests

from src.answers.columns import FACTOR_COLUMNS, answers_frame
from src.batch.pyfunc import ERROR, OUTPUT_COLUMNS, log_answers_model
from src.pipeline.train_pipeline import main
from tests.conftest import FAST_MODELS
from tests.servers import BIN, listening_port, start, stop, wait_for


def rows(student: dict) -> list[dict]:
    """A valid student with integer scores, one with float scores, one with text scores and two broken rows."""
    return [
        student,
        {**student, "reading_score": 72.5, "writing_score": 74.0},
        {**student, "reading_score": "72", "writing_score": "74"},
        {**student, "reading_score": 172},
        {**student, "gender": "Femal", "writing_score": None},
    ]


def strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def check_answers(records: list[dict], expected: pd.DataFrame) -> None:
    assert [list(r) for r in records] == [list(OUTPUT_COLUMNS)] * 5
    assert {"factors_baseline", "top_factor", *FACTOR_COLUMNS} <= set(OUTPUT_COLUMNS)
    for got, want in zip(records[:3], expected.to_dict(orient="records"), strict=True):
        assert got[ERROR] == "" and got["band"] == want["band"] and got["top_factor"] == want["top_factor"]
        for column in ("math_score", "interval_low", "below_cut_probability", "factors_baseline", *FACTOR_COLUMNS):
            assert got[column] == pytest.approx(want[column], abs=1e-9), column
    assert records[3][ERROR] == "reading_score: must be a number between 0 and 100"
    assert records[4][ERROR].startswith("gender: must be one of: female, male; writing_score: "), records[4][ERROR]
    for broken in records[3:]:
        assert broken["math_score"] is None and broken["factor_reading_score"] is None and broken["band"] == ""


@pytest.mark.slow
def test_the_answering_model_takes_integer_scores_gives_factors_and_none_for_a_bad_row(trained, pipeline, student, tmp_path):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    # an experiment of this store: the one another test made active in this process is not in it
    mlflow.set_experiment("answers-model")
    try:
        model = mlflow.pyfunc.load_model(log_answers_model(trained.manifest_path.parent, support_cut=60.0).model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    answers = model.predict(pd.DataFrame(rows(student)))
    valid = [student, {**student, "reading_score": 72.5, "writing_score": 74.0}, student]
    expected = answers_frame(pipeline, valid, support_cut=60.0)
    check_answers(answers.to_dict(orient="records"), expected)
    assert np.isclose(
        answers["factors_baseline"][0] + sum(answers[c][0] for c in FACTOR_COLUMNS),
        expected["math_score"][0],  # an unclipped score: the factors add up to it
    )


@pytest.mark.slow
@pytest.mark.server
def test_mlflow_models_serve_answers_the_registered_champion_as_valid_json(student, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = io.StringIO()
    args = ["--store", str(tmp_path / "artifacts"), "--tracking-uri", uri, "--synthetic-rows", "300", "--cv-folds", "3"]
    assert main([*args, "--models", ",".join(FAST_MODELS), "--n-jobs", "1"], out=out) == 0, out.getvalue()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = start(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/student-math-score@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            "0",  # the port it was given is read back
            "--workers",
            "1",
        ],
        env={**env, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        cwd=tmp_path,
        log=log,
    )
    try:
        port = listening_port(process, timeout=240, log=log)
        wait_for(f"http://127.0.0.1:{port}/ping", process, timeout=120, log=log)
        response = requests.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": rows(student)}, timeout=60
        )
        assert response.status_code == 200, response.text[:2000]
        body = strict_json(response.text)
    finally:
        stop(process)
    from src.answers.model import load_champion
    from src.store import LocalStore

    expected = answers_frame(
        load_champion(LocalStore(tmp_path / "artifacts")),
        [student, {**student, "reading_score": 72.5, "writing_score": 74.0}, student],
        support_cut=50.0,
    )
    check_answers(body["predictions"], expected)
