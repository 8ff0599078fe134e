#!/usr/bin/env bash
# The frontend and a slow, late, dying or failing-over signer:
#  - 1,000 concurrent handshakes while every signature is delayed 300 ms (a proxy in
#    front of the signer socket);
#  - a signer slower than the 1 s deadline: internal_error alert after ~1 s, the late
#    answer dropped, the frontend fine;
#  - kill -9 of the signer under load: the frontend stays up, in-flight handshakes end
#    with an alert within the deadline, new ones fail fast while it is away, and
#    succeed again within 1 s of the signer's restart;
#  - two signer sockets, the first dead: failover to the second.
. "$(dirname "$0")/lib.sh"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "# fd limit $(ulimit -n)"

kl_token
kl_start_signer
kl_start_backend
HSLOAD=$KL_SOURCE_DIR/tests/e2e/hsload.py
DELAYPROXY=$KL_SOURCE_DIR/tests/e2e/delayproxy.py
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); v=d.get(sys.argv[2]); print(v if v is not None else 0)' "$1" "$2"; }

# --- 1,000 concurrent handshakes, signer answers 300 ms late ---
kl_as_frontend python3 "$DELAYPROXY" "$T/slow.sock" "$SIGNER_SOCK" 300 >>"$T/delayproxy.log" 2>&1 &
KL_PIDS+=($!)
wait_for test -S "$T/slow.sock" || bail "delay proxy did not start"
FE_SIGNER_SOCK=$T/slow.sock FE_SIGNER_EXTRA="timeout = 20" FE_FRONTEND_EXTRA="handshake_timeout = 60" \
    kl_start_frontend
res=$(python3 "$HSLOAD" --port "$FE_PORT" --ca "$ROOT" -n 1000 --concurrency 1000 --timeout 120)
echo "# 1000 concurrent, signer +300 ms: $res"
check "1,000 concurrent handshakes with a slow signer all succeed" test "$(jget "$res" ok)" -eq 1000
p50=$(jget "$res" p50_ms)
check "the signer delay was really applied (p50 $p50 ms >= 300)" python3 -c "import sys; sys.exit(float('$p50') < 300)"
check "frontend still alive" kill -0 "$FE_PID"
rss=$(rss_kb "$FE_PID")
echo "# frontend VmRSS after 1,000 concurrent handshakes: $rss kB"
lat_slow=$(metric 'keyless_frontend_signer_duration_seconds_bucket{le="0.25"}')
lat_all=$(metric 'keyless_frontend_signer_duration_seconds_count')
check "metrics: signer latency histogram saw the slow answers ($lat_all answers, $lat_slow under 250 ms)" \
    test "$lat_all" -ge 1000 -a "$lat_slow" -lt 100
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true

# --- a signer slower than the deadline ---
kl_as_frontend python3 "$DELAYPROXY" "$T/late.sock" "$SIGNER_SOCK" 2500 >>"$T/delayproxy.log" 2>&1 &
KL_PIDS+=($!)
wait_for test -S "$T/late.sock" || bail "delay proxy did not start"
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
FE_SIGNER_SOCK=$T/late.sock FE_SIGNER_EXTRA="timeout = 1" \
    kl_start_frontend
t0=$(date +%s%N)
out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost \
    -CAfile "$ROOT" 2>&1 || true)
ms=$(((($(date +%s%N) - t0)) / 1000000))
echo "# late signer: handshake ended after $ms ms"
check "a signature past its deadline ends the handshake with internal_error" grep -q "alert internal error" <<<"$out"
check "... after about the deadline (1000 ms <= $ms ms < 2000 ms)" test "$ms" -ge 900 -a "$ms" -lt 2000
# A client that gives up while its signature is pending: cancelled cleanly.
python3 "$KL_SOURCE_DIR/tests/e2e/clients.py" abandon "$FE_PORT" 300 >/dev/null
wait_for grep -q "client went away while waiting for the signer" "$T/frontend.log" || true
check "a client leaving while its signature is pending is cancelled cleanly" \
    grep -q "client went away while waiting for the signer" "$T/frontend.log"
