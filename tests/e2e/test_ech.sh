#!/usr/bin/env bash
# Encrypted Client Hello with a real client (issue 16): NSS's tstclnt -N <ECHConfigList>.
#   - two certificates from the test CA on the token's keys (ECDSA: NSS wants keyEncipherment
#     on an RSA server certificate): secret.test (the inner name,
#     only the encrypted ClientHelloInner carries it) and public.test (the ECH public name);
#   - a listener with ech_keys (made with keyless-ech) behind a relay that records every
#     byte the client sends: tstclnt gets the page through a connection whose SNI the
#     backend (PROXY v2) and the signer's audit log say is secret.test, the access line
#     says ech=accepted ech_outer=public.test, while the recorded bytes hold public.test
#     and never secret.test;
#   - a stale config (another key's ECHConfigList, same public name; another config_id,
#     then the served one): the frontend answers the outer ClientHello with public.test's
#     certificate and retry_configs; tstclnt reports the ECH rejection and fails, it does
#     not carry on as if it had reached secret.test; the retry_configs it prints are the
#     served key's list, and a retry with them reaches secret.test; the metric counts it;
#   - GREASE ECH (tstclnt -i) against the ECH listener: a plain handshake, counted as
#     unknown_config;
#   - ECH off on a listener: tstclnt's ECH fails the way it fails against a server that
#     does not know ECH at all (openssl s_server with a software key for public.test);
#   - keyless-frontend --check-config refuses a world-readable key file; SIGHUP picks up a
#     rotation (new key first, old one still accepted, retry_configs = the new list) and a
#     reload with a bad key file keeps the running keys.
. "$(dirname "$0")/lib.sh"

command -v tstclnt >/dev/null && command -v certutil >/dev/null || {
    skip "NSS tools (tstclnt, certutil) not installed: .ci/deps.sh installs libnss3-tools"
    done_testing
}
command -v certtool >/dev/null || bail "no certtool (gnutls-bin)"
ECH_BIN=$KL_BUILD_DIR/bin/keyless-ech
[ -x "$ECH_BIN" ] || bail "no $ECH_BIN (build first)"

kl_token
kl_start_signer
kl_start_backend --proxy-protocol

# ---- the two certificates, issued for the token's public keys by the test intermediate CA ----
issue() { # NAME KEY: $T/NAME.chain.pem for the token key KEY with the single dNSName NAME
    local name=$1 key=$2
    openssl x509 -in "$PKI/$key.crt.pem" -noout -pubkey >"$T/$name.pub.pem" &&
        printf '%s\n' "cn = \"$name\"" "dns_name = \"$name\"" tls_www_server signing_key 'expiration_days = 2' \
            >"$T/$name.tmpl" &&
        certtool --generate-certificate --load-pubkey "$T/$name.pub.pem" \
            --load-ca-certificate "$PKI/intermediate.pem" --load-ca-privkey "$PKI/intermediate.key" \
            --template "$T/$name.tmpl" --outfile "$T/$name.crt.pem" >>"$T/certtool.log" 2>&1 &&
        cat "$T/$name.crt.pem" "$PKI/intermediate.pem" >"$T/$name.chain.pem"
}
check "certificate for secret.test (ecdsa-p256 on the token)" issue secret.test ecdsa-p256
check "certificate for public.test (ecdsa-p384 on the token)" issue public.test ecdsa-p384

# ---- ECH keys: the one served, and a stale one with the same public name ----
rc=0
ECH=$("$ECH_BIN" generate --public-name public.test --config-id 17 --out "$T/ech.pem") || rc=$?
ok $rc "keyless-ech generate (config_id 17)"
rc=0
STALE=$("$ECH_BIN" generate --public-name public.test --config-id 18 --out "$T/stale.pem") || rc=$?
ok $rc "keyless-ech generate a second key (the stale config)"
rc=0
STALE_SAME_ID=$("$ECH_BIN" generate --public-name public.test --config-id 17 --out "$T/stale17.pem") || rc=$?
ok $rc "keyless-ech generate a third key with the served key's config_id"
is "$("$ECH_BIN" list "$T/ech.pem")" "$ECH" "keyless-ech list gives what generate printed"
# Readable by the frontend's group (the test directory's), by nobody else.
chmod 0640 "$T/ech.pem" "$T/stale.pem" "$T/stale17.pem"

