#!/usr/bin/env bash
# hsm-setup/setup.sh: make (or reuse) the keyless PKCS#11 token, its four
# signing keys, the ticket root secret key and a test PKI for the signing
# keys, then run check.sh. See docs/HSM.md.
#
#   setup.sh [--dir DIR] [--force] [--replace-certs] [--module PATH] [--label LABEL]
#            [--pin-file FILE] [--so-pin-file FILE] [--no-check]
#
# Idempotent: without --force whatever is already there and consistent is
# kept byte for byte; only what is missing or inconsistent is (re)made.
# Files under pki/ that this script did not make (an operator's real
# certificates) are never replaced: a certificate carrying the token key is
# kept as it is, and one that does not (or a CA file that is inconsistent)
# stops the run with one line naming it, unless --replace-certs.
set -eu
set -o pipefail
umask 077

KL_PROG=hsm-setup
KL_HERE=$(cd "$(dirname "$0")" && pwd)
. "$KL_HERE/lib.sh"

usage() {
  cat <<EOF
usage: $0 [--dir DIR] [--force] [--replace-certs] [--module PATH] [--label LABEL]
          [--pin-file FILE] [--so-pin-file FILE] [--no-check]
  --dir DIR           fixture directory (default: <repo>/var/hsm)
  --force             recreate token (SoftHSM) or keys (other modules) and the
                      test PKI (only the pki/ files this script made)
  --replace-certs     also replace pki/ files this script did not make when they
                      do not match the token (default: refuse, naming the file)
  --module PATH       PKCS#11 module (default: \$KL_HSM_MODULE or SoftHSM2)
  --label LABEL       token label (default: \$KL_TOKEN_LABEL or keyless)
  --pin-file FILE     user PIN file of an existing token (default: DIR/user.pin)
  --so-pin-file FILE  SO PIN file used if a SoftHSM token must be initialised
  --no-check          skip the final check.sh run
EOF
}

dir=$(cd "$KL_HERE/.." && pwd)/var/hsm
force=0
replace_certs=0
check=1
KL_HSM_MODULE=${KL_HSM_MODULE:-$KL_DEFAULT_MODULE}
KL_TOKEN_LABEL=${KL_TOKEN_LABEL:-keyless}
opt_pin_file=
opt_so_pin_file=

