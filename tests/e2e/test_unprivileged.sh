#!/usr/bin/env bash
# Privilege separation (issue 13 §2, §5): started as root, keyless-signer runs as
# keyless-signer and keyless-frontend as keyless-frontend (tests/e2e/lib.sh makes both
# users). The frontend's user cannot read the PIN file or the token; neither process keeps
# a capability, both are undumpable and under a seccomp filter; a peer with the signer's
# own uid is refused unless allow_same_uid = yes; [frontend] user = while not root is
# refused. Skipped (ctest reports it as skipped) when not run as root.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null || [ "${KL_E2E_SAME_USER:-0}" = 1 ]; then
    skip "needs root and setpriv to run the signer and the frontend as two users"
    done_testing
fi
kl_token
kl_start_signer
kl_start_backend
kl_start_frontend

uid_of() { awk '/^Uid:/ { print $2 "," $3 "," $4 "," $5 }' "/proc/$1/status"; }
field() { awk -F'\t' -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
FE_UID=$(id -u "$KL_FE_USER")
SG_UID=$(id -u "$KL_SIGNER_USER")
is "$(uid_of "$SIGNER_PID")" "$SG_UID,$SG_UID,$SG_UID,$SG_UID" "the signer runs as $KL_SIGNER_USER (real, effective, saved, fs)"
is "$(uid_of "$FE_PID")" "$FE_UID,$FE_UID,$FE_UID,$FE_UID" "the frontend runs as $KL_FE_USER"
check "the two users differ" test "$FE_UID" -ne "$SG_UID"
is "$(field "$FE_PID" CapEff)/$(field "$FE_PID" CapPrm)" "0000000000000000/0000000000000000" \
    "the serving frontend holds no capability (CAP_NET_BIND_SERVICE dropped once bound)"
is "$(field "$SIGNER_PID" CapEff)" "0000000000000000" "the signer holds no capability"
if kl_sanitized; then
    # Sanitizer builds run both unfiltered and say why (common/sandbox.h).
    check "sanitizer build: the signer says why it has no seccomp filter" grep -q "no seccomp filter: built with sanitizers" "$T/signer.log"
    check "... and the frontend too" grep -q "no seccomp filter: built with sanitizers" "$T/frontend.log"
else
    is "$(field "$FE_PID" Seccomp)" 2 "the frontend runs under its seccomp filter"
    is "$(field "$SIGNER_PID" Seccomp)" 2 "the signer runs under its seccomp filter"
fi
# Not dumpable: the kernel then makes /proc/PID/* root's, so the user cannot ptrace or read it.
is "$(stat -c %U "/proc/$FE_PID/environ")" root "the frontend is not dumpable after the drop (/proc owned by root)"
is "$(stat -c %U "/proc/$SIGNER_PID/environ")" root "the signer is not dumpable after the drop"

as_fe() { setpriv --reuid="$KL_FE_USER" --regid="$KL_FE_USER" --clear-groups "$@"; }
rc=0
as_fe cat "$HSM/user.pin" >/dev/null 2>&1 || rc=$?
check "the frontend's user cannot read the PIN file (cat: rc=$rc)" test "$rc" -ne 0
rc=0
as_fe ls "$HSM/tokens" >/dev/null 2>&1 || rc=$?
check "the frontend's user cannot list the token directory (ls: rc=$rc)" test "$rc" -ne 0
rc=0
as_fe cat "$HSM/softhsm2.conf" "$(find "$HSM/tokens" -type f | head -n 1)" >/dev/null 2>&1 || rc=$?
check "nor read a token file (rc=$rc)" test "$rc" -ne 0
check "but it can run a command at all (the refusals are about permissions)" as_fe true
check "and it can read the public chains" as_fe cat "$PKI/ecdsa-p256.chain.pem"

page=$(kl_curl "https://localhost:$FE_PORT/" || true)
check "handshakes complete (signature from the signer) and proxy" grep -q "Hello from the keyless demo backend" <<<"$page"
check "the audit log names the frontend's uid for the signature" grep -q "\"uid\":$FE_UID" "$T/audit.jsonl"

# A frontend running as the signer's own user is refused (the key allows the group).
ping_as() {
    setpriv --reuid="$1" --regid="$KL_FE_USER" --clear-groups /usr/bin/python3 - "$SIGNER_SOCK" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(3)
s.connect(sys.argv[1])
body = bytes([0x08, 0x01, 0x22, 0x00])  # Request{id = 1, ping = {}}
try:
    s.sendall(struct.pack(">I", len(body)) + body)
    got = s.recv(4)
except OSError:  # closed by the signer: reset or broken pipe
    got = b""
sys.exit(0 if len(got) == 4 else 3)
PY
}
# The restarted signer is up once its start-up line is logged (written after listen(); the old
# socket file may still be there, so waiting for it raced the new signer's start on a loaded machine).
signer_listening() { [ "$(grep -c "listening on" "$T/signer.log")" -gt "$1" ]; }
kill -TERM "$SIGNER_PID"
wait "$SIGNER_PID" 2>/dev/null || true
sed -i "s/^allow_uids = $KL_FE_USER\$/allow_gids = $KL_FE_USER/" "$T/signer.conf"
starts=$(grep -c "listening on" "$T/signer.log" || true)
"$SIGNER_BIN" --config "$T/signer.conf" >>"$T/signer.log" 2>&1 &
SIGNER_PID=$!
KL_PIDS+=("$SIGNER_PID")
wait_for signer_listening "$starts" || bail "signer did not restart"
check "allow_gids = the frontend's group: the frontend's user is served" ping_as "$KL_FE_USER"
rc=0
ping_as "$KL_SIGNER_USER" || rc=$?
is "$rc" 3 "the signer's own user with that group is refused (no allow_same_uid)"
check "... and the refusal is audited" grep -q "\"uid\":$SG_UID,.*\"op\":\"connect\"" "$T/audit.jsonl"
kill -TERM "$SIGNER_PID"
wait "$SIGNER_PID" 2>/dev/null || true
sed -i 's/^\[signer\]$/[signer]\nallow_same_uid = yes/' "$T/signer.conf"
starts=$(grep -c "listening on" "$T/signer.log" || true)
"$SIGNER_BIN" --config "$T/signer.conf" >>"$T/signer.log" 2>&1 &
SIGNER_PID=$!
KL_PIDS+=("$SIGNER_PID")
wait_for signer_listening "$starts" || bail "signer did not restart"
check "allow_same_uid = yes: the signer's own user is served" ping_as "$KL_SIGNER_USER"

# [frontend] user = while not root: refused with one line before anything is opened.
mkdir -p "$T/pub"
chmod 0755 "$T/pub"
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
kl_frontend_conf "$T/pub/frontend.conf"
chmod 0644 "$T/pub/frontend.conf"
rc=0
out=$(as_fe "$FE_BIN" --config "$T/pub/frontend.conf" 2>&1) || rc=$?
is "$rc" 2 "[frontend] user = while not root: exit 2"
check "... one line naming the key" grep -q "\[frontend\] user: set to '$KL_FE_USER', but the frontend is not running as root" <<<"$out"
done_testing
