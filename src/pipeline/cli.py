"""``student-math``: one console script whose subcommands are the commands of ``src.pipeline``.

    student-math train --store artifacts          # python -m src.pipeline.train_pipeline --store artifacts
    student-math batch --help                     # python -m src.pipeline.batch_predict --help

Each subcommand hands its arguments to the module's own ``main``; the module is imported only once its name is
known, so ``student-math --help`` imports nothing heavy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module whose main it runs, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("src.pipeline.train_pipeline", "train a candidate, then the decision"),
    "batch": ("src.pipeline.batch_predict", "score a cohort's files (local or Spark engine)"),
    "retrain": ("src.pipeline.retrain", "train when there is new data or drift"),
    "promote": ("src.pipeline.promote", "move the champion by hand, or roll back"),
    "publish": ("src.pipeline.publish", "copy a verified local version into an S3 store"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="student-math",
        description=__doc__.split("\n")[0].replace("``", ""),
        epilog="each subcommand answers --help with its own options",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        commands.add_parser(name, help=f"{summary} (python -m {module})", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        _parser().parse_args(args)  # --help, or an error naming the known subcommands (both exit)
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
