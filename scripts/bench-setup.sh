#!/usr/bin/env bash
# Installs what the load harnesses need on top of scripts/setup.sh (which it
# runs first): `wrk`, the HTTP load generator, and `nginx`, the reverse proxy
# the edge is compared with (benches/src/bin/edge_vs_nginx.rs). Idempotent
# and quiet: it installs only what is missing. Run as root or with sudo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"

needed=()
command -v wrk >/dev/null 2>&1 || needed+=(wrk)
# nginx lives in /usr/sbin, which is not on every user's PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || needed+=(nginx)

if [ ${#needed[@]} -gt 0 ]; then
  echo "bench-setup: installing ${needed[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
  # The Debian package starts a system nginx on port 80; the harness runs its
  # own instances, so stop that one where systemd or the init script runs it.
  if [[ " ${needed[*]} " == *" nginx "* ]]; then
    "${sudo_cmd[@]}" systemctl disable --now nginx >/dev/null 2>&1 \
      || "${sudo_cmd[@]}" service nginx stop >/dev/null 2>&1 || true
  fi
fi