need_arg() {
  [ "$2" -ge 2 ] || die "option $1 needs an argument"
}
while [ $# -gt 0 ]; do
  case $1 in
  --dir) need_arg "$1" $# && dir=$2 && shift ;;
  --dir=*) dir=${1#*=} ;;
  --force) force=1 ;;
  --replace-certs) replace_certs=1 ;;
  --no-check) check=0 ;;
  --module) need_arg "$1" $# && KL_HSM_MODULE=$2 && shift ;;
  --module=*) KL_HSM_MODULE=${1#*=} ;;
  --label) need_arg "$1" $# && KL_TOKEN_LABEL=$2 && shift ;;
  --label=*) KL_TOKEN_LABEL=${1#*=} ;;
  --pin-file) need_arg "$1" $# && opt_pin_file=$2 && shift ;;
  --pin-file=*) opt_pin_file=${1#*=} ;;
  --so-pin-file) need_arg "$1" $# && opt_so_pin_file=$2 && shift ;;
  --so-pin-file=*) opt_so_pin_file=${1#*=} ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

[ -n "$dir" ] || die "--dir: empty path"
[ -n "$KL_TOKEN_LABEL" ] || die "--label: empty token label"
[ ${#KL_TOKEN_LABEL} -le 32 ] || die "--label $KL_TOKEN_LABEL: longer than 32 bytes (CK_TOKEN_INFO.label)"

# The module is checked before anything is written: a typo must not leave a
# half-made directory behind.
[ -e "$KL_HSM_MODULE" ] || die "--module $KL_HSM_MODULE: no such file"
[ -f "$KL_HSM_MODULE" ] || die "--module $KL_HSM_MODULE: not a regular file"
[ -r "$KL_HSM_MODULE" ] || die "--module $KL_HSM_MODULE: not readable"
KL_HSM_MODULE=$(cd "$(dirname -- "$KL_HSM_MODULE")" && pwd)/$(basename -- "$KL_HSM_MODULE")
for f in "$opt_pin_file" "$opt_so_pin_file"; do
  [ -z "$f" ] || [ -e "$f" ] || die "$([ "$f" = "$opt_pin_file" ] && echo --pin-file || echo --so-pin-file) $f: no such file"
done
abspath() {
  printf '%s/%s' "$(cd "$(dirname -- "$1")" && pwd)" "$(basename -- "$1")"
}
[ -z "$opt_pin_file" ] || opt_pin_file=$(abspath "$opt_pin_file")
[ -z "$opt_so_pin_file" ] || opt_so_pin_file=$(abspath "$opt_so_pin_file")

for t in pkcs11-tool p11tool certtool openssl flock; do
  command -v "$t" >/dev/null 2>&1 || die "$t: not found (install opensc, gnutls-bin, openssl, util-linux)"
done

t_start=$(date +%s.%N)
created_dir=0
[ ! -e "$dir" ] || [ -d "$dir" ] || die "--dir $dir: not a directory"
if [ ! -d "$dir" ]; then
  # Parents made here get the usual 0755, not this script's umask.
  (umask 022 && mkdir -p -- "$(dirname -- "$dir")") 2>/dev/null || die "--dir $dir: cannot create directory"
  # mkdir without -p is atomic: of several first runs started at once,
  # exactly one owns the new directory (and removes it if it fails).
  if (umask 022 && mkdir -- "$dir") 2>/dev/null; then
    created_dir=1
  fi
fi
[ -d "$dir" ] || die "--dir $dir: cannot create directory"
dir=$(cd "$dir" && pwd)
# Secrets are protected file by file (PINs and CA keys 0600, tokens/ 0700);
# the directory itself and pki/ stay readable so that a frontend running
# under another uid can read its certificate chain.
chmod 0755 "$dir" 2>/dev/null || true

# One setup at a time per directory; a second one waits rather than racing
# on the token and the PKI files.
exec 9>"$dir/.lock"
flock -w 120 9 || die "$dir/.lock: another setup.sh still holds the lock after 120 s"

# Under the lock no other run is alive: temp dirs still here are leftovers
# of a killed run.
rm -rf -- "$dir"/.tmp.*
KL_TMP=$(mktemp -d "$dir/.tmp.XXXXXX")
# A run that fails in a directory it created removes that directory: the
# next run then starts from nothing instead of from a half-made fixture.
# In an existing directory every step re-checks what it finds, so partial
# results are either reused when consistent or remade.
on_exit() {
  local rc=$?
  rm -rf -- "$KL_TMP"
  if [ $rc -ne 0 ] && [ $created_dir -eq 1 ]; then
    rm -rf -- "$dir"
  fi
}
trap on_exit EXIT

user_pin_file=${opt_pin_file:-$dir/user.pin}
so_pin_file=${opt_so_pin_file:-$dir/so.pin}
pin_what() {
  if [ "$1" = "$opt_pin_file" ] && [ -n "$opt_pin_file" ]; then
    echo "--pin-file"
  elif [ "$1" = "$opt_so_pin_file" ] && [ -n "$opt_so_pin_file" ]; then
    echo "--so-pin-file"
  else
    echo "PIN file"
  fi
}

# Write $2 to $1 through a rename so that a reader (or a crash) never sees a
# partial file. Leaves an identical file untouched (mtime included).
write_atomic() {
  if [ -f "$1" ] && [ "$(cat -- "$1")" = "$2" ]; then
    return 0
  fi
  printf '%s\n' "$2" >"$KL_TMP/atomic"
  mv -f -- "$KL_TMP/atomic" "$1"
}

# A fresh random PIN: 32 hex digits (128 bits). Only ever written to a 0600
# file through a rename, never printed.
new_pin_file() {
  local pin
  pin=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  [ ${#pin} -eq 32 ] || die "/dev/urandom: short read while making a PIN"
  printf '%s\n' "$pin" >"$KL_TMP/pin"
  pin=
  chmod 0600 "$KL_TMP/pin"
  mv -f -- "$KL_TMP/pin" "$1"
}

softhsm=0
if kl_is_softhsm "$KL_HSM_MODULE"; then
  softhsm=1
fi

# --- SoftHSM: a private token directory -----------------------------------
if [ $softhsm -eq 1 ]; then
  mkdir -p -- "$dir/tokens"
  write_atomic "$dir/softhsm2.conf" "# SoftHSM2 config for the keyless fixture (written by hsm-setup/setup.sh)
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false"
  export SOFTHSM2_CONF=$dir/softhsm2.conf
fi

# --- the module loads ------------------------------------------------------
if ! pkcs11-tool --module "$KL_HSM_MODULE" --show-info </dev/null >"$KL_TMP/p11.out" 2>&1; then
  die "--module $KL_HSM_MODULE: not a loadable PKCS#11 module (pkcs11-tool: $(kl_err_summary "$KL_TMP/p11.out"))"
fi

# --- pki/: which files this script made -------------------------------------
# pki/.hsm-setup-made records "SHA256  NAME" for every pki/ file written here.
# A file is this script's if it is recorded with its current content, or, for
# fixtures made before the record existed, if it is a certificate issued by the
# test PKI (organization "keyless test PKI"). A CA or client key file goes with
# its certificate. Anything else (an operator's certificate) is never replaced
# without --replace-certs.
pki=$dir/pki
made_list=$pki/.hsm-setup-made
file_sum() {
  sha256sum -- "$1" 2>/dev/null | cut -d' ' -f1
}
made_here() { # NAME (under pki/); a missing file is ours to make
  local f=$pki/$1 sum
  [ -e "$f" ] || return 0
  case $1 in *.key) made_here "${1%.key}.pem" && return 0 ;; esac
  sum=$(file_sum "$f")
  if [ -f "$made_list" ] && awk -v s="$sum" -v n="$1" '$1 == s && $2 == n { found = 1 } END { exit !found }' "$made_list"; then
    return 0
  fi
  case $1 in *.key) return 1 ;; esac
  openssl x509 -in "$f" -noout -issuer 2>/dev/null | grep -q 'O *= *keyless test PKI'
}
record_made() { # NAME...: files just written under pki/
  local n
  for n in "$@"; do
    { [ ! -f "$made_list" ] || awk -v n="$n" '$2 != n' "$made_list"; } >"$KL_TMP/made"
    printf '%s  %s\n' "$(file_sum "$pki/$n")" "$n" >>"$KL_TMP/made"
    chmod 0644 "$KL_TMP/made"
    mv -f -- "$KL_TMP/made" "$made_list"
  done
}
# NAME WHY: go on if the file is this script's (or --replace-certs), else stop.
may_replace() {
  made_here "$1" || [ $replace_certs -eq 1 ] ||
    die "$pki/$1: $2; hsm-setup did not make it, so it is not replaced (move it away, or rerun with --replace-certs)"
}

# --- --force: remove what this script owns ---------------------------------
# Only after the module has loaded: a typo in --module must not cost the
# existing fixture.
if [ $force -eq 1 ]; then
  rm -f -- "$dir/env"
  # Only the pki/ files made here: an operator's certificates stay (and are
  # checked against the new keys below).
  if [ -d "$pki" ]; then
    for f in "$pki"/* "$pki"/.hsm-setup-made; do
      [ -e "$f" ] || continue
      n=${f##*/}
      if [ "$n" = .hsm-setup-made ] || made_here "$n"; then
        rm -f -- "$f"
      fi
    done
    rm -f -- "$made_list"
  fi
  if [ $softhsm -eq 1 ]; then
    # The whole token directory is ours (softhsm2.conf points into DIR).
    rm -rf -- "$dir/tokens"
    mkdir -p -- "$dir/tokens"
    [ -n "$opt_pin_file" ] || rm -f -- "$dir/user.pin"
    [ -n "$opt_so_pin_file" ] || rm -f -- "$dir/so.pin"
  fi
fi

# Token state by label: prints "ready", "nopin" (initialised, user PIN not
# set) or nothing, and "free SLOT" for each uninitialised SoftHSM slot.
token_scan() {
  pkcs11-tool --module "$KL_HSM_MODULE" --list-slots </dev/null >"$KL_TMP/slots.out" 2>&1 ||
    die "--module $KL_HSM_MODULE: cannot list slots: $(kl_err_summary "$KL_TMP/slots.out")"
  awk -v want="$KL_TOKEN_LABEL" '
    /^Slot [0-9]+ \(/ { slot = $3; gsub(/[():]/, "", slot); lbl = ""; next }
    /^  token label *:/ { sub(/^  token label *: /, ""); lbl = $0; next }
    /^  token flags *:/ { if (lbl == want) print (($0 ~ /PIN initialized/) ? "ready" : "nopin") }
    /^  token state: *uninitialized/ { print "free " slot }
  ' "$KL_TMP/slots.out"
}

scan=$(token_scan)
n_match=$(printf '%s\n' "$scan" | grep -cE '^(ready|nopin)$' || true)
[ "$n_match" -le 1 ] || die "--label $KL_TOKEN_LABEL: $n_match tokens carry this label in $KL_HSM_MODULE; use a unique label"

state=absent
[ "$n_match" -eq 0 ] || state=$(printf '%s\n' "$scan" | grep -E '^(ready|nopin)$')

if [ "$state" = absent ] && [ $softhsm -eq 0 ]; then
  die "--label $KL_TOKEN_LABEL: no such token in $KL_HSM_MODULE (setup.sh initialises SoftHSM tokens only; create it with the vendor's tools and pass --pin-file)"
fi

if [ "$state" = absent ] || [ "$state" = nopin ]; then
  # Initialising needs both PINs. Missing fixture PIN files are generated;
  # a PIN file named by an option must exist and is never replaced.
  if [ "$state" = absent ] && [ -z "$opt_so_pin_file" ] && [ ! -e "$so_pin_file" ]; then
    new_pin_file "$so_pin_file"
  fi
  if [ -z "$opt_pin_file" ] && [ ! -e "$user_pin_file" ]; then
    new_pin_file "$user_pin_file"
  fi
  kl_pin_load "$so_pin_file" "$(pin_what "$so_pin_file")"
  KL_SO_PIN=$KL_PIN_VALUE
  kl_pin_load "$user_pin_file" "$(pin_what "$user_pin_file")"
  KL_USER_PIN=$KL_PIN_VALUE
  KL_PIN_VALUE=

  if [ "$state" = absent ]; then
    # Name the uninitialised slot explicitly: pkcs11-tool --init-token on a
    # default slot could wipe an existing token.
    slot=$(printf '%s\n' "$scan" | awk '$1 == "free" { print $2; exit }')
    [ -n "$slot" ] || die "--module $KL_HSM_MODULE: no uninitialised slot to create token $KL_TOKEN_LABEL in"
    # pkcs11-tool reads both PINs from its environment ("env:"), so neither
    # appears on a command line; softhsm2-util --init-token would need them
    # on argv, which is why it is not used.
    if ! KL_P11_SO_PIN=$KL_SO_PIN pkcs11-tool --module "$KL_HSM_MODULE" --slot "$slot" \
      --init-token --label "$KL_TOKEN_LABEL" --so-pin env:KL_P11_SO_PIN </dev/null >"$KL_TMP/p11.out" 2>&1; then
      die "--label $KL_TOKEN_LABEL: token initialisation failed: $(kl_err_summary "$KL_TMP/p11.out")"
    fi
    echo "hsm-setup: token $KL_TOKEN_LABEL: initialised"
  fi
  if ! KL_P11_SO_PIN=$KL_SO_PIN KL_P11_PIN=$KL_USER_PIN pkcs11-tool --module "$KL_HSM_MODULE" \
    --token-label "$KL_TOKEN_LABEL" --login --login-type so --so-pin env:KL_P11_SO_PIN \
    --init-pin --pin env:KL_P11_PIN </dev/null >"$KL_TMP/p11.out" 2>&1; then
    die "$(pin_what "$so_pin_file") $so_pin_file: setting the user PIN of token $KL_TOKEN_LABEL failed: $(kl_err_summary "$KL_TMP/p11.out")"
  fi
  KL_SO_PIN=
else
  if [ ! -e "$user_pin_file" ] && [ -z "$opt_pin_file" ]; then
    die "PIN file $user_pin_file: no such file, but token $KL_TOKEN_LABEL exists (pass --pin-file or rerun with --force)"
  fi
  kl_pin_load "$user_pin_file" "$(pin_what "$user_pin_file")"
  KL_USER_PIN=$KL_PIN_VALUE
  KL_PIN_VALUE=
fi

# One login up front: a wrong PIN stops here, after a single failed attempt
# (a hardware token counts them and locks).
if ! kl_p11_user --list-objects --type privkey; then
  why=$(kl_err_summary "$KL_TMP/p11.out")
  case $why in
  CKR_PIN_INCORRECT) die "$(pin_what "$user_pin_file") $user_pin_file: PIN rejected by token $KL_TOKEN_LABEL (CKR_PIN_INCORRECT)" ;;
  CKR_PIN_LOCKED) die "$(pin_what "$user_pin_file") $user_pin_file: token $KL_TOKEN_LABEL has locked its user PIN (CKR_PIN_LOCKED)" ;;
  *) die "$(pin_what "$user_pin_file") $user_pin_file: login to token $KL_TOKEN_LABEL failed: $why" ;;
  esac
