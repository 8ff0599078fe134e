#!/usr/bin/env bash
# The hardware-HSM path: a module not named softhsm, a token that already
# exists (made here beforehand, as a vendor tool would), a PIN file given with
# --pin-file. setup.sh must not write a softhsm2.conf, must not initialise or
# wipe the token, must create only the missing keys, and with --force must
# replace only its own four keys and leave other objects alone.
. "$(dirname "$0")/tap.sh"

LABEL="vendor tok"
V=$T/vendor-hsm
mkdir -p "$V/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$V/tokens" >"$V/softhsm2.conf"
export SOFTHSM2_CONF=$V/softhsm2.conf
ln -s "$MODULE" "$T/libvendor-pkcs11.so"
VMOD=$T/libvendor-pkcs11.so
(
  umask 077
  od -An -tx1 -N12 /dev/urandom | tr -d ' \n' >"$T/user.pin"
  od -An -tx1 -N12 /dev/urandom | tr -d ' \n' >"$T/so.pin"
)
cp -p "$T/user.pin" "$T/user.pin.orig"
rc=0
UP=$(cat "$T/user.pin") SP=$(cat "$T/so.pin") bash -c '
  set -e
  pkcs11-tool --module "$0" --init-token --label "$1" --so-pin env:SP </dev/null >/dev/null 2>&1
  pkcs11-tool --module "$0" --token-label "$1" --login --login-type so --so-pin env:SP --init-pin --pin env:UP </dev/null >/dev/null 2>&1
  # An object the fixture does not own; --force must leave it alone.
  pkcs11-tool --module "$0" --token-label "$1" --login --pin env:UP --keypairgen --key-type EC:prime256v1 \
    --id 99 --label other-key --usage-sign --sensitive --private </dev/null >/dev/null 2>&1
' "$VMOD" "$LABEL" || rc=$?
ok $rc "a vendor-style token '$LABEL' exists with one foreign key"

# Objects in the vendor token as "label id type", sorted.
objects() {
  GNUTLS_PIN=$(cat "$T/user.pin") p11tool --provider "$VMOD" --login --list-all --only-urls \
    "pkcs11:token=vendor%20tok" </dev/null 2>/dev/null |
    sed -n 's/.*;id=\([^;]*\);object=\([^;]*\);type=\([a-z]*\)$/\2 \1 \3/p' | sort
}
spki() { # NAME
  GNUTLS_PIN=$(cat "$T/user.pin") p11tool --provider "$VMOD" --login --export-pubkey \
    "pkcs11:token=vendor%20tok;object=$1;type=public" </dev/null 2>/dev/null | openssl pkey -pubin -outform DER | sha256sum
}
objects >"$T/o0"

D=$T/fixture
run_setup --dir "$D" --module "$VMOD" --label "$LABEL" --pin-file "$T/user.pin"
ok $rc "setup.sh on the vendor module exits 0"
[ $rc -eq 0 ] || sed 's/^/# /' "$T/err" "$T/out"
check "the token was not initialised by setup.sh" bash -c "! grep -q initialised '$T/out'"
check "4 keys were generated" test "$(grep -c 'generated in the token' "$T/out")" -eq 4
check "check.sh (run by setup.sh) passed" bash -c "grep -q '^ok ' '$T/out' && ! grep -q '^not ok' '$T/out'"
check "no softhsm2.conf, tokens/, user.pin or so.pin in DIR" \
  bash -c "test ! -e '$D/softhsm2.conf' -a ! -e '$D/tokens' -a ! -e '$D/user.pin' -a ! -e '$D/so.pin'"
