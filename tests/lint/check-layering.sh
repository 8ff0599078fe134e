#!/usr/bin/env bash
# tests/lint/check-layering.sh [ROOT] - the layering rules of the tree, checked from the
# text of the sources (no build needed; about 0.1 s). Exit 1 with one line per finding,
# "layering: FILE: RULE: detail", or exit 0 with a one-line summary.
#
#   include-cycle    modules (a .c/.h pair: frontend/conn = conn.c + conn.h) whose
#                    #include "..." lines form a cycle of two or more modules, in
#                    common/, proto/, frontend/, frontend/tls/ and signer/
#   crypto-include   <openssl/...> or <sodium.h> in a product source not in CRYPTO_ALLOWED
#   p11-include      a p11-kit or pkcs11 header in a product source not in P11_ALLOWED
#   seccomp-include  <seccomp.h> in a product source not in SECCOMP_ALLOWED (libseccomp is
#                    the one third-party library common/ may use, in sandbox.c only: both
#                    daemons confine themselves with it, issue 13)
#   common-depends   common/ including a header of frontend/, signer/ or proto/
#   engine-internal  a frontend file outside frontend/tls/ including an engine header
#                    other than tls/tls.h (the engine's only public interface)
#   cmake-silent     if(EXISTS ...) or return() in a CMakeLists.txt: a missing file
#                    must fail the configure step, not drop a binary and its tests
#
# Product sources are the .c and .h files under PRODUCT_DIRS (tests/ and bench code are not).
set -eu

# The only files that may include libcrypto / libsodium headers. signer/crypto.c is the
# signer's one crypto file; until it exists, no other signer file is allowed either.
CRYPTO_ALLOWED="frontend/tls/crypto.c signer/crypto.c"
# The only file that may include p11-kit / PKCS#11 headers.
P11_ALLOWED="signer/p11_backend.c"
# The only file that may include libseccomp's header.
SECCOMP_ALLOWED="common/sandbox.c"
# The product's C code.
PRODUCT_DIRS="common proto frontend signer"

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -d "$root" ] || {
    echo "layering: $root: not a directory" >&2
    exit 2
}
export CRYPTO_ALLOWED P11_ALLOWED SECCOMP_ALLOWED PRODUCT_DIRS
# The distribution's interpreter when there is one: a version-manager shim costs a second.
py=$(command -v /usr/bin/python3 || command -v python3)
exec "$py" -S - "$root" <<'PY'
import os
import re
import sys

root = sys.argv[1]
crypto_allowed = set(os.environ["CRYPTO_ALLOWED"].split())
p11_allowed = set(os.environ["P11_ALLOWED"].split())
seccomp_allowed = set(os.environ["SECCOMP_ALLOWED"].split())
product_dirs = os.environ["PRODUCT_DIRS"].split()

findings = []


def finding(path, rule, detail):
    findings.append("layering: %s: %s: %s" % (path, rule, detail))


def walk(top, keep):
    """Relative paths under root/top for which keep(name) holds, sorted; skips build
    trees and hidden directories."""
    out = []
    base = os.path.join(root, top)
    for d, subdirs, files in os.walk(base):
        subdirs[:] = sorted(s for s in subdirs if not s.startswith(".") and not s.startswith("build"))
        for f in files:
            if keep(f):
                out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


sources = []
for top in product_dirs:
    if os.path.isdir(os.path.join(root, top)):
        sources += walk(top, lambda f: f.endswith((".c", ".h")))

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def strip_c_comments(text):
    # Keeps line numbers: a block comment's newlines stay.
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


includes = {}  # path -> [(line, kind, name)]
for path in sources:
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as fh:
        text = strip_c_comments(fh.read())
    lst = []
    for n, line in enumerate(text.split("\n"), 1):
        m = INCLUDE.match(line)
        if m:
            lst.append((n, m.group(1), m.group(2)))
    includes[path] = lst

source_set = set(sources)


def area(path):
    return path.split("/", 1)[0]


def search_dirs(path):
    """Where an #include "x" of path is looked up, as the build does: the including
    file's directory and its parents up to its area (frontend/tls -> frontend), then
    common/ and proto/ (the libraries every area links). common/ files get every area,
    so that rule common-depends sees what they reach for."""
    d = os.path.dirname(path)
    dirs = []
    while d:
        dirs.append(d)
        if "/" not in d:
            break
        d = os.path.dirname(d)
    extra = ["common", "proto"]
    if area(path) == "common":
        extra = ["common", "proto", "frontend", "frontend/tls", "signer"]
    return dirs + [x for x in extra if x not in dirs]


def resolve(path, name):
    for d in search_dirs(path):
        cand = os.path.normpath(os.path.join(d, name))
        if cand in source_set:
            return cand
    return None


def module(path):
    return os.path.splitext(path)[0]


