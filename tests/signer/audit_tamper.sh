#!/usr/bin/env bash
# audit_tamper.sh - the two audit verifiers agree, through their command lines:
#   keyless-signer audit-verify   (the C verifier in signer/audit_verify.c)
#   python3 signer/audit-verify.py (the independent one, stdlib only)
# on every good and tampered log that test_audit makes (it keeps them with
# KL_KEEP_TMP=1), plus a few tamperings done here with sed on a log written by the
# C writer. TAP output (tests/lib/tap.sh); exit status non-zero on any disagreement.
set -u
top=${KL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${KL_BUILD_DIR:-$top/build}
signer=$build/bin/keyless-signer
test_audit=$build/tests/test_audit
py=$top/signer/audit-verify.py
. "$top/tests/lib/tap.sh"

# Prefer the distribution's interpreter: a version-manager shim costs a second per run.
python3=$(command -v /usr/bin/python3 || command -v python3 || true)
if [ -z "$python3" ]; then
    skip "python3 not found"
    done_testing
fi
for f in "$signer" "$test_audit"; do
    [ -x "$f" ] || bail "$f not built"
done

tmp=$(mktemp -d)
tap_at_exit 'rm -rf "$tmp"'

# The verdict: the OK line as is, or "FAIL: FILE:LINE:" without the message.
verdict() { head -n 1 | sed -E 's/^(FAIL: [^:]*:[^:]*:).*/\1/'; }

# compare LABEL EXPECT-HEAD-or-- FILE...
compare() {
    local label=$1 head=$2
    shift 2
    local args=()
    [ "$head" != "-" ] && args=(--expect-head "$head")
    local c p cs ps
    c=$("$signer" audit-verify "${args[@]}" "$@" 2>&1)
    cs=$?
    c=$(printf '%s\n' "$c" | verdict)
    p=$("$python3" "$py" "${args[@]}" "$@" 2>&1)
    ps=$?
    p=$(printf '%s\n' "$p" | verdict)
    is "exit $cs: $c" "exit $ps: $p" "$label: C (got) and Python (want) both say ${c:0:60}"
}

# reports_line FILE LINE: the CLI rejects FILE (exit 1) and names line LINE.
reports_line() {
    local out rc=0
    out=$("$signer" audit-verify "$1") || rc=$?
    [ "$rc" = 1 ] && grep -q ":$2: " <<<"$out"
}

# 1. Every case test_audit checked (its cases.txt: HEAD<TAB>FILE<TAB>FILE...).
mkdir -p "$tmp/t"
rc=0
TMPDIR=$tmp/t KL_KEEP_TMP=1 "$test_audit" >"$tmp/test_audit.out" 2>&1 || rc=$?
ok "$rc" "test_audit ran"
[ "$rc" = 0 ] || sed 's/^/#   /' "$tmp/test_audit.out"
cases=$(ls "$tmp"/t/kl-audit-*/cases.txt 2>/dev/null | head -n 1)
check "test_audit kept its cases" test -n "$cases"
count=0
while IFS=$'\t' read -r head files; do
    count=$((count + 1))
    # shellcheck disable=SC2086 # files are tab-separated paths without spaces
    compare "test_audit case $count" "$head" $(printf '%s' "$files" | tr '\t' ' ')
done <"${cases:-/dev/null}"
check "at least 20 cases compared ($count)" test "$count" -ge 20

# 2. Tamper by hand with standard tools on a log the C writer made.
good=$(ls "$tmp"/t/kl-audit-*/mode-NONE.log 2>/dev/null | head -n 1)
if [ -n "$good" ]; then
    lines=$(wc -l <"$good")
    rc=0
    "$signer" audit-verify "$good" >"$tmp/good.out" || rc=$?
    ok "$rc" "the C writer's log verifies with the CLI (exit 0)"
    check "record count = line count ($lines)" grep -q "^OK: $lines records" "$tmp/good.out"
    headhex=$(sed -E 's/.*head ([0-9a-f]{64}).*/\1/' "$tmp/good.out")
    compare "good log" - "$good"
    compare "good log, --expect-head" "$headhex" "$good"
    sed '777d' "$good" >"$tmp/del.log"
    compare "sed: delete line 777" - "$tmp/del.log"
    check "deleted line rejected, reported at line 777" reports_line "$tmp/del.log" 777
    sed '1234s/"latency_us":[0-9]*/"latency_us":0/' "$good" >"$tmp/edit.log"
    compare "sed: edit a field of line 1234" - "$tmp/edit.log"
    check "edit rejected, reported at line 1234" reports_line "$tmp/edit.log" 1234
    awk 'NR == 100 { held = $0; next } NR == 101 { print; print held; next } { print }' "$good" >"$tmp/swap.log"
    compare "awk: swap lines 100 and 101" - "$tmp/swap.log"
    check "swap rejected, reported at line 100" reports_line "$tmp/swap.log" 100
    head -n $((lines - 1)) "$good" >"$tmp/cut.log"
    compare "head: drop the last line" - "$tmp/cut.log"
    compare "head: drop the last line, --expect-head" "$headhex" "$tmp/cut.log"
    rc=0
    "$signer" audit-verify --expect-head "$headhex" "$tmp/cut.log" >/dev/null || rc=$?
    is "$rc" 1 "dropped last line: CLI exits 1 with --expect-head"
    head -c -10 "$good" >"$tmp/trunc.log"
    compare "truncate mid-line" - "$tmp/trunc.log"
else
    not_ok "test_audit kept mode-NONE.log"
fi

done_testing
