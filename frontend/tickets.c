#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include "kl_buf.h"
#include "shm.h"
#include "tickets.h"

#define KEY_WORDS (sizeof(struct tls_ticket_key) / sizeof(uint64_t))
#define RING_WORDS (TLS_TICKET_KEYS_MAX * KEY_WORDS)
/* A reader retries this many times while a writer is in (a copy of a few hundred bytes). */
#define SNAPSHOT_TRIES 10000

_Static_assert(sizeof(struct tls_ticket_key) % sizeof(uint64_t) == 0, "a key is whole 64-bit words");

/*
 * The shared state. The keys are stored as 64-bit words read and written with atomic
 * loads and stores, so that a reader racing a writer reads torn data (and retries) rather
 * than undefined behaviour. seq is the seqlock: odd while a writer is in.
 */
struct tickets_shm {
    uint32_t seq;
    int32_t lock;            /* writers (shm_lock) */
    uint64_t claim_until_ms; /* the refresh lease (monotonic ms) */
    uint64_t n;
    uint64_t words[RING_WORDS];
    /* file: what was loaded last, to notice a change */
    uint64_t file_dev, file_ino, file_size, file_mtime_ns;
};

struct tickets {
    struct tickets_shm *shm;
    enum tickets_source source;
    uint32_t rotation_s;
    unsigned past;
};

int tickets_new(struct tickets **tk_p, enum tickets_source source, uint32_t rotation_s, unsigned past)
{
    int ret = 0;
    struct tickets *tk = NULL;
    KL_ENSURE(rotation_s > 0 && past + 2 <= TLS_TICKET_KEYS_MAX, KL_ERR_INVALID);
    tk = calloc(1, sizeof(*tk));
    KL_ENSURE(tk != NULL, KL_ERR_NO_MEMORY);
    tk->source = source;
    tk->rotation_s = rotation_s;
    tk->past = past;
    KL_TRY(shm_map((void **)&tk->shm, sizeof(*tk->shm), 1));
    *tk_p = tk;
    tk = NULL;
exit:
    free(tk);
    return ret;
}

void tickets_free(struct tickets *tk)
{
    if (tk == NULL) {
        return;
    }
    shm_unmap(tk->shm, sizeof(*tk->shm), 1);
    free(tk);
}

enum tickets_source tickets_source(const struct tickets *tk)
{
    return tk->source;
}

uint64_t tickets_epoch(const struct tickets *tk, uint64_t now_ms)
{
    return now_ms / 1000 / tk->rotation_s;
}

/* --- the seqlock --- */

static void read_words(const struct tickets_shm *s, struct tls_ticket_key *keys, size_t n)
{
    uint64_t w[RING_WORDS];
    for (size_t i = 0; i < n * KEY_WORDS; i++) {
        w[i] = __atomic_load_n(&s->words[i], __ATOMIC_RELAXED);
    }
    memcpy(keys, w, n * sizeof(*keys));
    kl_wipe(w, sizeof(w));
}

/* A consistent copy of the ring (any n keys), or KL_ERR_TIMEOUT. */
static int read_ring(struct tickets *tk, struct tls_ticket_key *keys, size_t *n_p)
{
    struct tickets_shm *s = tk->shm;
    for (int i = 0; i < SNAPSHOT_TRIES; i++) {
        uint32_t s1 = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            sched_yield();
            continue;
        }
        uint64_t n = __atomic_load_n(&s->n, __ATOMIC_RELAXED);
        if (n > TLS_TICKET_KEYS_MAX) {
            n = TLS_TICKET_KEYS_MAX; /* torn: the sequence check below rejects this copy */
        }
        read_words(s, keys, (size_t)n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == s1) {
            *n_p = (size_t)n;
            return 0;
        }
    }
    kl_wipe(keys, TLS_TICKET_KEYS_MAX * sizeof(*keys));
    return KL_ERR_TIMEOUT;
}

/* Under the writers' lock: publish keys[0..n) and wipe the words past them. */
static void write_ring(struct tickets *tk, const struct tls_ticket_key *keys, size_t n)
{
    struct tickets_shm *s = tk->shm;
    uint64_t w[RING_WORDS] = {0};
    uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
    /* Odd already: a writer died mid-write; the state it left is replaced whole. */
    if ((seq & 1) == 0) {
        __atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
    }
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(w, keys, n * sizeof(*keys));
    __atomic_store_n(&s->n, (uint64_t)n, __ATOMIC_RELAXED);
    for (size_t i = 0; i < RING_WORDS; i++) {
        __atomic_store_n(&s->words[i], w[i], __ATOMIC_RELAXED);
    }
    kl_wipe(w, sizeof(w));
    __atomic_store_n(&s->seq, (seq | 1) + 1, __ATOMIC_RELEASE);
}

