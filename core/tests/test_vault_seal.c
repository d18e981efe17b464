/* Sealing for shared infrastructure (jn_vault_seal / jn_vault_unseal): round
 * trips between two vaults on one store (two processes), a blob bound to its
 * organization and context, tampering and truncation refused, other master
 * keys refused, blobs sealed before an organization-key rotation still open
 * while their data key is live, no plaintext in the blob, and the argument
 * checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "junction/keyprovider.h"
#include "junction/store.h"
#include "junction/vault.h"

#include "test_tmpdir.h"

#define CANARY "CANARY-sealed-token-4e1d"
#define PLAIN "T 1900000000\nAuthorization: Bearer " CANARY
#define CONTEXT "jn:token:{acme/cred-1}:00112233aabbccdd"

typedef struct {
    char dir[256];
    char db[300];
    char keyfile[300];
    jn_store_t *store;
    jn_keyprovider_t *kp;
    jn_vault_t *vault;
} fixture_t;

static void write_key_file(const char *path, const char *id)
{
    char *line = NULL;
    int fd;

    if (jn_master_key_generate_line(id, &line) != 0)
        fail_msg("cannot generate a key line");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    close(fd);
    OPENSSL_cleanse(line, strlen(line));
    free(line);
}

static jn_vault_t *open_vault(jn_store_t *store, const char *keyfile, jn_keyprovider_t **kp)
{
    char err[512] = "";
    jn_vault_t *v;

    if ((*kp = jn_keyprovider_file_open(keyfile, err, sizeof(err))) == NULL)
        fail_msg("key file: %s", err);
    if ((v = jn_vault_create(store, *kp, NULL, err, sizeof(err))) == NULL)
        fail_msg("vault: %s", err);
    return v;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char err[512] = "", id[JN_VAULT_ID_LEN];

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-seal");
    snprintf(f->db, sizeof(f->db), "%s/junction.db", f->dir);
    snprintf(f->keyfile, sizeof(f->keyfile), "%s/master.keys", f->dir);
    write_key_file(f->keyfile, "k1");
    if ((f->store = jn_store_open_sqlite(f->db, err, sizeof(err))) == NULL)
        fail_msg("store: %s", err);
    f->vault = open_vault(f->store, f->keyfile, &f->kp);
    /* A credential gives each organization its data key. */
    assert_int_equal(jn_vault_put(f->vault, "acme", "github", "api_key", "{\"token\":\"t\"}", 13,
                                  NULL, "test", id),
                     0);
    assert_int_equal(jn_vault_put(f->vault, "globex", "github", "api_key", "{\"token\":\"t\"}", 13,
                                  NULL, "test", id),
                     0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_vault_destroy(f->vault);
    jn_keyprovider_destroy(f->kp);
    jn_store_close(f->store);
    tt_rmtree(f->dir);
    free(f);
    return 0;
}

static void seal(jn_vault_t *v, const char *org, const char *context, uint8_t **blob, size_t *len)
{
    if (jn_vault_seal(v, org, context, PLAIN, strlen(PLAIN), blob, len) != 0)
        fail_msg("seal: %s", jn_vault_errmsg(v));
}

static void expect_unseal_error(jn_vault_t *v, const char *org, const char *context,
                                const uint8_t *blob, size_t len, int code, const char *want)
{
    jn_secret_t out;

    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(jn_vault_unseal(v, org, context, blob, len, &out), code);
    assert_null(out.data);
    assert_int_equal(out.len, 0);
    if (strstr(jn_vault_errmsg(v), want) == NULL)
        fail_msg("got: %s\nwant: %s", jn_vault_errmsg(v), want);
    assert_null(strstr(jn_vault_errmsg(v), CANARY));
}

