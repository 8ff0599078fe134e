#!/usr/bin/env bash
# Real clients through keyless-frontend to a real backend, with the real signer on a
# SoftHSM2 token: curl, openssl s_client, gnutls-cli and Python's ssl, for ECDSA P-256,
# RSA-2048, ECDSA P-384 and Ed25519 certificates, each verifying the chain and the
# host name against hsm-setup's root. Bodies of 0 B, 1 B and 10 MiB in both directions
# are checked with SHA-256. Also: a Unix-socket backend with the PROXY v2 header.
. "$(dirname "$0")/lib.sh"

kl_token
kl_start_signer
kl_start_backend

head -c 10485760 /dev/urandom >"$T/big.bin"
head -c 1 /dev/urandom >"$T/one.bin"
: >"$T/zero.bin"

py_client() {
    python3 - "$FE_PORT" "$ROOT" "$1" <<'EOP'
import hashlib, http.client, ssl, sys
port, ca, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
body = open(path, "rb").read()
c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=60)
c.request("POST", "/echo", body=body)
r = c.getresponse()
got = r.read()
want = hashlib.sha256(body).hexdigest()
assert r.status == 200, r.status
assert r.getheader("X-Sha256") == want, "request body changed"
assert hashlib.sha256(got).hexdigest() == want, "response body changed"
assert c.sock.version() == "TLSv1.3"
EOP
}

for key in ecdsa-p256 rsa-2048 ecdsa-p384 ed25519; do
    # 10 MiB bodies for the ECDSA and RSA certificates; P-384 and Ed25519 move 0 and 1 byte (time bound).
    sizes="zero one big"
    case $key in ecdsa-p384 | ed25519) sizes="zero one" ;; esac
    [ -n "${FE_PID:-}" ] && { kill -TERM "$FE_PID"; wait "$FE_PID" 2>/dev/null || true; }
    FE_PORT=$(free_port)
    FE_CERTS=$key kl_start_frontend

    page=$(kl_curl "https://localhost:$FE_PORT/" || true)
    check "$key: curl GET / verifies the chain and returns the backend's page" \
        grep -q "Hello from the keyless demo backend" <<<"$page"
    for f in $sizes; do
        want=$(sha256sum <"$T/$f.bin" | cut -d' ' -f1)
        got_req=$(kl_curl -o /dev/null -D - --data-binary "@$T/$f.bin" -H 'Content-Type: application/octet-stream' \
            "https://localhost:$FE_PORT/echo" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-sha256" { print $2 }' || true)
        got_resp=$(kl_curl --data-binary "@$T/$f.bin" -H 'Content-Type: application/octet-stream' \
            "https://localhost:$FE_PORT/echo" | sha256sum | cut -d' ' -f1 || true)
        check "$key: curl $f body up (sha256 at the backend)" test "$got_req" = "$want"
        check "$key: curl $f body echoed back intact" test "$got_resp" = "$want"
    done
    for n in 0 1 $(case $sizes in *big*) echo 10485760 ;; esac); do
        : >"$T/down.bin"
        : >"$T/h"
        hdr=$(kl_curl -D "$T/h" -o "$T/down.bin" "https://localhost:$FE_PORT/bytes/$n" && tr -d '\r' <"$T/h" |
            awk -F': ' 'tolower($1) == "x-sha256" { print $2 }' || true)
        got=$(sha256sum <"$T/down.bin" | cut -d' ' -f1)
        check "$key: curl download of $n bytes intact" test -n "$hdr" -a "$hdr" = "$got"
    done

    out=$(printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost -CAfile "$ROOT" \
            -verify_return_error -verify_hostname localhost -tls1_3 -ign_eof 2>&1 || true)
    check "$key: openssl s_client verifies (chain + hostname) and gets the page" \
        grep -q "Hello from the keyless demo backend" <<<"$out"
    check "$key: openssl s_client negotiated TLSv1.3 with verify OK" \
        grep -q "Verify return code: 0 (ok)" <<<"$out"

    out=$( (printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'; sleep 2) |
        timeout 20 gnutls-cli --x509cafile "$ROOT" -p "$FE_PORT" localhost 2>&1 || true)
    check "$key: gnutls-cli verifies and gets the page" grep -q "Hello from the keyless demo backend" <<<"$out"
    check "$key: gnutls-cli reports TLS1.3" grep -q "TLS1.3" <<<"$out"

    for f in $sizes; do
        check "$key: python ssl POST $f body intact both ways" py_client "$T/$f.bin"
    done
done

# A wrong trust anchor must fail: the tests above would pass vacuously otherwise.
rc=0
curl -sS --max-time 10 --cacert "$PKI/ecdsa-p256.crt.pem" "https://localhost:$FE_PORT/" >/dev/null 2>&1 || rc=$?
is "$rc" 60 "curl with the wrong CA file is refused (exit 60: certificate not verified)"

# Unix-socket backend with the PROXY protocol v2 header (client address, SNI, ALPN).
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true
python3 "$BACKEND_PY" --unix "$T/backend.sock" --proxy-protocol --quiet >>"$T/backend-unix.log" 2>&1 &
KL_PIDS+=($!)
wait_for test -S "$T/backend.sock" || bail "unix backend did not start"
FE_PORT=$(free_port)
FE_BACKEND="unix:$T/backend.sock" FE_LISTENER_EXTRA="proxy_protocol = yes" kl_start_frontend
pp=$(kl_curl --http1.1 "https://localhost:$FE_PORT/proxy" || true)
check "PROXY v2 over a Unix backend carries SNI" grep -q '"authority": "localhost"' <<<"$pp"
check "PROXY v2 carries the ALPN" grep -q '"alpn": "http/1.1"' <<<"$pp"
check "PROXY v2 carries the client address" grep -q '"src": "127.0.0.1:' <<<"$pp"
want=$(sha256sum <"$T/big.bin" | cut -d' ' -f1)
got=$(kl_curl --data-binary "@$T/big.bin" "https://localhost:$FE_PORT/echo" | sha256sum | cut -d' ' -f1 || true)
check "10 MiB through the Unix backend intact" test "$got" = "$want"

done_testing
