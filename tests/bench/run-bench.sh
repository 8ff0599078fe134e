#!/usr/bin/env bash
# run-bench.sh: the keyless benchmarks in one command (issue 6; docs/PERFORMANCE.md).
#
#   bash tests/bench/run-bench.sh            full run, about 13 minutes, prints the table
#
# Builds what it needs (build dir: $BENCH_BUILD_DIR, else $KL_BUILD_DIR, else build-bench),
# makes its own SoftHSM2 token with hsm-setup in a temp dir, starts every server on
# loopback with private configs, measures, stops them and removes the temp dir.
# Servers (and SoftHSM inside them) are pinned to core $BENCH_SERVER_CPU (0), the load
# generator and the plaintext backend to core $BENCH_CLIENT_CPU (1).
#
# Knobs (environment):
#   BENCH_DURATION=10      seconds per measurement (bulk, floors)
#   BENCH_ROUNDS=3         handshake rounds: every server is measured once per round, in
#                          turn, and the median round is reported (the machine's speed drifts
#                          over minutes; interleaving keeps each ratio within one period)
#   BENCH_HS_DURATION=5    seconds per handshake measurement (per round)
#   BENCH_CONCURRENCY=32   handshakes in flight for the saturation run
#   BENCH_IDLE_CONNS=10000 idle established connections for the RSS figure
#   BENCH_KEYS="ecdsa-p256 rsa-2048"
#   BENCH_SERVERS="nginx-file nginx-pkcs11 keyless keyless-nosync"
#                          (keyless-nosync: the same keyless with audit_sync = none, to show
#                          what the audit log's fdatasync costs; handshake rows only)
#   BENCH_HSM_DIR=DIR      reuse an hsm-setup dir instead of making a new token
#   BENCH_RESULTS=FILE     also write every raw figure there (key=value lines)
#   BENCH_KEEP=1           keep the temp dir (configs, logs) for inspection
#   BENCH_PROFILE=1        one more run per server under perf record (CPU by library)
#   BENCH_SECTIONS="handshakes resumed idle bulk floors signer remote"
#                          the parts to run (default all); e.g. BENCH_SECTIONS=handshakes for
#                          a quick A/B of the handshake rows (CPU, context switches, p99)
#   BENCH_REMOTE_SESSIONS="1 2 4 8"
#                          section remote (issue 15): signer throughput with the token behind
#                          `p11-kit server` (a network HSM's stand-in) for each session count
#   BENCH_REMOTE_DELAY_US=2000
#                          section remote, second pass: the same with every C_Sign in the
#                          server made that much slower (an HSM's latency; 0: no second pass)
# Resumed handshakes (issue 11): nginx-file with tickets against keyless with HSM ticket keys,
# --resume 100 (server CPU of a resumed handshake) and --resume 80 (share that needed the HSM).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "${KL_SOURCE_DIR:-$HERE/../..}" && pwd)
# shellcheck source=bench-lib.sh
. "$HERE/bench-lib.sh"

DUR=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
HS_DUR=${BENCH_HS_DURATION:-5}
CONC=${BENCH_CONCURRENCY:-32}
IDLE_N=${BENCH_IDLE_CONNS:-10000}
HOLD=${BENCH_IDLE_HOLD:-3}
KEYS=${BENCH_KEYS:-"ecdsa-p256 rsa-2048"}
SERVERS=${BENCH_SERVERS:-"nginx-file nginx-pkcs11 keyless keyless-nosync"}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}
BUILD=${BENCH_BUILD_DIR:-${KL_BUILD_DIR:-$SRC/build-bench}}
# Both sides use AES-128-GCM so that bulk throughput compares the same cipher.
SUITE=TLS_AES_128_GCM_SHA256
BULK_MIB=64

SECTIONS=${BENCH_SECTIONS:-"handshakes resumed idle bulk floors signer remote"}
REMOTE_SESSIONS=${BENCH_REMOTE_SESSIONS:-"1 2 4 8"}
# section remote, second pass: each C_Sign in the server takes this much longer (0: no pass)
REMOTE_DELAY_US=${BENCH_REMOTE_DELAY_US:-2000}
# section NAME: true when BENCH_SECTIONS asks for that part.
section() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }

WORK=$(mktemp -d /tmp/keyless-bench.XXXXXX)
declare -A R        # R[server/key/figure] = value
declare -a LIVE=()  # pids to stop on exit

