"""Serving benchmark: the app against a bare-Flask baseline under gunicorn (2 workers) on 127.0.0.1.

    .venv/bin/python bench/serving.py [--rounds 3] [--seconds 15] [--runs 5] [--warmup 5] [--store DIR]

After a few seconds of unrecorded load on each server, alternates wrk runs over five servers: ``-t2 -c8`` for
throughput (several shorter runs that each connect anew, see ``throughput``) and ``-t1 -c1`` for latency. The
servers: the app with metrics and drift tracking on, the app with both off and the baseline, under
gunicorn.conf.py; then the app and the baseline on gunicorn's default sync workers (``-w 2``), the pair the
single-student target compares (every request of both through Flask's view). Prints req/s, p50 and p99 per
server (the median over rounds) and the ratios; then a 10,000-student JSON batch on sync workers against the
naive Flask endpoint a data team would write (``bench/baseline_app.py``: DataFrame, scikit-learn, JSON), the
two asked in turn nine times (medians), and in-process microseconds per single answer. Before the load, each
server answers 1,000 single-student requests and the PSS of each of its workers is printed (proportional set
size: shared pages counted once across the processes sharing them). Installs wrk with apt-get when it is
missing and the user is root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]
SYNC = ("--worker-class", "sync", "--threads", "1", "--workers", "2")  # gunicorn's default workers, two of them
sys.path.insert(0, str(ROOT))

STUDENT = {
    "gender": "female",
    "race_ethnicity": "group C",
    "parental_level_of_education": "some college",
    "lunch": "standard",
    "test_preparation_course": "none",
    "reading_score": 72,
    "writing_score": 70,
}


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        )
        return shutil.which("wrk") or sys.exit("wrk did not install")
    sys.exit("wrk is needed: apt-get install wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    module: str, env: dict[str, str], workdir: Path, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    multiproc = tempfile.mkdtemp(prefix="bench-metrics-", dir=workdir)
    full_env = {
        **os.environ,
        **env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": multiproc,
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    process = subprocess.Popen(
        [gunicorn, "-c", "gunicorn.conf.py", *extra, module],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.post(f"{url}/predictdata", json=STUDENT, timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_server(process)
    sys.exit(f"{module} did not answer within 60 s")


def store_or_train(store: Path | None, workdir: Path) -> Path:
    """The given model store, or a new one trained on the synthetic cohort (what scripts/run.sh trains) in workdir."""
    if store is not None:
        return store
    store = workdir / "artifacts"
    subprocess.run(
        [sys.executable, "-m", "src.pipeline.train_pipeline", "--store", str(store), "--no-tracking"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return store


def stop_server(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def run_wrk(wrk: str, url: str, script: Path, threads: int, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"{url}/predictdata"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        sys.exit(f"{url} answered {non2xx.group(1)} errors under load:\n{out}")
    return {"rps": rps, "p50_ms": _percentile(out, "50%"), "p99_ms": _percentile(out, "99%")}


def throughput(wrk: str, url: str, script: Path, seconds: int, runs: int) -> dict[str, Any]:
    """Requests per second under ``wrk -t2 -c8`` over ``runs`` runs sharing ``seconds``, each with new connections.

    A kept-alive connection stays with the worker that accepted it, and the eight connections of one run are
    opened at once: now and then most of them land on one worker and that run gets about half the throughput,
    whichever server it is. Several shorter runs, each connecting anew, weigh such runs by how often they
    happen rather than by the luck of one draw. Returns all requests over all time, and each run's rate.
    """
    each = max(1, seconds // runs)
    done, took, rates = 0, 0.0, []
    for _ in range(runs):
        out = subprocess.run(
            [wrk, "-t2", "-c8", f"-d{each}s", "-s", str(script), f"{url}/predictdata"],
            capture_output=True,
            text=True,
            check=True,
            timeout=each + 30,
        ).stdout
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        if non2xx:
            sys.exit(f"{url} answered {non2xx.group(1)} errors under load:\n{out}")
        count, duration, unit = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out).groups()
        elapsed = float(duration) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
        done, took = done + int(count), took + elapsed
        rates.append(int(count) / elapsed)
    return {"rps": done / took, "runs": rates}


def _percentile(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def in_process(artifacts: Path) -> dict[str, float]:
    from src.answers.bands import Bands
    from src.answers.columns import compute_answers
    from src.answers.model import load_champion
    from src.store import LocalStore
    from src.validation import validate_student
    from src.web.answers import single_answer

    pipeline = load_champion(LocalStore(artifacts))
    record, _ = validate_student(STUDENT)
    bands = Bands(50.0)
    number = 5000
    computed = timeit.timeit(lambda: compute_answers(pipeline, [record], bands), number=number) / number * 1e6
    answered = timeit.timeit(lambda: single_answer(pipeline, validate_student(STUDENT)[0], bands), number=number)
    reference = timeit.timeit(lambda: pipeline.reference.score_frame(pd.DataFrame([record])), number=100) / 100 * 1e6
    return {
        "scorer": pipeline.scorer.kind,
        "compute_us": computed,
        "validate_and_answer_us": answered / number * 1e6,
        "sklearn_one_row_us": reference,
    }


def worker_pss(process: subprocess.Popen) -> list[float]:
    """PSS (MiB) of each worker of a gunicorn master."""
    import psutil

    return [child.memory_full_info().pss / 2**20 for child in psutil.Process(process.pid).children()]


def worker_pss_of_master(process: subprocess.Popen) -> float:
    import psutil

    return psutil.Process(process.pid).memory_full_info().pss / 2**20


def single_requests(url: str, n: int = 1000) -> None:
    with requests.Session() as session:
        for _ in range(n):
            if session.post(f"{url}/predictdata", json=STUDENT, timeout=10).status_code != 200:
                sys.exit(f"{url} failed a single-student request")


def batch_seconds(urls: dict[str, str], size: int = 10_000, repeats: int = 9) -> dict[str, float]:
    """The median time of a ``size``-student JSON batch request at each URL (the app's ``/predictdata``, the naive
    endpoint's ``/batch``), the URLs taken in turn at each repeat: a slow spell of the machine falls on both."""
    body = json.dumps({"instances": [STUDENT] * size})
    times: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(repeats):
        for name, url in urls.items():
            started = time.perf_counter()
            response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
            times[name].append(time.perf_counter() - started)
            if response.status_code != 200 or len(response.json()["predictions"]) != size:
                sys.exit(f"batch request failed: {response.status_code}")
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=5, help="wrk runs (new connections each) per round's -c8 load")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of unrecorded load on each server first")
    parser.add_argument(
        "--store",
        "--artifacts-dir",
        dest="store",
        type=Path,
        help="a local model store (default: train one on the synthetic cohort into a temporary folder)",
    )
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    artifacts = store_or_train(args.store, workdir)
    script = workdir / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = \'{json.dumps(STUDENT)}\'\n'
    )
    servers = {
        "app (metrics + drift)": ("app:app", {"ARTIFACTS_DIR": str(artifacts)}, ()),
        "app (no metrics, no drift)": (
            "app:app",
            {"ARTIFACTS_DIR": str(artifacts), "METRICS_ENABLED": "false", "DRIFT_ENABLED": "false"},
            (),
        ),
        "bare Flask baseline": ("bench.baseline_app:app", {"ARTIFACTS_DIR": str(artifacts)}, ()),
        "app on sync workers": ("app:app", {"ARTIFACTS_DIR": str(artifacts)}, SYNC),
        "bare Flask, sync workers": ("bench.baseline_app:app", {"ARTIFACTS_DIR": str(artifacts)}, SYNC),
    }
    results: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "p50_ms": [], "p99_ms": [], "c1_rps": []} for name in servers
    }
    running = {name: start_server(module, env, workdir, extra) for name, (module, env, extra) in servers.items()}
    try:
        print("PSS per worker after 1,000 single-student requests (2 workers; target <= 120 MiB for the app):")
        for name, (process, url) in running.items():
            single_requests(url)
            print(
                f"  {name:<28} "
                + ", ".join(f"{pss:.0f} MiB" for pss in worker_pss(process))
                + f"   (master {worker_pss_of_master(process):.0f} MiB)",
                flush=True,
            )
        for _, url in running.values():  # warm up: first label sets, metric files' pages, CPU caches
            run_wrk(wrk, url, script, 2, 8, args.warmup)
        for round_no in range(1, args.rounds + 1):
            for name, (_, url) in running.items():
                load = throughput(wrk, url, script, args.seconds, args.runs)
                latency = run_wrk(wrk, url, script, 1, 1, args.seconds)
                results[name]["rps"].append(load["rps"])
                results[name]["p50_ms"].append(latency["p50_ms"])
                results[name]["p99_ms"].append(latency["p99_ms"])
                results[name]["c1_rps"].append(latency["rps"])
                print(
                    f"round {round_no}: {name:<28} {load['rps']:8.0f} req/s (-c8)   "
                    f"p50 {latency['p50_ms']:.3f} ms  p99 {latency['p99_ms']:.3f} ms (-c1)   runs: "
                    + " ".join(f"{rate:.0f}" for rate in load["runs"]),
                    flush=True,
                )
        batches = batch_seconds(
            {
                "app": f"{running['app on sync workers'][1]}/predictdata",
                "naive": f"{running['bare Flask, sync workers'][1]}/batch",
            }
        )
        batch, naive = batches["app"], batches["naive"]
    finally:
        for process, _ in running.values():
            stop_server(process)
    median = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    base = median["bare Flask baseline"]
    full = median["app (metrics + drift)"]
    plain = median["app (no metrics, no drift)"]
    conf = (ROOT / "gunicorn.conf.py").read_text()
    kind = re.search(r'^worker_class = "(\w+)"', conf, re.MULTILINE)
    print(
        f"\nmedians over {args.rounds} rounds of {args.seconds} s (-c8: {args.runs} runs with new connections "
        f"each), gunicorn.conf.py: 2 {kind.group(1) if kind else '?'} workers (the last server: sync workers, "
        "1 thread), wrk -t2 -c8 / -t1 -c1"
    )
    print(f"{'server':<28} {'req/s -c8':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, m in median.items():
        print(f"{name:<28} {m['rps']:>10.0f} {m['p50_ms']:>8.3f} {m['p99_ms']:>8.3f}")
    sync = median["app on sync workers"]
    print(f"\nthroughput app / baseline:          {full['rps'] / base['rps']:.3f} x   (target >= 0.80)")
    print(
        f"threaded workers + body deadline:   {full['rps'] / sync['rps']:.2f} x the throughput on sync workers, "
        f"p50 {full['p50_ms'] / sync['p50_ms']:.2f} x"
    )
    print(f"p50 latency app / baseline (-c1):   {full['p50_ms'] / base['p50_ms']:.2f} x   (target <= 2)")
    print(f"throughput lost to metrics + drift: {1 - full['rps'] / plain['rps']:.1%}")
    print(
        f"p50 added by metrics + drift (-c1): {full['p50_ms'] / plain['p50_ms'] - 1:+.1%} "
        f"({(full['p50_ms'] - plain['p50_ms']) * 1000:.0f} us; goal < 15%)"
    )
    paired = [
        f / p - 1
        for f, p in zip(
            results["app (metrics + drift)"]["p50_ms"], results["app (no metrics, no drift)"]["p50_ms"], strict=True
        )
    ]
    print(
        f"  the same, round by round:         {', '.join(f'{x:+.1%}' for x in paired)} "
        f"(median {statistics.median(paired):+.1%})"
    )
    bare_sync = median["bare Flask, sync workers"]
    print(
        f"single-student JSON, gunicorn -w 2 sync workers: app / bare Flask {sync['rps'] / bare_sync['rps']:.3f} x "
        "the throughput (target >= 0.70)"
    )
    print(
        f"10,000-student JSON batch, sync workers: app {batch * 1000:.0f} ms, naive Flask endpoint {naive * 1000:.0f} ms: "
        f"{naive / batch:.3f} x its speed (target >= 0.75)"
    )
    figures = in_process(artifacts)
    print(
        f"\nin process ({figures['scorer']} scorer): {figures['compute_us']:.1f} us per answer (compute_answers, one "
        f"student), {figures['validate_and_answer_us']:.1f} us validated and rendered as JSON; scikit-learn pipeline "
        "on a one-row DataFrame: "
        f"{figures['sklearn_one_row_us']:.0f} us"
    )
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
