/* Vault benchmark, run by tools/bench/vault (built only with -DJUNCTION_BENCH=ON).
 *
 *   vault_bench --dir DIR [--creds N] [--orgs O] [--seconds S] [--rounds R]
 *               [--aes-seconds S]
 *
 * Creates a SQLite store and a key file (mode 0600) in DIR, puts N credentials
 * (a JSON document of about 300 bytes each) spread over O organizations, then
 * measures:
 *
 *  1. jn_vault_get, end to end (the API has no decrypt-only entry point), ops/s,
 *     median of R rounds of S seconds, cycling over all N credentials:
 *     - cached: TTL one hour, cache large enough for all N, warmed first, so
 *       every timed get is a hit (checked against jn_vault_cache_stats);
 *     - uncached: TTL 0 (no cache), so every get unwraps the organization's
 *       data key with the master key and decrypts the credential.
 *     Each is timed twice: as a caller normally calls it (every get appends its
 *     audit entry in its own transaction, so every get commits, and
 *     synchronous=FULL makes every commit sync the WAL), and with each pass
 *     over the N credentials inside one jn_store_begin/commit (the audit entries
 *     join it, so the sync is shared by N gets and the per-get CPU cost shows).
 *  2. jn_audit_append alone, same event shape as a get's, in the same two
 *     ways: the share of a get that is the audit trail.
 *  3. The cryptography of one cache miss, replicating vault.c's gcm_open call
 *     sequence: unwrap a 32-byte data key, then decrypt one credential.
 *  4. AES-256-GCM encryption of 16 KiB buffers, primitive only:
 *     - "vault calls": per buffer the exact EVP sequence of vault.c's gcm_seal
 *       (new context, init, IV length, key and nonce, AAD, update, final, tag,
 *       free); buffers are allocated before timing, nonces come from a counter
 *       (the vault draws them from the RNG outside gcm_seal, not timed here);
 *     - "bulk update": one context initialized once, then EVP_EncryptUpdate over
 *       the same 16 KiB buffer repeatedly, no tag: the loop shape of
 *       `openssl speed -evp` without -aead.
 *     MB/s = 10^6 bytes per second.
 *
 * The last line is machine-readable: FIGURES key=value ...
 */
#include "junction/audit.h"
#include "junction/keyprovider.h"
#include "junction/store.h"
#include "junction/vault.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define KEY_LEN 32
#define AES_BUF 16384
#define MAX_ROUNDS 15
#define REQUESTER "bench-worker"

typedef struct {
    char org[32];
    char id[JN_VAULT_ID_LEN];
    char doc[512];
    size_t len;
} cred_t;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "vault_bench: %s: %s\n", what, why);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A credential document of about 300 bytes (OAuth client + refresh token). */
static void make_doc(cred_t *c, int i)
{
    static const char hex[] = "0123456789abcdef";
    char secret[65], token[121];
    unsigned x = 2463534242u ^ (unsigned)i * 2654435761u;
    int k;

    for (k = 0; k < 64; k++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        secret[k] = hex[x & 15];
    }
    secret[64] = '\0';
    for (k = 0; k < 120; k++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        token[k] = hex[x & 15];
    }
    token[120] = '\0';
    snprintf(c->doc, sizeof(c->doc),
             "{\"type\":\"oauth2\",\"client_id\":\"client-%06d\",\"client_secret\":\"%s\","
             "\"refresh_token\":\"%s\",\"token_url\":\"https://auth.example.com/token\","
             "\"scopes\":[\"read\"]}",
             i, secret, token);
    c->len = strlen(c->doc);
}

/* ---- jn_vault_get ---- */

typedef struct {
    jn_store_t *store;
    jn_keyprovider_t *kp;
    cred_t *creds;
    int n;
    double seconds;
    int rounds;
} ctx_t;

static jn_vault_t *open_vault(const ctx_t *b, int64_t ttl_ms)
{
    jn_vault_opts_t opts = {.cache_ttl_ms = ttl_ms, .cache_max_entries = (size_t)b->n};
    char err[512];
    jn_vault_t *v = jn_vault_create(b->store, b->kp, &opts, err, sizeof(err));

    if (v == NULL)
        die("jn_vault_create", err);
    return v;
}

