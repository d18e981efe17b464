/* Strict HTTP/1.1 request parsing for the server (RFC 9110, RFC 9112).
 *
 * The rule throughout: where two implementations could read the same bytes
 * as different messages (a proxy in front of us and this server), refuse the
 * request rather than pick a reading. That is why there is no leniency for
 * bare LF, obs-fold, whitespace before a colon, repeated framing headers or
 * unknown transfer codings; see docs/adr/ADR-006-http-server-parser.md.
 */
#include "http_server_internal.h"

#include "junction/error.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONTENT_LENGTH_MAX_DIGITS 15
#define CHUNK_SIZE_MAX_DIGITS 15
#define CHUNK_EXT_MAX 256

static int fail_set(hs_fail_t *fail, int status, const char *code, const char *message)
{
    fail->status = status;
    fail->code = code;
    fail->message = message;
    return -1;
}

static int bad(hs_fail_t *fail, const char *message)
{
    return fail_set(fail, 400, "bad_request", message);
}

/* ---- Character classes ---- */

bool hs_is_tchar(unsigned char c)
{
    /* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
     *         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (isalnum(c))
        return c < 0x80;
    return c != 0 && strchr(extra, c) != NULL;
}

/* field-vchar or a blank inside a value; obs-text (0x80-0xFF) is accepted. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_hex(unsigned char c)
{
    return isxdigit(c) && c < 0x80;
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    return (tolower(c) - 'a') + 10;
}

/* pchar minus pct-encoded: unreserved / sub-delims / ":" / "@" */
static bool is_pchar(unsigned char c)
{
    static const char extra[] = "-._~!$&'()*+,;=:@";

    if (isalnum(c))
        return c < 0x80;
    return c != 0 && strchr(extra, c) != NULL;
}

/* ---- Head scanning ---- */

int hs_scan_head(hs_scan_t *st, const char *p, size_t n, const hs_limits_t *lim, size_t *head_len,
                 hs_fail_t *fail)
{
    while (st->scan < n) {
        const char *nl = memchr(p + st->scan, '\n', n - st->scan);
        size_t pos;

        if (!nl) {
            st->scan = n;
            break;
        }
        pos = (size_t)(nl - p);
        if (pos == 0 || p[pos - 1] != '\r' || pos - 1 < st->line_start)
            return bad(fail, "a line ends with a bare LF; lines must end with CRLF");
        if (pos - 1 == st->line_start) {
            if (st->lines == 0) {
                /* An empty line before the request line is ignored (RFC 9112, 2.2). */
                st->line_start = st->scan = pos + 1;
                continue;
            }
            if (pos + 1 > lim->max_header_bytes)
                break;
            *head_len = pos + 1;
            return 1;
        }
        st->lines++;
        if (st->lines > lim->max_headers + 1)
            return fail_set(fail, 431, "headers_too_large", "too many header fields");
        st->line_start = st->scan = pos + 1;
    }
    if (n > lim->max_header_bytes)
        return fail_set(fail, 431, "headers_too_large",
                        "the request line and headers exceed the size limit");
    return 0;
}

/* ---- Request line and headers ---- */

bool hs_request_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > JN_HTTP_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];

        if (!(isalnum(c) && c < 0x80) && c != '-' && c != '_' && c != '.' && c != ':')
            return false;
    }
    return true;
}

/* Case-insensitive comparison of a list item (not NUL-terminated) with a token. */
static bool item_is(const char *item, size_t len, const char *token)
{
    return strlen(token) == len && strncasecmp(item, token, len) == 0;
}

/* Walks a comma-separated list: the next item (trimmed of OWS) or NULL at the
 * end. Empty items are skipped, as RFC 9110 5.6.1 asks of recipients. */
static const char *list_next(const char **cursor, size_t *len)
{
    const char *s = *cursor, *start, *end;

    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (*s == '\0') {
            *cursor = s;
            return NULL;
        }
        start = s;
        while (*s && *s != ',')
            s++;
        end = s;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *cursor = s;
        if (end > start) {
            *len = (size_t)(end - start);
            return start;
        }
    }
}

