/*
 * Unit tests for common/kl_ini: every value type and its bounds, every error with its
 * exact message (FILE:LINE: [section] key: why), keys set twice, unknown keys and
 * sections, required keys and sections, named sections, CRLF, comments, a BOM, a line
 * longer than inih's buffer, and tables the layer must refuse.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "kl_test.h"
#include "kl_ini.h"

struct item {
    char *name;
    int line;
    unsigned v, w;
};

struct obj {
    char *s, *p, *opt;
    unsigned u, line_u;
    uint8_t u8;
    uint64_t u64;
    double d;
    uint32_t dur_s;
    unsigned dur_ms;
    int b, e;
    char *items[8];
    size_t n_items, resets;
    int custom;
    unsigned main_line;
    struct item named[3];
    size_t n_named;
    int check_fails;
};

static struct obj O;
static char dir[64], path[128];

static int add_item(struct kl_ini *ini, void *obj, const char *item)
{
    struct obj *o = obj;
    if (strcmp(item, "bad") == 0) {
        return kl_ini_fail(ini, "item '%s' refused", item);
    }
    if (o->n_items == 8) {
        return kl_ini_fail(ini, "too many items");
    }
    o->items[o->n_items++] = strdup(item);
    return 0;
}

static int reset_items(struct kl_ini *ini, void *obj)
{
    struct obj *o = obj;
    (void)ini;
    o->resets++;
    return 0;
}

static int set_custom(struct kl_ini *ini, void *obj, const char *value)
{
    struct obj *o = obj;
    if (strcmp(value, "seven") != 0) {
        return kl_ini_fail(ini, "'%s' is not seven", value);
    }
    o->custom = 7;
    return 0;
}

static const char *const colours[] = {"red", "green", "blue", NULL};
static const int colour_values[] = {10, 20, 30};

static const struct kl_ini_key main_keys[] = {
    {"s", KL_INI_STRING, KL_INI_FIELD(struct obj, s)},
    {"p", KL_INI_PATH, KL_INI_FIELD(struct obj, p)},
    {"opt", KL_INI_PATH, KL_INI_EMPTY_OK, KL_INI_FIELD(struct obj, opt)},
    {"u", KL_INI_UINT, KL_INI_LINE, KL_INI_FIELD(struct obj, u), .line_offset = offsetof(struct obj, line_u), .min = 1,
     .max = 255, .hint = "widgets"},
    {"u8", KL_INI_UINT, KL_INI_FIELD(struct obj, u8), .max = 255},
    {"u64", KL_INI_UINT, KL_INI_FIELD(struct obj, u64), .max = UINT64_MAX},
    {"d", KL_INI_NUMBER, KL_INI_FIELD(struct obj, d), .max = 1000, .hint = "per second"},
    {"dur_s", KL_INI_DURATION, KL_INI_FIELD(struct obj, dur_s), .min = 10, .max = 7200000, .unit_ms = 1000},
    {"dur_ms", KL_INI_DURATION, KL_INI_FIELD(struct obj, dur_ms), .min = 1, .max = 1000, .unit_ms = 1},
    {"b", KL_INI_BOOL, KL_INI_FIELD(struct obj, b)},
    {"e", KL_INI_ENUM, KL_INI_FIELD(struct obj, e), .names = colours, .values = colour_values},
    {"list", KL_INI_LIST, KL_INI_MULTI, .set = add_item, .reset = reset_items},
    {"custom", KL_INI_CUSTOM, .set = set_custom},
};

static void *open_item(struct kl_ini *ini, void *user, const char *name)
{
    struct obj *o = user;
    if (strcmp(name, "refused") == 0 || o->n_named == 3) {
        kl_ini_fail(ini, "no room for '%s'", name);
        return NULL;
    }
    o->named[o->n_named].name = strdup(name);
    return &o->named[o->n_named++];
}

static const struct kl_ini_key item_keys[] = {
    {"v", KL_INI_UINT, KL_INI_REQUIRED, KL_INI_FIELD(struct item, v), .max = 9, .missing = "every item has one"},
    {"w", KL_INI_UINT, KL_INI_FIELD(struct item, w), .max = 9},
};

static int check(struct kl_ini *ini, void *user)
{
    struct obj *o = user;
    if (o->check_fails == 1) {
        return kl_ini_fail_at(ini, 0, "main", NULL, "whole-file check %d", 1);
    }
    if (o->check_fails == 2) {
        return kl_ini_fail_at(ini, 4, "main", "u", "whole-file check %d", 2);
    }
    return 0;
}

#define KEYS(t) .keys = (t), .n_keys = sizeof(t) / sizeof((t)[0])

static const struct kl_ini_section sections[] = {
    {"main", KL_INI_LINE, KEYS(main_keys), .line_offset = offsetof(struct obj, main_line)},
    {"item", KL_INI_NAMED | KL_INI_LINE, KEYS(item_keys), .open = open_item,
     .line_offset = offsetof(struct item, line)},
};
static const struct kl_ini_spec spec = {sections, 2, check};

/* The same with a required key in [main] and a required [item NAME]. */
static const struct kl_ini_key req_keys[] = {
    {"s", KL_INI_STRING, KL_INI_REQUIRED, KL_INI_FIELD(struct obj, s), .missing = "say something"},
    {"u", KL_INI_UINT, KL_INI_FIELD(struct obj, u), .max = 9},
};
static const struct kl_ini_section req_sections[] = {
    {"main", 0, KEYS(req_keys)},
    {"item", KL_INI_NAMED | KL_INI_REQUIRED, KEYS(item_keys), .open = open_item, .missing = "one at least"},
};
static const struct kl_ini_spec req_spec = {req_sections, 2, NULL};

