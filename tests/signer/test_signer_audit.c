/*
 * test_signer_audit.c - the audit trail against an attacker (issue 13), end to end on a
 * SoftHSM2 token with the audit-signing key made by hsm-setup:
 *  - a run writes start, sign (with the signature's and the key's SHA-256), heartbeat and
 *    stop records and signed checkpoints; `audit-verify --pubkey` passes, and with the
 *    last anchored checkpoint (--last-seq/--head) too; another key fails;
 *  - each attack fails verification or the restart: the last 50 lines cut off with the
 *    signer stopped (restart refused, verify against the anchor fails), the log removed
 *    (restart refused without --new-audit-chain; with it, the break is on the record),
 *    an empty file, a rewritten line (with or without the hashes chained again), a forged
 *    checkpoint, a deleted record re-chained;
 *  - the live log unlinked: a new file continues the chain, the signer keeps signing;
 *  - 100,000 bad requests with 32 + 30 KiB fields: the log grows by a bounded amount and
 *    every refusal is accounted for (one record each, or counted in a suppressed record);
 *  - a full disk (a small tmpfs, root only): a clear refusal, then signing again once
 *    space returns, with no restart.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit_line.h"
#include "crypto.h"
#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"

static struct harness H;
static char conf[400], pub[400], anchor[400];
static uint64_t next_id = 1;

static const char audit_opts[] = "audit_key = pkcs11:token=keyless;object=audit-signing;type=private\n"
                                 "audit_heartbeat = 300ms\n"
                                 "audit_checkpoint_interval = 3s\n"
                                 "audit_checkpoint_records = 20\n"
                                 "audit_syslog_facility = none\n";

/* ---- helpers ---- */

/* The config with the audit options; the log is H.audit. */
static int write_conf(const char *path)
{
    char signer[2048];
    snprintf(signer, sizeof(signer), "%saudit_anchor_file = %s\n", audit_opts, anchor);
    return harness_write_config(&H, path, signer, NULL, harness_std_keys);
}

/* audit-verify --pubkey PUB ARGS FILE; the exit status, the report in out. */
static int verify(char *out, size_t cap, const char *args, const char *file)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s audit-verify --pubkey %s %s %s 2>&1", H.bin, pub, args, file);
    return harness_run(out, cap, cmd);
}

/* "--last-seq N --head HEX" from the last line of the anchor file. */
static int last_anchor(char *args, size_t cap)
{
    char line[512] = "", *s, *h;
    FILE *f = fopen(anchor, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
    }
    fclose(f);
    s = strstr(line, " seq=");
    h = strstr(line, " head=");
    if (s == NULL || h == NULL) {
        return -1;
    }
    snprintf(args, cap, "--last-seq %lu --head %.64s", strtoul(s + 5, NULL, 10), h + 6);
    return 0;
}

static int sign_n(int n, int *good)
{
    struct rpc_client c;
    *good = 1;
    if (rpc_client_connect(&c, H.sock) != 0) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        *good &= harness_sign_status(&H, &c, next_id++, "ecdsa-p256", 0x0403, 1) == KEYLESS__V1__STATUS__OK;
    }
    rpc_client_close(&c);
    return 0;
}

/* Start on conf, run n signatures, idle idle_ms, stop: 1 if all went well. */
static int run(const char *what, int n, int idle_ms)
{
    int good = 0;
    char name[200];
    snprintf(name, sizeof(name), "%s: started", what);
    if (!ok(harness_start(&H, conf) == 0, name)) {
        return 0;
    }
    snprintf(name, sizeof(name), "%s: %d signatures verify", what, n);
    ok(sign_n(n, &good) == 0 && good, name);
    if (idle_ms > 0) {
        usleep((useconds_t)idle_ms * 1000);
    }
    snprintf(name, sizeof(name), "%s: SIGTERM, exit 0", what);
    int st = harness_stop(&H);
    is_int(st, 0, name);
    return st == 0 && good;
}

