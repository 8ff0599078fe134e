/*
 * sockdir.c - socket directory permissions and the listening socket.
 */
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sockdir.h"

/* Does something accept on the socket at path (another signer)? */
static int socket_in_use(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), in_use;
    if (fd < 0) {
        return 0;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path)); /* length checked by the caller */
    in_use = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return in_use;
}

/*
 * Directories many users share: a socket there could be replaced or raced by any of them,
 * and chmod'ing them would break the system. Refused by name as well as by mode, since
 * /run is 0755 root but still not ours to put a bare socket in.
 */
static int dir_is_shared(const char *dir, const struct stat *st)
{
    static const char *const shared[] = {"/",        "/tmp",     "/var/tmp",  "/run",
                                         "/var/run", "/dev/shm", "/run/user", "/run/lock"};
    char real[4096];
    if ((st->st_mode & (S_IWOTH | S_ISVTX)) != 0) {
        return 1;
    }
    if (realpath(dir, real) == NULL) {
        return 1; /* cannot tell: refuse */
    }
    for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++) {
        if (strcmp(real, shared[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * The directory of the socket. Made by us (0750, socket_group): tightened as we like.
 * There already: used as it is and never chmod'ed (issue 13 §2), but refused when it is
 * shared (world-writable, sticky, /tmp, /run, ...) or owned by another user than the
 * signer's or root, since its owner could replace the socket.
 */
static int dir_setup(const struct signer_config *cfg, const char *dir)
{
    struct stat st;
    int created;

    if (cfg_mkdir_parents(dir, 0755) != 0) {
        log_errx("%s: [signer] socket: cannot create the parents of %s: %s", cfg->path, dir, strerror(errno));
        return KL_ERR_CONFIG;
    }
    created = mkdir(dir, 0750) == 0;
    if (!created && errno != EEXIST) {
        log_errx("%s: [signer] socket: cannot create directory %s: %s", cfg->path, dir, strerror(errno));
        return KL_ERR_CONFIG;
    }
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_errx("%s: [signer] socket: %s is not a directory (a symlink is not followed)", cfg->path, dir);
        return KL_ERR_CONFIG;
    }
    if (!created) {
        if (dir_is_shared(dir, &st)) {
            log_errx("%s: [signer] socket: %s is a shared directory (mode %04o): put the socket in a directory "
                     "of its own (e.g. /run/keyless/signer.sock); it is never chmod'ed",
                     cfg->path, dir, (unsigned)(st.st_mode & 07777));
            return KL_ERR_CONFIG;
        }
        if (st.st_uid != geteuid() && st.st_uid != 0) {
            log_errx("%s: [signer] socket: directory %s belongs to uid %u, not to the signer's user or root", cfg->path,
                     dir, (unsigned)st.st_uid);
            return KL_ERR_CONFIG;
        }
        return 0;
    }
    if (chmod(dir, 0750) != 0 || (cfg->has_socket_gid && chown(dir, (uid_t)-1, cfg->socket_gid) != 0)) {
        log_errx("%s: [signer] socket_group: cannot set mode/group of %s: %s", cfg->path, dir, strerror(errno));
        return KL_ERR_CONFIG;
    }
    return 0;
}

int sockdir_listen(int *fd_p, const struct signer_config *cfg)
{
    char *dup = strdup(cfg->socket_path);
    char *dir = dup != NULL ? dirname(dup) : NULL;
    struct sockaddr_un sa;
    struct stat st;
    int fd = -1;
    int ret = 0;

    *fd_p = -1;
    KL_ENSURE(dir != NULL, KL_ERR_NO_MEMORY);
    if (strlen(cfg->socket_path) >= sizeof(sa.sun_path)) {
        log_errx("%s: [signer] socket: path longer than %zu bytes", cfg->path, sizeof(sa.sun_path) - 1);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    KL_TRY(dir_setup(cfg, dir));
    if (lstat(cfg->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_errx("%s: [signer] socket: %s exists and is not a socket", cfg->path, cfg->socket_path);
            KL_ENSURE(0, KL_ERR_CONFIG);
        }
        if (socket_in_use(cfg->socket_path)) {
            log_errx("%s: [signer] socket: %s is in use by a running process", cfg->path, cfg->socket_path);
            KL_ENSURE(0, KL_ERR_CONFIG);
        }
        (void)unlink(cfg->socket_path); /* stale socket of an earlier run */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    KL_ENSURE(fd >= 0, KL_ERR_IO);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, cfg->socket_path, strlen(cfg->socket_path));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(cfg->socket_path, 0660) != 0 ||
        (cfg->has_socket_gid && chown(cfg->socket_path, (uid_t)-1, cfg->socket_gid) != 0) || listen(fd, 128) != 0) {
        log_errx("%s: [signer] socket: cannot listen on %s: %s", cfg->path, cfg->socket_path, strerror(errno));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    *fd_p = fd;
    fd = -1;
exit:
    if (fd >= 0) {
        close(fd);
    }
    free(dup);
    return ret;
}
