/* audit_: the hash-chained log, tamper detection, reopen, rotation, sync modes, and agreement
 * with the independent Python verifier (signer/audit-verify.py). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "kl_test.h"
#include "audit.h"
#include "audit_line.h"
#include "audit_verify.h"

/* The log's state now (audit_stats). */
static struct audit_stats st_of(struct audit_log *log)
{
    struct audit_stats st;
    audit_stats(log, &st);
    return st;
}

static char tmpdir[256];
static int have_python;
static const char *python = "python3";

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static uint8_t *read_all(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *p = realloc(buf, cap + 1);
            if (p == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    *len_p = len;
    return buf;
}

static int write_all_file(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    int r = fwrite(p, 1, len, f) == len ? 0 : -1;
    return fclose(f) == 0 ? r : -1;
}

/* Offsets of the starts of lines in buf (plus one past the end); returns the line count. */
static size_t line_starts(size_t *starts, size_t max, const uint8_t *buf, size_t len)
{
    size_t n = 0;
    starts[n++] = 0;
    for (size_t i = 0; i < len && n < max; i++) {
        if (buf[i] == '\n')
            starts[n++] = i + 1;
    }
    if (starts[n - 1] != len && n < max)
        starts[n++] = len;
    return n - 1;
}

/* The "FAIL: path:N:" prefix of a report line, or the whole line for OK. */
static void verdict_of(char *out, size_t cap, const char *line)
{
    snprintf(out, cap, "%s", line);
    out[strcspn(out, "\n")] = '\0';
    if (strncmp(out, "FAIL: ", 6) == 0) {
        char *colon = strchr(out + 6, ':');
        char *colon2 = colon ? strchr(colon + 1, ':') : NULL;
        if (colon2 != NULL)
            colon2[1] = '\0';
    }
}

/*
 * Every verification also becomes a case for the Python verifier: the files are copied
 * (later steps change some of them), C's verdict on the copies is kept, and at the end one
 * Python process checks all cases (python3 start-up is slow) and must reach the same
 * verdict: the same OK line, or FAIL at the same file and line.
 */
#define MAX_CASES 64
static struct {
    char label[128];
    char args[2048]; /* "HEX-or-minus\tFILE\tFILE..." */
    char verdict[1024];
    int c_ok;
} cases[MAX_CASES];
static int n_cases;

static int verify_both(struct audit_verify_result *res, const char *const *paths, size_t n, const uint8_t *expect_head,
                       const char *label)
{
    char *cbuf = NULL, copies[4][512];
    const char *cp[4];
    size_t clen = 0, off;
    struct audit_verify_result local;
    int ret;

    if (res == NULL)
        res = &local;
    if (n_cases == MAX_CASES || n > 4) {
        ok(0, "too many verify_both cases");
        return audit_verify_files(NULL, res, paths, n, expect_head);
    }
    off = 0;
    if (expect_head != NULL) {
        sodium_bin2hex(cases[n_cases].args, 65, expect_head, AUDIT_HASH_LEN);
        off = 64;
    } else {
        cases[n_cases].args[off++] = '-';
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        uint8_t *data = read_all(paths[i], &len);
        snprintf(copies[i], sizeof(copies[i]), "%s/case-%d-%zu.log", tmpdir, n_cases, i);
        if (data == NULL || write_all_file(copies[i], data, len) != 0)
            snprintf(copies[i], sizeof(copies[i]), "%s", paths[i]); /* unreadable: keep the name */
        free(data);
        cp[i] = copies[i];
        off += (size_t)snprintf(cases[n_cases].args + off, sizeof(cases[n_cases].args) - off, "\t%s", copies[i]);
    }
    FILE *mem = open_memstream(&cbuf, &clen);
    ret = audit_verify_files(mem, res, cp, n, expect_head);
    fclose(mem);
    snprintf(cases[n_cases].label, sizeof(cases[n_cases].label), "%s", label);
    verdict_of(cases[n_cases].verdict, sizeof(cases[n_cases].verdict), cbuf);
    cases[n_cases].c_ok = ret == 0;
    n_cases++;
    free(cbuf);
    return ret;
}

static void check_python_agreement(void)
{
    char in_path[512], cmd[2048];
    const char *src = getenv("KL_SOURCE_DIR");
    FILE *in;

    if (!have_python) {
        printf("ok %d - # SKIP python3 not found: C/Python agreement not checked\n", ++kl_test_n);
        return;
    }
    path_in(in_path, sizeof(in_path), "cases.txt");
    if ((in = fopen(in_path, "w")) == NULL)
        return;
    for (int i = 0; i < n_cases; i++)
        fprintf(in, "%s\n", cases[i].args);
    fclose(in);
    snprintf(cmd, sizeof(cmd), "python3 '%s/signer/audit-verify.py' --batch < '%s'", src != NULL ? src : ".", in_path);
    FILE *p = popen(cmd, "r");
    char line[2048], pv[1024];
    int i = 0;
    while (p != NULL && i < n_cases && fgets(line, sizeof(line), p) != NULL) {
        int st = atoi(line);
        const char *report = strchr(line, ' ');
        char name[256];
        verdict_of(pv, sizeof(pv), report != NULL ? report + 1 : "");
        snprintf(name, sizeof(name), "%s: Python verifier agrees", cases[i].label);
        if (!ok(strcmp(pv, cases[i].verdict) == 0 && (st == 0) == cases[i].c_ok, name)) {
            diag("C:      %s", cases[i].verdict);
            diag("Python: %s (status %d)", pv, st);
        }
        i++;
    }
    if (p != NULL)
        pclose(p);
    is_int(i, n_cases, "Python verifier answered every case");
}

static void make_record(struct audit_record *r, uint64_t i, uint8_t *hash)
{
    static const char *names[] = {"example.com",      "a\"quote",    "new\nline\r\n", "back\\slash",
                                  "\xff\xfe invalid", "caf\xc3\xa9", "\x01\x1f\x7f",  "{\"v\":1}"};
    memset(r, 0, sizeof(*r));
    for (size_t k = 0; k < 32; k++)
        hash[k] = (uint8_t)(i * 7 + k);
    r->pid = 1234;
    r->uid = 1000;
    r->gid = 1000;
    r->op = "sign";
    r->key = i % 3 == 0 ? "ecdsa-p256" : "rsa-2048";
    r->scheme = i % 3 == 0 ? 0x0403 : 0x0804;
    r->context = 1;
    r->hash = hash;
    r->hash_len = i % 2 ? 32 : 48;
    r->server_name = names[i % 8];
    r->client_address = i % 5 == 0 ? NULL : "192.0.2.1:443";
    r->connection_id = i;
    r->request_id = i * 10;
    r->status = i % 4 == 0 ? "UNKNOWN_KEY" : "OK";
    r->reason = i % 4 == 0 ? "no such key" : NULL;
    r->latency_us = i % 1000;
}

static void test_escape(void)
{
    static const char in[] = "a\"b\\c\nd\re\x00"
                             "f\x01\x1f\x7f\x80\xc3\xa9\xff~ ";
    static const char want[] = "a\\\"b\\\\c\\u000ad\\u000de\\u0000f\\u0001\\u001f\\u007f\\u0080\\u00c3\\u00a9\\u00ff~ ";
    char out[256];
    size_t n = audit_json_escape(out, sizeof(out), in, sizeof(in) - 1);
    is_mem(out, n, want, sizeof(want) - 1, "escape: quotes, backslash, controls, NUL, DEL, every byte >= 0x80");
    ok(out[n] == '\0', "escape output NUL-terminated");
    char small[8];
    memset(small, 'x', sizeof(small));
    is_int(audit_json_escape(small, sizeof(small), "\n\n", 2), 12, "escape reports the full length");
    ok(small[7] == '\0' && memcmp(small, "\\u000a", 6) == 0, "short output truncated, terminated, no overflow");
    is_int(audit_json_escape(NULL, 0, in, sizeof(in) - 1), sizeof(want) - 1, "length-only call");
}

/* Append ,"hash":"<SHA-256 of body>"} to body (a line without its hash member). */
static void seal(char *line, size_t cap)
{
    uint8_t h[32];
    char hex[65];
    crypto_hash_sha256(h, (const uint8_t *)line, strlen(line));
    sodium_bin2hex(hex, sizeof(hex), h, 32);
    snprintf(line + strlen(line), cap - strlen(line), ",\"hash\":\"%s\"}", hex);
}

/* check on a NUL-terminated line; what receives the message. */
static int check_str(struct audit_line_info *info, char *what, size_t what_len, const char *line)
{
    return audit_line_check(info, what, what_len, line, strlen(line));
}

/* audit_line on its own: format then check gives back every field; each kind of damage is
 * refused with its own message. */
static void test_audit_line(void)
{
    struct kl_buf b;
    struct audit_line_info info;
    uint8_t th[48], prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN];
    char what[256], prev_hex[65], hash_hex[65], want[256], line[4096];

    for (int i = 0; i < 48; i++)
        th[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < AUDIT_HASH_LEN; i++)
        prev[i] = (uint8_t)(0x11 * (i % 16));
    kl_buf_init(&b, AUDIT_MAX_LINE);
    struct audit_record r = {.time = {1700000000, 5000},
                             .pid = -7,
                             .uid = 4294967294u,
                             .gid = 3,
                             .op = "rotate",
                             .key = "k\\ey",
                             .scheme = 0x0807,
                             .context = 2,
                             .hash = th,
                             .hash_len = 48,
                             .server_name = "sni\x01",
                             .client_address = "[2001:db8::1]:443",
                             .connection_id = UINT64_MAX,
                             .request_id = 0,
                             .status = "OK",
                             .reason = "why \"not\"",
                             .latency_us = 12345};
    is_int(audit_line_format(&b, hash, &r, 424242, prev, "old.log.20260101T000000.000000Z"), 0, "line: format");
    ok(b.len > 0 && b.base[b.len - 1] == '\n' && memchr(b.base, '\n', b.len - 1) == NULL,
       "line: one line, ends in its newline");
    memset(&info, 0xee, sizeof(info));
    is_int(audit_line_check(&info, what, sizeof(what), (const char *)b.base, b.len - 1), 0,
           "line: the formatted line checks");
    is_int(info.seq, 424242, "line: seq round-trips");
    is_mem(info.prev, AUDIT_HASH_LEN, prev, AUDIT_HASH_LEN, "line: prev round-trips");
    is_mem(info.hash, AUDIT_HASH_LEN, hash, AUDIT_HASH_LEN, "line: hash round-trips (= the formatter's hash_out)");
    is_int(info.has_rotated_from, 1, "line: rotated_from seen");
    /* Every other field, as the member the formatter must write. */
    audit_hex_hash(prev_hex, prev);
    audit_hex_hash(hash_hex, hash);
    static const char *members[] = {
        "{\"v\":1,\"seq\":424242,\"time\":\"2023-11-14T22:13:20.000005Z\",",
        ",\"pid\":-7,",
        ",\"uid\":4294967294,",
        ",\"gid\":3,",
        ",\"op\":\"rotate\",",
        ",\"key\":\"k\\\\ey\",",
        ",\"scheme\":\"ed25519\",\"scheme_code\":2055,",
        ",\"context\":2,",
        (",\"transcript_hash\":"
         "\"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\","),
        ",\"server_name\":\"sni\\u0001\",",
        ",\"client_address\":\"[2001:db8::1]:443\",",
        ",\"connection_id\":18446744073709551615,",
        ",\"request_id\":0,",
        ",\"status\":\"OK\",",
        ",\"reason\":\"why \\\"not\\\"\",",
        ",\"latency_us\":12345,",
        ",\"rotated_from\":\"old.log.20260101T000000.000000Z\",",
    };
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        char name[300];
        snprintf(name, sizeof(name), "line: member %.60s", members[i]);
        ok(memmem(b.base, b.len, members[i], strlen(members[i])) != NULL, name);
    }
    snprintf(want, sizeof(want), ",\"prev\":\"%s\",\"hash\":\"%s\"}\n", prev_hex, hash_hex);
    ok(b.len > strlen(want) && memcmp(b.base + b.len - strlen(want), want, strlen(want)) == 0,
       "line: ends in prev, hash, newline");

    /* Truncation sweep: no strict prefix of a good line checks. */
    int prefixes_ok = 0;
    for (size_t n = 0; n < b.len - 1; n++)
        prefixes_ok += audit_line_check(&info, what, sizeof(what), (const char *)b.base, n) == 0;
    is_int(prefixes_ok, 0, "line: every strict prefix (truncated line) is refused");
    snprintf(line, sizeof(line), "%.*s", (int)(b.len - 1), (const char *)b.base);

    /* A plain record (no rotated_from, the genesis as prev, NULL strings, unknown scheme). */
    static const uint8_t genesis[AUDIT_HASH_LEN];
    struct audit_record plain = {.op = "list_keys", .scheme = 0x1234};
    is_int(audit_line_format(&b, hash, &plain, 1, genesis, NULL), 0, "line: format a plain record");
    is_int(audit_line_check(&info, what, sizeof(what), (const char *)b.base, b.len - 1), 0, "line: plain checks");
    ok(info.seq == 1 && info.has_rotated_from == 0 && memcmp(info.prev, genesis, AUDIT_HASH_LEN) == 0,
       "line: plain: seq 1, genesis prev, no rotated_from");
    ok(memmem(b.base, b.len, "\"key\":null,\"scheme\":null,\"scheme_code\":4660,", 44) != NULL &&
           memmem(b.base, b.len, "\"transcript_hash\":null,", 23) != NULL,
       "line: NULL strings and an unknown scheme written as null");

    /* Damage, one kind at a time, on copies of the good line. */
    char bad[4200];
    size_t hpos = strlen(line) - 2 - 64; /* the first hex digit of the hash value */
    snprintf(bad, sizeof(bad), "%s", line);
    bad[hpos] = bad[hpos] == '0' ? '1' : '0';
    is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, "line: wrong hash refused");
    ok(strstr(what, "hash does not match") != NULL, "line: wrong hash: says so");
    snprintf(bad, sizeof(bad), "%s", line);
    bad[hpos] = 'g';
    is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, "line: bad hex in hash refused");
    ok(strstr(what, "\"hash\" is not 64 lowercase hex digits") != NULL, "line: bad hex: says so");
    snprintf(bad, sizeof(bad), "%s", line);
    char *pp = strstr(bad, "\"prev\":\"") + 8;
    *pp = 'A';
    is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, "line: uppercase hex in prev refused");
    ok(strstr(what, "\"prev\" is not 64 lowercase hex digits") != NULL, "line: prev hex: says so");
    snprintf(bad, sizeof(bad), "%s", line);
    pp = strstr(bad, "\\u0001");
    pp[4] = 'z';
    is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, "line: bad hex in a \\u escape refused");
    snprintf(bad, sizeof(bad), "%s ", line);
    is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, "line: a trailing space refused");
    ok(strstr(what, "trailing bytes") != NULL, "line: trailing bytes: says so");
    snprintf(bad, sizeof(bad), "%s}", line);
    is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, "line: a trailing brace refused");
    is_int(audit_line_check(&info, what, sizeof(what), line, strlen(line) + 1), KL_ERR_AUDIT,
           "line: a trailing NUL refused");
    snprintf(bad, sizeof(bad), "%s", line);
    bad[10] = '\t';
    is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, "line: a control byte refused");
    ok(strstr(what, "not printable ASCII") != NULL, "line: control byte: says so");

    /* Missing keys, each on an otherwise good (correctly hashed) line. */
    static const char *missing[][2] = {
        {"{\"v\":1,\"time\":\"t\",\"prev\":\"%s\"", "no \"seq\""},
        {"{\"seq\":1,\"time\":\"t\",\"prev\":\"%s\"", "no format version"},
        {"{\"v\":1,\"seq\":1,\"time\":\"%s\"", "the last two members are not"},
    };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        char name[200];
        const char *mark = strstr(missing[i][0], "%s");
        snprintf(bad, sizeof(bad), "%.*s%s%s", (int)(mark - missing[i][0]), missing[i][0], prev_hex, mark + 2);
        seal(bad, sizeof(bad));
        snprintf(name, sizeof(name), "line: missing key refused (%s)", missing[i][1]);
        is_int(check_str(&info, what, sizeof(what), bad), KL_ERR_AUDIT, name);
        snprintf(name, sizeof(name), "line: missing key: says \"%s\"", missing[i][1]);
        ok(strstr(what, missing[i][1]) != NULL, name);
    }
    /* Its control: the same shape with every key present checks. */
    snprintf(bad, sizeof(bad), "{\"v\":1,\"seq\":9,\"time\":\"t\",\"prev\":\"%s\"", prev_hex);
    seal(bad, sizeof(bad));
    is_int(check_str(&info, what, sizeof(what), bad), 0, "line: the control with every key checks");
    is_int(info.seq, 9, "line: control seq");

    /* The hex helpers. */
    uint8_t dec[AUDIT_HASH_LEN];
    is_int(audit_hex_decode_hash(dec, prev_hex, 64), 0, "hex: decode 64 digits");
    is_mem(dec, AUDIT_HASH_LEN, prev, AUDIT_HASH_LEN, "hex: round trip");
    is_int(audit_hex_decode_hash(dec, prev_hex, 63), KL_ERR_DECODE, "hex: 63 digits refused");
    memcpy(want, prev_hex, 65);
    want[5] = 'F';
    is_int(audit_hex_decode_hash(dec, want, 64), KL_ERR_DECODE, "hex: uppercase refused");

    /* Formatter errors. */
    is_int(audit_line_format(&b, hash, NULL, 1, prev, NULL), KL_ERR_INVALID, "format: NULL record refused");
    struct kl_buf small;
    kl_buf_init(&small, 200);
    is_int(audit_line_format(&small, hash, &r, 1, prev, NULL), KL_ERR_OVERFLOW, "format: a line over max refused");
    kl_buf_dispose_nowipe(&small);
    kl_buf_dispose_nowipe(&b);
}

