/*
 * keyless-frontend: the internet-facing TLS 1.3 terminator. It holds no private key
 * and does not link PKCS#11: every CertificateVerify signature comes from
 * keyless-signer over a Unix socket.
 *
 * The main process parses the configuration, loads the certificates, checks them
 * against the signer's keys (ListKeys), then runs one worker in-process or forks
 * `workers` of them (each with its own SO_REUSEPORT listeners and signer connection),
 * forwarding SIGHUP and SIGTERM to them.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "config.h"
#include "cli.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "sd_notify.h"
#include "sandbox.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: keyless-frontend --config FILE [--check-config] [--trace]\n"
               "       keyless-frontend --version\n"
               "  --config FILE    the INI configuration (also --config=FILE; see docs/FRONTEND.md)\n"
               "  --check-config   parse the configuration and the certificates, then exit (0 = valid)\n"
               "  --trace          print each handshake's steps with their timings\n");
}

static volatile sig_atomic_t got_signal[65];

static void on_signal(int signo)
{
    if (signo > 0 && signo < 65) {
        got_signal[signo] = 1;
    }
}

/* A worker that dies is restarted after this long, doubling up to the maximum; the delay
   goes back to the minimum once a worker has lived WORKER_STABLE_MS. */
#define WORKER_BACKOFF_MIN_MS 100
#define WORKER_BACKOFF_MAX_MS 10000
#define WORKER_STABLE_MS 30000

struct worker_slot {
    pid_t pid;           /* 0: not running */
    uint64_t started_ms; /* when it was forked */
    uint64_t restart_at; /* 0: no restart pending */
    uint32_t backoff_ms; /* the delay before its next restart */
};

/* Fork worker i with the signal state a worker expects. 0, or -1 (logged). */
static int spawn_worker(struct fe_gen *gen, unsigned i, int trace, const sigset_t *old, struct worker_slot *slots)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_warn("fork of worker %u", i);
        return -1;
    }
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, old, NULL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        free(slots);
        _exit(server_run_worker(gen, i, trace));
    }
    slots[i].pid = pid;
    slots[i].started_ms = kl_clock_ms();
    slots[i].restart_at = 0;
    return 0;
}

static void signal_workers(const struct worker_slot *slots, unsigned n, int signo)
{
    for (unsigned i = 0; i < n; i++) {
        if (slots[i].pid > 0) {
            kill(slots[i].pid, signo);
        }
    }
}

/*
 * SIGHUP in the main process: the workers reload themselves; the main process loads the
 * same configuration too, checked against the signer the way a worker checks it, so that
 * a worker restarted later starts from what the others now serve, not from the
 * configuration of the start. On any failure the current generation is kept (the workers
 * keep theirs too, and say why).
 */
static struct fe_gen *reload_for_restarts(struct fe_gen *gen)
{
    char err[CONFIG_ERR_LEN];
    struct config *cfg = NULL;
    struct fe_gen *next = NULL;
    if (config_load(&cfg, err, gen->cfg->path) != 0) {
        return gen;
    }
    if (!config_same_listeners(cfg, gen->cfg)) {
        config_free(cfg);
        return gen;
    }
    if (gen_new(&next, err, sizeof(err), cfg) != 0) {
        return gen;
    }
    if (gen_check_signer(next, err, sizeof(err)) != 0) {
        gen_unref(next);
        return gen;
    }
    gen_unref(gen);
    return next;
}

/*
 * The main process of a multi-worker frontend: forks the workers, forwards SIGHUP and
 * SIGTERM, and restarts a worker that died on its own with exponential backoff while the
 * others keep serving (each has its own SO_REUSEPORT listeners). Returns the exit code:
 * 0 when every worker drained and exited 0 after SIGTERM.
 */
