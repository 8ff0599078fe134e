#!/usr/bin/env bash
# backend_connect = handshake | data (issue 15), with real clients and backends:
#  - data: clients that handshake and leave (with close_notify or a bare FIN) cost no backend
#    connection (the backend counts its accepts), a request still reaches the backend, and so
#    do 0-RTT bytes (accepted once the strike register is warm), after the PROXY v2 header
#    with the early byte count (TLV 0xE3).
#  - handshake (the default): every handshake connects the backend, and a server-speaks-first
#    backend (an SMTP-like banner) reaches a client that says nothing; with data the same
#    client gets nothing until it speaks, then the banner and the reply.
#  - a bad value is refused by --check-config with the file, line, section and key.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tickets_lib.sh"
PY=$KL_SOURCE_DIR/tests/e2e/backend_connect.py

kl_token
kl_signer_tickets e2e
kl_resumption_backend
HTTP_PORT=$(free_port) BANNER_PORT=$(free_port)
LAZY_PORT=$(free_port) EAGER_PORT=$(free_port) SMTP_PORT=$(free_port) SMTP_LAZY_PORT=$(free_port)
python3 "$PY" backend "$HTTP_PORT" "$T/http.accepts" http >>"$T/backend.log" 2>&1 &
KL_PIDS+=($!)
python3 "$PY" backend "$BANNER_PORT" "$T/banner.accepts" banner >>"$T/backend.log" 2>&1 &
KL_PIDS+=($!)
wait_for port_open "$HTTP_PORT" || bail "http backend did not start"
wait_for port_open "$BANNER_PORT" || bail "banner backend did not start"
: >"$T/http.accepts"
: >"$T/banner.accepts"
accepts() { wc -l <"$T/$1.accepts"; }

FE_LISTENER_EXTRA="proxy_protocol = yes
max_early_data = 16384
backend_connect = data
[listener lazy]
listen = 127.0.0.1:$LAZY_PORT
backend = 127.0.0.1:$HTTP_PORT
backend_connect = data
[listener eager]
listen = 127.0.0.1:$EAGER_PORT
backend = 127.0.0.1:$HTTP_PORT
[listener smtp]
listen = 127.0.0.1:$SMTP_PORT
backend = 127.0.0.1:$BANNER_PORT
backend_connect = handshake
[listener smtp-lazy]
listen = 127.0.0.1:$SMTP_LAZY_PORT
backend = 127.0.0.1:$BANNER_PORT
backend_connect = data" kl_start_frontend
FE_START=$(date +%s)
for p in "$LAZY_PORT" "$EAGER_PORT" "$SMTP_PORT" "$SMTP_LAZY_PORT"; do
    wait_for port_open "$p" || bail "the frontend does not listen on $p"
done
: >"$T/http.accepts"
: >"$T/banner.accepts"

# --- data: handshake-only clients connect nothing; a request still goes through ---
ok0=$(metric 'keyless_frontend_handshakes_total{result="ok"}')
out=$(timeout 60 python3 "$PY" hs "$LAZY_PORT" "$ROOT" 10 2>&1 || true)
is "$out" "hs 10" "data: 10 clients handshake and leave (5 with close_notify, 5 with a bare FIN)"
is "$(($(metric 'keyless_frontend_handshakes_total{result="ok"}') - ok0))" 10 "data: 10 handshakes counted ok"
sleep 0.3
is "$(accepts http)" 0 "data: the backend accepted no connection for them"
is "$(metric keyless_frontend_backend_errors_total)" 0 "data: no backend error counted"
wait_for test "$(metric keyless_frontend_connections_open)" = 0 || true
is "$(metric keyless_frontend_connections_open)" 0 "data: every one of them was closed"
# (A client that closes without reading our NewSessionTickets resets the connection, so only the
# ones that sent close_notify are sure to end with close="done".)
check "data: their access lines say established=yes" test "$(grep -c 'access .*established=yes' "$T/frontend.log")" -ge 10
check "data: those that sent close_notify got ours and ended cleanly (close=\"done\")" \
    test "$(grep -c 'established=yes .*close="done"' "$T/frontend.log")" -ge 5
check "data: no backend line in the log for them" not_grep "backend 127.0.0.1:$HTTP_PORT" "$T/frontend.log"
out=$(timeout 20 python3 "$PY" get "$LAZY_PORT" "$ROOT" 2>&1 || true)
check "data: a GET is proxied and answered" grep -q "^hello" <<<"$out"
is "$(accepts http)" 1 "data: ... over one backend connection"

# --- handshake (the default): every handshake connects the backend ---
out=$(timeout 60 python3 "$PY" hs "$EAGER_PORT" "$ROOT" 4 2>&1 || true)
is "$out" "hs 4" "handshake: 4 clients handshake and leave"
wait_for test "$(accepts http)" -ge 5 || true
is "$(accepts http)" 5 "handshake: the backend accepted one connection per handshake (as before)"

# --- a server-speaks-first backend ---
out=$(timeout 20 python3 "$PY" banner "$SMTP_PORT" "$ROOT" 5 2>&1 || true)
check "handshake: the backend's banner reaches a client that has not spoken" grep -qx "first: 220 banner" <<<"$out"
check "handshake: ... and its reply follows" grep -q "^reply: .*250 HELO x" <<<"$out"
b0=$(accepts banner)
out=$(timeout 20 python3 "$PY" banner "$SMTP_LAZY_PORT" "$ROOT" 1 2>&1 || true)
check "data: a silent client gets no banner (no backend yet)" grep -qx "first: none" <<<"$out"
check "data: once it speaks, the banner and the reply come" grep -q "^reply: 220 banner | 250 HELO x" <<<"$out"
is "$(($(accepts banner) - b0))" 1 "data: one backend connection, made on the client's first byte"

# --- data with proxy_protocol: a request, then 0-RTT once the strike register is warm ---
out=$(s_client "$FE_PORT" -sess_out "$T/sess")
check "data + proxy_protocol: the backend answered a request (PROXY v2 header first)" grep -q "early=None" <<<"$out"
check "data + proxy_protocol: a session to keep" test -s "$T/sess"
printf 'GET /early HTTP/1.0\r\nHost: localhost\r\n\r\n' >"$T/early.txt"
while [ $(($(date +%s) - FE_START)) -le 21 ]; do sleep 0.5; done
: >"$BACKEND_LOG"
out=$(s_client "$FE_PORT" -sess_in "$T/sess" -early_data "$T/early.txt")
check "data + 0-RTT: Early data was accepted" grep -q "Early data was accepted" <<<"$out"
elen=$(wc -c <"$T/early.txt")
check "data + 0-RTT: the backend read TLV 0xE3 = $elen early bytes, then the request in them" \
    grep -q "\"early\": $elen, \"request\": \"GET /early HTTP/1.0\", \"in_early\": true" "$BACKEND_LOG"

# --- config: a bad value ---
sed 's/^backend_connect = data$/backend_connect = lazy/' "$FE_CONF" >"$T/bad.conf"
rc=0
out=$(timeout 20 "$FE_BIN" --config "$T/bad.conf" --check-config 2>&1) || rc=$?
is "$rc" 2 "--check-config: backend_connect = lazy is refused (exit 2)"
check "--check-config: the message names the file, section and key" \
    grep -Eq "bad.conf:[0-9]+: \[listener main\] backend_connect: 'lazy' is not handshake or data" <<<"$out"
rc=0
timeout 20 "$FE_BIN" --config "$FE_CONF" --check-config >/dev/null 2>&1 || rc=$?
is "$rc" 0 "--check-config: the running config (handshake and data) passes"
done_testing