/* One record with fixed inputs produces exactly the documented line. */
static void test_golden_line(void)
{
    char path[512];
    struct audit_log *log = NULL;
    uint8_t th[32], h[32];
    uint64_t seq = 0;
    for (int i = 0; i < 32; i++)
        th[i] = (uint8_t)i;
    path_in(path, sizeof(path), "golden.log");
    is_int(audit_open(&log, path, AUDIT_SYNC_ALWAYS, 0), 0, "golden: open fresh log");
    struct audit_record r = {.time = {1700000000, 123456789},
                             .pid = 42,
                             .uid = 1001,
                             .gid = 1002,
                             .op = "sign",
                             .key = "ecdsa-p256",
                             .scheme = 0x0403,
                             .context = 1,
                             .hash = th,
                             .hash_len = 32,
                             .server_name = "x\"\n\xff",
                             .client_address = NULL,
                             .connection_id = 7,
                             .request_id = 8,
                             .status = "OK",
                             .reason = NULL,
                             .latency_us = 99};
    is_int(audit_append(log, &r, &seq), 0, "golden: append");
    is_int(seq, 1, "golden: first seq is 1");
    is_int(audit_wait_durable(log, seq), 0, "golden: durable");
    audit_close(log);
    const char *body =
        "{\"v\":1,\"seq\":1,\"time\":\"2023-11-14T22:13:20.123456Z\",\"pid\":42,\"uid\":1001,\"gid\":1002,"
        "\"op\":\"sign\",\"key\":\"ecdsa-p256\",\"scheme\":\"ecdsa_secp256r1_sha256\",\"scheme_code\":1027,"
        "\"context\":1,\"transcript_hash\":\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\","
        "\"server_name\":\"x\\\"\\u000a\\u00ff\",\"client_address\":null,\"connection_id\":7,\"request_id\":8,"
        "\"status\":\"OK\",\"reason\":null,\"latency_us\":99,"
        "\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\"";
    char want[2048], hex[65];
    crypto_hash_sha256(h, (const uint8_t *)body, strlen(body));
    sodium_bin2hex(hex, sizeof(hex), h, 32);
    snprintf(want, sizeof(want), "%s,\"hash\":\"%s\"}\n", body, hex);
    size_t len = 0;
    uint8_t *got = read_all(path, &len);
    is_mem(got, len, want, strlen(want), "golden: exact line, hash = SHA-256(line up to ,\"hash\")");
    free(got);
}

