#!/usr/bin/env bash
# tests/deploy/test_package.sh: the Debian package as an operator meets it (issue 14).
#   1. build it from a copy of the tree (dpkg-buildpackage -us -uc -b) and lint it
#      (lintian: no error);
#   2. install it: users, groups, directories with their owners and modes, units
#      installed but neither enabled nor started, nothing running;
#   3. configure a token the way docs/DEPLOYMENT.md says (hsm-setup's SoftHSM2 token copied
#      into the package's token directory, the PIN in /etc/keyless/private, the chain in
#      /etc/keyless/certs);
#   4. run both daemons the way their units would: the unit's ExecStart, as the unit's
#      user with its groups, the RuntimeDirectory made as systemd makes it, $NOTIFY_SOCKET
#      set (READY=1, RELOADING=1 on SIGHUP, STOPPING=1 on SIGTERM);
#   5. a TLS 1.3 handshake with curl through the frontend to a backend; the signer's
#      metrics textfile and audit log (verified with keyless-audit-verify) show it;
#   6. purge: binaries, units and configs gone; the audit log kept (it is evidence), users
#      kept (Debian practice).
# Root only; changes this machine (a package, users, /etc/keyless) and undoes what it can
# at exit (not the users and groups: see cleanup). Takes about 2-3 minutes, most of it the package build: label `once`.
set -eu
. "$KL_SOURCE_DIR/tests/lib/tap.sh"
SRC=$KL_SOURCE_DIR
T=$TAP_TMP
HERE=$SRC/tests/deploy

if [ "$(id -u)" != 0 ]; then
    skip "not root: installing a package needs root"
    done_testing
fi
for tool in git dpkg-buildpackage dh lintian setpriv softhsm2-util curl systemd-sysusers; do
    if ! command -v "$tool" >/dev/null; then
        skip "no $tool (.ci/deps.sh)"
        done_testing
    fi
done
if dpkg-query -W -f='${Status}' keyless 2>/dev/null | grep -q 'ok installed'; then
    skip "a keyless package is already installed on this machine: not touching it"
    done_testing
fi
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() { # up to 20 s
    for _ in $(seq 1 200); do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}
# dpkg ARGS...: dpkg, waiting (up to 5 minutes) while another package manager holds the
# lock: this machine is shared, and apt may be running for someone else.
dpkg_wait() {
    local i rc
    for i in $(seq 1 300); do
        rc=0
        dpkg "$@" >"$T/dpkg.out" 2>&1 || rc=$?
        if [ $rc = 0 ] || ! grep -q 'lock' "$T/dpkg.out"; then
            cat "$T/dpkg.out"
            return $rc
        fi
        sleep 1
    done
    cat "$T/dpkg.out"
    return 1
}
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    dpkg_wait --purge keyless >/dev/null 2>&1 || true
    # What purge keeps by design, made by this test: remove it.
    rm -rf /var/log/keyless /var/lib/keyless /etc/keyless /run/keyless
    # The users and groups stay, as purge leaves them: other tests on this machine (the
    # e2e tests run the daemons as the same two users) may be using them right now.
}
tap_at_exit cleanup
show_logs() {
    for f in build.log lintian.log install.log purge.log setup.log curl.err backend.log signer.log frontend.log notify-signer notify-frontend; do
        [ -f "$T/$f" ] && { echo "# --- $f"; tail -n 30 "$T/$f" | sed 's/^/# /'; }
    done
}
tap_on_failure show_logs

# 1. Build from a copy (dpkg-buildpackage writes into the tree and its parent directory).
mkdir -p "$T/src/keyless"
(cd "$SRC" && git ls-files -co --exclude-standard | grep -Ev '^(build|var)/' | tar -cf - -T -) | tar -xf - -C "$T/src/keyless"
t0=$(date +%s)
rc=0
(cd "$T/src/keyless" && DEB_BUILD_OPTIONS="nocheck parallel=2" timeout 600 dpkg-buildpackage -us -uc -b) >"$T/build.log" 2>&1 || rc=$?
ok $rc "dpkg-buildpackage -us -uc -b ($(($(date +%s) - t0)) s)"
DEB=$(ls "$T"/src/keyless_*_*.deb 2>/dev/null | head -1)
if [ -z "$DEB" ]; then
    bail "no package built"
fi
rc=0
timeout 300 lintian --fail-on error "$T"/src/keyless_*.changes >"$T/lintian.log" 2>&1 || rc=$?
ok $rc "lintian: no error ($(grep -c '^[EW]:' "$T/lintian.log" || true) errors and warnings)"
check "lintian printed no E: line" bash -c '! grep -q "^E:" "$1"' _ "$T/lintian.log"

