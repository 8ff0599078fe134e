/*
 * test_signer_config.c - keyless-signer's start-up: every bad config line is one clear
 * line "keyless-signer: FILE:LINE: [section] key: reason" and exit 2; a PIN file, key or
 * scheme that does not work on the real token is one clear line and exit 1;
 * --check-config opens the token, finds every key and exits 0.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kl_test.h"

static struct harness H;

/* Write text as the config (verbatim, no harness additions), run the check, compare. */
static void expect_raw(const char *text, const char *args, int want_status, const char *want_sub, const char *what)
{
    char path[400], cmd[1200], out[4096], name[300];
    FILE *f;
    int st;
    snprintf(path, sizeof(path), "%s/case.conf", H.dir);
    f = fopen(path, "w");
    if (f == NULL) {
        ok(0, what);
        return;
    }
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s --config %s %s 2>&1", H.bin, path, args);
    st = harness_run(out, sizeof(out), cmd);
    snprintf(name, sizeof(name), "%s: exit %d", what, want_status);
    is_int(st, want_status, name);
    snprintf(name, sizeof(name), "%s: one line naming it", what);
    if (!ok(strstr(out, want_sub) != NULL && (want_status == 0 || harness_count_lines(out) == 1), name)) {
        diag("want '%s' in: %s", want_sub, out);
    }
}

/* A full config (harness socket/audit/hsm + extra) with the given key sections. */
static void expect_conf(const char *signer_extra, const char *hsm, const char *keys, const char *args, int want_status,
                        const char *want_sub, const char *what)
{
    char path[400], text[8192];
    FILE *f;
    snprintf(path, sizeof(path), "%s/gen.conf", H.dir);
    if (harness_write_config(&H, path, signer_extra, hsm, keys) != 0 || (f = fopen(path, "r")) == NULL) {
        ok(0, what);
        return;
    }
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    expect_raw(text, args, want_status, want_sub, what);
}

