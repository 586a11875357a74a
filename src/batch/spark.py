"""The Spark engine of the batch command: the verified model broadcast once, rows scored by ``score_chunk``.

Spark reads every CSV value as text (as the local engine does), with each row's file and block, so that
each row gets its number in its file even when a large file is split across tasks. ``mapInPandas`` calls
``score_chunk`` on each Arrow batch: the same checks as the API and the same ``compute_answers``. Its
output is kept (memory, then disk) while predictions and rejects are written, so each row is scored once.

An ``s3://`` input or output needs no Hadoop S3 connector: the driver lists the prefix with boto3, each task
reads whole objects with ``read_chunks`` (as the local engine does) and writes its part with boto3.

Under ``spark-submit`` the master and resources come from spark-submit; otherwise a session on
``local[*]`` (or ``--master``) is started with this Python for its workers. The workers import the project from
its wheel, built at run time from the checkout and shipped with ``addPyFile`` (``spark-submit --py-files``
ships the same wheel, written by ``python -m src.batch.spark FOLDER``).
"""

from __future__ import annotations

import atexit
import csv
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from src.answers.arrays import Coded
from src.answers.columns import BASELINE, BELOW_CUT, FACTOR_COLUMNS
from src.answers.evaluation import BAND_RIGHT, INSIDE_RANGE, PREDICTION_MINUS_REAL, REAL_SCORE
from src.answers.model import PredictPipeline
from src.batch.core import (
    PREDICTIONS,
    REJECTS,
    BatchConfig,
    BatchError,
    Output,
    field_count_rejects,
    prediction_columns,
    read_file_chunks,
    reject_columns,
    score_chunk,
    score_read_chunk,
    serialise,
)
from src.batch.wheel import build_wheel, project_checkout
from src.schema import STUDENT_ID, TARGET
from src.storage import is_s3, place
from src.validation import normalise_student_headers

logger = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
OBJECT = "_object"
_MAX_OBJECT_TASKS = 10_000
FILE = "_file"
BLOCK = "_block"
KIND = "_kind"
PREDICTION_KIND = "prediction"
REJECT_KIND = "reject"
PART_KIND = "evaluation"  # one row per scored batch of a labeled input: its evaluation part, as JSON
PART = "_part"
APP_NAME = "student-math-batch"
_TYPES = {
    "row": "long",
    "math_score": "double",
    "interval_low": "double",
    "interval_high": "double",
    "interval_level": "double",
    BELOW_CUT: "double",
    BASELINE: "double",
    **dict.fromkeys(FACTOR_COLUMNS, "double"),
    REAL_SCORE: "double",
    PREDICTION_MINUS_REAL: "double",
    INSIDE_RANGE: "boolean",
    BAND_RIGHT: "boolean",
}


def spark_session(master: str | None = None, app_name: str = APP_NAME) -> Any:
    """The active session under spark-submit; else a new one on ``master`` (default local[*])."""
    from pyspark.sql import SparkSession

    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines are per connection, even at exit
    builder = SparkSession.builder.appName(app_name).config("spark.sql.execution.arrow.pyspark.enabled", "true")
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:  # spark-submit starts Python with a gateway
        master = master or "local[*]"
        builder = builder.master(master).config("spark.ui.enabled", "false")
        if master.startswith("local"):
            # Local workers must run this interpreter (and its packages), not the first python3 on PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return builder.getOrCreate()


MAIN_SCRIPT = """from src.pipeline.batch_predict import main

raise SystemExit(main())
"""


def package_source(folder: Path) -> tuple[Path, Path]:
    """Write the project's wheel for ``spark-submit --py-files`` and ``batch_predict_main.py`` (its main file)."""
    archive_path = _as_zip(build_wheel(folder))
    main_path = folder / "batch_predict_main.py"
    main_path.write_text(MAIN_SCRIPT, encoding="utf-8")
    return archive_path, main_path