/* The signer on conf (plus flags) must refuse to start: exit 1, one line containing want. */
static void refuses(const char *what, const char *want)
{
    char cmd[1200], out[4096], name[300];
    snprintf(cmd, sizeof(cmd), "timeout 30 %s --config %s 2>&1", H.bin, conf);
    int rc = harness_run(out, sizeof(out), cmd);
    snprintf(name, sizeof(name), "%s: the restart is refused (exit 1)", what);
    is_int(rc, 1, name);
    snprintf(name, sizeof(name), "%s: one line naming the cause and --new-audit-chain", what);
    if (!ok(strstr(out, want) != NULL && strstr(out, "--new-audit-chain") != NULL && harness_count_lines(out) == 1,
            name)) {
        diag("want '%s' in: %s", want, out);
    }
}

static int copy_file(const char *from, const char *to)
{
    char cmd[1000];
    snprintf(cmd, sizeof(cmd), "cp -p %s %s", from, to);
    return harness_run(NULL, 0, cmd);
}

/* The lines of a file (newlines cut off), at most max. */
static size_t read_lines(const char *path, char **lines, size_t max)
{
    FILE *f = fopen(path, "r");
    char *l = NULL;
    size_t cap = 0, n = 0;
    ssize_t got;
    if (f == NULL) {
        return 0;
    }
    while (n < max && (got = getline(&l, &cap, f)) > 0) {
        if (l[got - 1] != '\n' && l[0] == '\0') {
            break; /* the zero tail of a live or crashed log (issue 15), not a line */
        }
        l[got - 1] = '\0';
        lines[n++] = strdup(l);
    }
    free(l);
    fclose(f);
    return n;
}

/* Bytes of records in a log: its size without the zeros a live log keeps after them. */
static off_t records_size(const char *path)
{
    char buf[4096];
    off_t end = -1;
    FILE *f = fopen(path, "rb");
    size_t got;
    if (f == NULL) {
        return -1;
    }
    for (off_t at = 0; (got = fread(buf, 1, sizeof(buf), f)) > 0; at += (off_t)got) {
        for (size_t i = 0; i < got; i++) {
            if (buf[i] != '\0') {
                end = at + (off_t)i + 1;
            }
        }
    }
    fclose(f);
    return end < 0 ? 0 : end;
}

static int write_lines(const char *path, char **lines, size_t n)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (lines[i] != NULL) {
            fprintf(f, "%s\n", lines[i]);
        }
    }
    return fclose(f);
}

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(lines[i]);
    }
}

/* What an attacker without the audit key can do after an edit: chain every line again
 * (prev = the hash before, hash = SHA-256 of the line up to its hash member). */
static void rechain(char **lines, size_t n)
{
    uint8_t prev[AUDIT_HASH_LEN], h[AUDIT_HASH_LEN];
    char hex[2 * AUDIT_HASH_LEN + 1];
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        if (lines[i] == NULL) {
            continue;
        }
        size_t len = strlen(lines[i]), blen = len - 75; /* ,"hash":"<64>"} */
        if (have) {
            audit_hex_hash(hex, prev);
            memcpy(lines[i] + blen - 65, hex, 64);
        }
        crypto_sha256(h, lines[i], blen);
        audit_hex_hash(hex, h);
        memcpy(lines[i] + blen + 9, hex, 64);
        memcpy(prev, h, sizeof(prev));
        have = 1;
    }
}

/* Renumber seq from the first line on (after a line was taken out), before rechain(). */
static void renumber(char **lines, size_t n)
{
    unsigned long next = 0;
    for (size_t i = 0; i < n; i++) {
        char *p, *end, *nl;
        if (lines[i] == NULL || (p = strstr(lines[i], "\"seq\":")) == NULL) {
            continue;
        }
        p += 6;
        unsigned long cur = strtoul(p, &end, 10);
        if (next == 0) {
            next = cur;
        }
        size_t need = strlen(lines[i]) + 24;
        if ((nl = malloc(need)) == NULL) {
            continue;
        }
        snprintf(nl, need, "%.*s%lu%s", (int)(p - lines[i]), lines[i], next++, end);
        free(lines[i]);
        lines[i] = nl;
    }
}

static size_t find_line(char **lines, size_t n, const char *needle, size_t from)
{
    for (size_t i = from; i < n; i++) {
        if (lines[i] != NULL && strstr(lines[i], needle) != NULL) {
            return i;
        }
    }
    return n;
}

/* ---- the tests ---- */

static char backup[400], anchor_args[300];

