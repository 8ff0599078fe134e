/*
 * sandbox.c - privilege drop, capabilities and the seccomp allow-lists (libseccomp).
 */
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#include "sandbox.h"

static void fail_msg(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail_msg(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || err_len == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/*
 * Both daemons: the C library, threads, memory, time, the epoll loop (common/ev: epoll,
 * eventfd, signalfd, timerfd), logging to stderr, reading files (config reloads, PIN and
 * token files), and Unix/TCP sockets they already hold or open again (the signer client's
 * reconnect, p11-kit-client.so's socket). No exec, no ptrace, no new process.
 */
static const char *const allow_common[] = {
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "close",
    "close_range",
    "fstat",
    "newfstatat",
    "stat",
    "lstat",
    "statx",
    "lseek",
    "openat",
    "open",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "pipe2",
    "ioctl",
    "flock",
    "fsync",
    "fdatasync",
    "ftruncate",
    "getcwd",
    "umask",
    "uname",
    "sysinfo",
    /* memory */
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "mlock",
    "munlock",
    "mlock2",
    "membarrier",
    /* threads, signals, time */
    "futex",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "set_tid_address",
    "exit",
    "exit_group",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigtimedwait",
    "sigaltstack",
    "restart_syscall",
    "tgkill",
    "tkill",
    "sched_yield",
    "sched_getaffinity",
    "getpriority",
    "prlimit64",
    "getrlimit",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getrandom",
    /* identity (read only: set*id is not in the list) */
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    /* the event loop */
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd2",
    "signalfd4",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    /* sockets */
    "socket",
    "connect",
    "accept",
    "accept4",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    "shutdown",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "socketpair",
};

/* The signer: audit log rotation and its directory, the socket's unlink at stop, SoftHSM2
 * token files and locks, a module re-load after token trouble (dlopen: the common list). */
static const char *const allow_signer[] = {
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "link",
    "linkat",
    "fchmod",
    "fchown",
    "chmod",
    "fallocate",
    "statfs",
    "fstatfs",
    "fadvise64",
    "sched_setaffinity",
};

/* The frontend: the keylog file and SIGHUP reloads; splice for nothing else yet. */
static const char *const allow_frontend[] = {
    "kill",
    "statfs",
    "fstatfs",
    "fadvise64",
};

int sandbox_supported(const char **why_p)
{
#ifdef KL_SANITIZE
    *why_p = "built with sanitizers: LeakSanitizer's exit check runs a ptrace tracer in a new process, which "
             "the filter would kill (the process would then hang at exit)";
    return 0;
#else
    *why_p = NULL;
    return 1;
#endif
}

int sandbox_syscall_known(const char *name)
{
    return name != NULL && seccomp_syscall_resolve_name(name) != __NR_SCMP_ERROR;
}

/* Allow every name of list that this architecture has (a name it lacks is skipped: the
 * lists are shared by x86_64 and arm64, which lacks open, stat, poll, ...). */
static int allow_list(scmp_filter_ctx ctx, const char *const *list, size_t n, int must_exist, char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(list[i]);
        int rc;
        if (nr == __NR_SCMP_ERROR) {
            if (must_exist) {
                fail_msg(err, err_len, "sandbox: unknown system call '%s'", list[i]);
                return KL_ERR_INVALID;
            }
            continue;
        }
        if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)) != 0) {
            fail_msg(err, err_len, "sandbox: cannot allow '%s': %s", list[i], strerror(-rc));
            return KL_ERR_IO;
        }
    }
    return 0;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

