#!/usr/bin/env bash
# make.sh - regenerate the client-certificate (mTLS) fixtures of test_client_auth.c.
#
# The outputs are committed so that the unit test needs no openssl CLI; rerun this only to
# change them. Everything valid lasts 100 years (the CRL too), so the tests do not age;
# expired.pem expired in 2001.
#   ca.pem            the client CA (P-256); ca-crl.pem its CRL, revoking revoked.pem
#   other-ca.pem      an unrelated CA (wrong-CA tests)
#   client.pem/.key   P-256 leaf, CN=client.test, SAN DNS:client.test + email, clientAuth
#   client-rsa.pem/.key  RSA-2048 leaf (RSA-PSS CertificateVerify)
#   expired, revoked, serveronly (serverAuth only), wrongca: leaves with their keys
#   int-ca.pem        an intermediate under ca.pem; int-leaf.pem/.key issued by it
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ca_dir() { # NAME: an openssl ca database for NAME
    mkdir -p "$work/$1"
    : >"$work/$1/index.txt"
    echo 1000 >"$work/$1/serial"
    cat >"$work/$1/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $work/$1/index.txt
serial = $work/$1/serial
new_certs_dir = $work/$1
certificate = $PWD/$1.pem
private_key = $work/$1.key
default_md = sha256
policy = p
copy_extensions = none
default_crl_days = 36500
[p]
commonName = supplied
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:client.test,email:client@example.test
[serveronly]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth
[intca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
CNF
}

mkca() { # NAME CN
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key" 2>/dev/null
    openssl req -x509 -new -key "$work/$1.key" -subj "/CN=$2" -days 36500 -sha256 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out "$1.pem"
    ca_dir "$1"
}

leaf() { # CA NAME CN EXT [KEYALG] [extra ca args...]
    local ca=$1 name=$2 cn=$3 ext=$4 alg=${5:-EC}
    shift 5 || shift $#
    if [ "$alg" = RSA ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" 2>/dev/null
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" 2>/dev/null
    fi
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$work/$name.csr"
    openssl ca -batch -config "$work/$ca/ca.cnf" -extensions "$ext" -in "$work/$name.csr" -out "$work/$name.full" \
        -notext "$@" 2>/dev/null
    openssl x509 -in "$work/$name.full" -out "$name.pem"
}

mkca ca "keyless test client CA"
mkca other-ca "keyless test other CA"
leaf ca client client.test client EC -days 36500
leaf ca client-rsa client-rsa.test client RSA -days 36500
leaf ca expired expired.test client EC -startdate 20000101000000Z -enddate 20010101000000Z
leaf ca revoked revoked.test client EC -days 36500
leaf ca serveronly serveronly.test serveronly EC -days 36500
leaf other-ca wrongca wrongca.test client EC -days 36500
openssl ca -batch -config "$work/ca/ca.cnf" -revoke revoked.pem 2>/dev/null
openssl ca -batch -config "$work/ca/ca.cnf" -gencrl -out ca-crl.pem 2>/dev/null
# An intermediate CA and a leaf under it (depth tests).
leaf ca int-ca "keyless test intermediate CA" intca EC -days 36500
mv int-ca.key "$work/int-ca.key"
ca_dir int-ca
leaf int-ca int-leaf int-leaf.test client EC -days 36500
rm -f ./*.csr
