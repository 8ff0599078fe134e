/*
 * test_signer_auditcfg.c - keyless-signer's audit log options, end to end:
 *  - a torn last line (a crash mid-write) is refused at start with ONE line naming the
 *    config, the key, the log file and the fix, and the log is left untouched;
 *  - audit_repair_torn = yes: the torn bytes are kept in <log>.torn.<time>, cut off,
 *    the signer starts and signs, and the whole chain verifies with audit-verify;
 *  - audit_rotate_bytes = N: the log is rotated whenever it reaches N bytes; the rotated
 *    files are about N bytes each, and `keyless-signer audit-verify` given every file
 *    oldest first verifies the one chain across them (a file left out or two files
 *    swapped fail);
 *  - bad values are config errors (exit 2).
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"

static struct harness H;

static int sign_ok(struct rpc_client *c, uint64_t id)
{
    return harness_sign_status(&H, c, id, "ecdsa-p256", 0x0403, 1) == KEYLESS__V1__STATUS__OK;
}

/* Start on conf, sign n times (ids from *id_p), stop. 1 if all went well. */
static int run_signing(const char *conf, int n, uint64_t *id_p, const char *what)
{
    struct rpc_client c;
    char name[300];
    int good = 1;
    snprintf(name, sizeof(name), "%s: started", what);
    if (!ok(harness_start(&H, conf) == 0, name)) {
        return 0;
    }
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        (void)harness_stop(&H);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        good &= sign_ok(&c, ++*id_p);
    }
    rpc_client_close(&c);
    snprintf(name, sizeof(name), "%s: %d signatures verify", what, n);
    ok(good, name);
    snprintf(name, sizeof(name), "%s: SIGTERM, exit 0", what);
    is_int(harness_stop(&H), 0, name);
    return good;
}