int sandbox_apply(enum sandbox_role role, const char *const *extra, size_t n_extra, char *err, size_t err_len)
{
    int ret = 0, rc;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);

    KL_ENSURE(ctx != NULL, KL_ERR_NO_MEMORY);
    /* Every thread: the signer's workers and audit thread exist before this. */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc == 0) {
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
    }
    if (rc != 0) {
        fail_msg(err, err_len, "sandbox: cannot set the filter attributes: %s", strerror(-rc));
        KL_FAIL(KL_ERR_IO);
    }
    KL_TRY(allow_list(ctx, allow_common, N(allow_common), 0, err, err_len));
    if (role == SANDBOX_SIGNER) {
        KL_TRY(allow_list(ctx, allow_signer, N(allow_signer), 0, err, err_len));
    } else {
        KL_TRY(allow_list(ctx, allow_frontend, N(allow_frontend), 0, err, err_len));
    }
    /* A thread, never a process: clone only with CLONE_THREAD. */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (rc != 0) {
        fail_msg(err, err_len, "sandbox: cannot add the clone rule: %s", strerror(-rc));
        KL_FAIL(KL_ERR_IO);
    }
    /* clone3 takes its flags in memory the filter cannot read: ENOSYS makes glibc use clone. */
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc != 0) {
        fail_msg(err, err_len, "sandbox: cannot add the clone3 rule: %s", strerror(-rc));
        KL_FAIL(KL_ERR_IO);
    }
    KL_TRY(allow_list(ctx, extra, n_extra, 1, err, err_len));
    if ((rc = seccomp_load(ctx)) != 0) {
        fail_msg(err, err_len, "sandbox: cannot load the seccomp filter: %s", strerror(-rc));
        KL_FAIL(KL_ERR_IO);
    }
exit:
    if (ctx != NULL) {
        seccomp_release(ctx);
    }
    return ret;
}

static int caps_set(uint32_t keep)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    data[0].effective = data[0].permitted = keep;
    return (int)syscall(SYS_capset, &hdr, data);
}

static int caps_get(uint32_t *eff, uint32_t *perm)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) != 0) {
        return -1;
    }
    *eff = data[0].effective | data[1].effective;
    *perm = data[0].permitted | data[1].permitted;
    return 0;
}

int sandbox_drop_user(uid_t uid, gid_t gid, int keep_bind, char *err, size_t err_len)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    uint32_t keep = keep_bind ? (1u << CAP_NET_BIND_SERVICE) : 0, eff = 0, perm = 0;

    if (uid == 0) {
        fail_msg(err, err_len, "refusing to 'drop' to uid 0");
        return KL_ERR_INVALID;
    }
    /* KEEPCAPS: the permitted set survives the uid change, so CAP_NET_BIND_SERVICE can be
     * kept on its own; every other capability goes in caps_set() below. */
    if ((keep != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) || setgroups(1, &gid) != 0 ||
        setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        fail_msg(err, err_len, "cannot switch to uid %u gid %u: %s", (unsigned)uid, (unsigned)gid, strerror(errno));
        return KL_ERR_IO;
    }
    if ((keep != 0 && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) || caps_set(keep) != 0) {
        fail_msg(err, err_len, "cannot set the capabilities after the switch: %s", strerror(errno));
        return KL_ERR_IO;
    }
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != uid || eu != uid || su != uid ||
        rg != gid || eg != gid || sg != gid || caps_get(&eff, &perm) != 0 || eff != keep || perm != keep ||
        setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
        /* An invariant of the drop broke: never go on with root in reach. */
        fprintf(stderr, "privilege drop to uid %u did not hold; aborting\n", (unsigned)uid);
        abort();
    }
    /* The id change reset dumpability to the sysctl's choice: no core, no ptrace. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        fail_msg(err, err_len, "cannot clear the dumpable flag: %s", strerror(errno));
        return KL_ERR_IO;
    }
    return 0;
}

int sandbox_drop_caps(char *err, size_t err_len)
{
    uint32_t eff = 0, perm = 0;
    if (getuid() != 0 && (caps_set(0) != 0 || caps_get(&eff, &perm) != 0 || eff != 0 || perm != 0)) {
        fail_msg(err, err_len, "cannot drop the capabilities left: %s", strerror(errno));
        return KL_ERR_IO;
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        fail_msg(err, err_len, "cannot clear the dumpable flag: %s", strerror(errno));
        return KL_ERR_IO;
    }
    return 0;
}
