/* Strict JSON reader: two passes over the document. The first validates it
 * and counts the nodes and decoded string bytes; the second builds the tree
 * in one block of exactly that size, so no buffer holding decoded secrets is
 * ever reallocated (and left behind unwiped). */
#include "junction/json.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

struct jn_json {
    jn_json_type_t type;
    int is_root;
    const char *name; /* member name, or NULL */
    size_t name_len;
    const char *str; /* decoded string, or number text */
    size_t len;
    jn_json_t *child; /* first member or item */
    jn_json_t *next;  /* next sibling */
    size_t count;
    size_t offset;
};

#define JN_JSON_MAX_DEPTH_CAP 512

typedef struct {
    size_t size; /* of the whole block, for the wipe */
    jn_json_t nodes[];
} block_t;

typedef struct {
    const unsigned char *start, *p, *end;
    size_t max_nodes, max_depth;
    int build;
    /* Pass 1 counts into these; pass 2 consumes them. */
    size_t nnodes, pool_len;
    jn_json_t *nodes;
    char *pool;
    jn_json_t **scratch;
    jn_json_t dummy;
    int code;
    size_t offset;
} parser_t;

static int fail(parser_t *ps, int code, const unsigned char *at)
{
    ps->code = code;
    ps->offset = (size_t)(at - ps->start);
    return -1;
}