# ---- the frontend: listener ech with the key, listener plain without ----
FE_PORT=$(free_port)
PLAIN_PORT=$(free_port)
METRICS_PORT=$(free_port)
fe_conf() { # FILE ECH_KEYS_LINE
    {
        echo "[frontend]"
        echo "workers = 1"
        echo "metrics = 127.0.0.1:$METRICS_PORT"
        if kl_two_users; then echo "user = $KL_FE_USER"; fi
        echo "[signer]"
        echo "socket = $SIGNER_SOCK"
        echo "startup_wait = 10"
        echo "[tls]"
        echo "alpn = http/1.1"
        echo "[cert public]"
        echo "chain = $T/public.test.chain.pem"
        echo "key = ecdsa-p384"
        echo "[cert secret]"
        echo "chain = $T/secret.test.chain.pem"
        echo "key = ecdsa-p256"
        echo "[listener ech]"
        echo "listen = 127.0.0.1:$FE_PORT"
        echo "backend = 127.0.0.1:$BACKEND_PORT"
        echo "proxy_protocol = yes"
        echo "$2"
        echo "[listener plain]"
        echo "listen = 127.0.0.1:$PLAIN_PORT"
        echo "backend = 127.0.0.1:$BACKEND_PORT"
        echo "proxy_protocol = yes"
    } >"$1"
}

# A key file others may read is refused before anything starts.
fe_conf "$T/bad.conf" "ech_keys = $T/ech.pem"
chmod 0644 "$T/ech.pem"
rc=0
out=$(timeout 20 "$FE_BIN" --config "$T/bad.conf" --check-config 2>&1) || rc=$?
is "$rc" 2 "--check-config: a world-readable ECH key is refused (exit 2)"
check "... in one line naming the listener and the file ($out)" \
    grep -q "bad.conf:[0-9]*: \[listener ech\] ech_keys: $T/ech.pem: accessible by others (mode 0644)" <<<"$out"
chmod 0640 "$T/ech.pem"
rc=0
out=$(timeout 20 "$FE_BIN" --config "$T/bad.conf" --check-config 2>&1) || rc=$?
ok $rc "--check-config with the key at 0640: $out"

FE_CONF=$T/frontend.conf
fe_conf "$FE_CONF" "ech_keys = $T/ech.pem"
"$FE_BIN" --config "$FE_CONF" >>"$T/frontend.log" 2>&1 &
FE_PID=$!
KL_PIDS+=("$FE_PID")
wait_for port_open "$FE_PORT" || bail "frontend did not start listening"

# ---- a relay that records what the client sends ----
RELAY_PORT=$(free_port)
cat >"$T/relay.py" <<'EOP'
import socket, sys, threading
port, dst, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
def pump(a, b, record):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            if record:
                with lock, open(log, "ab") as f:
                    f.write(d)
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(16)
while True:
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", dst), 5)
    threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
EOP
python3 "$T/relay.py" "$RELAY_PORT" "$FE_PORT" "$T/c2s.bin" >>"$T/relay.log" 2>&1 &
KL_PIDS+=("$!")
wait_for port_open "$RELAY_PORT" || bail "relay did not start"
: >"$T/c2s.bin"

# ---- NSS: a database trusting the test root ----
DB=sql:$T/nssdb
mkdir -p "$T/nssdb"
check "certutil: new NSS database" certutil -N -d "$DB" --empty-password
check "certutil: trust the test root" certutil -A -d "$DB" -n keyless-test-root -t "C,," -i "$ROOT"

# tstclnt PORT NAME [args]: GET /proxy with SNI NAME, trusting only the test root; output in $T/t.out.
tst() {
    local port=$1 name=$2
    shift 2
    printf 'GET /proxy HTTP/1.0\r\nHost: %s\r\n\r\n' "$name" >"$T/req.txt"
    timeout 20 tstclnt -4 -h 127.0.0.1 -p "$port" -a "$name" -d "$DB" -V tls1.3:tls1.3 -A "$T/req.txt" "$@" \
        >"$T/t.out" 2>&1 || {
        local rc=$?
        cp "$T/t.out" "$T/t.$((++TST_N)).out"
        return $rc
    }
    cp "$T/t.out" "$T/t.$((++TST_N)).out"
}
TST_N=0

# ---- accepted ----
rc=0
tst "$RELAY_PORT" secret.test -N "$ECH" || rc=$?
ok $rc "tstclnt -N: the page for secret.test through ECH"
[ $rc = 0 ] || sed 's/^/#   /' "$T/t.out" | tail -20
check "the backend was told SNI secret.test (PROXY v2)" grep -q '"authority": "secret.test"' "$T/t.out"
check "the client's bytes carry the public name" grep -qa "public.test" "$T/c2s.bin"
check "the client's bytes never carry the inner name" bash -c '! grep -qa "secret.test" "$1"' _ "$T/c2s.bin"
check "the client offered encrypted_client_hello (0xfe0d) in the clear ClientHello" \
    bash -c 'od -An -tx1 -v "$1" | tr -d " \n" | grep -q "fe0d"' _ "$T/c2s.bin"
