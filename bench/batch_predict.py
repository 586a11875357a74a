"""Batch scoring benchmark: 1,000,000 synthetic students through both engines of the batch command.

    .venv/bin/python bench/batch_predict.py [--students 1000000] [--files 8] [--master local[2]] [--chunk-rows 100000]

Trains a small model (synthetic cohort, ridge) into a temporary folder, writes the students as CSV files,
then runs the command once per engine as a child process (``python -m src.pipeline.batch_predict`` for
``--engine local``; ``spark-submit --py-files`` with the project's wheel from outside the project for Spark), sampling every
0.1 s the resident memory of the whole process tree (the Python driver, and for Spark the JVM and its
Python workers). Prints rows/s (rows over the command's wall time, and over the scoring run the command
reports), peak memory by process kind, and the Spark overhead per partition: the same 200,000 rows scored
in one warm session with the input cut into more and more partitions (time = fixed + overhead x partitions,
least squares).

The baseline, in the same run on the same files: the script a data team would write instead (below,
``NAIVE``: ``pandas.read_csv``, the pickled preprocessor and model's ``predict``, ``to_parquet``; no
validation, range, band or factors), run the same way; the local engine's rows/s are printed as a ratio
to its rows/s (both over the wall time of the whole process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_students(folder: Path, n: int, files: int) -> None:
    from src.synthetic import generate_students

    folder.mkdir(parents=True)
    students = generate_students(n, seed=11).drop(columns=["math_score"])
    students.insert(0, "student_id", [f"S{i:07d}" for i in range(n)])
    for i, part in enumerate(np.array_split(np.arange(n), files)):
        students.iloc[part].to_csv(folder / f"students-{i:02d}.csv", index=False)


def train(store: Path) -> None:
    from src.lifecycle.training import TrainingConfig
    from src.lifecycle.training import train as run_training

    run_training(
        TrainingConfig(store=store, synthetic_rows=1000, cv_folds=3, candidates=("ridge",), tracking=False, n_jobs=1)
    )


NAIVE = """
import json, sys
from pathlib import Path
import dill, pandas as pd
store, folder, out = map(Path, sys.argv[1:4])
version = json.loads((store / "champion.json").read_text())["model_version"]
preprocessor = dill.loads((store / version / "preprocessor.pkl").read_bytes())
model = dill.loads((store / version / "model.pkl").read_bytes())
out.mkdir()
for i, path in enumerate(sorted(folder.glob("*.csv"))):
    students = pd.read_csv(path)
    students["math_score"] = model.predict(preprocessor.transform(students))
    students[["student_id", "math_score"]].to_parquet(out / f"part-{i:05d}.parquet", index=False)
