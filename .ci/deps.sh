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
pkgs+=(python3-yaml)  # tests/deploy: parse the Prometheus alert rules (issue 14)
pkgs+=(debhelper lintian)  # tests/deploy: build and lint the Debian package (issue 14)
pkgs+=(golang-go)  # Go crypto/tls with a ClientSessionCache resumes through the frontend: tests/e2e/test_resumption.sh (issue 11)
pkgs+=(libseccomp-dev)  # the seccomp-bpf allow-list of both daemons, common/sandbox.c (issue 13)
pkgs+=(libnss3-tools)  # NSS tstclnt sends Encrypted Client Hello (-N) and certutil builds its db: tests/e2e/test_ech.sh (issue 16)
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
# The nginx package (the benchmarks' peer; they start their own instances) starts a system
# service on port 80 when it is installed. Stop that service only when we just installed it,
# and say so: an nginx that was on the host before is left alone.
for p in "${missing[@]}"; do
    [ "$p" = nginx ] || continue
    echo "deps: nginx was just installed for the benchmarks; disabling the nginx.service it started"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
    elif [ -f /run/nginx.pid ]; then
        $SUDO kill "$(cat /run/nginx.pid)" >/dev/null 2>&1 || true
    fi
done
