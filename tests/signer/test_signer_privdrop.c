/*
 * test_signer_privdrop.c - [signer] user/group: keyless-signer started as root logs in
 * to the token, binds its socket, opens its audit log and only then drops to the user
 * (STYLE rule 19). Checked from the outside on the running process: /proc/<pid>/status
 * of every thread shows the target uid/gid in all slots, one supplementary group,
 * NoNewPrivs 1; signatures still verify. Token trouble after the drop: a remote token
 * (p11-kit server) goes away and comes back, and the signer, now unprivileged, logs in
 * again (re-reading the PIN file) and signs. Negative cases: an unknown user or group,
 * group without user, user = root, user = while not root (config errors, exit 2), and
 * a PIN file the user cannot read (one line, exit 1). Needs root for the drop itself (CI runs as root);
 * as another user only the config errors run.
 */
#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"

static struct harness H;

/* Keys a root client may use (the signer's own uid is the dropped user after the drop). */
static const char keys_root[] = "[key ecdsa-p256]\n"
                                "uri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                "schemes = ecdsa_secp256r1_sha256\nallow_uids = root\n"
                                "[key rsa-2048]\n"
                                "uri = pkcs11:token=keyless;object=rsa-2048;type=private\n"
                                "schemes = rsa_pss_rsae_sha256\nallow_uids = 0\n";

static int sign_status(struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme, int verify)
{
    return harness_sign_status(&H, c, id, key, scheme, verify);
}

/* Run the signer on a config with extra [signer] lines; expect status and one line with want. */
static void expect_start_error(const char *signer_extra, const char *keys, int want_status, const char *want,
                               const char *what)
{
    char conf[400], cmd[1200], out[4096], name[300];
    int st;
    snprintf(conf, sizeof(conf), "%s/case.conf", H.dir);
    if (harness_write_config(&H, conf, signer_extra, NULL, keys) != 0) {
        ok(0, what);
        return;
    }
    snprintf(cmd, sizeof(cmd), "timeout 60 %s --config %s 2>&1", H.bin, conf);
    st = harness_run(out, sizeof(out), cmd);
    snprintf(name, sizeof(name), "%s: exit %d", what, want_status);
    is_int(st, want_status, name);
    snprintf(name, sizeof(name), "%s: one line naming it", what);
    if (!ok(strstr(out, want) != NULL && harness_count_lines(out) == 1, name)) {
        diag("want '%s' in: %s", want, out);
    }
}

