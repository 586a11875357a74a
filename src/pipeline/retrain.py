"""Retrain when there is something new to learn: new data, or drift reported by the serving app.

    python -m src.pipeline.retrain --store STORE --data SOURCE [--drift-url URL] [training options]

Trains when the data's fingerprint differs from the champion's (a new term's scores, appended rows), when the
store has no champion yet, or when ``GET URL`` (the app's ``/drift``) reports drift or low realized coverage
(the real scores that arrived with labeled class lists fell inside the 90 % range for fewer than 85 % of at
least 200 students); otherwise it does nothing and says so (exit 0). The reason is written into the decision
record (``trigger``). Training then goes through the one decision, which promotes the candidate or keeps the
champion. ``METRICS_TOKEN`` is sent as a bearer token when set (the app guards ``/drift`` with it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from src.components.data_ingestion import DataIngestionConfig
from src.config import configure_logging
from src.lifecycle.retraining import (
    DriftCheckError,
    needs_retraining,
)
from src.lifecycle.training import resolve_source
from src.pipeline import train_pipeline
from src.storage import ArtifactError, DataSourceError
from src.store import open_store


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = train_pipeline.build_parser()
    parser.prog = "python -m src.pipeline.retrain"
    parser.description = __doc__.split("\n")[0]
    parser.add_argument(
        "--drift-url", help="the serving app's /drift address; drift or low realized coverage there retrains too"
    )
    args = parser.parse_args(argv)
    configure_logging("INFO")
    out = out or sys.stdout
    try:
        config = train_pipeline.config_from_args(args)
    except train_pipeline.UsageError as err:
        out.write(f"retrain failed: {err}\n")
        return 2
    store = open_store(config.store, cache_dir=config.cache_dir)
    ingestion = DataIngestionConfig(
        artifacts_dir=config.resolved_runs_dir(),
        source=resolve_source(config.data),
        synthetic_rows=config.synthetic_rows,
        seed=config.seed,
    )
    try:
        verdict = needs_retraining(store, ingestion, args.drift_url, os.environ.get("METRICS_TOKEN") or None)
    except (ArtifactError, DataSourceError, DriftCheckError, ValueError) as err:
        out.write(f"retrain failed: {err}\n")
        return 1
    if not verdict.needed:
        out.write(f"nothing to do: {verdict.reason}\n")
        return 0
    out.write(f"retraining: {verdict.reason}\n")
    return train_pipeline.run(dataclasses.replace(config, trigger=verdict.reason), args.tracking_uri, out)


if __name__ == "__main__":
    raise SystemExit(main())
