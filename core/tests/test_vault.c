/* The credential vault and its key providers: round trips, tampering of every
 * stored part, key-file policy, rotations (with interrupted runs resumed),
 * credential versions, the cache, and that no secret leaks into errors, the
 * audit log, listings or the database file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "junction/audit.h"
#include "junction/crypto.h"
#include "junction/keyprovider.h"
#include "junction/secmem.h"
#include "junction/store.h"
#include "junction/vault.h"

#include "test_tmpdir.h"

#define CANARY "CANARY-5ecret-Value-91f2c7"
#define SECRET "{\"token\":\"" CANARY "\"}"
#define ORG "org-1"
#define ORG2 "org-2"

typedef struct {
    char dir[256];
    char db[300];
    char keyfile[300];
    jn_store_t *store;
    jn_keyprovider_t *kp;
    jn_vault_t *vault;
    uint64_t now;   /* the injected clock */
    int stop_after; /* progress hook: stop after this many steps (0: never) */
    int steps;
} fixture_t;

/* ---- helpers ---- */

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void append_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* A key-file line with a fresh random key. */
static char *key_line(const char *id)
{
    char *line = NULL;

    if (jn_master_key_generate_line(id, &line) != 0)
        fail_msg("cannot generate a key line");
    return line;
}

static void free_line(char *line)
{
    OPENSSL_cleanse(line, strlen(line));
    free(line);
}

static uint64_t fake_clock(void *ud)
{
    return ((fixture_t *)ud)->now;
}

static int stop_hook(void *ud, const char *what, const char *org, const char *cred)
{
    fixture_t *f = ud;

    (void)what;
    (void)org;
    (void)cred;
    f->steps++;
    return f->stop_after > 0 && f->steps >= f->stop_after;
}

static jn_vault_t *new_vault(fixture_t *f, int64_t ttl, size_t max_entries)
{
    jn_vault_opts_t opts = {.cache_ttl_ms = ttl,
                            .cache_max_entries = max_entries,
                            .clock = fake_clock,
                            .clock_ud = f,
                            .progress = stop_hook,
                            .progress_ud = f};
    char err[512] = "";
    jn_vault_t *v = jn_vault_create(f->store, f->kp, &opts, err, sizeof(err));

    if (v == NULL)
        fail_msg("vault: %s", err);
    return v;
}

static jn_keyprovider_t *open_kp(const char *path)
{
    char err[512] = "";
    jn_keyprovider_t *kp = jn_keyprovider_file_open(path, err, sizeof(err));

    if (kp == NULL)
        fail_msg("key file: %s", err);
    return kp;
}

