"""The whole loop against a moto S3 store and gunicorn (2 workers, refresh 1 s), under a steady load.

retrain on new data -> promoted -> every worker serves it within 5 s; retrain on shuffled labels -> kept;
promote --rollback -> back; a tampered version in S3 named by the pointer -> refused, the old one kept.
Not one request may fail or answer other than 2xx over the whole run.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests

from src.lifecycle.decision import DecisionConfig
from src.lifecycle.training import TrainingConfig, train_candidate
from src.pipeline import promote, retrain
from src.store import S3Store
from src.synthetic import generate_students
from tests.servers import BIN, gunicorn_bind, listening_socket, start, stop, wait_for

SWAP_SECONDS = 5.0
MAX_REQUESTS = 200_000  # the load is bounded in count as well as in time
FAST = ["--synthetic-rows", "300", "--cv-folds", "3", "--models", "ridge", "--n-jobs", "1", "--no-tracking"]


@dataclass
class Load:
    """Closed-loop JSON predictions from two threads; every answer is recorded with when it was asked."""

    url: str
    student: dict
    answers: list[tuple[float, int, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set() and len(self.answers) < MAX_REQUESTS:
            asked = time.monotonic()
            try:
                response = session.post(self.url, json=self.student, timeout=10)
                version = response.json().get("model_version") if response.ok else None
                self.answers.append((asked, response.status_code, version))
            except (requests.RequestException, ValueError) as err:
                self.errors.append(f"{asked:.3f}: {err!r}")

    def served_since(self, moment: float) -> set[str | None]:
        return {v for asked, _, v in list(self.answers) if asked >= moment}


def wait_until_all_serve(load: Load, version: str, since: float) -> float:
    """Seconds from ``since`` until no request asked later is answered by another version (bounded)."""
    deadline = since + SWAP_SECONDS + 10
    while time.monotonic() < deadline:
        time.sleep(0.25)
        answers = [(asked, v) for asked, _, v in list(load.answers) if asked >= since]
        stale = [asked for asked, v in answers if v != version]
        last_stale = max(stale, default=since)
        if answers and answers[-1][0] - last_stale > 2.0 and answers[-1][1] == version:
            return last_stale - since
    raise AssertionError(f"not every worker served {version} within {SWAP_SECONDS + 10:.0f} s")


def until_each_worker(base: str, condition, workers: int = 2, seconds: float = SWAP_SECONDS) -> list[dict]:
    """Poll ``/ready`` (a new connection each time) until each of the ``workers`` has answered and the latest
    answer of each meets ``condition``; those answers, one per worker. Bounded in time."""
    deadline = time.monotonic() + seconds
    latest: dict[int, dict] = {}
    while True:
        for _ in range(20):
            state = requests.get(f"{base}/ready", timeout=5).json()
            latest[state["worker"]] = state
        if len(latest) == workers and all(condition(state) for state in latest.values()):
            return list(latest.values())
        if time.monotonic() > deadline:
            raise AssertionError(f"after {seconds:.0f} s, each worker's last /ready answer: {latest}")
        time.sleep(0.25)


@pytest.mark.timeout(900)
def test_the_loop_under_load_with_zero_failed_requests(s3_env, tmp_path, student):
    bucket = "loop-" + uuid.uuid4().hex[:10]
    s3_env.create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/models"
    data = tmp_path / "students.csv"
    generate_students(500, seed=1).to_csv(data, index=False)
    common = ["--store", uri, "--runs-dir", str(tmp_path / "runs"), *FAST]
    out = io.StringIO()
    assert retrain.main([*common, "--data", str(data)], out=out) == 0, out.getvalue()
    first = S3Store(uri).champion().model_version

    listener = listening_socket()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    log = tmp_path / "gunicorn.log"
    server = start(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app", *gunicorn_bind(listener)],
        log=log,
        listeners=[listener],
        env={
            "WEB_CONCURRENCY": "2",
            "MODEL_URI": uri,
            "MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "MODEL_REFRESH_SECONDS": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "DRIFT_DIR": str(tmp_path / "drift"),
        },
    )
    (tmp_path / "metrics").mkdir()
    load = Load(f"{base}/predictdata", student)
    threads = [threading.Thread(target=load.run) for _ in range(2)]
    try:
        wait_for(f"{base}/ready", server, log=log)
        until_each_worker(base, lambda state: state["model_version"] == first)
        for thread in threads:
            thread.start()
        time.sleep(2)

        # new data (a new term appended): retrained, promoted, followed by every worker within 5 s
        frame = generate_students(900, seed=2)
        frame.to_csv(data, index=False)
        out = io.StringIO()
        assert retrain.main([*common, "--data", str(data), "--champion-tolerance", "1.0"], out=out) == 0
        promoted_at = time.monotonic()
        second = S3Store(uri).champion().model_version
        assert out.getvalue().splitlines()[-1].startswith(f"promoted {second}") and second != first
        swap = wait_until_all_serve(load, second, promoted_at)
        assert swap <= SWAP_SECONDS
        until_each_worker(base, lambda state: state["model_version"] == second)

        # shuffled labels: trained, refused at the gate, the champion kept
        shuffled = frame.copy()
        shuffled["math_score"] = np.random.default_rng(3).permutation(shuffled["math_score"].to_numpy())
        shuffled.to_csv(data, index=False)
        out = io.StringIO()
        assert retrain.main([*common, "--data", str(data)], out=out) == 1
        assert out.getvalue().splitlines()[-1].startswith(f"kept {second}: candidate ")
        kept_at = time.monotonic()
        time.sleep(3)
        assert load.served_since(kept_at) == {second}

        # rollback by hand: back to the first champion everywhere
        out = io.StringIO()
        assert promote.main(["--store", uri, "--rollback", "--no-tracking"], out=out) == 0, out.getvalue()
        rolled_at = time.monotonic()
        assert wait_until_all_serve(load, first, rolled_at) <= SWAP_SECONDS

        # someone with write access to the bucket: a set with a swapped model, and the pointer moved to it
        candidate = train_candidate(
            TrainingConfig(
                store=uri,
                synthetic_rows=300,
                cv_folds=3,
                seed=4,
                candidates=("ridge",),
                tracking=False,
                n_jobs=1,
                runs_dir=tmp_path / "runs",
                decision=DecisionConfig(),
            )
        )
        s3_env.put_object(Bucket=bucket, Key=f"models/{candidate.version}/model.pkl", Body=b"cos(system)")
        pointer = json.loads(s3_env.get_object(Bucket=bucket, Key="models/champion.json")["Body"].read())
        s3_env.put_object(
            Bucket=bucket,
            Key="models/champion.json",
            Body=json.dumps(
                {
                    **pointer,
                    "model_version": candidate.version,
                    "manifest_sha256": hashlib.sha256(candidate.manifest_path.read_bytes()).hexdigest(),
                }
            ).encode(),
        )
        tampered_at = time.monotonic()
        states = until_each_worker(
            base,
            lambda state: "model.pkl does not match its manifest" in (state["last_error"] or ""),
            seconds=SWAP_SECONDS + 5,
        )
        assert {s["model_version"] for s in states} == {first}  # each worker refused it and kept the first
        time.sleep(1)
        assert load.served_since(tampered_at) == {first}
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        stop(server)
    statuses = [status for _, status, _ in load.answers]
    bad = [s for s in statuses if not 200 <= s < 300]
    print(
        f"{len(statuses)} predictions answered over the run, {len(bad)} non-2xx, {len(load.errors)} failed; "
        f"swap to the new version took {swap:.2f} s"
    )
    assert len(statuses) > 500 and not bad and not load.errors, (bad[:5], load.errors[:5])
    assert "Traceback" not in log.read_text()
