#!/usr/bin/env bash
# openssl s_client against keyless-frontend: every cipher suite with every default group
# (x25519, P-256, P-384, X448, P-521, ffdhe2048/3072/4096), HelloRetryRequest forced by a
# first key share the server does not take (ffdhe6144/8192 are not in the default list)
# for a group the client supports, the opt-in ffdhe8192 through [tls] groups, the
# certificate chosen by the client's signature algorithms (ECDSA vs RSA), and negative
# cases (no TLS 1.3, no common suite/group) that must fail.
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

# temp_key GROUP: the line openssl s_client prints for the key exchange on GROUP.
temp_key() {
    case $1 in
    x25519) echo "Server Temp Key: X25519" ;;
    X448) echo "Server Temp Key: X448" ;;
    P-256) echo "Server Temp Key: ECDH, prime256v1" ;;
    P-384) echo "Server Temp Key: ECDH, secp384r1" ;;
    P-521) echo "Server Temp Key: ECDH, secp521r1" ;;
    ffdhe*) echo "Server Temp Key: DH, ${1#ffdhe} bits" ;;
    esac
}

# Every suite with every group the default list has; a client offering only that group connects.
for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
    for group in x25519 P-256 P-384 X448 P-521 ffdhe2048 ffdhe3072 ffdhe4096; do
        out=$(sclient -ciphersuites "$suite" -groups "$group" -msg)
        pass=1
        grep -q "Hello from the keyless demo backend" <<<"$out" || pass=0
        grep -q "Cipher is $suite" <<<"$out" || pass=0
        grep -q "$(temp_key "$group")" <<<"$out" || pass=0
        [ "$(grep -c ", ClientHello$" <<<"$out")" = 1 ] || pass=0
        is "$pass" 1 "$suite with only $group (one ClientHello)"
        [ "$pass" = 1 ] || diag "$(grep -E "Temp Key|Cipher is|alert|ClientHello" <<<"$out")"
    done
done

# HelloRetryRequest: the client's first (only) key share is for a group the server's list
# lacks, and the server asks for a later group of the client's supported_groups.
for groups in ffdhe8192:x25519 ffdhe6144:ffdhe2048 ffdhe8192:X448 ffdhe6144:P-521:P-256; do
    out=$(sclient -groups "$groups" -msg)
    pass=1
    grep -q "Hello from the keyless demo backend" <<<"$out" || pass=0
    want=${groups#*:}
    case $want in P-521:P-256) want=P-256 ;; esac # server preference: P-256 before P-521
    grep -q "$(temp_key "$want")" <<<"$out" || pass=0
    [ "$(grep -c ", ClientHello$" <<<"$out")" = 2 ] || pass=0
    is "$pass" 1 "-groups $groups: HelloRetryRequest to $want, two ClientHellos"
    [ "$pass" = 1 ] || diag "$(grep -E "Temp Key|Cipher is|alert|ClientHello" <<<"$out")"
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
out=$(sclient -groups ffdhe8192)
is "$(grep -c "Hello from the keyless demo backend" <<<"$out")" 0 "no common group is refused (ffdhe8192 is opt-in)"
check "frontend still serves after the failures" grep -q "Hello from the keyless demo backend" <<<"$(sclient)"
hs_ok=$(metric 'keyless_frontend_handshakes_total{result="ok"}')
hs_alert=$(metric 'keyless_frontend_handshakes_total{result="alert"}')
check "metrics count the successful handshakes (>= 31: $hs_ok)" test "$hs_ok" -ge 31
check "metrics count the refused handshakes (>= 2: $hs_alert)" test "$hs_alert" -ge 2

# ffdhe6144 and ffdhe8192 are served when [tls] groups names them, in the list's preference
# order; a client whose only share is for a group outside it is asked for ffdhe8192.
FE_PORT=
METRICS_PORT=
FE_TLS_EXTRA="groups = ffdhe8192, ffdhe6144, P-256"
kl_start_frontend
for groups in ffdhe8192 ffdhe6144 x25519:ffdhe8192; do
    out=$(sclient -groups "$groups")
    want=${groups##*:}
    pass=1
    grep -q "Hello from the keyless demo backend" <<<"$out" || pass=0
    grep -q "$(temp_key "$want")" <<<"$out" || pass=0
    is "$pass" 1 "[tls] groups = ffdhe8192, ffdhe6144, P-256: -groups $groups gets $want"
done
out=$(sclient -groups x25519:X448)
is "$(grep -c "Hello from the keyless demo backend" <<<"$out")" 0 "... and a client without those is refused"
done_testing