/* --- which keys an epoch needs --- */

/* hsm: keep key k at epoch e? The window [e - past, e + 1], and always the newest key held. */
static int keep(const struct tickets *tk, const struct tls_ticket_key *k, uint64_t e, uint64_t newest)
{
    uint64_t lo = e > tk->past ? e - tk->past : 0;
    return (k->epoch >= lo && k->epoch <= e + 1) || k->epoch == newest;
}

/* keys[0..n) without what epoch e no longer needs (wiped); returns the new count. */
static size_t prune_keys(const struct tickets *tk, struct tls_ticket_key *keys, size_t n, uint64_t now_ms)
{
    if (tk->source != TICKETS_HSM || n == 0) {
        return n;
    }
    uint64_t e = tickets_epoch(tk, now_ms), newest = 0;
    for (size_t i = 0; i < n; i++) {
        /* A key from the future (a clock far behind the signer's) is never the newest to keep. */
        if (keys[i].epoch <= e + 1 && keys[i].epoch > newest) {
            newest = keys[i].epoch;
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (keep(tk, &keys[i], e, newest)) {
            if (m != i) {
                keys[m] = keys[i];
            }
            m++;
        }
    }
    kl_wipe(keys + m, (n - m) * sizeof(*keys));
    return m;
}

int tickets_snapshot(struct tickets *tk, struct tls_ticket_keys *out, uint64_t now_ms)
{
    int ret = 0;
    size_t n = 0;
    memset(out, 0, sizeof(*out));
    KL_TRY(read_ring(tk, out->keys, &n));
    n = prune_keys(tk, out->keys, n, now_ms);
    KL_ENSURE(n > 0, KL_ERR_NOT_FOUND);
    out->n = n;
    out->issue = 0;
    if (tk->source == TICKETS_HSM) {
        /* The current epoch's key; else the newest key not from the future; else the oldest. */
        uint64_t e = tickets_epoch(tk, now_ms);
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            if (out->keys[i].epoch <= e && (best == n || out->keys[i].epoch > out->keys[best].epoch)) {
                best = i;
            }
        }
        if (best == n) {
            best = 0;
            for (size_t i = 1; i < n; i++) {
                best = out->keys[i].epoch < out->keys[best].epoch ? i : best;
            }
        }
        out->issue = best;
    }
exit:
    if (ret != 0) {
        kl_wipe(out, sizeof(*out));
    }
    return ret;
}