static void reset(void)
{
    free(O.s);
    free(O.p);
    free(O.opt);
    for (size_t i = 0; i < O.n_items; i++) {
        free(O.items[i]);
    }
    for (size_t i = 0; i < O.n_named; i++) {
        free(O.named[i].name);
    }
    memset(&O, 0, sizeof(O));
}

static int load_spec(const struct kl_ini_spec *sp, const char *text, char *err, size_t err_len)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(text, f);
    fclose(f);
    reset();
    return kl_ini_load(sp, &O, path, err, err_len);
}

/* Load text; expect KL_ERR_CONFIG and exactly "PATH" + want (want starts with ":LINE: ..." or ": ..."). */
static void expect_err_spec(const struct kl_ini_spec *sp, const char *text, const char *want, const char *name)
{
    char err[KL_INI_ERR_LEN], full[KL_INI_ERR_LEN + 128];
    int ret = load_spec(sp, text, err, sizeof(err));
    snprintf(full, sizeof(full), "%s%s", path, want);
    if (!ok(ret == KL_ERR_CONFIG && strcmp(err, full) == 0, name)) {
        diag("ret %d, got  '%s'", ret, err);
        diag("want '%s'", full);
    }
}

static void expect_err(const char *text, const char *want, const char *name)
{
    expect_err_spec(&spec, text, want, name);
}

