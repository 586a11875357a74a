"""A cohort file for the batch tests: synthetic students with ids, ten broken rows, and what each must give."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.answers.columns import (
    BAND,
    BASELINE,
    BELOW_CUT,
    FACTOR_COLUMNS,
    HIGH,
    LEVEL,
    LOW,
    MATH_SCORE,
    MODEL_VERSION,
    TOP_FACTOR,
    WITHOUT_BACKGROUND,
)
from src.schema import FEATURE_NAMES, HEADER_ALIASES
from src.synthetic import generate_students

GOOD = {
    "gender": "female",
    "race_ethnicity": "group C",
    "parental_level_of_education": "high school",
    "lunch": "standard",
    "test_preparation_course": "none",
    "reading_score": "70",
    "writing_score": "71",
}
NUMBER = "must be a number between 0 and 100"

# (changes to a good row, or a raw line; the rejects it must give as (field, value, reason))
BROKEN: list[tuple[dict[str, str] | str, list[tuple[str, str, str]]]] = [
    ({"gender": "F"}, [("gender", "F", "must be one of: female, male")]),
    (
        {"race_ethnicity": "group F"},
        [("race_ethnicity", "group F", "must be one of: group A, group B, group C, group D, group E")],
    ),
    ({"parental_level_of_education": ""}, [("parental_level_of_education", "", "is required")]),
    ({"lunch": "free"}, [("lunch", "free", "must be one of: standard, free/reduced")]),
    ({"test_preparation_course": " no"}, [("test_preparation_course", " no", "must be one of: none, completed")]),
    ({"reading_score": "abc"}, [("reading_score", "abc", NUMBER)]),
    ({"writing_score": "101"}, [("writing_score", "101", NUMBER)]),
    ({"reading_score": "-1", "writing_score": "inf"}, [("reading_score", "-1", NUMBER), ("writing_score", "inf", NUMBER)]),
    ("{id},female,group C,high school,standard,none,70", [("writing_score", "", "is required")]),
    ("{id},female,group C,high school,standard,none,70,71,99", [("row", "", "has 9 fields, the header has 8")]),
]


@dataclass(frozen=True)
class Cohort:
    folder: Path
    students: pd.DataFrame  # the valid students, with student_id, source file name and row
    rejects: pd.DataFrame  # expected: source file name, row, student_id, field, value, reason


def write_cohort(folder: Path, n: int = 5000, seed: int = 7) -> Cohort:
    """Two CSV files (snake_case and the public download's headers), the broken rows spread through both."""
    folder.mkdir(parents=True, exist_ok=True)
    students = generate_students(n, seed=seed).drop(columns=["math_score"])
    students.insert(0, "student_id", [f"S{i:06d}" for i in range(n)])
    halves = {"a.csv": students.iloc[: n // 2], "b.csv": students.iloc[n // 2 :]}
    valid, rejects = [], []
    broken = iter(enumerate(BROKEN))
    for name, half in halves.items():
        header = ["student_id", *FEATURE_NAMES]
        shown = header if name == "a.csv" else [_public(c) for c in header]
        lines = [",".join(shown)]
        row = 0
        for k, (_, student) in enumerate(half.iterrows()):
            if k % 400 == 17:
                item = next(broken, None)
                if item is not None:
                    i, (change, expected) = item
                    sid = f"BAD{i:02d}"
                    if isinstance(change, str):
                        lines.append(change.format(id=sid))
                    else:
                        lines.append(",".join([sid, *(_quoted({**GOOD, **change}[c]) for c in FEATURE_NAMES)]))
                    row += 1
                    ident = "" if expected[0][0] == "row" else sid
                    rejects += [
                        {"source": name, "row": row, "student_id": ident, "field": f, "value": v, "reason": r}
                        for f, v, r in expected
                    ]
            lines.append(",".join(str(student[c]) for c in header))
            row += 1
            valid.append({**student.to_dict(), "source": name, "row": row})
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert next(broken, None) is None, "every broken row is placed"
    return Cohort(folder, pd.DataFrame(valid), pd.DataFrame(rejects))


def json_instances(students: pd.DataFrame) -> list[dict]:
    """The same students as the JSON API receives them: numbers as numbers."""
    return [{c: (int(r[c]) if c.endswith("_score") else r[c]) for c in FEATURE_NAMES} for r in students.to_dict("records")]


def read_output(folder: Path, fmt: str) -> pd.DataFrame:
    files = sorted(p for p in folder.iterdir() if p.suffix == f".{fmt}")
    if fmt == "parquet":
        frames = [pd.read_parquet(p) for p in files]
    else:
        frames = [pd.read_csv(p, dtype={"student_id": str, "value": str}, keep_default_na=False) for p in files]
    return pd.concat(frames, ignore_index=True)


def check_against_api(predictions: pd.DataFrame, cohort: Cohort, api: dict, pipeline) -> None:
    """Every valid student once, with the API's answer: 1e-9 before rounding, identical after.

    The band, the chance below the cut and the band without background are the API's; the factors are the
    API's (which it gives to 8 decimals), baseline plus their sum is the unclipped score; the top factor is the
    CSV answer's, word for word.
    """
    predictions = predictions.assign(source=predictions["source"].map(lambda s: Path(s).name))
    assert len(predictions) == len(cohort.students)
    merged = cohort.students.merge(
        predictions, on=["source", "row"], how="left", validate="one_to_one", suffixes=("", "_out"), indicator=True
    )
    assert (merged["_merge"] == "both").all(), merged.loc[merged["_merge"] != "both", ["source", "row"]]
    assert (merged["student_id"] == merged["student_id_out"]).all()
    assert (merged[MODEL_VERSION] == api["model_version"]).all()
    answers = api["predictions"]
    assert len(answers) == len(merged)
    for column, key in ((MATH_SCORE, None), (LOW, "low"), (HIGH, "high")):
        json_values = np.array([a[column] if key is None else a["interval"][key] for a in answers])
        assert np.array_equal(np.round(merged[column].to_numpy(float), 1), json_values), column
    assert (merged[LEVEL] == np.array([a["interval"]["level"] for a in answers])).all()
    assert merged[BAND].tolist() == [a["band"]["name"] for a in answers]
    assert merged[WITHOUT_BACKGROUND].tolist() == [a[WITHOUT_BACKGROUND] for a in answers]
    chances = merged[BELOW_CUT].to_numpy(float)
    assert np.array_equal(np.round(chances, 3), np.array([a[BELOW_CUT] for a in answers]))
    assert ((chances > 0) & (chances < 1)).all()
    assert merged[TOP_FACTOR].tolist() == api["top_factor"]
    assert np.abs(merged[BASELINE].to_numpy(float) - answers[0]["factors"]["baseline"]).max() <= 5e-9
    api_points = np.array([[a["factors"]["contributions"][n] for n in FEATURE_NAMES] for a in answers])
    assert np.abs(merged[list(FACTOR_COLUMNS)].to_numpy(float) - api_points).max() <= 5e-9 + 1e-12
    unclipped = np.array([a["factors"]["unclipped_score"] for a in answers])
    total = merged[BASELINE].to_numpy(float) + merged[list(FACTOR_COLUMNS)].to_numpy(float).sum(axis=1)
    assert np.abs(total - unclipped).max() <= 1e-6
    # Before rounding: each student alone (a batch of one) gives the same numbers to 1e-9.
    for i, record in enumerate(json_instances(cohort.students)):
        one = pipeline.predict([record])
        assert abs(merged[MATH_SCORE].iat[i] - one.scores[0]) <= 1e-9
        assert abs(merged[LOW].iat[i] - one.low[0]) <= 1e-9 and abs(merged[HIGH].iat[i] - one.high[0]) <= 1e-9


def check_rejects(rejects: pd.DataFrame, cohort: Cohort) -> None:
    got = rejects.assign(source=rejects["source"].map(lambda s: Path(s).name))
    got = got[["source", "row", "student_id", "field", "value", "reason"]].fillna("")
    got["row"] = got["row"].astype(int)
    key = ["source", "row", "field"]
    got = got.sort_values(key).reset_index(drop=True)
    expected = cohort.rejects.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.astype(str), expected.astype(str))


def _public(name: str) -> str:
    return {v: k for k, v in HEADER_ALIASES.items()}.get(name, name)


def _quoted(value: str) -> str:
    return f'"{value}"' if "," in value or value != value.strip() else value


def upload_cohort(s3, bucket: str, cohort: Cohort, prefix: str) -> None:
    """The cohort's two files under an S3 prefix, beside an object that is not a CSV file."""
    s3.create_bucket(Bucket=bucket)
    for name in ("a.csv", "b.csv"):  # the two header styles, one per object
        s3.upload_file(str(cohort.folder / name), bucket, f"{prefix}/{name}")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/readme.txt", Body=b"not a csv")


def download_prefix(s3, bucket: str, prefix: str, folder: Path) -> list[str]:
    """Every object under the prefix, into the folder (keys relative to the prefix); returns the keys."""
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")["Contents"])
    for key in keys:
        target = folder / key.removeprefix(f"{prefix}/")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return keys


def write_labeled(path: Path, n: int = 600, seed: int = 11) -> pd.DataFrame:
    """A class file in the public download's headers with the real math score: a few blank, two broken."""
    students = generate_students(n, seed).astype(object)
    students.loc[::9, "math_score"] = ""  # not known yet
    students.loc[5, "math_score"] = "7,5"  # broken: a decimal comma
    students.loc[17, "math_score"] = "101"  # broken: out of range
    renamed = students.rename(columns={v: k for k, v in HEADER_ALIASES.items()})
    renamed.to_csv(path, index=False)
    return students


def check_evaluation(out: Path, fmt: str = "csv") -> dict:
    """evaluation.json recomputed from the written predictions, independently of the code that wrote it."""
    evaluation = json.loads((out / "evaluation.json").read_text())
    predictions = read_output(out / "predictions", fmt)
    real = pd.to_numeric(predictions["real_math_score"], errors="coerce")
    labeled = real.notna()
    error = predictions["math_score"][labeled] - real[labeled]
    low, high = predictions["interval_low"][labeled], predictions["interval_high"][labeled]
    inside = (low <= real[labeled]) & (real[labeled] <= high)
    overall = evaluation["overall"]
    assert overall["students"] == int(labeled.sum())
    assert overall["mae"] == pytest.approx(float(error.abs().mean()), abs=2e-6)
    assert overall["bias"] == pytest.approx(float(error.mean()), abs=2e-6)
    assert overall["coverage"] == pytest.approx(float(inside.mean()), abs=2e-6)
    return evaluation
