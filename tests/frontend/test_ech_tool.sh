#!/usr/bin/env bash
# tests/frontend/test_ech_tool.sh: keyless-ech (frontend/ech_tool.c).
#   - generate writes a 0600 key file whatever the umask, refuses an existing file (and a
#     symlink in its place), prints the ECHConfigList base64, which is exactly the file's
#     ECHCONFIG block; OpenSSL reads the PRIVATE KEY as X25519; --config-id and
#     --max-name-length land in the config's bytes;
#   - list prints the configs of several files in order under one length; show prints the
#     fields and never the key;
#   - every error is one line naming the file or the argument, with exit 1 (a file) or 2
#     (the command line); --help and --version like the daemons.
set -eu
. "$KL_SOURCE_DIR/tests/lib/tap.sh"
B=$KL_BUILD_DIR/bin/keyless-ech
T=$TAP_TMP
cd "$T"

[ -x "$B" ] || bail "no $B"

# ---- generate ----
rc=0
(umask 0 && timeout 20 "$B" generate --public-name public.example --config-id 7 --max-name-length 40 --out k1.pem) \
    >gen1.out 2>gen1.err || rc=$?
ok $rc "generate (umask 0)"
is "$(stat -c %a k1.pem)" 600 "the key file is mode 600 even with umask 0"
is "$(wc -l <gen1.out | tr -d ' ')" 1 "generate prints one line"
b64=$(cat gen1.out)
pem_b64=$(sed -n '/-----BEGIN ECHCONFIG-----/,/-----END ECHCONFIG-----/p' k1.pem | grep -v -- ----- | tr -d '\n')
is "$b64" "$pem_b64" "the printed base64 is the file's ECHCONFIG block"
hex=$(printf '%s' "$b64" | base64 -d | od -An -tx1 -v | tr -d ' \n')
# ECHConfigList: u16 length, fe0d, u16 length, config_id 07, kem 0020, pk len 0020, 32 bytes, suites 000c ...
is "${hex:0:14}" "0049fe0d004507" "list length, version 0xfe0d, config length, config_id 7"
is "${hex:14:8}" "00200020" "kem X25519, 32-byte public key"
is "${hex:86:28}" "000c000100010001000300010002" "suites: AES-128-GCM, ChaCha20-Poly1305, AES-256-GCM"
is "${hex:114:4}" "280e" "max_name_length 40, public_name of 14 bytes"
is "$(printf '%s' "${hex:118:28}" | xxd -r -p)" "public.example" "public_name"
if command -v openssl >/dev/null; then
    check "openssl reads the PRIVATE KEY block as an X25519 key" bash -c "openssl pkey -in k1.pem -noout -text | grep -q '^X25519 Private-Key'"
    pub=$(openssl pkey -in k1.pem -pubout -outform DER | od -An -tx1 -v | tr -d ' \n' | tail -c 64)
    is "$pub" "${hex:22:64}" "the config's public key is the private key's (per openssl)"
else
    skip "openssl not installed"
fi
check "no secret on stdout" bash -c '! grep -q PRIVATE gen1.out'

rc=0
"$B" generate --public-name public.example --out k1.pem >gen2.out 2>gen2.err || rc=$?
is "$rc" 1 "generate refuses an existing file (exit 1)"
check "... saying so in one line naming it" grep -qx "keyless-ech: k1.pem: File exists (refusing to overwrite it)" gen2.err
is "$(wc -l <gen2.err | tr -d ' ')" 1 "... one line"
check "... and the file is unchanged" bash -c "[ \"\$(sed -n '/ECHCONFIG-----/,/END ECHCONFIG/p' k1.pem | grep -v -- ----- | tr -d '\n')\" = '$b64' ]"
ln -s /nonexistent/target link.pem
rc=0
"$B" generate --public-name public.example --out link.pem >/dev/null 2>gen3.err || rc=$?
is "$rc" 1 "generate refuses a dangling symlink in the key's place"
check "... and does not create its target" test ! -e /nonexistent/target

rc=0
"$B" generate --public-name 10.0.0.1 --out bad.pem >/dev/null 2>gen4.err || rc=$?
is "$rc" 2 "an IP address as public name: exit 2"
check "... one line naming it" grep -q "^keyless-ech: --public-name '10.0.0.1': not a DNS name" gen4.err
check "... and no file" test ! -e bad.pem
for args in "--public-name a.example" "--out x.pem" "--public-name a.example --out x.pem --config-id 256" \
    "--public-name a.example --out x.pem --max-name-length -1" "--public-name a.example --out x.pem --bogus 1" \
    "--public-name a.example --out"; do
    rc=0
    # shellcheck disable=SC2086
    "$B" generate $args >/dev/null 2>err.txt || rc=$?
    is "$rc" 2 "generate $args: exit 2"
    check "generate $args: a one-line reason first" bash -c "head -1 err.txt | grep -q '^keyless-ech: '"
