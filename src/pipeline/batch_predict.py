"""Scoring a whole cohort from files, with the same answers as the JSON API.

    python -m src.pipeline.batch_predict --input SRC --output DST [--engine local|spark] [--store STORE]
                                         [--format csv|parquet] [--support-cut SCORE] [--chunk-rows N]

SRC is a CSV file, a folder of CSV files or an ``s3://bucket/prefix`` of them (headers of either style, an
optional ``student_id`` passed through). DST (a folder or an ``s3://`` prefix) receives ``predictions/`` (one
row per valid student: source file, row, score, 90 % range, level, with a cut the band, the chance below
the cut and the band without background, the factors (baseline, each feature's contribution, the stronger
score in words), model version),
``rejects/`` (one row per broken rule: source file, row, field, value, reason) and, last, ``summary.json``.
Every input row ends in exactly one of the two outputs. An input with the real math score (``math score`` or
``math_score``; blank for some is fine) gets, beside each prediction, the real score under its own name
(``real_math_score``), the prediction minus it, whether it was inside the range and whether the band was
right, and ``evaluation.json`` beside ``summary.json``: MAE, bias, coverage and the band table of the labeled
students beside the test split's, overall and per student group (training's per-group table).

Both engines score each chunk of rows with ``score_chunk`` (``src/batch/core.py``), which checks the rows with
the API's rules, answers them with ``compute_answers`` (the one computation every channel renders) and writes
the row fields of ``ANSWER_FIELDS`` (``answers_columns``). ``--engine local`` streams the input in chunks of
``--chunk-rows`` (bounded memory); ``--engine spark``
broadcasts the verified model once and runs ``score_chunk`` in ``mapInPandas``.
"""

from __future__ import annotations

# Only the standard library and the options' closed sets at import: --help answers before pandas, Arrow or the
# model code are loaded (each function imports what it uses).
import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from src.batch import DEFAULT_CHUNK_ROWS, ENGINES, FORMATS

if TYPE_CHECKING:
    import pandas as pd

    from src.answers.model import PredictPipeline
    from src.batch.core import BatchConfig, BatchResult, Output

logger = logging.getLogger(__name__)


def run(config: BatchConfig) -> BatchResult:
    """Load the verified model, score every row of the input, write predictions, rejects and the summary."""
    from dataclasses import asdict

    from src.batch.core import EVALUATION, BatchResult, Output, evaluation_report, load_serving_pipeline

    started = time.perf_counter()
    _check_config(config)
    pipeline = load_serving_pipeline(config.store)
    output = Output(config.output, config.format)
    output.refuse_existing()
    if config.engine == "spark":
        from src.batch import spark as spark_engine  # imported here: pyspark is needed only for this engine

        predictions, rejected_rows, rejects, parts = spark_engine.run(config, pipeline, output)
    else:
        predictions, rejected_rows, rejects, parts = _run_local(config, pipeline, output)
    if parts is not None:
        output.write_summary(evaluation_report(parts, pipeline, config.support_cut), EVALUATION)
    result = BatchResult(
        predictions, rejected_rows, rejects, pipeline.model_version, config.engine, round(time.perf_counter() - started, 3)
    )
    output.write_summary(
        {
            **asdict(result),
            "input": config.input,
            "format": config.format,
            "support_cut": config.support_cut,
            "factors_reason": pipeline.factors.reason,
        }
    )
    logger.info(
        "scored %d students, rejected %d rows (%d broken rules) with model %s in %.1f s",
        predictions,
        rejected_rows,
        rejects,
        pipeline.model_version,
        result.seconds,
    )
    return result


