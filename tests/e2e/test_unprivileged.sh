#!/usr/bin/env bash
# keyless-frontend runs as a user that cannot read the token directory (nobody):
# it needs only the public chains and the signer's socket. Skipped (ctest reports
# it as skipped) when the test does not run as root, since it must switch users.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
    skip "needs root and setpriv to run the frontend as nobody"
    done_testing
fi
kl_token
chmod 0711 "$T"
# The signer lets uid nobody in: the socket directory's group and the keys' allow lists.
kl_start_signer
sed -i -e 's/^\[signer\]/[signer]\nsocket_group = nogroup/' \
    -e 's/^\(schemes = .*\)$/\1\nallow_uids = nobody/' "$T/signer.conf"
kill -TERM "$SIGNER_PID"
wait "$SIGNER_PID" 2>/dev/null || true
rm -f "$SIGNER_SOCK"
"$SIGNER_BIN" --config "$T/signer.conf" >>"$T/signer.log" 2>&1 &
SIGNER_PID=$!
KL_PIDS+=("$SIGNER_PID")
wait_for test -S "$SIGNER_SOCK" || bail "signer did not restart"
kl_start_backend

as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
rc=0
as_nobody cat "$HSM/user.pin" >/dev/null 2>&1 || rc=$?
check "nobody cannot read the PIN file (cat: rc=$rc)" test "$rc" -ne 0
rc=0
as_nobody ls "$HSM/tokens" >/dev/null 2>&1 || rc=$?
check "nobody cannot list the token directory (ls: rc=$rc)" test "$rc" -ne 0
check "but nobody can run a command at all (the two refusals are about permissions)" as_nobody true

# Public material only, readable by nobody.
mkdir -p "$T/pub"
cp "$PKI/ecdsa-p256.chain.pem" "$PKI/rsa-2048.chain.pem" "$T/pub/"
cp "$FE_BIN" "$T/pub/keyless-frontend"
chmod 0755 "$T/pub" "$T/pub/keyless-frontend"
chmod 0644 "$T/pub"/*.pem
FE_PORT=$(free_port)
METRICS_PORT=$(free_port)
kl_frontend_conf "$T/pub/frontend.conf"
sed -i "s#$PKI/#$T/pub/#g" "$T/pub/frontend.conf"
chmod 0644 "$T/pub/frontend.conf"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$T/pub/keyless-frontend" --config "$T/pub/frontend.conf" >>"$T/frontend.log" 2>&1 &
FE_PID=$!
KL_PIDS+=("$FE_PID")
wait_for port_open "$FE_PORT" || bail "frontend (as nobody) did not start"
check "the frontend runs as nobody" test "$(awk '/^Uid:/ { print $2 }' "/proc/$FE_PID/status")" = 65534
page=$(kl_curl "https://localhost:$FE_PORT/" || true)
check "as nobody it completes handshakes (signature from the signer) and proxies" \
    grep -q "Hello from the keyless demo backend" <<<"$page"
check "the signer's audit log names uid 65534 for the signature" grep -q '"uid":65534' "$T/audit.jsonl"
done_testing