cleanup() {
    local p
    for p in "${LIVE[@]}"; do bench_stop "$p"; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then bench_log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
bench_log "build in $BUILD"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
if ! cmake --build "$BUILD" --target loadgen csign_floor -j2 >"$WORK/build.log" 2>&1; then
    # The tree can be mid-change while others work in it: measure with what is already built.
    bench_log "build failed, using the binaries already in $BUILD: $(grep -m1 -i error "$WORK/build.log")"
fi
for t in keyless-signer keyless-frontend signer_bench tls_bench audit_sync_bench; do
    # Product and sibling targets may not exist yet (or be mid-change): their absence is reported, not fatal.
    cmake --build "$BUILD" --target "$t" -j2 >"$WORK/build-$t.log" 2>&1 || bench_log "target $t not built (see the log with BENCH_KEEP=1)"
done
LOADGEN=$BUILD/tests/bench/loadgen
[ -x "$LOADGEN" ] || bench_die "no loadgen in $BUILD"

# ---------------------------------------------------------------- token and keys
if [ -n "${BENCH_HSM_DIR:-}" ]; then
    HSM=$BENCH_HSM_DIR
else
    HSM=$WORK/hsm
    [ -f "$SRC/hsm-setup/setup.sh" ] || bench_die "hsm-setup/setup.sh is missing"
    bench_log "token: hsm-setup in $HSM"
    bash "$SRC/hsm-setup/setup.sh" --dir "$HSM" >"$WORK/hsm-setup.log" 2>&1 || {
        cat "$WORK/hsm-setup.log" >&2
        bench_die "hsm-setup failed"
    }
    # libp11 0.4.12 cannot enumerate the token's keys while an Ed25519 key is on it ("Unable to
    # enumerate private keys"), which would rule out the engine peer; this private token drops it.
    (
        export SOFTHSM2_CONF=$HSM/softhsm2.conf
        KL_BENCH_PIN=$(head -n 1 "$HSM/user.pin")
        export KL_BENCH_PIN
        for t in privkey pubkey; do
            pkcs11-tool --module "$BENCH_SOFTHSM_MODULE" --token-label keyless --login --pin env:KL_BENCH_PIN \
                --delete-object --type "$t" --label ed25519 >/dev/null 2>&1 || bench_log "could not delete the ed25519 $t"
        done
    )
fi
export SOFTHSM2_CONF=$HSM/softhsm2.conf
PIN_FILE=$HSM/user.pin
# The engine gets the PIN through its PIN control in a private OpenSSL config (mode 0600 in
# the temp dir): libp11 0.4.12 refuses hsm-setup's 32-byte PIN read from a pin-source file
# (shorter ones work), and a PIN inside the key URI would be echoed in nginx's error messages.
bench_file_keys "$WORK/filekeys" "$HSM/pki"
(umask 077; bench_openssl_engine_conf "$WORK/openssl-pkcs11.cnf" "$PIN_FILE")

# ---------------------------------------------------------------- backend (plaintext, client core)
BACKEND_PORT=$(bench_free_port)
mkdir -p "$WORK/backend/docroot"
head -c $((BULK_MIB << 20)) /dev/urandom >"$WORK/backend/docroot/bulk.bin"
bench_render "$HERE/nginx-backend.conf.in" "$WORK/backend/nginx.conf" DIR="$WORK/backend" PORT="$BACKEND_PORT" \
    DOCROOT="$WORK/backend/docroot"
taskset -c "$CCPU" nginx -c "$WORK/backend/nginx.conf" -p "$WORK/backend" -e "$WORK/backend/error.log" &
BACKEND_PID=$!
LIVE+=("$BACKEND_PID")
bench_wait_port "$BACKEND_PORT" 10 || bench_die "backend did not start ($WORK/backend/error.log)"

# ---------------------------------------------------------------- servers
SERVER_PID=
SERVER_PORT=
SERVER_EXTRA_PIDS=

# start_nginx NAME KEY: nginx-file (key file) or nginx-pkcs11 (token key via libp11's engine).
start_nginx() {
    local name=$1 key=$2 dir=$WORK/$1-$2 engine= keyref chain envs=()
    mkdir -p "$dir"
    SERVER_PORT=$(bench_free_port)
    if [ "$name" = nginx-file ]; then
        keyref=$WORK/filekeys/$key.key
        chain=$WORK/filekeys/$key.chain.pem
    else
        engine="ssl_engine pkcs11;"
        keyref="engine:pkcs11:pkcs11:token=keyless;object=$key;type=private"
        chain=$HSM/pki/$key.chain.pem
        envs=(OPENSSL_CONF="$WORK/openssl-pkcs11.cnf")
    fi
    bench_render "$HERE/nginx-tls.conf.in" "$dir/nginx.conf" DIR="$dir" PORT="$SERVER_PORT" ENGINE="$engine" \
        CHAIN="$chain" KEY="$keyref" BACKEND_PORT="$BACKEND_PORT" TICKETS="${BENCH_TICKETS:-off}"
    env "${envs[@]}" taskset -c "$SCPU" nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" &
    SERVER_PID=$!
    SERVER_EXTRA_PIDS=
    LIVE+=("$SERVER_PID")
    if ! bench_wait_port "$SERVER_PORT" 15; then
        bench_log "$name/$key did not start: $(tail -n 3 "$dir/error.log" 2>/dev/null | tr '\n' ' ')"
        return 1
    fi
}

# start_keyless KEY [AUDIT_SYNC]: signer + frontend (config format: docs/FRONTEND.md,
# examples/frontend.conf); the signer's audit_sync is its default (group) unless given.
start_keyless() {
    local key=$1 sync=${2:-group} dir=$WORK/keyless-$1-${2:-group}
    local signer=$BUILD/bin/keyless-signer frontend=$BUILD/bin/keyless-frontend
    if [ ! -x "$signer" ] || [ ! -x "$frontend" ]; then
        bench_log "keyless: not available (no $signer or $frontend)"
        return 1
    fi
    mkdir -p "$dir"
    SERVER_PORT=$(bench_free_port)
    # workers = 0: one PKCS#11 session, signed on the signer's I/O thread (no hand-off between
    # threads; docs/SIGNER.md). nginx runs one worker process with one session too.
    # allow_same_uid: the bench runs both processes as one user (it measures CPU, not the
    # privilege separation of issue 13).
    cat >"$dir/signer.conf" <<EOF
[signer]
socket = $dir/run/signer.sock
workers = 0
audit_log = $dir/audit.jsonl
audit_sync = $sync
allow_same_uid = yes

[hsm]
module = $BENCH_SOFTHSM_MODULE
softhsm2_conf = $SOFTHSM2_CONF
pin_file = $PIN_FILE

[key $key]
uri = pkcs11:token=keyless;object=$key;type=private
schemes = $(key_schemes "$key")

[tickets]
scope = bench
EOF
    if ! write_frontend_conf "$key" "$dir"; then
        bench_log "keyless: not available (cannot write a frontend config: see examples/frontend.conf)"
        return 1
    fi
    taskset -c "$SCPU" "$signer" --config "$dir/signer.conf" >"$dir/signer.log" 2>&1 &
    SERVER_EXTRA_PIDS=$!
    LIVE+=("$SERVER_EXTRA_PIDS")
    local i
    for i in $(seq 100); do [ -S "$dir/run/signer.sock" ] && break; sleep 0.1; done
    [ -S "$dir/run/signer.sock" ] || { bench_log "keyless: signer did not start: $(tail -n 3 "$dir/signer.log")"; return 1; }
    taskset -c "$SCPU" "$frontend" --config "$dir/frontend.conf" >"$dir/frontend.log" 2>&1 &
    SERVER_PID=$!
    LIVE+=("$SERVER_PID")
    if ! bench_wait_port "$SERVER_PORT" 15; then
        bench_log "keyless: frontend did not start: $(tail -n 3 "$dir/frontend.log" | tr '\n' ' ')"
        return 1
    fi
}

key_schemes() {
    case $1 in
    ecdsa-p256) echo ecdsa_secp256r1_sha256 ;;
    ecdsa-p384) echo ecdsa_secp384r1_sha384 ;;
    rsa-2048) echo rsa_pss_rsae_sha256 ;;
    ed25519) echo ed25519 ;;
    esac
}

# write_frontend_conf KEY DIR: one worker (the nginx peers run one too), quiet logs (nginx runs
# with access_log off), room for the idle-connection figure, the shared backend.
write_frontend_conf() {
    local key=$1 dir=$2
    cat >"$dir/frontend.conf" <<EOF
[frontend]
workers = 1
log_level = warn
max_connections = 20000
handshake_timeout = 30
idle_timeout = 300
; Tickets only for the resumed-handshake rows (BENCH_TICKETS=on): the full-handshake rows
; compare with nginx's ssl_session_tickets off, so neither sends NewSessionTickets there.
ticket_keys = $([ "${BENCH_TICKETS:-off}" = on ] && echo hsm || echo off)

[signer]
socket = $dir/run/signer.sock
startup_wait = 10

[cert $key]
chain = $HSM/pki/$key.chain.pem
key = $key

[listener main]
listen = 127.0.0.1:$SERVER_PORT
backend = 127.0.0.1:$BACKEND_PORT
; Same terms as the nginx peer, an HTTP proxy that connects upstream when a request arrives:
; the handshake-only rows then cost no backend connect/close (issue 15), and the rows with a
; request still connect once per connection, as nginx does.
backend_connect = data
EOF
}