/* Replaces the fixture's provider and vault (e.g. after editing the key file). */
static void reopen_vault(fixture_t *f)
{
    jn_vault_destroy(f->vault);
    jn_keyprovider_destroy(f->kp);
    f->kp = open_kp(f->keyfile);
    f->vault = new_vault(f, 0, 0);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char err[512] = "", *line;

    assert_non_null(f);
    tt_tmpdir(f->dir, sizeof(f->dir), "jn-vault");
    snprintf(f->db, sizeof(f->db), "%s/junction.db", f->dir);
    snprintf(f->keyfile, sizeof(f->keyfile), "%s/master.keys", f->dir);
    line = key_line("k1");
    write_file(f->keyfile, line, 0600);
    free_line(line);
    f->store = jn_store_open_sqlite(f->db, err, sizeof(err));
    if (f->store == NULL)
        fail_msg("store: %s", err);
    f->kp = open_kp(f->keyfile);
    f->now = 1000;
    f->vault = new_vault(f, 0, 0);
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

static void db_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* First column of the first row as a malloc'ed blob (len in *len). */
static uint8_t *db_blob(const char *path, const char *sql, size_t *len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint8_t *out;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    *len = (size_t)sqlite3_column_bytes(st, 0);
    out = malloc(*len + 1);
    assert_non_null(out);
    if (*len > 0)
        memcpy(out, sqlite3_column_blob(st, 0), *len);
    out[*len] = 0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static int64_t db_int(const char *path, const char *sql)
{
    size_t len;
    uint8_t *b = db_blob(path, sql, &len);
    int64_t v = strtoll((const char *)b, NULL, 10);

    free(b);
    return v;
}

/* Runs `sql` with ?1 bound to a blob. */
static void db_set_blob(const char *path, const char *sql, const uint8_t *blob, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_bind_blob(st, 1, blob, (int)len, SQLITE_TRANSIENT), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Flips one bit of byte `at` of a blob column of one row. */
static void flip_byte(const char *path, const char *table, const char *column, const char *where,
                      size_t at)
{
    char sql[512];
    size_t len;
    uint8_t *b;

    snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE %s", column, table, where);
    b = db_blob(path, sql, &len);
    assert_true(at < len);
    b[at] ^= 0x01;
    snprintf(sql, sizeof(sql), "UPDATE %s SET %s = ?1 WHERE %s", table, column, where);
    db_set_blob(path, sql, b, len);
    free(b);
}

static void put_ok(fixture_t *f, const char *org, const char *secret, char id[JN_VAULT_ID_LEN])
{
    int rc = jn_vault_put(f->vault, org, "github", "api_key", secret, strlen(secret),
                          "{\"account\":\"acme\",\"scopes\":[\"read:org\"]}", "alice", id);

    if (rc != 0)
        fail_msg("put: %s", jn_vault_errmsg(f->vault));
}

static void get_equals(fixture_t *f, const char *org, const char *id, const char *want)
{
    jn_secret_t s = {0};
    int rc = jn_vault_get(f->vault, org, id, "worker-1", &s);

    if (rc != 0)
        fail_msg("get %s/%s: %s", org, id, jn_vault_errmsg(f->vault));
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.data, want, s.len);
    assert_int_equal(s.data[s.len], 0);
    jn_secret_free(&s);
    assert_null(s.data);
}

/* A failed get: the code, no plaintext, a message with `needle` and no canary. */
static void get_fails(fixture_t *f, const char *org, const char *id, int code, const char *needle)
{
    jn_secret_t s = {(uint8_t *)"x", 1};
    int rc = jn_vault_get(f->vault, org, id, "worker-1", &s);
    const char *msg = jn_vault_errmsg(f->vault);

    print_message("expected failure: %s\n", msg);
    assert_int_equal(rc, code);
    assert_null(s.data);
    assert_int_equal(s.len, 0);
    if (strstr(msg, needle) == NULL)
        fail_msg("'%s' not in '%s'", needle, msg);
    assert_null(strstr(msg, CANARY));
}

static void audit_intact(fixture_t *f)
{
    char report[512];
    int64_t bad = 0;

    if (jn_audit_verify(f->store, NULL, &bad, report, sizeof(report)) != 0)
        fail_msg("%s", report);
}

/* No byte of the canary in any file of the database (main file and WAL). */
static void db_files_clean(fixture_t *f)
{
    const char *suffixes[] = {"", "-wal"};
    char path[320];
    size_t i;

    for (i = 0; i < 2; i++) {
        FILE *fp;
        char *buf;
        long n;

        snprintf(path, sizeof(path), "%s%s", f->db, suffixes[i]);
        fp = fopen(path, "rb");
        if (fp == NULL)
            continue;
        fseek(fp, 0, SEEK_END);
        n = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
        fclose(fp);
        assert_null(memmem(buf, (size_t)n, CANARY, strlen(CANARY)));
        free(buf);
    }
}

/* ---- key providers ---- */

static int collect_ids(void *ud, const char *id)
{
    char *buf = ud;

    strcat(buf, id);
    strcat(buf, ",");
    return 0;
}

static void test_keyfile_provider(void **state)
{
    fixture_t *f = *state;
    char path[320], err[512], ids[256] = "", cur[JN_KEY_ID_MAX + 1];
    char *l2 = key_line("k2"), text[512];
    uint8_t key[JN_MASTER_KEY_LEN], *raw = NULL;
    size_t raw_len = 0;
    jn_keyprovider_t *kp;

    snprintf(path, sizeof(path), "%s/two.keys", f->dir);
    snprintf(text, sizeof(text), "# master keys\n\nold-1 %s\n%s",
             "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", l2);
    write_file(path, text, 0600);
    kp = jn_keyprovider_file_open(path, err, sizeof(err));
    assert_non_null(kp);
    assert_string_equal(jn_keyprovider_name(kp), "file");
    assert_int_equal(jn_keyprovider_current_key_id(kp, cur), 0);
    assert_string_equal(cur, "k2");
    assert_int_equal(jn_keyprovider_list_key_ids(kp, collect_ids, ids), 0);
    assert_string_equal(ids, "old-1,k2,");
    assert_int_equal(jn_keyprovider_get_master_key(kp, "old-1", key), 0);
    assert_int_equal(key[0], 0);
    assert_int_equal(key[31], 31);
    assert_int_equal(jn_keyprovider_get_master_key(kp, "k2", key), 0);
    /* "k2 <base64>\n" */
    assert_int_equal(jn_base64_decode(l2 + 3, strlen(l2) - 4, &raw, &raw_len), 0);
    assert_int_equal(raw_len, 32);
    assert_memory_equal(key, raw, 32);
    free(raw);
    assert_int_equal(jn_keyprovider_get_master_key(kp, "nope", key), 1);
    assert_non_null(strstr(jn_keyprovider_errmsg(kp), "no master key 'nope'"));

    /* Rotation: a line appended, picked up by refresh. */
    free_line(l2);
    l2 = key_line("k3");
    append_file(path, l2);
    assert_int_equal(jn_keyprovider_refresh(kp), 0);
    assert_int_equal(jn_keyprovider_current_key_id(kp, cur), 0);
    assert_string_equal(cur, "k3");
    free_line(l2);
    jn_keyprovider_destroy(kp);
    OPENSSL_cleanse(key, sizeof(key));

    /* 0400 is stricter than 0600: accepted. */
    chmod(path, 0400);
    kp = jn_keyprovider_file_open(path, err, sizeof(err));
    assert_non_null(kp);
    jn_keyprovider_destroy(kp);
}

/* Another process rotated the master key after appending a key line; this
 * vault's provider has never seen the new key and reads the file again. */
static void test_running_vault_picks_up_rotated_master_key(void **state)
{
    fixture_t *f = *state;
    char id[JN_VAULT_ID_LEN], err[512] = "", *line;
    jn_store_t *store2;
    jn_keyprovider_t *kp2;
    jn_vault_t *v2;
    jn_vault_opts_t opts = {0};

    put_ok(f, ORG, SECRET, id);
    line = key_line("k2");
    append_file(f->keyfile, line);
    free_line(line);
    store2 = jn_store_open_sqlite(f->db, err, sizeof(err));
    assert_non_null(store2);
    kp2 = open_kp(f->keyfile);
    v2 = jn_vault_create(store2, kp2, &opts, err, sizeof(err));
    assert_non_null(v2);
    assert_int_equal(jn_vault_rotate_master_key(v2, "ops", NULL), 0);
    jn_vault_destroy(v2);
    jn_keyprovider_destroy(kp2);
    jn_store_close(store2);
    get_equals(f, ORG, id, SECRET);
}

static void test_keyfile_mode_refused(void **state)
{
    fixture_t *f = *state;
    char err[512];
    const mode_t modes[] = {0644, 0640, 0604, 0660, 0606};
    size_t i;

    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        chmod(f->keyfile, modes[i]);
        assert_null(jn_keyprovider_file_open(f->keyfile, err, sizeof(err)));
        print_message("%s\n", err);
        assert_non_null(strstr(err, "refused"));
        assert_non_null(strstr(err, "0600 or stricter"));
    }
    chmod(f->keyfile, 0644);
    assert_null(jn_keyprovider_file_open(f->keyfile, err, sizeof(err)));
    assert_non_null(strstr(err, "mode 0644 gives access to group or others"));
    chmod(f->keyfile, 0600);

    /* Not a regular file. */
    assert_null(jn_keyprovider_file_open(f->dir, err, sizeof(err)));
    assert_non_null(strstr(err, "not a regular file"));
    /* Missing. */
    assert_null(jn_keyprovider_file_open("/nonexistent/master.keys", err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));
    /* Owned by another user (only root can arrange that). */
    if (geteuid() == 0) {
        assert_int_equal(chown(f->keyfile, 4242, (gid_t)-1), 0);
        assert_null(jn_keyprovider_file_open(f->keyfile, err, sizeof(err)));
        assert_non_null(strstr(err, "owned by uid 4242, not by the current user"));
        assert_int_equal(chown(f->keyfile, 0, (gid_t)-1), 0);
    }
}

static void test_keyfile_malformed(void **state)
{
    fixture_t *f = *state;
    const char *key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    char path[320], err[512], text[512];
    /* '@' stands for a valid base64 key. */
    struct {
        const char *tmpl;
        const char *needle;
    } cases[] = {
        {"@\n", "line 1: expected '<key-id> <base64 key>'"}, /* key without id */
        {"k1 @ extra\n", "line 1: expected"},
        {"k1 @\nk1 @\n", "line 2: key id 'k1' appears twice"},
        {"k|1 @\n", "line 1: the key id must be"},
        {"k1 QUJD@\n", "line 1: key 'k1' is not the base64 encoding of 32 bytes"},
        {"# only a comment @\n", "no key in it"},
    };
    size_t i;
    const char *t;
    char *o;

    snprintf(path, sizeof(path), "%s/bad.keys", f->dir);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (t = cases[i].tmpl, o = text; *t != '\0'; t++) {
            if (*t == '@') {
                strcpy(o, key);
                o += strlen(key);
            } else {
                *o++ = *t;
            }
        }
        *o = '\0';
        write_file(path, text, 0600);
        assert_null(jn_keyprovider_file_open(path, err, sizeof(err)));
        print_message("%s\n", err);
        if (strstr(err, cases[i].needle) == NULL)
            fail_msg("case %zu: '%s' not in '%s'", i, cases[i].needle, err);
        /* Key material is never echoed. */
        assert_null(strstr(err, "AAECAwQF"));
    }
}

