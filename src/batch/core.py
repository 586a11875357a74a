"""What both batch engines share: the job's configuration, reading files in chunks, scoring a chunk with the
API's rules and answers, and writing predictions, rejects and the summary."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from src.answers.arrays import Coded
from src.answers.bands import Bands
from src.answers.columns import (
    ANSWER_COLUMNS,
    BASELINE,
    DECISION_COLUMNS,
    FACTOR_COLUMNS,
    MODEL_VERSION,
    TOP_FACTOR,
    Answers,
    answers_columns,
    compute_answers,
)
from src.answers.evaluation import (
    OUTCOME_COLUMNS,
    Outcomes,
    Tally,
    add_group_tallies,
    evaluation,
    group_summary,
    group_tally,
    outcome_columns,
    outcomes,
)
from src.answers.model import PredictPipeline, load_champion
from src.batch import DEFAULT_CHUNK_ROWS, ENGINES, FORMATS  # noqa: F401 - the options' closed sets, used here and by importers
from src.config import AppConfig, cache_dir_from_env, keys_from_env
from src.schema import REAL_SCORE, STUDENT_ID, TARGET
from src.storage import DataSourceError, is_s3, place
from src.store import open_store
from src.validation import StudentColumns, check_students_frame, check_text_table, normalise_student_headers

logger = logging.getLogger(__name__)


PREDICTIONS = "predictions"
REJECTS = "rejects"
SUMMARY = "summary.json"
EVALUATION = "evaluation.json"  # written when the input carries the real math score
ROW_FIELD = "row"
_BAD_LINE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")


class BatchError(RuntimeError):
    """The batch cannot run: unreadable input, an output that already exists, an unusable option."""


@dataclass(frozen=True)
class BatchConfig:
    """One batch run (command-line option in brackets)."""

    input: str  # --input
    output: str  # --output
    engine: str = "local"  # --engine
    store: str = "artifacts"  # --store (default: ARTIFACTS_DIR)
    format: str = "csv"  # --format
    support_cut: float | None = AppConfig.support_cut  # --support-cut (default: SUPPORT_CUT); None: no band
    chunk_rows: int = DEFAULT_CHUNK_ROWS  # --chunk-rows: rows read and scored at a time by the local engine
    master: str | None = None  # --master: Spark master when not under spark-submit (default local[*])
    progress_seconds: float = 0.0  # a progress line at most this often (local engine); 0: none (--quiet)


@dataclass(frozen=True)
class BatchResult:
    predictions: int
    rejected_rows: int
    rejects: int
    model_version: str
    engine: str
    seconds: float


def load_serving_pipeline(store: str) -> PredictPipeline:
    """The champion of the model store, verified exactly as the server does (MODEL_VERIFY_KEYS, MODEL_CACHE_DIR)."""
    _, keys = keys_from_env()
    return load_champion(open_store(store, cache_dir=cache_dir_from_env()), keys)


def prediction_columns(has_student_id: bool, support_cut: float | None, labeled: bool = False) -> list[str]:
    """The predictions' columns; with ``labeled`` (the input has the real math score) the outcome columns too:
    the real score under its own name, the prediction minus it, inside the range, band right."""
    answers = [c for c in ANSWER_COLUMNS if c != MODEL_VERSION] + (list(DECISION_COLUMNS) if support_cut is not None else [])
    return [STUDENT_ID] * has_student_id + [
        "source",
        "row",
        *answers,
        *(OUTCOME_COLUMNS if labeled else ()),
        BASELINE,
        *FACTOR_COLUMNS,
        TOP_FACTOR,
        MODEL_VERSION,
    ]


def is_labeled(frame: pd.DataFrame) -> bool:
    """True when a chunk (either header style) carries the real math score column."""
    return TARGET.name in normalise_student_headers(frame.iloc[:0]).columns


def chunk_outcomes(students: pd.DataFrame, answers: Answers, support_cut: float | None) -> Outcomes:
    """The valid students' answers (unrounded, as written) against their real scores."""
    out = answers.predictions
    return outcomes(out.scores, out.low, out.high, students[REAL_SCORE].to_numpy(dtype=float), answers.bands, support_cut)


def evaluation_part(students: pd.DataFrame, checked: Outcomes) -> dict[str, Any]:
    """One chunk's sums of the outcomes (overall and per student group), to be added with ``add_parts``."""
    return {"tally": Tally.of(checked).as_dict(), "groups": group_tally(students, checked)}


