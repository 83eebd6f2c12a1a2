#!/usr/bin/env bash
# Sets up everything on a fresh Debian machine, idempotently: a Docker engine (installed
# from Debian's packages and started if none answers), debootstrap, Debian's Chromium (for
# the console's browser tests), a Python virtualenv with the project and its dev tools, the
# web console (built with the Node from PyPI: scripts/console.sh) and the desktop image
# (built from Debian packages when no registry can be reached). Safe to run again: each
# step is skipped when done.
set -euo pipefail
# The checkout itself, even when this script is reached through a link (tests/integration/
# test_readme.py runs it from a directory of links): the editable install must point here.
cd "$(dirname "$(readlink -f "$0")")/.."
ROOT=$(pwd)
VENV=${ORCHESTRATOR_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. System packages: the Docker engine, debootstrap, and Chromium (the browser tests drive
#    it with Playwright's executable_path: nothing is downloaded from a browser site).
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]} from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x /usr/lib/chromium/chromium ]; then
    say "installing chromium from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        chromium >/dev/null
fi

# 2. A running Docker engine (use the one that answers, else start one).
if ! docker info >/dev/null 2>&1; then
    say "starting the Docker engine"
    $SUDO sh -c 'nohup dockerd --host unix:///var/run/docker.sock >/var/log/dockerd.log 2>&1 &'
    deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
            tail -n 20 /var/log/dockerd.log >&2 || true
            exit 1
        fi
        sleep 0.2
    done
fi

# 3. Python: a virtualenv with the project (editable), the runtime's dependencies (the
#    `runtime` extra: `pip install .` alone installs the SDK only) and the dev tools.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    say "installing Python dependencies"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e ".[runtime,dev]"
    touch "$stamp"
fi

# 4. The web console: npm ci and vite build with PyPI's Node (skipped when built from the
#    same sources), into serve_app/console/dist, which the API serves at /console.
scripts/console.sh build

# 5. The desktop image (a no-op when this checkout's desktop_image/ is already built).
say "desktop image"
"$VENV/bin/orchestrator" image build
