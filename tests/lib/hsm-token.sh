#!/usr/bin/env bash
# tests/lib/hsm-token.sh - one prepared SoftHSM2 token per test run, copied per test.
#
#   hsm-token.sh make TEMPLATE   hsm-setup/setup.sh --dir TEMPLATE (with its check.sh), from
#                                scratch; TEMPLATE/.ready marks a finished one. With
#                                KL_HSM_PREPARED naming a ready template of this same test
#                                command (tests/run.sh: the sanitizer pass's, for the release
#                                pass), TEMPLATE is a copy of that one instead
#   hsm-token.sh copy DIR        DIR becomes a copy of $KL_HSM_TEMPLATE (token, PINs, pki/),
#                                its softhsm2.conf and env naming DIR; exit 3 when there is no
#                                ready template (the caller then runs setup.sh itself)
#
# setup.sh costs seconds of CPU (key generation, certificates, 26 checks) and every signer
# and e2e test needs a token of its own (each may lock, re-PIN or fill it): the ctest fixture
# hsm_token makes one per build tree, the tests copy it (milliseconds). A copy is a token
# setup.sh made: same layout, same labels and ids, its own files. Outside ctest
# (KL_HSM_TEMPLATE unset) the tests make their own token as before.
set -eu
top=${KL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

# copy_token FROM DIR: DIR (new) holds FROM's token, PINs and pki/, its paths naming DIR.
copy_token() {
    mkdir -p -- "$2"
    cp -a -- "$1/." "$2/"
    rm -f -- "$2/.ready"
    sed -i "s|$1|$2|g" "$2/softhsm2.conf" "$2/env"
}

case ${1:-} in
make)
    tpl=$2
    rm -rf -- "$tpl"
    mkdir -p -- "$(dirname "$tpl")"
    if [ -n "${KL_HSM_PREPARED:-}" ] && [ -f "$KL_HSM_PREPARED/.ready" ] && [ "$KL_HSM_PREPARED" != "$tpl" ]; then
        copy_token "$KL_HSM_PREPARED" "$tpl"
        : >"$tpl/.ready"
        echo "hsm-token: template $tpl ready (a copy of $KL_HSM_PREPARED)"
        exit 0
    fi
    timeout 300 bash "$top/hsm-setup/setup.sh" --dir "$tpl" >"$tpl.log" 2>&1 || {
        cat "$tpl.log" >&2
        exit 1
    }
    # The copies rewrite these two files; nothing else may name the template's path.
    if grep -rlF -- "$tpl" "$tpl" | grep -vxF -e "$tpl/softhsm2.conf" -e "$tpl/env" >&2; then
        echo "hsm-token: the files above name $tpl: a copy would point at the template" >&2
        exit 1
    fi
    : >"$tpl/.ready"
    echo "hsm-token: template $tpl ready"
    ;;
copy)
    dir=$2
    tpl=${KL_HSM_TEMPLATE:-}
    [ -n "$tpl" ] && [ -f "$tpl/.ready" ] || exit 3
    copy_token "$tpl" "$dir"
    ;;
*)
    echo "usage: hsm-token.sh make TEMPLATE | copy DIR" >&2
    exit 2
    ;;
esac
