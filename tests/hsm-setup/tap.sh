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

# The identity of the ticket root (a secret that never leaves the token): the
# hex HMAC-SHA256 the token computes with it over a fixed message. Module $2
# and PIN file $3 default to the SoftHSM fixture in DIR.
root_hmac() { # DIR [MODULE PINFILE LABEL]
  local mod=${2:-$MODULE} pin=${3:-$1/user.pin} label=${4:-keyless} f=$T/root-hmac.$$
  printf 'keyless ticket root fingerprint' >"$f.in"
  SOFTHSM2_CONF=${SOFTHSM2_CONF_OVERRIDE:-$1/softhsm2.conf} KLP=$(cat "$pin") pkcs11-tool --module "$mod" \
    --token-label "$label" --login --pin env:KLP --sign -m SHA256-HMAC --label ticket-root \
    -i "$f.in" -o "$f.out" </dev/null >/dev/null 2>&1 || return 1
  od -An -tx1 "$f.out" | tr -d ' \n'
  rm -f "$f.in" "$f.out"
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
  printf 'ticket-root hmac %s\n' "$(root_hmac "$1" || echo none)"
}

KEYS="ecdsa-p256 ecdsa-p384 rsa-2048 ed25519"
