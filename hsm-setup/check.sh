#!/usr/bin/env bash
# hsm-setup/check.sh: prove that a fixture made by setup.sh is usable.
#
#   check.sh [--dir DIR]
#
# Reads DIR/env, then for each key: the token holds a private+public pair
# with the right CKA_ID, the private key is private, sensitive, not
# extractable and may sign; the certificate carries the token's public key;
# the token signs (ECDSA over a digest, RSA-PSS over a digest, EdDSA over the
# message) and openssl verifies that signature with the certificate's key;
# the chain verifies against root.pem; the ticket root is one private,
# sensitive, non-extractable secret key the token computes HMAC-SHA256 with.
# One "ok N - ..." line per check;
# exit status 1 if any check failed.
set -eu
set -o pipefail
umask 077

KL_PROG=hsm-check
KL_HERE=$(cd "$(dirname "$0")" && pwd)
. "$KL_HERE/lib.sh"

dir=$(cd "$KL_HERE/.." && pwd)/var/hsm
while [ $# -gt 0 ]; do
  case $1 in
  --dir)
    [ $# -ge 2 ] || die "option --dir needs an argument"
    dir=$2
    shift
    ;;
  --dir=*) dir=${1#*=} ;;
  -h | --help)
    echo "usage: $0 [--dir DIR]"
    exit 0
    ;;
  *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

[ -f "$dir/env" ] || die "--dir $dir: no env file (run hsm-setup/setup.sh --dir $dir first)"
. "$dir/env"
: "${KL_HSM_MODULE:?}" "${KL_TOKEN_LABEL:?}" "${KL_PIN_FILE:?}"
pki=$dir/pki

KL_TMP=$(mktemp -d)
trap 'rm -rf -- "$KL_TMP"' EXIT

n=0
failed=0
ok() {
  n=$((n + 1))
  echo "ok $n - $*"
}
not_ok() {
  n=$((n + 1))
  echo "not ok $n - $*"
  failed=1
}
bail() {
  not_ok "$@"
  echo "1..$n"
  exit 1
}

if pkcs11-tool --module "$KL_HSM_MODULE" --list-token-slots </dev/null >"$KL_TMP/slots" 2>&1 &&
  grep -qxF "  token label        : $KL_TOKEN_LABEL" "$KL_TMP/slots"; then
  ok "module $KL_HSM_MODULE has token $KL_TOKEN_LABEL"
else
  bail "module $KL_HSM_MODULE has token $KL_TOKEN_LABEL: $(kl_err_summary "$KL_TMP/slots")"
fi

mode=$(stat -c %a -- "$KL_PIN_FILE" 2>/dev/null || echo missing)
case $mode in
missing | *[1-7]) not_ok "PIN file $KL_PIN_FILE is mode $mode, want no access for others (0600)" ;;
*) ok "PIN file $KL_PIN_FILE is mode $mode" ;;
esac
if [ "$KL_PIN_FILE" = "$dir/user.pin" ] && [ "$mode" != 600 ]; then
  not_ok "PIN file $KL_PIN_FILE made by setup.sh is mode $mode, want 600"
fi
kl_pin_load "$KL_PIN_FILE" "PIN file"
KL_USER_PIN=$KL_PIN_VALUE
KL_PIN_VALUE=

if kl_p11_user --list-objects --type privkey; then
  cp "$KL_TMP/p11.out" "$KL_TMP/privkeys"
  ok "login to token $KL_TOKEN_LABEL with the PIN file"
else
  bail "login to token $KL_TOKEN_LABEL with the PIN file: $(kl_err_summary "$KL_TMP/p11.out")"
fi
# Private objects must be invisible before login.
pkcs11-tool --module "$KL_HSM_MODULE" --token-label "$KL_TOKEN_LABEL" --list-objects \
  </dev/null >"$KL_TMP/anon" 2>&1 || true

# Field $2 ("Usage" or "Access") of the private key labelled $1 with CKA_ID $3.
privkey_field() {
  awk -v want="$1" -v id="$3" -v field="$2" '
    /^Private Key Object/ { inkey = 1; lbl = ""; kid = ""; next }
    /^[A-Z]/ { inkey = 0; next }
    inkey && /^  label:/ { sub(/^  label: */, ""); lbl = $0; next }
    inkey && /^  ID:/ { kid = $2; next }
    inkey && $1 == field ":" && lbl == want && kid == id { sub(/^  [A-Za-z]+: */, ""); print; exit }
  ' "$KL_TMP/privkeys"
}