done
check "no x.pem made by the refused command lines" test ! -e x.pem

# A random config id when none is given: 20 keys do not all share one.
for i in $(seq 1 20); do "$B" generate --public-name r.example --out "r$i.pem" >/dev/null; done
ids=$(for i in $(seq 1 20); do "$B" show "r$i.pem" | sed -n 's/^config_id: //p'; done | sort -u | wc -l)
check "random config ids differ ($ids distinct of 20)" test "$ids" -gt 1

# ---- list ----
"$B" generate --public-name other.example --config-id 9 --out k2.pem >gen5.out
rc=0
"$B" list k1.pem k2.pem >list.out 2>list.err || rc=$?
ok $rc "list two files"
l=$(base64 -d <list.out | od -An -tx1 -v | tr -d ' \n')
c1=$(base64 -d <gen1.out | od -An -tx1 -v | tr -d ' \n')
c2=$(base64 -d <gen5.out | od -An -tx1 -v | tr -d ' \n')
want_len=$(printf '%04x' $(((${#c1} + ${#c2}) / 2 - 4)))
is "$l" "$want_len${c1:4}${c2:4}" "list = one length, then the first config, then the second"
rc=0
"$B" list k2.pem k1.pem >list2.out || rc=$?
check "list keeps the order given" test "$(cat list2.out)" != "$(cat list.out)"
rc=0
"$B" list k1.pem missing.pem >/dev/null 2>list.err || rc=$?
is "$rc" 1 "list with a missing file: exit 1"
check "... naming it" grep -qx "keyless-ech: missing.pem: cannot open the file" list.err
printf 'not a key\n' >junk.pem
rc=0
"$B" list junk.pem >/dev/null 2>list.err || rc=$?
is "$rc" 1 "list with a file that is no key: exit 1"
check "... naming it and why" grep -qx "keyless-ech: junk.pem: no X25519 PRIVATE KEY (PKCS#8 PEM) block in the file" list.err
sed '/BEGIN ECHCONFIG/,$d' k1.pem >noconfig.pem
rc=0
"$B" list noconfig.pem >/dev/null 2>list.err || rc=$?
is "$rc" 1 "list with a key file without ECHCONFIG: exit 1"
check "... naming it and why" grep -q "^keyless-ech: noconfig.pem: no ECHCONFIG PEM block" list.err
rc=0
"$B" list >/dev/null 2>list.err || rc=$?
is "$rc" 2 "list without a file: exit 2"

# ---- show ----
rc=0
"$B" show k1.pem >show.out 2>show.err || rc=$?
ok $rc "show"
check "show: config_id" grep -qx "config_id: 7" show.out
check "show: public_name" grep -qx "public_name: public.example" show.out
check "show: suites" grep -qx "suites: HKDF-SHA256/AES-128-GCM, HKDF-SHA256/ChaCha20-Poly1305, HKDF-SHA256/AES-256-GCM" show.out
check "show: maximum_name_length" grep -qx "maximum_name_length: 40" show.out
check "show: the ECHConfigList" grep -qx "echconfiglist: $b64" show.out
key_b64=$(sed -n '/BEGIN PRIVATE KEY/,/END PRIVATE KEY/p' k1.pem | grep -v -- ----- | tr -d '\n')
check "show never prints the key" bash -c "! grep -qF -- '$key_b64' show.out && ! grep -q PRIVATE show.out"
rc=0
"$B" show k1.pem k2.pem >/dev/null 2>&1 || rc=$?
is "$rc" 2 "show with two files: exit 2"
rc=0
"$B" show junk.pem >/dev/null 2>show.err || rc=$?
is "$rc" 1 "show of a bad file: exit 1"

# ---- help, version, unknown ----
rc=0
"$B" --help >help.out || rc=$?
ok $rc "--help"
check "--help shows the three commands" bash -c 'grep -q "generate --public-name" help.out && grep -q " list FILE" help.out && grep -q " show FILE" help.out'
v=$("$B" --version)
check "--version names the version and the commit ($v)" grep -Eq '^keyless-ech [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]{7,}|unknown)\)$' <<<"$v"
rc=0
"$B" frobnicate >/dev/null 2>err.txt || rc=$?
is "$rc" 2 "unknown command: exit 2"
check "... named" grep -q "^keyless-ech: unknown command 'frobnicate'" err.txt
rc=0
"$B" >/dev/null 2>&1 || rc=$?
is "$rc" 2 "no command: exit 2"

done_testing