fi

# --- keys ------------------------------------------------------------------
# URIs of every object in the token (one p11tool run for all four keys).
list_objects() {
  if kl_p11tool_user --list-all --only-urls "pkcs11:token=$(kl_pct "$KL_TOKEN_LABEL")"; then
    grep '^pkcs11:' "$KL_TMP/p11tool.out" >"$KL_TMP/objects" || true
  elif grep -q 'No matching objects' "$KL_TMP/p11tool.out"; then
    : >"$KL_TMP/objects"
  else
    die "token $KL_TOKEN_LABEL: listing objects failed: $(kl_err_summary "$KL_TMP/p11tool.out")"
  fi
}

delete_key() {
  local name=$1 id t
  id=$(kl_key_id "$name")
  for t in privkey pubkey; do
    # Bounded: a module that "succeeds" without deleting must not spin us.
    for _ in 1 2 3 4 5 6 7 8; do
      kl_p11_user --delete-object --type $t --label "$name" --id "$id" || break
    done
  done
}

if [ $force -eq 1 ] && [ $softhsm -eq 0 ]; then
  for name in $KL_KEY_NAMES; do
    delete_key "$name"
  done
  for _ in 1 2 3 4 5 6 7 8; do
    kl_p11_user --delete-object --type secrkey --label "$KL_TICKET_ROOT" --id "$KL_TICKET_ROOT_ID" || break
  done
