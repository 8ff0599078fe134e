/*
 * test_audit_checkpoint.c - audit checkpoints without an HSM (issue 13): audit_start()
 * with a software P-256 key standing in for the token's audit key, the state file checks,
 * the anchors, rotation and heartbeats, and the verifier's checkpoint rules, with a
 * negative case for each (unsigned, forged, wrong key, no start record, mismatched state).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit.h"
#include "audit_verify.h"
#include "crypto.h"
#include "kl_test.h"

/* The log's state now (audit_stats). */
static struct audit_stats st_of(struct audit_log *log)
{
    struct audit_stats st;
    audit_stats(log, &st);
    return st;
}

static char dir[256];
static EVP_PKEY *key, *other_key;
static struct crypto_pubkey *pub, *other_pub;

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* The software stand-in for the HSM: ECDSA P-256 over SHA-256 of the statement, DER. */
static int soft_sign(void *ctx, uint8_t *sig, size_t *sig_len_p, const uint8_t *statement, size_t len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok_ = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ctx) == 1 &&
              EVP_DigestSign(md, sig, sig_len_p, statement, len) == 1;
    EVP_MD_CTX_free(md);
    return ok_ ? 0 : KL_ERR_CRYPTO;
}

static int failing_sign(void *ctx, uint8_t *sig, size_t *sig_len_p, const uint8_t *statement, size_t len)
{
    (void)ctx, (void)sig, (void)sig_len_p, (void)statement, (void)len;
    return KL_ERR_HSM;
}

static struct crypto_pubkey *pub_of(EVP_PKEY *k, const char *name)
{
    char path[512];
    struct crypto_pubkey *pk = NULL;
    path_in(path, sizeof(path), name);
    FILE *f = fopen(path, "w");
    if (f == NULL || PEM_write_PUBKEY(f, k) != 1) {
        if (f != NULL)
            fclose(f);
        return NULL;
    }
    fclose(f);
    return crypto_pubkey_from_pem_file(&pk, path) == 0 ? pk : NULL;
}

static void cp_config(struct audit_checkpoint_config *c, const char *anchor)
{
    memset(c, 0, sizeof(*c));
    c->host = "test-host";
    c->sign = soft_sign;
    c->sign_ctx = key;
    c->every_records = 5;
    c->every_ms = 60000;
    c->heartbeat_ms = 60000;
    c->syslog_facility = -1;
    c->anchor_file = anchor;
}

static void rec_of(struct audit_record *r, uint64_t i)
{
    memset(r, 0, sizeof(*r));
    r->pid = 1;
    r->uid = 2;
    r->gid = 3;
    r->op = "sign";
    r->key = "k";
    r->status = "OK";
    r->request_id = i;
}

static int verify_pub(struct audit_verify_result *res, const char *const *paths, size_t n,
                      const struct crypto_pubkey *pk)
{
    struct audit_verify_opts o = {.pubkey = pk};
    return audit_verify_files_ex(NULL, res, paths, n, &o);
}

static int file_has(const char *path, const char *needle)
{
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (!found && getline(&line, &cap, f) > 0)
        found = strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return found;
}

