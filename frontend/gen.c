#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ev.h"
#include "gen.h"
#include "kl_buf.h"
#include "log.h"
#include "signer_client.h"
#include "clock.h"

int certs_load(struct tls_cert_file *c, char *why, size_t why_len, const char *path)
{
    enum tls_cert_error e;
    int ret = tls_cert_file_load(c, &e, path);
    switch (e) {
    case TLS_CERT_OK:
        break;
    case TLS_CERT_CANNOT_OPEN:
        snprintf(why, why_len, "cannot open the PEM file");
        break;
    case TLS_CERT_NO_CHAIN:
        snprintf(why, why_len,
                 "no PEM certificate in the file (or a certificate that does not parse, or more than %d "
                 "certificates in the chain)",
                 TLS_MAX_CHAIN);
        break;
    case TLS_CERT_BAD_LEAF_KEY:
        snprintf(why, why_len, "the leaf certificate's public key does not parse");
        break;
    case TLS_CERT_UNSUPPORTED_KEY:
        snprintf(why, why_len, "unsupported leaf key type (ECDSA P-256/P-384, RSA, Ed25519)");
        break;
    case TLS_CERT_NO_MEMORY:
        snprintf(why, why_len, "%s", kl_err_str(KL_ERR_NO_MEMORY));
        break;
    }
    return ret;
}

/* --- generations --- */

/* Why a client CA bundle or CRL did not load, in the words operators read. */
static const char *client_ca_why(enum tls_client_ca_error e)
{
    switch (e) {
    case TLS_CLIENT_CA_CANNOT_OPEN:
    case TLS_CLIENT_CA_CRL_OPEN:
        return "cannot open the file";
    case TLS_CLIENT_CA_NO_CERT:
        return "no PEM certificate in the file (or one that does not parse)";
    case TLS_CLIENT_CA_NO_CRL:
        return "no PEM X509 CRL in the file (or one that does not parse)";
    case TLS_CLIENT_CA_NO_MEMORY:
        return "out of memory";
    case TLS_CLIENT_CA_OK:
    default:
        return "unknown error";
    }
}

/*
 * ECH (issue 16): a listener's keys, each with a public name one of the certificates serves
 * (a rejected ECH completes the handshake on the outer ClientHello with that certificate),
 * and retry_configs = the first key's ECHConfigList.
 */
static int gen_ech(struct fe_gen *gen, size_t i, struct tls_config *t, char *err, size_t err_len)
{
    const struct config *cfg = gen->cfg;
    const struct config_listener *l = &cfg->listeners[i];
    for (size_t k = 0; k < l->n_ech_keys; k++) {
        const char *name = l->ech_keys[k].public_name;
        int served = 0;
        for (size_t c = 0; c < cfg->n_certs && !served; c++) {
            for (size_t j = 0; j < gen->tls_certs[c].n_names && !served; j++) {
                served = gen->tls_certs[c].names[j] != NULL && tls_name_matches(gen->tls_certs[c].names[j], name);
            }
        }
        if (!served) {
            snprintf(err, err_len,
                     "%s:%d: [listener %s] ech_keys: %s: public name '%s' is not a name of any [cert] (add a "
                     "certificate for it: clients whose ECH is rejected are answered with it)",
                     cfg->path, l->ech_keys_line, l->name, l->ech_key_paths[k], name);
            return KL_ERR_CONFIG;
        }
    }
    t->ech.keys = l->ech_keys;
    t->ech.n_keys = l->n_ech_keys;
    t->ech.retry_configs = l->n_ech_keys > 0 ? l->ech_retry_configs : NULL;
    t->ech.retry_configs_len = l->n_ech_keys > 0 ? l->ech_retry_configs_len : 0;
    return 0;
}

/* One engine configuration per listener: the shared one plus its client authentication. */
static int gen_client_auth(struct fe_gen *gen, char *err, size_t err_len)
{
    const struct config *cfg = gen->cfg;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        struct tls_config *t = &gen->listener_tls[i];
        enum tls_client_ca_error why;
        *t = gen->tls;
        /* Per listener: how many tickets, their lifetime, psk_ke, 0-RTT. Where the keys and the
           replay register come from is the worker's (gen->tls.tickets, copied by gen_tls). */
        t->tickets.count = l->tickets;
        t->tickets.lifetime = l->ticket_lifetime_ms / 1000;
        t->tickets.allow_psk_ke = l->psk_ke;
        t->tickets.max_early_data = l->max_early_data;
        memcpy(t->tickets.host_id, cfg->host_id, sizeof(t->tickets.host_id));
        int ret = gen_ech(gen, i, t, err, err_len);
        if (ret != 0) {
            return ret;
        }
        if (l->client_auth == 0) {
            continue;
        }
        ret = tls_client_ca_load(&gen->client_ca[i], &why, l->client_ca, l->client_crl, l->client_verify_depth);
        if (ret != 0) {
            int crl = why == TLS_CLIENT_CA_CRL_OPEN || why == TLS_CLIENT_CA_NO_CRL;
            snprintf(err, err_len, "%s:%d: [listener %s] %s: %s: %s", cfg->path,
                     crl ? l->client_crl_line : l->client_ca_line, l->name, crl ? "client_crl" : "client_ca",
                     crl ? l->client_crl : l->client_ca, client_ca_why(why));
            return ret;
        }
        t->client_auth = l->client_auth == 2 ? TLS_CLIENT_AUTH_REQUIRED : TLS_CLIENT_AUTH_OPTIONAL;
        t->client_ca = gen->client_ca[i];
    }
    return 0;
}