int tickets_keys_fn(void *arg, struct tls_ticket_keys *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return tickets_snapshot(arg, out, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

size_t tickets_wanted(struct tickets *tk, uint64_t *epochs, size_t max, uint64_t now_ms, int only_ahead)
{
    struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
    size_t n = 0, m = 0;
    if (tk->source != TICKETS_HSM || read_ring(tk, keys, &n) != 0) {
        return 0;
    }
    uint64_t e = tickets_epoch(tk, now_ms);
    uint64_t lo = only_ahead ? e : (e > tk->past ? e - tk->past : 0);
    for (uint64_t ep = lo; ep <= e + 1 && m < max; ep++) {
        int held = 0;
        for (size_t i = 0; i < n; i++) {
            held |= keys[i].epoch == ep;
        }
        if (!held) {
            epochs[m++] = ep;
        }
    }
    kl_wipe(keys, sizeof(keys));
    return m;
}

int tickets_claim(struct tickets *tk, uint64_t now_mono_ms, uint64_t lease_ms)
{
    uint64_t cur = __atomic_load_n(&tk->shm->claim_until_ms, __ATOMIC_RELAXED);
    if (cur > now_mono_ms) {
        return 0;
    }
    return __atomic_compare_exchange_n(&tk->shm->claim_until_ms, &cur, now_mono_ms + lease_ms, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

void tickets_hold(struct tickets *tk, uint64_t until_mono_ms)
{
    __atomic_store_n(&tk->shm->claim_until_ms, until_mono_ms, __ATOMIC_RELEASE);
}

void tickets_release(struct tickets *tk)
{
    __atomic_store_n(&tk->shm->claim_until_ms, 0, __ATOMIC_RELEASE);
}

int tickets_install(struct tickets *tk, const struct tls_ticket_key *keys, size_t n, uint64_t now_ms)
{
    int ret = 0, locked = 0;
    struct tls_ticket_key ring[2 * TLS_TICKET_KEYS_MAX];
    size_t m = 0;
    KL_ENSURE(n <= TLS_TICKET_KEYS_MAX, KL_ERR_INVALID);
    KL_TRY(shm_lock(&tk->shm->lock));
    locked = 1;
    if (tk->source == TICKETS_HSM) {
        /* Writers are serialized by the lock: the ring can be read directly. */
        uint64_t held = __atomic_load_n(&tk->shm->n, __ATOMIC_RELAXED);
        m = held <= TLS_TICKET_KEYS_MAX ? (size_t)held : 0;
        read_words(tk->shm, ring, m);
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < m && ring[j].epoch != keys[i].epoch) {
                j++;
            }
            ring[j] = keys[i];
            m += j == m;
        }
        m = prune_keys(tk, ring, m, now_ms);
        /* Still more than fit (a clock that jumped): keep the newest epochs. */
        while (m > TLS_TICKET_KEYS_MAX) {
            size_t old = 0;
            for (size_t i = 1; i < m; i++) {
                old = ring[i].epoch < ring[old].epoch ? i : old;
            }
            ring[old] = ring[m - 1];
            kl_wipe(&ring[m - 1], sizeof(ring[0]));
            m--;
        }
    } else {
        memcpy(ring, keys, n * sizeof(*keys));
        m = n;
    }
    write_ring(tk, ring, m);
exit:
    if (locked) {
        shm_unlock(&tk->shm->lock);
    }
    kl_wipe(ring, sizeof(ring));
    return ret;
}

int tickets_prune(struct tickets *tk, uint64_t now_ms)
{
    if (tk->source != TICKETS_HSM) {
        return 0;
    }
    return tickets_install(tk, NULL, 0, now_ms);
}

size_t tickets_count(struct tickets *tk)
{
    struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
    size_t n = 0;
    if (read_ring(tk, keys, &n) != 0) {
        n = 0;
    }
    kl_wipe(keys, sizeof(keys));
    return n;
}

const void *tickets_mapping(const struct tickets *tk, size_t *len_p)
{
    *len_p = sizeof(*tk->shm);
    return tk->shm;
}

int tickets_install_response(struct tickets *tk, char *why, size_t why_len, const Keyless__V1__TicketKeysResponse *r,
                             const uint64_t *asked, size_t n_asked, uint64_t now_ms)
{
    int ret = 0;
    struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
    size_t n = 0;
    why[0] = '\0';
    if (r->status != KEYLESS__V1__STATUS__OK) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&keyless__v1__status__descriptor, (int)r->status);
        snprintf(why, why_len, "the signer refused: %s%s%s", v != NULL ? v->name : "?",
                 r->message != NULL && r->message[0] ? ": " : "", r->message != NULL ? r->message : "");
        KL_FAIL(KL_ERR_DENIED);
    }
    if (r->n_keys == 0 || r->n_keys > n_asked || r->n_keys > TLS_TICKET_KEYS_MAX) {
        snprintf(why, why_len, "%zu keys for %zu epochs asked", r->n_keys, n_asked);
        KL_FAIL(KL_ERR_INVALID);
    }
    for (size_t i = 0; i < r->n_keys; i++) {
        const Keyless__V1__TicketKey *k = r->keys[i];
        int was_asked = 0;
        for (size_t j = 0; k != NULL && j < n_asked; j++) {
            was_asked |= asked[j] == k->epoch;
        }
        if (k == NULL || k->key_id.len != TLS_TICKET_KEY_ID_LEN || k->secret.len != TLS_TICKET_SECRET_LEN ||
            !was_asked) {
            snprintf(why, why_len, "key %zu is malformed (key id %zu bytes, secret %zu bytes, or an epoch not asked)",
                     i, k != NULL ? k->key_id.len : 0, k != NULL ? k->secret.len : 0);
            KL_FAIL(KL_ERR_INVALID);
        }
        memcpy(keys[n].key_id, k->key_id.data, TLS_TICKET_KEY_ID_LEN);
        memcpy(keys[n].secret, k->secret.data, TLS_TICKET_SECRET_LEN);
        keys[n].epoch = k->epoch;
        n++;
    }
    ret = tickets_install(tk, keys, n, now_ms);
    if (ret != 0) {
        snprintf(why, why_len, "the shared key ring is locked by another worker");
    }
exit:
    kl_wipe(keys, sizeof(keys));
    return ret;
}

/* --- the key file --- */

