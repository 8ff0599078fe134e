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

/* Run one worker until it has drained after SIGTERM. Returns the process exit code. */
int server_run_worker(struct fe_gen *gen, unsigned index, int trace);

#endif
