#!/usr/bin/env bash
# Installs what the load harnesses need on top of scripts/setup.sh (which it
# runs first, and which installs Node and the test IdP's npm packages):
#
#   wrk          the HTTP load generator (closed loop)
#   nginx        the upstream, and the reverse proxy the edge is compared with
#   haproxy      the other plain reverse proxy of edge_vs_nginx
#   apache2, libapache2-mod-auth-openidc
#                Apache with mod_auth_openidc, the identity-aware proxy
#                edge_vs_nginx compares the edge with
#
# The constant-rate (open-loop) client of edge_vs_nginx is part of the
# harness (benches/load/fixed_rate.rs): wrk2 is not packaged by Debian.
#
# Idempotent and quiet: it installs only what is missing. The packages start
# system services on ports 80 and 443 (nginx, haproxy, apache2); the harness
# runs its own instances, so this stops and disables those every time. Run as
# root or with sudo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"

needed=()
command -v wrk >/dev/null 2>&1 || needed+=(wrk)
# These live in /usr/sbin, which is not on every user's PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || needed+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || needed+=(haproxy)
[ -x /usr/sbin/apache2 ] || needed+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || needed+=(libapache2-mod-auth-openidc)

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
if [ ${#needed[@]} -gt 0 ]; then
  echo "bench-setup: installing ${needed[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi

# Stop the system services the packages start (where systemd or the init
# script runs them; in a container neither may, which is fine).
for service in nginx haproxy apache2 apache-htcacheclean; do
  if [ -e "/lib/systemd/system/$service.service" ] || [ -e "/etc/init.d/$service" ]; then
    "${sudo_cmd[@]}" systemctl disable --now "$service" >/dev/null 2>&1 \
      || "${sudo_cmd[@]}" service "$service" stop >/dev/null 2>&1 || true
  fi
done
