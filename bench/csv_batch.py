"""Class-list benchmark: 10,000 students as CSV (both header styles) against the JSON batch, on gunicorn.

    .venv/bin/python bench/csv_batch.py [--rows 10000] [--repeats 7] [--artifacts-dir DIR]

Starts the app under gunicorn (2 workers) on 127.0.0.1, posts the same students as ``text/csv`` with
snake_case headers and with the public download's headers, answered as JSON and as CSV, and as a JSON batch;
prints the median wall time of each request (client side: upload, parse, validate, predict, bands, factors,
answer) and checks that the CSV's JSON answer is identical to the JSON batch's and that the CSV answer's
numbers are the same. Exits non-zero if any answer differs or a CSV request takes 0.5 s or more.

In the same run, the same students go as JSON and as CSV to a bare Flask endpoint of that shape
(``bench/baseline_app.py``'s ``/batch``: a DataFrame, the pickled model's predict, the scores back, nothing
checked and no range, band or factors), and the speed of each request is printed as a ratio to it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import start_server, stop_server, store_or_train  # noqa: E402
from src.answers.fast_path import random_students  # noqa: E402
from src.schema import FEATURE_NAMES, HEADER_ALIASES  # noqa: E402

LIMIT_SECONDS = 0.5
PUBLIC = {v: k for k, v in HEADER_ALIASES.items()}


def class_csv(rows: list[dict], public_headers: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([PUBLIC.get(n, n) if public_headers else n for n in FEATURE_NAMES])
    for row in rows:
        writer.writerow([row[n] for n in FEATURE_NAMES])
    return out.getvalue().encode()


def timed(
    url: str, body: bytes, content_type: str, accept: str, repeats: int, path: str = "/predictdata"
) -> tuple[float, requests.Response]:
    times, response = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        response = requests.post(
            f"{url}{path}", data=body, timeout=60, headers={"Content-Type": content_type, "Accept": accept}
        )
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            sys.exit(f"{content_type} -> {accept}: status {response.status_code}: {response.text[:300]}")
    return statistics.median(times), response  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--store",
        "--artifacts-dir",
        dest="artifacts_dir",
        type=Path,
        help="a local model store (default: train one on the synthetic cohort)",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-csv-"))
    artifacts = store_or_train(args.artifacts_dir, workdir)
    students = random_students(args.rows, seed=2024).to_dict("records")
    json_body = json.dumps({"instances": students}).encode()
    process, url = start_server("app:app", {"ARTIFACTS_DIR": str(artifacts)}, workdir)
    bare, bare_url = start_server("bench.baseline_app:app", {"ARTIFACTS_DIR": str(artifacts)}, workdir)
    failures: list[str] = []
    ratios: list[str] = []
    try:
        csv_body = class_csv(students, False)
        for body, kind in ((json_body, "application/json"), (csv_body, "text/csv")):
            for _ in range(2):
                requests.post(f"{bare_url}/batch", data=body, timeout=60, headers={"Content-Type": kind})
        base_json, _ = timed(bare_url, json_body, "application/json", "application/json", args.repeats, "/batch")
        base_csv, _ = timed(bare_url, csv_body, "text/csv", "text/csv", args.repeats, "/batch")
        for body in (json_body, class_csv(students, False)):  # warm up both paths on both workers
            for _ in range(2):
                requests.post(
                    f"{url}/predictdata",
                    data=body,
                    timeout=60,
                    headers={"Content-Type": "application/json" if body is json_body else "text/csv"},
                )
        json_seconds, json_answer = timed(url, json_body, "application/json", "application/json", args.repeats)
        expected = json_answer.json()
        print(f"{args.rows:,} students, gunicorn 2 workers on 127.0.0.1, median of {args.repeats} requests\n")
        print(f"{'request':<44} {'ms':>7} {'bytes in':>10} {'bytes out':>10}  answer")
        print(f"{'bare Flask: JSON -> scores':<44} {base_json * 1000:>7.0f} {len(json_body):>10,}")
        print(f"{'bare Flask: CSV -> scores':<44} {base_csv * 1000:>7.0f} {len(csv_body):>10,}")
        print(
            f"{'JSON batch -> JSON':<44} {json_seconds * 1000:>7.0f} {len(json_body):>10,} "
            f"{len(json_answer.content):>10,}  (reference)"
        )
        ratios.append(f"JSON batch -> JSON: {base_json / json_seconds:.2f} x the bare Flask JSON endpoint")
        for public in (False, True):
            body = class_csv(students, public)
            style = "public headers" if public else "snake_case headers"
            seconds, answer = timed(url, body, "text/csv", "application/json", args.repeats)
            ratios.append(f"CSV ({style}) -> JSON: {base_csv / seconds:.2f} x the bare Flask CSV endpoint")
            same = answer.json() == expected
            failures += [] if same else [f"CSV ({style}) -> JSON differs from the JSON batch"]
            failures += [] if seconds < LIMIT_SECONDS else [f"CSV ({style}) -> JSON took {seconds:.3f} s"]
            print(
                f"{'CSV (' + style + ') -> JSON':<44} {seconds * 1000:>7.0f} {len(body):>10,} "
                f"{len(answer.content):>10,}  {'identical to the JSON batch' if same else 'DIFFERS'}"
            )
            seconds, answer = timed(url, body, "text/csv", "text/csv", args.repeats)
            ratios.append(f"CSV ({style}) -> CSV: {base_csv / seconds:.2f} x the bare Flask CSV endpoint")
            table = list(csv.DictReader(io.StringIO(answer.text)))
            same = len(table) == len(expected["predictions"]) and all(
                float(r["predicted_math_score"]) == p["math_score"]
                and float(r["interval_low"]) == p["interval"]["low"]
                and float(r["interval_high"]) == p["interval"]["high"]
                and r["band"] == p["band"]["name"]
                and float(r["below_cut_probability"]) == p["below_cut_probability"]
                and r["band_without_background"] == p["band_without_background"]
                for r, p in zip(table, expected["predictions"], strict=False)
            )
            failures += [] if same else [f"CSV ({style}) -> CSV differs from the JSON batch"]
            failures += [] if seconds < LIMIT_SECONDS else [f"CSV ({style}) -> CSV took {seconds:.3f} s"]
            print(
                f"{'CSV (' + style + ') -> CSV':<44} {seconds * 1000:>7.0f} {len(body):>10,} "
                f"{len(answer.content):>10,}  {'same scores, ranges, bands, chances' if same else 'DIFFERS'}"
            )
    finally:
        stop_server(process)
        stop_server(bare)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nspeed against the bare endpoint of the same shape (target >= 0.5 x):")
    for ratio in ratios:
        print("  " + ratio)
    print(f"\ntarget: every CSV request under {LIMIT_SECONDS * 1000:.0f} ms with the JSON batch's answer")
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
