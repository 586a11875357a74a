import io
import json
from pathlib import Path

import pytest

from src import schema
from src.pipeline.train_pipeline import main
from src.storage import sha256_file
from tests.conftest import FAST_MODELS

FAST = ["--synthetic-rows", "300", "--cv-folds", "3", "--models", ",".join(FAST_MODELS), "--no-tracking"]


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}


def test_manifest_lists_every_file_with_hash_versions_and_metrics(trained):
    manifest = trained.manifest
    directory = trained.manifest_path.parent
    assert set(manifest["files"]) == {
        "preprocessor.pkl", "model.pkl", "metrics.json", "raw.csv", "train.csv", "test.csv", "rejected.csv",
        "reference_profile.json",
    }
    for name, entry in manifest["files"].items():
        assert sha256_file(directory / name) == entry["sha256"]
    assert manifest["features"] == schema.describe()["features"] and manifest["target"]["name"] == "math_score"
    assert set(manifest["versions"]) >= {"python", "scikit-learn", "dill"}
    assert manifest["data"]["fingerprint"] == trained.ingestion.fingerprint
    assert manifest["model_version"] and manifest["created_at"] and "r2" in manifest["metrics"]["test"]
    assert not list(directory.glob(".staging-*"))


def test_cli_prints_the_table_and_exits_zero(tmp_path):
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), *FAST], out=out) == 0
    text = out.getvalue()
    for name in FAST_MODELS:
        assert name in text
    assert "<- chosen" in text and "test:     R2" in text and "coverage" in text
    assert json.loads((tmp_path / "manifest.json").read_text())["data"]["source"] == "synthetic"


def test_gated_run_leaves_previous_artifacts_byte_identical(tmp_path):
    assert main(["--artifacts-dir", str(tmp_path), *FAST], out=io.StringIO()) == 0
    before = snapshot(tmp_path)
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), "--seed", "7", "--min-r2", "0.999", *FAST], out=out) == 1
    assert out.getvalue().startswith("training failed: best model") and out.getvalue().count("\n") == 1
    assert snapshot(tmp_path) == before


def test_bad_data_run_leaves_previous_artifacts_and_keeps_rejected_rows(tmp_path):
    assert main(["--artifacts-dir", str(tmp_path), *FAST], out=io.StringIO()) == 0
    before = snapshot(tmp_path)
    bad = tmp_path.parent / "bad.csv"
    bad.write_text("gender,race_ethnicity,parental_level_of_education,lunch,test_preparation_course,"
                   "math_score,reading_score,writing_score\n" + "robot,group A,high school,standard,none,1,2,3\n" * 60)
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), "--data", str(bad), *FAST], out=out) == 1
    assert "60 of 60 rows" in out.getvalue()
    assert snapshot(tmp_path) == before
    assert (tmp_path / "failed-run" / "rejected.csv").is_file()


def test_unreadable_source_is_one_line(tmp_path):
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), "--data", str(tmp_path / "nope.csv"), *FAST], out=out) == 1
    assert out.getvalue().startswith("training failed: cannot read") and out.getvalue().count("\n") == 1
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize("argv", [["--test-size", "1.5"], ["--models", "nonsense"]])
def test_bad_arguments_fail_with_a_reason(tmp_path, argv):
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), *FAST, *argv], out=out) != 0
    assert out.getvalue().startswith("training failed:")


def test_artifact_files_are_readable_by_other_users(trained):
    import stat

    files = [p for p in trained.manifest_path.parent.rglob("*") if p.is_file()]
    assert files
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert all(mode & 0o044 == 0o044 and mode & 0o022 == 0 for mode in modes.values()), modes