# Token-side signature of $KL_TMP/msg with key $1, verified by openssl with
# the certificate's key; a modified message must then fail to verify.
sign_and_verify() {
  local name=$1 id digest
  id=$(kl_key_id "$name")
  openssl x509 -in "$pki/$name.crt.pem" -noout -pubkey >"$KL_TMP/certpub.pem" 2>/dev/null || {
    echo "cannot read $pki/$name.crt.pem"
    return 1
  }
  case $name in
  ecdsa-p256 | ecdsa-p384 | rsa-2048)
    digest=sha256
    [ "$name" != ecdsa-p384 ] || digest=sha384
    openssl dgst -$digest -binary "$KL_TMP/msg" >"$KL_TMP/in"
    openssl dgst -$digest -binary "$KL_TMP/msg2" >"$KL_TMP/in2"
    ;;
  ed25519)
    cp "$KL_TMP/msg" "$KL_TMP/in"
    cp "$KL_TMP/msg2" "$KL_TMP/in2"
    ;;
  esac
  local -a mech verify
  case $name in
  ecdsa-*)
    mech=(-m ECDSA --signature-format openssl)
    verify=()
    ;;
  rsa-2048)
    # rsa_pss_rsae_sha256 as TLS 1.3 uses it: MGF1 with the same hash,
    # salt as long as the hash.
    mech=(-m RSA-PKCS-PSS --hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len 32)
    verify=(-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32)
    ;;
  ed25519)
    mech=(-m EDDSA)
    verify=(-rawin)
    ;;
  esac
  if ! kl_p11_user --sign "${mech[@]}" --id "$id" --label "$name" -i "$KL_TMP/in" -o "$KL_TMP/sig"; then
    echo "token refused to sign: $(kl_err_summary "$KL_TMP/p11.out")"
    return 1
  fi
  if ! openssl pkeyutl -verify -pubin -inkey "$KL_TMP/certpub.pem" "${verify[@]}" \
    -in "$KL_TMP/in" -sigfile "$KL_TMP/sig" >"$KL_TMP/v.out" 2>&1; then
    echo "openssl does not verify the signature: $(kl_err_summary "$KL_TMP/v.out")"
    return 1
  fi
  if openssl pkeyutl -verify -pubin -inkey "$KL_TMP/certpub.pem" "${verify[@]}" \
    -in "$KL_TMP/in2" -sigfile "$KL_TMP/sig" >/dev/null 2>&1; then
    echo "signature also verifies over a different message"
    return 1
  fi
}

# One listing of every object and one of every private key's flags serve
# all four keys: each p11tool run loads the module and logs in again.
if kl_p11tool_user --list-all --only-urls "pkcs11:token=$(kl_pct "$KL_TOKEN_LABEL")"; then
  grep '^pkcs11:' "$KL_TMP/p11tool.out" >"$KL_TMP/objects" || true
else
  : >"$KL_TMP/objects"
fi
# "URL<TAB>Flags" per private key.
if kl_p11tool_user --list-all-privkeys "pkcs11:token=$(kl_pct "$KL_TOKEN_LABEL")"; then
  awk '/^[[:space:]]*URL: / { sub(/^[[:space:]]*URL: /, ""); url = $0; next }
       /^[[:space:]]*Flags: / { sub(/^[[:space:]]*Flags: /, ""); print url "\t" $0 }' \
    "$KL_TMP/p11tool.out" >"$KL_TMP/privflags"
else
  : >"$KL_TMP/privflags"
fi

head -c 96 /dev/urandom >"$KL_TMP/msg"
{
  head -c 95 "$KL_TMP/msg"
  printf 'x'
} >"$KL_TMP/msg2"
cmp -s "$KL_TMP/msg" "$KL_TMP/msg2" && printf 'y' >>"$KL_TMP/msg2"

