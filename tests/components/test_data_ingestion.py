import http.server
import threading
from pathlib import Path

import pandas as pd
import pytest

from src.components.data_ingestion import DataIngestion, DataIngestionConfig, IngestionError
from src.synthetic import generate_students

KAGGLE_HEADERS = {
    "race_ethnicity": "race/ethnicity",
    "parental_level_of_education": "parental level of education",
    "test_preparation_course": "test preparation course",
    "math_score": "math score",
    "reading_score": "reading score",
    "writing_score": "writing score",
}


def write_csv(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_synthetic_source_splits_and_fingerprints(tmp_path):
    out = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path, synthetic_rows=200)).run()
    assert (out.rows_read, out.rows_valid, out.rows_rejected) == (200, 200, 0)
    assert len(out.train) == 160 and len(out.test) == 40
    for path in (out.raw_path, out.train_path, out.test_path, out.rejected_path):
        assert path.is_file()
    again = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path / "b", synthetic_rows=200)).run()
    assert again.fingerprint == out.fingerprint and len(out.fingerprint) == 64


def test_public_download_headers_give_the_same_data(tmp_path):
    students = generate_students(120, seed=5)
    snake = write_csv(tmp_path / "snake.csv", students)
    kaggle = write_csv(tmp_path / "kaggle.csv", students.rename(columns=KAGGLE_HEADERS))
    a = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path / "a", source=snake)).run()
    b = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path / "b", source=kaggle)).run()
    assert a.fingerprint == b.fingerprint


def test_bad_rows_go_to_rejected_csv_with_reason(tmp_path):
    students = generate_students(100, seed=6).astype(object)
    students.loc[3, "reading_score"] = 140
    students.loc[7, "lunch"] = "none"
    out = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path, source=write_csv(tmp_path / "s.csv", students))).run()
    assert (out.rows_valid, out.rows_rejected) == (98, 2)
    rejected = pd.read_csv(out.rejected_path)
    assert rejected["line"].tolist() == [5, 9]  # rows 3 and 7 after the header, as an editor numbers lines
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert "140" in lines[5 - 1].split(",") and "none" in lines[9 - 1].split(",")
    assert rejected["reason"].tolist() == [
        "reading_score: must be a number between 0 and 100",
        "lunch: must be one of: standard, free/reduced",
    ]
    assert rejected.loc[0, "reading_score"] == 140  # kept as given, not fixed


def test_refuses_when_too_many_rows_are_rejected(tmp_path):
    students = generate_students(100, seed=7).astype(object)
    students.loc[:29, "gender"] = "unknown"
    with pytest.raises(IngestionError, match=r"30 of 100 rows \(30%\).*rejected.csv"):
        DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path, source=write_csv(tmp_path / "s.csv", students))).run()
    assert len(pd.read_csv(tmp_path / "rejected.csv")) == 30


def test_refuses_too_few_valid_rows(tmp_path):
    source = write_csv(tmp_path / "s.csv", generate_students(20, seed=8))
    with pytest.raises(IngestionError, match="only 20 valid rows"):
        DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path, source=source)).run()


def test_reads_an_http_url(tmp_path):
    write_csv(tmp_path / "students.csv", generate_students(80, seed=9))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/students.csv"
        out = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path / "out", source=url)).run()
    finally:
        server.shutdown()
        server.server_close()
    assert out.rows_valid == 80 and out.source == url


def test_rejected_lines_are_the_file_lines_with_blank_lines_and_quoted_newlines(tmp_path):
    students = generate_students(60, seed=8).astype(object)
    students.loc[10, "lunch"] = "none"
    students.loc[40, "lunch"] = "also\nnone"  # a quoted value spanning two lines
    students.loc[50, "gender"] = "robot"
    text = students.to_csv(index=False)
    rows = text.splitlines(keepends=True)
    path = tmp_path / "gaps.csv"
    path.write_text("".join(rows[:5]) + "\n   \n" + "".join(rows[5:]))  # two blank lines after line 5
    out = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path / "a", source=str(path))).run()
    rejected = pd.read_csv(out.rejected_path)
    file_lines = path.read_text().split("\n")
    for line, gender, lunch in zip(rejected["line"], rejected["gender"], rejected["lunch"], strict=True):
        assert file_lines[line - 1].startswith(f"{gender},"), (line, file_lines[line - 1])
        assert lunch.split("\n")[0] in file_lines[line - 1]
    assert rejected["line"].tolist() == [10 + 2 + 2, 40 + 2 + 2, 50 + 2 + 3]