fi
list_objects
made_keys=
for name in $KL_KEY_NAMES; do
  id=$(kl_key_id "$name")
  objs=$(grep -F ";object=$(kl_pct "$name");" "$KL_TMP/objects" || true)
  want_id="id=$(kl_pct_hex "$id");"
  n_priv=$(printf '%s\n' "$objs" | grep -c 'type=private' || true)
  n_pub=$(printf '%s\n' "$objs" | grep -c 'type=public' || true)
  n_other=$(printf '%s\n' "$objs" | grep -c '^pkcs11:' || true)
  n_other=$((n_other - n_priv - n_pub))
  if [ "$n_priv" -eq 0 ] && [ "$n_pub" -eq 0 ] && [ "$n_other" -eq 0 ]; then
    if ! kl_p11_user --keypairgen --key-type "$(kl_key_gentype "$name")" --id "$id" --label "$name" \
      --usage-sign --sensitive --private; then
      die "token $KL_TOKEN_LABEL: generating key $name failed: $(kl_err_summary "$KL_TMP/p11.out")"
    fi
    made_keys="$made_keys $name"
    echo "hsm-setup: key $name (id $id): generated in the token"
    continue
  fi
  # Reuse only an exact pair: one private and one public object, both with
  # the expected CKA_ID and nothing else under that label.
  if [ "$n_priv" -ne 1 ] || [ "$n_pub" -ne 1 ] || [ "$n_other" -ne 0 ] ||
    [ "$(printf '%s\n' "$objs" | grep -cF "$want_id")" -ne 2 ]; then
    die "token $KL_TOKEN_LABEL: objects labelled $name are not one private+public pair with id $id ($n_priv private, $n_pub public, $n_other other); fix the token or rerun with --force"
  fi
