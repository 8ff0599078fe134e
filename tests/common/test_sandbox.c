/*
 * test_sandbox.c - common/sandbox: in forked children, a filtered process keeps working
 * for what its role needs and is killed (SIGSYS) by a forbidden system call (execve,
 * ptrace, a new process, a signer-only call in the frontend, set*id); names added with
 * the extra list are allowed, unknown names refused; the privilege drop (root only) keeps
 * only CAP_NET_BIND_SERVICE until sandbox_drop_caps(), cannot be undone and leaves the
 * process undumpable.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "kl_test.h"
#include "sandbox.h"

enum act { ACT_WORK, ACT_EXECVE, ACT_PTRACE, ACT_FORK, ACT_RENAME, ACT_SETUID };

static int thread_token;

static void *thread_main(void *arg)
{
    return arg;
}

/* What a child does after the filter is on. Returns the exit code if it survives. */
static int act(enum act a)
{
    char *const argv[] = {(char *)"/bin/true", NULL};
    pthread_t t;
    void *r = NULL;
    switch (a) {
    case ACT_WORK:
        /* The common list: write, time, a thread (clone with CLONE_THREAD; clone3 is ENOSYS). */
        if (write(STDOUT_FILENO, "", 0) != 0 || getpid() <= 0 ||
            pthread_create(&t, NULL, thread_main, &thread_token) != 0 || pthread_join(t, &r) != 0 ||
            r != &thread_token) {
            return 3;
        }
        return 0;
    case ACT_EXECVE:
        execv("/bin/true", argv);
        return 4; /* refused with an errno instead of a kill */
    case ACT_PTRACE:
        (void)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        return 5;
    case ACT_FORK: {
        pid_t p = fork();
        if (p == 0) {
            _exit(0);
        }
        return 6;
    }
    case ACT_RENAME:
        (void)rename("/nonexistent/a", "/nonexistent/b");
        return 7;
    case ACT_SETUID:
        return setuid(getuid()) == 0 ? 8 : 9;
    }
    return 9;
}

/* Run act a in a child under role's filter (+ extra). The wait status, or -1. */
static int run_child(enum sandbox_role role, const char *const *extra, size_t n_extra, enum act a)
{
    int st;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char err[256];
        if (sandbox_apply(role, extra, n_extra, err, sizeof(err)) != 0) {
            fprintf(stderr, "# %s\n", err);
            _exit(2);
        }
        _exit(act(a));
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid) {
        return -1;
    }
    return st;
}

static const char *status_field(const char *name, char *buf, size_t cap);

static int killed_by_sigsys(int st)
{
    return st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
}

static int exited(int st, int code)
{
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == code;
}

static void test_filter(void)
{
    static const char *const add_setuid[] = {"setuid"};
    static const char *const unknown[] = {"not_a_syscall"};
    char err[256] = "";

    ok(sandbox_syscall_known("read") && sandbox_syscall_known("execve") && sandbox_syscall_known("ioprio_get"),
       "sandbox_syscall_known: real names");
    ok(!sandbox_syscall_known("not_a_syscall") && !sandbox_syscall_known("") && !sandbox_syscall_known(NULL),
       "sandbox_syscall_known: unknown, empty, NULL");

    ok(exited(run_child(SANDBOX_SIGNER, NULL, 0, ACT_WORK), 0), "signer filter: write, getpid, a thread still work");
    ok(exited(run_child(SANDBOX_FRONTEND, NULL, 0, ACT_WORK), 0), "frontend filter: the same");
    ok(exited(run_child(SANDBOX_SIGNER, NULL, 0, ACT_RENAME), 7), "signer filter: rename allowed (audit rotation)");

    ok(killed_by_sigsys(run_child(SANDBOX_SIGNER, NULL, 0, ACT_EXECVE)), "signer filter: execve kills the process");
    ok(killed_by_sigsys(run_child(SANDBOX_FRONTEND, NULL, 0, ACT_EXECVE)), "frontend filter: execve kills the process");
    ok(killed_by_sigsys(run_child(SANDBOX_FRONTEND, NULL, 0, ACT_RENAME)),
       "frontend filter: rename (signer-only) kills the process");
    ok(killed_by_sigsys(run_child(SANDBOX_SIGNER, NULL, 0, ACT_SETUID)), "signer filter: setuid kills the process");
    ok(killed_by_sigsys(run_child(SANDBOX_SIGNER, NULL, 0, ACT_PTRACE)), "signer filter: ptrace kills the process");
    ok(killed_by_sigsys(run_child(SANDBOX_FRONTEND, NULL, 0, ACT_FORK)),
       "frontend filter: fork (clone without CLONE_THREAD) kills the process");

    ok(exited(run_child(SANDBOX_SIGNER, add_setuid, 1, ACT_SETUID), 8),
       "extra = setuid (as a vendor module would add a name): now allowed");
    ok(exited(run_child(SANDBOX_SIGNER, unknown, 1, ACT_WORK), 2), "extra = an unknown name: sandbox_apply fails");
    is_int(sandbox_apply(SANDBOX_SIGNER, unknown, 1, err, sizeof(err)), KL_ERR_INVALID,
           "unknown extra name: KL_ERR_INVALID");
    ok(strstr(err, "unknown system call 'not_a_syscall'") != NULL, "... naming it");
    char sc[32];
    ok(strcmp(status_field("Seccomp", sc, sizeof(sc)), "0") == 0,
       "... and this process was left unfiltered (Seccomp: 0)");
}

