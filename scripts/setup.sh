#!/usr/bin/env bash
# Installs what building and testing Portcullis needs beyond the Rust
# toolchain (pinned in rust-toolchain.toml). Idempotent: it installs only
# what is missing, so running it before every build costs nothing.
#
#   cmake        pingora's zlib-ng build (the edge)
#   libssl-dev   the system OpenSSL pingora's TLS links against
#   pkg-config   finds it
set -euo pipefail

needed=()
command -v cmake >/dev/null 2>&1 || needed+=(cmake)
command -v pkg-config >/dev/null 2>&1 || needed+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || needed+=(libssl-dev)

if [ ${#needed[@]} -gt 0 ]; then
  echo "setup: installing ${needed[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
