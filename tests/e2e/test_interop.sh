#!/usr/bin/env bash
# openssl s_client against keyless-frontend: every cipher suite with every group,
# HelloRetryRequest forced by offering an unsupported first key share (X448), the
# certificate chosen by the client's signature algorithms (ECDSA vs RSA), and
# negative cases (no TLS 1.3, no common suite/group) that must fail.
. "$(dirname "$0")/lib.sh"

kl_token
kl_start_signer
kl_start_backend
kl_start_frontend

req='GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
sclient() {
    printf "$req" | timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost \
        -CAfile "$ROOT" -verify_return_error -verify_hostname localhost -ign_eof "$@" 2>&1 || true
}

for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
    for group in x25519 P-256 P-384 X448:P-256 X448:x25519; do
        out=$(sclient -ciphersuites "$suite" -groups "$group")
        pass=1
        grep -q "Hello from the keyless demo backend" <<<"$out" || pass=0
        grep -q "Cipher is $suite" <<<"$out" || pass=0
        want=${group#X448:}
        case $want in
        x25519) grep -q "Server Temp Key: X25519" <<<"$out" || pass=0 ;;
        P-256) grep -q "Server Temp Key: ECDH, prime256v1" <<<"$out" || pass=0 ;;
        P-384) grep -q "Server Temp Key: ECDH, secp384r1" <<<"$out" || pass=0 ;;
        esac
        label="$suite with $group"
        case $group in X448:*) label="$label (HelloRetryRequest)" ;; esac
        is "$pass" 1 "$label"
    done
done

out=$(sclient -sigalgs rsa_pss_rsae_sha256)
check "client offering only rsa_pss_rsae_sha256 gets the RSA certificate" \
    grep -q "Peer signature type: RSA-PSS" <<<"$out"
check "... and the page" grep -q "Hello from the keyless demo backend" <<<"$out"
out=$(sclient -sigalgs ecdsa_secp256r1_sha256)
check "client offering only ecdsa_secp256r1_sha256 gets the ECDSA certificate" \
    grep -q "Peer signature type: ECDSA" <<<"$out"
out=$(sclient -sigalgs rsa_pss_rsae_sha512)
check "rsa_pss_rsae_sha512 works (signer scheme list intersected with the key type)" \
    grep -q "Hello from the keyless demo backend" <<<"$out"

out=$(sclient -tls1_2)
is "$(grep -c "Hello from the keyless demo backend" <<<"$out")" 0 "TLS 1.2 only client is refused"
out=$(sclient -groups X448)
is "$(grep -c "Hello from the keyless demo backend" <<<"$out")" 0 "no common group is refused"
check "frontend still serves after the failures" grep -q "Hello from the keyless demo backend" <<<"$(sclient)"
hs_ok=$(metric 'keyless_handshakes_total{result="ok"}')
hs_alert=$(metric 'keyless_handshakes_total{result="alert"}')
check "metrics count the successful handshakes (>= 19: $hs_ok)" test "$hs_ok" -ge 19
check "metrics count the refused handshakes (>= 2: $hs_alert)" test "$hs_alert" -ge 2
done_testing
