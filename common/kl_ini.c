/*
 * kl_ini.c - the typed INI layer (contract in kl_ini.h).
 *
 * inih calls handler() once per "key = value" line (and once per continuation line);
 * the system build does not call it for section headers and does not pass line
 * numbers. reader() therefore counts lines and notes where a header starts, mirroring
 * inih's own test for one (first non-blank '[' that is not a continuation line), so
 * that a section's errors can name its header line and two [key a] headers in a row
 * are two sections, not one.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ini.h>
#include "kl_ini.h"

/* One opened section: a fixed section (opened once however often its header repeats) or one [PREFIX NAME]. */
struct inst {
    const struct kl_ini_section *sec;
    void *obj;
    char *name;          /* NAME of a named section; NULL for a fixed one */
    unsigned line;       /* its (first) header line; 0 for keys before any header */
    unsigned *key_lines; /* per key of sec: the line it was first set on, 0 = not set */
};

struct kl_ini {
    const struct kl_ini_spec *spec;
    void *user;
    const char *path;
    FILE *f;
    unsigned line;        /* lines read so far: the line inih is looking at */
    unsigned header_line; /* the last section header read */
    int key_since_header; /* inih's prev_name: an indented line is then a continuation */
    int entered;          /* a key has been seen: raw_section is meaningful */
    /* the section the last key was in */
    char raw_section[256];
    unsigned raw_header_line;
    struct inst *cur;    /* NULL: unknown section */
    char sect[300];      /* cur's name for messages: "signer", "key a" */
    unsigned sect_line;  /* cur's header line */
    const char *cur_key; /* the key being handled, NULL in open() */
    struct inst *insts;
    size_t n_insts;
    /* the first error */
    char *err;
    size_t err_len;
    int ret;
    unsigned err_line;
};

static void vfail_at(struct kl_ini *ini, unsigned line, const char *section, const char *key, const char *fmt,
                     va_list ap) __attribute__((format(printf, 5, 0)));

static void vfail_at(struct kl_ini *ini, unsigned line, const char *section, const char *key, const char *fmt,
                     va_list ap)
{
    char why[400];
    char where[32] = "";
    if (ini->ret != 0) {
        return; /* keep the first error: later ones are often its consequences */
    }
    ini->ret = KL_ERR_CONFIG;
    ini->err_line = line;
    vsnprintf(why, sizeof(why), fmt, ap);
    if (line != 0) {
        snprintf(where, sizeof(where), ":%u", line);
    }
    if (section == NULL) {
        snprintf(ini->err, ini->err_len, "%s%s: %s", ini->path, where, why);
    } else if (key == NULL) {
        snprintf(ini->err, ini->err_len, "%s%s: [%s]: %s", ini->path, where, section, why);
    } else {
        snprintf(ini->err, ini->err_len, "%s%s: [%s] %s: %s", ini->path, where, section, key, why);
    }
}

int kl_ini_fail_at(struct kl_ini *ini, unsigned line, const char *section, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(ini, line, section, key, fmt, ap);
    va_end(ap);
    return KL_ERR_CONFIG;
}

int kl_ini_fail(struct kl_ini *ini, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (ini->cur_key != NULL) {
        vfail_at(ini, ini->line, ini->sect, ini->cur_key, fmt, ap);
    } else {
        vfail_at(ini, ini->sect_line != 0 ? ini->sect_line : ini->line, ini->sect, NULL, fmt, ap);
    }
    va_end(ap);
    return KL_ERR_CONFIG;
}

static int fail_no_memory(struct kl_ini *ini)
{
    if (ini->ret == 0) {
        ini->ret = KL_ERR_NO_MEMORY;
        ini->err_line = ini->line;
        snprintf(ini->err, ini->err_len, "%s: out of memory", ini->path);
    }
    return KL_ERR_NO_MEMORY;
}

unsigned kl_ini_line(const struct kl_ini *ini)
{
    return ini->line;
}

