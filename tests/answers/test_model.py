import json

import numpy as np
import pandas as pd
import pytest

from src.answers.fast_path import AdditiveScorer, PipelineScorer, compile_scorer, random_students
from src.answers.model import PredictPipeline
from src.lifecycle.decision import DecisionConfig
from src.lifecycle.training import TrainingConfig, train
from src.schema import FEATURE_NAMES
from src.storage import ArtifactError
from src.validation import StudentColumns


def test_loads_and_predicts_within_range(trained, student):
    pipeline = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    one = pipeline.predict([student])
    score, low, high = float(one.scores[0]), float(one.low[0]), float(one.high[0])
    assert 0 <= low <= score <= high <= 100
    assert pipeline.model_version == trained.manifest["model_version"]
    batch = pipeline.predict([student, student])
    assert batch.scores.tolist() == [score, score] and batch.level == 0.9


def test_tampered_model_is_refused(artifacts_copy):
    with open(artifacts_copy / "model.pkl", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="model.pkl does not match its manifest"):
        PredictPipeline.from_artifacts(artifacts_copy)


def test_missing_manifest_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="no manifest.json"):
        PredictPipeline.from_artifacts(tmp_path)


def test_other_scikit_learn_version_is_refused_naming_both(artifacts_copy):
    import sklearn

    manifest = json.loads((artifacts_copy / "manifest.json").read_text())
    manifest["versions"]["scikit-learn"] = "1.2.2"
    (artifacts_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"scikit-learn 1.2.2, but this server runs scikit-learn {sklearn.__version__}"):
        PredictPipeline.from_artifacts(artifacts_copy)


@pytest.fixture(scope="module", params=["ridge", "lasso", "linear_regression", "knn", "random_forest", "gradient_boosting"])
def model_artifacts(request, tmp_path_factory):
    result = train(
        TrainingConfig(
            store=tmp_path_factory.mktemp(request.param),
            synthetic_rows=300,
            cv_folds=3,
            candidates=(request.param,),
            tracking=False,
            n_jobs=1,
            decision=DecisionConfig(min_test_r2=0.0),
        )
    )
    return request.param, result


def test_fast_path_equals_scikit_learn_on_test_split_and_random_students(model_artifacts):
    name, result = model_artifacts
    pipeline = PredictPipeline.from_artifacts(result.manifest_path.parent)
    linear = ("ridge", "lasso", "linear_regression")
    expected_kind = "additive" if name in linear else "pipeline" if name == "knn" else "vector"
    assert pipeline.scorer.kind == expected_kind
    students = pd.concat(
        [pd.read_csv(result.run_dir / "test.csv")[list(FEATURE_NAMES)], random_students(2000, seed=11)], ignore_index=True
    )
    records = students.to_dict("records")
    expected = pipeline.reference.score_frame(students)
    assert np.max(np.abs(pipeline.predict(records).raw - expected)) <= 1e-9
    if pipeline.scorer.kind == "pipeline":
        return  # k-NN is served by scikit-learn itself (its one-row answers can differ from its batch at ties)
    singles = np.array([pipeline.predict([r]).raw[0] for r in records[:300]])  # each a batch of one
    assert np.max(np.abs(singles - expected[:300])) <= 1e-9


def test_a_model_that_cannot_be_compiled_falls_back_to_the_pipeline(trained):
    class NotSeparable:
        """A preprocessor whose columns interact: the probe cannot reproduce it."""

        def transform(self, frame):
            x = frame[["reading_score", "writing_score"]].to_numpy(dtype=float)
            return np.column_stack([x[:, 0] * x[:, 1], x[:, 0]])

    class Sum:
        coef_ = np.array([1.0, 1.0])
        intercept_ = 0.0

        def predict(self, x):
            return x @ self.coef_

    scorer = compile_scorer(NotSeparable(), Sum())
    assert isinstance(scorer, PipelineScorer)


def test_a_model_that_cannot_predict_is_refused_at_load(artifacts_copy):
    import dill

    from src.storage import sha256_file

    class Broken:
        def predict(self, x):
            raise RuntimeError("broken estimator")

    (artifacts_copy / "model.pkl").write_bytes(dill.dumps(Broken()))
    manifest = json.loads((artifacts_copy / "manifest.json").read_text())
    manifest["files"]["model.pkl"]["sha256"] = sha256_file(artifacts_copy / "model.pkl")
    (artifacts_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="failed its load-time check prediction"):
        PredictPipeline.from_artifacts(artifacts_copy)


def test_factors_are_exact_for_additive_models_and_null_with_a_reason_otherwise(model_artifacts):
    name, result = model_artifacts
    pipeline = PredictPipeline.from_artifacts(result.manifest_path.parent)
    factors = pipeline.factors
    if pipeline.scorer.kind != "additive":
        assert not factors.available and factors.reason
        assert ("k-nearest" in factors.reason) if name == "knn" else ("TreeSHAP" in factors.reason)
        return
    assert factors.available
    students = pd.concat(
        [pd.read_csv(result.run_dir / "test.csv")[list(FEATURE_NAMES)], random_students(1000, seed=5)], ignore_index=True
    )
    unclipped = pipeline.reference.score_frame(students)  # scikit-learn's own prediction, before clipping
    totals = factors.baseline + factors.columns(StudentColumns.from_frame(students)).sum(axis=1)
    assert np.max(np.abs(totals - unclipped)) <= 1e-6


def test_an_additive_scorer_without_some_features_adds_nothing_for_them():
    """A model trained without some features (--exclude-features) has no term for them: they add 0.0."""
    terms = {"race_ethnicity": {c: float(i) for i, c in enumerate(["group A", "group B", "group C", "group D", "group E"])}}
    scorer = AdditiveScorer(10.0, terms, {"reading_score": 0.5})
    students = random_students(50, seed=3)
    got = scorer.score_columns(StudentColumns.from_frame(students))
    want = [
        10.0 + terms["race_ethnicity"][r] + 0.5 * s
        for r, s in zip(students["race_ethnicity"], students["reading_score"], strict=True)
    ]
    assert got.tolist() == want