start_server() {
    case $1 in
    nginx-file | nginx-pkcs11) start_nginx "$1" "$2" ;;
    keyless) start_keyless "$2" ;;
    keyless-nosync) start_keyless "$2" none ;;
    *) bench_die "unknown server $1" ;;
    esac
}

stop_server() {
    local p
    for p in $SERVER_PID $SERVER_EXTRA_PIDS; do bench_stop "$p"; done
    SERVER_PID= SERVER_EXTRA_PIDS=
}

server_pids() {
    # shellcheck disable=SC2086
    bench_tree $SERVER_PID $SERVER_EXTRA_PIDS
}

# run_load TAG ARGS...: loadgen on the client core with CPU accounting of every server process.
# Sets LAST (the result line) and LAST_CPU_US (server CPU µs per handshake).
run_load() {
    local tag=$1 main extra m0 m1 e0 e1 x0 x1 hs mach0 mach1
    shift
    main=$(bench_tree $SERVER_PID)
    extra=$(bench_tree $SERVER_EXTRA_PIDS)
    # shellcheck disable=SC2086
    m0=$(bench_cpu_ticks $main)
    # shellcheck disable=SC2086
    e0=$(bench_cpu_ticks $extra)
    # shellcheck disable=SC2086
    x0=$(bench_ctxsw $main $extra)
    mach0=$(bench_machine)
    LAST=$(taskset -c "$CCPU" "$LOADGEN" --port "$SERVER_PORT" --sni localhost --ciphersuites "$SUITE" "$@" | grep '^result' || true)
    # shellcheck disable=SC2086
    m1=$(bench_cpu_ticks $main)
    # shellcheck disable=SC2086
    e1=$(bench_cpu_ticks $extra)
    # shellcheck disable=SC2086
    x1=$(bench_ctxsw $main $extra)
    mach1=$(bench_machine)
    hs=$(bench_field "$LAST" handshakes)
    if [ -z "$LAST" ] || [ "${hs:-0}" -eq 0 ]; then
        LAST_CPU_US=
        bench_log "$tag: no handshake completed ($LAST)"
        return 1
    fi
    LAST_CPU_TOTAL_US=$(awk -v d=$((m1 - m0 + e1 - e0)) -v t="$BENCH_CLK_TCK" 'BEGIN { printf "%.0f", d * 1e6 / t }')
    LAST_CPU_US=$(awk -v d=$((m1 - m0 + e1 - e0)) -v t="$BENCH_CLK_TCK" -v n="$hs" 'BEGIN { printf "%.1f", d * 1e6 / t / n }')
    # The split: the process that terminates TLS (nginx, keyless-frontend) and the signer (keyless only).
    LAST_CPU_MAIN_US=$(awk -v d=$((m1 - m0)) -v t="$BENCH_CLK_TCK" -v n="$hs" 'BEGIN { printf "%.1f", d * 1e6 / t / n }')
    LAST_CPU_EXTRA_US=$(awk -v d=$((e1 - e0)) -v t="$BENCH_CLK_TCK" -v n="$hs" 'BEGIN { printf "%.1f", d * 1e6 / t / n }')
    LAST_CS=$(awk -v d=$((x1 - x0)) -v n="$hs" 'BEGIN { printf "%.2f", d / n }')
    # The machine less the client (loadgen's own rusage): the server processes plus whatever the
    # kernel's threads did for them, a cross-check on the per-process figures above.
    LAST_MACH_CPU_US=$(awk -v a="$mach0" -v b="$mach1" -v c="$(bench_field "$LAST" client_cpu_us)" -v t="$BENCH_CLK_TCK" -v n="$hs" \
        'BEGIN { split(a, x, " "); split(b, y, " "); if (c == "") print ""; else printf "%.1f", ((y[1] - x[1]) * 1e6 / t - c) / n }')
    LAST_MACH_CS=$(awk -v a="$mach0" -v b="$mach1" -v c="$(bench_field "$LAST" client_ctxsw)" -v n="$hs" \
        'BEGIN { split(a, x, " "); split(b, y, " "); if (c == "") print ""; else printf "%.2f", ((y[2] - x[2]) - c) / n }')
    bench_log "$tag: $LAST server_cpu_us_per_hs=$LAST_CPU_US (terminator $LAST_CPU_MAIN_US, signer $LAST_CPU_EXTRA_US) context_switches_per_hs=$LAST_CS machine_less_client: cpu_us_per_hs=$LAST_MACH_CPU_US context_switches_per_hs=$LAST_MACH_CS"
}

