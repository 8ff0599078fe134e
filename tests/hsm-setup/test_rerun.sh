#!/usr/bin/env bash
# Idempotence: a re-run without --force keeps keys, PINs and certificates
# byte for byte; a lost or broken piece is remade alone; --force remakes
# everything (new keys, so new certificates).
. "$(dirname "$0")/tap.sh"

D=$T/hsm
run_setup --dir "$D"
ok $rc "first setup.sh exits 0"
[ $rc -eq 0 ] || {
  sed 's/^/# /' "$T/err"
  done_testing
}
fixture_digest "$D" >"$T/d0"
check "the fixture digest covers 4 keys and 4 key ids" \
  test "$(grep -c ' -$' "$T/d0")" -eq 4 -a "$(grep -cE '^[a-z0-9-]+ %0[1-4]$' "$T/d0")" -eq 4
check "... and the ticket root (its HMAC by the token)" grep -qE '^ticket-root hmac [0-9a-f]{64}$' "$T/d0"

# 1. Re-run: nothing changes.
run_setup --dir "$D"
ok $rc "re-run without --force exits 0"
check "re-run generated no key and issued no certificate" bash -c "! grep -qE 'generated|created|issued|initialised' '$T/out'"
check "re-run printed nothing on stderr" test ! -s "$T/err"
fixture_digest "$D" >"$T/d1"
check "re-run: same key ids, same public keys, same PIN files, byte-identical certs" cmp "$T/d0" "$T/d1"

# 2. Re-run with an explicit --pin-file (existing token path): still nothing changes.
cp "$D/user.pin" "$T/mine.pin"
run_setup --dir "$D" --no-check --pin-file "$T/mine.pin"
ok $rc "re-run with --pin-file of the existing token exits 0"
fixture_digest "$D" | grep -v ' env$' >"$T/d2"
check "re-run with --pin-file changes no key or certificate" cmp <(grep -v ' env$' "$T/d0") "$T/d2"
check "env then names the given PIN file" grep -qx "export KL_PIN_FILE=$T/mine.pin" "$D/env"
run_setup --dir "$D" --no-check
check "env names DIR/user.pin again after a plain re-run" grep -qx "export KL_PIN_FILE=$D/user.pin" "$D/env"

# 3. A lost leaf certificate is reissued alone.
rm "$D/pki/ed25519.crt.pem"
run_setup --dir "$D" --no-check
ok $rc "re-run after deleting ed25519.crt.pem exits 0"
check "only ed25519.crt.pem was issued" bash -c "grep 'issued' '$T/out' | grep -qx 'hsm-setup: pki: ed25519.crt.pem issued' && test \$(grep -c issued '$T/out') -eq 1"
fixture_digest "$D" >"$T/d3"
check "every other file and every key is unchanged" \
  cmp <(grep -v 'ed25519.c' "$T/d0") <(grep -v 'ed25519.c' "$T/d3")
check "ed25519.crt.pem carries the token's ed25519 key" \
  cmp <(token_spki "$D" ed25519) <(cert_spki "$D/pki/ed25519.crt.pem")

# 4. A broken intermediate (key no longer matches) is remade with all leaves; keys stay.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$D/pki/intermediate.key" 2>/dev/null
run_setup --dir "$D" --no-check
ok $rc "re-run after replacing intermediate.key exits 0"
check "intermediate and the 4 leaves were reissued, not the root" \
  bash -c "test \$(grep -c issued '$T/out') -eq 5 && grep -q 'intermediate CA issued' '$T/out' && ! grep -q 'root CA' '$T/out'"
fixture_digest "$D" >"$T/d4"
check "keys, key ids, PINs and root unchanged" \
  cmp <(grep -vE 'pki/|env$' "$T/d0") <(grep -vE 'pki/|env$' "$T/d4")
check "root.pem unchanged" cmp <(grep 'root.pem' "$T/d0") <(grep 'root.pem' "$T/d4")

# 5. An interrupted run's leftovers (temp dir) do not disturb a re-run.
mkdir "$D/.tmp.stale" && touch "$D/.tmp.stale/atomic"
run_setup --dir "$D" --no-check
ok $rc "re-run with a stale temp dir present exits 0"
check "the stale temp dir is gone and no new one is left" bash -c "! ls -d '$D'/.tmp.* 2>/dev/null"