static int supervise(struct fe_gen *gen, int trace)
{
    unsigned n = gen->cfg->workers;
    struct worker_slot *slots = calloc(n, sizeof(*slots));
    if (slots == NULL) {
        return 1;
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    unsigned alive = 0;
    int stopping = 0, code = 0;
    for (unsigned i = 0; i < n; i++) {
        slots[i].backoff_ms = WORKER_BACKOFF_MIN_MS;
        if (spawn_worker(gen, i, trace, &old, slots) != 0) {
            code = 1;
            stopping = 1;
            signal_workers(slots, n, SIGTERM);
            break;
        }
        alive++;
    }
    if (!stopping) {
        log_info("started %u workers", alive);
        (void)kl_sd_notify("READY=1");
    }
    for (;;) {
        int pending = 0;
        uint64_t now = kl_clock_ms(), next = UINT64_MAX;
        for (unsigned i = 0; i < n && !stopping; i++) {
            if (slots[i].restart_at != 0 && slots[i].restart_at <= now) {
                if (spawn_worker(gen, i, trace, &old, slots) == 0) {
                    alive++;
                    log_info("worker %u restarted (pid %d)", i, (int)slots[i].pid);
                } else {
                    slots[i].restart_at = now + slots[i].backoff_ms; /* try again later */
                }
            }
            if (slots[i].restart_at != 0) {
                pending = 1;
                next = slots[i].restart_at < next ? slots[i].restart_at : next;
            }
        }
        if (alive == 0 && (stopping || !pending)) {
            break;
        }
        if (next == UINT64_MAX) {
            sigsuspend(&old);
        } else {
            /* sigsuspend with a deadline: signals are unblocked only while waiting. */
            uint64_t wait_ms = next > now ? next - now : 0;
            struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
            ppoll(NULL, 0, &ts, &old);
        }
        if (got_signal[SIGHUP]) {
            got_signal[SIGHUP] = 0;
            (void)kl_sd_notify("RELOADING=1");
            signal_workers(slots, n, SIGHUP);
            gen = reload_for_restarts(gen);
            (void)kl_sd_notify("READY=1");
        }
        if (got_signal[SIGTERM] || got_signal[SIGINT]) {
            got_signal[SIGTERM] = got_signal[SIGINT] = 0;
            (void)kl_sd_notify("STOPPING=1");
            stopping = 1;
            signal_workers(slots, n, SIGTERM);
        }
        got_signal[SIGCHLD] = 0;
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (unsigned i = 0; i < n; i++) {
                if (slots[i].pid != pid) {
                    continue;
                }
                slots[i].pid = 0;
                alive--;
                int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (stopping) {
                    if (!clean) {
                        code = 1;
                    }
                    continue;
                }
                /* A worker died on its own: the others keep serving; restart it with backoff. */
                uint64_t lived = kl_clock_ms() - slots[i].started_ms;
                if (lived >= WORKER_STABLE_MS) {
                    slots[i].backoff_ms = WORKER_BACKOFF_MIN_MS;
                }
                slots[i].restart_at = kl_clock_ms() + slots[i].backoff_ms;
                metrics_add(METRIC_WORKER_RESTARTS, 1);
                log_warnx("worker %u (pid %d) ended unexpectedly (%s %d) after %llu ms; restarting it in %u ms", i,
                          (int)pid, WIFSIGNALED(status) ? "signal" : "exit status",
                          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), (unsigned long long)lived,
                          slots[i].backoff_ms);
                slots[i].backoff_ms =
                    slots[i].backoff_ms >= WORKER_BACKOFF_MAX_MS / 2 ? WORKER_BACKOFF_MAX_MS : slots[i].backoff_ms * 2;
            }
        }
    }
    free(slots);
    gen_unref(gen);
    return code;
}

/*
 * Each worker binds its listeners with SO_REUSEPORT, which would also let a second
 * keyless-frontend (same user) bind the same address and silently take half of the
 * connections. A socket bound *without* SO_REUSEPORT cannot share a port with one that
 * has it, in either order, so a probe bind here fails while anything - another frontend
 * included - holds the address. The probe is closed before the workers bind.
 */