static void test_positive(void)
{
    char out[4096], cmd[2048], other[400];
    uint8_t spki[2048], h[32];
    char hex[65], want[200];

    (void)run("first run", 60, 800);
    is_int(verify(out, sizeof(out), "", H.audit), 0, "audit-verify --pubkey: the log verifies");
    ok(strstr(out, "signed checkpoints, verified through seq") != NULL, "... and reports the verified range");
    diag("%s", out);
    ok(last_anchor(anchor_args, sizeof(anchor_args)) == 0, "the anchor file holds the checkpoints");
    is_int(verify(out, sizeof(out), anchor_args, H.audit), 0, "audit-verify with the last anchored checkpoint: OK");
    ok(harness_audit_grep(&H, "\"op\":\"start\"") && harness_audit_grep(&H, "\"config_sha256\":\""),
       "a start record with the configuration's SHA-256");
    ok(harness_audit_grep(&H, "\"op\":\"stop\""), "a stop record");
    ok(harness_audit_grep(&H, "\"reason\":\"heartbeat\""), "a heartbeat checkpoint while idle");
    ok(harness_audit_grep(&H, "\"reason\":\"records\""), "a checkpoint every audit_checkpoint_records records");
    ok(harness_audit_grep(&H, "\"sig_sha256\":\""), "sign records carry the SHA-256 of the signature");
    size_t sl = harness_cert_spki(&H, "ecdsa-p256", spki, sizeof(spki));
    crypto_sha256(h, spki, sl);
    audit_hex_hash(hex, h);
    snprintf(want, sizeof(want), "\"spki_sha256\":\"%s\"", hex);
    ok(sl > 0 && harness_audit_grep(&H, want), "... and the SHA-256 of the key's SPKI (the certificate's)");
    /* Every sign record, not only the first: the signer remembers the hash per thread. */
    char count_out[64], count_cmd[1200];
    snprintf(count_cmd, sizeof(count_cmd), "grep -c '\"op\":\"sign\"' %s; grep -c '%s' %s", H.audit, want, H.audit);
    unsigned long n_sign = 0, n_spki = 0;
    ok(harness_run(count_out, sizeof(count_out), count_cmd) == 0 &&
           sscanf(count_out, "%lu %lu", &n_sign, &n_spki) == 2 && n_sign >= 60 && n_spki == n_sign,
       "... in every one of the sign records");

    /* Negative: another EC key is not the audit key. */
    snprintf(other, sizeof(other), "%s/other.pub.pem", H.dir);
    snprintf(cmd, sizeof(cmd), "openssl x509 -in %s/pki/ecdsa-p256.crt.pem -noout -pubkey > %s", H.hsm, other);
    ok(harness_run(NULL, 0, cmd) == 0, "another EC public key");
    snprintf(cmd, sizeof(cmd), "%s audit-verify --pubkey %s %s 2>&1", H.bin, other, H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 1, "audit-verify with another key: exit 1");
    ok(strstr(out, "does not verify with the audit key") != NULL, "... a checkpoint signature does not verify");
    snprintf(cmd, sizeof(cmd), "%s audit-verify --pubkey /nonexistent %s 2>&1", H.bin, H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 2, "audit-verify with no key file: exit 2");
    is_int(verify(out, sizeof(out), "--last-seq 0", H.audit), 2, "--last-seq 0: usage error");
    snprintf(backup, sizeof(backup), "%s/backup.jsonl", H.dir);
    ok(copy_file(H.audit, backup) == 0, "a copy of the good log kept");
}

