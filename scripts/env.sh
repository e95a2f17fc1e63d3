# shellcheck shell=bash
# Sourced by scripts/test, scripts/bench and .ci/run: brings up what the tests need and
# exports PGPERF_PG_IMAGE. With PGPERF_DATABASE_URL set, no engine or image is needed.
# promtool and amtool (the monitoring tests) go into target/tools/bin either way.
_pgperf_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -z "${PGPERF_DATABASE_URL:-}" ]; then
  "$_pgperf_here/ensure-docker.sh"
  PGPERF_PG_IMAGE=$("$_pgperf_here/ensure-pg-image.sh")
  export PGPERF_PG_IMAGE
  printf 'pgperf: using image %s\n' "$PGPERF_PG_IMAGE" >&2
fi
"$_pgperf_here/monitoring-tools" >&2
unset _pgperf_here