static void test_valid(void)
{
    char err[KL_INI_ERR_LEN], want[200];
    int ret = load_spec(&spec,
                        "; a comment\n"
                        "# another\n"
                        "[main]\n"
                        "s = hello world ; an inline comment\n"
                        "p = sub/file.pem\n"
                        "opt = /abs/file\n"
                        "u = 255\n"
                        "u8 = 0\n"
                        "u64 = 18446744073709551615\n"
                        "d = 0.25\n"
                        "dur_s = 1.5\n"
                        "dur_ms = 250\n"
                        "b = On\n"
                        "e = green\n"
                        "list = a, b c,,d\n"
                        "list = e\n"
                        "custom = seven\n"
                        "[item one]\n"
                        "v = 1\n"
                        "[item:two]\n"
                        "v = 2\n"
                        "[item \"three\"]\n"
                        "v = 3\n",
                        err, sizeof(err));
    if (!ok(ret == 0, "a file with every type loads")) {
        diag("%s", err);
        return;
    }
    ok(O.s != NULL && strcmp(O.s, "hello world") == 0, "string, inline comment dropped");
    snprintf(want, sizeof(want), "%s/sub/file.pem", dir);
    ok(O.p != NULL && strcmp(O.p, want) == 0, "relative path resolved against the file's directory");
    ok(O.opt != NULL && strcmp(O.opt, "/abs/file") == 0, "absolute path kept");
    is_int(O.u, 255, "uint at its max");
    is_int(O.line_u, 7, "line of u recorded");
    is_int(O.main_line, 3, "line of [main] recorded");
    is_int(O.u8, 0, "uint8 at 0");
    ok(O.u64 == UINT64_MAX, "uint64 at its max");
    ok(O.d == 0.25, "number");
    is_int(O.dur_s, 1500, "bare 1.5 in a seconds key: 1500 ms");
    is_int(O.dur_ms, 250, "bare 250 in a milliseconds key: 250 ms");
    is_int(O.b, 1, "On is true");
    is_int(O.e, 20, "enum value from the values table");
    is_int(O.n_items, 5, "list: commas and blanks, empty items skipped, a second line adds");
    ok(O.n_items == 5 && strcmp(O.items[0], "a") == 0 && strcmp(O.items[3], "d") == 0 && strcmp(O.items[4], "e") == 0,
       "list items in order");
    is_int(O.resets, 2, "reset before each line");
    is_int(O.custom, 7, "custom handler");
    is_int(O.n_named, 3, "three named sections");
    ok(O.n_named == 3 && strcmp(O.named[0].name, "one") == 0 && strcmp(O.named[1].name, "two") == 0 &&
           strcmp(O.named[2].name, "three") == 0,
       "[item NAME], [item:NAME] and [item \"NAME\"]");
    ok(O.n_named == 3 && O.named[0].v == 1 && O.named[2].v == 3, "keys of named sections go to their object");
    ok(O.n_named == 3 && O.named[0].line == 18 && O.named[1].line == 20 && O.named[2].line == 22,
       "header lines of named sections");

    ret = load_spec(&spec, "\xEF\xBB\xBF[main]\r\nu = 3\r\ns = crlf\r\n\r\n[main]\r\nb = no\r\n", err, sizeof(err));
    is_int(ret, 0, "BOM and CRLF");
    ok(O.u == 3 && O.s != NULL && strcmp(O.s, "crlf") == 0 && O.b == 0, "CRLF stripped from values");
    is_int(O.main_line, 1, "[main] given twice: the first header line");

    ret = load_spec(&spec, "[main]\nopt =\n", err, sizeof(err));
    ok(ret == 0 && O.opt == NULL, "an empty value where allowed leaves the path unset");
    ret = load_spec(&spec, "", err, sizeof(err));
    is_int(ret, 0, "an empty file (nothing required)");
    ret = load_spec(&spec, "[main]\n[item a]\n[main]\nu = 1\n", err, sizeof(err));
    ok(ret == 0 && O.n_named == 0, "a section without keys is never opened (inih reports keys only)");
}

