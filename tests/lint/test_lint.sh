#!/usr/bin/env bash
# tests/lint/test_lint.sh - self-test of check-layering.sh: a small clean tree passes
# (including the allowed files and things that only look like violations: comments,
# a test source, a module including its own header); then one violation per rule is
# planted in a fresh copy, and the lint must fail naming that file and that rule.
. "$(cd "$(dirname "$0")/../.." && pwd)/tests/lib/tap.sh"
set -eu
LINT=$(cd "$(dirname "$0")" && pwd)/check-layering.sh
W=$(mktemp -d "${TMPDIR:-/tmp}/kl-lint-test.XXXXXX")
tap_at_exit 'rm -rf -- "$W"'

# put FILE LINES...: write a file of the clean tree.
put() {
    local f=$W/clean/$1
    shift
    mkdir -p "$(dirname "$f")"
    printf '%s\n' "$@" >"$f"
}
put CMakeLists.txt '# never if(EXISTS x) nor return() here: a comment is not code' 'add_subdirectory(common)'
put common/a.h '#include "kl_err.h"'
put common/a.c '#include "a.h"' '#include <stdio.h>'
put common/kl_err.h '/* #include "x.h" in a comment */'
put common/b.c '#include "a.h"' '#include "b.h"'
put common/b.h ''
put common/sandbox.c '#include <seccomp.h>'
put proto/frame.h '#include "kl_err.h"'
put proto/frame.c '#include "frame.h"' '#include "keyless.pb-c.h"'
put frontend/x.h '#include "frame.h"'
put frontend/x.c '#include "x.h"' '#include "y.h"' '#include "tls/tls.h"' '/* #include <openssl/evp.h> */'
put frontend/y.h ''
put frontend/y.c '#include "y.h"' '// #include "x.h"'
put frontend/main.c '#include "x.h"'
put frontend/tls/tls.h '#include "kl_err.h"'
put frontend/tls/crypto.c '#include "tls.h"' '#include <openssl/evp.h>' '#include <sodium.h>'
put signer/config.h ''
put signer/config.c '#include "config.h"' '#include "a.h"'
put signer/p11_backend.c '#include <p11-kit/p11-kit.h>' '#include <p11-kit/pkcs11.h>'
put signer/crypto.c '#include <openssl/evp.h>' '#include <sodium.h>'
put signer/s1.h ''
put signer/s1.c '#include "s1.h"' '#include "s2.h"'
put signer/s2.h ''
put signer/s2.c '#include "s2.h"' '#include "s3.h"'
put signer/s3.h ''
put signer/s3.c '#include "s3.h"'
put tests/bench/csign_floor.c '#include <p11-kit/pkcs11.h>' '#include <openssl/evp.h>'
put tests/CMakeLists.txt 'add_test(NAME t COMMAND t)'
put build/CMakeLists.txt 'return()'

rc=0
bash "$LINT" "$W/clean" >"$W/clean.out" 2>&1 || rc=$?
ok "$rc" "the clean tree passes"
[ "$rc" = 0 ] || sed 's/^/#   /' "$W/clean.out"
check "... and says what it read (25 product sources, 2 CMakeLists.txt outside build/)" \
    grep -q '^layering: OK: 25 sources (.* modules), 2 CMakeLists.txt, no finding$' "$W/clean.out"

