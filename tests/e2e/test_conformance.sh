#!/usr/bin/env bash
# Issue 12 conformance against the running frontend: hand-built ClientHellos
# (tests/e2e/conformance.py) get the alert RFC 8446 names, and ClientHellos up to their
# syntactic size are served; with openssl s_client, KeyUpdates neither keep a connection
# past its idle timeout nor go on without bound (TLS_MAX_KEY_UPDATES).
. "$(dirname "$0")/lib.sh"
RAW=$KL_SOURCE_DIR/tests/e2e/conformance.py

kl_token
kl_start_signer
kl_start_backend
# A long idle timeout first: under load s_client may take seconds over 40 KeyUpdates, and
# KeyUpdates alone never refresh the idle timer (checked below with a 2 s timeout).
FE_FRONTEND_EXTRA="idle_timeout = 60" kl_start_frontend

raw() { timeout 20 python3 "$RAW" "$FE_PORT" "$1" 2>&1 || true; }
is "$(raw baseline | cut -d' ' -f1)" handshake "baseline ClientHello: ServerHello"
is "$(raw legacy-0300)" "alert 70" "legacy_version 0x0300 → protocol_version (D.5)"
is "$(raw psk-no-modes)" "alert 109" "pre_shared_key without psk_key_exchange_modes → missing_extension (4.2.9)"
is "$(raw share-not-in-groups)" "alert 47" "key_share group absent from supported_groups → illegal_parameter (4.2.8)"
is "$(raw many-shares | cut -d' ' -f1)" handshake "2001 key shares, 2000 unknown: ServerHello (9.3)"
out=$(raw big-sig-algs)
is "$(cut -d' ' -f1 <<<"$out")" handshake "32,715-entry signature_algorithms ($(cut -d' ' -f2 <<<"$out")-byte ClientHello): ServerHello"

# More than 32 KeyUpdates in a row (no data between them): unexpected_message.
out=$( (sleep 0.5; for _ in $(seq 1 40); do echo k; sleep 0.02; done; sleep 1) |
    timeout 30 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost -CAfile "$ROOT" \
        -verify_return_error 2>&1 || true)
echo "# s_client sent $(grep -c KEYUPDATE <<<"$out") KeyUpdates"
check "33rd KeyUpdate in a row → unexpected_message alert" grep -qi "alert unexpected message" <<<"$out"
check "frontend alive" kill -0 "$FE_PID"
# The idle timer: a frontend with idle_timeout = 2.
kill "$FE_PID"
wait "$FE_PID" 2>/dev/null || true
unset FE_PORT METRICS_PORT
FE_FRONTEND_EXTRA="idle_timeout = 2" kl_start_frontend
# KeyUpdates do not refresh the idle timer: s_client sends one ('k') every 0.4 s and the
# frontend still closes the connection about idle_timeout (2 s) after the handshake.
t0=$(date +%s%N)
out=$( (sleep 1; for _ in $(seq 1 25); do echo k; sleep 0.4; done) |
    timeout 30 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost -CAfile "$ROOT" \
        -verify_return_error 2>&1 || true)
ms=$((($(date +%s%N) - t0) / 1000000))
check "s_client handshake completed (KeyUpdate run)" grep -q "Verify return code: 0 (ok)" <<<"$out"
check "s_client sent KeyUpdates" grep -q "KEYUPDATE" <<<"$out"
echo "# connection ended after $ms ms of KeyUpdates only (idle_timeout 2 s, client would go on 11 s)"
check "KeyUpdates alone do not keep the connection past its idle timeout" test "$ms" -lt 8000
check "frontend logged the idle close" grep -q "idle for" "$T/frontend.log"
check "frontend alive" kill -0 "$FE_PID"
done_testing
