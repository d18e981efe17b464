#include "json_canon.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

int jn_buf_append(jn_buf_t *b, const char *s, size_t n)
{
    size_t need = b->len + n + 1;
    char *p;

    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap *= 2;
        p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int jn_buf_puts(jn_buf_t *b, const char *s)
{
    return jn_buf_append(b, s, strlen(s));
}

void jn_buf_free(jn_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Length of the UTF-8 sequence starting at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

int jn_json_append_string(jn_buf_t *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0, n;
    char esc[8];

    if (jn_buf_append(out, "\"", 1))
        return -1;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++, i++;
            continue;
        }
        if (run && jn_buf_append(out, s + i - run, run))
            return -1;
        run = 0;
        if (c >= 0x80) {
            n = utf8_seq_len(p + i, len - i);
            if (n == 0)
                return -2;
            if (jn_buf_append(out, s + i, n))
                return -1;
            i += n;
            continue;
        }
        n = 2;
        if (c == '"')
            memcpy(esc, "\\\"", 2);
        else if (c == '\\')
            memcpy(esc, "\\\\", 2);
        else if (c == '\n')
            memcpy(esc, "\\n", 2);
        else if (c == '\r')
            memcpy(esc, "\\r", 2);
        else if (c == '\t')
            memcpy(esc, "\\t", 2);
        else
            n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        if (jn_buf_append(out, esc, n))
            return -1;
        i++;
    }
    if (run && jn_buf_append(out, s + i - run, run))
        return -1;
    return jn_buf_append(out, "\"", 1);
}

typedef struct {
    const char *s;
    size_t len;
} canon_key_t;

static int canon_key_cmp(const void *a, const void *b)
{
    const canon_key_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);

    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

typedef struct {
    lua_State *L;
    jn_buf_t *out;
    char *err;
    size_t errlen;
    char path[256];
} canon_t;

static int canon_value(canon_t *c, int idx, int depth);

static int canon_fail(canon_t *c, const char *what)
{
    snprintf(c->err, c->errlen, "%s: %s", c->path[0] ? c->path : "value", what);
    return -1;
}

static int canon_number(canon_t *c, lua_Number x)
{
    char num[64];

    if (isnan(x) || isinf(x))
        return canon_fail(c, "NaN and infinity cannot be encoded as JSON");
    if (x == floor(x) && fabs(x) < 9007199254740992.0)
        snprintf(num, sizeof(num), "%lld", (long long)x);
    else
        snprintf(num, sizeof(num), "%.17g", x);
    return jn_buf_puts(c->out, num);
}

/* Returns the array length when the table is a sequence 1..n, else -1. */
static long canon_array_len(lua_State *L, int idx)
{
    long n = 0, max = 0;
    lua_Number k;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            return -1;
        }
        k = lua_tonumber(L, -1);
        if (k < 1 || k != floor(k) || k > 1e9) {
            lua_pop(L, 1);
            return -1;
        }
        if ((long)k > max)
            max = (long)k;
        n++;
    }
    return n == max ? n : -1;
}

static int canon_array(canon_t *c, int idx, long n, int depth)
{
    size_t plen = strlen(c->path);
    long i;

    if (jn_buf_append(c->out, "[", 1))
        return -1;
    for (i = 1; i <= n; i++) {
        if (i > 1 && jn_buf_append(c->out, ",", 1))
            return -1;
        snprintf(c->path + plen, sizeof(c->path) - plen, "[%ld]", i);
        lua_rawgeti(c->L, idx, (int)i);
        if (canon_value(c, lua_gettop(c->L), depth + 1)) {
            lua_pop(c->L, 1);
            return -1;
        }
        lua_pop(c->L, 1);
    }
    c->path[plen] = '\0';
    return jn_buf_append(c->out, "]", 1);
}

