# shellcheck shell=bash
# tests/e2e/lib.sh - shared helpers for the end-to-end tests (sourced, bash).
#
# Each test gets its own temporary directory ($T) with its own SoftHSM2 token
# (hsm-setup/setup.sh --dir, or under ctest a copy of the run's prepared one), its own signer, backend and frontend on free loopback
# ports, and a cleanup at exit that stops them all and removes $T (KL_KEEP=1 keeps it).
# Checks and the plan come from tests/lib/tap.sh (ok STATUS DESC, check DESC CMD...,
# is, skip, bail, done_testing); a failed run ends with the daemons' last log lines.
set -eu
set -o pipefail
: "${KL_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${KL_BUILD_DIR:=$KL_SOURCE_DIR/build}"
FE_BIN=$KL_BUILD_DIR/bin/keyless-frontend
SIGNER_BIN=$KL_BUILD_DIR/bin/keyless-signer
BACKEND_PY=$KL_SOURCE_DIR/examples/backend.py
T=$(mktemp -d /tmp/kl-e2e.XXXXXX)
HSM=$T/hsm
PKI=$HSM/pki
ROOT=$PKI/root.pem
KL_PIDS=()
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}

kl_cleanup() {
    local p
    for p in "${KL_PIDS[@]}"; do
        # A backgrounded kl_as_frontend is a subshell whose child is the real process: stop both.
        pkill -TERM -P "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${KL_PIDS[@]}"; do
        for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ "${KL_KEEP:-0}" = 1 ]; then
        echo "# kept $T"
    else
        rm -rf "$T"
    fi
}
. "$KL_SOURCE_DIR/tests/lib/tap.sh"
tap_at_exit kl_cleanup
tap_on_failure kl_logs

