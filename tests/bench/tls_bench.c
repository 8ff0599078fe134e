/*
 * tls_bench.c - CPU cost of the TLS engine's hot paths (issue 4, "Performance").
 *
 *   tls_bench [seconds [only]]   (default 2 seconds per measurement; only = "records",
 *                                "x25519" or "handshake" runs just that part, for profiling)
 *
 * Prints one line per figure, "key value unit", for tls_bench.sh to compare with
 * `openssl speed -evp` in the same run:
 *   record_seal <suite> <MB/s>   16 KiB application-data records through rec_seal
 *   record_open <suite> <MB/s>   the same records through rec_next + rec_open
 *   x25519_floor <us>            crypto_kex_generate + crypto_kex_derive (the key-exchange floor)
 *   handshake_cpu <us>           one full server handshake inside the engine, excluding the
 *                                signature (RFC 8448 §3 replayed: ClientHello in, server flight
 *                                out, client Finished verified), when hs_server.c is built in
 * MB/s is 10^6 bytes of plaintext per second of process CPU time.
 * Needs KL_TESTDATA for the handshake (the RFC 8448 trace); without it that line is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "frontend/rfc8448.h"
#include "record.h"
#include "tls.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *suite_name(uint16_t s)
{
    return s == TLS_AES_128_GCM_SHA256   ? "TLS_AES_128_GCM_SHA256"
           : s == TLS_AES_256_GCM_SHA384 ? "TLS_AES_256_GCM_SHA384"
                                         : "TLS_CHACHA20_POLY1305_SHA256";
}

static int bench_records(uint16_t suite, double seconds)
{
    static uint8_t data[REC_MAX_PLAINTEXT];
    uint8_t secret[48];
    size_t hl = suite == TLS_AES_256_GCM_SHA384 ? 48 : 32;
    struct rec_dir enc, dec;
    struct kl_buf out, content;
    struct rec_record r;
    uint8_t type;
    int ret = 1;

    crypto_random(secret, sizeof(secret));
    crypto_random(data, sizeof(data));
    rec_dir_init(&enc, 1);
    rec_dir_init(&dec, 0);
    kl_buf_init(&out, REC_MAX_WIRE);
    kl_buf_init(&content, REC_MAX_CIPHERTEXT);
    if (rec_dir_set_secret(&enc, suite, secret, hl) != 0 || rec_dir_set_secret(&dec, suite, secret, hl) != 0)
        goto exit;

    /*
     * Seal: the output buffer is reused, as the connection's send buffer is. len = 0 rather
     * than kl_buf_reset: wiping 16 KiB per record is the buffer owner's cost, not the record
     * layer's (and the ciphertext needs no wiping anyway).
     */
    uint64_t n = 0;
    double t0 = cpu_now(), t;
    do {
        for (int i = 0; i < 64; i++) {
            out.len = 0;
            if (rec_seal(&enc, &out, REC_TYPE_APPLICATION_DATA, data, sizeof(data), 0) != 0)
                goto exit;
        }
        n += 64;
    } while ((t = cpu_now() - t0) < seconds);
    printf("record_seal %s %.1f MB/s\n", suite_name(suite), (double)n * sizeof(data) / t / 1e6);

    /* Open: one sealed record, opened again and again (the reader's seq is rewound each time). */
    kl_buf_reset(&out);
    enc.seq = 0;
    if (rec_seal(&enc, &out, REC_TYPE_APPLICATION_DATA, data, sizeof(data), 0) != 0 ||
        rec_next(&r, out.base, out.len, 0) != 0)
        goto exit;
    n = 0;
    t0 = cpu_now();
    do {
        for (int i = 0; i < 64; i++) {
            content.len = 0; /* as above: the plaintext's owner wipes it when it is consumed */
            dec.seq = 0;
            if (rec_open(&dec, &content, &type, &r) != 0 || content.len != sizeof(data))
                goto exit;
        }
        n += 64;
    } while ((t = cpu_now() - t0) < seconds);
    printf("record_open %s %.1f MB/s\n", suite_name(suite), (double)n * sizeof(data) / t / 1e6);
    ret = 0;
exit:
    if (ret != 0)
        fprintf(stderr, "tls_bench: record benchmark failed for %s\n", suite_name(suite));
    rec_dir_dispose(&enc);
    rec_dir_dispose(&dec);
    kl_buf_dispose(&out);
    kl_buf_dispose(&content);
    crypto_wipe(secret, sizeof(secret));
    return ret;
}

static int bench_x25519(double seconds)
{
    struct crypto_kex a, peer;
    uint8_t z[CRYPTO_MAX_SHARED];
    size_t zl;
    uint64_t n = 0;
    double t0, t;

    if (crypto_kex_generate(&peer, TLS_GROUP_X25519) != 0)
        return 1;
    t0 = cpu_now();
    do {
        for (int i = 0; i < 64; i++) {
            if (crypto_kex_generate(&a, TLS_GROUP_X25519) != 0 || crypto_kex_derive(&a, z, &zl, peer.pub, peer.pub_len))
                return 1;
            crypto_kex_dispose(&a);
        }
        n += 64;
    } while ((t = cpu_now() - t0) < seconds);
    crypto_kex_dispose(&peer);
    printf("x25519_floor %.2f us\n", t / (double)n * 1e6);
    return 0;
}

