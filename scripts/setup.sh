#!/usr/bin/env bash
# Installs what building and testing Portcullis needs beyond the Rust
# toolchain (pinned in rust-toolchain.toml). Idempotent: it installs only
# what is missing, so running it before every build costs nothing.
#
#   cmake        pingora's zlib-ng build (the edge)
#   libssl-dev   the system OpenSSL pingora's TLS links against
#   pkg-config   finds it
#   nodejs, npm  the OpenID provider the OIDC tests log in at
#                (cli/tests/idp, npm packages pinned by its package-lock.json)
#   openssh-server, openssh-client
#                the real sshd and ssh the TCP-tunnel tests run through the edge
#   chromium, chromium-driver
#                the headless browser and its WebDriver the portal tests drive
#   fonts-inter  the portal's typeface, so its screenshots look as designed
#   openssl      makes throwaway RSA keys for the Google connector's tests
#   rsyslog, rsyslog-gnutls
#                the real syslog server the SIEM sink's tests deliver to (TCP, TLS)
#   PyJWT, cryptography (PyPI)
#                the independent Shared Signals receiver (cli/tests/receivers)
#   moto[server] (PyPI)
#                the SQS server the SIEM sink's tests deliver to
#   schemathesis (PyPI)
#                checks every admin-API answer against /api/v1/openapi.json
#                (cli/tests/control_plane/api_schema.rs)
set -euo pipefail
cd "$(dirname "$0")/.."

needed=()
command -v cmake >/dev/null 2>&1 || needed+=(cmake)
command -v pkg-config >/dev/null 2>&1 || needed+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || needed+=(libssl-dev)
command -v node >/dev/null 2>&1 || needed+=(nodejs)
command -v npm >/dev/null 2>&1 || needed+=(npm)
[ -x /usr/sbin/sshd ] || needed+=(openssh-server)
{ command -v ssh && command -v ssh-keygen; } >/dev/null 2>&1 || needed+=(openssh-client)
[ -x /usr/bin/chromium ] || needed+=(chromium)
[ -x /usr/bin/chromedriver ] || needed+=(chromium-driver)
dpkg -s fonts-inter >/dev/null 2>&1 || needed+=(fonts-inter)
command -v openssl >/dev/null 2>&1 || needed+=(openssl)
[ -x /usr/sbin/rsyslogd ] || needed+=(rsyslog)
dpkg -s rsyslog-gnutls >/dev/null 2>&1 || needed+=(rsyslog-gnutls)

if [ ${#needed[@]} -gt 0 ]; then
  echo "setup: installing ${needed[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi

# The SSF receiver's JOSE library, pinned.
if ! python3 -c "import jwt, cryptography" >/dev/null 2>&1; then
  echo "setup: installing PyJWT and cryptography for the SSF receiver" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "PyJWT[crypto]==2.10.1"
fi

# The SQS sink's test server (a local implementation of the AWS APIs), pinned.
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c "import boto3" >/dev/null 2>&1; then
  echo "setup: installing moto[server] for the SQS sink's tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "moto[server]==5.0.28"
fi

# The OpenAPI conformance test's API fuzzer, pinned (the test checks the version).
if [ "$(st --version 2>/dev/null)" != "st, version 4.32.5" ]; then
  echo "setup: installing schemathesis for the OpenAPI conformance test" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "schemathesis==4.32.5"
fi

# The test IdP's npm packages: installed again only when the lock file is
# newer than what is installed.
idp=cli/tests/idp
if [ ! -d "$idp/node_modules" ] || [ "$idp/package-lock.json" -nt "$idp/node_modules" ]; then
  echo "setup: installing the test IdP's npm packages ($idp)" >&2
  npm ci --prefix "$idp" --no-audit --no-fund --loglevel=error >/dev/null
  touch "$idp/node_modules"
fi

# The fuzz smoke run (scripts/fuzz-smoke.sh): cargo-fuzz from crates.io, and
# a C++ compiler for the libFuzzer runtime that libfuzzer-sys builds.
if ! command -v c++ >/dev/null 2>&1; then
  echo "setup: installing g++ (libFuzzer)" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz" >&2
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi
