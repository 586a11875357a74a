"""With and without protected attributes: R² and error by student group, measured on the same data and split.

    .venv/bin/python bench/protected_attributes.py [--data ../shared/data/stud.csv] [--exclude gender,race_ethnicity]

Trains twice with the defaults (every candidate, 5-fold CV, seed 42): once on every feature, once with
``--exclude-features``; both use the same test split. Prints overall R², MAE and coverage, then per group
of each excluded feature (and of lunch, a proxy of income) the MAE, bias and coverage of both models, and
the per-group check's verdict of the second against the first. Also lists any group of at least 100 test
rows whose interval coverage lies outside [0.85, 0.95] (the condition for a group-conditional interval).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.components.group_metrics import coverage_outside, group_check  # noqa: E402
from src.lifecycle.training import TrainingConfig, train  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stud.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--exclude", default="gender,race_ethnicity")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    excluded = tuple(args.exclude.split(","))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, exclude in (("all features", ()), (f"without {args.exclude}", excluded)):
            started = time.perf_counter()
            result = train(
                TrainingConfig(
                    store=Path(tmp) / label.replace(" ", "_"), data=args.data, tracking=False, exclude_features=exclude
                )
            )
            runs[label] = (result.trainer.metrics, time.perf_counter() - started)
    (with_label, (with_m, _)), (without_label, (without_m, _)) = runs.items()
    print(f"data: {args.data}, test split {with_m['rows']['test']} students, seed 42\n")
    print("| model | chosen | test R² | MAE | 90 % coverage | training s |")
    print("|---|---|---|---|---|---|")
    for label, (metrics, seconds) in runs.items():
        test = metrics["test"]
        print(
            f"| {label} | {metrics['model']} | {test['r2']:.3f} | {test['mae']:.2f} | "
            f"{test['interval_coverage']:.3f} | {seconds:.0f} |"
        )
    print()
    print("| group | n | MAE with | MAE without | bias with | bias without | coverage with | coverage without |")
    print("|---|---|---|---|---|---|---|---|")
    for feature in (*excluded, "lunch"):
        for group, row in with_m["groups"][feature].items():
            other = without_m["groups"][feature][group]
            if row["mae"] is None:
                continue
            small = " (small)" if row["small"] else ""
            print(
                f"| {feature} = {group}{small} | {row['count']} | {row['mae']:.2f} | {other['mae']:.2f} | "
                f"{row['bias']:+.2f} | {other['bias']:+.2f} | {row['coverage']:.3f} | {other['coverage']:.3f} |"
            )
    print()
    verdict = group_check(without_m["groups"], with_m["groups"], tolerance=0.5)
    print(f"per-group check of '{without_label}' against '{with_label}' (tolerance 0.5): {verdict or 'passes'}")
    for label, (metrics, _) in runs.items():
        large = [
            f"{f}={g} n={r['count']} {r['coverage']:.3f}"
            for f, rows in metrics["groups"].items()
            for g, r in rows.items()
            if r["count"] >= 100
        ]
        print(f"groups of >= 100 test rows, {label}: {'; '.join(large)}")
        outside = coverage_outside(metrics["groups"])
        print(f"groups of >= 100 test rows with coverage outside [0.85, 0.95], {label}: {outside or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
