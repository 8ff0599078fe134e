#!/usr/bin/env bash
# Limits and misbehaving peers: backend down, backend slow, a client that stops
# reading a large answer, a client sending one byte per second, many idle connections
# (10,000 TCP when the fd limit allows, plus 1,000 established TLS ones), max_connections.
# The frontend must stay responsive and within a memory bound (VmRSS from /proc).
. "$(dirname "$0")/lib.sh"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)
CLIENTS=$KL_SOURCE_DIR/tests/e2e/clients.py
# Per-connection memory bound (bytes) and buffer growth bound (kB); ASan's quarantine inflates RSS.
PER_CONN_MAX=16384
GROWTH_MAX=4096
if kl_sanitized; then
    PER_CONN_MAX=131072
    GROWTH_MAX=16384
    echo "# sanitizer build: memory bounds loosened to $PER_CONN_MAX B per connection, $GROWTH_MAX kB growth"
fi

kl_token
kl_start_signer
kl_start_backend

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
fast_ok() {
    # A normal request must still be answered quickly.
    local t0
    t0=$(date +%s%N)
    kl_curl -o /dev/null "https://localhost:$FE_PORT/" || return 1
    [ "$(ms_since "$t0")" -lt 2000 ]
}

# --- backend down: a clean close_notify toward the client, frontend fine ---
dead_port=$(free_port)
FE_BACKEND=127.0.0.1:$dead_port kl_start_frontend
out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost \
    -CAfile "$ROOT" -verify_return_error -ign_eof 2>&1 || true)
check "backend down: the handshake completes (verify OK)" grep -q "Verify return code: 0 (ok)" <<<"$out"
check "backend down: the client gets close_notify, not a reset" grep -q "closed\|DONE" <<<"$out"
is "$(grep -c "errno=104\|Connection reset" <<<"$out")" 0 "backend down: no TCP reset"
check "backend down: counted in metrics" test "$(metric keyless_frontend_backend_errors_total)" -ge 1
check "backend down: frontend alive" kill -0 "$FE_PID"
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true

# --- a backend that never accepts (full accept queue): connect timeout, then close_notify ---
python3 - "$T/stall.port" >>"$T/stall.log" 2>&1 <<'EOP' &
import socket, sys, time
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(0)
port = l.getsockname()[1]
held = []
for _ in range(4):  # fill the accept queue: later SYNs are dropped, connects hang
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    held.append(c)
time.sleep(0.2)
open(sys.argv[1], "w").write(str(port))
time.sleep(120)
EOP
KL_PIDS+=($!)
wait_for test -s "$T/stall.port" || bail "stalling backend did not start"
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
FE_BACKEND=127.0.0.1:$(cat "$T/stall.port") FE_LISTENER_EXTRA="backend_connect_timeout = 500ms" kl_start_frontend
t0=$(date +%s%N)
out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$FE_PORT" -servername localhost \
    -CAfile "$ROOT" -verify_return_error -ign_eof 2>&1 || true)
ms=$(ms_since "$t0")
echo "# stalled backend: the client was closed after $ms ms"
check "backend connect timeout: handshake done, then a clean close" grep -q "Verify return code: 0 (ok)" <<<"$out"
check "... after about backend_connect_timeout (500 ms <= $ms ms < 3000 ms)" test "$ms" -ge 450 -a "$ms" -lt 3000
check "... logged as a connect timeout" grep -q "backend 127.0.0.1:[0-9]*: connect timeout" "$T/frontend.log"
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true

# --- the rest with the real backend; short handshake timeout for the dribbler ---
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
FE_FRONTEND_EXTRA="handshake_timeout = 3
max_connections = 20000" kl_start_frontend
rss0=$(rss_kb "$FE_PID")
echo "# frontend VmRSS at start: $rss0 kB"

# backend slow: one request waits 4 s, others are not held up
kl_curl -o "$T/slow.out" "https://localhost:$FE_PORT/slow/4000" &
slow_pid=$!
sleep 0.3
check "backend slow: other requests are answered at once" fast_ok
rc=0
wait "$slow_pid" || rc=$?
ok "$rc" "backend slow: the slow answer arrives"

# a client that stops reading a 200 MiB answer: bounded memory, others served
exec 7> >(python3 "$CLIENTS" noread "$FE_PORT" "$ROOT" /bytes/209715200 >"$T/noread.out" 2>&1)
sleep 3
rss1=$(rss_kb "$FE_PID")
echo "# VmRSS with a client that stopped reading 200 MiB: $rss1 kB"
check "client that stops reading: frontend memory bounded (+$((rss1 - rss0)) kB < $GROWTH_MAX kB)" \
    test $((rss1 - rss0)) -lt "$GROWTH_MAX"
