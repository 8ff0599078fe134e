/* Unit tests for common/kl_err: the three error classes, kl_err_alert() for every alert and
 * every internal error, kl_err_str() (never NULL, a distinct text per internal error), and
 * the KL_TRY/KL_ENSURE single-exit macros. */
#include <limits.h>
#include "kl_test.h"
#include "kl_err.h"

static const int alerts[] = {
    KL_ALERT_CLOSE_NOTIFY,
    KL_ALERT_UNEXPECTED_MESSAGE,
    KL_ALERT_BAD_RECORD_MAC,
    KL_ALERT_RECORD_OVERFLOW,
    KL_ALERT_HANDSHAKE_FAILURE,
    KL_ALERT_BAD_CERTIFICATE,
    KL_ALERT_UNSUPPORTED_CERTIFICATE,
    KL_ALERT_CERTIFICATE_REVOKED,
    KL_ALERT_CERTIFICATE_EXPIRED,
    KL_ALERT_CERTIFICATE_UNKNOWN,
    KL_ALERT_ILLEGAL_PARAMETER,
    KL_ALERT_UNKNOWN_CA,
    KL_ALERT_ACCESS_DENIED,
    KL_ALERT_DECODE_ERROR,
    KL_ALERT_DECRYPT_ERROR,
    KL_ALERT_PROTOCOL_VERSION,
    KL_ALERT_INSUFFICIENT_SECURITY,
    KL_ALERT_INTERNAL_ERROR,
    KL_ALERT_INAPPROPRIATE_FALLBACK,
    KL_ALERT_USER_CANCELED,
    KL_ALERT_MISSING_EXTENSION,
    KL_ALERT_UNSUPPORTED_EXTENSION,
    KL_ALERT_UNRECOGNIZED_NAME,
    KL_ALERT_BAD_CERTIFICATE_STATUS_RESPONSE,
    KL_ALERT_UNKNOWN_PSK_IDENTITY,
    KL_ALERT_CERTIFICATE_REQUIRED,
    KL_ALERT_NO_APPLICATION_PROTOCOL,
};

static const int internals[] = {
    KL_ERR_NO_MEMORY, KL_ERR_WANT_READ, KL_ERR_ASYNC,   KL_ERR_OVERFLOW,      KL_ERR_INVALID,    KL_ERR_CRYPTO,
    KL_ERR_IO,        KL_ERR_CLOSED,    KL_ERR_TIMEOUT, KL_ERR_FRAME_TOO_BIG, KL_ERR_PROTOBUF,   KL_ERR_CONFIG,
    KL_ERR_NOT_FOUND, KL_ERR_HSM,       KL_ERR_DENIED,  KL_ERR_AUDIT,         KL_ERR_WANT_WRITE,
};
#define N_INTERNALS (int)(sizeof(internals) / sizeof(internals[0]))

static void test_classes(void)
{
    int bad_send = 0, bad_peer = 0;
    for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++) {
        int a = alerts[i];
        int e = KL_ERR_ALERT(a);
        if (!(e < 0 && kl_err_is_alert(e) && kl_err_alert(e) == a && -e == (0x100 | a)))
            bad_send++;
        int p = KL_ERR_PEER_ALERT(a);
        /* An alert the peer sent is not one we send back: the answer is internal_error. */
        if (!(p < 0 && !kl_err_is_alert(p) && kl_err_alert(p) == KL_ALERT_INTERNAL_ERROR && -p == (0x200 | a)))
            bad_peer++;
    }
    is_int(bad_send, 0, "every alert: KL_ERR_ALERT is negative, in class 0x100, and maps back to the alert");
    is_int(bad_peer, 0, "every alert: KL_ERR_PEER_ALERT is not an alert to send; kl_err_alert gives internal_error");
    is_int(kl_err_alert(KL_ERR_DECODE), KL_ALERT_DECODE_ERROR, "KL_ERR_DECODE -> decode_error");
    is_int(kl_err_alert(KL_ERR_ILLEGAL_PARAMETER), KL_ALERT_ILLEGAL_PARAMETER, "KL_ERR_ILLEGAL_PARAMETER");
    is_int(kl_err_alert(KL_ERR_UNEXPECTED_MESSAGE), KL_ALERT_UNEXPECTED_MESSAGE, "KL_ERR_UNEXPECTED_MESSAGE");
    is_int(kl_err_alert(KL_ERR_BAD_RECORD_MAC), KL_ALERT_BAD_RECORD_MAC, "KL_ERR_BAD_RECORD_MAC");
    is_int(kl_err_alert(KL_ERR_RECORD_OVERFLOW), KL_ALERT_RECORD_OVERFLOW, "KL_ERR_RECORD_OVERFLOW");
    is_int(kl_err_alert(KL_ERR_HANDSHAKE_FAILURE), KL_ALERT_HANDSHAKE_FAILURE, "KL_ERR_HANDSHAKE_FAILURE");
    is_int(kl_err_alert(KL_ERR_INTERNAL), KL_ALERT_INTERNAL_ERROR, "KL_ERR_INTERNAL");

    int bad = 0;
    for (int i = 0; i < N_INTERNALS; i++) {
        int e = internals[i];
        if (!(e < 0 && ((-e) & 0xf00) == KL_ERR_CLASS_INTERNAL && !kl_err_is_alert(e) &&
              kl_err_alert(e) == KL_ALERT_INTERNAL_ERROR))
            bad++;
        for (int j = 0; j < i; j++) {
            if (internals[j] == e)
                bad++;
        }
    }
    is_int(bad, 0, "internal errors: distinct, class 0x300, never an alert; kl_err_alert gives internal_error");
    ok(!kl_err_is_alert(0), "0 is not an alert");
    ok(!kl_err_is_alert(0x132), "a positive value is not an alert");
    ok(!kl_err_is_alert(-0x432), "class 0x400 is not an alert");
    /* INT_MIN is left out: kl_err_is_alert() negates its argument, which overflows there. */
    is_int(kl_err_alert(-INT_MAX), KL_ALERT_INTERNAL_ERROR, "-INT_MAX -> internal_error");
}

