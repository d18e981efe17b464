#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "junction/sts.h"

/* Every secret in these documents contains CANARY: no message may. */
#define CANARY "CANARY"

/* ---- Wipe log ------------------------------------------------------------
 * The core wipes with OPENSSL_cleanse; this definition takes precedence over
 * libcrypto's in the test binary, notes whether a wiped region held the
 * canary, and still wipes. */

static int canary_wiped;

void OPENSSL_cleanse(void *ptr, size_t len)
{
    volatile unsigned char *p = ptr;
    if (len >= strlen(CANARY) && memmem(ptr, len, CANARY, strlen(CANARY)) != NULL)
        canary_wiped++;
    for (size_t i = 0; i < len; i++)
        p[i] = 0;
}

/* AWS's documented AssumeRole answer, with the secrets marked. */
#define GOOD_RESPONSE                                                                              \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
    "<!-- a comment before the root -->\n"                                                         \
    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"                   \
    "  <AssumeRoleResult>\n"                                                                       \
    "    <SourceIdentity>Alice</SourceIdentity>\n"                                                 \
    "    <AssumedRoleUser>\n"                                                                      \
    "      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>\n"                        \
    "      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>\n"                               \
    "    </AssumedRoleUser>\n"                                                                     \
    "    <Credentials>\n"                                                                          \
    "      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>\n"                                      \
    "      <SecretAccessKey>" CANARY                                                               \
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"                                \
    "      <SessionToken>" CANARY                                                                  \
    "-AQoDYXdzEPT//////////wEXAMPLEtc764+bNrZFD0w==</SessionToken>\n"                              \
    "      <Expiration>2019-11-09T13:34:41Z</Expiration>\n"                                        \
    "    </Credentials>\n"                                                                         \
    "    <!-- comments between elements are fine -->\n"                                            \
    "    <PackedPolicySize>6</PackedPolicySize>\n"                                                 \
    "  </AssumeRoleResult>\n"                                                                      \
    "  <ResponseMetadata>\n"                                                                       \
    "    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n"                            \
    "  </ResponseMetadata>\n"                                                                      \
    "</AssumeRoleResponse>"

/* A response whose Credentials element holds `creds`. */
static char *response_with(const char *creds)
{
    static const char head[] = "<AssumeRoleResponse><AssumeRoleResult><Credentials>";
    static const char tail[] = "</Credentials></AssumeRoleResult></AssumeRoleResponse>";
    size_t n = strlen(head) + strlen(creds) + strlen(tail) + 1;
    char *doc = malloc(n);
    assert_non_null(doc);
    snprintf(doc, n, "%s%s%s", head, creds, tail);
    return doc;
}

#define AKID "<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>"
#define SECRET "<SecretAccessKey>" CANARY "-secret</SecretAccessKey>"
#define TOKEN "<SessionToken>" CANARY "-token</SessionToken>"
#define EXPIRES "<Expiration>2019-11-09T13:34:41Z</Expiration>"

static void expect_credentials_error(const char *doc, size_t len, const char *want)
{
    jn_sts_credentials_t c;
    char err[256] = "";
    memset(&c, 0x5a, sizeof(c));
    assert_int_equal(jn_sts_parse_credentials(doc, len, &c, err, sizeof(err)), -1);
    assert_null(c.access_key_id);
    assert_null(c.secret_access_key);
    assert_null(c.session_token);
    assert_int_equal(c.expiration, 0);
    if (strcmp(err, want) != 0)
        fail_msg("document: %.*s\n got: %s\nwant: %s", (int)(len > 300 ? 300 : len), doc, err,
                 want);
    assert_null(strstr(err, CANARY));
}

/* For literals, which may hold a NUL. */
#define EXPECT_CREDS_XML(lit, want) expect_credentials_error(lit, sizeof(lit) - 1, want)