def _run_local(config: BatchConfig, pipeline: PredictPipeline, output: Output) -> tuple[int, int, int, list[dict] | None]:
    """(predictions, rejected rows, rejects, the chunks' evaluation parts or None when no file is labeled)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from src.batch.core import (
        PREDICTIONS,
        REJECTS,
        is_labeled,
        prediction_columns,
        read_chunks,
        reject_columns,
        score_read_chunk,
    )
    from src.schema import STUDENT_ID
    from src.storage import place
    from src.validation import normalise_student_headers

    progress = Progress(place(config.input).total_bytes(), config.progress_seconds)
    predictions = rejected_rows = rejects = 0
    has_id = labeled = False
    parts: list[dict] = []
    as_table = config.format == "parquet"  # Parquet is written from Arrow arrays, with no DataFrame between
    # One chunk is written (encoded, compressed, put; Arrow and the file system release the GIL) while the next is
    # scored and the one after it read by Arrow (whose reader releases the GIL too): at most three chunks in
    # memory, parts written in order by the one writer thread. A file that needs pandas' reader is read on this
    # thread, the writer idle (read_file_chunks says why).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer") as writer:
        pending: Future | None = None

        def writer_idle() -> None:
            if pending is not None:
                pending.result()

        for source, chunk, rows, bad in read_chunks(config.input, config.chunk_rows, ahead=True, before_parse=writer_idle):
            has_id = STUDENT_ID in normalise_student_headers(chunk.iloc[:0]).columns
            labeled = labeled or is_labeled(chunk)
            answers, broken = score_read_chunk(
                pipeline, source, chunk, rows, bad, config.support_cut, parts, as_table=as_table
            )
            if pending is not None:
                pending.result()  # a failed write stops the run here
            pending = writer.submit(_write_parts, output, answers, broken)
            predictions += len(answers)
            rejects += len(broken)
            rejected_rows += broken["row"].nunique()
            progress.advance(chunk, len(rows))
        if pending is not None:
            pending.result()
    output.finish_parts(REJECTS, reject_columns(has_id))
    output.finish_parts(PREDICTIONS, prediction_columns(has_id, config.support_cut, labeled))
    return predictions, rejected_rows, rejects, parts if labeled else None


def _write_parts(output: Output, answers: Any, rejects: pd.DataFrame) -> None:
    from src.batch.core import PREDICTIONS, REJECTS

    output.write_part(PREDICTIONS, answers)
    output.write_part(REJECTS, rejects)


class Progress:
    """A line on stderr at most every ``seconds``: rows done, rows per second and the expected end. The first comes
    sooner (after ``FIRST_PROGRESS_SECONDS`` at most), so that a run of a few seconds still says it is working.

    The end is estimated from the input's size in bytes (``total_bytes``; None when unknown) and the bytes per
    row of the first chunk, measured on a sample of its rows as CSV text.
    """

    def __init__(self, total_bytes: int | None, seconds: float, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.total_bytes = total_bytes
        self.seconds = seconds
        self.started = self.last = time.monotonic()
        self.rows = 0
        self.bytes_per_row: float | None = None
        self.due = min(seconds, FIRST_PROGRESS_SECONDS)  # until the first line; then ``seconds``

    def advance(self, chunk: pd.DataFrame, rows: int) -> None:
        if self.seconds <= 0:
            return
        if self.bytes_per_row is None and len(chunk):
            sample = chunk.head(1000)
            self.bytes_per_row = len(sample.to_csv(index=False, header=False).encode()) / len(sample)
        self.rows += rows
        now = time.monotonic()
        if now - self.last < self.due:
            return
        self.last, self.due = now, self.seconds
        rate = self.rows / max(now - self.started, 1e-9)
        line = f"progress: {self.rows:,} rows in {now - self.started:.0f} s, {rate:,.0f} rows/s"
        if self.total_bytes and self.bytes_per_row:
            expected = max(self.total_bytes / self.bytes_per_row, self.rows)
            left = (expected - self.rows) / rate if rate > 0 else 0.0
            end = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
            line += f"; about {expected:,.0f} rows in all, expected end {end} (in {left:.0f} s)"
        self.out.write(line + "\n")
        self.out.flush()


def _check_config(config: BatchConfig) -> None:
    from src.batch.core import BatchError

    if config.engine not in ENGINES:
        raise BatchError(f"--engine must be one of {', '.join(ENGINES)}, got {config.engine!r}")
    if config.format not in FORMATS:
        raise BatchError(f"--format must be one of {', '.join(FORMATS)}, got {config.format!r}")
    if config.chunk_rows < 1:
        raise BatchError(f"--chunk-rows must be a positive number of rows, got {config.chunk_rows}")


def _cut(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"the support cut must be a score from 0 to 100, got {text!r}") from err
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"the support cut must be a score from 0 to 100, got {text!r}")
    return value


EXAMPLES = """examples:
  python -m src.pipeline.batch_predict --input students.csv --output scored/
  python -m src.pipeline.batch_predict --input s3://warehouse/exports/2026/ --output s3://warehouse/scored/2026/ \\
      --format parquet --support-cut 60
  python -m src.pipeline.batch_predict --input exports/ --output scored/ --engine spark --quiet
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m src.pipeline.batch_predict",
        description=__doc__.split("\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, help="a CSV file, a folder of CSV files or an s3:// prefix")
    parser.add_argument("--output", required=True, help="a folder or an s3:// prefix for the outputs")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this machine, in chunks (default); spark: Spark (spark-submit's master, else --master)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("ARTIFACTS_DIR") or "artifacts",
        help="the verified model set to score with (default: ARTIFACTS_DIR or artifacts)",
    )
    parser.add_argument("--format", choices=FORMATS, default="csv", help="the outputs' file format (default csv)")
    parser.add_argument(
        "--support-cut",
        type=_cut,
        default=None,
        help="cut score for the support band (default: SUPPORT_CUT, else the app's default, 50)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help=f"rows read and scored at a time by the local engine (default {DEFAULT_CHUNK_ROWS:,}); memory grows with it",
    )
    parser.add_argument("--master", default=None, help="Spark master outside spark-submit (default local[*])")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress lines (by default one on stderr every 10 s of a long run)"
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> BatchConfig:
    args = build_parser().parse_args(argv)
    from src.batch.core import BatchConfig
    from src.config import AppConfig

    support_cut = args.support_cut
    if support_cut is None:
        support_cut = _cut(os.environ.get("SUPPORT_CUT") or str(AppConfig.support_cut))
    return BatchConfig(
        input=args.input,
        output=args.output,
        engine=args.engine,
        store=args.store,
        format=args.format,
        support_cut=support_cut,
        chunk_rows=args.chunk_rows,
        master=args.master,
        progress_seconds=0.0 if args.quiet else PROGRESS_SECONDS,
    )


PROGRESS_SECONDS = 10.0
FIRST_PROGRESS_SECONDS = 1.0


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    from src.batch.core import BatchError
    from src.config import configure_logging
    from src.schema import SchemaError
    from src.signing import SigningKeyError
    from src.storage import ArtifactError, DataSourceError

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        run(config)
    except (BatchError, DataSourceError, ArtifactError, SchemaError, SigningKeyError) as err:
        logger.error("batch prediction failed: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that Spark workers and this process share one copy of its classes.
    from src.pipeline.batch_predict import main as _main

    raise SystemExit(_main())
