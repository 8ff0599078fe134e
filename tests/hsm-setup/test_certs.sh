#!/usr/bin/env bash
# Issue 14: setup.sh never overwrites certificates an operator placed under
# pki/. It records what it made (pki/.hsm-setup-made); a certificate it did
# not make is kept byte for byte when it carries the token key, and one that
# does not (or a foreign CA file that is inconsistent) stops the run with one
# line naming the file, unless --replace-certs. Its own stale files are still
# remade, and --force removes only its own files.
. "$(dirname "$0")/tap.sh"

D=$T/hsm
P=$D/pki
run_setup --dir "$D" --no-check
ok $rc "first setup.sh exits 0"
[ $rc -eq 0 ] || {
  sed 's/^/# /' "$T/err" "$T/out"
  done_testing
}
check "pki/.hsm-setup-made records the files it made" \
  bash -c "grep -qE '^[0-9a-f]{64}  root.pem\$' '$P/.hsm-setup-made' && grep -qE '^[0-9a-f]{64}  ecdsa-p256.crt.pem\$' '$P/.hsm-setup-made'"

# An operator's CA (not the test PKI) and certificates from it.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/op-ca.key" 2>/dev/null
printf '%s\n' 'cn = "Example Corp CA"' 'organization = "Example Corp"' 'ca' 'cert_signing_key' 'expiration_days = 30' \
  >"$T/op-ca.tmpl"
certtool --generate-self-signed --load-privkey "$T/op-ca.key" --template "$T/op-ca.tmpl" --outfile "$T/op-ca.pem" \
  >/dev/null 2>&1
printf '%s\n' 'cn = "www.example.com"' 'organization = "Example Corp"' 'dns_name = "www.example.com"' \
  'tls_www_server' 'signing_key' 'expiration_days = 30' >"$T/leaf.tmpl"
operator_cert() { # PUBKEY-DER OUT
  openssl pkey -pubin -inform DER -in "$1" -out "$1.pem" 2>/dev/null
  certtool --generate-certificate --load-pubkey "$1.pem" --load-ca-certificate "$T/op-ca.pem" \
    --load-ca-privkey "$T/op-ca.key" --template "$T/leaf.tmpl" 2>/dev/null |
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$2"
}

# 1. An operator's certificate that carries the token's key is kept.
token_spki "$D" ecdsa-p256 >"$T/p256.der"
operator_cert "$T/p256.der" "$P/ecdsa-p256.crt.pem"
cat "$P/ecdsa-p256.crt.pem" "$T/op-ca.pem" >"$P/ecdsa-p256.chain.pem"
check "the operator's certificate carries the token key" cmp "$T/p256.der" <(cert_spki "$P/ecdsa-p256.crt.pem")
cp "$P/ecdsa-p256.crt.pem" "$P/ecdsa-p256.chain.pem" "$T/"
fixture_digest "$D" >"$T/d1"
run_setup --dir "$D"
ok $rc "re-run with the operator's certificate exits 0 (check.sh included)"
[ $rc -eq 0 ] || sed 's/^/# /' "$T/err"
check "... issued nothing" bash -c "! grep -q issued '$T/out'"
check "... the operator's certificate and chain are unchanged" \
  bash -c "cmp '$T/ecdsa-p256.crt.pem' '$P/ecdsa-p256.crt.pem' && cmp '$T/ecdsa-p256.chain.pem' '$P/ecdsa-p256.chain.pem'"
check "... and so is everything else" cmp "$T/d1" <(fixture_digest "$D")
check "... check.sh says the chain is the operator's" grep -q "ecdsa-p256: chain not checked: .*operator" "$T/out"

# 2. An operator's certificate for another key is refused, naming the file.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkey -pubout -outform DER \
  >"$T/other.der" 2>/dev/null
operator_cert "$T/other.der" "$P/rsa-2048.crt.pem"
fixture_digest "$D" >"$T/d2"
run_setup --dir "$D" --no-check
check "a foreign certificate that does not carry the token key: exits non-zero" test $rc -ne 0
check "... with one line naming the file and --replace-certs" \
  bash -c "test \$(wc -l <'$T/err') -eq 1 && grep -q '^hsm-setup: $P/rsa-2048.crt.pem: its public key is not the token.s key rsa-2048; .*--replace-certs' '$T/err'"
[ "$(wc -l <"$T/err")" -eq 1 ] || sed 's/^/# /' "$T/err"
check "... and nothing changed" cmp "$T/d2" <(fixture_digest "$D")

# 3. --replace-certs replaces it (and keeps the one that matches).
run_setup --dir "$D" --no-check --replace-certs
ok $rc "--replace-certs exits 0"
check "... rsa-2048.crt.pem was issued, and only it" \
  bash -c "grep issued '$T/out' | grep -qx 'hsm-setup: pki: rsa-2048.crt.pem issued' && test \$(grep -c issued '$T/out') -eq 1"
check "... it carries the token's rsa-2048 key" cmp <(token_spki "$D" rsa-2048) <(cert_spki "$P/rsa-2048.crt.pem")
check "... the matching operator certificate is still kept" cmp "$T/ecdsa-p256.crt.pem" "$P/ecdsa-p256.crt.pem"

# 4. Its own stale certificate (recorded, or issued by the test PKI) is remade.
cp "$P/ecdsa-p384.crt.pem" "$P/ed25519.crt.pem"
run_setup --dir "$D" --no-check
ok $rc "a test-PKI certificate with the wrong key: re-run exits 0"
check "... ed25519.crt.pem reissued alone" \
  bash -c "grep issued '$T/out' | grep -qx 'hsm-setup: pki: ed25519.crt.pem issued' && test \$(grep -c issued '$T/out') -eq 1"

# 5. An operator's root.pem that does not match root.key is refused.
cp "$P/root.pem" "$T/root.pem.ours"
cp "$T/op-ca.pem" "$P/root.pem"
fixture_digest "$D" >"$T/d5"
run_setup --dir "$D" --no-check
check "an operator's root.pem: exits non-zero" test $rc -ne 0
check "... one line naming root.pem" \
  bash -c "test \$(wc -l <'$T/err') -eq 1 && grep -q '^hsm-setup: $P/root.pem: does not match root.key .*not replaced' '$T/err'"
check "... and nothing changed" cmp "$T/d5" <(fixture_digest "$D")
cp "$T/root.pem.ours" "$P/root.pem"

# 6. --force removes only its own pki/ files: the operator's certificate stays,
# and no longer matching the new token key, it stops the run.
run_setup --dir "$D" --no-check --force
check "--force with an operator's certificate: exits non-zero" test $rc -ne 0
check "... naming it" grep -q "^hsm-setup: $P/ecdsa-p256.crt.pem: its public key is not the token.s key" "$T/err"
check "... which is still there, unchanged" cmp "$T/ecdsa-p256.crt.pem" "$P/ecdsa-p256.crt.pem"
check "... while its own certificates were removed or remade" bash -c "! cmp -s '$T/root.pem.ours' '$P/root.pem'"
mv "$P/ecdsa-p256.crt.pem" "$P/ecdsa-p256.chain.pem" "$T/"
run_setup --dir "$D"
ok $rc "with the operator's files moved away, a re-run completes (check.sh included)"
[ $rc -eq 0 ] || sed 's/^/# /' "$T/err"

done_testing
