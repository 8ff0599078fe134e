#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "sd_notify.h"

/* Filled once by kl_sd_notify_init(); read-only afterwards (also from signal handlers). */
static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static pid_t notify_pid;

int kl_sd_notify_init(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    size_t n;
    notify_len = 0;
    notify_pid = 0;
    if (s == NULL) {
        return 0;
    }
    n = strlen(s);
    if ((s[0] != '/' && s[0] != '@') || n < 2 || n >= sizeof(notify_addr.sun_path)) {
        unsetenv("NOTIFY_SOCKET");
        return KL_ERR_INVALID;
    }
    memset(&notify_addr, 0, sizeof(notify_addr));
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, s, n);
    if (s[0] == '@') {
        notify_addr.sun_path[0] = '\0'; /* Linux abstract namespace: the length bounds the name */
    }
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (s[0] == '/' ? 1 : 0));
    notify_pid = getpid();
    unsetenv("NOTIFY_SOCKET");
    return 0;
}

int kl_sd_notify(const char *state)
{
    int saved = errno; /* a signal handler must not change errno for the code it interrupted */
    int ret = 0;
    if (notify_len == 0 || getpid() != notify_pid) {
        return 0;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errno = saved;
        return KL_ERR_IO;
    }
    size_t len = strlen(state);
    ssize_t w = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *)&notify_addr, notify_len);
    if (w < 0 || (size_t)w != len) {
        ret = KL_ERR_IO;
    }
    close(fd);
    errno = saved;
    return ret;
}
