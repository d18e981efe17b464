#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "junction/json.h"

static jn_json_t *parse_ok(const char *doc)
{
    jn_json_t *root = NULL;
    jn_json_error_t e;
    int rc = jn_json_parse(doc, strlen(doc), NULL, &root, &e);
    if (rc != 0)
        fail_msg("parse of %s failed: %s", doc, e.message);
    assert_non_null(root);
    assert_int_equal(e.code, 0);
    return root;
}

/* Parses `len` bytes expecting `code` at `offset`. */
static void expect_error_n(const char *doc, size_t len, const jn_json_limits_t *limits, int code,
                           size_t offset)
{
    jn_json_t *root = (jn_json_t *)&root;
    jn_json_error_t e;
    int rc = jn_json_parse(doc, len, limits, &root, &e);
    if (rc != code || e.offset != offset)
        fail_msg("%.*s: got %d at %zu (%s), want %d at %zu", (int)len, doc, rc, e.offset, e.message,
                 code, offset);
    assert_null(root);
    assert_int_equal(e.code, code);
    char want[128];
    snprintf(want, sizeof(want), "%s at byte %zu", jn_json_strerror(code), offset);
    assert_string_equal(e.message, want);
}

static void expect_error(const char *doc, int code, size_t offset)
{
    expect_error_n(doc, strlen(doc), NULL, code, offset);
}

static void test_valid_documents(void **state)
{
    (void)state;
    jn_json_t *root = parse_ok(" {\"a\":[1,-2.5e+3,true,false,null,{\"b\":\"x\"}],\"c\":{},"
                               "\"d\":[],\"e\":\"\"}\n");
    assert_true(jn_json_is_object(root));
    assert_int_equal(jn_json_count(root), 4);
    const jn_json_t *a = jn_json_get(root, "a");
    assert_true(jn_json_is_array(a));
    assert_int_equal(jn_json_count(a), 6);
    assert_true(jn_json_is_number(jn_json_at(a, 0)));
    assert_true(jn_json_is_true(jn_json_at(a, 2)));
    assert_true(jn_json_is_bool(jn_json_at(a, 2)));
    assert_true(jn_json_is_false(jn_json_at(a, 3)));
    assert_true(jn_json_is_null(jn_json_at(a, 4)));
    assert_null(jn_json_at(a, 6));
    size_t len;
    assert_string_equal(jn_json_string(jn_json_get(jn_json_at(a, 5), "b"), &len), "x");
    assert_int_equal(len, 1);
    assert_true(jn_json_is_object(jn_json_get(root, "c")));
    assert_int_equal(jn_json_count(jn_json_get(root, "c")), 0);
    assert_null(jn_json_first(jn_json_get(root, "d")));
    assert_string_equal(jn_json_string(jn_json_get(root, "e"), &len), "");
    assert_int_equal(len, 0);
    assert_null(jn_json_get(root, "missing"));
    assert_null(jn_json_get(a, "a")); /* not an object */
    assert_null(jn_json_string(a, &len));
    assert_int_equal(len, 0);
    assert_string_equal(jn_json_type_name(a), "array");
    assert_string_equal(jn_json_type_name(jn_json_at(a, 2)), "boolean");

    /* Iteration in document order, with names and offsets. */
    const char *names[] = {"a", "c", "d", "e"};
    size_t i = 0;
    for (const jn_json_t *m = jn_json_first(root); m != NULL; m = jn_json_next(m), i++) {
        size_t nlen;
        assert_string_equal(jn_json_name(m, &nlen), names[i]);
        assert_int_equal(nlen, 1);
    }
    assert_int_equal(i, 4);
    assert_int_equal(jn_json_offset(jn_json_get(root, "a")), 2);
    assert_null(jn_json_name(jn_json_at(a, 0), NULL));
    jn_json_free(root);

    /* Any value at the top. */
    const char *scalars[] = {"0", "\"s\"", "true", "false", "null", "[]", " [ 1 , 2 ] "};
    const jn_json_type_t types[] = {JN_JSON_NUMBER, JN_JSON_STRING, JN_JSON_TRUE, JN_JSON_FALSE,
                                    JN_JSON_NULL,   JN_JSON_ARRAY,  JN_JSON_ARRAY};
    for (i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
        root = parse_ok(scalars[i]);
        assert_int_equal(jn_json_type(root), types[i]);
        jn_json_free(root);
    }
    jn_json_free(NULL);
}