static int parse_transfer_encoding(const char *value, bool *chunked, hs_fail_t *fail)
{
    const char *cursor = value, *item;
    size_t len, n = 0;
    bool last_chunked = false, chunked_seen = false;

    while ((item = list_next(&cursor, &len)) != NULL) {
        n++;
        last_chunked = item_is(item, len, "chunked");
        if (last_chunked && chunked_seen)
            return bad(fail, "chunked is applied more than once in Transfer-Encoding");
        chunked_seen = chunked_seen || last_chunked;
    }
    if (n == 0)
        return bad(fail, "empty Transfer-Encoding header");
    if (chunked_seen && !last_chunked)
        return bad(fail, "chunked is not the final transfer coding");
    if (n > 1 || !last_chunked)
        return fail_set(fail, 501, "not_implemented",
                        "the only transfer coding supported is chunked");
    *chunked = true;
    return 0;
}

static int parse_content_length(const char *value, int64_t *out, hs_fail_t *fail)
{
    int64_t v = 0;
    size_t i;

    for (i = 0; value[i]; i++) {
        if (value[i] < '0' || value[i] > '9' || i >= CONTENT_LENGTH_MAX_DIGITS)
            return bad(fail, "invalid Content-Length");
        v = v * 10 + (value[i] - '0');
    }
    if (i == 0)
        return bad(fail, "invalid Content-Length");
    *out = v;
    return 0;
}

/* uri-host [ ":" port ]: reg-name and IP-literal characters only. */
static bool host_valid(const char *v)
{
    static const char extra[] = "-._~!$&'()*+,;=:[]%";

    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;

        if (!(isalnum(c) && c < 0x80) && !strchr(extra, c))
            return false;
    }
    return true;
}

/* A path segment that is "." or ".." (also percent-encoded): a proxy that
 * normalizes the path would route it elsewhere than we do. */
static bool is_dot_segment(const char *s, size_t len)
{
    size_t dots = 0, i = 0;

    while (i < len) {
        if (s[i] == '.')
            i++;
        else if (i + 2 < len && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] | 0x20) == 'e')
            i += 3;
        else
            return false;
        dots++;
    }
    return dots == 1 || dots == 2;
}

/* Validates an origin-form path and query (RFC 3986 characters, well-formed
 * escapes, no dot-segments, no fragment). */
static int check_target(const char *path, const char *query, hs_fail_t *fail)
{
    const char *seg = path + 1;

    for (const char *s = path; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '%') {
            if (!is_hex((unsigned char)s[1]) || !is_hex((unsigned char)s[2]))
                return bad(fail, "malformed percent-encoding in the request target");
            s += 2;
        } else if (c == '/') {
            if (s > path && is_dot_segment(seg, (size_t)(s - seg)))
                return bad(fail, "dot-segments are not allowed in the path");
            seg = s + 1;
        } else if (!is_pchar(c)) {
            return bad(fail, "invalid character in the request target");
        }
    }
    if (is_dot_segment(seg, strlen(seg)))
        return bad(fail, "dot-segments are not allowed in the path");
    for (const char *s = query; s && *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '%') {
            if (!is_hex((unsigned char)s[1]) || !is_hex((unsigned char)s[2]))
                return bad(fail, "malformed percent-encoding in the request target");
            s += 2;
        } else if (!is_pchar(c) && c != '/' && c != '?') {
            return bad(fail, "invalid character in the request target");
        }
    }
    return 0;
}