static void test_truncate_rm_empty(void)
{
    char out[4096], cmd[1200], state[400];

    /* head -n -50 log > t; mv t log, with the signer stopped, then a restart. */
    snprintf(cmd, sizeof(cmd), "head -n -50 %s > %s/t && mv %s/t %s", H.audit, H.dir, H.dir, H.audit);
    ok(harness_run(NULL, 0, cmd) == 0, "head -n -50 log > t; mv t log");
    refuses("truncated log", "fewer than the");
    is_int(verify(out, sizeof(out), anchor_args, H.audit), 1, "truncated log: audit-verify against the anchor fails");
    ok(strstr(out, "before the anchored checkpoint") != NULL, "... the log ends before the anchored checkpoint");
    diag("%s", out);

    /* rm log, then a restart. */
    ok(unlink(H.audit) == 0, "rm log");
    refuses("removed log", "missing or empty");
    /* An empty file. */
    FILE *f = fopen(H.audit, "w");
    ok(f != NULL && fclose(f) == 0, ": > log");
    refuses("emptied log", "missing or empty");
    is_int(verify(out, sizeof(out), "", H.audit), 1, "empty log: audit-verify --pubkey fails");
    ok(strstr(out, "no records") != NULL, "... an empty log has no start record");
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s 2>&1", H.bin, H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 1, "empty log: audit-verify without the key fails too");

    /* A replaced log: another chain that verifies on its own. */
    snprintf(state, sizeof(state), "%s.state", H.audit);
    ok(copy_file(backup, H.audit) == 0, "the good log back");
    (void)run("restored log", 1, 0);
    ok(copy_file(backup, H.audit) == 0, "the log replaced by an older copy of itself");
    refuses("replaced log", "fewer than the");

    /* --new-audit-chain: the operator starts over on purpose, and that is on the record. */
    ok(unlink(H.audit) == 0, "rm log again");
    snprintf(cmd, sizeof(cmd), "timeout -s TERM 2 %s --config %s --new-audit-chain >/dev/null 2>&1", H.bin, conf);
    is_int(harness_run(NULL, 0, cmd), 124, "--new-audit-chain: starts (stopped by timeout)");
    ok(harness_audit_grep(&H, "\"reason\":\"new audit chain (--new-audit-chain): the log is missing or empty"),
       "... its start record says the operator began a new chain, and why");
    is_int(verify(out, sizeof(out), "", H.audit), 0, "the new chain verifies on its own");
    is_int(verify(out, sizeof(out), anchor_args, H.audit), 1, "... but not against the last anchored checkpoint");
    (void)run("after --new-audit-chain, a plain restart", 1, 0);
}

static void test_rewrite_forge(void)
{
    char *lines[4096], t[400], out[4096];
    size_t n, k;

    snprintf(t, sizeof(t), "%s/t.jsonl", H.dir);
    n = read_lines(backup, lines, 4096);
    ok(n > 60, "the good log read back");

    /* A rewritten line: another request id in a sign record, hashes left as they were. */
    k = find_line(lines, n, "\"op\":\"sign\"", 0);
    char *p = k < n ? strstr(lines[k], "\"request_id\":") : NULL;
    if (ok(p != NULL, "a sign record")) {
        p[13] = p[13] == '9' ? '8' : '9';
    }
    ok(write_lines(t, lines, n) == 0, "a line rewritten");
    is_int(verify(out, sizeof(out), "", t), 1, "rewritten line: audit-verify fails");
    ok(strstr(out, "line edited") != NULL, "... at the edited line");

    /* The same, chained again by an attacker without the audit key. */
    rechain(lines, n);
    ok(write_lines(t, lines, n) == 0, "the chain recomputed after the edit");
    char cmd[1000];
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s 2>&1", H.bin, t);
    is_int(harness_run(out, sizeof(out), cmd), 0, "without the key the re-chained log passes (why the key exists)");
    is_int(verify(out, sizeof(out), "", t), 1, "with --pubkey the re-chained log fails");
    ok(strstr(out, "signature does not verify") != NULL, "... the next checkpoint's signature does not verify");
    diag("%s", out);
    free_lines(lines, n);

    /* A forged checkpoint: one hex digit of a signature changed, chain recomputed. */
    n = read_lines(backup, lines, 4096);
    k = find_line(lines, n, "\"op\":\"checkpoint\"", 3);
    p = k < n ? strstr(lines[k], "\"sig\":\"") : NULL;
    if (ok(p != NULL, "a checkpoint")) {
        p[20] = p[20] == 'a' ? 'b' : 'a';
    }
    rechain(lines, n);
    ok(write_lines(t, lines, n) == 0, "a forged checkpoint, chained");
    is_int(verify(out, sizeof(out), "", t), 1, "forged checkpoint: audit-verify fails");
    ok(strstr(out, "signature does not verify") != NULL, "... its signature does not verify");
    free_lines(lines, n);

    /* A checkpoint removed, chain recomputed: more records than the interval without one. */
    n = read_lines(backup, lines, 4096);
    k = find_line(lines, n, "\"reason\":\"records\"", 0);
    if (ok(k < n, "a records checkpoint")) {
        free(lines[k]);
        lines[k] = NULL;
    }
    renumber(lines, n);
    rechain(lines, n);
    ok(write_lines(t, lines, n) == 0, "a checkpoint removed, seq renumbered, chained");
    is_int(verify(out, sizeof(out), "", t), 1, "a missing checkpoint: audit-verify fails");
    ok(strstr(out, "a checkpoint is missing") != NULL || strstr(out, "signature does not verify") != NULL,
       "... a checkpoint is missing (or the next one no longer verifies)");
    diag("%s", out);
    free_lines(lines, n);

    /* A sign record deleted, seq renumbered, chain recomputed: the signed checkpoints no
     * longer match (their statements name the old seq and prev, and their counts). */
    n = read_lines(backup, lines, 4096);
    k = find_line(lines, n, "\"op\":\"sign\"", 0);
    if (ok(k < n, "a sign record to delete")) {
        free(lines[k]);
        lines[k] = NULL;
    }
    renumber(lines, n);
    rechain(lines, n);
    ok(write_lines(t, lines, n) == 0, "a record deleted, seq renumbered, chained");
    char cmd2[1000];
    snprintf(cmd2, sizeof(cmd2), "%s audit-verify %s 2>&1", H.bin, t);
    is_int(harness_run(out, sizeof(out), cmd2), 0, "without the key the doctored log passes");
    is_int(verify(out, sizeof(out), "", t), 1, "with --pubkey it fails");
    diag("%s", out);
    free_lines(lines, n);
}

