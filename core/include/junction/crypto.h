/* Hashing and encoding helpers on OpenSSL. All outputs are malloc'ed unless a
 * buffer is passed; every function returns 0 on success, -1 on failure. */
#ifndef JUNCTION_CRYPTO_H
#define JUNCTION_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define JN_SHA256_LEN 32

int jn_sha256(const void *data, size_t len, uint8_t out[JN_SHA256_LEN]);
int jn_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[JN_SHA256_LEN]);
/* Lower-case hex; `out` must hold 2*len+1 bytes. */
void jn_hex_encode(const uint8_t *in, size_t len, char *out);
/* The decimal digits of v and a NUL into out (21 bytes hold any value);
 * the number of digits. Without printf: for hot paths. */
size_t jn_decimal_u64(uint64_t v, char *out);
/* Value of one hex digit (either case), or -1. */
int jn_hex_value(unsigned char c);
/* Returns decoded length, or -1 on odd length / non-hex input. `out` holds len/2. */
long jn_hex_decode(const char *in, size_t len, uint8_t *out);
/* Standard base64 with padding; `*out` malloc'ed, NUL-terminated. */
int jn_base64_encode(const uint8_t *in, size_t len, char **out, size_t *out_len);
/* Accepts standard and URL-safe alphabets, padding optional. Returns -1 on bad input. */
int jn_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len);
/* Constant-time comparison; returns 1 when equal. */
int jn_ct_equal(const void *a, const void *b, size_t len);
/* Cryptographically random bytes. */
int jn_random_bytes(void *out, size_t len);
/* A random identifier: 32 lower-case hex characters + NUL. */
int jn_random_id(char out[33]);

#endif
