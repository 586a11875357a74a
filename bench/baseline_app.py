"""The bare-Flask baseline: parse the JSON body, answer a constant. Served with the same gunicorn settings."""

from __future__ import annotations

import json

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/predictdata")
def predict() -> Response:
    json.loads(request.get_data())
    return Response('{"math_score": 70.0}', mimetype="application/json")
