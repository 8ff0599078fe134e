/*
 * audit.c - the append-only, hash-chained decision log and its verifier.
 *
 * Format and chain (docs/AUDIT.md has the full description): one canonical JSON object
 * per line, printable ASCII only; the last two members are "prev" (hex hash of the line
 * before, 64 zeros for the first record of a fresh log) and "hash" = hex SHA-256 of the
 * line's bytes up to (not including) the `,"hash":` member. The verifier accepts exactly
 * the canonical form the writer produces, so there is one byte string per record.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "audit.h"
#include "policy.h"
#include "clock.h"

/* `,"hash":"` + 64 hex digits + `"}` */
#define HASH_TAIL_LEN (9 + 2 * AUDIT_HASH_LEN + 2)
#define FORMAT_VERSION 1
#define MAX_MEMBERS 40

struct line_buf {
    char *base;
    size_t len, cap;
    int overflow; /* a bounded append failed: the line is unusable */
};

struct audit_log {
    pthread_mutex_t lock;
    pthread_cond_t durable_cv; /* durable_seq advanced, an fdatasync ended, or the log failed */
    pthread_cond_t work_cv;    /* the flusher: records pending or stop */
    int fd;
    char *path;
    enum audit_sync sync;
    unsigned group_ms;
    uint8_t head[AUDIT_HASH_LEN];
    uint64_t seq;          /* last record written */
    uint64_t durable_seq;  /* last record known durable */
    uint64_t unwaited_seq; /* GROUP: newest record appended without a waiter (the flusher's work) */
    uint64_t size;
    uint64_t sync_count;
    int syncing;           /* an fdatasync of fd runs outside the lock: fd must stay open */
    uint64_t last_sync_ns; /* CLOCK_MONOTONIC start of the last fdatasync (GROUP pacing) */
    int failed;            /* sticky: a write or fdatasync failed */
    int stop;
    int has_flusher;
    pthread_t flusher;
    struct line_buf line;
};

/* ------------------------------------------------------------------ line writer */

static void lb_reserve(struct line_buf *b, size_t extra)
{
    if (b->overflow)
        return;
    if (extra > AUDIT_MAX_LINE - b->len) {
        b->overflow = 1;
        return;
    }
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->base, cap);
    if (p == NULL) {
        b->overflow = 1;
        return;
    }
    b->base = p;
    b->cap = cap;
}

static void lb_put(struct line_buf *b, const char *s, size_t n)
{
    lb_reserve(b, n);
    if (b->overflow)
        return;
    memcpy(b->base + b->len, s, n);
    b->len += n;
    b->base[b->len] = '\0';
}

static void lb_str(struct line_buf *b, const char *s)
{
    lb_put(b, s, strlen(s));
}

static void lb_u64(struct line_buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
    lb_put(b, tmp, (size_t)n);
}

static void lb_i64(struct line_buf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    lb_put(b, tmp, (size_t)n);
}

static const char hexdigits[] = "0123456789abcdef";

static void lb_hex(struct line_buf *b, const uint8_t *p, size_t n)
{
    if (n > AUDIT_MAX_LINE / 2) {
        b->overflow = 1;
        return;
    }
    lb_reserve(b, 2 * n);
    if (b->overflow)
        return;
    for (size_t i = 0; i < n; i++) {
        b->base[b->len++] = hexdigits[p[i] >> 4];
        b->base[b->len++] = hexdigits[p[i] & 15];
    }
    b->base[b->len] = '\0';
}

size_t audit_json_escape(char *out, size_t out_cap, const void *s, size_t len)
{
    const uint8_t *p = s;
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char tmp[7];
        size_t k;
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            k = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[0] = (char)c;
            k = 1;
        } else {
            /* Controls, DEL and every byte >= 0x80: one \u00XX per byte, so the line stays
             * printable ASCII and the original bytes are recoverable one-to-one. */
            tmp[0] = '\\';
            tmp[1] = 'u';
            tmp[2] = '0';
            tmp[3] = '0';
            tmp[4] = hexdigits[c >> 4];
            tmp[5] = hexdigits[c & 15];
            k = 6;
        }
        if (out != NULL && n + k < out_cap)
            memcpy(out + n, tmp, k);
        n += k;
    }
    if (out != NULL && out_cap > 0)
        out[n < out_cap ? n : out_cap - 1] = '\0';
    return n;
}

/* A JSON string member value, or null for NULL. */
static void lb_jstr(struct line_buf *b, const char *s)
{
    if (s == NULL) {
        lb_str(b, "null");
        return;
    }
    size_t len = strlen(s);
    if (len > AUDIT_MAX_LINE) {
        b->overflow = 1;
        return;
    }
    size_t need = audit_json_escape(NULL, 0, s, len);
    lb_reserve(b, need + 2);
    if (b->overflow)
        return;
    b->base[b->len++] = '"';
    audit_json_escape(b->base + b->len, need + 1, s, len);
    b->len += need;
    b->base[b->len++] = '"';
    b->base[b->len] = '\0';
}

static void lb_key(struct line_buf *b, const char *key)
{
    /* Keys are our own constants: plain ASCII, nothing to escape. */
    lb_str(b, b->len > 1 ? ",\"" : "\"");
    lb_str(b, key);
    lb_str(b, "\":");
}