# profile_server TAG: with BENCH_PROFILE=1, one more saturation run under `perf record` (where
# the CPU goes, by library) for every server process (context switches per handshake are in
# every run's figures, from /proc). Needs perf; a guest may only offer cpu-clock.
profile_server() {
    local tag=$1 p name out perf_pids=()
    command -v perf >/dev/null 2>&1 || { bench_log "profile: no perf"; return 0; }
    out=$WORK/profile-${tag//\//-}
    mkdir -p "$out"
    for p in $(server_pids); do
        name=$(cat "/proc/$p/comm" 2>/dev/null || echo "$p")
        perf record -e cpu-clock -F 2000 -g -o "$out/perf-$name-$p.data" -p "$p" -- sleep "$HS_DUR" >/dev/null 2>&1 &
        perf_pids+=($!)
    done
    sleep 0.3
    run_load "$tag profiled" --concurrency "$CONC" --duration "$HS_DUR" || true
    # Only perf's own processes: the servers are background jobs of this shell too.
    for p in "${perf_pids[@]}"; do wait "$p" || true; done
    for p in $(server_pids); do
        name=$(cat "/proc/$p/comm" 2>/dev/null || echo "$p")
        [ -f "$out/perf-$name-$p.data" ] || continue
        perf report -i "$out/perf-$name-$p.data" --no-children --sort dso --stdio 2>/dev/null |
            awk -v who="$name[$p]" '/^ +[0-9.]+%/ { printf "profile %s: %s %s\n", who, $1, $2 }' | head -n 6 |
            tee -a "$WORK/profile.txt" >&2
    done
}

put() { R["$1"]=$2; }
get() { echo "${R[$1]:-}"; }

# add KEY VALUE: one more round's value of a figure (the median is taken after the rounds).
add() { R["$1"]="${R[$1]:+${R[$1]} }$2"; }
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------- handshakes
# Rounds: every server of every key once per round, in turn, so that a slow minute of this
# shared machine hits all of them alike; the median round of each figure is reported, and
# the per-round CPU figures are listed under the table.
declare -A HALF # key -> the open-loop rate of the latency rows (set in round 1)
declare -A SAT1 # key/server -> saturation rate in round 1
# half_rate KEY: the rate of the latency rows (issue 15): half of nginx's (key file)
# saturation for ECDSA; for RSA, where the servers differ most, half of the slowest server's,
# a rate every server can sustain. Falls back to the slowest server when nginx did not run.
half_rate() {
    local key=$1 srv r min=
    for srv in $SERVERS; do
        r=${SAT1[$key/$srv]:-}
        [ -n "$r" ] || continue
        if [ -z "$min" ] || awk -v a="$r" -v b="$min" 'BEGIN { exit !(a < b) }'; then min=$r; fi
    done
    r=${SAT1[$key/nginx-file]:-}
    case $key in rsa-*) r=$min ;; esac
    [ -n "$r" ] || r=$min
    [ -n "$r" ] && awk -v r="$r" 'BEGIN { printf "%d", r / 2 }'
}
section handshakes || ROUNDS=0
for round in $(seq "$ROUNDS"); do
    for key in $KEYS; do
        # Saturation first, every server; then the latency rows at one rate for all of them.
        for srv in $SERVERS; do
            if ! start_server "$srv" "$key"; then
                stop_server
                continue
            fi
            run_load "$srv/$key warm-up" --concurrency "$CONC" --duration 1 >/dev/null 2>&1 || true
            if run_load "$srv/$key saturation (round $round)" --concurrency "$CONC" --duration "$HS_DUR"; then
                add "$srv/$key/hs_per_s" "$(bench_field "$LAST" hs_per_s)"
                add "$srv/$key/cpu_us" "$LAST_CPU_US"
                add "$srv/$key/cpu_us_terminator" "$LAST_CPU_MAIN_US"
                add "$srv/$key/cpu_us_signer" "$LAST_CPU_EXTRA_US"
                add "$srv/$key/ctxsw_per_hs" "$LAST_CS"
                add "$srv/$key/mach_cpu_us" "$LAST_MACH_CPU_US"
                add "$srv/$key/mach_ctxsw_per_hs" "$LAST_MACH_CS"
                add "$srv/$key/sat_p99" "$(bench_field "$LAST" p99_ms)"
                add "$srv/$key/errors" "$(bench_field "$LAST" errors)"
                add "$srv/$key/tickets" "$(bench_field "$LAST" tickets)"
                [ "$round" = 1 ] && SAT1[$key/$srv]=$(bench_field "$LAST" hs_per_s)
                if [ "$round" = 1 ] && [ "${BENCH_PROFILE:-0}" = 1 ]; then profile_server "$srv/$key"; fi
                # Handshake plus one small request proxied to the backend: nginx then opens a backend
                # connection too, as the frontend does.
                if [ "$key" = "${KEYS%% *}" ] && [ "$srv" != nginx-pkcs11 ] && [ "$srv" != keyless-nosync ] &&
                    run_load "$srv/$key with a request (round $round)" --concurrency "$CONC" --duration "$HS_DUR" --request /; then
                    add "$srv/$key/req_cpu_us" "$LAST_CPU_US"
                    add "$srv/$key/req_per_s" "$(bench_field "$LAST" hs_per_s)"
                    add "$srv/$key/req_errors" "$(bench_field "$LAST" errors)"
                fi
            fi
            stop_server
        done
        [ -n "${HALF[$key]:-}" ] || HALF[$key]=$(half_rate "$key")
        [ -n "${HALF[$key]:-}" ] || continue
        for srv in $SERVERS; do
            if ! start_server "$srv" "$key"; then
                stop_server
                continue
            fi
            run_load "$srv/$key warm-up" --concurrency "$CONC" --duration 1 --rate "${HALF[$key]}" >/dev/null 2>&1 || true
            if run_load "$srv/$key half-rate (round $round)" --concurrency "$CONC" --duration "$HS_DUR" --rate "${HALF[$key]}"; then
                put "$srv/$key/half_rate" "${HALF[$key]}"
                add "$srv/$key/half_p50" "$(bench_field "$LAST" p50_ms)"
                add "$srv/$key/half_p99" "$(bench_field "$LAST" p99_ms)"
                add "$srv/$key/half_cpu_us" "$LAST_CPU_US"
                add "$srv/$key/half_ctxsw_per_hs" "$LAST_CS"
                add "$srv/$key/half_errors" "$(bench_field "$LAST" errors)"
            fi
            stop_server
        done
    done
done
declare -A ROUND_CPU # the per-round server CPU µs/handshake, for the table
for k in "${!R[@]}"; do
    case $k in */cpu_us) ROUND_CPU[$k]=${R[$k]} ;; esac
    # shellcheck disable=SC2086
    R[$k]=$(median ${R[$k]})
done

# ---------------------------------------------------------------- resumed handshakes (issue 11)
# nginx with session tickets on (its own ticket keys) against keyless with ticket keys derived
# in the HSM, first key only, one small request per connection (TLS 1.3 tickets arrive after
# the handshake: a client gets them by reading). --resume 100: every connection after the first
# offers the newest ticket, so the figure is the server CPU of a resumed handshake plus its
# request; --resume 80: 80 of every 100 connections are returning clients, and the share of
# handshakes that needed the HSM is (handshakes - resumed) / handshakes (keyless: also the sign
# records of its audit log).
BENCH_TICKETS=on
RKEY=${KEYS%% *}
for srv in nginx-file keyless; do
    section resumed || break
    case " $SERVERS " in *" $srv "*) ;; *) continue ;; esac
    start_server "$srv" "$RKEY" || { stop_server; continue; }
    run_load "$srv/$RKEY resumed warm-up" --concurrency "$CONC" --duration 1 --request / --resume 100 >/dev/null 2>&1 || true
    if run_load "$srv/$RKEY resumed" --concurrency "$CONC" --duration "$HS_DUR" --request / --resume 100; then
        put "$srv/resumed/cpu_us" "$LAST_CPU_US"
        put "$srv/resumed/per_s" "$(bench_field "$LAST" hs_per_s)"
        put "$srv/resumed/resumed_pct" "$(awk -v r="$(bench_field "$LAST" resumed)" -v h="$(bench_field "$LAST" handshakes)" 'BEGIN { printf "%.1f", h ? 100 * r / h : 0 }')"
        put "$srv/resumed/errors" "$(bench_field "$LAST" errors)"
    fi
    audit=$WORK/keyless-$RKEY-group/audit.jsonl
    s0=$(grep -c '"op":"sign"' "$audit" 2>/dev/null || true)
    if run_load "$srv/$RKEY 80% returning" --concurrency "$CONC" --duration "$HS_DUR" --request / --resume 80; then
        put "$srv/mix80/cpu_us" "$LAST_CPU_US"
        put "$srv/mix80/hsm_pct" "$(awk -v r="$(bench_field "$LAST" resumed)" -v h="$(bench_field "$LAST" handshakes)" 'BEGIN { printf "%.1f", h ? 100 * (h - r) / h : 0 }')"
        if [ "$srv" = keyless ]; then
            s1=$(grep -c '"op":"sign"' "$audit" 2>/dev/null || true)
            put keyless/mix80/signatures "$((${s1:-0} - ${s0:-0}))"
            put keyless/mix80/handshakes "$(bench_field "$LAST" handshakes)"
        fi
    fi
    stop_server
