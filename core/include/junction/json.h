/* A small, strict JSON reader (RFC 8259) for the core.
 *
 * jn_json_parse turns a document into a read-only tree held in one
 * allocation whose size is bounded by the limits (document bytes, node count,
 * nesting depth). Strings are decoded (escapes, surrogate pairs) and checked
 * to be well-formed UTF-8; duplicate member names in an object are refused,
 * which removes any doubt about which value another parser would pick.
 * Numbers are kept as their source text and converted on demand.
 *
 * Documents may hold secrets (credentials): jn_json_free wipes the whole tree
 * and error messages never quote the document, only a byte offset.
 *
 * Nodes are owned by the root and valid until jn_json_free(root). Accessors
 * accept NULL and the wrong node type, returning NULL, 0 or -1.
 */
#ifndef JUNCTION_JSON_H
#define JUNCTION_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    JN_JSON_NULL,
    JN_JSON_FALSE,
    JN_JSON_TRUE,
    JN_JSON_NUMBER,
    JN_JSON_STRING,
    JN_JSON_ARRAY,
    JN_JSON_OBJECT,
} jn_json_type_t;

/* Parse results: 0 or one of these (negative) codes. */
typedef enum {
    JN_JSON_OK = 0,
    JN_JSON_EINVAL = -1,      /* bad arguments */
    JN_JSON_ENOMEM = -2,      /* out of memory */
    JN_JSON_ELIMIT = -3,      /* document larger than max_len, or more than max_nodes values */
    JN_JSON_EDEPTH = -4,      /* arrays/objects nested deeper than max_depth */
    JN_JSON_EEOF = -5,        /* the document ends inside a value (or is empty) */
    JN_JSON_ESYNTAX = -6,     /* a character that cannot appear there */
    JN_JSON_ECONTROL = -7,    /* unescaped control character (U+0000..U+001F) in a string */
    JN_JSON_EESCAPE = -8,     /* unknown escape, or \u without 4 hex digits */
    JN_JSON_ESURROGATE = -9,  /* \u escape of a lone or misordered UTF-16 surrogate */
    JN_JSON_EUTF8 = -10,      /* ill-formed UTF-8 (overlong, surrogate, > U+10FFFF, truncated) */
    JN_JSON_ENUMBER = -11,    /* leading zero, or no digit after '-', '.' or the exponent */
    JN_JSON_EDUPLICATE = -12, /* an object repeats a member name */
    JN_JSON_ETRAILING = -13,  /* non-whitespace after the top-level value */
} jn_json_status_t;

#define JN_JSON_DEFAULT_MAX_LEN (1u << 20)
#define JN_JSON_DEFAULT_MAX_NODES 100000
#define JN_JSON_DEFAULT_MAX_DEPTH 32

/* Zero members take the defaults. max_depth counts arrays and objects: with
 * 1 only a flat object or array (of scalars) is accepted; it is capped at 512. */
typedef struct {
    size_t max_len;
    size_t max_nodes;
    size_t max_depth;
} jn_json_limits_t;

typedef struct {
    int code;         /* jn_json_status_t */
    size_t offset;    /* byte offset of the offending character (the length for EEOF) */
    char message[96]; /* "<what> at byte <offset>"; never quotes the document */
} jn_json_error_t;

typedef struct jn_json jn_json_t;

/* Parses exactly one value (any type) surrounded by optional whitespace.
 * `limits` and `err` may be NULL. On failure `*root` is NULL. */
int jn_json_parse(const char *doc, size_t len, const jn_json_limits_t *limits, jn_json_t **root,
                  jn_json_error_t *err);
/* Wipes and frees a tree; only a root returned by jn_json_parse (or NULL). */
void jn_json_free(jn_json_t *root);
/* Short description of a status ("invalid escape sequence", ...). */
const char *jn_json_strerror(int code);

jn_json_type_t jn_json_type(const jn_json_t *node);
int jn_json_is_null(const jn_json_t *node);
int jn_json_is_bool(const jn_json_t *node);
int jn_json_is_true(const jn_json_t *node);
int jn_json_is_false(const jn_json_t *node);
int jn_json_is_number(const jn_json_t *node);
int jn_json_is_string(const jn_json_t *node);
int jn_json_is_array(const jn_json_t *node);
int jn_json_is_object(const jn_json_t *node);
/* "null", "boolean", "number", "string", "array" or "object" (for messages). */
const char *jn_json_type_name(const jn_json_t *node);
/* Byte offset of the value in the document (of its name for a member). */
size_t jn_json_offset(const jn_json_t *node);

/* The member's value, or NULL (absent, or `obj` not an object). */
const jn_json_t *jn_json_get(const jn_json_t *obj, const char *name);
const jn_json_t *jn_json_getn(const jn_json_t *obj, const char *name, size_t name_len);

/* Decoded string, NUL-terminated; `*len` (may be NULL) counts bytes and may
 * exceed strlen() when the string holds \u0000. NULL when not a string. */
const char *jn_json_string(const jn_json_t *node, size_t *len);
/* The number as a double (0), or -1 when not a number or out of range. */
int jn_json_number(const jn_json_t *node, double *out);
/* The number when it is an integer in int64_t range, exactly (1e3 and 5.0
 * qualify, 1.5 does not); 0 or -1. */
int jn_json_int64(const jn_json_t *node, int64_t *out);
/* The number's source text (e.g. "-1.50e+3"), NUL-terminated, or NULL. */
const char *jn_json_number_text(const jn_json_t *node, size_t *len);

/* Iteration: members of an object in document order, items of an array.
 *   for (const jn_json_t *m = jn_json_first(obj); m; m = jn_json_next(m))
 *       use(jn_json_name(m, NULL), m);
 */
size_t jn_json_count(const jn_json_t *container);
const jn_json_t *jn_json_first(const jn_json_t *container);
const jn_json_t *jn_json_next(const jn_json_t *node);
/* The i-th item of an array (or member of an object), or NULL. Linear. */
const jn_json_t *jn_json_at(const jn_json_t *container, size_t i);
/* Member name when `node` is a member of an object, else NULL. */
const char *jn_json_name(const jn_json_t *node, size_t *len);

/* Length (1..4) of the well-formed UTF-8 sequence at `s` (`n` bytes
 * available), or 0 when ill-formed. For writers that escape strings. */
size_t jn_json_utf8_len(const void *s, size_t n);

#endif
