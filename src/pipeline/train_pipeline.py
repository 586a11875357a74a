"""Train a candidate, put it into the model store, and let the one decision promote it or keep the champion.

    python -m src.pipeline.train_pipeline [--data SOURCE] [--store STORE] [--test-size F] [--seed N]
        [--exclude-features a,b] [--params params.yaml] [--reports-dir DIR]

Without ``--data``: ``data/students.csv`` if present, else the synthetic cohort. ``STORE`` is a folder or
``s3://bucket/prefix`` (``--artifacts-dir`` is the same option). The run's student records (raw, train, test
and rejected rows) stay in the training-runs folder, never in the store. Prints ``promoted <version>`` or
``kept <champion>: <reason>`` (both exit 0); a crash or a candidate below the quality gate exits non-zero and
leaves the store's pointer byte-identical.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from src.components.data_ingestion import (
    IngestionError,
)
from src.components.data_transformation import (
    check_excluded,
)
from src.components.group_metrics import DEFAULT_GROUP_TOLERANCE
from src.components.model_trainer import (
    QualityGateError,
)
from src.config import AppConfig, ConfigError, cache_dir_from_env, configure_logging, keys_from_env
from src.lifecycle.decision import DEFAULT_KEEP_VERSIONS, DEFAULT_TOLERANCE, DecisionConfig
from src.lifecycle.reports import ParamsError, read_params
from src.lifecycle.tracking import TrackingError, tracking_uri
from src.lifecycle.training import (
    TrainingConfig,
    TrainingError,
    TrainingResult,
    train,
    train_tracked,
)
from src.schema import SchemaError
from src.signing import SigningKeyError
from src.storage import ArtifactError, DataSourceError


def format_report(result: TrainingResult) -> str:
    metrics = result.trainer.metrics
    lines = [f"{'candidate':<20} {'CV R2 mean':>10} {'CV R2 std':>10}"]
    for c in result.trainer.candidates:
        mark = "  <- chosen" if c.name == result.trainer.model_name else ""
        lines.append(f"{c.name:<20} {c.cv_r2_mean:>10.4f} {c.cv_r2_std:>10.4f}{mark}")
    test = metrics["test"]
    data = result.manifest["data"]
    lines += [
        "",
        f"data:     {data['source']} ({data['rows_valid']} valid rows, {data['rows_rejected']} rejected)",
        f"model:    {result.trainer.model_name} {metrics['params']}",
        f"test:     R2 {test['r2']:.4f}  MAE {test['mae']:.3f}  RMSE {test['rmse']:.3f}",
        f"interval: {metrics['interval']['level']:.0%} +/- {metrics['interval']['half_width']:.2f} points, "
        f"test coverage {test['interval_coverage']:.3f}",
        below_cut_line(metrics["below_cut"]),
        f"version:  {result.version} in {result.store} (records of the run: {result.run_dir})",
    ]
    if result.manifest.get("excluded_features"):
        lines.insert(-1, f"excluded: {', '.join(result.manifest['excluded_features'])} (not seen by the model)")
    return "\n".join(lines) + "\n"


def below_cut_line(report: dict) -> str:
    """The chance below the cut on the test split, ours beside the logistic baseline's."""
    ours = report["model"]
    line = f"below {report['cut']:g}: Brier {ours['brier']:.4f}  ECE {ours['ece']:.4f} (this model's chance)"
    base = report["baseline"]
    if base is None:
        return line + "; no logistic baseline (the training split lies on one side of the cut)"
    return line + f"; logistic baseline: Brier {base['brier']:.4f}  ECE {base['ece']:.4f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline.train_pipeline", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", help="CSV path, http(s) URL or s3://bucket/key (default: data/students.csv, else the synthetic cohort)"
    )
    parser.add_argument(
        "--store",
        "--artifacts-dir",
        dest="store",
        default="artifacts",
        help="model store: a folder or s3://bucket/prefix (default: artifacts)",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        help="where each run's student records stay (default: STORE/training-runs, or ./training-runs for an S3 store)",
    )
    parser.add_argument(
        "--population",
        default="",
        help="whose students the data describes, e.g. district-7 (default: students; the synthetic cohort is "
        "'synthetic'): a model of another population never replaces the champion without promote --other-population",
    )
    parser.add_argument("--test-size", type=float, default=0.2, help="share of students held out for testing (default 0.2)")
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the split, the search and the synthetic cohort (default 42)"
    )
    parser.add_argument("--cv-folds", type=int, default=5, help="cross-validation folds of the model search (default 5)")
    parser.add_argument("--min-r2", type=float, default=0.6, help="quality gate on test R2 (default 0.6)")
    parser.add_argument(
        "--support-cut",
        type=float,
        default=AppConfig.support_cut,
        help="the cut at which the chance of a score below it is measured on the test split "
        f"(default {AppConfig.support_cut:g}, as SUPPORT_CUT's)",
    )
    parser.add_argument(
        "--synthetic-rows", type=int, default=1000, help="students of the synthetic cohort, without data (default 1000)"
    )
    parser.add_argument("--n-jobs", type=int, default=-1, help="parallel jobs for the model search (default: all cores)")
    parser.add_argument("--models", help="comma-separated candidate names (default: all)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder)",
    )
    parser.add_argument(
        "--champion-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"R2 the new model may lose against the champion and still replace it (default {DEFAULT_TOLERANCE})",
    )
    parser.add_argument(
        "--keep-versions",
        type=int,
        default=DEFAULT_KEEP_VERSIONS,
        help=f"model sets kept in the store (default {DEFAULT_KEEP_VERSIONS}; never fewer than 2)",
    )
    parser.add_argument(
        "--exclude-features",
        help="comma-separated features the model must not see, e.g. "
        "gender,race_ethnicity (the API still accepts and validates them)",
    )
    parser.add_argument(
        "--group-tolerance",
        type=float,
        default=DEFAULT_GROUP_TOLERANCE,
        help="MAE points the worst student group may lose against the champion's worst group "
        f"(default {DEFAULT_GROUP_TOLERANCE})",
    )
    parser.add_argument(
        "--params",
        type=Path,
        help="YAML file whose 'train' section sets these options (options given on the command line win); see params.yaml",
    )
    parser.add_argument(
        "--reports-dir",
        type=Path,
        help="also copy metrics.json, the plots and the model set (into DIR/model) to this fixed folder, e.g. for DVC",
    )
    parser.add_argument(
        "--experiment",
        type=_yes_no,
        nargs="?",
        const=True,
        default=False,
        metavar="true|false",
        help="train, register and report the decision, but never move the champion (dvc.yaml's and MLproject's "
        "runs are experiments; promote one with python -m src.pipeline.promote)",
    )
    parser.add_argument("--shuffle-labels", action="store_true", help=argparse.SUPPRESS)
    return parser


def _yes_no(value: str | bool) -> bool:
    """A true/false option value as a YAML file or an MLproject parameter gives it."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if value.strip().lower() not in words:
        raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")
    return words[value.strip().lower()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; a ``--params`` file's ``train`` section gives the defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.params is not None:
        parser.set_defaults(**read_params(args.params, set(vars(parser.parse_args([]))) - {"params"}))
        args = parser.parse_args(argv)
    return args


class UsageError(ValueError):
    """A command-line value the command cannot use."""


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    """The training configuration the command line (and MODEL_SIGNING_KEY, MODEL_VERIFY_KEYS) asks for."""
    excluded = tuple(name.strip() for name in (args.exclude_features or "").split(",") if name.strip())
    try:
        check_excluded(excluded)
    except SchemaError as err:
        raise UsageError(f"--exclude-features: {err}") from err
    if not 0.0 < args.test_size < 1.0:
        raise UsageError("--test-size must be between 0 and 1")
    if not 0.0 < args.support_cut <= 100.0:
        raise UsageError("--support-cut must be a score above 0 and at most 100")
    if args.keep_versions < 2:
        raise UsageError("--keep-versions must be at least 2 (the champion and the previous one)")
    try:
        signing, verify_keys = keys_from_env()
    except SigningKeyError as err:
        raise UsageError(str(err)) from err
    return TrainingConfig(
        store=args.store,
        data=args.data,
        test_size=args.test_size,
        seed=args.seed,
        cv_folds=args.cv_folds,
        synthetic_rows=args.synthetic_rows,
        n_jobs=args.n_jobs,
        tracking=not args.no_tracking,
        shuffle_labels=args.shuffle_labels,
        candidates=tuple(args.models.split(",")) if args.models else None,
        decision=DecisionConfig(
            min_test_r2=args.min_r2,
            tolerance=args.champion_tolerance,
            keep_versions=args.keep_versions,
            group_tolerance=args.group_tolerance,
            experiment=_yes_no(args.experiment),
        ),
        exclude_features=excluded,
        reports_dir=args.reports_dir,
        support_cut=args.support_cut,
        population=args.population or "",
        runs_dir=args.runs_dir,
        cache_dir=cache_dir_from_env(),
        signing_key=signing,
        verify_keys=verify_keys,
    )


def run(config: TrainingConfig, uri: str | None, out: TextIO) -> int:
    """Train and decide; print the report and the decision. 0: promoted or kept; 1: failed or refused."""
    try:
        result = train_tracked(config, uri or tracking_uri()) if config.tracking else train(config)
    except (
        IngestionError,
        QualityGateError,
        SchemaError,
        DataSourceError,
        ArtifactError,
        TrainingError,
        TrackingError,
        ConfigError,
    ) as err:
        out.write(f"training failed: {err}\n")
        return 1
    out.write(format_report(result))
    out.write(result.decision.line() + "\n")
    return 1 if result.decision.action == "refused" else 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        args = parse_args(argv)
    except ParamsError as err:
        out.write(f"training failed: {err}\n")
        return 2
    configure_logging("INFO")
    try:
        config = config_from_args(args)
    except UsageError as err:
        out.write(f"training failed: {err}\n")
        return 2
    return run(config, args.tracking_uri, out)


if __name__ == "__main__":
    raise SystemExit(main())