static void test_env_provider(void **state)
{
    const char *key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    char value[256], err[512], cur[JN_KEY_ID_MAX + 1], ids[128] = "";
    uint8_t mk[JN_MASTER_KEY_LEN];
    jn_keyprovider_t *kp;

    (void)state;
    snprintf(value, sizeof(value), "prod-2025:%s", key);
    kp = jn_keyprovider_env_parse(value, err, sizeof(err));
    assert_non_null(kp);
    assert_string_equal(jn_keyprovider_name(kp), "env");
    assert_int_equal(jn_keyprovider_current_key_id(kp, cur), 0);
    assert_string_equal(cur, "prod-2025");
    assert_int_equal(jn_keyprovider_get_master_key(kp, "prod-2025", mk), 0);
    assert_int_equal(mk[5], 5);
    jn_keyprovider_destroy(kp);

    kp = jn_keyprovider_env_parse(key, err, sizeof(err));
    assert_non_null(kp);
    assert_int_equal(jn_keyprovider_current_key_id(kp, cur), 0);
    assert_string_equal(cur, "env-1");
    jn_keyprovider_destroy(kp);

    snprintf(value, sizeof(value), "a:%s, b:%s", key, key);
    kp = jn_keyprovider_env_parse(value, err, sizeof(err));
    assert_non_null(kp);
    assert_int_equal(jn_keyprovider_current_key_id(kp, cur), 0);
    assert_string_equal(cur, "b");
    assert_int_equal(jn_keyprovider_list_key_ids(kp, collect_ids, ids), 0);
    assert_string_equal(ids, "a,b,");
    jn_keyprovider_destroy(kp);

    assert_null(jn_keyprovider_env_parse("k1:QUJD", err, sizeof(err)));
    assert_non_null(strstr(err, "not the base64 encoding of 32 bytes"));
    assert_null(jn_keyprovider_env_parse("", err, sizeof(err)));

    /* Through the environment. */
    unsetenv(JN_ENV_MASTER_KEY_FILE);
    unsetenv(JN_ENV_MASTER_KEY);
    assert_null(jn_keyprovider_from_env(err, sizeof(err)));
    assert_non_null(strstr(err, "no master key configured"));
    snprintf(value, sizeof(value), "k-env:%s", key);
    setenv(JN_ENV_MASTER_KEY, value, 1);
    kp = jn_keyprovider_from_env(err, sizeof(err));
    assert_non_null(kp);
    assert_int_equal(jn_keyprovider_current_key_id(kp, cur), 0);
    assert_string_equal(cur, "k-env");
    jn_keyprovider_destroy(kp);
    setenv(JN_ENV_MASTER_KEY_FILE, "/nonexistent", 1);
    assert_null(jn_keyprovider_from_env(err, sizeof(err)));
    assert_non_null(strstr(err, "set only one"));
    unsetenv(JN_ENV_MASTER_KEY_FILE);
    unsetenv(JN_ENV_MASTER_KEY);
    OPENSSL_cleanse(mk, sizeof(mk));
}

/* The env provider drives a vault just as the file provider does. */
static void test_vault_with_env_provider(void **state)
{
    fixture_t *f = *state;
    char err[512], id[JN_VAULT_ID_LEN];
    jn_keyprovider_t *kp =
        jn_keyprovider_env_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", err, sizeof(err));
    jn_vault_t *v;
    jn_secret_t s = {0};

    assert_non_null(kp);
    v = jn_vault_create(f->store, kp, NULL, err, sizeof(err));
    assert_non_null(v);
    assert_int_equal(
        jn_vault_put(v, ORG, "okta", "api_token", SECRET, strlen(SECRET), NULL, "alice", id), 0);
    assert_int_equal(jn_vault_get(v, ORG, id, "worker", &s), 0);
    assert_memory_equal(s.data, SECRET, s.len);
    jn_secret_free(&s);
    jn_vault_destroy(v);
    jn_keyprovider_destroy(kp);
}

/* ---- round trip and listing ---- */

typedef struct {
    int n;
    char ids[8][JN_VAULT_ID_LEN];
    int64_t versions[8];
    char states[8][16];
} listing_t;

static int list_cb(void *ud, const jn_credential_info_t *info)
{
    listing_t *l = ud;
    const char *fields[] = {info->id,        info->org_id, info->provider,
                            info->auth_type, info->state,  info->metadata_json};
    size_t i;

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        assert_true(fields[i] == NULL || strstr(fields[i], CANARY) == NULL);
    if (l->n < 8) {
        snprintf(l->ids[l->n], JN_VAULT_ID_LEN, "%s", info->id);
        l->versions[l->n] = info->version;
        snprintf(l->states[l->n], 16, "%s", info->state);
    }
    l->n++;
    return 0;
}

static void test_round_trip(void **state)
{
    fixture_t *f = *state;
    char id[JN_VAULT_ID_LEN], id2[JN_VAULT_ID_LEN];
    listing_t l = {0};

    put_ok(f, ORG, SECRET, id);
    assert_int_equal(strlen(id), 32);
    get_equals(f, ORG, id, SECRET);
    /* Binary secrets with NUL bytes survive too. */
    assert_int_equal(
        jn_vault_put(f->vault, ORG, "aws", "access_key", "a\0b\0c", 5, NULL, "alice", id2), 0);
    {
        jn_secret_t s = {0};
        assert_int_equal(jn_vault_get(f->vault, ORG, id2, "w", &s), 0);
        assert_int_equal(s.len, 5);
        assert_memory_equal(s.data, "a\0b\0c", 5);
        jn_secret_free(&s);
    }
    assert_int_equal(jn_vault_list(f->vault, ORG, list_cb, &l), 0);
    assert_int_equal(l.n, 2);
    l.n = 0;
    assert_int_equal(jn_vault_list(f->vault, ORG2, list_cb, &l), 0);
    assert_int_equal(l.n, 0);
    /* One DEK for the organization, wrapped by k1. */
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE org_id = 'org-1'"), 1);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE master_key_id = 'k1'"), 1);
    audit_intact(f);
    assert_int_equal(
        db_int(f->db, "SELECT count(*) FROM audit_log WHERE action = 'credential.access'"), 2);
    assert_int_equal(db_int(f->db,
                            "SELECT count(*) FROM audit_log WHERE action = 'credential.access'"
                            " AND actor = 'worker-1'"),
                     1);
    db_files_clean(f);
}

static void test_fresh_nonce(void **state)
{
    fixture_t *f = *state;
    char id1[JN_VAULT_ID_LEN], id2[JN_VAULT_ID_LEN], sql[256];
    uint8_t *n1, *n2, *c1, *c2;
    size_t l1, l2, m1, m2;

    put_ok(f, ORG, SECRET, id1);
    put_ok(f, ORG, SECRET, id2);
    snprintf(sql, sizeof(sql), "SELECT nonce FROM credentials WHERE id = '%s'", id1);
    n1 = db_blob(f->db, sql, &l1);
    snprintf(sql, sizeof(sql), "SELECT nonce FROM credentials WHERE id = '%s'", id2);
    n2 = db_blob(f->db, sql, &l2);
    snprintf(sql, sizeof(sql), "SELECT ciphertext FROM credentials WHERE id = '%s'", id1);
    c1 = db_blob(f->db, sql, &m1);
    snprintf(sql, sizeof(sql), "SELECT ciphertext FROM credentials WHERE id = '%s'", id2);
    c2 = db_blob(f->db, sql, &m2);
    assert_int_equal(l1, 12);
    assert_int_equal(l2, 12);
    assert_int_equal(m1, strlen(SECRET) + 16);
    assert_int_equal(m1, m2);
    assert_memory_not_equal(n1, n2, 12);
    assert_memory_not_equal(c1, c2, m1);
    free(n1);
    free(n2);
    free(c1);
    free(c2);

    /* Re-encrypting the same secret as a new version of the same credential differs too. */
    assert_int_equal(
        jn_vault_rotate_credential(f->vault, ORG, id1, SECRET, strlen(SECRET), NULL, "alice", NULL),
        0);
    snprintf(sql, sizeof(sql), "SELECT count(DISTINCT ciphertext) FROM credentials WHERE id = '%s'",
             id1);
    assert_int_equal(db_int(f->db, sql), 2);
}

/* ---- tampering ---- */

static void test_swap_between_credentials(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], b[JN_VAULT_ID_LEN], sql[512], want[256];

    put_ok(f, ORG, SECRET, a);
    put_ok(f, ORG, "{\"token\":\"other\"}", b);
    /* Same organization, same DEK: only the associated data tells them apart. */
    snprintf(sql, sizeof(sql),
             "UPDATE credentials SET nonce = (SELECT nonce FROM credentials WHERE id = '%s'),"
             " ciphertext = (SELECT ciphertext FROM credentials WHERE id = '%s') WHERE id = '%s'",
             b, b, a);
    db_exec(f->db, sql);
    snprintf(want, sizeof(want),
             "credential '%s' of organization 'org-1': decryption failed: the record does not"
             " belong to this organization or was altered",
             a);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, want);
    get_equals(f, ORG, b, "{\"token\":\"other\"}");
    /* The refusal is audited. */
    assert_int_equal(
        db_int(f->db, "SELECT count(*) FROM audit_log WHERE action = 'credential.access_denied'"),
        1);
}

