#!/usr/bin/env bash
# From nothing: setup.sh makes the token, four in-token keys with the right
# attributes, certificates that carry exactly the token's public keys, chains
# that verify, and a fixture that check.sh accepts. Checked here with the
# tools directly, not through check.sh, so that a check.sh bug cannot hide a
# setup.sh bug; then check.sh itself must notice a broken fixture.
. "$(dirname "$0")/tap.sh"

D=$T/hsm
t0=$(date +%s%N)
run_setup --dir "$D"
t1=$(date +%s%N)
ok $rc "setup.sh from nothing exits 0"
[ $rc -eq 0 ] || {
  sed 's/^/# /' "$T/err" "$T/out"
  done_testing
}
diag "setup.sh from nothing (including its check.sh run) took $(((t1 - t0) / 1000000)) ms"
check "setup.sh printed nothing on stderr" test ! -s "$T/err"
check "setup.sh ran check.sh and all its checks passed" \
  bash -c "grep -c '^ok ' '$T/out' | grep -qx 26 && ! grep -q '^not ok' '$T/out'"

# Layout.
check "softhsm2.conf points at DIR/tokens" grep -qx "directories.tokendir = $D/tokens" "$D/softhsm2.conf"
check "a token directory exists inside DIR" bash -c "ls -d '$D'/tokens/*/ >/dev/null"
for f in user.pin so.pin; do
  check "$f is mode 600" test "$(stat -c %a "$D/$f")" = 600
  check "$f holds a 32-hex-digit PIN" grep -qxE '[0-9a-f]{32}' "$D/$f"
done
check "user.pin and so.pin differ" bash -c "! cmp -s '$D/user.pin' '$D/so.pin'"
for f in user.pin so.pin; do
  check "the $f PIN appears in no output of setup.sh" \
    bash -c "! grep -qF \"\$(cat '$D/$f')\" '$T/out' '$T/err'"
done
check "CA keys are mode 600" test "$(stat -c %a "$D/pki/root.key")$(stat -c %a "$D/pki/intermediate.key")" = 600600
env_exports() (
  . "$D/env"
  [ "$SOFTHSM2_CONF" = "$D/softhsm2.conf" ] && [ "$KL_HSM_MODULE" = "$MODULE" ] &&
    [ "$KL_TOKEN_LABEL" = keyless ] && [ "$KL_PIN_FILE" = "$D/user.pin" ]
)
check "env exports SOFTHSM2_CONF, KL_HSM_MODULE, KL_TOKEN_LABEL, KL_PIN_FILE" env_exports

export SOFTHSM2_CONF=$D/softhsm2.conf
pkcs11-tool --module "$MODULE" --list-token-slots </dev/null >"$T/slots" 2>&1 || true
check "token 'keyless' is present and its user PIN is initialised" \
  bash -c "grep -A3 -x '  token label        : keyless' '$T/slots' | grep -q 'PIN initialized'"

# Keys: one private + one public object per key, same label and id, and the
# private key's attributes.
p11tool_login "$D/user.pin" --list-all --only-urls "pkcs11:token=keyless" >"$T/all" 2>/dev/null || true
check "the token holds exactly 9 objects" test "$(grep -c '^pkcs11:' "$T/all")" -eq 9
id=0
for k in $KEYS; do
  id=$((id + 1))
  for ty in private public; do
    check "$k: $ty object with CKA_ID 0$id" grep -qxE "pkcs11:.*;id=%0$id;object=$k;type=$ty" "$T/all"
  done
  p11tool_login "$D/user.pin" --list-all-privkeys "pkcs11:token=keyless;object=$k;type=private" >"$T/pk" 2>&1 || true
  flags=$(grep 'Flags:' "$T/pk" || true)
  check "$k: private key is CKA_SENSITIVE" grep -q 'CKA_SENSITIVE;' <<<"$flags"
  check "$k: private key is not CKA_EXTRACTABLE" bash -c "! grep -q 'CKA_EXTRACTABLE;' <<<'$flags'"
  check "$k: private key is CKA_PRIVATE" grep -q 'CKA_PRIVATE;' <<<"$flags"
