/* AWS STS AssumeRole: the form body of the call and a strict reader for the
 * XML STS answers with. The reader builds a small tree of the document in a
 * fixed pool (no recursion beyond XML_MAX_DEPTH, no allocation per node);
 * decoded text lands in one scratch buffer that is wiped before it is freed,
 * because it holds the temporary secret key and session token. */
#include "junction/sts.h"
#include "junction/secmem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define XML_MAX_NODES 256
#define XML_MAX_DEPTH 16
#define ACCESS_KEY_ID_MIN 16
#define ACCESS_KEY_ID_MAX 128
#define SECRET_MAX 1024
#define SESSION_TOKEN_MAX 16384

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- the request --------------------------------------------------------- */

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = (*len + n + 1) * 2;
        char *nb = malloc(ncap);
        if (nb == NULL)
            return -1;
        if (*buf != NULL) {
            memcpy(nb, *buf, *len);
            OPENSSL_cleanse(*buf, *len);
            free(*buf);
        }
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* name=value with value percent-encoded: RFC 3986 unreserved characters as
 * they are, every other byte as %XX (what SigV4 and the AWS query API expect). */
static int append_param(char **buf, size_t *len, size_t *cap, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    if ((*len > 0 && append(buf, len, cap, "&", 1) < 0) ||
        append(buf, len, cap, name, strlen(name)) < 0 || append(buf, len, cap, "=", 1) < 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        int plain = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        if (append(buf, len, cap, plain ? (const char *)p : esc, plain ? 1 : 3) < 0)
            return -1;
    }
    return 0;
}

int jn_sts_assume_role_body(const jn_sts_assume_role_t *p, char **body, size_t *len)
{
    char *buf = NULL, duration[16];
    size_t n = 0, cap = 0;

    if (body != NULL)
        *body = NULL;
    if (len != NULL)
        *len = 0;
    if (p == NULL || body == NULL || p->role_arn == NULL || p->session_name == NULL ||
        p->duration_seconds <= 0)
        return -1;
    snprintf(duration, sizeof(duration), "%d", p->duration_seconds);
    if (append_param(&buf, &n, &cap, "Action", "AssumeRole") < 0 ||
        append_param(&buf, &n, &cap, "Version", JN_STS_VERSION) < 0 ||
        append_param(&buf, &n, &cap, "RoleArn", p->role_arn) < 0 ||
        append_param(&buf, &n, &cap, "RoleSessionName", p->session_name) < 0 ||
        append_param(&buf, &n, &cap, "DurationSeconds", duration) < 0 ||
        (p->external_id != NULL &&
         append_param(&buf, &n, &cap, "ExternalId", p->external_id) < 0)) {
        if (buf != NULL) {
            OPENSSL_cleanse(buf, n);
            free(buf);
        }
        return -1;
    }
    *body = buf;
    if (len != NULL)
        *len = n;
    return 0;
}

/* ---- the XML reader ------------------------------------------------------ */

typedef struct xml_node {
    const char *name; /* into the document, not NUL-terminated */
    size_t name_len;
    const char *text; /* decoded and NUL-terminated in the scratch buffer; NULL with children */
    size_t text_len;
    struct xml_node *child, *last, *next;
} xml_node_t;

typedef struct {
    const char *doc, *p, *end;
    xml_node_t *nodes;
    size_t nnodes;
    char *scratch; /* decoded text: never longer than the document */
    size_t used;
    const char *why; /* the first error */
    size_t at;
} xml_t;

static int xml_fail(xml_t *x, const char *why)
{
    if (x->why == NULL) {
        x->why = why;
        x->at = (size_t)(x->p - x->doc);
    }
    return -1;
}

static int at(const xml_t *x, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(x->end - x->p) >= n && memcmp(x->p, lit, n) == 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void skip_space(xml_t *x)
{
    while (x->p < x->end && is_space(*x->p))
        x->p++;
}

static int name_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || c >= 0x80;
}

