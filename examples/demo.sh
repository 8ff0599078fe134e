#!/usr/bin/env bash
# The README's first command: start the whole keyless chain on a project-local
# SoftHSM2 token and show a TLS 1.3 request going through it.
#
#   bash examples/demo.sh         install deps, build, make the token, start
#                                 signer + demo backend + frontend, run curl
#   bash examples/demo.sh stop    stop what a previous run started (pid files)
#
# Idempotent: re-running stops the previous instance first. Everything it writes
# lives under var/ (gitignored): var/hsm (token, PIN files, PKI) and var/demo
# (runtime configs, sockets, logs, pid files).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
demo=$top/var/demo
hsm=$top/var/hsm
port=${KL_DEMO_PORT:-8443}
backend_port=${KL_DEMO_BACKEND_PORT:-8080}
metrics_port=${KL_DEMO_METRICS_PORT:-9443}

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

if [ "${1:-}" = stop ]; then
    stop_all
    echo "demo: stopped"
    exit 0
fi

stop_all
echo "== dependencies"
bash .ci/deps.sh
echo "== build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== token and certificates (var/hsm)"
bash hsm-setup/setup.sh --dir "$hsm"
bash hsm-setup/check.sh --dir "$hsm"
echo "demo: the token and the certificates are ready in $hsm (the TLS chain comes next)"