sleep 2.5 # the late answers arrive now and must be dropped
check "the late answer is dropped and the frontend is fine" kill -0 "$FE_PID"
check "metrics: the signer timeout is counted" test "$(metric keyless_frontend_signer_timeouts_total)" -ge 1
check "metrics: the abandoned handshake counted as client_closed" \
    test "$(metric 'keyless_frontend_handshakes_total{result="client_closed"}')" -ge 1
check "metrics: handshake counted as signer_error" test "$(metric 'keyless_frontend_handshakes_total{result="signer_error"}')" -ge 1
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true

# --- kill -9 the signer under load ---
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
unset FE_SIGNER_SOCK
FE_SIGNER_EXTRA="timeout = 1" kl_start_frontend
# probe PATH: "CODE BODY" of the metrics listener's health endpoints.
probe() {
    local body code
    body=$(curl -s --max-time 5 -o - -w '\n%{http_code}' "http://127.0.0.1:$METRICS_PORT$1") || true
    code=$(tail -n 1 <<<"$body")
    echo "$code $(head -n 1 <<<"$body")"
}
wait_cmp = "200 ready" probe /readyz || true
is "$(probe /readyz)" "200 ready" "/readyz: ready with the signer connected and its keys confirmed"
is "$(probe /healthz)" "200 ok" "/healthz: alive"
# An established connection, used only after the kill: the signer's absence must not touch it.
python3 "$KL_SOURCE_DIR/tests/e2e/clients.py" live "$FE_PORT" "$ROOT" "$T/live.go" 100000 >"$T/live.out" 2>&1 &
live_pid=$!
wait_for grep -q connected "$T/live.out" || true
python3 "$HSLOAD" --port "$FE_PORT" --ca "$ROOT" -n 3000 --concurrency 50 --timeout 30 >"$T/load.json" &
load_pid=$!
# Kill only once the load is really flowing (bounded wait).
for _ in $(seq 1 200); do
    [ "$(metric 'keyless_frontend_handshakes_total{result="ok"}')" -ge 50 ] && break
    sleep 0.1
done
kill -9 "$SIGNER_PID"
wait "$SIGNER_PID" 2>/dev/null || true
killed_at=$(date +%s%N)
sleep 0.3
check "frontend survives kill -9 of the signer" kill -0 "$FE_PID"
is "$(probe /readyz)" "503 not ready: signer not connected" "/readyz while the signer is away: 503 with the reason"
is "$(probe /healthz)" "200 ok" "/healthz while the signer is away: still alive"
touch "$T/live.go"
wait "$live_pid" || true
check "an established connection is untouched while the signer is away" grep -q "live 200 True" "$T/live.out"
t0=$(date +%s%N)
out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost \
    -CAfile "$ROOT" 2>&1 || true)
ms=$(((($(date +%s%N) - t0)) / 1000000))
check "while the signer is away a new handshake fails fast with internal_error ($ms ms)" \
    bash -c "grep -q 'alert internal error' <<<'$out' && test $ms -lt 1000"
wait "$load_pid" || true
res=$(cat "$T/load.json")
echo "# load across kill -9: $res"
check "load: some handshakes succeeded before the kill" test "$(jget "$res" ok)" -gt 0
check "load: handshakes after the kill failed" test "$(jget "$res" failed)" -gt 0
fmax=$(jget "$res" fail_max_ms)
check "load: every failure came within the deadline (slowest $fmax ms < 1500)" \
    python3 -c "import sys; sys.exit(float('$fmax') >= 1500)"
check "load: failures are TLS alerts, not hangs" python3 -c "
import json,sys; e=json.loads(sys.argv[1])['errors']; sys.exit(not e or any('Timeout' in k for k in e))" "$res"
check "frontend still alive after the load" kill -0 "$FE_PID"

