/*
 * sd_notify.h - the service manager's readiness protocol, written by hand (no libsystemd):
 * one datagram "READY=1", "RELOADING=1" or "STOPPING=1" to the socket named by
 * $NOTIFY_SOCKET, which systemd sets for a Type=notify unit (sd_notify(3)).
 *
 * kl_sd_notify_init() reads and removes $NOTIFY_SOCKET once, at start, and remembers the
 * calling process: only that process notifies, so forked workers (whose messages systemd
 * would refuse with NotifyAccess=main) stay quiet without each call site asking. Without
 * $NOTIFY_SOCKET (a shell, a test, another supervisor) every call does nothing.
 * kl_sd_notify() uses only socket(2), sendto(2), close(2) and getpid(2): it may be called
 * from a signal handler.
 */
#ifndef KL_SD_NOTIFY_H
#define KL_SD_NOTIFY_H

#include "kl_err.h"

/*
 * Read $NOTIFY_SOCKET ("/path" or "@abstract"), remember it and the current pid, and
 * unset it so that children do not inherit it. 0 when it is unset (notifying is then
 * off) or valid; KL_ERR_INVALID when it is set but not a usable address (not absolute,
 * not abstract, or too long): notifying stays off and the caller may log it.
 */
KL_MUST_CHECK int kl_sd_notify_init(void);

/*
 * Send state (e.g. "READY=1") to the service manager. 0 when sent or when notifying is
 * off (no socket, or another process than the one that called kl_sd_notify_init);
 * KL_ERR_IO when the socket could not be made or the datagram was not accepted.
 */
int kl_sd_notify(const char *state);

#endif