int kl_ini_path(struct kl_ini *ini, char **out_p, const char *value)
{
    const char *slash = strrchr(ini->path, '/');
    char *out;
    if (value[0] == '/' || slash == NULL) {
        out = strdup(value);
    } else {
        size_t dir_len = (size_t)(slash - ini->path);
        size_t n = dir_len + 1 + strlen(value) + 1;
        out = malloc(n);
        if (out != NULL) {
            snprintf(out, n, "%.*s/%s", (int)dir_len, ini->path, value);
        }
    }
    if (out == NULL) {
        return fail_no_memory(ini);
    }
    *out_p = out;
    return 0;
}

int kl_ini_parse_uint(uint64_t *out, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    if (!isdigit((unsigned char)s[0])) {
        return KL_ERR_CONFIG; /* strtoull would take blanks, a sign ("-1" wraps) */
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return KL_ERR_CONFIG;
    }
    *out = v;
    return 0;
}

int kl_ini_parse_number(double *out, const char *s, double min, double max)
{
    char *end;
    /* strtod also takes blanks, signs, "inf", "nan" and hex: none of them is meant here. */
    if (!(isdigit((unsigned char)s[0]) || (s[0] == '.' && isdigit((unsigned char)s[1]))) || strpbrk(s, "xX") != NULL) {
        return KL_ERR_CONFIG;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < min || v > max) {
        return KL_ERR_CONFIG;
    }
    *out = v;
    return 0;
}

int kl_ini_parse_duration_ms(uint64_t *out_ms, const char *s, uint32_t unit_ms, uint64_t min_ms, uint64_t max_ms)
{
    static const struct {
        const char *suffix;
        double ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    const char *p = s;
    char num[32];
    double x, ms;
    while (isdigit((unsigned char)*p)) {
        p++;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
        }
    }
    /* At least one digit, and a number short enough to be read exactly. */
    if (p == s || (p == s + 1 && s[0] == '.') || (size_t)(p - s) >= sizeof(num)) {
        return KL_ERR_CONFIG;
    }
    memcpy(num, s, (size_t)(p - s));
    num[p - s] = '\0';
    x = strtod(num, NULL);
    if (*p == '\0') {
        ms = x * unit_ms;
    } else {
        size_t i = 0;
        while (i < sizeof(units) / sizeof(units[0]) && strcmp(p, units[i].suffix) != 0) {
            i++;
        }
        if (i == sizeof(units) / sizeof(units[0])) {
            return KL_ERR_CONFIG;
        }
        ms = x * units[i].ms;
    }
    if (!isfinite(ms) || ms < (double)min_ms || ms > (double)max_ms) {
        return KL_ERR_CONFIG;
    }
    *out_ms = (uint64_t)ms;
    if (*out_ms < min_ms) {
        return KL_ERR_CONFIG; /* 0.5ms when 1ms is the least: rounded down below the minimum */
    }
    return 0;
}

int kl_ini_parse_bool(int *out, const char *s)
{
    static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return KL_ERR_CONFIG;
}

/* "10ms", "3600s": how bounds are printed (seconds when whole). */
static void format_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms == 0) {
        snprintf(buf, len, "0");
    } else if (ms % 1000 == 0) {
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    } else {
        snprintf(buf, len, "%llums", (unsigned long long)ms);
    }
}

static const char *unit_name(uint32_t unit_ms)
{
    switch (unit_ms) {
    case 1:
        return "milliseconds";
    case 1000:
        return "seconds";
    case 60000:
        return "minutes";
    default:
        return "hours";
    }
}

static void store_uint(void *field, size_t size, uint64_t v)
{
    switch (size) {
    case 1: {
        uint8_t x = (uint8_t)v;
        memcpy(field, &x, 1);
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)v;
        memcpy(field, &x, 2);
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, 4);
        break;
    }
    default:
        memcpy(field, &v, 8); /* check_spec() allowed only 1, 2, 4 and 8 */
        break;
    }
}

static void store_line(void *obj, size_t offset, unsigned line)
{
    /* int and unsigned fields alike: lines are small and positive. */
    memcpy((char *)obj + offset, &line, sizeof(line));
}

/* names (NULL-terminated) joined as "a, b or c". */
static void join_names(char *buf, size_t len, const char *const *names)
{
    size_t n = 0, off = 0;
    while (names[n] != NULL) {
        n++;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == n ? " or " : ", ");
        int w = snprintf(buf + off, len - off, "%s%s", sep, names[i]);
        if (w < 0) {
            break;
        }
        off += (size_t)w;
    }
}

