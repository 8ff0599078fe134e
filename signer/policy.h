/*
 * policy.h - the signer's narrow oracle: TLS 1.3 CertificateVerify content and the
 * signature schemes the signer knows.
 *
 * The signer never signs bytes it did not build itself. policy_build_content() is the
 * only way content to be signed comes into existence: RFC 8446 section 4.4.3,
 *   64 x 0x20 || context string || 0x00 || transcript hash
 * with the hash length limited to the TLS 1.3 cipher suites' hashes (32 or 48 bytes).
 * A compromised frontend therefore cannot obtain a signature over a certificate, a
 * CSR, a TLS 1.2 ServerKeyExchange or any digest of its choosing.
 *
 * No function here parses wire bytes or touches connection state (house rule 8).
 */
#ifndef SIGNER_POLICY_H
#define SIGNER_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include "kl_err.h"

/* 64 spaces, the longest context string (33 bytes), the 0x00 separator, a SHA-384 hash. */
#define POLICY_MAX_CONTENT (64 + 33 + 1 + 48)

/* Values of the RPC's Context enum (keyless.proto). */
#define POLICY_CONTEXT_SERVER 1
#define POLICY_CONTEXT_CLIENT 2

/* TLS SignatureScheme code points (RFC 8446 section 4.2.3) the signer supports. */
#define POLICY_SCHEME_ECDSA_SECP256R1_SHA256 0x0403
#define POLICY_SCHEME_ECDSA_SECP384R1_SHA384 0x0503
#define POLICY_SCHEME_RSA_PSS_RSAE_SHA256 0x0804
#define POLICY_SCHEME_RSA_PSS_RSAE_SHA384 0x0805
#define POLICY_SCHEME_RSA_PSS_RSAE_SHA512 0x0806
#define POLICY_SCHEME_ED25519 0x0807

/* The supported schemes, in a fixed order (for listing and for iteration in tests). */
extern const uint16_t policy_schemes[6];
#define POLICY_NUM_SCHEMES 6

/*
 * Build the CertificateVerify content for context (POLICY_CONTEXT_SERVER or _CLIENT) and
 * a transcript hash of 32 or 48 bytes into out, which must hold POLICY_MAX_CONTENT bytes.
 * *out_len_p receives the content length (130 or 146 bytes).
 * Errors: KL_ERR_INVALID for any other context, any other hash length or a NULL pointer;
 * out is left untouched on error.
 */
KL_MUST_CHECK int policy_build_content(uint8_t *out, size_t *out_len_p, int context, const uint8_t *hash,
                                       size_t hash_len);

/* 1 if hash_len is a TLS 1.3 transcript hash length (32 or 48), else 0. */
int policy_hash_len_ok(size_t hash_len);

/*
 * Parse a scheme given by its IANA name ("ecdsa_secp256r1_sha256", case-insensitive) or
 * by its code point in hex ("0x0403", exactly "0x" and 4 hex digits). Only the six
 * supported schemes are accepted. Errors: KL_ERR_NOT_FOUND for an unknown or malformed
 * name, KL_ERR_INVALID for NULL arguments.
 */
KL_MUST_CHECK int policy_scheme_from_name(uint16_t *scheme_p, const char *name);

/* The IANA name of scheme, or NULL if it is not one of the supported schemes. */
const char *policy_scheme_name(uint16_t scheme);

/*
 * The OpenSSL NID of the hash the scheme signs with (NID_sha256, NID_sha384, NID_sha512)
 * for ECDSA and RSA-PSS, 0 for ed25519 (which signs the whole content), -1 for an unknown
 * scheme.
 */
int policy_scheme_hash(uint16_t scheme);

#endif
