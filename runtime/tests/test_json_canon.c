/* Canonical JSON: equal Lua values encode to equal bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "json_canon.h"

static lua_State *L;

static int setup(void **state)
{
    (void)state;
    L = luaL_newstate();
    luaL_openlibs(L);
    return L ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    lua_close(L);
    return 0;
}

/* Evaluate `expr` and encode the result; returns the malloc'ed JSON or NULL with err. */
static char *encode(const char *expr, char *err, size_t errlen)
{
    jn_buf_t out = {0};
    char code[512];

    snprintf(code, sizeof(code), "return %s", expr);
    assert_int_equal(luaL_dostring(L, code), 0);
    err[0] = '\0';
    if (jn_json_canon_encode(L, -1, &out, err, errlen) != 0) {
        jn_buf_free(&out);
        lua_pop(L, 1);
        return NULL;
    }
    lua_pop(L, 1);
    return out.data ? out.data : strdup("");
}

static void expect(const char *expr, const char *json)
{
    char err[256], *got = encode(expr, err, sizeof(err));

    assert_non_null(got);
    assert_string_equal(got, json);
    free(got);
}

static void expect_error(const char *expr, const char *fragment)
{
    char err[256], *got = encode(expr, err, sizeof(err));

    assert_null(got);
    assert_non_null(strstr(err, fragment));
}

static void test_scalars(void **state)
{
    (void)state;
    expect("nil", "null");
    expect("true", "true");
    expect("42", "42");
    expect("-0.5", "-0.5");
    expect("2^53", "9007199254740992");
    expect("0.1", "0.10000000000000001"); /* %.17g: exact and deterministic */
    expect("'a\"b\\\\c\\n\\1'", "\"a\\\"b\\\\c\\n\\u0001\"");
    expect("'\\226\\130\\172'", "\"\xe2\x82\xac\""); /* the euro sign passes through */
}

static void test_keys_sorted_bytewise(void **state)
{
    (void)state;
    expect("{ b = 1, a = 2, B = 3, aa = { z = true, y = false } }",
           "{\"B\":3,\"a\":2,\"aa\":{\"y\":false,\"z\":true},\"b\":1}");
}

static void test_arrays_and_empty_tables(void **state)
{
    (void)state;
    expect("{ 1, 'x', { 2 } }", "[1,\"x\",[2]]");
    expect("{}", "{}");
}

static void test_errors_name_the_path(void **state)
{
    (void)state;
    expect_error("{ a = { b = { 1, 0/0 } } }", "a.b[2]: NaN");
    expect_error("{ f = print }", "f: a function value");
    expect_error("{ [1] = 1, [3] = 3 }", "mixing array and object keys");
    expect_error("'\\255'", "not valid UTF-8");
    expect_error("(function() local t = {} t.t = t return t end)()", "nested deeper");
}

static void test_equal_tables_equal_bytes(void **state)
{
    char err[256], *a, *b;

    (void)state;
    a = encode("{ z = 1, y = { 3, 2, 1 }, x = 'v' }", err, sizeof(err));
    b = encode("(function() local t = {} t.x = 'v' t.y = { 3, 2, 1 } t.z = 1 return t end)()", err,
               sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_keys_sorted_bytewise),
        cmocka_unit_test(test_arrays_and_empty_tables),
        cmocka_unit_test(test_errors_name_the_path),
        cmocka_unit_test(test_equal_tables_equal_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
