/* Canonical JSON for Lua values: object keys sorted bytewise, no whitespace,
 * integers without exponent. Two equal Lua tables always encode to the same
 * bytes, which makes evidence checksums stable. */
#ifndef JUNCTION_JSON_CANON_H
#define JUNCTION_JSON_CANON_H

#include <stddef.h>

#include <lua.h>

#include "junction/store.h"

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} jn_buf_t;

int jn_buf_append(jn_buf_t *b, const char *s, size_t n);
int jn_buf_puts(jn_buf_t *b, const char *s);
void jn_buf_free(jn_buf_t *b);

/* Append the value at `idx` to `out`. Returns 0, or -1 with a message naming
 * the offending path ("data.members[3].name: ...") in err. Never calls a
 * metamethod. */
int jn_json_canon_encode(lua_State *L, int idx, jn_buf_t *out, char *err, size_t errlen);
/* Append `s` as a JSON string literal (bytes that are not valid UTF-8 are an error). */
int jn_json_append_string(jn_buf_t *out, const char *s, size_t len);

/* Append an evidence item as one JSON object (its data inlined as JSON). */
int jn_evidence_append_json(jn_buf_t *out, const jn_evidence_t *item);

#endif
