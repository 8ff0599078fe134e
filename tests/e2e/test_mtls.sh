#!/usr/bin/env bash
# Client certificates (mTLS) end to end: a listener with client_auth = required, the
# client CA from hsm-setup and a CRL, in front of a PROXY v2 backend. openssl s_client,
# gnutls-cli, curl and Python's ssl each connect with a good, a missing, an expired, a
# wrong-CA and a revoked client certificate: only the good one gets through, the others
# get the alert RFC 8446 names. The backend sees the verified identity (PP2_TYPE_SSL with
# verify = 0 and the CN, and the leaf's SHA-256). Then client_auth = optional: no
# certificate connects, and the backend is told there was none.
. "$(dirname "$0")/lib.sh"

kl_token
kl_start_signer
kl_start_backend --proxy-protocol

CA_KEY=$PKI/client-ca.key
CA=$PKI/client-ca.pem
[ -s "$CA_KEY" ] && [ -s "$CA" ] && [ -s "$PKI/client.pem" ] || bail "hsm-setup made no client CA / client certificate"

# The bad certificates, made here with the openssl CLI: an expired and a revoked one from
# the client CA (with the CRL revoking the latter) and one from an unrelated CA.
mkdir -p "$T/ca"
: >"$T/ca/index.txt"
echo 2000 >"$T/ca/serial"
cat >"$T/ca/ca.cnf" <<EOC
[ca]
default_ca = d
[d]
database = $T/ca/index.txt
serial = $T/ca/serial
new_certs_dir = $T/ca
certificate = $CA
private_key = $CA_KEY
default_md = sha256
policy = p
default_crl_days = 30
[p]
commonName = supplied
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = clientAuth
EOC
mkleaf() { # NAME CA-CONFIG [openssl ca args]
    local name=$1 cnf=$2
    shift 2
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$name.key" 2>/dev/null &&
        openssl req -new -key "$T/$name.key" -subj "/CN=$name.test" -out "$T/$name.csr" &&
        openssl ca -batch -config "$cnf" -extensions client -in "$T/$name.csr" -out "$T/$name.full" -notext "$@" \
            >>"$T/openssl.log" 2>&1 &&
        openssl x509 -in "$T/$name.full" -out "$T/$name.pem"
}
check "expired client certificate made" mkleaf expired "$T/ca/ca.cnf" -startdate 20200101000000Z -enddate 20200201000000Z
check "revoked client certificate made" mkleaf revoked "$T/ca/ca.cnf" -days 30
check "revoked certificate revoked" openssl ca -batch -config "$T/ca/ca.cnf" -revoke "$T/revoked.pem"
check "CRL made" openssl ca -batch -config "$T/ca/ca.cnf" -gencrl -out "$T/crl.pem"
mkdir -p "$T/other"
: >"$T/other/index.txt"
echo 3000 >"$T/other/serial"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/other-ca.key" 2>/dev/null
openssl req -x509 -new -key "$T/other-ca.key" -subj "/CN=other CA" -days 30 -out "$T/other-ca.pem" 2>/dev/null
sed -e "s|$T/ca/|$T/other/|g" -e "s|^certificate = .*|certificate = $T/other-ca.pem|" \
    -e "s|^private_key = .*|private_key = $T/other-ca.key|" "$T/ca/ca.cnf" >"$T/other/ca.cnf"
check "wrong-CA client certificate made" mkleaf wrongca "$T/other/ca.cnf" -days 30
cp "$PKI/client.pem" "$T/good.pem"
cp "$PKI/client.key" "$T/good.key"
GOOD_FP=$(openssl x509 -in "$T/good.pem" -outform DER | sha256sum | cut -d' ' -f1)

FE_LISTENER_EXTRA="proxy_protocol = yes
client_auth = required
client_ca = $CA
client_crl = $T/crl.pem" kl_start_frontend

# What each case must show: the backend's /proxy JSON for good, the alert otherwise.
declare -A ALERT=([missing]="certificate required" [expired]="certificate expired" [wrongca]="unknown ca"
    [revoked]="certificate revoked")

