/*
 * kl_ini.h - one typed INI layer over inih for both processes.
 *
 * A config file is described by a table of sections, each with a table of keys
 * {name, type, flags, bounds, field offset or handler}. kl_ini_load() reads the file,
 * stores every value into the caller's structs, and enforces what both processes want:
 * unknown sections and keys, a key set twice (unless KL_INI_MULTI), a [PREFIX NAME]
 * section defined twice, empty values, and missing required keys and sections are errors.
 *
 * The first error stops the load and is one line in the caller's buffer:
 *
 *   FILE:LINE: [section] key: why       a bad value, unknown key, key set twice ...
 *   FILE:LINE: [section]: why           about the section itself (its header line)
 *   FILE: [section] key: why            a required key or section that is missing
 *   FILE:LINE: why                      syntax errors, over-long lines
 *
 * The caller prefixes its program name ("keyless-signer: ") and nothing else.
 *
 * Values, the same in both processes:
 *   bool      yes/no, true/false, on/off, 1/0 (case-insensitive)
 *   duration  a decimal number with an optional unit ms, s, m or h ("500ms", "1.5s",
 *             "2m"); a bare number is in the key's own unit (unit_ms), so configs
 *             written before units existed keep their meaning
 *   list      items separated by commas and/or blanks
 *   path      resolved against the directory of the config file unless absolute
 *
 * inih (the system build) hands the handler no line numbers and reads lines into a
 * fixed buffer: kl_ini_load feeds it through a reader that counts lines, notes section
 * headers, and refuses a line longer than that buffer instead of letting inih split it.
 */
#ifndef KL_INI_H
#define KL_INI_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"

/* Room for one error line (the caller's buffer should be at least this big). */
#define KL_INI_ERR_LEN 512
/* At most this many keys per section (the parser keeps one bit of state per key). */
#define KL_INI_MAX_KEYS 64

struct kl_ini; /* the parse in progress, passed to handlers */

enum kl_ini_type {
    KL_INI_STRING,   /* char * field: a copy of the value (the caller frees it) */
    KL_INI_PATH,     /* char * field: the value resolved against the config file's directory */
    KL_INI_UINT,     /* unsigned field of `size` bytes (1, 2, 4, 8): min..max */
    KL_INI_NUMBER,   /* double field: a decimal number, min..max */
    KL_INI_DURATION, /* unsigned field of `size` bytes: milliseconds, min..max ms, bare number in unit_ms */
    KL_INI_BOOL,     /* int field: 0 or 1 */
    KL_INI_ENUM,     /* int field: values[i] (or i when values is NULL) for names[i] */
    KL_INI_LIST,     /* set() on every item in turn, after reset() if given */
    KL_INI_CUSTOM,   /* set() on the whole value */
};

/* Key and section flags. */
#define KL_INI_REQUIRED 0x1u /* key: must be set in its section; named section: at least one */
#define KL_INI_MULTI 0x2u    /* key: may be given more than once (each line is passed on) */
#define KL_INI_EMPTY_OK 0x4u /* key: an empty value is allowed (string/path: left NULL) */
#define KL_INI_LINE 0x8u     /* key: line_offset gets the line of its first setting; section: of its header */
#define KL_INI_NAMED 0x10u   /* section: [name NAME] (also [name:NAME], [name "NAME"]), one object per NAME */

/*
 * A handler gets the object of the section being parsed (the user object for a fixed
 * section, what open() returned for a named one) and returns 0, or kl_ini_fail()'s
 * result (or another negative kl_err) to stop the load.
 */
typedef int (*kl_ini_set_fn)(struct kl_ini *ini, void *obj, const char *value);

struct kl_ini_key {
    const char *name;
    enum kl_ini_type type;
    unsigned flags;
    size_t offset, size;                         /* the field, for the typed kinds: use KL_INI_FIELD */
    size_t line_offset;                          /* KL_INI_LINE: an int or unsigned field (use offsetof) */
    uint64_t min, max;                           /* UINT, NUMBER (whole bounds), DURATION (milliseconds) */
    uint32_t unit_ms;                            /* DURATION: what a bare number counts (1 = ms, 1000 = s) */
    const char *const *names;                    /* ENUM: the accepted names, NULL-terminated */
    const int *values;                           /* ENUM: the value stored for each name; NULL: its index */
    kl_ini_set_fn set;                           /* LIST: one item; CUSTOM: the whole value */
    int (*reset)(struct kl_ini *ini, void *obj); /* LIST: before the first item (drop defaults) */
    const char *hint;    /* added in parentheses to a bad-value message: "per second", "bytes" */
    const char *missing; /* added in parentheses to the "missing" message of a required key */
};