static int parse_request_line(char **cursor, hs_head_t *h, char **target, hs_fail_t *fail)
{
    char *q = *cursor, *start;

    start = q;
    while (hs_is_tchar((unsigned char)*q))
        q++;
    if (q == start || *q != ' ')
        return bad(fail, "malformed request line");
    *q++ = '\0';
    h->method = start;

    start = q;
    while ((unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f)
        q++;
    if (q == start || *q != ' ')
        return bad(fail, "malformed request line");
    *q++ = '\0';
    *target = start;

    if (strncmp(q, "HTTP/", 5) != 0 || !isdigit((unsigned char)q[5]) || q[6] != '.' ||
        !isdigit((unsigned char)q[7]) || q[8] != '\r' || q[9] != '\n')
        return bad(fail, "malformed request line");
    if (q[5] != '1' || (q[7] != '0' && q[7] != '1'))
        return fail_set(fail, 505, "http_version_not_supported",
                        "only HTTP/1.0 and HTTP/1.1 are supported");
    h->minor = q[7] - '0';
    *cursor = q + 10;
    return 0;
}

/* absolute-form ("http://host/path"): accepted only when it names the same
 * authority as the Host header, and turned into origin-form. */
static int split_target(char *target, hs_head_t *h, hs_fail_t *fail)
{
    char *q;

    if (target[0] != '/') {
        char *auth, *end;
        size_t scheme_len;

        if (strncasecmp(target, "http://", 7) == 0)
            scheme_len = 7;
        else if (strncasecmp(target, "https://", 8) == 0)
            scheme_len = 8;
        else
            return bad(fail, "the request target must be an absolute path");
        auth = target + scheme_len;
        end = auth + strcspn(auth, "/?#");
        if (end == auth || memchr(auth, '@', (size_t)(end - auth)))
            return bad(fail, "malformed absolute-form request target");
        if (!h->host || strlen(h->host) != (size_t)(end - auth) ||
            strncasecmp(h->host, auth, (size_t)(end - auth)) != 0)
            return bad(fail, "the absolute-form request target names another host than Host");
        if (*end == '/') {
            target = end;
        } else if (*end == '?') {
            *end = '\0';
            h->path = "/";
            h->query = end + 1;
            return check_target(h->path, h->query, fail);
        } else if (*end == '\0') {
            h->path = "/";
            h->query = NULL;
            return 0;
        } else {
            return bad(fail, "invalid character in the request target");
        }
    }
    q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    h->path = target;
    h->query = q;
    return check_target(h->path, h->query, fail);
}

static int header_semantics(hs_head_t *h, hs_fail_t *fail)
{
    size_t hosts = 0, lengths = 0, encodings = 0;
    const char *te = NULL;

    h->content_length = -1;
    for (size_t i = 0; i < h->nheaders; i++) {
        const char *name = h->headers[i].name, *value = h->headers[i].value;

        switch (name[0]) {
        case 'c':
            if (strcmp(name, "content-length") == 0) {
                if (++lengths > 1)
                    return bad(fail, "more than one Content-Length header");
                if (parse_content_length(value, &h->content_length, fail) != 0)
                    return -1;
            } else if (strcmp(name, "connection") == 0) {
                const char *cursor = value, *item;
                size_t len;

                while ((item = list_next(&cursor, &len)) != NULL) {
                    if (item_is(item, len, "close"))
                        h->close = true;
                }
            }
            break;
        case 'e':
            if (strcmp(name, "expect") == 0 && h->minor == 1) {
                if (strcasecmp(value, "100-continue") != 0)
                    return fail_set(fail, 417, "expectation_failed",
                                    "the only expectation supported is 100-continue");
                h->expect_continue = true;
            }
            break;
        case 'h':
            if (strcmp(name, "host") == 0) {
                if (++hosts > 1)
                    return bad(fail, "more than one Host header");
                if (!host_valid(value))
                    return bad(fail, "invalid Host header");
                h->host = value;
            }
            break;
        case 't':
            if (strcmp(name, "transfer-encoding") == 0) {
                if (++encodings > 1)
                    return bad(fail, "more than one Transfer-Encoding header");
                te = value;
            }
            break;
        case 'x':
            if (strcmp(name, "x-request-id") == 0 && !h->request_id &&
                hs_request_id_valid(value, strlen(value)))
                h->request_id = value;
            break;
        default:
            break;
        }
    }
    if (h->minor == 1 && hosts == 0)
        return bad(fail, "missing Host header");
    if (te) {
        /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, and
         * with Content-Length it is the classic smuggling vector. */
        if (h->minor == 0)
            return bad(fail, "Transfer-Encoding is not allowed in HTTP/1.0");
        if (lengths)
            return bad(fail, "both Content-Length and Transfer-Encoding");
        if (parse_transfer_encoding(te, &h->chunked, fail) != 0)
            return -1;
    }
    if (h->minor == 0)
        h->close = true;
    return 0;
}

int hs_parse_head(char *p, size_t len, hs_header_t *headers, size_t max_headers, hs_head_t *h,
                  hs_fail_t *fail)
{
    char *q = p, *end = p + len, *target;

    memset(h, 0, sizeof *h);
    h->headers = headers;
    while (q + 1 < end && q[0] == '\r' && q[1] == '\n')
        q += 2;
    if (parse_request_line(&q, h, &target, fail) != 0)
        return -1;

    while (q < end && *q != '\r') {
        char *name = q, *value, *vend;

        if (*q == ' ' || *q == '\t')
            return bad(fail, "obsolete line folding (obs-fold) is not allowed");
        while (hs_is_tchar((unsigned char)*q)) {
            *q = (char)tolower((unsigned char)*q);
            q++;
        }
        if (*q != ':') {
            if (q > name && (*q == ' ' || *q == '\t'))
                return bad(fail, "whitespace between a header name and the colon");
            return bad(fail, "invalid header name");
        }
        if (q == name)
            return bad(fail, "empty header name");
        *q++ = '\0';
        while (*q == ' ' || *q == '\t')
            q++;
        value = q;
        while (*q != '\r') {
            if (!is_value_char((unsigned char)*q))
                return bad(fail, "invalid character in a header value");
            q++;
        }
        if (q[1] != '\n')
            return bad(fail, "a line contains a bare CR");
        vend = q;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        *vend = '\0';
        q += 2;
        if (h->nheaders >= max_headers)
            return fail_set(fail, 431, "headers_too_large", "too many header fields");
        headers[h->nheaders].name = name;
        headers[h->nheaders].value = value;
        h->nheaders++;
    }
    if (q + 1 >= end || q[0] != '\r' || q[1] != '\n')
        return bad(fail, "malformed header section");
    if (header_semantics(h, fail) != 0)
        return -1;
    return split_target(target, h, fail);
}

/* ---- Chunked transfer coding (RFC 9112 7.1) ---- */

enum {
    CS_SIZE,
    CS_SIZE_WS,
    CS_EXT,
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER,
    CS_TNAME,
    CS_TVALUE,
    CS_TLF,
    CS_END_LF,
    CS_DONE
};

void hs_chunked_init(hs_chunked_t *st, uint64_t max_body, const hs_limits_t *lim)
{
    memset(st, 0, sizeof *st);
    st->state = CS_SIZE;
    st->max_body = max_body;
    st->lim = *lim;
}

static int chunk_bad(hs_chunked_t *st, hs_fail_t *fail, const char *message)
{
    st->state = CS_DONE;
    bad(fail, message);
    return HS_CHUNK_FAIL;
}

static int trailer_byte(hs_chunked_t *st, hs_fail_t *fail)
{
    if (++st->trailer_bytes > st->lim.max_header_bytes) {
        st->state = CS_DONE;
        fail_set(fail, 431, "headers_too_large", "the chunked trailer section exceeds the limit");
        return HS_CHUNK_FAIL;
    }
    return 0;
}

int hs_chunked_step(hs_chunked_t *st, const char *p, size_t n, size_t *consumed, const char **data,
                    size_t *data_len, hs_fail_t *fail)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = (unsigned char)p[i];

        switch (st->state) {
        case CS_SIZE:
            if (is_hex(c)) {
                if (++st->digits > CHUNK_SIZE_MAX_DIGITS)
                    return chunk_bad(st, fail, "chunk size too large");
                st->size = st->size * 16 + (uint64_t)hex_val(c);
            } else if (st->digits == 0) {
                return chunk_bad(st, fail, "malformed chunk size");
            } else if (c == ';') {
                st->state = CS_EXT;
            } else if (c == ' ' || c == '\t') {
                st->state = CS_SIZE_WS;
            } else if (c == '\r') {
                st->state = CS_SIZE_LF;
            } else {
                return chunk_bad(st, fail, "malformed chunk size");
            }
            break;
        case CS_SIZE_WS: /* BWS before a chunk extension */
            if (c == ';')
                st->state = CS_EXT;
            else if (c != ' ' && c != '\t')
                return chunk_bad(st, fail, "malformed chunk size");
            break;
        case CS_EXT:
            /* Extensions are ignored, but bounded and free of control bytes. */
            if (c == '\r')
                st->state = CS_SIZE_LF;
            else if (!is_value_char(c) || ++st->ext_len > CHUNK_EXT_MAX)
                return chunk_bad(st, fail, "malformed chunk extension");
            break;
        case CS_SIZE_LF:
            if (c != '\n')
                return chunk_bad(st, fail, "a chunk size line does not end with CRLF");
            st->digits = 0;
            st->ext_len = 0;
            if (st->size == 0) {
                st->state = CS_TRAILER;
            } else {
                if (st->size > st->max_body - st->total) {
                    st->state = CS_DONE;
                    *consumed = i + 1;
                    fail_set(fail, 413, "payload_too_large",
                             "the request body exceeds the route's size limit");
                    return HS_CHUNK_FAIL;
                }
                st->state = CS_DATA;
            }
            break;
        case CS_DATA: {
            size_t take = n - i;

            if (take > st->size)
                take = (size_t)st->size;
            *data = p + i;
            *data_len = take;
            st->size -= take;
            st->total += take;
            if (st->size == 0)
                st->state = CS_DATA_CR;
            *consumed = i + take;
            return HS_CHUNK_DATA;
        }
        case CS_DATA_CR:
            if (c != '\r')
                return chunk_bad(st, fail, "chunk data is not followed by CRLF");
            st->state = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (c != '\n')
                return chunk_bad(st, fail, "chunk data is not followed by CRLF");
            st->size = 0;
            st->state = CS_SIZE;
            break;
        case CS_TRAILER:
            if (trailer_byte(st, fail) != 0)
                return HS_CHUNK_FAIL;
            if (c == '\r') {
                st->state = CS_END_LF;
            } else if (hs_is_tchar(c)) {
                if (++st->trailers > st->lim.max_headers) {
                    st->state = CS_DONE;
                    fail_set(fail, 431, "headers_too_large", "too many trailer fields");
                    return HS_CHUNK_FAIL;
                }
                st->state = CS_TNAME;
            } else if (c == ' ' || c == '\t') {
                return chunk_bad(st, fail, "obsolete line folding (obs-fold) is not allowed");
            } else {
                return chunk_bad(st, fail, "invalid trailer field");
            }
            break;
        case CS_TNAME:
            if (trailer_byte(st, fail) != 0)
                return HS_CHUNK_FAIL;
            if (c == ':')
                st->state = CS_TVALUE;
            else if (!hs_is_tchar(c))
                return chunk_bad(st, fail, "invalid trailer field");
            break;
        case CS_TVALUE:
            if (trailer_byte(st, fail) != 0)
                return HS_CHUNK_FAIL;
            if (c == '\r')
                st->state = CS_TLF;
            else if (!is_value_char(c))
                return chunk_bad(st, fail, "invalid character in a trailer value");
            break;
        case CS_TLF:
            if (c != '\n')
                return chunk_bad(st, fail, "a line contains a bare CR");
            st->state = CS_TRAILER;
            break;
        case CS_END_LF:
            if (c != '\n')
                return chunk_bad(st, fail, "a line contains a bare CR");
            st->state = CS_DONE;
            *consumed = i + 1;
            return HS_CHUNK_DONE;
        default:
            return chunk_bad(st, fail, "chunked body already complete");
        }
        i++;
    }
    *consumed = i;
    return HS_CHUNK_MORE;
}

