"""The champion as an MLflow pyfunc model that answers like the API, for teams that score with ``spark_udf``.

The model wraps a verified artifact set (loaded with ``PredictPipeline.from_artifacts``, hashes checked) and
answers each input row through ``answers_frame``, the one answer computation: ``math_score``, ``interval_low``,
``interval_high``, ``interval_level``, ``model_version``, ``band``, ``below_cut_probability``,
``band_without_background`` (empty for a model without exact factors), the factors (``factors_baseline``, one
``factor_<feature>`` per feature, ``top_factor``) and ``error``. Scores may come as integers, floats or text: the
model checks them with the API's rules, not MLflow's types. A row that breaks a rule keeps its place (Spark
needs one answer per row) with no numbers (``None``, which ``mlflow models serve`` writes as JSON ``null``),
empty text columns and ``error`` naming each field and rule; ``error`` is empty for a valid row. Nothing is
dropped.

    info = log_answers_model(set_dir, support_cut=60.0)
    model = mlflow.pyfunc.load_model("models:/student-math-score@champion")   # as registered by training
    udf = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type=RESULT_TYPE, env_manager="local")
    scored = students.withColumn("answer", udf(struct(*FEATURE_NAMES))).select("*", "answer.*")
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from src.answers.arrays import repeated
from src.answers.columns import FIELD_KINDS, answer_fields, answers_frame
from src.answers.fast_path import random_students
from src.answers.model import PredictPipeline
from src.batch.wheel import PROJECT, build_wheel
from src.schema import FEATURES, NumericFeature
from src.validation import check_students_frame, normalise_student_headers

MODEL_SET = "model_set"
ERROR = "error"
OUTPUT_COLUMNS: tuple[str, ...] = (*(f.name for f in answer_fields(band=True, factors=True)), ERROR)
_NUMBERS = tuple(c for c in OUTPUT_COLUMNS if FIELD_KINDS.get(c) == "double")
RESULT_TYPE = ", ".join(f"{c} {'double' if c in _NUMBERS else 'string'}" for c in OUTPUT_COLUMNS)
SIGNATURE = ModelSignature(
    # Numbers of any type (an integer score is a score): the model's own check names the field and the rule.
    inputs=Schema([ColSpec(AnyType() if isinstance(f, NumericFeature) else "string", f.name) for f in FEATURES]),
    outputs=Schema([ColSpec("double" if c in _NUMBERS else "string", c) for c in OUTPUT_COLUMNS]),
)


class AnswersModel(mlflow.pyfunc.PythonModel):
    """Score, 90 % range, support band, chance below the cut and factors for each row, from a verified set."""

    def load_context(self, context: Any) -> None:
        self.pipeline = PredictPipeline.from_artifacts(context.artifacts[MODEL_SET])
        self.support_cut = float((context.model_config or {})["support_cut"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return pyfunc_answers(self.pipeline, model_input, self.support_cut)


def pyfunc_answers(pipeline: PredictPipeline, students: pd.DataFrame, support_cut: float) -> pd.DataFrame:
    """One answer row per input row, in order; invalid rows get no numbers (None) and an ``error``."""
    frame = normalise_student_headers(students.reset_index(drop=True), passthrough=())
    ok, valid, errors = check_students_frame(frame)
    answers = answers_frame(pipeline, valid, support_cut=support_cut, with_factors=True)
    mask = ok.to_numpy()
    out = {}
    for column in OUTPUT_COLUMNS[:-1]:
        values = answers[column].to_numpy()
        if column in _NUMBERS:
            # None, not NaN, for a number that is not there: JSON has no NaN (``mlflow models serve`` writes null)
            cells = np.full(len(frame), None, dtype=object)
            present = values.astype(float)
            cells[np.flatnonzero(mask)] = np.where(np.isnan(present), None, present).astype(object)
        else:
            # Empty, not missing: spark_udf casts a text column holding both strings and None to the word "None".
            cells = np.asarray(repeated("", len(frame)), dtype=object)
            cells[mask] = values
        out[column] = cells
    error = np.asarray(repeated("", len(frame)), dtype=object)
    if len(errors):
        text = (errors["field"] + ": " + errors["reason"]).groupby(errors["position"]).agg("; ".join)
        error[text.index.to_numpy()] = text.to_numpy(dtype=object)
    out[ERROR] = error
    return pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))


def log_answers_model(
    set_dir: Path | str, support_cut: float, name: str = "answers", registered_model_name: str | None = None
) -> Any:
    """Log (and optionally register) the answering model for a verified set, in the active or a new run.

    The project travels with the model as its wheel, built now: MLflow copies it into the model's ``code/`` folder,
    and the model's requirements name it (``code/<wheel>``, read from the model's folder when MLflow restores the
    model's environment) after the serving pins."""
    PredictPipeline.from_artifacts(set_dir)  # refuse, here and now, a set that would not load
    example = random_students(3, seed=0)
    with tempfile.TemporaryDirectory(prefix="student-math-wheel-") as folder:
        wheel = build_wheel(Path(folder))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("answers_model.py")),  # models from code: no pickle
            input_example=example,
            artifacts={MODEL_SET: str(set_dir)},
            code_paths=[str(wheel)],
            model_config={"support_cut": float(support_cut)},
            signature=SIGNATURE,
            pip_requirements=[*_serving_requirements(), f"code/{wheel.name}"],
            registered_model_name=registered_model_name,
        )


def _serving_requirements() -> list[str]:
    lines = (PROJECT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-"))]
