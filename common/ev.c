#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include "ev.h"
#include "clock.h"

#define EV_MAX_EVENTS 256

struct ev_loop {
    int epfd;
    uint64_t now;
    int stop;
    struct ev_io *changes;
    struct ev_timer **heap;
    size_t heap_len, heap_cap;
    struct ev_deferred *deferred;
    struct ev_io sig_io;
    ev_signal_cb sig_cb;
    void *sig_arg;
};

struct ev_loop *ev_loop_new(void)
{
    struct ev_loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        return NULL;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    loop->now = kl_clock_ms();
    loop->sig_io.fd = -1;
    return loop;
}

void ev_loop_free(struct ev_loop *loop)
{
    if (loop == NULL) {
        return;
    }
    if (loop->sig_io.fd >= 0) {
        close(loop->sig_io.fd);
    }
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

uint64_t ev_now(const struct ev_loop *loop)
{
    return loop->now;
}

void ev_io_init(struct ev_io *io, int fd, ev_io_cb cb, void *owner)
{
    memset(io, 0, sizeof(*io));
    io->fd = fd;
    io->registered = ~0u;
    io->cb = cb;
    io->owner = owner;
}

void ev_io_set(struct ev_loop *loop, struct ev_io *io, unsigned want)
{
    if (io->closed) {
        return;
    }
    io->want = want;
    unsigned cur = io->registered == ~0u ? 0 : io->registered;
    if (!io->queued && want != cur) {
        io->queued = 1;
        io->next_change = loop->changes;
        loop->changes = io;
    }
}

void ev_io_close(struct ev_loop *loop, struct ev_io *io)
{
    if (io->closed) {
        return;
    }
    if (io->queued) {
        for (struct ev_io **p = &loop->changes; *p != NULL; p = &(*p)->next_change) {
            if (*p == io) {
                *p = io->next_change;
                break;
            }
        }
        io->queued = 0;
    }
    /* Now, not at the end of the turn: the fd number may be reused before then. */
    if (io->registered != ~0u && io->fd >= 0) {
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    }
    io->registered = ~0u;
    io->closed = 1;
}

static uint32_t to_epoll(unsigned want)
{
    uint32_t e = 0;
    if (want & EV_READ) {
        e |= EPOLLIN;
    }
    if (want & EV_WRITE) {
        e |= EPOLLOUT;
    }
    if (want & EV_RDHUP) {
        e |= EPOLLRDHUP;
    }
    return e;
}

static void apply_changes(struct ev_loop *loop)
{
    while (loop->changes != NULL) {
        struct ev_io *io = loop->changes;
        loop->changes = io->next_change;
        io->queued = 0;
        if (io->closed || io->want == io->registered) {
            continue;
        }
        if (io->want == 0) {
            /* Removed rather than set to 0: epoll reports HUP and ERR even for an empty
               mask, and level-triggered that would spin while the owner is not listening. */
            if (io->registered != ~0u) {
                epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
                io->registered = ~0u;
            }
            continue;
        }
        struct epoll_event ev = {.events = to_epoll(io->want), .data.ptr = io};
        int op = io->registered == ~0u ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(loop->epfd, op, io->fd, &ev) != 0) {
            /* Only a bug gets here (bad fd); report it to the owner as an error event. */
            io->registered = ~0u;
            io->cb(loop, io, EV_ERROR);
            continue;
        }
        io->registered = io->want;
    }
}

/* --- timers: binary min-heap on when_ms --- */

static void heap_set(struct ev_loop *loop, size_t i, struct ev_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when_ms <= t->when_ms) {
            break;
        }
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t mw = t->when_ms;
        if (l < loop->heap_len && loop->heap[l]->when_ms < mw) {
            m = l;
            mw = loop->heap[l]->when_ms;
        }
        if (r < loop->heap_len && loop->heap[r]->when_ms < mw) {
            m = r;
        }
        if (m == i) {
            break;
        }
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, t);
}

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *owner)
{
    t->when_ms = 0;
    t->heap_index = SIZE_MAX;
    t->cb = cb;
    t->owner = owner;
}