/* ---- Addresses ---- */

int hs_addr_bytes(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int hs_addr_parse(const char *s, size_t len, uint8_t out[16])
{
    char buf[INET6_ADDRSTRLEN];
    struct in_addr a4;

    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, buf, out) == 1 ? 0 : -1;
}

static bool is_v4_mapped(const uint8_t a[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    return memcmp(a, prefix, 12) == 0;
}

void hs_addr_format(const uint8_t addr[16], char *buf, size_t len)
{
    if (is_v4_mapped(addr)) {
        if (!inet_ntop(AF_INET, addr + 12, buf, (socklen_t)len))
            snprintf(buf, len, "?");
    } else if (!inet_ntop(AF_INET6, addr, buf, (socklen_t)len)) {
        snprintf(buf, len, "?");
    }
}

int hs_cidr_parse(const char *s, hs_cidr_t *out, char *err, size_t errlen)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    int max_bits, bits;
    char *endp;
    long v;

    if (hs_addr_parse(s, alen, out->addr) != 0)
        return jn_errorf(err, errlen,
                         "trusted proxy '%s': expected an IP address or CIDR such as "
                         "10.0.0.0/8 or fd00::/8",
                         s);
    max_bits = is_v4_mapped(out->addr) && memchr(s, ':', alen) == NULL ? 32 : 128;
    bits = max_bits;
    if (slash) {
        if (!isdigit((unsigned char)slash[1]))
            return jn_errorf(err, errlen, "trusted proxy '%s': the prefix length is not a number",
                             s);
        v = strtol(slash + 1, &endp, 10);
        if (*endp != '\0' || v < 0 || v > max_bits)
            return jn_errorf(err, errlen, "trusted proxy '%s': the prefix length must be 0..%d", s,
                             max_bits);
        bits = (int)v;
    }
    out->bits = max_bits == 32 ? bits + 96 : bits;
    /* Clear the host bits so that matching compares prefixes only. */
    for (int i = 0; i < 16; i++) {
        int keep = out->bits - i * 8;

        if (keep <= 0)
            out->addr[i] = 0;
        else if (keep < 8)
            out->addr[i] &= (uint8_t)(0xff << (8 - keep));
    }
    return 0;
}