static void get_one(jn_vault_t *v, const cred_t *c, int verify)
{
    jn_secret_t s;

    if (jn_vault_get(v, c->org, c->id, REQUESTER, &s) != 0)
        die("jn_vault_get", jn_vault_errmsg(v));
    if (s.len != c->len || (verify && memcmp(s.data, c->doc, c->len) != 0))
        die("jn_vault_get", "returned the wrong document");
    jn_secret_free(&s);
}

/* Median ops/s over rounds; each round runs whole passes over all credentials
 * for at least `seconds`; batched: one store transaction per pass. */
static double time_gets(const ctx_t *b, jn_vault_t *v, int batched, uint64_t *ops_out)
{
    double rates[MAX_ROUNDS];
    uint64_t total = 0;
    int r, i;

    for (r = 0; r < b->rounds; r++) {
        uint64_t ops = 0;
        double t0 = now_s(), t;

        do {
            if (batched && jn_store_begin(b->store) != 0)
                die("jn_store_begin", jn_store_errmsg(b->store));
            for (i = 0; i < b->n; i++)
                get_one(v, &b->creds[i], 0);
            if (batched && jn_store_commit(b->store) != 0)
                die("jn_store_commit", jn_store_errmsg(b->store));
            ops += (uint64_t)b->n;
            t = now_s() - t0;
        } while (t < b->seconds);
        rates[r] = (double)ops / t;
        total += ops;
    }
    *ops_out = total;
    return median(rates, b->rounds);
}

static double bench_get(const ctx_t *b, int cached, int batched)
{
    jn_vault_t *v = open_vault(b, cached ? 3600 * 1000 : 0);
    jn_vault_cache_stats_t before, after;
    uint64_t ops;
    double rate;
    int i;

    /* Warm-up pass, full content check (fills the cache when there is one). */
    for (i = 0; i < b->n; i++)
        get_one(v, &b->creds[i], 1);
    jn_vault_cache_stats(v, &before);
    rate = time_gets(b, v, batched, &ops);
    jn_vault_cache_stats(v, &after);
    if (cached && (after.hits - before.hits != ops || after.misses != before.misses))
        die("cached gets", "not every timed get was a cache hit");
    if (!cached && after.hits != 0)
        die("uncached gets", "a cache hit without a cache");
    jn_vault_destroy(v);
    return rate;
}

/* ---- the audit append alone ---- */

static double bench_audit(const ctx_t *b, int batched)
{
    double rates[MAX_ROUNDS];
    char err[512];
    int r, i;

    for (r = 0; r < b->rounds; r++) {
        uint64_t ops = 0;
        double t0 = now_s(), t;

        do {
            if (batched && jn_store_begin(b->store) != 0)
                die("jn_store_begin", jn_store_errmsg(b->store));
            for (i = 0; i < b->n; i++) {
                jn_audit_event_t ev = {
                    .actor = REQUESTER,
                    .action = "credential.access",
                    .org_id = b->creds[i].org,
                    .credential_id = b->creds[i].id,
                    .detail_json = "{\"version\":1,\"state\":\"current\",\"cache\":\"hit\"}"};
                if (jn_audit_append(b->store, &ev, NULL, err, sizeof(err)) != 0)
                    die("jn_audit_append", err);
            }
            if (batched && jn_store_commit(b->store) != 0)
                die("jn_store_commit", jn_store_errmsg(b->store));
            ops += (uint64_t)b->n;
            t = now_s() - t0;
        } while (t < b->seconds);
        rates[r] = (double)ops / t;
    }
    return median(rates, b->rounds);
}

/* ---- AES-256-GCM, the vault's EVP call sequences ---- */

/* vault.c gcm_seal, call for call. */
static int seal(const uint8_t *key, const uint8_t *nonce, const char *aad, const uint8_t *in,
                size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, rc = -1;

    if (ctx == NULL)
        goto done;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1)
        goto done;
    if (len > 0 && EVP_EncryptUpdate(ctx, out, &n, in, (int)len) != 1)
        goto done;
    if (EVP_EncryptFinal_ex(ctx, out + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + len) != 1)
        goto done;
    rc = 0;

