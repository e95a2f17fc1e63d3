#!/usr/bin/env bash
# Makes a Docker engine reachable: use one that runs, start one that is installed, and
# install Debian's docker.io where there is none (root only). Quick when the engine runs.
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

command -v docker >/dev/null 2>&1 || NO_CLIENT=1
if [ -z "${NO_CLIENT:-}" ] && engine_answers; then
  exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
  pgperf_die "the Docker engine at DOCKER_HOST does not answer" \
    "start that engine, or unset DOCKER_HOST to use (or start) the local one"
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    pgperf_die "no Docker engine runs and none is installed" \
      "install and start Docker (as root on Debian: apt-get install -y docker.io), or set PGPERF_DATABASE_URL to use an existing PostgreSQL server"
  fi
  pgperf_log "installing Debian's docker.io (no Docker engine is installed)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || pgperf_die "apt-get update failed" "check the machine's package sources"
  apt-get install -y -qq docker.io >&2 || pgperf_die "apt-get install docker.io failed" "see apt's message above"
fi
command -v docker >/dev/null 2>&1 || pgperf_die "the docker client is missing" "apt-get install -y docker.io"

if [ "$(id -u)" != 0 ]; then
  pgperf_die "a Docker engine is installed but does not run, and starting it needs root" \
    "start it (sudo service docker start), or set PGPERF_DATABASE_URL"
fi

pgperf_log "starting dockerd (log: /var/log/pgperf-dockerd.log)"
# No userland proxy: published ports go through iptables instead of a copying process,
# which otherwise halves round-trip throughput to the container.
setsid nohup dockerd --userland-proxy=false >/var/log/pgperf-dockerd.log 2>&1 </dev/null &
for _ in $(seq 1 60); do
  engine_answers && { pgperf_log "Docker engine is up"; exit 0; }
  sleep 1
done
tail -n 20 /var/log/pgperf-dockerd.log >&2 || true
pgperf_die "dockerd did not answer within 60 s" "read /var/log/pgperf-dockerd.log (above) for the cause"