struct writer_arg {
    struct audit_log *log;
    int n, base, failures;
};

static void *writer_main(void *p)
{
    struct writer_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        struct audit_record r;
        uint8_t h[48];
        uint64_t seq;
        make_record(&r, (uint64_t)(a->base + i), h);
        if (audit_append(a->log, &r, &seq) != 0 || audit_wait_durable(a->log, seq) != 0)
            a->failures++;
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* n records from threads writer threads; returns records/s. */
static double write_many(struct audit_log *log, int threads, int n)
{
    pthread_t th[8];
    struct writer_arg args[8];
    int failures = 0;
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        args[i] = (struct writer_arg){log, n / threads, i * (n / threads), 0};
        if (pthread_create(&th[i], NULL, writer_main, &args[i]) != 0)
            args[i].failures = n / threads;
        else
            args[i].failures = -1;
    }
    for (int i = 0; i < threads; i++) {
        if (args[i].failures == -1) {
            args[i].failures = 0;
            pthread_join(th[i], NULL);
        }
        failures += args[i].failures;
    }
    double dt = now_s() - t0;
    is_int(failures, 0, "every append and wait succeeded");
    return dt > 0 ? n / dt : 0;
}

#define CHAIN_N 2000

static void put(uint8_t *out, size_t *o, const uint8_t *p, size_t n)
{
    memcpy(out + *o, p, n);
    *o += n;
}

static void tamper_case(const char *good, const uint8_t *buf, size_t len, const size_t *st, size_t nl,
                        const char *label, int kind, size_t a, size_t b, uint64_t want_line)
{
    char path[512];
    uint8_t *out = malloc(len + 4096);
    size_t o = 0;
    struct audit_verify_result res;
    (void)good;
    (void)nl;
    /* Lines are 1-based: line k is buf[st[k-1], st[k]). */
    switch (kind) {
    case 0: /* delete line a */
        put(out, &o, buf, st[a - 1]);
        put(out, &o, buf + st[a], len - st[a]);
        break;
    case 1: /* edit one byte: offset b inside line a */
        put(out, &o, buf, len);
        out[st[a - 1] + b] ^= 0x01;
        break;
    case 2: /* swap lines a and a+1 */
        put(out, &o, buf, st[a - 1]);
        put(out, &o, buf + st[a], st[a + 1] - st[a]);
        put(out, &o, buf + st[a - 1], st[a] - st[a - 1]);
        put(out, &o, buf + st[a + 1], len - st[a + 1]);
        break;
    case 3: /* insert a copy of line b after line a */
        put(out, &o, buf, st[a]);
        put(out, &o, buf + st[b - 1], st[b] - st[b - 1]);
        put(out, &o, buf + st[a], len - st[a]);
        break;
    case 4: /* truncate in the middle of line a */
        put(out, &o, buf, st[a - 1] + (st[a] - st[a - 1]) / 2);
        break;
    }
    snprintf(path, sizeof(path), "%s/tampered-%d.log", tmpdir, kind);
    ok(write_all_file(path, out, o) == 0, "tampered copy written");
    const char *paths[1] = {path};
    int ret = verify_both(&res, paths, 1, NULL, label);
    char name[256];
    snprintf(name, sizeof(name), "%s: detected at line %llu", label, (unsigned long long)want_line);
    if (!ok(ret == KL_ERR_AUDIT && res.bad_line == want_line, name))
        diag("ret %d, bad line %llu: %s", ret, (unsigned long long)res.bad_line, res.what);
    free(out);
}