check "env names the vendor module" grep -qxF "export KL_HSM_MODULE=$(printf '%q' "$VMOD")" "$D/env"
check "env names the token label" grep -qxF "export KL_TOKEN_LABEL=$(printf '%q' "$LABEL")" "$D/env"
check "env names the given PIN file" grep -qxF "export KL_PIN_FILE=$T/user.pin" "$D/env"
check "env does not set SOFTHSM2_CONF" bash -c "! grep -q SOFTHSM2_CONF '$D/env'"
objects >"$T/o1"
check "the token holds the foreign key plus 4 pairs" test "$(wc -l <"$T/o1")" -eq 10
check "the foreign key is still there" grep -qx 'other-key %99 private' "$T/o1"
for k in $KEYS; do spki "$k"; done >"$T/s1"
sha256sum "$D"/pki/*.pem >"$T/c1"
vroot() { SOFTHSM2_CONF_OVERRIDE=$SOFTHSM2_CONF root_hmac "$D" "$VMOD" "$T/user.pin" "$LABEL"; }
check "the ticket root was created in the vendor token" grep -q '^hsm-setup: ticket root ticket-root .*created in the token' "$T/out"
r1=$(vroot || true)
check "the vendor token computes HMAC-SHA256 with the ticket root" bash -c "test \${#1} -eq 64" _ "$r1"

run_setup --dir "$D" --module "$VMOD" --label "$LABEL" --pin-file "$T/user.pin" --no-check
ok $rc "re-run on the vendor module exits 0"
check "re-run changes no key" cmp "$T/s1" <(for k in $KEYS; do spki "$k"; done)
check "re-run changes no certificate" cmp "$T/c1" <(sha256sum "$D"/pki/*.pem)
check "re-run keeps the ticket root" test "$(vroot || true)" = "$r1"

# A half pair under one of the fixture's labels is refused, not "repaired".
UP=$(cat "$T/user.pin") pkcs11-tool --module "$VMOD" --token-label "$LABEL" --login --pin env:UP \
  --delete-object --type pubkey --label ed25519 --id 04 </dev/null >/dev/null 2>&1
run_setup --dir "$D" --module "$VMOD" --label "$LABEL" --pin-file "$T/user.pin" --no-check
check "a lone ed25519 private key: exits non-zero" test $rc -ne 0
check "... with one line naming the key and the way out" \
  bash -c "test \$(wc -l <'$T/err') -eq 1 && grep -q '^hsm-setup: token vendor tok: objects labelled ed25519 are not one private+public pair with id 04 (1 private, 0 public, 0 other).*--force' '$T/err'"
check "... and check.sh now fails" bash -c "! bash '$CHECK' --dir '$D' >/dev/null 2>&1"

run_setup --dir "$D" --module "$VMOD" --label "$LABEL" --pin-file "$T/user.pin" --force
ok $rc "--force on the vendor module exits 0 (check.sh included)"
[ $rc -eq 0 ] || sed 's/^/# /' "$T/err"
objects >"$T/o2"
check "--force kept the foreign key and left exactly 4 pairs" cmp "$T/o1" "$T/o2"
for k in $KEYS; do spki "$k"; done >"$T/s2"
for i in 1 2 3 4; do
  check "--force: key $i is new" bash -c "! cmp -s <(sed -n ${i}p '$T/s1') <(sed -n ${i}p '$T/s2')"
done
check "--force: the PIN file is untouched" cmp "$T/user.pin" "$T/user.pin.orig"
r2=$(vroot || true)
check "--force: a new ticket root, and only one" bash -c "test \${#1} -eq 64 -a \"\$1\" != '$r1' && grep -q 'ticket root ticket-root .*created' '$T/out'" _ "$r2"

# The same token through the p11-kit proxy (SoftHSM2 is a registered p11-kit
# module on Debian): keys are found by token label and reused, not remade.
PROXY=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
if [ -e "$PROXY" ] && grep -qs softhsm /usr/share/p11-kit/modules/*.module; then
  for k in $KEYS; do spki "$k"; done >"$T/s3"
  run_setup --dir "$T/via-proxy" --module "$PROXY" --label "$LABEL" --pin-file "$T/user.pin"
  ok $rc "setup.sh through p11-kit-proxy.so exits 0 (check.sh included)"
  [ $rc -eq 0 ] || sed 's/^/# /' "$T/err"
  check "through the proxy no key was generated" bash -c "! grep -qE 'generated|created' '$T/out'"
  check "through the proxy the ticket root is the same" test "$(vroot || true)" = "$r2"
  check "through the proxy the keys are the same" cmp "$T/s3" <(for k in $KEYS; do spki "$k"; done)
  for k in $KEYS; do
    check "through the proxy $k.crt.pem carries the same key as the direct fixture" \
      cmp <(cert_spki "$D/pki/$k.crt.pem") <(cert_spki "$T/via-proxy/pki/$k.crt.pem")
  done
else
  skip "no p11-kit proxy with a registered SoftHSM2 module"
fi

done_testing