static void format_time(char out[40], const struct timespec *ts)
{
    struct tm tm;
    time_t secs = ts->tv_sec;
    long usec = ts->tv_nsec / 1000;
    if (usec < 0 || usec > 999999)
        usec = 0;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%06ldZ", usec);
}

/*
 * Build record seq chained to prev into b (cleared first), including the hash member and
 * the newline; hash_out receives the line's hash. KL_ERR_OVERFLOW if the line would be too
 * long (or memory ran out while growing it).
 */
static int build_line(struct line_buf *b, uint8_t hash_out[AUDIT_HASH_LEN], const struct audit_record *rec,
                      uint64_t seq, const uint8_t prev[AUDIT_HASH_LEN], const char *rotated_from)
{
    char tbuf[40];
    struct timespec now = rec->time;

    if (now.tv_sec == 0 && now.tv_nsec == 0)
        clock_gettime(CLOCK_REALTIME, &now);
    format_time(tbuf, &now);
    b->len = 0;
    b->overflow = 0;
    lb_str(b, "{");
    lb_key(b, "v");
    lb_u64(b, FORMAT_VERSION);
    lb_key(b, "seq");
    lb_u64(b, seq);
    lb_key(b, "time");
    lb_jstr(b, tbuf);
    lb_key(b, "pid");
    lb_i64(b, (int64_t)rec->pid);
    lb_key(b, "uid");
    lb_u64(b, (uint64_t)rec->uid);
    lb_key(b, "gid");
    lb_u64(b, (uint64_t)rec->gid);
    lb_key(b, "op");
    lb_jstr(b, rec->op);
    lb_key(b, "key");
    lb_jstr(b, rec->key);
    lb_key(b, "scheme");
    lb_jstr(b, policy_scheme_name(rec->scheme));
    lb_key(b, "scheme_code");
    lb_u64(b, rec->scheme);
    lb_key(b, "context");
    lb_i64(b, rec->context);
    lb_key(b, "transcript_hash");
    if (rec->hash != NULL) {
        lb_str(b, "\"");
        lb_hex(b, rec->hash, rec->hash_len);
        lb_str(b, "\"");
    } else {
        lb_str(b, "null");
    }
    lb_key(b, "server_name");
    lb_jstr(b, rec->server_name);
    lb_key(b, "client_address");
    lb_jstr(b, rec->client_address);
    lb_key(b, "connection_id");
    lb_u64(b, rec->connection_id);
    lb_key(b, "request_id");
    lb_u64(b, rec->request_id);
    lb_key(b, "status");
    lb_jstr(b, rec->status);
    lb_key(b, "reason");
    lb_jstr(b, rec->reason);
    lb_key(b, "latency_us");
    lb_u64(b, rec->latency_us);
    if (rotated_from != NULL) {
        lb_key(b, "rotated_from");
        lb_jstr(b, rotated_from);
    }
    lb_key(b, "prev");
    lb_str(b, "\"");
    lb_hex(b, prev, AUDIT_HASH_LEN);
    lb_str(b, "\"");
    /* Reserve the tail now so that the hash covers a line that is sure to fit. */
    lb_reserve(b, HASH_TAIL_LEN + 1);
    if (b->overflow)
        return KL_ERR_OVERFLOW;
    crypto_hash_sha256(hash_out, (const uint8_t *)b->base, b->len);
    lb_str(b, ",\"hash\":\"");
    lb_hex(b, hash_out, AUDIT_HASH_LEN);
    lb_str(b, "\"}\n");
    return b->overflow ? KL_ERR_OVERFLOW : 0;
}

/* ------------------------------------------------------------------ line parser */

enum jtype { J_STRING, J_INT, J_NULL };

struct member {
    const char *key;
    size_t key_len;
    enum jtype type;
    const char *val; /* string: the raw (escaped) inside of the quotes; int: the digits */
    size_t val_len;
};

struct parsed_line {
    uint64_t seq;
    uint8_t prev[AUDIT_HASH_LEN];
    uint8_t hash[AUDIT_HASH_LEN];
    int has_rotated_from;
};

/* A canonical string starting after the opening quote at s[*i]: printable ASCII, with
 * only \" \\ and \u00XX (lowercase hex, for a byte the writer escapes) as escapes. */
static int parse_string(const char *s, size_t len, size_t *i, const char **out, size_t *out_len)
{
    size_t start = *i;
    while (*i < len) {
        char c = s[*i];
        if (c == '"') {
            *out = s + start;
            *out_len = *i - start;
            (*i)++;
            return 0;
        }
        if (c == '\\') {
            if (*i + 1 >= len)
                return -1;
            char e = s[*i + 1];
            if (e == '"' || e == '\\') {
                *i += 2;
                continue;
            }
            if (e != 'u' || *i + 6 > len || s[*i + 2] != '0' || s[*i + 3] != '0')
                return -1;
            const char *h1 = strchr(hexdigits, s[*i + 4]), *h2 = strchr(hexdigits, s[*i + 5]);
            if (s[*i + 4] == '\0' || s[*i + 5] == '\0' || h1 == NULL || h2 == NULL)
                return -1;
            unsigned v = (unsigned)((h1 - hexdigits) << 4 | (h2 - hexdigits));
            if (v >= 0x20 && v < 0x7f)
                return -1; /* not canonical: this byte is written as itself */
            *i += 6;
            continue;
        }
        (*i)++;
    }
    return -1;
}