static void test_chain_and_tamper(void)
{
    char path[512];
    struct audit_log *log = NULL;
    struct audit_verify_result res;
    uint8_t head[32];
    uint64_t seq;

    path_in(path, sizeof(path), "chain.log");
    is_int(audit_open(&log, path, AUDIT_SYNC_GROUP, 2), 0, "chain: open (GROUP, 2 ms)");
    double rate = write_many(log, 4, CHAIN_N);
    diag("GROUP mode, 4 threads, append+wait_durable: %.0f records/s (%llu fdatasyncs for %d records)", rate,
         (unsigned long long)st_of(log).sync_count, CHAIN_N);
    {
        struct audit_stats st_ = st_of(log);
        memcpy(head, st_.head, AUDIT_HASH_LEN);
        seq = st_.seq;
    }
    is_int(seq, CHAIN_N, "chain: head seq");
    audit_close(log);

    const char *paths[1] = {path};
    is_int(verify_both(&res, paths, 1, NULL, "2000 records from 4 threads"), 0, "chain of 2000 records verifies");
    is_int(res.records, CHAIN_N, "record count");
    ok(res.first_seq == 1 && res.last_seq == CHAIN_N && res.anchored, "seq 1..2000, anchored at the genesis");
    is_mem(res.head, 32, head, 32, "verified head = writer's head");
    is_int(audit_verify_file(NULL, path, head), 0, "expected head matches");

    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    static size_t st[CHAIN_N + 2];
    size_t nl = buf ? line_starts(st, CHAIN_N + 2, buf, len) : 0;
    is_int(nl, CHAIN_N, "one line per record (untrusted strings never split a line)");
    int printable = buf != NULL;
    for (size_t i = 0; buf && i < len; i++)
        printable &= (buf[i] >= 0x20 && buf[i] < 0x7f) || buf[i] == '\n';
    ok(printable, "the file is printable ASCII plus newlines");
    if (buf == NULL || nl != CHAIN_N)
        return;

    tamper_case(path, buf, len, st, nl, "delete line 500", 0, 500, 0, 500);
    tamper_case(path, buf, len, st, nl, "delete line 1", 0, 1, 0, 1);
    /* Byte 200 of a line lies inside the record's fields (before prev/hash). */
    tamper_case(path, buf, len, st, nl, "edit one byte in line 700", 1, 700, 200, 700);
    tamper_case(path, buf, len, st, nl, "swap lines 100 and 101", 2, 100, 0, 100);
    tamper_case(path, buf, len, st, nl, "insert a copy of line 50 after line 60", 3, 60, 50, 61);
    tamper_case(path, buf, len, st, nl, "truncate mid-line 1500", 4, 1500, 0, 1500);

    /* Dropping the last line leaves a valid shorter chain: only the anchored head sees it. */
    char cut[512];
    snprintf(cut, sizeof(cut), "%s/cut.log", tmpdir);
    ok(write_all_file(cut, buf, st[CHAIN_N - 1]) == 0, "last line dropped");
    const char *cutp[1] = {cut};
    is_int(verify_both(&res, cutp, 1, NULL, "last line dropped, no anchor"), 0,
           "without an anchor a dropped last line is undetectable (documented)");
    is_int(res.records, CHAIN_N - 1, "1999 records");
    is_int(verify_both(&res, cutp, 1, head, "last line dropped, --expect-head"), KL_ERR_AUDIT,
           "--expect-head detects the dropped last line");
    ok(res.bad_line == 0 && strstr(res.what, "expected") != NULL, "reported at the end of the file");

    /* An attacker who edits a line and recomputes its hash breaks the next line's prev. */
    {
        size_t a = 300, s0 = st[a - 1], l = st[a] - st[a - 1];
        uint8_t *copy = malloc(len + 1);
        char hex[65];
        uint8_t h[32];
        memcpy(copy, buf, len);
        copy[len] = 0; /* strstr below needs a C string */
        char *line = (char *)copy + s0;
        char *p = strstr(line, "\"latency_us\":");
        p[13] = p[13] == '9' ? '8' : '9';
        size_t body = l - 1 - (9 + 64 + 2);
        crypto_hash_sha256(h, (uint8_t *)line, body);
        sodium_bin2hex(hex, sizeof(hex), h, 32);
        memcpy(line + body + 9, hex, 64);
        char rp[512];
        snprintf(rp, sizeof(rp), "%s/rehashed.log", tmpdir);
        ok(write_all_file(rp, copy, len) == 0, "rehashed copy written");
        const char *rpp[1] = {rp};
        is_int(verify_both(&res, rpp, 1, NULL, "edit with recomputed hash"), KL_ERR_AUDIT, "edit+rehash detected");
        is_int(res.bad_line, 301, "at the next line (its prev no longer matches)");
        free(copy);
    }

    /* Reopen continues the chain. */
    is_int(audit_open(&log, path, AUDIT_SYNC_NONE, 0), 0, "reopen existing log");
    struct audit_record r;
    uint8_t h[48];
    make_record(&r, 9999, h);
    is_int(audit_append(log, &r, &seq), 0, "append after reopen");
    is_int(seq, CHAIN_N + 1, "seq continues");
    audit_close(log);
    is_int(verify_both(&res, paths, 1, NULL, "after reopen"), 0, "reopened log verifies");
    is_int(res.records, CHAIN_N + 1, "2001 records");
    free(buf);
}

static void test_reopen_damage(void)
{
    char path[512];
    struct audit_log *log = NULL;
    struct audit_record r;
    uint8_t h[48];
    uint64_t seq = 0;
    char err[512];
    struct audit_verify_result res;

    path_in(path, sizeof(path), "torn.log");
    is_int(audit_open(&log, path, AUDIT_SYNC_ALWAYS, 0), 0, "torn: open");
    for (int i = 0; i < 5; i++) {
        make_record(&r, (uint64_t)i, h);
        if (audit_append(log, &r, &seq) != 0 || audit_wait_durable(log, seq) != 0)
            break;
    }
    is_int(seq, 5, "torn: 5 records");
    is_int(st_of(log).sync_count, 5, "ALWAYS, one thread: one fdatasync per record");
    /* A second writer on the same file would fork the chain. */
    struct audit_log *log2 = NULL;
    enum audit_open_fail why = AUDIT_OPEN_FAIL_NONE;
    is_int(audit_open_ex(&log2, path, AUDIT_SYNC_NONE, 0, 0, &why, err, sizeof(err)), KL_ERR_IO,
           "second open of a log in use refused");
    ok(strstr(err, "in use") != NULL, "message says the log is in use");
    is_int(why, AUDIT_OPEN_FAIL_LOCKED, "typed reason: AUDIT_OPEN_FAIL_LOCKED");
    audit_close(log);

    /* Simulate a crash mid-write. */
    int fd = open(path, O_WRONLY | O_APPEND);
    ok(fd >= 0 && write(fd, "{\"v\":1,\"seq\":6,\"ti", 18) == 18, "torn tail appended");
    if (fd >= 0)
        close(fd);
    const char *paths[1] = {path};
    is_int(verify_both(&res, paths, 1, NULL, "torn tail"), KL_ERR_AUDIT, "verifier flags the torn line");
    is_int(res.bad_line, 6, "at line 6");
    log = NULL;
    why = AUDIT_OPEN_FAIL_NONE;
    is_int(audit_open_ex(&log, path, AUDIT_SYNC_GROUP, 0, 0, &why, err, sizeof(err)), KL_ERR_AUDIT,
           "open refuses a torn last line by default");
    ok(log == NULL && strstr(err, "incomplete") != NULL, "with a clear message");
    is_int(why, AUDIT_OPEN_FAIL_TORN, "typed reason: AUDIT_OPEN_FAIL_TORN");
    diag("message: %s", err);
    why = AUDIT_OPEN_FAIL_TORN;
    is_int(audit_open_ex(&log, path, AUDIT_SYNC_GROUP, 0, AUDIT_OPEN_REPAIR_TORN, &why, err, sizeof(err)), 0,
           "open with AUDIT_OPEN_REPAIR_TORN");
    is_int(why, AUDIT_OPEN_FAIL_NONE, "typed reason on success: AUDIT_OPEN_FAIL_NONE");
    make_record(&r, 6, h);
    is_int(audit_append(log, &r, &seq), 0, "append after repair");
    is_int(seq, 6, "the torn record's seq is reused (it was never acknowledged)");
    is_int(audit_wait_durable(log, seq), 0, "durable");
    audit_close(log);
    is_int(verify_both(&res, paths, 1, NULL, "after repair"), 0, "repaired log verifies");
    is_int(res.records, 6, "6 records");
    char saved[600];
    size_t sl = 0;
    snprintf(saved, sizeof(saved), "%s.torn.", path);
    /* The torn bytes were kept aside. */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "cat %s* 2>/dev/null", saved);
    FILE *c = popen(cmd, "r");
    char got[64] = {0};
    if (c) {
        sl = fread(got, 1, sizeof(got) - 1, c);
        pclose(c);
    }
    is_mem(got, sl, "{\"v\":1,\"seq\":6,\"ti", 18, "torn bytes saved to <path>.torn.<time>");

    /* A complete last line that does not verify is refused (no repair for that). */
    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    if (buf != NULL && len > 100) {
        buf[len - 80] ^= 1; /* inside the last line's hash value */
        ok(write_all_file(path, buf, len) == 0, "last line corrupted");
        why = AUDIT_OPEN_FAIL_NONE;
        is_int(audit_open_ex(&log, path, AUDIT_SYNC_NONE, 0, AUDIT_OPEN_REPAIR_TORN, &why, err, sizeof(err)),
               KL_ERR_AUDIT, "open refuses a last line that does not verify");
        ok(strstr(err, "does not verify") != NULL, "with a clear message");
        is_int(why, AUDIT_OPEN_FAIL_BAD_TAIL, "typed reason: AUDIT_OPEN_FAIL_BAD_TAIL (not TORN: no repair offered)");
    }
    free(buf);
}