def add_parts(parts: Sequence[dict[str, Any]]) -> tuple[Tally, dict[str, Any] | None]:
    """The sum of chunks' ``evaluation_part``: the overall tally and the per-group sums."""
    tally, groups = Tally(), None
    for part in parts:
        tally = tally + Tally.from_dict(part["tally"])
        groups = add_group_tallies(groups, part["groups"])
    return tally, groups


def evaluation_report(
    parts: Sequence[dict[str, Any]], pipeline: PredictPipeline, support_cut: float | None
) -> dict[str, Any]:
    """``evaluation.json``: the labeled students' figures beside the test split's, and per student group as
    training's per-group table (``src.components.group_metrics``), figures to 6 decimals."""
    tally, groups = add_parts(parts)
    return _rounded(
        {
            "model_version": pipeline.model_version,
            "support_cut": support_cut,
            "overall": evaluation(tally, pipeline.manifest, support_cut),
            "groups": group_summary(groups),
        }
    )


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def reject_columns(has_student_id: bool) -> list[str]:
    return ["source", "row"] + [STUDENT_ID] * has_student_id + ["field", "value", "reason"]


def score_chunk(
    pipeline: PredictPipeline,
    raw: pd.DataFrame,
    sources: Coded,
    rows: np.ndarray,
    support_cut: float | None,
    parts: list[dict[str, Any]] | None = None,
    *,
    as_table: bool = False,
) -> tuple[Any, pd.DataFrame]:
    """Rows as read (either header style) -> (answers of the valid rows, one reject per broken rule).

    ``sources``: each row's file, as positions in a table of the file names. When the rows carry the real math
    score (blank allowed), the answers get the outcome columns and, given ``parts``, the chunk's
    ``evaluation_part`` is appended to it. The answers are a DataFrame, or with ``as_table`` an Arrow table of
    the same columns and values (``answers_table``), for writing to Parquet.
    """
    frame = normalise_student_headers(raw)
    has_id = STUDENT_ID in frame.columns
    labeled = TARGET.name in frame.columns
    if labeled:  # the real score's rules (blank allowed) are check_students_frame's
        ok, typed, errors = check_students_frame(frame)
        mask, students = ok.to_numpy(), StudentColumns.from_frame(typed)
    else:
        mask, students, errors = check_text_table(frame)
    answers = compute_answers(pipeline, students, None if support_cut is None else Bands(support_cut))
    columns: dict[str, Any] = answers_columns(answers, coded=True)  # text columns as tables of words
    if labeled:
        checked = chunk_outcomes(typed, answers, support_cut)
        if parts is not None:
            parts.append(evaluation_part(typed, checked))
        columns.update(outcome_columns(checked))
    ids = {STUDENT_ID: _text_of(frame[STUDENT_ID], mask)} if has_id else {}
    columns = {**ids, "source": sources.select(mask), "row": rows[mask], **columns}
    ordered = {name: columns[name] for name in prediction_columns(has_id, support_cut, labeled)}
    predictions = answers_table(ordered) if as_table else _frame(ordered)
    at = errors["position"].to_numpy(dtype=np.int64)
    ids = {STUDENT_ID: _text(frame[STUDENT_ID].iloc[at].to_numpy(dtype=object))} if has_id else {}
    rejects = pd.DataFrame(
        {
            "source": sources.select(at).text(),
            "row": rows[at],
            **ids,
            "field": errors["field"].to_numpy(dtype=object),
            "value": _text(errors["value"].to_numpy(dtype=object)),
            "reason": errors["reason"].to_numpy(dtype=object),
        }
    )
    return predictions, rejects


def field_count_rejects(
    sources: Sequence[str], rows: Sequence[int], found: Sequence[int], expected: int, has_student_id: bool
) -> pd.DataFrame:
    """Rows with more fields than the header cannot be read as a student: one reject each."""
    out = pd.DataFrame({"source": np.asarray(sources, dtype=object), "row": np.asarray(rows, dtype=np.int64)})
    if has_student_id:
        out[STUDENT_ID] = ""
    out["field"] = ROW_FIELD
    out["value"] = ""
    out["reason"] = [f"has {n} fields, the header has {expected}" for n in found]
    return out