wait_for grep -q " ech=accepted ech_outer=public.test" "$T/frontend.log" || true
check "access line: sni=secret.test ... ech=accepted ech_outer=public.test" \
    grep -Eq "access client=127\.0\.0\.1:[0-9]+ sni=secret\.test .* ech=accepted ech_outer=public\.test$" "$T/frontend.log"
wait_for grep -q '"server_name":"secret.test"' "$T/audit.jsonl" || true
check "the signer's audit log records the inner server_name" grep -q '"server_name":"secret.test"' "$T/audit.jsonl"
check "... and never the public name (the handshake ran on the inner ClientHello)" \
    bash -c '! grep -q "\"server_name\":\"public.test\"" "$1"' _ "$T/audit.jsonl"
is "$(metric 'keyless_frontend_ech_total{result="accepted"}')" 1 "metric: one accepted"
accepted=1

# ---- a stale config: rejected, retry_configs, no silent success ----
# NSS leaves checking the outer certificate against the ECH public name to the application
# (SSLPreliminaryChannelInfo.echPublicName), and tstclnt checks it against its -a name: so
# without -o it stops at the certificate (public.test's, not secret.test's), and with -o
# (certificate accepted) NSS itself ends the handshake: ech_required, and
# SSL_ERROR_ECH_RETRY_WITH_ECH when the server sent retry_configs. Either way no page.
for what in "another config_id:$STALE:unknown_config" "the served config_id, another key:$STALE_SAME_ID:rejected"; do
    desc=${what%%:*}
    rest=${what#*:}
    list=${rest%:*}
    result=${rest##*:}
    before=$(metric "keyless_frontend_ech_total{result=\"$result\"}")
    rc=0
    tst "$FE_PORT" secret.test -N "$list" || rc=$?
    check "stale config ($desc): tstclnt fails (exit $rc)" test "$rc" -ne 0
    check "... at the outer certificate, which is for the public name (SSL_ERROR_BAD_CERT_DOMAIN)" \
        grep -q "SSL_ERROR_BAD_CERT_DOMAIN" "$T/t.out"
    check "... and no page came back" bash -c '! grep -q "\"authority\"" "$1"' _ "$T/t.out"
    rc=0
    tst "$FE_PORT" secret.test -N "$list" -o -C || rc=$?
    check "stale config ($desc), certificate overridden (-o): tstclnt still fails (exit $rc)" test "$rc" -ne 0
    check "... NSS reports the server's retry_configs (SSL_ERROR_ECH_RETRY_WITH_ECH)" \
        grep -q "SSL_ERROR_ECH_RETRY_WITH_ECH" "$T/t.out"
    check "... the certificate it got is public.test's" grep -q "CN=public.test" "$T/t.out"
    check "... and no page came back" bash -c '! grep -q "\"authority\"" "$1"' _ "$T/t.out"
    retry=$(grep -A1 "^Received ECH retry_configs:" "$T/t.out" | tail -n 1 | tr -d ' \r')
    is "$retry" "$ECH" "... the retry_configs it received are the served key's ECHConfigList"
    rc=0
    tst "$FE_PORT" secret.test -N "$retry" || rc=$?
    ok $rc "... and retrying with them reaches secret.test"
    check "... the page for secret.test" grep -q '"authority": "secret.test"' "$T/t.out"
    grep -h "SSL_ERROR_ECH" "$T/t.out" | head -2 | sed 's/^/#   /' || true
    wait_cmp -ge 2 grep -Ec "sni=public\.test .* ech=$result ech_outer=public\.test$" "$T/frontend.log" || true
    check "... access lines: the outer name, closed by the client, ech=$result (two connections)" \
        test "$(grep -Ec "sni=public\.test .* close=\"client closed\" .* ech=$result ech_outer=public\.test$" "$T/frontend.log")" -ge 2
    is "$(metric "keyless_frontend_ech_total{result=\"$result\"}")" $((before + 2)) "... metric: two more $result"
done
check "the client ended those handshakes with ech_required (alert 121)" \
    test "$(grep -c "client sent alert 121" "$T/frontend.log")" -ge 2
accepted=$((accepted + 2))
is "$(metric 'keyless_frontend_ech_total{result="accepted"}')" $accepted "metric: the two retries accepted"
check "signatures under the inner name: only for the accepted handshakes" \
    test "$(grep -c '"server_name":"secret.test"' "$T/audit.jsonl")" -eq $accepted

# ---- GREASE ECH: a plain handshake, counted as unknown_config ----
before=$(metric 'keyless_frontend_ech_total{result="unknown_config"}')
rc=0
tst "$FE_PORT" public.test -i 32 || rc=$?
ok $rc "tstclnt -i (GREASE ECH) to the ECH listener: a normal handshake"
check "... the page for public.test" grep -q '"authority": "public.test"' "$T/t.out"
is "$(metric 'keyless_frontend_ech_total{result="unknown_config"}')" $((before + 1)) "... counted as unknown_config"

# ---- ECH off on a listener: tstclnt fails as against a server without ECH ----
# A server that knows nothing of ECH: openssl s_server with a software key for public.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/sw.key" -out "$T/sw.crt" \
    -subj /CN=public.test -addext subjectAltName=DNS:public.test -days 2 >/dev/null 2>&1 &&
    certutil -A -d "$DB" -n sw-public -t "P,," -i "$T/sw.crt" >/dev/null 2>&1 ||
    not_ok "software certificate for s_server, trusted by the NSS database"
SW_PORT=$(free_port)
openssl s_server -accept "127.0.0.1:$SW_PORT" -cert "$T/sw.crt" -key "$T/sw.key" -tls1_3 -www -quiet \
    >>"$T/s_server.log" 2>&1 &
KL_PIDS+=("$!")
wait_for port_open "$SW_PORT" || bail "openssl s_server did not start"
nss_error() { grep -o "SSL_ERROR_[A-Z_]*\|SEC_ERROR_[A-Z_]*" "$T/t.out" | head -1; }
for o in "" "-o"; do
    rc=0
    tst "$PLAIN_PORT" secret.test -N "$ECH" $o || rc=$?
    check "ECH ${o:+($o) }to the listener without ech_keys: tstclnt fails (exit $rc)" test "$rc" -ne 0
    plain=$(nss_error)
    rc=0
    tst "$SW_PORT" secret.test -N "$ECH" $o || rc=$?
    check "ECH ${o:+($o) }to openssl s_server (no ECH at all): tstclnt fails (exit $rc)" test "$rc" -ne 0
    sw=$(nss_error)
    is "$plain" "$sw" "... the same NSS error from both ($plain)"
done
is "$plain" SSL_ERROR_ECH_RETRY_WITHOUT_ECH "with the certificate accepted: SSL_ERROR_ECH_RETRY_WITHOUT_ECH (no retry_configs)"
wait_for grep -Eq "sni=public\.test .* ech=none$" "$T/frontend.log" || true
check "the listener without keys ignored the extension (access line: outer name, ech=none)" \
    grep -Eq "sni=public\.test .* ech=none$" "$T/frontend.log"

# ---- rotation by SIGHUP: a new key published first, the old one still accepted ----
fe_conf "$FE_CONF" "ech_keys = $T/stale.pem, $T/ech.pem"
kill -HUP "$FE_PID"
wait_for grep -q "SIGHUP: configuration and certificates reloaded" "$T/frontend.log" || true
check "SIGHUP: the frontend reloaded with ech_keys = stale.pem, ech.pem" \
    grep -q "SIGHUP: configuration and certificates reloaded" "$T/frontend.log"
rc=0
tst "$FE_PORT" secret.test -N "$STALE" || rc=$?
ok $rc "after the reload, the new key's config (once stale) reaches secret.test"
rc=0
tst "$FE_PORT" secret.test -N "$ECH" || rc=$?
ok $rc "the old key's config still reaches secret.test (tried by config_id, for rotation)"
check "... the page for secret.test" grep -q '"authority": "secret.test"' "$T/t.out"
rc=0
tst "$FE_PORT" secret.test -N "$STALE_SAME_ID" -o || rc=$?
retry=$(grep -A1 "^Received ECH retry_configs:" "$T/t.out" | tail -n 1 | tr -d ' \r')
is "$retry" "$STALE" "retry_configs are now the new first key's ECHConfigList"
# A reload whose key file went bad keeps the running keys.
chmod 0644 "$T/stale.pem"
kill -HUP "$FE_PID"
wait_for grep -q "reload failed, keeping the running configuration: .*ech_keys: $T/stale.pem: accessible by others" \
    "$T/frontend.log" || true
check "a reload with a world-readable key fails in one line naming it, keeping the running keys" \
    grep -q "reload failed, keeping the running configuration: .*\[listener ech\] ech_keys: $T/stale.pem: accessible by others" \
    "$T/frontend.log"
rc=0
tst "$FE_PORT" secret.test -N "$STALE" || rc=$?
ok $rc "... and the running keys still serve"

done_testing