static void test_unlinked(void)
{
    int good = 0;
    char out[4096], name[200];

    if (!ok(harness_start(&H, conf) == 0, "unlinked: started")) {
        return;
    }
    ok(sign_n(2, &good) == 0 && good, "unlinked: signs");
    ok(unlink(H.audit) == 0, "the live log unlinked");
    int found = 0;
    for (int i = 0; i < 40 && !found; i++) {
        usleep(100 * 1000);
        found = access(H.audit, F_OK) == 0 && harness_audit_grep(&H, "\"op\":\"reopen\"");
    }
    ok(found, "within the checkpoint interval a new file continues the chain (op reopen)");
    ok(sign_n(2, &good) == 0 && good, "the signer keeps signing");
    is_int(harness_stop(&H), 0, "unlinked: exit 0");
    is_int(verify(out, sizeof(out), "", H.audit), 0, "the new file verifies");
    snprintf(name, sizeof(name), "... as a continuation (unanchored start)");
    ok(strstr(out, "unanchored start") != NULL, name);
    diag("%s", out);
}

struct flood {
    struct rpc_client *c;
    unsigned n;
    const char *key;
    int err;
};

static void *flood_writer(void *arg)
{
    struct flood *f = arg;
    uint8_t hash[32] = {1};
    for (unsigned i = 0; i < f->n && f->err == 0; i++) {
        Keyless__V1__Request req;
        Keyless__V1__SignRequest sr;
        rpc_client_sign_request(&req, &sr, 1000000 + i, f->key, 0x0403, 1, hash, sizeof(hash));
        sr.server_name = (char *)f->key + 2048; /* a second large field */
        if (rpc_client_send(f->c, &req) != 0) {
            f->err = 1;
        }
    }
    return NULL;
}