done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

/* vault.c gcm_open, call for call; in is ciphertext || tag. */
static int open_gcm(const uint8_t *key, const uint8_t *nonce, const char *aad, const uint8_t *in,
                    size_t len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t ct_len = len - TAG_LEN;
    uint8_t tag[TAG_LEN];
    int n = 0, rc = -1;

    if (ctx == NULL)
        goto done;
    memcpy(tag, in + ct_len, TAG_LEN);
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)aad, (int)strlen(aad)) != 1)
        goto done;
    if (ct_len > 0 && EVP_DecryptUpdate(ctx, out, &n, in, (int)ct_len) != 1)
        goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
        goto done;
    rc = EVP_DecryptFinal_ex(ctx, out + n, &n) == 1 ? 0 : 1;

done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

static void next_nonce(uint8_t nonce[NONCE_LEN], uint64_t i)
{
    memcpy(nonce + 4, &i, sizeof(i));
}

/* Microseconds per miss: unwrap a data key (32 bytes), decrypt one document. */
static double bench_miss_crypto(const cred_t *c, double seconds)
{
    static const char dek_aad[] = "junction:dek:v1|org=org-0|key=bench-1|dek_version=1";
    static const char cred_aad[] = "junction:cred:v1|org=org-0|cred=0123456789abcdef0123456789abcd"
                                   "ef|version=1";
    uint8_t mk[KEY_LEN], dek[KEY_LEN], nonce_k[NONCE_LEN] = {1}, nonce_c[NONCE_LEN] = {2};
    uint8_t wrapped[KEY_LEN + TAG_LEN], ct[512 + TAG_LEN], plain[512];
    uint64_t ops = 0;
    double t0, t;
    int k;

    for (k = 0; k < KEY_LEN; k++) {
        mk[k] = (uint8_t)(k * 7 + 1);
        dek[k] = (uint8_t)(k * 13 + 5);
    }
    if (seal(mk, nonce_k, dek_aad, dek, KEY_LEN, wrapped) != 0 ||
        seal(dek, nonce_c, cred_aad, (const uint8_t *)c->doc, c->len, ct) != 0)
        die("miss crypto", "encryption failed");
    t0 = now_s();
    do {
        for (k = 0; k < 1000; k++) {
            uint8_t key[KEY_LEN];
            if (open_gcm(mk, nonce_k, dek_aad, wrapped, sizeof(wrapped), key) != 0 ||
                open_gcm(key, nonce_c, cred_aad, ct, c->len + TAG_LEN, plain) != 0)
                die("miss crypto", "decryption failed");
            OPENSSL_cleanse(key, sizeof(key));
        }
        ops += 1000;
        t = now_s() - t0;
    } while (t < seconds);
    if (memcmp(plain, c->doc, c->len) != 0)
        die("miss crypto", "wrong plaintext");
    return t * 1e6 / (double)ops;
}

/* MB/s of gcm_seal's sequence per 16 KiB buffer. */
static double bench_seal_mb_s(double seconds, uint8_t *check)
{
    static const char aad[] = "junction:cred:v1|org=org-0|cred=0123456789abcdef0123456789abcdef|"
                              "version=1";
    uint8_t key[KEY_LEN], nonce[NONCE_LEN] = {0};
    uint8_t *in = malloc(AES_BUF), *out = malloc(AES_BUF + TAG_LEN);
    uint64_t blocks = 0;
    double t0, t;
    int k;

    if (in == NULL || out == NULL)
        die("aes", "out of memory");
    for (k = 0; k < KEY_LEN; k++)
        key[k] = (uint8_t)(k * 31 + 3);
    for (k = 0; k < AES_BUF; k++)
        in[k] = (uint8_t)(k * 131 + 17);
    /* Warm-up (page faults, CPU frequency, first-use initialization). */
    for (k = 0; k < 64; k++) {
        next_nonce(nonce, blocks++);
        if (seal(key, nonce, aad, in, AES_BUF, out) != 0)
            die("aes", "encryption failed");
    }
    blocks = 0;
    t0 = now_s();
    do {
        for (k = 0; k < 256; k++) {
            next_nonce(nonce, blocks++);
            if (seal(key, nonce, aad, in, AES_BUF, out) != 0)
                die("aes", "encryption failed");
        }
        t = now_s() - t0;
    } while (t < seconds);
    *check ^= out[AES_BUF];
    free(in);
    free(out);
    return (double)blocks * AES_BUF / 1e6 / t;
}

