/*
 * Unit tests for frontend/tickets.c: the shared ring of ticket keys. Epoch windows and the
 * key that seals, rotation wiping what falls out, a signer outage keeping the newest key,
 * the refresh lease, a TicketKeys answer checked before it is installed, the key file's
 * format and its reload, the seqlock under a concurrent writer in another process, and the
 * shared lock taken over from a dead holder.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "kl_test.h"
#include "shm.h"
#include "tickets.h"

#define ROT 3600u
#define EPOCH_MS(e) ((uint64_t)(e)*ROT * 1000u)

static struct tls_ticket_key key(uint64_t epoch, uint8_t fill)
{
    struct tls_ticket_key k;
    memset(k.key_id, fill, sizeof(k.key_id));
    memset(k.secret, fill ^ 0x5a, sizeof(k.secret));
    k.epoch = epoch;
    return k;
}

static int holds(const struct tls_ticket_keys *ks, uint64_t epoch)
{
    for (size_t i = 0; i < ks->n; i++) {
        if (ks->keys[i].epoch == epoch) {
            return 1;
        }
    }
    return 0;
}

static int in_mapping(const struct tickets *tk, const uint8_t *secret)
{
    size_t len;
    const void *m = tickets_mapping(tk, &len);
    return memmem(m, len, secret, TLS_TICKET_SECRET_LEN) != NULL;
}

static void test_new(void)
{
    struct tickets *tk = NULL;
    is_int(tickets_new(&tk, TICKETS_HSM, 0, 2), KL_ERR_INVALID, "rotation 0 refused");
    is_int(tickets_new(&tk, TICKETS_HSM, ROT, TLS_TICKET_KEYS_MAX - 1), KL_ERR_INVALID,
           "more past epochs than the ring holds refused");
    if (!ok(tickets_new(&tk, TICKETS_HSM, ROT, 2) == 0, "a ring")) {
        return;
    }
    struct tls_ticket_keys ks;
    is_int(tickets_snapshot(tk, &ks, EPOCH_MS(100)), KL_ERR_NOT_FOUND, "empty: no keys, no tickets");
    is_int(tickets_epoch(tk, EPOCH_MS(100) + 1), 100, "epoch = unix time / rotation");
    is_int(tickets_epoch(tk, EPOCH_MS(101) - 1), 100, "the last ms of an epoch");
    tickets_free(tk);
    tickets_free(NULL);
}

static void test_epochs(void)
{
    struct tickets *tk = NULL;
    struct tls_ticket_keys ks;
    uint64_t want[8];
    if (!ok(tickets_new(&tk, TICKETS_HSM, ROT, 2) == 0, "hsm ring, 2 past epochs")) {
        return;
    }
    uint64_t now = EPOCH_MS(100) + 5000;
    size_t n = tickets_wanted(tk, want, 8, now, 0);
    ok(n == 4 && want[0] == 98 && want[1] == 99 && want[2] == 100 && want[3] == 101,
       "empty: wants epochs 98..101 (two past, current, next)");
    n = tickets_wanted(tk, want, 8, now, 1);
    ok(n == 2 && want[0] == 100 && want[1] == 101, "only_ahead: the current and the next");
    is_int(tickets_wanted(tk, want, 1, now, 0), 1, "bounded by max");
    struct tls_ticket_key k[5] = {key(98, 1), key(99, 2), key(100, 3), key(101, 4), key(97, 9)};
    is_int(tickets_install(tk, k, 5, now), 0, "install 97..101");
    is_int(tickets_count(tk), 4, "97 is out of the window at once");
    ok(!in_mapping(tk, k[4].secret), "and left no trace in the mapping");
    is_int(tickets_wanted(tk, want, 8, now, 0), 0, "nothing more wanted");
    if (ok(tickets_snapshot(tk, &ks, now) == 0 && ks.n == 4, "snapshot: 4 keys")) {
        is_int(ks.keys[ks.issue].epoch, 100, "the current epoch's key seals");
        is_mem(ks.keys[ks.issue].secret, 32, k[2].secret, 32, "with its secret");
    }
    /* A key again for an epoch held: replaced, not duplicated. */
    struct tls_ticket_key again = key(100, 7);
    is_int(tickets_install(tk, &again, 1, now), 0, "a key for an epoch held");
    is_int(tickets_count(tk), 4, "replaces it");
    ok(!in_mapping(tk, k[2].secret) && in_mapping(tk, again.secret), "the old secret is gone");

    /* Rotation: the next epoch starts. */
    now = EPOCH_MS(101) + 1;
    if (ok(tickets_snapshot(tk, &ks, now) == 0, "snapshot after the boundary")) {
        is_int(ks.keys[ks.issue].epoch, 101, "the next key seals at once, no signer needed");
        ok(!holds(&ks, 98), "98 is no longer offered");
    }
    n = tickets_wanted(tk, want, 8, now, 0);
    ok(n == 1 && want[0] == 102, "wants the new next epoch");
    ok(in_mapping(tk, k[0].secret), "98 still in the mapping until pruned");
    is_int(tickets_prune(tk, now), 0, "prune");
    is_int(tickets_count(tk), 3, "three left");
    ok(!in_mapping(tk, k[0].secret), "rotation wiped 98's secret");

    /* A signer outage: hours pass without a refresh. */
    now = EPOCH_MS(110);
    if (ok(tickets_snapshot(tk, &ks, now) == 0, "outage: still keys")) {
        ok(ks.n == 1 && ks.keys[ks.issue].epoch == 101, "the newest key held keeps sealing and opening");
    }
    is_int(tickets_prune(tk, now), 0, "prune in the outage");
    is_int(tickets_count(tk), 1, "keeps the newest key");
    /* A clock far behind the keys: none is offered (no sealing with a key from the future). */
    is_int(tickets_snapshot(tk, &ks, EPOCH_MS(50)), KL_ERR_NOT_FOUND, "a clock far behind: no tickets");
    tickets_free(tk);
}