static void test_rotation(void)
{
    char path[512], rot1[600], rot2[600];
    struct audit_log *log = NULL;
    struct audit_record r;
    uint8_t h[48], head[32];
    uint64_t seq = 0;
    struct audit_verify_result res;

    path_in(path, sizeof(path), "rot.log");
    is_int(audit_open(&log, path, AUDIT_SYNC_GROUP, 1), 0, "rotate: open");
    for (int i = 0; i < 10; i++) {
        make_record(&r, (uint64_t)i, h);
        if (audit_append(log, &r, &seq) != 0)
            break;
    }
    is_int(audit_rotate_ex(log, rot1, sizeof(rot1)), 0, "rotate once");
    ok(strncmp(rot1, path, strlen(path)) == 0 && rot1[strlen(path)] == '.', "rotated to <path>.<timestamp>");
    for (int i = 10; i < 15; i++) {
        make_record(&r, (uint64_t)i, h);
        if (audit_append(log, &r, &seq) != 0)
            break;
    }
    is_int(audit_rotate_ex(log, rot2, sizeof(rot2)), 0, "rotate twice");
    ok(strcmp(rot1, rot2) < 0, "rotated names sort in rotation order");
    make_record(&r, 15, h);
    is_int(audit_append(log, &r, &seq), 0, "append to the third file");
    is_int(seq, 18, "seq continues across rotations (10 + rotate + 5 + rotate + 1)");
    is_int(audit_wait_durable(log, seq), 0, "durable");
    memcpy(head, st_of(log).head, AUDIT_HASH_LEN);
    audit_close(log);

    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    const char *base = strrchr(rot2, '/') + 1;
    char want[700];
    snprintf(want, sizeof(want), "\"op\":\"rotate\"");
    ok(buf != NULL && strstr((char *)buf, want) != NULL && strstr((char *)buf, base) != NULL &&
           strchr((char *)buf, '\n') != NULL && strstr(strchr((char *)buf, '\n'), "rotated_from") == NULL,
       "new file starts with the rotate record naming the old file");
    free(buf);

    const char *all[3] = {rot1, rot2, path};
    is_int(verify_both(&res, all, 3, head, "three files in order"), 0, "chain verifies across three files");
    ok(res.records == 18 && res.anchored, "18 records, anchored at the genesis");
    const char *last[1] = {path};
    is_int(verify_both(&res, last, 1, NULL, "newest file alone"), 0, "newest file alone verifies");
    ok(res.records == 2 && !res.anchored, "unanchored (continues a rotated file)");
    const char *wrong[3] = {rot2, rot1, path};
    is_int(verify_both(&res, wrong, 3, NULL, "files out of order"), KL_ERR_AUDIT, "files out of order detected");
    ok(res.bad_file == 1 && res.bad_line == 1, "at line 1 of the second file");
    const char *gap[2] = {rot1, path};
    is_int(verify_both(&res, gap, 2, NULL, "middle file missing"), KL_ERR_AUDIT, "missing middle file detected");
    ok(res.bad_file == 1 && res.bad_line == 1, "at line 1 of the file after the gap");
    /* A rotated file appended to the end of another is detected at its rotate line. */
    char cat[600], cmd[2000];
    snprintf(cat, sizeof(cat), "%s/concat.log", tmpdir);
    snprintf(cmd, sizeof(cmd), "cat '%s' '%s' > '%s'", rot1, rot2, cat);
    ok(system(cmd) == 0, "concatenated two files");
    const char *catp[1] = {cat};
    is_int(verify_both(&res, catp, 1, NULL, "rotate record inside a file"), KL_ERR_AUDIT,
           "rotated_from past line 1 detected");
    is_int(res.bad_line, 11, "at line 11");
}

/* Bytes [from, len) of buf are all zero. */
static int zeros_from(const uint8_t *buf, size_t len, size_t from)
{
    for (size_t i = from; i < len; i++) {
        if (buf[i] != 0)
            return 0;
    }
    return 1;
}

/* A file that holds complete lines only: it ends with a newline and has no zero byte. */
static int clean_file(const char *path, size_t *len_p)
{
    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    int ok = buf != NULL && len > 0 && buf[len - 1] == '\n' && memchr(buf, 0, len) == NULL;
    free(buf);
    if (len_p != NULL)
        *len_p = len;
    return ok;
}

/* Issue 15: the writer keeps zeros ahead of its records (so that an fdatasync writes one
 * data block and no metadata). The live file and a crash image end in zeros; a rotated or
 * closed file does not; the open finds the end before the zeros; both verifiers skip them. */
/* audit_zero_tail = no (AUDIT_OPEN_NO_ZERO_TAIL): the live file is only complete lines, for readers
 * that follow it by its size; reopened, it stays so. */
static void test_no_zero_tail(void)
{
    char path[512];
    struct audit_log *log = NULL;
    struct audit_record r;
    uint8_t h[48];
    uint64_t seq = 0;
    size_t len = 0;
    uint8_t *buf;

    path_in(path, sizeof(path), "nozero.log");
    for (int round = 0; round < 2; round++) {
        is_int(audit_open_ex(&log, path, AUDIT_SYNC_GROUP, 0, AUDIT_OPEN_NO_ZERO_TAIL, NULL, NULL, 0), 0,
               "no zero tail: open");
        for (int i = 0; i < 3; i++) {
            make_record(&r, (uint64_t)i, h);
            if (audit_append(log, &r, &seq) != 0 || audit_wait_durable(log, seq) != 0)
                break;
        }
        is_int(seq, 3u * (unsigned)(round + 1), "no zero tail: records durable");
        buf = read_all(path, &len);
        ok(buf != NULL && len == st_of(log).size && len > 0 && buf[len - 1] == '\n' && memchr(buf, 0, len) == NULL,
           "no zero tail: the live file is its records only, no zero byte");
        free(buf);
        audit_close(log);
        log = NULL;
    }
}

static void test_zero_tail(void)
{
    char path[512], crash[512], torn[512], rot[600], err[512], saved[600], cmd[1400];
    struct audit_log *log = NULL;
    struct audit_record r;
    uint8_t h[48];
    uint64_t seq = 0;
    struct audit_verify_result res;
    enum audit_open_fail why;
    size_t len = 0, used;
    uint8_t *buf;

    path_in(path, sizeof(path), "zero.log");
    is_int(audit_open(&log, path, AUDIT_SYNC_GROUP, 0), 0, "zero tail: open");
    for (int i = 0; i < 3; i++) {
        make_record(&r, (uint64_t)i, h);
        if (audit_append(log, &r, &seq) != 0 || audit_wait_durable(log, seq) != 0)
            break;
    }
    is_int(seq, 3, "zero tail: 3 records durable");
    used = (size_t)st_of(log).size;
    buf = read_all(path, &len);
    ok(buf != NULL && len > used && used > 0 && buf[used - 1] == '\n' && zeros_from(buf, len, used),
       "zero tail: the live file holds the records, then only zeros");
    diag("zero tail: %zu bytes of records, a file of %zu bytes", used, len);
    /* The file as a crash of the machine leaves it (the zeros on disk). */
    path_in(crash, sizeof(crash), "zero-crash.log");
    ok(buf != NULL && write_all_file(crash, buf, len) == 0, "zero tail: crash image written");
    const char *live[1] = {path};
    is_int(verify_both(&res, live, 1, NULL, "live log with a zero tail"), 0, "zero tail: the live log verifies");
    is_int(res.records, 3, "zero tail: 3 records");
    audit_close(log);
    ok(clean_file(path, &len) && len == used, "zero tail: a closed file is cut to its records");

    /* Reopen after the crash: the chain continues right after the last line, not after the
     * zeros, and the file ends with the new record once closed. */
    const char *cp[1] = {crash};
    is_int(verify_both(&res, cp, 1, NULL, "crash image: lines then zeros"), 0, "crash image verifies");
    why = AUDIT_OPEN_FAIL_TORN;
    is_int(audit_open_ex(&log, crash, AUDIT_SYNC_GROUP, 0, 0, &why, err, sizeof(err)), 0,
           "crash image: opens without repair (zeros are not a torn line)");
    is_int(why, AUDIT_OPEN_FAIL_NONE, "crash image: typed reason NONE");
    is_int(st_of(log).size, used, "crash image: the records end where the zeros begin");
    make_record(&r, 3, h);
    ok(audit_append(log, &r, &seq) == 0 && audit_wait_durable(log, seq) == 0, "crash image: append");
    is_int(seq, 4, "crash image: seq continues");
    audit_close(log);
    ok(clean_file(crash, NULL), "crash image: closed file ends with the new line, no zero inside");
    is_int(verify_both(&res, cp, 1, NULL, "crash image continued"), 0, "crash image: continued chain verifies");
    is_int(res.records, 4, "crash image: 4 records");

    /* A torn line followed by zeros (a crash in the middle of a record's write). */
    path_in(torn, sizeof(torn), "zero-torn.log");
    free(buf);
    buf = read_all(path, &len); /* 3 clean lines */
    uint8_t *img = calloc(1, len + 18 + 4096);
    ok(buf != NULL && img != NULL, "torn+zeros: image");
    if (buf == NULL || img == NULL) {
        free(buf);
        free(img);
        return;
    }
    memcpy(img, buf, len);
    memcpy(img + len, "{\"v\":1,\"seq\":4,\"ti", 18);
    ok(write_all_file(torn, img, len + 18 + 4096) == 0, "torn+zeros: 3 lines, 18 torn bytes, 4096 zeros");
    const char *tp[1] = {torn};
    is_int(verify_both(&res, tp, 1, NULL, "torn line then zeros"), KL_ERR_AUDIT, "torn+zeros: verifier flags it");
    is_int(res.bad_line, 4, "torn+zeros: at line 4");
    why = AUDIT_OPEN_FAIL_NONE;
    log = NULL;
    is_int(audit_open_ex(&log, torn, AUDIT_SYNC_GROUP, 0, 0, &why, err, sizeof(err)), KL_ERR_AUDIT,
           "torn+zeros: open refuses it by default");
    is_int(why, AUDIT_OPEN_FAIL_TORN, "torn+zeros: typed reason TORN");
    char want[128];
    snprintf(want, sizeof(want), "(18 bytes after offset %zu", len);
    ok(strstr(err, want) != NULL, "torn+zeros: the message counts the torn bytes, not the zeros");
    diag("message: %s", err);
    is_int(audit_open_ex(&log, torn, AUDIT_SYNC_GROUP, 0, AUDIT_OPEN_REPAIR_TORN, &why, err, sizeof(err)), 0,
           "torn+zeros: open with repair");
    make_record(&r, 3, h);
    ok(audit_append(log, &r, &seq) == 0 && seq == 4 && audit_wait_durable(log, seq) == 0,
       "torn+zeros: the torn record's seq is written again");
    audit_close(log);
    ok(clean_file(torn, NULL), "torn+zeros: the repaired, closed file has no zero left");
    is_int(verify_both(&res, tp, 1, NULL, "torn+zeros repaired"), 0, "torn+zeros: repaired log verifies");
    snprintf(saved, sizeof(saved), "%s.torn.", torn);
    snprintf(cmd, sizeof(cmd), "cat %s* 2>/dev/null", saved);
    FILE *c = popen(cmd, "r");
    char got[64] = {0};
    size_t sl = 0;
    if (c != NULL) {
        sl = fread(got, 1, sizeof(got) - 1, c);
        pclose(c);
    }
    is_mem(got, sl, "{\"v\":1,\"seq\":4,\"ti", 18, "torn+zeros: the evidence is the torn bytes, without the zeros");

    /* Zeros inside the chain are damage, not a tail: both verifiers refuse them. */
    memset(img, 0, len + 18 + 4096);
    memcpy(img, buf, len);
    size_t first_nl = (size_t)((uint8_t *)memchr(buf, '\n', len) - buf) + 1;
    memmove(img + first_nl + 100, buf + first_nl, len - first_nl);
    memset(img + first_nl, 0, 100);
    ok(write_all_file(torn, img, len + 100) == 0, "zeros between lines 1 and 2");
    is_int(verify_both(&res, tp, 1, NULL, "zeros between lines"), KL_ERR_AUDIT, "zeros between lines: refused");
    is_int(res.bad_line, 2, "zeros between lines: at line 2");
    /* A file of zeros only (a crash before the first record was durable): no records. */
    memset(img, 0, 4096);
    ok(write_all_file(torn, img, 4096) == 0, "zeros only");
    is_int(verify_both(&res, tp, 1, NULL, "zeros only"), KL_ERR_AUDIT, "zeros only: no records, refused");
    ok(audit_open(&log, torn, AUDIT_SYNC_GROUP, 0) == 0 && audit_append(log, &r, &seq) == 0 && seq == 1,
       "zeros only: opens as a fresh log (seq 1)");
    audit_close(log);
    ok(clean_file(torn, NULL), "zeros only: then holds one clean line");
    free(buf);
    free(img);

    /* Rotation cuts the old file to its records. */
    path_in(path, sizeof(path), "zero-rot.log");
    is_int(audit_open(&log, path, AUDIT_SYNC_GROUP, 0), 0, "zero tail, rotate: open");
    make_record(&r, 1, h);
    ok(audit_append(log, &r, &seq) == 0 && audit_wait_durable(log, seq) == 0, "zero tail, rotate: a record");
    is_int(audit_rotate_ex(log, rot, sizeof(rot)), 0, "zero tail, rotate");
    ok(clean_file(rot, NULL), "zero tail, rotate: the rotated file ends with its last line");
    ok(audit_append(log, &r, &seq) == 0 && audit_wait_durable(log, seq) == 0, "zero tail, rotate: a record after");
    const char *both[2] = {rot, path};
    is_int(verify_both(&res, both, 2, NULL, "rotated + live with zero tail"), 0,
           "zero tail, rotate: both files verify (the live one with its zeros)");
    audit_close(log);
}