done

# The ticket root (issue 11): a 32-byte generic secret, sensitive, private,
# never extractable, that may sign (HMAC). The signer derives every ticket key
# from it inside the token; a re-run keeps it, since replacing it would end
# every outstanding session ticket of the whole fleet.
root_objs=$(grep -F ";object=$(kl_pct "$KL_TICKET_ROOT");" "$KL_TMP/objects" || true)
n_root=$(printf '%s\n' "$root_objs" | grep -c '^pkcs11:' || true)
n_root_ok=$(printf '%s\n' "$root_objs" | grep -F "id=$(kl_pct_hex "$KL_TICKET_ROOT_ID");" | grep -c 'type=secret-key$' || true)
if [ "$n_root" -eq 0 ]; then
  if ! kl_p11_user --keygen --key-type GENERIC:32 --id "$KL_TICKET_ROOT_ID" --label "$KL_TICKET_ROOT" \
    --usage-sign --sensitive --private; then
    die "token $KL_TOKEN_LABEL: creating the ticket root $KL_TICKET_ROOT failed: $(kl_err_summary "$KL_TMP/p11.out")"
  fi
  echo "hsm-setup: ticket root $KL_TICKET_ROOT (id $KL_TICKET_ROOT_ID, generic secret, 32 bytes): created in the token"
elif [ "$n_root" -ne 1 ] || [ "$n_root_ok" -ne 1 ]; then
  die "token $KL_TOKEN_LABEL: objects labelled $KL_TICKET_ROOT are not one secret key with id $KL_TICKET_ROOT_ID ($n_root object(s)); fix the token or rerun with --force"
fi

mkdir -p -- "$pki"
chmod 0755 "$pki"
for name in $KL_KEY_NAMES; do
  kl_export_pubkey "$name" "$KL_TMP/$name.pub.pem" ||
    die "token $KL_TOKEN_LABEL: exporting the public key of $name failed: $(kl_err_summary "$KL_TMP/p11tool.out")"
  kind=$(kl_pubkey_kind "$KL_TMP/$name.pub.pem")
  [ "$kind" = "$name" ] || die "token $KL_TOKEN_LABEL: key $name holds a $kind key; fix the token or rerun with --force"
done

# --- the audit key (issue 13) -----------------------------------------------
# A P-256 key that signs the signer's audit checkpoints and nothing else:
# private, sensitive, not extractable, sign only, and no certificate (the signer
# refuses a [key] that names it). Its public key is exported next to the
# certificates for `keyless-signer audit-verify --pubkey`. Kept apart from
# KL_KEY_NAMES, which are the TLS keys.
KL_AUDIT_KEY=audit-signing
KL_AUDIT_KEY_ID=13

audit_key_uri() {
  printf 'pkcs11:token=%s;object=%s;id=%s;type=%s' "$(kl_pct "$KL_TOKEN_LABEL")" "$KL_AUDIT_KEY" \
    "$(kl_pct_hex "$KL_AUDIT_KEY_ID")" "$1"
}