"""


def kind_of(process: psutil.Process) -> str:
    try:
        name = process.name()
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return "other"
    if "java" in name:
        return "jvm"
    if "pyspark.daemon" in cmdline or "pyspark/daemon" in cmdline or "pyspark.worker" in cmdline:
        return "python workers"
    return "driver"


def run_engine(command: list[str], cwd: Path) -> dict:
    """Run the command; sample the RSS of its process tree; return wall time and peak memory by kind (MiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    lines: list[str] = []  # stderr, read as it comes (a full pipe would stall the command)
    reader = threading.Thread(target=lambda: lines.extend(child.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    parent = psutil.Process(child.pid)
    peaks: dict[str, float] = {}
    peak_total = 0.0
    while child.poll() is None:
        by_kind: dict[str, float] = {}
        try:
            for process in [parent, *parent.children(recursive=True)]:
                try:
                    by_kind[kind_of(process)] = by_kind.get(kind_of(process), 0.0) + process.memory_info().rss
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        for kind, rss in by_kind.items():
            peaks[kind] = max(peaks.get(kind, 0.0), rss / 2**20)
        peak_total = max(peak_total, sum(by_kind.values()) / 2**20)
        time.sleep(0.1)
    wall = time.perf_counter() - started
    reader.join(timeout=10)
    stderr = "".join(lines)
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    progress = [line.rstrip() for line in lines if line.startswith("progress: ")]
    return {"wall": wall, "peaks": peaks, "peak_total": peak_total, "progress": progress}


def partition_overhead(store: Path, folder: Path, out: Path, master: str) -> list[tuple[int, float]]:
    """Seconds to score the same rows cut into more and more partitions, in one warm session."""
    from src.batch import spark as spark_engine
    from src.batch.core import BatchConfig, Output, load_serving_pipeline

    spark = spark_engine.spark_session(master)
    spark.sparkContext.setLogLevel("ERROR")
    pipeline = load_serving_pipeline(str(store))
    size = (folder / "students-00.csv").stat().st_size
    timings = []
    try:
        for i, target in enumerate((0, 4, 16, 64, 4, 16, 64)):  # the first run warms the session, unrecorded
            spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(size // max(target, 1), 4096)))
            config = BatchConfig(
                input=str(folder / "students-00.csv"), output=str(out / f"p{i}"), engine="spark", master=master
            )
            output = Output(config.output, "csv")
            started = time.perf_counter()
            spark_engine.run(config, pipeline, output)
            seconds = time.perf_counter() - started
            partitions = len(list((out / f"p{i}" / "predictions").glob("part-*")))
            if i:
                timings.append((partitions, seconds))
    finally:
        spark.stop()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--overhead-rows", type=int, default=200_000)
    parser.add_argument("--engines", default="local,spark", help="comma-separated: local, spark")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
        train(work / "store")
        write_students(work / "students", args.students, args.files)
        size = sum(p.stat().st_size for p in (work / "students").iterdir()) / 2**20
        print(f"{args.students:,} students in {args.files} CSV files, {size:.0f} MiB", flush=True)
        results = {}
        from src.batch.spark import package_source

        archive, main_script = package_source(work / "dist")
        naive = run_engine(
            [sys.executable, "-c", NAIVE, str(work / "store"), str(work / "students"), str(work / "out-naive")], ROOT
        )
        naive_rate = args.students / naive["wall"]
        print(
            f"naive script  : {naive_rate:>9,.0f} rows/s over its {naive['wall']:.1f} s wall; peak memory "
            f"{naive['peak_total']:,.0f} MiB",
            flush=True,
        )
        for engine in args.engines.split(","):
            options = [
                "--input",
                str(work / "students"),
                "--output",
                str(work / f"out-{engine}"),
                "--store",
                str(work / "store"),
                "--engine",
                engine,
                "--format",
                "parquet",
                "--support-cut",
                "60",
            ]
            if engine == "local":  # the command as docs/data-team.md gives it, from the project folder
                command = [
                    sys.executable,
                    "-m",
                    "src.pipeline.batch_predict",
                    *options,
                    "--chunk-rows",
                    str(args.chunk_rows),
                ]
                measured = run_engine(command, ROOT)
            else:  # the spark-submit line of docs/data-team.md, from outside the project: src comes from the wheel only
                command = [
                    str(Path(sys.executable).parent / "spark-submit"),
                    "--master",
                    args.master,
                    "--py-files",
                    str(archive),
                    str(main_script),
                    *options,
                ]
                measured = run_engine(command, work)
            summary = json.loads((work / f"out-{engine}" / "summary.json").read_text())
            assert summary["predictions"] == args.students and summary["rejects"] == 0, summary
            results[engine] = (measured, summary)
            peaks = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(measured["peaks"].items()) if v >= 0.5)
            print(
                f"--engine {engine:5s}: {args.students / measured['wall']:>9,.0f} rows/s over the command's "
                f"{measured['wall']:.1f} s wall; {args.students / summary['seconds']:>9,.0f} rows/s over its "
                f"{summary['seconds']:.1f} s run; peak memory {measured['peak_total']:,.0f} MiB ({peaks} MiB); "
                f"{args.students / measured['wall'] / naive_rate:.2f} x the naive script's rows/s "
                f"(target >= 1.0 for local)",
                flush=True,
            )
            if engine == "local":  # what a person running it sees on stderr meanwhile
                shown = measured["progress"]
                print(f"  progress lines on stderr: {len(shown)}", flush=True)
                for line in shown[:2] + (["..."] if len(shown) > 3 else []) + shown[2:][-1:]:
                    print(f"    {line}", flush=True)
        if "spark" not in args.engines.split(","):
            print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)
            return
        small = work / "overhead"
        write_students(small, args.overhead_rows, 1)
        timings = partition_overhead(work / "store", small, work / "out-overhead", args.master)
        parts = np.array([p for p, _ in timings], dtype=float)
        seconds = np.array([s for _, s in timings])
        slope, intercept = np.polyfit(parts, seconds, 1)
        print(
            f"Spark overhead per partition ({args.overhead_rows:,} rows, {args.master}): "
            + "; ".join(f"{p} partitions {s:.2f} s" for p, s in timings)
            + f" -> {slope * 1000:.0f} ms per partition (fixed {intercept:.2f} s)",
            flush=True,
        )
        print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