int tickets_file_parse(struct tls_ticket_key *keys, size_t *n_p, char *why, size_t why_len, const uint8_t *data,
                       size_t len)
{
    int ret = 0;
    size_t n = len / TICKETS_FILE_KEY_LEN;
    memset(keys, 0, TLS_TICKET_KEYS_MAX * sizeof(*keys));
    if (len == 0 || len % TICKETS_FILE_KEY_LEN != 0) {
        snprintf(why, why_len, "%zu bytes is not a whole number of %d-byte keys (`openssl rand %d` makes one)", len,
                 TICKETS_FILE_KEY_LEN, TICKETS_FILE_KEY_LEN);
        KL_FAIL(KL_ERR_CONFIG);
    }
    if (n > TLS_TICKET_KEYS_MAX) {
        snprintf(why, why_len, "%zu keys: at most %d", n, TLS_TICKET_KEYS_MAX);
        KL_FAIL(KL_ERR_CONFIG);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *k = data + i * TICKETS_FILE_KEY_LEN;
        memcpy(keys[i].key_id, k, TLS_TICKET_KEY_ID_LEN);
        memcpy(keys[i].secret, k + TICKETS_FILE_NAME_LEN, TLS_TICKET_SECRET_LEN);
        keys[i].epoch = 0; /* a file's keys have no epoch: the key id alone names them */
        for (size_t j = 0; j < i; j++) {
            if (memcmp(keys[j].key_id, keys[i].key_id, TLS_TICKET_KEY_ID_LEN) == 0) {
                snprintf(why, why_len, "keys %zu and %zu have the same key id (the first 8 bytes of their name)", j + 1,
                         i + 1);
                KL_FAIL(KL_ERR_CONFIG);
            }
        }
    }
    *n_p = n;
exit:
    if (ret != 0) {
        kl_wipe(keys, TLS_TICKET_KEYS_MAX * sizeof(*keys));
    }
    return ret;
}

int tickets_file_load(struct tickets *tk, char *why, size_t why_len, const char *path, int force)
{
    int ret = 0, fd = -1;
    uint8_t data[TLS_TICKET_KEYS_MAX * TICKETS_FILE_KEY_LEN + 1];
    struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
    struct stat st;
    size_t len = 0, n = 0;
    struct tickets_shm *s = tk->shm;
    why[0] = '\0';
    if (stat(path, &st) != 0) {
        snprintf(why, why_len, "cannot read %s: %s", path, strerror(errno));
        KL_FAIL(KL_ERR_IO);
    }
    uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    if (!force && __atomic_load_n(&s->file_dev, __ATOMIC_RELAXED) == (uint64_t)st.st_dev &&
        __atomic_load_n(&s->file_ino, __ATOMIC_RELAXED) == (uint64_t)st.st_ino &&
        __atomic_load_n(&s->file_size, __ATOMIC_RELAXED) == (uint64_t)st.st_size &&
        __atomic_load_n(&s->file_mtime_ns, __ATOMIC_RELAXED) == mtime) {
        return 1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, why_len, "cannot read %s: %s", path, strerror(errno));
        KL_FAIL(KL_ERR_IO);
    }
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        snprintf(why, why_len, "%s is accessible by others (mode %04o): chmod 600 or 640", path,
                 (unsigned)(st.st_mode & 07777));
        KL_FAIL(KL_ERR_CONFIG);
    }
    while (len < sizeof(data)) {
        ssize_t r = read(fd, data + len, sizeof(data) - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            snprintf(why, why_len, "cannot read %s: %s", path, strerror(errno));
            KL_FAIL(KL_ERR_IO);
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    if (len == sizeof(data)) {
        snprintf(why, why_len, "%s: more than %d keys", path, TLS_TICKET_KEYS_MAX);
        KL_FAIL(KL_ERR_CONFIG);
    }
    char reason[200];
    if (tickets_file_parse(keys, &n, reason, sizeof(reason), data, len) != 0) {
        snprintf(why, why_len, "%s: %s", path, reason);
        KL_FAIL(KL_ERR_CONFIG);
    }
    if (tickets_install(tk, keys, n, 0) != 0) {
        snprintf(why, why_len, "%s: the shared key ring is locked by another worker", path);
        KL_FAIL(KL_ERR_TIMEOUT);
    }
    __atomic_store_n(&s->file_dev, (uint64_t)st.st_dev, __ATOMIC_RELAXED);
    __atomic_store_n(&s->file_ino, (uint64_t)st.st_ino, __ATOMIC_RELAXED);
    __atomic_store_n(&s->file_size, (uint64_t)st.st_size, __ATOMIC_RELAXED);
    __atomic_store_n(&s->file_mtime_ns, mtime, __ATOMIC_RELAXED);
exit:
    if (fd >= 0) {
        close(fd);
    }
    kl_wipe(data, sizeof(data));
    kl_wipe(keys, sizeof(keys));
    return ret;
}