static void test_swap_between_orgs(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], b[JN_VAULT_ID_LEN], sql[512];

    put_ok(f, ORG, "{\"token\":\"org-one\"}", a);
    put_ok(f, ORG2, SECRET, b);
    /* Org 2's ciphertext planted in org 1's record. */
    snprintf(sql, sizeof(sql),
             "UPDATE credentials SET nonce = (SELECT nonce FROM credentials WHERE id = '%s'),"
             " ciphertext = (SELECT ciphertext FROM credentials WHERE id = '%s') WHERE id = '%s'",
             b, b, a);
    db_exec(f->db, sql);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed: the record does not belong");
    /* Org 2's record moved to org 1 whole (its DEK version exists in org 1 too). */
    snprintf(sql, sizeof(sql), "UPDATE credentials SET org_id = 'org-1' WHERE id = '%s'", b);
    db_exec(f->db, sql);
    get_fails(f, ORG, b, JN_VAULT_EDECRYPT, "decryption failed");
    /* Org 1's wrapped DEK copied over org 2's. */
    put_ok(f, "org-3", "{\"token\":\"three\"}", b);
    db_exec(f->db, "UPDATE org_keys SET nonce = (SELECT nonce FROM org_keys WHERE org_id ="
                   " 'org-1'), wrapped = (SELECT wrapped FROM org_keys WHERE org_id = 'org-1')"
                   " WHERE org_id = 'org-3'");
    get_fails(f, "org-3", b, JN_VAULT_EDECRYPT,
              "data key version 1 cannot be unwrapped with master key 'k1'");
    /* Asking org 2 for org 1's credential: not found, nothing said about org 1. */
    get_fails(f, ORG2, a, JN_VAULT_ENOTFOUND, "not found");
}

static void test_change_version(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], sql[256];

    put_ok(f, ORG, SECRET, a);
    snprintf(sql, sizeof(sql), "UPDATE credentials SET version = 7 WHERE id = '%s'", a);
    db_exec(f->db, sql);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed: the record does not belong");
}

static void test_flip_bytes(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], where[128];
    size_t ct_len = strlen(SECRET) + 16;

    put_ok(f, ORG, SECRET, a);
    snprintf(where, sizeof(where), "id = '%s'", a);
    /* Ciphertext body, tag, nonce: each flip, then undo it. */
    flip_byte(f->db, "credentials", "ciphertext", where, 3);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed");
    flip_byte(f->db, "credentials", "ciphertext", where, 3);
    get_equals(f, ORG, a, SECRET);
    flip_byte(f->db, "credentials", "ciphertext", where, ct_len - 1);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed");
    flip_byte(f->db, "credentials", "ciphertext", where, ct_len - 1);
    flip_byte(f->db, "credentials", "nonce", where, 0);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed");
    flip_byte(f->db, "credentials", "nonce", where, 0);
    get_equals(f, ORG, a, SECRET);
    /* The wrapped DEK and its nonce. */
    flip_byte(f->db, "org_keys", "wrapped", "org_id = 'org-1'", 10);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT,
              "data key version 1 cannot be unwrapped with master key 'k1'");
    flip_byte(f->db, "org_keys", "wrapped", "org_id = 'org-1'", 10);
    flip_byte(f->db, "org_keys", "nonce", "org_id = 'org-1'", 11);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "cannot be unwrapped");
    flip_byte(f->db, "org_keys", "nonce", "org_id = 'org-1'", 11);
    /* The key id or DEK version named by the wrap (the AAD binds both). */
    db_exec(f->db, "UPDATE org_keys SET dek_version = 5 WHERE org_id = 'org-1';"
                   "PRAGMA foreign_keys = OFF;");
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT,
              "names data key version 1, which this organization"
              " does not have");
    db_exec(f->db, "UPDATE org_keys SET dek_version = 1 WHERE org_id = 'org-1'");
    get_equals(f, ORG, a, SECRET);
}

static void test_truncated_record(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], sql[256];

    put_ok(f, ORG, SECRET, a);
    snprintf(sql, sizeof(sql),
             "UPDATE credentials SET ciphertext = substr(ciphertext, 1, length(ciphertext) - 1)"
             " WHERE id = '%s'",
             a);
    db_exec(f->db, sql);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed");
    snprintf(sql, sizeof(sql),
             "UPDATE credentials SET ciphertext = substr(ciphertext, 1, 10) WHERE id = '%s'", a);
    db_exec(f->db, sql);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT,
              "version 1 is truncated: 10 bytes of ciphertext, at least 16 expected");
    snprintf(sql, sizeof(sql), "UPDATE credentials SET nonce = substr(nonce, 1, 5) WHERE id = '%s'",
             a);
    db_exec(f->db, sql);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "its nonce is 5 bytes, expected 12");
    db_exec(f->db, "UPDATE org_keys SET wrapped = substr(wrapped, 1, 40) WHERE org_id = 'org-1'");
    put_ok(f, ORG2, SECRET, a);
    db_exec(f->db, "UPDATE org_keys SET wrapped = substr(wrapped, 1, 40) WHERE org_id = 'org-2'");
    get_fails(f, ORG2, a, JN_VAULT_EDECRYPT, "is corrupt: 12-byte nonce and 40-byte wrap");
}

static void test_wrong_master_key(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], *line;

    put_ok(f, ORG, SECRET, a);
    /* A new key file without the old id. */
    line = key_line("k2");
    write_file(f->keyfile, line, 0600);
    free_line(line);
    reopen_vault(f);
    get_fails(f, ORG, a, JN_VAULT_EKEY,
              "data key version 1 is wrapped by master key 'k1', which the file key provider"
              " does not have");
    /* The old id with other bytes. */
    line = key_line("k1");
    write_file(f->keyfile, line, 0600);
    free_line(line);
    reopen_vault(f);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT,
              "cannot be unwrapped with master key 'k1': the key record does not belong to this"
              " organization or was altered, or the key bytes of 'k1' changed");
}

/* ---- rotations ---- */

static int count_key_uses(void *ud, const char *id, size_t deks)
{
    char *buf = ud;
    char item[96];

    snprintf(item, sizeof(item), "%s=%zu,", id, deks);
    strcat(buf, item);
    return 0;
}