# restart: handshakes succeed again within 1 s of the signer being back
rm -f "$SIGNER_SOCK"
"$SIGNER_BIN" --config "$T/signer.conf" >>"$T/signer.log" 2>&1 &
SIGNER_PID=$!
KL_PIDS+=("$SIGNER_PID")
wait_for python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$SIGNER_SOCK" ||
    bail "signer did not restart"
back=$(date +%s%N)
okat=0
for _ in $(seq 1 40); do
    if kl_curl -o /dev/null "https://localhost:$FE_PORT/" 2>/dev/null; then
        okat=$(date +%s%N)
        break
    fi
    sleep 0.05
done
ms=$(((okat - back) / 1000000))
echo "# first successful handshake $ms ms after the signer was back (killed $(((back - killed_at) / 1000000)) ms before)"
check "a handshake succeeds within 1 s of the signer's restart ($ms ms)" test "$okat" -gt 0 -a "$ms" -lt 1000
check "metrics: the reconnect is counted" test "$(metric keyless_frontend_signer_reconnects_total)" -ge 1
wait_cmp = "200 ready" probe /readyz || true
is "$(probe /readyz)" "200 ready" "/readyz: ready again once the restarted signer confirmed the keys"
# A signer that comes back with another key under the same name (a wrong failover target):
# connected, but not ready, because a certificate no longer matches its key.
kill -9 "$SIGNER_PID"
wait "$SIGNER_PID" 2>/dev/null || true
sed -e 's#object=ecdsa-p256;#object=ecdsa-p384;#' -e 's#^schemes = ecdsa_secp256r1_sha256$#schemes = ecdsa_secp384r1_sha384#' \
    "$T/signer.conf" >"$T/signer-wrong.conf"
rm -f "$SIGNER_SOCK"
"$SIGNER_BIN" --config "$T/signer-wrong.conf" >>"$T/signer.log" 2>&1 &
SIGNER_PID=$!
KL_PIDS+=("$SIGNER_PID")
wait_for grep -q "signer reconnected with other keys" "$T/frontend.log" || true
is "$(probe /readyz)" "503 not ready: the signer's keys are not (yet) confirmed for every certificate" \
    "/readyz with a signer whose key differs from the certificate: 503"
check "... and the frontend says which certificate and key" \
    grep -q "signer reconnected with other keys: .*\[cert ecdsa-p256\] key: certificate .* does not match signer key 'ecdsa-p256'" "$T/frontend.log"
audit_before=$(grep -c '"op":"sign"' "$T/audit.jsonl" || true)
out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost \
    -sigalgs ecdsa_secp256r1_sha256 -CAfile "$ROOT" 2>&1 || true)
check "... a handshake then ends with internal_error instead of a CertificateVerify from the wrong key" \
    grep -q 'alert internal error' <<<"$out"
is "$(grep -c '"op":"sign"' "$T/audit.jsonl" || true)" "$audit_before" "... and nothing was sent to that signer to sign"
kill -9 "$SIGNER_PID"
wait "$SIGNER_PID" 2>/dev/null || true
rm -f "$SIGNER_SOCK"
"$SIGNER_BIN" --config "$T/signer.conf" >>"$T/signer.log" 2>&1 &
SIGNER_PID=$!
KL_PIDS+=("$SIGNER_PID")
wait_cmp = "200 ready" probe /readyz || true
is "$(probe /readyz)" "200 ready" "/readyz: ready again with the right signer back"
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true

# --- failover: the first socket is dead, the second works ---
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
FE_SIGNER_SOCK=$T/dead.sock FE_SIGNER_EXTRA="socket = $SIGNER_SOCK" kl_start_frontend
check "failover to the second signer socket" kl_curl -o /dev/null "https://localhost:$FE_PORT/"
done_testing