static void test_bool_duration_forms(void)
{
    static const char *const yes[] = {"yes", "YES", "true", "True", "on", "1"};
    static const char *const no[] = {"no", "No", "false", "FALSE", "off", "0"};
    char text[64], err[KL_INI_ERR_LEN], name[64];
    int all = 1;
    for (size_t i = 0; i < 6; i++) {
        snprintf(text, sizeof(text), "[main]\nb = %s\n", yes[i]);
        all &= load_spec(&spec, text, err, sizeof(err)) == 0 && O.b == 1;
        snprintf(text, sizeof(text), "[main]\nb = %s\n", no[i]);
        O.b = 5;
        all &= load_spec(&spec, text, err, sizeof(err)) == 0 && O.b == 0;
    }
    ok(all, "bool: yes/no, true/false, on/off, 1/0 in any case");

    static const struct {
        const char *v;
        unsigned ms;
    } durs[] = {{"500ms", 500}, {"5s", 5000}, {"2m", 120000},    {"1h", 3600000}, {"0.5s", 500},
                {"10", 10000},  {"0.01", 10}, {"1.0005s", 1000}, {"2h", 7200000}};
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        snprintf(text, sizeof(text), "[main]\ndur_s = %s\n", durs[i].v);
        snprintf(name, sizeof(name), "duration '%s' = %u ms", durs[i].v, durs[i].ms);
        int ret = load_spec(&spec, text, err, sizeof(err));
        ok(ret == 0 && O.dur_s == durs[i].ms, name);
    }

    uint64_t u = 1;
    double d;
    int b;
    is_int(kl_ini_parse_uint(&u, "18446744073709551616", 0, UINT64_MAX), KL_ERR_CONFIG, "parse_uint: 2^64 overflows");
    is_int(kl_ini_parse_uint(&u, "-1", 0, UINT64_MAX), KL_ERR_CONFIG, "parse_uint: no sign");
    is_int(kl_ini_parse_uint(&u, "+1", 0, UINT64_MAX), KL_ERR_CONFIG, "parse_uint: no plus");
    is_int(kl_ini_parse_uint(&u, " 1", 0, UINT64_MAX), KL_ERR_CONFIG, "parse_uint: no blank");
    is_int(kl_ini_parse_uint(&u, "", 0, UINT64_MAX), KL_ERR_CONFIG, "parse_uint: empty");
    ok(kl_ini_parse_uint(&u, "007", 0, 10) == 0 && u == 7, "parse_uint: leading zeros");
    is_int(kl_ini_parse_number(&d, "inf", 0, 1e9), KL_ERR_CONFIG, "parse_number: inf");
    is_int(kl_ini_parse_number(&d, "nan", 0, 1e9), KL_ERR_CONFIG, "parse_number: nan");
    is_int(kl_ini_parse_number(&d, "0x10", 0, 1e9), KL_ERR_CONFIG, "parse_number: hex");
    is_int(kl_ini_parse_number(&d, "-0", 0, 1e9), KL_ERR_CONFIG, "parse_number: sign");
    is_int(kl_ini_parse_number(&d, ".", 0, 1e9), KL_ERR_CONFIG, "parse_number: a lone dot");
    ok(kl_ini_parse_number(&d, "1e3", 0, 1e9) == 0 && d == 1000, "parse_number: exponent");
    ok(kl_ini_parse_number(&d, ".5", 0, 1e9) == 0 && d == 0.5, "parse_number: leading dot");
    is_int(kl_ini_parse_duration_ms(&u, ".", 1000, 0, 100000), KL_ERR_CONFIG, "duration: a lone dot");
    is_int(kl_ini_parse_duration_ms(&u, "ms", 1000, 0, 100000), KL_ERR_CONFIG, "duration: a unit alone");
    is_int(kl_ini_parse_duration_ms(&u, "5min", 1000, 0, 1000000), KL_ERR_CONFIG, "duration: unknown unit");
    is_int(kl_ini_parse_duration_ms(&u, "-5s", 1000, 0, 100000), KL_ERR_CONFIG, "duration: negative");
    is_int(kl_ini_parse_duration_ms(&u, "1e3", 1000, 0, 10000000), KL_ERR_CONFIG, "duration: no exponent");
    is_int(kl_ini_parse_duration_ms(&u, "0.5ms", 1, 1, 1000), KL_ERR_CONFIG, "duration: rounds below the minimum");
    is_int(kl_ini_parse_duration_ms(&u, "123456789012345678901234567890", 1, 0, UINT64_MAX), KL_ERR_CONFIG,
           "duration: too many digits");
    ok(kl_ini_parse_duration_ms(&u, "5.", 1000, 0, 100000) == 0 && u == 5000, "duration: trailing dot");
    is_int(kl_ini_parse_bool(&b, "y"), KL_ERR_CONFIG, "bool: y is not a word we take");
    is_int(kl_ini_parse_bool(&b, ""), KL_ERR_CONFIG, "bool: empty");
}