done
# CKA_PRIVATE in practice: nothing private is listed without a login.
pkcs11-tool --module "$MODULE" --token-label keyless --list-objects --type privkey </dev/null >"$T/anon" 2>&1 || true
check "no private key is visible without login" bash -c "! grep -q '^Private Key Object' '$T/anon'"
# The ticket root (issue 11): one secret key, private, sensitive, never extractable,
# that the token computes HMAC-SHA256 with, the same way every time.
check "ticket-root: one secret key with CKA_ID 10" grep -qxE "pkcs11:.*;id=%10;object=ticket-root;type=secret-key" "$T/all"
check "setup.sh said it created the ticket root" grep -q '^hsm-setup: ticket root ticket-root .*created in the token' "$T/out"
p11tool_login "$D/user.pin" --list-all "pkcs11:token=keyless;object=ticket-root;type=secret-key" >"$T/sk" 2>&1 || true
flags=$(grep 'Flags:' "$T/sk" || true)
check "ticket-root is CKA_SENSITIVE" grep -q 'CKA_SENSITIVE;' <<<"$flags"
check "ticket-root is CKA_PRIVATE" grep -q 'CKA_PRIVATE;' <<<"$flags"
check "ticket-root is not CKA_EXTRACTABLE" bash -c "! grep -q 'CKA_EXTRACTABLE;' <<<'$flags'"
pkcs11-tool --module "$MODULE" --token-label keyless --list-objects </dev/null >"$T/anon-all" 2>&1 || true
check "ticket-root is not visible without login" bash -c "! grep -q 'ticket-root' '$T/anon-all'"
GNUTLS_PIN=$(cat "$D/user.pin") pkcs11-tool --module "$MODULE" --token-label keyless --login --pin env:GNUTLS_PIN \
  --read-object --type secrkey --label ticket-root -o "$T/root.val" </dev/null >/dev/null 2>&1 || true
check "ticket-root's value cannot be read out" test ! -s "$T/root.val"
h1=$(root_hmac "$D" || true)
h2=$(root_hmac "$D" || true)
check "ticket-root: the token's HMAC-SHA256 is 32 bytes and repeatable" bash -c "test \${#1} -eq 64 -a '$h1' = '$h2'" _ "$h1"
# The URI form other components use resolves to exactly one key.
n=$(p11tool_login "$D/user.pin" --list-all --only-urls 'pkcs11:token=keyless;object=ecdsa-p256;type=private' 2>/dev/null | grep -c '^pkcs11:' || true)
check "pkcs11:token=keyless;object=ecdsa-p256;type=private names one object" test "$n" -eq 1

# Certificates.
id=0
for k in $KEYS; do
  id=$((id + 1))
  crt=$D/pki/$k.crt.pem
  token_spki "$D" "$k" >"$T/$k.tok.der" || true
  cert_spki "$crt" >"$T/$k.crt.der" || true
  check "$k: certificate SPKI equals the SPKI exported from the token" \
    bash -c "test -s '$T/$k.tok.der' && cmp -s '$T/$k.tok.der' '$T/$k.crt.der'"
  # Second opinion through pkcs11-tool for the types its 0.23 export handles.
  case $k in
  ecdsa-p256 | rsa-2048)
    GNUTLS_PIN=$(cat "$D/user.pin") pkcs11-tool --module "$MODULE" --token-label keyless --login \
      --pin env:GNUTLS_PIN --read-object --type pubkey --id "0$id" -o "$T/$k.p11.der" </dev/null >/dev/null 2>&1 || true
    check "$k: pkcs11-tool's export of the public key equals the certificate's" cmp -s "$T/$k.p11.der" "$T/$k.crt.der"
    ;;
  esac
  openssl x509 -in "$crt" -noout -text >"$T/$k.txt"
  check "$k: subject CN=localhost" bash -c "openssl x509 -in '$crt' -noout -subject | grep -q 'CN *= *localhost'"
  check "$k: SAN is DNS:localhost, IP:127.0.0.1" grep -qE 'DNS:localhost, IP Address:127.0.0.1' "$T/$k.txt"
  check "$k: EKU serverAuth" grep -q 'TLS Web Server Authentication' "$T/$k.txt"
  check "$k: chain verifies against root.pem" \
    openssl verify -CAfile "$D/pki/root.pem" -untrusted "$D/pki/intermediate.pem" -purpose sslserver "$crt"
  check "$k: chain.pem is leaf + intermediate" cmp -s "$D/pki/$k.chain.pem" <(cat "$crt" "$D/pki/intermediate.pem")
  # Valid from a day ago, for about two years.
  nb=$(date -d "$(openssl x509 -in "$crt" -noout -startdate | cut -d= -f2)" +%s)
  na=$(date -d "$(openssl x509 -in "$crt" -noout -enddate | cut -d= -f2)" +%s)
  now=$(date +%s)
  check "$k: notBefore is about a day ago" test $((now - nb)) -ge 82800 -a $((now - nb)) -le 90000
  check "$k: notAfter is about two years ahead" test $((na - now)) -ge $((700 * 86400)) -a $((na - now)) -le $((740 * 86400))
