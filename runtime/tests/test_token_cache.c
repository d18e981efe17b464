/* What an exchanged token gives a request (jn_token_apply), and when a
 * provider's answer means the token is no good (jn_token_refused). The
 * exchanges themselves run against the simulator in spec/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "token_cache.h"

#define CANARY "CANARY"
#define NOW INT64_C(1440938160) /* 20150830T123600Z */

static jn_auth_t *parse(const char *type, const char *doc)
{
    jn_auth_t *a = NULL;
    char err[256];
    if (jn_auth_parse(type, doc, strlen(doc), &a, err, sizeof(err)) != 0)
        fail_msg("%s: %s", type, err);
    return a;
}

static jn_auth_t *role(void)
{
    return parse("aws_assume_role",
                 "{\"access_key_id\":\"AKIDBASE\",\"secret_access_key\":\"" CANARY "-base\","
                 "\"role_arn\":\"arn:aws:iam::111122223333:role/Audit\",\"region\":\"eu-west-1\","
                 "\"service\":\"iam\"}");
}

static jn_auth_t *client(void)
{
    return parse("client_credentials", "{\"client_id\":\"c\",\"client_secret\":\"" CANARY "-cs\","
                                       "\"token_url\":\"https://login.example.com/token\"}");
}

static const char *find_line(const jn_auth_result_t *out, const char *prefix)
{
    for (size_t i = 0; i < out->nheaders; i++)
        if (strncmp(out->headers[i], prefix, strlen(prefix)) == 0)
            return out->headers[i] + strlen(prefix);
    return NULL;
}

static void test_apply(void **state)
{
    (void)state;
    jn_auth_t *a = role();
    jn_auth_result_t out;
    char err[256];
    const char *hdrs[] = {"Accept: application/json"};
    jn_auth_request_t req = {.method = "GET",
                             .url = "https://iam.amazonaws.com/?Action=ListUsers",
                             .headers = hdrs,
                             .nheaders = 1,
                             .now = NOW};

    /* The temporary keys sign the request; the session token goes along. */
    assert_int_equal(
        jn_token_apply(a, "ASIATEMPKEY0000000001\n" CANARY "-temp/secret+\n" CANARY "-session==",
                       &req, &out, err, sizeof(err)),
        0);
    assert_int_equal(out.nheaders, 3);
    assert_string_equal(find_line(&out, "X-Amz-Date: "), "20150830T123600Z");
    assert_string_equal(find_line(&out, "X-Amz-Security-Token: "), CANARY "-session==");
    const char *auth = find_line(&out, "Authorization: ");
    assert_non_null(auth);
    assert_non_null(strstr(auth, "Credential=ASIATEMPKEY0000000001/20150830/eu-west-1/iam/"
                                 "aws4_request, SignedHeaders=accept;host;x-amz-date;"
                                 "x-amz-security-token, Signature="));
    assert_null(strstr(auth, CANARY));
    jn_auth_result_free(&out);

    /* A token that is not three lines is refused, without repeating it. */
    memset(&out, 0x5a, sizeof(out));
    assert_int_equal(
        jn_token_apply(a, "ASIATEMPKEY0000000001\n" CANARY, &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "aws_assume_role: malformed temporary keys");
    assert_null(out.headers);
    assert_int_equal(jn_token_apply(a, NULL, &req, &out, err, sizeof(err)), -1);
    jn_auth_free(a);

    /* A bearer token is its own line. */
    a = client();
    assert_int_equal(
        jn_token_apply(a, "Authorization: Bearer " CANARY, &req, &out, err, sizeof(err)), 0);
    assert_int_equal(out.nheaders, 1);
    assert_string_equal(out.headers[0], "Authorization: Bearer " CANARY);
    jn_auth_result_free(&out);
    jn_auth_free(a);

    /* A static credential has no token to apply. */
    a = parse("api_key", "{\"token\":\"" CANARY "\"}");
    assert_int_equal(jn_token_apply(a, "x", &req, &out, err, sizeof(err)), -1);
    assert_string_equal(err, "no token, or the credential has no token exchange");
    jn_auth_free(a);
}

static void test_refused(void **state)
{
    (void)state;
    jn_auth_t *a = role();
    const char *expired_xml = "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
                              "<Message>The security token included in the request is expired"
                              "</Message></Error></ErrorResponse>";
    const char *invalid_xml = "<ErrorResponse><Error><Code>InvalidClientTokenId</Code></Error>"
                              "</ErrorResponse>";
    const char *expired_json = "{\"__type\":\"com.amazon.coral.service#ExpiredTokenException\","
                               "\"message\":\"The security token included in the request is "
                               "expired\"}";
    const char *unrecognized_json = "{\"__type\":\"UnrecognizedClientException\"}";
    const char *denied = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>User is not "
                         "authorized</Message></Error></ErrorResponse>";
    const char *lookalike = "{\"message\":\"NotExpiredTokenYet\",\"code\":\"ExpiredTokens\"}";

    assert_int_equal(jn_token_refused(a, 403, expired_xml, strlen(expired_xml)), 1);
    assert_int_equal(jn_token_refused(a, 403, invalid_xml, strlen(invalid_xml)), 1);
    assert_int_equal(jn_token_refused(a, 400, expired_json, strlen(expired_json)), 1);
    assert_int_equal(jn_token_refused(a, 400, unrecognized_json, strlen(unrecognized_json)), 1);
    assert_int_equal(jn_token_refused(a, 401, "", 0), 1);
    /* Not a token problem: the keys stay. */
    assert_int_equal(jn_token_refused(a, 403, denied, strlen(denied)), 0);
    assert_int_equal(jn_token_refused(a, 403, lookalike, strlen(lookalike)), 0);
    assert_int_equal(jn_token_refused(a, 500, expired_xml, strlen(expired_xml)), 0);
    assert_int_equal(jn_token_refused(a, 200, expired_xml, strlen(expired_xml)), 0);
    assert_int_equal(jn_token_refused(a, 403, NULL, 0), 0);
    /* The code past the first 4 KiB is not looked for. */
    char *late = malloc(5000);
    assert_non_null(late);
    memset(late, ' ', 5000);
    memcpy(late + 4500, "ExpiredToken", 12);
    assert_int_equal(jn_token_refused(a, 403, late, 5000), 0);
    free(late);
    jn_auth_free(a);

    /* Bearer grants: 401 only. */
    a = client();
    assert_int_equal(jn_token_refused(a, 401, "", 0), 1);
    assert_int_equal(jn_token_refused(a, 403, expired_xml, strlen(expired_xml)), 0);
    jn_auth_free(a);
    /* Static credentials are never "refused tokens". */
    a = parse("api_key", "{\"token\":\"" CANARY "\"}");
    assert_int_equal(jn_token_refused(a, 401, "", 0), 0);
    jn_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
