#!/usr/bin/env bash
# Install the project with its test tools and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