static void test_flood(void)
{
    const unsigned n = getenv("KL_FLOOD_N") != NULL ? (unsigned)atoi(getenv("KL_FLOOD_N")) : 100000;
    struct rpc_client c;
    char cmd[1000], out[256];
    struct stat st;
    pthread_t th;
    unsigned got = 0, refused = 0;
    struct timespec t0, t1;

    /* 32 KiB of key name and 30 KiB of it again as SNI: one frame just under FRAME_MAX. */
    size_t klen = 32 * 1024;
    char *key = malloc(klen + 1);
    memset(key, 'k', klen);
    key[klen] = '\0';
    if (!ok(harness_start(&H, conf) == 0, "flood: started") || stat(H.audit, &st) != 0) {
        free(key);
        return;
    }
    off_t before = records_size(H.audit); /* the live log: without its zero tail */
    if (!ok(rpc_client_connect(&c, H.sock) == 0, "flood: connected")) {
        free(key);
        return;
    }
    struct flood f = {&c, n, key, 0};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_create(&th, NULL, flood_writer, &f);
    while (got < n) {
        Keyless__V1__Response *resp = NULL;
        if (rpc_client_recv(&c, &resp, 20000) != 0) {
            break;
        }
        got++;
        if (resp->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && resp->sign->status != KEYLESS__V1__STATUS__OK) {
            refused++;
        }
        keyless__v1__response__free_unpacked(resp, NULL);
    }
    pthread_join(th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rpc_client_close(&c);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    diag("flood: %u requests of 62 KiB answered in %.1f s", n, secs);
    is_int((long long)got, (long long)n, "flood: every bad request answered");
    is_int((long long)refused, (long long)n, "flood: every one refused");
    is_int(harness_stop(&H), 0, "flood: exit 0");
    ok(stat(H.audit, &st) == 0, "flood: the log");
    long long grew = (long long)(st.st_size - before);
    diag("flood: the log grew by %lld bytes for %u refusals", grew, n);
    ok(grew < 4 * 1024 * 1024, "flood: the log grew by a bounded amount (< 4 MiB)");
    /* Every refusal accounted for: its own record, or counted in a suppressed record. */
    snprintf(cmd, sizeof(cmd),
             "awk 'index($0, \"\\\"request_id\\\":\") && index($0, \"\\\"status\\\":\\\"UNKNOWN_KEY\\\"\") { n++ } "
             "match($0, /\"suppressed\":[0-9]+/) { n += substr($0, RSTART + 13, RLENGTH - 13) } END { print n }' %s",
             H.audit);
    ok(harness_run(out, sizeof(out), cmd) == 0 && strtoull(out, NULL, 10) >= n,
       "flood: every refusal is a record or counted in a suppressed record");
    diag("accounted: %s", out);
    ok(harness_audit_grep(&H, "\"op\":\"suppressed\""), "flood: repeated refusals aggregated with a count");
    free(key);
}

static void test_disk_full(void)
{
    char dir[262], log[300], fill[400], cmd[1200], conf_full[400], saved_conf[400];
    int good = 0;

    if (geteuid() != 0) {
        skip("disk full", "needs root to mount a small tmpfs");
        return;
    }
    snprintf(dir, sizeof(dir), "%s/full", H.dir);
    mkdir(dir, 0700);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700") != 0) {
        skip("disk full", "mount tmpfs failed");
        return;
    }
    snprintf(log, sizeof(log), "%s/audit.jsonl", dir);
    snprintf(fill, sizeof(fill), "%s/filler", dir);
    snprintf(conf_full, sizeof(conf_full), "%s/full.conf", H.dir);
    snprintf(saved_conf, sizeof(saved_conf), "%s", conf);
    snprintf(conf, sizeof(conf), "%s", conf_full);
    char keep_audit[320];
    snprintf(keep_audit, sizeof(keep_audit), "%s", H.audit);
    snprintf(H.audit, sizeof(H.audit), "%s", log);
    ok(write_conf(conf) == 0, "disk full: config with the log on a 256 KiB tmpfs");
    if (ok(harness_start(&H, conf) == 0, "disk full: started")) {
        ok(sign_n(2, &good) == 0 && good, "disk full: signs while there is space");
        snprintf(cmd, sizeof(cmd), "dd if=/dev/zero of=%s bs=4k 2>/dev/null; sync", fill);
        (void)harness_run(NULL, 0, cmd);
        /* The last page of the log may still take a line or two: sign until a record fails. */
        struct rpc_client c;
        int st = -1;
        if (rpc_client_connect(&c, H.sock) == 0) {
            for (int i = 0; i < 200 && (st = harness_sign_status(&H, &c, next_id++, "ecdsa-p256", 0x0403, 0)) ==
                                           KEYLESS__V1__STATUS__OK;
                 i++) {
            }
            rpc_client_close(&c);
        }
        is_int(st, KEYLESS__V1__STATUS__HSM_ERROR, "disk full: no signature without its record (HSM_ERROR)");
        snprintf(cmd, sizeof(cmd), "grep -c 'write failed (No space left on device)' %s", H.errlog);
        char out[64];
        ok(harness_run(out, sizeof(out), cmd) == 0 && atoi(out) >= 1, "disk full: one clear line in the log");
        ok(unlink(fill) == 0, "space returns");
        ok(sign_n(2, &good) == 0 && good, "disk full: signs again, no restart");
        snprintf(cmd, sizeof(cmd), "grep -c 'writes succeed again' %s", H.errlog);
        ok(harness_run(out, sizeof(out), cmd) == 0 && atoi(out) >= 1, "disk full: the recovery is logged");
        is_int(harness_stop(&H), 0, "disk full: exit 0");
        char rep[4096];
        is_int(verify(rep, sizeof(rep), "", log), 0, "disk full: the chain verifies (no torn or lost line)");
        diag("%s", rep);
    }
    (void)umount(dir);
    snprintf(H.audit, sizeof(H.audit), "%s", keep_audit);
    snprintf(conf, sizeof(conf), "%s", saved_conf);
}

