/*
 * rfc8448.h - test-only loader for the RFC 8448 trace files ($KL_TESTDATA/rfc8448/<file>).
 *
 * A file is "name = hex" lines (see the README there). rfc8448_load reads the whole file;
 * rfc8448_get returns a value's bytes, owned by the trace and valid until rfc8448_free.
 */
#ifndef KL_TEST_RFC8448_H
#define KL_TEST_RFC8448_H

#include <stddef.h>
#include <stdint.h>

struct rfc8448;

/* Load $KL_TESTDATA/rfc8448/<file> (e.g. "simple-1rtt.txt"). NULL (with a message on stderr) on failure. */
struct rfc8448 *rfc8448_load(const char *file);
/* The value called name, or NULL if absent. *len_p gets its length. */
const uint8_t *rfc8448_get(const struct rfc8448 *t, const char *name, size_t *len_p);
/* Like rfc8448_get, but a missing value aborts the test binary (the trace files are fixed). */
const uint8_t *rfc8448_must(const struct rfc8448 *t, const char *name, size_t *len_p);
/* Read a whole binary file $KL_TESTDATA/rfc8448/<file> (e.g. "server-cert.der"); free() it. NULL on failure. */
uint8_t *rfc8448_read_file(const char *file, size_t *len_p);
void rfc8448_free(struct rfc8448 *t);

#endif