/*
 * One full handshake replaying RFC 8448 §3: the engine gets the trace's server random and
 * ephemeral private key (so the client's Finished verifies), computes its key share from
 * that key (the same scalar multiplication as a fresh key), the X25519 shared secret, the
 * whole key schedule, all records, and verifies the client Finished. The signature is the
 * trace's (the signer's cost is not the engine's).
 */
static int bench_handshake(double seconds)
{
    struct rfc8448 *t = rfc8448_load("simple-1rtt.txt");
    size_t der_len, l, chl, cfl, cvl;
    uint8_t *der = rfc8448_read_file("server-cert.der", &der_len);
    struct tls_cert cert;
    struct tls_config cfg;
    struct tls_test_hooks hooks;
    struct kl_buf out, app;
    int ret = 1;

    if (t == NULL || der == NULL)
        goto exit;
    memset(&cert, 0, sizeof(cert));
    memset(&cfg, 0, sizeof(cfg));
    memset(&hooks, 0, sizeof(hooks));
    cert.key_name = "rsa";
    cert.chain[0] = der;
    cert.chain_len[0] = der_len;
    cert.n_chain = 1;
    cert.schemes[0] = TLS_SIG_RSA_PSS_RSAE_SHA256;
    cert.n_schemes = 1;
    cert.names[0] = "rsa";
    cert.n_names = 1;
    cfg.certs = &cert;
    cfg.n_certs = 1;
    cfg.suites[0] = TLS_AES_128_GCM_SHA256;
    cfg.n_suites = 1;
    cfg.groups[0] = TLS_GROUP_X25519;
    cfg.n_groups = 1;
    memset(cfg.cookie_key, 0x5a, sizeof(cfg.cookie_key));
    size_t eel;
    const uint8_t *ee = rfc8448_must(t, "encrypted_extensions", &eel);
    hooks.server_random = rfc8448_must(t, "server_random", &l);
    hooks.server_ephemeral_private = rfc8448_must(t, "server_ephemeral_private", &hooks.server_ephemeral_private_len);
    /* EE = 08 uint24 uint16-extensions: the hook takes the extension bytes. */
    hooks.encrypted_extensions_body = ee + 6;
    hooks.encrypted_extensions_body_len = eel - 6;
    cfg.test = &hooks;
    const uint8_t *ch = rfc8448_must(t, "client_hello_record", &chl);
    const uint8_t *cf = rfc8448_must(t, "client_finished_record", &cfl);
    const uint8_t *cv = rfc8448_must(t, "certificate_verify", &cvl);
    kl_buf_init(&out, 1 << 16);
    kl_buf_init(&app, 1 << 16);

    uint64_t n = 0;
    double t0 = cpu_now(), el;
    do {
        for (int i = 0; i < 16; i++) {
            struct tls_conn *c = tls_conn_new(&cfg, 1);
            size_t in = chl;
            kl_buf_reset(&out);
            if (c == NULL || tls_conn_input(c, &out, &app, ch, &in) != KL_ERR_ASYNC ||
                tls_conn_sign_done(c, &out, cv + 8, cvl - 8) != 0) {
                tls_conn_free(c);
                goto exit_bufs;
            }
            in = cfl;
            if (tls_conn_input(c, &out, &app, cf, &in) != 0 || !tls_conn_established(c)) {
                tls_conn_free(c);
                goto exit_bufs;
            }
            tls_conn_free(c);
        }
        n += 16;
    } while ((el = cpu_now() - t0) < seconds);
    printf("handshake_cpu %.2f us\n", el / (double)n * 1e6);
    ret = 0;
exit_bufs:
    kl_buf_dispose(&out);
    kl_buf_dispose(&app);
exit:
    if (ret != 0)
        fprintf(stderr, "tls_bench: handshake benchmark failed (KL_TESTDATA set?)\n");
    free(der);
    rfc8448_free(t);
    return ret;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    int ret = 0;
    static const uint16_t suites[] = {TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256};

    if (seconds <= 0 || seconds > 60 || crypto_init() != 0) {
        fprintf(stderr, "usage: tls_bench [seconds-per-measurement (0..60]]\n");
        return 2;
    }
    const char *only = argc > 2 ? argv[2] : "";
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]) && (!*only || !strcmp(only, "records")); i++)
        ret |= bench_records(suites[i], seconds);
    if (!*only || !strcmp(only, "x25519"))
        ret |= bench_x25519(seconds);
    if (!*only || !strcmp(only, "handshake"))
        ret |= bench_handshake(seconds);
    return ret;
}