static void test_modes(void)
{
    static const struct {
        enum audit_sync mode;
        const char *name;
        int n;
    } modes[] = {
        {AUDIT_SYNC_ALWAYS, "ALWAYS", 200}, {AUDIT_SYNC_GROUP, "GROUP", 200}, {AUDIT_SYNC_NONE, "NONE", 20000}};
    for (size_t m = 0; m < 3; m++) {
        char path[512], name[128];
        struct audit_log *log = NULL;
        struct audit_verify_result res;
        snprintf(path, sizeof(path), "%s/mode-%s.log", tmpdir, modes[m].name);
        snprintf(name, sizeof(name), "%s: open", modes[m].name);
        is_int(audit_open(&log, path, modes[m].mode, 2), 0, name);
        if (log == NULL)
            continue;
        double t0 = now_s();
        int fails = 0;
        for (int i = 0; i < modes[m].n; i++) {
            struct audit_record r;
            uint8_t h[48];
            uint64_t seq;
            make_record(&r, (uint64_t)i, h);
            if (audit_append(log, &r, &seq) != 0 || audit_wait_durable(log, seq) != 0 || st_of(log).durable_seq < seq)
                fails++;
        }
        double dt = now_s() - t0;
        snprintf(name, sizeof(name), "%s: %d appends, each durable when its wait returns", modes[m].name, modes[m].n);
        is_int(fails, 0, name);
        uint64_t syncs = st_of(log).sync_count;
        diag("%s mode, 1 thread, append+wait_durable: %.0f records/s (%llu fdatasyncs)", modes[m].name,
             dt > 0 ? modes[m].n / dt : 0.0, (unsigned long long)syncs);
        if (modes[m].mode == AUDIT_SYNC_NONE)
            is_int(syncs, 0, "NONE: no fdatasync at all");
        if (modes[m].mode == AUDIT_SYNC_ALWAYS)
            is_int(syncs, modes[m].n, "ALWAYS: one fdatasync per record");
        if (modes[m].mode != AUDIT_SYNC_NONE) {
            /* Several threads share fdatasyncs. */
            double rate = write_many(log, 4, 400);
            diag("%s mode, 4 threads, append+wait_durable: %.0f records/s (%llu fdatasyncs for 400 records)",
                 modes[m].name, rate, (unsigned long long)(st_of(log).sync_count - syncs));
        }
        audit_close(log);
        const char *paths[1] = {path};
        snprintf(name, sizeof(name), "%s: log verifies", modes[m].name);
        is_int(audit_verify_files(NULL, &res, paths, 1, NULL), 0, name);
    }

    /* append only (no wait), NONE mode: the cost of formatting + hashing + write(2). */
    {
        char path[512];
        struct audit_log *log = NULL;
        path_in(path, sizeof(path), "append-only.log");
        if (audit_open(&log, path, AUDIT_SYNC_NONE, 0) == 0) {
            double t0 = now_s();
            int fails = 0;
            for (int i = 0; i < 20000; i++) {
                struct audit_record r;
                uint8_t h[48];
                make_record(&r, (uint64_t)i, h);
                fails += audit_append(log, &r, NULL) != 0;
            }
            diag("append only (format+SHA-256+write): %.0f records/s", 20000 / (now_s() - t0));
            is_int(fails, 0, "20000 appends");
            audit_close(log);
        }
    }

    /* GROUP: no timer for a waiter (issue 15): with a 300 ms group_ms, a second record
     * right after the first is synced by its waiter at once, by one more fdatasync. */
    {
        char path[512];
        struct audit_log *log = NULL;
        struct audit_record r;
        uint8_t h[48];
        uint64_t s1 = 0, s2 = 0;
        path_in(path, sizeof(path), "group.log");
        is_int(audit_open(&log, path, AUDIT_SYNC_GROUP, 300), 0, "GROUP 300 ms: open");
        make_record(&r, 1, h);
        ok(audit_append(log, &r, &s1) == 0 && audit_wait_durable(log, s1) == 0, "first record durable");
        uint64_t syncs = st_of(log).sync_count;
        make_record(&r, 2, h);
        is_int(audit_append(log, &r, &s2), 0, "second record appended");
        ok(st_of(log).durable_seq < s2, "not durable before its wait");
        double t0 = now_s();
        is_int(audit_wait_durable(log, s2), 0, "wait returns 0");
        double dt = now_s() - t0;
        ok(st_of(log).durable_seq >= s2 && st_of(log).sync_count == syncs + 1, "after exactly one more fdatasync");
        diag("GROUP 300 ms: second record's wait took %.1f ms", dt * 1000);
        ok(dt < 0.25, "... without waiting for group_ms");
        is_int(audit_wait_durable(log, s2 + 1), KL_ERR_INVALID, "waiting for an unwritten seq is refused");
        audit_close(log);
    }

    /* GROUP: a waiter runs the sync itself; a record nobody waits for (seq_p NULL: refusals,
     * connection events) is made durable by the flusher thread within about group_ms. */
    {
        char path[512];
        struct audit_log *log = NULL;
        struct audit_record r;
        uint8_t h[48], head[AUDIT_HASH_LEN];
        uint64_t s1 = 0, s2 = 0;
        path_in(path, sizeof(path), "group-unwaited.log");
        is_int(audit_open(&log, path, AUDIT_SYNC_GROUP, 5), 0, "GROUP 5 ms: open");
        make_record(&r, 1, h);
        ok(audit_append(log, &r, &s1) == 0 && audit_wait_durable(log, s1) == 0 && st_of(log).sync_count == 1,
           "a waited record: durable after one fdatasync, run by the waiter");
        make_record(&r, 2, h);
        is_int(audit_append(log, &r, NULL), 0, "a record nobody waits for appended");
        {
            struct audit_stats st_ = st_of(log);
            memcpy(head, st_.head, AUDIT_HASH_LEN);
            s2 = st_.seq;
        }
        double t0 = now_s();
        while (st_of(log).durable_seq < s2 && now_s() - t0 < 5.0)
            usleep(1000);
        ok(st_of(log).durable_seq >= s2, "the flusher made it durable without a waiter");
        diag("GROUP 5 ms: unwaited record durable after %.1f ms", (now_s() - t0) * 1000);
        audit_close(log);
    }

    /* audit_sync_if_idle: syncs on the caller's thread whenever no other sync runs (no
     * pacing since issue 15; WANT_READ while a sync runs is in test_audit_commit). */
    {
        char path[512];
        struct audit_log *log = NULL;
        struct audit_record r;
        uint8_t h[48];
        uint64_t s1 = 0, s2 = 0;
        path_in(path, sizeof(path), "group-if-idle.log");
        is_int(audit_open(&log, path, AUDIT_SYNC_GROUP, 300), 0, "GROUP 300 ms: open");
        make_record(&r, 1, h);
        ok(audit_append(log, &r, &s1) == 0 && audit_sync_if_idle(log, s1) == 0 && st_of(log).durable_seq >= s1 &&
               st_of(log).sync_count == 1,
           "sync_if_idle with no sync yet: one fdatasync here, durable on return");
        is_int(audit_sync_if_idle(log, s1), 0, "sync_if_idle on a durable record: 0");
        is_int((int)st_of(log).sync_count, 1, "... and no second fdatasync");
        make_record(&r, 2, h);
        ok(audit_append(log, &r, &s2) == 0, "one more record");
        ok(st_of(log).durable_seq < s2, "... not durable before it is synced");
        is_int(audit_sync_if_idle(log, s2), 0, "right after a sync: synced here too (no group_ms pacing)");
        ok(st_of(log).durable_seq >= s2 && st_of(log).sync_count == 2, "... durable, by a second fdatasync");
        is_int(audit_sync_if_idle(log, s2 + 1), KL_ERR_INVALID, "sync_if_idle on an unwritten seq is refused");
        audit_close(log);
    }
}

