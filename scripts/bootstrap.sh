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
  curl ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "bootstrap: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the brokers as system services on install; the tests start their
# own instances on free loopback ports, so the system ones are not needed.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now mosquitto redis-server >/dev/null 2>&1 || true
fi