static void test_claim(void)
{
    struct tickets *tk = NULL;
    if (!ok(tickets_new(&tk, TICKETS_HSM, ROT, 2) == 0, "ring for the lease")) {
        return;
    }
    is_int(tickets_claim(tk, 1000, 5000), 1, "first claim wins");
    is_int(tickets_claim(tk, 2000, 5000), 0, "a second worker waits");
    is_int(tickets_claim(tk, 6001, 5000), 1, "an expired lease (a failed fetch) can be taken again");
    tickets_release(tk);
    is_int(tickets_claim(tk, 6002, 5000), 1, "released: taken at once");
    tickets_hold(tk, 70000);
    is_int(tickets_claim(tk, 69999, 5000), 0, "held after a refusal: nobody asks before the hold ends");
    is_int(tickets_claim(tk, 70000, 5000), 1, "... and at its end one may");
    tickets_free(tk);
}

static void test_response(void)
{
    struct tickets *tk = NULL;
    char why[200];
    uint8_t id[8], secret[32], shortid[7];
    memset(id, 1, sizeof(id));
    memset(secret, 2, sizeof(secret));
    memset(shortid, 3, sizeof(shortid));
    uint64_t asked[2] = {100, 101}, now = EPOCH_MS(100);
    if (!ok(tickets_new(&tk, TICKETS_HSM, ROT, 2) == 0, "ring for responses")) {
        return;
    }
    Keyless__V1__TicketKey k0 = KEYLESS__V1__TICKET_KEY__INIT, k1 = KEYLESS__V1__TICKET_KEY__INIT;
    Keyless__V1__TicketKey *keys[2] = {&k0, &k1};
    Keyless__V1__TicketKeysResponse r = KEYLESS__V1__TICKET_KEYS_RESPONSE__INIT;
    r.status = KEYLESS__V1__STATUS__NOT_AUTHORIZED;
    r.message = "ticket keys not configured";
    is_int(tickets_install_response(tk, why, sizeof(why), &r, asked, 2, now), KL_ERR_DENIED, "a refusal");
    ok(strstr(why, "NOT_AUTHORIZED") != NULL && strstr(why, "ticket keys not configured") != NULL,
       "says the status and the signer's words");
    r.status = KEYLESS__V1__STATUS__OK;
    r.message = "";
    is_int(tickets_install_response(tk, why, sizeof(why), &r, asked, 2, now), KL_ERR_INVALID, "OK without keys");
    k0.epoch = 100;
    k0.key_id.data = shortid;
    k0.key_id.len = sizeof(shortid);
    k0.secret.data = secret;
    k0.secret.len = sizeof(secret);
    r.keys = keys;
    r.n_keys = 1;
    is_int(tickets_install_response(tk, why, sizeof(why), &r, asked, 2, now), KL_ERR_INVALID, "a 7-byte key id");
    k0.key_id.data = id;
    k0.key_id.len = sizeof(id);
    k0.secret.len = 31;
    is_int(tickets_install_response(tk, why, sizeof(why), &r, asked, 2, now), KL_ERR_INVALID, "a 31-byte secret");
    k0.secret.len = 32;
    k0.epoch = 99;
    is_int(tickets_install_response(tk, why, sizeof(why), &r, asked, 2, now), KL_ERR_INVALID, "an epoch not asked");
    k0.epoch = 100;
    k1 = k0;
    k1.epoch = 101;
    r.n_keys = 2;
    is_int(tickets_install_response(tk, why, sizeof(why), &r, asked, 1, now), KL_ERR_INVALID,
           "more keys than epochs asked");
    is_int(tickets_count(tk), 0, "nothing installed from a bad answer");
    is_int(tickets_install_response(tk, why, sizeof(why), &r, asked, 2, now), 0, "a good answer");
    is_int(tickets_count(tk), 2, "installs both");
    tickets_free(tk);
}

