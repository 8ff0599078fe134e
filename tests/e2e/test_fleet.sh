#!/usr/bin/env bash
# A fleet (issue 11): two frontend + signer pairs, each with its own ports, configs, audit
# log and host_id, whose signers reach one SoftHSM2 token through `p11-kit server` (the
# stand-in for a network HSM). Both derive the same ticket keys for the same epochs, so a
# ticket issued by A resumes on B with no signature there; its 0-RTT is accepted on A only
# (the ticket carries A's host id) and B completes the handshake in 1-RTT.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/tickets_lib.sh"
CLIENT_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
SOFTHSM_MODULE=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
[ -e "$CLIENT_MODULE" ] || { skip "no $CLIENT_MODULE (p11-kit-modules)"; done_testing; }
command -v p11-kit >/dev/null || { skip "no p11-kit"; done_testing; }

kl_token
P11_SOCK=$T/p11.sock
SOFTHSM2_CONF=$HSM/softhsm2.conf setsid p11-kit server -f -n "$P11_SOCK" --provider "$SOFTHSM_MODULE" \
    "pkcs11:token=keyless" >"$T/p11-kit.log" 2>&1 &
P11_PID=$!
KL_PIDS+=("$P11_PID")
wait_for test -S "$P11_SOCK" || bail "p11-kit server did not export the token"
export P11_KIT_SERVER_ADDRESS="unix:path=$P11_SOCK"

# fleet_signer NAME: a signer on the remote token (p11-kit-client.so), [tickets] scope fleet.
fleet_signer() {
    local n=$1
    cat >"$T/signer-$n.conf" <<EOS
[signer]
socket = $T/run-$n/signer.sock
workers = 1
audit_log = $T/audit-$n.jsonl
audit_sync = none
$(kl_signer_peer_lines)
[hsm]
module = $CLIENT_MODULE
pin_file = $HSM/user.pin
[key ecdsa-p256]
uri = pkcs11:token=keyless;object=ecdsa-p256;type=private
schemes = ecdsa_secp256r1_sha256
$(kl_key_allow_line)
[tickets]
scope = fleet
$(kl_key_allow_line)
EOS
    mkdir -p "$T/run-$n"
    "$SIGNER_BIN" --config "$T/signer-$n.conf" >>"$T/signer-$n.log" 2>&1 &
    KL_PIDS+=("$!")
    wait_for python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' \
        "$T/run-$n/signer.sock" || bail "signer $n did not start"
}

# fleet_frontend NAME: FE_PORT_<NAME>, METRICS_PORT_<NAME>; host_id NAME.
fleet_frontend() {
    local n=$1
    FE_PORT=$(free_port) METRICS_PORT=$(free_port) FE_CERTS=ecdsa-p256 FE_SIGNER_SOCK=$T/run-$n/signer.sock \
        FE_FRONTEND_EXTRA="host_id = fleet-$n" FE_LISTENER_EXTRA=$'proxy_protocol = yes\nmax_early_data = 16384' \
        kl_frontend_conf "$T/frontend-$n.conf"
    local port metrics
    port=$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$T/frontend-$n.conf")
    metrics=$(sed -n 's/^metrics = 127.0.0.1:\([0-9]*\)$/\1/p' "$T/frontend-$n.conf")
    "$FE_BIN" --config "$T/frontend-$n.conf" >>"$T/frontend-$n.log" 2>&1 &
    KL_PIDS+=("$!")
    wait_for port_open "$port" || bail "frontend $n did not start"
    printf -v "FE_PORT_$n" '%s' "$port"
    printf -v "METRICS_PORT_$n" '%s' "$metrics"
}

fleet_signer a
fleet_signer b
kl_resumption_backend
fleet_frontend a
fleet_frontend b
FE_START=$(date +%s)
check "A got its ticket keys from its signer (remote token)" grep -q "ticket keys: 4 epoch keys" "$T/frontend-a.log"
check "B got its ticket keys from its signer (remote token)" grep -q "ticket keys: 4 epoch keys" "$T/frontend-b.log"
# -a: a live audit log ends in preallocated zeros (issue 15), which grep would call binary
ids_a=$(grep -a -o '"ticket_epochs":"[0-9,]*","ticket_key_ids":"[0-9a-f,]*"' "$T/audit-a.jsonl" | head -n 1)
ids_b=$(grep -a -o '"ticket_epochs":"[0-9,]*","ticket_key_ids":"[0-9a-f,]*"' "$T/audit-b.jsonl" | head -n 1)
check "both signers audited the derivation" test -n "$ids_a"
is "$ids_b" "$ids_a" "same epochs, same key ids on both: the keys rotate on both at the same epoch boundaries"

out=$(s_client "$FE_PORT_a" -sess_out "$T/sess-a")
check "A: full handshake" grep -q "New, TLSv1.3" <<<"$out"
is "$(grep -c '"op":"sign"' "$T/audit-a.jsonl")" 1 "A's signer signed it"
out=$(s_client "$FE_PORT_b" -sess_in "$T/sess-a")
check "B resumes A's ticket (Reused, TLSv1.3)" grep -q "Reused, TLSv1.3" <<<"$out"
check "B's backend answered" grep -q "early=None" <<<"$out"
is "$(grep -c '"op":"sign"' "$T/audit-b.jsonl" || true)" 0 "B's signer signed nothing"
check "B logged the resumption" grep -q "resumed=yes" "$T/frontend-b.log"

# 0-RTT once both strike registers are warm: accepted by A (the issuer) only.
while [ $(($(date +%s) - FE_START)) -le 21 ]; do sleep 0.5; done
printf 'GET /early HTTP/1.0\r\nHost: localhost\r\n\r\n' >"$T/early.txt"
out=$(s_client "$FE_PORT_b" -sess_in "$T/sess-a" -early_data "$T/early.txt")
check "B: 0-RTT on A's ticket is rejected" grep -q "Early data was rejected" <<<"$out"
check "B: ... the handshake completes in 1-RTT (Reused)" grep -q "Reused, TLSv1.3" <<<"$out"
check "B: ... and the request sent after it is answered" grep -q "early=None" <<<"$out"
out=$(s_client "$FE_PORT_a" -sess_in "$T/sess-a" -early_data "$T/early.txt")
check "A: 0-RTT on its own ticket is accepted" grep -q "Early data was accepted" <<<"$out"
check "A: the backend got the early request marked as early (TLV 0xE3)" \
    grep -q '"request": "GET /early HTTP/1.0", "in_early": true' "$BACKEND_LOG"
done_testing
