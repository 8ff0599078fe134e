/*
 * worker.h - one worker process: its loop, listeners, signer client, the current
 * configuration generation (gen.h), and its connections, which it owns.
 */
#ifndef KL_FE_WORKER_H
#define KL_FE_WORKER_H

#include <stdio.h>
#include "config.h"
#include "gen.h"
#include "ev.h"
#include "signer_client.h"
#include "conn.h"
#include "tls/tls.h"

struct fe_listener {
    struct fe_worker *w;
    size_t index; /* into gen->cfg->listeners */
    int fd;
    struct ev_io io;
};

struct fe_worker {
    struct ev_loop *loop;
    /* Ticket keys (issue 11): this worker's part in refreshing the shared ring (tickets.h). */
    struct ev_timer ticket_timer;
    uint64_t ticket_req_id; /* a TicketKeys request in flight, 0 if none */
    uint64_t ticket_asked[TLS_TICKET_KEYS_MAX];
    size_t n_ticket_asked;
    int ticket_only_ahead; /* the signer refused past epochs: ask for the current and next only */
    int ticket_failing;    /* the last refresh failed (log the first failure of a streak only) */
    unsigned index;
    struct fe_gen *gen;
    struct fe_gen *pending_gen; /* a reload waiting for the signer's ListKeys */
    uint64_t pending_id;
    uint64_t verify_id; /* a ListKeys after a signer (re)connect, 0 if none in flight */
    int signer_keys_ok; /* the signer's keys match every certificate (checked at start and per reconnect) */
    struct fe_listener listeners[CONFIG_MAX_LISTENERS];
    size_t n_listeners;
    struct ev_timer accept_pause; /* out of fds: stop accepting for a moment */
    int metrics_fd;
    struct ev_io metrics_io;
    struct sc_client *sc;
    struct conn_env env; /* what every connection of this worker shares (loop, signer, scratch, trace) */
    struct conn *conns;  /* doubly linked list of live connections, linked here, unlinked by on_close */
    size_t n_conns;
    size_t max_conns; /* this worker's share of max_connections */
    uint64_t next_conn_id;
    int draining;
    struct ev_timer drain_timer;
    int exit_code;
    FILE *keylog;
    int trace;
};

/*
 * Issue 11: make what the workers of this host share before they are forked - the ticket
 * key ring (unless ticket_keys = off), filled once here (the key file, or the signer's
 * TicketKeys through a short-lived loop; a signer that cannot give keys yet is a warning,
 * the workers keep asking) and the 0-RTT strike register. 0, or a negative kl_err with one
 * line in err (a bad key file). server_shared_free() wipes both at exit.
 */
KL_MUST_CHECK int server_shared_init(const struct fe_gen *gen, char *err, size_t err_len);
void server_shared_free(void);

/* Run one worker until it has drained after SIGTERM. Returns the process exit code. */
int server_run_worker(struct fe_gen *gen, unsigned index, int trace);

#endif
