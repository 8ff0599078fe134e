#!/usr/bin/env bash
# tests/deploy/test_install.sh: what `cmake --install` puts where, and that an operator's
# tools accept it:
#   - the exact file list for prefix /usr into a DESTDIR (configs in /etc/keyless, units in
#     /lib/systemd/system) and the /etc and unit paths for another prefix;
#   - the installed binaries print their version and git commit;
#   - every man page renders with `man -l` without a groff warning (and a broken page warns);
#   - both units pass `systemd-analyze verify` (and a misspelt directive is caught), carry
#     the sandboxing the issue asks for, and `systemd-analyze security --offline` rates them
#     OK (exposure <= 2.0);
#   - sysusers.d and tmpfiles.d applied to a scratch root make the users, groups,
#     memberships and directories with the owners and modes the units expect;
#   - the shipped frontend's max_connections fits the unit's LimitNOFILE.
set -eu
. "$KL_SOURCE_DIR/tests/lib/tap.sh"
SRC=$KL_SOURCE_DIR
BUILD=$KL_BUILD_DIR
T=$TAP_TMP
D=$T/destdir

rc=0
DESTDIR=$D timeout 60 cmake --install "$BUILD" --prefix /usr >"$T/install.log" 2>&1 || rc=$?
ok $rc "cmake --install --prefix /usr into a DESTDIR"
(cd "$D" && find . -type f -o -type l | sed 's|^\./|/|' | sort) >"$T/files"
cat >"$T/want" <<'LIST'
/etc/keyless/frontend.conf
/etc/keyless/signer.conf
/etc/keyless/softhsm2.conf
/lib/systemd/system/keyless-frontend.service
/lib/systemd/system/keyless-signer.service
/usr/bin/keyless-audit-verify
/usr/bin/keyless-ech
/usr/lib/sysusers.d/keyless.conf
/usr/lib/tmpfiles.d/keyless.conf
/usr/sbin/keyless-frontend
/usr/sbin/keyless-signer
/usr/share/doc/keyless/AUDIT.md
/usr/share/doc/keyless/DEPLOYMENT.md
/usr/share/doc/keyless/FRONTEND.md
/usr/share/doc/keyless/HSM.md
/usr/share/doc/keyless/PERFORMANCE.md
/usr/share/doc/keyless/README.md
/usr/share/doc/keyless/SIGNER.md
/usr/share/doc/keyless/TLS-ENGINE.md
/usr/share/doc/keyless/contrib/grafana/keyless-dashboard.json
/usr/share/doc/keyless/contrib/prometheus/keyless-alerts.yml
/usr/share/doc/keyless/examples/backend.py
/usr/share/doc/keyless/examples/demo.sh
/usr/share/doc/keyless/examples/frontend.conf
/usr/share/doc/keyless/examples/signer.conf
/usr/share/man/man1/keyless-audit-verify.1
/usr/share/man/man1/keyless-ech.1
/usr/share/man/man5/keyless-frontend.conf.5
/usr/share/man/man5/keyless-signer.conf.5
/usr/share/man/man8/keyless-frontend.8
/usr/share/man/man8/keyless-signer.8
LIST
rc=0
diff -u "$T/want" "$T/files" >"$T/diff" || rc=$?
ok $rc "the installed file list is exactly the expected one"
[ $rc = 0 ] || sed 's/^/# /' "$T/diff"
check "the daemons and the verifier are executable" test -x "$D/usr/sbin/keyless-signer" -a -x "$D/usr/sbin/keyless-frontend" -a -x "$D/usr/bin/keyless-audit-verify"

rc=0
DESTDIR=$T/opt timeout 60 cmake --install "$BUILD" --prefix /opt/keyless >/dev/null 2>&1 || rc=$?
ok $rc "cmake --install --prefix /opt/keyless"
check "another prefix: configs in PREFIX/etc/keyless, units in PREFIX/lib/systemd/system" \
    test -f "$T/opt/opt/keyless/etc/keyless/signer.conf" -a -f "$T/opt/opt/keyless/lib/systemd/system/keyless-signer.service"
