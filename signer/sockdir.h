/*
 * sockdir.h - the signer's listening socket and the directory it lives in.
 *
 * The directory is created if missing (parents 0755, itself 0750 in [signer]
 * socket_group). Only a directory the signer created is tightened; an existing one is
 * used as it is, and refused with one line when it is shared (world-writable, sticky,
 * /tmp, /run, ...) or belongs to another user than the signer's or root (issue 13 §2). The socket itself is 0660 in
 * socket_group, so the frontend's group can connect and nobody else can (STYLE rule 19; the peer's uid/gid is checked
 * again with SO_PEERCRED on accept). A stale socket of an earlier run is replaced; one that another signer still
 * accepts on is refused.
 */
#ifndef KL_SIGNER_SOCKDIR_H
#define KL_SIGNER_SOCKDIR_H

#include "config.h"
#include "kl_err.h"

/*
 * Make the directory, bind cfg->socket_path and listen. *fd_p receives the listening
 * socket (non-blocking, close-on-exec), owned by the caller, who unlinks the path when
 * done. Errors: KL_ERR_CONFIG with one log line "FILE: [signer] socket...: why",
 * KL_ERR_NO_MEMORY, KL_ERR_IO (errno set) if no socket could be made.
 */
KL_MUST_CHECK int sockdir_listen(int *fd_p, const struct signer_config *cfg);

#endif
