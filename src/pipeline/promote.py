"""Move the ``champion`` alias of the registered model by hand.

    python -m src.pipeline.promote --version N     # make version N the champion
    python -m src.pipeline.promote --rollback      # give the alias back to the previous champion
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from src.config import configure_logging
from src.pipeline.tracking import CHAMPION, HISTORY_TAG, MODEL_NAME, champion_history, set_champion, tracking_uri


class PromotionError(RuntimeError):
    """The alias cannot be moved as asked."""


def promote(client, version: str) -> str:
    client.get_model_version(MODEL_NAME, version)  # raises when the version does not exist
    set_champion(client, version)
    return f"{MODEL_NAME} version {version} is now {CHAMPION}"


def rollback(client) -> str:
    history = champion_history(client)
    if len(history) < 2:
        raise PromotionError(f"no earlier {CHAMPION} of {MODEL_NAME} to roll back to")
    current = history.pop()
    previous = history[-1]
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, previous)
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history))
    return f"{MODEL_NAME}: {CHAMPION} moved back from version {current} to version {previous}"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline.promote", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--version", help="registered version to make the champion")
    group.add_argument("--rollback", action="store_true", help="return to the previous champion")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    out = out or sys.stdout
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=args.tracking_uri or tracking_uri())
    try:
        message = rollback(client) if args.rollback else promote(client, args.version)
    except (PromotionError, MlflowException) as err:
        out.write(f"promotion failed: {str(err).splitlines()[0]}\n")
        return 1
    out.write(message + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