static void test_master_key_rotation(void **state)
{
    fixture_t *f = *state;
    char ids[5][2][JN_VAULT_ID_LEN], org[16], secret[64], uses[128] = "", *line;
    jn_vault_rotation_stats_t st;
    int i, j;

    for (i = 0; i < 5; i++) {
        snprintf(org, sizeof(org), "org-%d", i);
        for (j = 0; j < 2; j++) {
            snprintf(secret, sizeof(secret), "{\"token\":\"s-%d-%d\"}", i, j);
            put_ok(f, org, secret, ids[i][j]);
        }
    }
    line = key_line("k2");
    append_file(f->keyfile, line);
    free_line(line);

    /* Crash after two organizations. */
    f->stop_after = 2;
    assert_int_equal(jn_vault_rotate_master_key(f->vault, "ops", &st), JN_VAULT_EINTERRUPTED);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "run it again to resume"));
    assert_int_equal(st.done, 2);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE master_key_id = 'k2'"), 2);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE master_key_id = 'k1'"), 3);
    assert_int_equal(jn_vault_master_keys_in_use(f->vault, count_key_uses, uses), 0);
    assert_string_equal(uses, "k2=2,k1=3,");
    /* The mix decrypts (a fresh process: a new vault on the same files). */
    reopen_vault(f);
    for (i = 0; i < 5; i++) {
        snprintf(org, sizeof(org), "org-%d", i);
        for (j = 0; j < 2; j++) {
            snprintf(secret, sizeof(secret), "{\"token\":\"s-%d-%d\"}", i, j);
            get_equals(f, org, ids[i][j], secret);
        }
    }
    /* Resume. */
    f->stop_after = 0;
    assert_int_equal(jn_vault_rotate_master_key(f->vault, "ops", &st), 0);
    assert_int_equal(st.done, 3);
    assert_int_equal(st.skipped, 2);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE master_key_id = 'k2'"), 5);
    /* Idempotent. */
    assert_int_equal(jn_vault_rotate_master_key(f->vault, "ops", &st), 0);
    assert_int_equal(st.done, 0);
    assert_int_equal(st.skipped, 5);
    uses[0] = '\0';
    assert_int_equal(jn_vault_master_keys_in_use(f->vault, count_key_uses, uses), 0);
    assert_string_equal(uses, "k2=5,");

    /* k1 can now leave the key file. */
    {
        char text[256];
        size_t len;
        uint8_t *all;
        FILE *fp = fopen(f->keyfile, "r");

        assert_non_null(fp);
        len = fread(text, 1, sizeof(text) - 1, fp);
        fclose(fp);
        text[len] = '\0';
        all = (uint8_t *)strchr(text, '\n') + 1; /* drop the k1 line */
        write_file(f->keyfile, (const char *)all, 0600);
        OPENSSL_cleanse(text, sizeof(text));
    }
    reopen_vault(f);
    for (i = 0; i < 5; i++) {
        snprintf(org, sizeof(org), "org-%d", i);
        for (j = 0; j < 2; j++) {
            snprintf(secret, sizeof(secret), "{\"token\":\"s-%d-%d\"}", i, j);
            get_equals(f, org, ids[i][j], secret);
        }
    }
    assert_int_equal(
        db_int(f->db, "SELECT count(*) FROM audit_log WHERE action = 'org_key.rewrap'"), 5);
    assert_int_equal(
        db_int(f->db, "SELECT count(*) FROM audit_log WHERE action = 'master_key.rotate'"), 2);
    audit_intact(f);
}

static void test_org_key_rotation(void **state)
{
    fixture_t *f = *state;
    char ids[4][JN_VAULT_ID_LEN], other[JN_VAULT_ID_LEN], late[JN_VAULT_ID_LEN], secret[64];
    jn_vault_rotation_stats_t st;
    int i;

    for (i = 0; i < 4; i++) {
        snprintf(secret, sizeof(secret), "{\"token\":\"t-%d\"}", i);
        put_ok(f, ORG, secret, ids[i]);
    }
    put_ok(f, ORG2, SECRET, other);
    /* A pending version is re-encrypted too. */
    assert_int_equal(jn_vault_rotate_credential(f->vault, ORG, ids[0], "{\"token\":\"t-0b\"}", 16,
                                                NULL, "alice", NULL),
                     0);

    f->stop_after = 2;
    assert_int_equal(jn_vault_rotate_org_key(f->vault, ORG, "ops", &st), JN_VAULT_EINTERRUPTED);
    assert_int_equal(st.done, 2);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE org_id = 'org-1'"
                                   " AND state = 'current'"),
                     2);
    assert_int_equal(
        db_int(f->db,
               "SELECT count(*) FROM credentials WHERE org_id = 'org-1' AND dek_version = 2"),
        2);
    /* Everything decrypts mid-way; a new credential goes under the new DEK. */
    reopen_vault(f);
    for (i = 0; i < 4; i++) {
        snprintf(secret, sizeof(secret), "{\"token\":\"t-%d\"}", i);
        get_equals(f, ORG, ids[i], secret);
    }
    put_ok(f, ORG, "{\"token\":\"late\"}", late);
    {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT dek_version FROM credentials WHERE id = '%s'", late);
        assert_int_equal(db_int(f->db, sql), 2);
    }
    /* Resume: no third DEK, the rest is moved and DEK 1 retired. */
    f->stop_after = 0;
    f->steps = 0;
    assert_int_equal(jn_vault_rotate_org_key(f->vault, ORG, "ops", &st), 0);
    assert_int_equal(st.done, 3);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE org_id = 'org-1'"), 2);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM credentials WHERE org_id = 'org-1'"
                                   " AND dek_version = 1"),
                     0);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE org_id = 'org-1'"
                                   " AND dek_version = 1 AND state = 'retired'"
                                   " AND length(wrapped) = 0"),
                     1);
    for (i = 0; i < 4; i++) {
        snprintf(secret, sizeof(secret), "{\"token\":\"t-%d\"}", i);
        get_equals(f, ORG, ids[i], secret);
    }
    get_equals(f, ORG, late, "{\"token\":\"late\"}");
    {
        jn_secret_t s = {0};
        assert_int_equal(jn_vault_get_version(f->vault, ORG, ids[0], 2, "w", &s, NULL), 0);
        assert_memory_equal(s.data, "{\"token\":\"t-0b\"}", 16);
        jn_secret_free(&s);
    }
    /* The other organization is untouched. */
    get_equals(f, ORG2, other, SECRET);
    assert_int_equal(db_int(f->db, "SELECT max(dek_version) FROM org_keys WHERE org_id = 'org-2'"),
                     1);
    /* A second rotation starts a new one. */
    assert_int_equal(jn_vault_rotate_org_key(f->vault, ORG, "ops", &st), 0);
    assert_int_equal(st.done, 6);
    assert_int_equal(db_int(f->db, "SELECT dek_version FROM org_keys WHERE org_id = 'org-1'"
                                   " AND state = 'current'"),
                     3);
    get_equals(f, ORG, ids[3], "{\"token\":\"t-3\"}");
    /* No DEK: nothing to rotate. */
    assert_int_equal(jn_vault_rotate_org_key(f->vault, "org-9", "ops", &st), JN_VAULT_ENOTFOUND);
    audit_intact(f);
}

/* A tampered credential stops an org-key rotation; the old DEK stays live. */
static void test_org_key_rotation_stops_on_tamper(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], b[JN_VAULT_ID_LEN], where[128];

    put_ok(f, ORG, SECRET, a);
    put_ok(f, ORG, "{\"token\":\"b\"}", b);
    snprintf(where, sizeof(where), "id = '%s'", a);
    flip_byte(f->db, "credentials", "ciphertext", where, 0);
    assert_int_equal(jn_vault_rotate_org_key(f->vault, ORG, "ops", NULL), JN_VAULT_EDECRYPT);
    assert_null(strstr(jn_vault_errmsg(f->vault), CANARY));
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM org_keys WHERE org_id = 'org-1'"
                                   " AND state = 'current'"),
                     2);
    get_equals(f, ORG, b, "{\"token\":\"b\"}");
}

/* ---- credential versions ---- */

