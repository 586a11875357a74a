"""A worker killed under load: only its requests in flight may fail, gunicorn recovers, metrics stay exact."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from bench.kill_worker import run
from tests.conftest import unavailable


def test_a_worker_killed_under_load_loses_at_most_its_request_and_metrics_count_each_answer_once(trained, tmp_path):
    if shutil.which("wrk") is None:
        unavailable("wrk not installed (Debian package wrk; .ci/run and buildspec.yml install it)")
    outcome = run(duration=15, connections=32, artifacts=Path(trained.store), work=tmp_path)
    assert outcome.responses > 1000, outcome
    # a threaded worker dies with the requests it is answering: at most one per connection it holds
    assert outcome.failed <= outcome.connections, outcome
    assert outcome.replacement_pid not in (0, outcome.killed_pid), outcome
    assert math.isfinite(outcome.recovered_after_s) and outcome.ready_after, outcome
    extra = outcome.counted_predictions - outcome.answered_predictions
    # only requests the killed worker was answering may be counted and not logged
    assert abs(extra) <= max(outcome.failed, 1), outcome
