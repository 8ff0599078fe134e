#!/usr/bin/env bash
# Session resumption and 0-RTT through keyless-frontend with real clients (issue 11): the
# signer derives the ticket keys in the SoftHSM2 token (ticket-root), two workers share them.
#  - openssl s_client -sess_out / -sess_in: "Reused, TLSv1.3", and the resumed handshake
#    wrote no signature record in the audit log; gnutls-cli --resume; Python ssl session=;
#    Go crypto/tls with a ClientSessionCache.
#  - 0-RTT: refused while the strike register warms up (the handshake completes in 1-RTT),
#    then accepted; the backend reads the early byte count from PROXY v2 TLV 0xE3 and answers
#    425 to a non-GET that came early (RFC 8470); a replay of the same first flight has its
#    early data refused while the handshake goes on; gnutls-cli --earlydata.
#  - signer down: returning clients still resume, also on a worker restarted in the outage.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tickets_lib.sh"
PY=$KL_SOURCE_DIR/tests/e2e/resumption.py

kl_token
kl_signer_tickets e2e
kl_resumption_backend
FE_WORKERS=2 FE_LISTENER_EXTRA=$'proxy_protocol = yes\nmax_early_data = 16384' kl_start_frontend
FE_START=$(date +%s)
check "the frontend got its ticket keys from the signer at start" \
    grep -q "ticket keys: 4 epoch keys from the signer" "$T/frontend.log"
check "the signer audited the derivation" grep -q '"op":"ticket_keys"' "$T/audit.jsonl"

# --- openssl: a full handshake, then a resumed one ---
s0=$(signatures)
out=$(s_client "$FE_PORT" -sess_out "$T/sess")
check "openssl: full handshake (New, TLSv1.3)" grep -q "New, TLSv1.3" <<<"$out"
check "openssl: the backend answered" grep -q "early=None" <<<"$out"
check "openssl: a session to keep" test -s "$T/sess"
s1=$(signatures)
is "$((s1 - s0))" 1 "the full handshake cost one signature"
out=$(s_client "$FE_PORT" -sess_in "$T/sess")
check "openssl -sess_in: Reused, TLSv1.3" grep -q "Reused, TLSv1.3" <<<"$out"
check "openssl -sess_in: the backend answered" grep -q "early=None" <<<"$out"
is "$(signatures)" "$s1" "the resumed handshake wrote no signature record"
check "access line: resumed=yes, no signer time" \
    grep -Eq 'established=yes signer_ms=0\.00 .* resumed=yes early_data=-' "$T/frontend.log"

# --- 0-RTT while the strike register warms up (20 s after start): refused, 1-RTT goes on ---
printf 'GET /early HTTP/1.0\r\nHost: localhost\r\n\r\n' >"$T/early.txt"
if [ $(($(date +%s) - FE_START)) -lt 15 ]; then
    out=$(s_client "$FE_PORT" -sess_in "$T/sess" -early_data "$T/early.txt")
    check "openssl -early_data during the warm-up: Early data was rejected" \
        grep -q "Early data was rejected" <<<"$out"
    check "... and the handshake completes in 1-RTT (Reused)" grep -q "Reused, TLSv1.3" <<<"$out"
    check "... the request sent after the handshake is answered" grep -q "early=None" <<<"$out"
else
    skip "the warm-up window passed before this check (slow machine)"
fi