static int name_char(unsigned char c)
{
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static int parse_name(xml_t *x, const char **name, size_t *len)
{
    const char *s = x->p;
    if (x->p >= x->end || !name_start((unsigned char)*x->p))
        return xml_fail(x, "expected a name");
    while (x->p < x->end && name_char((unsigned char)*x->p))
        x->p++;
    *name = s;
    *len = (size_t)(x->p - s);
    return 0;
}

/* Characters XML 1.0 allows in a document (bytes; UTF-8 sequences pass). */
static int xml_char(unsigned char c)
{
    return c >= 0x20 || c == '\t' || c == '\r' || c == '\n';
}

/* "&...;" at x->p: appends the character to the scratch buffer (or only
 * checks it when `keep` is 0). */
static int parse_ref(xml_t *x, int keep)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
    unsigned long cp = 0;
    char utf8[4];
    size_t n = 0;

    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        if (at(x, named[i].name)) {
            x->p += strlen(named[i].name);
            if (keep)
                x->scratch[x->used++] = named[i].c;
            return 0;
        }
    }
    if (!at(x, "&#"))
        return xml_fail(x, "unknown entity (only &lt; &gt; &amp; &quot; &apos; and &#...; exist "
                           "without a DTD)");
    x->p += 2;
    int hex = x->p < x->end && *x->p == 'x';
    x->p += hex;
    const char *digits = x->p;
    while (x->p < x->end && *x->p != ';' && x->p - digits < 8) {
        char c = *x->p;
        int v = c >= '0' && c <= '9'          ? c - '0'
                : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                              : -1;
        if (v < 0)
            return xml_fail(x, "invalid character reference");
        cp = cp * (hex ? 16 : 10) + (unsigned long)v;
        x->p++;
    }
    if (x->p == digits || x->p >= x->end || *x->p != ';')
        return xml_fail(x, "invalid character reference");
    x->p++;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF ||
        (cp < 0x80 && !xml_char((unsigned char)cp)))
        return xml_fail(x, "character reference to a character XML does not allow");
    if (cp < 0x80) {
        utf8[n++] = (char)cp;
    } else if (cp < 0x800) {
        utf8[n++] = (char)(0xC0 | (cp >> 6));
        utf8[n++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        utf8[n++] = (char)(0xE0 | (cp >> 12));
        utf8[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        utf8[n++] = (char)(0x80 | (cp & 0x3F));
    } else {
        utf8[n++] = (char)(0xF0 | (cp >> 18));
        utf8[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        utf8[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        utf8[n++] = (char)(0x80 | (cp & 0x3F));
    }
    /* A reference is at least 4 bytes ("&#9;"), so its character fits where
     * it stood: the scratch buffer never outgrows the document. */
    if (keep) {
        memcpy(x->scratch + x->used, utf8, n);
        x->used += n;
    }
    return 0;
}

static int skip_comment(xml_t *x)
{
    x->p += 4; /* "<!--" */
    for (; x->p + 1 < x->end; x->p++) {
        if (x->p[0] == '-' && x->p[1] == '-') {
            if (x->p + 2 < x->end && x->p[2] == '>') {
                x->p += 3;
                return 0;
            }
            return xml_fail(x, "'--' inside a comment");
        }
        if (!xml_char((unsigned char)*x->p))
            return xml_fail(x, "control character in a comment");
    }
    return xml_fail(x, "unterminated comment");
}

/* Whitespace and comments between elements; refuses what this reader does
 * not accept. */
static int skip_misc(xml_t *x)
{
    for (;;) {
        skip_space(x);
        if (at(x, "<!--")) {
            if (skip_comment(x) < 0)
                return -1;
        } else if (at(x, "<!DOCTYPE")) {
            return xml_fail(x, "document type declarations are refused");
        } else if (at(x, "<?")) {
            return xml_fail(x, "processing instructions are refused");
        } else {
            return 0;
        }
    }
}

static int parse_attributes(xml_t *x)
{
    for (;;) {
        const char *name;
        size_t len;
        int spaced = x->p < x->end && is_space(*x->p);
        skip_space(x);
        if (x->p >= x->end)
            return xml_fail(x, "unterminated start tag");
        if (*x->p == '>' || *x->p == '/')
            return 0;
        if (!spaced)
            return xml_fail(x, "expected whitespace before an attribute");
        if (parse_name(x, &name, &len) < 0)
            return -1;
        skip_space(x);
        if (x->p >= x->end || *x->p != '=')
            return xml_fail(x, "expected '=' after an attribute name");
        x->p++;
        skip_space(x);
        if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
            return xml_fail(x, "expected a quoted attribute value");
        char quote = *x->p++;
        while (x->p < x->end && *x->p != quote) {
            if (*x->p == '<' || !xml_char((unsigned char)*x->p))
                return xml_fail(x, "invalid character in an attribute value");
            if (*x->p == '&') {
                if (parse_ref(x, 0) < 0)
                    return -1;
            } else {
                x->p++;
            }
        }
        if (x->p >= x->end)
            return xml_fail(x, "unterminated attribute value");
        x->p++;
    }
}

static int parse_element(xml_t *x, int depth, xml_node_t **out)
{
    xml_node_t *n;
    size_t text_start, nonspace = 0;
    const char *end_name;
    size_t end_len;

    if (depth > XML_MAX_DEPTH)
        return xml_fail(x, "elements nested too deeply");
    if (x->nnodes >= XML_MAX_NODES)
        return xml_fail(x, "too many elements");
    n = &x->nodes[x->nnodes++];
    memset(n, 0, sizeof(*n));
    *out = n;
    x->p++; /* '<' */
    if (parse_name(x, &n->name, &n->name_len) < 0 || parse_attributes(x) < 0)
        return -1;
    text_start = x->used;
    if (*x->p == '/') {
        if (x->p + 1 >= x->end || x->p[1] != '>')
            return xml_fail(x, "expected '/>'");
        x->p += 2;
        x->scratch[x->used++] = '\0';
        n->text = x->scratch + text_start;
        return 0;
    }
    x->p++; /* '>' */
    for (;;) {
        if (x->p >= x->end)
            return xml_fail(x, "unterminated element");
        if (*x->p == '<') {
            if (at(x, "</"))
                break;
            if (at(x, "<!--")) {
                if (skip_comment(x) < 0)
                    return -1;
                continue;
            }
            if (at(x, "<![CDATA["))
                return xml_fail(x, "CDATA sections are refused");
            if (at(x, "<!") || at(x, "<?"))
                return xml_fail(x, "declarations and processing instructions are refused here");
            /* A child: the text so far must have been whitespace only, and
             * is dropped (the children's text is kept from here on). */
            if (nonspace)
                return xml_fail(x, "an element mixes text and elements");
            xml_node_t *c;
            if (n->child == NULL)
                x->used = text_start;
            if (parse_element(x, depth + 1, &c) < 0)
                return -1;
            if (n->child == NULL)
                n->child = c;
            else
                n->last->next = c;
            n->last = c;
            continue;
        }
        if (*x->p == '&') {
            if (parse_ref(x, n->child == NULL) < 0)
                return -1;
            nonspace = 1;
        } else if (!xml_char((unsigned char)*x->p)) {
            return xml_fail(x, "control character in text");
        } else {
            if (!is_space(*x->p))
                nonspace = 1;
            if (n->child == NULL)
                x->scratch[x->used++] = *x->p;
            x->p++;
        }
        if (nonspace && n->child != NULL)
            return xml_fail(x, "an element mixes text and elements");
    }
    const char *end_tag = x->p;
    x->p += 2; /* "</" */
    if (parse_name(x, &end_name, &end_len) < 0)
        return -1;
    if (end_len != n->name_len || memcmp(end_name, n->name, end_len) != 0) {
        x->p = end_tag;
        return xml_fail(x, "end tag does not match its start tag");
    }
    skip_space(x);
    if (x->p >= x->end || *x->p != '>')
        return xml_fail(x, "expected '>' after an end tag name");
    x->p++;
    if (n->child == NULL) {
        n->text_len = x->used - text_start;
        x->scratch[x->used++] = '\0';
        n->text = x->scratch + text_start;
    }
    return 0;
}

/* The document's root element, or NULL with x->why set. */
static xml_node_t *xml_parse(xml_t *x, const char *doc, size_t len)
{
    xml_node_t *root = NULL;

    memset(x, 0, sizeof(*x));
    x->doc = x->p = doc;
    x->end = doc + len;
    if (len > JN_STS_MAX_RESPONSE) {
        x->why = "the document is larger than 64 KiB";
        return NULL;
    }
    if (memchr(doc, '\0', len) != NULL) {
        x->p = memchr(doc, '\0', len);
        xml_fail(x, "NUL byte");
        return NULL;
    }
    x->nodes = calloc(XML_MAX_NODES, sizeof(*x->nodes));
    /* Each text byte and each element's terminating NUL: at most len + 1 per
     * element, and an element takes at least 4 bytes of the document. */
    x->scratch = malloc(len + 1);
    if (x->nodes == NULL || x->scratch == NULL) {
        x->why = "out of memory";
        return NULL;
    }
    if (at(x, "<?xml") && x->p + 5 < x->end && is_space(x->p[5])) {
        const char *close = NULL;
        for (const char *q = x->p; q + 1 < x->end; q++)
            if (q[0] == '?' && q[1] == '>') {
                close = q;
                break;
            }
        if (close == NULL) {
            xml_fail(x, "unterminated XML declaration");
            return NULL;
        }
        x->p = close + 2;
    }
    if (skip_misc(x) < 0)
        return NULL;
    if (x->p >= x->end || *x->p != '<') {
        xml_fail(x, x->p >= x->end ? "no root element" : "text before the root element");
        return NULL;
    }
    if (parse_element(x, 1, &root) < 0 || skip_misc(x) < 0)
        return NULL;
    if (x->p < x->end) {
        xml_fail(x, "content after the root element");
        return NULL;
    }
    return root;
}

static void xml_free(xml_t *x)
{
    if (x->scratch != NULL) {
        OPENSSL_cleanse(x->scratch, x->doc != NULL ? (size_t)(x->end - x->doc) + 1 : 0);
        free(x->scratch);
    }
    free(x->nodes);
    x->scratch = NULL;
    x->nodes = NULL;
}

static int is_named(const xml_node_t *n, const char *name)
{
    return n->name_len == strlen(name) && memcmp(n->name, name, n->name_len) == 0;
}

static size_t count_named(const xml_node_t *n, const char *name)
{
    size_t count = 0;
    for (const xml_node_t *c = n->child; c != NULL; c = c->next)
        count += is_named(c, name);
    return count;
}

/* The one child `name` of n; NULL with err when there is none or several. */
static const xml_node_t *one(const xml_node_t *n, const char *name, const char *path, char *err,
                             size_t errlen)
{
    const xml_node_t *found = NULL;
    for (const xml_node_t *c = n->child; c != NULL; c = c->next) {
        if (!is_named(c, name))
            continue;
        if (found != NULL) {
            fail(err, errlen, "%s has more than one <%s>", path, name);
            return NULL;
        }
        found = c;
    }
    if (found == NULL)
        fail(err, errlen, "%s has no <%s>", path, name);
    return found;
}

/* The text of the one leaf child `name`. */
static const xml_node_t *leaf(const xml_node_t *n, const char *name, const char *path, char *err,
                              size_t errlen)
{
    const xml_node_t *c = one(n, name, path, err, errlen);
    if (c != NULL && c->text == NULL) {
        fail(err, errlen, "%s <%s> holds elements, not text", path, name);
        return NULL;
    }
    return c;
}

static int parse_root(xml_t *x, const char *xml, size_t len, const xml_node_t **root,
                      const char *what, char *err, size_t errlen)
{
    if (xml == NULL) {
        xml = "";
        len = 0;
    }
    *root = xml_parse(x, xml, len);
    if (*root != NULL)
        return 0;
    if (x->doc != NULL && x->at > 0)
        return fail(err, errlen, "the %s is not well-formed XML: %s at byte %zu", what, x->why,
                    x->at);
    return fail(err, errlen, "the %s is not well-formed XML: %s", what, x->why);
}

/* ---- AssumeRole credentials --------------------------------------------- */

static int two_digits(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "2026-11-25T18:04:05Z", with an optional fraction and Z or a +hh:mm offset;
 * Unix seconds, or -1. */
static int64_t parse_time(const char *s, size_t len)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int yh, yl, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    size_t i = 19;

    if (len < 20 || two_digits(s, &yh) < 0 || two_digits(s + 2, &yl) < 0 || s[4] != '-' ||
        two_digits(s + 5, &mo) < 0 || s[7] != '-' || two_digits(s + 8, &d) < 0 || s[10] != 'T' ||
        two_digits(s + 11, &h) < 0 || s[13] != ':' || two_digits(s + 14, &mi) < 0 || s[16] != ':' ||
        two_digits(s + 17, &sec) < 0)
        return -1;
    int year = yh * 100 + yl;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 ||
        sec > 59)
        return -1;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start || i - start > 9)
            return -1;
    }
    if (i < len && s[i] == 'Z') {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && two_digits(s + i + 1, &oh) == 0 &&
               s[i + 3] == ':' && two_digits(s + i + 4, &om) == 0 && oh <= 23 && om <= 59) {
        sign = s[i] == '+' ? 1 : -1;
        i += 6;
    } else {
        return -1;
    }
    if (i != len)
        return -1;
    return days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
           sign * (oh * 3600 + om * 60);
}