static int key_is(const struct member *m, const char *key)
{
    return m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0;
}

static int hex_decode32(uint8_t out[AUDIT_HASH_LEN], const char *s, size_t len)
{
    if (len != 2 * AUDIT_HASH_LEN)
        return -1;
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
        const char *a = s[2 * i] ? strchr(hexdigits, s[2 * i]) : NULL;
        const char *c = s[2 * i + 1] ? strchr(hexdigits, s[2 * i + 1]) : NULL;
        if (a == NULL || c == NULL)
            return -1;
        out[i] = (uint8_t)((a - hexdigits) << 4 | (c - hexdigits));
    }
    return 0;
}

#define BAD(...)                                                                                                       \
    do {                                                                                                               \
        snprintf(what, what_len, __VA_ARGS__);                                                                         \
        return -1;                                                                                                     \
    } while (0)

/*
 * Check one line (without its newline) on its own: canonical flat JSON object, the
 * members every record has, and its own hash. Fills p. -1 with a message in what.
 */
static int check_line(struct parsed_line *p, char *what, size_t what_len, const char *s, size_t len)
{
    struct member m[MAX_MEMBERS];
    size_t n = 0, i = 0;
    int have_v = 0, have_seq = 0;

    if (len > AUDIT_MAX_LINE)
        BAD("line longer than %d bytes", AUDIT_MAX_LINE);
    for (size_t k = 0; k < len; k++) {
        if ((unsigned char)s[k] < 0x20 || (unsigned char)s[k] > 0x7e)
            BAD("byte 0x%02x at column %zu is not printable ASCII", (unsigned char)s[k], k + 1);
    }
    if (len == 0 || s[0] != '{')
        BAD("not a JSON object");
    i = 1;
    for (;;) {
        if (n == MAX_MEMBERS)
            BAD("more than %d members", MAX_MEMBERS);
        if (i >= len || s[i] != '"')
            BAD("malformed JSON (expected a member name at column %zu)", i + 1);
        i++;
        if (parse_string(s, len, &i, &m[n].key, &m[n].key_len) != 0)
            BAD("malformed JSON string (column %zu)", i + 1);
        if (i >= len || s[i] != ':')
            BAD("malformed JSON (expected ':' at column %zu)", i + 1);
        i++;
        if (i < len && s[i] == '"') {
            i++;
            m[n].type = J_STRING;
            if (parse_string(s, len, &i, &m[n].val, &m[n].val_len) != 0)
                BAD("malformed JSON string (column %zu)", i + 1);
        } else if (i + 4 <= len && memcmp(s + i, "null", 4) == 0) {
            m[n].type = J_NULL;
            m[n].val = s + i;
            m[n].val_len = 4;
            i += 4;
        } else {
            /* Canonical integer: -?(0|[1-9][0-9]*), and no "-0". */
            size_t st = i;
            if (i < len && s[i] == '-')
                i++;
            size_t d = i;
            while (i < len && s[i] >= '0' && s[i] <= '9')
                i++;
            if (i == d || (s[d] == '0' && i - d > 1) || (s[d] == '0' && d > st))
                BAD("malformed JSON value (column %zu)", st + 1);
            m[n].type = J_INT;
            m[n].val = s + st;
            m[n].val_len = i - st;
        }
        for (size_t k = 0; k < n; k++) {
            if (m[k].key_len == m[n].key_len && memcmp(m[k].key, m[n].key, m[n].key_len) == 0)
                BAD("duplicate member \"%.*s\"", (int)(m[n].key_len > 40 ? 40 : m[n].key_len), m[n].key);
        }
        n++;
        if (i < len && s[i] == ',') {
            i++;
            continue;
        }
        if (i < len && s[i] == '}') {
            i++;
            break;
        }
        BAD("malformed JSON (expected ',' or '}' at column %zu)", i + 1);
    }
    if (i != len)
        BAD("trailing bytes after the JSON object (column %zu)", i + 1);
    if (n < 2 || !key_is(&m[n - 2], "prev") || !key_is(&m[n - 1], "hash"))
        BAD("the last two members are not \"prev\" and \"hash\"");
    p->has_rotated_from = 0;
    for (size_t k = 0; k < n; k++) {
        if (key_is(&m[k], "v")) {
            if (m[k].type != J_INT || m[k].val_len != 1 || m[k].val[0] != '0' + FORMAT_VERSION)
                BAD("unsupported format version");
            have_v = 1;
        } else if (key_is(&m[k], "seq")) {
            uint64_t v = 0;
            if (m[k].type != J_INT || m[k].val[0] == '-' || m[k].val_len > 20)
                BAD("seq is not a positive integer");
            for (size_t j = 0; j < m[k].val_len; j++) {
                unsigned dgt = (unsigned)(m[k].val[j] - '0');
                if (v > (UINT64_MAX - dgt) / 10)
                    BAD("seq out of range");
                v = v * 10 + dgt;
            }
            if (v == 0)
                BAD("seq is not a positive integer");
            p->seq = v;
            have_seq = 1;
        } else if (key_is(&m[k], "prev") || key_is(&m[k], "hash")) {
            if (m[k].type != J_STRING ||
                hex_decode32(key_is(&m[k], "prev") ? p->prev : p->hash, m[k].val, m[k].val_len) != 0)
                BAD("\"%s\" is not 64 lowercase hex digits", key_is(&m[k], "prev") ? "prev" : "hash");
        } else if (key_is(&m[k], "rotated_from")) {
            if (m[k].type != J_STRING)
                BAD("rotated_from is not a string");
            p->has_rotated_from = 1;
        }
    }
    if (!have_v)
        BAD("no format version \"v\"");
    if (!have_seq)
        BAD("no \"seq\"");
    /* The canonical form ends exactly in ,"hash":"<64 hex>"} (checked above). */
    uint8_t h[AUDIT_HASH_LEN];
    crypto_hash_sha256(h, (const uint8_t *)s, len - HASH_TAIL_LEN);
    if (sodium_memcmp(h, p->hash, AUDIT_HASH_LEN) != 0)
        BAD("hash does not match the line's content (line edited)");
    return 0;
}