static long count_lines(const char *path)
{
    int c;
    long n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void test_start_stop_verify(void)
{
    char log_path[300], anchor[300], state[320], err[512];
    struct audit_log *log = NULL;
    struct audit_checkpoint_config c;
    struct audit_record r;
    struct audit_verify_result res;
    enum audit_start_fail why;
    const char *paths[1];

    path_in(log_path, sizeof(log_path), "a.log");
    path_in(anchor, sizeof(anchor), "anchor.txt");
    snprintf(state, sizeof(state), "%s.state", log_path);
    paths[0] = log_path;
    cp_config(&c, anchor);

    is_int(audit_open(&log, log_path, AUDIT_SYNC_GROUP, 0), 0, "open a fresh log");
    is_int(audit_start(log, &c, &why, err, sizeof(err)), 0, "first start on an empty log with no state file");
    is_int(audit_start(log, &c, &why, err, sizeof(err)), KL_ERR_INVALID, "a second audit_start is refused");
    for (uint64_t i = 1; i <= 12; i++) {
        rec_of(&r, i);
        if (audit_append(log, &r, NULL) != 0)
            break;
    }
    /* start record + 12 = 13 records: checkpoints at start, then after 5 and 10. */
    is_int((long long)st_of(log).checkpoints, 3, "a checkpoint at start and every 5 records");
    audit_close(log);
    ok(file_has(log_path, "\"op\":\"stop\"") && file_has(log_path, "\"reason\":\"stop\""),
       "close writes a stop record and checkpoint");
    ok(file_has(log_path, "\"host\":\"test-host\""), "checkpoints carry the host id");
    is_int(count_lines(anchor), 4, "one anchor line per checkpoint");
    ok(access(state, F_OK) == 0, "a state file beside the log");

    is_int(verify_pub(&res, paths, 1, pub), 0, "verify with the audit key: OK");
    is_int((long long)res.checkpoints, 4, "four signed checkpoints");
    is_int((long long)res.signed_through, (long long)res.last_seq, "verified through the last record");
    is_int((long long)res.tail, 0, "nothing after the last checkpoint");
    is_int(verify_pub(&res, paths, 1, other_pub), KL_ERR_AUDIT, "another key: fails");
    ok(strstr(res.what, "does not verify") != NULL, "... a signature does not verify");

    /* Anchors: the last checkpoint's seq and head, and seq past the end. */
    struct audit_verify_opts o = {.pubkey = pub};
    uint8_t head[AUDIT_HASH_LEN];
    is_int(audit_verify_files_ex(NULL, &res, paths, 1, &o), 0, "again");
    memcpy(head, res.head, sizeof(head));
    uint64_t last = res.last_seq;
    o.anchor_seq = last;
    o.anchor_head = head;
    is_int(audit_verify_files_ex(NULL, &res, paths, 1, &o), 0, "the anchored last checkpoint is there");
    o.anchor_seq = last - 1;
    is_int(audit_verify_files_ex(NULL, &res, paths, 1, &o), KL_ERR_AUDIT, "an anchor with the wrong seq fails");
    o.anchor_seq = last + 1;
    o.anchor_head = NULL;
    is_int(audit_verify_files_ex(NULL, &res, paths, 1, &o), KL_ERR_AUDIT, "an anchor past the end fails");
    ok(strstr(res.what, "before the anchored checkpoint") != NULL, "... the log ends before it");
    o.anchor_seq = 0;
    o.anchor_head = head;
    head[0] ^= 1;
    is_int(audit_verify_files_ex(NULL, &res, paths, 1, &o), KL_ERR_AUDIT, "an anchored head not in the log fails");

    /* Restart: the state matches, the chain continues. */
    is_int(audit_open(&log, log_path, AUDIT_SYNC_GROUP, 0), 0, "reopen");
    is_int(audit_start(log, &c, &why, err, sizeof(err)), 0, "restart on the same log: the state matches");
    audit_close(log);
    ok(file_has(log_path, "continues from checkpoint seq"), "the start record says where it continues from");
    is_int(verify_pub(&res, paths, 1, pub), 0, "two runs verify as one chain");

    /* The state file is checked: the log cut back. */
    long full = count_lines(log_path);
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "head -n 3 %s > %s.t && mv %s.t %s", log_path, log_path, log_path, log_path);
    ok(system(cmd) == 0, "the log cut to 3 lines");
    is_int(audit_open(&log, log_path, AUDIT_SYNC_GROUP, 0), 0, "open the cut log");
    is_int(audit_start(log, &c, &why, err, sizeof(err)), KL_ERR_AUDIT, "start refused: the state says more");
    is_int(why, AUDIT_START_FAIL_MISMATCH, "typed reason: MISMATCH");
    ok(strstr(err, "--new-audit-chain") != NULL && strstr(err, "truncated or replaced") != NULL,
       "the message says what and how to go on");
    diag("%s", err);
    c.new_chain = 1;
    is_int(audit_start(log, &c, &why, err, sizeof(err)), 0, "with new_chain it starts");
    c.new_chain = 0;
    audit_close(log);
    ok(file_has(log_path, "new audit chain (--new-audit-chain): the log has"), "and the break is on the record");
    ok(count_lines(log_path) < full, "(the cut log is shorter)");

    /* No state file for a log with records. */
    ok(unlink(state) == 0, "state file removed");
    is_int(audit_open(&log, log_path, AUDIT_SYNC_NONE, 0), 0, "open");
    is_int(audit_start(log, &c, &why, err, sizeof(err)), KL_ERR_AUDIT, "records but no state: refused");
    ok(strstr(err, "no state file") != NULL, "... says so");
    audit_close(log);

    /* A state file that is not one. */
    FILE *f = fopen(state, "w");
    ok(f != NULL && fputs("garbage\n", f) >= 0 && fclose(f) == 0, "state file overwritten with garbage");
    is_int(audit_open(&log, log_path, AUDIT_SYNC_NONE, 0), 0, "open");
    is_int(audit_start(log, &c, &why, err, sizeof(err)), KL_ERR_AUDIT, "unusable state: refused");
    is_int(why, AUDIT_START_FAIL_STATE, "typed reason: STATE");
    audit_close(log);
}