static void test_errors(void)
{
    struct audit_log *log = NULL;
    char err[256], path[512];
    struct audit_record r;
    uint8_t h[48];
    uint64_t seq = 0;

    is_int(audit_open(NULL, "/tmp/x", AUDIT_SYNC_NONE, 0), KL_ERR_INVALID, "NULL log_p refused");
    enum audit_open_fail why = AUDIT_OPEN_FAIL_NONE;
    is_int(audit_open_ex(&log, "", AUDIT_SYNC_NONE, 0, 0, &why, err, sizeof(err)), KL_ERR_INVALID,
           "empty path refused");
    is_int(why, AUDIT_OPEN_FAIL_ARGS, "typed reason: AUDIT_OPEN_FAIL_ARGS");
    is_int(audit_open_ex(&log, "/tmp/x", (enum audit_sync)7, 0, 0, NULL, err, sizeof(err)), KL_ERR_INVALID,
           "bad sync mode refused (fail_p may be NULL)");
    why = AUDIT_OPEN_FAIL_NONE;
    is_int(audit_open_ex(&log, "/nonexistent-dir/a.log", AUDIT_SYNC_NONE, 0, 0, &why, err, sizeof(err)), KL_ERR_IO,
           "unwritable path refused");
    ok(strstr(err, "/nonexistent-dir/a.log") != NULL, "message names the file");
    is_int(why, AUDIT_OPEN_FAIL_IO, "typed reason: AUDIT_OPEN_FAIL_IO");

    /* Write failures are sticky: /dev/full refuses every write. */
    if (audit_open_ex(&log, "/dev/full", AUDIT_SYNC_NONE, 0, 0, NULL, err, sizeof(err)) == 0) {
        make_record(&r, 1, h);
        is_int(audit_append(log, &r, &seq), KL_ERR_AUDIT, "write failure reported");
        is_int(audit_append(log, &r, &seq), KL_ERR_AUDIT, "and sticky: later appends fail too");
        is_int(audit_wait_durable(log, 0), KL_ERR_AUDIT, "wait fails too");
        audit_close(log);
    } else {
        diag("skip /dev/full checks: %s", err);
    }

    /* Every field is bounded: a 300 KiB peer string is cut to AUDIT_MAX_FIELD bytes and
     * marked with its length, a 1000-byte "hash" to AUDIT_MAX_FIELD_HASH; the line stays small. */
    path_in(path, sizeof(path), "big.log");
    is_int(audit_open(&log, path, AUDIT_SYNC_NONE, 0), 0, "big: open");
    size_t n = 300 * 1024;
    char *huge = malloc(n + 1);
    memset(huge, 0xff, n);
    huge[n] = '\0';
    uint8_t longhash[1000];
    memset(longhash, 0xab, sizeof(longhash));
    make_record(&r, 1, h);
    r.server_name = huge;
    r.client_address = huge;
    r.reason = huge;
    r.key = huge;
    r.hash = longhash;
    r.hash_len = sizeof(longhash);
    is_int(audit_append(log, &r, &seq), 0, "a record with 300 KiB fields is written, bounded");
    diag("a record with four 300 KiB strings: a line of %llu bytes", (unsigned long long)st_of(log).size);
    ok(st_of(log).size < 8 * AUDIT_MAX_FIELD * 6 + 1024, "... a line of a few KiB");
    make_record(&r, 2, h);
    is_int(audit_append(log, &r, &seq), 0, "log still usable");
    is_int(seq, 2, "next seq");
    audit_close(log);
    free(huge);
    {
        char *text = NULL;
        size_t tl = 0;
        FILE *f = fopen(path, "r");
        ok(f != NULL && getline(&text, &tl, f) > 0, "big: read the line back");
        ok(text != NULL && strstr(text, "...(307200 bytes)\"") != NULL, "cut field names its full length");
        ok(text != NULL && strstr(text, "abababab...\"") != NULL, "cut hash ends in ...");
        free(text);
        if (f != NULL)
            fclose(f);
    }
    is_int(audit_verify_file(NULL, path, NULL), 0, "and verifies");

    /* The command-line entry point. */
    char *argv_ok[] = {"audit-verify", path, NULL};
    is_int(audit_verify_main(2, argv_ok), 0, "audit-verify FILE: exit 0");
    char *argv_bad[] = {"audit-verify", "--expect-head", "00", path, NULL};
    is_int(audit_verify_main(4, argv_bad), 2, "bad --expect-head: exit 2");
    char zeros[65];
    memset(zeros, '0', 64);
    zeros[64] = '\0';
    char *argv_mis[] = {"audit-verify", "--expect-head", zeros, path, NULL};
    is_int(audit_verify_main(4, argv_mis), 1, "wrong expected head: exit 1");
    char *argv_none[] = {"audit-verify", NULL};
    is_int(audit_verify_main(1, argv_none), 2, "no file: exit 2");
    char *argv_missing[] = {"audit-verify", "/nonexistent-dir/a.log", NULL};
    is_int(audit_verify_main(2, argv_missing), 2, "unreadable file: exit 2");
}

