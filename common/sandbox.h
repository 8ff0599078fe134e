/*
 * sandbox.h - what both daemons do to themselves once initialised (issue 13 §2, §5): drop
 * to an unprivileged user, stay undumpable, and confine the system calls they can make
 * with a seccomp-bpf allow-list (libseccomp; common/sandbox.c is the only file that
 * includes it, tests/lint/check-layering.sh rule `seccomp-include`).
 *
 * The allow-lists are per role: what glibc, common/ev and logging need in both, plus
 * what the signer's PKCS#11 modules (SoftHSM2, p11-kit-client.so: files, locks, a Unix
 * socket, a module re-load after token trouble) and its audit log need, or what the
 * frontend's connections and reloads need. Everything else kills the whole process
 * (SCMP_ACT_KILL_PROCESS, logged by the kernel as a SECCOMP audit record naming the
 * syscall number): execve, ptrace, process_vm_*, mount, bpf, a new process (clone without
 * CLONE_THREAD; clone3 answers ENOSYS so glibc falls back to clone), and so on. A vendor
 * module that needs more adds names in the config (sandbox_allow).
 *
 * Sanitizer builds (KL_SANITIZE): LeakSanitizer stops the world at exit from a tracer
 * task made with clone() (no CLONE_THREAD) that ptraces every thread; under the filter
 * that task is killed and the process spins at exit. So the daemons ask
 * sandbox_supported() and run such builds unfiltered, saying why in one log line;
 * sandbox_apply() itself works the same in every build (tests/common/test_sandbox.c runs
 * it under ASan in children that never reach LeakSanitizer's exit check).
 */
#ifndef KL_SANDBOX_H
#define KL_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>
#include "kl_err.h"

enum sandbox_role { SANDBOX_SIGNER, SANDBOX_FRONTEND };

/* 1 if the daemons should install the filter in this build; 0 in sanitizer builds, with
 * *why_p set to the one-line reason to log (static). */
int sandbox_supported(const char **why_p);

/* 1 if name is a system call libseccomp knows on this architecture, else 0. */
int sandbox_syscall_known(const char *name);

/*
 * Install the filter of role on every thread of the process (TSYNC) and set no_new_privs.
 * extra (n_extra names, each sandbox_syscall_known) are allowed on top. Irreversible.
 * 0, or KL_ERR_IO / KL_ERR_INVALID with one line in err (err_len bytes) saying why; the
 * process is left unfiltered on error.
 */
KL_MUST_CHECK int sandbox_apply(enum sandbox_role role, const char *const *extra, size_t n_extra, char *err,
                                size_t err_len);

/*
 * Become uid/gid for good (setgroups to gid alone, setresgid, setresuid) and check that
 * it held: every id is the new one and setuid(0) fails. keep_bind = 1 keeps
 * CAP_NET_BIND_SERVICE (only that) so that worker processes forked later can still bind
 * a port below 1024; they drop it with sandbox_drop_caps() once bound. Sets
 * PR_SET_DUMPABLE 0 again afterwards (the id change resets it). Must run before any
 * thread is started. 0, or KL_ERR_IO with one line in err; aborts if the drop seemed to
 * work but root can be regained (never serve with root in reach).
 */
KL_MUST_CHECK int sandbox_drop_user(uid_t uid, gid_t gid, int keep_bind, char *err, size_t err_len);

/*
 * Drop every capability left (the CAP_NET_BIND_SERVICE sandbox_drop_user kept) and set
 * PR_SET_DUMPABLE 0. Nothing to do for a root process that never dropped (0). 0, or
 * KL_ERR_IO with one line in err.
 */
KL_MUST_CHECK int sandbox_drop_caps(char *err, size_t err_len);

#endif
