/*
 * cli.h - the command line both daemons share.
 *
 *   PROG --config FILE | --config=FILE [--check-config] [--trace]
 *   PROG --version | --help | -h
 *
 * One parser so that both processes take the same flags in the same spellings; a flag
 * one of them does not have (--trace for the signer) is refused by that one like any
 * unknown argument. --version prints the version and the git commit the binary was
 * built from (KL_VERSION, KL_GIT_COMMIT from CMake).
 */
#ifndef KL_CLI_H
#define KL_CLI_H

#include <stddef.h>
#include "kl_err.h"

#define KL_CLI_TRACE 0x1u /* allow --trace */

struct kl_cli {
    const char *config; /* --config FILE: points into argv */
    int check_config;
    int trace;
    int version;
    int help;
};

/*
 * Parse argv[1..argc) into *o (zeroed first). allow: KL_CLI_* flags this program takes.
 * 0, or KL_ERR_INVALID with one line in err ("unknown argument '--x'", "--config needs a
 * file", "--config given twice", "no --config FILE") when the command line is not valid.
 * --version and --help need no --config.
 */
KL_MUST_CHECK int kl_cli_parse(struct kl_cli *o, int argc, char *const *argv, unsigned allow, char *err,
                               size_t err_len);

/* "PROG VERSION (git COMMIT)": what --version prints. */
const char *kl_cli_version(const char *prog, char *buf, size_t buf_len);

#endif
