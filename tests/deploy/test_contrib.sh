#!/usr/bin/env bash
# tests/deploy/test_contrib.sh: contrib/grafana/keyless-dashboard.json and
# contrib/prometheus/keyless-alerts.yml parse and use only metrics the code exports
# (check_contrib.py); the checker itself fails on an unknown metric, a typo'd series, a
# rule without severity, bad YAML and bad JSON.
set -eu
. "$KL_SOURCE_DIR/tests/lib/tap.sh"
SRC=$KL_SOURCE_DIR
PY=/usr/bin/python3
CHECK="$SRC/tests/deploy/check_contrib.py"
if ! "$PY" -c 'import yaml' 2>/dev/null; then
    skip "no PyYAML for $PY (Debian python3-yaml, .ci/deps.sh)"
    done_testing
fi
T=$TAP_TMP
DASH=$SRC/contrib/grafana/keyless-dashboard.json
RULES=$SRC/contrib/prometheus/keyless-alerts.yml

check "dashboard and rules parse; every metric they use is exported" timeout 30 "$PY" "$CHECK" "$SRC"
out=$(timeout 30 "$PY" "$CHECK" "$SRC")
check "the check saw panels, rules and metrics ($out)" grep -Eq '^contrib: [1-9][0-9]* panels, [1-9][0-9]* rules, [1-9][0-9]* metrics used' <<<"$out"
for a in KeylessSignerDown KeylessSignerRefusalsRising KeylessAuditFailing KeylessCertificateExpiring KeylessHSMErrors; do
    check "alert $a is there (the issue's list)" grep -q "alert: $a\$" "$RULES"
done

# Negative cases: the checker must catch each of these.
fails() { # DESC EXPECTED-TEXT DASHBOARD RULES
    local out rc=0
    out=$(timeout 30 "$PY" "$CHECK" "$SRC" "$3" "$4" 2>&1) || rc=$?
    if [ "$rc" = 1 ] && grep -qF -- "$2" <<<"$out"; then ok 0 "$1"; else not_ok "$1 (rc=$rc: $out)"; fi
}
sed 's/keyless_signer_audit_failures_total/keyless_signer_audit_failure_total/' "$RULES" >"$T/r1.yml"
fails "an alert on a metric the code does not export" "keyless_signer_audit_failure_total is not exported" "$DASH" "$T/r1.yml"
sed 's/up{job=/upp{job=/' "$RULES" >"$T/r2.yml"
fails "a typo'd builtin series" "unknown series upp" "$DASH" "$T/r2.yml"
sed '0,/severity: critical/s//severity: page/' "$RULES" >"$T/r3.yml"
fails "a rule without a known severity" "labels.severity" "$DASH" "$T/r3.yml"
printf 'groups:\n  - name: x\n\trules: []\n' >"$T/r4.yml"
fails "YAML that does not parse" "r4.yml" "$DASH" "$T/r4.yml"
sed 's/rate(keyless_signer_requests_total{status!="ok"}\[10m\])/rate(keyless_signer_requests_total{status!="ok"}[10m]/' "$RULES" >"$T/r5.yml"
fails "unbalanced parentheses" "unbalanced" "$DASH" "$T/r5.yml"
head -c 500 "$DASH" >"$T/d1.json"
fails "a truncated dashboard" "d1.json" "$T/d1.json" "$RULES"
sed 's/keyless_frontend_connections_open/keyless_active_connections/' "$DASH" >"$T/d2.json"
fails "a panel on an old metric name" "keyless_active_connections is not exported" "$T/d2.json" "$RULES"
done_testing
