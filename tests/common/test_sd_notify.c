/* Unit tests for common/sd_notify.c: a datagram socket stands in for systemd's
 * $NOTIFY_SOCKET (a path and an abstract name); the states arrive byte for byte; the
 * variable is removed from the environment; a forked child does not notify; a bad or
 * missing variable turns notifying off. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "kl_test.h"
#include "sd_notify.h"

/* Bind a datagram socket at name ("/path" or "@abstract"); -1 on failure. */
static int listen_at(const char *name)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    memcpy(a.sun_path, name, n);
    if (name[0] == '@') {
        a.sun_path[0] = '\0';
    }
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, len) != 0) {
        perror("bind");
        return -1;
    }
    return fd;
}

/* The next datagram as a string, "" when none is waiting. */
static const char *next_msg(int fd)
{
    static char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void test_path(void)
{
    char dir[] = "/tmp/kl-sdnotify-XXXXXX", path[128];
    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return;
    }
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = listen_at(path);
    ok(fd >= 0, "a path socket to stand in for systemd");
    setenv("NOTIFY_SOCKET", path, 1);
    is_int(kl_sd_notify_init(), 0, "init with a path");
    ok(getenv("NOTIFY_SOCKET") == NULL, "... removes NOTIFY_SOCKET from the environment");
    is_int(kl_sd_notify("READY=1"), 0, "READY=1 sent");
    ok(strcmp(next_msg(fd), "READY=1") == 0, "... and received byte for byte");
    is_int(kl_sd_notify("RELOADING=1"), 0, "RELOADING=1 sent");
    ok(strcmp(next_msg(fd), "RELOADING=1") == 0, "... received");

    pid_t pid = fork();
    if (pid == 0) {
        _exit(kl_sd_notify("STOPPING=1") == 0 ? 0 : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child's notify returns 0");
    ok(strcmp(next_msg(fd), "") == 0, "... and sends nothing (only the process that called init notifies)");

    close(fd);
    unlink(path);
    is_int(kl_sd_notify("STOPPING=1"), KL_ERR_IO, "a socket that went away is KL_ERR_IO");
    rmdir(dir);
}

static void test_abstract(void)
{
    char name[64];
    snprintf(name, sizeof(name), "@kl-sdnotify-test-%d", (int)getpid());
    int fd = listen_at(name);
    ok(fd >= 0, "an abstract socket");
    setenv("NOTIFY_SOCKET", name, 1);
    is_int(kl_sd_notify_init(), 0, "init with an abstract name");
    is_int(kl_sd_notify("STOPPING=1"), 0, "STOPPING=1 sent");
    ok(strcmp(next_msg(fd), "STOPPING=1") == 0, "... received on the abstract name");
    close(fd);
}

static void test_off(void)
{
    char longname[200];
    unsetenv("NOTIFY_SOCKET");
    is_int(kl_sd_notify_init(), 0, "no NOTIFY_SOCKET: init is fine");
    is_int(kl_sd_notify("READY=1"), 0, "... and notify does nothing");
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    is_int(kl_sd_notify_init(), KL_ERR_INVALID, "a relative path is refused");
    ok(getenv("NOTIFY_SOCKET") == NULL, "... and removed");
    is_int(kl_sd_notify("READY=1"), 0, "... notifying is off");
    setenv("NOTIFY_SOCKET", "@", 1);
    is_int(kl_sd_notify_init(), KL_ERR_INVALID, "an empty abstract name is refused");
    memset(longname, 'a', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1);
    is_int(kl_sd_notify_init(), KL_ERR_INVALID, "a path longer than sun_path is refused");
    setenv("NOTIFY_SOCKET", "", 1);
    is_int(kl_sd_notify_init(), KL_ERR_INVALID, "an empty value is refused");
}

int main(void)
{
    test_path();
    test_abstract();
    test_off();
    return kl_test_done();
}