# Rules b and c: third-party headers where they do not belong.
CRYPTO_HDR = re.compile(r"^(openssl/.+|sodium\.h|sodium/.+)$")
P11_HDR = re.compile(r"(p11-kit|pkcs11)", re.I)
SECCOMP_HDR = re.compile(r"^seccomp\.h$")
for path in sources:
    for n, kind, name in includes[path]:
        if CRYPTO_HDR.match(name) and path not in crypto_allowed:
            finding("%s:%d" % (path, n), "crypto-include",
                    "#include %s%s%s outside %s" % (kind, name, ">" if kind == "<" else '"',
                                                    ", ".join(sorted(crypto_allowed))))
        if SECCOMP_HDR.match(name) and path not in seccomp_allowed:
            finding("%s:%d" % (path, n), "seccomp-include",
                    "#include %s%s%s outside %s" % (kind, name, ">" if kind == "<" else '"',
                                                    ", ".join(sorted(seccomp_allowed))))
        if P11_HDR.search(name) and path not in p11_allowed:
            finding("%s:%d" % (path, n), "p11-include",
                    "#include %s%s%s outside %s" % (kind, name, ">" if kind == "<" else '"',
                                                    ", ".join(sorted(p11_allowed))))

# Rule d: common/ depends on nothing else of ours.
for path in sources:
    if area(path) != "common":
        continue
    for n, kind, name in includes[path]:
        target = resolve(path, name) if kind == '"' else None
        outside = target is not None and area(target) != "common"
        generated = name.endswith(".pb-c.h")
        literal = re.match(r"^(\.\./)*(frontend|signer|proto)/", name)
        if outside or generated or literal:
            finding("%s:%d" % (path, n), "common-depends",
                    '#include "%s" (%s): common/ must not depend on frontend/, signer/ or proto/'
                    % (name, target or "generated or out-of-tree"))

# Rule e: outside the engine, only its public header.
for path in sources:
    if area(path) != "frontend" or path.startswith("frontend/tls/"):
        continue
    for n, kind, name in includes[path]:
        target = resolve(path, name) if kind == '"' else None
        if target is not None and target.startswith("frontend/tls/") and target != "frontend/tls/tls.h":
            finding("%s:%d" % (path, n), "engine-internal",
                    '#include "%s": outside frontend/tls/ only tls/tls.h is public' % name)

# Rule a: include cycles between modules.
edges = {}  # module -> {module: (file, line, header)}
for path in sources:
    m = module(path)
    edges.setdefault(m, {})
    for n, kind, name in includes[path]:
        if kind != '"':
            continue
        target = resolve(path, name)
        if target is None:
            continue
        t = module(target)
        if t != m and t not in edges[m]:
            edges[m][t] = (path, n, target)

# Tarjan's strongly connected components, iterative, in sorted order (deterministic).
index, low, on_stack, stack, sccs, counter = {}, {}, set(), [], [], [0]
for start in sorted(edges):
    if start in index:
        continue
    work = [(start, iter(sorted(edges.get(start, {}))))]
    index[start] = low[start] = counter[0]
    counter[0] += 1
    stack.append(start)
    on_stack.add(start)
    while work:
        v, it = work[-1]
        advanced = False
        for w in it:
            if w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on_stack.add(w)
                work.append((w, iter(sorted(edges.get(w, {})))))
                advanced = True
                break
            if w in on_stack:
                low[v] = min(low[v], index[w])
        if advanced:
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[v])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) >= 2:
                sccs.append(sorted(comp))


def shortest_cycle(comp):
    """A shortest cycle through the component's first module, as a list of modules."""
    members = set(comp)
    first = comp[0]
    prev = {first: None}
    queue = [first]
    while queue:
        nxt = []
        for v in queue:
            for w in sorted(edges.get(v, {})):
                if w not in members:
                    continue
                if w == first:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [first]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        queue = nxt
    return comp + [first]


for comp in sorted(sccs):
    cyc = shortest_cycle(comp)
    hops = []
    for a, b in zip(cyc, cyc[1:]):
        f, n, target = edges[a][b]
        hops.append("%s:%d includes %s" % (f, n, target))
    finding(edges[cyc[0]][cyc[1]][0], "include-cycle",
            "%s (%s)%s" % (" -> ".join(cyc), "; ".join(hops),
                           "" if len(comp) == len(cyc) - 1 else "; modules in the cycle: " + " ".join(comp)))

# Rule e: CMake that silently drops code.
CMAKE_BAD = [(re.compile(r"\bif\s*\(\s*(NOT\s+)?EXISTS\b", re.I), "if(EXISTS ...)"),
             (re.compile(r"\breturn\s*\(\s*\)", re.I), "return()")]
cmake_files = walk(".", lambda f: f == "CMakeLists.txt")
for path in cmake_files:
    with open(os.path.join(root, path), encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            code = re.sub(r"#.*", "", line)
            for rx, what in CMAKE_BAD:
                if rx.search(code):
                    finding("%s:%d" % (path, n), "cmake-silent",
                            "%s: list every file and let a missing one fail the configure step" % what)

for f in findings:
    print(f)
if findings:
    print("layering: %d finding(s) in %d sources and %d CMakeLists.txt" % (len(findings), len(sources), len(cmake_files)))
    sys.exit(1)
nmod = len(edges)
print("layering: OK: %d sources (%d modules), %d CMakeLists.txt, no finding" % (len(sources), nmod, len(cmake_files)))
PY
