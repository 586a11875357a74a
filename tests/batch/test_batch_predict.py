"""The batch command on the local engine: the JSON API's answers for a whole cohort, every bad row rejected."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.answers.bands import NEEDS_SUPPORT, ON_TRACK, UNCERTAIN, Bands
from src.answers.columns import answers_frame, coded_reported_bands
from src.batch.core import BatchConfig
from src.config import AppConfig
from src.pipeline.batch_predict import main, run
from tests.batch.batch_cases import (
    check_against_api,
    check_rejects,
    download_prefix,
    json_instances,
    read_output,
    upload_cohort,
    write_labeled,
)


def test_local_engine_gives_the_api_answers_and_rejects_every_broken_row(trained, cohort, pipeline, api_answers, tmp_path):
    out = tmp_path / "out"
    result = run(BatchConfig(input=str(cohort.folder), output=str(out), store=trained.store, chunk_rows=700))
    assert (result.predictions, result.rejected_rows, result.rejects) == (5000, 10, 11)
    predictions = read_output(out / "predictions", "csv")
    check_against_api(predictions, cohort, api_answers, pipeline)
    check_rejects(read_output(out / "rejects", "csv"), cohort)
    # Streaming: the input was read and written in chunks of at most 700 rows.
    parts = sorted((out / "predictions").glob("part-*.csv"))
    assert len(parts) >= 5000 // 700 and all(len(pd.read_csv(p)) <= 700 for p in parts)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["predictions"] == 5000 and summary["rejects"] == 11 and summary["model_version"] == pipeline.model_version


def test_parquet_output_with_band_holds_unrounded_answers(trained, cohort, pipeline, tmp_path):
    out = tmp_path / "out"
    run(
        BatchConfig(
            input=str(cohort.folder / "a.csv"), output=str(out), store=trained.store, format="parquet", support_cut=60.0
        )
    )
    predictions = read_output(out / "predictions", "parquet")
    assert predictions["math_score"].dtype == np.float64
    expected = answers_frame(
        pipeline, json_instances(cohort.students[cohort.students["source"] == "a.csv"]), support_cut=60.0
    )
    assert np.abs(predictions["math_score"].to_numpy() - expected["math_score"].to_numpy()).max() <= 1e-9
    assert predictions["band"].tolist() == expected["band"].tolist()
    assert set(predictions["band"]) <= {NEEDS_SUPPORT, UNCERTAIN, ON_TRACK}


def test_band_compares_the_whole_range_with_the_cut():
    low = np.array([40.0, 50.0, 55.0, 60.0, 59.9])
    high = np.array([59.9, 60.0, 65.0, 70.0, 60.0])
    assert coded_reported_bands(Bands(60.0), low, high).text().tolist() == [
        NEEDS_SUPPORT,
        UNCERTAIN,
        UNCERTAIN,
        ON_TRACK,
        UNCERTAIN,
    ]


def test_s3_prefix_in_and_out(trained, cohort, s3_env, tmp_path):
    upload_cohort(s3_env, "district", cohort, "exports/2026")
    result = run(
        BatchConfig(
            input="s3://district/exports/2026/", output="s3://district/scored/run1", store=trained.store, chunk_rows=2000
        )
    )
    assert (result.predictions, result.rejects) == (5000, 11)
    local = tmp_path / "from-s3"
    keys = download_prefix(s3_env, "district", "scored/run1", local)
    assert keys[-1] == "scored/run1/summary.json" and any(k.startswith("scored/run1/rejects/") for k in keys)
    rejects = read_output(local / "rejects", "csv")
    assert rejects["source"].str.startswith("s3://district/exports/2026/").all()
    check_rejects(rejects, cohort)
    assert len(read_output(local / "predictions", "csv")) == 5000


def test_refuses_an_output_that_holds_a_previous_run(trained, cohort, tmp_path, caplog):
    out = tmp_path / "out"
    store = trained.store
    assert main(["--input", str(cohort.folder / "a.csv"), "--output", str(out), "--store", store]) == 0
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*"))
    assert main(["--input", str(cohort.folder / "a.csv"), "--output", str(out), "--store", store]) == 1
    assert "already exists" in caplog.text
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*")) == before


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "gender,race_ethnicity,parental_level_of_education,lunch,test_preparation_course,reading_score,"
            "writing_score,shoe_size",
            "shoe_size is not an accepted field",
        ),
        (
            "gender,race_ethnicity,parental_level_of_education,lunch,test_preparation_course,reading_score",
            "missing required column(s): writing_score",
        ),
    ],
)
def test_a_file_with_wrong_columns_is_refused_naming_them(trained, tmp_path, caplog, header, message):
    source = tmp_path / "students.csv"
    source.write_text(header + "\n")
    out = tmp_path / "out"
    assert main(["--input", str(source), "--output", str(out), "--store", trained.store]) == 1
    assert message in caplog.text
    assert not (out / "summary.json").exists()


def test_a_store_without_a_verified_model_fails_clearly(tmp_path, caplog):
    source = tmp_path / "s.csv"
    source.write_text("x\n")
    assert main(["--input", str(source), "--output", str(tmp_path / "out"), "--store", str(tmp_path)]) == 1
    assert "has no champion yet" in caplog.text


def test_the_json_batch_answer_is_the_shared_answer(client, pipeline, student):
    other = {**student, "gender": "male", "reading_score": 55.5}
    body = client.post("/predictdata", json={"instances": [student, other]}).get_json()
    frame = answers_frame(pipeline, [student, other], support_cut=AppConfig.support_cut)
    assert [p["math_score"] for p in body["predictions"]] == [round(v, 1) for v in frame["math_score"].tolist()]
    assert [p["interval"]["low"] for p in body["predictions"]] == [round(v, 1) for v in frame["interval_low"].tolist()]
    assert [p["band"]["name"] for p in body["predictions"]] == frame["band"].tolist()
    assert [p["below_cut_probability"] for p in body["predictions"]] == [
        round(v, 3) for v in frame["below_cut_probability"].tolist()
    ]
    assert [p["band_without_background"] for p in body["predictions"]] == frame["band_without_background"].tolist()
    assert Path(pipeline.directory).is_dir()


def test_spark_submit_package_is_the_project_wheel_and_a_main_script(tmp_path):
    import subprocess
    import sys
    import zipfile

    from src.batch.spark import package_source

    archive, script = package_source(tmp_path / "dist")
    assert archive.name == "student_math-1.0.0-py3-none-any.zip" and sorted(p.name for p in archive.parent.iterdir()) == [
        "batch_predict_main.py",
        archive.name,
    ]
    names = set(zipfile.ZipFile(archive).namelist())
    assert {
        "src/__init__.py",
        "src/pipeline/__init__.py",
        "src/pipeline/batch_predict.py",
        "src/batch/spark.py",
        "src/answers/columns.py",
        "src/schema.py",
        "student_math-1.0.0.dist-info/METADATA",
    } <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") or n.startswith(("tests/", "app.py")) for n in names)
    compile(script.read_text(), str(script), "exec")
    assert "from src.pipeline.batch_predict import main" in script.read_text()
    # Python imports the project from the archive alone, as Spark's workers do
    where = subprocess.run(
        [sys.executable, "-c", "import src.schema; print(src.schema.__file__)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(archive), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == f"{archive}/src/schema.py"


def test_a_clean_file_still_gets_a_rejects_output_with_its_columns(trained, tmp_path):
    from src.synthetic import generate_students

    students = generate_students(30, seed=1).drop(columns=["math_score"])
    students.insert(0, "student_id", [f"S{i}" for i in range(30)])
    students.to_csv(tmp_path / "clean.csv", index=False)
    result = run(BatchConfig(input=str(tmp_path / "clean.csv"), output=str(tmp_path / "out"), store=trained.store))
    assert (result.predictions, result.rejects) == (30, 0)
    rejects = pd.read_csv(tmp_path / "out" / "rejects" / "part-00000.csv")
    assert rejects.empty and list(rejects.columns) == ["source", "row", "student_id", "field", "value", "reason"]


def test_a_model_without_exact_factors_leaves_them_empty_and_the_summary_says_why(
    trained, cohort, pipeline, monkeypatch, tmp_path
):
    import dataclasses

    from src.answers.factors import NoFactors
    from src.batch import core

    plain = dataclasses.replace(pipeline, factors=NoFactors("k-nearest neighbours has no exact split"))
    monkeypatch.setattr(core, "load_serving_pipeline", lambda store: plain)
    out = tmp_path / "out"
    result = run(BatchConfig(input=str(cohort.folder / "a.csv"), output=str(out), store=trained.store))
    predictions = read_output(out / "predictions", "csv")
    assert len(predictions) == result.predictions > 0
    assert (predictions["top_factor"] == "").all() and (predictions["band_without_background"] == "").all()
    assert predictions["below_cut_probability"].between(0, 1).all()
    assert predictions[["factors_baseline", "factor_reading_score"]].replace("", np.nan).isna().all().all()
    assert predictions["math_score"].notna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["factors_reason"] == "k-nearest neighbours has no exact split"


@pytest.mark.parametrize("support_cut", [60.0, None])
def test_parquet_written_from_arrays_reads_back_as_the_frame_written(trained, cohort, pipeline, tmp_path, support_cut):
    import dataclasses

    import pyarrow.parquet as pq

    from src.answers.factors import NoFactors
    from src.batch.core import read_chunks, score_read_chunk, serialise

    labeled = tmp_path / "labeled.csv"
    write_labeled(labeled)  # real scores, some blank, some broken: the outcome columns, yes/no with blanks
    plain = dataclasses.replace(pipeline, factors=NoFactors("no exact split"))  # factors empty
    checked = 0
    for model in (pipeline, plain):
        for source in (str(cohort.folder), str(labeled)):
            for name, chunk, rows, bad in read_chunks(source, 400):
                frame, _ = score_read_chunk(model, name, chunk, rows, bad, support_cut)
                table, _ = score_read_chunk(model, name, chunk, rows, bad, support_cut, as_table=True)
                written = {}
                for kind, answers in (("frame", frame), ("table", table)):
                    written[kind] = tmp_path / f"{kind}.parquet"
                    written[kind].write_bytes(serialise(answers, "parquet"))
                pd.testing.assert_frame_equal(
                    pd.read_parquet(written["table"]), pd.read_parquet(written["frame"]), check_exact=True
                )
                assert (
                    pq.read_schema(written["table"])
                    .remove_metadata()
                    .equals(pq.read_schema(written["frame"]).remove_metadata())
                )
                checked += len(frame)
    assert checked > 2 * 5000


def test_reading_ahead_keeps_the_order_raises_where_the_error_is_and_stops_with_the_reader():
    import threading

    from src.batch.core import read_ahead

    made: list[int] = []

    def chunks(fail_at: int | None = None):
        for i in range(6):
            if i == fail_at:
                raise OSError(f"chunk {i} cannot be read")
            made.append(i)
            yield i

    assert list(read_ahead(chunks())) == [0, 1, 2, 3, 4, 5]
    got = []
    with pytest.raises(OSError, match="chunk 3 cannot be read"):
        for item in read_ahead(chunks(fail_at=3)):
            got.append(item)
    assert got == [0, 1, 2]  # every chunk before the bad one was handed over first
    made.clear()
    reader = read_ahead(chunks())
    assert next(reader) == 0
    reader.close()  # the caller stops early: the one chunk being read is finished, then the thread ends
    assert made == [0, 1]
    assert not [t for t in threading.enumerate() if t.name.startswith("batch-reader")]


def _files_for_pandas(folder: Path, files: int = 3, rows: int = 60) -> None:
    """CSV files Arrow hands to pandas' reader: every third row has one field too many."""
    from src.synthetic import generate_students

    folder.mkdir()
    for f in range(files):
        students = generate_students(rows, seed=f).drop(columns=["math_score"])
        lines = [",".join(students.columns)]
        for i, row in enumerate(students.astype(str).itertuples(index=False)):
            lines.append(",".join(row) + (",99" if i % 3 == 1 else ""))
        (folder / f"{'abc'[f]}.csv").write_text("\n".join(lines) + "\n")