static void skip_ws(parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

size_t jn_json_utf8_len(const void *str, size_t n)
{
    const unsigned char *s = str;
    uint32_t cp, min;
    size_t len;
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2, cp = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, cp = s[0] & 0x0f, min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int hex4(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    uint32_t v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (out != NULL)
        memcpy(out, b, n);
    return n;
}

/* Reserves `n` pool bytes: counted in pass 1, handed out in pass 2. */
static char *pool_take(parser_t *ps, size_t n)
{
    if (!ps->build) {
        ps->pool_len += n;
        return NULL;
    }
    char *s = ps->pool;
    ps->pool += n;
    return s;
}

/* At the opening quote. Decodes into the pool in pass 2. */
static int parse_string(parser_t *ps, const char **out, size_t *out_len)
{
    const unsigned char *p = ps->p + 1, *e = ps->end;
    size_t o = 0;
    char *dst = NULL;

    if (ps->build) {
        /* Pass 1 measured this string: decoded bytes never outnumber raw ones,
         * but the exact length is needed to take it from the pool. */
        const unsigned char *save = ps->p;
        ps->build = 0;
        size_t before = ps->pool_len;
        int rc = parse_string(ps, out, out_len);
        size_t n = ps->pool_len - before;
        ps->pool_len = before;
        ps->build = 1;
        if (rc < 0)
            return rc;
        ps->p = save;
        dst = pool_take(ps, n);
    }
    while (p < e) {
        unsigned char c = *p;
        if (c == '"') {
            if (dst != NULL)
                dst[o] = '\0';
            else
                pool_take(ps, o + 1);
            ps->p = p + 1;
            *out = dst;
            *out_len = o;
            return 0;
        }
        if (c < 0x20)
            return fail(ps, JN_JSON_ECONTROL, p);
        if (c >= 0x80) {
            size_t k = jn_json_utf8_len(p, (size_t)(e - p));
            if (k == 0)
                return fail(ps, JN_JSON_EUTF8, p);
            if (dst != NULL)
                memcpy(dst + o, p, k);
            o += k, p += k;
            continue;
        }
        if (c != '\\') {
            if (dst != NULL)
                dst[o] = (char)c;
            o++, p++;
            continue;
        }
        if (e - p < 2)
            return fail(ps, JN_JSON_EEOF, e);
        uint32_t cp;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
            cp = p[1];
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (hex4(p + 2, e, &cp) < 0)
                return fail(ps, e - p < 6 ? JN_JSON_EEOF : JN_JSON_EESCAPE, e - p < 6 ? e : p);
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(ps, JN_JSON_ESURROGATE, p);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (e - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, e, &lo) < 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return fail(ps, JN_JSON_ESURROGATE, p);
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            p += 4;
            break;
        default:
            return fail(ps, JN_JSON_EESCAPE, p);
        }
        p += 2;
        o += utf8_put(dst != NULL ? dst + o : NULL, cp);
    }
    return fail(ps, JN_JSON_EEOF, e);
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int parse_number(parser_t *ps, jn_json_t *n)
{
    const unsigned char *s = ps->p, *p = ps->p, *e = ps->end;
    if (p < e && *p == '-')
        p++;
    if (p >= e)
        return fail(ps, JN_JSON_EEOF, p);
    if (!is_digit(*p))
        return fail(ps, p == s ? JN_JSON_ESYNTAX : JN_JSON_ENUMBER, p);
    if (*p == '0') {
        p++;
        if (p < e && is_digit(*p))
            return fail(ps, JN_JSON_ENUMBER, p);
    } else {
        while (p < e && is_digit(*p))
            p++;
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e)
            return fail(ps, JN_JSON_EEOF, p);
        if (!is_digit(*p))
            return fail(ps, JN_JSON_ENUMBER, p);
        while (p < e && is_digit(*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e)
            return fail(ps, JN_JSON_EEOF, p);
        if (!is_digit(*p))
            return fail(ps, JN_JSON_ENUMBER, p);
        while (p < e && is_digit(*p))
            p++;
    }
    size_t len = (size_t)(p - s);
    char *dst = pool_take(ps, len + 1);
    if (dst != NULL) {
        memcpy(dst, s, len);
        dst[len] = '\0';
    }
    n->str = dst;
    n->len = len;
    ps->p = p;
    return 0;
}

static int parse_literal(parser_t *ps, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i < n; i++) {
        if (ps->p + i >= ps->end)
            return fail(ps, JN_JSON_EEOF, ps->end);
        if (ps->p[i] != (unsigned char)word[i])
            return fail(ps, JN_JSON_ESYNTAX, ps->p + i);
    }
    ps->p += n;
    return 0;
}

static jn_json_t *new_node(parser_t *ps, jn_json_type_t type)
{
    jn_json_t *n;
    if (!ps->build) {
        if (ps->nnodes >= ps->max_nodes) {
            fail(ps, JN_JSON_ELIMIT, ps->p);
            return NULL;
        }
        ps->nnodes++;
        n = &ps->dummy;
    } else {
        n = ps->nodes++;
    }
    memset(n, 0, sizeof(*n));
    n->type = type;
    n->offset = (size_t)(ps->p - ps->start);
    return n;
}

static int name_cmp(const void *a, const void *b)
{
    const jn_json_t *x = *(const jn_json_t *const *)a, *y = *(const jn_json_t *const *)b;
    if (x->name_len != y->name_len)
        return x->name_len < y->name_len ? -1 : 1;
    int c = memcmp(x->name, y->name, x->name_len);
    if (c != 0)
        return c;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int same_name(const jn_json_t *x, const jn_json_t *y)
{
    return x->name_len == y->name_len && memcmp(x->name, y->name, x->name_len) == 0;
}

/* Pass 2 only. Reports the earliest second occurrence of any name. */
static int check_duplicates(parser_t *ps, const jn_json_t *obj)
{
    const jn_json_t *dup = NULL;
    if (obj->count < 2)
        return 0;
    if (obj->count <= 16) {
        for (const jn_json_t *m = obj->child->next; m != NULL && dup == NULL; m = m->next)
            for (const jn_json_t *k = obj->child; k != m; k = k->next)
                if (same_name(k, m)) {
                    dup = m;
                    break;
                }
    } else {
        size_t i = 0;
        for (jn_json_t *m = obj->child; m != NULL; m = m->next)
            ps->scratch[i++] = m;
        qsort(ps->scratch, i, sizeof(*ps->scratch), name_cmp);
        for (size_t k = 1; k < i; k++)
            if (same_name(ps->scratch[k - 1], ps->scratch[k]) &&
                (dup == NULL || ps->scratch[k]->offset < dup->offset))
                dup = ps->scratch[k];
    }
    if (dup == NULL)
        return 0;
    return fail(ps, JN_JSON_EDUPLICATE, ps->start + dup->offset);
}

static int parse_value(parser_t *ps, size_t depth, jn_json_t **out);

static int parse_container(parser_t *ps, size_t depth, jn_json_t *n)
{
    int is_obj = n->type == JN_JSON_OBJECT;
    unsigned char close = is_obj ? '}' : ']';
    jn_json_t *last = NULL;

    if (depth > ps->max_depth)
        return fail(ps, JN_JSON_EDEPTH, ps->p);
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    for (;;) {
        const char *name = NULL;
        size_t name_len = 0, name_off = 0;
        jn_json_t *child;
        skip_ws(ps);
        if (is_obj) {
            if (ps->p >= ps->end)
                return fail(ps, JN_JSON_EEOF, ps->p);
            if (*ps->p != '"')
                return fail(ps, JN_JSON_ESYNTAX, ps->p);
            name_off = (size_t)(ps->p - ps->start);
            if (parse_string(ps, &name, &name_len) < 0)
                return -1;
            skip_ws(ps);
            if (ps->p >= ps->end)
                return fail(ps, JN_JSON_EEOF, ps->p);
            if (*ps->p != ':')
                return fail(ps, JN_JSON_ESYNTAX, ps->p);
            ps->p++;
        }
        if (parse_value(ps, depth, &child) < 0)
            return -1;
        if (is_obj) {
            child->name = name;
            child->name_len = name_len;
            child->offset = name_off;
        }
        if (ps->build) {
            if (last == NULL)
                n->child = child;
            else
                last->next = child;
            last = child;
            n->count++;
        }
        skip_ws(ps);
        if (ps->p >= ps->end)
            return fail(ps, JN_JSON_EEOF, ps->p);
        if (*ps->p == close) {
            ps->p++;
            break;
        }
        if (*ps->p != ',')
            return fail(ps, JN_JSON_ESYNTAX, ps->p);
        ps->p++;
    }
    if (is_obj && ps->build)
        return check_duplicates(ps, n);
    return 0;
}

/* `depth` is the number of containers around the value. */
static int parse_value(parser_t *ps, size_t depth, jn_json_t **out)
{
    jn_json_t *n;
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, JN_JSON_EEOF, ps->p);
    switch (*ps->p) {
    case '"':
        if ((n = new_node(ps, JN_JSON_STRING)) == NULL || parse_string(ps, &n->str, &n->len) < 0)
            return -1;
        break;
    case '{':
    case '[':
        if ((n = new_node(ps, *ps->p == '{' ? JN_JSON_OBJECT : JN_JSON_ARRAY)) == NULL)
            return -1;
        /* In pass 1 `n` is the shared dummy: parse_container only writes to
         * it in pass 2. */
        if (parse_container(ps, depth + 1, n) < 0)
            return -1;
        break;
    case 't':
        if ((n = new_node(ps, JN_JSON_TRUE)) == NULL || parse_literal(ps, "true") < 0)
            return -1;
        break;
    case 'f':
        if ((n = new_node(ps, JN_JSON_FALSE)) == NULL || parse_literal(ps, "false") < 0)
            return -1;
        break;
    case 'n':
        if ((n = new_node(ps, JN_JSON_NULL)) == NULL || parse_literal(ps, "null") < 0)
            return -1;
        break;
    default:
        if (*ps->p != '-' && !is_digit(*ps->p))
            return fail(ps, JN_JSON_ESYNTAX, ps->p);
        if ((n = new_node(ps, JN_JSON_NUMBER)) == NULL || parse_number(ps, n) < 0)
            return -1;
    }
    *out = n;
    return 0;
}

static int parse_document(parser_t *ps, jn_json_t **root)
{
    if (parse_value(ps, 0, root) < 0)
        return -1;
    skip_ws(ps);
    if (ps->p != ps->end)
        return fail(ps, JN_JSON_ETRAILING, ps->p);
    return 0;
}

static void set_error(jn_json_error_t *err, int code, size_t offset)
{
    if (err == NULL)
        return;
    err->code = code;
    err->offset = offset;
    if (code == JN_JSON_OK)
        err->message[0] = '\0';
    else if (code == JN_JSON_EINVAL || code == JN_JSON_ENOMEM)
        snprintf(err->message, sizeof(err->message), "%s", jn_json_strerror(code));
    else
        snprintf(err->message, sizeof(err->message), "%s at byte %zu", jn_json_strerror(code),
                 offset);
}

static int bail(jn_json_error_t *err, int code, size_t offset)
{
    set_error(err, code, offset);
    return code;
}

int jn_json_parse(const char *doc, size_t len, const jn_json_limits_t *limits, jn_json_t **root,
                  jn_json_error_t *err)
{
    parser_t ps;
    jn_json_t *top = NULL;
    size_t max_len = JN_JSON_DEFAULT_MAX_LEN;

    if (root != NULL)
        *root = NULL;
    if (root == NULL || (doc == NULL && len > 0))
        return bail(err, JN_JSON_EINVAL, 0);
    memset(&ps, 0, sizeof(ps));
    ps.max_nodes = JN_JSON_DEFAULT_MAX_NODES;
    ps.max_depth = JN_JSON_DEFAULT_MAX_DEPTH;
    if (limits != NULL) {
        if (limits->max_len != 0)
            max_len = limits->max_len;
        if (limits->max_nodes != 0)
            ps.max_nodes = limits->max_nodes;
        if (limits->max_depth != 0)
            ps.max_depth = limits->max_depth;
    }
    /* The parser recurses once per level. */
    if (ps.max_depth > JN_JSON_MAX_DEPTH_CAP)
        ps.max_depth = JN_JSON_MAX_DEPTH_CAP;
    if (len > max_len)
        return bail(err, JN_JSON_ELIMIT, max_len);
    const unsigned char *d = doc != NULL ? (const unsigned char *)doc : (const unsigned char *)"";

    /* Pass 1: validate and measure. */
    ps.start = ps.p = d;
    ps.end = d + len;
    if (parse_document(&ps, &top) < 0)
        return bail(err, ps.code, ps.offset);

    /* Pass 2: build. Sizes are bounded by max_nodes and 2 * max_len. */
    size_t nnodes = ps.nnodes, pool_len = ps.pool_len;
    if (nnodes > (SIZE_MAX - sizeof(block_t) - pool_len) / sizeof(jn_json_t))
        return bail(err, JN_JSON_ENOMEM, 0);
    size_t size = sizeof(block_t) + nnodes * sizeof(jn_json_t) + pool_len;
    block_t *b = malloc(size);
    if (b == NULL)
        return bail(err, JN_JSON_ENOMEM, 0);
    b->size = size;
    ps.build = 1;
    ps.p = d;
    ps.nodes = b->nodes;
    ps.pool = (char *)(b->nodes + nnodes);
    ps.scratch = NULL;
    if (nnodes > 17 && (ps.scratch = malloc(nnodes * sizeof(*ps.scratch))) == NULL) {
        OPENSSL_cleanse(b, size);
        free(b);
        return bail(err, JN_JSON_ENOMEM, 0);
    }
    int rc = parse_document(&ps, &top);
    free(ps.scratch);
    if (rc < 0) {
        OPENSSL_cleanse(b, size);
        free(b);
        return bail(err, ps.code, ps.offset);
    }
    top->is_root = 1;
    *root = top;
    set_error(err, JN_JSON_OK, 0);
    return JN_JSON_OK;
}

void jn_json_free(jn_json_t *root)
{
    if (root == NULL || !root->is_root)
        return;
    block_t *b = (block_t *)((char *)root - offsetof(block_t, nodes));
    OPENSSL_cleanse(b, b->size);
    free(b);
}

const char *jn_json_strerror(int code)
{
    switch (code) {
    case JN_JSON_OK:
        return "ok";
    case JN_JSON_EINVAL:
        return "invalid arguments";
    case JN_JSON_ENOMEM:
        return "out of memory";
    case JN_JSON_ELIMIT:
        return "document exceeds the size limit";
    case JN_JSON_EDEPTH:
        return "nesting exceeds the depth limit";
    case JN_JSON_EEOF:
        return "unexpected end of document";
    case JN_JSON_ESYNTAX:
        return "unexpected character";
    case JN_JSON_ECONTROL:
        return "unescaped control character in string";
    case JN_JSON_EESCAPE:
        return "invalid escape sequence";
    case JN_JSON_ESURROGATE:
        return "unpaired UTF-16 surrogate escape";
    case JN_JSON_EUTF8:
        return "invalid UTF-8";
    case JN_JSON_ENUMBER:
        return "malformed number";
    case JN_JSON_EDUPLICATE:
        return "duplicate member name";
    case JN_JSON_ETRAILING:
        return "data after the JSON value";
    default:
        return "unknown error";
    }
}

jn_json_type_t jn_json_type(const jn_json_t *node)
{
    return node != NULL ? node->type : JN_JSON_NULL;
}

int jn_json_is_null(const jn_json_t *node)
{
    return node != NULL && node->type == JN_JSON_NULL;
}

int jn_json_is_bool(const jn_json_t *node)
{
    return node != NULL && (node->type == JN_JSON_TRUE || node->type == JN_JSON_FALSE);
}

int jn_json_is_true(const jn_json_t *node)
{
    return node != NULL && node->type == JN_JSON_TRUE;
}

int jn_json_is_false(const jn_json_t *node)
{
    return node != NULL && node->type == JN_JSON_FALSE;
}

int jn_json_is_number(const jn_json_t *node)
{
    return node != NULL && node->type == JN_JSON_NUMBER;
}

int jn_json_is_string(const jn_json_t *node)
{
    return node != NULL && node->type == JN_JSON_STRING;
}

int jn_json_is_array(const jn_json_t *node)
{
    return node != NULL && node->type == JN_JSON_ARRAY;
}

int jn_json_is_object(const jn_json_t *node)
{
    return node != NULL && node->type == JN_JSON_OBJECT;
}

const char *jn_json_type_name(const jn_json_t *node)
{
    if (node == NULL)
        return "nothing";
    switch (node->type) {
    case JN_JSON_NULL:
        return "null";
    case JN_JSON_FALSE:
    case JN_JSON_TRUE:
        return "boolean";
    case JN_JSON_NUMBER:
        return "number";
    case JN_JSON_STRING:
        return "string";
    case JN_JSON_ARRAY:
        return "array";
    case JN_JSON_OBJECT:
        return "object";
    }
    return "?";
}

size_t jn_json_offset(const jn_json_t *node)
{
    return node != NULL ? node->offset : 0;
}

const jn_json_t *jn_json_getn(const jn_json_t *obj, const char *name, size_t name_len)
{
    if (!jn_json_is_object(obj) || name == NULL)
        return NULL;
    for (const jn_json_t *m = obj->child; m != NULL; m = m->next)
        if (m->name_len == name_len && memcmp(m->name, name, name_len) == 0)
            return m;
    return NULL;
}

const jn_json_t *jn_json_get(const jn_json_t *obj, const char *name)
{
    return name != NULL ? jn_json_getn(obj, name, strlen(name)) : NULL;
}

const char *jn_json_string(const jn_json_t *node, size_t *len)
{
    if (!jn_json_is_string(node)) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = node->len;
    return node->str;
}

const char *jn_json_number_text(const jn_json_t *node, size_t *len)
{
    if (!jn_json_is_number(node)) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = node->len;
    return node->str;
}

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

int jn_json_number(const jn_json_t *node, double *out)
{
    if (!jn_json_is_number(node) || out == NULL)
        return -1;
    /* JSON's decimal point is '.' whatever the process locale says. */
    pthread_once(&c_locale_once, c_locale_init);
    if (c_locale == (locale_t)0)
        return -1;
    char *end;
    double v = strtod_l(node->str, &end, c_locale);
    if (end != node->str + node->len || isinf(v))
        return -1;
    *out = v;
    return 0;
}

int jn_json_int64(const jn_json_t *node, int64_t *out)
{
    if (!jn_json_is_number(node) || out == NULL)
        return -1;
    const char *p = node->str, *end = node->str + node->len;
    int neg = 0;
    if (*p == '-')
        neg = 1, p++;
    /* Mantissa digits: integer part then fraction. */
    const char *ip = p;
    size_t ilen = 0, flen = 0;
    while (p < end && is_digit((unsigned char)*p))
        p++, ilen++;
    const char *fp = p;
    if (p < end && *p == '.') {
        fp = ++p;
        while (p < end && is_digit((unsigned char)*p))
            p++, flen++;
    }
    long e10 = 0;
    int eneg = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        for (; p < end; p++)
            if (e10 < 1000000)
                e10 = e10 * 10 + (*p - '0');
    }
    size_t total = ilen + flen;
#define DIGIT(i) ((i) < ilen ? ip[i] - '0' : fp[(i)-ilen] - '0')
    size_t first = 0;
    while (first < total && DIGIT(first) == 0)
        first++;
    if (first == total) {
        *out = 0;
        return 0;
    }
    /* The decimal point sits before digit index `point`. */
    long point = (long)ilen + (eneg ? -e10 : e10);
    if (point - (long)first > 19)
        return -1;
    for (size_t i = first; i < total; i++)
        if ((long)i >= point && DIGIT(i) != 0)
            return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (long i = (long)first; i < point; i++) {
        int dg = (size_t)i < total ? DIGIT((size_t)i) : 0;
        if (v > (lim - (uint64_t)dg) / 10)
            return -1;
        v = v * 10 + (uint64_t)dg;
    }
#undef DIGIT
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

size_t jn_json_count(const jn_json_t *container)
{
    return jn_json_is_object(container) || jn_json_is_array(container) ? container->count : 0;
}

const jn_json_t *jn_json_first(const jn_json_t *container)
{
    return jn_json_is_object(container) || jn_json_is_array(container) ? container->child : NULL;
}

const jn_json_t *jn_json_next(const jn_json_t *node)
{
    return node != NULL ? node->next : NULL;
}

const jn_json_t *jn_json_at(const jn_json_t *container, size_t i)
{
    const jn_json_t *n = jn_json_first(container);
    while (n != NULL && i-- > 0)
        n = n->next;
    return n;
}

const char *jn_json_name(const jn_json_t *node, size_t *len)
{
    if (len != NULL)
        *len = node != NULL && node->name != NULL ? node->name_len : 0;
    return node != NULL ? node->name : NULL;
}
