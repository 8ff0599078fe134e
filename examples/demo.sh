#!/usr/bin/env bash
# The README's first command: start the whole keyless chain on a project-local
# SoftHSM2 token and show a TLS 1.3 request going through it.
#
#   bash examples/demo.sh         install deps, build, make the token (var/hsm), start
#                                 keyless-signer, the demo backend and keyless-frontend,
#                                 then fetch https://localhost:8443/ with curl
#   bash examples/demo.sh stop    stop what a previous run started (pid files)
#
# Idempotent: re-running stops the previous instance first. Everything it writes
# lives under var/ (gitignored): var/hsm (token, PIN files, PKI), var/demo (runtime
# configs, logs, pid files), var/run/keyless (the signer's socket).
# Ports: KL_DEMO_PORT (8443), KL_DEMO_BACKEND_PORT (8080), KL_DEMO_METRICS_PORT (9443).
# Started as root, the signer runs as keyless-signer and the frontend as keyless-frontend
# (both made here if missing): the frontend's user cannot read the PIN or the token, and
# the signer lets only that user sign. Not root: both run as you, which the signer allows
# only because examples/signer.conf says allow_same_uid = yes (issue 13).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
demo=$top/var/demo
hsm=$top/var/hsm
port=${KL_DEMO_PORT:-8443}
backend_port=${KL_DEMO_BACKEND_PORT:-8080}
metrics_port=${KL_DEMO_METRICS_PORT:-9443}
sock=$top/var/run/keyless/signer.sock

stop_all() {
    local name pid
    for name in frontend backend signer; do
        [ -f "$demo/$name.pid" ] || continue
        pid=$(cat "$demo/$name.pid")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$demo/$name.pid"
    done
}

wait_for() {
    for _ in $(seq 1 100); do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

port_open() {
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1"
}

fail() {
    echo "demo: $*" >&2
    for f in signer frontend backend; do
        [ -f "$demo/$f.log" ] && { echo "--- $demo/$f.log" >&2; tail -n 15 "$demo/$f.log" >&2; }
    done
    stop_all
    exit 1
}

if [ "${1:-}" = stop ]; then
    stop_all
    echo "demo: stopped"
    exit 0
fi

stop_all
echo "== dependencies"
bash .ci/deps.sh
echo "== build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== token, keys and certificates ($hsm)"
bash hsm-setup/setup.sh --dir "$hsm" | tail -n 3

mkdir -p "$demo" "$(dirname "$(dirname "$sock")")"
for p in "$port" "$backend_port" "$metrics_port"; do
    if port_open "$p" 2>/dev/null; then fail "port $p is already in use (set KL_DEMO_PORT / KL_DEMO_BACKEND_PORT / KL_DEMO_METRICS_PORT)"; fi
done

# Runtime configs: the annotated examples with absolute paths and the demo's ports.
sed -e "s#^socket = .*#socket = $sock#" \
    -e "s#^audit_log = .*#audit_log = $demo/audit.jsonl#" \
    -e "s#\.\./var/hsm#$hsm#g" examples/signer.conf >"$demo/signer.conf"
sed -e "s#^socket = .*#socket = $sock#" \
    -e "s#\.\./var/hsm#$hsm#g" \
    -e "s#^listen = .*#listen = 127.0.0.1:$port#" \
    -e "s#^backend = .*#backend = 127.0.0.1:$backend_port#" \
    -e "s#^metrics = .*#metrics = 127.0.0.1:$metrics_port#" \
    -e "s#^workers = .*#workers = 2#" examples/frontend.conf >"$demo/frontend.conf"

# Two users when root: made once (idempotent), the token owned by the signer's user.
if [ "$(id -u)" -eq 0 ]; then
    for u in keyless-signer keyless-frontend; do
        id -u "$u" >/dev/null 2>&1 ||
            useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
    done
    chown -R keyless-signer: "$hsm"
    # The audit log's directory: rotation (SIGHUP, audit_rotate_bytes) renames the log and
    # starts a new file there, as the signer's user.
    chown keyless-signer: "$demo"
    chmod 0711 "$hsm"
    chmod 0700 "$hsm/tokens"
    chmod 0600 "$hsm/user.pin"
    sed -i -e "s#^allow_same_uid = yes#user = keyless-signer#" -e "s#^socket_group =.*#socket_group = keyless-frontend#" \
        -e "/^allow_uids =\$/d" -e "s#^\(schemes = .*\)#\1\nallow_uids = keyless-frontend#" \
        -e "s#^\(scope = .*\)#\1\nallow_uids = keyless-frontend#" "$demo/signer.conf"
    sed -i "s#^\[frontend\]#[frontend]\nuser = keyless-frontend#" "$demo/frontend.conf"
    users="signer as keyless-signer, frontend as keyless-frontend"
else
    users="signer and frontend both as $(id -un): allow_same_uid = yes (start as root for two users)"
fi

echo "== starting keyless-signer, the demo backend and keyless-frontend ($users)"
rm -f "$sock"
nohup build/bin/keyless-signer --config "$demo/signer.conf" >"$demo/signer.log" 2>&1 &
echo $! >"$demo/signer.pid"
wait_for test -S "$sock" || fail "the signer did not start"
nohup python3 examples/backend.py --port "$backend_port" >"$demo/backend.log" 2>&1 &
echo $! >"$demo/backend.pid"
wait_for port_open "$backend_port" || fail "the backend did not start"
nohup build/bin/keyless-frontend --config "$demo/frontend.conf" >"$demo/frontend.log" 2>&1 &
echo $! >"$demo/frontend.pid"
wait_for port_open "$port" || fail "the frontend did not start"

echo "== curl --cacert var/hsm/pki/root.pem https://localhost:$port/"
curl -sS --max-time 10 --cacert "$hsm/pki/root.pem" "https://localhost:$port/" || fail "curl failed"
echo
echo "== the handshake, as the frontend and the signer saw it"
grep "handshake ok" "$demo/frontend.log" | tail -n 1 || true
# The live log ends in zeros kept ahead of the records (audit_zero_tail): not `tail -n 1`.
grep -a '"op":"sign"' "$demo/audit.jsonl" 2>/dev/null | tail -n 1 | cut -c1-240 || true
cat <<EOM

The chain is running:
  frontend  https://localhost:$port/  (log: var/demo/frontend.log, metrics: http://127.0.0.1:$metrics_port/metrics)
  signer    $sock  (log: var/demo/signer.log, audit: var/demo/audit.jsonl)
  backend   http://127.0.0.1:$backend_port/  (examples/backend.py)
Try:   curl --cacert var/hsm/pki/root.pem https://localhost:$port/
       openssl s_client -connect localhost:$port -CAfile var/hsm/pki/root.pem -brief </dev/null
Stop:  bash examples/demo.sh stop
EOM