def test_rows_of_too_many_fields_are_found_whatever_the_caller_does_with_warnings(tmp_path):
    import warnings

    from src.batch.core import read_chunks

    _files_for_pandas(tmp_path / "in")
    got = []
    items = read_chunks(str(tmp_path / "in"), 7, ahead=True)
    for _ in range(30):  # the caller inside a warnings block of its own, as pandas is while it scores
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            item = next(items, None)
        if item is None:
            break
        got.append(item)
    reported: dict[str, list[int]] = {}
    for source, chunk, _rows, bad in got:
        counts = reported.setdefault(Path(source).name, [0, 0])
        counts[0] += len(chunk)
        counts[1] += len(bad)
    assert reported == {"a.csv": [40, 20], "b.csv": [40, 20], "c.csv": [40, 20]}


def test_pandas_reader_runs_on_the_callers_thread_after_before_parse(tmp_path):
    import threading

    import src.batch.core as core

    _files_for_pandas(tmp_path / "in", files=2)
    calls = []
    original = core.pd.read_csv

    def spied(*args, **kwargs):
        calls.append(("read_csv", threading.current_thread() is threading.main_thread()))
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(core.pd, "read_csv", spied)
        for _ in core.read_chunks(str(tmp_path / "in"), 25, ahead=True, before_parse=lambda: calls.append(("idle", True))):
            pass
    assert ("read_csv", True) in calls and ("read_csv", False) not in calls
    assert calls.count(("idle", True)) == 2 * (1 + 3)  # per file: before the reader is made, and each parse


