# Helpers for run-bench.sh (sourced). Every wait here is bounded.

BENCH_SOFTHSM_MODULE=${BENCH_SOFTHSM_MODULE:-/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so}
BENCH_ENGINE_SO=${BENCH_ENGINE_SO:-/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so}
BENCH_CLK_TCK=$(getconf CLK_TCK)

bench_log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# A free loopback TCP port (the kernel picks; a tiny race with other users is accepted).
bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# bench_wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
bench_wait_port() {
    local port=$1 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# bench_render TEMPLATE OUT NAME=VALUE...: replace every @NAME@ in TEMPLATE.
bench_render() {
    local in=$1 out=$2 kv k v
    shift 2
    cp "$in" "$out"
    for kv in "$@"; do
        k=${kv%%=*}
        v=${kv#*=}
        v=${v//\\/\\\\}
        v=${v//|/\\|}
        v=${v//&/\\&}
        sed -i "s|@${k}@|${v}|g" "$out"
    done
    if grep -q '@[A-Z_]*@' "$out"; then bench_die "unrendered placeholder in $out"; fi
}

# bench_tree PID: PID and all its descendants (nginx master + workers, frontend + workers).
bench_tree() {
    local p c
    for p in "$@"; do
        [ -d "/proc/$p" ] || continue
        echo "$p"
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do bench_tree "$c"; done
    done
}

# bench_cpu_ticks PID...: utime+stime (clock ticks) summed over the processes, all threads.
bench_cpu_ticks() {
    local p total=0 rest
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        rest=$(sed 's/^.*) //' "/proc/$p/stat")
        set -- $rest
        # After "pid (comm) ": field 3 is state; utime and stime are fields 14 and 15 of the file.
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# bench_ctxsw PID...: voluntary + involuntary context switches, summed over every thread.
bench_ctxsw() {
    local p
    for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# bench_machine: the whole machine's busy CPU ticks (user + nice + system + irq + softirq, every
# core; not idle, iowait or steal) and its context switches since boot, from /proc/stat. Work the
# kernel does for a server in its own threads (a kworker's fsync, ksoftirqd) shows here and not
# in the server's /proc/PID figures.
bench_machine() {
    awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 } $1 == "ctxt" { cs = $2 } END { print busy, cs }' /proc/stat
}

# bench_rss_kb PID...: VmRSS summed (kB).
bench_rss_kb() {
    local p total=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# bench_field LINE KEY: the value of key=value in a loadgen result line.
bench_field() {
    local kv
    for kv in $1; do
        case $kv in "$2"=*) echo "${kv#*=}"; return 0 ;; esac
    done
    echo ""
}

# bench_openssl_engine_conf OUT PIN_FILE: OpenSSL config that loads libp11's pkcs11 engine on
# SoftHSM2 and logs in with the PIN (first line of PIN_FILE). OUT must be private (umask 077).
bench_openssl_engine_conf() {
    local pin
    pin=$(head -n 1 "$2" | tr -d '\r\n')
    cat >"$1" <<EOC
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $BENCH_ENGINE_SO
MODULE_PATH = $BENCH_SOFTHSM_MODULE
PIN = $pin
init = 0
EOC
    pin=
}

# bench_file_keys OUTDIR PKIDIR: ECDSA P-256 and RSA-2048 key files with leaf certificates
# (SAN localhost, 127.0.0.1) for nginx's key-file peer. The token's keys cannot be exported
# (CKA_SENSITIVE, not extractable), so these are the same certificate type and size, not
# the same key. They chain to the hsm-setup CA when its signing key is there, else to a
# bench-local intermediate; either way the chain sent has the same shape (leaf +
# intermediate) as the token's.
bench_file_keys() {
    local out=$1 pki=$2 ca_crt ca_key k
    mkdir -p "$out"
    ca_crt= ca_key=
    for k in intermediate.key.pem intermediate.key intermediate-key.pem; do
        if [ -r "$pki/$k" ]; then ca_crt=$pki/intermediate.pem ca_key=$pki/$k; fi
    done
    if [ -z "$ca_key" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$out/ca.key" \
            -out "$out/ca.pem" -subj "/CN=keyless bench intermediate" -days 2 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
        ca_crt=$out/ca.pem ca_key=$out/ca.key
    fi
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$out/leaf.ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ecdsa-p256.key" 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out/rsa-2048.key" 2>/dev/null
    for k in ecdsa-p256 rsa-2048; do
        openssl req -new -key "$out/$k.key" -subj "/CN=localhost" -out "$out/$k.csr" 2>/dev/null
        openssl x509 -req -in "$out/$k.csr" -CA "$ca_crt" -CAkey "$ca_key" -CAcreateserial -days 2 \
            -extfile "$out/leaf.ext" -out "$out/$k.crt.pem" 2>/dev/null
        cat "$out/$k.crt.pem" "$ca_crt" >"$out/$k.chain.pem"
    done
    chmod 600 "$out"/*.key
}

# bench_stop PID: TERM, bounded wait, then KILL.
bench_stop() {
    local p=$1 i
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