/* Lines an attacker might hand-craft: each must be refused by both verifiers. */
static void test_noncanonical(void)
{
    static const char *bodies[] = {
        "{\"v\":1,\"seq\":1,\"x\":\"a\\nb\",\"prev\":\"%s\"",    /* \n short escape */
        "{\"v\":1,\"seq\":1,\"x\":\"\\u0041\",\"prev\":\"%s\"",  /* escaped printable */
        "{\"v\":1,\"seq\":1,\"x\":\"\\u00C3\",\"prev\":\"%s\"",  /* uppercase hex */
        "{\"v\":1, \"seq\":1,\"prev\":\"%s\"",                   /* whitespace */
        "{\"v\":1,\"seq\":01,\"prev\":\"%s\"",                   /* leading zero */
        "{\"v\":1,\"seq\":1,\"x\":-0,\"prev\":\"%s\"",           /* -0 */
        "{\"v\":1,\"seq\":1,\"x\":1.5,\"prev\":\"%s\"",          /* float */
        "{\"v\":1,\"seq\":1,\"x\":true,\"prev\":\"%s\"",         /* boolean */
        "{\"v\":1,\"seq\":1,\"seq\":1,\"prev\":\"%s\"",          /* duplicate member */
        "{\"v\":2,\"seq\":1,\"prev\":\"%s\"",                    /* unknown version */
        "{\"seq\":1,\"prev\":\"%s\"",                            /* no version */
        "{\"v\":1,\"seq\":0,\"prev\":\"%s\"",                    /* seq 0 */
        "{\"v\":1,\"seq\":18446744073709551616,\"prev\":\"%s\"", /* seq 2^64 */
        "{\"v\":1,\"seq\":1,\"x\":{\"a\":1},\"prev\":\"%s\"",    /* nested */
        "{\"v\":1,\"seq\":1,\"prev\":\"%s\",\"x\":1",            /* prev not before hash */
    };
    char zeros[65], line[1024], hex[65], path[512];
    uint8_t h[32];
    memset(zeros, '0', 64);
    zeros[64] = '\0';
    path_in(path, sizeof(path), "forged.log");
    const char *paths[1] = {path};
    /* The control: a minimal canonical line is accepted. */
    snprintf(line, sizeof(line), "{\"v\":1,\"seq\":1,\"x\":\"\\u00c3\\\\\",\"prev\":\"%s\"", zeros);
    crypto_hash_sha256(h, (uint8_t *)line, strlen(line));
    sodium_bin2hex(hex, sizeof(hex), h, 32);
    snprintf(line + strlen(line), sizeof(line) - strlen(line), ",\"hash\":\"%s\"}\n", hex);
    ok(write_all_file(path, line, strlen(line)) == 0, "minimal line written");
    is_int(verify_both(NULL, paths, 1, NULL, "minimal canonical line"), 0, "minimal canonical line accepted");
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char label[400];
        struct audit_verify_result res;
        const char *mark = strstr(bodies[i], "%s");
        snprintf(line, sizeof(line), "%.*s%s%s", (int)(mark - bodies[i]), bodies[i], zeros, mark + 2);
        crypto_hash_sha256(h, (uint8_t *)line, strlen(line));
        sodium_bin2hex(hex, sizeof(hex), h, 32);
        snprintf(line + strlen(line), sizeof(line) - strlen(line), ",\"hash\":\"%s\"}\n", hex);
        if (write_all_file(path, line, strlen(line)) != 0)
            continue;
        snprintf(label, sizeof(label), "non-canonical line %zu", i);
        int ret = verify_both(&res, paths, 1, NULL, label);
        snprintf(label, sizeof(label), "non-canonical line %zu refused (%s)", i, res.what);
        ok(ret == KL_ERR_AUDIT && res.bad_line == 1, label);
    }
}

/* Issue 11: the ticket_keys members, byte for byte, for an answer, a refusal and a
 * request with too many epochs to list; and the line still checks. */
static void test_ticket_members(void)
{
    static const uint64_t epochs[3] = {0, 2970, UINT64_MAX};
    static const uint8_t ids[3][AUDIT_TICKET_KEY_ID_LEN] = {{0, 1, 2, 3, 4, 5, 6, 7},
                                                            {0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1},
                                                            {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    struct audit_ticket_keys tk = {"site-a", 604800, epochs, 3, ids};
    struct audit_record r = {.time = {1700000000, 0}, .op = "ticket_keys", .key = "ticket-root", .status = "OK"};
    struct audit_line_info info;
    struct kl_buf b;
    uint8_t prev[AUDIT_HASH_LEN] = {0}, hash[AUDIT_HASH_LEN];
    char what[256];
    const char *answered = ",\"latency_us\":0,\"ticket_scope\":\"site-a\",\"ticket_rotation\":604800,"
                           "\"ticket_epochs\":\"0,2970,18446744073709551615\","
                           "\"ticket_key_ids\":\"0001020304050607,deadbeef00000001,ffffffffffffffff\",\"prev\":";
    const char *refused = ",\"ticket_scope\":null,\"ticket_rotation\":0,\"ticket_epochs\":\"2970\","
                          "\"ticket_key_ids\":null,\"prev\":";
    const char *too_many = ",\"ticket_rotation\":60,\"ticket_epochs\":null,\"ticket_key_ids\":null,\"prev\":";

    kl_buf_init(&b, AUDIT_MAX_LINE);
    r.tickets = &tk;
    is_int(audit_line_format(&b, hash, &r, 1, prev, NULL), 0, "tickets: format an answer");
    ok(memmem(b.base, b.len, answered, strlen(answered)) != NULL, "tickets: scope, rotation, epochs and key ids");
    is_int(audit_line_check(&info, what, sizeof(what), (const char *)b.base, b.len - 1), 0, "tickets: the line checks");
    tk.scope = NULL;
    tk.rotation = 0;
    tk.epochs = &epochs[1];
    tk.n = 1;
    tk.key_ids = NULL;
    is_int(audit_line_format(&b, hash, &r, 2, prev, NULL), 0, "tickets: format a refusal");
    ok(memmem(b.base, b.len, refused, strlen(refused)) != NULL, "tickets: a refusal lists the epochs, no key id");
    tk.epochs = NULL;
    tk.n = 9;
    tk.rotation = 60;
    tk.key_ids = ids; /* ignored without epochs */
    is_int(audit_line_format(&b, hash, &r, 3, prev, NULL), 0, "tickets: format too many epochs");
    ok(memmem(b.base, b.len, too_many, strlen(too_many)) != NULL, "tickets: too many to list: epochs and ids null");
    r.tickets = NULL;
    is_int(audit_line_format(&b, hash, &r, 4, prev, NULL), 0, "tickets: a record without them");
    ok(memmem(b.base, b.len, "\"ticket_scope\"", 14) == NULL, "tickets: no ticket member on other records");
    kl_buf_dispose(&b);
}

/* audit_format_time against gmtime_r/strftime, through its per-second cache: the same
 * second with other microseconds, then other seconds (a stale cache would show). */
static void test_format_time(void)
{
    static const struct timespec ts[] = {
        {1700000000, 5000},      {1700000000, 999999999},  {1700000000, 0},
        {1700000001, 123456000}, {1700000000, 1000},       {0, 0},
        {951782400, 42000},      {4102444799, 999999000},  {1700000001, 1000000},
        {1700000001, -5},        {1700000001, 2000000000},
    };
    int same = 1;
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
        char got[40], want[40];
        struct tm tm;
        time_t secs = ts[i].tv_sec;
        long usec = ts[i].tv_nsec / 1000;
        if (usec < 0 || usec > 999999)
            usec = 0;
        gmtime_r(&secs, &tm);
        size_t n = strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + n, sizeof(want) - n, ".%06ldZ", usec);
        memset(got, 0x7f, sizeof(got));
        audit_format_time(got, &ts[i]);
        if (strcmp(got, want) != 0) {
            diag("format_time: %s, want %s", got, want);
            same = 0;
        }
    }
    ok(same, "format_time: as gmtime_r/strftime, across the per-second cache (11 times)");
    char a[40], b[40];
    struct timespec t1 = {1700000000, 0}, t2 = {1700000060, 0};
    audit_format_time(a, &t1);
    audit_format_time(b, &t2);
    ok(strcmp(a, "2023-11-14T22:13:20.000000Z") == 0 && strcmp(b, "2023-11-14T22:14:20.000000Z") == 0,
       "format_time: another second, another string");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/kl-audit-XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL || sodium_init() < 0) {
        printf("Bail out! cannot make a temporary directory\n");
        return 1;
    }
    /* The distribution's interpreter if there is one: a version-manager shim is slow. */
    if (access("/usr/bin/python3", X_OK) == 0)
        python = "/usr/bin/python3";
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s -c 'import hashlib, json' >/dev/null 2>&1", python);
    have_python = system(cmd) == 0;
    if (!have_python)
        diag("python3 not found: skipping the C/Python agreement checks");
    test_escape();
    test_format_time();
    test_audit_line();
    test_ticket_members();
    test_golden_line();
    test_chain_and_tamper();
    test_reopen_damage();
    test_rotation();
    test_zero_tail();
    test_no_zero_tail();
    test_modes();
    test_errors();
    test_noncanonical();
    check_python_agreement();
    if (getenv("KL_KEEP_TMP") == NULL) {
        char rm[512];
        snprintf(rm, sizeof(rm), "rm -rf '%s'", tmpdir);
        if (system(rm) != 0)
            diag("could not remove %s", tmpdir);
    }
    return kl_test_done();
}