static void test_credential_rotation(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN];
    int64_t version = 0;
    listing_t l = {0};
    jn_secret_t s = {0};

    put_ok(f, ORG, "{\"v\":1}", a);
    assert_int_equal(
        jn_vault_rotate_credential(f->vault, ORG, a, "{\"v\":2}", 7, NULL, "alice", &version), 0);
    assert_int_equal(version, 2);
    /* The current one stays in use; the pending one is reachable for the test. */
    get_equals(f, ORG, a, "{\"v\":1}");
    assert_int_equal(jn_vault_get_version(f->vault, ORG, a, 2, "tester", &s, &version), 0);
    assert_int_equal(version, 2);
    assert_memory_equal(s.data, "{\"v\":2}", 7);
    jn_secret_free(&s);
    /* One pending at a time. */
    assert_int_equal(
        jn_vault_rotate_credential(f->vault, ORG, a, "{\"v\":3}", 7, NULL, "alice", NULL),
        JN_VAULT_ESTATE);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "version 2 is already pending"));
    /* Only a pending version can be promoted. */
    assert_int_equal(jn_vault_promote(f->vault, ORG, a, 1, "alice"), JN_VAULT_ESTATE);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "version 1 is current, not pending"));
    assert_int_equal(jn_vault_promote(f->vault, ORG, a, 9, "alice"), JN_VAULT_ENOTFOUND);

    assert_int_equal(jn_vault_audit(f->vault, ORG, a, "tester", "connection.test",
                                    "{\"version\":2,\"result\":\"passed\"}"),
                     0);
    assert_int_equal(jn_vault_promote(f->vault, ORG, a, 2, "alice"), 0);
    get_equals(f, ORG, a, "{\"v\":2}");
    assert_int_equal(jn_vault_list(f->vault, ORG, list_cb, &l), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.versions[0], 1);
    assert_string_equal(l.states[0], "previous");
    assert_int_equal(l.versions[1], 2);
    assert_string_equal(l.states[1], "current");

    /* Discard. */
    assert_int_equal(
        jn_vault_rotate_credential(f->vault, ORG, a, "{\"v\":3}", 7, NULL, "alice", &version), 0);
    assert_int_equal(version, 3);
    assert_int_equal(jn_vault_audit(f->vault, ORG, a, "tester", "connection.test",
                                    "{\"version\":3,\"result\":\"failed\"}"),
                     0);
    assert_int_equal(jn_vault_discard_pending(f->vault, ORG, a, "alice"), 0);
    assert_int_equal(jn_vault_discard_pending(f->vault, ORG, a, "alice"), JN_VAULT_ENOTFOUND);
    get_equals(f, ORG, a, "{\"v\":2}");
    assert_int_equal(jn_vault_get_version(f->vault, ORG, a, 3, "tester", &s, NULL),
                     JN_VAULT_ENOTFOUND);

    /* Promoting again keeps one previous version only (v1 goes). The discarded
     * number is taken again (documented in vault.h). */
    assert_int_equal(jn_vault_rotate_credential(f->vault, ORG, a, "{\"v\":4}", 7,
                                                "{\"account\":\"new\"}", "alice", &version),
                     0);
    assert_int_equal(version, 3);
    assert_int_equal(jn_vault_promote(f->vault, ORG, a, 3, "alice"), 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(jn_vault_list(f->vault, ORG, list_cb, &l), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.versions[0], 2);
    assert_string_equal(l.states[0], "previous");
    assert_int_equal(l.versions[1], 3);
    get_equals(f, ORG, a, "{\"v\":4}");

    /* Delete removes every version. */
    assert_int_equal(jn_vault_delete(f->vault, ORG, a, "alice"), 0);
    get_fails(f, ORG, a, JN_VAULT_ENOTFOUND, "not found");
    assert_int_equal(jn_vault_delete(f->vault, ORG, a, "alice"), JN_VAULT_ENOTFOUND);
    assert_int_equal(
        jn_vault_rotate_credential(f->vault, ORG, a, "{\"v\":5}", 7, NULL, "alice", NULL),
        JN_VAULT_ENOTFOUND);
    assert_int_equal(
        db_int(f->db, "SELECT count(*) FROM audit_log WHERE action = 'connection.test'"), 2);
    assert_int_equal(
        db_int(f->db, "SELECT count(*) FROM audit_log WHERE action = 'credential.promote'"), 2);
    assert_int_equal(
        db_int(f->db, "SELECT count(*) FROM audit_log WHERE action = 'credential.discard'"), 1);
    audit_intact(f);
}

/* ---- cache ---- */

static void test_cache(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], b[JN_VAULT_ID_LEN], c[JN_VAULT_ID_LEN], where[128];
    jn_vault_cache_stats_t st;

    jn_vault_destroy(f->vault);
    f->vault = new_vault(f, 1000, 2);
    put_ok(f, ORG, SECRET, a);
    put_ok(f, ORG, "{\"token\":\"b\"}", b);
    put_ok(f, ORG, "{\"token\":\"c\"}", c);

    get_equals(f, ORG, a, SECRET);
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.entries, 1);
    get_equals(f, ORG, a, SECRET);
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.hits, 1);

    /* A hit skips the decryption: a tampered record is not even read for it. */
    snprintf(where, sizeof(where), "id = '%s'", a);
    flip_byte(f->db, "credentials", "ciphertext", where, 0);
    f->now += 999;
    get_equals(f, ORG, a, SECRET);
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.hits, 2);
    /* At the TTL the entry is gone (wiped) and the record is read again. */
    f->now += 1;
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed");
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.entries, 0);
    flip_byte(f->db, "credentials", "ciphertext", where, 0);

    /* Bounded: a third entry evicts the least recently used. */
    get_equals(f, ORG, a, SECRET);              /* miss */
    get_equals(f, ORG, b, "{\"token\":\"b\"}"); /* miss */
    get_equals(f, ORG, a, SECRET);              /* hit: b is now the LRU */
    get_equals(f, ORG, c, "{\"token\":\"c\"}"); /* miss, evicts b */
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.hits, 3);
    get_equals(f, ORG, a, SECRET);              /* still cached */
    get_equals(f, ORG, b, "{\"token\":\"b\"}"); /* was evicted */
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.hits, 4);
    assert_int_equal(st.misses, 6);

    /* Every access is audited, hits included. */
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM audit_log WHERE action ="
                                   " 'credential.access' AND detail_json LIKE '%\"hit\"%'"),
                     4);

    /* Delete drops the cached copy at once: no stale read. */
    assert_int_equal(jn_vault_delete(f->vault, ORG, a, "alice"), 0);
    get_fails(f, ORG, a, JN_VAULT_ENOTFOUND, "not found");
    /* Promotion: the new current version is served, not the cached old one. */
    get_equals(f, ORG, c, "{\"token\":\"c\"}");
    assert_int_equal(
        jn_vault_rotate_credential(f->vault, ORG, c, "{\"token\":\"c2\"}", 14, NULL, "alice", NULL),
        0);
    assert_int_equal(jn_vault_promote(f->vault, ORG, c, 2, "alice"), 0);
    get_equals(f, ORG, c, "{\"token\":\"c2\"}");

    /* Sweep wipes expired entries without an access. */
    jn_vault_cache_stats(f->vault, &st);
    assert_true(st.entries > 0);
    f->now += 5000;
    assert_int_equal(jn_vault_cache_sweep(f->vault), st.entries);
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.entries, 0);
    get_equals(f, ORG, c, "{\"token\":\"c2\"}");
    jn_vault_cache_clear(f->vault);
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.entries, 0);
}

static void test_cache_disabled(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN];
    jn_vault_cache_stats_t st;

    put_ok(f, ORG, SECRET, a);
    get_equals(f, ORG, a, SECRET);
    get_equals(f, ORG, a, SECRET);
    jn_vault_cache_stats(f->vault, &st);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.entries, 0);
}

static void test_secmem(void **state)
{
    uint8_t *p = jn_secmem_alloc(100);
    uint8_t *z = jn_secmem_alloc(0);
    size_t i;

    (void)state;
    assert_non_null(p);
    assert_non_null(z);
    for (i = 0; i < 100; i++)
        assert_int_equal(p[i], 0);
    memset(p, 0xab, 100);
    print_message("secmem locked: %d\n", jn_secmem_is_locked(p));
    jn_secmem_free(p);
    jn_secmem_free(z);
    jn_secmem_free(NULL);
}

/* ---- no leaks ---- */

