/*
 * server.h - one worker process: its loop, listeners, signer client, the current
 * configuration generation, and its connections.
 *
 * A generation (struct fe_gen) is everything a SIGHUP can change: the parsed config,
 * the loaded certificate chains and the tls_config made from them. Each connection
 * holds a reference to the generation it was accepted under, so a reload swaps the
 * worker's pointer for new connections while old ones keep theirs until they end.
 */
#ifndef KL_FE_SERVER_H
#define KL_FE_SERVER_H

#include <stdio.h>
#include "config.h"
#include "certs.h"
#include "ev/loop.h"
#include "signer_client/sc.h"
#include "tls/tls.h"

struct conn;

struct fe_gen {
    int refs;
    struct config *cfg; /* owned */
    struct fe_cert certs[CONFIG_MAX_CERTS];
    struct tls_cert tls_certs[CONFIG_MAX_CERTS];
    struct tls_config tls;
};

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
    struct fe_listener listeners[CONFIG_MAX_LISTENERS];
    size_t n_listeners;
    struct ev_timer accept_pause; /* out of fds: stop accepting for a moment */
    int metrics_fd;
    struct ev_io metrics_io;
    struct sc_client *sc;
    struct conn *conns; /* doubly linked list of live connections */
    size_t n_conns;
    size_t max_conns; /* this worker's share of max_connections */
    uint64_t next_conn_id;
    int draining;
    struct ev_timer drain_timer;
    int exit_code;
    FILE *keylog;
    int trace;
    struct conn *trace_conn; /* the connection whose engine call is running, for trace lines */
    uint8_t *scratch;        /* one read buffer shared by the worker's connections */
};

/*
 * Build a generation from cfg (taking ownership of cfg even on failure): load the chains.
 * err gets "keyless-frontend: FILE:LINE: [cert X] chain: reason" on failure.
 */
KL_MUST_CHECK int gen_new(struct fe_gen **gen_p, char *err, size_t err_len, struct config *cfg);
/*
 * Check every certificate against the signer's keys (a ListKeysResponse) and fill in
 * tls_cert.schemes = the key's schemes that the certificate's key type allows.
 * KL_ERR_CONFIG with one line in err naming the certificate file and the key.
 */
KL_MUST_CHECK int gen_check_keys(struct fe_gen *gen, char *err, size_t err_len,
                                 const Keyless__V1__ListKeysResponse *keys);
void gen_ref(struct fe_gen *gen);
void gen_unref(struct fe_gen *gen);

/* Ask the signer for its keys through a short-lived loop (start-up, before any fork). */
KL_MUST_CHECK int server_check_signer(struct fe_gen *gen, char *err, size_t err_len);

/* A connection ended (called by conn): ends the worker once it has drained. */
void server_conn_closed(struct fe_worker *w);

/* Run one worker until it has drained after SIGTERM. Returns the process exit code. */
int server_run_worker(struct fe_gen *gen, unsigned index, int trace);

#endif
