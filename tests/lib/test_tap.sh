#!/usr/bin/env bash
# tests/lib/test_tap.sh - self-test of tests/lib/tap.sh: small child scripts use the
# library (directly, through tests/e2e/lib.sh and through tests/hsm-setup/tap.sh), and
# their exit status and TAP output are compared with what the library promises; above
# all, that a false condition fails the script whatever function reported it.
# This script keeps its own verdict by hand instead of sourcing tap.sh: a broken library
# must not be able to pass its own test.
set -u
top=${KL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kl-test-tap.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
n=0
failed=0

# expect DESC WANT_RC REGEX BODY: a child running BODY after sourcing the library exits
# WANT_RC and prints a line matching the extended REGEX ("" for no output check).
expect() {
    local desc=$1 want=$2 regex=$3 body=$4 rc=0 pass=1
    n=$((n + 1))
    printf 'set -eu\n. "$KL_SOURCE_DIR/tests/lib/tap.sh"\n%s\n' "$body" >"$tmp/child.sh"
    KL_SOURCE_DIR=$top bash "$tmp/child.sh" >"$tmp/out" 2>&1 || rc=$?
    [ "$rc" = "$want" ] || pass=0
    if [ -n "$regex" ] && ! grep -Eq -- "$regex" "$tmp/out"; then pass=0; fi
    if [ $pass = 1 ]; then
        echo "ok $n - $desc"
    else
        failed=$((failed + 1))
        echo "not ok $n - $desc"
        echo "#   exit $rc (want $want), output (want a line matching '$regex'):"
        sed 's/^/#     /' "$tmp/out"
    fi
}

# The call sites that could not fail before this library.
expect "check with a false command fails the script" 1 '^not ok 1 - false is false$' \
    'check "false is false" false; done_testing'
expect "ok DESC (the old e2e form, which always passed) now fails" 1 '^not ok 1 - forgot the status' \
    'ok "forgot the status"; done_testing'
expect "ok 1 DESC fails" 1 '^not ok 1 - status one$' 'ok 1 "status one"; done_testing'
expect "ok with a non-integer status fails" 1 '^not ok 1 ' 'ok yes "a word is no status"; done_testing'
expect "not_ok fails" 1 '^not ok 2 - by hand$' 'ok 0 "first"; not_ok "by hand"; done_testing'
expect "is with different strings fails and shows both" 1 "^#   got  'a'$" 'is a b "a is b"; done_testing'
expect "check with no command fails" 1 '^not ok 1 - nothing to run$' 'check "nothing to run"; done_testing'
expect "a failed check shows the command's status and output" 1 '^#   detail$' \
    "check \"shows output\" sh -c 'echo detail; exit 3'; done_testing"
expect "... including the exit status" 1 '^#   exit status 3 of: ' \
    "check \"shows status\" sh -c 'exit 3'; done_testing"

# Plans and exits.
expect "passing checks exit 0 with the plan" 0 '^1\.\.3$' 'ok 0 "zero"; check "true" true; is a a "same"; done_testing'
expect "a script that checked nothing fails" 1 '^# no check was made$' 'done_testing'
expect "only skips: exit 77 (ctest SKIP_RETURN_CODE)" 77 '^ok 1 # SKIP no tool here$' 'skip "no tool here"; done_testing'
expect "a skip does not hide a failure" 1 '^not ok 2 - real$' 'skip "x"; ok 1 "real"; done_testing'
expect "exit 0 without done_testing fails" 1 '^# the script exited without done_testing after 1 checks$' \
    'ok 0 "one"; exit 0'
expect "a failing script keeps its own status" 3 '' 'ok 0 "one"; exit 3'
expect "bail exits 1" 1 '^Bail out! boom$' 'ok 0 "before"; bail "boom"; ok 0 "never"'
expect "under set -e, a failed check does not stop the script" 1 '^ok 2 - after$' \
    'check "false" false; ok 0 "after"; done_testing'
expect "check runs CMD in this shell (a function's variables stay)" 0 '^ok 2 - seen$' \
    'f() { X=1; }; check "f" f; is "$X" 1 "seen"; done_testing'
expect "tap_at_exit runs cleanups, last first, without changing the verdict" 0 '^second-first$' \
    'tap_at_exit "echo first"; tap_at_exit "printf second-; false"; ok 0 "x"; done_testing'
expect "tap_on_failure prints diagnostics on a failed run" 1 '^HOOK$' \
    'h() { echo HOOK; }; tap_on_failure h; not_ok "x"; done_testing'
expect "... and not on a passing one" 0 '' \
    'h() { echo HOOK; exit 9; }; tap_on_failure h; ok 0 "x"; done_testing'

# The two users of the library: their scripts get the same meaning.
expect "tests/e2e/lib.sh: ok DESC fails" 1 '^not ok 1 - previously always passed' \
    '. "$KL_SOURCE_DIR/tests/e2e/lib.sh"; ok "previously always passed"; done_testing'
expect "tests/e2e/lib.sh: check false fails, its temp dir is removed" 1 '^not ok 1 - e2e false$' \
    '. "$KL_SOURCE_DIR/tests/e2e/lib.sh"; echo "$T" >'"$tmp"'/e2e.T; check "e2e false" false; done_testing'
n=$((n + 1))
if [ -s "$tmp/e2e.T" ] && [ ! -e "$(cat "$tmp/e2e.T")" ]; then
    echo "ok $n - ... and tests/e2e/lib.sh's cleanup ran at exit"
else
    failed=$((failed + 1))
    echo "not ok $n - ... and tests/e2e/lib.sh's cleanup ran at exit"
fi
expect "tests/hsm-setup/tap.sh: ok 1 fails" 1 '^not ok 1 - hsm status one$' \
    '. "$KL_SOURCE_DIR/tests/hsm-setup/tap.sh"; ok 1 "hsm status one"; done_testing'
expect "tests/hsm-setup/tap.sh: passing checks pass" 0 '^1\.\.2$' \
    '. "$KL_SOURCE_DIR/tests/hsm-setup/tap.sh"; ok 0 "a"; check "dir" test -d "$T"; done_testing'

echo "1..$n"
if [ "$failed" -ne 0 ] || [ "$n" -eq 0 ]; then
    echo "# $failed of $n checks failed"
    exit 1
fi