kl_logs() {
    local f
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        echo "# --- $f (last 30 lines)"
        tail -n 30 "$f" | sed 's/^/#   /'
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for CMD... : retry for up to 20 s (bounded).
wait_for() {
    for _ in $(seq 1 200); do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# wait_cmp OP VALUE CMD...: wait until CMD's output, run again on every try, compares with
# VALUE by test's OP (-ge, =, ...). Not `wait_for test "$(CMD)" OP VALUE`: the shell expands
# "$(CMD)" once, before wait_for runs, so that form never waits.
wait_cmp() {
    local op=$1 want=$2
    shift 2
    for _ in $(seq 1 200); do
        if test "$("$@" 2>/dev/null)" "$op" "$want" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

port_open() {
    python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1"
}

# Privilege separation (issue 13 §2): as root, the signer runs as KL_SIGNER_USER and the
# frontend as KL_FE_USER (made here if missing), the socket in the frontend's group and
# the keys allowing only the frontend's user. Not root (or KL_E2E_SAME_USER=1): both run as
# the caller, which the signer allows only with allow_same_uid = yes.
KL_SIGNER_USER=keyless-signer
KL_FE_USER=keyless-frontend
kl_two_users() {
    [ "$(id -u)" -eq 0 ] && [ "${KL_E2E_SAME_USER:-0}" != 1 ]
}

# kl_ensure_user NAME: a system user with a group of its own, made once (tests run in
# parallel: a useradd that loses the race to another is fine if the user exists after).
kl_ensure_user() {
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        id -u "$1" >/dev/null 2>&1 && return 0
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1" \
            >/dev/null 2>&1 || sleep 0.$i
    done
    id -u "$1" >/dev/null 2>&1 || bail "cannot create user $1"
}

kl_token() {
    [ -x "$FE_BIN" ] || bail "no $FE_BIN (build first)"
    [ -x "$SIGNER_BIN" ] || bail "no $SIGNER_BIN (build first)"
    # Under ctest a copy of the run's prepared token (tests/lib/hsm-token.sh), else a new one.
    local rc=0
    bash "$KL_SOURCE_DIR/tests/lib/hsm-token.sh" copy "$HSM" >"$T/setup.log" 2>&1 || rc=$?
    if [ $rc = 3 ]; then
        bash "$KL_SOURCE_DIR/hsm-setup/setup.sh" --dir "$HSM" >"$T/setup.log" 2>&1 || bail "hsm-setup failed"
    elif [ $rc != 0 ]; then
        bail "copying the prepared token failed"
    fi
    if kl_two_users; then
        kl_ensure_user "$KL_SIGNER_USER"
        kl_ensure_user "$KL_FE_USER"
        # The signer's user owns the token and the PIN; the frontend's user may traverse
        # to the public PKI only. The test directory is the frontend's group's (setgid,
        # umask 002): what the test makes there as root (a Unix backend socket, a keylog
        # file's directory, reloaded chains) is usable by the frontend as it would be by a
        # deployment's own layout.
        chown -R "$KL_SIGNER_USER:" "$HSM"
        chmod 0711 "$HSM"
        chmod 0700 "$HSM/tokens"
        chmod 0600 "$HSM/user.pin"
        chown "root:$KL_FE_USER" "$T"
        chmod 2771 "$T"
        umask 002
    fi
}

# kl_as_frontend CMD...: run CMD as the frontend's user (a test's stand-in between the
# frontend and the signer, e.g. a delaying proxy, must be allowed on the keys too).
kl_as_frontend() {
    if kl_two_users; then
        local cmd=$1
        shift
        [ "$cmd" = python3 ] && cmd=/usr/bin/python3 # not a version manager's shim under /root
        setpriv --reuid="$KL_FE_USER" --regid="$KL_FE_USER" --clear-groups "$cmd" "$@"
    else
        "$@"
    fi
}

# The [signer] lines and the per-key allow line for the chosen user layout.
kl_signer_peer_lines() {
    if kl_two_users; then
        echo "user = $KL_SIGNER_USER"
        echo "socket_group = $KL_FE_USER"
    else
        echo "allow_same_uid = yes"
    fi
}
kl_key_allow_line() {
    if kl_two_users; then echo "allow_uids = $KL_FE_USER"; else echo "allow_uids = $(id -u)"; fi
}

# kl_start_signer [SOCKET]: a signer on the test token, serving all four keys to the
# frontend's user (SIGNER_EXTRA: more [signer] lines).
kl_start_signer() {
    SIGNER_SOCK=${1:-$T/run/signer.sock}
    cat >"$T/signer.conf" <<EOS
[signer]
socket = $SIGNER_SOCK
workers = 2
queue_max = 8192
max_connections = 256
audit_log = $T/audit.jsonl
audit_sync = none
audit_key = pkcs11:token=keyless;object=audit-signing;type=private
$(kl_signer_peer_lines)
${SIGNER_EXTRA:-}
[hsm]
module = /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
softhsm2_conf = $HSM/softhsm2.conf
pin_file = $HSM/user.pin
[key ecdsa-p256]
uri = pkcs11:token=keyless;object=ecdsa-p256;type=private
schemes = ecdsa_secp256r1_sha256
$(kl_key_allow_line)
[key ecdsa-p384]
uri = pkcs11:token=keyless;object=ecdsa-p384;type=private
schemes = ecdsa_secp384r1_sha384
$(kl_key_allow_line)
[key rsa-2048]
uri = pkcs11:token=keyless;object=rsa-2048;type=private
schemes = rsa_pss_rsae_sha256, rsa_pss_rsae_sha384, rsa_pss_rsae_sha512
$(kl_key_allow_line)
[key ed25519]
uri = pkcs11:token=keyless;object=ed25519;type=private
schemes = ed25519
$(kl_key_allow_line)
EOS
    rm -f "$SIGNER_SOCK"
    "$SIGNER_BIN" --config "$T/signer.conf" >>"$T/signer.log" 2>&1 &
    SIGNER_PID=$!
    KL_PIDS+=("$SIGNER_PID")
    wait_for test -S "$SIGNER_SOCK" || bail "signer did not create $SIGNER_SOCK"
    wait_for python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$SIGNER_SOCK" ||
        bail "signer socket does not accept"
}

# kl_start_backend [backend.py args]: BACKEND_PORT, BACKEND_PID.
kl_start_backend() {
    BACKEND_PORT=$(free_port)
    python3 "$BACKEND_PY" --port "$BACKEND_PORT" --quiet "$@" >>"$T/backend.log" 2>&1 &
    BACKEND_PID=$!
    KL_PIDS+=("$BACKEND_PID")
    wait_for port_open "$BACKEND_PORT" || bail "backend did not start"
}

# kl_frontend_conf FILE: the config; FE_CERTS (names of hsm-setup keys, default
# "ecdsa-p256 rsa-2048"), FE_BACKEND, FE_FRONTEND_EXTRA / FE_SIGNER_EXTRA /
# FE_LISTENER_EXTRA / FE_TLS_EXTRA lines are honoured.
kl_frontend_conf() {
    local f=$1 k
    {
        echo "[frontend]"
        echo "workers = ${FE_WORKERS:-1}"
        echo "log_level = ${FE_LOG_LEVEL:-info}"
        echo "metrics = 127.0.0.1:$METRICS_PORT"
        if kl_two_users; then echo "user = $KL_FE_USER"; fi
        echo "${FE_FRONTEND_EXTRA:-}"
        echo "[signer]"
        echo "socket = ${FE_SIGNER_SOCK:-$SIGNER_SOCK}"
        echo "startup_wait = 10"
        echo "${FE_SIGNER_EXTRA:-}"
        echo "[tls]"
        echo "alpn = ${FE_ALPN:-http/1.1}"
        echo "${FE_TLS_EXTRA:-}"
        for k in ${FE_CERTS:-ecdsa-p256 rsa-2048}; do
            echo "[cert $k]"
            echo "chain = $PKI/$k.chain.pem"
            echo "key = $k"
        done
        echo "[listener main]"
        echo "listen = 127.0.0.1:$FE_PORT"
        echo "backend = ${FE_BACKEND:-127.0.0.1:$BACKEND_PORT}"
        echo "${FE_LISTENER_EXTRA:-}"
    } >"$f"
}

# kl_start_frontend [args]: FE_PORT, METRICS_PORT, FE_PID, FE_CONF.
kl_start_frontend() {
    FE_PORT=${FE_PORT:-$(free_port)}
    METRICS_PORT=${METRICS_PORT:-$(free_port)}
    FE_CONF=$T/frontend.conf
    kl_frontend_conf "$FE_CONF"
    "$FE_BIN" --config "$FE_CONF" "$@" >>"$T/frontend.log" 2>&1 &
    FE_PID=$!
    KL_PIDS+=("$FE_PID")
    wait_for port_open "$FE_PORT" || bail "frontend did not start listening"
}

# metric NAME_WITH_LABELS: its value from the metrics endpoint (0 if absent).
metric() {
    curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print 0 }'
}

# rss_kb PID
rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# https URL path through the frontend with curl, verifying against the test root.
kl_curl() {
    curl -sS --max-time 30 --cacert "$ROOT" --resolve "localhost:$FE_PORT:127.0.0.1" "$@"
}

# True when the binaries are built with AddressSanitizer: its quarantine keeps freed
# memory resident, so VmRSS bounds are loosened (and say so).
kl_sanitized() {
    case "${KL_SANITIZE:-}" in ON | on | 1 | TRUE | true) return 0 ;; esac
    ldd "$FE_BIN" 2>/dev/null | grep libasan >/dev/null
}