static void hex_str(char out[2 * AUDIT_HASH_LEN + 1], const uint8_t *h)
{
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
        out[2 * i] = hexdigits[h[i] >> 4];
        out[2 * i + 1] = hexdigits[h[i] & 15];
    }
    out[2 * AUDIT_HASH_LEN] = '\0';
}

/* ------------------------------------------------------------------ verifier */

static const uint8_t genesis[AUDIT_HASH_LEN];

int audit_verify_files(FILE *report, struct audit_verify_result *res, const char *const *paths, size_t n_paths,
                       const uint8_t *expect_head)
{
    struct audit_verify_result local, *r = res != NULL ? res : &local;
    char *line = NULL;
    size_t line_cap = 0;
    int ret = 0;
    const char *bad_path = NULL;
    char hex[2 * AUDIT_HASH_LEN + 1], hex2[2 * AUDIT_HASH_LEN + 1];

    memset(r, 0, sizeof(*r));
    r->anchored = 1;
    for (size_t fi = 0; fi < n_paths && ret == 0; fi++) {
        FILE *f = fopen(paths[fi], "rb");
        uint64_t ln = 0;
        ssize_t got;
        if (f == NULL) {
            r->bad_file = fi;
            snprintf(r->what, sizeof(r->what), "cannot open: %s", strerror(errno));
            bad_path = paths[fi];
            ret = KL_ERR_IO;
            break;
        }
        while ((got = getline(&line, &line_cap, f)) > 0) {
            struct parsed_line p;
            size_t len = (size_t)got;
            char *what = r->what;
            size_t what_len = sizeof(r->what);
            ln++;
            r->bad_file = fi;
            r->bad_line = ln;
            ret = KL_ERR_AUDIT;
            bad_path = paths[fi];
            if (line[len - 1] != '\n') {
                snprintf(what, what_len, "incomplete line (no newline at end of file: truncated or torn write)");
                break;
            }
            len--;
            if (check_line(&p, what, what_len, line, len) != 0)
                break;
            if (p.has_rotated_from && ln != 1) {
                snprintf(what, what_len, "rotated_from on a line that is not the first of its file (line inserted)");
                break;
            }
            if (r->records == 0) {
                if (p.has_rotated_from) {
                    r->anchored = 0;
                } else if (sodium_memcmp(p.prev, genesis, AUDIT_HASH_LEN) != 0 || p.seq != 1) {
                    snprintf(what, what_len,
                             "first record (seq %" PRIu64 ") does not start a fresh log (prev is not the genesis "
                             "hash, or seq is not 1) and is not a rotation record: records deleted before it",
                             p.seq);
                    break;
                }
            } else {
                if (ln == 1 && !p.has_rotated_from) {
                    snprintf(what, what_len, "file does not begin with a rotation record continuing the previous file");
                    break;
                }
                if (sodium_memcmp(p.prev, r->head, AUDIT_HASH_LEN) != 0) {
                    snprintf(what, what_len,
                             "prev does not match the hash of the previous record (seq %" PRIu64
                             "): a record was deleted, inserted, reordered or edited",
                             r->last_seq);
                    break;
                }
                if (p.seq != r->last_seq + 1) {
                    snprintf(what, what_len, "seq %" PRIu64 " where %" PRIu64 " was expected", p.seq, r->last_seq + 1);
                    break;
                }
            }
            if (r->records == 0)
                r->first_seq = p.seq;
            r->records++;
            r->last_seq = p.seq;
            memcpy(r->head, p.hash, AUDIT_HASH_LEN);
            r->bad_line = 0;
            r->what[0] = '\0';
            ret = 0;
            bad_path = NULL;
        }
        if (ret == 0 && ferror(f)) {
            r->bad_file = fi;
            snprintf(r->what, sizeof(r->what), "read error: %s", strerror(errno));
            bad_path = paths[fi];
            ret = KL_ERR_IO;
        }
        fclose(f);
    }
    free(line);
    if (ret == 0 && expect_head != NULL && sodium_memcmp(expect_head, r->head, AUDIT_HASH_LEN) != 0) {
        hex_str(hex, r->head);
        hex_str(hex2, expect_head);
        r->bad_file = n_paths > 0 ? n_paths - 1 : 0;
        r->bad_line = 0;
        snprintf(r->what, sizeof(r->what), "head %s is not the expected %s: records at the end were removed", hex,
                 hex2);
        bad_path = n_paths > 0 ? paths[n_paths - 1] : "(no file)";
        ret = KL_ERR_AUDIT;
    }
    if (report != NULL) {
        if (ret == 0) {
            hex_str(hex, r->head);
            fprintf(report, "OK: %" PRIu64 " records, seq %" PRIu64 "..%" PRIu64 ", head %s%s\n", r->records,
                    r->first_seq, r->last_seq, hex,
                    r->anchored ? "" : ", unanchored start (first file continues a rotated file)");
        } else if (r->bad_line != 0) {
            fprintf(report, "FAIL: %s:%" PRIu64 ": %s\n", bad_path, r->bad_line, r->what);
        } else {
            fprintf(report, "FAIL: %s:end: %s\n", bad_path, r->what);
        }
    }
    return ret;
}