for name in $KL_KEY_NAMES; do
  id=$(kl_key_id "$name")

  # 1. exactly one private and one public object under the label, both with the id.
  urls=$(grep -F ";object=$(kl_pct "$name");" "$KL_TMP/objects" || true)
  n_all=$(printf '%s\n' "$urls" | grep -c '^pkcs11:' || true)
  n_good=$(printf '%s\n' "$urls" | grep -F "id=$(kl_pct_hex "$id");" | grep -cE 'type=(private|public)$' || true)
  n_priv=$(printf '%s\n' "$urls" | grep -c 'type=private$' || true)
  if [ "$n_all" -eq 2 ] && [ "$n_good" -eq 2 ] && [ "$n_priv" -eq 1 ]; then
    ok "$name: private+public key pair with CKA_ID $id"
  else
    not_ok "$name: want one private+public pair with CKA_ID $id, found $n_all objects ($n_good with that id)"
  fi

  # 2. attributes of the private key.
  why=
  flags=$(awk -F '\t' -v uri="$(kl_key_uri "$name" private)" '
    { sub(/^pkcs11:/, "", uri); n = split(uri, want, ";"); line = ";" substr($1, 8) ";"; hit = 1
      for (i = 1; i <= n; i++) if (index(line, ";" want[i] ";") == 0) hit = 0
      if (hit) { print $2; exit } }' "$KL_TMP/privflags")
  access=$(privkey_field "$name" Access "$id")
  usage=$(privkey_field "$name" Usage "$id")
  case $flags in *"CKA_PRIVATE;"*) ;; *) why="$why not CKA_PRIVATE;" ;; esac
  case $flags in *"CKA_SENSITIVE;"*) ;; *) why="$why not CKA_SENSITIVE;" ;; esac
  case $flags in *"CKA_EXTRACTABLE;"*) why="$why CKA_EXTRACTABLE;" ;; esac
  case ", $access," in *", extractable,"*) why="$why extractable (pkcs11-tool);" ;; esac
  case ", $access," in *", sensitive,"*) ;; *) why="$why not sensitive (pkcs11-tool);" ;; esac
  case ", $usage," in *", sign,"*) ;; *) why="$why no CKA_SIGN;" ;; esac
  if grep -A3 '^Private Key Object' "$KL_TMP/anon" | grep -E "^  label: +$name\$" >/dev/null; then
    why="$why visible without login;"
  fi
  if [ -z "$why" ]; then
    ok "$name: private key is private, sensitive, not extractable, can sign"
  else
    not_ok "$name: private key attributes:$why"
  fi

  # 3. the certificate carries the token's public key.
  if ! kl_export_pubkey "$name" "$KL_TMP/pub.pem"; then
    not_ok "$name: export public key: $(kl_err_summary "$KL_TMP/p11tool.out")"
  elif [ ! -s "$pki/$name.crt.pem" ]; then
    not_ok "$name: $pki/$name.crt.pem missing"
  elif cmp -s <(kl_spki_der "$KL_TMP/pub.pem") <(kl_spki_der -cert "$pki/$name.crt.pem") &&
    [ -n "$(kl_spki_der "$KL_TMP/pub.pem" | head -c 1)" ]; then
    ok "$name: certificate public key equals the token's ($(kl_pubkey_kind "$KL_TMP/pub.pem"))"
  else
    not_ok "$name: certificate public key differs from the token's"
  fi

  # 4. the token signs; openssl verifies with the certificate key.
  if why=$(sign_and_verify "$name"); then
    ok "$name: token signature verifies with the certificate key"
  else
    not_ok "$name: token signature: $why"
  fi

  # 5. the chain: against the test PKI, unless the certificate is an
  # operator's (setup.sh keeps those when they carry the token key).
  if [ -s "$pki/$name.crt.pem" ] &&
    ! openssl x509 -in "$pki/$name.crt.pem" -noout -issuer 2>/dev/null | grep -q 'O *= *keyless test PKI'; then
    ok "$name: chain not checked: $name.crt.pem is not from the test PKI (an operator's certificate)"
  elif openssl verify -CAfile "$pki/root.pem" -untrusted "$pki/intermediate.pem" -purpose sslserver \
    -verify_hostname localhost -verify_ip 127.0.0.1 "$pki/$name.crt.pem" >"$KL_TMP/verify" 2>&1 &&
    openssl verify -CAfile "$pki/root.pem" -untrusted "$pki/$name.chain.pem" \
      "$pki/$name.crt.pem" >>"$KL_TMP/verify" 2>&1 &&
    cmp -s "$pki/$name.chain.pem" <(cat "$pki/$name.crt.pem" "$pki/intermediate.pem"); then
    ok "$name: chain verifies against root.pem (serverAuth, localhost, 127.0.0.1)"
  else
    not_ok "$name: chain: $(kl_err_summary "$KL_TMP/verify")"
  fi