make_audit_key() {
  local objs n_priv n_pub n_all t
  if [ $force -eq 1 ] && [ $softhsm -eq 0 ]; then
    for t in privkey pubkey; do
      for _ in 1 2 3 4 5 6 7 8; do
        kl_p11_user --delete-object --type $t --label "$KL_AUDIT_KEY" --id "$KL_AUDIT_KEY_ID" || break
      done
    done
    list_objects
  fi
  objs=$(grep -F ";object=$KL_AUDIT_KEY;" "$KL_TMP/objects" || true)
  n_all=$(printf '%s\n' "$objs" | grep -c '^pkcs11:' || true)
  n_priv=$(printf '%s\n' "$objs" | grep -F "id=$(kl_pct_hex "$KL_AUDIT_KEY_ID");" | grep -c 'type=private' || true)
  n_pub=$(printf '%s\n' "$objs" | grep -F "id=$(kl_pct_hex "$KL_AUDIT_KEY_ID");" | grep -c 'type=public' || true)
  if [ "$n_all" -eq 0 ]; then
    kl_p11_user --keypairgen --key-type EC:prime256v1 --id "$KL_AUDIT_KEY_ID" --label "$KL_AUDIT_KEY" \
      --usage-sign --sensitive --private ||
      die "token $KL_TOKEN_LABEL: generating the audit key $KL_AUDIT_KEY failed: $(kl_err_summary "$KL_TMP/p11.out")"
    # Worded apart from the TLS keys' "generated in the token" lines, which callers count.
    echo "hsm-setup: audit key $KL_AUDIT_KEY (id $KL_AUDIT_KEY_ID): made in the token; it signs audit checkpoints only"
  elif [ "$n_all" -ne 2 ] || [ "$n_priv" -ne 1 ] || [ "$n_pub" -ne 1 ]; then
    die "token $KL_TOKEN_LABEL: objects labelled $KL_AUDIT_KEY are not one private+public pair with id $KL_AUDIT_KEY_ID; fix the token or rerun with --force"
  fi
  kl_p11tool_user --export-pubkey --outfile "$KL_TMP/$KL_AUDIT_KEY.pub.pem" "$(audit_key_uri public)" ||
    die "token $KL_TOKEN_LABEL: exporting the public key of $KL_AUDIT_KEY failed: $(kl_err_summary "$KL_TMP/p11tool.out")"
  [ "$(kl_pubkey_kind "$KL_TMP/$KL_AUDIT_KEY.pub.pem")" = ecdsa-p256 ] ||
    die "token $KL_TOKEN_LABEL: $KL_AUDIT_KEY is not a P-256 key; fix the token or rerun with --force"
  # Only the PEM block: p11tool may print text around it.
  sed -n '/-----BEGIN PUBLIC KEY-----/,/-----END PUBLIC KEY-----/p' "$KL_TMP/$KL_AUDIT_KEY.pub.pem" \
    >"$KL_TMP/$KL_AUDIT_KEY.pem-only"
  if ! cmp -s "$KL_TMP/$KL_AUDIT_KEY.pem-only" "$pki/$KL_AUDIT_KEY.pub.pem"; then
    mv -f -- "$KL_TMP/$KL_AUDIT_KEY.pem-only" "$pki/$KL_AUDIT_KEY.pub.pem"
    echo "hsm-setup: pki: $KL_AUDIT_KEY.pub.pem exported"
  fi
  chmod 0644 "$pki/$KL_AUDIT_KEY.pub.pem"
}
make_audit_key

# --- the test PKI ----------------------------------------------------------
not_before=$(date -u -d '-1 day' '+%Y-%m-%d %H:%M:%S UTC')
not_after=$(date -u -d '+730 days' '+%Y-%m-%d %H:%M:%S UTC')

# certtool rather than "openssl x509 -new -force_pubkey": OpenSSL 3.0 cannot
# back-date notBefore, and certtool takes a bare public key (Ed25519
# included) plus explicit activation/expiration dates from a template.
cert_run() {
  if ! certtool "$@" >"$KL_TMP/certtool.out" 2>&1; then
    die "certtool ${1#--}: failed: $(kl_err_summary "$KL_TMP/certtool.out")"
  fi
}

# $1 key file, $2 cert: true if the cert carries that key's public half.
key_matches_cert() {
  [ -s "$1" ] && [ -s "$2" ] || return 1
  local a b
  a=$(openssl pkey -in "$1" -pubout -outform DER 2>/dev/null | od -An -tx1 | tr -d ' \n') || return 1
  b=$(kl_spki_der -cert "$2" | od -An -tx1 | tr -d ' \n') || return 1
  [ -n "$a" ] && [ "$a" = "$b" ]
}