int audit_verify_file(FILE *report, const char *path, const uint8_t *expect_head)
{
    const char *paths[1] = {path};
    return audit_verify_files(report, NULL, paths, 1, expect_head);
}

int audit_verify_main(int argc, char **argv)
{
    uint8_t head[AUDIT_HASH_LEN];
    const uint8_t *expect = NULL;
    int i = 1;

    if (i < argc && strcmp(argv[i], "--expect-head") == 0) {
        if (i + 1 >= argc || hex_decode32(head, argv[i + 1], strlen(argv[i + 1])) != 0) {
            fprintf(stderr, "audit-verify: --expect-head needs 64 lowercase hex digits\n");
            return 2;
        }
        expect = head;
        i += 2;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (i >= argc) {
        fprintf(stderr, "usage: keyless-signer audit-verify [--expect-head HEX] FILE... (oldest file first)\n");
        return 2;
    }
    int ret = audit_verify_files(stdout, NULL, (const char *const *)(argv + i), (size_t)(argc - i), expect);
    return ret == 0 ? 0 : ret == KL_ERR_AUDIT ? 1 : 2;
}

/* ------------------------------------------------------------------ writer */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *dir = strdup(path);
    int fd, r;
    if (dir == NULL)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

/* The one-line reason an open failed: into err, or to stderr when err is NULL. */
__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && err_len > 0) {
        vsnprintf(err, err_len, fmt, ap);
    } else {
        fprintf(stderr, "audit: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
    }
    va_end(ap);
}

/* Write the line in log->line under the lock; on failure the log fails for good. */
static int append_locked(struct audit_log *log, const struct audit_record *rec, const char *rotated_from,
                         uint64_t *seq_p)
{
    uint8_t h[AUDIT_HASH_LEN];
    int ret;

    if (log->failed)
        return KL_ERR_AUDIT;
    if ((ret = build_line(&log->line, h, rec, log->seq + 1, log->head, rotated_from)) != 0)
        return ret;
    if (write_all(log->fd, log->line.base, log->line.len) != 0) {
        /* A partial line may be on disk now; nothing after it could be trusted to chain
         * correctly, so refuse every further record (the signer fails closed). */
        log->failed = 1;
        pthread_cond_broadcast(&log->durable_cv);
        return KL_ERR_AUDIT;
    }
    log->seq++;
    log->size += log->line.len;
    memcpy(log->head, h, AUDIT_HASH_LEN);
    if (log->sync == AUDIT_SYNC_NONE)
        log->durable_seq = log->seq;
    if (seq_p != NULL)
        *seq_p = log->seq;
    return 0;
}