#define KL_INI_FIELD(type, field) .offset = offsetof(type, field), .size = sizeof(((type *)0)->field)

struct kl_ini_section {
    const char *name; /* "signer"; for KL_INI_NAMED the prefix: "key" for [key NAME] */
    unsigned flags;   /* KL_INI_NAMED, KL_INI_REQUIRED (named only), KL_INI_LINE */
    const struct kl_ini_key *keys;
    size_t n_keys;
    /*
     * KL_INI_NAMED: make the object of a new [name NAME] (user is kl_ini_load's) or
     * return NULL after kl_ini_fail() (too many, bad NAME). NAME is trimmed and known to
     * be new. Fixed sections: NULL, their keys write into the user object.
     */
    void *(*open)(struct kl_ini *ini, void *user, const char *name);
    size_t line_offset;  /* KL_INI_LINE: an int or unsigned field of the object (fixed: the first header) */
    const char *missing; /* KL_INI_REQUIRED: added to the "missing" message */
};

struct kl_ini_spec {
    const struct kl_ini_section *sections;
    size_t n_sections;
    /* Whole-file checks after a clean parse (0, or kl_ini_fail_at()'s result). NULL: none. */
    int (*check)(struct kl_ini *ini, void *user);
};

/*
 * Parse the file at path into user following spec. Returns 0; KL_ERR_CONFIG with the
 * one-line message in err (err_len bytes; "FILE: cannot open: why" if it cannot be
 * read); KL_ERR_NO_MEMORY ("FILE: out of memory"); KL_ERR_INVALID if spec itself is
 * inconsistent (a programming error: a field size that cannot hold max, too many keys).
 * Values already stored into user stay there on failure: the caller frees its struct
 * as usual.
 */
KL_MUST_CHECK int kl_ini_load(const struct kl_ini_spec *spec, void *user, const char *path, char *err, size_t err_len);

/*
 * Record an error about the key being parsed (or, in open(), about the section: its
 * header line, "[section]: why"). Only the first error of a load is kept. Always
 * returns KL_ERR_CONFIG, so a handler can `return kl_ini_fail(ini, ...)`.
 */
int kl_ini_fail(struct kl_ini *ini, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Record an error at a given place, for check(): line 0 prints no line, key NULL
 * prints "[section]: why". Returns KL_ERR_CONFIG.
 */
int kl_ini_fail_at(struct kl_ini *ini, unsigned line, const char *section, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The line being parsed (1-based). */
unsigned kl_ini_line(const struct kl_ini *ini);

/*
 * value resolved against the config file's directory (absolute values and files
 * without a directory part are kept as they are) into a new string in *out_p.
 * 0 or KL_ERR_NO_MEMORY (recorded as the load's error).
 */
KL_MUST_CHECK int kl_ini_path(struct kl_ini *ini, char **out_p, const char *value);

/* Plain parsers, also for custom handlers: 0, or KL_ERR_CONFIG when s is not valid or out of bounds. */
/* Decimal digits only (no sign, no blanks), min <= n <= max. */
KL_MUST_CHECK int kl_ini_parse_uint(uint64_t *out, const char *s, uint64_t min, uint64_t max);
/* A decimal number ("0.5", "1e3"; no sign, no inf/nan/hex), min <= x <= max. */
KL_MUST_CHECK int kl_ini_parse_number(double *out, const char *s, double min, double max);
/* A duration (see the top of this file) in whole milliseconds (rounded down), min_ms..max_ms. */
KL_MUST_CHECK int kl_ini_parse_duration_ms(uint64_t *out_ms, const char *s, uint32_t unit_ms, uint64_t min_ms,
                                           uint64_t max_ms);
/* yes/no, true/false, on/off, 1/0, any case. */
KL_MUST_CHECK int kl_ini_parse_bool(int *out, const char *s);

#endif