const struct tls_config *gen_tls(struct fe_gen *gen, size_t listener)
{
    if (listener >= gen->cfg->n_listeners) {
        return &gen->tls;
    }
    /* The shared part may change after gen_new (the worker installs its trace and keylog hooks):
     * refresh the copy at each use. Single-threaded, and a live connection sees the same values. */
    struct tls_config *t = &gen->listener_tls[listener];
    enum tls_client_auth mode = t->client_auth;
    const struct tls_client_ca *ca = t->client_ca;
    struct tls_ticket_config tk = t->tickets;
    struct tls_ech_config ech = t->ech;
    *t = gen->tls;
    t->client_auth = mode;
    t->client_ca = ca;
    t->ech = ech;
    tk.keys = gen->tls.tickets.keys;
    tk.keys_arg = gen->tls.tickets.keys_arg;
    tk.replay = gen->tls.tickets.replay;
    tk.replay_arg = gen->tls.tickets.replay_arg;
    if (tk.keys == NULL) {
        tk.count = 0; /* ticket_keys = off: no tickets, every PSK ignored */
    }
    if (tk.replay == NULL) {
        tk.max_early_data = 0; /* no strike register: no 0-RTT (fails closed) */
    }
    t->tickets = tk;
    return t;
}

int gen_new(struct fe_gen **gen_p, char *err, size_t err_len, struct config *cfg)
{
    int ret = 0;
    struct fe_gen *gen = calloc(1, sizeof(*gen));
    if (gen == NULL) {
        config_free(cfg);
        snprintf(err, err_len, "out of memory");
        return KL_ERR_NO_MEMORY;
    }
    gen->refs = 1;
    gen->cfg = cfg;
    for (size_t i = 0; i < cfg->n_certs; i++) {
        const struct config_cert *cc = &cfg->certs[i];
        char why[256] = "";
        ret = certs_load(&gen->certs[i], why, sizeof(why), cc->chain_path);
        if (ret != 0) {
            snprintf(err, err_len, "%s:%d: [cert %s] chain: %s: %s", cfg->path, cc->chain_line, cc->name,
                     cc->chain_path, why);
            goto exit;
        }
        struct tls_cert *tc = &gen->tls_certs[i];
        tc->key_name = cc->key_name;
        for (size_t j = 0; j < gen->certs[i].n_der; j++) {
            tc->chain[j] = gen->certs[i].der[j];
            tc->chain_len[j] = gen->certs[i].der_len[j];
        }
        tc->n_chain = gen->certs[i].n_der;
        for (size_t j = 0; j < gen->certs[i].n_names; j++) {
            tc->names[j] = gen->certs[i].names[j];
        }
        tc->n_names = gen->certs[i].n_names;
        /* Until the signer has said what the key can do, the key type's schemes. */
        memcpy(tc->schemes, gen->certs[i].schemes, gen->certs[i].n_schemes * sizeof(uint16_t));
        tc->n_schemes = gen->certs[i].n_schemes;
    }
    struct tls_config *t = &gen->tls;
    t->certs = gen->tls_certs;
    t->n_certs = cfg->n_certs;
    memcpy(t->suites, cfg->suites, sizeof(t->suites));
    t->n_suites = cfg->n_suites;
    memcpy(t->groups, cfg->groups, sizeof(t->groups));
    t->n_groups = cfg->n_groups;
    for (size_t i = 0; i < cfg->n_alpn && i < TLS_MAX_ALPN; i++) {
        t->alpn[i] = cfg->alpn[i];
    }
    t->n_alpn = cfg->n_alpn < TLS_MAX_ALPN ? cfg->n_alpn : TLS_MAX_ALPN;
    /* A fresh HelloRetryRequest cookie key per generation: cookies need not survive a reload. */
    tls_random(t->cookie_key, sizeof(t->cookie_key));
    KL_TRY(gen_client_auth(gen, err, err_len));
    *gen_p = gen;
    gen = NULL;
exit:
    if (gen != NULL) {
        gen_unref(gen);
    }
    return ret;
}