def test_a_chunk_that_spans_two_of_arrows_blocks_is_scored_as_any_other(trained, tmp_path, monkeypatch):
    import src.batch.core as core
    from src.synthetic import generate_students

    (tmp_path / "in").mkdir()
    students = generate_students(3000, seed=5).drop(columns=["math_score"])
    students.insert(0, "student_id", [f"S{i:05d}" for i in range(len(students))])
    students.to_csv(tmp_path / "in" / "cohort.csv", index=False)
    outputs = {}
    for block in (core.ARROW_BLOCK_BYTES, 16_384):  # 16 KiB: each chunk of 700 rows spans several blocks
        monkeypatch.setattr(core, "ARROW_BLOCK_BYTES", block)
        out = tmp_path / f"out-{block}"
        result = run(
            BatchConfig(
                input=str(tmp_path / "in"),
                output=str(out),
                store=trained.store,
                format="parquet",
                support_cut=60.0,
                chunk_rows=700,
            )
        )
        assert result.predictions == 3000 and result.rejects == 0
        outputs[block] = read_output(out / "predictions", "parquet")
    first, second = outputs.values()
    pd.testing.assert_frame_equal(first, second)


def test_progress_lines_on_stderr_give_rows_per_second_and_the_expected_end(trained, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    run(BatchConfig(input=str(cohort.folder), output=str(out), store=trained.store, chunk_rows=500, progress_seconds=1e-9))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 5000 // 500 - 1, lines
    last = re.fullmatch(
        r"progress: ([\d,]+) rows in \d+ s, ([\d,]+) rows/s; about ([\d,]+) rows in all, expected end "
        r"\d\d:\d\d:\d\d \(in \d+ s\)",
        lines[-1],
    )
    assert last is not None, lines[-1]
    done, expected = (int(last.group(i).replace(",", "")) for i in (1, 3))
    assert 5000 <= done <= 5010 and 0.8 * 5010 < expected < 1.25 * 5010, lines[-1]  # 5,000 students, 10 broken rows


def test_quiet_and_help(trained, cohort, tmp_path, capsys):
    import subprocess
    import sys
    import time

    args = ["--input", str(cohort.folder), "--output", str(tmp_path / "out"), "--store", trained.store]
    assert main([*args, "--chunk-rows", "500", "--quiet"]) == 0
    assert "progress: " not in capsys.readouterr().err
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "src.pipeline.batch_predict", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and "examples:" in result.stdout, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"pandas", "pyarrow", "numpy", "sklearn", "boto3", "src.batch.core"}, elapsed
    for option in ("--input", "--output", "--engine", "--store", "--format", "--support-cut", "--chunk-rows", "--master"):
        assert re.search(rf"^  {option} \S+\s+\S", result.stdout, re.M) or re.search(
            rf"^  {option} \S+\n\s{{10,}}\S", result.stdout, re.M
        ), option
