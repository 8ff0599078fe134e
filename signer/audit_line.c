/*
 * audit_line.c - format one audit record line, and parse and check one line (audit_line.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "audit_line.h"
#include "crypto.h"
#include "tls_ids.h"

/* `,"hash":"` + 64 hex digits + `"}` */
#define HASH_TAIL_LEN (9 + 2 * AUDIT_HASH_LEN + 2)
#define MAX_MEMBERS 40

static const char hexdigits[] = "0123456789abcdef";

/* ------------------------------------------------------------------ formatter */

/* The line being built: the first error sticks and every later put is a no-op, so the
 * formatter reads as the line it writes and checks once at the end. */
struct line_w {
    struct kl_buf *b;
    int err;
};

static void w_put(struct line_w *w, const char *s, size_t n)
{
    if (w->err == 0)
        w->err = kl_buf_append(w->b, s, n);
}

static void w_str(struct line_w *w, const char *s)
{
    w_put(w, s, strlen(s));
}

/* Decimal digits of v, written backwards from end; returns where they start. By hand
 * (issue 15): snprintf was a fifth of the signer's own instructions per record. */
static char *u64_digits(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

static void w_u64(struct line_w *w, uint64_t v)
{
    char tmp[24], *p = u64_digits(tmp + sizeof(tmp), v);
    w_put(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

static void w_i64(struct line_w *w, int64_t v)
{
    char tmp[24];
    /* The magnitude as unsigned: -INT64_MIN does not fit an int64_t. */
    char *p = u64_digits(tmp + sizeof(tmp), v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--p = '-';
    w_put(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

static void w_hex(struct line_w *w, const uint8_t *p, size_t n)
{
    if (w->err == 0 && n > AUDIT_MAX_LINE / 2)
        w->err = KL_ERR_OVERFLOW;
    if (w->err == 0)
        w->err = kl_buf_reserve(w->b, 2 * n);
    if (w->err != 0)
        return;
    char *o = (char *)w->b->base + w->b->len;
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = hexdigits[p[i] >> 4];
        o[2 * i + 1] = hexdigits[p[i] & 15];
    }
    w->b->len += 2 * n;
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

/* A JSON string member value, or null for NULL. A value over AUDIT_MAX_FIELD bytes is cut
 * there and marked with its full length, so that no peer can make a record large. */
static void w_jstr(struct line_w *w, const char *s)
{
    char mark[48];
    size_t mark_len = 0;

    if (s == NULL) {
        w_str(w, "null");
        return;
    }
    size_t len = strnlen(s, AUDIT_MAX_FIELD + 1);
    if (len > AUDIT_MAX_FIELD) {
        mark_len = (size_t)snprintf(mark, sizeof(mark), "...(%zu bytes)", strlen(s));
        len = AUDIT_MAX_FIELD;
    }
    if (w->err != 0)
        return;
    size_t need = audit_json_escape(NULL, 0, s, len);
    /* Both quotes; the escape's NUL lands where the closing quote goes. */
    if ((w->err = kl_buf_reserve(w->b, need + mark_len + 2)) != 0)
        return;
    char *o = (char *)w->b->base + w->b->len;
    o[0] = '"';
    /* No byte needed escaping when the lengths agree: the bytes themselves (the usual
     * case: key names, addresses, status words), without a second pass. */
    if (need == len)
        memcpy(o + 1, s, len);
    else
        audit_json_escape(o + 1, need + 1, s, len);
    memcpy(o + 1 + need, mark, mark_len);
    o[need + mark_len + 1] = '"';
    w->b->len += need + mark_len + 2;
}

static void w_key(struct line_w *w, const char *key)
{
    /* Keys are our own constants: plain ASCII, nothing to escape. */
    w_str(w, w->b->len > 1 ? ",\"" : "\"");
    w_str(w, key);
    w_str(w, "\":");
}

/* The ticket_keys members (audit_line.h: struct audit_ticket_keys); never a secret. */
static void w_tickets(struct line_w *w, const struct audit_ticket_keys *t)
{
    w_key(w, "ticket_scope");
    w_jstr(w, t->scope);
    w_key(w, "ticket_rotation");
    w_u64(w, t->rotation);
    w_key(w, "ticket_epochs");
    if (t->epochs == NULL) {
        w_str(w, "null");
    } else {
        w_str(w, "\"");
        for (size_t i = 0; i < t->n; i++) {
            if (i > 0) {
                w_str(w, ",");
            }
            w_u64(w, t->epochs[i]);
        }
        w_str(w, "\"");
    }
    w_key(w, "ticket_key_ids");
    if (t->key_ids == NULL || t->epochs == NULL) {
        w_str(w, "null");
        return;
    }
    w_str(w, "\"");
    for (size_t i = 0; i < t->n; i++) {
        if (i > 0) {
            w_str(w, ",");
        }
        w_hex(w, t->key_ids[i], AUDIT_TICKET_KEY_ID_LEN);
    }
    w_str(w, "\"");
}

void audit_format_time(char out[40], const struct timespec *ts)
{
    /* The seconds part is the same for every record of one second: formatted once per
     * second per thread (issue 15: gmtime_r, strftime and snprintf were a tenth of the
     * signer's own instructions per record). */
    static __thread time_t cached_secs = (time_t)-1;
    static __thread char cached[32];
    static __thread size_t cached_len;
    time_t secs = ts->tv_sec;
    long usec = ts->tv_nsec / 1000;
    if (usec < 0 || usec > 999999)
        usec = 0;
    if (secs != cached_secs || cached_len == 0) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_secs = secs;
    }
    memcpy(out, cached, cached_len);
    out[cached_len] = '.';
    for (int i = 6; i >= 1; i--) {
        out[cached_len + (size_t)i] = (char)('0' + usec % 10);
        usec /= 10;
    }
    memcpy(out + cached_len + 7, "Z", 2);
}

int audit_line_format(struct kl_buf *out, uint8_t hash_out[AUDIT_HASH_LEN], const struct audit_record *rec,
                      uint64_t seq, const uint8_t prev[AUDIT_HASH_LEN], const char *rotated_from)
{
    struct line_w w = {out, 0};
    const struct tls_scheme_info *si;
    char tbuf[40];
    struct timespec now;

    if (out == NULL || hash_out == NULL || rec == NULL || prev == NULL)
        return KL_ERR_INVALID;
    now = rec->time;
    if (now.tv_sec == 0 && now.tv_nsec == 0)
        clock_gettime(CLOCK_REALTIME, &now);
    audit_format_time(tbuf, &now);
    si = tls_scheme_by_id(rec->scheme);
    kl_buf_reset_nowipe(out);
    w_str(&w, "{");
    w_key(&w, "v");
    w_u64(&w, AUDIT_FORMAT_VERSION);
    w_key(&w, "seq");
    w_u64(&w, seq);
    w_key(&w, "time");
    w_jstr(&w, tbuf);
    w_key(&w, "pid");
    w_i64(&w, (int64_t)rec->pid);
    w_key(&w, "uid");
    w_u64(&w, (uint64_t)rec->uid);
    w_key(&w, "gid");
    w_u64(&w, (uint64_t)rec->gid);
    w_key(&w, "op");
    w_jstr(&w, rec->op);
    w_key(&w, "key");
    w_jstr(&w, rec->key);
    w_key(&w, "scheme");
    w_jstr(&w, si != NULL ? si->name : NULL);
    w_key(&w, "scheme_code");
    w_u64(&w, rec->scheme);
    w_key(&w, "context");
    w_i64(&w, rec->context);
    w_key(&w, "transcript_hash");
    if (rec->hash != NULL) {
        /* Bounded too: a hash longer than any real one is cut and marked. */
        w_str(&w, "\"");
        w_hex(&w, rec->hash, rec->hash_len > AUDIT_MAX_FIELD_HASH ? AUDIT_MAX_FIELD_HASH : rec->hash_len);
        if (rec->hash_len > AUDIT_MAX_FIELD_HASH)
            w_str(&w, "...");
        w_str(&w, "\"");
    } else {
        w_str(&w, "null");
    }
    w_key(&w, "server_name");
    w_jstr(&w, rec->server_name);
    w_key(&w, "client_address");
    w_jstr(&w, rec->client_address);
    w_key(&w, "connection_id");
    w_u64(&w, rec->connection_id);
    w_key(&w, "request_id");
    w_u64(&w, rec->request_id);
    w_key(&w, "status");
    w_jstr(&w, rec->status);
    w_key(&w, "reason");
    w_jstr(&w, rec->reason);
    w_key(&w, "latency_us");
    w_u64(&w, rec->latency_us);
    if (rec->tickets != NULL) {
        w_tickets(&w, rec->tickets);
    }
    if (rec->suppressed != 0) {
        w_key(&w, "suppressed");
        w_u64(&w, rec->suppressed);
    }
    if (rec->sig_sha256 != NULL) {
        w_key(&w, "sig_sha256");
        w_str(&w, "\"");
        w_hex(&w, rec->sig_sha256, AUDIT_HASH_LEN);
        w_str(&w, "\"");
    }
    if (rec->spki_sha256 != NULL) {
        w_key(&w, "spki_sha256");
        w_str(&w, "\"");
        w_hex(&w, rec->spki_sha256, AUDIT_HASH_LEN);
        w_str(&w, "\"");
    }
    if (rec->config_sha256 != NULL) {
        w_key(&w, "config_sha256");
        w_str(&w, "\"");
        w_hex(&w, rec->config_sha256, AUDIT_HASH_LEN);
        w_str(&w, "\"");
    }
    if (rec->checkpoint != NULL) {
        const struct audit_checkpoint *cp = rec->checkpoint;
        w_key(&w, "host");
        w_jstr(&w, cp->host);
        w_key(&w, "count");
        w_u64(&w, cp->count);
        w_key(&w, "interval");
        w_u64(&w, cp->interval);
        w_key(&w, "sig");
        if (cp->sig != NULL && cp->sig_len > 0 && cp->sig_len <= AUDIT_MAX_SIG) {
            w_str(&w, "\"");
            w_hex(&w, cp->sig, cp->sig_len);
            w_str(&w, "\"");
        } else if (cp->sig != NULL) {
            w.err = KL_ERR_INVALID;
        } else {
            w_str(&w, "null");
        }
    }
    if (rotated_from != NULL) {
        w_key(&w, "rotated_from");
        w_jstr(&w, rotated_from);
    }
    w_key(&w, "prev");
    w_str(&w, "\"");
    w_hex(&w, prev, AUDIT_HASH_LEN);
    w_str(&w, "\"");
    /* Reserve the tail and the newline now so that the hash covers a line sure to fit;
     * the line, newline included, stays within AUDIT_MAX_LINE. */
    if (w.err == 0 && out->len > AUDIT_MAX_LINE - (HASH_TAIL_LEN + 1))
        w.err = KL_ERR_OVERFLOW;
    if (w.err == 0)
        w.err = kl_buf_reserve(out, HASH_TAIL_LEN + 1);
    if (w.err != 0)
        return w.err;
    crypto_sha256(hash_out, out->base, out->len);
    w_str(&w, ",\"hash\":\"");
    w_hex(&w, hash_out, AUDIT_HASH_LEN);
    w_str(&w, "\"}\n");
    return w.err;
}

size_t audit_checkpoint_statement(char *out, size_t out_cap, const char *host_json, uint64_t seq,
                                  const uint8_t prev[AUDIT_HASH_LEN], uint64_t count, uint64_t interval,
                                  const char *time_json, const char *reason_json)
{
    char hex[2 * AUDIT_HASH_LEN + 1];
    int n;

    if (out == NULL || out_cap == 0 || host_json == NULL || prev == NULL || time_json == NULL || reason_json == NULL)
        return 0;
    audit_hex_hash(hex, prev);
    /* Line-oriented and prefixed with its own name, so that a signature over it can never
     * be taken for a signature over anything else the audit key might see. */
    n = snprintf(out, out_cap,
                 "keyless-audit-checkpoint/1\nhost=%s\nseq=%" PRIu64 "\nprev=%s\ncount=%" PRIu64 "\ninterval=%" PRIu64
                 "\ntime=%s\nreason=%s\n",
                 host_json, seq, hex, count, interval, time_json, reason_json);
    if (n < 0 || (size_t)n >= out_cap) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

/* ------------------------------------------------------------------ parser and checker */

enum jtype { J_STRING, J_INT, J_NULL };

struct member {
    const char *key;
    size_t key_len;
    enum jtype type;
    const char *val; /* string: the raw (escaped) inside of the quotes; int: the digits */
    size_t val_len;
};

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase is not canonical */
}

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
                return KL_ERR_DECODE;
            char e = s[*i + 1];
            if (e == '"' || e == '\\') {
                *i += 2;
                continue;
            }
            if (e != 'u' || *i + 6 > len || s[*i + 2] != '0' || s[*i + 3] != '0')
                return KL_ERR_DECODE;
            int h1 = hex_value(s[*i + 4]), h2 = hex_value(s[*i + 5]);
            if (h1 < 0 || h2 < 0)
                return KL_ERR_DECODE;
            unsigned v = (unsigned)(h1 << 4 | h2);
            if (v >= 0x20 && v < 0x7f)
                return KL_ERR_DECODE; /* not canonical: this byte is written as itself */
            *i += 6;
            continue;
        }
        (*i)++;
    }
    return KL_ERR_DECODE;
}

static int key_is(const struct member *m, const char *key)
{
    return m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0;
}

int audit_hex_decode_hash(uint8_t out[AUDIT_HASH_LEN], const char *s, size_t len)
{
    if (out == NULL || s == NULL || len != 2 * AUDIT_HASH_LEN)
        return KL_ERR_DECODE;
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
        int a = hex_value(s[2 * i]), c = hex_value(s[2 * i + 1]);
        if (a < 0 || c < 0)
            return KL_ERR_DECODE;
        out[i] = (uint8_t)(a << 4 | c);
    }
    return 0;
}

void audit_hex_hash(char out[2 * AUDIT_HASH_LEN + 1], const uint8_t hash[AUDIT_HASH_LEN])
{
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++) {
        out[2 * i] = hexdigits[hash[i] >> 4];
        out[2 * i + 1] = hexdigits[hash[i] & 15];
    }
    out[2 * AUDIT_HASH_LEN] = '\0';
}