def score_read_chunk(
    pipeline: PredictPipeline,
    source: str,
    chunk: pd.DataFrame,
    rows: np.ndarray,
    bad: list,
    support_cut: float | None,
    parts: list[dict[str, Any]] | None = None,
    *,
    as_table: bool = False,
) -> tuple[Any, pd.DataFrame]:
    """A chunk as ``read_chunks`` yields it -> (answers, rejects); rows with too many fields are rejected too.

    ``as_table``: the answers as an Arrow table (see ``score_chunk``)."""
    answers, broken = score_chunk(
        pipeline, chunk, Coded.one(source, len(chunk)), rows, support_cut, parts, as_table=as_table
    )
    if bad:
        has_id = STUDENT_ID in normalise_student_headers(chunk.iloc[:0]).columns
        extra = field_count_rejects([source] * len(bad), [r for r, _, _ in bad], [n for _, _, n in bad], bad[0][1], has_id)
        broken = pd.concat([broken, extra], ignore_index=True).sort_values("row", kind="stable")
    return answers, broken


def read_chunks(
    source: str, chunk_rows: int, *, ahead: bool = False, before_parse: Callable[[], None] | None = None
) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, list]]:
    """Yield (file, rows as text, their 1-based row numbers, rows with too many fields) chunk by chunk.

    Row numbers count the data rows of each file (header excluded). A row with more fields than the header
    is not read as a student; it comes back as (row, header fields, fields found) to be rejected.

    ``ahead``: Arrow reads the next chunk (of this file or the next) in a thread while the caller works on the
    last (``read_ahead``). pandas' reader, for a file Arrow cannot read (see ``read_file_chunks``), runs on the
    caller's thread with nothing read meanwhile, and calls ``before_parse`` before it parses each chunk: it
    reports a row of too many fields as a warning, and the warnings module's state is one for the whole
    process, so no other thread may use it while it parses (the caller stops its own there).
    """
    parts = (part for name in place(source).csv_files() for part in _file_parts(name, chunk_rows))
    if ahead:
        parts = read_ahead(parts, pause=lambda part: isinstance(part, _PandasFrom))
    yield from _with_pandas(parts, chunk_rows, before_parse)


@dataclass(frozen=True)
class _PandasFrom:
    """The rest of a file, after row ``done``, is for pandas' reader."""

    name: str
    done: int


def _file_parts(name: str, chunk_rows: int) -> Iterator[Any]:
    """Arrow's chunks of one file; where Arrow cannot go on (or for an S3 object), a ``_PandasFrom`` for the rest."""
    done = 0
    if place(name).local_path is not None:
        try:
            for item in _arrow_chunks(name, chunk_rows):
                done = int(item[2][-1])
                yield item
            return
        except _ArrowCannotRead:
            pass
    yield _PandasFrom(name, done)


def _with_pandas(
    parts: Iterator[Any], chunk_rows: int, before_parse: Callable[[], None] | None
) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, list]]:
    """``_file_parts``' chunks, each ``_PandasFrom`` read by pandas here, on the caller's thread."""
    for part in parts:
        if isinstance(part, _PandasFrom):
            yield from _pandas_rest(part.name, chunk_rows, part.done, before_parse)
        else:
            yield part


_END = object()


def read_ahead(items: Iterator[Any], pause: Callable[[Any], bool] | None = None) -> Iterator[Any]:
    """The items of ``items``, in order, each next one made by a thread while the caller works on the last.

    One item ahead at most; none while the caller works on an item for which ``pause`` is true. An error making
    an item is raised where that item is asked for; when the caller stops early, the item being made is
    finished and dropped.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-reader") as maker:
        coming = maker.submit(next, items, _END)
        while True:
            item = coming.result()
            if item is _END:
                return
            if pause is not None and pause(item):
                yield item
                coming = maker.submit(next, items, _END)
            else:
                coming = maker.submit(next, items, _END)
                yield item


def read_file_chunks(
    name: str, chunk_rows: int, *, before_parse: Callable[[], None] | None = None
) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, list]]:
    """``read_chunks`` of one named file or S3 object (not listed again as a prefix).

    A local file is read with Arrow's CSV reader, several times faster than pandas'. Anything it does not
    read as a plain table of the header's width (a row with more or fewer fields, a header naming a column
    twice, bytes that are not UTF-8) hands the file to pandas' reader, which rejects such rows one by one;
    the rows already read are not read again.
    """
    yield from _with_pandas(_file_parts(name, chunk_rows), chunk_rows, before_parse)


def _pandas_rest(
    name: str, chunk_rows: int, done: int, before_parse: Callable[[], None] | None
) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, list]]:
    """pandas' chunks of a file after its row ``done`` (the rows Arrow read already are not yielded again)."""
    for source, chunk, rows, bad in _pandas_chunks(name, chunk_rows, before_parse):
        keep = rows > done
        bad = [b for b in bad if b[0] > done]
        if keep.any() or bad or not done:
            yield source, chunk.loc[keep].reset_index(drop=True), rows[keep], bad


