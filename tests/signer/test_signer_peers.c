/*
 * test_signer_peers.c - issue 13 §2 and §5 on a running keyless-signer: a peer with the
 * signer's own uid is refused unless allow_same_uid = yes; the socket directory is
 * tightened only when the signer made it, and a shared one is refused, never chmod'ed;
 * idle and partial-frame timeouts; the per-uid connection cap, reported in one line and
 * one audit record; the seccomp filter is on (and off with sandbox = no).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"

static struct harness H;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* 0: the ping was answered; 1: the connection was closed or nothing came; 2: no connect. */
static int ping_on(struct rpc_client *c, uint64_t id)
{
    Keyless__V1__Request req = KEYLESS__V1__REQUEST__INIT;
    Keyless__V1__PingRequest pr = KEYLESS__V1__PING_REQUEST__INIT;
    Keyless__V1__Response *r = NULL;
    int good;
    req.id = id;
    req.body_case = KEYLESS__V1__REQUEST__BODY_PING;
    req.ping = &pr;
    if (rpc_client_send(c, &req) != 0 || rpc_client_recv(c, &r, 3000) != 0) {
        return 1;
    }
    good = r->id == id && r->body_case == KEYLESS__V1__RESPONSE__BODY_PING;
    keyless__v1__response__free_unpacked(r, NULL);
    return good ? 0 : 1;
}

static int ping_once(const char *sock)
{
    struct rpc_client c;
    int ret;
    if (rpc_client_connect(&c, sock) != 0) {
        return 2;
    }
    ret = ping_on(&c, 7);
    rpc_client_close(&c);
    return ret;
}

/* 1 if the signer closed fd within ms (EOF or reset), else 0. */
static int closed_within(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    char b[64];
    if (poll(&p, 1, ms) <= 0) {
        return 0;
    }
    return recv(fd, b, sizeof(b), MSG_DONTWAIT) <= 0;
}

static int status_field(pid_t pid, const char *field, char *out, size_t cap)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "awk -F'\\t' '$1 == \"%s:\" { print $2 }' /proc/%d/status", field, (int)pid);
    return harness_run(out, cap, cmd);
}

static int file_has(const char *path, const char *needle)
{
    char buf[65536];
    FILE *f = fopen(path, "r");
    size_t n;
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, needle) != NULL;
}

static const char one_key_fmt[] = "[key k]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                  "schemes = ecdsa_secp256r1_sha256\nallow_uids = %u\n";

/* The signer's own uid: refused at connect without allow_same_uid, served with it. */
static void test_same_uid(void)
{
    char conf[400], keys[400];
    snprintf(conf, sizeof(conf), "%s/same.conf", H.dir);
    snprintf(keys, sizeof(keys), one_key_fmt, (unsigned)getuid());
    H.strict_peers = 1;
    if (harness_write_config(&H, conf, NULL, NULL, keys) != 0 || harness_start(&H, conf) != 0) {
        ok(0, "signer without allow_same_uid started");
        H.strict_peers = 0;
        return;
    }
    is_int(ping_once(H.sock), 1, "a peer with the signer's own uid, listed in allow_uids: closed at connect");
    ok(harness_audit_grep(&H, "\"op\":\"connect\"") && harness_audit_grep(&H, "NOT_AUTHORIZED"),
       "... and the refusal is audited");
    is_int(harness_stop(&H), 0, "stopped");
    H.strict_peers = 0;
    if (harness_write_config(&H, conf, NULL, NULL, keys) != 0 || harness_start(&H, conf) != 0) {
        ok(0, "signer with allow_same_uid = yes started");
        return;
    }
    is_int(ping_once(H.sock), 0, "allow_same_uid = yes: the same peer is served");
    is_int(harness_stop(&H), 0, "stopped");
}

/* Start a signer whose socket is sock; the exit status and output of a failed start. */
static int start_with_socket(char *out, size_t cap, const char *sock)
{
    char conf[400], keys[400], cmd[1200];
    snprintf(conf, sizeof(conf), "%s/dir.conf", H.dir);
    snprintf(keys, sizeof(keys), one_key_fmt, 65534u);
    /* harness_write_config writes H.sock: a second socket line would be "set twice". */
    char save[sizeof(H.sock)];
    memcpy(save, H.sock, sizeof(save));
    snprintf(H.sock, sizeof(H.sock), "%s", sock);
    int ret = harness_write_config(&H, conf, NULL, NULL, keys);
    memcpy(H.sock, save, sizeof(save));
    if (ret != 0) {
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "timeout 20 %s --config %s 2>&1", H.bin, conf);
    return harness_run(out, cap, cmd);
}