/* Issue 13: allow lists, allow_same_uid, contexts, timeouts, the per-uid cap, the sandbox keys. */
static void test_peer_rules(void)
{
    static const char one_key[] = "[key k]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                  "schemes = ecdsa_secp256r1_sha256\n";
    char keys[600];
    H.strict_peers = 1;
    expect_conf(NULL, NULL, one_key, "--check-config", 2,
                "[key k] allow_uids: no allow list: name the frontend's user (allow_uids) or group (allow_gids)",
                "a key without allow lists and without allow_same_uid");
    expect_conf("allow_same_uid = no\n", NULL, one_key, "--check-config", 2, "[key k] allow_uids: no allow list",
                "allow_same_uid = no, no allow lists");
    expect_conf("allow_same_uid = yes\n", NULL, one_key, "--check-config", 0, "OK (1 key(s)",
                "allow_same_uid = yes: a key without lists is for the signer's own user");
    snprintf(keys, sizeof(keys), "%sallow_uids = nobody\n", one_key);
    expect_conf(NULL, NULL, keys, "--check-config", 0, "OK (1 key(s)", "allow_uids = nobody: OK");
    snprintf(keys, sizeof(keys), "%sallow_gids = 65534\n", one_key);
    expect_conf(NULL, NULL, keys, "--check-config", 0, "OK (1 key(s)", "allow_gids only: OK");
    snprintf(keys, sizeof(keys), "%sallow_uids =\n", one_key);
    expect_conf(NULL, NULL, keys, "--check-config", 2, "[key k] allow_uids: no allow list", "an empty allow_uids");
    expect_conf("allow_same_uid = maybe\n", NULL, one_key, "--check-config", 2,
                "[signer] allow_same_uid:", "allow_same_uid = maybe");
    H.strict_peers = 0;

    snprintf(keys, sizeof(keys), "%scontexts = server, client\n", one_key);
    expect_conf(NULL, NULL, keys, "--check-config", 0, "OK (1 key(s)", "contexts = server, client");
    snprintf(keys, sizeof(keys), "%scontexts = client\n", one_key);
    expect_conf(NULL, NULL, keys, "--check-config", 0, "OK (1 key(s)", "contexts = client");
    snprintf(keys, sizeof(keys), "%scontexts = server, peer\n", one_key);
    expect_conf(NULL, NULL, keys, "--check-config", 2, "[key k] contexts: unknown context 'peer' (server, client)",
                "contexts = server, peer");
    snprintf(keys, sizeof(keys), "%scontexts = server, server\n", one_key);
    expect_conf(NULL, NULL, keys, "--check-config", 2, "[key k] contexts: context 'server' listed twice",
                "a context listed twice");

    expect_conf("idle_timeout = 30\nframe_timeout = 500ms\nmax_connections_per_uid = 8\n", NULL, one_key,
                "--check-config", 0, "OK (1 key(s)", "timeouts and the per-uid cap");
    expect_conf("idle_timeout = 0\n", NULL, one_key, "--check-config", 2, "[signer] idle_timeout:", "idle_timeout = 0");
    expect_conf("frame_timeout = 1h\n", NULL, one_key, "--check-config", 2,
                "[signer] frame_timeout:", "frame_timeout over 10 minutes");
    expect_conf("max_connections_per_uid = 0\n", NULL, one_key, "--check-config", 2,
                "[signer] max_connections_per_uid:", "max_connections_per_uid = 0");
    expect_conf("verify_ecdsa = yes\n", NULL, one_key, "--check-config", 0, "OK (1 key(s)", "verify_ecdsa = yes");
    expect_conf("verify_ecdsa = sometimes\n", NULL, one_key, "--check-config", 2,
                "[signer] verify_ecdsa:", "verify_ecdsa = sometimes");
    expect_conf("sandbox = no\nsandbox_allow = ioprio_get, sched_getattr\n", NULL, one_key, "--check-config", 0,
                "OK (1 key(s)", "sandbox = no, sandbox_allow with two names");
    expect_conf("sandbox_allow = not_a_syscall\n", NULL, one_key, "--check-config", 2,
                "[signer] sandbox_allow: 'not_a_syscall' is not a system call name", "sandbox_allow: an unknown name");
    /* The seccomp filter forbids new processes, so an anchor command is refused with the sandbox
     * on (its default and said explicitly) and accepted with it off. */
    expect_conf("audit_anchor_command = /bin/true\n", NULL, one_key, "--check-config", 2,
                "[signer] audit_anchor_command: runs a program, which the sandbox forbids",
                "audit_anchor_command with the default sandbox");
    expect_conf("sandbox = yes\naudit_anchor_command = /bin/true\n", NULL, one_key, "--check-config", 2,
                "[signer] audit_anchor_command: runs a program, which the sandbox forbids",
                "audit_anchor_command with sandbox = yes");
    expect_conf("sandbox = no\naudit_anchor_command = /bin/true\n", NULL, one_key, "--check-config", 0, "OK (1 key(s)",
                "audit_anchor_command with sandbox = no");
}

