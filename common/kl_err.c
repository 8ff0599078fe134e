#include "kl_err.h"

const char *kl_err_str(int err)
{
    if (err == 0)
        return "ok";
    if (kl_err_is_alert(err)) {
        switch (kl_err_alert(err)) {
        case KL_ALERT_UNEXPECTED_MESSAGE:
            return "unexpected_message";
        case KL_ALERT_BAD_RECORD_MAC:
            return "bad_record_mac";
        case KL_ALERT_RECORD_OVERFLOW:
            return "record_overflow";
        case KL_ALERT_HANDSHAKE_FAILURE:
            return "handshake_failure";
        case KL_ALERT_ILLEGAL_PARAMETER:
            return "illegal_parameter";
        case KL_ALERT_DECODE_ERROR:
            return "decode_error";
        case KL_ALERT_DECRYPT_ERROR:
            return "decrypt_error";
        case KL_ALERT_PROTOCOL_VERSION:
            return "protocol_version";
        case KL_ALERT_INSUFFICIENT_SECURITY:
            return "insufficient_security";
        case KL_ALERT_INTERNAL_ERROR:
            return "internal_error";
        case KL_ALERT_MISSING_EXTENSION:
            return "missing_extension";
        case KL_ALERT_UNSUPPORTED_EXTENSION:
            return "unsupported_extension";
        case KL_ALERT_UNRECOGNIZED_NAME:
            return "unrecognized_name";
        case KL_ALERT_NO_APPLICATION_PROTOCOL:
            return "no_application_protocol";
        case KL_ALERT_BAD_CERTIFICATE:
            return "bad_certificate";
        case KL_ALERT_UNSUPPORTED_CERTIFICATE:
            return "unsupported_certificate";
        case KL_ALERT_CERTIFICATE_REVOKED:
            return "certificate_revoked";
        case KL_ALERT_CERTIFICATE_EXPIRED:
            return "certificate_expired";
        case KL_ALERT_UNKNOWN_CA:
            return "unknown_ca";
        case KL_ALERT_CERTIFICATE_REQUIRED:
            return "certificate_required";
        default:
            return "tls alert";
        }
    }
    if (kl_err_is_peer_alert(err))
        return "alert received from peer";
    switch (err) {
    case KL_ERR_NO_MEMORY:
        return "out of memory";
    case KL_ERR_WANT_READ:
        return "need more input";
    case KL_ERR_WANT_WRITE:
        return "output blocked";
    case KL_ERR_ASYNC:
        return "asynchronous operation pending";
    case KL_ERR_OVERFLOW:
        return "buffer overflow";
    case KL_ERR_INVALID:
        return "invalid argument";
    case KL_ERR_CRYPTO:
        return "crypto library failure";
    case KL_ERR_IO:
        return "i/o error";
    case KL_ERR_CLOSED:
        return "connection closed";
    case KL_ERR_TIMEOUT:
        return "timed out";
    case KL_ERR_FRAME_TOO_BIG:
        return "rpc frame too big";
    case KL_ERR_PROTOBUF:
        return "malformed rpc message";
    case KL_ERR_CONFIG:
        return "configuration error";
    case KL_ERR_NOT_FOUND:
        return "not found";
    case KL_ERR_HSM:
        return "hsm failure";
    case KL_ERR_DENIED:
        return "denied";
    case KL_ERR_AUDIT:
        return "audit log failure";
    default:
        return "unknown error";
    }
}