int audit_append(struct audit_log *log, const struct audit_record *rec, uint64_t *seq_p)
{
    int ret;

    if (log == NULL || rec == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    ret = append_locked(log, rec, NULL, seq_p);
    /* A caller that takes the sequence number waits for it (audit_wait_durable leads the
     * sync itself); a record nobody waits for is left to the flusher. */
    if (ret == 0 && log->sync == AUDIT_SYNC_GROUP && seq_p == NULL) {
        log->unwaited_seq = log->seq;
        pthread_cond_signal(&log->work_cv);
    }
    pthread_mutex_unlock(&log->lock);
    return ret;
}

/* fdatasync everything written so far, outside the lock (called and returning with it
 * held). Only one sync runs at a time; fd stays open meanwhile (rotate/close wait). */
static void sync_unlocked(struct audit_log *log)
{
    uint64_t target = log->seq;
    int fd = log->fd, r;

    log->syncing = 1;
    log->sync_count++;
    log->last_sync_ns = kl_clock_ns();
    pthread_mutex_unlock(&log->lock);
    r = fdatasync(fd);
    pthread_mutex_lock(&log->lock);
    log->syncing = 0;
    if (r != 0)
        log->failed = 1; /* after a failed fdatasync the page cache state is unknown */
    else if (target > log->durable_seq)
        log->durable_seq = target;
    pthread_cond_broadcast(&log->durable_cv);
}

/* What stands between record seq and durability, with the lock held. */
enum durable_step {
    STEP_DONE,   /* durable */
    STEP_FAILED, /* the log failed */
    STEP_WAIT,   /* a sync runs, or NONE mode: wait for durable_cv */
    STEP_PACE,   /* GROUP pacing: no sync may start before *until_ns */
    STEP_SYNC,   /* this caller may run the sync now */
};

static enum durable_step durable_step_locked(const struct audit_log *log, uint64_t seq, uint64_t *until_ns)
{
    if (log->failed)
        return STEP_FAILED;
    if (log->durable_seq >= seq)
        return STEP_DONE;
    if (log->syncing || log->sync == AUDIT_SYNC_NONE)
        return STEP_WAIT;
    if (log->sync == AUDIT_SYNC_GROUP && log->last_sync_ns != 0) {
        /* At most one fdatasync starts per group_ms. */
        *until_ns = log->last_sync_ns + (uint64_t)log->group_ms * 1000000ULL;
        if (kl_clock_ns() < *until_ns)
            return STEP_PACE;
    }
    return STEP_SYNC;
}

/* An absolute CLOCK_REALTIME deadline wait_ns from now, for pthread_cond_timedwait. */
static void deadline_in(struct timespec *ts, uint64_t wait_ns)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(wait_ns / 1000000000ULL);
    ts->tv_nsec += (long)(wait_ns % 1000000000ULL);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Make seq durable: run the sync when this caller may, wait for others when may_wait, else
 * KL_ERR_WANT_READ as soon as it would have to wait. */
static int make_durable(struct audit_log *log, uint64_t seq, int may_wait)
{
    int ret = 0;
    uint64_t until = 0;

    if (log == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    if (seq > log->seq) {
        ret = KL_ERR_INVALID;
        goto exit;
    }
    for (;;) {
        enum durable_step step = durable_step_locked(log, seq, &until);
        if (step == STEP_DONE)
            break;
        if (step == STEP_FAILED) {
            ret = KL_ERR_AUDIT;
            break;
        }
        if (step == STEP_SYNC) {
            /* This caller leads: one fdatasync for every record written so far, no hand-off
             * to another thread (the others wait for it and find their records covered). */
            sync_unlocked(log);
        } else if (!may_wait) {
            ret = KL_ERR_WANT_READ; /* it would have to wait: the caller hands it off */
            break;
        } else if (step == STEP_WAIT) {
            pthread_cond_wait(&log->durable_cv, &log->lock);
        } else {
            /* Until the next sync may start (a sync that ends meanwhile may cover seq). */
            struct timespec ts;
            uint64_t now = kl_clock_ns();
            deadline_in(&ts, until > now ? until - now : 0);
            (void)pthread_cond_timedwait(&log->durable_cv, &log->lock, &ts);
        }
    }
exit:
    pthread_mutex_unlock(&log->lock);
    return ret;
}

int audit_sync_if_idle(struct audit_log *log, uint64_t seq)
{
    return make_durable(log, seq, 0);
}

int audit_wait_durable(struct audit_log *log, uint64_t seq)
{
    return make_durable(log, seq, 1);
}

/*
 * GROUP mode, records nobody waits for (refusals, list_keys, connection events): as soon
 * as one is pending, fdatasync everything written so far, starting syncs at most every
 * group_ms. Records whose callers wait (signatures) are synced by the first waiter
 * itself (audit_wait_durable), under the same pacing, without waking this thread.
 */
static void *flusher_main(void *arg)
{
    struct audit_log *log = arg;
    uint64_t interval = (uint64_t)log->group_ms * 1000000ULL;

    pthread_mutex_lock(&log->lock);
    while (!log->stop) {
        /* Only records nobody waits for are the flusher's: a waiter syncs its own. */
        if (log->failed || log->durable_seq >= log->unwaited_seq) {
            pthread_cond_wait(&log->work_cv, &log->lock);
            continue;
        }
        if (log->syncing) {
            pthread_cond_wait(&log->durable_cv, &log->lock);
            continue;
        }
        uint64_t now = kl_clock_ns(), last_start = log->last_sync_ns;
        if (last_start != 0 && now < last_start + interval) {
            struct timespec ts;
            deadline_in(&ts, last_start + interval - now);
            /* Wakes early only for stop (appends signal work_cv, ignored until the deadline). */
            while (!log->stop && pthread_cond_timedwait(&log->work_cv, &log->lock, &ts) != ETIMEDOUT)
                ;
            continue;
        }
        sync_unlocked(log);
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

/* Read the last line of fd (size bytes) and check it; fill head and seq. */
static int load_tail(struct audit_log *log, unsigned flags, char *err, size_t err_len)
{
    struct stat st;
    size_t window, start;
    uint64_t off;
    char *buf = NULL, what[256];
    int ret = 0;

    if (fstat(log->fd, &st) != 0) {
        set_err(err, err_len, "%s: fstat: %s", log->path, strerror(errno));
        return KL_ERR_IO;
    }
    log->size = (uint64_t)st.st_size;
    if (st.st_size == 0)
        return 0; /* fresh log: chains to the genesis hash, seq starts at 1 */
    window = (uint64_t)st.st_size < AUDIT_MAX_LINE + 2 ? (size_t)st.st_size : AUDIT_MAX_LINE + 2;
    off = (uint64_t)st.st_size - window;
    KL_ENSURE((buf = malloc(window)) != NULL, KL_ERR_NO_MEMORY);
    for (size_t got = 0; got < window;) {
        ssize_t r = pread(log->fd, buf + got, window - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            set_err(err, err_len, "%s: read: %s", log->path, r < 0 ? strerror(errno) : "short read");
            ret = KL_ERR_IO;
            goto exit;
        }
        got += (size_t)r;
    }
    if (buf[window - 1] != '\n') {
        /* A torn last line (crash or full disk mid-write). */
        size_t keep = window;
        while (keep > 0 && buf[keep - 1] != '\n')
            keep--;
        if (keep == 0 && off > 0) {
            set_err(err, err_len, "%s: %s", log->path, "the last line is longer than the maximum line length");
            ret = KL_ERR_AUDIT;
            goto exit;
        }
        uint64_t good = off + keep;
        if (!(flags & AUDIT_OPEN_REPAIR_TORN)) {
            char detail[200];
            snprintf(detail, sizeof(detail),
                     "the last line is incomplete (%" PRIu64 " bytes after offset %" PRIu64
                     ", a torn write); refusing to continue the chain: inspect it, then open with repair",
                     (uint64_t)st.st_size - good, good);
            set_err(err, err_len, "%s: %s", log->path, detail);
            ret = KL_ERR_AUDIT;
            goto exit;
        }
        /* Keep the torn bytes as evidence, then cut them off. */
        char *saved = NULL;
        size_t plen = strlen(log->path) + 48;
        KL_ENSURE((saved = malloc(plen)) != NULL, KL_ERR_NO_MEMORY);
        snprintf(saved, plen, "%s.torn.%lld", log->path, (long long)time(NULL));
        int sfd = open(saved, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int ok = sfd >= 0 && write_all(sfd, buf + keep, window - keep) == 0 && fsync(sfd) == 0;
        if (sfd >= 0)
            close(sfd);
        if (!ok || ftruncate(log->fd, (off_t)good) != 0 || fsync(log->fd) != 0) {
            set_err(err, err_len, "%s: repairing the torn last line: %s", log->path, strerror(errno));
            free(saved);
            ret = KL_ERR_IO;
            goto exit;
        }
        free(saved);
        log->size = good;
        if (good == 0)
            goto exit; /* nothing complete was ever written: a fresh log */
        window = keep;
    }
    /* The last complete line is buf[start, window - 1). */
    start = window - 1;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    if (start == 0 && off > 0) {
        set_err(err, err_len, "%s: %s", log->path, "the last line is longer than the maximum line length");
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    struct parsed_line p;
    if (check_line(&p, what, sizeof(what), buf + start, window - 1 - start) != 0) {
        set_err(err, err_len, "%s: the last line does not verify: %s", log->path, what);
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    log->seq = p.seq;
    log->durable_seq = p.seq;
    memcpy(log->head, p.hash, AUDIT_HASH_LEN);
exit:
    free(buf);
    return ret;
}

static int open_file(struct audit_log *log, int extra_flags, char *err, size_t err_len)
{
    int fd = open(log->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | extra_flags, 0600);
    if (fd < 0) {
        set_err(err, err_len, "%s: open: %s", log->path, strerror(errno));
        return KL_ERR_IO;
    }
    /* Two writers would fork the chain: one signer per log file. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        set_err(err, err_len, "%s: %s", log->path,
                errno == EWOULDBLOCK ? "in use by another process (flock)" : strerror(errno));
        close(fd);
        return KL_ERR_IO;
    }
    log->fd = fd;
    return 0;
}

int audit_open_ex(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms, unsigned flags,
                  char *err, size_t err_len)
{
    struct audit_log *log = NULL;
    int ret = 0, mutex_ok = 0;

    if (err != NULL && err_len > 0)
        err[0] = '\0';
    if (log_p == NULL || path == NULL || path[0] == '\0' ||
        (sync != AUDIT_SYNC_ALWAYS && sync != AUDIT_SYNC_GROUP && sync != AUDIT_SYNC_NONE) || group_ms > 60000) {
        set_err(err, err_len, "%s: %s", path != NULL ? path : "(null)", "invalid arguments");
        return KL_ERR_INVALID;
    }
    *log_p = NULL;
    if (sodium_init() < 0)
        return KL_ERR_CRYPTO;
    KL_ENSURE((log = calloc(1, sizeof(*log))) != NULL, KL_ERR_NO_MEMORY);
    log->fd = -1;
    KL_ENSURE((log->path = strdup(path)) != NULL, KL_ERR_NO_MEMORY);
    log->sync = sync;
    log->group_ms = group_ms != 0 ? group_ms : AUDIT_DEFAULT_GROUP_MS;
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->durable_cv, NULL);
    pthread_cond_init(&log->work_cv, NULL);
    mutex_ok = 1;
    KL_TRY(open_file(log, 0, err, err_len));
    KL_TRY(load_tail(log, flags, err, err_len));
    /* The file (and its name, if just created) must survive a crash before any record
     * that depends on it is acknowledged. */
    if (sync != AUDIT_SYNC_NONE && (fsync(log->fd) != 0 || fsync_dir_of(log->path) != 0)) {
        set_err(err, err_len, "%s: fsync: %s", log->path, strerror(errno));
        ret = KL_ERR_IO;
        goto exit;
    }
    if (sync == AUDIT_SYNC_GROUP) {
        if (pthread_create(&log->flusher, NULL, flusher_main, log) != 0) {
            set_err(err, err_len, "%s: %s", log->path, "cannot start the flusher thread");
            ret = KL_ERR_NO_MEMORY;
            goto exit;
        }
        log->has_flusher = 1;
    }
    *log_p = log;
    log = NULL;
exit:
    if (log != NULL) {
        if (log->fd >= 0)
            close(log->fd);
        if (mutex_ok) {
            pthread_mutex_destroy(&log->lock);
            pthread_cond_destroy(&log->durable_cv);
            pthread_cond_destroy(&log->work_cv);
        }
        free(log->path);
        free(log);
    }
    return ret;
}

int audit_open(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms)
{
    return audit_open_ex(log_p, path, sync, group_ms, 0, NULL, 0);
}

/* With the lock held: wait out a running fdatasync, then make everything durable. */
static int drain_locked(struct audit_log *log)
{
    while (log->syncing)
        pthread_cond_wait(&log->durable_cv, &log->lock);
    if (log->failed)
        return KL_ERR_AUDIT;
    log->sync_count++;
    if (fdatasync(log->fd) != 0) {
        log->failed = 1;
        pthread_cond_broadcast(&log->durable_cv);
        return KL_ERR_AUDIT;
    }
    log->durable_seq = log->seq;
    pthread_cond_broadcast(&log->durable_cv);
    return 0;
}

int audit_rotate_ex(struct audit_log *log, char *rotated_name, size_t rotated_name_len)
{
    char *newpath = NULL;
    const char *base;
    int ret = 0, old_fd;
    size_t plen;

    if (log == NULL)
        return KL_ERR_INVALID;
    pthread_mutex_lock(&log->lock);
    KL_TRY(drain_locked(log));
    plen = strlen(log->path) + 40;
    KL_ENSURE((newpath = malloc(plen)) != NULL, KL_ERR_NO_MEMORY);
    /* path.<UTC time to the microsecond>Z: names sort in rotation order; never replace. */
    for (int tries = 0;; tries++) {
        struct timespec ts;
        struct tm tm;
        char stamp[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
        snprintf(newpath, plen, "%s.%s.%06ldZ", log->path, stamp, ts.tv_nsec / 1000);
        if (renameat2(AT_FDCWD, log->path, AT_FDCWD, newpath, RENAME_NOREPLACE) == 0)
            break;
        if (errno == EINVAL && tries == 0) {
            /* Filesystem without RENAME_NOREPLACE: link() never replaces either. */
            if (link(log->path, newpath) == 0) {
                if (unlink(log->path) == 0)
                    break;
                (void)unlink(newpath);
            }
        }
        if (errno != EEXIST || tries >= 5) {
            ret = KL_ERR_IO;
            goto exit;
        }
        usleep(2);
    }
    old_fd = log->fd;
    if (open_file(log, O_EXCL, NULL, 0) != 0) {
        /* Could not start the new file: keep writing nowhere rather than to a renamed one. */
        log->fd = old_fd;
        log->failed = 1;
        pthread_cond_broadcast(&log->durable_cv);
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    close(old_fd);
    log->size = 0;
    if (fsync_dir_of(log->path) != 0) {
        log->failed = 1;
        ret = KL_ERR_AUDIT;
        goto exit;
    }
    base = strrchr(newpath, '/');
    base = base != NULL ? base + 1 : newpath;
    struct audit_record rec = {
        .pid = getpid(), .uid = getuid(), .gid = getgid(), .op = "rotate", .status = "OK", .reason = NULL};
    KL_TRY(append_locked(log, &rec, base, NULL));
    if (log->sync != AUDIT_SYNC_NONE)
        KL_TRY(drain_locked(log));
    if (rotated_name != NULL && rotated_name_len > 0)
        snprintf(rotated_name, rotated_name_len, "%s", newpath);
exit:
    pthread_mutex_unlock(&log->lock);
    free(newpath);
    return ret;
}

int audit_rotate(struct audit_log *log)
{
    return audit_rotate_ex(log, NULL, 0);
}

void audit_head(struct audit_log *log, uint8_t head[AUDIT_HASH_LEN], uint64_t *seq_p)
{
    pthread_mutex_lock(&log->lock);
    if (head != NULL)
        memcpy(head, log->head, AUDIT_HASH_LEN);
    if (seq_p != NULL)
        *seq_p = log->seq;
    pthread_mutex_unlock(&log->lock);
}

uint64_t audit_size(struct audit_log *log)
{
    uint64_t n;
    pthread_mutex_lock(&log->lock);
    n = log->size;
    pthread_mutex_unlock(&log->lock);
    return n;
}

uint64_t audit_durable_seq(struct audit_log *log)
{
    uint64_t n;
    pthread_mutex_lock(&log->lock);
    n = log->durable_seq;
    pthread_mutex_unlock(&log->lock);
    return n;
}

uint64_t audit_sync_count(struct audit_log *log)
{
    uint64_t n;
    pthread_mutex_lock(&log->lock);
    n = log->sync_count;
    pthread_mutex_unlock(&log->lock);
    return n;
}

void audit_close(struct audit_log *log)
{
    if (log == NULL)
        return;
    pthread_mutex_lock(&log->lock);
    log->stop = 1;
    pthread_cond_broadcast(&log->work_cv);
    pthread_cond_broadcast(&log->durable_cv);
    pthread_mutex_unlock(&log->lock);
    if (log->has_flusher)
        pthread_join(log->flusher, NULL);
    pthread_mutex_lock(&log->lock);
    if (!log->failed)
        (void)drain_locked(log);
    pthread_mutex_unlock(&log->lock);
    close(log->fd);
    pthread_mutex_destroy(&log->lock);
    pthread_cond_destroy(&log->durable_cv);
    pthread_cond_destroy(&log->work_cv);
    free(log->line.base);
    free(log->path);
    free(log);
}