done
check "intermediate CA has pathlen 0" \
  bash -c "openssl x509 -in '$D/pki/intermediate.pem' -noout -text | grep -q 'CA:TRUE, pathlen:0'"
check "root.pem is self-signed and verifies" openssl verify -CAfile "$D/pki/root.pem" "$D/pki/root.pem"
check "client.pem verifies against client-ca.pem for clientAuth" \
  openssl verify -CAfile "$D/pki/client-ca.pem" -purpose sslclient "$D/pki/client.pem"
check "client.pem is not valid under the server root" \
  bash -c "! openssl verify -CAfile '$D/pki/root.pem' '$D/pki/client.pem' >/dev/null 2>&1"
check "client keys are mode 600" test "$(stat -c %a "$D/pki/client-ca.key")$(stat -c %a "$D/pki/client.key")" = 600600
check "a leaf does not verify against the intermediate alone (root is the anchor)" \
  bash -c "! openssl verify -CAfile '$D/pki/intermediate.pem' '$D/pki/ed25519.crt.pem' >/dev/null 2>&1"

# check.sh on its own.
check "check.sh --dir DIR passes on the fresh fixture" bash -c "bash '$CHECK' --dir '$D' >'$T/check' 2>&1"

# check.sh must notice a certificate that does not belong to the token key.
cp "$D/pki/ecdsa-p256.crt.pem" "$T/p256.bak"
cp "$D/pki/ecdsa-p384.crt.pem" "$D/pki/ecdsa-p256.crt.pem"
rc=0
bash "$CHECK" --dir "$D" >"$T/check" 2>&1 || rc=$?
check "check.sh fails when ecdsa-p256's certificate carries another key" test $rc -ne 0
check "... and names the public-key mismatch" grep -q '^not ok .* ecdsa-p256: certificate public key differs' "$T/check"
check "... and the signature check" grep -q '^not ok .* ecdsa-p256: token signature' "$T/check"
cp "$T/p256.bak" "$D/pki/ecdsa-p256.crt.pem"

# check.sh must notice an extractable, non-sensitive key in place of ed25519.
PIN=$(cat "$D/user.pin")
for ty in privkey pubkey; do
  KLP=$PIN pkcs11-tool --module "$MODULE" --token-label keyless --login --pin env:KLP \
    --delete-object --type $ty --label ed25519 --id 04 </dev/null >/dev/null 2>&1
done
KLP=$PIN pkcs11-tool --module "$MODULE" --token-label keyless --login --pin env:KLP --keypairgen \
  --key-type EC:edwards25519 --label ed25519 --id 04 --usage-sign --extractable --private \
  </dev/null >/dev/null 2>&1
PIN=
rc=0
bash "$CHECK" --dir "$D" >"$T/check" 2>&1 || rc=$?
check "check.sh fails on an extractable ed25519 key" test $rc -ne 0
check "... naming CKA_EXTRACTABLE" grep -q '^not ok .* ed25519: private key attributes:.*CKA_EXTRACTABLE' "$T/check"

# ... and an extractable ticket root.
PIN=$(cat "$D/user.pin")
KLP=$PIN pkcs11-tool --module "$MODULE" --token-label keyless --login --pin env:KLP \
  --delete-object --type secrkey --label ticket-root </dev/null >/dev/null 2>&1
KLP=$PIN pkcs11-tool --module "$MODULE" --token-label keyless --login --pin env:KLP --keygen \
  --key-type GENERIC:32 --label ticket-root --id 10 --usage-sign --extractable --private </dev/null >/dev/null 2>&1
PIN=
rc=0
bash "$CHECK" --dir "$D" >"$T/check" 2>&1 || rc=$?
check "check.sh fails on an extractable ticket root" test $rc -ne 0
check "... naming it" grep -q '^not ok .* ticket-root: secret key attributes:.*CKA_EXTRACTABLE' "$T/check"

done_testing