/* Lines in the files of a shell glob or list (each record is one line). */
static long count_lines(const char *files)
{
    char cmd[8192], out[64];
    snprintf(cmd, sizeof(cmd), "cat %s | wc -l", files);
    return harness_run(out, sizeof(out), cmd) == 0 ? atol(out) : -1;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_torn(void)
{
    static const char torn[] = "{\"v\":1,\"seq\":9999,\"time\":\"2026-11-";
    char conf[400], cmd[1400], out[4096], pattern[400], want[1000];
    uint64_t id = 0;
    long size;
    FILE *f;
    glob_t g;

    snprintf(conf, sizeof(conf), "%s/plain.conf", H.dir);
    if (harness_write_config(&H, conf, NULL, NULL, harness_std_keys) != 0) {
        ok(0, "config");
        return;
    }
    (void)run_signing(conf, 3, &id, "first run");
    /* A crash in the middle of write(2): the last line has no newline. */
    f = fopen(H.audit, "a");
    ok(f != NULL && fputs(torn, f) >= 0 && fclose(f) == 0, "a torn last line appended");
    size = file_size(H.audit);

    snprintf(cmd, sizeof(cmd), "timeout 60 %s --config %s 2>&1", H.bin, conf);
    is_int(harness_run(out, sizeof(out), cmd), 1, "torn last line: exit 1");
    snprintf(want, sizeof(want), "keyless-signer: %s: [signer] audit_log: %s: the last line is incomplete (%zu bytes",
             conf, H.audit, strlen(torn));
    if (!ok(strstr(out, want) != NULL && strstr(out, "(audit_repair_torn = yes)\n") != NULL &&
                harness_count_lines(out) == 1,
            "torn last line: ONE line naming config, key, file, what and the fix")) {
        diag("want '%s' in: %s", want, out);
    }
    diag("%s", out);
    is_int(file_size(H.audit), size, "torn last line: the log is left as it was");
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s 2>&1", H.bin, H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 1, "audit-verify reports the torn line too");

    /* Bad value, then the repair. */
    snprintf(conf, sizeof(conf), "%s/bad.conf", H.dir);
    if (harness_write_config(&H, conf, "audit_repair_torn = maybe", NULL, harness_std_keys) == 0) {
        snprintf(cmd, sizeof(cmd), "%s --config %s 2>&1", H.bin, conf);
        is_int(harness_run(out, sizeof(out), cmd), 2, "audit_repair_torn = maybe: exit 2");
        ok(strstr(out, "[signer] audit_repair_torn: 'maybe' is not yes or no") != NULL && harness_count_lines(out) == 1,
           "audit_repair_torn = maybe: one line");
    }
    snprintf(conf, sizeof(conf), "%s/repair.conf", H.dir);
    if (harness_write_config(&H, conf, "audit_repair_torn = yes", NULL, harness_std_keys) != 0) {
        ok(0, "config");
        return;
    }
    (void)run_signing(conf, 2, &id, "audit_repair_torn = yes");
    snprintf(cmd, sizeof(cmd), "grep -c 'cut a torn last line (%zu bytes)' %s", strlen(torn), H.errlog);
    ok(harness_run(out, sizeof(out), cmd) == 0 && atoi(out) == 1, "the repair is logged once");
    snprintf(pattern, sizeof(pattern), "%s.torn.*", H.audit);
    if (ok(glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc == 1, "the torn bytes are kept in <log>.torn.<time>")) {
        char kept[128] = "";
        f = fopen(g.gl_pathv[0], "r");
        if (f != NULL) {
            size_t n = fread(kept, 1, sizeof(kept) - 1, f);
            kept[n] = '\0';
            fclose(f);
        }
        is_int((int)strcmp(kept, torn), 0, "the kept bytes are exactly the torn line");
    }
    globfree(&g);
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s 2>&1", H.bin, H.audit);
    ok(harness_run(out, sizeof(out), cmd) == 0 && strstr(out, "OK: ") != NULL, "after the repair the chain verifies");
    /* Every line from seq 1 (the start, stop and checkpoint records of both runs included):
     * the repaired log continues right after its last complete line. */
    snprintf(want, sizeof(want), "OK: %ld records, seq 1..%ld,", count_lines(H.audit), count_lines(H.audit));
    ok(strstr(out, want) != NULL, "the chain continues where the last complete line ended");
    diag("%s", out);

    /* A clean log with the option on: nothing is cut. */
    (void)run_signing(conf, 1, &id, "audit_repair_torn = yes on a clean log");
    snprintf(cmd, sizeof(cmd), "grep -c 'cut a torn last line' %s", H.errlog);
    ok(harness_run(out, sizeof(out), cmd) == 0 && atoi(out) == 1, "a clean log is not touched");
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s 2>&1", H.bin, H.audit);
    snprintf(want, sizeof(want), "OK: %ld records, seq 1..%ld,", count_lines(H.audit), count_lines(H.audit));
    ok(harness_run(out, sizeof(out), cmd) == 0 && strstr(out, want) != NULL, "and still verifies");

    /* A complete last line that does not verify is not a torn write: refused, and the hint
     * to repair (chosen by the typed reason, not by the message) is not given. */
    char *saved = NULL;
    size_t saved_len = 0;
    f = fopen(H.audit, "rb");
    if (f != NULL) {
        saved = malloc(1 << 20);
        saved_len = saved != NULL ? fread(saved, 1, 1 << 20, f) : 0;
        fclose(f);
    }
    if (!ok(saved != NULL && saved_len > 2 && saved[saved_len - 1] == '\n', "the log read back")) {
        free(saved);
        return;
    }
    size_t last = saved_len - 1;
    while (last > 0 && saved[last - 1] != '\n') {
        last--;
    }
    saved[last + 2] ^= 1; /* the "v" member's name: the line no longer checks */
    f = fopen(H.audit, "wb");
    ok(f != NULL && fwrite(saved, 1, saved_len, f) == saved_len && fclose(f) == 0, "the last line edited");
    snprintf(cmd, sizeof(cmd), "timeout 60 %s --config %s 2>&1", H.bin, conf);
    is_int(harness_run(out, sizeof(out), cmd), 1, "edited last line: exit 1 (even with audit_repair_torn = yes)");
    ok(strstr(out, "[signer] audit_log: ") != NULL && strstr(out, "the last line does not verify") != NULL &&
           strstr(out, "audit_repair_torn") == NULL && harness_count_lines(out) == 1,
       "edited last line: one line, no repair hint");
    diag("%s", out);
    saved[last + 2] ^= 1;
    f = fopen(H.audit, "wb");
    ok(f != NULL && fwrite(saved, 1, saved_len, f) == saved_len && fclose(f) == 0, "the log restored");
    free(saved);
}

static void test_rotate_bytes(void)
{
    char conf[400], cmd[8192], out[4096], pattern[800], want[200];
    uint64_t id = 1000;
    size_t n_rot, len;
    glob_t g;
    int all_sized = 1;

    /* A fresh log: drop the previous test's files. */
    snprintf(cmd, sizeof(cmd), "rm -f %s %s.*", H.audit, H.audit);
    (void)harness_run(NULL, 0, cmd);

    snprintf(conf, sizeof(conf), "%s/bad.conf", H.dir);
    if (harness_write_config(&H, conf, "audit_rotate_bytes = 100", NULL, harness_std_keys) == 0) {
        snprintf(cmd, sizeof(cmd), "%s --config %s 2>&1", H.bin, conf);
        is_int(harness_run(out, sizeof(out), cmd), 2, "audit_rotate_bytes = 100: exit 2");
        ok(strstr(out, "[signer] audit_rotate_bytes: '100' is not 0 (off) or 4096..2^50 (bytes)") != NULL &&
               harness_count_lines(out) == 1,
           "audit_rotate_bytes = 100: one line");
    }
    snprintf(conf, sizeof(conf), "%s/rotate.conf", H.dir);
    if (harness_write_config(&H, conf, "audit_rotate_bytes = 4096", NULL, harness_std_keys) != 0) {
        ok(0, "config");
        return;
    }
    /* About 500 bytes a record: 60 signatures fill 7 to 9 files of 4 KiB. */
    (void)run_signing(conf, 60, &id, "audit_rotate_bytes = 4096");
    snprintf(pattern, sizeof(pattern), "%s.2*", H.audit);
    if (!ok(glob(pattern, 0, NULL, &g) == 0, "rotated files exist")) {
        return;
    }
    n_rot = g.gl_pathc;
    ok(n_rot >= 4 && n_rot <= 14, "rotated whenever the file reached 4096 bytes (4..14 files)");
    diag("%zu rotated files", n_rot);
    for (size_t i = 0; i < n_rot; i++) {
        /* One request in flight at a time: at most one record past the limit, then the
         * rotation's own checkpoint (about 800 bytes) that closes the file. */
        long sz = file_size(g.gl_pathv[i]);
        if (sz < 4096 || sz > 4096 + 2048) {
            diag("%s: %ld bytes", g.gl_pathv[i], sz);
            all_sized = 0;
        }
    }
    ok(all_sized, "each rotated file is 4096 bytes plus at most one record and a checkpoint");
    ok(file_size(H.audit) < 4096 + 2048, "the current file is below the limit (plus one record and a checkpoint)");
    snprintf(cmd, sizeof(cmd), "grep -c 'audit: rotated at ' %s", H.errlog);
    ok(harness_run(out, sizeof(out), cmd) == 0 && (size_t)atoi(out) == n_rot, "every size rotation is logged");

    /* The whole chain, oldest first (glob sorts: the names carry the UTC time). */
    len = (size_t)snprintf(cmd, sizeof(cmd), "%s audit-verify", H.bin);
    for (size_t i = 0; i < n_rot && len < sizeof(cmd); i++) {
        len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " %s", g.gl_pathv[i]);
    }
    snprintf(cmd + len, sizeof(cmd) - len, " %s 2>&1", H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 0, "audit-verify OLD... CURRENT: the chain verifies across the files");
    /* Every line of every file (60 signatures, the rotate records, start, stop and
     * checkpoints), from the genesis. */
    snprintf(pattern, sizeof(pattern), "%s.2* %s", H.audit, H.audit);
    long total = count_lines(pattern);
    snprintf(want, sizeof(want), "OK: %ld records, seq 1..%ld,", total, total);
    if (!ok(strstr(out, want) != NULL && strstr(out, "unanchored") == NULL,
            "every record from seq 1, anchored at the genesis")) {
        diag("want '%s' in: %s", want, out);
    }
    diag("%s", out);

    /* Negative: a middle file left out, and two files swapped. */
    len = (size_t)snprintf(cmd, sizeof(cmd), "%s audit-verify", H.bin);
    for (size_t i = 0; i < n_rot && len < sizeof(cmd); i++) {
        if (i != 1) {
            len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " %s", g.gl_pathv[i]);
        }
    }
    snprintf(cmd + len, sizeof(cmd) - len, " %s 2>&1", H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 1, "a rotated file left out: audit-verify fails");
    snprintf(want, sizeof(want), "FAIL: %s:1:", g.gl_pathv[2]);
    ok(strstr(out, want) != NULL, "at line 1 of the file after the gap");
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s %s %s 2>&1", H.bin, g.gl_pathv[1], g.gl_pathv[0], H.audit);
    is_int(harness_run(out, sizeof(out), cmd), 1, "two rotated files swapped: audit-verify fails");
    globfree(&g);
}

int main(void)
{
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    test_torn();
    test_rotate_bytes();
    harness_cleanup(&H);
    return kl_test_done();
}