static void test_errors(void)
{
    char err[KL_INI_ERR_LEN];
    /* Bad values: FILE:LINE: [section] key: why. */
    expect_err("[main]\nu = 0\n", ":2: [main] u: '0' is not 1..255 (widgets)", "uint below min");
    expect_err("[main]\n\nu = 256\n", ":3: [main] u: '256' is not 1..255 (widgets)", "uint above max");
    expect_err("[main]\nu = -1\n", ":2: [main] u: '-1' is not 1..255 (widgets)", "uint with a sign");
    expect_err("[main]\nu = 12abc\n", ":2: [main] u: '12abc' is not 1..255 (widgets)", "uint with trailing text");
    expect_err("[main]\nu8 = 256\n", ":2: [main] u8: '256' is not 0..255", "uint8 above 255");
    expect_err("[main]\nd = 1000.5\n", ":2: [main] d: '1000.5' is not a number from 0 to 1000 (per second)",
               "number above max");
    expect_err("[main]\nd = -1\n", ":2: [main] d: '-1' is not a number from 0 to 1000 (per second)", "negative number");
    expect_err("[main]\ndur_s = 5ms\n",
               ":2: [main] dur_s: '5ms' is not a duration from 10ms to 7200s (500ms, 5s, 2m; a bare number is "
               "seconds)",
               "duration below min");
    expect_err("[main]\ndur_s = 3h\n",
               ":2: [main] dur_s: '3h' is not a duration from 10ms to 7200s (500ms, 5s, 2m; a bare number is "
               "seconds)",
               "duration above max");
    expect_err("[main]\ndur_ms = 5 ms\n",
               ":2: [main] dur_ms: '5 ms' is not a duration from 1ms to 1s (500ms, 5s, 2m; a bare number is "
               "milliseconds)",
               "a blank inside a duration");
    expect_err("[main]\nb = maybe\n", ":2: [main] b: 'maybe' is not yes or no (true/false, on/off and 1/0 work too)",
               "bool");
    expect_err("[main]\ne = Red\n", ":2: [main] e: 'Red' is not red, green or blue", "enum is case-sensitive");
    expect_err("[main]\nlist = , ,\n", ":2: [main] list: empty list", "a list of separators only");
    expect_err("[main]\nlist = a bad c\n", ":2: [main] list: item 'bad' refused", "a list item refused");
    expect_err("[main]\ncustom = six\n", ":2: [main] custom: 'six' is not seven", "custom handler's message");
    expect_err("[main]\ns =\n", ":2: [main] s: empty value", "empty value");
    expect_err("[main]\nu =   \n", ":2: [main] u: empty value", "blank value");
    /* Keys and sections. */
    expect_err("[main]\ncolour = blue\n", ":2: [main] colour: unknown key", "unknown key");
    expect_err("[item a]\nu = 1\n", ":2: [item a] u: unknown key", "a key of another section");
    expect_err("[main]\nu = 1\n[mian]\ns = x\n", ":3: [mian]: unknown section (expected [main] or [item NAME])",
               "unknown section, at its header line");
    expect_err("s = x\n[main]\n", ":1: a key before any [section]", "a key before any section");
    expect_err("[main]\nu = 1\ns = a\nu = 2\n", ":4: [main] u: set twice (first at line 2)", "set twice");
    expect_err("[main]\nu = 1\n[item a]\nv = 1\n[main]\nu = 2\n", ":6: [main] u: set twice (first at line 2)",
               "set twice across two [main] headers");
    expect_err("[main]\ns = a\n  continued\n", ":3: [main] s: set twice (first at line 2)",
               "an indented line continues the previous key (inih), so it sets it again");
    expect_err("[item a]\nv = 1\n[item b]\nv = 2\n[item a]\nv = 3\n", ":5: [item a]: defined twice (first at line 1)",
               "a named section defined twice");
    expect_err("[item a]\nv = 1\n[item a]\nv = 2\n", ":3: [item a]: defined twice (first at line 1)",
               "the same named section twice in a row");
    expect_err("[item \"a\"]\nv = 1\n[item:a]\nv = 2\n", ":3: [item a]: defined twice (first at line 1)",
               "quotes and colon name the same section");
    expect_err("[item  ]\nv = 1\n", ":1: [item ]: a name is needed: [item NAME]", "a named section without a name");
    expect_err("[item refused]\nv = 1\n", ":1: [item refused]: no room for 'refused'", "open() refuses");
    expect_err("[item a]\nv = 10\n", ":2: [item a] v: '10' is not 0..9", "a bad value in a named section");
    /* Required keys and sections. */
    expect_err_spec(&req_spec, "[item a]\nv = 1\n", ": [main] s: missing (say something)",
                    "a required key of a section never written");
    expect_err_spec(&req_spec, "[main]\nu = 1\n[item a]\nv = 1\n", ": [main] s: missing (say something)",
                    "a required key of a written fixed section (no line)");
    expect_err_spec(&req_spec, "[main]\ns = x\n", ": [item NAME]: missing (one at least)", "a required named section");
    expect_err_spec(&req_spec, "[main]\ns = x\n\n[item b]\n", ": [item NAME]: missing (one at least)",
                    "a named section without keys does not count");
    expect_err_spec(&req_spec, "[main]\ns = x\n[item a]\nv = 1\n[item b]\nw = 1\n",
                    ":5: [item b] v: missing (every item has one)",
                    "a required key of a named section: its header line");
    expect_err_spec(&req_spec, "[main]\ns = x\n[item a]\nv = 1\n[item b]\nz = 1\n", ":6: [item b] z: unknown key",
                    "unknown key in a named section");
    expect_err_spec(&req_spec, "[main]\ns = x\n[item a]\nv = 1\n[item b]\nv =\n", ":6: [item b] v: empty value",
                    "empty value in a named section");
    /* Syntax, lines. */
    expect_err("[main]\nu = 1\nnot a pair\n", ":3: syntax error (expected [section] or key = value)", "syntax error");
    expect_err("[main\nu = 1\n", ":1: syntax error (expected [section] or key = value)", "a header without ]");
    expect_err("[main]\nnot a pair\nu = 0\n", ":2: syntax error (expected [section] or key = value)",
               "a syntax error before a bad value is the one reported");
    expect_err("[main]\nu = 0\nnot a pair\n", ":2: [main] u: '0' is not 1..255 (widgets)",
               "a bad value before a syntax error is the one reported");
    {
        char text[400], want[100];
        memset(text, 0, sizeof(text));
        strcpy(text, "[main]\ns = ");
        memset(text + strlen(text), 'x', 200);
        strcat(text, "\nu = 1\n");
        snprintf(want, sizeof(want), ":2: line longer than 198 bytes");
        expect_err(text, want, "a line longer than inih's buffer");
        /* 198 bytes and the newline fit exactly. */
        memset(text, 0, sizeof(text));
        strcpy(text, "[main]\ns = ");
        memset(text + strlen(text), 'y', 198 - 4);
        strcat(text, "\nu = 1\n");
        int ret = load_spec(&spec, text, err, sizeof(err));
        ok(ret == 0 && O.s != NULL && strlen(O.s) == 194 && O.u == 1, "a line of 198 bytes is read whole");
        /* The last line, without a newline, may fill the buffer. */
        memset(text, 0, sizeof(text));
        strcpy(text, "[main]\ns = ");
        memset(text + strlen(text), 'z', 199 - 4);
        ret = load_spec(&spec, text, err, sizeof(err));
        ok(ret == 0 && O.s != NULL && strlen(O.s) == 195, "a last line of 199 bytes without newline");
    }
    /* The whole-file check's errors. */
    {
        char text[] = "[main]\nu = 1\n";
        FILE *f = fopen(path, "w");
        char want[200];
        if (f != NULL) {
            fputs(text, f);
            fclose(f);
        }
        reset();
        O.check_fails = 1;
        int ret = kl_ini_load(&spec, &O, path, err, sizeof(err));
        snprintf(want, sizeof(want), "%s: [main]: whole-file check 1", path);
        ok(ret == KL_ERR_CONFIG && strcmp(err, want) == 0, "check(): no line, no key");
        reset();
        O.check_fails = 2;
        ret = kl_ini_load(&spec, &O, path, err, sizeof(err));
        snprintf(want, sizeof(want), "%s:4: [main] u: whole-file check 2", path);
        ok(ret == KL_ERR_CONFIG && strcmp(err, want) == 0, "check(): line and key");
        /* load_spec() clears check_fails: a file with a bad value never reaches check(). */
        ret = load_spec(&spec, "[main]\nu = 0\n", err, sizeof(err));
        ok(ret == KL_ERR_CONFIG && strstr(err, "check") == NULL, "check() runs after a clean parse only");
    }
    {
        char nopath[200], want[300];
        snprintf(nopath, sizeof(nopath), "%s/none.conf", dir);
        int ret = kl_ini_load(&spec, &O, nopath, err, sizeof(err));
        snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", nopath);
        ok(ret == KL_ERR_CONFIG && strcmp(err, want) == 0, "a missing file: cannot open");
    }
    {
        /* A short buffer truncates the line, never overflows. */
        char small[24];
        int ret = load_spec(&spec, "[main]\ncolour = blue\n", small, sizeof(small));
        ok(ret == KL_ERR_CONFIG && strlen(small) == sizeof(small) - 1, "the message is cut to the buffer");
    }
}

