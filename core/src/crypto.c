/* Hashing and encoding helpers on OpenSSL 3. */
#include "junction/crypto.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* OpenSSL treats a NULL buffer differently from an empty one in places. */
static const uint8_t empty[1];

int jn_sha256(const void *data, size_t len, uint8_t out[JN_SHA256_LEN])
{
    if ((data == NULL && len > 0) || out == NULL)
        return -1;
    return EVP_Digest(data != NULL ? data : empty, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0
                                                                                            : -1;
}

int jn_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[JN_SHA256_LEN])
{
    unsigned int out_len = 0;
    if ((key == NULL && key_len > 0) || (data == NULL && len > 0) || out == NULL ||
        key_len > INT_MAX)
        return -1;
    if (HMAC(EVP_sha256(), key != NULL ? key : empty, (int)key_len, data != NULL ? data : empty,
             len, out, &out_len) == NULL)
        return -1;
    return out_len == JN_SHA256_LEN ? 0 : -1;
}

void jn_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * len] = '\0';
}

size_t jn_decimal_u64(uint64_t v, char *out)
{
    char digits[20];
    size_t n = 0;

    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    out[n] = '\0';
    return n;
}

int jn_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long jn_hex_decode(const char *in, size_t len, uint8_t *out)
{
    if (len % 2 != 0 || len / 2 > LONG_MAX || (in == NULL && len > 0))
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int hi = jn_hex_value((unsigned char)in[i]), lo = jn_hex_value((unsigned char)in[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(len / 2);
}

int jn_base64_encode(const uint8_t *in, size_t len, char **out, size_t *out_len)
{
    if (out == NULL || (in == NULL && len > 0) || len / 3 >= (SIZE_MAX - 1) / 4 - 1)
        return -1;
    size_t n = (len + 2) / 3 * 4;
    char *p = malloc(n + 1);
    if ((*out = p) == NULL)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *p++ = b64_std[v >> 18];
        *p++ = b64_std[(v >> 12) & 63];
        *p++ = i + 1 < len ? b64_std[(v >> 6) & 63] : '=';
        *p++ = i + 2 < len ? b64_std[v & 63] : '=';
    }
    *p = '\0';
    if (out_len != NULL)
        *out_len = n;
    return 0;
}

enum { ALPHABET_STD = 1, ALPHABET_URL = 2 };

/* Sextet value of c, or -1; records which alphabet the character belongs to. */
static int b64_value(unsigned char c, unsigned *alphabets)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '/')
        *alphabets |= ALPHABET_STD;
    else if (c == '-' || c == '_')
        *alphabets |= ALPHABET_URL;
    else
        return -1;
    return c == '+' || c == '-' ? 62 : 63;
}

/* Length without padding, or -1 when padding is malformed. Padding, if any,
 * must complete the last quantum exactly. */
static long b64_data_len(const char *in, size_t len)
{
    size_t n = len;
    while (n > 0 && in[n - 1] == '=' && len - n < 2)
        n--;
    if (n > 0 && in[n - 1] == '=')
        return -1;
    if (n != len && len % 4 != 0)
        return -1;
    if (n % 4 == 1 || n > LONG_MAX)
        return -1;
    return (long)n;
}

/* Decodes n unpadded characters into out; rejects mixed alphabets and
 * non-zero leftover bits so every byte string has one accepted encoding. */
static int b64_decode_into(const char *in, size_t n, uint8_t *out)
{
    unsigned alphabets = 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)in[i], &alphabets);
        if (v < 0 || alphabets == (ALPHABET_STD | ALPHABET_URL))
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? 0 : -1;
}

int jn_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    if (out == NULL || (in == NULL && len > 0))
        return -1;
    *out = NULL;
    long n = b64_data_len(in, len);
    if (n < 0)
        return -1;
    size_t dlen = (size_t)n / 4 * 3 + ((size_t)n % 4 ? (size_t)n % 4 - 1 : 0);
    uint8_t *buf = malloc(dlen + 1);
    if (buf == NULL)
        return -1;
    if (b64_decode_into(in, (size_t)n, buf) < 0) {
        free(buf);
        return -1;
    }
    buf[dlen] = '\0';
    *out = buf;
    if (out_len != NULL)
        *out_len = dlen;
    return 0;
}

int jn_ct_equal(const void *a, const void *b, size_t len)
{
    if (len == 0)
        return 1;
    if (a == NULL || b == NULL)
        return 0;
    return CRYPTO_memcmp(a, b, len) == 0;
}

int jn_random_bytes(void *out, size_t len)
{
    unsigned char *p = out;
    if (out == NULL && len > 0)
        return -1;
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, chunk) != 1)
            return -1;
        p += chunk;
        len -= (size_t)chunk;
    }
    return 0;
}

int jn_random_id(char out[33])
{
    uint8_t raw[16];
    if (out == NULL || jn_random_bytes(raw, sizeof(raw)) < 0)
        return -1;
    jn_hex_encode(raw, sizeof(raw), out);
    return 0;
}
