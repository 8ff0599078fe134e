/*
 * runas.c - user = / group = for both daemons' configurations (runas.h).
 */
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "runas.h"

int kl_runas_user(struct kl_ini *ini, const char *value, char **name_p, uint32_t *uid_p, uint32_t *gid_p, int has_group)
{
    struct passwd *pw = getpwnam(value);
    uint64_t v;
    if (pw == NULL && kl_ini_parse_uint(&v, value, 0, UINT32_MAX - 1) == 0) {
        pw = getpwuid((uid_t)v);
    }
    if (pw == NULL) {
        return kl_ini_fail(ini, "no such user '%s'", value);
    }
    if (pw->pw_uid == 0) {
        return kl_ini_fail(ini, "'%s' is root: name the unprivileged user to run as", value);
    }
    free(*name_p); /* a second user = line replaces the first */
    if ((*name_p = strdup(pw->pw_name)) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    *uid_p = pw->pw_uid;
    if (!has_group) {
        *gid_p = pw->pw_gid; /* the user's primary group unless group = is given */
    }
    return 0;
}

int kl_runas_group(struct kl_ini *ini, const char *value, uint32_t *gid_p)
{
    struct group *gr = getgrnam(value);
    uint64_t v;
    if (gr != NULL) {
        *gid_p = gr->gr_gid;
        return 0;
    }
    if (kl_ini_parse_uint(&v, value, 0, UINT32_MAX - 1) == 0) {
        *gid_p = (uint32_t)v;
        return 0;
    }
    return kl_ini_fail(ini, "no such group '%s'", value);
}
