"""Smoke-test a running service: /ready answers 200 within a bounded wait, then one student is predicted.

    python3 scripts/smoke.py http://127.0.0.1:8000 [--wait SECONDS] [--model-version V]

Needs only the standard library and src/schema.py (the student is made from the schema), so it runs on a CI
runner before anything is installed. Prints one line and exits 0 when the service answers, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.schema import FEATURES, TARGET, CategoricalFeature  # noqa: E402 - after the project is on the path


class SmokeError(RuntimeError):
    """The service did not answer as a ready service answers."""


def example_student() -> dict[str, Any]:
    """A valid student: each category's first value, each score mid-range."""
    return {f.name: f.categories[0] if isinstance(f, CategoricalFeature) else (f.minimum + f.maximum) / 2 for f in FEATURES}


def _call(request: urllib.request.Request | str, timeout: float) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the URL is ours
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def wait_ready(base: str, wait: float) -> dict[str, Any]:
    """/ready's answer once it is 200; SmokeError with the last answer when ``wait`` seconds pass first."""
    deadline = time.monotonic() + wait
    last: object = None
    while True:
        try:
            status, body = _call(f"{base}/ready", timeout=5)
            if status == 200:
                return body
            last = f"{status} {body.get('message') or body}"
        except (urllib.error.URLError, OSError, ValueError) as err:
            last = err
        if time.monotonic() >= deadline:
            raise SmokeError(f"{base}/ready did not answer 200 within {wait:g} s (last: {last})")
        time.sleep(1)


def predict_one(base: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/predictdata",
        data=json.dumps(example_student()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    status, body = _call(request, timeout=10)
    score = body.get("math_score")
    if status != 200 or not isinstance(score, int | float) or not TARGET.minimum <= score <= TARGET.maximum:
        raise SmokeError(f"POST {base}/predictdata answered {status}: {json.dumps(body)[:300]}")
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", help="the service's address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for /ready (default 60)")
    parser.add_argument("--model-version", help="fail unless /ready serves this model version")
    args = parser.parse_args(argv)
    base = args.base.rstrip("/")
    try:
        ready = wait_ready(base, args.wait)
        if args.model_version and ready.get("model_version") != args.model_version:
            raise SmokeError(f"{base}/ready serves {ready.get('model_version')}, not {args.model_version}")
        answer = predict_one(base)
    except SmokeError as err:
        sys.stdout.write(f"smoke test failed: {err}\n")
        return 1
    sys.stdout.write(
        f"ready with model {ready.get('model_version')}; one student predicted "
        f"{answer['math_score']} ({answer.get('band', 'no band')})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
