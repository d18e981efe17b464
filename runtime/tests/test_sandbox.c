/* The sandbox at the C level: memory accounting, caps, budgets, error strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>

#include "junction/clock.h"
#include "sandbox.h"

static jn_sandbox_t *make(size_t mem, uint64_t cpu_ms)
{
    jn_sandbox_limits_t limits = {mem, cpu_ms * 1000000ull};
    char err[256];
    jn_sandbox_t *sb = jn_sandbox_create(&limits, err, sizeof(err));

    assert_non_null(sb);
    return sb;
}

static int run(jn_sandbox_t *sb, const char *src)
{
    lua_State *L = jn_sandbox_state(sb);
    char err[512];

    if (jn_sandbox_load(sb, L, "=test", src, strlen(src), err, sizeof(err)) != 0)
        return -1;
    return jn_sandbox_pcall(sb, L, 0, 1);
}

static void test_baseline_is_small_and_accounted(void **state)
{
    jn_sandbox_t *sb = make(8u << 20, 1000);

    (void)state;
    /* A state with its environment stays well under 100 KiB. */
    assert_true(jn_sandbox_memory_used(sb) > 10 * 1024);
    assert_true(jn_sandbox_memory_used(sb) < 100 * 1024);
    assert_ptr_equal(jn_sandbox_from_state(jn_sandbox_state(sb)), sb);
    jn_sandbox_destroy(sb);
}

static void test_memory_cap_refuses_and_recovers(void **state)
{
    jn_sandbox_t *sb = make(4u << 20, 1000);
    lua_State *L = jn_sandbox_state(sb);

    (void)state;
    assert_int_equal(run(sb, "return #string.rep('x', 64 * 1024 * 1024)"), LUA_ERRMEM);
    assert_true(jn_sandbox_memory_exhausted(sb));
    assert_true(jn_sandbox_memory_peak(sb) <= jn_sandbox_memory_used(sb) + (4u << 20) + 4096);
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT, 0);
    /* The state is still usable after a refused allocation. */
    assert_int_equal(run(sb, "return 1 + 1"), 0);
    assert_int_equal(lua_tointeger(L, -1), 2);
    jn_sandbox_destroy(sb);
}

static void test_cpu_budget_stops_loop_and_counts(void **state)
{
    jn_sandbox_t *sb = make(8u << 20, 50);
    lua_State *L = jn_sandbox_state(sb);

    (void)state;
    assert_int_not_equal(run(sb, "while true do end"), 0);
    assert_string_equal(jn_sandbox_stop_reason(sb), "CPU budget exceeded");
    assert_true(jn_sandbox_cpu_used_ns(sb) >= 50 * 1000000ull);
    lua_pop(L, 1);
    jn_sandbox_destroy(sb);
}

static void test_wall_deadline_stops_running_code(void **state)
{
    jn_sandbox_t *sb = make(8u << 20, 0);

    (void)state;
    jn_sandbox_set_deadline(sb, jn_mono_ns() + 20 * 1000000ull);
    assert_int_not_equal(run(sb, "while true do end"), 0);
    assert_string_equal(jn_sandbox_stop_reason(sb), "wall-clock timeout exceeded");
    jn_sandbox_destroy(sb);
}

static void test_bytecode_refused_text_accepted(void **state)
{
    jn_sandbox_t *sb = make(8u << 20, 1000);
    lua_State *L = jn_sandbox_state(sb);
    char err[256];

    (void)state;
    assert_int_equal(jn_sandbox_load(sb, L, "=bc", "\033LJ\002", 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bytecode is refused"));
    assert_int_equal(jn_sandbox_load(sb, L, "=ok", "return 1", 8, err, sizeof(err)), 0);
    lua_pop(L, 1);
    jn_sandbox_destroy(sb);
}

static void test_error_string_calls_no_metamethod(void **state)
{
    jn_sandbox_t *sb = make(8u << 20, 1000);
    lua_State *L = jn_sandbox_state(sb);

    (void)state;
    lua_newtable(L);
    assert_string_equal(jn_sandbox_error_string(L, -1),
                        "(error object is a table without a string 'message' field)");
    lua_pushliteral(L, "boom");
    lua_setfield(L, -2, "message");
    assert_string_equal(jn_sandbox_error_string(L, -1), "boom");
    lua_pushnil(L);
    assert_string_equal(jn_sandbox_error_string(L, -1), "(error object is nil)");
    lua_pop(L, 2);
    jn_sandbox_destroy(sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_baseline_is_small_and_accounted),
        cmocka_unit_test(test_memory_cap_refuses_and_recovers),
        cmocka_unit_test(test_cpu_budget_stops_loop_and_counts),
        cmocka_unit_test(test_wall_deadline_stops_running_code),
        cmocka_unit_test(test_bytecode_refused_text_accepted),
        cmocka_unit_test(test_error_string_calls_no_metamethod),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