static void test_file_parse(void)
{
    struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
    uint8_t data[10 * TICKETS_FILE_KEY_LEN];
    char why[200];
    size_t n = 99;
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7 + i / TICKETS_FILE_KEY_LEN);
    }
    is_int(tickets_file_parse(keys, &n, why, sizeof(why), data, 0), KL_ERR_CONFIG, "an empty file");
    is_int(tickets_file_parse(keys, &n, why, sizeof(why), data, 47), KL_ERR_CONFIG, "47 bytes");
    ok(strstr(why, "47 bytes is not a whole number of 48-byte keys") != NULL, "says why");
    is_int(tickets_file_parse(keys, &n, why, sizeof(why), data, 80), KL_ERR_CONFIG,
           "80 bytes (nginx's other format) is not ours");
    is_int(tickets_file_parse(keys, &n, why, sizeof(why), data, 9 * 48), KL_ERR_CONFIG, "nine keys");
    uint8_t dup[96];
    memcpy(dup, data, 48);
    memcpy(dup + 48, data + 48, 48);
    memcpy(dup + 48, data, 8); /* same first 8 bytes of the name */
    is_int(tickets_file_parse(keys, &n, why, sizeof(why), dup, 96), KL_ERR_CONFIG, "two keys, one key id");
    ok(strstr(why, "keys 1 and 2 have the same key id") != NULL, "names them");
    if (ok(tickets_file_parse(keys, &n, why, sizeof(why), data, 96) == 0 && n == 2, "two keys")) {
        is_mem(keys[1].key_id, 8, data + 48, 8, "key id: the first 8 bytes of the name");
        is_mem(keys[1].secret, 32, data + 48 + 16, 32, "secret: bytes 16..47");
        is_int(keys[1].epoch, 0, "no epoch");
    }
}

static int write_key_file(const char *path, const uint8_t *data, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    size_t w = fwrite(data, 1, len, f);
    if (fclose(f) != 0 || w != len) {
        return -1;
    }
    return chmod(path, mode);
}

static void test_file_load(void)
{
    char dir[] = "/tmp/kl-tickets.XXXXXX", path[64], why[300];
    struct tickets *tk = NULL;
    struct tls_ticket_keys ks;
    uint8_t a[96], b[48];
    memset(a, 0x11, 48);
    memset(a + 48, 0x22, 48);
    memset(b, 0x33, sizeof(b));
    if (mkdtemp(dir) == NULL || !ok(tickets_new(&tk, TICKETS_FILE, ROT, 0) == 0, "file ring")) {
        ok(0, "setup");
        return;
    }
    snprintf(path, sizeof(path), "%s/ticket.key", dir);
    is_int(tickets_file_load(tk, why, sizeof(why), path, 0), KL_ERR_IO, "no file");
    ok(strstr(why, "No such file") != NULL, "says so");
    ok(write_key_file(path, a, sizeof(a), 0644) == 0, "a world-readable key file");
    is_int(tickets_file_load(tk, why, sizeof(why), path, 0), KL_ERR_CONFIG, "refused");
    ok(strstr(why, "accessible by others (mode 0644)") != NULL, "says the mode");
    ok(chmod(path, 0600) == 0, "chmod 600");
    is_int(tickets_file_load(tk, why, sizeof(why), path, 0), 0, "loads");
    if (ok(tickets_snapshot(tk, &ks, EPOCH_MS(100)) == 0 && ks.n == 2, "two keys")) {
        ok(ks.issue == 0 && ks.keys[0].key_id[0] == 0x11, "the first key seals");
    }
    is_int(tickets_file_load(tk, why, sizeof(why), path, 0), 1, "unchanged: not re-read");
    /* A bad rewrite keeps the keys in use. */
    ok(write_key_file(path, a, 50, 0600) == 0, "a truncated rewrite");
    is_int(tickets_file_load(tk, why, sizeof(why), path, 0), KL_ERR_CONFIG, "refused");
    is_int(tickets_count(tk), 2, "the running keys stay");
    ok(write_key_file(path, b, sizeof(b), 0600) == 0, "a new key file");
    is_int(tickets_file_load(tk, why, sizeof(why), path, 1), 0, "reloaded");
    if (ok(tickets_snapshot(tk, &ks, EPOCH_MS(100)) == 0 && ks.n == 1, "one key now")) {
        ok(ks.keys[0].key_id[0] == 0x33, "the new one");
    }
    ok(!in_mapping(tk, a + 16) && !in_mapping(tk, a + 48 + 16), "the old secrets are gone from the mapping");
    /* Time does not prune a file's keys. */
    is_int(tickets_prune(tk, EPOCH_MS(1000)), 0, "prune (file)");
    is_int(tickets_count(tk), 1, "keeps them");
    tickets_free(tk);
    unlink(path);
    rmdir(dir);
}

