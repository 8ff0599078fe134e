# shellcheck shell=bash
# tests/lib/tap.sh - the one TAP library of every shell test (sourced by bash).
#
# Each function has one meaning, in every script:
#   ok STATUS DESC...   passes iff STATUS is the integer 0 (an exit status: write
#                       "rc=0; cmd || rc=$?; ok $rc DESC"). Anything that is not an integer,
#                       such as a forgotten status ("ok DESC"), is a failed check.
#   not_ok DESC...      a failed check, for a condition tested by hand.
#   check DESC CMD...   runs CMD in this shell, its output kept aside and shown only when
#                       it fails; passes iff CMD exits 0.
#   is GOT WANT DESC... passes iff the two strings are equal; shows both otherwise.
#   skip REASON...      "ok N # SKIP REASON": a check that could not run here.
#   diag MSG...         a "# MSG" comment line.
#   bail MSG...         "Bail out! MSG", then exit 1.
#   done_testing        prints the plan 1..N and exits: 1 if a check failed or none was
#                       made, 77 (ctest's SKIP_RETURN_CODE) if every check was a skip, else 0.
#   tap_at_exit CMD     CMD (a string, eval'd) runs when the script exits: tap.sh owns the
#                       EXIT trap, so scripts register their cleanup here instead of trapping.
#   tap_on_failure FN   FN (a function) prints diagnostics (daemon logs...) on bail or on
#                       a failed done_testing.
# The check functions return 0 whatever the verdict, so "set -e" scripts go on after a
# failure and report every check. A script that exits 0 without calling done_testing
# (a forgotten plan, an early "exit 0") is turned into a failure by the EXIT trap.

TAP_N=0
TAP_FAILED=0
TAP_SKIPPED=0
TAP_DONE=0
TAP_EXIT_CMDS=()
TAP_FAILURE_FN=
TAP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kl-tap.XXXXXX")

tap_at_exit() {
    TAP_EXIT_CMDS+=("$1")
}

tap_on_failure() {
    TAP_FAILURE_FN=$1
}

tap_exit_() {
    local rc=$? c
    # Cleanups run last-registered first, and never change the verdict.
    for ((c = ${#TAP_EXIT_CMDS[@]} - 1; c >= 0; c--)); do
        eval "${TAP_EXIT_CMDS[$c]}" || true
    done
    rm -rf -- "$TAP_TMP"
    if [ "$TAP_DONE" = 0 ] && [ "$rc" = 0 ]; then
        echo "# the script exited without done_testing after $TAP_N checks"
        rc=1
    fi
    exit "$rc"
}
trap tap_exit_ EXIT

tap_result_() { # PASS(0|1) DESC
    TAP_N=$((TAP_N + 1))
    if [ "$1" = 1 ]; then
        echo "ok $TAP_N - $2"
    else
        TAP_FAILED=$((TAP_FAILED + 1))
        echo "not ok $TAP_N - $2"
    fi
}

ok() {
    local status=${1-}
    shift || true
    if ! [[ $status =~ ^[0-9]+$ ]]; then
        tap_result_ 0 "$status${*:+ $*}"
        echo "#   ok takes an exit status first (ok STATUS DESC), got '$status'"
        return 0
    fi
    if [ "$status" -eq 0 ]; then tap_result_ 1 "$*"; else tap_result_ 0 "$*"; fi
    return 0
}

not_ok() {
    tap_result_ 0 "$*"
    return 0
}

check() {
    local desc=$1 rc=0
    shift
    if [ $# -eq 0 ]; then
        tap_result_ 0 "$desc"
        echo "#   check needs a command (check DESC CMD...)"
        return 0
    fi
    "$@" >"$TAP_TMP/check.out" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        tap_result_ 1 "$desc"
    else
        tap_result_ 0 "$desc"
        echo "#   exit status $rc of: $*"
        sed 's/^/#   /' "$TAP_TMP/check.out" | head -n 40
    fi
    return 0
}

is() {
    local got=$1 want=$2
    shift 2
    if [ "$got" = "$want" ]; then
        tap_result_ 1 "$*"
    else
        tap_result_ 0 "$*"
        echo "#   got  '$got'"
        echo "#   want '$want'"
    fi
    return 0
}

skip() {
    TAP_N=$((TAP_N + 1))
    TAP_SKIPPED=$((TAP_SKIPPED + 1))
    echo "ok $TAP_N # SKIP $*"
}

diag() {
    echo "# $*"
}

bail() {
    echo "Bail out! $*"
    if [ -n "$TAP_FAILURE_FN" ]; then "$TAP_FAILURE_FN" || true; fi
    TAP_DONE=1
    exit 1
}

done_testing() {
    TAP_DONE=1
    echo "1..$TAP_N"
    if [ "$TAP_FAILED" -ne 0 ] || [ "$TAP_N" -eq 0 ]; then
        if [ -n "$TAP_FAILURE_FN" ]; then "$TAP_FAILURE_FN" || true; fi
        if [ "$TAP_N" -eq 0 ]; then
            echo "# no check was made"
        else
            echo "# $TAP_FAILED of $TAP_N checks failed"
        fi
        exit 1
    fi
    if [ "$TAP_SKIPPED" -eq "$TAP_N" ]; then
        echo "# every check was skipped"
        exit 77
    fi
    exit 0
}
