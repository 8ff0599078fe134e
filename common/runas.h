/*
 * runas.h - the `user =` and `group =` keys of both daemons' configurations: whom to drop
 * root to once the privileged start-up is done (frontend: the listening sockets; signer:
 * the token, socket and audit log). One implementation, so that both accept the same
 * values and say the same thing about a bad one.
 */
#ifndef KL_RUNAS_H
#define KL_RUNAS_H

#include <stdint.h>
#include "kl_ini.h"

/*
 * user = NAME or uid, as a kl_ini custom setter's body: its passwd entry gives the name
 * (strdup'ed into *name_p, which must be NULL or is freed first), the uid and, unless
 * has_group (a group = line came first), the primary group into *gid_p. root is refused.
 * 0, or kl_ini_fail()'s KL_ERR_CONFIG: "no such user 'X'", "'X' is root: ...", "out of memory".
 */
int kl_runas_user(struct kl_ini *ini, const char *value, char **name_p, uint32_t *uid_p, uint32_t *gid_p,
                  int has_group);

/*
 * group = NAME or gid: a group name, else a number (a gid needs no group entry to be
 * set). 0 with *gid_p set, or kl_ini_fail()'s KL_ERR_CONFIG: "no such group 'X'".
 */
int kl_runas_group(struct kl_ini *ini, const char *value, uint32_t *gid_p);

#endif
