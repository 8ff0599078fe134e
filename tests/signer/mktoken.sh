#!/usr/bin/env bash
# mktoken.sh DIR - a SoftHSM2 token for the signer tests, laid out like hsm-setup's.
# Uses hsm-setup/setup.sh when it exists; otherwise makes the same token itself
# (label keyless; ecdsa-p256 01, ecdsa-p384 02, rsa-2048 03, ed25519 04, and the
# secret key ticket-root 10), without
# certificates (DIR/pki/ stays empty: the tests then verify against the token's SPKI).
# Under ctest (KL_HSM_TEMPLATE, the fixture hsm_token) it copies the run's prepared token
# instead (tests/lib/hsm-token.sh).
set -eu
dir=$1
top=${KL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if [ -n "${KL_HSM_TEMPLATE:-}" ]; then
    rc=0
    bash "$top/tests/lib/hsm-token.sh" copy "$dir" || rc=$?
    [ $rc = 3 ] || exit $rc
fi
if [ -f "$top/hsm-setup/setup.sh" ]; then
    bash "$top/hsm-setup/setup.sh" --dir "$dir" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log" >&2; exit 1; }
    exit 0
fi
module=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
mkdir -p "$dir/tokens" "$dir/pki"
cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$dir/softhsm2.conf
umask 077
od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$dir/user.pin"
od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$dir/so.pin"
softhsm2-util --init-token --free --label keyless --pin "$(cat "$dir/user.pin")" --so-pin "$(cat "$dir/so.pin")" >/dev/null
gen() {
    pkcs11-tool --module "$module" --token-label keyless --login --pin "$(cat "$dir/user.pin")" \
        --keypairgen --key-type "$1" --label "$2" --id "$3" --usage-sign >/dev/null
}
gen EC:prime256v1 ecdsa-p256 01
gen EC:secp384r1 ecdsa-p384 02
gen rsa:2048 rsa-2048 03
gen EC:edwards25519 ed25519 04
pkcs11-tool --module "$module" --token-label keyless --login --pin "$(cat "$dir/user.pin")" \
    --keygen --key-type GENERIC:32 --label ticket-root --id 10 --usage-sign --sensitive --private >/dev/null
cat >"$dir/env" <<ENV
export SOFTHSM2_CONF=$dir/softhsm2.conf
export KL_HSM_MODULE=$module
export KL_TOKEN_LABEL=keyless
export KL_PIN_FILE=$dir/user.pin
ENV
