#!/usr/bin/env bash
# Install the project with its test tools, run the checks (ruff, the formatter, the import contracts, dead code),
# then the tests:
#   bash scripts/test.sh            the fast tier: every test not marked slow, server, browser, spark or docker
#                                   (the marks are registered in pyproject.toml), on every core (pytest-xdist)
#   bash scripts/test.sh --all ...  the whole suite, on one worker more than the cores (what .ci/run runs), the longest units of work first
#                                   (tests/conftest.py: LONGEST_FIRST), a module to a worker; more arguments go to pytest
#   bash scripts/test.sh ARGS       pytest ARGS as given (bash scripts/test.sh tests/web -x)
# The installation (the requirements, then the project itself in editable mode, which puts `src` on the path and
# the `student-math` command in .venv/bin) is skipped when neither a requirements file nor pyproject.toml has
# changed since the last one made by this script.
# Its stamp (.venv/.requirements-dev-stamp) is not scripts/run.sh's (.venv/.requirements-stamp): run.sh
# installs only the serving and training sets, this script requirements-dev.txt and every file it includes,
# so each keeps the hash of what it installed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.requirements-dev-stamp
# The names and hashes of every requirements file (requirements-dev.txt includes the others (-r), directly or
# through another one) and of pyproject.toml. Sorted the same way whatever the locale.
wanted="$(export LC_ALL=C; sha256sum requirements*.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing the requirements and the test tools into .venv (a few minutes the first time)..."
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  .venv/bin/python -m pip install --quiet -e . --no-deps
  echo "$wanted" > "$stamp"
else
  echo "requirements unchanged since the last install: skipping it"
fi
# axe-core for the browser tests' accessibility checks (tests/web/axe: package.json and its lock file), installed
# again only when the lock file is newer than the installed copy
axe=tests/web/axe
if [ -f "$axe/package-lock.json" ] && command -v npm >/dev/null && { [ ! -f "$axe/node_modules/axe-core/axe.min.js" ] ||
    [ "$axe/package-lock.json" -nt "$axe/node_modules/.package-lock.json" ]; }; then
  npm ci --prefix "$axe" --no-audit --no-fund --loglevel=error
fi
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
.venv/bin/lint-imports
.venv/bin/python -m vulture
if [ $# -eq 0 ]; then
  set -- -m "not (slow or server or browser or spark or docker)" -n auto
elif [ "$1" = "--all" ]; then
  shift
  # one worker more than the cores: much of the whole suite waits on servers, browsers and timers, not the CPU
  set -- -n "$(($(nproc) + 1))" --dist loadscope --no-loadscope-reorder "$@"
fi
.venv/bin/python -m pytest "$@"
