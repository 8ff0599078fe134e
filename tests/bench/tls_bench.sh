#!/usr/bin/env bash
# tls_bench.sh - the TLS engine's figures against their references, in one run:
#   record-layer seal/open throughput for 16 KiB records per suite vs
#     `openssl speed -evp <aead> -bytes 16384` (target: >= 90%);
#   CPU per full server handshake inside the engine (excluding the signature) vs the
#     x25519 key generation + shared secret alone (target: <= 1.3x).
# Usage: tests/bench/tls_bench.sh [build-dir] [seconds-per-measurement]
# Not run by tests/run.sh (label bench). Each figure is the best of 3 runs, because the
# machine is shared and a single run mostly measures the neighbours.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$top/build}
secs=${2:-2}
bench=$build/tests/bench/tls_bench
export KL_TESTDATA=${KL_TESTDATA:-$top/tests/vectors}
[ -x "$bench" ] || { echo "tls_bench.sh: $bench not built (cmake --build $build --target tls_bench)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "tls_bench.sh: openssl CLI missing" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# best KEY FILE...: the maximum (throughput) or minimum (us) of a figure over the runs.
best() {
    local key=$1 mode=$2
    shift 2
    grep -h "^$key " "$@" | awk -v m="$mode" '{v=$(NF-1); if (NR==1 || (m=="max" && v>b) || (m=="min" && v<b)) b=v} END {if (NR) print b}'
}

for run in 1 2 3; do
    "$bench" "$secs" >"$tmp/engine.$run"
    for a in aes-128-gcm aes-256-gcm chacha20-poly1305; do
        # openssl speed prints "<NAME>  <n>k" in 1000s of bytes per second for the one block size.
        openssl speed -seconds "$secs" -evp "$a" -bytes 16384 2>/dev/null |
            awk -v a="$a" '/^[A-Za-z]/ && $NF ~ /k$/ {v=$NF; sub(/k$/, "", v); print "openssl " a " " v/1000 " MB/s"}' \
                >>"$tmp/openssl.$run"
        # -aead: the same AEAD in a TLS-like sequence (new nonce, AAD and tag per record).
        openssl speed -seconds "$secs" -aead -evp "$a" -bytes 16384 2>/dev/null |
            awk -v a="$a" '/^[A-Za-z]/ && $NF ~ /k$/ {v=$NF; sub(/k$/, "", v); print "aead " a " " v/1000 " MB/s"}' \
                >>"$tmp/openssl.$run"
    done
done

printf '%-30s %10s %10s %12s %7s %12s %7s\n' suite seal_MB/s open_MB/s "speed -evp" ratio "speed -aead" ratio
status=0
for pair in TLS_AES_128_GCM_SHA256:aes-128-gcm TLS_AES_256_GCM_SHA384:aes-256-gcm \
    TLS_CHACHA20_POLY1305_SHA256:chacha20-poly1305; do
    s=${pair%%:*} a=${pair#*:}
    seal=$(best "record_seal $s" max "$tmp"/engine.*)
    open=$(best "record_open $s" max "$tmp"/engine.*)
    ref=$(best "openssl $a" max "$tmp"/openssl.*)
    aref=$(best "aead $a" max "$tmp"/openssl.*)
    ratio=$(awk -v x="$seal" -v y="$open" -v r="$ref" 'BEGIN {m = x < y ? x : y; printf "%.2f", m / r}')
    aratio=$(awk -v x="$seal" -v y="$open" -v r="$aref" 'BEGIN {m = x < y ? x : y; if (r > 0) printf "%.2f", m / r; else print "-"}')
    printf '%-30s %10s %10s %12s %7s %12s %7s\n' "$s" "$seal" "$open" "$ref" "$ratio" "${aref:--}" "$aratio"
    awk -v q="$ratio" 'BEGIN {exit !(q < 0.90)}' && status=1
done
floor=$(best x25519_floor min "$tmp"/engine.*)
hs=$(best handshake_cpu min "$tmp"/engine.*)
echo "x25519 keygen + shared secret: $floor us"
if [ -n "$hs" ]; then
    hr=$(awk -v h="$hs" -v f="$floor" 'BEGIN {printf "%.2f", h / f}')
    echo "full handshake in the engine (no signature): $hs us = ${hr}x the x25519 floor"
    awk -v q="$hr" 'BEGIN {exit !(q > 1.3)}' && status=1
else
    echo "full handshake: not measured (hs_server.c not in kl_tls)"
fi
echo "(ratio = min(seal, open) / openssl speed; targets: ratio to -evp >= 0.90, handshake <= 1.30x)"
exit $status