# --- gnutls-cli --resume ---
out=$(printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' |
    timeout 20 gnutls-cli --x509cafile "$ROOT" -p "$FE_PORT" localhost --resume --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3' 2>&1 || true)
check "gnutls-cli --resume: This is a resumed session" grep -q "This is a resumed session" <<<"$out"

# --- Python ssl with session= ---
s2=$(signatures)
out=$(timeout 20 python3 "$PY" py-resume "$FE_PORT" "$ROOT" 2>&1 || true)
check "python ssl: the first connection is a full handshake" grep -q "first reused=False" <<<"$out"
check "python ssl: session= resumes" grep -q "second reused=True" <<<"$out"
is "$(($(signatures) - s2))" 1 "python: one signature for two connections"

# --- Go crypto/tls with a ClientSessionCache ---
if command -v go >/dev/null 2>&1; then
    s3=$(signatures)
    out=$(cd "$KL_SOURCE_DIR/tests/e2e" && GOCACHE=$T/gocache GOPATH=$T/gopath GO111MODULE=off GOFLAGS= \
        timeout 90 go run resumption_client.go "$FE_PORT" "$ROOT" 2>&1 || true)
    check "go: the first connection is a full handshake" grep -q "first resumed=false" <<<"$out"
    check "go: ClientSessionCache resumes" grep -q "second resumed=true" <<<"$out"
    is "$(($(signatures) - s3))" 1 "go: one signature for two connections"
else
    skip "go: golang-go is not installed (.ci/deps.sh installs it)"
fi
ok "$([ "$(metric 'keyless_frontend_completed_handshakes_total{resumed="true"}')" -ge 4 ] && echo 0 || echo 1)" \
    "metrics: keyless_frontend_completed_handshakes_total{resumed=\"true\"} counts them"

# --- signer down: returning clients still resume, also on a worker restarted meanwhile ---
kill -TERM "$SIGNER_PID"
wait "$SIGNER_PID" 2>/dev/null || true
sleep 0.5
reused=0
for _ in 1 2 3 4; do
    s_client "$FE_PORT" -sess_in "$T/sess" | grep -q "Reused, TLSv1.3" && reused=$((reused + 1))
done
is "$reused" 4 "signer stopped: 4 of 4 returning clients resume"
s_client "$FE_PORT" >/dev/null
check "signer stopped: a new client's full handshake fails (it needs a signature)" \
    grep -q "handshake failed: signer: not connected" "$T/frontend.log"
victim=$(pgrep -P "$FE_PID" | head -n 1)
kill -KILL "$victim"
wait_for grep -q "worker [01] restarted" "$T/frontend.log" || true
check "a worker killed during the outage was restarted" grep -q "worker [01] restarted" "$T/frontend.log"
reused=0
for _ in 1 2 3 4 5 6; do
    s_client "$FE_PORT" -sess_in "$T/sess" | grep -q "Reused, TLSv1.3" && reused=$((reused + 1))
done
is "$reused" 6 "... and every worker, the new one too, resumes with the shared keys"
kl_restart_signer

# --- 0-RTT accepted once the register is warm; a replay of the same flight is refused ---
while [ $(($(date +%s) - FE_START)) -le 21 ]; do sleep 0.5; done
CAP_PORT=$(free_port)
python3 "$PY" capture "$CAP_PORT" "$FE_PORT" "$T/flight.bin" &
cap=$!
wait_for test -e "$T/flight.bin.ready" || true
: >"$BACKEND_LOG"
out=$(s_client "$CAP_PORT" -sess_in "$T/sess" -early_data "$T/early.txt")
wait "$cap" || true
check "openssl -early_data: Early data was accepted" grep -q "Early data was accepted" <<<"$out"
check "openssl -early_data: Reused" grep -q "Reused, TLSv1.3" <<<"$out"
elen=$(wc -c <"$T/early.txt")
check "the backend read TLV 0xE3 = $elen early bytes" grep -q "\"early\": $elen, \"request\": \"GET /early HTTP/1.0\", \"in_early\": true" "$BACKEND_LOG"
check "access line: early_data=$elen" grep -Eq "resumed=yes early_data=$elen ech=none\$" "$T/frontend.log"
is "$(metric 'keyless_frontend_early_data_total{result="accepted"}')" 1 "metrics: one 0-RTT accepted"
before=$(wc -l <"$BACKEND_LOG")
replayed=$(timeout 15 python3 "$PY" replay "$FE_PORT" "$T/flight.bin" 2>&1 || true)
is "$replayed" "handshake" "a replayed first flight: the server goes on with the handshake (no alert)"
wait_cmp -ge 1 metric 'keyless_frontend_early_data_total{result="replay_refused"}' || true
ok "$([ "$(metric 'keyless_frontend_early_data_total{result="replay_refused"}')" -ge 1 ] && echo 0 || echo 1)" \
    "... its early data refused by the strike register"
sleep 0.5
is "$(wc -l <"$BACKEND_LOG")" "$before" "... and nothing of it reached the backend"
printf 'POST /order HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n' >"$T/post.txt"
out=$(timeout 15 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost -CAfile "$ROOT" -ign_eof \
    -sess_in "$T/sess" -early_data "$T/post.txt" </dev/null 2>&1 || true)
check "a POST in 0-RTT: the backend answers 425 Too Early (RFC 8470)" grep -q "425 Too Early" <<<"$out"

# --- gnutls-cli --earlydata (it sends EndOfEarlyData, Finished and close_notify in one flight) ---
: >"$BACKEND_LOG"
out=$(printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' |
    timeout 20 gnutls-cli --x509cafile "$ROOT" -p "$FE_PORT" localhost --resume --earlydata="$T/early.txt" \
        --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3' 2>&1 || true)
check "gnutls-cli --earlydata: resumed" grep -q "This is a resumed session" <<<"$out"
check "gnutls-cli --earlydata: the backend got the early request as early data" \
    grep -q '"request": "GET /early HTTP/1.0", "in_early": true' "$BACKEND_LOG"
check "the frontend never logged a ticket key refresh failure" not_grep "refresh failed" "$T/frontend.log"
done_testing
