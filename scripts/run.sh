#!/usr/bin/env bash
# Install, train on the embedded default if no model exists yet, then serve on http://127.0.0.1:${PORT:-8000}.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-train.txt
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-artifacts}"
if [ -z "${MODEL_URI:-}" ] && [ ! -f "$ARTIFACTS_DIR/champion.json" ]; then
  echo "no model in the store $ARTIFACTS_DIR: training one first"
  .venv/bin/python -m src.pipeline.train_pipeline --store "$ARTIFACTS_DIR"
fi
export HOST="${HOST:-127.0.0.1}" PORT="${PORT:-8000}"
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$(mktemp -d)}"
echo "serving on http://$HOST:$PORT/predictdata (metrics on /metrics)"
exec .venv/bin/gunicorn -c gunicorn.conf.py app:app