static int set_list(struct kl_ini *ini, const struct kl_ini_key *k, void *obj, const char *value)
{
    int ret = 0;
    size_t n = 0;
    char *save = NULL;
    char *copy = strdup(value);
    KL_ENSURE(copy != NULL, fail_no_memory(ini));
    if (k->reset != NULL) {
        KL_TRY(k->reset(ini, obj));
    }
    for (char *tok = strtok_r(copy, ", \t", &save); tok != NULL; tok = strtok_r(NULL, ", \t", &save)) {
        KL_TRY(k->set(ini, obj, tok));
        n++;
    }
    if (n == 0 && !(k->flags & KL_INI_EMPTY_OK)) {
        ret = kl_ini_fail(ini, "empty list");
    }
exit:
    free(copy);
    return ret;
}

static int set_value(struct kl_ini *ini, const struct kl_ini_key *k, void *obj, const char *value)
{
    char *field = (char *)obj + k->offset;
    char hint[160] = "";
    uint64_t u;
    double d;
    int b;
    if (k->hint != NULL) {
        snprintf(hint, sizeof(hint), " (%s)", k->hint);
    }
    switch (k->type) {
    case KL_INI_STRING:
    case KL_INI_PATH: {
        char *s = NULL, *old;
        if (value[0] != '\0') {
            if (k->type == KL_INI_PATH) {
                int ret = kl_ini_path(ini, &s, value);
                if (ret != 0) {
                    return ret;
                }
            } else if ((s = strdup(value)) == NULL) {
                return fail_no_memory(ini);
            }
        }
        memcpy(&old, field, sizeof(old));
        free(old);
        memcpy(field, &s, sizeof(s));
        return 0;
    }
    case KL_INI_UINT:
        if (kl_ini_parse_uint(&u, value, k->min, k->max) != 0) {
            return kl_ini_fail(ini, "'%s' is not %llu..%llu%s", value, (unsigned long long)k->min,
                               (unsigned long long)k->max, hint);
        }
        store_uint(field, k->size, u);
        return 0;
    case KL_INI_NUMBER:
        if (kl_ini_parse_number(&d, value, (double)k->min, (double)k->max) != 0) {
            return kl_ini_fail(ini, "'%s' is not a number from %llu to %llu%s", value, (unsigned long long)k->min,
                               (unsigned long long)k->max, hint);
        }
        memcpy(field, &d, sizeof(d));
        return 0;
    case KL_INI_DURATION:
        if (kl_ini_parse_duration_ms(&u, value, k->unit_ms, k->min, k->max) != 0) {
            char lo[32], hi[32];
            format_ms(lo, sizeof(lo), k->min);
            format_ms(hi, sizeof(hi), k->max);
            return kl_ini_fail(ini, "'%s' is not a duration from %s to %s (500ms, 5s, 2m; a bare number is %s)", value,
                               lo, hi, unit_name(k->unit_ms));
        }
        store_uint(field, k->size, u);
        return 0;
    case KL_INI_BOOL:
        if (kl_ini_parse_bool(&b, value) != 0) {
            return kl_ini_fail(ini, "'%s' is not yes or no (true/false, on/off and 1/0 work too)", value);
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    case KL_INI_ENUM: {
        char names[300];
        for (int i = 0; k->names[i] != NULL; i++) {
            if (strcmp(value, k->names[i]) == 0) {
                int v = k->values != NULL ? k->values[i] : i;
                memcpy(field, &v, sizeof(v));
                return 0;
            }
        }
        join_names(names, sizeof(names), k->names);
        return kl_ini_fail(ini, "'%s' is not %s", value, names);
    }
    case KL_INI_LIST:
        return set_list(ini, k, obj, value);
    case KL_INI_CUSTOM:
    default:
        return k->set(ini, obj, value);
    }
}

/* The expected sections, for "unknown section": "[signer], [hsm] or [key NAME]". */
static void expected_sections(const struct kl_ini_spec *spec, char *buf, size_t len)
{
    const char *names[32];
    char store[32][80];
    size_t n = 0;
    for (size_t i = 0; i < spec->n_sections && n < 31; i++, n++) {
        const struct kl_ini_section *s = &spec->sections[i];
        snprintf(store[n], sizeof(store[n]), (s->flags & KL_INI_NAMED) ? "[%s NAME]" : "[%s]", s->name);
        names[n] = store[n];
    }
    names[n] = NULL;
    join_names(buf, len, names);
}

/* NAME of "[prefix NAME]", "[prefix:NAME]" or "[prefix "NAME"]" into name; 0 if section is not one. */
static int named_match(const char *prefix, const char *section, char *name, size_t len)
{
    size_t pl = strlen(prefix);
    if (strncmp(section, prefix, pl) != 0 || (section[pl] != ' ' && section[pl] != '\t' && section[pl] != ':')) {
        return 0;
    }
    const char *p = section + pl + 1;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    snprintf(name, len, "%s", p);
    size_t n = strlen(name);
    while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t')) {
        name[--n] = '\0';
    }
    if (n >= 2 && name[0] == '"' && name[n - 1] == '"') {
        memmove(name, name + 1, n - 2);
        name[n - 2] = '\0';
    }
    return 1;
}

