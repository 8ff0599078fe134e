/*
 * kl_err.h - the one error convention shared by the frontend and the signer.
 *
 * Every fallible function returns int: 0 is success, a negative KL_ERR_* value is
 * a failure. Errors have classes so that any failure maps straight to what goes on
 * the wire:
 *   -(0x100 | alert)  a TLS alert we must send (alert = RFC 8446 AlertDescription);
 *   -(0x200 | alert)  an alert the peer sent us;
 *   -0x3xx            internal conditions (no memory, would block, async pending ...).
 * kl_err_alert() turns any error into the alert to send.
 */
#ifndef KL_ERR_H
#define KL_ERR_H

#include <stdint.h>

#define KL_MUST_CHECK __attribute__((warn_unused_result))

/* RFC 8446 section 6 AlertDescription values. */
enum kl_alert {
    KL_ALERT_CLOSE_NOTIFY = 0,
    KL_ALERT_UNEXPECTED_MESSAGE = 10,
    KL_ALERT_BAD_RECORD_MAC = 20,
    KL_ALERT_RECORD_OVERFLOW = 22,
    KL_ALERT_HANDSHAKE_FAILURE = 40,
    KL_ALERT_BAD_CERTIFICATE = 42,
    KL_ALERT_UNSUPPORTED_CERTIFICATE = 43,
    KL_ALERT_CERTIFICATE_REVOKED = 44,
    KL_ALERT_CERTIFICATE_EXPIRED = 45,
    KL_ALERT_CERTIFICATE_UNKNOWN = 46,
    KL_ALERT_ILLEGAL_PARAMETER = 47,
    KL_ALERT_UNKNOWN_CA = 48,
    KL_ALERT_ACCESS_DENIED = 49,
    KL_ALERT_DECODE_ERROR = 50,
    KL_ALERT_DECRYPT_ERROR = 51,
    KL_ALERT_PROTOCOL_VERSION = 70,
    KL_ALERT_INSUFFICIENT_SECURITY = 71,
    KL_ALERT_INTERNAL_ERROR = 80,
    KL_ALERT_INAPPROPRIATE_FALLBACK = 86,
    KL_ALERT_USER_CANCELED = 90,
    KL_ALERT_MISSING_EXTENSION = 109,
    KL_ALERT_UNSUPPORTED_EXTENSION = 110,
    KL_ALERT_UNRECOGNIZED_NAME = 112,
    KL_ALERT_BAD_CERTIFICATE_STATUS_RESPONSE = 113,
    KL_ALERT_UNKNOWN_PSK_IDENTITY = 115,
    KL_ALERT_CERTIFICATE_REQUIRED = 116,
    KL_ALERT_NO_APPLICATION_PROTOCOL = 120,
};

#define KL_ERR_CLASS_ALERT 0x100      /* we send this alert */
#define KL_ERR_CLASS_PEER_ALERT 0x200 /* the peer sent this alert */
#define KL_ERR_CLASS_INTERNAL 0x300

#define KL_ERR_ALERT(a) (-(KL_ERR_CLASS_ALERT | (int)(a)))
#define KL_ERR_PEER_ALERT(a) (-(KL_ERR_CLASS_PEER_ALERT | (int)(a)))

/* Shorthands for the alerts used most. */
#define KL_ERR_DECODE KL_ERR_ALERT(KL_ALERT_DECODE_ERROR)
#define KL_ERR_ILLEGAL_PARAMETER KL_ERR_ALERT(KL_ALERT_ILLEGAL_PARAMETER)
#define KL_ERR_UNEXPECTED_MESSAGE KL_ERR_ALERT(KL_ALERT_UNEXPECTED_MESSAGE)
#define KL_ERR_BAD_RECORD_MAC KL_ERR_ALERT(KL_ALERT_BAD_RECORD_MAC)
#define KL_ERR_RECORD_OVERFLOW KL_ERR_ALERT(KL_ALERT_RECORD_OVERFLOW)
#define KL_ERR_HANDSHAKE_FAILURE KL_ERR_ALERT(KL_ALERT_HANDSHAKE_FAILURE)
#define KL_ERR_INTERNAL KL_ERR_ALERT(KL_ALERT_INTERNAL_ERROR)

/* Internal conditions (never an alert by themselves; kl_err_alert gives internal_error). */
#define KL_ERR_NO_MEMORY (-0x301)
#define KL_ERR_WANT_READ (-0x302) /* need more input bytes */
#define KL_ERR_ASYNC (-0x303)     /* waiting for an asynchronous operation (the signature) */
#define KL_ERR_OVERFLOW (-0x304)  /* an output buffer or a bounded block is full */
#define KL_ERR_INVALID (-0x305)   /* invalid argument / API misuse */
#define KL_ERR_CRYPTO (-0x306)    /* a crypto library call failed */
#define KL_ERR_IO (-0x307)        /* a system call failed; errno says why */
#define KL_ERR_CLOSED (-0x308)    /* the peer closed the connection / sent close_notify */
#define KL_ERR_TIMEOUT (-0x309)
#define KL_ERR_FRAME_TOO_BIG (-0x30a) /* an RPC frame over FRAME_MAX */
#define KL_ERR_PROTOBUF (-0x30b)      /* an RPC frame that does not unpack */
#define KL_ERR_CONFIG (-0x30c)
#define KL_ERR_NOT_FOUND (-0x30d)
#define KL_ERR_HSM (-0x30e)
#define KL_ERR_DENIED (-0x30f)
#define KL_ERR_AUDIT (-0x310) /* the audit log could not be written */
#define KL_ERR_WANT_WRITE (-0x311)

/* Set ret and jump to the function's single exit label. */
#define KL_TRY(expr)                                                                                                   \
    do {                                                                                                               \
        if ((ret = (expr)) != 0)                                                                                       \
            goto exit;                                                                                                 \
    } while (0)
#define KL_ENSURE(cond, err)                                                                                           \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            ret = (err);                                                                                               \
            goto exit;                                                                                                 \
        }                                                                                                              \
    } while (0)

#define KL_FAIL(err)                                                                                                   \
    do {                                                                                                               \
        ret = (err);                                                                                                   \
        goto exit;                                                                                                     \
    } while (0)

/* The magnitude of a negative error as unsigned (defined for INT_MIN too). */
static inline unsigned kl_err_code(int err)
{
    return 0u - (unsigned)err;
}

/* True if err asks us to send an alert. */
static inline int kl_err_is_alert(int err)
{
    return err < 0 && (kl_err_code(err) & 0xf00u) == KL_ERR_CLASS_ALERT;
}

/* True if err reports an alert the peer sent us (we must not answer it with one). */
static inline int kl_err_is_peer_alert(int err)
{
    return err < 0 && (kl_err_code(err) & 0xf00u) == KL_ERR_CLASS_PEER_ALERT;
}

/* The alert to send for any error: the alert itself, or internal_error. */
static inline uint8_t kl_err_alert(int err)
{
    if (kl_err_is_alert(err))
        return (uint8_t)(kl_err_code(err) & 0xffu);
    return KL_ALERT_INTERNAL_ERROR;
}

/* A short static description of err, for logs. Never NULL. */
const char *kl_err_str(int err);

#endif