static int printable_token(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static int access_key_id_ok(const char *s, size_t len)
{
    if (len < ACCESS_KEY_ID_MIN || len > ACCESS_KEY_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

#define RESPONSE_PATH "the AssumeRole response's <Credentials>"

int jn_sts_parse_credentials(const char *xml, size_t len, jn_sts_credentials_t *out, char *err,
                             size_t errlen)
{
    xml_t x;
    const xml_node_t *root, *result, *creds, *akid, *secret, *token, *exp;
    int rc = -1;

    if (out == NULL)
        return fail(err, errlen, "jn_sts_parse_credentials: no output pointer");
    memset(out, 0, sizeof(*out));
    if (parse_root(&x, xml, len, &root, "AssumeRole response", err, errlen) < 0)
        goto out;
    if (is_named(root, "ErrorResponse")) {
        fail(err, errlen, "the response is an STS ErrorResponse, not an AssumeRoleResponse");
        goto out;
    }
    if (!is_named(root, "AssumeRoleResponse")) {
        fail(err, errlen, "the response's root element is not <AssumeRoleResponse>");
        goto out;
    }
    if ((result = one(root, "AssumeRoleResult", "the AssumeRole response", err, errlen)) == NULL ||
        (creds = one(result, "Credentials", "the AssumeRole response's <AssumeRoleResult>", err,
                     errlen)) == NULL ||
        (akid = leaf(creds, "AccessKeyId", RESPONSE_PATH, err, errlen)) == NULL ||
        (secret = leaf(creds, "SecretAccessKey", RESPONSE_PATH, err, errlen)) == NULL ||
        (token = leaf(creds, "SessionToken", RESPONSE_PATH, err, errlen)) == NULL ||
        (exp = leaf(creds, "Expiration", RESPONSE_PATH, err, errlen)) == NULL)
        goto out;
    if (!access_key_id_ok(akid->text, akid->text_len)) {
        fail(err, errlen, RESPONSE_PATH " AccessKeyId is not 16 to 128 letters and digits");
        goto out;
    }
    if (!printable_token(secret->text, secret->text_len, SECRET_MAX)) {
        fail(err, errlen,
             RESPONSE_PATH " SecretAccessKey is not 1 to %d printable characters without spaces",
             SECRET_MAX);
        goto out;
    }
    if (!printable_token(token->text, token->text_len, SESSION_TOKEN_MAX)) {
        fail(err, errlen,
             RESPONSE_PATH " SessionToken is not 1 to %d printable characters without spaces",
             SESSION_TOKEN_MAX);
        goto out;
    }
    if ((out->expiration = parse_time(exp->text, exp->text_len)) < 0) {
        fail(err, errlen,
             RESPONSE_PATH " Expiration is not an ISO 8601 time (2026-01-31T12:00:00Z)");
        goto out;
    }
    size_t total = akid->text_len + secret->text_len + token->text_len + 3;
    char *mem = jn_secmem_alloc(total);
    if (mem == NULL) {
        fail(err, errlen, "out of memory");
        goto out;
    }
    out->access_key_id = mem;
    memcpy(mem, akid->text, akid->text_len + 1);
    out->secret_access_key = mem + akid->text_len + 1;
    memcpy(out->secret_access_key, secret->text, secret->text_len + 1);
    out->session_token = out->secret_access_key + secret->text_len + 1;
    memcpy(out->session_token, token->text, token->text_len + 1);
    rc = 0;
out:
    if (rc < 0)
        out->expiration = 0;
    xml_free(&x);
    return rc;
}

void jn_sts_credentials_free(jn_sts_credentials_t *c)
{
    if (c == NULL)
        return;
    jn_secmem_free(c->access_key_id); /* the one allocation */
    memset(c, 0, sizeof(*c));
}

/* ---- ErrorResponse ------------------------------------------------------- */

static int code_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

/* Printable ASCII; whitespace runs become one space, other bytes '?'. */
static void copy_message(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_space((char)c)) {
            space = o > 0;
            continue;
        }
        if (o + (size_t)space + 1 >= outlen) {
            if (outlen > 4) {
                o = o > outlen - 4 ? outlen - 4 : o;
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (space)
            out[o++] = ' ';
        space = 0;
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
}

int jn_sts_parse_error(const char *xml, size_t len, jn_sts_error_t *out, char *err, size_t errlen)
{
    xml_t x;
    const xml_node_t *root, *error, *code, *message;
    int rc = -1;

    if (out == NULL)
        return fail(err, errlen, "jn_sts_parse_error: no output pointer");
    memset(out, 0, sizeof(*out));
    if (parse_root(&x, xml, len, &root, "error response", err, errlen) < 0)
        goto out;
    if (!is_named(root, "ErrorResponse")) {
        fail(err, errlen, "the response's root element is not <ErrorResponse>");
        goto out;
    }
    if ((error = one(root, "Error", "the ErrorResponse", err, errlen)) == NULL ||
        (code = leaf(error, "Code", "the ErrorResponse's <Error>", err, errlen)) == NULL)
        goto out;
    message = NULL;
    if (count_named(error, "Message") > 0 &&
        (message = leaf(error, "Message", "the ErrorResponse's <Error>", err, errlen)) == NULL)
        goto out;
    if (code->text_len == 0 || code->text_len >= sizeof(out->code)) {
        fail(err, errlen, "the ErrorResponse's Code is not an error code");
        goto out;
    }
    for (size_t i = 0; i < code->text_len; i++) {
        if (!code_char(code->text[i])) {
            fail(err, errlen, "the ErrorResponse's Code is not an error code");
            goto out;
        }
    }
    memcpy(out->code, code->text, code->text_len + 1);
    if (message != NULL)
        copy_message(message->text, message->text_len, out->message, sizeof(out->message));
    rc = 0;
out:
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    xml_free(&x);
    return rc;
}