# 2. Install.
rc=0
dpkg_wait -i "$DEB" >"$T/install.log" 2>&1 || rc=$?
ok $rc "dpkg -i $(basename "$DEB")"
for u in keyless-signer keyless-frontend; do
    check "user $u exists, no login" bash -c 'getent passwd "$1" | grep -q ":/usr/sbin/nologin$"' _ "$u"
done
check "group keyless holds the frontend and the signer" bash -c \
    'getent group keyless | grep -Eq ":(keyless-signer,keyless-frontend|keyless-frontend,keyless-signer)$"'
is "$(stat -c '%a %U %G' /var/log/keyless)" "750 keyless-signer keyless-signer" "/var/log/keyless made by tmpfiles.d"
is "$(stat -c '%a %U %G' /var/lib/keyless/softhsm/tokens)" "700 keyless-signer keyless-signer" "token directory made"
is "$(stat -c '%a %U %G' /etc/keyless/private)" "750 root keyless-signer" "/etc/keyless/private made"
check "units installed" test -f /lib/systemd/system/keyless-signer.service -a -f /lib/systemd/system/keyless-frontend.service
check "units not enabled" bash -c '! ls /etc/systemd/system/*/keyless-* >/dev/null 2>&1'
check "nothing started from the package" bash -c '! pgrep -f "^/usr/sbin/keyless-(signer|frontend)" >/dev/null'

# 3. A token, the PIN and a certificate, where the packaged configs expect them.
rc=0
timeout 300 bash "$SRC/hsm-setup/setup.sh" --dir "$T/hsm" --no-check >"$T/setup.log" 2>&1 || rc=$?
ok $rc "hsm-setup made a SoftHSM2 token"
cp -a "$T/hsm/tokens/." /var/lib/keyless/softhsm/tokens/
chown -R keyless-signer:keyless-signer /var/lib/keyless/softhsm
install -m 0400 -o keyless-signer -g root "$T/hsm/user.pin" /etc/keyless/private/signer.pin
install -m 0640 -o root -g keyless-frontend "$T/hsm/pki/ecdsa-p256.chain.pem" /etc/keyless/certs/web.chain.pem
sed -i -e 's/object=web-ecdsa;/object=ecdsa-p256;/' -e 's/^metrics_interval = .*/metrics_interval = 1/' /etc/keyless/signer.conf
FE_PORT=$(free_port)
M_PORT=$(free_port)
B_PORT=$(free_port)
sed -i -e "s/^listen = .*/listen = 127.0.0.1:$FE_PORT/" -e "s/^metrics = .*/metrics = 127.0.0.1:$M_PORT/" \
    -e "s/^backend = .*/backend = 127.0.0.1:$B_PORT/" -e 's/^workers = .*/workers = 2/' /etc/keyless/frontend.conf

as_unit() { # UNIT: the unit's User/Group/SupplementaryGroups, then its ExecStart words
    local u=/lib/systemd/system/$1.service
    echo --reuid="$(sed -n 's/^User=//p' "$u")" --regid="$(sed -n 's/^Group=//p' "$u")" \
        --groups="$(sed -n 's/^SupplementaryGroups=//p' "$u" | tr ' ' ',')" --inh-caps=-all --no-new-privs \
        -- $(sed -n 's/^ExecStart=//p' "$u")
}
rc=0
setpriv $(as_unit keyless-signer) --check-config >"$T/check-signer.log" 2>&1 || rc=$?
ok $rc "keyless-signer --check-config as keyless-signer on the packaged config"
rc=0
setpriv $(as_unit keyless-frontend) --check-config >"$T/check-frontend.log" 2>&1 || rc=$?
ok $rc "keyless-frontend --check-config as keyless-frontend"