#define BAD(...)                                                                                                       \
    do {                                                                                                               \
        snprintf(what, what_len, __VA_ARGS__);                                                                         \
        return KL_ERR_AUDIT;                                                                                           \
    } while (0)

/* Split s into members (canonical flat JSON object, unique keys); *n_p receives the count. */
static int parse_object(struct member m[MAX_MEMBERS], size_t *n_p, char *what, size_t what_len, const char *s,
                        size_t len)
{
    size_t n = 0, i;

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
    *n_p = n;
    return 0;
}

/* A non-negative integer member into *v. */
static int member_u64(const struct member *m, uint64_t *v)
{
    uint64_t x = 0;
    if (m->type != J_INT || m->val[0] == '-' || m->val_len > 20)
        return KL_ERR_DECODE;
    for (size_t j = 0; j < m->val_len; j++) {
        unsigned dgt = (unsigned)(m->val[j] - '0');
        if (x > (UINT64_MAX - dgt) / 10)
            return KL_ERR_DECODE;
        x = x * 10 + dgt;
    }
    *v = x;
    return 0;
}

static const struct member *find_member(const struct member *m, size_t n, const char *key)
{
    for (size_t k = 0; k < n; k++) {
        if (key_is(&m[k], key))
            return &m[k];
    }
    return NULL;
}