static void test_no_secret_leaks(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], b[JN_VAULT_ID_LEN], sql[256], meta[256];
    jn_secret_t s = {0};
    listing_t l = {0};
    int rc;

    put_ok(f, ORG, SECRET, a);
    put_ok(f, ORG2, SECRET, b);
    /* Metadata carrying the secret is refused, without echoing it. */
    snprintf(meta, sizeof(meta), "{\"copy\":%s}", SECRET);
    rc = jn_vault_put(f->vault, ORG, "github", "api_key", SECRET, strlen(SECRET), meta, "alice",
                      a + 0 == a ? b : a);
    assert_int_equal(rc, JN_VAULT_EINVAL);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "contains the secret"));
    assert_null(strstr(jn_vault_errmsg(f->vault), CANARY));
    /* A secret pasted into an id field is not echoed either. */
    rc = jn_vault_get(f->vault, ORG, CANARY "|x", "w", &s);
    assert_int_equal(rc, JN_VAULT_EINVAL);
    assert_null(strstr(jn_vault_errmsg(f->vault), CANARY));
    rc = jn_vault_put(f->vault, ORG, CANARY "=", "api_key", SECRET, strlen(SECRET), NULL, "a", b);
    assert_int_equal(rc, JN_VAULT_EINVAL);
    assert_null(strstr(jn_vault_errmsg(f->vault), CANARY));
    /* Errors of every other kind. */
    snprintf(sql, sizeof(sql), "UPDATE credentials SET version = 3 WHERE id = '%s'", a);
    db_exec(f->db, sql);
    get_fails(f, ORG, a, JN_VAULT_EDECRYPT, "decryption failed");
    get_fails(f, ORG2, a, JN_VAULT_ENOTFOUND, "not found");
    assert_int_equal(jn_vault_rotate_org_key(f->vault, ORG, "ops", NULL), JN_VAULT_EDECRYPT);
    assert_null(strstr(jn_vault_errmsg(f->vault), CANARY));
    /* Listing: metadata only (list_cb checks every field). */
    assert_int_equal(jn_vault_list(f->vault, ORG2, list_cb, &l), 0);
    assert_int_equal(l.n, 1);
    /* Nothing in the audit log, the tables or the files. */
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM audit_log WHERE instr(actor || action"
                                   " || coalesce(org_id, '') || coalesce(credential_id, '') ||"
                                   " coalesce(detail_json, ''), '" CANARY "') > 0"),
                     0);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM credentials WHERE"
                                   " instr(CAST(ciphertext AS TEXT), '" CANARY "') > 0"
                                   " OR instr(coalesce(metadata_json, ''), '" CANARY "') > 0"),
                     0);
    db_files_clean(f);
    audit_intact(f);
}

static void test_invalid_arguments(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN];
    jn_secret_t s = {0};

    assert_int_equal(
        jn_vault_put(f->vault, "org|cred=x", "github", "api_key", "s3cret-x", 8, NULL, "a", a),
        JN_VAULT_EINVAL);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "invalid organization id"));
    assert_int_equal(jn_vault_put(f->vault, ORG, "github", "api_key", "", 0, NULL, "a", a),
                     JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_put(f->vault, ORG, "github", "api_key", "s3cret-x", 8, "[1]", "a", a),
                     JN_VAULT_EINVAL);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "JSON object"));
    assert_int_equal(jn_vault_put(f->vault, ORG, "github", "api_key", "s3cret-x", 8, NULL, "", a),
                     JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_get(f->vault, ORG, "abc", "bad\nrequester", &s), JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_audit(f->vault, ORG, NULL, "tester", "bad action", "{}"),
                     JN_VAULT_EINVAL);
}

/* An access that cannot be audited does not happen. */
static void test_access_fails_closed(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN];
    jn_secret_t s = {0};

    put_ok(f, ORG, SECRET, a);
    db_exec(f->db, "CREATE TRIGGER no_access BEFORE INSERT ON audit_log"
                   " WHEN NEW.action = 'credential.access'"
                   " BEGIN SELECT RAISE(ABORT, 'disk full'); END;");
    assert_int_equal(jn_vault_get(f->vault, ORG, a, "worker", &s), JN_VAULT_ERROR);
    assert_null(s.data);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "access refused because it cannot be"
                                                      " audited"));
    db_exec(f->db, "DROP TRIGGER no_access");
    get_equals(f, ORG, a, SECRET);
    /* A failed audit entry rolls back the change it belongs to. */
    db_exec(f->db, "CREATE TRIGGER no_delete BEFORE INSERT ON audit_log"
                   " WHEN NEW.action = 'credential.delete'"
                   " BEGIN SELECT RAISE(ABORT, 'disk full'); END;");
    assert_int_equal(jn_vault_delete(f->vault, ORG, a, "alice"), JN_VAULT_ERROR);
    get_equals(f, ORG, a, SECRET);
    audit_intact(f);
}

