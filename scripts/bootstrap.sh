#!/usr/bin/env bash
# Installs every Debian package that orch's build, tests and benchmarks need.
# Idempotent and quick when everything is already present. Needs root (or sudo)
# only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libasio-dev libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev
  libsqlitecpp-dev libsqlite3-dev sqlite3
  rapidjson-dev libfmt-dev catch2
  libmosquitto-dev mosquitto libhiredis-dev redis-server
  postgresql libpq-dev
  curl ca-certificates
  clang libclang-rt-14-dev
  libgraphviz-dev chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

install_debian_packages() {
  echo "bootstrap: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the brokers and a PostgreSQL cluster as system services on
  # install; the tests start their own instances (brokers on free loopback
  # ports, PostgreSQL on a Unix socket in a temp dir), so the system ones are
  # not needed.
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now mosquitto redis-server postgresql >/dev/null 2>&1 || true
  fi
  # Without systemd (containers) the package starts its cluster itself.
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _; do
      $SUDO pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
    done
  fi
}

# The A2A interop test drives an agent built with the official A2A JavaScript
# SDK (tests/interop/package.json), installed into .cache/a2a-sdk. Without
# node/npm, or offline, that test is skipped with a message.
install_a2a_sdk() {
  command -v npm >/dev/null 2>&1 || return 0
  local root sdk_dir
  root="$(cd "$(dirname "$0")/.." && pwd)"
  sdk_dir="$root/.cache/a2a-sdk"
  if [ -f "$sdk_dir/node_modules/@a2a-js/sdk/package.json" ] &&
     cmp -s "$root/tests/interop/package.json" "$sdk_dir/package.json"; then
    return 0
  fi
  mkdir -p "$sdk_dir"
  cp "$root/tests/interop/package.json" "$sdk_dir/package.json"
  npm install --prefix "$sdk_dir" --no-audit --no-fund --silent >/dev/null 2>&1 ||
    echo "bootstrap: could not install the A2A SDK; the A2A interop test will be skipped" >&2
}

# The web console's browser test drives Debian's chromium with puppeteer-core
# (tests/console/package.json), installed into .cache/console-browser. Unlike
# the A2A SDK, a failed install is reported: that test fails without it.
install_console_browser_driver() {
  command -v npm >/dev/null 2>&1 || return 0
  local root dir
  root="$(cd "$(dirname "$0")/.." && pwd)"
  dir="$root/.cache/console-browser"
  if [ -f "$dir/node_modules/puppeteer-core/package.json" ] &&
     cmp -s "$root/tests/console/package.json" "$dir/package.json"; then
    return 0
  fi
  mkdir -p "$dir"
  cp "$root/tests/console/package.json" "$dir/package.json"
  # No browser download: puppeteer-core never fetches one; the test uses /usr/bin/chromium.
  npm install --prefix "$dir" --no-audit --no-fund --silent >/dev/null 2>&1 ||
    echo "bootstrap: could not install puppeteer-core; the console browser test will fail" >&2
}

# Node.js and npm for the A2A interop test: Debian's packages, unless some
# node/npm is already installed (e.g. a NodeSource build, which conflicts).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -ne 0 ]; then
  install_debian_packages
fi
install_a2a_sdk
install_console_browser_driver
