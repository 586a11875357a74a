"""Publish a verified local model version into an S3 store, through the same decision as training.

    python -m src.pipeline.publish --artifacts-dir artifacts --to s3://bucket/prefix [--version V]

The version (default: the local champion) is copied whole into ``prefix/<version>/``, then the decision
compares it with the S3 store's champion on the version's own test split (kept with the run's records in the
training-runs folder) and moves ``prefix/champion.json`` only if it wins. Prints ``promoted <version>`` or
``kept <champion>: <reason>``. boto3 honours ``AWS_ENDPOINT_URL`` for S3-compatible stores.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import pandas as pd

from src.config import configure_logging, keys_from_env
from src.lifecycle.decision import DEFAULT_TOLERANCE, Decision, DecisionConfig, decide
from src.signing import SigningKey, SigningKeyError
from src.storage import ArtifactError, DataSourceError, is_s3
from src.store import TRAINING_RUNS, LocalStore, S3Store, StoreError, check_version


def publish(
    local: LocalStore,
    destination: S3Store,
    version: str | None = None,
    *,
    runs_dir: Path | None = None,
    config: DecisionConfig = DecisionConfig(),
    keys: Sequence[SigningKey] = (),
) -> Decision:
    """Copy a verified local version into the S3 store, then decide there."""
    version = check_version(version) if version else local.champion().model_version
    directory, _ = local.open_verified(version, keys)
    runs_dir = runs_dir or local.root / TRAINING_RUNS
    test_path = runs_dir / version / "test.csv"
    if not test_path.is_file():
        raise StoreError(
            f"the test split of {version} is not at {test_path}: the decision compares the champion on it; give --runs-dir"
        )
    test = pd.read_csv(test_path, keep_default_na=False)
    destination.add_set(directory)
    return decide(destination, version, test, config, keys=keys, runs_dir=runs_dir)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline.publish", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--artifacts-dir",
        "--from",
        dest="source",
        type=Path,
        default=Path("artifacts"),
        help="the local store (default: artifacts)",
    )
    parser.add_argument("--to", required=True, help="the S3 store: s3://bucket/prefix")
    parser.add_argument("--version", help="local model version to publish (default: the local champion)")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        help="training-runs folder with the version's test split (default: <artifacts-dir>/training-runs)",
    )
    parser.add_argument("--min-r2", type=float, default=0.6, help="quality gate on test R2 (default 0.6)")
    parser.add_argument("--champion-tolerance", type=float, default=DEFAULT_TOLERANCE)
    args = parser.parse_args(argv)
    configure_logging("INFO")
    out = out or sys.stdout
    if not is_s3(args.to):
        out.write("publish failed: --to must be an s3://bucket/prefix address\n")
        return 2
    try:
        _, keys = keys_from_env()
        decision = publish(
            LocalStore(args.source),
            S3Store(args.to),
            args.version,
            runs_dir=args.runs_dir,
            config=DecisionConfig(min_test_r2=args.min_r2, tolerance=args.champion_tolerance),
            keys=keys,
        )
    except (ArtifactError, DataSourceError, SigningKeyError, OSError) as err:
        out.write(f"publish failed: {err}\n")
        return 1
    out.write(decision.line() + "\n")
    return 1 if decision.action == "refused" else 0


if __name__ == "__main__":
    raise SystemExit(main())
