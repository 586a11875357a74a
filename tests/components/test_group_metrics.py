"""Errors by student group at training, and the per-group check of the promotion decision."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from src.components.data_ingestion import DataIngestion, DataIngestionConfig
from src.components.data_transformation import DataTransformation, DataTransformationConfig
from src.components.group_metrics import coverage_outside, group_check, group_metrics, worst_group
from src.components.model_trainer import ModelTrainer, ModelTrainerConfig, default_candidates
from src.schema import CATEGORICAL_FEATURES, TARGET


def test_group_metrics_match_plain_pandas_and_list_every_category():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f.name: rng.choice(f.categories, size=300) for f in CATEGORICAL_FEATURES})
    frame.loc[frame["race_ethnicity"] == "group A", "race_ethnicity"] = "group B"  # one category absent
    y = rng.uniform(20, 90, 300)
    pred = y + rng.normal(0, 5, 300)
    table = group_metrics(frame, y, pred, 8.0)
    assert set(table) == {f.name for f in CATEGORICAL_FEATURES}
    for feature in CATEGORICAL_FEATURES:
        assert list(table[feature.name]) == list(feature.categories)
    err = pd.Series(pred - y)
    for group, rows in frame.groupby("lunch").groups.items():
        row = table["lunch"][group]
        assert row["count"] == len(rows)
        assert row["mae"] == pytest.approx(err[rows].abs().mean())
        assert row["bias"] == pytest.approx(err[rows].mean())
        assert row["coverage"] == pytest.approx((err[rows].abs() <= 8.0).mean())
    assert table["race_ethnicity"]["group A"] == {"count": 0, "mae": None, "bias": None, "coverage": None, "small": True}
    json.dumps(table)  # stored as JSON as it is


def test_small_groups_are_flagged_not_hidden():
    frame = pd.DataFrame({f.name: [f.categories[0]] * 40 + [f.categories[1]] * 10 for f in CATEGORICAL_FEATURES})
    table = group_metrics(frame, np.zeros(50), np.ones(50), 2.0)
    assert table["gender"]["female"]["small"] is False and table["gender"]["male"]["small"] is True
    assert table["gender"]["male"]["mae"] == 1.0 and table["gender"]["male"]["bias"] == 1.0


def test_per_row_half_widths_give_each_group_its_coverage():
    frame = pd.DataFrame({f.name: [f.categories[0]] * 2 + [f.categories[1]] * 2 for f in CATEGORICAL_FEATURES})
    table = group_metrics(frame, np.zeros(4), np.full(4, 3.0), np.array([1.0, 1.0, 5.0, 5.0]))
    assert table["gender"]["female"]["coverage"] == 0.0 and table["gender"]["male"]["coverage"] == 1.0


def _table(**maes):
    return {
        "race_ethnicity": {
            g: {"count": n, "mae": m, "bias": 0.0, "coverage": 0.9, "small": n < 30} for g, (n, m) in maes.items()
        }
    }


def test_group_check_passes_within_tolerance_and_refuses_beyond_it_naming_the_group():
    champion = _table(**{"group B": (50, 4.0), "group C": (60, 4.5)})
    assert group_check(_table(**{"group B": (50, 4.2), "group C": (60, 4.9)}), champion, tolerance=0.5) is None
    reason = group_check(_table(**{"group B": (50, 6.0), "group C": (60, 4.5)}), champion, tolerance=0.5)
    assert reason is not None and "race_ethnicity=group B" in reason and "6.00" in reason and "4.50" in reason


def test_group_check_ignores_small_groups_and_passes_without_a_champion_table():
    champion = _table(**{"group B": (50, 4.0)})
    assert group_check(_table(**{"group A": (12, 20.0), "group B": (50, 4.1)}), champion, tolerance=0.5) is None
    assert worst_group(_table(**{"group A": (12, 20.0), "group B": (50, 4.1)})) == ("race_ethnicity", "group B", 4.1)
    assert group_check(champion, None, tolerance=0.5) is None
    assert "no per-group metrics" in group_check(None, champion, tolerance=0.5)


def test_coverage_outside_finds_only_large_groups_outside_the_band():
    table = {
        "gender": {"female": {"count": 120, "coverage": 0.80}, "male": {"count": 80, "coverage": 0.70}},
        "lunch": {"standard": {"count": 130, "coverage": 0.90}, "free/reduced": {"count": 70, "coverage": None}},
    }
    assert coverage_outside(table) == [("gender", "female", 120, 0.80)]


def _train(tmp_path, shift_group: str | None):
    """Ridge on 1,000 synthetic students; optionally the training labels of one group raised by 15 points."""
    ingestion = DataIngestion(DataIngestionConfig(artifacts_dir=tmp_path, synthetic_rows=1000)).run()
    if shift_group is not None:
        train = ingestion.train.copy()
        rows = train["race_ethnicity"] == shift_group
        train.loc[rows, TARGET.name] = train.loc[rows, TARGET.name] + 15.0
        ingestion = dataclasses.replace(ingestion, train=train)  # the test split keeps the true labels
    transformed = DataTransformation(DataTransformationConfig(artifacts_dir=tmp_path)).run(ingestion)
    ridge = tuple(c for c in default_candidates(42) if c.name == "ridge")
    trainer = ModelTrainer(ModelTrainerConfig(artifacts_dir=tmp_path, cv_folds=3, candidates=ridge, n_jobs=1))
    return trainer.run(transformed).metrics


def test_a_model_made_worse_for_one_group_is_refused_naming_that_group(tmp_path):
    champion = _train(tmp_path / "champion", None)
    candidate = _train(tmp_path / "candidate", "group C")
    assert candidate["groups"]["race_ethnicity"]["group C"]["count"] >= 30
    assert group_check(champion["groups"], champion["groups"], tolerance=0.5) is None
    reason = group_check(candidate["groups"], champion["groups"], tolerance=0.5)
    assert reason is not None and "race_ethnicity=group C" in reason, reason
    # the overall figures alone would hide it less clearly: the group's bias is the shift
    assert candidate["groups"]["race_ethnicity"]["group C"]["bias"] > 10


def test_metrics_json_and_manifest_carry_the_groups(trained):
    metrics = json.loads((trained.manifest_path.parent / "metrics.json").read_text())
    assert metrics["groups"] == trained.manifest["groups"]
    total = sum(row["count"] for row in metrics["groups"]["gender"].values())
    assert total == metrics["rows"]["test"]
