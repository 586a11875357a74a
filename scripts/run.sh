#!/usr/bin/env bash
# Install, train on the embedded default if no model exists yet, then serve on http://127.0.0.1:${PORT:-8000}.
# The installation (the requirements, then the project in editable mode) is skipped when neither the requirements
# nor pyproject.toml have changed since the last one (.venv/.requirements-stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.requirements-stamp
wanted="$(cat requirements.txt requirements-train.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing the requirements into .venv (about a minute the first time)..."
  python3 -m venv .venv
  .venv/bin/python -m pip install --upgrade pip
  .venv/bin/python -m pip install -r requirements-train.txt
  .venv/bin/python -m pip install -e . --no-deps
  echo "$wanted" > "$stamp"
else
  echo "requirements unchanged since the last install: skipping it"
fi
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-artifacts}"
if [ -z "${MODEL_URI:-}" ] && [ ! -f "$ARTIFACTS_DIR/champion.json" ]; then
  echo "no model in the store $ARTIFACTS_DIR: training one first"
  .venv/bin/python -m src.pipeline.train_pipeline --store "$ARTIFACTS_DIR"
fi
export HOST="${HOST:-127.0.0.1}" PORT="${PORT:-8000}"
# PROMETHEUS_MULTIPROC_DIR: when unset, gunicorn.conf.py creates a temporary folder and removes it at exit.
echo "serving on http://$HOST:$PORT/predictdata (metrics on /metrics)"
exec .venv/bin/gunicorn -c gunicorn.conf.py app:app
