/* Unit tests for common/ev.c: timers, deferred free, skipped events of closed objects, signals. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include "kl_test.h"
#include "ev.h"

#define NT 500

static uint64_t fired_when[NT];
static int fired_order[NT], n_fired;

static void timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    int i = (int)(intptr_t)t->owner;
    fired_when[n_fired] = t->when_ms;
    fired_order[n_fired++] = i;
}

struct pair {
    struct ev_io io;
    int fd;
    int calls;
    struct pair *victim; /* closed by this one's callback */
    struct ev_deferred dfr;
};

static int freed;
static void free_pair(void *arg)
{
    freed++;
    (void)arg;
}

static void io_cb(struct ev_loop *loop, struct ev_io *io, unsigned revents)
{
    struct pair *p = io->owner;
    char b[16];
    p->calls++;
    if (read(p->fd, b, sizeof(b)) < 0) {
        return;
    }
    if (p->victim != NULL) {
        ev_io_close(loop, &p->victim->io);
        ev_defer(loop, &p->victim->dfr, free_pair, p->victim);
        p->victim = NULL;
    }
}

static int got_signal;
static void sig_cb(struct ev_loop *loop, int signo, void *arg)
{
    got_signal = signo;
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new();
    ok(loop != NULL, "loop");

    /* Timers: many, in random order, some stopped; they fire in deadline order. */
    static struct ev_timer t[NT];
    srand(7);
    for (int i = 0; i < NT; i++) {
        ev_timer_init(&t[i], timer_cb, (void *)(intptr_t)i);
        if (ev_timer_start(loop, &t[i], (uint64_t)(rand() % 40)) != 0) {
            ok(0, "timer start");
        }
    }
    for (int i = 0; i < NT; i += 5) {
        ev_timer_stop(loop, &t[i]);
    }
    ev_timer_stop(loop, &t[0]); /* stopping twice is harmless */
    for (int turn = 0; turn < 100 && n_fired < NT - NT / 5; turn++) {
        if (ev_run_once(loop, 10) != 0) {
            break;
        }
    }
    is_int(n_fired, NT - NT / 5, "every armed timer fired, stopped ones did not");
    int sorted = 1, stopped_fired = 0;
    for (int i = 1; i < n_fired; i++) {
        sorted &= fired_when[i - 1] <= fired_when[i];
    }
    for (int i = 0; i < n_fired; i++) {
        stopped_fired |= fired_order[i] % 5 == 0;
    }
    ok(sorted, "timers fire in deadline order");
    ok(!stopped_fired, "no stopped timer fired");
    ok(!ev_timer_armed(&t[1]), "fired timers are disarmed");

    /* Two readable fds in one turn; the first callback closes the second: its event is skipped. */
    int sa[2], sb[2];
    ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sa) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sb) == 0, "socketpairs");
    struct pair *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    a->fd = sa[0];
    b->fd = sb[0];
    ev_io_init(&a->io, sa[0], io_cb, a);
    ev_io_init(&b->io, sb[0], io_cb, b);
    ev_io_set(loop, &a->io, EV_READ);
    ev_io_set(loop, &b->io, EV_READ);
    if (ev_run_once(loop, 0) != 0) { /* registers both */
        ok(0, "turn");
    }
    a->victim = b;
    b->victim = a;
    ok(write(sa[1], "x", 1) == 1 && write(sb[1], "y", 1) == 1, "both readable");
    if (ev_run_once(loop, 100) != 0) {
        ok(0, "turn");
    }
    is_int(a->calls + b->calls, 1, "the closed object's pending event was skipped");
    is_int(freed, 1, "the closed object was freed after the turn, not during it");

    /* Interest toggled several times in a turn: one registration; 0 removes it. */
    struct pair *c = a->calls ? a : b;
    ev_io_set(loop, &c->io, EV_WRITE);
    ev_io_set(loop, &c->io, 0);
    int before = c->calls;
    ok(write(c == a ? sa[1] : sb[1], "z", 1) == 1, "readable again");
    if (ev_run_once(loop, 50) != 0) {
        ok(0, "turn");
    }
    is_int(c->calls, before, "no interest: no callback");
    ev_io_set(loop, &c->io, EV_READ);
    if (ev_run_once(loop, 50) != 0) {
        ok(0, "turn");
    }
    is_int(c->calls, before + 1, "interest back: the pending byte is reported");

    /* Signals through signalfd. */
    static const int sigs[] = {SIGUSR1, 0};
    ok(ev_signals(loop, sigs, sig_cb, NULL) == 0, "signalfd");
    raise(SIGUSR1);
    for (int i = 0; i < 10 && got_signal == 0; i++) {
        if (ev_run_once(loop, 50) != 0) {
            break;
        }
    }
    is_int(got_signal, SIGUSR1, "signal delivered as an event");

    ev_io_close(loop, &c->io);
    close(sa[0]);
    close(sa[1]);
    close(sb[0]);
    close(sb[1]);
    free(a);
    free(b);
    ev_loop_free(loop);
    return kl_test_done();
}