static int probe_address(const char *what, const struct config_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        log_diag("%s %s: cannot make a socket: %s", what, a->text, strerror(errno));
        return -1;
    }
    /* SO_REUSEADDR only: TIME_WAIT connections of an earlier run do not block a restart. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
        int e = errno;
        close(fd);
        log_diag("%s %s: %s%s", what, a->text, strerror(e),
                 e == EADDRINUSE ? " (is another keyless-frontend running on it?)" : "");
        return -1;
    }
    close(fd);
    return 0;
}

static int probe_listeners(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (probe_address("listen", &cfg->listeners[i].listen) != 0) {
            return -1;
        }
    }
    if (cfg->metrics.len != 0 && probe_address("metrics", &cfg->metrics) != 0) {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    log_init("keyless-frontend");
    if (kl_sd_notify_init() != 0) {
        log_warnx("NOTIFY_SOCKET is not a usable socket address; not notifying the service manager");
    }
    struct kl_cli cli;
    char err[CONFIG_ERR_LEN];
    if (kl_cli_parse(&cli, argc, argv, KL_CLI_TRACE, err, sizeof(err)) != 0) {
        log_diag("%s", err);
        usage(stderr);
        return 2;
    }
    if (cli.help) {
        usage(stdout);
        return 0;
    }
    if (cli.version) {
        puts(kl_cli_version("keyless-frontend", err, sizeof(err)));
        return 0;
    }
    const char *path = cli.config;
    int check = cli.check_config, trace = cli.trace;
    struct config *cfg = NULL;
    if (config_load(&cfg, err, path) != 0) {
        log_diag("%s", err);
        return 2;
    }
    log_level = cfg->log_level;
    log_format = cfg->log_format;
    /* [frontend] user = needs root to switch to it: refused before anything is opened. */
    if (cfg->has_user && geteuid() != 0) {
        log_diag("%s:%u: [frontend] user: set to '%s', but the frontend is not running as root (uid %u): remove "
                 "user/group, or start it as root",
                 path, cfg->user_line, cfg->user_name, (unsigned)geteuid());
        config_free(cfg);
        return 2;
    }
    struct fe_gen *gen = NULL;
    if (gen_new(&gen, err, sizeof(err), cfg) != 0) {
        log_diag("%s", err);
        return 2;
    }
    if (check) {
        log_diag("%s: configuration OK (%zu listeners, %zu certificates)\n", path, gen->cfg->n_listeners,
                 gen->cfg->n_certs);
        gen_unref(gen);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (metrics_init() != 0) {
        log_warnx("cannot map the shared metrics");
        gen_unref(gen);
        return 1;
    }
    if (probe_listeners(gen->cfg) != 0) {
        gen_unref(gen);
        return 1;
    }
    /* Issue 13 §2: the internet-facing process gives up root before it talks to the signer
     * (which then sees the frontend's uid) or to a client. Only CAP_NET_BIND_SERVICE is
     * kept, for the workers (also those restarted later) to bind their listeners; each
     * worker drops it once bound (worker.c), so no serving process holds a capability. */
    if (gen->cfg->has_user) {
        if (sandbox_drop_user(gen->cfg->run_uid, gen->cfg->run_gid, 1, err, sizeof(err)) != 0) {
            log_diag("%s:%u: [frontend] user: %s: %s", path, gen->cfg->user_line, gen->cfg->user_name, err);
            gen_unref(gen);
            return 1;
        }
        log_info("running as %s (uid %u, gid %u)", gen->cfg->user_name, (unsigned)gen->cfg->run_uid,
                 (unsigned)gen->cfg->run_gid);
    }
    if (gen_check_signer(gen, err, sizeof(err)) != 0) {
        log_diag("%s", err);
        gen_unref(gen);
        return 1;
    }
    for (size_t i = 0; i < gen->cfg->n_certs; i++) {
        log_info("certificate %s: %s, signer key '%s', %zu scheme(s), %zu name(s)", gen->cfg->certs[i].chain_path,
                 gen->certs[i].key_desc, gen->cfg->certs[i].key_name, gen->tls_certs[i].n_schemes,
                 gen->certs[i].n_names);
    }
    if (gen->cfg->keylog_file != NULL) {
        log_warnx("WARNING: keylog_file is set: TLS secrets of every connection are written to %s; "
                  "anyone who can read it can decrypt the traffic. Use for debugging only.",
                  gen->cfg->keylog_file);
    }
    /* Issue 11: the ticket keys and the 0-RTT register, shared by the workers forked below. */
    if (server_shared_init(gen, err, sizeof(err)) != 0) {
        log_diag("%s", err);
        gen_unref(gen);
        return 2;
    }
    int code = gen->cfg->workers <= 1 ? server_run_worker(gen, 0, trace) : supervise(gen, trace);
    server_shared_free();
    return code;
}