check "another prefix: nothing outside it" bash -c '[ "$(ls "$1")" = opt ]' _ "$T/opt"

for b in keyless-signer keyless-frontend keyless-ech; do
    p=$D/usr/sbin/$b
    [ -x "$p" ] || p=$D/usr/bin/$b # keyless-ech is an operator's tool: bin
    v=$("$p" --version 2>&1 || true)
    check "$b --version names the version and the commit ($v)" grep -Eq "^$b [0-9]+\.[0-9]+\.[0-9]+ \(git [0-9a-f]{7,}|unknown\)\$" <<<"$v"
done
rc=0
"$D/usr/bin/keyless-audit-verify" >/dev/null 2>&1 || rc=$?
is "$rc" 2 "keyless-audit-verify without a file: usage, exit 2"

# Man pages: each renders, and groff says nothing (--warnings: all of groff's warnings).
if command -v man >/dev/null && command -v groff >/dev/null; then
    n=0
    for page in "$D"/usr/share/man/man*/*; do
        out=$(LC_ALL=C.UTF-8 MANWIDTH=80 timeout 20 man --warnings -E UTF-8 -l "$page" 2>&1 >"$T/page.txt") || true
        name=$(basename "$page")
        is "$out" "" "man -l $name: no warning"
        check "man -l $name: rendered with its NAME section" grep -q '^NAME' "$T/page.txt"
        n=$((n + 1))
    done
    is "$n" 6 "six man pages"
    printf '.TH BAD 8\n.SH NAME\nbad \\- page\n.BOGUS macro\n\\fXbad font\n' >"$T/bad.8"
    out=$(LC_ALL=C.UTF-8 timeout 20 man --warnings -E UTF-8 -l "$T/bad.8" 2>&1 >/dev/null) || true
    check "a broken page does warn (the check can fail)" test -n "$out"
else
    skip "man or groff missing"
fi

# Units. verify resolves ExecStart, so the copies point at the DESTDIR's binaries.
U=$T/units
mkdir -p "$U"
for u in keyless-signer keyless-frontend; do
    sed "s|/usr/sbin/|$D/usr/sbin/|" "$D/lib/systemd/system/$u.service" >"$U/$u.service"
done
if command -v systemd-analyze >/dev/null; then
    rc=0
    out=$(cd "$U" && timeout 60 systemd-analyze verify --man=no keyless-signer.service keyless-frontend.service 2>&1) || rc=$?
    ok $rc "systemd-analyze verify: both units"
    is "$out" "" "systemd-analyze verify: nothing to say"
    sed 's/^ProtectSystem=/ProtectSystm=/' "$U/keyless-signer.service" >"$U/broken.service"
    out=$(cd "$U" && timeout 60 systemd-analyze verify --man=no broken.service 2>&1) || true
    check "a misspelt directive is reported (the check can fail)" grep -q "Unknown key.*'ProtectSystm'" <<<"$out"
    for u in keyless-signer keyless-frontend; do
        out=$(timeout 60 systemd-analyze security --offline=yes --root="$D" "$u.service" 2>&1 | tail -1) || true
        score=$(sed -n 's/.*Overall exposure level for [a-z-]*\.service: \([0-9.]*\) .*/\1/p' <<<"$out")
        check "systemd-analyze security $u: ${score:-?} ($out)" awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }'
    done
else
    skip "no systemd-analyze"
fi

# The sandboxing the issue asks for, line by line.
S=$D/lib/systemd/system/keyless-signer.service
F=$D/lib/systemd/system/keyless-frontend.service
for l in Type=notify User=keyless-signer SupplementaryGroups=keyless RuntimeDirectory=keyless ProtectSystem=strict \
    ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes CapabilityBoundingSet= SystemCallFilter=@system-service \
    'ExecReload=/bin/kill -HUP $MAINPID' 'ExecStart=/usr/sbin/keyless-signer --config /etc/keyless/signer.conf'; do
    check "signer unit: $l" grep -qxF -- "$l" "$S"
