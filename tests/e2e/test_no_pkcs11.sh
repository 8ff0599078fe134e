#!/usr/bin/env bash
# keyless-frontend never links PKCS#11 (DESIGN: it cannot touch the key) nor libssl,
# keyless-signer never links libssl (checked with ldd, readelf and nm), and its
# configuration errors are one clear line with file, line, section and key (exit 2).
. "$(dirname "$0")/lib.sh"
[ -x "$FE_BIN" ] || bail "no $FE_BIN"
[ -x "$SIGNER_BIN" ] || bail "no $SIGNER_BIN"

# Each tool's output goes to a file, and its own exit status is a check: a tool that
# fails or prints nothing must not read as "no forbidden library found". The same
# patterns are run on the signer, which does link p11-kit, to show they can match.
# tool_out NAME CMD...: runs CMD into $T/NAME; fails unless it exits 0 with output.
tool_out() {
    local name=$1
    shift
    "$@" >"$T/$name" 2>&1 && test -s "$T/$name"
}
for b in frontend signer; do
    bin=$FE_BIN
    [ $b = signer ] && bin=$SIGNER_BIN
    check "ldd keyless-$b works" tool_out $b.ldd ldd "$bin"
    check "readelf -d keyless-$b works and lists NEEDED libraries" tool_out $b.needed \
        bash -c 'set -o pipefail; readelf -d "$1" | grep "(NEEDED)"' _ "$bin"
    check "nm -D keyless-$b works" tool_out $b.nm nm -D "$bin"
done
# count PATTERN FILE: how many lines match (0 when none; grep's own errors are fatal).
count() {
    local n=0
    n=$(grep -Eic "$1" "$2") || [ $? -eq 1 ] || bail "grep -E '$1' $2 failed"
    echo "${n:-0}"
}
P11='p11-kit|pkcs11|softhsm'
P11SYM=' (C_[A-Z][A-Za-z]+|p11_kit_[a-z_]+)(@|$)'
SSL='libssl\.'
is "$(count "$P11" "$T/frontend.ldd")" 0 "ldd: keyless-frontend loads no p11-kit / pkcs11"
is "$(count "$P11" "$T/frontend.needed")" 0 "readelf: keyless-frontend NEEDs no p11-kit / pkcs11"
is "$(count "$P11SYM" "$T/frontend.nm")" 0 "nm: no PKCS#11 or p11-kit symbol in keyless-frontend"
is "$(count "$SSL" "$T/frontend.ldd")" 0 "ldd: keyless-frontend loads no libssl (only libcrypto)"
is "$(count "$SSL" "$T/frontend.needed")" 0 "readelf: keyless-frontend NEEDs no libssl"
is "$(count "$SSL" "$T/signer.ldd")" 0 "ldd: keyless-signer loads no libssl"
is "$(count "$SSL" "$T/signer.needed")" 0 "readelf: keyless-signer NEEDs no libssl"
check "ldd shows libcrypto in keyless-frontend (the engine's crypto)" grep -q libcrypto "$T/frontend.ldd"
check "readelf: keyless-frontend NEEDs libsodium" grep -q libsodium "$T/frontend.needed"
check "nm sees the frontend's libcrypto symbols (EVP_)" grep -q ' EVP_' "$T/frontend.nm"
check "the patterns match the signer: p11-kit in ldd" grep -Eiq "$P11" "$T/signer.ldd"
check "... p11-kit in readelf NEEDED" grep -Eiq "$P11" "$T/signer.needed"
check "... p11-kit symbols in nm" grep -Eq "$P11SYM" "$T/signer.nm"

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
    is "exit $rc, $(wc -l <<<"$out") line(s), $(grep -Ec -- "$pattern" <<<"$out") matching" \
        "exit 2, 1 line(s), 1 matching" "$name"
    diag "  $out"
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
done_testing