static struct inst *new_inst(struct kl_ini *ini, const struct kl_ini_section *sec, void *obj, const char *name)
{
    struct inst *grown = realloc(ini->insts, (ini->n_insts + 1) * sizeof(*grown));
    if (grown == NULL) {
        fail_no_memory(ini);
        return NULL;
    }
    ini->insts = grown;
    struct inst *in = &ini->insts[ini->n_insts];
    memset(in, 0, sizeof(*in));
    in->sec = sec;
    in->obj = obj;
    in->line = ini->header_line;
    in->key_lines = calloc(sec->n_keys + 1, sizeof(*in->key_lines));
    in->name = name != NULL ? strdup(name) : NULL;
    if (in->key_lines == NULL || (name != NULL && in->name == NULL)) {
        free(in->key_lines);
        free(in->name);
        fail_no_memory(ini);
        return NULL;
    }
    ini->n_insts++;
    if (sec->flags & KL_INI_LINE) {
        store_line(obj, sec->line_offset, in->line);
    }
    return in;
}

/* The first key of a section (or of a new header of it): find or make what it writes into. */
static void enter_section(struct kl_ini *ini, const char *section)
{
    const struct kl_ini_spec *spec = ini->spec;
    char name[256];
    snprintf(ini->raw_section, sizeof(ini->raw_section), "%s", section);
    ini->raw_header_line = ini->header_line;
    ini->cur = NULL;
    ini->cur_key = NULL;
    snprintf(ini->sect, sizeof(ini->sect), "%s", section);
    ini->sect_line = ini->header_line;
    for (size_t i = 0; i < spec->n_sections; i++) {
        const struct kl_ini_section *sec = &spec->sections[i];
        if (!(sec->flags & KL_INI_NAMED)) {
            if (strcmp(section, sec->name) != 0) {
                continue;
            }
            for (size_t j = 0; j < ini->n_insts; j++) {
                if (ini->insts[j].sec == sec) {
                    ini->cur = &ini->insts[j]; /* [frontend] again further down: the same section */
                    return;
                }
            }
            ini->cur = new_inst(ini, sec, ini->user, NULL);
            return;
        }
        if (!named_match(sec->name, section, name, sizeof(name))) {
            continue;
        }
        snprintf(ini->sect, sizeof(ini->sect), "%s %s", sec->name, name);
        if (name[0] == '\0') {
            kl_ini_fail(ini, "a name is needed: [%s NAME]", sec->name);
            return;
        }
        for (size_t j = 0; j < ini->n_insts; j++) {
            if (ini->insts[j].sec == sec && strcmp(ini->insts[j].name, name) == 0) {
                kl_ini_fail(ini, "defined twice (first at line %u)", ini->insts[j].line);
                return;
            }
        }
        void *obj = sec->open(ini, ini->user, name);
        if (obj != NULL && ini->ret == 0) {
            ini->cur = new_inst(ini, sec, obj, name);
        }
        return;
    }
    if (ini->header_line == 0) {
        kl_ini_fail_at(ini, ini->line, NULL, NULL, "a key before any [section]");
        return;
    }
    char expected[300];
    expected_sections(spec, expected, sizeof(expected));
    kl_ini_fail(ini, "unknown section (expected %s)", expected);
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    struct kl_ini *ini = user;
    if (ini->ret != 0) {
        return 1; /* the reader stops at the next line */
    }
    ini->key_since_header = 1;
    if (!ini->entered || ini->raw_header_line != ini->header_line || strcmp(section, ini->raw_section) != 0) {
        ini->entered = 1;
        enter_section(ini, section);
        if (ini->ret != 0) {
            return 1;
        }
    }
    struct inst *in = ini->cur;
    const struct kl_ini_section *sec = in->sec;
    size_t i = 0;
    while (i < sec->n_keys && strcmp(sec->keys[i].name, key) != 0) {
        i++;
    }
    ini->cur_key = key;
    if (i == sec->n_keys) {
        kl_ini_fail(ini, "unknown key");
        return 1;
    }
    const struct kl_ini_key *k = &sec->keys[i];
    if (in->key_lines[i] != 0 && !(k->flags & KL_INI_MULTI)) {
        kl_ini_fail(ini, "set twice (first at line %u)", in->key_lines[i]);
        return 1;
    }
    if (in->key_lines[i] == 0) {
        in->key_lines[i] = ini->line;
        if (k->flags & KL_INI_LINE) {
            store_line(in->obj, k->line_offset, ini->line);
        }
    }
    if (value[0] == '\0' && !(k->flags & KL_INI_EMPTY_OK)) {
        kl_ini_fail(ini, "empty value");
        return 1;
    }
    (void)set_value(ini, k, in->obj, value);
    ini->cur_key = NULL;
    return 1;
}