done

# The ticket root (issue 11): one secret key, sensitive, private, never
# extractable, and the token computes a deterministic HMAC-SHA256 with it.
root_uri="pkcs11:token=$(kl_pct "$KL_TOKEN_LABEL");object=$(kl_pct "$KL_TICKET_ROOT");type=secret-key"
n_root=$(grep -F ";object=$(kl_pct "$KL_TICKET_ROOT");" "$KL_TMP/objects" | grep -c '^pkcs11:' || true)
n_root_ok=$(grep -F ";object=$(kl_pct "$KL_TICKET_ROOT");" "$KL_TMP/objects" |
  grep -F "id=$(kl_pct_hex "$KL_TICKET_ROOT_ID");" | grep -c 'type=secret-key$' || true)
if [ "$n_root" -eq 1 ] && [ "$n_root_ok" -eq 1 ]; then
  ok "$KL_TICKET_ROOT: one secret key with CKA_ID $KL_TICKET_ROOT_ID"
else
  not_ok "$KL_TICKET_ROOT: want one secret key with CKA_ID $KL_TICKET_ROOT_ID, found $n_root object(s) ($n_root_ok right)"
fi
why=
if kl_p11tool_user --list-all "$root_uri"; then
  flags=$(grep 'Flags:' "$KL_TMP/p11tool.out" || true)
  case $flags in *"CKA_PRIVATE;"*) ;; *) why="$why not CKA_PRIVATE;" ;; esac
  case $flags in *"CKA_SENSITIVE;"*) ;; *) why="$why not CKA_SENSITIVE;" ;; esac
  case $flags in *"CKA_EXTRACTABLE;"*) why="$why CKA_EXTRACTABLE;" ;; esac
else
  why=" cannot list it: $(kl_err_summary "$KL_TMP/p11tool.out")"
fi
if grep -A2 '^Secret Key Object' "$KL_TMP/anon" | grep -E "^  label: +$KL_TICKET_ROOT\$" >/dev/null; then
  why="$why visible without login;"
fi
if [ -z "$why" ]; then
  ok "$KL_TICKET_ROOT: secret key is private, sensitive, not extractable"
else
  not_ok "$KL_TICKET_ROOT: secret key attributes:$why"
fi
# $1 input file, $2 output file: HMAC-SHA256 by the token with the root.
root_hmac() {
  kl_p11_user --sign -m SHA256-HMAC --id "$KL_TICKET_ROOT_ID" --label "$KL_TICKET_ROOT" -i "$1" -o "$2"
}
if ! root_hmac "$KL_TMP/msg" "$KL_TMP/mac1" || ! root_hmac "$KL_TMP/msg" "$KL_TMP/mac2" ||
  ! root_hmac "$KL_TMP/msg2" "$KL_TMP/mac3"; then
  not_ok "$KL_TICKET_ROOT: token HMAC-SHA256: $(kl_err_summary "$KL_TMP/p11.out")"
elif [ "$(wc -c <"$KL_TMP/mac1")" -eq 32 ] && cmp -s "$KL_TMP/mac1" "$KL_TMP/mac2" &&
  ! cmp -s "$KL_TMP/mac1" "$KL_TMP/mac3"; then
  ok "$KL_TICKET_ROOT: token HMAC-SHA256 is 32 bytes, deterministic, input-dependent"
else
  not_ok "$KL_TICKET_ROOT: token HMAC-SHA256 is not 32 bytes, not deterministic or ignores its input"
fi
KL_USER_PIN=

echo "1..$n"
exit $failed
