#!/usr/bin/env bash
# Command 2 of the README: install what is missing, build (normal, ASan+UBSan, and
# the clang libFuzzer build), run every test, end with ctest's summary.
# Idempotent; build trees: build/, build-asan/, build-fuzz/. ctest runs as many tests at
# once as there are cores: every test has its own ports, directories and processes; tests
# that ctest has no timings for start longest first (COST in tests/CMakeLists.txt).
# Test labels: unit (C unit tests, the shell TAP library's self-test), lint (clang-format,
# the layering lint and its self-test; seconds), e2e (the signer's process tests and the
# script tests), deploy, once (the hsm-setup script tests, the package test and the e2e
# tests of protocol and operational behaviour: run only in the sanitizer build, which checks
# the same paths harder; the release pass keeps the unit tests and what only a release
# build shows: seccomp filters, memory bounds), fuzz, bench (not run here).
# Three passes: fuzz (clang build, label fuzz), sanitizer (everything but fuzz and bench),
# release (everything but fuzz, bench and once). One SoftHSM2 token is made per test
# command: the fixture test hsm_token of the sanitizer pass runs hsm-setup/setup.sh, every
# test copies that token (tests/lib/hsm-token.sh), and the release pass's hsm_token copies
# the sanitizer pass's (KL_HSM_PREPARED).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash .ci/deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKL_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DKL_SANITIZE=ON -DKL_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$jobs"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export LSAN_OPTIONS=suppressions=$top/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

status=0
echo "== fuzz (clang, libFuzzer, short runs)"
(cd build-fuzz && ctest --output-on-failure -j"$jobs" -L fuzz) || status=1
echo "== sanitizer build (ASan + UBSan)"
(cd build-asan && ctest --output-on-failure -j"$jobs" -LE 'fuzz|bench') || status=1
echo "== release build (label 'once' ran in the sanitizer build only)"
(cd build && KL_HSM_PREPARED=$top/build-asan/tests/hsm-template ctest --output-on-failure -j"$jobs" -LE 'fuzz|bench|once') ||
    status=1
exit $status
