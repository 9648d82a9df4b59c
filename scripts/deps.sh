#!/usr/bin/env bash
# Installs everything materializer needs to build and test on Debian 12, and with --bench what the
# end-to-end benchmark compares against (idempotent: apt runs only when a package is missing).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git
  libtbb-dev libcurl4-openssl-dev libzstd-dev libarchive-dev libxxhash-dev libbz2-dev libssl-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev libxml2-dev libsimdjson-dev libzip-dev libisal-dev zlib1g-dev
  python3 python3-yaml python3-zstandard python3-pip python3-installer python3-wheel
  zstd bzip2 unzip xxhash openssl nginx-light curl time
)
# bench/startup.py also needs: the chart, the peers and the floor tools (scripts/deps.sh --bench).
if [ "${1:-}" = "--bench" ]; then
  PKGS+=(python3-matplotlib conda-package-handling lbzip2 pigz)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# nginx's package starts a system server on :80; our tests start their own on free ports.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