/* A string member's raw (escaped) value as a NUL-terminated copy in out. */
static int member_str(const struct member *m, char *out, size_t cap)
{
    if (m == NULL || m->type != J_STRING || m->val_len >= cap)
        return KL_ERR_DECODE;
    memcpy(out, m->val, m->val_len);
    out[m->val_len] = '\0';
    return 0;
}

/* The op "checkpoint" members: host, count, interval, sig, and the statement they sign. */
static int check_checkpoint(struct audit_line_info *info, char *what, size_t what_len, const struct member *m, size_t n)
{
    const struct member *c = find_member(m, n, "count"), *iv = find_member(m, n, "interval"),
                        *sig = find_member(m, n, "sig");
    char host[8 * AUDIT_MAX_FIELD], tm[64], reason[8 * AUDIT_MAX_FIELD];

    if (member_str(find_member(m, n, "host"), host, sizeof(host)) != 0)
        BAD("checkpoint without a \"host\" string");
    if (c == NULL || member_u64(c, &info->cp_count) != 0)
        BAD("checkpoint without a \"count\"");
    if (iv == NULL || member_u64(iv, &info->cp_interval) != 0)
        BAD("checkpoint without an \"interval\"");
    if (member_str(find_member(m, n, "time"), tm, sizeof(tm)) != 0)
        BAD("checkpoint without a \"time\" string");
    if (member_str(find_member(m, n, "reason"), reason, sizeof(reason)) != 0)
        BAD("checkpoint without a \"reason\" string");
    if (sig == NULL)
        BAD("checkpoint without a \"sig\"");
    info->cp_signed = 0;
    info->cp_sig_len = 0;
    if (sig->type == J_STRING) {
        if (sig->val_len == 0 || sig->val_len % 2 != 0 || sig->val_len / 2 > AUDIT_MAX_SIG)
            BAD("checkpoint \"sig\" is not hex of a signature");
        for (size_t j = 0; j < sig->val_len / 2; j++) {
            int a = hex_value(sig->val[2 * j]), b = hex_value(sig->val[2 * j + 1]);
            if (a < 0 || b < 0)
                BAD("checkpoint \"sig\" is not lowercase hex");
            info->cp_sig[j] = (uint8_t)(a << 4 | b);
        }
        info->cp_sig_len = sig->val_len / 2;
        info->cp_signed = 1;
    } else if (sig->type != J_NULL) {
        BAD("checkpoint \"sig\" is neither a string nor null");
    }
    info->cp_statement_len = audit_checkpoint_statement(info->cp_statement, sizeof(info->cp_statement), host, info->seq,
                                                        info->prev, info->cp_count, info->cp_interval, tm, reason);
    if (info->cp_statement_len == 0)
        BAD("checkpoint statement too long");
    info->is_checkpoint = 1;
    return 0;
}