static void test_unsigned_and_plain(void)
{
    char log_path[300], err[512];
    struct audit_log *log = NULL;
    struct audit_checkpoint_config c;
    struct audit_record r;
    struct audit_verify_result res;
    const char *paths[1] = {log_path};

    /* The audit key fails: checkpoints are written unsigned, and the verifier says so. */
    path_in(log_path, sizeof(log_path), "unsigned.log");
    cp_config(&c, NULL);
    c.sign = failing_sign;
    is_int(audit_open(&log, log_path, AUDIT_SYNC_NONE, 0), 0, "open");
    is_int(audit_start(log, &c, NULL, err, sizeof(err)), 0, "start with a failing key");
    rec_of(&r, 1);
    is_int(audit_append(log, &r, NULL), 0, "a record");
    audit_close(log);
    is_int(audit_verify_files(NULL, &res, paths, 1, NULL), 0, "without the key the chain verifies");
    is_int(verify_pub(&res, paths, 1, pub), KL_ERR_AUDIT, "with the key: an unsigned checkpoint fails");
    ok(strstr(res.what, "is not signed") != NULL, "... says it is not signed");

    /* A log written without audit_start (the old format) has no start record. */
    path_in(log_path, sizeof(log_path), "plain.log");
    is_int(audit_open(&log, log_path, AUDIT_SYNC_NONE, 0), 0, "open a plain log");
    int appended = 0;
    for (uint64_t i = 1; i <= 3; i++) {
        rec_of(&r, i);
        appended += audit_append(log, &r, NULL) == 0;
    }
    is_int(appended, 3, "three records");
    audit_close(log);
    is_int(audit_verify_files(NULL, &res, paths, 1, NULL), 0, "a plain log verifies without the key");
    is_int(verify_pub(&res, paths, 1, pub), KL_ERR_AUDIT, "with the key it fails");
    ok(strstr(res.what, "does not begin with a start record") != NULL, "... no start record");
}

static void test_heartbeat_rotation(void)
{
    char log_path[300], err[512], rotated[600];
    struct audit_log *log = NULL;
    struct audit_checkpoint_config c;
    struct audit_record r;
    struct audit_verify_result res;
    char cmd_out[300], cmd[700];
    path_in(log_path, sizeof(log_path), "beat.log");
    path_in(cmd_out, sizeof(cmd_out), "cmd.txt");
    snprintf(cmd, sizeof(cmd), "printf '%%s\\n' \"$1\" >> %s", cmd_out);
    cp_config(&c, NULL);
    c.every_ms = 40;
    c.heartbeat_ms = 60;
    c.anchor_command = cmd;
    is_int(audit_open(&log, log_path, AUDIT_SYNC_GROUP, 0), 0, "open");
    is_int(audit_start(log, &c, NULL, err, sizeof(err)), 0, "start with a 60 ms heartbeat");
    rec_of(&r, 1);
    is_int(audit_append(log, &r, NULL), 0, "one record");
    usleep(400 * 1000);
    ok(st_of(log).checkpoints >= 3, "the record checkpointed within the interval, then heartbeats when idle");
    is_int(audit_rotate_ex(log, rotated, sizeof(rotated)), 0, "rotate");
    rec_of(&r, 2);
    is_int(audit_append(log, &r, NULL), 0, "a record in the new file");
    audit_close(log);
    ok(file_has(rotated, "\"reason\":\"interval\""), "an interval checkpoint");
    ok(file_has(log_path, "\"reason\":\"rotated\"") && file_has(rotated, "\"reason\":\"rotate\""),
       "the old file ends with a checkpoint, the new one starts with one");
    ok(file_has(rotated, "\"reason\":\"heartbeat\""), "heartbeat checkpoints");
    usleep(100 * 1000);
    ok(file_has(cmd_out, "keyless-signer audit checkpoint host=test-host seq="),
       "the anchor command got the checkpoint lines");
    const char *paths[2] = {rotated, log_path};
    is_int(verify_pub(&res, paths, 2, pub), 0, "both files verify with the key");
    is_int(verify_pub(&res, paths + 1, 1, pub), 0, "the new file alone verifies (unanchored)");
    is_int(res.anchored, 0, "... as a continuation");
}