bool hs_cidr_match(const hs_cidr_t *c, const uint8_t addr[16])
{
    int full = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->addr, addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    return (addr[full] & (uint8_t)(0xff << (8 - rest))) == c->addr[full];
}

int jn_http_listen_parse(const char *listen, struct sockaddr_storage *out, char *err, size_t errlen)
{
    static const char form[] = "expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
    char host[INET6_ADDRSTRLEN];
    const char *port_s, *colon;
    size_t hlen;
    char *endp;
    long port;

    memset(out, 0, sizeof *out);
    if (!listen || !*listen)
        return jn_errorf(err, errlen, "listen address is empty (%s)", form);
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');

        if (!close)
            return jn_errorf(err, errlen, "listen address '%s': missing ']' (%s)", listen, form);
        hlen = (size_t)(close - listen - 1);
        if (close[1] != ':')
            return jn_errorf(err, errlen, "listen address '%s': missing ':PORT' after ']' (%s)",
                             listen, form);
        if (hlen == 0 || hlen >= sizeof host)
            return jn_errorf(err, errlen, "listen address '%s': invalid IPv6 address", listen);
        memcpy(host, listen + 1, hlen);
        host[hlen] = '\0';
        port_s = close + 2;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return jn_errorf(err, errlen, "listen address '%s': missing ':PORT' (%s)", listen,
                             form);
        if (memchr(listen, ':', (size_t)(colon - listen)))
            return jn_errorf(err, errlen,
                             "listen address '%s': an IPv6 address must be in brackets, "
                             "e.g. [::1]:8080",
                             listen);
        hlen = (size_t)(colon - listen);
        if (hlen == 0 || hlen >= sizeof host)
            return jn_errorf(err, errlen, "listen address '%s': missing IP address (%s)", listen,
                             form);
        memcpy(host, listen, hlen);
        host[hlen] = '\0';
        port_s = colon + 1;
    }
    if (!isdigit((unsigned char)port_s[0]))
        return jn_errorf(err, errlen, "listen address '%s': the port must be a number 0..65535",
                         listen);
    port = strtol(port_s, &endp, 10);
    if (*endp != '\0' || port < 0 || port > 65535 || endp - port_s > 5)
        return jn_errorf(err, errlen, "listen address '%s': the port must be a number 0..65535",
                         listen);
    if (listen[0] == '[') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;

        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            return jn_errorf(err, errlen, "listen address '%s': '%s' is not an IPv6 address",
                             listen, host);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)out;

        if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
            return jn_errorf(err, errlen,
                             "listen address '%s': '%s' is not an IPv4 address (host names are "
                             "not accepted; use an IP literal)",
                             listen, host);
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
    }
    return 0;
}