int gen_check_keys(struct fe_gen *gen, char *err, size_t err_len, const Keyless__V1__ListKeysResponse *keys)
{
    const struct config *cfg = gen->cfg;
    for (size_t i = 0; i < cfg->n_certs; i++) {
        const struct config_cert *cc = &cfg->certs[i];
        const struct tls_cert_file *fc = &gen->certs[i];
        const Keyless__V1__KeyInfo *k = NULL;
        for (size_t j = 0; j < keys->n_keys; j++) {
            if (keys->keys[j]->name != NULL && strcmp(keys->keys[j]->name, cc->key_name) == 0) {
                k = keys->keys[j];
            }
        }
        if (k == NULL) {
            snprintf(err, err_len, "%s:%d: [cert %s] key: the signer has no key named '%s'", cfg->path, cc->key_line,
                     cc->name, cc->key_name);
            return KL_ERR_CONFIG;
        }
        if (k->public_key_spki.len != fc->spki_len || memcmp(k->public_key_spki.data, fc->spki, fc->spki_len) != 0) {
            snprintf(err, err_len,
                     "%s:%d: [cert %s] key: certificate %s does not match signer key '%s' "
                     "(its public key differs)",
                     cfg->path, cc->key_line, cc->name, cc->chain_path, cc->key_name);
            return KL_ERR_CONFIG;
        }
        struct tls_cert *tc = &gen->tls_certs[i];
        tc->n_schemes = 0;
        for (size_t a = 0; a < fc->n_schemes; a++) {
            for (size_t s = 0; s < k->n_schemes; s++) {
                if (k->schemes[s] == fc->schemes[a] && tc->n_schemes < TLS_MAX_SCHEMES) {
                    tc->schemes[tc->n_schemes++] = fc->schemes[a];
                    break;
                }
            }
        }
        if (tc->n_schemes == 0) {
            snprintf(err, err_len, "%s:%d: [cert %s] key: signer key '%s' allows no scheme a %s certificate can use",
                     cfg->path, cc->key_line, cc->name, cc->key_name, fc->key_desc);
            return KL_ERR_CONFIG;
        }
    }
    return 0;
}

void gen_ref(struct fe_gen *gen)
{
    gen->refs++;
}

void gen_unref(struct fe_gen *gen)
{
    if (gen == NULL || --gen->refs > 0) {
        return;
    }
    for (size_t i = 0; i < CONFIG_MAX_CERTS; i++) {
        tls_cert_file_dispose(&gen->certs[i]);
    }
    kl_wipe(gen->tls.cookie_key, sizeof(gen->tls.cookie_key));
    for (size_t i = 0; i < CONFIG_MAX_LISTENERS; i++) {
        kl_wipe(gen->listener_tls[i].cookie_key, sizeof(gen->listener_tls[i].cookie_key));
        tls_client_ca_free(gen->client_ca[i]);
    }
    config_free(gen->cfg);
    free(gen);
}

/* --- start-up check against the signer --- */

struct startup_wait {
    int done;
    int ok;
    char *err;
    size_t err_len;
    struct fe_gen *gen;
};

static void startup_keys_cb(void *arg, const Keyless__V1__Response *resp)
{
    struct startup_wait *sw = arg;
    sw->done = 1;
    if (resp == NULL || resp->body_case != KEYLESS__V1__RESPONSE__BODY_LIST_KEYS || resp->list_keys == NULL ||
        resp->list_keys->status != KEYLESS__V1__STATUS__OK) {
        snprintf(sw->err, sw->err_len, "%s:%d: [signer] socket: ListKeys failed (%s)", sw->gen->cfg->path,
                 sw->gen->cfg->signer_line, resp == NULL ? "no answer" : "error status");
        return;
    }
    sw->ok = gen_check_keys(sw->gen, sw->err, sw->err_len, resp->list_keys) == 0;
}

int gen_check_signer(struct fe_gen *gen, char *err, size_t err_len)
{
    int ret = 0;
    const struct config *cfg = gen->cfg;
    struct sc_client *sc = NULL;
    struct ev_loop *loop = ev_loop_new();
    struct startup_wait sw = {.err = err, .err_len = err_len, .gen = gen};
    KL_ENSURE(loop != NULL, KL_ERR_NO_MEMORY);
    KL_TRY(sc_new(&sc, loop, (const char *const *)cfg->signer_sockets, cfg->n_signer_sockets, 4,
                  cfg->signer_timeout_ms > 5000 ? cfg->signer_timeout_ms : 5000));
    uint64_t deadline = kl_clock_ms() + cfg->signer_startup_wait_ms;
    int logged = 0;
    while (!sc_up(sc) && kl_clock_ms() < deadline) {
        if (!logged) {
            log_info("waiting up to %u ms for the signer at %s", cfg->signer_startup_wait_ms, cfg->signer_sockets[0]);
            logged = 1;
        }
        KL_TRY(ev_run_once(loop, 50));
    }
    if (!sc_up(sc)) {
        snprintf(err, err_len, "%s:%d: [signer] socket: cannot connect to %s%s", cfg->path, cfg->signer_line,
                 cfg->signer_sockets[0], cfg->n_signer_sockets > 1 ? " (nor the others)" : "");
        ret = KL_ERR_IO;
        goto exit;
    }
    uint64_t id;
    KL_TRY(sc_list_keys(sc, &id, startup_keys_cb, &sw));
    while (!sw.done) {
        KL_TRY(ev_run_once(loop, 100));
    }
    KL_ENSURE(sw.ok, KL_ERR_CONFIG);
exit:
    sc_free(sc);
    ev_loop_free(loop);
    return ret;
}
