# shellcheck shell=bash
# Shared helpers for pgperf's environment scripts. Source it; do not run it.

pgperf_log() { printf 'pgperf: %s\n' "$*" >&2; }

pgperf_die() {
  printf 'pgperf: error: %s\n' "$1" >&2
  [ -n "${2:-}" ] && printf 'pgperf: remedy: %s\n' "$2" >&2
  exit 1
}

# The image the tests use unless PGPERF_PG_IMAGE says otherwise (the official one, as on GitHub CI).
PGPERF_OFFICIAL_IMAGE="postgres:15"
# The honest local name of the image built here from Debian packages when no registry answers.
PGPERF_LOCAL_IMAGE="pgperf-local/postgres:15-debian"
