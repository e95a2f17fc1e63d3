#!/usr/bin/env bash
# Makes a PostgreSQL image available and prints its name on stdout.
#
#  - PGPERF_PG_IMAGE set: use it if present, pull it if a registry answers; the local
#    offline name is built; any other missing image is an error.
#  - unset: use the official postgres:15 if present or pullable, otherwise the offline
#    image pgperf-local/postgres:15-debian, built here from Debian packages.
# Quick when the image exists. Needs a running engine (scripts/ensure-docker.sh).
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

try_pull() {
  pgperf_log "pulling $1"
  timeout 120 docker pull -q "$1" >/dev/null 2>&1
}

# The recipe's hash is stored as a label so that a changed entrypoint rebuilds the image.
recipe_hash() { cat "$here/pg-image/Dockerfile" "$here/pg-image/docker-entrypoint.sh" "$here/build-pg-image.sh" | sha256sum | cut -c1-16; }

local_image_current() {
  local label
  label=$(docker image inspect -f '{{ index .Config.Labels "org.pgperf.recipe" }}' "$PGPERF_LOCAL_IMAGE" 2>/dev/null) || return 1
  [ "$label" = "$(recipe_hash)" ]
}

build_local() {
  "$here/build-pg-image.sh" "$PGPERF_LOCAL_IMAGE" "$(recipe_hash)" >&2
}

requested="${PGPERF_PG_IMAGE:-}"
if [ -n "$requested" ]; then
  if [ "$requested" = "$PGPERF_LOCAL_IMAGE" ]; then
    local_image_current || build_local
  elif ! image_exists "$requested" && ! try_pull "$requested"; then
    pgperf_die "image $requested (from PGPERF_PG_IMAGE) is missing and could not be pulled" \
      "pull or build it, or unset PGPERF_PG_IMAGE to use $PGPERF_OFFICIAL_IMAGE or build $PGPERF_LOCAL_IMAGE"
  fi
  echo "$requested"
  exit 0
fi

if image_exists "$PGPERF_OFFICIAL_IMAGE"; then
  echo "$PGPERF_OFFICIAL_IMAGE"
elif local_image_current; then
  echo "$PGPERF_LOCAL_IMAGE"
elif [ "${PGPERF_TRY_PULL:-1}" = 1 ] && try_pull "$PGPERF_OFFICIAL_IMAGE"; then
  echo "$PGPERF_OFFICIAL_IMAGE"
else
  pgperf_log "no registry answers: building $PGPERF_LOCAL_IMAGE from Debian packages (about 2 minutes)"
  build_local
  echo "$PGPERF_LOCAL_IMAGE"
fi