/* A writer in another process installs sets whose keys all carry one byte value; every
   snapshot the reader takes meanwhile must be one whole set. */
static void test_seqlock(void)
{
    struct tickets *tk = NULL;
    if (!ok(tickets_new(&tk, TICKETS_FILE, ROT, 0) == 0, "ring shared with a child")) {
        return;
    }
    struct tls_ticket_key set[TLS_TICKET_KEYS_MAX];
    for (size_t i = 0; i < TLS_TICKET_KEYS_MAX; i++) {
        set[i] = key(0, 1);
        memset(set[i].secret, 1, sizeof(set[i].secret));
        set[i].key_id[7] = (uint8_t)i;
    }
    if (!ok(tickets_install(tk, set, TLS_TICKET_KEYS_MAX, 0) == 0, "first set")) {
        tickets_free(tk);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        for (int round = 0; round < 20000; round++) {
            uint8_t v = (uint8_t)(round % 250 + 1);
            size_t n = (size_t)(round % TLS_TICKET_KEYS_MAX) + 1;
            for (size_t i = 0; i < n; i++) {
                memset(set[i].key_id, v, 7);
                set[i].key_id[7] = (uint8_t)i;
                memset(set[i].secret, v, sizeof(set[i].secret));
            }
            if (tickets_install(tk, set, n, 0) != 0) {
                _exit(1);
            }
        }
        _exit(0);
    }
    int torn = 0, reads = 0, status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        struct tls_ticket_keys ks;
        if (tickets_snapshot(tk, &ks, 0) != 0) {
            continue;
        }
        reads++;
        uint8_t v = ks.keys[0].secret[0];
        for (size_t i = 0; i < ks.n; i++) {
            for (size_t j = 0; j < 7; j++) {
                torn |= ks.keys[i].key_id[j] != v;
            }
            for (size_t j = 0; j < 32; j++) {
                torn |= ks.keys[i].secret[j] != v;
            }
        }
    }
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the writer finished");
    ok(reads > 0, "the reader read while it wrote");
    ok(!torn, "every snapshot was one whole set");
    tickets_free(tk);
}

static void test_lock(void)
{
    int32_t lock = 0;
    is_int(shm_lock(&lock), 0, "a free lock");
    is_int(lock, getpid(), "holds our pid");
    shm_unlock(&lock);
    pid_t dead = fork();
    if (dead == 0) {
        _exit(0);
    }
    waitpid(dead, NULL, 0);
    lock = (int32_t)dead;
    is_int(shm_lock(&lock), 0, "a lock whose holder died is taken over");
    shm_unlock(&lock);
    pid_t live = fork();
    if (live == 0) {
        pause();
        _exit(0);
    }
    lock = (int32_t)live;
    is_int(shm_lock(&lock), KL_ERR_TIMEOUT, "a live holder's lock: bounded wait, then give up");
    kill(live, SIGKILL);
    waitpid(live, NULL, 0);
}

int main(void)
{
    test_new();
    test_epochs();
    test_claim();
    test_response();
    test_file_parse();
    test_file_load();
    test_seqlock();
    test_lock();
    return kl_test_done();
}