/* MB/s of EVP_EncryptUpdate alone on one context (openssl speed's loop). */
static double bench_update_mb_s(double seconds, uint8_t *check)
{
    uint8_t key[KEY_LEN], nonce[NONCE_LEN] = {0};
    uint8_t *buf = malloc(AES_BUF);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint64_t blocks = 0;
    double t0, t;
    int k, n;

    if (buf == NULL || ctx == NULL)
        die("aes", "out of memory");
    for (k = 0; k < KEY_LEN; k++)
        key[k] = (uint8_t)(k * 31 + 3);
    for (k = 0; k < AES_BUF; k++)
        buf[k] = (uint8_t)(k * 131 + 17);
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1)
        die("aes", "init failed");
    for (k = 0; k < 64; k++)
        if (EVP_EncryptUpdate(ctx, buf, &n, buf, AES_BUF) != 1)
            die("aes", "encryption failed");
    t0 = now_s();
    do {
        for (k = 0; k < 256; k++) {
            if (EVP_EncryptUpdate(ctx, buf, &n, buf, AES_BUF) != 1)
                die("aes", "encryption failed");
        }
        blocks += 256;
        t = now_s() - t0;
    } while (t < seconds);
    *check ^= buf[0];
    EVP_CIPHER_CTX_free(ctx);
    free(buf);
    return (double)blocks * AES_BUF / 1e6 / t;
}

/* ---- setup ---- */

static jn_keyprovider_t *make_key_file(const char *dir)
{
    char path[4096], err[512], *line = NULL;
    jn_keyprovider_t *kp;
    size_t len;
    int fd;

    snprintf(path, sizeof(path), "%s/master.keys", dir);
    if (jn_master_key_generate_line("bench-1", &line) != 0)
        die("key file", "cannot generate a key");
    len = strlen(line);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, line, len) != (ssize_t)len || close(fd) != 0)
        die("key file", path);
    OPENSSL_cleanse(line, len);
    free(line);
    kp = jn_keyprovider_file_open(path, err, sizeof(err));
    if (kp == NULL)
        die("key file", err);
    return kp;
}