t_openssl() { # CASE -> prints the transcript
    local args=()
    [ "$1" = missing ] || args=(-cert "$T/$1.pem" -key "$T/$1.key")
    printf 'GET /proxy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost -CAfile "$ROOT" \
            -verify_return_error -tls1_3 -ign_eof -quiet "${args[@]}" 2>&1
}
t_gnutls() {
    local args=()
    [ "$1" = missing ] || args=(--x509certfile "$T/$1.pem" --x509keyfile "$T/$1.key")
    printf 'GET /proxy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 20 gnutls-cli -p "$FE_PORT" --x509cafile "$ROOT" --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3' \
            "${args[@]}" localhost 2>&1
}
t_curl() {
    local args=()
    [ "$1" = missing ] || args=(--cert "$T/$1.pem" --key "$T/$1.key")
    timeout 20 curl -sS --max-time 15 --tlsv1.3 --cacert "$ROOT" --resolve "localhost:$FE_PORT:127.0.0.1" \
        "${args[@]}" "https://localhost:$FE_PORT/proxy" 2>&1
}
t_python() {
    timeout 20 python3 - "$FE_PORT" "$ROOT" "$1" "$T" <<'EOP' 2>&1
import http.client, ssl, sys
port, ca, case, d = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
if case != "missing":
    ctx.load_cert_chain(d + "/" + case + ".pem", d + "/" + case + ".key")
try:
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=15)
    c.request("GET", "/proxy")
    print(c.getresponse().read().decode())
except ssl.SSLError as e:
    print("SSLError:", e.reason, e)
except (ConnectionError, OSError) as e:
    print("closed:", e)
EOP
}

for client in openssl gnutls curl python; do
    out=$("t_$client" good || true)
    check "$client: good certificate: the backend sees the verified client (PP2_TYPE_SSL verify 0)" \
        grep -q '"ssl_verify": 0' <<<"$out"
    check "$client: good certificate: PP2_SUBTYPE_SSL_CN is the client's CN" \
        grep -q '"ssl_cn": "keyless test client"' <<<"$out"
    check "$client: good certificate: the leaf's SHA-256 reaches the backend" grep -q "\"client_sha256\": \"$GOOD_FP\"" <<<"$out"
    check "$client: good certificate: client bits SSL | CERT_CONN | CERT_SESS" grep -q '"ssl_client": 7' <<<"$out"
    for c in missing expired wrongca revoked; do
        out=$("t_$client" "$c" || true)
        check "$client: $c certificate: no response from the backend" bash -c '! grep -q ssl_verify <<<"$1"' _ "$out"
        # OpenSSL-based clients name the alert; gnutls-cli and Python word it their way, so
        # for them the frontend's log is the witness (below).
        case $client in
        openssl | curl)
            check "$client: $c certificate: alert '${ALERT[$c]}'" grep -qi "${ALERT[$c]}" <<<"$out"
            ;;
        python)
            check "$client: $c certificate: handshake refused" grep -qE 'SSLError|closed' <<<"$out"
            ;;
        gnutls)
            check "$client: $c certificate: handshake refused" grep -qiE 'alert|error|fatal' <<<"$out"
            ;;
        esac
    done
done
for a in certificate_required certificate_expired unknown_ca certificate_revoked; do
    check "frontend log: handshakes refused with $a" grep -q "$a" "$T/frontend.log"
done
check "frontend log: the client certificate is logged with the connection" \
    grep -q "client certificate cn=\"keyless test client\".*sha256=$GOOD_FP" "$T/frontend.log"

# client_auth = optional: a client without a certificate gets through, the backend is told.
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true
FE_PORT=$(free_port)
FE_LISTENER_EXTRA="proxy_protocol = yes
client_auth = optional
client_ca = $CA" kl_start_frontend
out=$(t_curl missing || true)
check "optional: no certificate: connected, PP2_TYPE_SSL verify non-zero" grep -q '"ssl_verify": 1' <<<"$out"
check "optional: no certificate: client bits SSL only, no CN" bash -c 'grep -q "\"ssl_client\": 1" <<<"$1" && ! grep -q ssl_cn <<<"$1"' _ "$out"
out=$(t_python good || true)
check "optional: good certificate: identity passed on" grep -q '"ssl_cn": "keyless test client"' <<<"$out"
out=$(t_openssl expired || true)
check "optional: an expired certificate is still refused" grep -qi "certificate expired" <<<"$out"

done_testing
