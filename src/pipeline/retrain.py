"""Retrain when there is something new to learn: new data, or the fleet's drift or low realized coverage.

    python -m src.pipeline.retrain --store STORE --data SOURCE [--prometheus-url URL] [training options]

Trains when the data's fingerprint differs from the champion's (a new term's scores, appended rows), when the
store has no champion yet, or when the Prometheus that scrapes every instance (``--prometheus-url``, its HTTP
query API) shows, summed over the fleet, low realized coverage (the real scores that arrived fell inside the
90 % range for fewer than 85 % of at least 200 students over the last 30 days, as the alert says) or drift
(PSI of the last ``--drift-window``'s students against the champion's training data, at the app's thresholds
``DRIFT_THRESHOLD`` and ``DRIFT_MIN_SAMPLES``); otherwise it does nothing and says so (exit 0). The reason is
written into the decision record (``trigger``). Training then goes through the one decision, which promotes
the candidate or keeps the champion.

``--single-server-drift-url`` (also spelled ``--drift-url``) is the fallback for one server without
Prometheus: that app's ``/drift``, its own window and its own real scores since it started, sent
``METRICS_TOKEN`` as a bearer token when set. Behind a load balancer it would be whichever instance answered.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from src.components.data_ingestion import DataIngestionConfig
from src.config import AppConfig, ConfigError, configure_logging
from src.lifecycle.retraining import DriftCheckError, FleetCheck, needs_retraining
from src.lifecycle.training import resolve_source
from src.monitoring.fleet import DRIFT_WINDOW, Prometheus, check_duration, check_url
from src.pipeline import train_pipeline
from src.storage import ArtifactError, DataSourceError
from src.store import open_store


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = train_pipeline.build_parser()
    parser.prog = "python -m src.pipeline.retrain"
    parser.description = __doc__.split("\n")[0]
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="the Prometheus that scrapes every instance (e.g. http://10.0.1.20:9090): the fleet's drift and "
        "realized coverage, summed over all instances through its HTTP query API, retrain too",
    )
    source.add_argument(
        "--single-server-drift-url",
        "--drift-url",
        dest="single_server_drift_url",
        metavar="URL",
        help="fallback for ONE server without Prometheus: that app's /drift (its own window and real scores since "
        "it started); behind a load balancer use --prometheus-url instead",
    )
    parser.add_argument(
        "--drift-window",
        default=DRIFT_WINDOW,
        metavar="DURATION",
        help=f"with --prometheus-url: the students of this last period are compared with the champion's training "
        f"data (a Prometheus duration; default {DRIFT_WINDOW})",
    )
    args = parser.parse_args(argv)
    configure_logging("INFO")
    out = out or sys.stdout
    try:
        config = train_pipeline.config_from_args(args)
        fleet = _fleet_check(args)
    except (train_pipeline.UsageError, ConfigError, ValueError) as err:
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
        verdict = needs_retraining(
            store, ingestion, args.single_server_drift_url, os.environ.get("METRICS_TOKEN") or None, fleet=fleet
        )
    except (ArtifactError, DataSourceError, DriftCheckError, ValueError) as err:
        out.write(f"retrain failed: {err}\n")
        return 1
    if not verdict.needed:
        out.write(f"nothing to do: {verdict.reason}\n")
        return 0
    out.write(f"retraining: {verdict.reason}\n")
    return train_pipeline.run(dataclasses.replace(config, trigger=verdict.reason), args.tracking_uri, out)


def _fleet_check(args: argparse.Namespace) -> FleetCheck | None:
    """The fleet's question when ``--prometheus-url`` is given, judged by the app's drift thresholds."""
    if not args.prometheus_url:
        return None
    app = AppConfig.from_env()
    return FleetCheck(
        prometheus=Prometheus(check_url(args.prometheus_url, "--prometheus-url")),
        drift_window=check_duration(args.drift_window, "--drift-window"),
        threshold=app.drift_threshold,
        min_samples=app.drift_min_samples,
    )


if __name__ == "__main__":
    raise SystemExit(main())
