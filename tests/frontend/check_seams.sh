#!/bin/sh
# The frontend's seams (issue 10): the engine's only public header is tls/tls.h, libcrypto
# and libsodium are included only by frontend/tls/crypto.c, and the connection does not
# know the worker (conn.c gets a conn_env). Prints each offending line; exit 1 if any.
src=${1:?usage: check_seams.sh SOURCE_DIR}
cd "$src/frontend" || exit 2
bad=0
report() { echo "not ok - $1"; echo "$2" | sed 's/^/#   /'; bad=1; }
out=$(grep -n '#include "tls/' ./*.c ./*.h | grep -v '"tls/tls.h"')
[ -z "$out" ] || report "frontend files outside tls/ include only tls/tls.h" "$out"
out=$(grep -rnE '#include <(openssl/|sodium)' . | grep -v '^./tls/crypto.c:')
[ -z "$out" ] || report "libcrypto/libsodium headers only in tls/crypto.c" "$out"
out=$(grep -n '#include "worker.h"' conn.c conn.h)
[ -z "$out" ] || report "conn does not include worker.h" "$out"
[ $bad = 0 ] && echo "ok - frontend seams hold"
exit $bad
