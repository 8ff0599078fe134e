/* rfc8448.c - test-only loader for the RFC 8448 "name = hex" trace files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rfc8448.h"

#define RFC8448_MAX_VALUES 128

struct rfc8448_value {
    char name[64];
    uint8_t *bytes;
    size_t len;
};

struct rfc8448 {
    struct rfc8448_value v[RFC8448_MAX_VALUES];
    size_t n;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static FILE *open_data(const char *file, const char *mode)
{
    const char *dir = getenv("KL_TESTDATA");
    char path[1024];
    if (dir == NULL || *dir == '\0') {
        fprintf(stderr, "rfc8448: KL_TESTDATA is not set\n");
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/rfc8448/%s", dir, file);
    FILE *f = fopen(path, mode);
    if (f == NULL)
        fprintf(stderr, "rfc8448: cannot open %s\n", path);
    return f;
}

struct rfc8448 *rfc8448_load(const char *file)
{
    FILE *f = open_data(file, "r");
    if (f == NULL)
        return NULL;
    struct rfc8448 *t = calloc(1, sizeof(*t));
    char line[4096];
    int bad = t == NULL;
    while (!bad && fgets(line, sizeof(line), f) != NULL) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *eq = strstr(line, " = ");
        if (eq == NULL || t->n == RFC8448_MAX_VALUES || (size_t)(eq - line) >= sizeof(t->v[0].name)) {
            bad = 1;
            break;
        }
        struct rfc8448_value *v = &t->v[t->n];
        memcpy(v->name, line, (size_t)(eq - line));
        v->name[eq - line] = '\0';
        const char *hex = eq + 3;
        size_t hl = strlen(hex);
        if (hl == 0 || hl % 2 != 0 || (v->bytes = malloc(hl / 2)) == NULL) {
            bad = 1;
            break;
        }
        for (size_t i = 0; i < hl / 2; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                bad = 1;
                break;
            }
            v->bytes[i] = (uint8_t)(hi << 4 | lo);
        }
        v->len = hl / 2;
        t->n++;
    }
    fclose(f);
    if (bad) {
        fprintf(stderr, "rfc8448: %s: malformed line\n", file);
        rfc8448_free(t);
        return NULL;
    }
    return t;
}

const uint8_t *rfc8448_get(const struct rfc8448 *t, const char *name, size_t *len_p)
{
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        if (strcmp(t->v[i].name, name) == 0) {
            if (len_p != NULL)
                *len_p = t->v[i].len;
            return t->v[i].bytes;
        }
    }
    if (len_p != NULL)
        *len_p = 0;
    return NULL;
}

const uint8_t *rfc8448_must(const struct rfc8448 *t, const char *name, size_t *len_p)
{
    const uint8_t *p = rfc8448_get(t, name, len_p);
    if (p == NULL) {
        printf("Bail out! rfc8448 value %s missing\n", name);
        exit(1);
    }
    return p;
}

uint8_t *rfc8448_read_file(const char *file, size_t *len_p)
{
    FILE *f = open_data(file, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    uint8_t *p = malloc(cap);
    if (p != NULL)
        len = fread(p, 1, cap, f);
    if (p != NULL && (ferror(f) || len == cap)) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len_p = p != NULL ? len : 0;
    return p;
}

void rfc8448_free(struct rfc8448 *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].bytes);
    free(t);
}
