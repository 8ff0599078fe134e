# shellcheck shell=bash disable=SC2034
# tests/hsm-setup/tap.sh: fixtures for the hsm-setup script tests (sourced), over
# the shared TAP library tests/lib/tap.sh. Every test works in its own mktemp
# directory, removed on exit.
set -eu
set -o pipefail
export LC_ALL=C

SRC=${KL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SETUP=$SRC/hsm-setup/setup.sh
CHECK=$SRC/hsm-setup/check.sh
MODULE=${KL_HSM_MODULE:-/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so}
# Tests never inherit a caller's fixture.
unset SOFTHSM2_CONF KL_TOKEN_LABEL KL_PIN_FILE KL_HSM_DIR
export KL_HSM_MODULE=$MODULE

# ok STATUS DESC, check DESC CMD..., is, skip, diag, bail, done_testing: the shared library.
. "$SRC/tests/lib/tap.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/kl-hsm-test.XXXXXX")
tap_at_exit 'rm -rf -- "$T"'

# Run setup.sh; stdout in $T/out, stderr in $T/err, status in $rc.
run_setup() {
  rc=0
  bash "$SETUP" "$@" >"$T/out" 2>"$T/err" || rc=$?
}

# The PKCS#11 URI of key $2 (type $3) in token $1, and p11tool with a PIN from
# file $4 given through GNUTLS_PIN (never argv).
p11tool_login() {
  local pinfile=$1
  shift
  GNUTLS_PIN=$(cat "$pinfile") p11tool --provider "$MODULE" --login "$@" </dev/null
}

# DER SPKI of a token key, exported through p11tool, on stdout.
token_spki() { # DIR NAME
  local f=$T/spki.$$.pem
  SOFTHSM2_CONF=$1/softhsm2.conf p11tool_login "$1/user.pin" --export-pubkey \
    --outfile "$f" "pkcs11:token=keyless;object=$2;type=public" >/dev/null 2>&1 || return 1
  openssl pkey -pubin -in "$f" -outform DER
  rm -f "$f"
}

cert_spki() { # CERTFILE
  openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER
}

# "NAME ID" per private key in the token, sorted: the identity of the key set.
key_ids() { # DIR
  SOFTHSM2_CONF=$1/softhsm2.conf p11tool_login "$1/user.pin" --list-all-privkeys --only-urls \
    "pkcs11:token=keyless" 2>/dev/null |
    sed -n 's/.*;id=\([^;]*\);object=\([^;]*\);type=private$/\2 \1/p' | sort
}

# A digest of every artefact a re-run must leave alone.
fixture_digest() { # DIR
  (cd "$1" && sha256sum user.pin so.pin env softhsm2.conf pki/*.pem pki/*.key)
  local k
  for k in ecdsa-p256 ecdsa-p384 rsa-2048 ed25519; do
    printf '%s ' "$k"
    token_spki "$1" "$k" | sha256sum
  done
  key_ids "$1"
}

KEYS="ecdsa-p256 ecdsa-p384 rsa-2048 ed25519"