/* Socket directories: shared ones refused with one line and left alone; ours used as is. */
static void test_socket_dirs(void)
{
    char dir[280], sock[300], out[4096], conf[400], keys[400];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/shared", H.dir);
    ok(mkdir(dir, 0777) == 0 && chmod(dir, 0777) == 0, "a world-writable directory");
    snprintf(sock, sizeof(sock), "%s/signer.sock", dir);
    is_int(start_with_socket(out, sizeof(out), sock), 1, "socket in a world-writable directory: exit 1");
    ok(strstr(out, "[signer] socket: ") != NULL && strstr(out, "is a shared directory (mode 0777)") != NULL &&
           harness_count_lines(out) == 1,
       "... one line naming it");
    ok(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0777, "... and its mode is left alone (0777)");

    ok(chmod(dir, 01770) == 0, "a sticky directory");
    is_int(start_with_socket(out, sizeof(out), sock), 1, "socket in a sticky directory: exit 1");
    ok(stat(dir, &st) == 0 && (st.st_mode & 07777) == 01770, "... mode left alone");

    snprintf(sock, sizeof(sock), "/tmp/kl-peers-%d.sock", (int)getpid());
    struct stat before;
    ok(stat("/tmp", &before) == 0, "stat /tmp");
    is_int(start_with_socket(out, sizeof(out), sock), 1, "socket = /tmp/x.sock: exit 1");
    ok(strstr(out, "/tmp is a shared directory") != NULL, "... /tmp named as shared");
    ok(stat("/tmp", &st) == 0 && st.st_mode == before.st_mode && st.st_gid == before.st_gid, "... /tmp untouched");
    ok(access(sock, F_OK) != 0, "... and no socket was made there");

    /* Ours, 0755, already there: used as it is, not tightened. */
    snprintf(dir, sizeof(dir), "%s/mine", H.dir);
    ok(mkdir(dir, 0755) == 0 && chmod(dir, 0755) == 0, "an existing directory of ours, 0755");
    snprintf(conf, sizeof(conf), "%s/mine.conf", H.dir);
    snprintf(keys, sizeof(keys), one_key_fmt, 65534u);
    char save[sizeof(H.sock)];
    memcpy(save, H.sock, sizeof(save));
    snprintf(H.sock, sizeof(H.sock), "%s/signer.sock", dir);
    if (harness_write_config(&H, conf, NULL, NULL, keys) == 0 && harness_start(&H, conf) == 0) {
        ok(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0755, "an existing directory is used as it is (still 0755)");
        is_int(harness_stop(&H), 0, "stopped");
    } else {
        ok(0, "signer with its socket in an existing directory of ours started");
    }
    memcpy(H.sock, save, sizeof(save));
}

