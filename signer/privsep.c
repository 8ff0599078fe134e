/*
 * privsep.c - hardening, privilege drop and access checks (moved out of main.c as is).
 */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "privsep.h"
#include "sandbox.h"

int privsep_harden(void)
{
    struct rlimit rl = {0, 0};
    /* The process will hold a logged-in session and, briefly, the PIN: no core file, no
     * ptrace attach by other processes of the same user. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || setrlimit(RLIMIT_CORE, &rl) != 0) {
        log_err("cannot disable core dumps");
        return -1;
    }
    /* The signer never execs: no setuid/file-capability gain through anything it (or a
     * PKCS#11 module) might run. Inherited by every thread created after this. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        log_err("cannot set no_new_privs");
        return -1;
    }
    umask(027);
    return 0;
}

int privsep_check_user(const struct signer_config *cfg)
{
    if (cfg->has_user && geteuid() != 0) {
        log_errx("%s:%u: [signer] user: set to '%s', but the signer is not running as root (uid %u): "
                 "remove user/group, or start it as root",
                 cfg->path, cfg->user_line, cfg->user_name, (unsigned)geteuid());
        return 2;
    }
    return 0;
}

/*
 * Recovery after token trouble logs in again and re-reads the PIN file (and SoftHSM2 its
 * config), as the dropped user: refuse to start with files that would make that fail
 * much later. Run after the drop (access() checks the real ids). 0, or 1 with one line.
 */
static int user_can_read(const struct signer_config *cfg)
{
    if (access(cfg->pin_file, R_OK) != 0) {
        log_errx("%s:%u: [hsm] pin_file: %s is not readable by user %s: %s (it is read again to log "
                 "in after token trouble)",
                 cfg->path, cfg->hsm_line, cfg->pin_file, cfg->user_name, strerror(errno));
        return 1;
    }
    if (cfg->softhsm2_conf != NULL && access(cfg->softhsm2_conf, R_OK) != 0) {
        log_errx("%s:%u: [hsm] softhsm2_conf: %s is not readable by user %s: %s", cfg->path, cfg->hsm_line,
                 cfg->softhsm2_conf, cfg->user_name, strerror(errno));
        return 1;
    }
    return 0;
}

int privsep_check_user_access(const struct signer_config *cfg)
{
    int st;
    pid_t pid;
    if (!cfg->has_user) {
        return 0;
    }
    pid = fork();
    if (pid < 0) {
        log_err("fork");
        return 1;
    }
    if (pid == 0) {
        if (setgroups(1, &cfg->run_gid) != 0 || setresgid(cfg->run_gid, cfg->run_gid, cfg->run_gid) != 0 ||
            setresuid(cfg->run_uid, cfg->run_uid, cfg->run_uid) != 0) {
            log_errx("%s:%u: [signer] user: cannot switch to %s: %s", cfg->path, cfg->user_line, cfg->user_name,
                     strerror(errno));
            _exit(1);
        }
        _exit(user_can_read(cfg));
    }
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            return 1;
        }
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int privsep_drop(const struct signer_config *cfg)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;

    if (!cfg->has_user) {
        return 0;
    }
    if (setgroups(1, &cfg->run_gid) != 0 || setresgid(cfg->run_gid, cfg->run_gid, cfg->run_gid) != 0 ||
        setresuid(cfg->run_uid, cfg->run_uid, cfg->run_uid) != 0) {
        log_errx("%s:%u: [signer] user: cannot switch to %s (uid %u, gid %u): %s", cfg->path, cfg->user_line,
                 cfg->user_name, (unsigned)cfg->run_uid, (unsigned)cfg->run_gid, strerror(errno));
        return 1;
    }
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 || ruid != cfg->run_uid ||
        euid != cfg->run_uid || suid != cfg->run_uid || rgid != cfg->run_gid || egid != cfg->run_gid ||
        sgid != cfg->run_gid || setuid(0) == 0 || seteuid(0) == 0) {
        /* An invariant of the drop broke: never go on serving with root in reach. */
        log_errx("privilege drop to %s did not hold; aborting", cfg->user_name);
        abort();
    }
    /* The id change reset dumpability to the sysctl's choice: no core file, no ptrace by
     * the new user's other processes (issue 13 §2). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        log_err("cannot clear the dumpable flag after the drop");
        return 1;
    }
    if (user_can_read(cfg) != 0) {
        return 1;
    }
    log_info("running as %s (uid %u, gid %u)", cfg->user_name, (unsigned)cfg->run_uid, (unsigned)cfg->run_gid);
    return 0;
}

int privsep_confine(const struct signer_config *cfg)
{
    char err[256];
    const char *why = NULL;
    if (!cfg->sandbox) {
        log_warnx("%s: [signer] sandbox = no: running without the seccomp filter", cfg->path);
        return 0;
    }
    if (!sandbox_supported(&why)) {
        log_warnx("no seccomp filter: %s", why);
        return 0;
    }
    if (sandbox_apply(SANDBOX_SIGNER, (const char *const *)cfg->sandbox_allow, cfg->n_sandbox_allow, err,
                      sizeof(err)) != 0) {
        log_errx("%s: [signer] sandbox: %s", cfg->path, err);
        return 1;
    }
    return 0;
}
