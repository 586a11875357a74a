"""Fixtures of the batch tests (both engines): the cohort, its model, and the API's answers for it."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from src.answers.model import PredictPipeline
from src.schema import FEATURE_NAMES
from tests.batch.batch_cases import Cohort, json_instances, write_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    return write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def pipeline(trained) -> PredictPipeline:
    return PredictPipeline.from_artifacts(trained.manifest_path.parent)


@pytest.fixture(scope="module")
def api_answers(trained, cohort, tmp_path_factory) -> dict:
    """The API's answers for the cohort's valid students, from the app itself.

    The JSON batch answer, plus ``top_factor``: each student's top factor in words from the CSV answer of
    the same students (the class list's channel).
    """
    from app import create_app
    from src.config import AppConfig

    app = create_app(AppConfig(artifacts_dir=Path(trained.store), drift_dir=tmp_path_factory.mktemp("drift")))
    client = app.test_client()
    response = client.post("/predictdata", json={"instances": json_instances(cohort.students)})
    assert response.status_code == 200
    answers = response.get_json()
    body = cohort.students[list(FEATURE_NAMES)].to_csv(index=False)
    response = client.post("/predictdata", data=body, content_type="text/csv", headers={"Accept": "text/csv"})
    assert response.status_code == 200
    rows = pd.read_csv(io.StringIO(response.get_data(as_text=True)), dtype=str, keep_default_na=False)
    assert len(rows) == len(cohort.students) and (rows["error"] == "").all()
    return {**answers, "top_factor": rows["top_factor"].tolist()}