check "client that stops reading: others are served" fast_ok
exec 7>&-

# a client sending one byte per second is cut at handshake_timeout (3 s)
res=$(python3 "$CLIENTS" dribble "$FE_PORT" 15)
echo "# dribbling client: $res"
check "1 byte/s client is closed by the handshake timeout" bash -c "[[ '$res' == closed* ]]"
secs=${res#closed }
check "... after about 3 s ($secs s)" python3 -c "import sys; sys.exit(not (2.5 <= float('${secs:-0}') <= 6))"
check "metrics: handshake timeout counted" test "$(metric 'keyless_frontend_handshakes_total{result="timeout"}')" -ge 1
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true

# --- many idle connections ---
N=10000
if [ "$FDS" -lt 10500 ]; then
    N=$((FDS - 500))
    echo "# fd limit $FDS: holding $N idle connections instead of 10,000"
fi
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
FE_FRONTEND_EXTRA="handshake_timeout = 120
max_connections = 20000" kl_start_frontend
rss0=$(rss_kb "$FE_PID")
exec 8> >(python3 "$CLIENTS" idle "$FE_PORT" "$N" >"$T/idle.out" 2>&1)
wait_for grep -q "^ready" "$T/idle.out" || true
got=$(awk '/^ready/ { print $2 }' "$T/idle.out")
check "opened ${got:-0} of $N idle TCP connections" test "${got:-0}" -eq "$N"
wait_cmp -ge "${got:-1}" metric keyless_frontend_connections_open || true
active=$(metric keyless_frontend_connections_open)
rss1=$(rss_kb "$FE_PID")
per=$(((rss1 - rss0) * 1024 / (${got:-1} > 0 ? ${got:-1} : 1)))
echo "# $active idle connections: VmRSS $rss0 -> $rss1 kB, $per bytes per connection"
check "frontend holds all $got idle connections (active $active)" test "$active" -ge "${got:-1}"
check "idle TCP connections cost <= $PER_CONN_MAX B each ($per B)" test "$per" -le "$PER_CONN_MAX"
check "with $got idle connections the frontend answers quickly" fast_ok

# 1,000 established, idle TLS connections (each with its backend connection)
M=1000
rss2=$(rss_kb "$FE_PID")
exec 9> >(python3 "$CLIENTS" idle "$FE_PORT" "$M" --tls "$ROOT" >"$T/idle-tls.out" 2>&1)
for _ in $(seq 1 600); do grep -q "^ready" "$T/idle-tls.out" && break; sleep 0.1; done
gotm=$(awk '/^ready/ { print $2 }' "$T/idle-tls.out")
check "opened ${gotm:-0} of $M idle TLS connections" test "${gotm:-0}" -eq "$M"
sleep 1
rss3=$(rss_kb "$FE_PID")
perm=$(((rss3 - rss2) * 1024 / (${gotm:-1} > 0 ? ${gotm:-1} : 1)))
echo "# $gotm established idle TLS connections: VmRSS $rss2 -> $rss3 kB, $perm bytes per connection"
check "established idle connections cost <= $PER_CONN_MAX B each ($perm B)" test "$perm" -le "$PER_CONN_MAX"
check "with $((got + gotm)) idle connections the frontend answers quickly" fast_ok
exec 9>&-
exec 8>&-
wait_for grep -q "^alive" "$T/idle.out" || true
alive=$(awk '/^alive/ { print $2 }' "$T/idle.out")
check "the idle TCP connections were all still open (${alive:-0})" test "${alive:-0}" -eq "${got:-1}"
kill -TERM "$FE_PID"
wait "$FE_PID" 2>/dev/null || true

# --- max_connections: over the limit, connections are closed at once ---
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
FE_FRONTEND_EXTRA="max_connections = 50
handshake_timeout = 30" kl_start_frontend
exec 8> >(python3 "$CLIENTS" idle "$FE_PORT" 60 >"$T/idle2.out" 2>&1)
wait_for grep -q "^ready" "$T/idle2.out" || true
wait_cmp -ge 10 metric keyless_frontend_connections_rejected_total || true
check "max_connections = 50: the 10 extra connections are refused" \
    test "$(metric keyless_frontend_connections_rejected_total)" -ge 10
check "max_connections: active stays at 50" test "$(metric keyless_frontend_connections_open)" -eq 50
exec 8>&-
done_testing
