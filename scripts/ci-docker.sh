#!/usr/bin/env bash
# Make a Docker engine usable for the `docker`-marked tests, idempotently:
#   1. install docker.io and debootstrap when missing (apt-get, as root);
#   2. start dockerd in the background when `docker info` does not answer (log: /tmp/dockerd.log);
#   3. build the twin-docker base image once (cached by tag: harness.stack.containers.base_image).
# CI machines start with only the docker client and no registry, so every step is local.
# Without an engine (not root, apt unreachable, dockerd failing) it exits 0 and the docker tests
# skip with their own reason; HARNESS_REQUIRE_DOCKER=1 makes that exit 1 instead, so that a
# run which must prove the container path cannot go green on skips.
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
WAIT_S="${DOCKERD_WAIT_S:-60}"

say() { echo "ci-docker: $*"; }
give_up() {
    say "$*"
    [ "${HARNESS_REQUIRE_DOCKER:-0}" = 1 ] && exit 1
    exit 0
}

if [ "$(id -u)" != 0 ]; then
    docker info >/dev/null 2>&1 || give_up "not root and no engine answers; docker tests will skip"
    "$PY" -m harness.stack.containers.base_image || give_up "base image build failed"
    exit 0
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >/tmp/ci-docker-apt.log 2>&1; then
        tail -5 /tmp/ci-docker-apt.log
        give_up "apt-get failed (see /tmp/ci-docker-apt.log); docker tests will skip"
    fi
fi

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: the engine outlives this script and make's process group.
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq "$WAIT_S"); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        tail -20 "$DOCKERD_LOG"
        give_up "dockerd did not answer within ${WAIT_S} s (last lines of $DOCKERD_LOG above)"
    fi
fi
say "docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) is up"

"$PY" -m harness.stack.containers.base_image || give_up "base image build failed; twin-docker tests will skip"
exit 0