done
BENCH_TICKETS=off

# ---------------------------------------------------------------- idle connections (RSS)
IDLE_LIMIT=$(ulimit -Hn)
# The frontend holds two descriptors per proxied connection (client + backend) under the same
# hard limit as everything else here, so N is capped at about half of it, for both servers.
if ((IDLE_LIMIT < 2 * IDLE_N + 400)); then
    bench_log "idle: open-file hard limit $IDLE_LIMIT < 2 x $IDLE_N + 400; using $(((IDLE_LIMIT - 400) / 2))"
    IDLE_N=$(((IDLE_LIMIT - 400) / 2))
fi
put idle/n "$IDLE_N"
for srv in nginx-file keyless; do
    section idle || break
    case " $SERVERS " in *" $srv "*) ;; *) continue ;; esac
    start_server "$srv" ecdsa-p256 || { stop_server; continue; }
    # One request-free handshake first so that lazily allocated state exists in the baseline too.
    run_load "$srv idle warm-up" --concurrency 4 --count 200 --duration 10 >/dev/null 2>&1 || true
    sleep 0.5
    base=$(bench_rss_kb $(server_pids))
    out=$WORK/idle-$srv.out
    (ulimit -n "$IDLE_LIMIT"; exec taskset -c "$CCPU" "$LOADGEN" --port "$SERVER_PORT" --sni localhost \
        --ciphersuites "$SUITE" --idle "$IDLE_N" --concurrency 64 --duration 120 --hold "$HOLD") >"$out" 2>&1 &
    lg=$!
    for i in $(seq 1300); do grep -q '^READY' "$out" && break; kill -0 "$lg" 2>/dev/null || break; sleep 0.1; done
    held=$(sed -n 's/^READY established=\([0-9]*\).*/\1/p' "$out")
    sleep 0.5
    full=$(bench_rss_kb $(server_pids))
    wait "$lg" || true
    if [ -n "$held" ] && [ "$held" -ge $((IDLE_N * 9 / 10)) ]; then
        put "$srv/idle/held" "$held"
        put "$srv/idle/base_kb" "$base"
        put "$srv/idle/full_kb" "$full"
        put "$srv/idle/kib_per_conn" "$(awk -v a="$base" -v b="$full" -v n="$held" 'BEGIN { printf "%.1f", (b - a) / n }')"
        bench_log "$srv idle: $held connections, RSS $base -> $full kB"
    else
        bench_log "$srv idle: only ${held:-0} of $IDLE_N connections held, no figure ($(tail -n 2 "$out" | tr '\n' ' '))"
    fi
    stop_server
done

# ---------------------------------------------------------------- bulk throughput
for srv in nginx-file keyless; do
    section bulk || break
    case " $SERVERS " in *" $srv "*) ;; *) continue ;; esac
    start_server "$srv" ecdsa-p256 || { stop_server; continue; }
    if run_load "$srv bulk" --concurrency 4 --duration "$DUR" --request /bulk.bin --conn-timeout 30; then
        put "$srv/bulk/mbytes_per_s" "$(bench_field "$LAST" mbytes_per_s)"
        put "$srv/bulk/completed" "$(bench_field "$LAST" completed)"
        put "$srv/bulk/errors" "$(bench_field "$LAST" errors)"
        put "$srv/bulk/cpu_us_per_mb" "$(awk -v c="$LAST_CPU_TOTAL_US" -v b="$(bench_field "$LAST" bytes_in)" 'BEGIN { if (b > 0) printf "%.0f", c / (b / 1e6) }')"
    fi
    stop_server
done

# ---------------------------------------------------------------- floors
FLOOR_DUR=$(awk -v d="$DUR" 'BEGIN { printf "%d", d / 2 < 2 ? 2 : d / 2 }')
for key in $KEYS; do
    section floors || break
    line=$(taskset -c "$SCPU" "$BUILD/tests/bench/csign_floor" "$BENCH_SOFTHSM_MODULE" keyless "$key" "$PIN_FILE" "$FLOOR_DUR" || true)
    bench_log "C_Sign floor: $line"
    put "floor/$key/csign_cpu_us" "$(bench_field "$line" cpu_us_per_sig)"
done
if section floors && [ -x "$BUILD/tests/bench/tls_bench" ]; then
    # Our engine's own costs: x25519 through libsodium, one handshake without the signature
    # (RFC 8448 replay) and record sealing, on the server core.
    KL_TESTDATA=${KL_TESTDATA:-$SRC/tests/vectors} taskset -c "$SCPU" "$BUILD/tests/bench/tls_bench" 2 \
        >"$WORK/tls_bench.out" 2>&1 || true
    bench_log "tls_bench: $(tr '\n' ';' <"$WORK/tls_bench.out")"
    put floor/tls_x25519_us "$(awk '$1 == "x25519_floor" { print $2 }' "$WORK/tls_bench.out")"
    put floor/tls_handshake_us "$(awk '$1 == "handshake_cpu" { print $2 }' "$WORK/tls_bench.out")"
    put floor/tls_seal_aes128_mbs "$(awk '$1 == "record_seal" && $2 == "TLS_AES_128_GCM_SHA256" { print $3 }' "$WORK/tls_bench.out")"
fi
# x25519 keygen + shared secret (the server's ECDHE work per handshake), from OpenSSL.
x=
section floors && x=$(taskset -c "$SCPU" openssl speed -seconds 2 ecdhx25519 2>/dev/null | awk '/ecdh \(X25519\)/ {print $NF}' | tail -n 1)
if [ -n "$x" ]; then
    # openssl speed times one derive (a variable-base scalar multiplication); the server's key
    # generation is one more, so the floor is counted as two derives.
    put floor/x25519_us "$(awk -v s="$x" 'BEGIN { printf "%.1f", 2 * 1e6 / s }')"
