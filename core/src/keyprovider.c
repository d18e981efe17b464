/* Key providers: master keys from a key file or from the environment. */
#include "junction/error.h"
#include "junction/keyprovider.h"
#include "junction/crypto.h"
#include "junction/secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* A key file is a handful of lines; anything larger is not one. */
#define KEYFILE_MAX (64 * 1024)
#define KEYS_MAX 1024

typedef struct {
    char id[JN_KEY_ID_MAX + 1];
    uint8_t key[JN_MASTER_KEY_LEN];
} key_entry_t;

/* The keys live in locked, non-dumpable memory (see secmem.h). */
typedef struct {
    key_entry_t *keys;
    size_t n;
} keyset_t;

typedef struct {
    jn_keyprovider_t base; /* first: the operations cast between the two */
    keyset_t set;
    char *path; /* key file; NULL for the environment provider */
} local_provider_t;

static const jn_keyprovider_ops_t file_ops;
static const jn_keyprovider_ops_t env_ops;

int jn_key_id_valid(const char *id)
{
    size_t i, n;

    if (id == NULL)
        return 0;
    n = strlen(id);
    if (n == 0 || n > JN_KEY_ID_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static void keyset_free(keyset_t *set)
{
    jn_secmem_free(set->keys); /* wipes */
    set->keys = NULL;
    set->n = 0;
}

/* Decodes one key into the next slot. `where` names the source in errors;
 * neither the key nor the id token is ever echoed (a misplaced key would be). */
static int keyset_add(keyset_t *set, const char *id, size_t id_len, const char *b64, size_t b64_len,
                      const char *where, char *err, size_t errlen)
{
    key_entry_t *e = &set->keys[set->n];
    uint8_t *raw = NULL;
    size_t raw_len = 0, i;

    if (id_len == 0 || id_len > JN_KEY_ID_MAX) {
        jn_errorf(err, errlen, "%s: the key id must be 1 to %d characters of [A-Za-z0-9._-]", where,
                  JN_KEY_ID_MAX);
        return -1;
    }
    memcpy(e->id, id, id_len);
    e->id[id_len] = '\0';
    if (!jn_key_id_valid(e->id)) {
        jn_errorf(err, errlen, "%s: the key id must be 1 to %d characters of [A-Za-z0-9._-]", where,
                  JN_KEY_ID_MAX);
        goto fail;
    }
    for (i = 0; i < set->n; i++) {
        if (strcmp(set->keys[i].id, e->id) == 0) {
            jn_errorf(err, errlen, "%s: key id '%s' appears twice", where, e->id);
            goto fail;
        }
    }
    if (jn_base64_decode(b64, b64_len, &raw, &raw_len) != 0 || raw_len != JN_MASTER_KEY_LEN) {
        jn_errorf(err, errlen, "%s: key '%s' is not the base64 encoding of %d bytes", where, e->id,
                  JN_MASTER_KEY_LEN);
        goto fail;
    }
    memcpy(e->key, raw, JN_MASTER_KEY_LEN);
    OPENSSL_cleanse(raw, raw_len);
    free(raw);
    set->n++;
    return 0;

fail:
    if (raw != NULL) {
        OPENSSL_cleanse(raw, raw_len);
        free(raw);
    }
    OPENSSL_cleanse(e, sizeof(*e));
    return -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Parses "<id> <base64>" lines. */
static int parse_keyfile(const char *text, size_t len, const char *path, keyset_t *out, char *err,
                         size_t errlen)
{
    const char *p = text, *end = text + len;
    char where[4200];
    size_t lines = 1, lineno = 0, i;

    for (i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (lines > KEYS_MAX) {
        jn_errorf(err, errlen, "master key file '%s': more than %d lines", path, KEYS_MAX);
        return -1;
    }
    out->n = 0;
    out->keys = jn_secmem_alloc(lines * sizeof(key_entry_t));
    if (out->keys == NULL) {
        jn_errorf(err, errlen, "master key file '%s': out of memory", path);
        return -1;
    }
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *id, *id_end, *key, *key_end;

        if (eol == NULL)
            eol = end;
        lineno++;
        while (p < eol && is_space(*p))
            p++;
        if (p == eol || *p == '#') {
            p = eol + (eol < end);
            continue;
        }
        id = p;
        while (p < eol && !is_space(*p))
            p++;
        id_end = p;
        while (p < eol && is_space(*p))
            p++;
        key = p;
        while (p < eol && !is_space(*p))
            p++;
        key_end = p;
        while (p < eol && is_space(*p))
            p++;
        snprintf(where, sizeof(where), "master key file '%s' line %zu", path, lineno);
        if (key == key_end || p != eol) {
            jn_errorf(err, errlen, "%s: expected '<key-id> <base64 key>'", where);
            goto fail;
        }
        if (keyset_add(out, id, (size_t)(id_end - id), key, (size_t)(key_end - key), where, err,
                       errlen) != 0)
            goto fail;
        p = eol + (eol < end);
    }
    if (out->n == 0) {
        jn_errorf(err, errlen,
                  "master key file '%s': no key in it (expected '<key-id> <base64 key>')", path);
        goto fail;
    }
    return 0;

fail:
    keyset_free(out);
    return -1;
}

/* Reads the key file after checking that only its owner, the current user,
 * can read it: a key readable by other local users is a leaked key. The
 * checks use fstat on the opened descriptor, so a swap of the path between
 * check and read cannot slip another file in; O_NONBLOCK keeps a FIFO from
 * hanging the open. Symbolic links are followed (orchestrators mount secrets
 * through them); the file they lead to is what gets checked. */
static int load_keyfile(const char *path, keyset_t *out, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    ssize_t n;
    int fd, rc = -1;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        jn_errorf(err, errlen, "master key file '%s': cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        jn_errorf(err, errlen, "master key file '%s': cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        jn_errorf(err, errlen, "master key file '%s': refused: not a regular file", path);
        goto done;
    }
    if (st.st_uid != geteuid()) {
        jn_errorf(err, errlen,
                  "master key file '%s': refused: owned by uid %lu, not by the current user"
                  " (uid %lu)",
                  path, (unsigned long)st.st_uid, (unsigned long)geteuid());
        goto done;
    }
    if ((st.st_mode & 077) != 0) {
        jn_errorf(err, errlen,
                  "master key file '%s': refused: mode %04o gives access to group or others;"
                  " it must be 0600 or stricter (chmod 600 '%s')",
                  path, (unsigned)(st.st_mode & 07777), path);
        goto done;
    }
    if (st.st_size > KEYFILE_MAX) {
        jn_errorf(err, errlen, "master key file '%s': refused: larger than %d bytes", path,
                  KEYFILE_MAX);
        goto done;
    }
    buf = jn_secmem_alloc(KEYFILE_MAX + 1);
    if (buf == NULL) {
        jn_errorf(err, errlen, "master key file '%s': out of memory", path);
        goto done;
    }
    for (;;) {
        n = read(fd, buf + len, KEYFILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            jn_errorf(err, errlen, "master key file '%s': cannot read: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > KEYFILE_MAX) {
            jn_errorf(err, errlen, "master key file '%s': refused: larger than %d bytes", path,
                      KEYFILE_MAX);
            goto done;
        }
    }
    rc = parse_keyfile(buf, len, path, out, err, errlen);

done:
    jn_secmem_free(buf); /* wipes */
    close(fd);
    return rc;
}

static local_provider_t *to_local(jn_keyprovider_t *kp)
{
    return (local_provider_t *)kp;
}

static int local_get_master_key(jn_keyprovider_t *kp, const char *key_id,
                                uint8_t key[JN_MASTER_KEY_LEN])
{
    local_provider_t *lp = to_local(kp);
    size_t i;

    for (i = 0; key_id != NULL && i < lp->set.n; i++) {
        if (strcmp(lp->set.keys[i].id, key_id) == 0) {
            memcpy(key, lp->set.keys[i].key, JN_MASTER_KEY_LEN);
            return 0;
        }
    }
    snprintf(kp->errmsg, sizeof(kp->errmsg), "the %s key provider has no master key '%.64s'",
             kp->ops->name, key_id != NULL ? key_id : "(null)");
    return 1;
}

static int local_current_key_id(jn_keyprovider_t *kp, char key_id[JN_KEY_ID_MAX + 1])
{
    local_provider_t *lp = to_local(kp);

    if (lp->set.n == 0) {
        snprintf(kp->errmsg, sizeof(kp->errmsg), "the %s key provider has no key", kp->ops->name);
        return -1;
    }
    memcpy(key_id, lp->set.keys[lp->set.n - 1].id, JN_KEY_ID_MAX + 1);
    return 0;
}

static int local_list_key_ids(jn_keyprovider_t *kp, jn_key_id_fn fn, void *ud)
{
    local_provider_t *lp = to_local(kp);
    size_t i;

    for (i = 0; i < lp->set.n; i++) {
        if (fn(ud, lp->set.keys[i].id) != 0)
            break;
    }
    return 0;
}

static int file_refresh(jn_keyprovider_t *kp)
{
    local_provider_t *lp = to_local(kp);
    keyset_t fresh = {0};

    if (load_keyfile(lp->path, &fresh, kp->errmsg, sizeof(kp->errmsg)) != 0)
        return -1;
    keyset_free(&lp->set);
    lp->set = fresh;
    return 0;
}

static void local_destroy(jn_keyprovider_t *kp)
{
    local_provider_t *lp = to_local(kp);

    keyset_free(&lp->set);
    free(lp->path);
    free(lp);
}

static const jn_keyprovider_ops_t file_ops = {
    .name = "file",
    .get_master_key = local_get_master_key,
    .current_key_id = local_current_key_id,
    .list_key_ids = local_list_key_ids,
    .refresh = file_refresh,
    .destroy = local_destroy,
};

static const jn_keyprovider_ops_t env_ops = {
    .name = "env",
    .get_master_key = local_get_master_key,
    .current_key_id = local_current_key_id,
    .list_key_ids = local_list_key_ids,
    .destroy = local_destroy,
};

jn_keyprovider_t *jn_keyprovider_file_open(const char *path, char *err, size_t errlen)
{
    local_provider_t *lp;

    if (path == NULL || path[0] == '\0') {
        jn_errorf(err, errlen, "master key file: no path given");
        return NULL;
    }
    lp = calloc(1, sizeof(*lp));
    if (lp == NULL || (lp->path = strdup(path)) == NULL) {
        jn_errorf(err, errlen, "master key file '%s': out of memory", path);
        free(lp);
        return NULL;
    }
    lp->base.ops = &file_ops;
    if (load_keyfile(path, &lp->set, err, errlen) != 0) {
        local_destroy(&lp->base);
        return NULL;
    }
    return &lp->base;
}

jn_keyprovider_t *jn_keyprovider_env_parse(const char *value, char *err, size_t errlen)
{
    local_provider_t *lp;
    const char *p, *end;
    size_t entries = 1, pos = 0;
    char where[64], id[32];

    if (value == NULL || value[0] == '\0') {
        jn_errorf(err, errlen, "%s is empty", JN_ENV_MASTER_KEY);
        return NULL;
    }
    for (p = value; *p != '\0'; p++)
        entries += *p == ',';
    if (entries > KEYS_MAX) {
        jn_errorf(err, errlen, "%s: more than %d keys", JN_ENV_MASTER_KEY, KEYS_MAX);
        return NULL;
    }
    lp = calloc(1, sizeof(*lp));
    if (lp == NULL || (lp->set.keys = jn_secmem_alloc(entries * sizeof(key_entry_t))) == NULL) {
        jn_errorf(err, errlen, "%s: out of memory", JN_ENV_MASTER_KEY);
        free(lp);
        return NULL;
    }
    lp->base.ops = &env_ops;
    for (p = value; pos < entries; pos++) {
        const char *colon, *s, *e;

        end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        s = p;
        e = end;
        while (s < e && is_space(*s))
            s++;
        while (e > s && is_space(e[-1]))
            e--;
        snprintf(where, sizeof(where), "%s key %zu", JN_ENV_MASTER_KEY, pos + 1);
        /* Base64 has no ':', so the first one separates the id. */
        colon = memchr(s, ':', (size_t)(e - s));
        if (colon != NULL) {
            if (keyset_add(&lp->set, s, (size_t)(colon - s), colon + 1, (size_t)(e - colon - 1),
                           where, err, errlen) != 0)
                goto fail;
        } else {
            snprintf(id, sizeof(id), "env-%zu", pos + 1);
            if (keyset_add(&lp->set, id, strlen(id), s, (size_t)(e - s), where, err, errlen) != 0)
                goto fail;
        }
        p = *end != '\0' ? end + 1 : end;
    }
    return &lp->base;

fail:
    local_destroy(&lp->base);
    return NULL;
}

jn_keyprovider_t *jn_keyprovider_from_env(char *err, size_t errlen)
{
    const char *file = getenv(JN_ENV_MASTER_KEY_FILE), *value = getenv(JN_ENV_MASTER_KEY);
    int has_file = file != NULL && file[0] != '\0', has_value = value != NULL && value[0] != '\0';

    if (has_file && has_value) {
        jn_errorf(err, errlen, "both %s and %s are set; set only one", JN_ENV_MASTER_KEY_FILE,
                  JN_ENV_MASTER_KEY);
        return NULL;
    }
    if (has_file)
        return jn_keyprovider_file_open(file, err, errlen);
    if (has_value)
        return jn_keyprovider_env_parse(value, err, errlen);
    jn_errorf(err, errlen, "no master key configured: set %s (a key file, recommended) or %s",
              JN_ENV_MASTER_KEY_FILE, JN_ENV_MASTER_KEY);
    return NULL;
}

/* ---- dispatch ---- */

void jn_keyprovider_destroy(jn_keyprovider_t *kp)
{
    if (kp != NULL)
        kp->ops->destroy(kp);
}

const char *jn_keyprovider_name(const jn_keyprovider_t *kp)
{
    return kp != NULL ? kp->ops->name : "(none)";
}

const char *jn_keyprovider_errmsg(const jn_keyprovider_t *kp)
{
    return kp != NULL ? kp->errmsg : "no key provider";
}

int jn_keyprovider_get_master_key(jn_keyprovider_t *kp, const char *key_id,
                                  uint8_t key[JN_MASTER_KEY_LEN])
{
    if (kp->ops->get_master_key == NULL) {
        snprintf(kp->errmsg, sizeof(kp->errmsg),
                 "the %s key provider does not release key material", kp->ops->name);
        return -1;
    }
    return kp->ops->get_master_key(kp, key_id, key);
}

int jn_keyprovider_current_key_id(jn_keyprovider_t *kp, char key_id[JN_KEY_ID_MAX + 1])
{
    return kp->ops->current_key_id(kp, key_id);
}

int jn_keyprovider_list_key_ids(jn_keyprovider_t *kp, jn_key_id_fn fn, void *ud)
{
    return kp->ops->list_key_ids(kp, fn, ud);
}

int jn_keyprovider_refresh(jn_keyprovider_t *kp)
{
    return kp->ops->refresh != NULL ? kp->ops->refresh(kp) : 0;
}

int jn_master_key_generate_line(const char *key_id, char **line)
{
    uint8_t key[JN_MASTER_KEY_LEN];
    char *b64 = NULL;
    size_t b64_len = 0, n;
    int rc = -1;

    *line = NULL;
    if (!jn_key_id_valid(key_id))
        return -1;
    if (jn_random_bytes(key, sizeof(key)) != 0 ||
        jn_base64_encode(key, sizeof(key), &b64, &b64_len) != 0)
        goto done;
    n = strlen(key_id) + 1 + b64_len + 2;
    *line = malloc(n);
    if (*line == NULL)
        goto done;
    snprintf(*line, n, "%s %s\n", key_id, b64);
    rc = 0;

done:
    OPENSSL_cleanse(key, sizeof(key));
    if (b64 != NULL) {
        OPENSSL_cleanse(b64, b64_len);
        free(b64);
    }
    return rc;
}