/* The value of a "Field:" line of a /proc status file, tabs squeezed to spaces. */
static int status_field(char *out, size_t cap, const char *status_path, const char *field)
{
    char line[512];
    size_t flen = strlen(field);
    FILE *f = fopen(status_path, "r");
    int found = 0;
    if (f == NULL) {
        return 0;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            char *v = line + flen + 1;
            size_t n = 0;
            for (; *v != '\0' && *v != '\n' && n + 1 < cap; v++) {
                if (*v == '\t' || *v == ' ') {
                    if (n > 0 && out[n - 1] != ' ') {
                        out[n++] = ' ';
                    }
                } else {
                    out[n++] = *v;
                }
            }
            while (n > 0 && out[n - 1] == ' ') {
                n--;
            }
            out[n] = '\0';
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* Every thread of pid: Uid and Gid all want_uid / want_gid. Returns the thread count checked, 0 on a mismatch. */
static int threads_dropped(pid_t pid, uid_t uid, gid_t gid)
{
    char dir[64], path[400], want_uid[64], want_gid[64], v[128];
    struct dirent *d;
    int n = 0, bad = 0;
    DIR *dp;
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    snprintf(want_uid, sizeof(want_uid), "%u %u %u %u", (unsigned)uid, (unsigned)uid, (unsigned)uid, (unsigned)uid);
    snprintf(want_gid, sizeof(want_gid), "%u %u %u %u", (unsigned)gid, (unsigned)gid, (unsigned)gid, (unsigned)gid);
    if ((dp = opendir(dir)) == NULL) {
        return 0;
    }
    while ((d = readdir(dp)) != NULL) {
        if (d->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s/status", dir, d->d_name);
        if (!status_field(v, sizeof(v), path, "Uid") || strcmp(v, want_uid) != 0 ||
            !status_field(v, sizeof(v), path, "Gid") || strcmp(v, want_gid) != 0) {
            diag("thread %s: not dropped", d->d_name);
            bad = 1;
        }
        n++;
    }
    closedir(dp);
    return bad ? 0 : n;
}

static void test_drop(uid_t uid, gid_t gid)
{
    char conf[400], v[128], want[64], cmd[1200], out[4096];
    struct rpc_client c;
    uint64_t id = 1;

    snprintf(conf, sizeof(conf), "%s/drop.conf", H.dir);
    if (harness_write_config(&H, conf, "user = nobody\ngroup = nogroup\n", NULL, keys_root) != 0 ||
        harness_start(&H, conf) != 0) {
        ok(0, "signer started as root with user = nobody");
        return;
    }
    ok(1, "signer started as root with user = nobody");
    /* The socket listens (and the harness connects) before the drop; requests are served
     * only after it. Wait for the drop's log line before looking at the process. */
    snprintf(cmd, sizeof(cmd), "grep -q 'running as nobody' %s", H.errlog);
    for (int i = 0; i < 200 && harness_run(NULL, 0, cmd) != 0; i++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    snprintf(cmd, sizeof(cmd), "/proc/%d/status", (int)H.pid);
    snprintf(want, sizeof(want), "%u %u %u %u", (unsigned)uid, (unsigned)uid, (unsigned)uid, (unsigned)uid);
    ok(status_field(v, sizeof(v), cmd, "Uid") && strcmp(v, want) == 0, "/proc status Uid: nobody in all four slots");
    diag("Uid: %s", v);
    snprintf(want, sizeof(want), "%u %u %u %u", (unsigned)gid, (unsigned)gid, (unsigned)gid, (unsigned)gid);
    ok(status_field(v, sizeof(v), cmd, "Gid") && strcmp(v, want) == 0, "/proc status Gid: nogroup in all four slots");
    snprintf(want, sizeof(want), "%u", (unsigned)gid);
    ok(status_field(v, sizeof(v), cmd, "Groups") && strcmp(v, want) == 0, "supplementary groups: only nogroup");
    ok(status_field(v, sizeof(v), cmd, "NoNewPrivs") && strcmp(v, "1") == 0, "NoNewPrivs: 1");
    ok(status_field(v, sizeof(v), cmd, "CapEff") && strcmp(v, "0000000000000000") == 0, "no effective capabilities");
    {
        int n = threads_dropped(H.pid, uid, gid);
        ok(n >= 4, "every thread (I/O, workers, audit) runs as nobody");
        diag("%d threads checked", n);
    }
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        (void)harness_stop(&H);
        return;
    }
    is_int(sign_status(&c, ++id, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK,
           "after the drop: ECDSA signs, verifies");
    is_int(sign_status(&c, ++id, "rsa-2048", 0x0804, 1), KEYLESS__V1__STATUS__OK,
           "after the drop: RSA-PSS signs, verifies");
    ok(harness_audit_has(&H, id, "OK"), "after the drop: audited");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop as nobody");
    snprintf(cmd, sizeof(cmd), "grep -c 'running as nobody (uid %u, gid %u)' %s", (unsigned)uid, (unsigned)gid,
             H.errlog);
    ok(harness_run(out, sizeof(out), cmd) == 0, "the drop is logged");
    snprintf(cmd, sizeof(cmd), "%s audit-verify %s 2>&1", H.bin, H.audit);
    ok(harness_run(out, sizeof(out), cmd) == 0, "the audit chain verifies");
}

/* After the drop the remote token goes away and comes back: the unprivileged signer logs in again. */
static void test_relogin_after_drop(void)
{
    char p11sock[400], conf[400], cmd[800], out[4096];
    struct rpc_client c;
    pid_t server;
    int st, recovered = 0;
    uint64_t id = 100;

    harness_p11_socket(&H, p11sock, sizeof(p11sock));
    /* The signer logs in as root: this server accepts root only. */
    server = harness_p11_server_start(p11sock, 0);
    snprintf(conf, sizeof(conf), "%s/remote.conf", H.dir);
    if (harness_write_config(&H, conf, "user = nobody\n", "module = " CLIENT_MODULE, keys_root) != 0 ||
        harness_start(&H, conf) != 0) {
        ok(0, "signer on p11-kit-client.so started with user = nobody");
        harness_p11_server_stop(server);
        unsetenv("P11_KIT_SERVER_ADDRESS");
        return;
    }
    ok(1, "signer on p11-kit-client.so started with user = nobody");
    if (rpc_client_connect(&c, H.sock) != 0) {
        ok(0, "connect");
        harness_p11_server_stop(server);
        unsetenv("P11_KIT_SERVER_ADDRESS");
        return;
    }
    is_int(sign_status(&c, ++id, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK, "remote token, dropped: signs");
    harness_p11_server_stop(server); /* the token goes away */
    is_int(sign_status(&c, ++id, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR, "token removed: HSM_ERROR");
    /* It comes back accepting nobody only: the signer's new connection and login must come
     * from the dropped process (it re-reads the PIN file as nobody). */
    server = harness_p11_server_start(p11sock, 1);
    for (int i = 0; i < 150 && !recovered; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        st = sign_status(&c, ++id, "ecdsa-p256", 0x0403, 1);
        recovered = st == KEYLESS__V1__STATUS__OK;
        if (!recovered) {
            nanosleep(&ts, NULL);
        }
    }
    ok(recovered, "token back: the dropped signer logs in again (PIN file re-read as nobody) and signs");
    is_int(sign_status(&c, ++id, "rsa-2048", 0x0804, 1), KEYLESS__V1__STATUS__OK, "after recovery: RSA-PSS verifies");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop after the recovery");
    snprintf(cmd, sizeof(cmd), "grep -c 'hsm: recovered' %s", H.errlog);
    ok(harness_run(out, sizeof(out), cmd) == 0, "the recovery is logged");
    harness_p11_server_stop(server);
    unsetenv("P11_KIT_SERVER_ADDRESS");
}

int main(void)
{
    char cmd[1200], out[4096], pin[400];
    struct passwd *pw;

    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    /* Config errors: exit 2, one line naming the key. */
    expect_start_error("user = nosuchuser_kl\n", keys_root, 2, "[signer] user: no such user 'nosuchuser_kl'",
                       "user = an unknown user");
    expect_start_error("user = nobody\ngroup = nosuchgroup_kl\n", keys_root, 2,
                       "[signer] group: no such group 'nosuchgroup_kl'", "group = an unknown group");
    expect_start_error("group = nogroup\n", keys_root, 2, "[signer] group: set without user", "group without user");
    expect_start_error("user = root\n", keys_root, 2, "[signer] user: 'root' is root", "user = root");
    expect_start_error("user = nobody\nuser = nobody\n", keys_root, 2, "[signer] user: set twice", "user set twice");

    pw = getpwnam("nobody");
    if (geteuid() != 0 || pw == NULL) {
        /* Not root: user = is refused before anything is opened. */
        expect_start_error("user = nobody\n", keys_root, 2, "but the signer is not running as root",
                           "user = while not root");
        diag("not root (or no user nobody): the privilege drop itself is not tested here");
        harness_cleanup(&H);
        return kl_test_done();
    }

    /* The token as a signer user would own it: nobody may traverse the test dir and owns the token files. */
    snprintf(cmd, sizeof(cmd), "chmod 0711 %s && chown -R nobody:nogroup %s 2>&1", H.dir, H.hsm);
    is_int(harness_run(out, sizeof(out), cmd), 0, "token files owned by nobody");
    snprintf(pin, sizeof(pin), "%s/user.pin", H.hsm);

    /* A PIN file only root can read: root logs in, but a re-login after the drop could not. */
    ok(chown(pin, 0, 0) == 0, "PIN file owned by root (0600)");
    expect_start_error("user = nobody\n", keys_root, 1, "is not readable by user nobody",
                       "PIN file not readable by user");
    /* --check-config finds it too (a child drops to the user and checks). */
    snprintf(cmd, sizeof(cmd), "timeout 60 %s --config %s/case.conf --check-config 2>&1", H.bin, H.dir);
    is_int(harness_run(out, sizeof(out), cmd), 1, "--check-config: PIN file not readable by user: exit 1");
    ok(strstr(out, "[hsm] pin_file: ") != NULL && strstr(out, "is not readable by user nobody") != NULL &&
           harness_count_lines(out) == 1,
       "--check-config: one line naming it");
    ok(chown(pin, pw->pw_uid, pw->pw_gid) == 0, "PIN file owned by nobody again");
    is_int(harness_run(out, sizeof(out), cmd), 0, "--check-config with user = nobody: OK");

    /* user = set, but started unprivileged (as nobody, through setpriv): refused at once. */
    {
        char conf[400];
        snprintf(conf, sizeof(conf), "%s/notroot.conf", H.dir);
        if (harness_write_config(&H, conf, "user = nobody\n", NULL, keys_root) == 0 && chmod(conf, 0644) == 0) {
            snprintf(cmd, sizeof(cmd),
                     "timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups %s --config %s 2>&1", H.bin,
                     conf);
            is_int(harness_run(out, sizeof(out), cmd), 2, "user = while not root: exit 2");
            ok(strstr(out, "[signer] user: set to 'nobody', but the signer is not running as root (uid 65534)") !=
                       NULL &&
                   harness_count_lines(out) == 1,
               "user = while not root: one line naming it");
            diag("%s", out);
        }
    }

    test_drop(pw->pw_uid, pw->pw_gid);
    test_relogin_after_drop();
    harness_cleanup(&H);
    return kl_test_done();
}