fi
if section signer && [ -x "$BUILD/tests/bench/signer_bench" ]; then
    # The signer's RPC-vs-raw benchmark (its own token), one HSM session on each side like the
    # signer above, with the signer's audit defaults (group commit, 1 ms) and 64 requests in
    # flight. Not pinned: the question is whether the RPC pipeline keeps the one session busy
    # (as it would with an HSM doing the signing), so the signer's other threads and the
    # client may use the second core; the raw path is one thread calling C_Sign.
    KL_BUILD_DIR=$BUILD KL_SOURCE_DIR=$SRC "$BUILD/tests/bench/signer_bench" --threads 1 --window 64 \
        --audit-group-ms 1 --seconds 3 >"$WORK/signer_bench.out" 2>&1 || true
    bench_log "signer_bench: $(grep -E 'RPC/raw' "$WORK/signer_bench.out" | tr '\n' ';')"
    for key in $KEYS; do
        put "floor/$key/rpc_raw_pct" "$(sed -n "s/^| $key *| RPC\/raw throughput *\([0-9.]*\)%.*/\1/p" "$WORK/signer_bench.out")"
    done
    # One signature with one request in flight (issue 15): the signer's p50 against raw C_Sign's
    # p50 + one durable audit record's p50 on this file system (audit_sync_bench, the zero-tail
    # pattern the audit log uses) + 100 µs. The same token, the same minutes.
    if [ -x "$BUILD/tests/bench/audit_sync_bench" ]; then
        taskset -c "$SCPU" "$BUILD/tests/bench/audit_sync_bench" --dir "$WORK" --n 1000 --rounds 3 \
            >"$WORK/audit_sync_bench.out" 2>&1 || true
        sync_p50=$(awk -F'|' '$2 ~ /^ *zeroed\+ahead *$/ { gsub(/ /, "", $3); print $3 }' "$WORK/audit_sync_bench.out")
        bench_log "audit_sync_bench: $(grep -E '^\| (append|zeroed)' "$WORK/audit_sync_bench.out" | tr '\n' ';')"
        for key in $KEYS; do
            # Its own run per key, one request in flight only: inside the run above, the other
            # key's window-64 phases between the rounds moved ECDSA's 1-in-flight p50 by
            # 70-100 µs (319.5 against 245.4 µs alone, same minutes).
            KL_BUILD_DIR=$BUILD KL_SOURCE_DIR=$SRC "$BUILD/tests/bench/signer_bench" --threads 1 --window 1 \
                --audit-group-ms 1 --seconds 3 --keys "$key" >"$WORK/signer_bench_one_$key.out" 2>&1 || true
            raw=$(awk -F'|' -v k="$key" '$2 ~ k && $3 ~ /raw C_Sign/ { gsub(/ /, "", $5); print $5 }' "$WORK/signer_bench_one_$key.out")
            one=$(awk -F'|' -v k="$key" '$2 ~ k && $3 ~ /RPC, 1 in flight/ { gsub(/ /, "", $5); print $5; exit }' "$WORK/signer_bench_one_$key.out")
            [ -n "$raw" ] && [ -n "$one" ] && [ -n "$sync_p50" ] || continue
            put "floor/$key/one_sig_p50_us" "$one"
            put "floor/$key/one_sig_bound_us" "$(awk -v a="$raw" -v b="$sync_p50" 'BEGIN { printf "%.1f", a + b + 100 }')"
            put "floor/$key/raw_p50_us" "$raw"
        done
        put floor/fdatasync_p50_us "$sync_p50"
    fi
fi

# ---------------------------------------------------------------- slow token (issue 15)
# The signer with its token behind `p11-kit server` (the stand-in for a network HSM: every
# C_Sign crosses a socket and another process), ECDSA P-256, for each session count: raw
# C_Sign through p11-kit-client.so on S sessions from S threads, and the signer with
# workers = S fed by S connections of 64 requests, both with [hsm] module_instances = S (one
# p11-kit-client.so instance, so one server connection, per session: the server serves each
# connection one request at a time). The target is on the RPC throughput of 4 sessions against 1.
if section remote && [ -x "$BUILD/tests/bench/signer_bench" ] && [ -e /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so ]; then
    KL_BUILD_DIR=$BUILD KL_SOURCE_DIR=$SRC timeout 600 "$BUILD/tests/bench/signer_bench" --keys ecdsa-p256 \
        --remote "$(echo "$REMOTE_SESSIONS" | tr ' ' ',')" --window 64 --seconds 3 --rounds 1 \
        >"$WORK/signer_remote.out" 2>&1 || true
    bench_log "signer_bench --remote: $(grep -E '^\| [0-9]' "$WORK/signer_remote.out" | tr '\n' ';')"
    for n in $REMOTE_SESSIONS; do
        put "remote/$n/raw_per_s" "$(awk -F'|' -v n="$n" '$2 + 0 == n && $2 ~ /[0-9]/ { gsub(/ /, "", $3); print $3 }' "$WORK/signer_remote.out")"
        put "remote/$n/rpc_per_s" "$(awk -F'|' -v n="$n" '$2 + 0 == n && $2 ~ /[0-9]/ { gsub(/ /, "", $5); print $5 }' "$WORK/signer_remote.out")"
    done
    # Second pass: a token that takes REMOTE_DELAY_US per signature. Without it, on a small
    # machine the token's own CPU (SoftHSM in the server's children) shares the cores with
    # the signer and the client, and the rows show the CPU limit, not the connections'.
    if [ "$REMOTE_DELAY_US" -gt 0 ]; then
        KL_BUILD_DIR=$BUILD KL_SOURCE_DIR=$SRC timeout 600 "$BUILD/tests/bench/signer_bench" --keys ecdsa-p256 \
            --remote "$(echo "$REMOTE_SESSIONS" | tr ' ' ',')" --token-delay-us "$REMOTE_DELAY_US" --window 64 \
            --seconds 3 --rounds 1 >"$WORK/signer_remote_delay.out" 2>&1 || true
        bench_log "signer_bench --remote --token-delay-us $REMOTE_DELAY_US: $(grep -E '^\| [0-9]' "$WORK/signer_remote_delay.out" | tr '\n' ';')"
        for n in $REMOTE_SESSIONS; do
            put "remote_delay/$n/raw_per_s" "$(awk -F'|' -v n="$n" '$2 + 0 == n && $2 ~ /[0-9]/ { gsub(/ /, "", $3); print $3 }' "$WORK/signer_remote_delay.out")"
            put "remote_delay/$n/rpc_per_s" "$(awk -F'|' -v n="$n" '$2 + 0 == n && $2 ~ /[0-9]/ { gsub(/ /, "", $5); print $5 }' "$WORK/signer_remote_delay.out")"
        done
    fi
fi