int main(void)
{
    char out[4096], cmd[1200], sub[600], pin[400], text[2048];
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    snprintf(cmd, sizeof(cmd), "%s --version", H.bin);
    ok(harness_run(out, sizeof(out), cmd) == 0 && strstr(out, "keyless-signer " KL_VERSION) != NULL, "--version");
    snprintf(cmd, sizeof(cmd), "%s --help", H.bin);
    ok(harness_run(out, sizeof(out), cmd) == 0 && strstr(out, "--check-config") != NULL, "--help");
    snprintf(cmd, sizeof(cmd), "%s 2>&1", H.bin);
    is_int(harness_run(out, sizeof(out), cmd), 2, "no arguments: usage, exit 2");
    snprintf(cmd, sizeof(cmd), "%s --config %s/nope.conf 2>&1", H.bin, H.dir);
    is_int(harness_run(out, sizeof(out), cmd), 2, "missing config file: exit 2");

    /* The good config first: --check-config opens the token and finds every key. */
    expect_conf(NULL, NULL, harness_std_keys, "--check-config", 0, "OK (4 key(s)", "--check-config on a good config");

    /* Bad lines: exit 2 with FILE:LINE: [section] key: reason. */
    /* [hsm] module_instances (issue 15): 1..64, a number, no more than the sessions, not with module_name. */
    expect_conf(NULL, "module = " SOFTHSM_MODULE "\nmodule_instances = 0", harness_std_keys, "--check-config", 2,
                "[hsm] module_instances: '0' is not 1..64", "module_instances = 0");
    expect_conf(NULL, "module = " SOFTHSM_MODULE "\nmodule_instances = 65", harness_std_keys, "--check-config", 2,
                "[hsm] module_instances: '65' is not 1..64", "module_instances = 65");
    expect_conf(NULL, "module = " SOFTHSM_MODULE "\nmodule_instances = four", harness_std_keys, "--check-config", 2,
                "[hsm] module_instances: 'four' is not 1..64", "module_instances = four");
    expect_conf(NULL, "module = " SOFTHSM_MODULE "\nmodule_instances = 3", harness_std_keys, "--check-config", 2,
                "[hsm] module_instances: 3 is more than the signer's 2 PKCS#11 sessions",
                "module_instances = 3 with the default 2 workers");
    expect_conf("workers = 3", "module = " SOFTHSM_MODULE "\nmodule_instances = 3", harness_std_keys, "--check-config",
                1,
                "[hsm] module_instances: ", "module_instances = 3, 3 workers: passes the config, SoftHSM2 refuses it");
    expect_raw("[signer]\nsocket = s\naudit_log = a\n[hsm]\nmodule_name = softhsm2\nmodule_instances = 2\npin_file = "
               "p\n[key a]\nuri = pkcs11:x\nschemes = ecdsa_secp256r1_sha256\n",
               "", 2, "[hsm] module_instances: more than one needs module = PATH", "module_instances with module_name");
    expect_conf(NULL, "module = " SOFTHSM_MODULE "\nmodule_instances = 1", harness_std_keys, "--check-config", 0,
                "OK (4 key(s)", "module_instances = 1 on SoftHSM2: OK");
    snprintf(sub, sizeof(sub), "case.conf:3: [signer] workers: '257' is not 0..256");
    expect_raw("[signer]\nsocket = /tmp/x.sock\nworkers = 257\n", "", 2, sub, "workers = 257");
    snprintf(sub, sizeof(sub), "case.conf:2: [signer] colour: unknown key");
    expect_raw("[signer]\ncolour = blue\n", "", 2, sub, "unknown key in [signer]");
    snprintf(sub, sizeof(sub), "case.conf:4: [signer] audit_sync: 'sometimes' is not always, group or none");
    expect_raw("; comment\n[signer]\nsocket = s\naudit_sync = sometimes\n", "", 2, sub, "bad audit_sync");
    /* Issue 14: log_level, log_format, metrics_file, metrics_interval. */
    snprintf(sub, sizeof(sub), "case.conf:3: [signer] log_format: 'xml' is not text or json");
    expect_raw("[signer]\nsocket = s\nlog_format = xml\n", "", 2, sub, "bad log_format");
    snprintf(sub, sizeof(sub), "case.conf:3: [signer] log_level: 'loud' is not error, warn, info or debug");
    expect_raw("[signer]\nsocket = s\nlog_level = loud\n", "", 2, sub, "bad log_level");
    snprintf(sub, sizeof(sub), "case.conf:3: [signer] metrics_interval:");
    expect_raw("[signer]\nsocket = s\nmetrics_interval = 10ms\n", "", 2, sub, "metrics_interval below 100 ms");
    /* About the section itself: its header line, no key. */
    snprintf(sub, sizeof(sub),
             "case.conf:1: [frobnicate]: unknown section (expected [signer], [hsm], [key NAME] or [tickets])");
    expect_raw("[frobnicate]\nx = 1\n", "", 2, sub, "unknown section");
    snprintf(sub, sizeof(sub), "case.conf:3: [key a] schemes: unknown signature scheme 'ecdsa_sha1'");
    expect_raw("[key a]\nuri = pkcs11:token=keyless;object=a\nschemes = ecdsa_sha1\n", "", 2, sub,
               "unknown scheme name");
    snprintf(sub, sizeof(sub), "case.conf:2: [key a] uri: 'file:///etc/passwd' is not an RFC 7512 pkcs11: URI");
    expect_raw("[key a]\nuri = file:///etc/passwd\n", "", 2, sub, "uri not pkcs11:");
    snprintf(sub, sizeof(sub), "case.conf:2: [key a] allow_uids: no such user 'no_such_user_kl'");
    expect_raw("[key a]\nallow_uids = no_such_user_kl\n", "", 2, sub, "unknown user");
    snprintf(sub, sizeof(sub), "case.conf:3: syntax error");
    expect_raw("[signer]\nsocket = s\nthis line is not ini\n", "", 2, sub, "syntax error");
    snprintf(sub, sizeof(sub), "case.conf: [signer] socket: missing");
    expect_raw("[hsm]\nmodule = x\n", "", 2, sub, "missing socket");
    snprintf(sub, sizeof(sub), "case.conf:3: [signer] socket: set twice");
    expect_raw("[signer]\nsocket = a\nsocket = b\n", "", 2, sub, "a key set twice");
    snprintf(sub, sizeof(sub), "case.conf:5: [key a]: defined twice (first at line 1)");
    expect_raw("[key a]\nuri = pkcs11:object=a\n[signer]\nsocket = a\n[key a]\nuri = pkcs11:object=b\n", "", 2, sub,
               "a key section repeated");

    /* [tickets] (issue 11): its bad values, one line each. */
    snprintf(sub, sizeof(sub), "case.conf:2: [tickets] allow_gids: no such group 'no_such_group_kl'");
    expect_raw("[tickets]\nallow_gids = no_such_group_kl\n", "", 2, sub, "[tickets] unknown group");
    snprintf(sub, sizeof(sub), "case.conf:3: [tickets] scope: set twice");
    expect_raw("[tickets]\nscope = a\nscope = b\n", "", 2, sub, "[tickets] scope set twice");
    snprintf(sub, sizeof(sub), "case.conf:2: [tickets] key: label longer than 64 bytes");
    expect_raw("[tickets]\nkey = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "", 2, sub,
               "[tickets] key over 64 bytes");
    snprintf(sub, sizeof(sub), "case.conf:2: [tickets] rate: '-1' is not");
    expect_raw("[tickets]\nrate = -1\n", "", 2, sub, "[tickets] negative rate");
    snprintf(sub, sizeof(sub), "case.conf:2: [tickets] rotation: unknown key");
    expect_raw("[tickets]\nrotation = 1h\n", "", 2, sub, "[tickets] an unknown key");

    /* The same spellings as the frontend (common/kl_ini): durations with a unit, every boolean word. */
    expect_conf("audit_group_ms = 20ms\naudit_repair_torn = on\n", NULL, harness_std_keys, "--check-config", 0,
                "OK (4 key(s)", "audit_group_ms = 20ms, audit_repair_torn = on");
    expect_conf("audit_group_ms = 0.5s\naudit_repair_torn = TRUE\n", NULL, harness_std_keys, "--check-config", 0,
                "OK (4 key(s)", "audit_group_ms = 0.5s, audit_repair_torn = TRUE");
    expect_conf("audit_group_ms = 7\naudit_repair_torn = 0\n", NULL, harness_std_keys, "--check-config", 0,
                "OK (4 key(s)", "audit_group_ms = 7 (a bare number stays milliseconds), audit_repair_torn = 0");
    expect_conf("audit_repair_torn = off\n", NULL, harness_std_keys, "--check-config", 0, "OK (4 key(s)",
                "audit_repair_torn = off");
    snprintf(sub, sizeof(sub),
             "case.conf:3: [signer] audit_group_ms: '2s' is not a duration from 1ms to 1s (500ms, 5s, 2m; a bare "
             "number is milliseconds)");
    expect_raw("[signer]\nsocket = s\naudit_group_ms = 2s\n", "", 2, sub, "audit_group_ms over 1s with a unit");
    snprintf(sub, sizeof(sub), "case.conf:2: [signer] audit_group_ms: '1001' is not a duration from 1ms to 1s");
    expect_raw("[signer]\naudit_group_ms = 1001\n", "", 2, sub, "audit_group_ms = 1001 (bare: milliseconds)");
    snprintf(sub, sizeof(sub), "case.conf:2: [signer] audit_group_ms: '5 ms' is not a duration");
    expect_raw("[signer]\naudit_group_ms = 5 ms\n", "", 2, sub, "a blank inside a duration");
    snprintf(sub, sizeof(sub), "case.conf:2: [signer] audit_repair_torn: 'enabled' is not yes or no");
    expect_raw("[signer]\naudit_repair_torn = enabled\n", "", 2, sub, "a boolean word no process takes");
    /* Schemes by code point, from the one table (common/tls_ids). */
    expect_conf(NULL, NULL, "[key p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\nschemes = 0x0403\n",
                "--check-config", 0, "OK (1 key(s)", "schemes = 0x0403");
    snprintf(sub, sizeof(sub), "case.conf:3: [key a] schemes: unknown signature scheme '0x04030'");
    expect_raw("[key a]\nuri = pkcs11:object=a\nschemes = 0x04030\n", "", 2, sub, "five hex digits");
    snprintf(sub, sizeof(sub), "case.conf:3: [key a] schemes: unknown signature scheme '0x0201'");
    expect_raw("[key a]\nuri = pkcs11:object=a\nschemes = 0x0201\n", "", 2, sub, "a code point keyless does not do");
    snprintf(sub, sizeof(sub), "case.conf:3: [key a] schemes: scheme 'ed25519' listed twice");
    expect_raw("[key a]\nuri = pkcs11:object=a\nschemes = 0x0807 ed25519\n", "", 2, sub, "a scheme by name and code");
    /* Set twice, section names, sections again further down. */
    snprintf(sub, sizeof(sub), "case.conf:3: [key a] uri: set twice (first at line 2)");
    expect_raw("[key a]\nuri = pkcs11:object=a\nuri = pkcs11:object=b\n", "", 2, sub, "uri set twice");
    snprintf(sub, sizeof(sub), "case.conf:5: [signer] workers: set twice (first at line 2)");
    expect_raw("[signer]\nworkers = 1\n[hsm]\n[signer]\nworkers = 2\n", "", 2, sub,
               "[signer] again further down: the same section, workers set twice");
    snprintf(sub, sizeof(sub), "case.conf:1: [key a/b]: key name 'a/b' must be 1..64 of [A-Za-z0-9._-]");
    expect_raw("[key a/b]\nuri = pkcs11:object=a\n", "", 2, sub, "a key name with a slash");
    snprintf(sub, sizeof(sub), "case.conf: [key NAME]: missing (no key configured)");
    expect_raw("[signer]\nsocket = s\naudit_log = a\n[hsm]\nmodule = m\npin_file = p\n", "", 2, sub, "no key");
    snprintf(sub, sizeof(sub), "case.conf:7: [key a] schemes: missing (list the schemes this key may sign)");
    expect_raw("[signer]\nsocket = s\naudit_log = a\n[hsm]\nmodule = m\npin_file = p\n[key a]\nuri = pkcs11:x\n", "", 2,
               sub, "a key without schemes");

    /* Start-up against the real token: exit 1, one line. */
    snprintf(text, sizeof(text),
             "%s[key nope]\nuri = pkcs11:token=keyless;object=nope;type=private\n"
             "schemes = ecdsa_secp256r1_sha256\n",
             harness_std_keys);
    expect_conf(NULL, NULL, text, "--check-config", 1, "[key nope] uri: no private key on the token matches",
                "a key missing on the token");
    expect_conf(NULL, NULL,
                "[key p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                "schemes = rsa_pss_rsae_sha256\n",
                "--check-config", 1, "[key p256] schemes: rsa_pss_rsae_sha256: the key's type/curve cannot do",
                "a scheme the key cannot do");
    expect_conf(NULL, NULL,
                "[key p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                "schemes = ecdsa_secp384r1_sha384\n",
                "--check-config", 1, "[key p256] schemes: ecdsa_secp384r1_sha384: the key's type/curve",
                "P-256 key with the P-384 scheme");
    expect_conf(NULL, NULL,
                "[key other]\nuri = pkcs11:token=no-such-token;object=ecdsa-p256;type=private\n"
                "schemes = ecdsa_secp256r1_sha256\n",
                "--check-config", 1, "no token matching the key URI is present", "a token that is not there");
    expect_conf(NULL, "module = /nonexistent/libpkcs11.so", harness_std_keys, "--check-config", 1,
                "[hsm] module: cannot load PKCS#11 module /nonexistent/libpkcs11.so", "a module that does not load");

    /* PIN file trouble. */
    snprintf(pin, sizeof(pin), "%s/user.pin", H.hsm);
    {
        char moved[420];
        snprintf(moved, sizeof(moved), "%s.away", pin);
        ok(rename(pin, moved) == 0, "PIN file moved away");
        expect_conf(NULL, NULL, harness_std_keys, "--check-config", 1, "[hsm] pin_file: cannot read PIN file",
                    "an unreadable PIN file");
        ok(rename(moved, pin) == 0, "PIN file back");
        chmod(pin, 0644);
        expect_conf(NULL, NULL, harness_std_keys, "--check-config", 1, "is accessible by others",
                    "a world-readable PIN file");
        chmod(pin, 0600);
        FILE *f = fopen(moved, "w");
        if (f != NULL) {
            fputs("0000-wrong\n", f);
            fclose(f);
        }
        chmod(moved, 0600);
        snprintf(text, sizeof(text), "module = %s\npin_file = %s\n", SOFTHSM_MODULE, moved);
        /* harness_write_config adds its own pin_file after hsm_lines: "set twice" is a config error. */
        expect_conf(NULL, text, harness_std_keys, "--check-config", 2, "[hsm] pin_file: set twice",
                    "pin_file given twice");
    }
    {
        /* A wrong PIN: the token refuses the login. */
        char conf[400], wrong[420];
        FILE *f;
        snprintf(wrong, sizeof(wrong), "%s/wrong.pin", H.dir);
        f = fopen(wrong, "w");
        if (f != NULL) {
            fputs("0000-wrong\n", f);
            fclose(f);
        }
        chmod(wrong, 0600);
        snprintf(conf, sizeof(conf), "%s/wrongpin.conf", H.dir);
        f = fopen(conf, "w");
        if (f != NULL) {
            fprintf(f,
                    "[signer]\nsocket = %s\naudit_log = %s\nallow_same_uid = yes\n[hsm]\nmodule = %s\npin_file = "
                    "%s\nsofthsm2_conf = "
                    "%s/softhsm2.conf\n%s",
                    H.sock, H.audit, SOFTHSM_MODULE, wrong, H.hsm, harness_std_keys);
            fclose(f);
        }
        snprintf(cmd, sizeof(cmd), "%s --config %s --check-config 2>&1", H.bin, conf);
        is_int(harness_run(out, sizeof(out), cmd), 1, "wrong PIN: exit 1");
        ok(strstr(out, "[hsm] pin_file: C_Login failed: CKR_PIN_INCORRECT") != NULL && harness_count_lines(out) == 1,
           "wrong PIN: one line naming the login failure");
        ok(strstr(out, "0000-wrong") == NULL, "the PIN is never printed");
        diag("%s", out);
    }
    test_peer_rules();
    harness_cleanup(&H);
    return kl_test_done();
}