static double arg_double(const char *s, const char *name)
{
    char *end;
    double d = strtod(s, &end);

    if (*end != '\0' || d <= 0)
        die(name, "expected a positive number");
    return d;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int n = 100, orgs = 5, i;
    double aes_seconds = 3.0;
    double get_c, get_u, get_cb, get_ub, aud, aud_b, miss_us, seal_mb, upd_mb;
    char path[4096], err[512];
    uint8_t check = 0;
    size_t total_len = 0;
    ctx_t b = {.seconds = 1.0, .rounds = 3};
    jn_vault_t *v;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (val == NULL)
            die(a, "missing value");
        if (strcmp(a, "--dir") == 0)
            dir = val;
        else if (strcmp(a, "--creds") == 0)
            n = atoi(val);
        else if (strcmp(a, "--orgs") == 0)
            orgs = atoi(val);
        else if (strcmp(a, "--seconds") == 0)
            b.seconds = arg_double(val, a);
        else if (strcmp(a, "--rounds") == 0)
            b.rounds = atoi(val);
        else if (strcmp(a, "--aes-seconds") == 0)
            aes_seconds = arg_double(val, a);
        else
            die(a, "unknown argument");
        i++;
    }
    if (dir == NULL || n < 1 || orgs < 1 || orgs > n || b.rounds < 1 || b.rounds > MAX_ROUNDS)
        die("usage", "vault_bench --dir DIR [--creds N] [--orgs O] [--seconds S] [--rounds R 1-15]"
                     " [--aes-seconds S]");

    snprintf(path, sizeof(path), "%s/vault.db", dir);
    b.store = jn_store_open_sqlite(path, err, sizeof(err));
    if (b.store == NULL)
        die("store", err);
    b.kp = make_key_file(dir);
    b.n = n;
    b.creds = calloc((size_t)n, sizeof(*b.creds));
    if (b.creds == NULL)
        die("setup", "out of memory");
    v = open_vault(&b, 0);
    for (i = 0; i < n; i++) {
        cred_t *c = &b.creds[i];

        snprintf(c->org, sizeof(c->org), "org-%d", i % orgs);
        make_doc(c, i);
        total_len += c->len;
        if (jn_vault_put(v, c->org, "example", "oauth2", c->doc, c->len, NULL, "bench-setup",
                         c->id) != 0)
            die("jn_vault_put", jn_vault_errmsg(v));
    }
    jn_vault_destroy(v);
    printf("setup: %d credentials (%.0f bytes of JSON on average) in %d organizations, file key"
           " provider, SQLite store (WAL, synchronous=FULL)\n",
           n, (double)total_len / n, orgs);
    printf("gets: median of %d rounds of >= %.1f s, cycling over all %d credentials\n", b.rounds,
           b.seconds, n);
    fflush(stdout);

    get_c = bench_get(&b, 1, 0);
    get_u = bench_get(&b, 0, 0);
    get_cb = bench_get(&b, 1, 1);
    get_ub = bench_get(&b, 0, 1);
    aud = bench_audit(&b, 0);
    aud_b = bench_audit(&b, 1);
    miss_us = bench_miss_crypto(&b.creds[0], 1.0);
    seal_mb = bench_seal_mb_s(aes_seconds, &check);
    upd_mb = bench_update_mb_s(aes_seconds, &check);

    printf("\njn_vault_get, end to end (every get: credential row read + audit append):\n");
    printf("  %-44s %12.0f ops/s  %8.1f us/op\n", "cached (hit), commit per get", get_c,
           1e6 / get_c);
    printf("  %-44s %12.0f ops/s  %8.1f us/op\n", "uncached (TTL 0), commit per get", get_u,
           1e6 / get_u);
    printf("  %-44s %12.0f ops/s  %8.1f us/op\n", "cached (hit), one transaction per pass", get_cb,
           1e6 / get_cb);
    printf("  %-44s %12.0f ops/s  %8.1f us/op\n", "uncached (TTL 0), one transaction per pass",
           get_ub, 1e6 / get_ub);
    printf("  a hit skips: org-key row read, data-key unwrap, credential decrypt (the cache holds\n"
           "  decrypted credentials, not data keys); it still does the credential row read, a\n"
           "  locked-memory copy (mmap+mlock per secret) and the audit append\n");
    printf("jn_audit_append alone (credential.access event):\n");
    printf("  %-44s %12.0f ops/s  %8.1f us/op\n", "commit per append", aud, 1e6 / aud);
    printf("  %-44s %12.0f ops/s  %8.1f us/op\n", "one transaction per pass", aud_b, 1e6 / aud_b);
    printf("crypto of one miss (vault.c's gcm_open sequence, unwrap 32 B + decrypt %zu B):\n",
           b.creds[0].len);
    printf("  %-44s %12.2f us/op\n", "unwrap + decrypt", miss_us);
    printf("AES-256-GCM encryption, 16 KiB buffers, %.1f s each (check byte %u):\n", aes_seconds,
           check);
    printf("  %-44s %12.1f MB/s\n", "vault calls (gcm_seal sequence per buffer)", seal_mb);
    printf("  %-44s %12.1f MB/s\n", "bulk EVP_EncryptUpdate on one context", upd_mb);

    printf("FIGURES get_cached_ops_s=%.0f get_uncached_ops_s=%.0f get_cached_batched_ops_s=%.0f"
           " get_uncached_batched_ops_s=%.0f audit_ops_s=%.0f audit_batched_ops_s=%.0f"
           " miss_crypto_us=%.2f aes_gcm_mb_s=%.1f aes_gcm_update_mb_s=%.1f\n",
           get_c, get_u, get_cb, get_ub, aud, aud_b, miss_us, seal_mb, upd_mb);

    jn_keyprovider_destroy(b.kp);
    jn_store_close(b.store);
    free(b.creds);
    return 0;
}