static int canon_object(canon_t *c, int idx, int depth)
{
    lua_State *L = c->L;
    canon_key_t *keys = NULL;
    size_t n = 0, cap = 0, i, plen = strlen(c->path);
    int rc = -1;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            canon_fail(c, "a table mixing array and object keys (or with non-string keys) "
                          "cannot be encoded as JSON");
            goto done;
        }
        if (n == cap) {
            canon_key_t *k = realloc(keys, (cap = cap ? cap * 2 : 16) * sizeof(*keys));
            if (k == NULL) {
                lua_pop(L, 1);
                goto done;
            }
            keys = k;
        }
        /* The string stays alive: the table holds it as a key. */
        keys[n].s = lua_tolstring(L, -1, &keys[n].len);
        n++;
    }
    if (n > 1) /* an empty table has no key array: qsort(NULL, 0) is undefined */
        qsort(keys, n, sizeof(*keys), canon_key_cmp);
    if (jn_buf_append(c->out, "{", 1))
        goto done;
    for (i = 0; i < n; i++) {
        if (i && jn_buf_append(c->out, ",", 1))
            goto done;
        if (jn_json_append_string(c->out, keys[i].s, keys[i].len) || jn_buf_append(c->out, ":", 1))
            goto done;
        snprintf(c->path + plen, sizeof(c->path) - plen, "%s%.*s", plen ? "." : "",
                 (int)(keys[i].len > 64 ? 64 : keys[i].len), keys[i].s);
        lua_pushlstring(L, keys[i].s, keys[i].len);
        lua_rawget(L, idx);
        rc = canon_value(c, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (rc)
            goto done;
        rc = -1;
    }
    c->path[plen] = '\0';
    rc = jn_buf_append(c->out, "}", 1);
done:
    free(keys);
    return rc;
}

static int canon_value(canon_t *c, int idx, int depth)
{
    lua_State *L = c->L;
    const char *s;
    size_t len;
    long n;
    int rc;

    if (depth > JSON_MAX_DEPTH)
        return canon_fail(c, "nested deeper than 64 levels (or a reference cycle)");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return jn_buf_puts(c->out, "null");
    case LUA_TBOOLEAN:
        return jn_buf_puts(c->out, lua_toboolean(L, idx) ? "true" : "false");
    case LUA_TNUMBER:
        return canon_number(c, lua_tonumber(L, idx));
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        rc = jn_json_append_string(c->out, s, len);
        if (rc == -2)
            return canon_fail(c, "string is not valid UTF-8");
        return rc;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) /* cjson.null */
            return jn_buf_puts(c->out, "null");
        break;
    case LUA_TTABLE:
        if (!lua_checkstack(L, 8))
            return canon_fail(c, "Lua stack exhausted");
        n = canon_array_len(L, idx);
        if (n > 0)
            return canon_array(c, idx, n, depth);
        return canon_object(c, idx, depth);
    default:
        break;
    }
    snprintf(c->err, c->errlen, "%s: a %s value cannot be encoded as JSON",
             c->path[0] ? c->path : "value", lua_typename(L, lua_type(L, idx)));
    return -1;
}

int jn_json_canon_encode(lua_State *L, int idx, jn_buf_t *out, char *err, size_t errlen)
{
    canon_t c = {L, out, err, errlen, {0}};

    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    return canon_value(&c, idx, 0);
}

static int append_field(jn_buf_t *b, const char *name, const char *value, int first)
{
    if (!first && jn_buf_append(b, ",", 1))
        return -1;
    if (jn_json_append_string(b, name, strlen(name)) || jn_buf_append(b, ":", 1))
        return -1;
    if (value == NULL)
        return jn_buf_puts(b, "null");
    return jn_json_append_string(b, value, strlen(value)) ? -1 : 0;
}

int jn_evidence_append_json(jn_buf_t *b, const jn_evidence_t *it)
{
    if (jn_buf_append(b, "{", 1) || append_field(b, "id", it->id, 1) ||
        append_field(b, "organization_id", it->organization_id, 0) ||
        append_field(b, "integration_id", it->integration_id, 0) ||
        append_field(b, "provider_type", it->provider_type, 0) ||
        append_field(b, "resource_type", it->resource_type, 0) ||
        append_field(b, "resource_id", it->resource_id, 0) ||
        append_field(b, "collected_at", it->collected_at, 0) ||
        append_field(b, "run_id", it->run_id, 0) ||
        append_field(b, "connector_version", it->connector_version, 0) ||
        append_field(b, "checksum", it->checksum, 0) || jn_buf_puts(b, ",\"data\":") ||
        jn_buf_puts(b, it->data) || jn_buf_append(b, "}", 1))
        return -1;
    return 0;
}