# ---------------------------------------------------------------- the table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
met() { # met VALUE OP LIMIT
    awk -v r="$1" -v op="$2" -v l="$3" 'BEGIN { if (l == "-") print "-"; else if (r == "-" || r == "") print "n/a"; else if ((op == "<=" && r + 0 <= l + 0) || (op == ">=" && r + 0 >= l + 0)) print "yes"; else print "NO" }'
}
row() { # row FIGURE OURS PEER OP LIMIT: the target is on the ratio ours/peer
    local r
    r=$(ratio "$2" "$3")
    printf '| %s | %s | %s | %s | %s %s | %s |\n' "$1" "${2:--}" "${3:--}" "$r" "$4" "$5" "$(met "$r" "$4" "$5")"
}
row_abs() { # row_abs FIGURE OURS PEER OP LIMIT: the target is on ours itself
    printf '| %s | %s | %s | %s | %s %s (ours) | %s |\n' "$1" "${2:--}" "${3:--}" "$(ratio "$2" "$3")" "$4" "$5" "$(met "$2" "$4" "$5")"
}

{
    echo
    echo "keyless benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "handshake figures: median of $ROUNDS rounds of ${HS_DUR}s (servers interleaved); bulk ${DUR}s; concurrency $CONC, servers on core $SCPU, load generator on core $CCPU, $SUITE"
    echo
    echo "| figure | ours | peer | ratio | target | met? |"
    echo "|---|---|---|---|---|---|"
    for key in $KEYS; do
        row "$key: server CPU µs/handshake vs nginx key file" "$(get keyless/$key/cpu_us)" "$(get nginx-file/$key/cpu_us)" "<=" \
            "$([ "$key" = ecdsa-p256 ] && echo 0.95 || echo '-')"
        row "$key: server CPU µs/handshake vs nginx pkcs11 engine" "$(get keyless/$key/cpu_us)" "$(get nginx-pkcs11/$key/cpu_us)" "<=" \
            "$([ "$key" = ecdsa-p256 ] && echo 0.70 || echo 1.00)"
        row "$key: handshakes/s at concurrency $CONC vs nginx key file" "$(get keyless/$key/hs_per_s)" "$(get nginx-file/$key/hs_per_s)" ">=" "-"
        if [ -n "$(get nginx-file/$key/req_cpu_us)$(get keyless/$key/req_cpu_us)" ]; then
            row "$key: server CPU µs per connection with one proxied request vs nginx key file" "$(get keyless/$key/req_cpu_us)" "$(get nginx-file/$key/req_cpu_us)" "<=" "-"
        fi
        row_abs "$key: context switches per handshake at saturation vs nginx key file" "$(get keyless/$key/ctxsw_per_hs)" "$(get nginx-file/$key/ctxsw_per_hs)" "<=" 1.5
        # Cross-checks from /proc/stat: the whole machine less the client, so that work the
        # kernel does in its own threads for a server (the audit log's asynchronous fdatasync
        # runs in a kworker) is counted for that server. No target of their own.
        row "$key: machine less client: CPU µs/handshake vs nginx key file" "$(get keyless/$key/mach_cpu_us)" "$(get nginx-file/$key/mach_cpu_us)" "<=" "-"
        row "$key: machine less client: context switches/handshake vs nginx key file" "$(get keyless/$key/mach_ctxsw_per_hs)" "$(get nginx-file/$key/mach_ctxsw_per_hs)" "<=" "-"
        row "$key: p99 ms at $(get keyless/$key/half_rate) hs/s vs nginx key file" "$(get keyless/$key/half_p99)" "$(get nginx-file/$key/half_p99)" "<=" 1.20
        if [ -n "$(get floor/$key/one_sig_p50_us)" ]; then
            row_abs "$key: one signature, 1 in flight, p50 µs vs raw C_Sign p50 + one fdatasync p50 + 100 µs" \
                "$(get floor/$key/one_sig_p50_us)" "$(get floor/$key/one_sig_bound_us)" "<=" "$(get floor/$key/one_sig_bound_us)"
        fi
        if [ -n "$(get floor/$key/rpc_raw_pct)" ]; then
            row_abs "$key: signer RPC throughput, % of raw C_Sign, 1 session (signer_bench)" "$(get floor/$key/rpc_raw_pct)" "" ">=" 90
        fi
        row "$key: raw C_Sign CPU µs share of our CPU/handshake" "$(get floor/$key/csign_cpu_us)" "$(get keyless/$key/cpu_us)" ">=" \
            "$([ "$key" = rsa-2048 ] && echo 0.70 || echo '-')"
        if [ -n "$(get keyless-nosync/$key/cpu_us)" ]; then
            # The same figures without the audit log's fdatasync (audit_sync = none): what
            # durability costs, next to the same peers. Not the default configuration.
            row "$key: audit_sync=none: server CPU µs/handshake vs nginx key file" "$(get keyless-nosync/$key/cpu_us)" "$(get nginx-file/$key/cpu_us)" "<=" "-"
            row "$key: audit_sync=none: server CPU µs/handshake vs nginx pkcs11 engine" "$(get keyless-nosync/$key/cpu_us)" "$(get nginx-pkcs11/$key/cpu_us)" "<=" "-"
            row "$key: audit_sync=none: p99 ms at $(get keyless-nosync/$key/half_rate) hs/s vs nginx key file" "$(get keyless-nosync/$key/half_p99)" "$(get nginx-file/$key/half_p99)" "<=" "-"
        fi
    done
    if [ -n "$(get keyless/resumed/cpu_us)$(get nginx-file/resumed/cpu_us)" ]; then
        row "$RKEY: resumed handshake + request, server CPU µs vs nginx with tickets" "$(get keyless/resumed/cpu_us)" "$(get nginx-file/resumed/cpu_us)" "<=" 0.80
        row_abs "$RKEY: 80% returning clients: % of handshakes that needed the HSM vs nginx (needed the key)" "$(get keyless/mix80/hsm_pct)" "$(get nginx-file/mix80/hsm_pct)" "<=" 25
    fi
    row_abs "RSS KiB per idle connection ($(get idle/n) conns) vs nginx" "$(get keyless/idle/kib_per_conn)" "$(get nginx-file/idle/kib_per_conn)" "<=" 16
    row "bulk MB/s (16 KiB records) vs nginx proxy" "$(get keyless/bulk/mbytes_per_s)" "$(get nginx-file/bulk/mbytes_per_s)" ">=" 0.90
    # Server CPU per byte is the fairer bulk figure when the client core is the limit.
    row "bulk server CPU µs per MB vs nginx proxy" "$(get keyless/bulk/cpu_us_per_mb)" "$(get nginx-file/bulk/cpu_us_per_mb)" "<=" "-"
    # Issue 15: with a slow token the signer must scale with sessions (workers).
    r1=$(get remote/1/rpc_per_s)
    for n in $REMOTE_SESSIONS; do
        [ "$n" != 1 ] && [ -n "$r1" ] && [ -n "$(get remote/$n/rpc_per_s)" ] || continue
        row "ecdsa-p256 through p11-kit server: signer sig/s, $n sessions vs 1" "$(get remote/$n/rpc_per_s)" "$r1" ">=" "$([ "$n" = 4 ] && echo 3 || echo -)"
    done
    r1=$(get remote_delay/1/rpc_per_s)
    for n in $REMOTE_SESSIONS; do
        [ "$n" != 1 ] && [ -n "$r1" ] && [ -n "$(get remote_delay/$n/rpc_per_s)" ] || continue
        row "ecdsa-p256 through p11-kit server, token $REMOTE_DELAY_US µs/C_Sign: signer sig/s, $n sessions vs 1" "$(get remote_delay/$n/rpc_per_s)" "$r1" ">=" "$([ "$n" = 4 ] && echo 3 || echo -)"
    done
    echo
    echo "| peer/figure | nginx key file | nginx pkcs11 engine | keyless | keyless, audit_sync=none |"
    echo "|---|---|---|---|---|"
    for key in $KEYS; do
        for f in cpu_us cpu_us_terminator cpu_us_signer ctxsw_per_hs mach_cpu_us mach_ctxsw_per_hs hs_per_s sat_p99 half_rate half_p50 half_p99 half_cpu_us half_ctxsw_per_hs errors tickets req_cpu_us req_per_s req_errors; do
            [ -n "$(get nginx-file/$key/$f)$(get nginx-pkcs11/$key/$f)$(get keyless/$key/$f)$(get keyless-nosync/$key/$f)" ] || continue
            printf '| %s %s | %s | %s | %s | %s |\n' "$key" "$f" "$(get nginx-file/$key/$f)" "$(get nginx-pkcs11/$key/$f)" "$(get keyless/$key/$f)" "$(get keyless-nosync/$key/$f)"
        done
        printf '| %s raw C_Sign CPU µs | %s | | |\n' "$key" "$(get floor/$key/csign_cpu_us)"
    done
    for f in resumed/cpu_us resumed/per_s resumed/resumed_pct resumed/errors mix80/cpu_us mix80/hsm_pct; do
        [ -n "$(get nginx-file/$f)$(get keyless/$f)" ] || continue
        printf '| %s %s | %s | | %s |\n' "$RKEY" "$f" "$(get nginx-file/$f)" "$(get keyless/$f)"
    done
    [ -z "$(get keyless/mix80/signatures)" ] ||
        printf '| %s mix80 sign records in the audit log / handshakes | | | %s / %s |\n' "$RKEY" "$(get keyless/mix80/signatures)" "$(get keyless/mix80/handshakes)"
    printf '| idle KiB/conn (%s conns) | %s | | %s |\n' "$(get idle/n)" "$(get nginx-file/idle/kib_per_conn)" "$(get keyless/idle/kib_per_conn)"
    printf '| bulk MB/s | %s | | %s |\n' "$(get nginx-file/bulk/mbytes_per_s)" "$(get keyless/bulk/mbytes_per_s)"
    printf '| bulk server CPU µs/MB | %s | | %s |\n' "$(get nginx-file/bulk/cpu_us_per_mb)" "$(get keyless/bulk/cpu_us_per_mb)"
    for n in $REMOTE_SESSIONS; do
        [ -n "$(get remote/$n/rpc_per_s)$(get remote/$n/raw_per_s)" ] || continue
        printf '| ecdsa-p256 through p11-kit server, %s session(s): raw C_Sign sig/s, signer sig/s | %s | | %s |\n' "$n" "$(get remote/$n/raw_per_s)" "$(get remote/$n/rpc_per_s)"
    done
    for n in $REMOTE_SESSIONS; do
        [ -n "$(get remote_delay/$n/rpc_per_s)$(get remote_delay/$n/raw_per_s)" ] || continue
        printf '| ecdsa-p256 through p11-kit server, token %s µs/C_Sign, %s session(s): raw C_Sign sig/s, signer sig/s | %s | | %s |\n' "$REMOTE_DELAY_US" "$n" "$(get remote_delay/$n/raw_per_s)" "$(get remote_delay/$n/rpc_per_s)"
    done
    for key in $KEYS; do
        printf '| %s cpu_us, each round | %s | %s | %s | %s |\n' "$key" "${ROUND_CPU[nginx-file/$key/cpu_us]:-}" "${ROUND_CPU[nginx-pkcs11/$key/cpu_us]:-}" "${ROUND_CPU[keyless/$key/cpu_us]:-}" "${ROUND_CPU[keyless-nosync/$key/cpu_us]:-}"
    done
    printf '| x25519 keygen+derive µs (openssl speed, 2 derives) | %s | | |\n' "$(get floor/x25519_us)"
    printf '| x25519 keygen+derive µs (tls_bench, libsodium as the frontend uses it) | | | %s |\n' "$(get floor/tls_x25519_us)"
    printf '| engine handshake CPU µs without signature (tls_bench, RFC 8448 replay) | | | %s |\n' "$(get floor/tls_handshake_us)"
    printf '| record seal AES-128-GCM MB/s per core (tls_bench) | | | %s |\n' "$(get floor/tls_seal_aes128_mbs)"
    echo
    echo "µs/handshake = (utime+stime of every server process, /proc/PID/stat) / handshakes; KiB/conn = RSS delta / connections."
    echo "A target marked (ours) applies to our figure itself, every other one to the ratio ours/peer; '-': no target."
} | tee "$WORK/table.md"

if [ -f "$WORK/profile.txt" ]; then
    echo
    echo "Profile (BENCH_PROFILE=1): CPU samples by library, per server process"
    cat "$WORK/profile.txt"
fi | tee -a "$WORK/table.md"

if [ -n "${BENCH_RESULTS:-}" ]; then
    for k in $(printf '%s\n' "${!R[@]}" | sort); do echo "$k=${R[$k]}"; done >"$BENCH_RESULTS"
    cat "$WORK/table.md" >>"$BENCH_RESULTS"
fi

# A benchmark that measured nothing must not look like a result: every server asked for must
# have produced its handshake figure for every key.
missing=
for key in $KEYS; do
    section handshakes || break # BENCH_SECTIONS without handshakes: none expected
    for srv in $SERVERS; do
        [ -n "$(get "$srv/$key/cpu_us")" ] || missing="$missing $srv/$key"
    done
done
if [ -n "$missing" ]; then
    bench_log "no handshake figure for:$missing"
    exit 1
fi
