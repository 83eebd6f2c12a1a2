#!/usr/bin/env bash
# Runs the project's checks: lint (ruff), types (mypy), the import contracts (lint-imports:
# layers and private modules, see [tool.importlinter] in pyproject.toml), the web console's
# type check and component tests (vitest, with the Node from PyPI), then the tests (pytest:
# unit tests that start nothing, and integration tests on real containers, Ray and HTTP).
# Sets the machine up first (idempotent), so it works on a fresh machine too.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not integration".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ORCHESTRATOR_VENV:-$(pwd)/.venv}

scripts/setup.sh
echo "==> ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "==> mypy"
"$VENV/bin/mypy" orchestrator actors serve_app desktop_image/desktop-init
echo "==> lint-imports"
"$VENV/bin/lint-imports" --no-cache
scripts/console.sh test
echo "==> pytest"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
