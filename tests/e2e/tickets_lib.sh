# shellcheck shell=bash
# tests/e2e/tickets_lib.sh - issue 11 helpers for test_resumption.sh and test_fleet.sh,
# sourced after lib.sh.

# kl_signer_tickets SCOPE [SOCKET]: lib.sh's signer, restarted with a [tickets] section
# (the ticket-root key hsm-setup made, scope SCOPE) so that it serves TicketKeys.
kl_signer_tickets() {
    local scope=$1
    kl_start_signer "${2:-}"
    kill -TERM "$SIGNER_PID"
    wait "$SIGNER_PID" 2>/dev/null || true
    printf '[tickets]\nscope = %s\n%s\n' "$scope" "$(kl_key_allow_line)" >>"$T/signer.conf"
    kl_restart_signer
}

# kl_restart_signer: start the signer again on $T/signer.conf (after a stop).
kl_restart_signer() {
    rm -f "$SIGNER_SOCK"
    "$SIGNER_BIN" --config "$T/signer.conf" >>"$T/signer.log" 2>&1 &
    SIGNER_PID=$!
    KL_PIDS+=("$SIGNER_PID")
    wait_for python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$SIGNER_SOCK" ||
        bail "signer did not come back"
}

# kl_resumption_backend: tests/e2e/resumption.py's PROXY v2 backend (reads the 0-RTT TLV).
kl_resumption_backend() {
    BACKEND_PORT=$(free_port)
    BACKEND_LOG=$T/backend.jsonl
    : >"$BACKEND_LOG"
    python3 "$KL_SOURCE_DIR/tests/e2e/resumption.py" backend "$BACKEND_PORT" "$BACKEND_LOG" >>"$T/backend.log" 2>&1 &
    BACKEND_PID=$!
    KL_PIDS+=("$BACKEND_PID")
    wait_for port_open "$BACKEND_PORT" || bail "backend did not start"
    : >"$BACKEND_LOG" # the probe's connection
}

# signatures: how many sign records the signer's audit log holds.
signatures() {
    grep -c '"op":"sign"' "$T/audit.jsonl" || true
}

# s_client PORT ARGS...: openssl s_client sending one GET (stdin), reading to the end.
s_client() {
    local port=$1
    shift
    printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' |
        timeout 15 openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$ROOT" -ign_eof "$@" 2>&1 ||
        true
}

# not_grep ARGS...: grep finds nothing.
not_grep() {
    ! grep -q "$@"
}
