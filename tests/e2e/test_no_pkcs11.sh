#!/usr/bin/env bash
# keyless-frontend never links PKCS#11 (DESIGN: it cannot touch the key), and its
# configuration errors are one clear line with file, line, section and key (exit 2).
. "$(dirname "$0")/lib.sh"
[ -x "$FE_BIN" ] || bail "no $FE_BIN"

libs=$(ldd "$FE_BIN")
check "ldd keyless-frontend works" test -n "$libs"
if grep -Eiq 'p11-kit|pkcs11|softhsm' <<<"$libs"; then not_ok "no p11-kit / pkcs11 in ldd"; else ok "no p11-kit / pkcs11 in ldd"; fi
if nm -D "$FE_BIN" 2>/dev/null | grep -q ' C_Sign\| p11_kit_'; then
    not_ok "no PKCS#11 symbol in the binary"
else
    ok "no PKCS#11 symbol in the binary"
fi
check "ldd shows libcrypto (the engine's crypto)" grep -q libcrypto <<<"$libs"
check "ldd shows libsodium" grep -q libsodium <<<"$libs"
if grep -q 'libssl\.' <<<"$libs"; then not_ok "no libssl (only libcrypto)"; else ok "no libssl (only libcrypto)"; fi

# Config errors: one line, named file:line: [section] key: reason, exit 2.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k.pem" -out "$T/c.pem" \
    -days 2 -subj /CN=localhost >/dev/null 2>&1
base() {
    cat <<EOC
[frontend]
workers = 1
[signer]
socket = $T/none.sock
[cert a]
chain = $T/c.pem
key = ecdsa-p256
[listener main]
listen = 127.0.0.1:1
backend = 127.0.0.1:2
EOC
}
base >"$T/good.conf"
out=$("$FE_BIN" --config "$T/good.conf" --check-config 2>&1 || true)
check "--check-config accepts a valid file" grep -q "configuration OK" <<<"$out"

expect_err() {
    local name=$1 pattern=$2 out rc=0
    out=$("$FE_BIN" --config "$T/bad.conf" --check-config 2>&1) || rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -Eq "$pattern" <<<"$out"; then
        ok "$name"
    else
        not_ok "$name (rc=$rc: $out)"
    fi
}
base | sed 's/^workers = 1/workers = lots/' >"$T/bad.conf"
expect_err "bad number: file, line 2, [frontend] workers" "^keyless-frontend: $T/bad.conf:2: \[frontend\] workers: "
base | sed 's/^listen = .*/listen = nowhere/' >"$T/bad.conf"
expect_err "bad address: [listener main] listen" "bad.conf:9: \[listener main\] listen: 'nowhere'"
base | sed "s#^chain = .*#chain = $T/missing.pem#" >"$T/bad.conf"
expect_err "missing chain file: [cert a] chain" "bad.conf:6: \[cert a\] chain: cannot read"
{ base; echo "colour = blue"; } >"$T/bad.conf"
expect_err "unknown key" "bad.conf:11: \[listener main\] colour: unknown key"
base | sed 's/^\[signer\]/[signers]/' >"$T/bad.conf"
expect_err "unknown section" "\[signers\]: unknown section"
{ base; printf '[tls]\nsuites = TLS_AES_128_CCM_SHA256\n'; } >"$T/bad.conf"
expect_err "unknown cipher suite" "\[tls\] suites: unknown cipher suite"
{ base; printf '[frontend]\nmetrics = 10.1.2.3:9100\n'; } >"$T/bad.conf"
expect_err "metrics must be loopback" "\[frontend\] metrics: .*not a loopback"
base | grep -v '^backend' >"$T/bad.conf"
expect_err "missing backend" "\[listener main\] backend: missing"
echo "garbage" >"$T/garbage.pem"
base | sed "s#^chain = .*#chain = $T/garbage.pem#" >"$T/bad.conf"
expect_err "a chain file without a certificate" "\[cert a\] chain: .*no PEM certificate"
rc=0
"$FE_BIN" --config "$T/nonexistent.conf" --check-config >/dev/null 2>&1 || rc=$?
check "missing config file: exit 2" test "$rc" -eq 2
rc=0
"$FE_BIN" --bogus >/dev/null 2>&1 || rc=$?
check "unknown option: exit 2" test "$rc" -eq 2

# The signer is not there: refuse to start with one line, bounded wait.
base | sed "s#^socket = .*#socket = $T/none.sock\nstartup_wait = 0.3#" >"$T/nosigner.conf"
rc=0
out=$(timeout 10 "$FE_BIN" --config "$T/nosigner.conf" 2>&1) || rc=$?
check "no signer: the frontend refuses to start (exit 1)" test "$rc" -eq 1
check "no signer: one line naming the socket" grep -q "\[signer\] socket: cannot connect to $T/none.sock" <<<"$out"
kl_done
