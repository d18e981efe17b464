/* Signed connectors: Ed25519 signatures over a connector file, kept beside
 * it in a detached signature document (FILE.sig).
 *
 * The document is four lines of text:
 *
 *   junction-connector-signature v1
 *   key-id: <16 lower-case hex: the first 8 bytes of SHA-256 of the raw public key>
 *   sha256: <64 lower-case hex: SHA-256 of the file>
 *   signature: <base64 of the 64-byte Ed25519 signature>
 *
 * The signature covers the bytes "junction-connector-v1\n" followed by the
 * file's bytes; the sha256 line lets a verifier say "the file changed after
 * it was signed" rather than only "bad signature". Production mode loads a
 * connector only when its document verifies with one of the trusted public
 * keys (connector_trusted_keys), and checks that before the source is
 * compiled.
 */
#ifndef JUNCTION_CONNECTOR_SIG_H
#define JUNCTION_CONNECTOR_SIG_H

#include <stddef.h>

#define JN_CONNSIG_KEY_ID_LEN 16
/* Longest signature document accepted. */
#define JN_CONNSIG_MAX 1024

typedef struct jn_trusted_keys jn_trusted_keys_t;

/* Loads Ed25519 public keys (PEM "PUBLIC KEY") from files. NULL with the
 * reason, naming the file, in err. n may be 0 (an empty set). */
jn_trusted_keys_t *jn_trusted_keys_load(const char *const *files, size_t n, char *err,
                                        size_t errlen);
void jn_trusted_keys_free(jn_trusted_keys_t *k);
size_t jn_trusted_keys_count(const jn_trusted_keys_t *k);
/* The i-th key's id. */
const char *jn_trusted_keys_id(const jn_trusted_keys_t *k, size_t i);

/* Verifies the signature document sig (NULL: the file is unsigned) over src.
 * 0 and the signing key's id in key_id; -1 with the reason in err: unsigned,
 * malformed document, signed by a key that is not trusted, the file changed
 * after signing (tampered), or a signature that does not verify. */
int jn_connsig_verify(const jn_trusted_keys_t *keys, const char *src, size_t len, const char *sig,
                      size_t siglen, char key_id[JN_CONNSIG_KEY_ID_LEN + 1], char *err,
                      size_t errlen);

/* The key id a signature document names (no verification). -1 when it is
 * malformed, with the reason. */
int jn_connsig_key_id(const char *sig, size_t siglen, char key_id[JN_CONNSIG_KEY_ID_LEN + 1],
                      char *err, size_t errlen);

/* Signs src with the Ed25519 private key in key_file (PEM, readable by its
 * owner only). *out receives the malloc'ed document. 0, or -1 with the
 * reason. */
int jn_connsig_sign(const char *key_file, const char *src, size_t len, char **out,
                    char key_id[JN_CONNSIG_KEY_ID_LEN + 1], char *err, size_t errlen);

/* Generates an Ed25519 key pair: the private key (PKCS#8 PEM, created with
 * mode 0600, never overwritten) and the public key (PEM). 0 and the key id,
 * or -1 with the reason. */
int jn_connsig_keygen(const char *private_path, const char *public_path,
                      char key_id[JN_CONNSIG_KEY_ID_LEN + 1], char *err, size_t errlen);

#endif
