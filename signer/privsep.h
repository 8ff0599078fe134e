/*
 * privsep.h - the signer's process hardening, privilege drop and the access checks that
 * go with them (STYLE rule 19: harden before the token is touched, drop root only once
 * the PIN has been used and wiped, the socket is bound and the audit log is open).
 *
 * Every failure is reported as one log line that names the config key it is about
 * ("FILE:LINE: [signer] user: ..."), and the return value is the exit status for main.
 */
#ifndef KL_SIGNER_PRIVSEP_H
#define KL_SIGNER_PRIVSEP_H

#include "config.h"

/*
 * No core dumps, not ptrace-able (PR_SET_DUMPABLE 0, RLIMIT_CORE 0), no_new_privs, umask
 * 027. Call first, before the PIN file is read. 0, or -1 with one log line.
 */
int privsep_harden(void);

/* [signer] user = set while not running as root: refused before anything is opened.
 * 0, or exit status 2 with one log line. */
int privsep_check_user(const struct signer_config *cfg);

/*
 * --check-config with [signer] user =: in a child that drops to the user (the caller
 * keeps its ids), check that the PIN file and softhsm2_conf are readable by it (they are
 * read again after token trouble, as the dropped user). 0, or 1 with one log line.
 */
int privsep_check_user_access(const struct signer_config *cfg);

/*
 * Drop root for good to [signer] user/group (nothing to do without user =). glibc
 * applies set*id to every thread, so threads already running are dropped too; the
 * dumpable flag the id change resets is cleared again. Aborts if
 * the drop did not hold (an id left over, or root can be got back); 1 with one log line
 * if the switch failed or the PIN file / softhsm2_conf are not readable by the user.
 */
int privsep_drop(const struct signer_config *cfg);

/*
 * The seccomp allow-list (common/sandbox.h, SANDBOX_SIGNER plus [signer] sandbox_allow) on
 * every thread, once the token is open, the socket bound, the audit log open and root
 * dropped; nothing with sandbox = no (one warning line). 0, or 1 with one log line.
 */
int privsep_confine(const struct signer_config *cfg);

#endif