/* Tables the layer refuses before reading anything. */
static void test_bad_spec(void)
{
    char err[KL_INI_ERR_LEN];
    struct bad {
        uint8_t small;
        unsigned dur;
        int e;
    };
    const struct kl_ini_key too_small[] = {{"x", KL_INI_UINT, KL_INI_FIELD(struct bad, small), .max = 256}};
    const struct kl_ini_key bad_unit[] = {
        {"x", KL_INI_DURATION, KL_INI_FIELD(struct bad, dur), .max = 10, .unit_ms = 7}};
    const struct kl_ini_key no_names[] = {{"x", KL_INI_ENUM, KL_INI_FIELD(struct bad, e)}};
    const struct kl_ini_key no_set[] = {{"x", KL_INI_CUSTOM, .set = NULL}};
    const struct kl_ini_key *tables[] = {too_small, bad_unit, no_names, no_set};
    const char *names[] = {"a uint field too small for max", "a duration unit that is not ms, s, m or h",
                           "an enum without names", "a custom key without a handler"};
    for (size_t i = 0; i < 4; i++) {
        struct kl_ini_section sec = {"main", 0, tables[i], 1, NULL, 0, NULL};
        struct kl_ini_spec sp = {&sec, 1, NULL};
        int ret = load_spec(&sp, "[main]\n", err, sizeof(err));
        ok(ret == KL_ERR_INVALID && strstr(err, "internal error") != NULL, names[i]);
    }
    struct kl_ini_section named_no_open = {"item", KL_INI_NAMED, item_keys, 1, NULL, 0, NULL};
    struct kl_ini_spec sp = {&named_no_open, 1, NULL};
    is_int(load_spec(&sp, "", err, sizeof(err)), KL_ERR_INVALID, "a named section without open()");
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/kl-ini-test.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return kl_test_done();
    }
    snprintf(path, sizeof(path), "%s/t.conf", dir);
    test_valid();
    test_bool_duration_forms();
    test_errors();
    test_bad_spec();
    reset();
    unlink(path);
    rmdir(dir);
    return kl_test_done();
}