static void test_config(void)
{
    char c2[400], cmd[1000], out[4096];
    snprintf(c2, sizeof(c2), "%s/bad.conf", H.dir);
    FILE *f = fopen(c2, "w");
    if (f == NULL) {
        return;
    }
    fclose(f);
    /* The audit key as a TLS key: refused with one line. */
    char keys[4096];
    snprintf(keys, sizeof(keys),
             "%s[key sneaky]\nuri = pkcs11:token=keyless;object=audit-signing;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\n",
             harness_std_keys);
    char signer[1000];
    snprintf(signer, sizeof(signer), "%s", audit_opts);
    ok(harness_write_config(&H, c2, signer, NULL, keys) == 0, "a [key] naming the audit key");
    snprintf(cmd, sizeof(cmd), "timeout 30 %s --config %s 2>&1", H.bin, c2);
    is_int(harness_run(out, sizeof(out), cmd), 1, "the audit key as a TLS key: exit 1");
    ok(strstr(out, "[key sneaky] uri: this is the audit key") != NULL && harness_count_lines(out) == 1,
       "... one line naming the [key]");
    diag("%s", out);
    ok(harness_write_config(&H, c2, "audit_checkpoint_records = 0\n", NULL, harness_std_keys) == 0, "bad value");
    snprintf(cmd, sizeof(cmd), "%s --config %s 2>&1", H.bin, c2);
    is_int(harness_run(out, sizeof(out), cmd), 2, "audit_checkpoint_records = 0: exit 2");
    ok(harness_write_config(&H, c2, "audit_syslog_facility = kern\n", NULL, harness_std_keys) == 0, "bad value");
    is_int(harness_run(out, sizeof(out), cmd), 2, "audit_syslog_facility = kern: exit 2");
    ok(harness_write_config(&H, c2, "audit_key = pkcs11:token=keyless;object=nope;type=private\n", NULL,
                            harness_std_keys) == 0,
       "an audit key that is not on the token");
    snprintf(cmd, sizeof(cmd), "timeout 30 %s --config %s 2>&1", H.bin, c2);
    is_int(harness_run(out, sizeof(out), cmd), 1, "missing audit key: exit 1");
    ok(strstr(out, "[signer] audit_key: ") != NULL && harness_count_lines(out) == 1, "... one line");
    diag("%s", out);
}

int main(void)
{
    if (harness_init(&H) != 0 || crypto_init() != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    snprintf(conf, sizeof(conf), "%s/audit.conf", H.dir);
    snprintf(pub, sizeof(pub), "%s/pki/audit-signing.pub.pem", H.hsm);
    snprintf(anchor, sizeof(anchor), "%s/anchor.txt", H.dir);
    if (!ok(access(pub, R_OK) == 0, "hsm-setup exported the audit public key") ||
        !ok(write_conf(conf) == 0, "config")) {
        harness_cleanup(&H);
        return kl_test_done();
    }
    test_config();
    test_positive();
    test_truncate_rm_empty();
    test_rewrite_forge();
    test_unlinked();
    test_flood();
    test_disk_full();
    harness_cleanup(&H);
    return kl_test_done();
}