/* A vault needs a store and a key provider. */
static void test_create_checks_arguments(void **state)
{
    fixture_t *f = *state;
    char err[256];

    assert_null(jn_vault_create(NULL, f->kp, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no store"));
    assert_null(jn_vault_create(f->store, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no key provider"));
}

/* ---- a delegating (KMS-style) provider ----
 * The fake "KMS" never releases its key: wrap returns an opaque blob and
 * unwrap checks it against the associated data, as a real KMS would with an
 * encryption context. Blob = dek XOR pad || HMAC(key, aad || masked dek). */

typedef struct {
    jn_keyprovider_t base;
    uint8_t key[32];
    int calls;
} fake_kms_t;

static int kms_blob(fake_kms_t *k, const uint8_t *aad, size_t aad_len, const uint8_t in[32],
                    uint8_t out[64])
{
    uint8_t pad[32], *buf = malloc(aad_len + 32);
    size_t i;

    assert_non_null(buf);
    assert_int_equal(jn_hmac_sha256(k->key, 32, aad, aad_len, pad), 0);
    for (i = 0; i < 32; i++)
        out[i] = in[i] ^ pad[i];
    memcpy(buf, aad, aad_len);
    memcpy(buf + aad_len, out, 32);
    assert_int_equal(jn_hmac_sha256(k->key, 32, buf, aad_len + 32, out + 32), 0);
    free(buf);
    return 0;
}

static int kms_current(jn_keyprovider_t *kp, char id[JN_KEY_ID_MAX + 1])
{
    (void)kp;
    strcpy(id, "kms-key-1");
    return 0;
}

static int kms_list(jn_keyprovider_t *kp, jn_key_id_fn fn, void *ud)
{
    (void)kp;
    fn(ud, "kms-key-1");
    return 0;
}

static int kms_wrap(jn_keyprovider_t *kp, const char *id, const uint8_t *aad, size_t aad_len,
                    const uint8_t dek[32], uint8_t **out, size_t *out_len)
{
    fake_kms_t *k = (fake_kms_t *)kp;

    assert_string_equal(id, "kms-key-1");
    k->calls++;
    *out = malloc(64);
    *out_len = 64;
    return kms_blob(k, aad, aad_len, dek, *out);
}

static int kms_unwrap(jn_keyprovider_t *kp, const char *id, const uint8_t *aad, size_t aad_len,
                      const uint8_t *blob, size_t blob_len, uint8_t dek[32])
{
    fake_kms_t *k = (fake_kms_t *)kp;
    uint8_t pad[32], check[64];
    size_t i;

    k->calls++;
    if (strcmp(id, "kms-key-1") != 0)
        return 1;
    if (blob_len != 64)
        goto bad;
    assert_int_equal(jn_hmac_sha256(k->key, 32, aad, aad_len, pad), 0);
    for (i = 0; i < 32; i++)
        dek[i] = blob[i] ^ pad[i];
    kms_blob(k, aad, aad_len, dek, check);
    if (!jn_ct_equal(check + 32, blob + 32, 32))
        goto bad;
    return 0;

bad:
    snprintf(kp->errmsg, sizeof(kp->errmsg), "the KMS refused the blob (InvalidCiphertext)");
    return -1;
}

static void kms_destroy(jn_keyprovider_t *kp)
{
    free(kp);
}

static const jn_keyprovider_ops_t fake_kms_ops = {
    .name = "fake-kms",
    .current_key_id = kms_current,
    .list_key_ids = kms_list,
    .wrap = kms_wrap,
    .unwrap = kms_unwrap,
    .destroy = kms_destroy,
};

static void test_delegating_provider(void **state)
{
    fixture_t *f = *state;
    fake_kms_t *kms = calloc(1, sizeof(*kms));
    char err[256], a[JN_VAULT_ID_LEN], b[JN_VAULT_ID_LEN];
    jn_vault_t *v;
    jn_secret_t s = {0};

    assert_non_null(kms);
    kms->base.ops = &fake_kms_ops;
    memset(kms->key, 7, 32);
    v = jn_vault_create(f->store, &kms->base, NULL, err, sizeof(err));
    assert_non_null(v);
    assert_int_equal(
        jn_vault_put(v, ORG, "gcp", "service_account", SECRET, strlen(SECRET), NULL, "alice", a),
        0);
    assert_int_equal(
        jn_vault_put(v, ORG2, "gcp", "service_account", "{\"k\":2}", 7, NULL, "alice", b), 0);
    assert_int_equal(jn_vault_get(v, ORG, a, "worker", &s), 0);
    assert_memory_equal(s.data, SECRET, s.len);
    jn_secret_free(&s);
    assert_int_equal(kms->calls, 3);
    assert_int_equal(db_int(f->db, "SELECT length(nonce) FROM org_keys WHERE org_id = 'org-1'"), 0);
    /* The KMS binds the blob to its organization too. */
    db_exec(f->db, "UPDATE org_keys SET wrapped = (SELECT wrapped FROM org_keys WHERE org_id ="
                   " 'org-2') WHERE org_id = 'org-1'");
    assert_int_equal(jn_vault_get(v, ORG, a, "worker", &s), JN_VAULT_EDECRYPT);
    assert_non_null(strstr(jn_vault_errmsg(v), "InvalidCiphertext"));
    jn_vault_destroy(v);
    jn_keyprovider_destroy(&kms->base);
}

/* ---- re-authorization marks ---- */

typedef struct {
    int64_t version[4], since[4];
    char reason[4][JN_VAULT_REAUTH_REASON_MAX];
    int n;
} reauth_listing_t;

static int reauth_list_cb(void *ud, const jn_credential_info_t *info)
{
    reauth_listing_t *l = ud;

    if (l->n < 4) {
        l->version[l->n] = info->version;
        l->since[l->n] = info->reauth_ms;
        snprintf(l->reason[l->n], sizeof(l->reason[0]), "%s",
                 info->reauth_reason ? info->reauth_reason : "(none)");
    }
    l->n++;
    return 0;
}

static void test_reauth_mark(void **state)
{
    fixture_t *f = *state;
    char a[JN_VAULT_ID_LEN], b[JN_VAULT_ID_LEN], err[512] = "";
    jn_vault_reauth_t r;
    reauth_listing_t l = {0};
    jn_store_t *store2;
    jn_vault_t *other;
    int64_t version = 0;

    put_ok(f, ORG, "{\"v\":1}", a);
    put_ok(f, ORG, "{\"v\":1}", b);
    /* A second process: its own store connection and vault. */
    store2 = jn_store_open_sqlite(f->db, err, sizeof(err));
    assert_non_null(store2);
    other = jn_vault_create(store2, f->kp, NULL, err, sizeof(err));
    assert_non_null(other);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, a, 0, &r), 0);

    /* The reason keeps printable ASCII only; quotes and control characters go. */
    assert_int_equal(jn_vault_mark_reauth(f->vault, ORG, a, 0, "token-refresh",
                                          "HTTP 400 (\"grant\" request\n is invalid)"),
                     0);
    assert_int_equal(jn_vault_reauth_needed(f->vault, ORG, a, 0, &r), 1);
    assert_int_equal(r.version, 1);
    assert_true(r.since_ms > 0);
    assert_string_equal(r.reason, "HTTP 400 (?grant? request? is invalid)");
    /* The other process sees it (read from the shared audit log) ... */
    assert_int_equal(jn_vault_reauth_needed(other, ORG, a, 1, &r), 1);
    assert_int_equal(r.version, 1);
    /* ... the credential next to it is not marked, nor another organization's. */
    assert_int_equal(jn_vault_reauth_needed(other, ORG, b, 0, NULL), 0);
    assert_int_equal(jn_vault_reauth_needed(other, ORG2, a, 0, NULL), JN_VAULT_ENOTFOUND);
    /* Marking again appends nothing. */
    int64_t seq_before = 0, seq_after = 0;
    char hash[65];
    jn_store_audit_last(f->store, &seq_before, hash);
    assert_int_equal(jn_vault_mark_reauth(other, ORG, a, 1, "token-refresh", "again"), 0);
    jn_store_audit_last(f->store, &seq_after, hash);
    assert_int_equal(seq_after, seq_before);

    /* listings show it on the marked version */
    assert_int_equal(jn_vault_list(other, ORG, reauth_list_cb, &l), 0);
    assert_int_equal(l.n, 2);
    for (int i = 0; i < 2; i++) {
        if (l.since[i] != 0)
            assert_string_equal(l.reason[i], "HTTP 400 (?grant? request? is invalid)");
        else
            assert_string_equal(l.reason[i], "(none)");
    }
    assert_true((l.since[0] != 0) != (l.since[1] != 0));

    /* It survives a restart: a vault opened afresh reads it back. */
    jn_vault_destroy(other);
    jn_store_close(store2);
    store2 = jn_store_open_sqlite(f->db, err, sizeof(err));
    assert_non_null(store2);
    other = jn_vault_create(store2, f->kp, NULL, err, sizeof(err));
    assert_non_null(other);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, a, 0, NULL), 1);

    /* A new version clears it: pending does not (the current one is still
     * the refused one), promoted does. */
    assert_int_equal(
        jn_vault_rotate_credential(f->vault, ORG, a, "{\"v\":2}", 7, NULL, "alice", &version), 0);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, a, 0, NULL), 1);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, a, 2, NULL), 0);
    assert_int_equal(jn_vault_promote(f->vault, ORG, a, 2, "alice"), 0);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, a, 0, NULL), 0);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, a, 1, NULL), 1); /* the previous one */

    /* Deleting the credential drops its marks. */
    assert_int_equal(jn_vault_mark_reauth(f->vault, ORG, b, 0, "token-refresh", NULL), 0);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, b, 0, &r), 1);
    assert_string_equal(r.reason, "");
    assert_int_equal(jn_vault_delete(f->vault, ORG, b, "alice"), 0);
    assert_int_equal(jn_vault_reauth_needed(other, ORG, b, 0, NULL), JN_VAULT_ENOTFOUND);

    /* Invalid arguments are refused precisely. */
    assert_int_equal(jn_vault_mark_reauth(f->vault, ORG, a, 7, "token-refresh", NULL),
                     JN_VAULT_ENOTFOUND);
    assert_non_null(strstr(jn_vault_errmsg(f->vault), "version 7 not found"));
    assert_int_equal(jn_vault_mark_reauth(f->vault, ORG, a, -1, "token-refresh", NULL),
                     JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_mark_reauth(f->vault, "bad|org", a, 0, "token-refresh", NULL),
                     JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_mark_reauth(f->vault, ORG, a, 0, "", NULL), JN_VAULT_EINVAL);
    assert_int_equal(jn_vault_reauth_needed(f->vault, ORG, "", 0, NULL), JN_VAULT_EINVAL);

    /* The marks are ordinary audit entries: the chain still verifies. */
    int64_t bad = 0;
    char report[512];
    assert_int_equal(jn_audit_verify(f->store, NULL, &bad, report, sizeof(report)), 0);
    jn_vault_destroy(other);
    jn_store_close(store2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keyfile_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyfile_mode_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_running_vault_picks_up_rotated_master_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keyfile_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault_with_env_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_nonce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_between_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_between_orgs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_master_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_master_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_org_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_org_key_rotation_stops_on_tamper, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credential_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reauth_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secmem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_leaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_checks_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delegating_provider, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