/* idle_timeout, frame_timeout, max_connections_per_uid, and the seccomp filter. */
static void test_limits(void)
{
    char conf[400], keys[400], st_out[64];
    struct rpc_client a, b, busy, c1, c2, c3;
    snprintf(conf, sizeof(conf), "%s/limits.conf", H.dir);
    snprintf(keys, sizeof(keys), one_key_fmt, (unsigned)getuid());
    if (harness_write_config(&H, conf, "idle_timeout = 600ms\nframe_timeout = 300ms\nmax_connections_per_uid = 3\n",
                             NULL, keys) != 0 ||
        harness_start(&H, conf) != 0) {
        ok(0, "signer with timeouts started");
        return;
    }
#if defined(__SANITIZE_ADDRESS__)
    /* Sanitizer builds run the daemons unfiltered, saying why (common/sandbox.h). */
    ok(status_field(H.pid, "Seccomp", st_out, sizeof(st_out)) == 0 && strcmp(st_out, "0\n") == 0 &&
           file_has(H.errlog, "no seccomp filter: built with sanitizers"),
       "sanitizer build: no seccomp filter, and the log says why");
#else
    ok(status_field(H.pid, "Seccomp", st_out, sizeof(st_out)) == 0 && strcmp(st_out, "2\n") == 0,
       "the signer runs under a seccomp filter (Seccomp: 2)");
#endif
    ok(status_field(H.pid, "NoNewPrivs", st_out, sizeof(st_out)) == 0 && strcmp(st_out, "1\n") == 0,
       "... with no_new_privs");

    if (rpc_client_connect(&a, H.sock) != 0 || rpc_client_connect(&b, H.sock) != 0 ||
        rpc_client_connect(&busy, H.sock) != 0) {
        ok(0, "three connections");
        harness_stop(&H);
        return;
    }
    /* The cap: a fourth connection from the same uid is closed unanswered. */
    is_int(ping_once(H.sock), 1, "max_connections_per_uid = 3: a fourth connection is closed at once");
    is_int(ping_on(&busy, 1), 0, "the three below the cap are served");
    /* b sends 3 bytes of a 4-byte frame header and stops. */
    ok(rpc_client_send_raw(&b, "\0\0\0", 3) == 0, "a partial frame header sent");
    ok(closed_within(b.fd, 2000), "frame_timeout 300 ms: the partial frame's connection is closed");
    /* busy keeps talking every 100 ms, for longer than idle_timeout: it stays open. Signed
     * requests too, whose answers come back through the jobs: a result retired by the
     * sweep itself once made the connection look idle (a wrapped time difference). */
    int alive = 1, signed_ok = 1;
    for (int i = 0; i < 12; i++) {
        uint8_t hash[32];
        Keyless__V1__Response *r = NULL;
        memset(hash, i, sizeof(hash));
        sleep_ms(100);
        alive &= ping_on(&busy, 10 + (uint64_t)i) == 0;
        for (int j = 0; j < 5 && alive; j++) {
            int ret = rpc_client_sign(&busy, &r, 100 + (uint64_t)(i * 5 + j), "k", 0x0403, 1, hash, sizeof(hash));
            signed_ok &= ret == 0 && r->sign != NULL && r->sign->status == KEYLESS__V1__STATUS__OK;
            alive &= ret == 0;
            if (r != NULL) {
                keyless__v1__response__free_unpacked(r, NULL);
                r = NULL;
            }
        }
    }
    ok(alive && signed_ok, "a connection that keeps sending requests (pings and signs) outlives idle_timeout");
    ok(closed_within(a.fd, 2000), "idle_timeout 600 ms: the silent connection is closed");
    is_int(ping_on(&busy, 99), 0, "the active one still answers");
    rpc_client_close(&a);
    rpc_client_close(&b);
    /* Below the cap again: two more fit, the third of those does not. */
    ok(rpc_client_connect(&c1, H.sock) == 0 && rpc_client_connect(&c2, H.sock) == 0 && ping_on(&c1, 1) == 0 &&
           ping_on(&c2, 1) == 0,
       "after the closes, new connections are served up to the cap");
    ok(rpc_client_connect(&c3, H.sock) == 0 && ping_on(&c3, 1) != 0, "... and the one past it is refused");
    rpc_client_close(&c1);
    rpc_client_close(&c2);
    rpc_client_close(&c3);
    rpc_client_close(&busy);
    sleep_ms(300);
    is_int(harness_stop(&H), 0, "stopped");
    ok(file_has(H.errlog, "over max_connections_per_uid (3); last from uid"),
       "the refusals over the cap are logged (aggregated)");
    ok(harness_audit_grep(&H, "over max_connections_per_uid (3)"), "... and audited");
    ok(file_has(H.errlog, "idle connection(s) (idle_timeout 600 ms)"), "the timeouts are logged (aggregated)");

    /* sandbox = no: no filter, and a warning says so. */
    if (harness_write_config(&H, conf, "sandbox = no\n", NULL, keys) != 0 || harness_start(&H, conf) != 0) {
        ok(0, "signer with sandbox = no started");
        return;
    }
    ok(status_field(H.pid, "Seccomp", st_out, sizeof(st_out)) == 0 && strcmp(st_out, "0\n") == 0,
       "sandbox = no: no seccomp filter (Seccomp: 0)");
    ok(file_has(H.errlog, "[signer] sandbox = no: running without the seccomp filter"), "... and a warning says so");
    is_int(harness_stop(&H), 0, "stopped");
}

int main(void)
{
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    test_same_uid();
    test_socket_dirs();
    test_limits();
    harness_cleanup(&H);
    return kl_test_done();
}
