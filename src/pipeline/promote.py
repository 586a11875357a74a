"""Move the champion by hand, through the same pointer (and MLflow alias) as every decision.

    python -m src.pipeline.promote --store STORE --version V     # make model version V the champion
    python -m src.pipeline.promote --store STORE --rollback      # back to the previous champion

``STORE`` is a folder or ``s3://bucket/prefix``. The version's set is verified (hashes, signature when
``MODEL_VERIFY_KEYS`` is set, a load-time check) before anything points at it. A model of other students than
the champion's (synthetic data against a real champion, or another population) is refused unless
``--other-population`` says that is what you mean.

Examples:
    python -m src.pipeline.promote --store artifacts --version 20261123T101500Z-1a2b3c4d --no-tracking
    python -m src.pipeline.promote --store artifacts --rollback
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from src.config import cache_dir_from_env, configure_logging, keys_from_env
from src.lifecycle.decision import Decision, Registry, promote_by_hand, rollback
from src.signing import SigningKey, SigningKeyError
from src.storage import ArtifactError, DataSourceError
from src.store import Store, open_store


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.pipeline.promote",
        description=__doc__.split("\n")[0],
        epilog="example: python -m src.pipeline.promote --store artifacts --version 20261123T101500Z-1a2b3c4d",
    )
    parser.add_argument(
        "--store",
        "--artifacts-dir",
        dest="store",
        default="artifacts",
        help="model store: a folder or s3://bucket/prefix (default: artifacts)",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--version", help="model version to make the champion (e.g. 20261123T101500Z-1a2b3c4d)")
    group.add_argument("--rollback", action="store_true", help="return to the previous champion")
    parser.add_argument(
        "--other-population",
        action="store_true",
        help="promote a model of other students than the champion's (synthetic, or another population) on purpose",
    )
    parser.add_argument("--no-tracking", action="store_true", help="do not move the MLflow alias")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    out = out or sys.stdout
    try:
        _, keys = keys_from_env()
    except SigningKeyError as err:
        out.write(f"promotion failed: {err}\n")
        return 2
    store = open_store(args.store, cache_dir=cache_dir_from_env())
    try:
        if args.no_tracking:
            decision = _move(store, args, keys, None)
        else:
            from mlflow.exceptions import MlflowException

            from src.lifecycle.tracking import MlflowRegistry, TrackingError, check_reachable, tracking_uri

            uri = args.tracking_uri or tracking_uri()
            try:
                check_reachable(uri)
                import mlflow

                decision = _move(store, args, keys, MlflowRegistry(mlflow.MlflowClient(tracking_uri=uri)))
            except (MlflowException, TrackingError) as err:
                out.write(f"promotion failed: {str(err).splitlines()[0]}\n")
                return 1
    except (ArtifactError, DataSourceError, OSError) as err:
        out.write(f"promotion failed: {err}\n")
        return 1
    out.write(decision.line() + "\n")
    return 0


def _move(store: Store, args: argparse.Namespace, keys: Sequence[SigningKey], registry: Registry | None) -> Decision:
    if args.rollback:
        return rollback(store, keys=keys, registry=registry)
    return promote_by_hand(store, args.version, keys=keys, registry=registry, other_population=args.other_population)


if __name__ == "__main__":
    raise SystemExit(main())