ARROW_BLOCK_BYTES = 1 << 24  # what Arrow's CSV reader parses at a time; a chunk may span two blocks


class _ArrowCannotRead(Exception):
    """This file needs pandas' reader (see ``read_file_chunks``)."""


def _arrow_chunks(name: str, chunk_rows: int) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, list]]:
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError as err:
        raise _ArrowCannotRead from err
    try:
        with open(name, newline="", encoding="utf-8-sig") as text:
            header = next(csv.reader(text), [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise _ArrowCannotRead from err
    if not header or len(set(header)) != len(header):
        raise _ArrowCannotRead
    done = 0
    try:
        reader = pacsv.open_csv(
            name,
            read_options=pacsv.ReadOptions(block_size=ARROW_BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
        )
        if reader.schema.names != header:
            raise _ArrowCannotRead
        pending: list[Any] = []
        count = 0
        for batch in reader:
            pending.append(batch)
            count += batch.num_rows
            while count >= chunk_rows or (count and batch is None):
                table = pa.Table.from_batches(pending)
                chunk, rest = table.slice(0, chunk_rows), table.slice(chunk_rows)
                pending, count = rest.to_batches(), rest.num_rows
                yield name, chunk.to_pandas(), np.arange(done + 1, done + chunk.num_rows + 1, dtype=np.int64), []
                done += chunk.num_rows
        if count:
            table = pa.Table.from_batches(pending)
            yield name, table.to_pandas(), np.arange(done + 1, done + count + 1, dtype=np.int64), []
        elif not done:  # no rows: pandas' reader says what the file is (empty, or a header alone)
            raise _ArrowCannotRead
    except (pa.ArrowInvalid, OSError) as err:
        raise _ArrowCannotRead from err


def _pandas_chunks(
    name: str, chunk_rows: int, before_parse: Callable[[], None] | None = None
) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, list]]:
    """pandas' reader, chunk by chunk; its warnings about rows of too many fields are recorded while it parses,
    never across a ``yield`` (where the caller's code, and its own warnings, run)."""
    next_row = 1
    with place(name).open() as handle:
        try:
            with _parse_warnings(before_parse) as caught:
                reader = pd.read_csv(handle, dtype=str, keep_default_na=False, chunksize=chunk_rows, on_bad_lines="warn")
            while True:
                with _parse_warnings(before_parse) as more:
                    chunk = next(reader, None)
                caught += more
                if chunk is None:
                    break
                bad = [(int(m[0]) - 1, int(m[1]), int(m[2])) for w in caught for m in _BAD_LINE.findall(str(w.message))]
                caught = []
                skipped = {r for r, _, _ in bad}
                numbers = np.arange(next_row, next_row + len(chunk) + len(skipped), dtype=np.int64)
                rows = numbers[~np.isin(numbers, list(skipped))][: len(chunk)]
                next_row = int(max(rows.max(initial=0), max(skipped, default=0))) + 1
                yield name, chunk.reset_index(drop=True), rows, bad
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataSourceError(f"{name} is not a readable CSV file: {err}") from err


@contextlib.contextmanager
def _parse_warnings(before_parse: Callable[[], None] | None) -> Iterator[list[warnings.WarningMessage]]:
    """The warnings pandas' parser gives inside the block, recorded (``before_parse`` first: see read_file_chunks)."""
    if before_parse is not None:
        before_parse()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        yield caught


class Output:
    """Part files under DST/predictions and DST/rejects (a folder or an s3:// prefix), then summary.json."""

    def __init__(self, destination: str, fmt: str) -> None:
        self.destination = destination.rstrip("/")
        self.place = place(self.destination)
        self.format = fmt
        self.parts: dict[str, int] = {}

    @property
    def is_s3(self) -> bool:
        return is_s3(self.destination)

    def path(self, *names: str) -> str:
        return self.place.join(*names)

    def refuse_existing(self) -> None:
        """Never mix two runs' files: the destination must not hold a previous run's outputs."""
        for name in (PREDICTIONS, REJECTS, SUMMARY, EVALUATION):
            if self.place.holds(name):
                raise BatchError(f"{self.path(name)} already exists; choose a new --output")

    def write_part(self, kind: str, frame: Any) -> None:
        """One part file of a DataFrame or an Arrow table (nothing when it has no rows)."""
        if not len(frame):
            return
        number = self.parts.get(kind, 0)
        self.parts[kind] = number + 1
        self.put(f"{kind}/part-{number:05d}.{self.format}", serialise(frame, self.format))

    def finish_parts(self, kind: str, columns: Sequence[str]) -> None:
        """An empty output still gets one part, so that readers find its columns."""
        if not self.parts.get(kind):
            self.write_part_empty(kind, columns)

    def write_part_empty(self, kind: str, columns: Sequence[str]) -> None:
        self.parts[kind] = 1
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        self.put(f"{kind}/part-00000.{self.format}", serialise(frame, self.format))

    def write_summary(self, summary: dict[str, Any], name: str = SUMMARY) -> None:
        self.put(name, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    def put(self, name: str, data: bytes) -> None:
        """Write one file under the destination (an S3 object is whole once put; a file is renamed into place)."""
        self.place.put(name, data)


# Parquet dictionary-encodes a column until its dictionary passes this size, then writes the rest plainly: the
# repeated values (file name, band, factors, the top factor's words, model version) stay dictionary-encoded,
# while the per-student ones (id, row, score, range) stop paying for a dictionary after 64 KiB of distinct values.
PARQUET_DICTIONARY_BYTES = 1 << 16


def serialise(frame: Any, fmt: str) -> bytes:
    """A DataFrame or an Arrow table as the bytes of one CSV or Parquet file."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, dictionary_pagesize_limit=PARQUET_DICTIONARY_BYTES)
        return buffer.getvalue().to_pybytes()
    if not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas()
    return frame.to_csv(index=False, quoting=csv.QUOTE_MINIMAL).encode("utf-8")


def answers_table(columns: dict[str, Any]) -> Any:
    """An Arrow table of answer columns, with the values and column types that ``_frame`` and
    ``pa.Table.from_pandas`` give (text as large strings, a missing value missing), without a DataFrame between."""
    import pyarrow as pa

    arrays = {}
    for name, values in columns.items():
        if isinstance(values, Coded):
            values = _arrow_text(values, pa.large_string())
        elif isinstance(values, np.ndarray) and values.dtype == object:
            try:  # text; None and NaN are missing, as pandas' factorize makes them in ``_frame``
                values = pa.array(values, type=pa.large_string(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # yes/no outcomes with blanks, as pandas would type them
                values = pa.array(values, from_pandas=True)
        elif isinstance(values, (pa.Array, pa.ChunkedArray)) and pa.types.is_string(values.type):
            values = values.cast(pa.large_string())
        arrays[name] = values
    return pa.table(arrays)


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A frame of answer columns, text made into Arrow strings at once (pandas would first check every value).

    Answer text repeats (file names, bands, the top factor's words): each distinct value is converted once.
    """
    try:
        import pyarrow as pa
    except ImportError:
        columns = {k: v.text() if isinstance(v, Coded) else v for k, v in columns.items()}
        return pd.DataFrame(
            {k: _text(np.asarray(v, dtype=object)) if not isinstance(v, np.ndarray) else v for k, v in columns.items()}
        )
    arrays = {}
    for name, values in columns.items():
        if isinstance(values, Coded):
            values = _arrow_text(values, pa.string())
        elif isinstance(values, np.ndarray) and values.dtype == object:
            codes, distinct = pd.factorize(values)
            if all(isinstance(v, str) for v in distinct):  # text; a missing value (code -1) stays missing
                values = pa.DictionaryArray.from_arrays(
                    pa.array(codes, type=pa.int32(), mask=codes < 0),
                    pa.array(np.asarray(distinct, dtype=object), type=pa.string()),
                )
                values = values.cast(pa.string())
            else:  # yes/no outcomes with blanks, as pandas would type them
                values = pa.array(values, from_pandas=True)
        arrays[name] = values
    return pa.table(arrays).to_pandas()


def _arrow_text(coded: Coded, text_type: Any) -> Any:
    """A text column kept as a table of words, as an Arrow array: each row's text taken from the table in Arrow,
    never read row by row in Python (file names, model version, bands, the top factor's words)."""
    import pyarrow as pa

    return pa.array(coded.words, type=text_type).take(pa.array(coded.codes))


def _text_of(column: pd.Series, mask: np.ndarray) -> Any:
    """The rows of ``mask`` of a text column as read, a missing value as the empty string."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return _text(column.to_numpy(dtype=object)[mask])
    try:
        return pc.fill_null(pa.array(column, type=pa.string()).filter(pa.array(mask)), "")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not text (a frame of typed values)
        return _text(column.to_numpy(dtype=object)[mask])


def _text(values: np.ndarray) -> np.ndarray:
    """Values as given, as text (a missing value is the empty string)."""
    return np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values], dtype=object)
