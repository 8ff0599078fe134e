/*
 * tickets.h - session ticket keys derived in the token (issue 11): who may ask, which
 * epochs may be asked, and the derivation itself.
 *
 * Purpose: a fleet's frontends resume each other's TLS 1.3 tickets without a key file on
 * any disk. Every signer that reaches the same token and is configured with the same
 * scope derives the same key for an epoch (floor(unix time / rotation)):
 *
 *   secret = HMAC-SHA256(root, "keyless ticket key v1" || 0x00 || scope || 0x00 ||
 *                              be32(rotation) || be64(epoch))      computed by the token
 *   key_id = SHA-256("keyless ticket key id v1" || 0x00 || secret)[0..8)
 *
 * The root is the non-extractable secret key of [tickets] key; the HMAC runs inside the
 * token (C_Sign with CKM_SHA256_HMAC), so the root never leaves it. The scope keeps one
 * site's leaked epoch key from opening another site's tickets, and the rotation keeps two
 * rotation periods from sharing keys. The key id is public (it goes in clear in tickets)
 * and reveals nothing of the secret (a hash of it under its own label).
 *
 * The request checks (tickets_check) are the policy of the op: the decision is made here
 * from plain values, no wire parsing and no connection state (STYLE rule 8).
 *
 * Ownership: a struct tickets_job is owned by the job that carries it; it borrows the
 * root and the scope (the backend and the config outlive every job). Its secrets are
 * wiped by tickets_job_wipe() and tickets_job_free().
 */
#ifndef SIGNER_TICKETS_H
#define SIGNER_TICKETS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "audit_line.h"
#include "config.h"
#include "keyless.pb-c.h"
#include "kl_err.h"
#include "p11_backend.h"

#define TICKETS_MAX_EPOCHS 8
#define TICKETS_SECRET_LEN 32
#define TICKETS_KEY_ID_LEN AUDIT_TICKET_KEY_ID_LEN
#define TICKETS_MIN_ROTATION 60u              /* one minute */
#define TICKETS_MAX_ROTATION (7u * 24 * 3600) /* seven days: RFC 8446 4.6.1's ticket lifetime limit */
/* "keyless ticket key v1" 0 scope(<= 64) 0 be32 be64 */
#define TICKETS_LABEL_MAX (21 + 1 + 64 + 1 + 4 + 8)

/* 1 if a peer with uid/gid may ask for ticket keys under t (self_uid: the signer's own
 * uid, allowed when t lists no uid and no gid, as for a key). */
int tickets_peer_allowed(const struct cfg_tickets *t, uid_t uid, gid_t gid, uid_t self_uid);

/*
 * May this TicketKeys request be answered? KEYLESS__V1__STATUS__OK, or the refusal status
 * with *why_p set to a static reason (the text audited and sent back), checked in this
 * order:
 *   NOT_AUTHORIZED  "ticket keys not configured"                 (t NULL or not present)
 *   NOT_AUTHORIZED  "peer uid/gid may not fetch ticket keys"
 *   BAD_REQUEST     "rotation_seconds must be 60..604800"
 *   BAD_REQUEST     "ask for 1 to 8 epochs"
 *   BAD_REQUEST     "an epoch is asked twice"
 *   BAD_REQUEST     "epoch outside the accepted window [now - accept_epochs, now + 1]"
 * now_unix is the signer's wall clock (seconds since 1970); the current epoch is
 * now_unix / rotation.
 */
Keyless__V1__Status tickets_check(const char **why_p, const struct cfg_tickets *t, uid_t uid, gid_t gid, uid_t self_uid,
                                  uint64_t now_unix, uint32_t rotation, const uint64_t *epochs, size_t n_epochs);

/*
 * The HMAC input for one epoch into out (TICKETS_LABEL_MAX bytes), *len_p its length.
 * KL_ERR_INVALID if scope is NULL or longer than 64 bytes. Exposed for the tests.
 */
KL_MUST_CHECK int tickets_label(uint8_t out[TICKETS_LABEL_MAX], size_t *len_p, const char *scope, uint32_t rotation,
                                uint64_t epoch);

/* The public id of a ticket key secret. */
void tickets_key_id(uint8_t id[TICKETS_KEY_ID_LEN], const uint8_t secret[TICKETS_SECRET_LEN]);

/* One TicketKeys request in a job: what is asked (filled by the server) and the answer. */
struct tickets_job {
    const struct p11_secret *root; /* borrowed */
    const char *scope;             /* borrowed */
    uint32_t rotation;
    size_t n;
    uint64_t epochs[TICKETS_MAX_EPOCHS];
    uint8_t key_ids[TICKETS_MAX_EPOCHS][TICKETS_KEY_ID_LEN];
    uint8_t secrets[TICKETS_MAX_EPOCHS][TICKETS_SECRET_LEN];
    int derived; /* key_ids and secrets hold the answer (cleared by tickets_job_wipe) */
};

/*
 * Derive every asked epoch's secret and key id on PKCS#11 session slot session_index.
 * 0, or KL_ERR_HSM / KL_ERR_INVALID from the token (then nothing is kept: the secrets are
 * wiped and derived stays 0).
 */
KL_MUST_CHECK int tickets_derive(struct tickets_job *tj, struct p11_backend *be, unsigned session_index);

/* The audit view of tj (borrowing from it): epochs, and the key ids once derived. */
void tickets_audit(struct audit_ticket_keys *out, const struct tickets_job *tj);

/*
 * Point resp (a TicketKeysResponse) at tj's keys when derived and st is OK (keys and ptrs
 * hold TICKETS_MAX_EPOCHS entries each and must outlive the packing); else only status
 * and message. Nothing is copied: wipe tj after the response is packed.
 */
void tickets_response(Keyless__V1__TicketKeysResponse *resp, Keyless__V1__TicketKey *keys,
                      Keyless__V1__TicketKey **ptrs, Keyless__V1__Status st, const char *message,
                      const struct tickets_job *tj);

/* Wipe the secrets and key ids (derived becomes 0). NULL is fine. */
void tickets_job_wipe(struct tickets_job *tj);

/* Wipe and free. NULL is fine. */
void tickets_job_free(struct tickets_job *tj);

#endif
