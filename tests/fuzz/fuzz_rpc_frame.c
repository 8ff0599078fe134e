/*
 * fuzz_rpc_frame.c - libFuzzer target for what the signer does with the bytes a peer
 * sends: the frame header (FRAME_MAX checked first) and the protobuf unpack, through
 * server_decode_request(), the function the server's connection reader calls.
 *
 * Input: a byte stream read as the server reads a connection: requests are decoded one
 * after another until one is incomplete (KL_ERR_WANT_READ) or the stream cannot go on
 * (KL_ERR_FRAME_TOO_BIG). Invariants checked (abort on violation):
 *   - a decoded or undecodable frame consumes at least its header and never more than
 *     the input, and a strict prefix of it is "want more";
 *   - a request whose body is sign carries a SignRequest with a key string (the
 *     dispatcher reads req->sign->key), and its hash pointer is set when its length is;
 *   - a decoded request packs again to its announced size, and if that unpacks, to the
 *     same id and body.
 */
#include <stdlib.h>
#include <string.h>
#include "frame.h"
#include "keyless.pb-c.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const Keyless__V1__Request *req, uint64_t id)
{
    uint8_t *packed;
    size_t n;
    Keyless__V1__Request *again;

    if (req->id != id) {
        abort();
    }
    if (req->body_case == KEYLESS__V1__REQUEST__BODY_SIGN) {
        const Keyless__V1__SignRequest *sr = req->sign;
        if (sr == NULL || sr->key == NULL || sr->server_name == NULL || sr->client_address == NULL ||
            (sr->transcript_hash.len > 0 && sr->transcript_hash.data == NULL)) {
            abort();
        }
    }
    /* Not bounded by FRAME_MAX: a short non-canonical varint in the input (a negative
     * enum in 5 bytes) packs back to 10. */
    n = keyless__v1__request__get_packed_size(req);
    if ((packed = malloc(n > 0 ? n : 1)) == NULL) {
        abort();
    }
    if (keyless__v1__request__pack(req, packed) != n) {
        abort();
    }
    again = keyless__v1__request__unpack(NULL, n, packed);
    free(packed);
    /* protobuf-c keeps unknown fields as they came, and accepts some (a field number 0 in
     * a two-byte tag) that it refuses once packed canonically: only what does unpack
     * again is compared. */
    if (again != NULL && (again->id != req->id || again->body_case != req->body_case)) {
        abort();
    }
    if (again != NULL) {
        keyless__v1__request__free_unpacked(again, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    for (;;) {
        Keyless__V1__Request *req = NULL;
        uint64_t id = 0;
        size_t used = 0;
        int ret = server_decode_request(&req, &id, &used, data + off, size - off);
        if (ret == KL_ERR_WANT_READ || ret == KL_ERR_FRAME_TOO_BIG) {
            if (req != NULL || used != 0) {
                abort();
            }
            break;
        }
        if ((ret != 0 && ret != KL_ERR_PROTOBUF) || used < FRAME_HDR_LEN || used > size - off ||
            (ret == 0) != (req != NULL)) {
            abort();
        }
        /* The frame is only complete with its last byte. */
        Keyless__V1__Request *none = NULL;
        uint64_t id2;
        size_t used2;
        if (server_decode_request(&none, &id2, &used2, data + off, used - 1) != KL_ERR_WANT_READ || none != NULL) {
            abort();
        }
        if (req != NULL) {
            check_request(req, id);
            keyless__v1__request__free_unpacked(req, NULL);
        }
        off += used;
    }
    return 0;
}