static void test_round_trip_across_processes(void **state)
{
    fixture_t *f = *state;
    jn_store_t *store2;
    jn_keyprovider_t *kp2;
    jn_vault_t *v2;
    uint8_t *blob = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    jn_secret_t out = {0};
    char err[512];

    seal(f->vault, "acme", CONTEXT, &blob, &len);
    /* "JNS1", the data-key version, a nonce, the ciphertext and the tag. */
    assert_int_equal(len, 4 + 8 + 12 + strlen(PLAIN) + 16);
    assert_memory_equal(blob, "JNS1", 4);
    assert_null(memmem(blob, len, CANARY, strlen(CANARY)));
    assert_null(memmem(blob, len, "Bearer", 6));

    /* Another process: its own store connection and vault, same key file. */
    store2 = jn_store_open_sqlite(f->db, err, sizeof(err));
    assert_non_null(store2);
    v2 = open_vault(store2, f->keyfile, &kp2);
    assert_int_equal(jn_vault_unseal(v2, "acme", CONTEXT, blob, len, &out), 0);
    assert_int_equal(out.len, strlen(PLAIN));
    assert_string_equal((const char *)out.data, PLAIN);
    jn_secret_free(&out);
    assert_null(out.data);

    /* A fresh nonce each time: the same plaintext seals differently. */
    seal(v2, "acme", CONTEXT, &again, &len2);
    assert_int_equal(len2, len);
    assert_memory_not_equal(again, blob, len);
    assert_int_equal(jn_vault_unseal(f->vault, "acme", CONTEXT, again, len2, &out), 0);
    jn_secret_free(&out);
    free(again);

    /* Empty plaintext is allowed. */
    assert_int_equal(jn_vault_seal(v2, "acme", CONTEXT, NULL, 0, &again, &len2), 0);
    assert_int_equal(jn_vault_unseal(f->vault, "acme", CONTEXT, again, len2, &out), 0);
    assert_int_equal(out.len, 0);
    jn_secret_free(&out);
    free(again);

    jn_vault_destroy(v2);
    jn_keyprovider_destroy(kp2);
    jn_store_close(store2);
    free(blob);
}

static void test_bound_to_org_and_context(void **state)
{
    fixture_t *f = *state;
    uint8_t *blob = NULL;
    size_t len = 0;

    seal(f->vault, "acme", CONTEXT, &blob, &len);
    expect_unseal_error(f->vault, "globex", CONTEXT, blob, len, JN_VAULT_EDECRYPT,
                        "sealed for another context or organization");
    expect_unseal_error(f->vault, "acme", CONTEXT "x", blob, len, JN_VAULT_EDECRYPT,
                        "sealed for another context or organization");
    /* An organization without a data key has nothing to seal or open with. */
    expect_unseal_error(f->vault, "initech", CONTEXT, blob, len, JN_VAULT_ENOTFOUND,
                        "organization 'initech' has no data key version 1");
    uint8_t *other = NULL;
    size_t olen = 0;
    assert_int_equal(jn_vault_seal(f->vault, "initech", CONTEXT, "x", 1, &other, &olen),
                     JN_VAULT_ENOTFOUND);
    assert_null(other);
    assert_string_equal(jn_vault_errmsg(f->vault),
                        "organization 'initech' has no data key (it has no credentials)");
    free(blob);
}

static void test_tampering(void **state)
{
    fixture_t *f = *state;
    uint8_t *blob = NULL;
    size_t len = 0;

    seal(f->vault, "acme", CONTEXT, &blob, &len);
    /* Every byte after the header's magic and version is authenticated. */
    for (size_t i = 12; i < len; i += 7) {
        blob[i] ^= 0x01;
        expect_unseal_error(f->vault, "acme", CONTEXT, blob, len, JN_VAULT_EDECRYPT,
                            "does not open here");
        blob[i] ^= 0x01;
    }
    /* The data-key version names another (missing) key. */
    blob[11] ^= 0x02;
    expect_unseal_error(f->vault, "acme", CONTEXT, blob, len, JN_VAULT_ENOTFOUND,
                        "has no data key version 3");
    blob[11] ^= 0x02;
    memset(blob + 4, 0, 8);
    expect_unseal_error(f->vault, "acme", CONTEXT, blob, len, JN_VAULT_EDECRYPT,
                        "names no data key");
    free(blob);
    seal(f->vault, "acme", CONTEXT, &blob, &len);
    /* Truncated, and not a sealed blob at all. */
    expect_unseal_error(f->vault, "acme", CONTEXT, blob, len - 1, JN_VAULT_EDECRYPT,
                        "does not open here");
    expect_unseal_error(f->vault, "acme", CONTEXT, blob, 27, JN_VAULT_EDECRYPT,
                        "not a sealed blob (27 bytes");
    expect_unseal_error(f->vault, "acme", CONTEXT, (const uint8_t *)PLAIN, strlen(PLAIN),
                        JN_VAULT_EDECRYPT, "not a sealed blob");
    blob[0] = 'X';
    expect_unseal_error(f->vault, "acme", CONTEXT, blob, len, JN_VAULT_EDECRYPT,
                        "not a sealed blob");
    free(blob);
}

