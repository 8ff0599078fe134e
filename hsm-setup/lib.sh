# hsm-setup/lib.sh: helpers shared by setup.sh and check.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034
#
# PIN handling rule for every helper here: a PIN lives in a bash variable and
# reaches a tool only through that tool's environment (pkcs11-tool
# "--pin env:NAME", p11tool GNUTLS_PIN / GNUTLS_SO_PIN), set as a prefix
# assignment on the one command that needs it. /proc/PID/environ is readable
# only by the owner, unlike /proc/PID/cmdline which every user can read.

# Byte-wise string handling (URI escaping) and stable tool messages.
export LC_ALL=C

KL_DEFAULT_MODULE=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so

# The fixed key set: name, CKA_ID (hex), pkcs11-tool --key-type.
KL_KEY_NAMES="ecdsa-p256 ecdsa-p384 rsa-2048 ed25519"

kl_key_id() {
  case $1 in
  ecdsa-p256) echo 01 ;;
  ecdsa-p384) echo 02 ;;
  rsa-2048) echo 03 ;;
  ed25519) echo 04 ;;
  *) return 1 ;;
  esac
}

kl_key_gentype() {
  case $1 in
  ecdsa-p256) echo EC:prime256v1 ;;
  ecdsa-p384) echo EC:secp384r1 ;;
  rsa-2048) echo rsa:2048 ;;
  ed25519) echo EC:edwards25519 ;;
  *) return 1 ;;
  esac
}

# The ticket root (issue 11): a secret key that never leaves the token; the
# signer derives session ticket keys from it with CKM_SHA256_HMAC.
KL_TICKET_ROOT=ticket-root
KL_TICKET_ROOT_ID=10

# Print one line on stderr and leave. Every failure path of the scripts ends
# here so that a caller sees exactly one line that names what went wrong.
die() {
  printf '%s: %s\n' "${KL_PROG:-hsm-setup}" "$*" >&2
  exit 1
}

# Reduce a tool's captured output to one useful line: the PKCS#11 return
# code if there is one, else the first line that looks like an error.
kl_err_summary() {
  local f=$1 line
  line=$(grep -o 'CKR_[A-Z_]*' "$f" 2>/dev/null | head -n 1) || true
  if [ -z "$line" ]; then
    line=$(grep -iE 'error|fail|cannot|unable|invalid|no such' "$f" 2>/dev/null | head -n 1) || true
  fi
  if [ -z "$line" ]; then
    line=$(grep -v '^[[:space:]]*$' "$f" 2>/dev/null | tail -n 1) || true
  fi
  [ -n "$line" ] || line="no output"
  printf '%s' "$line" | tr -d '\r' | tr '\t' ' ' | sed -e 's/^[[:space:]]*//' -e 's/^error: *//' | cut -c 1-200
}

# True when the module is SoftHSM2: only then may the scripts write a
# softhsm2.conf or initialise a token.
kl_is_softhsm() {
  case $(basename -- "$1" | tr "[:upper:]" "[:lower:]") in
  *softhsm*) return 0 ;;
  *) return 1 ;;
  esac
}

# RFC 7512 percent-encoding of a path attribute value.
kl_pct() {
  local s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
    [A-Za-z0-9._~-]) out+=$c ;;
    *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

# "0a0b" -> "%0a%0b", the id attribute of a pkcs11: URI.
kl_pct_hex() {
  printf '%s' "$1" | sed 's/../%&/g'
}

# Load a PIN file into KL_PIN_VALUE. $2 names the file's origin (an option or
# the fixture path) so that the one error line says which input is wrong. The
# PIN is the file's content; trailing newlines are ignored.
kl_pin_load() {
  local f=$1 what=$2 v
  [ -e "$f" ] || die "$what $f: no such file"
  [ -f "$f" ] || die "$what $f: not a regular file"
  [ -r "$f" ] || die "$what $f: not readable"
  # Group access is a legitimate deployment (root:signer 0640); world access
  # to a PIN is not.
  local mode
  mode=$(stat -c %a -- "$f" 2>/dev/null) || die "$what $f: cannot stat"
  case $mode in
  *[1-7]) die "$what $f: readable or writable by others (mode $mode); chmod o= it" ;;
  esac
  v=$(cat -- "$f" 2>/dev/null) || die "$what $f: cannot read"
  [ -n "$v" ] || die "$what $f: empty"
  case $v in
  *$'\n'* | *$'\r'*) die "$what $f: more than one line" ;;
  esac
  KL_PIN_VALUE=$v
}

# pkcs11-tool against the configured module and token, logged in as user.
# Output goes to $KL_TMP/p11.out; returns the tool's status.
kl_p11_user() {
  KL_P11_PIN=$KL_USER_PIN pkcs11-tool --module "$KL_HSM_MODULE" --token-label "$KL_TOKEN_LABEL" \
    --login --pin env:KL_P11_PIN "$@" </dev/null >"$KL_TMP/p11.out" 2>&1
}

# p11tool logged in as user; URI is the last argument. Output in $KL_TMP/p11tool.out.
kl_p11tool_user() {
  local -a prov=(--provider "$KL_HSM_MODULE")
  # GnuTLS loads a provider through p11_kit_module_load(), which refuses the
  # p11-kit proxy; without --provider p11tool uses every p11-kit registered
  # module, which is what the proxy stands for.
  case $(basename -- "$KL_HSM_MODULE") in
  p11-kit-proxy.so*) prov=() ;;
  esac
  GNUTLS_PIN=$KL_USER_PIN p11tool "${prov[@]}" --login "$@" \
    </dev/null >"$KL_TMP/p11tool.out" 2>&1
}

# URI of a key object in the configured token.
kl_key_uri() {
  local name=$1 type=$2
  printf 'pkcs11:token=%s;object=%s;id=%s;type=%s' "$(kl_pct "$KL_TOKEN_LABEL")" \
    "$(kl_pct "$name")" "$(kl_pct_hex "$(kl_key_id "$name")")" "$type"
}

# What kind of public key a PEM SPKI file holds, in the key-name vocabulary.
kl_pubkey_kind() {
  local txt
  txt=$(openssl pkey -pubin -in "$1" -noout -text 2>/dev/null) || {
    echo unreadable
    return 0
  }
  case $txt in
  *"ED25519 Public-Key"*) echo ed25519 ;;
  *"ASN1 OID: prime256v1"*) echo ecdsa-p256 ;;
  *"ASN1 OID: secp384r1"*) echo ecdsa-p384 ;;
  *"Public-Key: (2048 bit)"*Modulus:*) echo rsa-2048 ;;
  *) echo other ;;
  esac
}

# Export the public key object of key $1 from the token as PEM SPKI into $2.
kl_export_pubkey() {
  kl_p11tool_user --export-pubkey --outfile "$2" "$(kl_key_uri "$1" public)"
}

# DER SPKI of a PEM public key ($1) or of a certificate's key ($1 with -cert).
kl_spki_der() {
  if [ "$1" = -cert ]; then
    openssl x509 -in "$2" -noout -pubkey 2>/dev/null | openssl pkey -pubin -outform DER 2>/dev/null
  else
    openssl pkey -pubin -in "$1" -outform DER 2>/dev/null
  fi
}
