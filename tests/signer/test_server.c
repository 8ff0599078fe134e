/*
 * Unit tests for server_decode_request(), the signer's reader of peer bytes (frame header,
 * FRAME_MAX, protobuf unpack, id salvage), without a socket or a token. The same
 * function runs under fuzz_rpc_frame in the clang build; this test runs in every build.
 */
#include <stdlib.h>
#include <string.h>
#include "frame.h"
#include "keyless.pb-c.h"
#include "kl_test.h"
#include "server.h"
#include "tls_ids.h"

/* One framed SignRequest with id into out (owned by the caller: kl_buf_dispose). */
static void make_sign_frame(struct kl_buf *out, uint64_t id)
{
    static uint8_t hash[32] = {1, 2, 3};
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__SignRequest sr = KEYLESS__V1__SIGN_REQUEST__INIT;
    sr.key = "ecdsa-p256";
    sr.scheme = TLS_SIG_ECDSA_SECP256R1_SHA256;
    sr.context = KEYLESS__V1__CONTEXT__SERVER_CERTIFICATE_VERIFY;
    sr.transcript_hash.data = hash;
    sr.transcript_hash.len = sizeof(hash);
    req.id = id;
    req.body_case = KEYLESS__V1__REQUEST__BODY_SIGN;
    req.sign = &sr;
    kl_buf_init(out, FRAME_HDR_LEN + FRAME_MAX);
    if (frame_append(out, &req.base) != 0) {
        abort();
    }
}

static void test_whole_and_prefixes(void)
{
    struct kl_buf f;
    Keyless__V1__Request *req = NULL;
    uint64_t id = 0;
    size_t used = 0;
    make_sign_frame(&f, 4242);

    is_int(server_decode_request(&req, &id, &used, f.base, f.len), 0, "a whole sign frame decodes");
    ok(req != NULL && req->body_case == KEYLESS__V1__REQUEST__BODY_SIGN && req->sign != NULL &&
           strcmp(req->sign->key, "ecdsa-p256") == 0 && req->sign->transcript_hash.len == 32,
       "... into the sign request that was packed");
    ok(id == 4242 && used == f.len, "... with its id, consuming exactly the frame");
    keyless__v1__request__free_unpacked(req, NULL);

    int all_want = 1;
    for (size_t n = 0; n < f.len; n++) {
        req = NULL;
        used = 99;
        int r = server_decode_request(&req, &id, &used, f.base, n);
        if (r != KL_ERR_WANT_READ || req != NULL || used != 0) {
            all_want = 0;
        }
    }
    ok(all_want, "every strict prefix of the frame is want-more, nothing consumed, no request");

    /* Two frames back to back: the first is decoded alone. */
    struct kl_buf two;
    make_sign_frame(&two, 1);
    size_t one_len = two.len;
    struct kl_buf second;
    make_sign_frame(&second, 2);
    is_int(kl_buf_append(&two, second.base, second.len), 0, "second frame appended");
    req = NULL;
    is_int(server_decode_request(&req, &id, &used, two.base, two.len), 0, "pipelined frames: the first decodes");
    ok(id == 1 && used == one_len, "... and only the first is consumed");
    keyless__v1__request__free_unpacked(req, NULL);
    req = NULL;
    is_int(server_decode_request(&req, &id, &used, two.base + used, two.len - one_len), 0, "... then the second");
    ok(id == 2, "... with its own id");
    keyless__v1__request__free_unpacked(req, NULL);
    kl_buf_dispose(&second);
    kl_buf_dispose(&two);
    kl_buf_dispose(&f);
}

static void test_refusals(void)
{
    Keyless__V1__Request *req = NULL;
    uint64_t id = 7;
    size_t used = 7;

    /* A header announcing FRAME_MAX + 1: refused from the header, before any body byte. */
    uint8_t big[FRAME_HDR_LEN];
    uint32_t n = FRAME_MAX + 1;
    big[0] = (uint8_t)(n >> 24);
    big[1] = (uint8_t)(n >> 16);
    big[2] = (uint8_t)(n >> 8);
    big[3] = (uint8_t)n;
    is_int(server_decode_request(&req, &id, &used, big, sizeof(big)), KL_ERR_FRAME_TOO_BIG,
           "a frame over FRAME_MAX is refused from its header alone");
    ok(req == NULL, "... and yields no request");

    /* Exactly FRAME_MAX announced but not there yet: want more, not an error. */
    n = FRAME_MAX;
    big[0] = (uint8_t)(n >> 24);
    big[1] = (uint8_t)(n >> 16);
    big[2] = (uint8_t)(n >> 8);
    big[3] = (uint8_t)n;
    is_int(server_decode_request(&req, &id, &used, big, sizeof(big)), KL_ERR_WANT_READ,
           "a FRAME_MAX frame whose body has not arrived is want-more");

    /* A body that is not a Request, after a valid id field: the id is salvaged. */
    uint8_t bad[FRAME_HDR_LEN + 5] = {0, 0, 0, 5, 0x08, 0x2a, 0xff, 0xff, 0xff};
    id = 0;
    used = 0;
    is_int(server_decode_request(&req, &id, &used, bad, sizeof(bad)), KL_ERR_PROTOBUF,
           "a body that does not unpack is KL_ERR_PROTOBUF");
    ok(req == NULL && id == 42 && used == sizeof(bad), "... with the id salvaged (42) and the frame consumed");

    /* Garbage with no id: id 0, the frame still consumed (framing is intact). */
    uint8_t junk[FRAME_HDR_LEN + 3] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
    id = 99;
    is_int(server_decode_request(&req, &id, &used, junk, sizeof(junk)), KL_ERR_PROTOBUF, "garbage body refused");
    ok(id == 0 && used == sizeof(junk), "... id 0, frame consumed");

    /* An empty body is a Request with every field at its default (no operation). */
    uint8_t empty[FRAME_HDR_LEN] = {0, 0, 0, 0};
    is_int(server_decode_request(&req, &id, &used, empty, sizeof(empty)), 0, "an empty body decodes");
    ok(req != NULL && req->body_case == KEYLESS__V1__REQUEST__BODY__NOT_SET && used == FRAME_HDR_LEN,
       "... as a request with no operation (the dispatcher answers BAD_REQUEST)");
    if (req != NULL) {
        keyless__v1__request__free_unpacked(req, NULL);
    }
}

int main(void)
{
    test_whole_and_prefixes();
    test_refusals();
    return kl_test_done();
}