static void test_other_master_key(void **state)
{
    fixture_t *f = *state;
    char other[320];
    jn_keyprovider_t *kp;
    jn_vault_t *v;
    uint8_t *blob = NULL;
    size_t len = 0;
    jn_secret_t out = {0};

    seal(f->vault, "acme", CONTEXT, &blob, &len);
    /* A deployment whose key file has other bytes under the same key id
     * cannot unwrap the data key, so cannot open the blob. */
    snprintf(other, sizeof(other), "%s/other.keys", f->dir);
    write_key_file(other, "k1");
    v = open_vault(f->store, other, &kp);
    assert_true(jn_vault_unseal(v, "acme", CONTEXT, blob, len, &out) < 0);
    assert_null(out.data);
    assert_null(strstr(jn_vault_errmsg(v), CANARY));
    jn_vault_destroy(v);
    jn_keyprovider_destroy(kp);
    free(blob);
}

static void test_org_key_rotation(void **state)
{
    fixture_t *f = *state;
    uint8_t *old = NULL, *fresh = NULL;
    size_t olen = 0, flen = 0;
    jn_secret_t out = {0};

    seal(f->vault, "acme", CONTEXT, &old, &olen);
    assert_int_equal(old[11], 1);
    assert_int_equal(jn_vault_rotate_org_key(f->vault, "acme", "test", NULL), 0);
    /* New blobs use the new data key ... */
    seal(f->vault, "acme", CONTEXT, &fresh, &flen);
    assert_int_equal(fresh[11], 2);
    assert_int_equal(jn_vault_unseal(f->vault, "acme", CONTEXT, fresh, flen, &out), 0);
    jn_secret_free(&out);
    /* ... and one sealed under the retired key no longer opens (its key
     * material is erased): the reader exchanges itself. */
    expect_unseal_error(f->vault, "acme", CONTEXT, old, olen, JN_VAULT_EDECRYPT, "retired");
    free(old);
    free(fresh);
}

static void test_arguments(void **state)
{
    fixture_t *f = *state;
    uint8_t *blob = (uint8_t *)&blob;
    size_t len = 1;
    jn_secret_t out;
    char long_context[300];

    assert_int_equal(jn_vault_seal(f->vault, "acme", "", "x", 1, &blob, &len), JN_VAULT_EINVAL);
    assert_null(blob);
    assert_int_equal(len, 0);
    assert_string_equal(jn_vault_errmsg(f->vault),
                        "invalid seal context: expected 1 to 256 printable characters");
    memset(long_context, 'k', sizeof(long_context) - 1);
    long_context[sizeof(long_context) - 1] = '\0';
    assert_int_equal(jn_vault_seal(f->vault, "acme", long_context, "x", 1, &blob, &len),
                     JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_seal(f->vault, "acme", "a\nb", "x", 1, &blob, &len), JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_seal(f->vault, "ac|me", CONTEXT, "x", 1, &blob, &len),
                     JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_seal(f->vault, "acme", CONTEXT, NULL, 1, &blob, &len),
                     JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_seal(f->vault, "acme", CONTEXT, "x", 1, NULL, &len), JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_unseal(f->vault, "acme", CONTEXT, NULL, 1, &out), JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_unseal(f->vault, "acme", CONTEXT, "x", 1, NULL), JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_unseal(f->vault, "acme", NULL, "x", 1, &out), JN_VAULT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_to_org_and_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_master_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_org_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