void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t)
{
    size_t i = t->heap_index;
    if (i == SIZE_MAX) {
        return;
    }
    t->heap_index = SIZE_MAX;
    struct ev_timer *last = loop->heap[--loop->heap_len];
    if (i == loop->heap_len) {
        return;
    }
    heap_set(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->heap_index);
}

int ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t ms)
{
    ev_timer_stop(loop, t);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct ev_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (h == NULL) {
            return KL_ERR_NO_MEMORY;
        }
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->when_ms = loop->now + ms;
    loop->heap[loop->heap_len] = t;
    t->heap_index = loop->heap_len++;
    heap_up(loop, t->heap_index);
    return 0;
}

static void run_timers(struct ev_loop *loop)
{
    /* Bounded by the timers due now: a callback re-arming for "now + 0" runs next turn. */
    size_t budget = loop->heap_len;
    while (budget-- > 0 && loop->heap_len > 0 && loop->heap[0]->when_ms <= loop->now) {
        struct ev_timer *t = loop->heap[0];
        ev_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

/* --- signals --- */

static void signal_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct signalfd_siginfo si;
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(io->fd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si)) {
            break;
        }
        loop->sig_cb(loop, (int)si.ssi_signo, loop->sig_arg);
    }
}

int ev_signals(struct ev_loop *loop, const int *signals, ev_signal_cb cb, void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    for (const int *s = signals; *s != 0; s++) {
        sigaddset(&set, *s);
    }
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        return KL_ERR_IO;
    }
    int fd = signalfd(loop->sig_io.fd, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        return KL_ERR_IO;
    }
    loop->sig_cb = cb;
    loop->sig_arg = arg;
    if (loop->sig_io.fd < 0) {
        ev_io_init(&loop->sig_io, fd, signal_cb, loop);
        ev_io_set(loop, &loop->sig_io, EV_READ);
    }
    return 0;
}

void ev_defer(struct ev_loop *loop, struct ev_deferred *d, ev_defer_cb cb, void *arg)
{
    d->cb = cb;
    d->arg = arg;
    d->next = loop->deferred;
    loop->deferred = d;
}

static void run_deferred(struct ev_loop *loop)
{
    while (loop->deferred != NULL) {
        struct ev_deferred *d = loop->deferred;
        loop->deferred = d->next;
        d->cb(d->arg);
    }
}

int ev_run_once(struct ev_loop *loop, int max_wait_ms)
{
    struct epoll_event events[EV_MAX_EVENTS];
    apply_changes(loop);
    loop->now = kl_clock_ms();
    int timeout = max_wait_ms;
    if (loop->heap_len > 0) {
        uint64_t when = loop->heap[0]->when_ms;
        uint64_t wait = when > loop->now ? when - loop->now : 0;
        if (timeout < 0 || wait < (uint64_t)timeout) {
            timeout = (int)(wait > 60000 ? 60000 : wait);
        }
    }
    if (loop->deferred != NULL) {
        timeout = 0;
    }
    int n;
    /* The one EINTR retry of the loop. */
    do {
        n = epoll_wait(loop->epfd, events, EV_MAX_EVENTS, timeout);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return KL_ERR_IO;
    }
    loop->now = kl_clock_ms();
    for (int i = 0; i < n; i++) {
        struct ev_io *io = events[i].data.ptr;
        /* Closed earlier in this turn (its memory lives until run_deferred): skip. */
        if (io->closed) {
            continue;
        }
        uint32_t e = events[i].events;
        unsigned rev = 0;
        if (e & EPOLLIN) {
            rev |= EV_READ;
        }
        if (e & EPOLLOUT) {
            rev |= EV_WRITE;
        }
        if (e & (EPOLLRDHUP | EPOLLHUP)) {
            rev |= EV_RDHUP;
        }
        if (e & EPOLLERR) {
            rev |= EV_ERROR;
        }
        io->cb(loop, io, rev);
    }
    run_timers(loop);
    run_deferred(loop);
    return 0;
}

int ev_run(struct ev_loop *loop)
{
    int ret = 0;
    loop->stop = 0;
    while (!loop->stop) {
        if ((ret = ev_run_once(loop, -1)) != 0) {
            break;
        }
    }
    return ret;
}

void ev_stop(struct ev_loop *loop)
{
    loop->stop = 1;
}