# 6. --force: everything new.
cp -r "$D/pki" "$T/pki.before"
run_setup --dir "$D" --force --no-check
ok $rc "setup.sh --force exits 0"
check "--force initialised a new token and generated 4 keys" \
  bash -c "grep -q 'initialised' '$T/out' && test \$(grep -c 'generated in the token' '$T/out') -eq 4"
fixture_digest "$D" >"$T/d5"
for k in $KEYS; do
  check "--force: $k has a new public key" \
    bash -c "! cmp -s <(grep '^$k ' '$T/d4') <(grep '^$k ' '$T/d5')"
  check "--force: $k.crt.pem differs" bash -c "! cmp -s '$T/pki.before/$k.crt.pem' '$D/pki/$k.crt.pem'"
  check "--force: $k.crt.pem carries the new token key" \
    cmp <(token_spki "$D" "$k") <(cert_spki "$D/pki/$k.crt.pem")
done
check "--force: new root CA" bash -c "! cmp -s '$T/pki.before/root.pem' '$D/pki/root.pem'"
check "--force: new PINs" bash -c "! cmp -s <(grep ' user.pin' '$T/d4') <(grep ' user.pin' '$T/d5')"
check "--force: a new ticket root" bash -c "! cmp -s <(grep '^ticket-root ' '$T/d4') <(grep '^ticket-root ' '$T/d5')"
check "--force: the new ticket root is there" grep -qE '^ticket-root hmac [0-9a-f]{64}$' "$T/d5"
check "--force: same key ids" cmp <(grep -E '^[a-z0-9-]+ %' "$T/d4") <(grep -E '^[a-z0-9-]+ %' "$T/d5")
check "--force: exactly one token directory remains" test "$(find "$D/tokens" -mindepth 1 -maxdepth 1 -type d | wc -l)" -eq 1
check "check.sh passes after --force" bash "$CHECK" --dir "$D"

# 7. Two first runs at once on one fresh directory: the lock serialises
# them, the second reuses what the first made.
C=$T/concurrent/hsm
bash "$SETUP" --dir "$C" --no-check >"$T/c1.out" 2>&1 &
p1=$!
bash "$SETUP" --dir "$C" --no-check >"$T/c2.out" 2>&1 &
p2=$!
rc1=0 rc2=0
wait $p1 || rc1=$?
wait $p2 || rc2=$?
check "two concurrent first runs both exit 0" test $rc1 -eq 0 -a $rc2 -eq 0
check "only one of them initialised the token and generated keys" \
  test "$(cat "$T/c1.out" "$T/c2.out" | grep -c 'generated in the token')" -eq 4 -a \
  "$(cat "$T/c1.out" "$T/c2.out" | grep -c 'initialised')" -eq 1
check "only one of them created the ticket root" \
  test "$(cat "$T/c1.out" "$T/c2.out" | grep -c 'ticket root ticket-root .*created')" -eq 1
check "one token directory" test "$(find "$C/tokens" -mindepth 1 -maxdepth 1 -type d | wc -l)" -eq 1
check "check.sh passes on the result" bash "$CHECK" --dir "$C"

# 8. Objects under the ticket root's label that are not one secret key are
# refused with one line, not "repaired" (the root is shared by a fleet).
SOFTHSM2_CONF=$D/softhsm2.conf KLP=$(cat "$D/user.pin") pkcs11-tool --module "$MODULE" --token-label keyless --login --pin env:KLP --keygen \
  --key-type GENERIC:32 --label ticket-root --id 11 --usage-sign --sensitive --private </dev/null >/dev/null 2>&1
fixture_digest "$D" >"$T/d6"
run_setup --dir "$D" --no-check
check "two secret keys labelled ticket-root: exits non-zero" test $rc -ne 0
check "... with one line naming the label and the way out" \
  bash -c "test \$(wc -l <'$T/err') -eq 1 && grep -q '^hsm-setup: token keyless: objects labelled ticket-root are not one secret key with id 10 (2 object(s)).*--force' '$T/err'"
check "... and nothing changed" cmp "$T/d6" <(fixture_digest "$D")

done_testing