# Still valid an hour from now, so that a re-run never keeps a cert that
# expires during the test that follows.
verifies() { # $1 cert, $2 CA file, [$3 untrusted]
  local at
  at=$(($(date +%s) + 3600))
  if [ $# -ge 3 ]; then
    openssl verify -attime "$at" -CAfile "$2" -untrusted "$3" "$1" >/dev/null 2>&1
  else
    openssl verify -attime "$at" -CAfile "$2" "$1" >/dev/null 2>&1
  fi
}

# certtool may put a text dump before the PEM block; keep the PEM only so
# that chain files are clean concatenations.
pem_only() {
  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$1" >"$1.pem-only"
  grep -q 'BEGIN CERTIFICATE' "$1.pem-only" || die "certtool: no certificate in its output for $(basename "$1")"
  mv -f -- "$1.pem-only" "$1"
}

new_ca_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" >"$KL_TMP/openssl.out" 2>&1 ||
    die "openssl genpkey: $(kl_err_summary "$KL_TMP/openssl.out")"
}

ca_common="activation_date = \"$not_before\"
expiration_date = \"$not_after\"
ca
cert_signing_key
crl_signing_key"

reissue_leaves=0
if ! key_matches_cert "$pki/root.key" "$pki/root.pem" || ! verifies "$pki/root.pem" "$pki/root.pem"; then
  may_replace root.pem "does not match root.key or does not verify"
  [ ! -e "$pki/intermediate.pem" ] ||
    may_replace intermediate.pem "is issued by the root.pem that must be remade"
  new_ca_key "$KL_TMP/root.key"
  printf '%s\n' 'cn = "keyless test root CA"' 'organization = "keyless test PKI"' "$ca_common" >"$KL_TMP/root.tmpl"
  cert_run --generate-self-signed --load-privkey "$KL_TMP/root.key" --template "$KL_TMP/root.tmpl" --outfile "$KL_TMP/root.pem"
  # Key before certificate: an interruption between the two renames leaves
  # a mismatch that the check above catches on the next run.
  pem_only "$KL_TMP/root.pem"
  mv -f -- "$KL_TMP/root.key" "$pki/root.key"
  mv -f -- "$KL_TMP/root.pem" "$pki/root.pem"
  record_made root.key root.pem
  rm -f -- "$pki/intermediate.pem"
  echo "hsm-setup: pki: root CA issued"
fi
if ! key_matches_cert "$pki/intermediate.key" "$pki/intermediate.pem" ||
  ! verifies "$pki/intermediate.pem" "$pki/root.pem"; then
  may_replace intermediate.pem "does not match intermediate.key or does not verify against root.pem"
  new_ca_key "$KL_TMP/intermediate.key"
  printf '%s\n' 'cn = "keyless test intermediate CA"' 'organization = "keyless test PKI"' \
    'path_len = 0' "$ca_common" >"$KL_TMP/intermediate.tmpl"
  cert_run --generate-certificate --load-privkey "$KL_TMP/intermediate.key" \
    --load-ca-certificate "$pki/root.pem" --load-ca-privkey "$pki/root.key" \
    --template "$KL_TMP/intermediate.tmpl" --outfile "$KL_TMP/intermediate.pem"
  pem_only "$KL_TMP/intermediate.pem"
  mv -f -- "$KL_TMP/intermediate.key" "$pki/intermediate.key"
  mv -f -- "$KL_TMP/intermediate.pem" "$pki/intermediate.pem"
  record_made intermediate.key intermediate.pem
  reissue_leaves=1
  echo "hsm-setup: pki: intermediate CA issued"
fi

printf '%s\n' 'cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' \
  'tls_www_server' 'signing_key' "activation_date = \"$not_before\"" \
  "expiration_date = \"$not_after\"" >"$KL_TMP/leaf.tmpl"
for name in $KL_KEY_NAMES; do
  crt=$pki/$name.crt.pem
  chain=$pki/$name.chain.pem
  if [ -s "$crt" ] && ! made_here "$name.crt.pem"; then
    # An operator's certificate: kept as it is when it carries the token key.
    if cmp -s <(kl_spki_der "$KL_TMP/$name.pub.pem") <(kl_spki_der -cert "$crt"); then
      continue
    fi
    may_replace "$name.crt.pem" "its public key is not the token's key $name"
  fi
  keep=1
  [ $reissue_leaves -eq 0 ] || keep=0
  [ -s "$crt" ] && [ -s "$chain" ] || keep=0
  if [ $keep -eq 1 ]; then
    cmp -s <(kl_spki_der "$KL_TMP/$name.pub.pem") <(kl_spki_der -cert "$crt") || keep=0
  fi
  if [ $keep -eq 1 ]; then
    verifies "$crt" "$pki/root.pem" "$pki/intermediate.pem" || keep=0
  fi
  if [ $keep -eq 1 ]; then
    cmp -s "$chain" <(cat "$crt" "$pki/intermediate.pem") || keep=0
  fi
  [ $keep -eq 0 ] || continue
  [ ! -s "$chain" ] || may_replace "$name.chain.pem" "it is not $name.crt.pem followed by intermediate.pem"
  cert_run --generate-certificate --load-pubkey "$KL_TMP/$name.pub.pem" \
    --load-ca-certificate "$pki/intermediate.pem" --load-ca-privkey "$pki/intermediate.key" \
    --template "$KL_TMP/leaf.tmpl" --outfile "$KL_TMP/$name.crt.pem"
  pem_only "$KL_TMP/$name.crt.pem"
  mv -f -- "$KL_TMP/$name.crt.pem" "$KL_TMP/$name.crt"
  cat "$KL_TMP/$name.crt" "$pki/intermediate.pem" >"$KL_TMP/$name.chain"
  chmod 0644 "$KL_TMP/$name.crt" "$KL_TMP/$name.chain"
  mv -f -- "$KL_TMP/$name.crt" "$crt"
  mv -f -- "$KL_TMP/$name.chain" "$chain"
  record_made "$name.crt.pem" "$name.chain.pem"
  echo "hsm-setup: pki: $name.crt.pem issued"
