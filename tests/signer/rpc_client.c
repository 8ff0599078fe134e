#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "rpc_client.h"

int rpc_client_connect(struct rpc_client *c, const char *path)
{
    struct sockaddr_un sa;
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        return KL_ERR_INVALID;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return KL_ERR_IO;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(c->fd);
        c->fd = -1;
        return KL_ERR_IO;
    }
    pthread_mutex_init(&c->send_lock, NULL);
    kl_buf_init(&c->in, 2 * (FRAME_HDR_LEN + FRAME_MAX));
    return 0;
}

void rpc_client_close(struct rpc_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
        pthread_mutex_destroy(&c->send_lock);
    }
    kl_buf_dispose(&c->in);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return KL_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int rpc_client_send_raw(struct rpc_client *c, const void *buf, size_t len)
{
    int ret;
    pthread_mutex_lock(&c->send_lock);
    ret = write_all(c->fd, buf, len);
    pthread_mutex_unlock(&c->send_lock);
    return ret;
}

int rpc_client_send(struct rpc_client *c, const Keyless__V1__Request *req)
{
    struct kl_buf out;
    int ret;
    kl_buf_init(&out, FRAME_HDR_LEN + FRAME_MAX);
    if ((ret = frame_append(&out, &req->base)) == 0) {
        ret = rpc_client_send_raw(c, out.base, out.len);
    }
    kl_buf_dispose(&out);
    return ret;
}

int rpc_client_recv(struct rpc_client *c, Keyless__V1__Response **resp_p, int timeout_ms)
{
    for (;;) {
        struct kl_span body;
        size_t used;
        int ret = frame_next(&body, &used, c->in.base, c->in.len);
        if (ret == 0) {
            *resp_p = keyless__v1__response__unpack(NULL, body.len, body.base);
            kl_buf_consume(&c->in, used);
            return *resp_p != NULL ? 0 : KL_ERR_PROTOBUF;
        }
        if (ret != KL_ERR_WANT_READ) {
            return ret;
        }
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr == 0) {
            return KL_ERR_TIMEOUT;
        }
        if ((ret = kl_buf_reserve(&c->in, 16384)) != 0) {
            return ret;
        }
        ssize_t n = recv(c->fd, c->in.base + c->in.len, c->in.cap - c->in.len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return KL_ERR_CLOSED;
        }
        c->in.len += (size_t)n;
    }
}

void rpc_client_sign_request(Keyless__V1__Request *req, Keyless__V1__SignRequest *sr, uint64_t id, const char *key,
                             uint32_t scheme, int context, const uint8_t *hash, size_t hash_len)
{
    keyless__v1__request__init(req);
    keyless__v1__sign_request__init(sr);
    req->id = id;
    req->body_case = KEYLESS__V1__REQUEST__BODY_SIGN;
    req->sign = sr;
    sr->key = (char *)key;
    sr->scheme = scheme;
    sr->context = (Keyless__V1__Context)context;
    sr->transcript_hash.data = (uint8_t *)hash;
    sr->transcript_hash.len = hash_len;
    sr->server_name = (char *)"test.example";
    sr->client_address = (char *)"127.0.0.1:4433";
    sr->connection_id = id;
}

int rpc_client_sign(struct rpc_client *c, Keyless__V1__Response **resp_p, uint64_t id, const char *key, uint32_t scheme,
                    int context, const uint8_t *hash, size_t hash_len)
{
    Keyless__V1__Request req;
    Keyless__V1__SignRequest sr;
    int ret;
    rpc_client_sign_request(&req, &sr, id, key, scheme, context, hash, hash_len);
    if ((ret = rpc_client_send(c, &req)) != 0) {
        return ret;
    }
    return rpc_client_recv(c, resp_p, 10000);
}

void rpc_client_ticket_keys_request(Keyless__V1__Request *req, Keyless__V1__TicketKeysRequest *tr, uint64_t id,
                                    uint32_t rotation_seconds, const uint64_t *epochs, size_t n)
{
    keyless__v1__request__init(req);
    keyless__v1__ticket_keys_request__init(tr);
    req->id = id;
    req->body_case = KEYLESS__V1__REQUEST__BODY_TICKET_KEYS;
    req->ticket_keys = tr;
    tr->rotation_seconds = rotation_seconds;
    tr->epochs = (uint64_t *)epochs;
    tr->n_epochs = n;
}

int rpc_client_ticket_keys(struct rpc_client *c, Keyless__V1__Response **resp_p, uint64_t id, uint32_t rotation_seconds,
                           const uint64_t *epochs, size_t n)
{
    Keyless__V1__Request req;
    Keyless__V1__TicketKeysRequest tr;
    int ret;
    rpc_client_ticket_keys_request(&req, &tr, id, rotation_seconds, epochs, n);
    if ((ret = rpc_client_send(c, &req)) != 0) {
        return ret;
    }
    return rpc_client_recv(c, resp_p, 10000);
}