/* The value of a /proc/self/status field (without its newline). */
static const char *status_field(const char *name, char *buf, size_t cap)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = strlen(name);
    buf[0] = '\0';
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ':' && line[n + 1] == '\t') {
            snprintf(buf, cap, "%s", line + n + 2);
            buf[strcspn(buf, "\n")] = '\0';
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return buf;
}

static const char *cap_eff(char *buf, size_t cap)
{
    return status_field("CapEff", buf, cap);
}

/* bind 127.0.0.1:port; 0, or errno. */
static int try_bind(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), e = 0;
    int one = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        e = errno;
    }
    close(fd);
    return e;
}

/* A privileged port free now (root), or 0. */
static int free_low_port(void)
{
    for (int p = 1023; p > 900; p--) {
        if (try_bind(p) == 0) {
            return p;
        }
    }
    return 0;
}

static void test_drop(void)
{
    char err[256] = "";
    int st = 0, port;
    pid_t pid;
    is_int(sandbox_drop_user(0, 0, 0, err, sizeof(err)), KL_ERR_INVALID, "sandbox_drop_user to uid 0: refused");
    if (getuid() != 0) {
        skip("the privilege drop", "needs root");
        return;
    }
    port = free_low_port();
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char caps[32];
        if (sandbox_drop_user(65534, 65534, 1, err, sizeof(err)) != 0) {
            _exit(10);
        }
        if (getuid() != 65534 || geteuid() != 65534 || getgid() != 65534 || getegid() != 65534) {
            _exit(11);
        }
        if (setuid(0) == 0 || seteuid(0) == 0) {
            _exit(12);
        }
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
            _exit(13);
        }
        if (strcmp(cap_eff(caps, sizeof(caps)), "0000000000000400") != 0) {
            _exit(14); /* CAP_NET_BIND_SERVICE (bit 10) only */
        }
        if (port != 0 && try_bind(port) != 0) {
            _exit(15);
        }
        if (sandbox_drop_caps(err, sizeof(err)) != 0 || strcmp(cap_eff(caps, sizeof(caps)), "0000000000000000") != 0) {
            _exit(16);
        }
        if (port != 0 && try_bind(port) != EACCES) {
            _exit(17);
        }
        _exit(0);
    }
    ok(pid > 0 && waitpid(pid, &st, 0) == pid, "drop child ran");
    is_int(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st), 0,
           "drop to 65534 with keep_bind: ids changed, root not regained, undumpable, only CAP_NET_BIND_SERVICE "
           "(binds a port < 1024), then none (the same bind is EACCES)");
    if (port == 0) {
        diag("no free port below 1024: the bind checks were not run");
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char caps[32];
        _exit(sandbox_drop_user(65534, 65534, 0, err, sizeof(err)) == 0 &&
                      strcmp(cap_eff(caps, sizeof(caps)), "0000000000000000") == 0 && setgid(0) != 0
                  ? 0
                  : 1);
    }
    ok(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
       "drop without keep_bind: no capability at all, setgid(0) refused");
}

int main(void)
{
    test_filter();
    test_drop();
    return kl_test_done();
}
