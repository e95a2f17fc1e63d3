#!/usr/bin/env bash
# Builds pgperf's offline PostgreSQL image from Debian packages with debootstrap.
# Usage: build-pg-image.sh IMAGE RECIPE_HASH. The Debian mirror is read from the machine's
# own apt sources (or PGPERF_DEBIAN_MIRROR); no host name is written into the project.
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
image=$1 recipe=$2

[ "$(id -u)" = 0 ] || pgperf_die "building the offline image needs root (debootstrap)" \
  "run as root, or set PGPERF_PG_IMAGE to an image you have"

debian_mirror() {
  if [ -n "${PGPERF_DEBIAN_MIRROR:-}" ]; then echo "$PGPERF_DEBIAN_MIRROR"; return; fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk 'BEGIN{RS="";FS="\n"} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
           for (i=1;i<=NF;i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/,"",$i); split($i,u," "); print u[1]; exit } }' "$f"
  done | head -n1 | grep . && return
  grep -hE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+[[:space:]]+bookworm[[:space:]]' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/' | head -n1
}

mirror=$(debian_mirror)
[ -n "$mirror" ] || pgperf_die "no Debian bookworm mirror found in /etc/apt/sources*" \
  "set PGPERF_DEBIAN_MIRROR to a Debian mirror URL"

if ! command -v debootstrap >/dev/null 2>&1; then
  pgperf_log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null ||
    pgperf_die "could not install debootstrap" "apt-get install -y debootstrap"
fi

work=$(mktemp -d /var/tmp/pgperf-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
pgperf_log "debootstrap bookworm (postgresql-15, postgresql-contrib) into $work"
if ! debootstrap --variant=minbase --include=postgresql-15,postgresql-contrib \
  bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  pgperf_die "debootstrap failed (log above)" "check that the Debian mirror answers"
fi
# Drop the cluster the package created, the apt cache and documentation.
rm -rf "$work/rootfs/var/lib/postgresql/15" "$work/rootfs/etc/postgresql/15" \
  "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
  "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man" "$work/rootfs/usr/share/info"
mkdir -p "$work/ctx"
tar --numeric-owner -C "$work/rootfs" -cf "$work/ctx/rootfs.tar" .
cp "$here/pg-image/Dockerfile" "$here/pg-image/docker-entrypoint.sh" "$work/ctx/"
pgperf_log "docker build $image"
DOCKER_BUILDKIT=0 docker build -q --label "org.pgperf.recipe=$recipe" -t "$image" "$work/ctx" >/dev/null ||
  pgperf_die "docker build of $image failed" "see the builder's message above"
pgperf_log "built $image"