int audit_line_check(struct audit_line_info *info, char *what, size_t what_len, const char *s, size_t len)
{
    struct member m[MAX_MEMBERS];
    size_t n = 0;
    int have_v = 0, have_seq = 0, ret;
    uint8_t h[AUDIT_HASH_LEN];

    if (len > AUDIT_MAX_LINE)
        BAD("line longer than %d bytes", AUDIT_MAX_LINE);
    for (size_t k = 0; k < len; k++) {
        if ((unsigned char)s[k] < 0x20 || (unsigned char)s[k] > 0x7e)
            BAD("byte 0x%02x at column %zu is not printable ASCII", (unsigned char)s[k], k + 1);
    }
    if ((ret = parse_object(m, &n, what, what_len, s, len)) != 0)
        return ret;
    if (n < 2 || !key_is(&m[n - 2], "prev") || !key_is(&m[n - 1], "hash"))
        BAD("the last two members are not \"prev\" and \"hash\"");
    info->has_rotated_from = 0;
    for (size_t k = 0; k < n; k++) {
        if (key_is(&m[k], "v")) {
            if (m[k].type != J_INT || m[k].val_len != 1 || m[k].val[0] != '0' + AUDIT_FORMAT_VERSION)
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
            info->seq = v;
            have_seq = 1;
        } else if (key_is(&m[k], "prev") || key_is(&m[k], "hash")) {
            if (m[k].type != J_STRING ||
                audit_hex_decode_hash(key_is(&m[k], "prev") ? info->prev : info->hash, m[k].val, m[k].val_len) != 0)
                BAD("\"%s\" is not 64 lowercase hex digits", key_is(&m[k], "prev") ? "prev" : "hash");
        } else if (key_is(&m[k], "rotated_from")) {
            if (m[k].type != J_STRING)
                BAD("rotated_from is not a string");
            info->has_rotated_from = 1;
        }
    }
    if (!have_v)
        BAD("no format version \"v\"");
    if (!have_seq)
        BAD("no \"seq\"");
    /* The canonical form ends exactly in ,"hash":"<64 hex>"} (checked above). */
    crypto_sha256(h, s, len - HASH_TAIL_LEN);
    if (!crypto_equal(h, info->hash, AUDIT_HASH_LEN))
        BAD("hash does not match the line's content (line edited)");
    info->is_start = 0;
    info->is_checkpoint = 0;
    const struct member *op = find_member(m, n, "op");
    if (op != NULL && op->type == J_STRING && op->val_len == 5 && memcmp(op->val, "start", 5) == 0)
        info->is_start = 1;
    if (op != NULL && op->type == J_STRING && op->val_len == 10 && memcmp(op->val, "checkpoint", 10) == 0 &&
        (ret = check_checkpoint(info, what, what_len, m, n)) != 0)
        return ret;
    return 0;
}
