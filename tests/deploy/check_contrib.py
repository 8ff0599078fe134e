#!/usr/bin/python3
"""Check contrib/: the Grafana dashboard JSON and the Prometheus alert rules parse, have the
shape Grafana and Prometheus need, and every metric they use is one the code exports.

usage: check_contrib.py SOURCE_DIR [DASHBOARD.json] [RULES.yml]
Prints one line per problem and exits 1, or prints a summary and exits 0. The exported
names are read from the C sources (frontend/metrics.c, signer/metrics.c): every string
literal keyless_*; a histogram family (a '# TYPE NAME histogram' in the same file, or its
name passed to put_histo) also exports NAME_bucket, NAME_sum and NAME_count.
Needs /usr/bin/python3 with PyYAML (Debian python3-yaml).
"""
import json
import os
import re
import sys

import yaml

# Series that are not ours but that rules may use: Prometheus' own per target.
BUILTIN = {"up"}
# PromQL functions, keywords and aggregations that look like identifiers.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "increase", "irate", "time", "or", "and",
    "unless", "on", "ignoring", "group_left", "group_right", "histogram_quantile", "clamp_min", "clamp_max",
    "abs", "absent", "le", "bool", "offset", "label_values", "vector", "scalar", "topk", "bottomk", "delta",
}
METRIC = re.compile(r"\b(keyless_[a-z0-9_]+)\b")


def exported(src):
    names = set()
    for rel in ("frontend/metrics.c", "signer/metrics.c"):
        text = open(os.path.join(src, rel), encoding="utf-8").read()
        histos = set(re.findall(r"# TYPE (keyless_[a-z0-9_]+) histogram", text))
        histos |= set(re.findall(r'put_histo\(\s*out,\s*"(keyless_[a-z0-9_]+)"', text))
        for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', text):
            for n in METRIC.findall(lit):
                names.add(n)
        for h in histos:
            names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


def check_expr(where, expr, names, problems):
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}") or expr.count("[") != expr.count("]"):
        problems.append("%s: unbalanced brackets in %r" % (where, expr))
    used = set(METRIC.findall(expr))
    for n in sorted(used - names):
        problems.append("%s: metric %s is not exported by the code" % (where, n))
    # A bare identifier followed by { or [ that is neither ours nor a builtin: a typo'd series.
    for ident in re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*[{\[]", expr):
        if not ident.startswith("keyless_") and ident not in BUILTIN and ident not in PROMQL_WORDS:
            problems.append("%s: unknown series %s" % (where, ident))
    return used


def check_rules(path, names, problems):
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    used = set()
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        problems.append("%s: no groups" % path)
        return used, 0
    n = 0
    alerts = set()
    for g in doc["groups"]:
        if not isinstance(g, dict) or not g.get("name") or not isinstance(g.get("rules"), list):
            problems.append("%s: a group without name or rules" % path)
            continue
        for r in g["rules"]:
            n += 1
            where = "%s: %s" % (path, r.get("alert", "rule %d" % n) if isinstance(r, dict) else n)
            if not isinstance(r, dict) or set(r) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}:
                problems.append("%s: unexpected keys %s" % (where, sorted(set(r) if isinstance(r, dict) else [])))
                continue
            if not r.get("alert") or not isinstance(r.get("expr"), str) or not r["expr"].strip():
                problems.append("%s: alert and expr are required" % where)
                continue
            if r["alert"] in alerts:
                problems.append("%s: alert name used twice" % where)
            alerts.add(r["alert"])
            if "for" in r and not re.fullmatch(r"[0-9]+[smhd]", str(r["for"])):
                problems.append("%s: for %r is not a duration" % (where, r["for"]))
            if (r.get("labels") or {}).get("severity") not in ("warning", "critical"):
                problems.append("%s: labels.severity must be warning or critical" % where)
            if not (r.get("annotations") or {}).get("summary"):
                problems.append("%s: annotations.summary is required" % where)
            used |= check_expr(where, r["expr"], names, problems)
    return used, n


def check_dashboard(path, names, problems):
    d = json.load(open(path, encoding="utf-8"))
    used = set()
    for k in ("title", "uid", "panels", "schemaVersion"):
        if k not in d:
            problems.append("%s: no %s" % (path, k))
    ids = set()
    panels = d.get("panels") or []
    for p in panels:
        where = "%s: panel %r" % (path, p.get("title"))
        if p.get("id") in ids:
            problems.append("%s: id %s used twice" % (where, p.get("id")))
        ids.add(p.get("id"))
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append("%s: gridPos needs x, y, w, h" % where)
        targets = p.get("targets") or []
        if not targets:
            problems.append("%s: no targets" % where)
        for t in targets:
            if not isinstance(t.get("expr"), str) or not t["expr"].strip():
                problems.append("%s: a target without expr" % where)
                continue
            used |= check_expr(where, t["expr"].replace("$__rate_interval", "5m"), names, problems)
    for v in (d.get("templating") or {}).get("list", []):
        if isinstance(v.get("query"), str):
            used |= check_expr("%s: variable %s" % (path, v.get("name")), v["query"], names, problems)
    return used, len(panels)


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2])
        return 2
    src = argv[1]
    dash = argv[2] if len(argv) > 2 else os.path.join(src, "contrib/grafana/keyless-dashboard.json")
    rules = argv[3] if len(argv) > 3 else os.path.join(src, "contrib/prometheus/keyless-alerts.yml")
    names = exported(src)
    problems = []
    if len(names) < 10:
        problems.append("only %d metric names found in the sources: the extraction is broken" % len(names))
    try:
        used_d, n_panels = check_dashboard(dash, names, problems)
    except (OSError, ValueError) as e:
        problems.append("%s: %s" % (dash, e))
        used_d, n_panels = set(), 0
    try:
        used_r, n_rules = check_rules(rules, names, problems)
    except (OSError, yaml.YAMLError) as e:
        problems.append("%s: %s" % (rules, e))
        used_r, n_rules = set(), 0
    for p in problems:
        print(p)
    if problems:
        return 1
    print("contrib: %d panels, %d rules, %d metrics used of %d exported" %
          (n_panels, n_rules, len(used_d | used_r), len(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
