#!/usr/bin/env bash
# Bad input: a missing or non-PKCS#11 module, missing, wrong, empty or
# world-readable PIN files, unknown options. Each must give a non-zero exit,
# exactly one "hsm-setup: ..." line on stderr naming the option or file, and
# leave nothing that changes or breaks the next run.
. "$(dirname "$0")/tap.sh"

# expect_error DESC REGEX ARGS...: setup.sh ARGS fails with one matching line.
expect_error() {
  local d=$1 re=$2
  shift 2
  run_setup "$@"
  check "$d: exits non-zero" test $rc -ne 0
  check "$d: exactly one line on stderr" test "$(wc -l <"$T/err")" -eq 1
  check "$d: the line says what is wrong" grep -qE "^hsm-setup: $re" "$T/err"
  if [ $rc -eq 0 ] || [ "$(wc -l <"$T/err")" -ne 1 ]; then sed 's/^/#   stderr: /' "$T/err"; fi
}

# --- a bad module, into a fresh directory: nothing may be left behind.
F=$T/fresh
expect_error "missing module" "--module $T/no/libnope.so: no such file$" --dir "$F" --module "$T/no/libnope.so"
check "missing module: --dir was not created" test ! -e "$F"
printf 'not a shared object\n' >"$T/fake-pkcs11.so"
expect_error "non-ELF module" "--module $T/fake-pkcs11.so: not a loadable PKCS#11 module" --dir "$F" --module "$T/fake-pkcs11.so"
check "non-ELF module: --dir was not created" test ! -e "$F"
libz=$(ldconfig -p | awk '$1 == "libz.so.1" && /x86-64/ && !found { print $NF; found = 1 }')  # no early exit: with pipefail, SIGPIPE in ldconfig would fail the script
if [ -n "$libz" ]; then
  expect_error "shared library without C_GetFunctionList" "--module $libz: not a loadable PKCS#11 module" --dir "$F" --module "$libz"
  check "non-PKCS#11 library: --dir was not created" test ! -e "$F"
fi
expect_error "module given as a directory" "--module $T: not a regular file" --dir "$F" --module "$T"
expect_error "missing --so-pin-file on a fresh dir" "--so-pin-file $T/no-so.pin: no such file$" --dir "$F" --so-pin-file "$T/no-so.pin"
check "missing --so-pin-file: --dir was not created" test ! -e "$F"
expect_error "unknown option" "unknown option '--frobnicate'" --dir "$F" --frobnicate
expect_error "option without its argument" "option --pin-file needs an argument" --dir "$F" --pin-file
check "after all of these, the fresh dir still does not exist" test ! -e "$F"

# --- bad PIN input against an existing fixture.
D=$T/hsm
run_setup --dir "$D" --no-check
ok $rc "a good fixture is made"
fixture_digest "$D" >"$T/d0"

expect_error "missing --pin-file" "--pin-file $T/missing.pin: no such file$" --dir "$D" --pin-file "$T/missing.pin"

printf '0000000000\n' >"$T/wrong.pin"
chmod 600 "$T/wrong.pin"
expect_error "wrong --pin-file" "--pin-file $T/wrong.pin: PIN rejected by token keyless \(CKR_PIN_INCORRECT\)$" \
  --dir "$D" --pin-file "$T/wrong.pin"
check "wrong --pin-file: the PIN does not appear in the error" bash -c "! grep -q 0000000000 '$T/err'"

: >"$T/empty.pin"
chmod 600 "$T/empty.pin"
expect_error "empty --pin-file" "--pin-file $T/empty.pin: empty$" --dir "$D" --pin-file "$T/empty.pin"

cp "$D/user.pin" "$T/open.pin"
chmod 644 "$T/open.pin"
expect_error "world-readable --pin-file" "--pin-file $T/open.pin: readable or writable by others \(mode 644\)" \
  --dir "$D" --pin-file "$T/open.pin"
check "world-readable --pin-file: the PIN does not appear in the error" bash -c "! grep -qF \"\$(cat '$T/open.pin')\" '$T/err'"

expect_error "--pin-file is a directory" "--pin-file $T: not a regular file$" --dir "$D" --pin-file "$T"

printf '1234\n5678\n' >"$T/two.pin"
chmod 600 "$T/two.pin"
expect_error "two-line --pin-file" "--pin-file $T/two.pin: more than one line$" --dir "$D" --pin-file "$T/two.pin"

# The fixture's own PIN file wrong, then missing.
cp -p "$D/user.pin" "$T/user.pin.good"
printf '1111111111\n' >"$D/user.pin"
expect_error "wrong DIR/user.pin" "PIN file $D/user.pin: PIN rejected by token keyless \(CKR_PIN_INCORRECT\)$" --dir "$D"
rm "$D/user.pin"
expect_error "missing DIR/user.pin with the token present" "PIN file $D/user.pin: no such file, but token keyless exists" --dir "$D"
cp -p "$T/user.pin.good" "$D/user.pin"

expect_error "bad module with --force on an existing fixture" "--module $T/fake-pkcs11.so: not a loadable PKCS#11 module" \
  --dir "$D" --force --module "$T/fake-pkcs11.so"

# A vendor module (anything not named softhsm) is never initialised by setup.sh.
ln -s "$MODULE" "$T/libvendor-pkcs11.so"
SOFTHSM2_CONF=$D/softhsm2.conf expect_error "vendor module without the token" \
  "--label nosuch: no such token in $T/libvendor-pkcs11.so" \
  --dir "$T/vendor" --module "$T/libvendor-pkcs11.so" --label nosuch --pin-file "$D/user.pin"
check "vendor module without the token: --dir was not created" test ! -e "$T/vendor"

# Nothing above changed the fixture, and it still works.
fixture_digest "$D" >"$T/d1"
check "after all errors: keys, PINs, certificates unchanged" cmp "$T/d0" "$T/d1"
check "no temp dirs left in the fixture" bash -c "! ls -d '$D'/.tmp.* 2>/dev/null"
run_setup --dir "$D"
ok $rc "a plain re-run then succeeds, including check.sh"
check "... and changes nothing" bash -c "! grep -qE 'generated|issued|initialised' '$T/out'"

done_testing