def _as_zip(wheel: Path) -> Path:
    """The wheel renamed ``.zip`` (the same bytes): Spark puts only ``.zip``, ``.egg`` and ``.jar`` files of
    ``--py-files`` and ``addPyFile`` on its workers' Python path, and a pure-Python wheel is a zip of the package."""
    return wheel.replace(wheel.with_suffix(".zip"))


def ship_project(spark: Any) -> Path | None:
    """Put the project's wheel on the Python path of the session's workers; None when this code does not run from
    a checkout (under ``spark-submit --py-files``, which shipped it already)."""
    if project_checkout() is None:
        logger.info("running from a package, not a checkout: the workers get the code spark-submit shipped")
        return None
    archive = _built_once()
    spark.sparkContext.addPyFile(str(archive))  # the same path again is ignored by Spark
    return archive


@functools.cache
def _built_once() -> Path:
    """The wheel, built once per process into a folder of its own, removed when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="student-math-wheel-"))
    atexit.register(shutil.rmtree, folder, True)
    return _as_zip(build_wheel(folder))


def run(config: BatchConfig, pipeline: PredictPipeline, output: Output) -> tuple[int, int, int, list[dict] | None]:
    """Score the input on Spark; write predictions and rejects; return (predictions, rejected rows, rejects, the
    evaluation parts of a labeled input or None)."""
    from py4j.protocol import Py4JJavaError
    from pyspark import StorageLevel
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    spark = spark_session(config.master)
    ship_project(spark)
    try:
        if is_s3(config.input):
            names = place(config.input).csv_files()
            header = _shared_header([place(name).header() for name in names])
            has_id, labeled = STUDENT_ID in header, TARGET.name in header
            columns = union_columns(has_id, config.support_cut, labeled)
            shared = spark.sparkContext.broadcast((pipeline, {}))
            objects = spark.createDataFrame([(name,) for name in names], f"`{OBJECT}` string")
            scored = objects.repartition(min(len(names), _MAX_OBJECT_TASKS)).mapInPandas(
                ObjectScorer(shared, config.support_cut, columns, config.chunk_rows), _spark_schema(columns)
            )
        else:
            header, parts = _read_text(spark, config.input)
            has_id, labeled = STUDENT_ID in header, TARGET.name in header
            columns = union_columns(has_id, config.support_cut, labeled)
            offsets = _block_offsets(_union([p for p, _ in parts]).groupBy(FILE, BLOCK).count().collect())
            shared = spark.sparkContext.broadcast((pipeline, offsets))
            scorer = PartitionScorer(shared, tuple(header), has_id, config.support_cut, columns)
            scored = _union([r for _, r in parts]).mapInPandas(scorer, _spark_schema(columns))
        scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = {r[KIND]: r["count"] for r in scored.groupBy(KIND).count().collect()}
            rejected = scored.filter(F.col(KIND) == REJECT_KIND)
            predictions = scored.filter(F.col(KIND) == PREDICTION_KIND)
            _write(
                predictions.select(*prediction_columns(has_id, config.support_cut, labeled)),
                output,
                PREDICTIONS,
                config.format,
            )
            _write(rejected.select(*reject_columns(has_id)).coalesce(1), output, REJECTS, config.format)
            rejected_rows = rejected.select("source", "row").distinct().count()
            evaluation_parts = (
                [json.loads(r[PART]) for r in scored.filter(F.col(KIND) == PART_KIND).select(PART).collect()]
                if labeled
                else None
            )
        finally:
            scored.unpersist()
            shared.destroy()
    except (PySparkException, Py4JJavaError) as err:
        raise BatchError(f"Spark could not score {config.input}: {_first_line_of(err)}") from err
    return counts.get(PREDICTION_KIND, 0), rejected_rows, counts.get(REJECT_KIND, 0), evaluation_parts


def _read_text(spark: Any, source: str) -> tuple[list[str], list[tuple[Any, Any]]]:
    """Read the input as text, one read per header (either style per file), columns renamed to the schema's.

    Returns the schema-named header and, per header, (file and block of each row, the rows with a corrupt-
    record column). Files of one header are checked against it by Spark (``enforceSchema=False``).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    options = {"header": True, "escape": '"', "enforceSchema": False}
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in place(source).csv_files():
        groups.setdefault(place(name).header(), []).append(name)
    located = [F.col("_metadata.file_path").alias(FILE), F.col("_metadata.file_block_start").alias(BLOCK)]
    header = _shared_header(list(groups))
    parts = []
    for raw, paths in groups.items():
        names = list(normalise_student_headers(pd.DataFrame(columns=list(raw))).columns)
        text = StructType([StructField(c, StringType()) for c in raw])
        plain = spark.read.options(**options).schema(text).csv(paths).select(*located)
        full = (
            spark.read.options(**options, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
            .schema(StructType([*text.fields, StructField(CORRUPT, StringType())]))
            .csv(paths)
            .select(*[F.col(f"`{r}`").alias(n) for r, n in zip(raw, names, strict=True)], F.col(CORRUPT), *located)
        )
        parts.append((plain, full))
    return header, [(plain, full.select(*header, CORRUPT, FILE, BLOCK)) for plain, full in parts]


def _shared_header(headers: list[tuple[str, ...]]) -> list[str]:
    """The schema-named columns every file has (header styles may differ file by file); else BatchError."""
    header: list[str] | None = None
    for raw in headers:
        names = list(normalise_student_headers(pd.DataFrame(columns=list(raw))).columns)
        if header is None:
            header = names
        elif sorted(names) != sorted(header):
            raise BatchError(f"the input files do not share one set of columns: {header} and {names}")
    if header is None:
        raise BatchError("no input files")
    return header


def _spark_schema(columns: list[str]) -> str:
    return ", ".join(f"`{c}` {_TYPES.get(c, 'string')}" for c in columns)


def _union(frames: list[Any]) -> Any:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _first_line_of(err: Exception) -> str:
    text = str(getattr(err, "java_exception", None) or err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def union_columns(has_id: bool, support_cut: float | None, labeled: bool = False) -> list[str]:
    """One output row shape for every kind, so that one pass yields predictions, rejects and evaluation parts."""
    columns = prediction_columns(has_id, support_cut, labeled)
    return [KIND, *columns, *(c for c in reject_columns(has_id) if c not in columns), PART]


@dataclass(frozen=True)
class PartitionScorer:
    """The function ``mapInPandas`` runs on each task's batches, in the order of the task's rows."""

    shared: Any  # broadcast (pipeline, block offsets)
    header: tuple[str, ...]
    has_id: bool
    support_cut: float | None
    columns: list[str]

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pipeline, offsets = self.shared.value
        seen: dict[tuple[str, int], int] = {}
        for batch in batches:
            rows = np.empty(len(batch), dtype=np.int64)
            for key, at in batch.groupby([FILE, BLOCK], sort=False).indices.items():
                key = (str(key[0]), int(key[1]))
                start = offsets[key] + seen.get(key, 0)
                rows[at] = np.arange(start + 1, start + len(at) + 1)
                seen[key] = seen.get(key, 0) + len(at)
            files, where = np.unique(batch[FILE].to_numpy(dtype=object), return_inverse=True)
            sources = Coded(where, np.array([_source(str(p)) for p in files], dtype=object))
            fields = np.array([_field_count(t) for t in batch[CORRUPT].tolist()], dtype=np.int64)
            too_many = fields > len(self.header)
            raw = batch.loc[~too_many, list(self.header)].reset_index(drop=True)
            parts: list[dict] = []
            answers, rejects = score_chunk(
                pipeline, raw, sources.select(~too_many), rows[~too_many], self.support_cut, parts
            )
            if too_many.any():
                extra = field_count_rejects(
                    sources.select(too_many).text().tolist(),
                    rows[too_many].tolist(),
                    fields[too_many].tolist(),
                    len(self.header),
                    self.has_id,
                )
                rejects = pd.concat([rejects, extra], ignore_index=True)
            yield union_frame(answers, rejects, self.columns, parts)


@dataclass(frozen=True)
class ObjectScorer:
    """The function ``mapInPandas`` runs on a list of S3 objects: each read with boto3 as the local engine reads it.

    No Hadoop S3 connector is needed, so an ``s3://`` prefix works on any Spark (EMR, Glue, ``local[*]``);
    each object is one unit of work (export large cohorts as several files), read in chunks of ``chunk_rows``.
    """

    shared: Any  # broadcast (pipeline, unused offsets)
    support_cut: float | None
    columns: list[str]
    chunk_rows: int

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pipeline, _ = self.shared.value
        for batch in batches:
            for name in batch[OBJECT].tolist():
                for source, chunk, rows, bad in read_file_chunks(name, self.chunk_rows):
                    parts: list[dict] = []
                    answers, rejects = score_read_chunk(pipeline, source, chunk, rows, bad, self.support_cut, parts)
                    yield union_frame(answers, rejects, self.columns, parts)


def union_frame(
    answers: pd.DataFrame, rejects: pd.DataFrame, columns: list[str], parts: Sequence[dict] = ()
) -> pd.DataFrame:
    """Predictions, rejects and evaluation parts in one frame of the union columns, text as plain Python strings."""
    frames = [answers.assign(**{KIND: PREDICTION_KIND}), rejects.assign(**{KIND: REJECT_KIND})]
    if parts:
        frames.append(pd.DataFrame({KIND: PART_KIND, PART: [json.dumps(part) for part in parts]}))
    out = pd.concat(frames, ignore_index=True)
    out = out.reindex(columns=columns)
    # pandas 3 keeps text in Arrow-backed "str" columns, which PySpark 4.3 cannot send back to the JVM
    # ("Cannot convert ChunkedArray to Array"); plain Python objects convert to the same strings.
    for column in columns:
        if _TYPES.get(column, "string") in ("string", "boolean"):
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out


def _block_offsets(counts: list[Any]) -> dict[tuple[str, int], int]:
    """Rows in the earlier blocks of the same file, for each (file, block start)."""
    offsets: dict[tuple[str, int], int] = {}
    running: dict[str, int] = {}
    for row in sorted(counts, key=lambda r: (r[FILE], r[BLOCK])):
        offsets[(row[FILE], int(row[BLOCK]))] = running.get(row[FILE], 0)
        running[row[FILE]] = running.get(row[FILE], 0) + int(row["count"])
    return offsets


def _field_count(line: Any) -> int:
    if not isinstance(line, str):
        return 0
    return len(next(csv.reader([line]), []))


def _source(path: str) -> str:
    parsed = urlparse(path)
    return unquote(parsed.path) if parsed.scheme == "file" else path


def _write(frame: Any, output: Output, kind: str, fmt: str) -> None:
    """Write one output: Spark's own writer to a folder; to an s3:// prefix, one part per task through boto3."""
    if output.is_s3:
        columns = list(frame.columns)
        written = frame.mapInPandas(PartWriter(output.destination, kind, fmt, columns), "rows long").collect()
        if not sum(r["rows"] for r in written):  # readers still find the columns
            output.write_part_empty(kind, columns)
        return
    writer = frame.write.mode("errorifexists")
    if fmt == "csv":
        writer.options(header=True, escape='"').csv(output.path(kind))
    else:
        writer.parquet(output.path(kind))


@dataclass(frozen=True)
class PartWriter:
    """Each task writes its rows as ``<kind>/part-<task's partition>.<format>``, named the same on a retry."""

    destination: str
    kind: str
    format: str
    columns: list[str]

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        frames = [b for b in batches if len(b)]
        if frames:
            partition = TaskContext.get().partitionId()
            frame = pd.concat(frames, ignore_index=True)[self.columns]
            Output(self.destination, self.format).put(
                f"{self.kind}/part-{partition:05d}.{self.format}", serialise(frame, self.format)
            )
            yield pd.DataFrame({"rows": [len(frame)]})


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m src.batch.spark",
        description="write the files spark-submit needs (the project's wheel, as a .zip, and the main script)",
    )
    parser.add_argument("folder", type=Path, help="where to write them")
    for written in package_source(parser.parse_args().folder):
        sys.stdout.write(f"{written}\n")