static void expect_creds_error(const char *creds, const char *want)
{
    char *doc = response_with(creds);
    expect_credentials_error(doc, strlen(doc), want);
    free(doc);
}

static void expect_expiration(const char *when, int64_t want)
{
    char creds[256];
    jn_sts_credentials_t c;
    char err[256] = "";
    snprintf(creds, sizeof(creds), AKID SECRET TOKEN "<Expiration>%s</Expiration>", when);
    char *doc = response_with(creds);
    if (jn_sts_parse_credentials(doc, strlen(doc), &c, err, sizeof(err)) != 0)
        fail_msg("%s: %s", when, err);
    assert_int_equal(c.expiration, want);
    jn_sts_credentials_free(&c);
    free(doc);
}

/* ---- The request --------------------------------------------------------- */

static void test_assume_role_body(void **state)
{
    (void)state;
    char *body = NULL;
    size_t len = 0;
    jn_sts_assume_role_t p = {"arn:aws:iam::123456789012:role/Audit", "junction", 3600, NULL};
    assert_int_equal(jn_sts_assume_role_body(&p, &body, &len), 0);
    assert_string_equal(body, "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%"
                              "3A123456789012%3Arole%2FAudit&RoleSessionName=junction&"
                              "DurationSeconds=3600");
    assert_int_equal(len, strlen(body));
    free(body);

    /* Every character AWS allows in an ExternalId, percent-encoded per RFC 3986. */
    p = (jn_sts_assume_role_t){"arn:aws-cn:iam::123456789012:role/a/b", "s.n@x=1,2+3", 900,
                               "Ext_id+=,.@:/-~9"};
    assert_int_equal(jn_sts_assume_role_body(&p, &body, &len), 0);
    assert_string_equal(body, "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws-cn%3Aiam%"
                              "3A%3A123456789012%3Arole%2Fa%2Fb&RoleSessionName=s.n%40x%3D1%2C2%"
                              "2B3&DurationSeconds=900&ExternalId=Ext_id%2B%3D%2C.%40%3A%2F-~9");
    free(body);

    /* Missing arguments. */
    assert_int_equal(jn_sts_assume_role_body(NULL, &body, &len), -1);
    assert_null(body);
    p = (jn_sts_assume_role_t){NULL, "s", 900, NULL};
    assert_int_equal(jn_sts_assume_role_body(&p, &body, &len), -1);
    p = (jn_sts_assume_role_t){"arn", NULL, 900, NULL};
    assert_int_equal(jn_sts_assume_role_body(&p, &body, &len), -1);
    p = (jn_sts_assume_role_t){"arn", "s", 0, NULL};
    assert_int_equal(jn_sts_assume_role_body(&p, &body, &len), -1);
    assert_int_equal(jn_sts_assume_role_body(&p, NULL, &len), -1);
}

/* ---- Credentials ---------------------------------------------------------- */