# 4. Run them as the units would.
NS=kl-deploy-notify-$$
timeout 300 python3 "$HERE/notify_listen.py" "$NS-signer" "$T/notify-signer" --timeout 280 &
PIDS+=($!)
timeout 300 python3 "$HERE/notify_listen.py" "$NS-frontend" "$T/notify-frontend" --timeout 280 &
PIDS+=($!)
wait_for test -f "$T/notify-signer" -a -f "$T/notify-frontend" || true
install -d -m 0755 -o keyless-signer -g keyless-signer /run/keyless # RuntimeDirectory=keyless, RuntimeDirectoryMode=0755
NOTIFY_SOCKET=@$NS-signer setpriv $(as_unit keyless-signer) >"$T/signer.log" 2>&1 &
SIGNER_PID=$!
PIDS+=($SIGNER_PID)
check "signer: READY=1 to the service manager" wait_for grep -qx 'READY=1' "$T/notify-signer"
is "$(stat -c '%a %U %G' /run/keyless/signer 2>&1)" "750 keyless-signer keyless" "socket directory: 0750 in group keyless"
is "$(stat -c '%a %U %G' /run/keyless/signer/signer.sock 2>&1)" "660 keyless-signer keyless" "socket: 0660 in group keyless"
python3 "$SRC/examples/backend.py" --port "$B_PORT" --quiet >"$T/backend.log" 2>&1 &
PIDS+=($!)
check "backend listening" wait_for python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$B_PORT"
NOTIFY_SOCKET=@$NS-frontend setpriv $(as_unit keyless-frontend) >"$T/frontend.log" 2>&1 &
FE_PID=$!
PIDS+=($FE_PID)
check "frontend: READY=1 to the service manager" wait_for grep -qx 'READY=1' "$T/notify-frontend"
check "frontend: /readyz says ready" wait_for curl -sf --max-time 5 "http://127.0.0.1:$M_PORT/readyz"
check "the daemons run as their users" bash -c \
    '[ "$(ps -o user= -p "$1")" = keyless-signer ] && [ "$(ps -o user= -p "$2")" = keyless-frontend ]' _ "$SIGNER_PID" "$FE_PID"

# 5. A handshake, seen by the metrics and the audit log.
rc=0
body=$(curl -sS --max-time 30 --tlsv1.3 --cacert "$T/hsm/pki/root.pem" --resolve "localhost:$FE_PORT:127.0.0.1" \
    "https://localhost:$FE_PORT/" 2>"$T/curl.err") || rc=$?
ok $rc "curl: TLS 1.3 handshake and a response through the frontend"
check "the backend's page came back" test -n "$body"
prom=/var/lib/keyless/metrics/keyless-signer.prom
metric_ok() {
    awk '$1 == "keyless_signer_requests_total{key=\"web-ecdsa\",scheme=\"ecdsa_secp256r1_sha256\",status=\"ok\"}" { f = $2 } END { exit !(f >= 1) }' "$prom"
}
check "signer metrics textfile counts the signature" wait_for metric_ok
is "$(stat -c '%a %U' "$prom" 2>&1)" "644 keyless-signer" "metrics textfile: 0644, written by the signer"
check "audit log: a signed record" grep -q '"op":"sign"' /var/log/keyless/audit.jsonl
rc=0
out=$(/usr/bin/keyless-audit-verify /var/log/keyless/audit.jsonl 2>&1) || rc=$?
ok $rc "keyless-audit-verify: $out"
check "frontend metrics: one ok handshake" bash -c \
    'curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | grep -qx "keyless_frontend_handshakes_total{result=\"ok\"} 1"' _ "$M_PORT"

# ExecReload (kill -HUP $MAINPID) and the stop.
kill -HUP "$SIGNER_PID"
check "signer SIGHUP: RELOADING=1 then READY=1" wait_for bash -c \
    'grep -n . "$1" | tr "\n" " " | grep -Eq "RELOADING=1 [0-9]+:READY=1"' _ "$T/notify-signer"
kill -TERM "$FE_PID" "$SIGNER_PID"
check "frontend: STOPPING=1" wait_for grep -qx 'STOPPING=1' "$T/notify-frontend"
check "signer: STOPPING=1" wait_for grep -qx 'STOPPING=1' "$T/notify-signer"
rc=0
wait "$FE_PID" || rc=$?
is "$rc" 0 "frontend exits 0 after SIGTERM"
rc=0
wait "$SIGNER_PID" || rc=$?
is "$rc" 0 "signer exits 0 after SIGTERM"

# 6. Purge.
rc=0
dpkg_wait --purge keyless >"$T/purge.log" 2>&1 || rc=$?
ok $rc "dpkg --purge keyless"
check "binaries gone" test ! -e /usr/sbin/keyless-signer -a ! -e /usr/sbin/keyless-frontend -a ! -e /usr/bin/keyless-audit-verify
check "units gone" test ! -e /lib/systemd/system/keyless-signer.service -a ! -e /lib/systemd/system/keyless-frontend.service
check "packaged configs gone" test ! -e /etc/keyless/signer.conf -a ! -e /etc/keyless/frontend.conf
check "metrics directory gone" test ! -e /var/lib/keyless/metrics
check "audit log kept (evidence; docs/DEPLOYMENT.md)" test -s /var/log/keyless/audit.jsonl
check "users kept (Debian practice)" getent passwd keyless-signer
done_testing
