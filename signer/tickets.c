/*
 * tickets.c - ticket keys derived in the token (tickets.h).
 */
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "kl_buf.h"
#include "policy.h"
#include "tickets.h"

static const char label_key[] = "keyless ticket key v1";
static const char label_id[] = "keyless ticket key id v1";

int tickets_peer_allowed(const struct cfg_tickets *t, uid_t uid, gid_t gid, uid_t self_uid)
{
    /* The same rule as a key's allow lists (policy.h), so both read the same in the config. */
    struct policy_key pk = {NULL, 0, t->uids, t->n_uids, t->gids, t->n_gids, 0, 0};
    pk.allow_same_uid = t->allow_same_uid;
    return policy_peer_allowed(&pk, uid, gid, self_uid);
}

Keyless__V1__Status tickets_check(const char **why_p, const struct cfg_tickets *t, uid_t uid, gid_t gid, uid_t self_uid,
                                  uint64_t now_unix, uint32_t rotation, const uint64_t *epochs, size_t n_epochs)
{
    uint64_t now_epoch, oldest;

    *why_p = NULL;
    if (t == NULL || !t->present) {
        *why_p = "ticket keys not configured";
        return KEYLESS__V1__STATUS__NOT_AUTHORIZED;
    }
    if (!tickets_peer_allowed(t, uid, gid, self_uid)) {
        *why_p = "peer uid/gid may not fetch ticket keys";
        return KEYLESS__V1__STATUS__NOT_AUTHORIZED;
    }
    if (rotation < TICKETS_MIN_ROTATION || rotation > TICKETS_MAX_ROTATION) {
        *why_p = "rotation_seconds must be 60..604800";
        return KEYLESS__V1__STATUS__BAD_REQUEST;
    }
    if (n_epochs == 0 || n_epochs > TICKETS_MAX_EPOCHS) {
        *why_p = "ask for 1 to 8 epochs";
        return KEYLESS__V1__STATUS__BAD_REQUEST;
    }
    for (size_t i = 0; i < n_epochs; i++) {
        for (size_t k = 0; k < i; k++) {
            if (epochs[k] == epochs[i]) {
                *why_p = "an epoch is asked twice";
                return KEYLESS__V1__STATUS__BAD_REQUEST;
            }
        }
    }
    /* Only keys a frontend can use now: the current epoch, the next one (a clock a little
     * ahead, a rotation about to happen) and accept_epochs before it (tickets still alive).
     * A compromised frontend cannot stock up on future keys. */
    now_epoch = now_unix / rotation;
    oldest = now_epoch > t->accept_epochs ? now_epoch - t->accept_epochs : 0;
    for (size_t i = 0; i < n_epochs; i++) {
        if (epochs[i] < oldest || epochs[i] > now_epoch + 1) {
            *why_p = "epoch outside the accepted window [now - accept_epochs, now + 1]";
            return KEYLESS__V1__STATUS__BAD_REQUEST;
        }
    }
    return KEYLESS__V1__STATUS__OK;
}

int tickets_label(uint8_t out[TICKETS_LABEL_MAX], size_t *len_p, const char *scope, uint32_t rotation, uint64_t epoch)
{
    size_t n = 0, scope_len;

    if (scope == NULL || (scope_len = strlen(scope)) > 64) {
        return KL_ERR_INVALID;
    }
    /* Both strings are NUL-terminated in the input, so no (scope, numbers) pair can be
     * read as another; the numbers are fixed width. */
    memcpy(out, label_key, sizeof(label_key)); /* with its NUL */
    n = sizeof(label_key);
    memcpy(out + n, scope, scope_len + 1);
    n += scope_len + 1;
    for (int s = 24; s >= 0; s -= 8) {
        out[n++] = (uint8_t)(rotation >> s);
    }
    for (int s = 56; s >= 0; s -= 8) {
        out[n++] = (uint8_t)(epoch >> s);
    }
    *len_p = n;
    return 0;
}

void tickets_key_id(uint8_t id[TICKETS_KEY_ID_LEN], const uint8_t secret[TICKETS_SECRET_LEN])
{
    uint8_t in[sizeof(label_id) + TICKETS_SECRET_LEN], h[CRYPTO_SHA256_LEN];

    memcpy(in, label_id, sizeof(label_id)); /* with its NUL */
    memcpy(in + sizeof(label_id), secret, TICKETS_SECRET_LEN);
    crypto_sha256(h, in, sizeof(in));
    memcpy(id, h, TICKETS_KEY_ID_LEN);
    kl_wipe(in, sizeof(in));
    kl_wipe(h, sizeof(h));
}

int tickets_derive(struct tickets_job *tj, struct p11_backend *be, unsigned session_index)
{
    int ret = 0;
    uint8_t label[TICKETS_LABEL_MAX];
    size_t label_len = 0;

    tj->derived = 0;
    KL_ENSURE(tj->n <= TICKETS_MAX_EPOCHS && tj->root != NULL, KL_ERR_INVALID);
    for (size_t i = 0; i < tj->n; i++) {
        KL_TRY(tickets_label(label, &label_len, tj->scope, tj->rotation, tj->epochs[i]));
        KL_TRY(p11_hmac_sha256(be, tj->secrets[i], session_index, tj->root, label, label_len));
        tickets_key_id(tj->key_ids[i], tj->secrets[i]);
    }
    tj->derived = 1;
exit:
    if (ret != 0) {
        tickets_job_wipe(tj);
    }
    return ret;
}

void tickets_audit(struct audit_ticket_keys *out, const struct tickets_job *tj)
{
    memset(out, 0, sizeof(*out));
    out->scope = tj->scope;
    out->rotation = tj->rotation;
    out->epochs = tj->epochs;
    out->n = tj->n;
    out->key_ids = tj->derived ? (const uint8_t(*)[AUDIT_TICKET_KEY_ID_LEN])tj->key_ids : NULL;
}

void tickets_response(Keyless__V1__TicketKeysResponse *resp, Keyless__V1__TicketKey *keys,
                      Keyless__V1__TicketKey **ptrs, Keyless__V1__Status st, const char *message,
                      const struct tickets_job *tj)
{
    keyless__v1__ticket_keys_response__init(resp);
    resp->status = st;
    resp->message = (char *)(message != NULL ? message : "");
    if (st != KEYLESS__V1__STATUS__OK || tj == NULL || !tj->derived) {
        if (st == KEYLESS__V1__STATUS__OK) {
            /* Never an OK without its keys. */
            resp->status = KEYLESS__V1__STATUS__HSM_ERROR;
            resp->message = (char *)"the ticket keys were not derived";
        }
        return;
    }
    for (size_t i = 0; i < tj->n; i++) {
        keyless__v1__ticket_key__init(&keys[i]);
        keys[i].epoch = tj->epochs[i];
        keys[i].key_id.data = (uint8_t *)tj->key_ids[i];
        keys[i].key_id.len = TICKETS_KEY_ID_LEN;
        keys[i].secret.data = (uint8_t *)tj->secrets[i];
        keys[i].secret.len = TICKETS_SECRET_LEN;
        ptrs[i] = &keys[i];
    }
    resp->keys = ptrs;
    resp->n_keys = tj->n;
}

void tickets_job_wipe(struct tickets_job *tj)
{
    if (tj == NULL) {
        return;
    }
    kl_wipe(tj->secrets, sizeof(tj->secrets));
    kl_wipe(tj->key_ids, sizeof(tj->key_ids));
    tj->derived = 0;
}

void tickets_job_free(struct tickets_job *tj)
{
    if (tj == NULL) {
        return;
    }
    tickets_job_wipe(tj);
    free(tj);
}