static void test_str(void)
{
    int nulls = 0;
    const int extremes[] = {-INT_MAX, INT_MAX, -0x1000, 0x100, 1};
    for (int e = -0x500; e <= 0x10; e++) {
        if (kl_err_str(e) == NULL)
            nulls++;
    }
    for (size_t i = 0; i < sizeof(extremes) / sizeof(extremes[0]); i++) {
        if (kl_err_str(extremes[i]) == NULL)
            nulls++;
    }
    is_int(nulls, 0, "kl_err_str is never NULL (-0x500..0x10, -INT_MAX, INT_MAX, ...)");

    ok(strcmp(kl_err_str(0), "ok") == 0, "0 -> ok");
    ok(strcmp(kl_err_str(KL_ERR_DECODE), "decode_error") == 0, "an alert is named as in RFC 8446");
    ok(strcmp(kl_err_str(KL_ERR_ALERT(KL_ALERT_NO_APPLICATION_PROTOCOL)), "no_application_protocol") == 0,
       "no_application_protocol");
    ok(strcmp(kl_err_str(KL_ERR_ALERT(KL_ALERT_ACCESS_DENIED)), "tls alert") == 0,
       "an alert without a name: tls alert");
    ok(strcmp(kl_err_str(KL_ERR_ALERT(KL_ALERT_UNKNOWN_CA)), "unknown_ca") == 0 &&
           strcmp(kl_err_str(KL_ERR_ALERT(KL_ALERT_CERTIFICATE_REQUIRED)), "certificate_required") == 0,
       "the client-certificate alerts are named (mTLS logs)");
    ok(strcmp(kl_err_str(KL_ERR_PEER_ALERT(KL_ALERT_DECODE_ERROR)), "alert received from peer") == 0,
       "a peer alert says so");
    ok(strcmp(kl_err_str(KL_ERR_NO_MEMORY), "out of memory") == 0, "KL_ERR_NO_MEMORY -> out of memory");
    ok(strcmp(kl_err_str(-0x3ff), "unknown error") == 0, "an unassigned internal code -> unknown error");
    ok(strcmp(kl_err_str(5), "unknown error") == 0, "a positive value -> unknown error");

    int unnamed = 0, same = 0;
    for (int i = 0; i < N_INTERNALS; i++) {
        const char *s = kl_err_str(internals[i]);
        if (strcmp(s, "unknown error") == 0)
            unnamed++;
        for (int j = 0; j < i; j++) {
            if (strcmp(kl_err_str(internals[j]), s) == 0)
                same++;
        }
    }
    is_int(unnamed, 0, "every internal error has its own text (none is 'unknown error')");
    is_int(same, 0, "... and no two share one");
}

static int cleaned;

static int try_ensure(int first, int cond, int second)
{
    int ret;
    cleaned = 0;
    KL_TRY(first);
    KL_ENSURE(cond, KL_ERR_INVALID);
    KL_TRY(second);
    ret = 0;
exit:
    cleaned = 1;
    return ret;
}

static void test_macros(void)
{
    is_int(try_ensure(0, 1, 0), 0, "KL_TRY/KL_ENSURE: all good -> 0");
    ok(cleaned, "... through the exit label");
    is_int(try_ensure(KL_ERR_DECODE, 1, 0), KL_ERR_DECODE, "KL_TRY returns the first error");
    ok(cleaned, "... through the exit label");
    is_int(try_ensure(0, 0, KL_ERR_IO), KL_ERR_INVALID, "KL_ENSURE sets its error and stops there");
    is_int(try_ensure(0, 1, KL_ERR_IO), KL_ERR_IO, "a later KL_TRY's error");
}

int main(void)
{
    test_classes();
    test_str();
    test_macros();
    return kl_test_done();
}
