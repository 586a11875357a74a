import io
import json
from pathlib import Path

import pandas as pd
import pytest

from src import schema
from src.pipeline.train_pipeline import main
from src.storage import sha256_file
from tests.conftest import FAST_MODELS

FAST = ["--synthetic-rows", "300", "--cv-folds", "3", "--models", ",".join(FAST_MODELS), "--no-tracking"]


def snapshot(store: Path) -> dict[str, str]:
    """Every file of the store's served part: the pointer and the version folders (not the run records)."""
    return {
        str(p.relative_to(store)): sha256_file(p)
        for p in sorted(store.rglob("*"))
        if p.is_file() and "training-runs" not in p.parts and "decisions" not in p.parts
    }


def pointer(store: Path) -> dict:
    return json.loads((store / "champion.json").read_text())


def test_manifest_lists_every_file_with_hash_versions_and_metrics(trained):
    manifest = trained.manifest
    directory = trained.manifest_path.parent
    assert directory.name == manifest["model_version"] and directory.parent == Path(trained.store)
    assert set(manifest["files"]) == {
        "preprocessor.pkl",
        "model.pkl",
        "metrics.json",
        "reference_profile.json",
        "check.csv",
        "predicted_vs_actual.png",
        "error_by_group.png",
    }
    for name, entry in manifest["files"].items():
        assert sha256_file(directory / name) == entry["sha256"]
    assert manifest["features"] == schema.describe()["features"] and manifest["target"]["name"] == "math_score"
    assert set(manifest["versions"]) >= {"python", "scikit-learn", "dill"}
    assert manifest["data"]["fingerprint"] == trained.ingestion.fingerprint
    assert manifest["model_version"] and manifest["created_at"] and "r2" in manifest["metrics"]["test"]
    assert not list(directory.parent.glob(".staging-*"))
    assert {p.name for p in trained.run_dir.iterdir()} >= {"raw.csv", "train.csv", "test.csv", "rejected.csv"}
    assert pointer(directory.parent)["model_version"] == manifest["model_version"]


def test_the_set_carries_no_student_records(trained):
    """The only CSV in a set holds generated students with the answers the model gave them at training."""
    directory = trained.manifest_path.parent
    assert sorted(p.name for p in directory.glob("*.csv")) == ["check.csv"]
    check = pd.read_csv(directory / "check.csv", keep_default_na=False)
    raw = pd.read_csv(trained.run_dir / "raw.csv", keep_default_na=False)
    keys = list(schema.FEATURE_NAMES)
    assert not check[keys].merge(raw[keys], on=keys).shape[0], "no check row is a training record"
    assert set(check.columns) == {*keys, "expected"}


def test_cli_prints_the_table_and_exits_zero(tmp_path):
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), *FAST], out=out) == 0
    text = out.getvalue()
    for name in FAST_MODELS:
        assert name in text
    assert "<- chosen" in text and "test:     R2" in text and "coverage" in text
    version = pointer(tmp_path)["model_version"]
    assert text.splitlines()[-1].startswith(f"promoted {version}: first model in the store")
    assert json.loads((tmp_path / version / "manifest.json").read_text())["data"]["source"] == "synthetic"


def test_gated_run_leaves_the_pointer_byte_identical(tmp_path):
    assert main(["--store", str(tmp_path), *FAST], out=io.StringIO()) == 0
    before = (tmp_path / "champion.json").read_bytes()
    out = io.StringIO()
    assert main(["--store", str(tmp_path), "--seed", "7", "--min-r2", "0.999", *FAST], out=out) == 1
    last = out.getvalue().splitlines()[-1]
    assert last.startswith(f"kept {pointer(tmp_path)['model_version']}: candidate ") and "below the quality gate" in last
    assert (tmp_path / "champion.json").read_bytes() == before


def test_bad_data_run_leaves_previous_artifacts_and_keeps_rejected_rows(tmp_path):
    assert main(["--artifacts-dir", str(tmp_path), *FAST], out=io.StringIO()) == 0
    before = snapshot(tmp_path)
    bad = tmp_path.parent / "bad.csv"
    bad.write_text(
        "gender,race_ethnicity,parental_level_of_education,lunch,test_preparation_course,"
        "math_score,reading_score,writing_score\n" + "robot,group A,high school,standard,none,1,2,3\n" * 60
    )
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), "--data", str(bad), *FAST], out=out) == 1
    assert "60 of 60 rows" in out.getvalue()
    assert snapshot(tmp_path) == before
    rejected = tmp_path / "training-runs" / "failed-run" / "rejected.csv"
    assert out.getvalue().rstrip().endswith(str(rejected)), "the message names where the rejected rows are"
    assert rejected.is_file()


def test_unreadable_source_is_one_line(tmp_path):
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), "--data", str(tmp_path / "nope.csv"), *FAST], out=out) == 1
    assert out.getvalue().startswith("training failed: cannot read") and out.getvalue().count("\n") == 1
    assert not (tmp_path / "champion.json").exists()


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
