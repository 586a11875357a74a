"""Where a serving worker's memory goes: the interpreter, the shared imports, the app and its model, the requests.

    .venv/bin/python bench/worker_memory.py [--store DIR]

Builds a worker's state step by step in a fresh child process, as a gunicorn worker gets it, and prints after
each step the process's resident memory (RSS) and what the step added:

1. the interpreter alone;
2. the libraries gunicorn.conf.py imports in the master (SHARED_IMPORTS): under gunicorn these pages are
   shared copy-on-write by every worker, so each worker's PSS holds only its share of them;
3. the rest of the app's imports (Flask's routes, prometheus_client, the web modules);
4. ``create_app()``: routes, metrics registry, drift window, and the model loaded from the store;
5. 1,000 single-student JSON requests (the test client, in process);
6. five 10,000-student JSON batches (the buffers of the largest answers the API gives).

The model's own size is printed apart: the resident memory ``load_champion`` adds in a process that has the
imports already. A model is trained on the synthetic cohort into a temporary folder unless a store is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, os, sys, tempfile
sys.path.insert(0, os.environ["ROOT"])
os.chdir(os.environ["ROOT"])

def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

steps = [("interpreter", rss())]
import importlib
import runpy
conf = runpy.run_path("gunicorn.conf.py")
for name in conf["SHARED_IMPORTS"]:
    importlib.import_module(name)
steps.append(("shared imports (the master's, copy-on-write)", rss()))
import flask, prometheus_client, prometheus_flask_exporter  # noqa: F401
import src.web.prediction, src.web.monitoring, src.web.openapi  # noqa: F401
steps.append(("the app's other imports", rss()))
from src.answers.model import load_champion
from src.store import LocalStore
before = rss()
model = load_champion(LocalStore(os.environ["ARTIFACTS_DIR"]))
model_mib = rss() - before
del model
gc.collect()
from app import create_app
app = create_app()
client = app.test_client()
steps.append(("create_app(): routes, metrics, drift window, model", rss()))
student = {"gender": "female", "race_ethnicity": "group C", "parental_level_of_education": "some college",
           "lunch": "standard", "test_preparation_course": "none", "reading_score": 72, "writing_score": 70}
for _ in range(1000):
    assert client.post("/predictdata", json=student).status_code == 200
steps.append(("1,000 single-student requests", rss()))
batch = json.dumps({"instances": [student] * 10_000})
for _ in range(5):
    assert client.post("/predictdata", data=batch, content_type="application/json").status_code == 200
steps.append(("five 10,000-student batches", rss()))
print(json.dumps({"steps": steps, "model_mib": model_mib}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--store",
        "--artifacts-dir",
        dest="store",
        type=Path,
        help="a local model store (default: train one on the synthetic cohort)",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-memory-"))
    try:
        store = args.store
        if store is None:
            store = workdir / "artifacts"
            subprocess.run(
                [sys.executable, "-m", "src.pipeline.train_pipeline", "--store", str(store), "--no-tracking"],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        metrics = workdir / "metrics"
        metrics.mkdir()
        env = {
            **os.environ,
            "ROOT": str(ROOT),
            "ARTIFACTS_DIR": str(store),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "LOG_LEVEL": "WARNING",
            "DRIFT_DIR": str(workdir / "drift"),
        }
        out = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'step':<52} {'RSS MiB':>8} {'added':>7}")
    previous = 0.0
    for name, mib in figures["steps"]:
        print(f"{name:<52} {mib:>8.1f} {mib - previous:>+7.1f}")
        previous = mib
    print(f"\nthe model alone (load_champion, imports already made): {figures['model_mib']:+.1f} MiB")
    print("under gunicorn, the shared imports are counted once across the master and its workers (PSS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