static char *reader(char *str, int num, void *stream)
{
    struct kl_ini *ini = stream;
    if (ini->ret != 0) {
        return NULL; /* an error was recorded: stop reading */
    }
    char *r = fgets(str, num, ini->f);
    if (r == NULL) {
        return NULL;
    }
    ini->line++;
    size_t n = strlen(r);
    if (n == (size_t)num - 1 && r[n - 1] != '\n') {
        int c = getc(ini->f);
        if (c != EOF) {
            /* inih would read the rest as a line of its own. */
            kl_ini_fail_at(ini, ini->line, NULL, NULL, "line longer than %d bytes", num - 2);
            return NULL;
        }
    }
    /* inih's order: a UTF-8 BOM on line 1, leading blanks, then a comment, a continuation or a header. */
    const char *p = r;
    if (ini->line == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF) {
        p += 3;
    }
    const char *start = p;
    while (isspace((unsigned char)*start)) {
        start++;
    }
    if (*start == '[' && !(ini->key_since_header && start > r)) {
        ini->header_line = ini->line;
        ini->key_since_header = 0;
    }
    return r;
}

/* "missing" or "missing (why)". */
static void fail_missing(struct kl_ini *ini, unsigned line, const char *section, const char *key, const char *why)
{
    kl_ini_fail_at(ini, line, section, key, "missing%s%s%s", why ? " (" : "", why ? why : "", why ? ")" : "");
}

/* The first required key of sec that is not set (key_lines NULL: none is), or NULL. */
static const struct kl_ini_key *first_missing(const struct kl_ini_section *sec, const unsigned *key_lines)
{
    for (size_t i = 0; i < sec->n_keys; i++) {
        if ((sec->keys[i].flags & KL_INI_REQUIRED) && (key_lines == NULL || key_lines[i] == 0)) {
            return &sec->keys[i];
        }
    }
    return NULL;
}

/* Required keys and sections, in table order. */
static void check_required(struct kl_ini *ini)
{
    const struct kl_ini_spec *spec = ini->spec;
    char sect[300];
    for (size_t s = 0; s < spec->n_sections && ini->ret == 0; s++) {
        const struct kl_ini_section *sec = &spec->sections[s];
        const struct kl_ini_key *k;
        size_t found = 0;
        for (size_t j = 0; j < ini->n_insts && ini->ret == 0; j++) {
            const struct inst *in = &ini->insts[j];
            if (in->sec != sec) {
                continue;
            }
            found++;
            if ((k = first_missing(sec, in->key_lines)) == NULL) {
                continue;
            }
            if (in->name != NULL) {
                snprintf(sect, sizeof(sect), "%s %s", sec->name, in->name);
                fail_missing(ini, in->line, sect, k->name, k->missing);
            } else {
                /* A fixed section may be split over several headers: no one line to name. */
                fail_missing(ini, 0, sec->name, k->name, k->missing);
            }
        }
        if (found > 0) {
            continue;
        }
        if (sec->flags & KL_INI_NAMED) {
            if (sec->flags & KL_INI_REQUIRED) {
                snprintf(sect, sizeof(sect), "%s NAME", sec->name);
                fail_missing(ini, 0, sect, NULL, sec->missing);
            }
        } else if ((k = first_missing(sec, NULL)) != NULL) {
            fail_missing(ini, 0, sec->name, k->name, k->missing);
        }
    }
}

