/*
 * ev.h - the event loop both processes run: level-triggered epoll, timers, signals.
 *
 * - epoll_event.data.ptr points at the struct ev_io, which the owner embeds, so a
 *   callback finds its object without a lookup (h2o evloop).
 * - Interest changes (ev_io_set) are collected and applied once per turn, right
 *   before epoll_wait, so a callback that toggles interest several times costs one
 *   epoll_ctl at most.
 * - An object closed inside a callback must not be freed there: the same turn may
 *   still hold events for it. ev_io_close() detaches the fd at once (its later
 *   events are skipped) and ev_defer() frees the owner after the turn.
 * - Timers live in a binary min-heap (O(log n) start/stop); each timer knows its
 *   heap index so stopping one is O(log n) too.
 * - Signals arrive through a signalfd, as ordinary readable events.
 * - EINTR is retried in one place (ev_retry_eintr's users: the loop's syscalls).
 */
#ifndef KL_EV_LOOP_H
#define KL_EV_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include "kl_err.h"

#define EV_READ 0x1u
#define EV_WRITE 0x2u
#define EV_RDHUP 0x4u /* peer closed its write side (or the socket hung up) */
#define EV_ERROR 0x8u

struct ev_loop;
struct ev_io;
struct ev_timer;

typedef void (*ev_io_cb)(struct ev_loop *loop, struct ev_io *io, unsigned revents);
typedef void (*ev_timer_cb)(struct ev_loop *loop, struct ev_timer *t);
typedef void (*ev_signal_cb)(struct ev_loop *loop, int signo, void *arg);
typedef void (*ev_defer_cb)(void *arg);

struct ev_io {
    int fd;
    unsigned want;       /* interest requested by the owner */
    unsigned registered; /* interest epoll currently has; ~0u when not added yet */
    int queued;          /* on the loop's change list */
    int closed;          /* detached: pending events for it are skipped */
    struct ev_io *next_change;
    ev_io_cb cb;
    void *owner;
};

struct ev_timer {
    uint64_t when_ms;  /* monotonic deadline */
    size_t heap_index; /* position in the heap; SIZE_MAX when not armed */
    ev_timer_cb cb;
    void *owner;
};

/* An object to free after the current turn (embed it in the owner). */
struct ev_deferred {
    struct ev_deferred *next;
    ev_defer_cb cb;
    void *arg;
};

/* A new loop. NULL on failure (errno set). */
struct ev_loop *ev_loop_new(void);
void ev_loop_free(struct ev_loop *loop);

/* Monotonic milliseconds, cached at the start of each turn. */
uint64_t ev_now(const struct ev_loop *loop);

/* Prepare io for fd; nothing is registered until ev_io_set asks for interest. */
void ev_io_init(struct ev_io *io, int fd, ev_io_cb cb, void *owner);
/* Ask for interest mask (EV_READ | EV_WRITE | EV_RDHUP); applied before the next wait. */
void ev_io_set(struct ev_loop *loop, struct ev_io *io, unsigned want);
/* Remove io from epoll now (before its fd is closed) and skip its pending events. */
void ev_io_close(struct ev_loop *loop, struct ev_io *io);

void ev_timer_init(struct ev_timer *t, ev_timer_cb cb, void *owner);
/* (Re)arm t to fire after ms milliseconds from the turn's time. */
KL_MUST_CHECK int ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t ms);
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);
static inline int ev_timer_armed(const struct ev_timer *t)
{
    return t->heap_index != SIZE_MAX;
}

/* Deliver the listed signals (0-terminated) through the loop; they are blocked for the thread. */
KL_MUST_CHECK int ev_signals(struct ev_loop *loop, const int *signals, ev_signal_cb cb, void *arg);

/* Run cb(arg) after the current turn's callbacks (d is embedded in the owner). */
void ev_defer(struct ev_loop *loop, struct ev_deferred *d, ev_defer_cb cb, void *arg);

/* Run one turn: apply changes, wait (at most max_wait_ms, -1 = until a timer), dispatch, free deferred. */
KL_MUST_CHECK int ev_run_once(struct ev_loop *loop, int max_wait_ms);
/* Run turns until ev_stop. */
KL_MUST_CHECK int ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);

#endif