static void test_line_checkpoint(void)
{
    struct kl_buf b;
    struct audit_line_info *info = calloc(1, sizeof(*info));
    uint8_t prev[AUDIT_HASH_LEN] = {7}, h[AUDIT_HASH_LEN], sig[3] = {1, 2, 3};
    char what[256], stmt[AUDIT_MAX_STATEMENT];
    struct audit_checkpoint cp = {.host = "h\"x", .count = 4, .interval = 9, .sig = sig, .sig_len = 3};
    struct audit_record r = {
        .time = {1700000000, 0}, .op = "checkpoint", .status = "OK", .reason = "records", .checkpoint = &cp};

    kl_buf_init(&b, AUDIT_MAX_LINE);
    is_int(audit_line_format(&b, h, &r, 12, prev, NULL), 0, "format a checkpoint line");
    is_int(audit_line_check(info, what, sizeof(what), (const char *)b.base, b.len - 1), 0, "it checks");
    ok(info->is_checkpoint && info->cp_signed && info->cp_sig_len == 3 && memcmp(info->cp_sig, sig, 3) == 0,
       "the checker reads its signature");
    is_int((long long)info->cp_count, 4, "and count");
    is_int((long long)info->cp_interval, 9, "and interval");
    size_t n = audit_checkpoint_statement(stmt, sizeof(stmt), "h\\\"x", 12, prev, 4, 9, "2023-11-14T22:13:20.000000Z",
                                          "records");
    ok(n > 0 && n == info->cp_statement_len && memcmp(stmt, info->cp_statement, n) == 0,
       "the statement rebuilt from the line is the one the writer signs");
    ok(strncmp(stmt, "keyless-audit-checkpoint/1\n", 27) == 0, "the statement names itself");
    is_int((int)audit_checkpoint_statement(stmt, 10, "h", 1, prev, 0, 0, "t", "r"), 0,
           "statement: too small: 0"); /* Every strict prefix and every one-byte change of a checkpoint line is refused
                                        * (the checker reads checkpoint members only after the hash matched; under ASan
                                        * this also shows it never reads outside the line). */
    int prefixes_refused = 1, flips_refused = 1;
    char *copy = malloc(b.len);
    for (size_t cut = 0; copy != NULL && cut + 1 < b.len; cut++) {
        memcpy(copy, b.base, cut);
        prefixes_refused &= audit_line_check(info, what, sizeof(what), copy, cut) == KL_ERR_AUDIT;
    }
    for (size_t at = 0; copy != NULL && at + 1 < b.len; at++) {
        memcpy(copy, b.base, b.len - 1);
        copy[at] ^= 0x01;
        flips_refused &= audit_line_check(info, what, sizeof(what), copy, b.len - 1) == KL_ERR_AUDIT;
    }
    free(copy);
    ok(prefixes_refused, "every strict prefix of a checkpoint line is refused");
    ok(flips_refused, "every one-bit change of a checkpoint line is refused");

    /* Unsigned: sig null. */
    cp.sig = NULL;
    is_int(audit_line_format(&b, h, &r, 12, prev, NULL), 0, "an unsigned checkpoint");
    is_int(audit_line_check(info, what, sizeof(what), (const char *)b.base, b.len - 1), 0, "it checks");
    ok(info->is_checkpoint && !info->cp_signed, "... as unsigned");
    cp.sig = sig;
    cp.sig_len = AUDIT_MAX_SIG + 1;
    is_int(audit_line_format(&b, h, &r, 12, prev, NULL), KL_ERR_INVALID, "a signature over AUDIT_MAX_SIG refused");

    /* A checkpoint line without its members is refused by the checker. */
    struct audit_record bare = {.op = "checkpoint", .status = "OK", .reason = "x"};
    is_int(audit_line_format(&b, h, &bare, 3, prev, NULL), 0, "an op checkpoint line without checkpoint members");
    is_int(audit_line_check(info, what, sizeof(what), (const char *)b.base, b.len - 1), KL_ERR_AUDIT,
           "is refused by the checker");
    ok(strstr(what, "checkpoint without") != NULL, "... naming the missing member");
    kl_buf_dispose_nowipe(&b);
    free(info);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/kl-audit-cp-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL || crypto_init() != 0) {
        ok(0, "temp dir");
        return kl_test_done();
    }
    key = EVP_EC_gen("P-256");
    other_key = EVP_EC_gen("P-256");
    pub = key != NULL ? pub_of(key, "audit.pub.pem") : NULL;
    other_pub = other_key != NULL ? pub_of(other_key, "other.pub.pem") : NULL;
    if (!ok(pub != NULL && other_pub != NULL, "two P-256 keys and their PEM public keys")) {
        return kl_test_done();
    }
    test_line_checkpoint();
    test_start_stop_verify();
    test_unsigned_and_plain();
    test_heartbeat_rotation();
    crypto_pubkey_free(pub);
    crypto_pubkey_free(other_pub);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other_key);
    if (getenv("KL_KEEP_TMP") == NULL) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
            diag("could not remove %s", dir);
    }
    return kl_test_done();
}