/* The table is the program's own: catch a field too small for its bounds before any file is read. */
static int check_spec(const struct kl_ini_spec *spec)
{
    for (size_t s = 0; s < spec->n_sections; s++) {
        const struct kl_ini_section *sec = &spec->sections[s];
        if (sec->n_keys > KL_INI_MAX_KEYS || sec->name == NULL || ((sec->flags & KL_INI_NAMED) && sec->open == NULL)) {
            return KL_ERR_INVALID;
        }
        for (size_t i = 0; i < sec->n_keys; i++) {
            const struct kl_ini_key *k = &sec->keys[i];
            int is_uint = k->type == KL_INI_UINT || k->type == KL_INI_DURATION;
            if (is_uint && !(k->size == 1 || k->size == 2 || k->size == 4 || k->size == 8)) {
                return KL_ERR_INVALID;
            }
            if (is_uint && k->size < 8 && k->max >> (8 * k->size) != 0) {
                return KL_ERR_INVALID;
            }
            if ((k->type == KL_INI_DURATION && k->unit_ms != 1 && k->unit_ms != 1000 && k->unit_ms != 60000 &&
                 k->unit_ms != 3600000) ||
                (k->type == KL_INI_ENUM && k->names == NULL) ||
                ((k->type == KL_INI_LIST || k->type == KL_INI_CUSTOM) && k->set == NULL) || k->min > k->max) {
                return KL_ERR_INVALID;
            }
            if ((k->type == KL_INI_STRING || k->type == KL_INI_PATH) && k->size != sizeof(char *)) {
                return KL_ERR_INVALID;
            }
            if ((k->type == KL_INI_BOOL || k->type == KL_INI_ENUM) && k->size != sizeof(int)) {
                return KL_ERR_INVALID;
            }
            if (k->type == KL_INI_NUMBER && k->size != sizeof(double)) {
                return KL_ERR_INVALID;
            }
        }
    }
    return 0;
}

int kl_ini_load(const struct kl_ini_spec *spec, void *user, const char *path, char *err, size_t err_len)
{
    struct kl_ini ini = {.spec = spec, .user = user, .path = path, .err = err, .err_len = err_len};
    int r;
    err[0] = '\0';
    if (check_spec(spec) != 0) {
        snprintf(err, err_len, "%s: internal error: inconsistent key table", path);
        return KL_ERR_INVALID;
    }
    ini.f = fopen(path, "re");
    if (ini.f == NULL) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return KL_ERR_CONFIG;
    }
    r = ini_parse_stream(reader, &ini, handler, &ini);
    /* inih's own error (a line it cannot parse) unless one of ours came first. */
    if (r > 0 && (ini.ret == 0 || (unsigned)r <= ini.err_line)) {
        ini.ret = 0;
        kl_ini_fail_at(&ini, (unsigned)r, NULL, NULL, "syntax error (expected [section] or key = value)");
    } else if (r < 0 && ini.ret == 0) {
        fail_no_memory(&ini); /* -2: inih could not allocate; -1 cannot happen with a stream */
    }
    if (ini.ret == 0) {
        check_required(&ini);
    }
    if (ini.ret == 0 && spec->check != NULL) {
        ini.cur_key = NULL;
        (void)spec->check(&ini, user);
    }
    fclose(ini.f);
    for (size_t i = 0; i < ini.n_insts; i++) {
        free(ini.insts[i].name);
        free(ini.insts[i].key_lines);
    }
    free(ini.insts);
    return ini.ret;
}
