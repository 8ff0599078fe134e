/*
 * Unit tests for frontend/antireplay.c, the 0-RTT strike register: a binder's first use is
 * accepted and its replay refused, across processes too; a full table, the warm-up after a
 * start, a binder too short and an expiry already past all refuse (fail closed); entries
 * expire and free their slots.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "kl_test.h"
#include "antireplay.h"

#define T0 1700000000000ull

static void binder(uint8_t b[32], uint32_t n)
{
    for (int i = 0; i < 32; i++) {
        b[i] = (uint8_t)(n * 131 + (uint32_t)i * 7);
    }
    b[0] = (uint8_t)(n >> 8);
    b[1] = (uint8_t)n;
}

static void test_basic(void)
{
    struct antireplay *ar = NULL;
    uint8_t b1[32], b2[32];
    binder(b1, 1);
    binder(b2, 2);
    is_int(antireplay_new(&ar, 1000, T0, 0), KL_ERR_INVALID, "slots not a power of two");
    is_int(antireplay_new(&ar, 8, T0, 0), KL_ERR_INVALID, "fewer slots than a probe");
    if (!ok(antireplay_new(&ar, 1024, T0, 5000) == 0, "a register with a 5 s warm-up")) {
        return;
    }
    uint64_t now = T0 + 1000;
    is_int(antireplay_check_at(ar, b1, 32, now + 10000, now), 0, "during the warm-up: refused");
    now = T0 + 5000;
    is_int(antireplay_check_at(ar, b1, 32, now + 10000, now), 1, "first use: accepted");
    is_int(antireplay_check_at(ar, b1, 32, now + 10000, now + 1), 0, "replay: refused");
    is_int(antireplay_check_at(ar, b1, 48, now + 10000, now + 2), 0, "the same binder, longer: refused");
    is_int(antireplay_check_at(ar, b2, 32, now + 10000, now + 3), 1, "another binder: accepted");
    is_int(antireplay_check_at(ar, b1, 15, now + 10000, now), 0, "a binder shorter than a fingerprint: refused");
    is_int(antireplay_check_at(ar, b2, 32, now, now), 0, "an expiry not in the future: refused");
    is_int(antireplay_check_at(ar, b1, 32, now + 20000, now + 10000), 1,
           "after its expiry the binder is forgotten (the engine's freshness check refuses it by then)");
    ok(antireplay_refused_unsure(ar) == 3, "three refusals for want of certainty counted");
    antireplay_free(ar);
    antireplay_free(NULL);
}

static void test_full(void)
{
    struct antireplay *ar = NULL;
    uint8_t b[32];
    if (!ok(antireplay_new(&ar, 16, T0, 0) == 0, "a register of 16 slots")) {
        return;
    }
    int all = 1;
    for (uint32_t i = 0; i < 16; i++) {
        binder(b, 100 + i);
        all &= antireplay_check_at(ar, b, 32, T0 + 10000, T0) == 1;
    }
    ok(all, "16 binders fill it");
    binder(b, 200);
    is_int(antireplay_check_at(ar, b, 32, T0 + 10000, T0), 0, "full: a new binder is refused (fails closed)");
    binder(b, 105);
    is_int(antireplay_check_at(ar, b, 32, T0 + 10000, T0), 0, "full: a replay is still refused");
    binder(b, 200);
    is_int(antireplay_check_at(ar, b, 32, T0 + 20000, T0 + 10000), 1, "once entries expire there is room again");
    antireplay_free(ar);
}

static void test_processes(void)
{
    struct antireplay *ar = NULL;
    uint8_t b[32];
    binder(b, 7);
    if (!ok(antireplay_new(&ar, 1024, T0, 0) == 0, "a register shared with a child")) {
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        _exit(antireplay_check_at(ar, b, 32, T0 + 10000, T0) == 1 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another worker accepted the binder first");
    is_int(antireplay_check_at(ar, b, 32, T0 + 10000, T0 + 1), 0, "its replay here is refused");
    /* Many binders from two processes at once: each accepted exactly once. */
    int fds[2];
    if (!ok(pipe(fds) == 0, "pipe")) {
        antireplay_free(ar);
        return;
    }
    pid = fork();
    if (pid == 0) {
        int n = 0;
        for (uint32_t i = 0; i < 400; i++) {
            uint8_t c[32];
            binder(c, 1000 + i);
            n += antireplay_check_at(ar, c, 32, T0 + 10000, T0);
        }
        _exit(write(fds[1], &n, sizeof(n)) == sizeof(n) ? 0 : 1);
    }
    int here = 0;
    for (uint32_t i = 0; i < 400; i++) {
        uint8_t c[32];
        binder(c, 1000 + i);
        here += antireplay_check_at(ar, c, 32, T0 + 10000, T0);
    }
    waitpid(pid, &status, 0);
    int there = -1;
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 && read(fds[0], &there, sizeof(there)) == sizeof(there),
       "the child counted its acceptances");
    close(fds[0]);
    close(fds[1]);
    is_int(here + there, 400, "400 binders raced by two processes: 400 acceptances in all");
    antireplay_free(ar);
}

int main(void)
{
    test_basic();
    test_full();
    test_processes();
    return kl_test_done();
}
