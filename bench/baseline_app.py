"""The bare-Flask baselines, served with the same gunicorn settings as the app.

``POST /predictdata``: parse the JSON body, answer a constant (the single-student baseline).
``POST /batch``: what a data team would write to answer many students: the JSON instances (or a CSV body)
into a DataFrame, the pickled preprocessor and model's ``predict``, the scores back as JSON (or CSV); no
validation, range, band or factors. The model is the champion of ``ARTIFACTS_DIR``, unpickled at import.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import dill
import pandas as pd
from flask import Flask, Response, request

app = Flask(__name__)
_MODEL: list = []


def _model() -> tuple:
    if not _MODEL:
        store = Path(os.environ["ARTIFACTS_DIR"])
        folder = store / json.loads((store / "champion.json").read_text())["model_version"]
        _MODEL.append(
            (dill.loads((folder / "preprocessor.pkl").read_bytes()), dill.loads((folder / "model.pkl").read_bytes()))
        )
    return _MODEL[0]


@app.post("/predictdata")
def predict() -> Response:
    json.loads(request.get_data())
    return Response('{"math_score": 70.0}', mimetype="application/json")


@app.post("/batch")
def batch() -> Response:
    preprocessor, model = _model()
    if request.mimetype == "text/csv":
        frame = pd.read_csv(io.BytesIO(request.get_data()))
        scores = model.predict(preprocessor.transform(frame))
        return Response(pd.DataFrame({"math_score": scores}).to_csv(index=False), mimetype="text/csv")
    frame = pd.DataFrame(json.loads(request.get_data())["instances"])
    scores = model.predict(preprocessor.transform(frame))
    return Response(json.dumps({"predictions": scores.tolist()}), mimetype="application/json")