done
check "signer unit: ReadWritePaths= has the audit log directory" grep -Eq '^ReadWritePaths=.*/var/log/keyless( |$)' "$S"
check "signer unit: LoadCredential= for the PIN is offered" grep -q '^#LoadCredential=pin:' "$S"
check "signer unit: no ambient capability" grep -qx 'AmbientCapabilities=' "$S"
for l in Type=notify User=keyless-frontend SupplementaryGroups=keyless ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    NoNewPrivileges=yes CapabilityBoundingSet=CAP_NET_BIND_SERVICE AmbientCapabilities=CAP_NET_BIND_SERVICE \
    SystemCallFilter=@system-service 'ExecReload=/bin/kill -HUP $MAINPID'; do
    check "frontend unit: $l" grep -qxF -- "$l" "$F"
done
nofile=$(sed -n 's/^LimitNOFILE=//p' "$F")
maxc=$(sed -n 's/^max_connections *= *//p' "$D/etc/keyless/frontend.conf")
check "LimitNOFILE ($nofile) holds 2 fds per connection of max_connections ($maxc) plus 256" \
    test "${nofile:-0}" -ge $((2 * ${maxc:-999999} + 256))

# sysusers.d and tmpfiles.d on a scratch root (no change to this host).
R=$T/root
mkdir -p "$R/etc"
if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
    rc=0
    timeout 30 systemd-sysusers --root="$R" "$D/usr/lib/sysusers.d/keyless.conf" >"$T/sysusers.log" 2>&1 || rc=$?
    ok $rc "systemd-sysusers applies keyless.conf"
    for u in keyless-signer keyless-frontend; do
        check "user $u, no login shell" grep -Eq "^$u:x:[0-9]+:[0-9]+:.*:/nonexistent:/usr/sbin/nologin\$" "$R/etc/passwd"
    done
    for g in keyless keyless-signer keyless-frontend; do
        check "group $g" grep -q "^$g:" "$R/etc/group"
    done
    members=$(sed -n 's/^keyless:x:[0-9]*://p' "$R/etc/group" | tr ',' '\n' | sort | tr '\n' ' ')
    is "$members" "keyless-frontend keyless-signer " "group keyless: the frontend and the signer, nobody else"
    rc=0
    timeout 30 systemd-tmpfiles --root="$R" --create "$D/usr/lib/tmpfiles.d/keyless.conf" >"$T/tmpfiles.log" 2>&1 || rc=$?
    ok $rc "systemd-tmpfiles --create applies keyless.conf"
    owner() { # PATH -> "mode user group", names from the scratch root's files
        local s uid gid
        s=$(stat -c '%a %u %g' "$R$1") || { echo missing; return; }
        set -- $s
        uid=$(awk -F: -v i="$2" '$3 == i { print $1 }' "$R/etc/passwd")
        gid=$(awk -F: -v i="$3" '$3 == i { print $1 }' "$R/etc/group")
        echo "$1 ${uid:-$2} ${gid:-$3}"
    }
    is "$(owner /var/log/keyless)" "750 keyless-signer keyless-signer" "/var/log/keyless: the signer's alone"
    is "$(owner /etc/keyless/private)" "750 0 keyless-signer" "/etc/keyless/private: root, readable by the signer's group"
    is "$(owner /etc/keyless/certs)" "750 0 keyless-frontend" "/etc/keyless/certs: root, readable by the frontend's group"
    is "$(owner /var/lib/keyless/softhsm/tokens)" "700 keyless-signer keyless-signer" "the token directory: the signer's alone"
    is "$(owner /var/lib/keyless/metrics)" "755 keyless-signer keyless-signer" "the metrics directory: written by the signer, read by node_exporter"
else
    skip "no systemd-sysusers / systemd-tmpfiles"
fi
done_testing
