#!/usr/bin/env bash
# Sequential, health-gated control of the production stack with docker compose.
#   stackctl.sh up|down|restart-gpu [COMPOSE_FILE]
# The order and each service's health timeout come from the compose file (depends_on and
# healthcheck), printed by `harness order`; nothing here lists services by name.
set -euo pipefail
action=${1:?usage: stackctl.sh up|down|restart-gpu [compose-file]}
compose=${2:-infra/docker-compose.yml}
harness=${HARNESS:-harness}
# Compose interpolates ${VAR} in the compose file from the shell and from --env-file, never from a
# service's env_file. .secrets feeds it (cloudflared's TUNNEL_TOKEN is ${CF_TUNNEL_TOKEN}); an
# --env-file replaces the project's default .env, so that one is passed first when it exists.
infra_dir=$(dirname "$compose")
env_files=()
[[ -f $infra_dir/.env ]] && env_files+=(--env-file "$infra_dir/.env")
[[ -f $infra_dir/.secrets ]] && env_files+=(--env-file "$infra_dir/.secrets")
dc() { docker compose ${env_files[@]+"${env_files[@]}"} -f "$compose" "$@"; }

wait_healthy() {  # service timeout_s
  local svc=$1 timeout=$2 start=$SECONDS cid status
  cid=$(dc ps -q "$svc")
  while :; do
    status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$cid" 2>/dev/null || echo missing)
    case "$status" in
      healthy|running) echo "  $svc: $status after $((SECONDS - start)) s"; return 0 ;;
      unhealthy|exited|dead|missing)
        echo "  $svc: $status after $((SECONDS - start)) s; last log lines:" >&2
        dc logs --tail 40 "$svc" >&2 || true; return 1 ;;
    esac
    if (( SECONDS - start > timeout )); then
      echo "  $svc: not healthy within ${timeout} s; last log lines:" >&2
      dc logs --tail 40 "$svc" >&2 || true; return 1
    fi
    sleep 5
  done
}

start_services() {  # filter: all|engines
  "$harness" order --compose "$compose" | while read -r svc timeout kind; do
    [[ $1 == engines && $kind != engine ]] && continue
    echo "starting $svc (health timeout ${timeout} s)"
    # stdin stays with `read`: a command that reads it would swallow the remaining services.
    dc up -d --no-deps "$svc" </dev/null
    wait_healthy "$svc" "$timeout" </dev/null
  done
}

stop_services() {  # filter: all|engines; reverse start order
  "$harness" order --compose "$compose" --reverse | while read -r svc _ kind; do
    [[ $1 == engines && $kind != engine ]] && continue
    echo "stopping $svc"
    dc stop "$svc" </dev/null
  done
}

case "$action" in
  up)
    # A harness run that stopped production says so (which run, since when) before it restarts.
    "$harness" status --production || true
    start_services all
    # The file every service just started healthy from: `make up` diffs the next one against it.
    cp "$compose" "$infra_dir/.last-good-compose.yml" \
      || echo "stackctl: could not keep $compose as the last good compose file" >&2
    "$harness" status --clear-production || true ;;
  down) stop_services all; dc down ;;
  restart-gpu) stop_services engines; start_services engines ;;
  *) echo "unknown action: $action" >&2; exit 2 ;;
esac
