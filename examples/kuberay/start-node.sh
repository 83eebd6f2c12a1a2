#!/usr/bin/env bash
# The Ray container's command on KubeRay (examples/kuberay/raycluster.yaml). Its pods carry
# the annotation ray.io/overwrite-container-cmd: "true": KubeRay then runs this script as it
# is and hands over the `ray start` it generated (with --block) in $KUBERAY_GEN_RAY_START_CMD.
#
#   start-node.sh worker   the Docker engine beside the pod (the dind sidecar) answers and the
#                          desktop image is in it, THEN `ray start` declares the group's
#                          `desktop` units: a node the autoscaler added takes agents only when
#                          it can start their desktops.
#   start-node.sh head     `ray start` (no desktops), then, once Ray answers, the HTTP API
#                          (`orchestrator serve` on 127.0.0.1:8000; the pod's proxy sidecar
#                          is what the Service reaches). Either one ending ends the container,
#                          and Kubernetes restarts it.
#
# Every wait polls a condition against a deadline (ORCHESTRATOR_NODE_SETUP_TIMEOUT_S, default
# 300 s) and fails with what it waited for.
set -euo pipefail

role=${1:-}
case "$role" in head | worker) ;; *)
    echo "usage: $0 head|worker" >&2
    exit 2
    ;;
esac
: "${KUBERAY_GEN_RAY_START_CMD:?not set: run this as the Ray container of a KubeRay pod}"
timeout_s=${ORCHESTRATOR_NODE_SETUP_TIMEOUT_S:-300}
say() { printf '[start-node %s] %s\n' "$role" "$*"; }

# wait_until WHAT CMD...: run CMD until it succeeds or the deadline passes; an attempt that
# hangs is ended at the deadline.
wait_until() {
    local what=$1
    shift
    local deadline=$((SECONDS + timeout_s)) left
    while left=$((deadline - SECONDS > 1 ? deadline - SECONDS : 1)); do
        timeout --kill-after=5 "$left" "$@" >/dev/null 2>&1 && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "gave up after ${timeout_s} s waiting for $what" >&2
            timeout 10 "$@" >&2 || true # show why, once
            exit 1
        fi
        sleep 0.5
    done
    say "$what: ok"
}

# With the Docker SDK the runtime itself uses, at the runtime's DOCKER_HOST.
DOCKER_PING='import docker; docker.from_env().ping()'
PULL_DESKTOP_IMAGE='
import os

import docker
from docker.utils import parse_repository_tag

image = os.environ["ORCHESTRATOR_DESKTOP_IMAGE"]
client = docker.from_env()
try:
    client.images.get(image)
except docker.errors.ImageNotFound:
    repository, tag = parse_repository_tag(image)
    client.images.pull(repository, tag=tag or "latest")
    client.images.get(image)
'

ulimit -n "${RAY_START_ULIMIT_OPEN_FILES:-65536}" || say "open files stay at $(ulimit -n)"

if [ "$role" = worker ]; then
    : "${ORCHESTRATOR_DESKTOP_IMAGE:?set it to the desktop image pushed to your registry}"
    mkdir -p "${ORCHESTRATOR_RUNTIME_DIR:-/run/orchestrator}"
    wait_until "the Docker engine at ${DOCKER_HOST:-the default socket}" python -c "$DOCKER_PING"
    wait_until "the desktop image $ORCHESTRATOR_DESKTOP_IMAGE" python -c "$PULL_DESKTOP_IMAGE"
    say "starting Ray with this group's desktop units"
    exec bash -c "$KUBERAY_GEN_RAY_START_CMD"
fi

# head (KubeRay sets RAY_ADDRESS to this node's GCS, 127.0.0.1:6379). This shell may be the
# container's PID 1, which ignores signals it does not trap: pass Kubernetes' SIGTERM on to
# Ray and the API, and end once they have.
trap 'trap - TERM INT; kill -TERM $(jobs -p) 2>/dev/null; wait; exit 143' TERM INT
bash -c "$KUBERAY_GEN_RAY_START_CMD" &
wait_until "Ray on this node" ray health-check
say "starting the API"
orchestrator serve --address "${RAY_ADDRESS:-auto}" --port "${ORCHESTRATOR_API_PORT:-8000}" &
# Whichever ends first (Ray or the API) ends the container, with its status.
wait -n