static void test_credentials(void **state)
{
    (void)state;
    jn_sts_credentials_t c;
    char err[256] = "";
    const char *doc = GOOD_RESPONSE;

    canary_wiped = 0;
    assert_int_equal(jn_sts_parse_credentials(doc, strlen(doc), &c, err, sizeof(err)), 0);
    assert_string_equal(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_string_equal(c.secret_access_key, CANARY "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    assert_string_equal(c.session_token, CANARY "-AQoDYXdzEPT//////////wEXAMPLEtc764+bNrZFD0w==");
    assert_int_equal(c.expiration, INT64_C(1573306481));
    /* The scratch text that held the secrets was wiped. */
    assert_true(canary_wiped > 0);
    canary_wiped = 0;
    jn_sts_credentials_free(&c);
    assert_true(canary_wiped > 0);
    assert_null(c.access_key_id);
    jn_sts_credentials_free(&c);
    jn_sts_credentials_free(NULL);

    /* Entities and character references are decoded; an empty element is "". */
    char *d = response_with("<AccessKeyId>ASIA&#x49;OSFODNN7EXAMPLE</AccessKeyId>"
                            "<SecretAccessKey>" CANARY "&amp;&lt;&gt;&quot;&apos;&#43;</"
                            "SecretAccessKey>" TOKEN EXPIRES "<Unused/><Empty></Empty>");
    assert_int_equal(jn_sts_parse_credentials(d, strlen(d), &c, err, sizeof(err)), 0);
    assert_string_equal(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_string_equal(c.secret_access_key, CANARY "&<>\"'+");
    jn_sts_credentials_free(&c);
    free(d);

    /* Expiration: fractions and offsets. */
    expect_expiration("2011-07-15T23:28:33.359Z", INT64_C(1310772513));
    expect_expiration("2024-02-29T12:00:00+02:00", INT64_C(1709200800));
    expect_expiration("2024-02-29T12:00:00.5-05:30", INT64_C(1709227800));
}

static void test_credentials_refused(void **state)
{
    (void)state;
    const char *doc = GOOD_RESPONSE;

    /* Structure. */
    EXPECT_CREDS_XML("<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>",
                     "the response is an STS ErrorResponse, not an AssumeRoleResponse");
    EXPECT_CREDS_XML("<GetSessionTokenResponse/>",
                     "the response's root element is not <AssumeRoleResponse>");
    EXPECT_CREDS_XML("<AssumeRoleResponse></AssumeRoleResponse>",
                     "the AssumeRole response has no <AssumeRoleResult>");
    EXPECT_CREDS_XML(
        "<AssumeRoleResponse><AssumeRoleResult/><AssumeRoleResult/></AssumeRoleResponse>",
        "the AssumeRole response has more than one <AssumeRoleResult>");
    EXPECT_CREDS_XML(
        "<AssumeRoleResponse><AssumeRoleResult></AssumeRoleResult></AssumeRoleResponse>",
        "the AssumeRole response's <AssumeRoleResult> has no <Credentials>");
    expect_creds_error(SECRET TOKEN EXPIRES,
                       "the AssumeRole response's <Credentials> has no <AccessKeyId>");
    expect_creds_error(AKID TOKEN EXPIRES,
                       "the AssumeRole response's <Credentials> has no <SecretAccessKey>");
    expect_creds_error(AKID SECRET EXPIRES,
                       "the AssumeRole response's <Credentials> has no <SessionToken>");
    expect_creds_error(AKID SECRET TOKEN,
                       "the AssumeRole response's <Credentials> has no <Expiration>");
    expect_creds_error(AKID SECRET TOKEN TOKEN EXPIRES,
                       "the AssumeRole response's <Credentials> has more than one <SessionToken>");
    expect_creds_error(AKID SECRET "<SessionToken><Part>" CANARY "</Part></SessionToken>" EXPIRES,
                       "the AssumeRole response's <Credentials> <SessionToken> holds elements, "
                       "not text");

    /* Values. */
    expect_creds_error("<AccessKeyId>ASIASHORT</AccessKeyId>" SECRET TOKEN EXPIRES,
                       "the AssumeRole response's <Credentials> AccessKeyId is not 16 to 128 "
                       "letters and digits");
    expect_creds_error("<AccessKeyId>ASIA/IOSFODNN7EXAMPLE</AccessKeyId>" SECRET TOKEN EXPIRES,
                       "the AssumeRole response's <Credentials> AccessKeyId is not 16 to 128 "
                       "letters and digits");
    expect_creds_error(AKID "<SecretAccessKey>" CANARY " x</SecretAccessKey>" TOKEN EXPIRES,
                       "the AssumeRole response's <Credentials> SecretAccessKey is not 1 to 1024 "
                       "printable characters without spaces");
    expect_creds_error(AKID "<SecretAccessKey></SecretAccessKey>" TOKEN EXPIRES,
                       "the AssumeRole response's <Credentials> SecretAccessKey is not 1 to 1024 "
                       "printable characters without spaces");
    expect_creds_error(AKID SECRET "<SessionToken>" CANARY "&#10;x</SessionToken>" EXPIRES,
                       "the AssumeRole response's <Credentials> SessionToken is not 1 to 16384 "
                       "printable characters without spaces");
    const char *bad_times[] = {"tomorrow",
                               "2019-11-09T13:34:41",
                               "2019-11-09 13:34:41Z",
                               "2019-02-29T00:00:00Z",
                               "2019-13-01T00:00:00Z",
                               "2019-11-09T24:00:00Z",
                               "2019-11-09T13:34:41.Z",
                               "2019-11-09T13:34:41+0200",
                               "2019-11-09T13:34:41ZZ",
                               " 2019-11-09T13:34:41Z"};
    for (size_t i = 0; i < sizeof(bad_times) / sizeof(bad_times[0]); i++) {
        char creds[256];
        snprintf(creds, sizeof(creds), AKID SECRET TOKEN "<Expiration>%s</Expiration>",
                 bad_times[i]);
        expect_creds_error(creds, "the AssumeRole response's <Credentials> Expiration is not an "
                                  "ISO 8601 time (2026-01-31T12:00:00Z)");
    }

    /* XML. */
    EXPECT_CREDS_XML("", "the AssumeRole response is not well-formed XML: no root "
                         "element");
    expect_credentials_error(NULL, 0,
                             "the AssumeRole response is not well-formed XML: no root "
                             "element");
    EXPECT_CREDS_XML("{\"Credentials\":{}}",
                     "the AssumeRole response is not well-formed XML: text before the "
                     "root element");
    EXPECT_CREDS_XML("<A><B></A></B>",
                     "the AssumeRole response is not well-formed XML: end tag does not "
                     "match its start tag at byte 6");
    EXPECT_CREDS_XML("<A>x</A><B/>",
                     "the AssumeRole response is not well-formed XML: content after the "
                     "root element at byte 8");
    EXPECT_CREDS_XML("<A>x<B/></A>",
                     "the AssumeRole response is not well-formed XML: an element mixes "
                     "text and elements at byte 4");
    EXPECT_CREDS_XML("<A><B/>x</A>",
                     "the AssumeRole response is not well-formed XML: an element mixes "
                     "text and elements at byte 8");
    EXPECT_CREDS_XML("<A>&foo;</A>",
                     "the AssumeRole response is not well-formed XML: unknown entity "
                     "(only &lt; &gt; &amp; &quot; &apos; and &#...; exist without a "
                     "DTD) at byte 3");
    EXPECT_CREDS_XML("<A>&#0;</A>", "the AssumeRole response is not well-formed XML: character "
                                    "reference to a character XML does not allow at byte 7");
    EXPECT_CREDS_XML("<A>&#xD800;</A>", "the AssumeRole response is not well-formed XML: character "
                                        "reference to a character XML does not allow at byte 11");
    EXPECT_CREDS_XML("<A>&#12a;</A>",
                     "the AssumeRole response is not well-formed XML: invalid character "
                     "reference at byte 7");
    EXPECT_CREDS_XML("<A>\x01</A>",
                     "the AssumeRole response is not well-formed XML: control character "
                     "in text at byte 3");
    EXPECT_CREDS_XML("<A>x\0y</A>",
                     "the AssumeRole response is not well-formed XML: NUL byte at byte 4");
    EXPECT_CREDS_XML("<A><![CDATA[x]]></A>",
                     "the AssumeRole response is not well-formed XML: CDATA sections are "
                     "refused at byte 3");
    EXPECT_CREDS_XML("<!DOCTYPE A [<!ENTITY x \"" CANARY "\">]><A>&x;</A>",
                     "the AssumeRole response is not well-formed XML: document type "
                     "declarations are refused");
    EXPECT_CREDS_XML("<?xml version=\"1.0\"?><?pi x?><A/>",
                     "the AssumeRole response is not well-formed XML: processing "
                     "instructions are refused at byte 21");
    EXPECT_CREDS_XML("<A><!-- a -- b --></A>",
                     "the AssumeRole response is not well-formed XML: '--' inside a "
                     "comment at byte 10");
    EXPECT_CREDS_XML("<A x=1/>",
                     "the AssumeRole response is not well-formed XML: expected a quoted "
                     "attribute value at byte 5");
    EXPECT_CREDS_XML("<A x=\"1\"y=\"2\"/>",
                     "the AssumeRole response is not well-formed XML: expected "
                     "whitespace before an attribute at byte 8");
    EXPECT_CREDS_XML("<A x=\"<\"/>",
                     "the AssumeRole response is not well-formed XML: invalid character "
                     "in an attribute value at byte 6");
    EXPECT_CREDS_XML("< A/>", "the AssumeRole response is not well-formed XML: expected a name at "
                              "byte 1");

    /* Limits: depth, element count, size. */
    char deep[512] = "";
    for (int i = 0; i < 17; i++)
        strcat(deep, "<A>");
    expect_credentials_error(deep, strlen(deep),
                             "the AssumeRole response is not well-formed XML: elements nested "
                             "too deeply at byte 48");
    size_t n = 4 + 257 * 4 + 5;
    char *many = malloc(n + 1);
    assert_non_null(many);
    strcpy(many, "<A>");
    for (int i = 0; i < 257; i++)
        strcat(many, "<B/>");
    strcat(many, "</A>");
    expect_credentials_error(many, strlen(many),
                             "the AssumeRole response is not well-formed XML: too many elements "
                             "at byte 1023");
    free(many);
    char *big = malloc(JN_STS_MAX_RESPONSE + 2);
    assert_non_null(big);
    memset(big, ' ', JN_STS_MAX_RESPONSE + 1);
    memcpy(big, "<A>", 3);
    memcpy(big + JN_STS_MAX_RESPONSE + 1 - 4, "</A>", 4);
    expect_credentials_error(big, JN_STS_MAX_RESPONSE + 1,
                             "the AssumeRole response is not well-formed XML: the document is "
                             "larger than 64 KiB");
    free(big);

    /* Every truncation of a good response fails cleanly, without a secret in
     * the message (ASan checks the reads). */
    for (size_t len = 0; len < strlen(doc); len++) {
        jn_sts_credentials_t c;
        char err[256] = "";
        char *copy = malloc(len + 1); /* exactly len readable bytes, plus a NUL ASan ignores */
        assert_non_null(copy);
        memcpy(copy, doc, len);
        copy[len] = '\0';
        assert_int_equal(jn_sts_parse_credentials(copy, len, &c, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
        assert_null(strstr(err, CANARY));
        free(copy);
    }
    /* Arguments. */
    char err[64];
    assert_int_equal(jn_sts_parse_credentials(doc, strlen(doc), NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "jn_sts_parse_credentials: no output pointer");
}

/* ---- ErrorResponse -------------------------------------------------------- */

static void expect_error_doc(const char *doc, const char *code, const char *message)
{
    jn_sts_error_t e;
    char err[256] = "";
    if (jn_sts_parse_error(doc, strlen(doc), &e, err, sizeof(err)) != 0)
        fail_msg("%s: %s", doc, err);
    assert_string_equal(e.code, code);
    assert_string_equal(e.message, message);
}

static void expect_not_error_doc(const char *doc, const char *want)
{
    jn_sts_error_t e;
    char err[256] = "";
    memset(&e, 0x5a, sizeof(e));
    assert_int_equal(jn_sts_parse_error(doc, strlen(doc), &e, err, sizeof(err)), -1);
    assert_string_equal(e.code, "");
    assert_string_equal(e.message, "");
    if (strcmp(err, want) != 0)
        fail_msg("%s:\n got: %s\nwant: %s", doc, err, want);
}

static void test_error_response(void **state)
{
    (void)state;
    expect_error_doc(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <Error>\n"
        "    <Type>Sender</Type>\n"
        "    <Code>AccessDenied</Code>\n"
        "    <Message>User: arn:aws:iam::123456789012:user/junction is not authorized to "
        "perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/Audit</Message>\n"
        "  </Error>\n"
        "  <RequestId>4c31b1b3-8a9d-4a5e-9f3a-0c2b2f5a1e11</RequestId>\n"
        "</ErrorResponse>\n",
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/junction is not authorized to perform: "
        "sts:AssumeRole on resource: arn:aws:iam::111122223333:role/Audit");
    /* Whitespace runs collapse; other control and non-ASCII bytes become '?'. */
    expect_error_doc("<ErrorResponse><Error><Code>ValidationError</Code><Message>\n  1 "
                     "validation\terror &amp; more\r\n caf\xc3\xa9 </Message></Error>"
                     "</ErrorResponse>",
                     "ValidationError", "1 validation error & more caf??");
    expect_error_doc("<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>",
                     "Throttling", "");
    expect_error_doc("<ErrorResponse><Error><Code>sts:Weird.Code_1-x</Code><Message/></Error>"
                     "</ErrorResponse>",
                     "sts:Weird.Code_1-x", "");

    /* A long message is shortened with "...". */
    char doc[2048], want[256];
    char *p = doc + sprintf(doc, "<ErrorResponse><Error><Code>X</Code><Message>");
    for (int i = 0; i < 600; i++)
        *p++ = (char)('a' + i % 26);
    strcpy(p, "</Message></Error></ErrorResponse>");
    for (int i = 0; i < 252; i++)
        want[i] = (char)('a' + i % 26);
    strcpy(want + 252, "...");
    expect_error_doc(doc, "X", want);

    expect_not_error_doc("<AssumeRoleResponse/>",
                         "the response's root element is not <ErrorResponse>");
    expect_not_error_doc("<ErrorResponse></ErrorResponse>", "the ErrorResponse has no <Error>");
    expect_not_error_doc("<ErrorResponse><Error><Message>m</Message></Error></ErrorResponse>",
                         "the ErrorResponse's <Error> has no <Code>");
    expect_not_error_doc("<ErrorResponse><Error><Code>A</Code><Code>B</Code></Error>"
                         "</ErrorResponse>",
                         "the ErrorResponse's <Error> has more than one <Code>");
    expect_not_error_doc("<ErrorResponse><Error><Code>A</Code><Message>a</Message><Message>b"
                         "</Message></Error></ErrorResponse>",
                         "the ErrorResponse's <Error> has more than one <Message>");
    expect_not_error_doc("<ErrorResponse><Error><Code>A</Code><Message><B/></Message></Error>"
                         "</ErrorResponse>",
                         "the ErrorResponse's <Error> <Message> holds elements, not text");
    expect_not_error_doc("<ErrorResponse><Error><Code>Access Denied</Code></Error>"
                         "</ErrorResponse>",
                         "the ErrorResponse's Code is not an error code");
    expect_not_error_doc("<ErrorResponse><Error><Code></Code></Error></ErrorResponse>",
                         "the ErrorResponse's Code is not an error code");
    expect_not_error_doc("{\"__type\":\"AccessDenied\"}",
                         "the error response is not well-formed XML: text before the root "
                         "element");
    expect_not_error_doc("<html><body>Service Unavailable</body></html",
                         "the error response is not well-formed XML: expected '>' after an end "
                         "tag name at byte 44");
    char err[64];
    assert_int_equal(jn_sts_parse_error("<a/>", 4, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "jn_sts_parse_error: no output pointer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assume_role_body),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_credentials_refused),
        cmocka_unit_test(test_error_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