done
chmod 0644 "$pki/root.pem" "$pki/intermediate.pem"

# A separate CA for client certificates (mTLS: [listener] client_ca) and one client
# certificate with a software key: the client is a test tool, not a token user.
reissue_client=0
if ! key_matches_cert "$pki/client-ca.key" "$pki/client-ca.pem" || ! verifies "$pki/client-ca.pem" "$pki/client-ca.pem"; then
  may_replace client-ca.pem "does not match client-ca.key or does not verify"
  new_ca_key "$KL_TMP/client-ca.key"
  printf '%s\n' 'cn = "keyless test client CA"' 'organization = "keyless test PKI"' "$ca_common" >"$KL_TMP/client-ca.tmpl"
  cert_run --generate-self-signed --load-privkey "$KL_TMP/client-ca.key" --template "$KL_TMP/client-ca.tmpl" \
    --outfile "$KL_TMP/client-ca.pem"
  pem_only "$KL_TMP/client-ca.pem"
  mv -f -- "$KL_TMP/client-ca.key" "$pki/client-ca.key"
  mv -f -- "$KL_TMP/client-ca.pem" "$pki/client-ca.pem"
  record_made client-ca.key client-ca.pem
  reissue_client=1
  echo "hsm-setup: pki: client CA issued"
fi
if [ $reissue_client -eq 1 ] || ! key_matches_cert "$pki/client.key" "$pki/client.pem" ||
  ! verifies "$pki/client.pem" "$pki/client-ca.pem"; then
  may_replace client.pem "does not match client.key or does not verify against client-ca.pem"
  new_ca_key "$KL_TMP/client.key"
  printf '%s\n' 'cn = "keyless test client"' 'organization = "keyless test PKI"' 'dns_name = "client.test"' \
    'email = "client@keyless.test"' 'tls_www_client' 'signing_key' "activation_date = \"$not_before\"" \
    "expiration_date = \"$not_after\"" >"$KL_TMP/client.tmpl"
  cert_run --generate-certificate --load-privkey "$KL_TMP/client.key" \
    --load-ca-certificate "$pki/client-ca.pem" --load-ca-privkey "$pki/client-ca.key" \
    --template "$KL_TMP/client.tmpl" --outfile "$KL_TMP/client.pem"
  pem_only "$KL_TMP/client.pem"
  chmod 0600 "$KL_TMP/client.key"
  mv -f -- "$KL_TMP/client.key" "$pki/client.key"
  mv -f -- "$KL_TMP/client.pem" "$pki/client.pem"
  record_made client.key client.pem
  echo "hsm-setup: pki: client.pem issued"
fi
chmod 0644 "$pki/client-ca.pem" "$pki/client.pem"

# --- env -------------------------------------------------------------------
env_text="# keyless HSM fixture (written by hsm-setup/setup.sh); source it."
if [ $softhsm -eq 1 ]; then
  env_text="$env_text
export SOFTHSM2_CONF=$(printf '%q' "$dir/softhsm2.conf")"
fi
env_text="$env_text
export KL_HSM_MODULE=$(printf '%q' "$KL_HSM_MODULE")
export KL_TOKEN_LABEL=$(printf '%q' "$KL_TOKEN_LABEL")
export KL_PIN_FILE=$(printf '%q' "$user_pin_file")
export KL_HSM_DIR=$(printf '%q' "$dir")"
write_atomic "$dir/env" "$env_text"
chmod 0644 "$dir/env" "${SOFTHSM2_CONF:-$dir/env}"
KL_USER_PIN=

t_end=$(date +%s.%N)
awk -v a="$t_start" -v b="$t_end" -v d="$dir" -v l="$KL_TOKEN_LABEL" -v m="$KL_HSM_MODULE" \
  'BEGIN { printf "hsm-setup: %s ready in %.2f s (token %s, module %s)\n", d, b - a, l, m }'

if [ $check -eq 1 ]; then
  bash "$KL_HERE/check.sh" --dir "$dir" || die "check.sh --dir $dir: the fixture failed its self-check (see the not ok lines above)"
fi