# plant NAME FILE LINE [FILE LINE]...: a copy of the clean tree with LINE appended to FILE.
plant() {
    local name=$1
    shift
    rm -rf "${W:?}/$name"
    cp -r "$W/clean" "$W/$name"
    while [ $# -gt 0 ]; do
        mkdir -p "$(dirname "$W/$name/$1")"
        printf '%s\n' "$2" >>"$W/$name/$1"
        shift 2
    done
}
# expect_finding NAME REGEX DESC: the lint fails on tree NAME and one line matches REGEX.
expect_finding() {
    local name=$1 regex=$2 desc=$3 rc=0
    bash "$LINT" "$W/$name" >"$W/$name.out" 2>&1 || rc=$?
    is "$rc" 1 "$desc: the lint fails"
    check "$desc: $regex" grep -Eq "$regex" "$W/$name.out"
    grep -E '^layering: .*: [a-z0-9-]+: ' "$W/$name.out" >"$W/$name.lines" || true
    check "$desc: every finding line names a file and a rule" \
        test "$(wc -l <"$W/$name.lines")" -ge 1 -a "$(grep -c '' "$W/$name.out")" -eq "$(($(wc -l <"$W/$name.lines") + 1))"
}

plant cycle2 frontend/y.c '#include "x.h"'
expect_finding cycle2 '^layering: frontend/x\.c: include-cycle: frontend/x -> frontend/y -> frontend/x \(frontend/x\.c:2 includes frontend/y\.h; frontend/y\.c:3 includes frontend/x\.h\)$' \
    "a two-module cycle (x.c includes y.h, y.c includes x.h)"
plant cycle3 signer/s3.h '#include "s1.h"'
expect_finding cycle3 '^layering: signer/s1\.c: include-cycle: signer/s1 -> signer/s2 -> signer/s3 -> signer/s1 ' \
    "a three-module cycle through a header (s1 -> s2 -> s3.h -> s1)"
plant cycletls frontend/tls/tls.h '#include "crypto.h"' frontend/tls/crypto.h '#include "tls.h"'
expect_finding cycletls 'include-cycle: frontend/tls/crypto -> frontend/tls/tls -> frontend/tls/crypto ' \
    "a cycle between two headers in frontend/tls"
plant ssl signer/policy.c '#include <openssl/obj_mac.h>'
expect_finding ssl '^layering: signer/policy\.c:1: crypto-include: #include <openssl/obj_mac\.h> outside ' \
    "an OpenSSL header in signer/policy.c"
plant sodium frontend/y.c '#  include <sodium.h>'
expect_finding sodium '^layering: frontend/y\.c:3: crypto-include: #include <sodium\.h> ' \
    "sodium.h in frontend/y.c (indented directive)"
plant p11 frontend/main.c '#include "pkcs11.h"'
expect_finding p11 '^layering: frontend/main\.c:2: p11-include: #include "pkcs11\.h" outside signer/p11_backend\.c$' \
    "pkcs11.h in the frontend"
plant p11kit signer/config.c '#include <p11-kit/uri.h>'
expect_finding p11kit '^layering: signer/config\.c:3: p11-include: #include <p11-kit/uri\.h> ' \
    "a p11-kit header in signer/config.c"
plant seccomp signer/config.c '#include <seccomp.h>'
expect_finding seccomp '^layering: signer/config\.c:3: seccomp-include: #include <seccomp\.h> outside common/sandbox\.c$' \
    "libseccomp's header outside common/sandbox.c"
plant common1 common/b.c '#include "x.h"'
expect_finding common1 '^layering: common/b\.c:3: common-depends: #include "x\.h" \(frontend/x\.h\)' \
    "common/ including a frontend header"
plant common2 common/b.h '#include "frame.h"'
expect_finding common2 '^layering: common/b\.h:2: common-depends: #include "frame\.h" \(proto/frame\.h\)' \
    "common/ including a proto header"
plant common3 common/a.c '#include "keyless.pb-c.h"'
expect_finding common3 '^layering: common/a\.c:3: common-depends: #include "keyless\.pb-c\.h" ' \
    "common/ including the generated protobuf header"
plant common4 common/a.c '#include "../signer/config.h"'
expect_finding common4 '^layering: common/a\.c:3: common-depends: #include "\.\./signer/config\.h" ' \
    "common/ including a signer header by relative path"
plant internal frontend/tls/crypto.h '' frontend/main.c '#include "tls/crypto.h"'
expect_finding internal '^layering: frontend/main\.c:2: engine-internal: #include "tls/crypto\.h": outside frontend/tls/ only tls/tls\.h is public$' \
    "an engine-internal header included outside frontend/tls"
plant exists tests/CMakeLists.txt 'if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/x.c)'
expect_finding exists '^layering: tests/CMakeLists\.txt:2: cmake-silent: if\(EXISTS \.\.\.\)' \
    "if(EXISTS ...) in a CMakeLists.txt"
plant notexists CMakeLists.txt '  IF (NOT EXISTS foo)'
expect_finding notexists '^layering: CMakeLists\.txt:3: cmake-silent: if\(EXISTS' "IF (NOT EXISTS ...), upper case"
plant ret tests/CMakeLists.txt '  return()'
expect_finding ret '^layering: tests/CMakeLists\.txt:2: cmake-silent: return\(\)' "return() in a CMakeLists.txt"

# All at once: one line per finding, each rule present, deterministic output.
plant all frontend/y.c '#include "x.h"' signer/policy.c '#include <openssl/evp.h>' \
    frontend/main.c '#include <p11-kit/pkcs11.h>' common/b.c '#include "y.h"' tests/CMakeLists.txt 'return()' \
    frontend/x.c '#include <seccomp.h>'
expect_finding all '^layering: 6 finding\(s\) in 26 sources and 2 CMakeLists.txt$' "one violation of each rule"
for rule in include-cycle crypto-include p11-include seccomp-include common-depends cmake-silent; do
    check "... reported under $rule" grep -q ": $rule: " "$W/all.out"
done
bash "$LINT" "$W/all" >"$W/all.again" 2>&1 || true
check "... and the same output on a second run" cmp "$W/all.out" "$W/all.again"
rc=0
bash "$LINT" "$W/no-such-dir" >/dev/null 2>&1 || rc=$?
is "$rc" 2 "a missing root is an error (exit 2), not a pass"
done_testing
