#!/usr/bin/env bash
# Installs the Debian 12 packages keyless needs to build, test, run the demo and the
# benchmarks. Idempotent: installs only what is missing. Needs root or sudo.
set -eu
pkgs=(
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
  libsodium-dev libssl-dev openssl libp11-kit-dev p11-kit p11-kit-modules
  libprotobuf-c-dev protobuf-c-compiler libinih-dev
  softhsm2 opensc gnutls-bin curl python3 procps psmisc iproute2
  nginx libengine-pkcs11-openssl
)
pkgs+=(libseccomp-dev)  # the seccomp-bpf allow-list of both daemons, common/sandbox.c (issue 13)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The nginx package starts a system service on port 80; the benchmarks start their own.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
$SUDO pkill -x nginx >/dev/null 2>&1 || true