static void test_escapes_and_utf8(void **state)
{
    (void)state;
    jn_json_t *root =
        parse_ok("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\udd11\","
                 "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91\", \"a\\u0000b\"]");
    size_t len;
    assert_string_equal(jn_json_string(jn_json_at(root, 0), &len), "\"\\/\b\f\n\r\t");
    assert_string_equal(jn_json_string(jn_json_at(root, 1), &len), "\xc3\xa9\xe2\x82\xac");
    assert_string_equal(jn_json_string(jn_json_at(root, 2), &len), "\xf0\x9f\x94\x91");
    assert_int_equal(len, 4);
    assert_string_equal(jn_json_string(jn_json_at(root, 3), &len),
                        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91");
    const char *nul = jn_json_string(jn_json_at(root, 4), &len);
    assert_int_equal(len, 3);
    assert_memory_equal(nul, "a\0b", 4);
    jn_json_free(root);

    /* Escaped member names are decoded before comparison. */
    root = parse_ok("{\"k\\u0065y\":1}");
    assert_non_null(jn_json_get(root, "key"));
    jn_json_free(root);

    expect_error("\"\\x\"", JN_JSON_EESCAPE, 1);
    expect_error("\"ab\\u12g4\"", JN_JSON_EESCAPE, 3);
    expect_error("\"\\u12", JN_JSON_EEOF, 5);
    expect_error("\"\\", JN_JSON_EEOF, 2);
    expect_error("\"a\nb\"", JN_JSON_ECONTROL, 2);
    expect_error_n("\"a\0b\"", 5, NULL, JN_JSON_ECONTROL, 2);
    expect_error("\"\t\"", JN_JSON_ECONTROL, 1);
    /* Surrogates: lone high, lone low, high + non-low, reversed pair. */
    expect_error("\"\\ud800\"", JN_JSON_ESURROGATE, 1);
    expect_error("\"x\\udc00\"", JN_JSON_ESURROGATE, 2);
    expect_error("\"\\ud800\\u0041\"", JN_JSON_ESURROGATE, 1);
    expect_error("\"\\udd11\\ud83d\"", JN_JSON_ESURROGATE, 1);
    expect_error("\"\\ud800x\"", JN_JSON_ESURROGATE, 1);
    /* Ill-formed UTF-8: stray continuation, overlong, encoded surrogate,
     * beyond U+10FFFF, truncated, invalid lead bytes. */
    expect_error("\"a\x80\"", JN_JSON_EUTF8, 2);
    expect_error("\"\xc0\xaf\"", JN_JSON_EUTF8, 1);
    expect_error("\"\xe0\x80\xaf\"", JN_JSON_EUTF8, 1);
    expect_error("\"\xed\xa0\x80\"", JN_JSON_EUTF8, 1);
    expect_error("\"\xf4\x90\x80\x80\"", JN_JSON_EUTF8, 1);
    expect_error("\"\xe2\x82\"", JN_JSON_EUTF8, 1);
    expect_error("\"\xff\"", JN_JSON_EUTF8, 1);
    expect_error("{\"\xc3\":1}", JN_JSON_EUTF8, 2);
    expect_error("\"unterminated", JN_JSON_EEOF, 13);
}

static void test_numbers(void **state)
{
    (void)state;
    jn_json_t *root = parse_ok("[0, -0, 1.5, -2.5e+3, 1E2, 1e-2, 9223372036854775807,"
                               "-9223372036854775808, 9223372036854775808, 1e400, 5.0, 1.25e1,"
                               "123456789e-9, 0.1e1, 1e-400]");
    double d;
    int64_t v;
    size_t len;
    assert_int_equal(jn_json_int64(jn_json_at(root, 0), &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(jn_json_int64(jn_json_at(root, 1), &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(jn_json_number(jn_json_at(root, 2), &d), 0);
    assert_true(d == 1.5);
    assert_int_equal(jn_json_int64(jn_json_at(root, 2), &v), -1);
    assert_int_equal(jn_json_number(jn_json_at(root, 3), &d), 0);
    assert_true(d == -2500.0);
    assert_int_equal(jn_json_int64(jn_json_at(root, 3), &v), 0);
    assert_int_equal(v, -2500);
    assert_string_equal(jn_json_number_text(jn_json_at(root, 3), &len), "-2.5e+3");
    assert_int_equal(len, 7);
    assert_int_equal(jn_json_int64(jn_json_at(root, 4), &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(jn_json_number(jn_json_at(root, 5), &d), 0);
    assert_true(d == 0.01);
    assert_int_equal(jn_json_int64(jn_json_at(root, 5), &v), -1);
    assert_int_equal(jn_json_int64(jn_json_at(root, 6), &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(jn_json_int64(jn_json_at(root, 7), &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(jn_json_int64(jn_json_at(root, 8), &v), -1);
    assert_int_equal(jn_json_number(jn_json_at(root, 8), &d), 0);
    assert_int_equal(jn_json_number(jn_json_at(root, 9), &d), -1); /* overflows a double */
    assert_int_equal(jn_json_int64(jn_json_at(root, 9), &v), -1);
    assert_int_equal(jn_json_int64(jn_json_at(root, 10), &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(jn_json_int64(jn_json_at(root, 11), &v), -1);
    assert_int_equal(jn_json_int64(jn_json_at(root, 12), &v), -1);
    assert_int_equal(jn_json_int64(jn_json_at(root, 13), &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(jn_json_number(jn_json_at(root, 14), &d), 0);
    assert_true(d == 0.0);
    /* Not numbers. */
    assert_int_equal(jn_json_number(root, &d), -1);
    assert_int_equal(jn_json_int64(root, &v), -1);
    assert_null(jn_json_number_text(root, &len));
    jn_json_free(root);

    root = parse_ok("[1e99999999999999999999, 0e999999999]");
    assert_int_equal(jn_json_int64(jn_json_at(root, 0), &v), -1);
    assert_int_equal(jn_json_int64(jn_json_at(root, 1), &v), 0);
    assert_int_equal(v, 0);
    jn_json_free(root);

    expect_error("01", JN_JSON_ENUMBER, 1);
    expect_error("[-01]", JN_JSON_ENUMBER, 3);
    expect_error("-", JN_JSON_EEOF, 1);
    expect_error("-a", JN_JSON_ENUMBER, 1);
    expect_error("1.", JN_JSON_EEOF, 2);
    expect_error("1.e5", JN_JSON_ENUMBER, 2);
    expect_error("1e", JN_JSON_EEOF, 2);
    expect_error("1e+", JN_JSON_EEOF, 3);
    expect_error("[1e+]", JN_JSON_ENUMBER, 4);
    expect_error("+1", JN_JSON_ESYNTAX, 0);
    expect_error(".5", JN_JSON_ESYNTAX, 0);
    expect_error("[1,]", JN_JSON_ESYNTAX, 3);
    expect_error("0x10", JN_JSON_ETRAILING, 1);
    expect_error("NaN", JN_JSON_ESYNTAX, 0);
    expect_error("-Infinity", JN_JSON_ENUMBER, 1);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_error("", JN_JSON_EEOF, 0);
    expect_error("   ", JN_JSON_EEOF, 3);
    expect_error("{", JN_JSON_EEOF, 1);
    expect_error("{\"a\"", JN_JSON_EEOF, 4);
    expect_error("{\"a\":", JN_JSON_EEOF, 5);
    expect_error("{\"a\":1", JN_JSON_EEOF, 6);
    expect_error("[1", JN_JSON_EEOF, 2);
    expect_error("tru", JN_JSON_EEOF, 3);
    expect_error("trUe", JN_JSON_ESYNTAX, 2);
    expect_error("nul", JN_JSON_EEOF, 3);
    expect_error("{a:1}", JN_JSON_ESYNTAX, 1);
    expect_error("{\"a\" 1}", JN_JSON_ESYNTAX, 5);
    expect_error("{\"a\":1,}", JN_JSON_ESYNTAX, 7);
    expect_error("{\"a\":1 \"b\":2}", JN_JSON_ESYNTAX, 7);
    expect_error("[1 2]", JN_JSON_ESYNTAX, 3);
    expect_error("{'a':1}", JN_JSON_ESYNTAX, 1);
    expect_error("\xef\xbb\xbf{}", JN_JSON_ESYNTAX, 0); /* BOM */
    expect_error("{} {}", JN_JSON_ETRAILING, 3);
    expect_error("[] x", JN_JSON_ETRAILING, 3);
    expect_error_n("{}\0", 3, NULL, JN_JSON_ETRAILING, 2);
    expect_error("/* c */ {}", JN_JSON_ESYNTAX, 0);
    expect_error("{\"a\":1}\f", JN_JSON_ETRAILING, 7);

    /* Bad arguments. */
    jn_json_t *root;
    jn_json_error_t e;
    assert_int_equal(jn_json_parse("{}", 2, NULL, NULL, &e), JN_JSON_EINVAL);
    assert_int_equal(jn_json_parse(NULL, 2, NULL, &root, NULL), JN_JSON_EINVAL);
    assert_null(root);
    assert_string_equal(e.message, "invalid arguments");
    assert_int_equal(jn_json_parse(NULL, 0, NULL, &root, &e), JN_JSON_EEOF);
}

static void test_duplicates(void **state)
{
    (void)state;
    expect_error("{\"a\":1,\"a\":2}", JN_JSON_EDUPLICATE, 7);
    expect_error("{\"a\":1,\"b\":{\"c\":1,\"c\":1}}", JN_JSON_EDUPLICATE, 18);
    /* Same name after decoding. */
    expect_error("{\"a\":1,\"\\u0061\":2}", JN_JSON_EDUPLICATE, 7);
    /* Names that differ only by case, or by a NUL, are distinct. */
    jn_json_t *root = parse_ok("{\"a\":1,\"A\":2,\"a\\u0000\":3}");
    assert_int_equal(jn_json_count(root), 3);
    assert_non_null(jn_json_getn(root, "a\0", 2));
    jn_json_free(root);
    /* Same names in different objects are fine. */
    root = parse_ok("[{\"a\":1},{\"a\":2}]");
    jn_json_free(root);

    /* Large objects (sorted detection): the earliest repeat is reported. */
    char doc[4096];
    size_t o = 0;
    o += (size_t)snprintf(doc + o, sizeof(doc) - o, "{");
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(doc + o, sizeof(doc) - o, "%s\"k%02d\":%d", i ? "," : "", i, i);
    size_t first_dup = o + 1;
    o += (size_t)snprintf(doc + o, sizeof(doc) - o, ",\"k30\":0,\"k05\":0}");
    expect_error(doc, JN_JSON_EDUPLICATE, first_dup);
    doc[first_dup - 1] = '}';
    doc[first_dup] = '\0';
    root = parse_ok(doc);
    assert_int_equal(jn_json_count(root), 40);
    int64_t v;
    assert_int_equal(jn_json_int64(jn_json_get(root, "k39"), &v), 0);
    assert_int_equal(v, 39);
    jn_json_free(root);
}

static void test_limits(void **state)
{
    (void)state;
    char doc[2048];
    /* 32 nested arrays (the default) pass, 33 fail at the 33rd '['. */
    for (int depth = 32; depth <= 33; depth++) {
        size_t o = 0;
        for (int i = 0; i < depth; i++)
            doc[o++] = '[';
        for (int i = 0; i < depth; i++)
            doc[o++] = ']';
        doc[o] = '\0';
        if (depth == 32) {
            jn_json_free(parse_ok(doc));
        } else {
            expect_error(doc, JN_JSON_EDEPTH, 32);
        }
    }
    /* Objects count too; a custom limit. */
    jn_json_limits_t lim = {0, 0, 2};
    const char *d2 = "{\"a\":{\"b\":1}}";
    jn_json_t *root;
    assert_int_equal(jn_json_parse(d2, strlen(d2), &lim, &root, NULL), 0);
    jn_json_free(root);
    const char *d3 = "{\"a\":{\"b\":[1]}}";
    expect_error_n(d3, strlen(d3), &lim, JN_JSON_EDEPTH, 10);
    /* Far deeper than any limit: refused without exhausting the stack. */
    static char deep[200001];
    memset(deep, '[', sizeof(deep) - 1);
    jn_json_limits_t huge = {0, 0, 100000};
    expect_error_n(deep, sizeof(deep) - 1, &huge, JN_JSON_EDEPTH, 512);

    /* Size and node limits. */
    lim = (jn_json_limits_t){8, 0, 0};
    expect_error_n("[1,2,3,4]", 9, &lim, JN_JSON_ELIMIT, 8);
    lim = (jn_json_limits_t){0, 3, 0};
    assert_int_equal(jn_json_parse("[1,2]", 5, &lim, &root, NULL), 0);
    jn_json_free(root);
    expect_error_n("[1,2,3]", 7, &lim, JN_JSON_ELIMIT, 5);
}

static void test_strerror(void **state)
{
    (void)state;
    for (int c = 0; c >= JN_JSON_ETRAILING; c--)
        assert_string_not_equal(jn_json_strerror(c), "unknown error");
    assert_string_equal(jn_json_strerror(-99), "unknown error");
    assert_int_equal(jn_json_utf8_len("\xf0\x9f\x94\x91", 4), 4);
    assert_int_equal(jn_json_utf8_len("\xf0\x9f\x94", 3), 0);
    assert_int_equal(jn_json_utf8_len("a", 1), 1);
    assert_int_equal(jn_json_utf8_len("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents), cmocka_unit_test(test_escapes_and_utf8),
        cmocka_unit_test(test_numbers),         cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_duplicates),      cmocka_unit_test(test_limits),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
